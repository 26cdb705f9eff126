//! 32-bit system calls: `int 0x80` (from any process, even a 64-bit one), and ia32 `sysenter` /
//! `syscall`. The `syscalls:sys_enter_*` tracepoints skip them (ftrace ignores compat calls on
//! x86-64), so without this a watched process could open, connect or unlink unseen.
//!
//! Hook: the raw `sys_exit` program (`sys_exit.rs`; every system call of every task passes it,
//! and a raw hook costs each call a program run, so there is no `sys_enter` one) tail-calls
//! [`compat_exit`] when the task is in a compat call (`TS_COMPAT` in `thread_info.status`, one
//! kernel read), which leaves unless the task is watched. When the call returns: its ia32 number
//! and six argument registers as passed (left unchanged by the kernel), the path arguments read
//! from the process's memory, the result, the file behind a returned fd (opens) and the
//! directories relative paths were resolved from. The cgroup `connect4/6` and `sendmsg4/6`
//! programs, which run during the call, begin the record with the kernel's copy of a
//! destination. The record's time is the call's return. User space names the call
//! (`syscall: "ia32:open"`) and records it as the action it is.

use audit_common::event::{CompatBody, EventKind, KernelAddr, PendingEvent, Syscall, flags};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::raw_tracepoint, programs::RawTracePointContext,
};

use crate::{
    emit::finish_raw,
    filter::is_watched,
    offsets::{kread, off},
    pending::{begin, current_tid, fixed, in_flight},
    sections::{Which, base_of, fd_section, user_path},
    vfs,
};

/// `TS_COMPAT` (arch/x86/include/asm/thread_info.h).
const TS_COMPAT: u32 = 0x0002;
const AT_FDCWD: i32 = -100;

/// Where an ia32 system call's paths are: (dirfd, path, second dirfd, second path) argument
/// indices, -1 for none; and whether it returns a new fd.
#[inline(always)]
fn layout(nr: u32) -> (i8, i8, i8, i8, bool) {
    match nr {
        // open, creat
        5 | 8 => (-1, 0, -1, -1, true),
        // openat, openat2
        295 | 437 => (0, 1, -1, -1, true),
        // open_by_handle_at: no path
        342 => (-1, -1, -1, -1, true),
        // unlink, rmdir, chmod, lchown16, truncate, mkdir, chown16, lchown, chown, execve
        10 | 40 | 15 | 16 | 92 | 39 | 182 | 198 | 212 | 11 | 193 => (-1, 0, -1, -1, false),
        // unlinkat, fchmodat, fchownat, mkdirat, fchmodat2, execveat
        301 | 306 | 298 | 296 | 452 | 358 => (0, 1, -1, -1, false),
        // rename, link: (old, new); symlink: (content, linkpath)
        38 | 9 => (-1, 0, -1, 1, false),
        83 => (-1, 1, -1, 0, false),
        // renameat, renameat2, linkat
        302 | 353 | 303 => (0, 1, 2, 3, false),
        // symlinkat(content, dirfd, linkpath)
        304 => (1, 2, -1, 0, false),
        _ => (-1, -1, -1, -1, false),
    }
}

/// The return of a 32-bit call: `(struct pt_regs *regs, long ret)`, tail-called from
/// `sys_exit.rs` (never attached).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

/// The current task is in a 32-bit system call. This is tested on every system call of the machine,
/// so it reads `thread_info.status` through the BTF-typed task pointer (a plain load, see
/// [`vfs::task_btf`]) instead of a `bpf_probe_read_kernel` helper call. `TS_COMPAT` stays set
/// until the return to user space, after the `sys_exit` tracepoint.
#[inline(always)]
pub fn in_compat_call() -> bool {
    task_in_compat_call(vfs::task_btf())
}

/// [`in_compat_call`] of the current task's BTF-typed pointer ([`vfs::task_btf`]).
#[inline(always)]
pub fn task_in_compat_call(task: *const u8) -> bool {
    vfs::btf_read::<u32>(task, off!(task_ts_status)) & TS_COMPAT != 0
}

/// Begins the current thread's compat record (the kernel's copy of a destination may come
/// before the call returns, from a cgroup `connect4/6` or `sendmsg4/6` program).
#[inline(always)]
pub fn begin_compat(pid_tgid: u64) -> Result<&'static mut PendingEvent, i64> {
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Compat, Syscall::Compat)? };
    let b = fixed::<CompatBody>(ev);
    b.nr = 0;
    b._pad = 0;
    b.kaddr = KernelAddr {
        family: 0,
        port: 0,
        _pad: 0,
        ip: [0; 16],
    };
    b.cookie = 0;
    Ok(ev)
}

/// The call's number and its six argument registers as passed: the kernel leaves a compat
/// call's argument registers as they were (only `ax` holds the result), except after a
/// successful exec, whose registers are the new image's: then none are read (the exec itself is
/// recorded from the kernel's `linux_binprm`, `exec.rs`).
#[inline(always)]
fn arguments(ev: &mut PendingEvent, regs: *const u8, ret: i64) -> Option<(u32, [u64; 6])> {
    let nr = kread::<u64>(regs, off!(regs_orig_ax)).unwrap_or(u64::MAX) as u32;
    let b = fixed::<CompatBody>(ev);
    b.nr = nr;
    if matches!(nr, 11 | 358) && ret == 0 {
        ev.header.flags |= flags::ARGS_UNREAD;
        return None;
    }
    let regs_at = [
        off!(regs_bx),
        off!(regs_cx),
        off!(regs_dx),
        off!(regs_si),
        off!(regs_di),
        off!(regs_bp),
    ];
    for (i, at) in regs_at.iter().enumerate() {
        // ia32 arguments are the low 32 bits of each register.
        b.args[i] = u64::from(kread::<u32>(regs, *at).unwrap_or(0));
    }
    Some((nr, b.args))
}

#[inline(always)]
fn arg(args: &[u64; 6], i: i8) -> Option<u64> {
    if i < 0 {
        return None;
    }
    args.get(i as usize).copied()
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = match in_flight(current_tid(), EventKind::Compat) {
        Some(ev) => ev,
        None if is_watched(pid_tgid) => begin_compat(pid_tgid)?,
        None => return Ok(()),
    };
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    ev.header.retval = ret;
    let Some((nr, args)) = arguments(ev, regs, ret) else {
        finish_raw(ctx, ev);
        return Ok(());
    };
    let (dirfd, path, dirfd2, path2, returns_fd) = layout(nr);
    // The paths as the process passed them, read when the call returned.
    if let Some(p) = arg(&args, path) {
        ev.header.flags |= flags::PATH_AT_EXIT;
        user_path(ev, p, Which::First);
    }
    if let Some(p) = arg(&args, path2) {
        user_path(ev, p, Which::Second);
    }
    let dirfd_of = |i: i8| arg(&args, i).map_or(AT_FDCWD, |v| v as u32 as i32);
    if returns_fd && ret >= 0 {
        fd_section(ev, ret);
    } else if matches!(nr, 93 | 194 | 94 | 95 | 207) {
        // ftruncate(64), fchmod, fchown(16): the file behind the fd.
        fd_section(ev, i64::from(args[0] as u32 as i32));
    } else {
        if path >= 0 {
            base_of(ev, dirfd_of(dirfd), false, Which::First);
        }
        // A symlink's content (symlink, symlinkat) is not resolved.
        if path2 >= 0 && nr != 83 && nr != 304 {
            base_of(ev, dirfd_of(dirfd2), false, Which::Second);
        }
    }
    finish_raw(ctx, ev);
    Ok(())
}
