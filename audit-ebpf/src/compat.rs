//! 32-bit system calls: `int 0x80` (from any process, even a 64-bit one), and ia32 `sysenter` /
//! `syscall`. The `syscalls:sys_enter_*` tracepoints skip them (ftrace ignores compat calls on
//! x86-64), so without this a watched process could open, connect or unlink unseen.
//!
//! Hooks: raw tracepoints `sys_enter` / `sys_exit` (every system call of every task), which leave
//! at once unless the task is in a compat call (`TS_COMPAT` in `thread_info.status`, one kernel
//! read) and watched. Entry: the ia32 number and the six argument registers as passed, the path
//! arguments read from the process's memory; exit: the result, the file behind a returned fd
//! (opens) and the directories relative paths were resolved from. The cgroup `connect4/6` and
//! `sendmsg4/6` programs add the kernel's copy of a destination. User space names the call
//! (`syscall: "ia32:open"`) and records it as the action it is.

use audit_common::event::{CompatBody, EventKind, KernelAddr, Syscall};
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

/// Raw `sys_enter`: `(struct pt_regs *regs, long id)`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_sys_enter(ctx: RawTracePointContext) -> i32 {
    let _ = try_enter(&ctx);
    0
}

/// Raw `sys_exit`: `(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn compat_sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

/// The current task is in a 32-bit system call. This runs on every system call of the machine,
/// so it reads `thread_info.status` through the BTF-typed task pointer (a plain load, see
/// [`vfs::task_btf`]) instead of a `bpf_probe_read_kernel` helper call.
#[inline(always)]
fn in_compat_call() -> bool {
    vfs::btf_read::<u32>(vfs::task_btf(), off!(task_ts_status)) & TS_COMPAT != 0
}

#[inline(always)]
fn try_enter(ctx: &RawTracePointContext) -> Result<(), i64> {
    if !in_compat_call() {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let regs: *const u8 = ctx.arg(0);
    let nr: u64 = ctx.arg(1);
    let regs_at = [
        off!(regs_bx),
        off!(regs_cx),
        off!(regs_dx),
        off!(regs_si),
        off!(regs_di),
        off!(regs_bp),
    ];
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Compat, Syscall::Compat)? };
    let b = fixed::<CompatBody>(ev);
    b.nr = nr as u32;
    b._pad = 0;
    b.kaddr = KernelAddr {
        family: 0,
        port: 0,
        _pad: 0,
        ip: [0; 16],
    };
    b.cookie = 0;
    for (i, at) in regs_at.iter().enumerate() {
        // ia32 arguments are the low 32 bits of each register.
        b.args[i] = u64::from(kread::<u32>(regs, *at).unwrap_or(0));
    }
    let args = b.args;
    let (_, path, _, path2, _) = layout(nr as u32);
    if let Some(p) = arg(&args, path) {
        user_path(ev, p, Which::First);
    }
    if let Some(p) = arg(&args, path2) {
        user_path(ev, p, Which::Second);
    }
    // ftruncate(64), fchmod, fchown(16): the file behind the fd (the same before and after).
    if matches!(nr, 93 | 194 | 94 | 95 | 207) {
        fd_section(ev, i64::from(args[0] as u32 as i32));
    }
    Ok(())
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
    if !in_compat_call() {
        return Ok(());
    }
    let Some(ev) = in_flight(current_tid(), EventKind::Compat) else {
        return Ok(());
    };
    let ret: i64 = ctx.arg(1);
    ev.header.retval = ret;
    let (nr, args) = {
        let b = fixed::<CompatBody>(ev);
        (b.nr, b.args)
    };
    let (dirfd, path, dirfd2, path2, returns_fd) = layout(nr);
    let dirfd_of = |i: i8| arg(&args, i).map_or(AT_FDCWD, |v| v as u32 as i32);
    if returns_fd && ret >= 0 {
        fd_section(ev, ret);
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
