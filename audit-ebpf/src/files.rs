//! Changes to the file system without an open: unlink, rmdir, rename (exchange too), truncate,
//! chmod, chown, link, symlink, mkdir — every variant of each system call.
//!
//! Entry: what the process passed (paths, dirfds, mode, owner, length, flags); for an fd-based
//! change (`ftruncate`, `fchmod`, `fchown`) the file behind the fd, from the kernel. Exit: the
//! result, and the directories each path was resolved from as the kernel sees them (cwd, dirfd
//! or root, walked in the kernel) so user space can name the file absolutely. No tracepoint
//! hands the programs the dentry these calls act on (that would take kprobes or LSM hooks, not
//! available here): the names are what the process passed, and the record says so.

use audit_common::event::{EventKind, FileBody, Syscall};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::finish_raw,
    fd_walks::walk_fds_tp,
    filter::is_watched,
    offsets::arg_or,
    pending::{begin, current_tid, fixed, in_flight, set_result},
    sections::{Which, base_of, retry_requested, retry_second, user_path},
};

/// The cwd as a dirfd. With `AT_EMPTY_PATH` (an empty path) the dirfd itself is the file: its
/// base walk then names it.
const AT_FDCWD: i32 = -100;

/// Where a system call's arguments are: the index of each, or -1 when it has none.
#[derive(Clone, Copy)]
struct Args {
    dirfd: i8,
    path: i8,
    dirfd2: i8,
    path2: i8,
    fd: i8,
    mode: i8,
    uid: i8,
    gid: i8,
    length: i8,
    flags: i8,
}

const NONE: Args = Args {
    dirfd: -1,
    path: -1,
    dirfd2: -1,
    path2: -1,
    fd: -1,
    mode: -1,
    uid: -1,
    gid: -1,
    length: -1,
    flags: -1,
};

macro_rules! file_hooks {
    ($($enter:ident, $syscall:expr, $args:expr;)*) => {$(
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = try_enter(&ctx, $syscall, $args);
            0
        }
    )*};
}

/// The exit of every file change: one program attached to each `sys_exit_*` (everything it needs
/// is in the slot; one program is verified once instead of twenty-two).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_files(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

file_hooks! {
    sys_enter_unlink, Syscall::Unlink, Args { path: 0, ..NONE };
    sys_enter_unlinkat, Syscall::Unlinkat,
        Args { dirfd: 0, path: 1, flags: 2, ..NONE };
    sys_enter_rmdir, Syscall::Rmdir, Args { path: 0, ..NONE };
    sys_enter_rename, Syscall::Rename, Args { path: 0, path2: 1, ..NONE };
    sys_enter_renameat, Syscall::Renameat,
        Args { dirfd: 0, path: 1, dirfd2: 2, path2: 3, ..NONE };
    sys_enter_renameat2, Syscall::Renameat2,
        Args { dirfd: 0, path: 1, dirfd2: 2, path2: 3, flags: 4, ..NONE };
    sys_enter_truncate, Syscall::Truncate,
        Args { path: 0, length: 1, ..NONE };
    sys_enter_ftruncate, Syscall::Ftruncate,
        Args { fd: 0, length: 1, ..NONE };
    sys_enter_chmod, Syscall::Chmod, Args { path: 0, mode: 1, ..NONE };
    sys_enter_fchmod, Syscall::Fchmod, Args { fd: 0, mode: 1, ..NONE };
    sys_enter_fchmodat, Syscall::Fchmodat,
        Args { dirfd: 0, path: 1, mode: 2, ..NONE };
    sys_enter_fchmodat2, Syscall::Fchmodat2,
        Args { dirfd: 0, path: 1, mode: 2, flags: 3, ..NONE };
    sys_enter_chown, Syscall::Chown, Args { path: 0, uid: 1, gid: 2, ..NONE };
    sys_enter_lchown, Syscall::Lchown, Args { path: 0, uid: 1, gid: 2, ..NONE };
    sys_enter_fchown, Syscall::Fchown, Args { fd: 0, uid: 1, gid: 2, ..NONE };
    sys_enter_fchownat, Syscall::Fchownat,
        Args { dirfd: 0, path: 1, uid: 2, gid: 3, flags: 4, ..NONE };
    sys_enter_link, Syscall::Link, Args { path: 0, path2: 1, ..NONE };
    sys_enter_linkat, Syscall::Linkat,
        Args { dirfd: 0, path: 1, dirfd2: 2, path2: 3, flags: 4, ..NONE };
    // symlink(content, linkpath): the file created is the second argument; the first is what
    // the link will contain (kept as the second path, never resolved).
    sys_enter_symlink, Syscall::Symlink, Args { path2: 0, path: 1, ..NONE };
    sys_enter_symlinkat, Syscall::Symlinkat,
        Args { path2: 0, dirfd: 1, path: 2, ..NONE };
    sys_enter_mkdir, Syscall::Mkdir, Args { path: 0, mode: 1, ..NONE };
    sys_enter_mkdirat, Syscall::Mkdirat,
        Args { dirfd: 0, path: 1, mode: 2, ..NONE };
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext, syscall: Syscall, a: Args) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let path = arg_or(ctx, a.path, 0)?;
    let path2 = arg_or(ctx, a.path2, 0)?;
    let fd = arg_or(ctx, a.fd, u64::MAX)? as i32;
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::File, syscall)? };
    let body = fixed::<FileBody>(ev);
    body.dirfd = arg_or(ctx, a.dirfd, AT_FDCWD as u64)? as i32;
    body.dirfd2 = arg_or(ctx, a.dirfd2, AT_FDCWD as u64)? as i32;
    body.fd = fd;
    body.mode = arg_or(ctx, a.mode, 0)? as u32;
    body.uid = arg_or(ctx, a.uid, u64::from(u32::MAX))? as u32;
    body.gid = arg_or(ctx, a.gid, u64::from(u32::MAX))? as u32;
    body.length = arg_or(ctx, a.length, 0)?;
    body.flags = arg_or(ctx, a.flags, 0)? as u32;
    body._pad = 0;
    body.user_path = path;
    body.user_path2 = path2;
    if a.path >= 0 {
        user_path(ev, path, Which::First);
    }
    if a.path2 >= 0 {
        user_path(ev, path2, Which::Second);
    }
    if a.fd >= 0 {
        // The file the change applies to, from the fd table (the same before and after), walked
        // in `fd_walks.rs`.
        walk_fds_tp(ctx, ev);
    }
    Ok(())
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::File) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let (user, user2, dirfd, dirfd2) = {
        let b = fixed::<FileBody>(ev);
        (b.user_path, b.user_path2, b.dirfd, b.dirfd2)
    };
    if user != 0 {
        retry_requested(ev, user);
        base_of(ev, dirfd, false, Which::First);
    }
    if user2 != 0 {
        retry_second(ev, user2);
        // A symlink's content is not a path the kernel resolves: no base for it.
        let syscall = ev.header.syscall;
        if syscall != Syscall::Symlink as u16 && syscall != Syscall::Symlinkat as u16 {
            base_of(ev, dirfd2, false, Which::Second);
        }
    }
    finish_raw(ctx, ev);
    Ok(())
}
