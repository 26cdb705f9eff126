//! DNS messages (RFC 1035) as far as they are valid: the header, the first question, and the
//! answer section's records (A, AAAA and CNAME with their data; others by type and length).
//!
//! Written here rather than taken from a crate: the messages come from processes an attacker
//! may control, and every crate we looked at (hickory-proto, simple-dns, domain) rejects a
//! message as a whole at its first fault, while the trail must keep what was valid — the
//! question of an answer whose records are cut, the first records before a compression loop —
//! and say exactly what was wrong. The parser is bounded: names of at most 255 bytes,
//! compression pointers that only point backwards (so no loop can be followed), at most
//! [`MAX_RECORDS`] answer records.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use super::{Issue, name_text};

/// Answer records read from one message; the rest are counted, not read.
pub(crate) const MAX_RECORDS: usize = 64;
/// Longest name in wire form (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
const HEADER: usize = 12;

pub(crate) const TYPE_A: u16 = 1;
pub(crate) const TYPE_CNAME: u16 = 5;
pub(crate) const TYPE_AAAA: u16 = 28;

/// A DNS message, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) id: u16,
    /// QR: a response.
    pub(crate) response: bool,
    pub(crate) opcode: u8,
    /// TC: the resolver cut the answer (the client retries over TCP).
    pub(crate) truncated_flag: bool,
    pub(crate) rcode: u8,
    /// The first question.
    pub(crate) question: Option<Question>,
    /// Counts the header announces.
    pub(crate) question_count: u16,
    pub(crate) answer_count: u16,
    /// The answer section's records that could be read.
    pub(crate) answers: Vec<Record>,
    /// What was wrong, in the order found; empty for a valid message.
    pub(crate) issues: Vec<Issue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Question {
    /// Presentation form, lowercase, no trailing dot (`.` for the root).
    pub(crate) name: Arc<str>,
    pub(crate) qtype: u16,
    pub(crate) qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) name: Arc<str>,
    pub(crate) rtype: u16,
    pub(crate) ttl: u32,
    pub(crate) data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Arc<str>),
    /// Any other type: its length only.
    Other {
        len: u16,
    },
}

/// Parses one DNS message. `cut`: the capture ended before the message did (so running out of
/// bytes is [`Issue::Truncated`], not [`Issue::Malformed`]).
pub(crate) fn parse(b: &[u8], cut: bool) -> Message {
    let mut m = Message {
        id: 0,
        response: false,
        opcode: 0,
        truncated_flag: false,
        rcode: 0,
        question: None,
        question_count: 0,
        answer_count: 0,
        answers: Vec::new(),
        issues: Vec::new(),
    };
    let short = if cut {
        Issue::Truncated
    } else {
        Issue::Malformed
    };
    if b.len() < HEADER {
        m.issues.push(short);
        if b.len() >= 2 {
            m.id = u16::from_be_bytes([b[0], b[1]]);
        }
        return m;
    }
    m.id = u16::from_be_bytes([b[0], b[1]]);
    m.response = b[2] & 0x80 != 0;
    m.opcode = (b[2] >> 3) & 0x0f;
    m.truncated_flag = b[2] & 0x02 != 0;
    m.rcode = b[3] & 0x0f;
    m.question_count = u16::from_be_bytes([b[4], b[5]]);
    m.answer_count = u16::from_be_bytes([b[6], b[7]]);
    let mut at = HEADER;
    if let Err(e) = read_sections(b, &mut at, &mut m) {
        // Running out of bytes is the capture's doing only when the capture was cut.
        m.issues.push(if e == Issue::Truncated { short } else { e });
    }
    if m.answers.len() < usize::from(m.answer_count) && m.issues.is_empty() {
        m.issues.push(Issue::TooManyRecords);
    }
    // The capture ended before the message did, whether or not reading got that far.
    if cut && !m.issues.contains(&Issue::Truncated) {
        m.issues.push(Issue::Truncated);
    }
    m
}

/// Reads the questions (keeping the first) and the answer records.
fn read_sections(b: &[u8], at: &mut usize, m: &mut Message) -> Result<(), Issue> {
    for i in 0..m.question_count {
        let name = read_name(b, at)?;
        let fixed = take(b, at, 4)?;
        if i == 0 {
            m.question = Some(Question {
                name,
                qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
                qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
            });
        }
    }
    for _ in 0..usize::from(m.answer_count).min(MAX_RECORDS) {
        let r = read_record(b, at)?;
        m.answers.push(r);
    }
    Ok(())
}

