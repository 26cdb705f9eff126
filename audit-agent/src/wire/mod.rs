//! Protocols on the wire: what the bytes a watched socket sent or received say — DNS messages,
//! TLS ClientHellos, HTTP/1.x requests. Pure functions over bytes the kernel copied from packets
//! (`audit_common::net`), bounded in time and memory, that never fail: a message is read as far
//! as it is valid and what was wrong is named ([`Issue`]).
//!
//! [`classify`] tells from the first bytes of a TCP stream which of them it carries.

pub(crate) mod dns;
pub(crate) mod http;
pub(crate) mod quic;
pub(crate) mod tls;

use std::sync::Arc;

pub(crate) use crate::event::WireIssue as Issue;

/// What the first bytes of a TCP stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// A TLS handshake record.
    Tls,
    /// An HTTP/1.x request line.
    Http,
    /// Not enough bytes yet to tell.
    Unknown,
    /// Neither.
    Other,
}

/// Classifies the start of a client's stream.
pub(crate) fn classify(b: &[u8]) -> StreamKind {
    if b.is_empty() {
        return StreamKind::Unknown;
    }
    if b[0] == tls::HANDSHAKE {
        return match b.get(1) {
            None => StreamKind::Unknown,
            Some(3) => StreamKind::Tls,
            Some(_) => StreamKind::Other,
        };
    }
    http::classify(b)
}

/// A DNS or TLS host name in presentation form: ASCII letters lowercased, any byte outside
/// `[a-z0-9-_*]` as `\DDD` (RFC 1035 5.1), a dot inside a label as `\.`, labels joined by `.`.
/// `wire`: length-prefixed labels (DNS wire form without the final zero).
pub(crate) fn name_text(wire: &[u8]) -> Arc<str> {
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let len = usize::from(wire[i]);
        let label = &wire[i + 1..(i + 1 + len).min(wire.len())];
        if !out.is_empty() {
            out.push('.');
        }
        push_label(&mut out, label);
        i += 1 + len;
    }
    if out.is_empty() {
        out.push('.');
    }
    out.into()
}

/// A dotted host name (a TLS server name, an HTTP Host) in the same form as [`name_text`]: its
/// dots separate labels, a trailing dot is dropped.
pub(crate) fn host_text(dotted: &[u8]) -> Arc<str> {
    let dotted = dotted.strip_suffix(b".").unwrap_or(dotted);
    let mut out = String::with_capacity(dotted.len());
    for (i, label) in dotted.split(|&b| b == b'.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_label(&mut out, label);
    }
    out.into()
}

/// A protocol token (an ALPN id) as text: printable ASCII kept, any other byte and `\\` as
/// `\DDD`.
pub(crate) fn token_text(b: &[u8]) -> Arc<str> {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() && c != b'\\' {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("\\{c:03}"));
        }
    }
    out.into()
}

fn push_label(out: &mut String, label: &[u8]) {
    for &b in label {
        match b.to_ascii_lowercase() {
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'*') => out.push(char::from(c)),
            b'.' => out.push_str("\\."),
            c => {
                out.push('\\');
                out.push_str(&format!("{c:03}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_told_apart_by_their_first_bytes() {
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), StreamKind::Tls);
        assert_eq!(classify(b"\x16"), StreamKind::Unknown);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), StreamKind::Http);
        assert_eq!(classify(b"GE"), StreamKind::Unknown);
        assert_eq!(classify(b"SSH-2.0-OpenSSH\r\n"), StreamKind::Other);
        assert_eq!(classify(b"\x00\x1c\x12\x34"), StreamKind::Other);
    }

    #[test]
    fn host_names_are_lowercased_and_odd_bytes_escaped() {
        assert_eq!(&*host_text(b"API.Stripe.COM."), "api.stripe.com");
        assert_eq!(&*host_text(b"a b\xff.x"), "a\\032b\\255.x");
    }
}
