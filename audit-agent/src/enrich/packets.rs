//! Packets of watched sockets become the records that name destinations:
//! - `network.dns`: a query a socket sent, held until the answer it receives (same resolver
//!   address, port and id) or until the wait runs out; an answer no query of the socket asked
//!   for is recorded as unsolicited. A watched process answering DNS (an agent's own resolver)
//!   is noticed when it sends its answer, and the client's record says so.
//! - `network.tls`, `network.http`: the first bytes a TCP connection sends, reassembled by their
//!   stream offsets (retransmissions, split hellos), read once they are complete, the stream
//!   ends, or the wait runs out; an HTTP request is held until the status line of its answer.
//!   After an HTTP `CONNECT`, what follows is read as the tunnel's own first bytes. DNS over TCP
//!   (a DNS port) is read as length-prefixed messages both ways.
//!
//! The tracker only decides what the records say ([`Made`]); the enricher turns them into
//! events with the acting process (the socket's owner) and time.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use audit_common::net::{RESPONSE_MAX, STREAM_EGRESS_MAX, STREAM_INGRESS_MAX};

use crate::{
    decode::{Direction, Packet, Task, Transport as WireTransport},
    event::{
        Action, Destination, Detail, DnsLookup, DnsResponse, HostName, HostSource, HttpExchange,
        Outcome, Resource, Target, Transport, WireIssue,
    },
    wire::{self, StreamKind, dns, http, quic as wire_quic, tls},
};

mod quic;

/// Most DNS queries, TCP streams and served answers tracked at once; beyond it the oldest are
/// released (or forgotten, for served answers) early.
const MAX_TRACKED: usize = 65_536;
/// How long a watched resolver's answer is remembered for the client that receives it.
const SERVED_FOR: Duration = Duration::from_secs(5);
/// Ports where a TLS handshake is expected: other first bytes there are recorded as `not_tls`.
const TLS_PORTS: [u16; 3] = [443, 853, 8443];
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// A record to make: who acted (the socket's owner at the first packet), when (kernel time),
/// and what the record says.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Made {
    pub(crate) task: Task,
    pub(crate) action: Action,
    pub(crate) resource: Resource,
    pub(crate) outcome: Outcome,
}

struct HeldQuery {
    made: Made,
    since: Instant,
}

/// A TCP connection's captured bytes in one direction, placed by stream offset.
#[derive(Default)]
struct Reassembly {
    buf: Vec<u8>,
    /// Filled ranges, sorted and merged.
    filled: Vec<(usize, usize)>,
}

impl Reassembly {
    fn put(&mut self, offset: u32, data: &[u8], max: u32) {
        let start = offset as usize;
        let end = (start + data.len()).min(max as usize);
        if start >= end {
            return;
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[start..end].copy_from_slice(&data[..end - start]);
        self.filled.push((start, end));
        self.filled.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.filled.len());
        for &(s, e) in &self.filled {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.filled = merged;
    }

    /// The bytes from the start of the stream with no hole.
    fn contiguous(&self) -> &[u8] {
        match self.filled.first() {
            Some(&(0, end)) => &self.buf[..end],
            _ => &[],
        }
    }
}

/// How far the first bytes a connection sent have been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading from this stream offset (0, or where a `CONNECT` tunnel's bytes start).
    At(usize),
    /// Read (or not readable); later bytes are not looked at.
    Done,
}

struct Stream {
    /// The socket's owner when the connection's first bytes were seen, and when.
    task: Task,
    local: SocketAddr,
    remote: SocketAddr,
    cookie: u64,
    egress: Reassembly,
    ingress: Reassembly,
    phase: Phase,
    /// DNS over TCP: where the next message starts, each way.
    dns_out: usize,
    dns_in: usize,
    dns: bool,
    /// The connection sent its FIN (or a RST): nothing more will come from it.
    ended: bool,
    /// The peer sent its FIN (or a RST), or the wait ran out: no more of its answer will come.
    ingress_ended: bool,
    /// The HTTP request read, until its answer's status line is.
    http: Option<Made>,
    /// The last packet.
    seen: Instant,
    /// What a `CONNECT` on this connection named (the tunnel's destination).
    tunnel: Option<HostName>,
}

