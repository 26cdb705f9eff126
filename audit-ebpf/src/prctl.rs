//! `prctl(PR_SET_MM, PR_SET_MM_EXE_FILE | PR_SET_MM_MAP)`: a process replaces what
//! `mm->exe_file` (`/proc/PID/exe`) names, so it can claim to be another program. The kernel keeps
//! nothing else of the file its exec loaded, so the replacement is watched for every process of
//! the host (the call is rare: checkpoint/restore tools; it needs `CAP_SYS_RESOURCE`), and
//! remembered (`EXE_REPLACED`) until the process execs or exits:
//!
//! - a watched process's call is a record ([`SetExeBody`]: the file before, the file after, the
//!   image's own executable), and its records keep naming the file its exec loaded, flagged
//!   `EXE_REPLACED`;
//! - an unwatched process's replacement is recorded when the agent first sees the process
//!   (`BEFORE_WATCH`, by the walk of its files that follows its first record, `fds.rs`), and its
//!   records too name the file its exec loaded.
//!
//! Entry reads the file before (alive: `mm->exe_file` holds it) and the file behind the fd
//! passed; exit compares `mm->exe_file` with the file before.

use audit_common::event::{
    EventKind, PR_SET_MM_EXE_FILE, PR_SET_MM_MAP, PendingEvent, SetExeBody, Syscall, VAR_OFFSET,
    WALK_MAX, flags,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{emit_raw, finish_raw, output, ring_used},
    filter::is_watched,
    helpers::{atomic_add, copy_of},
    maps::{EXE_REPLACED, EXE_REPLACED_COUNT, EXE_SEEN, SeenExe},
    offsets::enter_arg,
    pending::{begin, begin_idle, common, current_tid, fixed, in_flight, set_result},
    sections::{Section, file_section},
    vfs,
};

const PR_SET_MM: u64 = 35;
/// `offsetof(struct prctl_mm_map, exe_fd)` (uapi: eleven u64 addresses, the auxv pointer, its
/// size, then the fd).
const MM_MAP_EXE_FD: u64 = 100;

