use std::net::SocketAddr;

use super::*;
use crate::{
    decode::sample,
    wire::{dns::build as dnsb, tls::build as tlsb},
};

const CLIENT: &str = "10.0.0.5:40000";
const RESOLVER: &str = "10.0.0.53:53";
const SERVER: &str = "192.0.2.7:443";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp(cookie: u64, dir: Direction, local: &str, remote: &str, data: Vec<u8>) -> Packet {
    let (local, remote) = (addr(local), addr(remote));
    Packet {
        cookie,
        direction: dir,
        transport: WireTransport::Udp,
        local,
        remote,
        offset: 0,
        payload_len: data.len() as u32,
        tcp_flags: 0,
        local_dns_port: local.port() == 53,
        remote_dns_port: remote.port() == 53,
        data,
    }
}

fn tcp(cookie: u64, dir: Direction, remote: &str, offset: u32, data: &[u8], flags: u8) -> Packet {
    let remote = addr(remote);
    Packet {
        cookie,
        direction: dir,
        transport: WireTransport::Tcp,
        local: addr(CLIENT),
        remote,
        offset,
        payload_len: data.len() as u32,
        tcp_flags: flags,
        local_dns_port: false,
        remote_dns_port: remote.port() == 53,
        data: data.to_vec(),
    }
}

fn feed(t: &mut PacketTracker, packets: &[Packet]) -> Vec<Made> {
    let task = sample::task(100, 100, 1_000);
    let mut out = Vec::new();
    for p in packets {
        t.packet(&task, p, &mut out);
    }
    out
}

fn lookup(m: &Made) -> &DnsLookup {
    match &m.resource.detail {
        Detail::Dns(d) => d,
        other => panic!("not a DNS record: {other:?}"),
    }
}

fn hosts(m: &Made) -> Vec<(String, HostSource)> {
    m.resource
        .destination
        .as_ref()
        .unwrap()
        .hosts
        .iter()
        .map(|h| (h.name.to_string(), h.source))
        .collect()
}

fn a_record(ip: [u8; 4]) -> (u16, u32, Vec<u8>) {
    (dns::TYPE_A, 60, ip.to_vec())
}

#[test]
fn a_query_and_its_answer_make_one_record_with_both() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let q = dnsb::query(7, "api.example.com", dns::TYPE_A);
    let a = dnsb::answer(
        7,
        "api.example.com",
        dns::TYPE_A,
        0,
        &[a_record([192, 0, 2, 7])],
    );
    let out = feed(
        &mut t,
        &[
            udp(1, Direction::Egress, CLIENT, RESOLVER, q),
            udp(1, Direction::Ingress, CLIENT, RESOLVER, a),
        ],
    );
    assert_eq!(out.len(), 1);
    let m = &out[0];
    assert_eq!((m.action, m.outcome), (Action::Dns, Outcome::Success(0)));
    assert_eq!(m.resource.target, Target::Inet(addr(RESOLVER).ip(), 53));
    let d = lookup(m);
    assert!(!d.unsolicited);
    assert_eq!(
        d.question.as_ref().unwrap().name.as_ref(),
        "api.example.com"
    );
    assert_eq!(d.response.as_ref().unwrap().answers.len(), 1);
    assert_eq!(hosts(m), [("api.example.com".to_string(), HostSource::Dns)]);
    assert!(t.ready(true).is_empty(), "nothing is left held");
}

#[test]
fn an_answer_from_another_resolver_port_or_id_is_unsolicited_and_the_query_times_out() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let q = dnsb::query(7, "a.example", dns::TYPE_A);
    let wrong_id = dnsb::answer(8, "a.example", dns::TYPE_A, 0, &[a_record([6, 6, 6, 6])]);
    let wrong_port = dnsb::answer(7, "a.example", dns::TYPE_A, 0, &[a_record([6, 6, 6, 6])]);
    let out = feed(
        &mut t,
        &[
            udp(1, Direction::Egress, CLIENT, RESOLVER, q),
            udp(1, Direction::Ingress, CLIENT, RESOLVER, wrong_id),
            udp(1, Direction::Ingress, CLIENT, "10.0.0.53:5353", wrong_port),
        ],
    );
    // 5353 is not a DNS port here: only the wrong id arrives as an answer.
    assert_eq!(out.len(), 1);
    assert!(lookup(&out[0]).unsolicited);
    let left = t.ready(true);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].outcome, Outcome::Unknown, "the query got no answer");
    assert!(lookup(&left[0]).response.is_none());
}