/// Turns watched sockets' packets into DNS, TLS and HTTP records (see module docs).
pub(crate) struct PacketTracker {
    wait: Duration,
    queries: crate::FastMap<(u64, SocketAddr, u16), HeldQuery>,
    streams: crate::FastMap<u64, Stream>,
    /// Answers watched resolvers sent: (resolver, client, id) -> the resolver's pid.
    served: crate::FastMap<(SocketAddr, SocketAddr, u16), (u32, Instant)>,
    quic: quic::QuicFlows,
    ready: Vec<Made>,
}

impl PacketTracker {
    /// `wait`: how long a query waits for its answer, and a connection's first bytes for the
    /// rest of a message.
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            wait,
            queries: crate::FastMap::default(),
            streams: crate::FastMap::default(),
            served: crate::FastMap::default(),
            quic: quic::QuicFlows::default(),
            ready: Vec::new(),
        }
    }

    /// A packet of a watched socket; records it completes go to `out`.
    pub(crate) fn packet(&mut self, task: &Task, p: &Packet, out: &mut Vec<Made>) {
        match p.transport {
            WireTransport::Udp => self.datagram(task, p, out),
            WireTransport::Tcp => self.segment(task, p, out),
        }
    }

    /// Records complete now, and those whose wait ran out (all of them when `flush`).
    pub(crate) fn ready(&mut self, flush: bool) -> Vec<Made> {
        let now = Instant::now();
        let wait = self.wait;
        let expired: Vec<HeldQuery> = self
            .queries
            .extract_if(|_, q| flush || now.duration_since(q.since) >= wait)
            .map(|(_, q)| q)
            .collect();
        self.ready.extend(expired.into_iter().map(|q| q.made));
        let quiet: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| flush || now.duration_since(s.seen) >= wait)
            .map(|(k, _)| *k)
            .collect();
        for k in quiet {
            if let Some(mut s) = self.streams.remove(&k) {
                s.ended = true;
                s.ingress_ended = true;
                let mut out = Vec::new();
                read_stream(&mut s, &mut out, &mut self.queries, &self.served);
                self.ready.extend(out);
            }
        }
        self.served
            .retain(|_, (_, at)| now.duration_since(*at) < SERVED_FOR);
        let mut quic = Vec::new();
        self.quic.ready(flush, wait, &mut quic);
        self.ready.extend(quic);
        std::mem::take(&mut self.ready)
    }

    fn datagram(&mut self, task: &Task, p: &Packet, out: &mut Vec<Made>) {
        let msg = dns::parse(&p.data, p.cut());
        let dns = p.local_dns_port || p.remote_dns_port;
        match p.direction {
            Direction::Egress if p.local_dns_port && msg.response => {
                // A watched process answering DNS: the client's record will say so.
                if self.served.len() >= MAX_TRACKED {
                    self.served.clear();
                }
                self.served
                    .insert((p.local, p.remote, msg.id), (task.pid, Instant::now()));
            }
            Direction::Egress if p.remote_dns_port => {
                self.query(task, p.cookie, p.remote, Transport::Udp, msg);
            }
            Direction::Ingress if p.remote_dns_port => {
                out.push(answer(
                    &mut self.queries,
                    &self.served,
                    task,
                    p,
                    Transport::Udp,
                    msg,
                ));
            }
            // The first datagrams of another socket: a QUIC connection's Initials.
            Direction::Egress if !dns && wire_quic::is_long_header(&p.data) => {
                self.quic.datagram(task, p, out);
            }
            // A query to a watched resolver: its own record is the client's business.
            _ => {}
        }
    }

    /// Holds a query until its answer (a retransmission keeps the first one's record).
    fn query(
        &mut self,
        task: &Task,
        cookie: u64,
        resolver: SocketAddr,
        transport: Transport,
        msg: dns::Message,
    ) {
        hold_query(
            &mut self.queries,
            &mut self.ready,
            task,
            cookie,
            resolver,
            transport,
            msg,
        );
    }

    fn segment(&mut self, task: &Task, p: &Packet, out: &mut Vec<Made>) {
        let now = Instant::now();
        if !self.streams.contains_key(&p.cookie) {
            if p.data.is_empty() {
                return;
            }
            if self.streams.len() >= MAX_TRACKED {
                self.evict_oldest_stream();
            }
            self.streams.insert(
                p.cookie,
                Stream {
                    task: task.clone(),
                    local: p.local,
                    remote: p.remote,
                    cookie: p.cookie,
                    egress: Reassembly::default(),
                    ingress: Reassembly::default(),
                    phase: Phase::At(0),
                    dns_out: 0,
                    dns_in: 0,
                    dns: p.remote_dns_port,
                    ended: false,
                    ingress_ended: false,
                    http: None,
                    seen: now,
                    tunnel: None,
                },
            );
        }
        let Some(s) = self.streams.get_mut(&p.cookie) else {
            return;
        };
        s.seen = now;
        match p.direction {
            Direction::Egress => s.egress.put(p.offset, &p.data, STREAM_EGRESS_MAX),
            Direction::Ingress => s.ingress.put(p.offset, &p.data, STREAM_INGRESS_MAX),
        }
        if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
            match p.direction {
                Direction::Egress => s.ended = true,
                Direction::Ingress => s.ingress_ended = true,
            }
        }
        read_stream(s, out, &mut self.queries, &self.served);
    }

    fn evict_oldest_stream(&mut self) {
        if let Some(k) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.seen)
            .map(|(k, _)| *k)
            && let Some(mut s) = self.streams.remove(&k)
        {
            s.ended = true;
            s.ingress_ended = true;
            let mut out = Vec::new();
            read_stream(&mut s, &mut out, &mut self.queries, &self.served);
            self.ready.extend(out);
        }
    }
}

