//! Process lifecycle: fork (the follow set, and lineage for user space), exit (slot cleanup, and
//! a watched process's exit status), moves to another cgroup, and signals sent to the agent.

use audit_common::event::{
    CGROUP_PATH_MAX, CgroupMoveBody, EXIT_STATUS_UNREAD, EventKind, ExitBody, FixedEvent, ForkBody,
    HEADER_LEN, SignalBody, flags,
};
use audit_common::offsets::ABSENT;
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{emit, ring_used, submit_flags},
    filter::{agent_tgid, follow, is_followed, is_watched, unfollow},
    helpers::{atomic_add, copy_of, count},
    maps::{CGROUP_CHANGES, EVENTS, EXE_SEEN, PENDING, SIGNALS_TO_AGENT},
    offsets::{kread, off, tp_read},
    pending::{fill_header, may_have_slot, remove_slot},
    vfs::{btf_ptr, btf_read, task_btf},
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
    let parent_tgid = (pid_tgid >> 32) as u32;
    let child: *const u8 = ctx.arg(1);
    if crate::prctl::any_replaced() {
        // The child's mm has the parent's `exe_file`, replaced or not, watched or not.
        let child_tgid: u32 = kread(child, off!(task_tgid))?;
        if child_tgid != parent_tgid {
            crate::prctl::inherit(parent_tgid, child_tgid);
        }
    }
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let child_tgid: u32 =
        unsafe { bpf_probe_read_kernel(child.add(usize::from(off!(task_tgid))).cast::<u32>()) }
            .map_err(i64::from)?;
    if child_tgid == parent_tgid {
        // A new thread: it shares the process's watch state; nothing to record.
        return Ok(());
    }
    follow(parent_tgid);
    follow(child_tgid);
    // The child starts with its parent's image and files: both are on record already (its
    // first record is no first sight, `fds.rs`).
    if let Some(seen) = unsafe { EXE_SEEN.get(&parent_tgid) } {
        let seen = copy_of(seen);
        let _ = EXE_SEEN.insert(&child_tgid, &seen, 0);
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
    entry.submit(submit_flags(ring_used()));
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
    // A later process with this id is another one. Only a watched process (followed from its
    // first record on) or one that replaced its executable has an entry: the rest of the host
    // leaves without a lookup.
    let watched = is_watched(pid_tgid);
    if crate::prctl::forget(tgid) || watched {
        let _ = EXE_SEEN.remove(&tgid);
    }
    if watched {
        if let Some(mut entry) = EVENTS.reserve::<FixedEvent<ExitBody>>(0) {
            let ev = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut ev.header, EventKind::Exit, 0, pid_tgid);
            ev.header.body_len = (core::mem::size_of::<FixedEvent<ExitBody>>() - HEADER_LEN) as u16;
            ev.body = ExitBody {
                group_dead: 1,
                status: exit_status(),
            };
            entry.submit(submit_flags(ring_used()));
            count(|c| c.emitted[EventKind::Exit as usize] += 1);
        } else {
            count(|c| c.ringbuf_full[EventKind::Exit as usize] += 1);
        }
    }
    unfollow(tgid);
    Ok(())
}

/// `SIGNAL_GROUP_EXIT` in `signal_struct.flags`: the group is exiting as a whole.
const SIGNAL_GROUP_EXIT: u32 = 0x4;

/// The wait status the parent will be told, as `wait_task_zombie` computes it: the group's
/// code when the group exits as a whole (`exit_group`, a fatal signal), else the code of the
/// thread that ended it, the last one, which is the current task here (the kernel's tests
/// show the parent told that code when threads end one by one).
#[inline(always)]
fn exit_status() -> u32 {
    let task = task_btf();
    let own = btf_read::<i32>(task, off!(task_exit_code)) as u32;
    match btf_ptr(task, off!(task_signal)) {
        Ok(sig) if btf_read::<u32>(sig, off!(signal_flags)) & SIGNAL_GROUP_EXIT != 0 => {
            btf_read::<i32>(sig, off!(signal_group_exit_code)) as u32
        }
        Ok(_) => own,
        Err(_) => EXIT_STATUS_UNREAD,
    }
}

/// `cgroup:cgroup_attach_task`: a task was moved to another cgroup. A watched process that moves
/// (or is moved) stays watched (it is followed); the move itself is a record. Only the cgroup v2
/// hierarchy (id 0) counts; per-thread calls are reduced to the process (only its leader's pid
/// is in the follow set).
#[tracepoint(category = "cgroup", name = "cgroup_attach_task")]
pub fn cgroup_attach_task(ctx: TracePointContext) -> u32 {
    let _ = try_cgroup_move(&ctx);
    0
}

