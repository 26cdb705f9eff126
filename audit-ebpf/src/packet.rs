//! Packets of watched sockets: cgroup `skb` egress and ingress programs, attached to the root of
//! the cgroup v2 hierarchy, that copy the bytes destinations are named by — DNS messages, the
//! first bytes of a TCP connection each way (a TLS ClientHello, an HTTP request and the status
//! line of its answer) — from the packets the kernel carried, never from the process's buffers
//! (see `audit_common::net`).
//!
//! A socket is watched once a watched task connected it or sent from it to an address
//! ([`mark_socket`], called by the cgroup `connect4/6` and `sendmsg4/6` programs, which run in
//! that task's context — io_uring workers included). Its state lives in socket storage, so it
//! ends with the socket and costs nothing to clean up. Every other socket's packet leaves after
//! one socket-storage lookup: the programs always allow the packet.

use audit_common::{
    event::EventKind,
    net::{
        EGRESS, INGRESS, IPPROTO_TCP, IPPROTO_UDP, PACKET_CAPTURE_MAX, PacketBody, PacketEvent,
        RESPONSE_MAX, STREAM_EGRESS_MAX, STREAM_INGRESS_MAX, SockState, packet_flags, sock_flags,
    },
};
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns,
        generated::{bpf_get_socket_cookie, bpf_ringbuf_output, bpf_sk_storage_get},
    },
    macros::cgroup_skb,
    programs::{SkBuffContext, SockAddrContext},
};

use crate::{
    emit::{ring_has_room, ring_used, submit_flags},
    filter::is_watched,
    helpers::{count, count_drop},
    maps::{DNS_PORTS, EVENTS, PACKET_SCRATCH, SOCKETS},
    offsets::packets_enabled,
    pending::fill_header,
    socket::{AF_INET, AF_INET6},
};

const BPF_SK_STORAGE_GET_F_CREATE: u64 = 1;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;

#[cgroup_skb(egress)]
pub fn packet_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_packet(&ctx, EGRESS);
    1
}

#[cgroup_skb(ingress)]
pub fn packet_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_packet(&ctx, INGRESS);
    1
}

/// Marks the socket of a cgroup `sock_addr` hook as watched when the current task is, and
/// records the task as its owner. Returns the socket's cookie (0 when it is not watched).
#[inline(always)]
pub fn mark_socket(ctx: &SockAddrContext) -> u64 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !packets_enabled() || !is_watched(pid_tgid) {
        return 0;
    }
    let sk = unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk };
    if sk.is_null() {
        return 0;
    }
    let state = unsafe {
        bpf_sk_storage_get(
            (&raw const SOCKETS).cast_mut().cast::<c_void>(),
            sk.cast(),
            core::ptr::null_mut(),
            BPF_SK_STORAGE_GET_F_CREATE,
        )
    }
    .cast::<SockState>();
    let Some(state) = (unsafe { state.as_mut() }) else {
        count(|c| c.socket_storage_full += 1);
        return 0;
    };
    fill_header(&mut state.owner, EventKind::Packet, 0, pid_tgid);
    if state.cookie == 0 {
        state.cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    }
    state.cookie
}

/// What the IP and transport headers of a packet say.
struct Headers {
    family: u16,
    protocol: u8,
    tcp_flags: u8,
    /// Offset of the payload from the IP header.
    payload_off: u32,
    payload_len: u32,
    src_port: u16,
    dst_port: u16,
    /// TCP sequence number.
    seq: u32,
    src: [u8; 16],
    dst: [u8; 16],
}

#[inline(always)]
fn load<T>(ctx: &SkBuffContext, off: u32) -> Result<T, i64> {
    ctx.skb.load::<T>(off as usize).map_err(|e| e as i64)
}