/// Reads what a stream's captured bytes now allow: its first message (TLS, HTTP) and the status
/// its HTTP request got, or DNS messages each way.
fn read_stream(
    s: &mut Stream,
    out: &mut Vec<Made>,
    queries: &mut crate::FastMap<(u64, SocketAddr, u16), HeldQuery>,
    served: &crate::FastMap<(SocketAddr, SocketAddr, u16), (u32, Instant)>,
) {
    if s.dns {
        read_dns_stream(s, out, queries, served);
        return;
    }
    read_request(s, out);
    read_response(s, out);
}

/// The connection's first message: a TLS hello, an HTTP request (held for its status), or
/// (after a `CONNECT`) the tunnel's own first message.
fn read_request(s: &mut Stream, out: &mut Vec<Made>) {
    while let Phase::At(at) = s.phase {
        let bytes = s.egress.contiguous();
        let full = bytes.len() >= STREAM_EGRESS_MAX as usize;
        let more = !s.ended && !full;
        let b = bytes.get(at..).unwrap_or_default();
        match wire::classify(b) {
            StreamKind::Tls => match tls::client_hello(b, more) {
                Some(h) => {
                    s.phase = Phase::Done;
                    out.push(tls_made(s, h));
                }
                None => return,
            },
            StreamKind::Http => match http::request(b, more) {
                Some(r) => {
                    s.phase = match (&*r.method, r.issues.is_empty()) {
                        ("CONNECT", true) => Phase::At(at + r.len),
                        _ => Phase::Done,
                    };
                    if &*r.method == "CONNECT" {
                        s.tunnel = r.host.clone().map(|name| HostName {
                            name,
                            source: HostSource::HttpConnect,
                            dns: None,
                            expired: false,
                        });
                    }
                    s.http = Some(http_made(s, r));
                    // A tunnel's first bytes follow the proxy's answer: read it first.
                    read_response(s, out);
                }
                None => return,
            },
            StreamKind::Unknown if more => return,
            StreamKind::Unknown | StreamKind::Other => {
                s.phase = Phase::Done;
                // Nothing from the start on: the first bytes were never captured (lost, and
                // a gap record says so) or a tunnel sent nothing.
                if TLS_PORTS.contains(&s.remote.port()) && !b.is_empty() {
                    out.push(tls_made(
                        s,
                        tls::Hello {
                            issues: vec![WireIssue::NotTls],
                            ..Default::default()
                        },
                    ));
                }
            }
        }
    }
}

