//! The final state of a non-blocking connect. `connect.rs` registers the socket of a watched
//! non-blocking connect in `CONNECTING`; when the socket leaves `SYN_SENT` — established,
//! refused (RST), timed out, reset, or closed by the process — `sock:inet_sock_set_state` fires
//! and a [`ConnectOutcome`] names the connect record it completes (its tid and entry time). The
//! error is the socket's own `sk_err`, set by the kernel before it moves the socket to CLOSE.
//!
//! This tracepoint fires for every TCP state change on the host: while no connect is followed
//! (`CONNECTING_COUNT` is zero) it leaves after one array read.

use audit_common::event::{ConnectOutcome, EventKind, FixedEvent, HEADER_LEN};
use aya_ebpf::{helpers::bpf_ktime_get_boot_ns, macros::tracepoint, programs::TracePointContext};

use crate::{
    connect::unfollow_async,
    emit::{ring_used, submit_flags},
    helpers::count,
    maps::{CONNECTING, CONNECTING_COUNT, EVENTS},
    offsets::{kread, off, tp_read},
};

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const IPPROTO_TCP: u16 = 6;

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_set_state(&ctx);
    0
}

#[inline(always)]
fn try_set_state(ctx: &TracePointContext) -> Result<(), i64> {
    if !CONNECTING_COUNT.get(0).is_some_and(|n| *n != 0) {
        return Ok(());
    }
    if tp_read::<u16>(ctx, off!(sock_state_protocol))? != IPPROTO_TCP {
        return Ok(());
    }
    let sk: u64 = tp_read(ctx, off!(sock_state_skaddr))?;
    let Some(h) = (unsafe { CONNECTING.get(&sk) }).copied() else {
        return Ok(());
    };
    let old: i32 = tp_read(ctx, off!(sock_state_oldstate))?;
    let new: i32 = tp_read(ctx, off!(sock_state_newstate))?;
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