/// Parses the IP header (v4 without fragments after the first, v6 with TCP or UDP right after
/// the fixed header) and the TCP or UDP header. The skb starts at the IP header in both
/// directions of a cgroup `skb` program.
#[inline(always)]
fn headers(ctx: &SkBuffContext) -> Result<Headers, i64> {
    let first: u8 = load(ctx, 0)?;
    let mut h = Headers {
        family: 0,
        protocol: 0,
        tcp_flags: 0,
        payload_off: 0,
        payload_len: 0,
        src_port: 0,
        dst_port: 0,
        seq: 0,
        src: [0; 16],
        dst: [0; 16],
    };
    let (l4, ip_payload) = match first >> 4 {
        4 => {
            let hdr: [u8; 20] = load(ctx, 0)?;
            let ihl = u32::from(hdr[0] & 0x0f) * 4;
            let total = u32::from(u16::from_be_bytes([hdr[2], hdr[3]]));
            let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff;
            if ihl < 20 || frag != 0 || total < ihl {
                return Err(-1);
            }
            h.family = AF_INET;
            h.protocol = hdr[9];
            h.src[..4].copy_from_slice(&hdr[12..16]);
            h.dst[..4].copy_from_slice(&hdr[16..20]);
            (ihl, total - ihl)
        }
        6 => {
            let hdr: [u8; 40] = load(ctx, 0)?;
            h.family = AF_INET6;
            h.protocol = hdr[6];
            h.src.copy_from_slice(&hdr[8..24]);
            h.dst.copy_from_slice(&hdr[24..40]);
            (40, u32::from(u16::from_be_bytes([hdr[4], hdr[5]])))
        }
        _ => return Err(-1),
    };
    match h.protocol {
        IPPROTO_UDP => {
            let udp: [u8; 8] = load(ctx, l4)?;
            h.src_port = u16::from_be_bytes([udp[0], udp[1]]);
            h.dst_port = u16::from_be_bytes([udp[2], udp[3]]);
            h.payload_off = l4 + 8;
            h.payload_len = ip_payload.saturating_sub(8);
        }
        IPPROTO_TCP => {
            let tcp: [u8; 14] = load(ctx, l4)?;
            h.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            h.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
            h.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
            let doff = u32::from(tcp[12] >> 4) * 4;
            h.tcp_flags = tcp[13];
            h.payload_off = l4 + doff;
            h.payload_len = ip_payload.saturating_sub(doff);
        }
        _ => return Err(-1),
    }
    Ok(h)
}

/// The watched socket's state, if the packet's socket is watched.
#[inline(always)]
fn watched_socket(ctx: &SkBuffContext) -> Option<&'static mut SockState> {
    let sk = unsafe { (*ctx.skb.skb).__bindgen_anon_2.sk };
    if sk.is_null() {
        return None;
    }
    let state = unsafe {
        bpf_sk_storage_get(
            (&raw const SOCKETS).cast_mut().cast::<c_void>(),
            sk.cast(),
            core::ptr::null_mut(),
            0,
        )
    }
    .cast::<SockState>();
    unsafe { state.as_mut() }
}

#[inline(always)]
fn is_dns_port(port: u16) -> bool {
    unsafe { DNS_PORTS.get(&port) }.is_some()
}

#[inline(always)]
fn try_packet(ctx: &SkBuffContext, direction: u8) -> Result<(), i64> {
    let Some(state) = watched_socket(ctx) else {
        return Ok(());
    };
    let h = headers(ctx)?;
    let (local_port, remote_port) = if direction == EGRESS {
        (h.src_port, h.dst_port)
    } else {
        (h.dst_port, h.src_port)
    };
    let mut pflags = 0u8;
    if is_dns_port(local_port) {
        pflags |= packet_flags::LOCAL_DNS_PORT;
    }
    if is_dns_port(remote_port) {
        pflags |= packet_flags::REMOTE_DNS_PORT;
    }
    let (offset, limit) = if h.protocol == IPPROTO_UDP {
        // DNS datagrams (a query or answer, or a watched resolver's), and a QUIC client's
        // first Initials.
        if h.payload_len == 0 || (pflags == 0 && !quic_initial(ctx, state, &h, direction)?) {
            return Ok(());
        }
        (0, PACKET_CAPTURE_MAX as u32)
    } else {
        match stream_window(state, &h, direction, pflags)? {
            Some(w) => w,
            None => return Ok(()),
        }
    };
    emit_packet(ctx, state, &h, direction, pflags, offset, limit)
}

/// Whether a datagram is one of the first two datagrams a socket sends that start with a QUIC
/// long header (the Initials that carry the ClientHello). The first datagram of a socket that
/// does not ends the question for that socket: one byte read per watched UDP socket otherwise.
#[inline(always)]
fn quic_initial(
    ctx: &SkBuffContext,
    state: &mut SockState,
    h: &Headers,
    direction: u8,
) -> Result<bool, i64> {
    if direction != EGRESS || state.flags & sock_flags::QUIC_DONE != 0 {
        return Ok(false);
    }
    let first: u8 = load(ctx, h.payload_off)?;
    if first & 0xc0 != 0xc0 {
        state.flags |= sock_flags::QUIC_DONE;
        return Ok(false);
    }
    state.flags |= if state.flags & sock_flags::QUIC_ONE != 0 {
        sock_flags::QUIC_DONE
    } else {
        sock_flags::QUIC_ONE
    };
    Ok(true)
}

