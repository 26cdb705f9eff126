//! connect: the socket address as passed (family, address, port or unix path) at entry, the
//! result at exit (`EINPROGRESS` for a non-blocking socket still connecting).

use audit_common::event::{ConnectBody, EventKind, SOCKADDR_MAX, Syscall, flags};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    filter::is_watched,
    offsets::{off, tp_read},
    pending::{begin, finish},
};

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_enter_connect(&ctx);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let _ = try_exit_connect(&ctx);
    0
}

#[inline(always)]
fn try_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let fd: u64 = tp_read(ctx, off!(connect_fd))?;
    let addr: u64 = tp_read(ctx, off!(connect_uservaddr))?;
    let addrlen: u64 = tp_read(ctx, off!(connect_addrlen))?;
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Connect, Syscall::Connect)? };
    let body = ev.body.as_mut_ptr().cast::<ConnectBody>();
    let addrlen = addrlen as u32;
    // Verifier: the read size must be provably bounded by the destination.
    let mut n = addrlen & 0xff;
    if n as usize > SOCKADDR_MAX {
        n = SOCKADDR_MAX as u32;
    }
    unsafe {
        (*body).fd = fd as i32;
        (*body).addrlen = addrlen;
        (*body).addr = [0; SOCKADDR_MAX];
    }
    let r = unsafe {
        generated::bpf_probe_read_user((&raw mut (*body).addr).cast(), n, addr as *const _)
    };
    ev.header.flags = if r != 0 { flags::ADDR_FAULT } else { 0 };
    ev.header.body_len = core::mem::size_of::<ConnectBody>() as u16;
    Ok(())
}

#[inline(always)]
fn try_exit_connect(ctx: &TracePointContext) -> Result<(), i64> {
    finish(ctx, EventKind::Connect)
}
