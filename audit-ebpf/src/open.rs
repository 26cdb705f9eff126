//! openat, openat2, open and creat. Entry: what the process passed (path, dirfd, flags, mode).
//! Exit: the result and what the kernel acted on — for a returned fd, the file behind it (its
//! kernel path, device, inode, mount); for a failure, the directory the path was to be resolved
//! from. A requested path the process's memory did not yield at entry is read again at exit.

use audit_common::event::{EventKind, OpenBody, Syscall};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::finish_raw,
    filter::is_watched,
    offsets::{enter_arg, off, sys_arg, tp_read},
    pending::{begin, current_tid, fixed, in_flight, set_result},
    sections::{base_section, fd_section, requested_path, retry_requested},
};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
/// `RESOLVE_IN_ROOT`: an absolute path is resolved from the dirfd.
const RESOLVE_IN_ROOT: u64 = 0x10;

macro_rules! open_hooks {
    ($($enter:ident, $enter_tp:literal, $syscall:expr;)*) => {$(
        #[tracepoint(category = "syscalls", name = $enter_tp)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = try_enter_open(&ctx, $syscall);
            0
        }
    )*};
}

open_hooks! {
    sys_enter_openat, "sys_enter_openat", Syscall::Openat;
    sys_enter_openat2, "sys_enter_openat2", Syscall::Openat2;
    sys_enter_open, "sys_enter_open", Syscall::Open;
    sys_enter_creat, "sys_enter_creat", Syscall::Creat;
    sys_enter_open_by_handle_at, "sys_enter_open_by_handle_at", Syscall::OpenByHandleAt;
}

/// The exit of every open variant: one program attached to each `sys_exit_*` (everything it
/// needs is in the slot; one program is verified once).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_opens(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_open(&ctx);
    0
}

/// `struct open_how` of openat2.
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// (dirfd, filename pointer, flags, mode, resolve) as passed.
#[inline(always)]
fn arguments(ctx: &TracePointContext, syscall: Syscall) -> Result<(i32, u64, u64, u64, u64), i64> {
    Ok(match syscall {
        // openat(dfd, filename, flags, mode): the hottest hook, so plain context loads.
        Syscall::Openat => (
            enter_arg::<0>(ctx) as i32,
            enter_arg::<1>(ctx),
            enter_arg::<2>(ctx),
            enter_arg::<3>(ctx),
            0,
        ),
        Syscall::Openat2 => {
            let how: u64 = tp_read(ctx, off!(openat2_how))?;
            // The kernel copies `how` before using it; a value it could not read fails the
            // syscall with EFAULT, so an unreadable one here is recorded as zeros.
            let how = unsafe { bpf_probe_read_user(how as *const OpenHow) }.unwrap_or(OpenHow {
                flags: 0,
                mode: 0,
                resolve: 0,
            });
            (
                tp_read::<u64>(ctx, off!(openat2_dfd))? as i32,
                tp_read(ctx, off!(openat2_filename))?,
                how.flags,
                how.mode,
                how.resolve,
            )
        }
        Syscall::Open => (
            AT_FDCWD,
            tp_read(ctx, off!(open_filename))?,
            tp_read(ctx, off!(open_flags))?,
            tp_read(ctx, off!(open_mode))?,
            0,
        ),
        // open_by_handle_at(mount_fd, handle, flags): no path, only a handle; the file is known
        // at exit from the returned fd.
        Syscall::OpenByHandleAt => (sys_arg(ctx, 0)? as i32, 0, sys_arg(ctx, 2)?, 0, 0),
        // creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode).
        _ => (
            AT_FDCWD,
            tp_read(ctx, off!(creat_pathname))?,
            O_CREAT | O_WRONLY | O_TRUNC,
            tp_read(ctx, off!(creat_mode))?,
            0,
        ),
    })
}

#[inline(always)]
fn try_enter_open(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let (dirfd, filename, open_flags, mode, resolve) = arguments(ctx, syscall)?;
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Open, syscall)? };
    let body = fixed::<OpenBody>(ev);
    body.dirfd = dirfd;
    body.mode = mode as u32;
    body.flags = open_flags;
    body.resolve = resolve;
    body.user_path = filename;
    if filename != 0 {
        requested_path(ev, filename);
    }
    Ok(())
}

#[inline(always)]
fn try_exit_open(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Open) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let (user, dirfd, resolve) = {
        let b = fixed::<OpenBody>(ev);
        (b.user_path, b.dirfd, b.resolve)
    };
    retry_requested(ev, user);
    if ev.header.retval >= 0 {
        fd_section(ev, ev.header.retval);
    } else if user != 0 {
        base_section(ev, dirfd, resolve & RESOLVE_IN_ROOT != 0);
    }
    finish_raw(ctx, ev);
    Ok(())
}