#[test]
fn a_watched_resolver_answering_is_named_on_the_clients_record() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let q = dnsb::query(9, "bank.example", dns::TYPE_A);
    let a = dnsb::answer(9, "bank.example", dns::TYPE_A, 0, &[a_record([6, 6, 6, 6])]);
    let resolver = sample::task(555, 555, 2_000);
    let mut out = feed(&mut t, &[udp(1, Direction::Egress, CLIENT, RESOLVER, q)]);
    // The resolver's own socket sends the answer (its local port is 53).
    t.packet(
        &resolver,
        &udp(2, Direction::Egress, RESOLVER, CLIENT, a.clone()),
        &mut out,
    );
    assert!(out.is_empty());
    out = feed(&mut t, &[udp(1, Direction::Ingress, CLIENT, RESOLVER, a)]);
    let r = lookup(&out[0]).response.as_ref().unwrap();
    assert_eq!(r.resolver_pid, Some(555));
}

#[test]
fn a_retransmitted_query_keeps_the_first_ones_record() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let q = dnsb::query(3, "r.example", dns::TYPE_AAAA);
    let a = dnsb::answer(3, "r.example", dns::TYPE_AAAA, 3, &[]);
    let mut first = udp(1, Direction::Egress, CLIENT, RESOLVER, q.clone());
    let again = udp(1, Direction::Egress, CLIENT, RESOLVER, q);
    first.offset = 0;
    let out = feed(
        &mut t,
        &[
            first,
            again,
            udp(1, Direction::Ingress, CLIENT, RESOLVER, a),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Outcome::Failure(3), "NXDOMAIN");
}

#[test]
fn a_hello_split_and_reordered_over_segments_is_read_once_whole() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let b = tlsb::records(&tlsb::hello("api.example.com", &["h2"], 1500, false), 16384);
    let (x, y) = b.split_at(700);
    let out = feed(
        &mut t,
        &[
            tcp(5, Direction::Egress, SERVER, 700, y, 0),
            tcp(5, Direction::Egress, SERVER, 0, &x[..300], 0),
            tcp(5, Direction::Egress, SERVER, 0, x, 0),
            // A retransmission after the record was made.
            tcp(5, Direction::Egress, SERVER, 0, x, 0),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].action, Action::Tls);
    assert_eq!(
        hosts(&out[0]),
        [("api.example.com".to_string(), HostSource::TlsSni)]
    );
    assert_eq!(
        out[0].resource.destination.as_ref().unwrap().connection,
        Some(5)
    );
    assert!(t.ready(true).is_empty());
}

#[test]
fn a_hello_that_stops_coming_is_recorded_truncated_when_the_wait_runs_out() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let b = tlsb::records(&tlsb::hello("slow.example", &[], 3000, false), 16384);
    assert!(
        feed(
            &mut t,
            &[tcp(5, Direction::Egress, SERVER, 0, &b[..200], 0)]
        )
        .is_empty()
    );
    let out = t.ready(true);
    assert_eq!(out.len(), 1);
    let Detail::Tls(h) = &out[0].resource.detail else {
        panic!()
    };
    assert_eq!(h.sni.as_deref(), Some("slow.example"));
    assert_eq!(h.issues, vec![WireIssue::Truncated]);
}

#[test]
fn a_proxy_connect_then_the_tunnels_hello_name_both() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let connect = b"CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\n\r\n";
    let hello = tlsb::records(&tlsb::hello("api.github.com", &[], 0, false), 16384);
    let proxy = "10.0.0.9:3128";
    let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let out = feed(
        &mut t,
        &[
            tcp(6, Direction::Egress, proxy, 0, connect, 0),
            tcp(6, Direction::Ingress, proxy, 0, ok, 0),
            tcp(6, Direction::Egress, proxy, connect.len() as u32, &hello, 0),
        ],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].outcome, Outcome::Success(200));
    assert_eq!(out[0].action, Action::Http);
    assert_eq!(
        hosts(&out[0]),
        [("api.github.com".to_string(), HostSource::HttpConnect)]
    );
    assert_eq!(out[1].action, Action::Tls);
    assert_eq!(
        hosts(&out[1]),
        [
            ("api.github.com".to_string(), HostSource::TlsSni),
            ("api.github.com".to_string(), HostSource::HttpConnect)
        ]
    );
}

