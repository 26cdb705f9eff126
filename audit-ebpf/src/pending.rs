//! The per-thread pending slot: an action record is assembled here at syscall entry (identity,
//! time, what the process passed) and completed at syscall exit (the result, what the kernel
//! acted on), then emitted.
//!
//! Slots are keyed by tid and live as long as the thread (`lifecycle.rs` removes them at exit), so
//! entry/exit of a watched thread costs one hash lookup each and no allocation after its first
//! watched syscall. `header.kind != 0` marks a syscall in flight. A bitmap (`HAS_SLOT`) says
//! which threads have a slot at all, so exits of unwatched threads skip the hash lookup.
//!
//! What goes into a slot's variable area is `sections.rs`'s; how a finished record leaves it,
//! `emit.rs`'s.

use audit_common::event::{ActionCommon, EventHeader, EventKind, PendingEvent, Syscall};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, generated,
    },
    programs::RawTracePointContext,
};

use crate::{
    helpers::{atomic_add, count, count_drop, zero},
    maps::{HAS_SLOT, PENDING, PENDING_INIT},
    offsets::off,
    vfs,
};

/// `BPF_NOEXIST`: insert only if absent.
const NOEXIST: u64 = 1;

/// `real_parent->tgid` of the current task, 0 if unreadable.
#[inline(always)]
fn current_ppid() -> u32 {
    vfs::btf_ptr(vfs::task_btf(), off!(task_real_parent))
        .map(|parent| vfs::btf_read::<u32>(parent, off!(task_tgid)))
        .unwrap_or(0)
}

/// Fills `h` with the identity of the current task and the current time.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: EventKind, syscall: u16, pid_tgid: u64) {
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind as u16;
    h.syscall = syscall;
    h.flags = 0;
    h.body_len = 0;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.ppid = current_ppid();
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.retval = 0;
    // Straight into the header: the helper writes all 16 bytes (NUL-padded, or zeros when it
    // fails), so nothing is zeroed first and nothing is copied after.
    unsafe { generated::bpf_get_current_comm(h.comm.as_mut_ptr().cast(), h.comm.len() as u32) };
}

/// The word and bit of `tid` in `HAS_SLOT`.
#[inline(always)]
fn slot_bit(tid: u32) -> Option<(*mut u64, u64)> {
    HAS_SLOT
        .get_ptr_mut(tid >> 6)
        .map(|w| (w, 1u64 << (tid & 63)))
}

/// False only when `tid` certainly has no pending slot.
#[inline(always)]
pub fn may_have_slot(tid: u32) -> bool {
    match slot_bit(tid) {
        Some((w, bit)) => (unsafe { core::ptr::read_volatile(w) } & bit) != 0,
        None => true,
    }
}

/// Records that the current thread's slot was created (`true`) or removed (`false`). Only the
/// thread itself creates or removes its slot, and it knows whether its bit is set (it is set
/// exactly while the slot exists), so adding or subtracting the bit flips that bit alone — no
/// carry or borrow reaches a neighbour's. `lock xadd` works on every kernel with ring buffers;
/// atomic or/and would need 5.12.
#[inline(always)]
pub fn mark_slot(tid: u32, created: bool) {
    if let Some((w, bit)) = slot_bit(tid) {
        atomic_add(w, if created { bit } else { bit.wrapping_neg() });
    }
}

/// Removes `tid`'s slot (the current thread's, or the pre-exec tid it just gave up).
#[inline(always)]
pub fn remove_slot(tid: u32) {
    if PENDING.remove(tid).is_ok() {
        mark_slot(tid, false);
    }
}

/// The current thread's slot, created on first use. Fails (and counts the loss) only when the
/// pending map is full.
#[inline(always)]
fn slot(tid: u32, kind: EventKind) -> Result<*mut PendingEvent, i64> {
    if let Some(ev) = PENDING.get_ptr_mut(tid) {
        return Ok(ev);
    }
    let init = PENDING_INIT.get(0).ok_or(-1i64)?;
    if PENDING.insert(tid, init, NOEXIST).is_err() {
        count(|c| c.pending_full[kind as usize] += 1);
        count_drop((bpf_get_current_pid_tgid() >> 32) as u32, true);
        return Err(-1);
    }
    mark_slot(tid, true);
    PENDING.get_ptr_mut(tid).ok_or(-1i64)
}

/// Opens the current thread's pending slot for a new action: fills its header and clears the
/// common part of the body (sections, facts).
#[inline(always)]
pub fn begin(pid_tgid: u64, kind: EventKind, syscall: Syscall) -> Result<*mut PendingEvent, i64> {
    // Watched once, watched for good: moving to another cgroup does not shed it.
    crate::filter::follow((pid_tgid >> 32) as u32);
    let ev = slot(pid_tgid as u32, kind)?;
    let e = unsafe { &mut *ev };
    fill_header(&mut e.header, kind, syscall as u16, pid_tgid);
    zero(common(e));
    Ok(ev)
}

/// The thread's slot when no record is in flight in it (created if it has none): where records
/// that follow an emitted one are built (the files of a process, `fds.rs`).
#[inline(always)]
pub fn idle_slot(tid: u32, kind: EventKind) -> Option<&'static mut PendingEvent> {
    let ev = unsafe { &mut *slot(tid, kind).ok()? };
    (ev.header.kind == 0).then_some(ev)
}

/// Like [`begin`], for a record that is not a syscall of the current thread (an io_uring request
/// or completion): fails rather than overwrite a record the thread has in flight, and does not
/// add the task to the follow set (a completion can run in another context).
#[inline(always)]
pub fn begin_idle(
    pid_tgid: u64,
    kind: EventKind,
    syscall: Syscall,
) -> Result<*mut PendingEvent, i64> {
    let ev = slot(pid_tgid as u32, kind)?;
    let e = unsafe { &mut *ev };
    if e.header.kind != 0 {
        count(|c| c.pending_full[kind as usize] += 1);
        return Err(-1);
    }
    fill_header(&mut e.header, kind, syscall as u16, pid_tgid);
    zero(common(e));
    Ok(ev)
}

/// The common start of a slot's body.
#[inline(always)]
pub fn common(ev: &mut PendingEvent) -> &mut ActionCommon {
    unsafe { &mut *ev.body.as_mut_ptr().cast::<ActionCommon>() }
}

/// The fixed part of a slot's body as `T` (an `OpenBody`, `ExecBody`, ...).
#[inline(always)]
pub fn fixed<T>(ev: &mut PendingEvent) -> &mut T {
    unsafe { &mut *ev.body.as_mut_ptr().cast::<T>() }
}

/// The in-flight slot of the current thread for `kind`, if any (unwatched threads leave after
/// the bitmap check, before anything else is read).
#[inline(always)]
pub fn in_flight(tid: u32, kind: EventKind) -> Option<&'static mut PendingEvent> {
    if !may_have_slot(tid) {
        return None;
    }
    let ev = unsafe { &mut *PENDING.get_ptr_mut(tid)? };
    (ev.header.kind == kind as u16).then_some(ev)
}

/// Stores the system call's return value (the raw `sys_exit`'s second argument) in the
/// in-flight slot.
#[inline(always)]
pub fn set_result(ctx: &RawTracePointContext, ev: &mut PendingEvent) {
    ev.header.retval = ctx.arg::<i64>(1);
}

/// The current thread's id.
#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}
