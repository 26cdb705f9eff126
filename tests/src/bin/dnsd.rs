//! A DNS server on UDP for the tests that need answers no real resolver gives: an agent's own
//! (lying) resolver, and malformed, truncated, looping and oversized messages.
//!
//! `dnsd ADDR:PORT [NAME=IP ...]`: answers A/AAAA queries for the names given (`NAME=IP`; the
//! IP's family decides A or AAAA). Query names whose first label is a mode get a crafted answer:
//! - `loop.*`: an answer record whose name is a compression pointer to itself;
//! - `cut.*`: an answer announcing two records that holds one and a half;
//! - `huge.*`: 300 A records (about 4.8 KiB: more than one packet record captures);
//! - `label.*`: an answer record whose name uses the reserved label type 0x40;
//! - `extra.*`: the asked name's address plus an A record for `bank.example` (at the address
//!   given for it) that the question never led to (what a lying resolver slips in).
//!
//! Prints `ready` once bound, then one JSON line per answer it sent (`{"id", "name", "bytes"}`).

use std::{io::Write as _, net::UdpSocket};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sock = UdpSocket::bind(&args[0]).expect("bind");
    let names: Vec<(String, std::net::IpAddr)> = args[1..]
        .iter()
        .map(|a| {
            let (n, ip) = a.split_once('=').expect("NAME=IP");
            (n.to_ascii_lowercase(), ip.parse().expect("IP"))
        })
        .collect();
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Some((id, qname, qtype, question)) = parse_query(&buf[..n]) else {
            continue;
        };
        let answer = answer(id, &qname, qtype, question, &names);
        let _ = sock.send_to(&answer, peer);
        println!(
            "{{\"id\":{id},\"name\":\"{qname}\",\"type\":{qtype},\"bytes\":{}}}",
            answer.len()
        );
        let _ = std::io::stdout().flush();
    }
}

/// (id, lowercase name, type, the question section's bytes).
fn parse_query(b: &[u8]) -> Option<(u16, String, u16, &[u8])> {
    let id = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*b.get(at)?);
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(b.get(at + 1..at + 1 + len)?).to_ascii_lowercase());
        at += 1 + len;
    }
    let qtype = u16::from_be_bytes([*b.get(at + 1)?, *b.get(at + 2)?]);
    Some((id, labels.join("."), qtype, b.get(12..at + 5)?))
}

/// A record pointing at the question's name (offset 12).
fn record(rtype: u16, ttl: u32, data: &[u8]) -> Vec<u8> {
    let mut r = vec![0xc0, 12];
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1]);
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
    r
}

fn answer(
    id: u16,
    qname: &str,
    qtype: u16,
    question: &[u8],
    names: &[(String, std::net::IpAddr)],
) -> Vec<u8> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut announced = None;
    let mode = qname.split('.').next().unwrap_or_default();
    let address = names.iter().find(|(n, _)| n == qname).map(|(_, ip)| *ip);
    match (mode, address) {
        ("huge", _) if qtype == 1 => {
            records = (0..300u16)
                .map(|i| record(1, 60, &[10, 9, (i >> 8) as u8, i as u8]))
                .collect();
        }
        ("loop", _) => {
            // The record's name points at itself: 12 (header) + question.
            let at = (12 + question.len()) as u16;
            let mut r = (0xc000 | at).to_be_bytes().to_vec();
            r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
            records.push(r);
        }
        ("cut", _) => {
            records.push(record(1, 60, &[10, 9, 1, 1]));
            records.push(record(1, 60, &[10, 9, 1, 2])[..8].to_vec());
            announced = Some(2);
        }
        ("label", _) => {
            let mut r = vec![0x41, b'x', 0];
            r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 2, 2]);
            records.push(r);
        }
        ("extra", Some(std::net::IpAddr::V4(ip))) if qtype == 1 => {
            records.push(record(1, 60, &ip.octets()));
            let bank = names.iter().find(|(n, _)| n == "bank.example");
            if let Some((_, std::net::IpAddr::V4(b))) = bank {
                let mut r = vec![4];
                r.extend_from_slice(b"bank");
                r.push(7);
                r.extend_from_slice(b"example");
                r.push(0);
                r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                r.extend_from_slice(&b.octets());
                records.push(r);
            }
        }
        (_, Some(std::net::IpAddr::V4(ip))) if qtype == 1 => {
            records.push(record(1, 60, &ip.octets()));
        }
        (_, Some(std::net::IpAddr::V6(ip))) if qtype == 28 => {
            records.push(record(28, 60, &ip.octets()));
        }
        _ => {}
    }
    let count = announced.unwrap_or(records.len()) as u16;
    let mut m = id.to_be_bytes().to_vec();
    // QR, RD, RA; NOERROR.
    m.extend_from_slice(&[0x81, 0x80, 0, 1]);
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    m.extend_from_slice(question);
    for r in records {
        m.extend(r);
    }
    m
}