/// For a TCP packet: where its payload starts in the stream and how many of its bytes are still
/// wanted, or `None` when none are. Tracks the initial sequence numbers from the SYNs.
#[inline(always)]
fn stream_window(
    state: &mut SockState,
    h: &Headers,
    direction: u8,
    pflags: u8,
) -> Result<Option<(u32, u32)>, i64> {
    let (isn_flag, done_flag, max) = if direction == EGRESS {
        (
            sock_flags::EGRESS_ISN,
            sock_flags::EGRESS_DONE,
            STREAM_EGRESS_MAX,
        )
    } else if pflags & packet_flags::REMOTE_DNS_PORT != 0 {
        (
            sock_flags::INGRESS_ISN,
            sock_flags::INGRESS_DONE,
            STREAM_INGRESS_MAX,
        )
    } else {
        // The start of the server's answer only (an HTTP status line).
        (
            sock_flags::INGRESS_ISN,
            sock_flags::INGRESS_DONE,
            RESPONSE_MAX,
        )
    };
    if state.flags & done_flag != 0 {
        return Ok(None);
    }
    let syn = h.tcp_flags & TCP_SYN != 0;
    if syn {
        if direction == EGRESS {
            state.egress_isn = h.seq;
        } else {
            state.ingress_isn = h.seq;
        }
        state.flags |= isn_flag;
    }
    if h.payload_len == 0 {
        if h.tcp_flags & TCP_FIN != 0 {
            state.flags |= done_flag;
        }
        return Ok(None);
    }
    if state.flags & isn_flag == 0 {
        state.flags |= sock_flags::NO_ISN | done_flag;
        return Ok(None);
    }
    let isn = if direction == EGRESS {
        state.egress_isn
    } else {
        state.ingress_isn
    };
    // Data in a SYN (TCP Fast Open) starts right after it, like any other data.
    let offset = h
        .seq
        .wrapping_add(u32::from(syn))
        .wrapping_sub(isn.wrapping_add(1));
    if offset >= max {
        state.flags |= done_flag;
        return Ok(None);
    }
    Ok(Some((offset, max - offset)))
}

/// Copies the packet's payload (at most `limit` bytes, and what one record holds) with its
/// headers into a packet record.
#[inline(always)]
fn emit_packet(
    ctx: &SkBuffContext,
    state: &SockState,
    h: &Headers,
    direction: u8,
    mut pflags: u8,
    offset: u32,
    limit: u32,
) -> Result<(), i64> {
    let Some(ev) = PACKET_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    let ev = unsafe { &mut *ev };
    let mut n = h.payload_len.min(limit);
    if n > PACKET_CAPTURE_MAX as u32 {
        n = PACKET_CAPTURE_MAX as u32;
    }
    if n < h.payload_len {
        pflags |= packet_flags::CUT;
    }
    if n == 0 {
        return Ok(());
    }
    // Verifier: a length in [1, PACKET_CAPTURE_MAX] by arithmetic, not by a branch (the
    // compiler may pass the copy of `n` the branch did not narrow).
    let n = crate::helpers::verifier_mask(n as usize - 1, PACKET_CAPTURE_MAX - 1) as u32 + 1;
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            h.payload_off,
            ev.data.as_mut_ptr().cast(),
            n,
        )
    };
    if r != 0 {
        return Ok(());
    }
    ev.header = crate::helpers::copy_of(&state.owner);
    ev.header.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    let (local, remote) = if direction == EGRESS {
        (&h.src, &h.dst)
    } else {
        (&h.dst, &h.src)
    };
    ev.body = PacketBody {
        cookie: state.cookie,
        offset,
        payload_len: h.payload_len,
        captured: n as u16,
        direction,
        protocol: h.protocol,
        family: h.family,
        local_port: if direction == EGRESS {
            h.src_port
        } else {
            h.dst_port
        },
        remote_port: if direction == EGRESS {
            h.dst_port
        } else {
            h.src_port
        },
        tcp_flags: h.tcp_flags,
        flags: pflags,
        _pad: 0,
        local_ip: *local,
        remote_ip: *remote,
    };
    let body_len = core::mem::size_of::<PacketBody>() + n as usize;
    ev.header.body_len = body_len as u16;
    let len = (audit_common::event::HEADER_LEN + body_len) as u64;
    let kind = EventKind::Packet as usize;
    let used = ring_used();
    if !ring_has_room(used, len) {
        count(|c| c.ringbuf_full[kind] += 1);
        count_drop(ev.header.pid, false);
        return Ok(());
    }
    let ret = unsafe {
        bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast::<c_void>(),
            (ev as *mut PacketEvent).cast::<c_void>(),
            len,
            submit_flags(used + len),
        )
    };
    if ret == 0 {
        count(|c| c.emitted[kind] += 1);
    } else {
        count(|c| c.ringbuf_full[kind] += 1);
        count_drop(ev.header.pid, false);
    }
    Ok(())
}
