//! openat, openat2, open and creat: the path as passed (up to PATH_MAX), dirfd, flags and mode at
//! entry; the result (fd or errno) at exit.

use audit_common::event::{EventKind, OPEN_PATH_OFFSET, OpenBody, PATH_MAX, Syscall, flags};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    filter::is_watched,
    offsets::{off, tp_read},
    pending::{begin, count, finish, read_user_str, user_str_continues},
};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u64 = 0o1;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;

macro_rules! open_hooks {
    ($($enter:ident, $exit:ident, $enter_tp:literal, $exit_tp:literal, $syscall:expr;)*) => {$(
        #[tracepoint(category = "syscalls", name = $enter_tp)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            let _ = try_enter_open(&ctx, $syscall);
            0
        }

        #[tracepoint(category = "syscalls", name = $exit_tp)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            let _ = try_exit_open(&ctx);
            0
        }
    )*};
}

open_hooks! {
    sys_enter_openat, sys_exit_openat, "sys_enter_openat", "sys_exit_openat", Syscall::Openat;
    sys_enter_openat2, sys_exit_openat2, "sys_enter_openat2", "sys_exit_openat2", Syscall::Openat2;
    sys_enter_open, sys_exit_open, "sys_enter_open", "sys_exit_open", Syscall::Open;
    sys_enter_creat, sys_exit_creat, "sys_enter_creat", "sys_exit_creat", Syscall::Creat;
}

/// `struct open_how` of openat2.
#[repr(C)]
#[derive(Clone, Copy)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[inline(always)]
fn try_enter_open(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let (dirfd, filename, open_flags, mode, resolve): (i32, u64, u64, u64, u64) = match syscall {
        Syscall::Openat => (
            tp_read::<u64>(ctx, off!(openat_dfd))? as i32,
            tp_read(ctx, off!(openat_filename))?,
            tp_read(ctx, off!(openat_flags))?,
            tp_read(ctx, off!(openat_mode))?,
            0,
        ),
        Syscall::Openat2 => {
            let how: u64 = tp_read(ctx, off!(openat2_how))?;
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
        _ => (
            // creat(path, mode) is open(path, O_CREAT|O_WRONLY|O_TRUNC, mode).
            AT_FDCWD,
            tp_read(ctx, off!(creat_pathname))?,
            O_CREAT | O_WRONLY | O_TRUNC,
            tp_read(ctx, off!(creat_mode))?,
            0,
        ),
    };
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Open, syscall)? };
    let body = ev.body.as_mut_ptr();
    let filename = filename as *const u8;
    let mut ev_flags = 0u16;
    let path_len = match read_user_str(
        unsafe { body.add(OPEN_PATH_OFFSET) },
        PATH_MAX as u32,
        filename,
    ) {
        Ok(n) => {
            if n as usize == PATH_MAX && user_str_continues(filename, PATH_MAX as u32) {
                ev_flags |= flags::PATH_TRUNCATED;
                count(|c| c.path_truncated += 1);
            }
            n
        }
        Err(_) => {
            ev_flags |= flags::PATH_FAULT;
            0
        }
    };
    let fixed = body.cast::<OpenBody>();
    unsafe {
        (*fixed).dirfd = dirfd;
        (*fixed).mode = mode as u32;
        (*fixed).flags = open_flags;
        (*fixed).resolve = resolve;
        (*fixed).path_len = path_len;
    }
    ev.header.flags = ev_flags;
    ev.header.body_len = (OPEN_PATH_OFFSET + path_len as usize) as u16;
    Ok(())
}

#[inline(always)]
fn try_exit_open(ctx: &TracePointContext) -> Result<(), i64> {
    finish(ctx, EventKind::Open)
}
