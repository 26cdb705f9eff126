//! The final state of a non-blocking connect. `connect.rs` registers the socket of a watched
//! non-blocking connect in `CONNECTING`; when the socket leaves `SYN_SENT` — established,
//! refused (RST), timed out, reset, or closed by the process — `sock:inet_sock_set_state` fires
//! and a [`ConnectOutcome`] names the connect record it completes (its tid and entry time). The
//! error is the socket's own `sk_err`, set by the kernel before it moves the socket to CLOSE.
//!
//! This tracepoint fires for every TCP state change on the host: while no connect is followed
//! (`CONNECTING_COUNT` is zero) it leaves after one array read. Attached raw (its arguments are
//! the socket and the two states): the perf tracepoint built a whole record of addresses and
//! ports for every state change before the program could leave. Only sockets `connect.rs`
//! registered are looked at, so other protocols' state changes (DCCP, SCTP) find nothing.

use audit_common::event::{ConnectOutcome, EventKind, FixedEvent, HEADER_LEN};
use aya_ebpf::{
    helpers::bpf_ktime_get_boot_ns, macros::raw_tracepoint, programs::RawTracePointContext,
};

use crate::{
    connect::unfollow_async,
    emit::{ring_used, submit_flags},
    helpers::count,
    maps::{CONNECTING, CONNECTING_COUNT, EVENTS},
    offsets::{kread, off},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;

/// Raw `inet_sock_set_state`: `(const struct sock *sk, int oldstate, int newstate)`.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> i32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn try_set_state(ctx: &RawTracePointContext) -> Result<(), i64> {
    if !CONNECTING_COUNT.get(0).is_some_and(|n| *n != 0) {
        return Ok(());
    }
    let sk: u64 = ctx.arg(0);
    let Some(h) = (unsafe { CONNECTING.get(&sk) }).copied() else {
        return Ok(());
    };
    let old = ctx.arg::<u64>(1) as i32;
    let new = ctx.arg::<u64>(2) as i32;
    if old != TCP_SYN_SENT || new == TCP_SYN_SENT {
        return Ok(());
    }
    let error = if new == TCP_ESTABLISHED {
        0
    } else {
        kread::<i32>(sk as *const u8, off!(sock_err)).unwrap_or(0) as u32
    };
    unfollow_async(sk);
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<ConnectOutcome>>(0) else {
        count(|c| c.ringbuf_full[EventKind::ConnectOutcome as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    ev.header = h;
    ev.header.kind = EventKind::ConnectOutcome as u16;
    ev.header.body_len = (core::mem::size_of::<FixedEvent<ConnectOutcome>>() - HEADER_LEN) as u16;
    ev.body = ConnectOutcome {
        sk,
        at_ns: unsafe { bpf_ktime_get_boot_ns() },
        new_state: new as u32,
        error,
    };
    entry.submit(submit_flags(ring_used()));
    count(|c| c.emitted[EventKind::ConnectOutcome as usize] += 1);
    Ok(())
}
