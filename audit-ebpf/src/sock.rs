//! The final state of a non-blocking connect. The cgroup `connect4/6` program registers the
//! socket of a watched non-blocking connect in `CONNECTING` (by its cookie, `connect.rs`); this
//! cgroup `sock_ops` program, attached with it where the watched cgroups are (`cover.rs` in user
//! space), asks the kernel for the socket's state changes when it sends its SYN
//! (`BPF_SOCK_OPS_TCP_CONNECT_CB`), and when the socket leaves `SYN_SENT` — established, refused
//! (RST), timed out, reset, or closed by the process — a [`ConnectOutcome`] names the connect
//! record it completes (its tid and entry time). The error is the socket's own `sk_err`, set by
//! the kernel before it moves the socket to CLOSE.
//!
//! Why not the `sock:inet_sock_set_state` tracepoint: it fires for every TCP state change of
//! every socket on the host (two to three per connection), each a program run; `sock_ops` runs
//! only for sockets created below the cgroup it is attached to, and state callbacks only for the
//! sockets that asked for them. While no connect is followed (`CONNECTING_COUNT` is zero) it
//! leaves after one array read.

use audit_common::event::{ConnectOutcome, EventKind, FixedEvent, HEADER_LEN};
use aya_ebpf::{
    bindings::{BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB},
    helpers::{bpf_ktime_get_boot_ns, generated},
    macros::sock_ops,
    programs::SockOpsContext,
};

use crate::{
    connect::unfollow_async,
    emit::{ring_used, submit_flags},
    helpers::count,
    maps::{CONNECTING, CONNECTING_COUNT, EVENTS},
    offsets::off,
    vfs,
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;

#[sock_ops]
pub fn connect_states(ctx: SockOpsContext) -> u32 {
    let _ = try_connect_states(&ctx);
    1
}

#[inline(always)]
fn try_connect_states(ctx: &SockOpsContext) -> Result<(), i64> {
    if !CONNECTING_COUNT.get(0).is_some_and(|n| *n != 0) {
        return Ok(());
    }
    let op = ctx.op();
    if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        let cookie = unsafe { generated::bpf_get_socket_cookie(ctx.ops.cast()) };
        if unsafe { CONNECTING.get(&cookie) }.is_some() {
            ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32)
                .map_err(i64::from)?;
        }
    } else if op == BPF_SOCK_OPS_STATE_CB {
        let (old, new) = (ctx.arg(0) as i32, ctx.arg(1) as i32);
        if old == TCP_SYN_SENT && new != TCP_SYN_SENT {
            left_syn_sent(ctx, new)?;
        }
    }
    Ok(())
}

/// The socket left `SYN_SENT` for `new`: its connect record's outcome.
#[inline(always)]
fn left_syn_sent(ctx: &SockOpsContext, new: i32) -> Result<(), i64> {
    let cookie = unsafe { generated::bpf_get_socket_cookie(ctx.ops.cast()) };
    let Some(h) = (unsafe { CONNECTING.get(&cookie) }).copied() else {
        return Ok(());
    };
    let error = if new == TCP_ESTABLISHED {
        0
    } else {
        sock_err(ctx)
    };
    unfollow_async(cookie);
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<ConnectOutcome>>(0) else {
        count(|c| c.ringbuf_full[EventKind::ConnectOutcome as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.header = h;
    ev.header.kind = EventKind::ConnectOutcome as u16;
    ev.header.body_len = (core::mem::size_of::<FixedEvent<ConnectOutcome>>() - HEADER_LEN) as u16;
    ev.body = ConnectOutcome {
        cookie,
        at_ns: unsafe { bpf_ktime_get_boot_ns() },
        new_state: new as u32,
        error,
    };
    entry.submit(submit_flags(ring_used()));
    count(|c| c.emitted[EventKind::ConnectOutcome as usize] += 1);
    Ok(())
}

/// `sk->sk_err` of the callback's socket, through its BTF-typed `tcp_sock` (whose first member is
/// the `struct sock`); 0 when it cannot be had.
#[inline(always)]
fn sock_err(ctx: &SockOpsContext) -> u32 {
    let sk = unsafe { (*ctx.ops).__bindgen_anon_2.sk };
    if sk.is_null() {
        return 0;
    }
    let tp = unsafe { generated::bpf_skc_to_tcp_sock(sk.cast()) } as *const u8;
    if tp.is_null() {
        return 0;
    }
    vfs::btf_read::<i32>(tp, off!(sock_err)) as u32
}
