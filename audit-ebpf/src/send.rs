//! Sending to an address without connecting: sendto, sendmsg and sendmmsg with a destination
//! (UDP, unix datagrams, TCP Fast Open). Entry: the destination as passed; the cgroup
//! `sendmsg4/6` programs (and `connect4/6` for Fast Open) add the kernel's own copy; exit: the
//! result (bytes sent). Sends without an address go to a connected peer, already recorded by its
//! connect.

use audit_common::event::{ConnectBody, EventKind, Syscall};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{cgroup_sock_addr, raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, SockAddrContext, TracePointContext},
};

use crate::{
    connect::{address_as_passed, kernel_address},
    emit::finish_raw,
    filter::is_watched,
    helpers::{count, zero},
    offsets::sys_arg,
    packet::mark_socket,
    pending::{begin, current_tid, fixed, in_flight, set_result},
    sections::base_section,
    socket::{AF_INET, AF_INET6, AF_UNIX, socket_of},
};

const AT_FDCWD: i32 = -100;

#[tracepoint]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::Sendto);
    0
}

#[tracepoint]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::Sendmsg);
    0
}

#[tracepoint]
pub fn sys_enter_sendmmsg(ctx: TracePointContext) -> u32 {
    let _ = try_enter(&ctx, Syscall::Sendmmsg);
    0
}

/// The exit of every send (one program attached to each).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_sends(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    let cookie = mark_socket(&ctx);
    let _ = kernel_address(&ctx, AF_INET, cookie);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    let cookie = mark_socket(&ctx);
    let _ = kernel_address(&ctx, AF_INET6, cookie);
    1
}

/// `struct user_msghdr`: the destination and its length come first.
#[repr(C)]
#[derive(Clone, Copy)]
struct MsgName {
    name: u64,
    namelen: u32,
}

/// (fd, destination pointer, its length) of a send; `None` without a destination.
#[inline(always)]
fn destination(ctx: &TracePointContext, syscall: Syscall) -> Result<Option<(i32, u64, u32)>, i64> {
    let fd = sys_arg(ctx, 0)? as i32;
    let (addr, len) = match syscall {
        Syscall::Sendto => (sys_arg(ctx, 4)?, sys_arg(ctx, 5)? as u32),
        // sendmsg's `struct user_msghdr`, or sendmmsg's first `struct mmsghdr` (it starts with
        // one): the destination of the first message.
        _ => {
            let msg = sys_arg(ctx, 1)?;
            let m = unsafe { bpf_probe_read_user(msg as *const MsgName) }.map_err(i64::from)?;
            (m.name, m.namelen)
        }
    };
    Ok((addr != 0).then_some((fd, addr, len)))
}

#[inline(always)]
fn try_enter(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let Some((fd, addr, addrlen)) = destination(ctx, syscall)? else {
        return Ok(());
    };
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Send, syscall)? };
    let body = fixed::<ConnectBody>(ev);
    body.fd = fd;
    body.addrlen = addrlen;
    body.user_addr = addr;
    zero(&mut body.kaddr);
    body.cookie = 0;
    body.sk = socket_of(i64::from(fd)).map_or(0, |(sk, _)| sk as u64);
    address_as_passed(ev, addr, addrlen);
    Ok(())
}

#[inline(always)]
fn try_exit(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Send) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let (user, addrlen) = {
        let b = fixed::<ConnectBody>(ev);
        (b.user_addr, b.addrlen)
    };
    if ev.header.flags & audit_common::event::flags::ADDR_FAULT != 0 {
        ev.header.flags &= !audit_common::event::flags::ADDR_FAULT;
        address_as_passed(ev, user, addrlen);
        if ev.header.flags & audit_common::event::flags::ADDR_FAULT != 0 {
            count(|c| c.addr_fault += 1);
        }
    }
    let b = fixed::<ConnectBody>(ev);
    let family = u16::from_ne_bytes([b.addr[0], b.addr[1]]);
    if family == AF_UNIX && b.addr[2] != 0 {
        // A unix path: resolved against the cwd as the kernel sees it now.
        base_section(ev, AT_FDCWD, false);
    }
    finish_raw(ctx, ev);
    Ok(())
}