#[tracepoint]
pub fn sys_enter_prctl(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_prctl(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

/// The fd a `PR_SET_MM` call asks to make the executable, and its option; `None` for any other
/// call (every process's `prctl` leaves here after two context loads).
#[inline(always)]
fn exe_fd_of(ctx: &TracePointContext) -> Option<(u32, i32)> {
    if enter_arg::<0>(ctx) != PR_SET_MM {
        return None;
    }
    match enter_arg::<1>(ctx) as u32 {
        PR_SET_MM_EXE_FILE => Some((PR_SET_MM_EXE_FILE, enter_arg::<2>(ctx) as i32)),
        PR_SET_MM_MAP => {
            let at = enter_arg::<2>(ctx).wrapping_add(MM_MAP_EXE_FD) as *const u32;
            // `-1`: the map leaves the executable alone. Unreadable: exit tells by the result.
            match unsafe { bpf_probe_read_user(at) } {
                Ok(u32::MAX) => None,
                Ok(fd) => Some((PR_SET_MM_MAP, fd as i32)),
                Err(_) => Some((PR_SET_MM_MAP, -1)),
            }
        }
        _ => None,
    }
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext) -> Result<(), i64> {
    let Some((option, fd)) = exe_fd_of(ctx) else {
        return Ok(());
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let watched = is_watched(pid_tgid);
    let ev = unsafe {
        &mut *if watched {
            begin(pid_tgid, EventKind::SetExe, Syscall::Prctl)?
        } else {
            // Followed nowhere, recorded nowhere: only kept for when the agent sees it.
            begin_idle(pid_tgid, EventKind::SetExe, Syscall::Prctl)?
        }
    };
    let b = fixed::<SetExeBody>(ev);
    b.fd = fd;
    b.option = option;
    b.changed = 0;
    b.changes = 0;
    b.reported = 0;
    b.watched = u32::from(watched);
    b.old_file = 0;
    b.new_file = 0;
    crate::helpers::zero(&mut b.new);
    if let Ok(old) = vfs::exe_file() {
        fixed::<SetExeBody>(ev).old_file = old as u64;
        if file_section(ev, old, |c| &mut c.file, |c| &mut c.sections.kpath).is_none() {
            ev.header.flags |= flags::KPATH_FAULT;
        }
    }
    if let Ok(new) = vfs::fd_file(i64::from(fd)) {
        fixed::<SetExeBody>(ev).new_file = new as u64;
        new_file_section(ev, new);
    }
    Ok(())
}

/// The file `mm->exe_file` names after the call into `new`, walked into `extra` (unreadable: the
/// record's path is).
#[inline(always)]
fn new_file_section(ev: &mut PendingEvent, file: *const u8) {
    let _ = file_section(
        ev,
        file,
        |c| unsafe { &mut (*(c as *mut _ as *mut SetExeBody)).new },
        |c| &mut c.sections.extra,
    );
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::SetExe) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let now = vfs::exe_file().map_or(0, |f| f as u64);
    let (old, new, watched) = {
        let b = fixed::<SetExeBody>(ev);
        (b.old_file, b.new_file, b.watched != 0)
    };
    let changed = ev.header.retval == 0 && now != 0 && now != old;
    if !changed {
        if !watched {
            ev.header.kind = 0;
        } else {
            finish_raw(ctx, ev);
        }
        return Ok(());
    }
    if now != new {
        // Another file than the fd's at entry (a racing thread): name the one installed.
        if let Ok(f) = vfs::exe_file() {
            new_file_section(ev, f);
        }
    }
    fixed::<SetExeBody>(ev).changed = 1;
    let first = unsafe { EXE_SEEN.get(&ev.header.pid) }.is_none();
    replaced(ev, now, watched);
    if !watched {
        ev.header.kind = 0;
    } else {
        if first {
            // Its first record: the files it holds follow.
            ev.header.flags |= flags::FIRST_SIGHT;
        }
        emit_raw(ctx, ev);
    }
    Ok(())
}

/// After a replacement: the record names the image's own executable (the file before the first
/// replacement since the exec) in `common.exe` and its `exe` section, and becomes the process's
/// `EXE_REPLACED` entry; the process's records carry that executable from now on (`EXE_SEEN`,
/// for an unwatched process marked not seen yet: its first record is then its first sight).
#[inline(always)]
fn replaced(ev: &mut PendingEvent, now: u64, watched: bool) {
    let tgid = ev.header.pid;
    match EXE_REPLACED.get_ptr(&tgid) {
        None => {
            // The first: the file before is the one the exec loaded.
            let c = common(ev);
            c.exe = copy_of(&c.file);
            if c.sections.kpath.len > 0 {
                c.sections.exe = c.sections.kpath;
                ev.header.flags |= flags::EXE_PATH;
            }
            fixed::<SetExeBody>(ev).changes = 1;
        }
        Some(prev) => {
            let prev = unsafe { &*prev };
            common(ev).exe = copy_of(&prev_common(prev).exe);
            copy_exe_section(ev, prev);
            let n = unsafe { &*prev.body.as_ptr().cast::<SetExeBody>() }.changes;
            fixed::<SetExeBody>(ev).changes = n.saturating_add(1);
        }
    }
    ev.header.flags |= flags::EXE_REPLACED;
    fixed::<SetExeBody>(ev).reported = u32::from(watched);
    // Complete as a record (`emit` would set it): the entry may be written as it is (`output`).
    let body_len = VAR_OFFSET + usize::from(common(ev).sections.end);
    ev.header.body_len = body_len.min(audit_common::event::PENDING_BODY_LEN) as u16;
    let new_entry = unsafe { EXE_REPLACED.get(&tgid) }.is_none();
    if EXE_REPLACED.insert(&tgid, &*ev, 0).is_ok() && new_entry {
        replaced_count_add(1);
    }
    let seen = SeenExe {
        file: now,
        facts: common(ev).exe,
        replaced: 1,
        seen: u32::from(watched),
    };
    let _ = EXE_SEEN.insert(&tgid, &seen, 0);
}

fn prev_common(prev: &PendingEvent) -> &audit_common::event::ActionCommon {
    unsafe {
        &*prev
            .body
            .as_ptr()
            .cast::<audit_common::event::ActionCommon>()
    }
}

/// Copies the `exe` section of an earlier replacement record into a new section of `ev`.
#[inline(always)]
fn copy_exe_section(ev: &mut PendingEvent, prev: &PendingEvent) {
    let span = prev_common(prev).sections.exe;
    let len = usize::from(span.len);
    if len == 0 || len > WALK_MAX {
        return;
    }
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let src = prev
        .body
        .as_ptr()
        .wrapping_add(VAR_OFFSET + usize::from(span.off));
    let r = unsafe { generated::bpf_probe_read_kernel(dst.cast(), len as u32, src.cast()) };
    if r == 0 {
        sec.commit(ev, |c| &mut c.sections.exe, len as u32);
        ev.header.flags |= flags::EXE_PATH;
    }
}

/// Whether any process has a replaced executable (else exec, fork and exit skip the lookup).
#[inline(always)]
pub fn any_replaced() -> bool {
    EXE_REPLACED_COUNT.get(0).is_some_and(|n| *n != 0)
}

#[inline(always)]
fn replaced_count_add(delta: i64) {
    if let Some(n) = EXE_REPLACED_COUNT.get_ptr_mut(0) {
        atomic_add(n, delta as u64);
    }
}

/// Writes the replacement record of a process the agent had not seen when it made it
/// (`BEFORE_WATCH`), once.
#[inline(always)]
pub fn report_before_watch(tgid: u32) {
    if !any_replaced() {
        return;
    }
    let Some(r) = EXE_REPLACED.get_ptr_mut(&tgid) else {
        return;
    };
    let r = unsafe { &mut *r };
    let b = unsafe { &mut *r.body.as_mut_ptr().cast::<SetExeBody>() };
    if b.reported != 0 {
        return;
    }
    b.reported = 1;
    r.header.flags |= flags::BEFORE_WATCH;
    // Written as it is: the entry stays a record (a fork child's copy may be reported later).
    let len = (audit_common::event::HEADER_LEN + usize::from(r.header.body_len))
        .min(core::mem::size_of::<PendingEvent>());
    output(r, len, EventKind::SetExe as usize, ring_used());
}

/// At exec (the new image's executable is the file loaded) and exit: forget the replacement.
/// Returns whether there was one.
#[inline(always)]
pub fn forget(tgid: u32) -> bool {
    if any_replaced() && EXE_REPLACED.remove(&tgid).is_ok() {
        replaced_count_add(-1);
        return true;
    }
    false
}

/// At fork: the child inherits the mm's `exe_file`, and so the replacement (and the executable
/// its records carry).
#[inline(always)]
pub fn inherit(parent: u32, child: u32) {
    if !any_replaced() {
        return;
    }
    let Some(r) = EXE_REPLACED.get_ptr(&parent) else {
        return;
    };
    if EXE_REPLACED.insert(&child, unsafe { &*r }, 0).is_ok() {
        replaced_count_add(1);
    }
    if let Some(seen) = unsafe { EXE_SEEN.get(&parent) } {
        let seen = copy_of(seen);
        let _ = EXE_SEEN.insert(&child, &seen, 0);
    }
}