fn read_record(b: &[u8], at: &mut usize) -> Result<Record, Issue> {
    let name = read_name(b, at)?;
    let fixed = take(b, at, 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let len = u16::from_be_bytes([fixed[8], fixed[9]]);
    let start = *at;
    let rdata = take(b, at, usize::from(len))?;
    let data = match rtype {
        TYPE_A => RData::A(Ipv4Addr::from(
            <[u8; 4]>::try_from(rdata).map_err(|_| Issue::Malformed)?,
        )),
        TYPE_AAAA => RData::Aaaa(Ipv6Addr::from(
            <[u8; 16]>::try_from(rdata).map_err(|_| Issue::Malformed)?,
        )),
        TYPE_CNAME => {
            let mut p = start;
            let target = read_name(b, &mut p)?;
            if p != start + usize::from(len) {
                return Err(Issue::Malformed);
            }
            RData::Cname(target)
        }
        _ => RData::Other { len },
    };
    Ok(Record {
        name,
        rtype,
        ttl,
        data,
    })
}

/// `n` bytes at `*at`; [`Issue::Truncated`] when the message ends first.
fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], Issue> {
    let s = b.get(*at..at.checked_add(n).ok_or(Issue::Truncated)?);
    let s = s.ok_or(Issue::Truncated)?;
    *at += n;
    Ok(s)
}

/// Reads a (possibly compressed) name at `*at`, moving `*at` past it in the message.
fn read_name(b: &[u8], at: &mut usize) -> Result<Arc<str>, Issue> {
    let mut wire = Vec::with_capacity(64);
    let mut pos = *at;
    // Where the name continues in the message once a pointer was followed.
    let mut resume = None;
    // Pointers must point strictly before the name that uses them: no loop can be followed.
    let mut lowest = pos;
    loop {
        let len = *b.get(pos).ok_or(Issue::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => {
                let label = b
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(Issue::Truncated)?;
                if wire.len() + label.len() + 2 > MAX_NAME {
                    return Err(Issue::NameTooLong);
                }
                wire.push(len);
                wire.extend_from_slice(label);
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let low = *b.get(pos + 1).ok_or(Issue::Truncated)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if target >= lowest {
                    return Err(Issue::CompressionLoop);
                }
                resume.get_or_insert(pos + 2);
                lowest = target;
                pos = target;
            }
            _ => return Err(Issue::Malformed),
        }
    }
    *at = resume.unwrap_or(pos);
    Ok(name_text(&wire))
}

/// The name of a query type (`A`, `AAAA`, ...) or `TYPE<n>` (RFC 3597).
pub(crate) fn type_name(t: u16) -> std::borrow::Cow<'static, str> {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}").into(),
    };
    name.into()
}

/// The type number of a name [`type_name`] gives.
pub(crate) fn type_number(s: &str) -> Option<u16> {
    if let Some(n) = s.strip_prefix("TYPE") {
        return n.parse().ok();
    }
    (0..=u16::from(u8::MAX))
        .chain([257])
        .find(|t| type_name(*t) == s)
}

/// The name of a response code (RFC 1035, 2136, 6895).
pub(crate) fn rcode_name(rcode: u8) -> std::borrow::Cow<'static, str> {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{rcode}").into(),
    };
    name.into()
}

/// The code of a name [`rcode_name`] gives.
pub(crate) fn rcode_number(s: &str) -> Option<u8> {
    if let Some(n) = s.strip_prefix("RCODE") {
        return n.parse().ok();
    }
    (0..16).find(|r| rcode_name(*r) == s)
}

#[cfg(test)]
pub(crate) mod build {
    //! DNS messages for tests, written byte by byte.

