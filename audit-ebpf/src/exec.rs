//! execve / execveat, and `sched_process_exec` for the kernel's own copy of what was executed.
//!
//! Entry copies the requested path and argv into the thread's pending slot. On success the kernel
//! fires `sched_process_exec` (in the new image, before returning to user space): we replace the
//! path with the kernel's filename and emit there, with result 0. On failure, `sys_exit_*` emits
//! the record with the requested path and the errno.

use audit_common::event::{
    ARG_MAX_BYTES, ARGV_MAX_ARGS, ARGV_MAX_BYTES, EXEC_VAR_OFFSET, EventKind, ExecBody, PATH_MAX,
    Syscall, flags,
};
use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    filter::is_watched,
    maps::PENDING,
    offsets::{off, tp_read},
    pending::{
        begin, count, emit, finish, read_kernel_str, read_user_str, remove_slot, user_str_continues,
    },
};

const AT_FDCWD: i32 = -100;

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let _ = try_enter_exec(&ctx, Syscall::Execve);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_enter_exec(&ctx, Syscall::Execveat);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execve")]
pub fn sys_exit_execve(ctx: TracePointContext) -> u32 {
    let _ = try_exit_exec(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_execveat")]
pub fn sys_exit_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_exit_exec(&ctx);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

#[inline(always)]
fn try_enter_exec(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let (dirfd, filename, argv, at_flags): (i32, u64, u64, u32) = match syscall {
        Syscall::Execveat => (
            tp_read::<u64>(ctx, off!(execveat_fd))? as i32,
            tp_read(ctx, off!(execveat_filename))?,
            tp_read(ctx, off!(execveat_argv))?,
            tp_read::<u64>(ctx, off!(execveat_flags))? as u32,
        ),
        _ => (
            AT_FDCWD,
            tp_read(ctx, off!(execve_filename))?,
            tp_read(ctx, off!(execve_argv))?,
            0,
        ),
    };
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Exec, syscall)? };
    let body = ev.body.as_mut_ptr();
    let var = unsafe { body.add(EXEC_VAR_OFFSET) };

    let mut ev_flags = 0u16;
    let mut argv_len = 0usize;
    let mut argc = 0u32;
    let argv = argv as *const *const u8;
    let mut i = 0usize;
    while i < ARGV_MAX_ARGS {
        let arg = match unsafe { bpf_probe_read_user(argv.wrapping_add(i)) } {
            Ok(p) => p,
            Err(_) => {
                ev_flags |= flags::ARGV_FAULT;
                break;
            }
        };
        if arg.is_null() {
            break;
        }
        if argv_len >= ARGV_MAX_BYTES {
            ev_flags |= flags::ARGV_TRUNCATED;
            break;
        }
        // Verifier: the mask keeps the write offset provably below ARGV_MAX_BYTES, and the body has
        // room for ARG_MAX_BYTES more after it.
        let at = argv_len & (ARGV_MAX_BYTES - 1);
        match read_user_str(unsafe { var.add(at) }, ARG_MAX_BYTES as u32, arg) {
            Ok(n) => {
                if n as usize == ARG_MAX_BYTES && user_str_continues(arg, ARG_MAX_BYTES as u32) {
                    ev_flags |= flags::ARGV_TRUNCATED;
                }
                argv_len += n as usize;
                argc += 1;
            }
            Err(_) => {
                ev_flags |= flags::ARGV_FAULT;
                break;
            }
        }
        i += 1;
    }
    if i == ARGV_MAX_ARGS {
        // Are there more arguments than we keep?
        if let Ok(p) = unsafe { bpf_probe_read_user(argv.wrapping_add(ARGV_MAX_ARGS)) } {
            if !p.is_null() {
                ev_flags |= flags::ARGV_TRUNCATED;
            }
        }
    }
    if argv_len > ARGV_MAX_BYTES {
        argv_len = ARGV_MAX_BYTES;
        ev_flags |= flags::ARGV_TRUNCATED;
    }

    let at = argv_len & (2 * ARGV_MAX_BYTES - 1);
    let at = if at > ARGV_MAX_BYTES {
        ARGV_MAX_BYTES
    } else {
        at
    };
    let filename = filename as *const u8;
    let path_len = match read_user_str(unsafe { var.add(at) }, PATH_MAX as u32, filename) {
        Ok(n) => {
            if n as usize == PATH_MAX && user_str_continues(filename, PATH_MAX as u32) {
                ev_flags |= flags::PATH_TRUNCATED;
            }
            n
        }
        Err(_) => {
            ev_flags |= flags::PATH_FAULT;
            0
        }
    };
    if ev_flags & flags::ARGV_TRUNCATED != 0 {
        count(|c| c.argv_truncated += 1);
    }
    if ev_flags & flags::PATH_TRUNCATED != 0 {
        count(|c| c.path_truncated += 1);
    }

    let fixed = body.cast::<ExecBody>();
    unsafe {
        (*fixed).dirfd = dirfd;
        (*fixed).at_flags = at_flags;
        (*fixed).argc = argc;
        (*fixed).argv_len = at as u32;
        (*fixed).path_len = path_len;
    }
    ev.header.flags = ev_flags;
    ev.header.body_len = (EXEC_VAR_OFFSET + at + path_len as usize) as u16;
    Ok(())
}

#[inline(always)]
fn try_exit_exec(ctx: &TracePointContext) -> Result<(), i64> {
    // Success was already reported by sched_process_exec (the slot is idle then).
    finish(ctx, EventKind::Exec)
}

fn try_sched_process_exec(ctx: &TracePointContext) -> Result<(), i64> {
    let pid: i32 = tp_read(ctx, off!(sched_exec_pid))?;
    let old_pid: i32 = tp_read(ctx, off!(sched_exec_old_pid))?;
    let old_tid = old_pid as u32;
    let Some(ev) = PENDING.get_ptr_mut(old_tid) else {
        return Ok(());
    };
    let ev = unsafe { &mut *ev };
    if ev.header.kind != EventKind::Exec as u16 {
        return Ok(());
    }
    let body = ev.body.as_mut_ptr();
    let fixed = body.cast::<ExecBody>();
    let argv_len = unsafe { (*fixed).argv_len } as usize;
    let at = argv_len & (2 * ARGV_MAX_BYTES - 1);
    let at = if at > ARGV_MAX_BYTES {
        ARGV_MAX_BYTES
    } else {
        at
    };

    // `__data_loc char[] filename`: low 16 bits are the offset of the string in the record.
    let loc: u32 = tp_read(ctx, off!(sched_exec_filename))?;
    let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
    if let Ok(n) = read_kernel_str(
        unsafe { body.add(EXEC_VAR_OFFSET + at) },
        PATH_MAX as u32,
        src,
    ) {
        unsafe { (*fixed).path_len = n };
        ev.header.flags &= !(flags::PATH_TRUNCATED | flags::PATH_FAULT);
        ev.header.flags |= flags::KERNEL_FILENAME;
        ev.header.body_len = (EXEC_VAR_OFFSET + at + n as usize) as u16;
    }
    ev.header.retval = 0;
    emit(ev);
    if pid != old_pid {
        // A non-leader thread called exec and took over the leader's pid: its old tid is gone
        // without an exit event of its own, so drop its slot here.
        remove_slot(old_tid);
    }
    Ok(())
}
