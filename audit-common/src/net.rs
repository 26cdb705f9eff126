//! What the kernel reads from the packets of watched processes' sockets: the per-socket state
//! the cgroup `skb` programs keep (`SOCKETS` socket storage) and the packet record they emit.
//!
//! A socket is watched once a watched process connected it or sent from it to an address (the
//! cgroup `connect4/6` and `sendmsg4/6` programs run in that process's context and mark it). From
//! then on its packets are inspected, whatever context sends or receives them (softirq, io_uring
//! workers, another process holding the same socket). The record names the socket's owner: the
//! last watched task that connected or sent on it.
//!
//! What is captured, so user space can name destinations from bytes the kernel carried:
//! - UDP to or from a DNS port (`DNS_PORTS`): the datagram's payload (a query, an answer, or a
//!   watched resolver's answer); and the first two datagrams a socket sends when they start
//!   with a QUIC long header (the Initials that carry an HTTP/3 client's ClientHello);
//! - TCP: the first [`STREAM_EGRESS_MAX`] bytes the connection sends (a TLS ClientHello, an HTTP
//!   request line and headers, a DNS query over TCP), and the first [`RESPONSE_MAX`] bytes it
//!   receives (an HTTP status line), [`STREAM_INGRESS_MAX`] from a DNS port. Each piece carries its offset in the stream
//!   (sequence number minus the initial one), so retransmissions and split hellos are
//!   reassembled in user space.

use crate::event::EventHeader;

/// Most payload bytes one packet record carries.
pub const PACKET_CAPTURE_MAX: usize = 4096;
/// Bytes of a watched TCP connection's outgoing stream that are captured.
pub const STREAM_EGRESS_MAX: u32 = 8192;
/// Bytes of a watched TCP connection's incoming stream that are captured from a DNS port (DNS
/// answers over TCP).
pub const STREAM_INGRESS_MAX: u32 = 16384;
/// Bytes of any other watched TCP connection's incoming stream that are captured: the start of
/// the server's answer (an HTTP status line).
pub const RESPONSE_MAX: u32 = 512;
/// Most DNS ports (`DNS_PORTS` entries).
pub const DNS_PORTS_MAX: u32 = 16;

/// [`PacketBody::direction`]: sent by the socket.
pub const EGRESS: u8 = 0;
/// [`PacketBody::direction`]: received by the socket.
pub const INGRESS: u8 = 1;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// Bits of [`SockState::flags`].
pub mod sock_flags {
    /// `egress_isn` holds the sequence number of the socket's SYN.
    pub const EGRESS_ISN: u32 = 1 << 0;
    /// `ingress_isn` holds the sequence number of the peer's SYN.
    pub const INGRESS_ISN: u32 = 1 << 1;
    /// The outgoing stream is captured as far as it will be.
    pub const EGRESS_DONE: u32 = 1 << 2;
    /// The incoming stream is captured as far as it will be.
    pub const INGRESS_DONE: u32 = 1 << 3;
    /// A TCP payload arrived before a SYN was seen (the socket was connected before it was
    /// watched): its stream offsets are unknown, nothing of it is captured.
    pub const NO_ISN: u32 = 1 << 4;
    /// UDP: one datagram with a QUIC long header was captured.
    pub const QUIC_ONE: u32 = 1 << 5;
    /// UDP: no more datagrams are looked at as QUIC Initials (two were captured, or the first
    /// was no long header).
    pub const QUIC_DONE: u32 = 1 << 6;
}

/// Bits of [`PacketBody::flags`].
pub mod packet_flags {
    /// The packet carried more payload than was captured (the record's, or the stream's limit).
    pub const CUT: u8 = 1 << 0;
    /// The local port is a DNS port: the socket serves DNS (a resolver in a watched process).
    pub const LOCAL_DNS_PORT: u8 = 1 << 1;
    /// The remote port is a DNS port.
    pub const REMOTE_DNS_PORT: u8 = 1 << 2;
}

/// Socket storage of a watched socket (`SOCKETS`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockState {
    /// The last watched task that connected the socket or sent from it to an address, as a
    /// record header (kind `Packet`); packet records copy it.
    pub owner: EventHeader,
    /// `bpf_get_socket_cookie`: the connection id on every record of this socket.
    pub cookie: u64,
    pub egress_isn: u32,
    pub ingress_isn: u32,
    /// [`sock_flags`] bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Body of a packet record; [`PacketBody::captured`] payload bytes follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketBody {
    /// The socket's cookie (the `connection_id` its connect and send records carry too).
    pub cookie: u64,
    /// TCP: where the captured bytes start in the stream (0: the first byte after the SYN).
    /// UDP: 0.
    pub offset: u32,
    /// Payload bytes the packet carried (after the IP and transport headers).
    pub payload_len: u32,
    /// Payload bytes captured (they follow this body).
    pub captured: u16,
    /// [`EGRESS`] or [`INGRESS`].
    pub direction: u8,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u8,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// Ports of this socket's end and the peer's, host byte order.
    pub local_port: u16,
    pub remote_port: u16,
    /// TCP header flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub tcp_flags: u8,
    /// [`packet_flags`] bits.
    pub flags: u8,
    pub _pad: u32,
    /// IPv4 in the first four bytes, or IPv6; from the packet's IP header.
    pub local_ip: [u8; 16],
    pub remote_ip: [u8; 16],
}

/// A packet record as built in the per-CPU scratch area before it is copied to the ring buffer
/// (header, body, then only `captured` bytes of `data`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PacketEvent {
    pub header: EventHeader,
    pub body: PacketBody,
    pub data: [u8; PACKET_CAPTURE_MAX],
}

const _: () = assert!(core::mem::size_of::<PacketBody>() == 64);
const _: () = assert!(core::mem::size_of::<SockState>().is_multiple_of(8));