    /// A name in wire form.
    pub(crate) fn name(n: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A query for `qname` of type `qtype`.
    pub(crate) fn query(id: u16, qname: &str, qtype: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend(name(qname));
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    /// An answer to [`query`] with `records` (name pointer to the question, type, ttl, rdata).
    pub(crate) fn answer(
        id: u16,
        qname: &str,
        qtype: u16,
        rcode: u8,
        records: &[(u16, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = query(id, qname, qtype);
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        m[7] = records.len() as u8;
        for (t, ttl, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::{build::*, *};

    #[test]
    fn an_answer_with_a_cname_chain_is_read_whole() {
        let mut cname = name("edge.example.net");
        let a = vec![192, 0, 2, 7];
        let m = answer(
            0x1234,
            "API.Example.com",
            TYPE_A,
            0,
            &[
                (TYPE_CNAME, 300, std::mem::take(&mut cname)),
                (TYPE_A, 60, a),
            ],
        );
        let m = parse(&m, false);
        assert!(m.issues.is_empty(), "{:?}", m.issues);
        assert_eq!((m.id, m.response, m.rcode), (0x1234, true, 0));
        let q = m.question.unwrap();
        assert_eq!((&*q.name, q.qtype), ("api.example.com", TYPE_A));
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].data, RData::Cname("edge.example.net".into()));
        assert_eq!(m.answers[1].data, RData::A(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(m.answers[1].ttl, 60);
    }

    #[test]
    fn a_pointer_to_itself_is_a_loop_and_stops_the_parse_with_the_question_kept() {
        let mut m = answer(7, "a.example", TYPE_A, 0, &[]);
        m[7] = 1;
        // A record whose name is a pointer to itself.
        let at = m.len() as u16;
        m.extend_from_slice(&(0xc000 | at).to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        let m = parse(&m, false);
        assert_eq!(m.issues, vec![Issue::CompressionLoop]);
        assert_eq!(m.question.unwrap().name.as_ref(), "a.example");
        assert!(m.answers.is_empty());
    }

    #[test]
    fn two_pointers_to_each_other_are_a_loop() {
        let mut m = query(1, "x", TYPE_A);
        m[2] = 0x81;
        m[7] = 1;
        let at = m.len() as u16;
        // name: pointer to at+2, which points back to at.
        m.extend_from_slice(&(0xc000 | (at + 2)).to_be_bytes());
        m.extend_from_slice(&(0xc000 | at).to_be_bytes());
        assert_eq!(parse(&m, false).issues, vec![Issue::CompressionLoop]);
    }

    #[test]
    fn a_message_cut_by_the_capture_is_truncated_not_malformed() {
        let full = answer(
            9,
            "cut.example",
            TYPE_AAAA,
            0,
            &[(TYPE_AAAA, 5, vec![0; 16])],
        );
        let m = parse(&full[..full.len() - 3], true);
        assert_eq!(m.issues, vec![Issue::Truncated]);
        assert_eq!(m.question.unwrap().name.as_ref(), "cut.example");
        let m = parse(&full[..full.len() - 3], false);
        assert_eq!(m.issues, vec![Issue::Malformed]);
        let m = parse(&full[..5], true);
        assert_eq!((m.id, m.issues.clone()), (9, vec![Issue::Truncated]));
    }

    #[test]
    fn bad_records_and_long_names_are_flagged() {
        // An A record of 3 bytes.
        let m = answer(1, "x.example", TYPE_A, 0, &[(TYPE_A, 1, vec![1, 2, 3])]);
        assert_eq!(parse(&m, false).issues, vec![Issue::Malformed]);
        // A name of 300 bytes.
        let long = vec!["abcdefghij"; 30].join(".");
        assert_eq!(
            parse(&query(1, &long, TYPE_A), false).issues,
            vec![Issue::NameTooLong]
        );
        // Label type 0x40 (reserved).
        let mut m = query(1, "x", TYPE_A);
        m[12] = 0x41;
        assert_eq!(parse(&m, false).issues, vec![Issue::Malformed]);
    }

    #[test]
    fn names_with_odd_bytes_are_escaped_in_presentation_form() {
        let mut m = query(1, "a", TYPE_A);
        // Replace the label "a" with "A.\0" (a dot and a NUL inside one label).
        m.splice(12..14, [3, b'A', b'.', 0]);
        let q = parse(&m, false).question.unwrap();
        assert_eq!(q.name.as_ref(), "a\\.\\000");
    }

    #[test]
    fn type_and_rcode_names_round_trip() {
        for t in [1, 28, 5, 65, 257, 999] {
            assert_eq!(type_number(&type_name(t)), Some(t));
        }
        for r in 0..16 {
            assert_eq!(rcode_number(&rcode_name(r)), Some(r));
        }
    }
}
