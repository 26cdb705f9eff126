//! The per-thread pending slot: an action record is assembled here at syscall entry (identity,
//! time, arguments copied from user memory) and emitted at syscall exit with the result.
//!
//! Slots are keyed by tid and live as long as the thread (`lifecycle.rs` removes them at exit), so
//! entry/exit of a watched thread costs one hash lookup each and no allocation after its first
//! watched syscall.
//! `header.kind != 0` marks a syscall in flight. A bitmap (`HAS_SLOT`) says which threads have a
//! slot at all, so exits of unwatched threads skip the hash lookup.

use audit_common::{
    counters::Counters,
    event::{EventHeader, EventKind, HEADER_LEN, PENDING_BODY_LEN, PendingEvent, Syscall},
};
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, generated,
    },
};

use aya_ebpf::programs::TracePointContext;

use crate::{
    maps::{COUNTERS, EVENTS, HAS_SLOT, PENDING, PENDING_INIT},
    offsets::{off, tp_read, wakeup_bytes},
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Submission flags: wake the reader only when enough data is pending.
#[inline(always)]
pub fn submit_flags() -> u64 {
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// `BPF_NOEXIST`: insert only if absent.
const NOEXIST: u64 = 1;

/// Adds one to a counter of the current CPU.
#[inline(always)]
pub fn count(f: impl FnOnce(&mut Counters)) {
    if let Some(c) = COUNTERS.get_ptr_mut(0) {
        f(unsafe { &mut *c });
    }
}

/// `real_parent->tgid` of the current task, 0 if unreadable.
#[inline(always)]
fn current_ppid() -> u32 {
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let parent: *const u8 = match unsafe {
        bpf_probe_read_kernel(
            task.add(usize::from(off!(task_real_parent)))
                .cast::<*const u8>(),
        )
    } {
        Ok(p) => p,
        Err(_) => return 0,
    };
    unsafe { bpf_probe_read_kernel(parent.add(usize::from(off!(task_tgid))).cast::<u32>()) }
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
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

/// Atomically adds `delta` (two's complement for a subtraction) to `*p`. The bpf target has no
/// Rust atomics, so this is the BPF `lock xadd` instruction written out (what C's
/// `__sync_fetch_and_add` emits when the result is unused).
#[inline(always)]
pub fn atomic_add(p: *mut u64, delta: u64) {
    #[cfg(target_arch = "bpf")]
    unsafe {
        core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) delta);
    }
    #[cfg(not(target_arch = "bpf"))]
    let _ = (p, delta);
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

/// Opens the current thread's pending slot for a new action and fills its header.
///
/// Fails (and counts the loss) only when the pending map is full.
#[inline(always)]
pub fn begin(pid_tgid: u64, kind: EventKind, syscall: Syscall) -> Result<*mut PendingEvent, i64> {
    let tid = pid_tgid as u32;
    let ev = match PENDING.get_ptr_mut(tid) {
        Some(ev) => ev,
        None => {
            let init = PENDING_INIT.get(0).ok_or(-1i64)?;
            if PENDING.insert(tid, init, NOEXIST).is_err() {
                count(|c| c.pending_full[kind as usize] += 1);
                return Err(-1);
            }
            mark_slot(tid, true);
            PENDING.get_ptr_mut(tid).ok_or(-1i64)?
        }
    };
    fill_header(unsafe { &mut (*ev).header }, kind, syscall as u16, pid_tgid);
    Ok(ev)
}

/// Emits the current thread's in-flight record of `kind` with the syscall's return value (read
/// from the `sys_exit` record at `ret_off`), then marks the slot idle. An unwatched thread has no
/// slot and leaves after the bitmap check, before anything else is read.
#[inline(always)]
pub fn finish(ctx: &TracePointContext, kind: EventKind) -> Result<(), i64> {
    let tid = bpf_get_current_pid_tgid() as u32;
    if !may_have_slot(tid) {
        return Ok(());
    }
    let Some(ev) = PENDING.get_ptr_mut(tid) else {
        return Ok(());
    };
    let ev = unsafe { &mut *ev };
    if ev.header.kind != kind as u16 {
        return Ok(());
    }
    ev.header.retval = tp_read(ctx, off!(sys_exit_ret))?;
    emit(ev);
    Ok(())
}

/// Writes the slot's header and `header.body_len` bytes of body to the ring buffer, counts it (or
/// its loss), and marks the slot idle.
#[inline(always)]
pub fn emit(ev: &mut PendingEvent) {
    let kind = usize::from(ev.header.kind) & (EventKind::SLOTS - 1);
    let mut body_len = usize::from(ev.header.body_len);
    if body_len > PENDING_BODY_LEN {
        body_len = PENDING_BODY_LEN;
    }
    let len = HEADER_LEN + body_len;
    let ret = unsafe {
        generated::bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast::<c_void>(),
            (ev as *mut PendingEvent).cast::<c_void>(),
            len as u64,
            submit_flags(),
        )
    };
    if ret == 0 {
        count(|c| c.emitted[kind] += 1);
    } else {
        count(|c| c.ringbuf_full[kind] += 1);
    }
    ev.header.kind = 0;
}

/// Copies a NUL-terminated string from user memory to `dst` (at most `max` bytes, NUL included).
/// Returns the number of bytes written including the NUL.
#[inline(always)]
pub fn read_user_str(dst: *mut u8, max: u32, src: *const u8) -> Result<u32, i64> {
    let n = unsafe { generated::bpf_probe_read_user_str(dst.cast(), max, src.cast()) };
    if n < 0 {
        return Err(n);
    }
    Ok((n as u32).min(max))
}

/// Copies a NUL-terminated string from kernel memory to `dst` (at most `max` bytes, NUL included).
#[inline(always)]
pub fn read_kernel_str(dst: *mut u8, max: u32, src: *const u8) -> Result<u32, i64> {
    let n = unsafe { generated::bpf_probe_read_kernel_str(dst.cast(), max, src.cast()) };
    if n < 0 {
        return Err(n);
    }
    Ok((n as u32).min(max))
}

/// Whether the string at `src` goes on past `max - 1` bytes (so a read of `max` bytes cut it).
#[inline(always)]
pub fn user_str_continues(src: *const u8, max: u32) -> bool {
    let mut b = 0u8;
    let r = unsafe {
        generated::bpf_probe_read_user((&raw mut b).cast(), 1, src.add(max as usize - 1).cast())
    };
    r == 0 && b != 0
}
