//! The end of a record: the acting image's executable ([`exe_facts`]), whether its process is
//! seen for the first time, and its way out of the slot into the ring buffer — with the reserve
//! that keeps room for records of protected files ([`fits`]) and the count of what was lost.

use audit_common::{
    event::{
        EventKind, FileFacts, HEADER_LEN, PENDING_BODY_LEN, PendingEvent, VAR_OFFSET, file_flags,
        flags,
    },
    filter::FileKey,
};
use aya_ebpf::{
    cty::c_void,
    helpers::generated,
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    helpers::{copy_of, count, count_drop},
    maps::{
        EVENTS, EXE_SEEN, FINISH_RAW, FINISH_TP, HELD, HELD_RAW, HELD_TP, PROTECTED_FILES, SeenExe,
    },
    offsets::{ring_limits, wakeup_bytes},
    pending::common,
    sections::walk_section,
    vfs,
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Bytes in the ring buffer not yet consumed.
#[inline(always)]
pub fn ring_used() -> u64 {
    EVENTS.query(BPF_RB_AVAIL_DATA)
}

/// Submission flags: wake the reader only when enough data (`used` bytes) is pending. Below
/// that mark records go without a wakeup (the reader polls on a short timer); above it every
/// record wakes the reader, which is awake already then. That wakeup is `irq_work`, a self-IPI,
/// and under virtualisation a trap to the hypervisor of about a microsecond on the producing
/// CPU: a process recording faster than the daemon reads is slowed to the daemon's pace. That
/// is the back-pressure that keeps one core's flood of opens from losing records on a VM. Waking
/// only on the crossing of the mark cut a watched tight openat+close loop from 2.7 to 1.3 µs and
/// lost 1.2M of 3.4M records in 4 s (docs/benchmarks.md, section 1's goal).
#[inline(always)]
pub fn submit_flags(used: u64) -> u64 {
    if used >= wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// The acting image's executable: its facts always; its path when this process has not had it
/// announced since its last exec (`EXE_SEEN`). A process without an entry, or with one only
/// `prctl.rs` made, is seen for the first time (`FIRST_SIGHT`: the files it holds follow,
/// `fds.rs`). One whose `mm->exe_file` was replaced (`prctl.rs`) carries the file its exec loaded,
/// flagged `EXE_REPLACED`.
#[inline(always)]
pub fn exe_facts(ev: &mut PendingEvent) {
    let Ok(file) = vfs::exe_file() else {
        ev.header.flags |= flags::EXE_FAULT;
        return;
    };
    let tgid = ev.header.pid;
    let seen = EXE_SEEN.get_ptr_mut(&tgid);
    if let Some(seen) = seen
        && unsafe { (*seen).file } == file as u64
    {
        let seen = unsafe { &mut *seen };
        common(ev).exe = copy_of(&seen.facts);
        if seen.replaced != 0 {
            ev.header.flags |= flags::EXE_REPLACED;
            if seen.seen == 0 {
                seen.seen = 1;
                ev.header.flags |= flags::FIRST_SIGHT;
            }
        }
        return;
    }
    if seen.is_none() {
        ev.header.flags |= flags::FIRST_SIGHT;
    }
    let mut facts = FileFacts::default();
    let Ok(path) = vfs::file_facts(file, &mut facts) else {
        ev.header.flags |= flags::EXE_FAULT;
        return;
    };
    common(ev).exe = facts;
    walk_section(ev, path, |c| &mut c.exe, |c| &mut c.sections.exe);
    ev.header.flags |= flags::EXE_PATH;
    let seen = SeenExe {
        file: file as u64,
        facts: common(ev).exe,
        replaced: 0,
        seen: 1,
    };
    let _ = EXE_SEEN.insert(&tgid, &seen, 0);
}

/// Whether the record in `ev` (emitted or not: `emit` keeps the header) is the first of its
/// process. Read from the slot, not kept in a register across `emit`: a value the verifier
/// tracks would split every path through `emit` in two.
#[inline(always)]
pub fn first_sight(ev: &PendingEvent) -> bool {
    let f = unsafe { core::ptr::read_volatile(&raw const ev.header.flags) };
    f & flags::FIRST_SIGHT != 0
}

/// Emits the record in flight in `ev` (none: `kind` 0), from a tracepoint program — unless it
/// is the first of its process: then the walk of the process's files (`fds.rs`) is tail-called, which emits
/// the record, then the files (it does not return). Without the walk (a kernel before 5.17) the
/// record is emitted here. One `emit` on every path: the verifier walks it once per program.
#[inline(always)]
pub fn emit_tp(ctx: &TracePointContext, ev: &mut PendingEvent) {
    if first_sight(ev) {
        let _ = unsafe { HELD_TP.tail_call(ctx, HELD) };
    }
    if ev.header.kind != 0 {
        emit(ev);
    }
}

/// Completes the record in flight in `ev` (the current thread's slot) with the acting image's
/// executable ([`exe_facts`]) and emits it ([`emit_tp`]), in the program `finish.rs` holds,
/// tail-called: the executable's path walk and the first-sight branches are verified there once,
/// not again on every path of the calling program. The call does not return; should it fail (its
/// program array is filled before any program is attached), the record is emitted with its
/// executable flagged unread.
#[inline(always)]
pub fn finish_tp(ctx: &TracePointContext, ev: &mut PendingEvent) {
    let _ = unsafe { FINISH_TP.tail_call(ctx, 0) };
    ev.header.flags |= flags::EXE_FAULT;
    emit_tp(ctx, ev);
}

/// [`finish_tp`] from a raw tracepoint program.
#[inline(always)]
pub fn finish_raw(ctx: &RawTracePointContext, ev: &mut PendingEvent) {
    let _ = unsafe { FINISH_RAW.tail_call(ctx, 0) };
    ev.header.flags |= flags::EXE_FAULT;
    emit_raw(ctx, ev);
}

/// [`emit_tp`] from a raw tracepoint program.
#[inline(always)]
pub fn emit_raw(ctx: &RawTracePointContext, ev: &mut PendingEvent) {
    if first_sight(ev) {
        let _ = unsafe { HELD_RAW.tail_call(ctx, HELD) };
    }
    if ev.header.kind != 0 {
        emit(ev);
    }
}

/// Writes the slot's header and body to the ring buffer, counts it (or its loss), and marks the
/// slot idle.
#[inline(always)]
pub fn emit(ev: &mut PendingEvent) {
    let kind = usize::from(ev.header.kind) & (EventKind::SLOTS - 1);
    let mut body_len = VAR_OFFSET + usize::from(common(ev).sections.end);
    if body_len > PENDING_BODY_LEN {
        body_len = PENDING_BODY_LEN;
    }
    ev.header.body_len = body_len as u16;
    let len = HEADER_LEN + body_len;
    let tgid = ev.header.pid;
    let used = ring_used();
    let c = common(ev);
    if !fits(used, len as u64, &c.file)
        && !fits(used, len as u64, &c.real)
        && !fits(used, len as u64, &c.origin)
    {
        count(|c| c.ringbuf_full[kind] += 1);
        count_drop(tgid, false);
        ev.header.kind = 0;
        return;
    }
    if !output(ev, len, kind, used) {
        count_drop(tgid, false);
    }
    ev.header.kind = 0;
}

/// Writes the first `len` bytes of `ev` (header and body) to the ring buffer, `used` bytes of
/// it taken, and counts the record under `kind` as emitted or lost. Returns whether it was
/// written.
#[inline(always)]
pub fn output(ev: &mut PendingEvent, len: usize, kind: usize, used: u64) -> bool {
    let ret = unsafe {
        generated::bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast::<c_void>(),
            (ev as *mut PendingEvent).cast::<c_void>(),
            len as u64,
            submit_flags(used + len as u64),
        )
    };
    if ret == 0 {
        count(|c| c.emitted[kind] += 1);
    } else {
        count(|c| c.ringbuf_full[kind] += 1);
    }
    ret == 0
}

/// Whether an ordinary record of `len` bytes may go into the ring buffer: only while more than
/// the reserve is free.
#[inline(always)]
pub fn ring_has_room(used: u64, len: u64) -> bool {
    let (size, reserve) = ring_limits();
    used.saturating_add(len).saturating_add(reserve) <= size || reserve == 0
}

/// Whether a record of `len` bytes may go into the ring buffer: always while more than the
/// reserve is free; into the reserve only when it names a protected file (`PROTECTED_FILES`),
/// so a flood of ordinary records cannot push those out.
#[inline(always)]
fn fits(used: u64, len: u64, file: &FileFacts) -> bool {
    ring_has_room(used, len) || is_protected(file)
}

/// Whether `file` is one a protected set names (`PROTECTED_FILES`, by device and inode).
#[inline(always)]
pub fn is_protected(file: &FileFacts) -> bool {
    let key = FileKey {
        dev: file.dev,
        _pad: 0,
        ino: file.ino,
    };
    file.flags & file_flags::VALID != 0 && unsafe { PROTECTED_FILES.get(&key) }.is_some()
}