/// The status line of the answer to the held HTTP request; the request is released without
/// one when the answer ends or the wait runs out first.
fn read_response(s: &mut Stream, out: &mut Vec<Made>) {
    if s.http.is_none() {
        return;
    }
    let b = s.ingress.contiguous();
    let more = !s.ingress_ended && b.len() < RESPONSE_MAX as usize;
    let response = match b.is_empty() {
        true if more => return,
        true => None,
        false => match http::response(b, more) {
            Some(r) => Some(r),
            None => return,
        },
    };
    let Some(mut made) = s.http.take() else {
        return;
    };
    if let Detail::Http(x) = &mut made.resource.detail {
        made.outcome = match &response {
            Some(r) if r.status >= 400 => Outcome::Failure(i32::from(r.status)),
            Some(r) if r.status > 0 => Outcome::Success(i64::from(r.status)),
            _ => Outcome::Unknown,
        };
        x.response = response;
    }
    out.push(made);
}

/// DNS over TCP: two-byte length, message; queries out, answers in.
fn read_dns_stream(
    s: &mut Stream,
    out: &mut Vec<Made>,
    queries: &mut crate::FastMap<(u64, SocketAddr, u16), HeldQuery>,
    served: &crate::FastMap<(SocketAddr, SocketAddr, u16), (u32, Instant)>,
) {
    let mut ready = Vec::new();
    let sent: Vec<dns::Message> = framed(&s.egress, &mut s.dns_out, s.ended).collect();
    for msg in sent {
        hold_query(
            queries,
            &mut ready,
            &s.task,
            s.cookie,
            s.remote,
            Transport::Tcp,
            msg,
        );
    }
    let answers: Vec<dns::Message> = framed(&s.ingress, &mut s.dns_in, s.ended).collect();
    for msg in answers {
        let p = Packet {
            cookie: s.cookie,
            direction: Direction::Ingress,
            transport: WireTransport::Tcp,
            local: s.local,
            remote: s.remote,
            offset: 0,
            payload_len: 0,
            tcp_flags: 0,
            local_dns_port: false,
            remote_dns_port: true,
            data: Vec::new(),
        };
        let task = s.task.clone();
        out.push(answer(queries, served, &task, &p, Transport::Tcp, msg));
    }
    out.extend(ready);
}

/// The length-prefixed DNS messages of a stream from `*at` on (`ended`: a cut last message is
/// read as far as it goes).
fn framed<'a>(
    r: &'a Reassembly,
    at: &'a mut usize,
    ended: bool,
) -> impl Iterator<Item = dns::Message> + 'a {
    std::iter::from_fn(move || {
        let b = r.contiguous().get(*at..)?;
        let len = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        let body = b.get(2..)?;
        if body.len() < len {
            if !ended || body.is_empty() {
                return None;
            }
            *at += 2 + body.len();
            return Some(dns::parse(body, true));
        }
        *at += 2 + len;
        Some(dns::parse(&body[..len], false))
    })
}

fn hold_query(
    queries: &mut crate::FastMap<(u64, SocketAddr, u16), HeldQuery>,
    ready: &mut Vec<Made>,
    task: &Task,
    cookie: u64,
    resolver: SocketAddr,
    transport: Transport,
    msg: dns::Message,
) {
    let key = (cookie, resolver, msg.id);
    if queries.contains_key(&key) {
        return;
    }
    if queries.len() >= MAX_TRACKED
        && let Some(k) = queries.iter().min_by_key(|(_, q)| q.since).map(|(k, _)| *k)
        && let Some(q) = queries.remove(&k)
    {
        ready.push(q.made);
    }
    let made = dns_made(task, cookie, resolver, transport, msg, None);
    queries.insert(
        key,
        HeldQuery {
            made,
            since: Instant::now(),
        },
    );
}

/// An answer: completes the query it answers, or is recorded as unsolicited.
fn answer(
    queries: &mut crate::FastMap<(u64, SocketAddr, u16), HeldQuery>,
    served: &crate::FastMap<(SocketAddr, SocketAddr, u16), (u32, Instant)>,
    task: &Task,
    p: &Packet,
    transport: Transport,
    msg: dns::Message,
) -> Made {
    let resolver_pid = served
        .get(&(p.remote, p.local, msg.id))
        .map(|(pid, _)| *pid);
    let issues = msg.issues.clone();
    match queries.remove(&(p.cookie, p.remote, msg.id)) {
        Some(q) => {
            let mut made = q.made;
            let after = Duration::from_nanos(task.ktime_ns.saturating_sub(made.task.ktime_ns));
            if let Detail::Dns(d) = &mut made.resource.detail {
                d.issues.extend(issues);
                d.response = Some(response(&msg, after, resolver_pid));
            }
            made.outcome = dns_outcome(msg.rcode);
            made
        }
        None => {
            let rcode = msg.rcode;
            let mut made = dns_made(
                task,
                p.cookie,
                p.remote,
                transport,
                msg.clone(),
                Some(response(&msg, Duration::ZERO, resolver_pid)),
            );
            if let Detail::Dns(d) = &mut made.resource.detail {
                d.unsolicited = true;
            }
            made.outcome = dns_outcome(rcode);
            made
        }
    }
}

