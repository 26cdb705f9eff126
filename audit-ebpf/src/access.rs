//! Reaching into another process: ptrace, process_vm_readv/writev, and pidfd_getfd (which takes
//! a file out of another process's fd table). Entry: the target as passed, the request. Exit:
//! the result; for pidfd_getfd the file obtained (from the new fd, in the kernel) and the target
//! from the pidfd's own `struct pid` (the kernel's number, whatever namespace the caller is in).

use audit_common::event::{AccessBody, EventKind, Syscall};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::finish_raw,
    filter::is_watched,
    offsets::{kptr, kread, off, sys_arg},
    pending::{begin, current_tid, fixed, in_flight, set_result},
    sections::fd_section,
    vfs,
};

#[tracepoint]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::Ptrace);
    0
}

#[tracepoint]
pub fn sys_enter_process_vm_readv(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::ProcessVmReadv);
    0
}

#[tracepoint]
pub fn sys_enter_process_vm_writev(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::ProcessVmWritev);
    0
}

#[tracepoint]
pub fn sys_enter_pidfd_getfd(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::PidfdGetfd);
    0
}

/// The exit of every access call (one program attached to each).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_access(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

/// The level of a `struct pid` (0: the initial pid namespace) and its number there.
#[inline(always)]
fn pid_level_and_nr(pid: *const u8) -> Result<(u32, u32), i64> {
    let level: u32 = kread(pid, off!(pid_level))?;
    let nr: u32 = kread(pid, off!(pid_numbers))?;
    Ok((level, nr))
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let caller_level = vfs::btf_ptr(vfs::task_btf(), off!(task_thread_pid))
        .and_then(pid_level_and_nr)
        .map_or(0, |(level, _)| level);
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Access, syscall)? };
    let b = fixed::<AccessBody>(ev);
    b.caller_ns_level = caller_level;
    b.pid_from_kernel = 0;
    b.target_fd = -1;
    b.request = 0;
    b.addr = 0;
    match syscall {
        Syscall::Ptrace => {
            b.request = sys_arg(ctx, 0)?;
            b.target_pid = sys_arg(ctx, 1)? as u32;
            b.addr = sys_arg(ctx, 2)?;
        }
        Syscall::PidfdGetfd => {
            let pidfd = sys_arg(ctx, 0)? as i32;
            b.target_fd = sys_arg(ctx, 1)? as i32;
            // The pidfd's inode (pidfs, Linux >= 6.9) or file (anonymous inode, before) holds
            // the target's `struct pid`.
            let nr = vfs::fd_file(i64::from(pidfd))
                .and_then(|f| {
                    kptr(f, off!(file_inode))
                        .and_then(|i| kptr(i, off!(inode_private)))
                        .or_else(|_| kptr(f, off!(file_private_data)))
                })
                .and_then(pid_level_and_nr);
            if let Ok((_, nr)) = nr {
                b.target_pid = nr;
                b.pid_from_kernel = 1;
            }
        }
        _ => {
            b.target_pid = sys_arg(ctx, 0)? as u32;
            b.request = sys_arg(ctx, 4)?;
        }
    }
    Ok(())
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Access) else {
        return Ok(());
    };
    set_result(ctx, ev);
    if ev.header.syscall == Syscall::PidfdGetfd as u16 && ev.header.retval >= 0 {
        fd_section(ev, ev.header.retval);
    }
    finish_raw(ctx, ev);
    Ok(())
}
