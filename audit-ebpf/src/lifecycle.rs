//! Process lifecycle: fork (the follow set, and lineage for user space) and exit (slot cleanup).

use audit_common::event::{EventKind, ExitBody, FixedEvent, ForkBody, HEADER_LEN, flags};
use audit_common::{filter::MODE_ALL, offsets::ABSENT};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    filter::is_watched,
    maps::{EVENTS, FILTER, FOLLOWED, FOLLOWED_COUNT, PENDING},
    offsets::{off, tp_read},
    pending::{atomic_add, count, emit, fill_header, may_have_slot, remove_slot, submit_flags},
};

/// Raw tracepoint: unlike the formatted `sched:sched_process_fork` record it hands us the child's
/// `task_struct`, so a new thread can be told apart from a new process.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

fn try_fork(ctx: &RawTracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let child: *const u8 = ctx.arg(1);
    let child_tgid: u32 =
        unsafe { bpf_probe_read_kernel(child.add(usize::from(off!(task_tgid))).cast::<u32>()) }
            .map_err(i64::from)?;
    let parent_tgid = (pid_tgid >> 32) as u32;
    if child_tgid == parent_tgid {
        // A new thread: it shares the process's watch state; nothing to record.
        return Ok(());
    }
    let all = FILTER.get(0).map(|c| c.mode == MODE_ALL).unwrap_or(false);
    if !all {
        // BPF_NOEXIST: count each new entry once.
        if FOLLOWED.insert(child_tgid, 1, 1).is_ok() {
            followed_count_add(1);
        } else if unsafe { FOLLOWED.get(child_tgid) }.is_none() {
            count(|c| c.follow_full += 1);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<ForkBody>>(0) else {
        count(|c| c.ringbuf_full[EventKind::Fork as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, EventKind::Fork, 0, pid_tgid);
    ev.header.body_len = (core::mem::size_of::<FixedEvent<ForkBody>>() - HEADER_LEN) as u16;
    ev.body = ForkBody {
        child_pid: child_tgid,
        _pad: 0,
    };
    entry.submit(submit_flags());
    count(|c| c.emitted[EventKind::Fork as usize] += 1);
    Ok(())
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let tgid = (pid_tgid >> 32) as u32;

    // A thread that dies inside a watched syscall: emit what we have, marked incomplete, so the
    // attempt is not lost; then free the slot (this is what keeps PENDING from leaking).
    if may_have_slot(tid)
        && let Some(ev) = PENDING.get_ptr_mut(tid)
    {
        let ev = unsafe { &mut *ev };
        if ev.header.kind != 0 {
            ev.header.flags |= flags::INCOMPLETE;
            emit(ev);
        }
        remove_slot(tid);
    }

    let group_dead = if off!(sched_exit_group_dead) == ABSENT {
        tid == tgid
    } else {
        tp_read::<u8>(ctx, off!(sched_exit_group_dead))? != 0
    };
    if !group_dead {
        return Ok(());
    }
    if is_watched(pid_tgid) {
        if let Some(mut entry) = EVENTS.reserve::<FixedEvent<ExitBody>>(0) {
            let ev = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut ev.header, EventKind::Exit, 0, pid_tgid);
            ev.header.body_len = (core::mem::size_of::<FixedEvent<ExitBody>>() - HEADER_LEN) as u16;
            ev.body = ExitBody {
                group_dead: 1,
                _pad: 0,
            };
            entry.submit(submit_flags());
            count(|c| c.emitted[EventKind::Exit as usize] += 1);
        } else {
            count(|c| c.ringbuf_full[EventKind::Exit as usize] += 1);
        }
    }
    if FOLLOWED.remove(tgid).is_ok() {
        followed_count_add(-1);
    }
    Ok(())
}

/// Atomically adjusts `FOLLOWED_COUNT`.
#[inline(always)]
fn followed_count_add(delta: i64) {
    if let Some(n) = FOLLOWED_COUNT.get_ptr_mut(0) {
        atomic_add(n, delta as u64);
    }
}