fn response(msg: &dns::Message, after: Duration, resolver_pid: Option<u32>) -> DnsResponse {
    DnsResponse {
        rcode: msg.rcode,
        truncated_flag: msg.truncated_flag,
        answers: msg.answers.clone(),
        after,
        resolver_pid,
    }
}

/// NOERROR is a success; any other response code a failure carrying that code.
fn dns_outcome(rcode: u8) -> Outcome {
    if rcode == 0 {
        Outcome::Success(0)
    } else {
        Outcome::Failure(i32::from(rcode))
    }
}

fn dns_made(
    task: &Task,
    cookie: u64,
    resolver: SocketAddr,
    transport: Transport,
    msg: dns::Message,
    response: Option<DnsResponse>,
) -> Made {
    let hosts = msg
        .question
        .as_ref()
        .map(|q| HostName {
            name: Arc::clone(&q.name),
            source: HostSource::Dns,
            dns: None,
            expired: false,
        })
        .into_iter()
        .collect();
    let lookup = DnsLookup {
        transport,
        id: msg.id,
        question: msg.question,
        response,
        unsolicited: false,
        issues: msg.issues,
    };
    Made {
        task: task.clone(),
        action: Action::Dns,
        resource: network_resource(resolver, Detail::Dns(Box::new(lookup)), cookie, hosts),
        outcome: Outcome::Unknown,
    }
}

fn tls_made(s: &Stream, hello: tls::Hello) -> Made {
    hello_made(&s.task, s.remote, s.cookie, hello, s.tunnel.clone())
}

/// A `network.tls` record: the server name asked for first, then a proxy tunnel's target.
fn hello_made(
    task: &Task,
    remote: SocketAddr,
    cookie: u64,
    hello: tls::Hello,
    tunnel: Option<HostName>,
) -> Made {
    let mut hosts: Vec<HostName> = tunnel.into_iter().collect();
    if let Some(sni) = &hello.sni {
        hosts.insert(
            0,
            HostName {
                name: Arc::clone(sni),
                source: HostSource::TlsSni,
                dns: None,
                expired: false,
            },
        );
    }
    Made {
        task: task.clone(),
        action: Action::Tls,
        resource: network_resource(remote, Detail::Tls(Box::new(hello)), cookie, hosts),
        outcome: Outcome::Success(0),
    }
}

fn http_made(s: &Stream, r: http::Request) -> Made {
    let source = if &*r.method == "CONNECT" {
        HostSource::HttpConnect
    } else {
        HostSource::HttpHost
    };
    let hosts = r
        .host
        .iter()
        .map(|h| HostName {
            name: Arc::clone(h),
            source,
            dns: None,
            expired: false,
        })
        .collect();
    let exchange = HttpExchange {
        request: r,
        response: None,
    };
    Made {
        task: s.task.clone(),
        action: Action::Http,
        resource: network_resource(s.remote, Detail::Http(Box::new(exchange)), s.cookie, hosts),
        outcome: Outcome::Unknown,
    }
}

/// The resource of a record made from packets: the peer's address (from the packet's IP
/// header), the connection, and the names the bytes themselves carried.
fn network_resource(
    peer: SocketAddr,
    detail: Detail,
    cookie: u64,
    hosts: Vec<HostName>,
) -> Resource {
    Resource {
        target: Target::Inet(peer.ip(), peer.port()),
        detail,
        truncated: Vec::new(),
        unreadable: Vec::new(),
        uring: None,
        ia32: None,
        destination: Some(Box::new(Destination {
            connection: Some(cookie),
            hosts,
            other_hosts: Vec::new(),
            conflict: false,
            opaque: None,
        })),
    }
}

#[cfg(test)]
mod tests;