#[test]
fn garbage_on_a_tls_port_is_recorded_as_not_tls_and_elsewhere_not_at_all() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let out = feed(
        &mut t,
        &[
            tcp(7, Direction::Egress, SERVER, 0, b"\x00\x01garbage", 0x01),
            tcp(
                8,
                Direction::Egress,
                "192.0.2.7:5432",
                0,
                b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
                0x01,
            ),
        ],
    );
    assert_eq!(out.len(), 1);
    let Detail::Tls(h) = &out[0].resource.detail else {
        panic!()
    };
    assert_eq!(
        (h.sni.clone(), h.issues.clone()),
        (None, vec![WireIssue::NotTls])
    );
}

#[test]
fn dns_over_tcp_is_read_as_length_prefixed_messages_both_ways() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let frame = |m: Vec<u8>| [(m.len() as u16).to_be_bytes().to_vec(), m].concat();
    let q = frame(dnsb::query(11, "tcp.example", dns::TYPE_A));
    let a = frame(dnsb::answer(
        11,
        "tcp.example",
        dns::TYPE_A,
        0,
        &[a_record([1, 2, 3, 4])],
    ));
    let out = feed(
        &mut t,
        &[
            tcp(9, Direction::Egress, RESOLVER, 0, &q, 0),
            tcp(9, Direction::Ingress, RESOLVER, 0, &a[..5], 0),
            tcp(9, Direction::Ingress, RESOLVER, 5, &a[5..], 0),
        ],
    );
    assert_eq!(out.len(), 1);
    let d = lookup(&out[0]);
    assert_eq!(d.transport, Transport::Tcp);
    assert_eq!(d.response.as_ref().unwrap().answers.len(), 1);
}

#[test]
fn an_http_request_names_its_host_and_waits_for_the_status_of_its_answer() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let req = b"POST /v1/charges HTTP/1.1\r\nHost: api.stripe.com\r\nContent-Length: 0\r\n\r\n";
    let server = "192.0.2.7:80";
    assert!(feed(&mut t, &[tcp(10, Direction::Egress, server, 0, req, 0)]).is_empty());
    let out = feed(
        &mut t,
        &[
            tcp(10, Direction::Ingress, server, 0, b"HTTP/1.1 40", 0),
            tcp(10, Direction::Ingress, server, 11, b"3 Forbidden\r\n", 0),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        hosts(&out[0]),
        [("api.stripe.com".to_string(), HostSource::HttpHost)]
    );
    assert_eq!(out[0].outcome, Outcome::Failure(403));
    // No answer before the wait runs out: released with an unknown outcome.
    feed(&mut t, &[tcp(11, Direction::Egress, server, 0, req, 0)]);
    let left = t.ready(true);
    assert_eq!((left.len(), left[0].outcome), (1, Outcome::Unknown));
}

#[test]
fn a_quic_hello_split_over_two_initials_is_read_from_their_crypto_frames() {
    use crate::wire::quic::build;
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let hello = tlsb::hello("h3.example", &["h3"], 1500, false);
    let dcid = [7u8; 8];
    let (a, b) = hello.split_at(900);
    let first = udp(
        12,
        Direction::Egress,
        CLIENT,
        SERVER,
        build::initial(&dcid, 0, 0, a),
    );
    let second = udp(
        12,
        Direction::Egress,
        CLIENT,
        SERVER,
        build::initial(&dcid, 1, 900, b),
    );
    assert!(feed(&mut t, &[first]).is_empty(), "half a hello waits");
    let out = feed(&mut t, &[second]);
    assert_eq!(out.len(), 1);
    let Detail::Tls(h) = &out[0].resource.detail else {
        panic!()
    };
    assert!(h.quic);
    assert_eq!(h.sni.as_deref(), Some("h3.example"));
    assert_eq!(h.alpn.iter().map(|a| &**a).collect::<Vec<_>>(), ["h3"]);
    assert_eq!(
        hosts(&out[0]),
        [("h3.example".to_string(), HostSource::TlsSni)]
    );
}

#[test]
fn a_quic_version_that_cannot_be_read_is_recorded_as_such() {
    let mut t = PacketTracker::new(Duration::from_secs(5));
    let mut p = crate::wire::quic::build::initial(&[1; 8], 0, 0, b"x");
    p[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
    let out = feed(&mut t, &[udp(13, Direction::Egress, CLIENT, SERVER, p)]);
    let Detail::Tls(h) = &out[0].resource.detail else {
        panic!()
    };
    assert!(h.quic && h.sni.is_none());
    assert_eq!(h.issues, vec![WireIssue::UnknownVersion]);
}
