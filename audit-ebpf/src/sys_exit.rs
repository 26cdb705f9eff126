//! The one program on every system call's return (raw tracepoint `sys_exit`), and the only one
//! every call of every process on the host pays for: it tail-calls the program that completes
//! the record in flight in the thread's slot — one per family of calls (`EXITS` in `maps.rs`,
//! indexed by the slot's `EventKind`) — or, for a 32-bit call, `compat.rs`'s. Everything else
//! leaves after the `TS_COMPAT` test and one bit of `HAS_SLOT` (`pending.rs`).
//!
//! Why not a `syscalls:sys_exit_<call>` tracepoint per call, as the entries have: 32-bit calls
//! need this raw hook anyway (the per-call tracepoints skip them), and each enabled per-call exit
//! tracepoint made the kernel build a trace record for its call and test a bitmap on every
//! call's return besides (measured: ~30 ns more per recorded call, ~10 ns on every other call).
//! The entries stay per call: a raw `sys_enter` would cost every call of the host a program run.
//!
//! A slot in flight is always the current call's: this program is attached before any entry
//! program (and its table filled before that), an entry that begins a record always sees its
//! return here, and a thread that dies inside a call loses its slot at `sched_process_exit`.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

use crate::{
    compat::task_in_compat_call,
    maps::{EXITS, PENDING},
    offsets::{compat_enabled, off},
    pending::may_have_slot,
    vfs,
};

/// Raw `sys_exit`: `(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    dispatch(&ctx);
    0
}

#[inline(always)]
fn dispatch(ctx: &RawTracePointContext) {
    // Plain loads through the task's BTF-typed pointer, no helper calls: this runs on every
    // system call of the host.
    let task = vfs::task_btf();
    if compat_enabled() && task_in_compat_call(task) {
        let _ = unsafe { EXITS.tail_call(ctx, audit_common::event::EventKind::Compat as u32) };
        return;
    }
    let tid = vfs::btf_read::<u32>(task, off!(task_pid));
    if !may_have_slot(tid) {
        return;
    }
    let Some(ev) = PENDING.get_ptr(&tid) else {
        return;
    };
    let kind = unsafe { (*ev).header.kind };
    if kind != 0 {
        // An empty entry (a kind no exit completes) leaves the slot as it is.
        let _ = unsafe { EXITS.tail_call(ctx, u32::from(kind)) };
    }
}