fn try_cgroup_move(ctx: &TracePointContext) -> Result<(), i64> {
    if tp_read::<i32>(ctx, off!(cgroup_attach_root))? != 0 {
        return Ok(());
    }
    let moved = tp_read::<i32>(ctx, off!(cgroup_attach_pid))? as u32;
    // Only a process already watched: one moved into a watched cgroup (a runtime placing a
    // container's init, `trace` starting its command) is merely starting to be watched.
    if !is_followed(moved) {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<CgroupMoveBody>>(0) else {
        count(|c| c.ringbuf_full[EventKind::CgroupMove as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, EventKind::CgroupMove, 0, pid_tgid);
    ev.header.body_len = (core::mem::size_of::<FixedEvent<CgroupMoveBody>>() - HEADER_LEN) as u16;
    ev.body.moved_pid = moved;
    ev.body.dst_id = tp_read::<u64>(ctx, off!(cgroup_attach_id)).unwrap_or(0);
    // __data_loc: the string's offset in the record (low 16 bits) and length (high 16 bits).
    let loc = tp_read::<u32>(ctx, off!(cgroup_attach_path)).unwrap_or(0);
    let at = (loc & 0xffff) as usize;
    let n = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel_str(
            ev.body.path.as_mut_ptr().cast(),
            CGROUP_PATH_MAX as u32,
            (aya_ebpf::EbpfContext::as_ptr(ctx) as *const u8)
                .wrapping_add(at)
                .cast(),
        )
    };
    ev.body.path_len = if n > 0 { (n - 1) as u32 } else { 0 };
    entry.submit(submit_flags(ring_used()));
    count(|c| c.emitted[EventKind::CgroupMove as usize] += 1);
    Ok(())
}

/// `cgroup:cgroup_mkdir`, `cgroup_rmdir`, `cgroup_rename` (one program on all three): counts
/// changes to the cgroup hierarchies in `CGROUP_CHANGES`, so user space resolves the watched
/// paths again only when one happened, however many agents it watches.
#[tracepoint]
pub fn cgroup_changed(_ctx: TracePointContext) -> u32 {
    if let Some(n) = CGROUP_CHANGES.get_ptr_mut(0) {
        atomic_add(n, 1);
    }
    0
}

/// Raw tracepoint `signal_generate(sig, info, task, group, result)`: a watched process signals
/// the agent. Recorded before delivery, so even a SIGKILL leaves the record of who sent it (read
/// by the next start when the ring buffer is pinned).
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> i32 {
    let _ = try_signal(&ctx);
    0
}

/// Whether the kernel generated a signal itself (a child's exit or stop notifying its parent, a
/// fault, a timer) rather than a process's kill/tgkill/sigqueue: its `si_code` is positive
/// (`SI_USER` is 0, the queued and thread-directed kinds negative). `info` is a `kernel_siginfo`,
/// or `SEND_SIG_NOINFO` (0, a kill) or `SEND_SIG_PRIV` (1, the kernel's). `si_code` is its third
/// int on every architecture but MIPS.
fn by_kernel(info: u64) -> bool {
    match info {
        0 => false,
        1 => true,
        _ => kread::<i32>(info as *const u8, 8).is_ok_and(|code| code > 0),
    }
}

fn try_signal(ctx: &RawTracePointContext) -> Result<(), i64> {
    let agent = agent_tgid();
    if agent == 0 {
        return Ok(());
    }
    let task: *const u8 = ctx.arg(2);
    let target: u32 = kread(task, off!(task_tgid))?;
    if target != agent {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<SignalBody>>(0) else {
        count(|c| c.ringbuf_full[EventKind::Signal as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, EventKind::Signal, 0, pid_tgid);
    if by_kernel(ctx.arg(1)) {
        ev.header.flags |= flags::SIGNAL_BY_KERNEL;
    }
    ev.header.body_len = (core::mem::size_of::<FixedEvent<SignalBody>>() - HEADER_LEN) as u16;
    ev.body = SignalBody {
        sig: ctx.arg::<u64>(0) as u32,
        target_pid: target,
        target_tid: kread::<u32>(task, off!(task_pid)).unwrap_or(0),
        result: ctx.arg::<u64>(4) as i32,
    };
    // Kept until user space reads the ring's copy: it outlives a SIGKILL (see the map).
    let key = ev.header.ktime_ns;
    let _ = SIGNALS_TO_AGENT.insert(&key, &*ev, 0);
    entry.submit(submit_flags(ring_used()));
    count(|c| c.emitted[EventKind::Signal as usize] += 1);
    Ok(())
}
