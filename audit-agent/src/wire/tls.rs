//! The TLS ClientHello (RFC 8446 4.1.2): the server name the client asks for (SNI), the
//! application protocols it offers (ALPN), the versions it supports, and whether it encrypts
//! its real hello (ECH, whose outer SNI is the provider's public name, not the destination).
//!
//! The hello may span several TLS records and several TCP segments (post-quantum key shares
//! push it past one packet); the caller hands over the stream's first bytes as reassembled so
//! far. Hand-written like the DNS parser, for the same reason: the fields that were valid are
//! kept when a later one is not.

use std::sync::Arc;

use super::{Issue, host_text, token_text};

/// TLS record type of a handshake.
pub(crate) const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
/// Largest record fragment a peer may send (2^14 plus the expansion TLS 1.2 allows).
const MAX_FRAGMENT: usize = 16384 + 2048;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// `encrypted_client_hello` (RFC 9849, draft numbers before it: 0xfe0d since draft 13).
const EXT_ECH: u16 = 0xfe0d;

/// A ClientHello, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Hello {
    /// The server name (SNI); with ECH, the outer hello's public name.
    pub(crate) sni: Option<Arc<str>>,
    /// Application protocols offered (`h2`, `http/1.1`, ...), odd bytes escaped.
    pub(crate) alpn: Vec<Arc<str>>,
    /// Versions offered: `supported_versions`, else the legacy version (0x0303 = TLS 1.2).
    pub(crate) versions: Vec<u16>,
    /// The hello carries an `encrypted_client_hello` extension: the real server name is
    /// encrypted; `sni` is the public name of whoever terminates ECH.
    pub(crate) ech: bool,
    /// The hello came in QUIC Initial packets (HTTP/3), not a TCP stream.
    pub(crate) quic: bool,
    pub(crate) issues: Vec<Issue>,
    /// Stream bytes the hello's records took.
    pub(crate) len: usize,
}

/// Reads a ClientHello from the start of `b`. `None` while more bytes may come (`more`) and
/// the hello is not complete; once nothing more will come, what there is, flagged.
pub(crate) fn client_hello(b: &[u8], more: bool) -> Option<Hello> {
    let mut hs = Vec::new();
    let mut at = 0;
    let mut issues = Vec::new();
    loop {
        if handshake_complete(&hs) {
            break;
        }
        let Some(header) = b.get(at..at + 5) else {
            if more {
                return None;
            }
            issues.push(Issue::Truncated);
            break;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != HANDSHAKE || header[1] != 3 || len > MAX_FRAGMENT {
            issues.push(Issue::Malformed);
            break;
        }
        let fragment = &b[at + 5..(at + 5 + len).min(b.len())];
        hs.extend_from_slice(fragment);
        if fragment.len() < len {
            if more {
                return None;
            }
            issues.push(Issue::Truncated);
            at = b.len();
            break;
        }
        at += 5 + len;
    }
    let mut hello = parse_handshake(&hs, issues.is_empty());
    hello.issues.splice(0..0, issues);
    hello.issues.dedup();
    hello.len = at;
    Some(hello)
}

/// Reads a ClientHello from handshake messages without the record layer (what QUIC's CRYPTO
/// frames carry). `None` while more may come and the message is not complete.
pub(crate) fn client_hello_message(hs: &[u8], more: bool) -> Option<Hello> {
    if handshake_complete(hs) {
        let end = 4 + u24(&hs[1..4]);
        return Some(parse_handshake(&hs[..end], true));
    }
    if more {
        return None;
    }
    let mut h = parse_handshake(hs, false);
    if !h.issues.contains(&Issue::Truncated) {
        h.issues.push(Issue::Truncated);
    }
    Some(h)
}

/// Whether `hs` holds a whole handshake message (type, 3-byte length, body).
fn handshake_complete(hs: &[u8]) -> bool {
    hs.len() >= 4 && hs.len() >= 4 + u24(&hs[1..4])
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor over a length-delimited structure; every read is bounded by the bytes it holds.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }

    /// A vector with a `width`-byte length prefix (cut to what is there: `cut` says so).
    fn vector(&mut self, width: usize) -> Option<(Cursor<'a>, bool)> {
        let len = match width {
            1 => usize::from(self.u8()?),
            _ => usize::from(self.u16()?),
        };
        let end = self.at.checked_add(len)?;
        let cut = end > self.b.len();
        let s = &self.b[self.at..end.min(self.b.len())];
        self.at = end.min(self.b.len());
        Some((Cursor { b: s, at: 0 }, cut))
    }

    fn done(&self) -> bool {
        self.at >= self.b.len()
    }
}

/// The ClientHello in a handshake message's bytes; `whole`: the message is all there.
fn parse_handshake(hs: &[u8], whole: bool) -> Hello {
    let mut h = Hello::default();
    if hs.first().is_some_and(|&t| t != CLIENT_HELLO) {
        h.issues.push(Issue::Malformed);
        return h;
    }
    let body = hs.get(4..).unwrap_or_default();
    let body = &body[..body.len().min(hs.get(1..4).map_or(0, u24))];
    let mut c = Cursor { b: body, at: 0 };
    if read_hello(&mut c, &mut h).is_none() {
        h.issues.push(if whole {
            Issue::Malformed
        } else {
            Issue::Truncated
        });
    }
    h
}

/// Reads the fixed fields and the extensions; `None` when the bytes end or break the format.
fn read_hello(c: &mut Cursor<'_>, h: &mut Hello) -> Option<()> {
    let legacy = c.u16()?;
    h.versions = vec![legacy];
    c.take(32)?; // random
    c.vector(1)?; // legacy_session_id
    let (_, cut) = c.vector(2)?; // cipher_suites
    if cut {
        return None;
    }
    c.vector(1)?; // legacy_compression_methods
    if c.done() {
        return Some(()); // no extensions (SSL 3.0 style)
    }
    let (mut exts, cut) = c.vector(2)?;
    while !exts.done() {
        let ty = exts.u16()?;
        let (data, ext_cut) = exts.vector(2)?;
        read_extension(ty, data, h)?;
        if ext_cut {
            return None;
        }
    }
    (!cut).then_some(())
}

fn read_extension(ty: u16, mut data: Cursor<'_>, h: &mut Hello) -> Option<()> {
    match ty {
        EXT_SERVER_NAME => {
            let (mut list, _) = data.vector(2)?;
            while !list.done() {
                let kind = list.u8()?;
                let (name, _) = list.vector(2)?;
                if kind == 0 && h.sni.is_none() {
                    h.sni = Some(host_text(name.b));
                }
            }
        }
        EXT_ALPN => {
            let (mut list, _) = data.vector(2)?;
            while !list.done() {
                let (p, _) = list.vector(1)?;
                h.alpn.push(token_text(p.b));
            }
        }
        EXT_SUPPORTED_VERSIONS => {
            let (mut list, _) = data.vector(1)?;
            let mut versions = Vec::new();
            while !list.done() {
                versions.push(list.u16()?);
            }
            h.versions = versions;
        }
        EXT_ECH => h.ech = true,
        _ => {}
    }
    Some(())
}

/// The name of a TLS version (`TLS1.3`), or its number in hex.
pub(crate) fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL3.0".into(),
        0x0301 => "TLS1.0".into(),
        0x0302 => "TLS1.1".into(),
        0x0303 => "TLS1.2".into(),
        0x0304 => "TLS1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

/// The number of a name [`version_name`] gives.
pub(crate) fn version_number(s: &str) -> Option<u16> {
    match s {
        "SSL3.0" => Some(0x0300),
        "TLS1.0" => Some(0x0301),
        "TLS1.1" => Some(0x0302),
        "TLS1.2" => Some(0x0303),
        "TLS1.3" => Some(0x0304),
        _ => u16::from_str_radix(s.strip_prefix("0x")?, 16).ok(),
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! ClientHellos for tests, written byte by byte.

    fn vec16(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend(vec16(data));
        v
    }

    /// A ClientHello handshake message with SNI `sni`, ALPN `alpn`, TLS 1.3, and `pad` bytes of
    /// padding extension (to make it span records or segments), optionally with ECH.
    pub(crate) fn hello(sni: &str, alpn: &[&str], pad: usize, ech: bool) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0);
        body.extend(vec16(&[0x13, 0x01]));
        body.extend([1, 0]);
        let mut exts = Vec::new();
        let mut sn = vec![0];
        sn.extend(vec16(sni.as_bytes()));
        exts.extend(ext(0, &vec16(&sn)));
        let mut protos = Vec::new();
        for p in alpn {
            protos.push(p.len() as u8);
            protos.extend_from_slice(p.as_bytes());
        }
        exts.extend(ext(16, &vec16(&protos)));
        exts.extend(ext(43, &[2, 3, 4]));
        if ech {
            exts.extend(ext(0xfe0d, &[0; 40]));
        }
        exts.extend(ext(21, &vec![0; pad]));
        body.extend(vec16(&exts));
        let mut hs = vec![1];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        hs
    }

    /// `hs` in TLS records of at most `max` bytes of fragment each.
    pub(crate) fn records(hs: &[u8], max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for chunk in hs.chunks(max) {
            out.extend([22, 3, 1]);
            out.extend(vec16(chunk));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{build::*, *};

    #[test]
    fn a_hello_in_one_record_names_its_server_protocols_and_versions() {
        let b = records(
            &hello("API.Stripe.com", &["h2", "http/1.1"], 0, false),
            16384,
        );
        let h = client_hello(&b, true).expect("complete");
        assert_eq!(h.sni.as_deref(), Some("api.stripe.com"));
        assert_eq!(
            h.alpn.iter().map(|a| &**a).collect::<Vec<_>>(),
            ["h2", "http/1.1"]
        );
        assert_eq!(h.versions, vec![0x0304]);
        assert!(!h.ech && h.issues.is_empty());
        assert_eq!(h.len, b.len());
    }

    #[test]
    fn a_hello_split_over_records_and_segments_waits_for_the_rest() {
        // 2000 bytes of padding: a post-quantum sized hello, in records of 1000 bytes.
        let b = records(&hello("split.example", &[], 2000, false), 1000);
        for cut in [3, 5, 600, 1005, b.len() - 1] {
            assert_eq!(client_hello(&b[..cut], true), None, "cut at {cut}");
        }
        let h = client_hello(&b, true).unwrap();
        assert_eq!(h.sni.as_deref(), Some("split.example"));
        assert!(h.issues.is_empty());
    }

    #[test]
    fn a_hello_cut_for_good_keeps_what_was_read_and_says_truncated() {
        let b = records(&hello("kept.example", &["h2"], 3000, false), 16384);
        let h = client_hello(&b[..200], false).unwrap();
        assert_eq!(h.sni.as_deref(), Some("kept.example"));
        assert_eq!(h.issues, vec![Issue::Truncated]);
    }

    #[test]
    fn ech_is_noticed_and_the_outer_name_kept() {
        let b = records(&hello("cloudflare-ech.com", &[], 0, true), 16384);
        let h = client_hello(&b, true).unwrap();
        assert!(h.ech);
        assert_eq!(h.sni.as_deref(), Some("cloudflare-ech.com"));
    }

    #[test]
    fn garbage_after_a_handshake_header_is_malformed_not_a_crash() {
        let mut b = records(&hello("x.example", &[], 0, false), 16384);
        // The last extension's length far beyond the message.
        let n = b.len();
        b[n - 2] = 0xff;
        let h = client_hello(&b, true).unwrap();
        assert!(h.issues.contains(&Issue::Malformed) || h.issues.contains(&Issue::Truncated));
        // A record header announcing an alert, a huge record, random bytes.
        for bad in [
            &b"\x16\x03\x01\xff\xff"[..],
            b"\x16\x03\x01\x00\x01\x02",
            b"\x16\x03",
        ] {
            if let Some(h) = client_hello(bad, false) {
                assert!(!h.issues.is_empty());
            }
        }
    }

    #[test]
    fn version_names_round_trip() {
        for v in [0x0300, 0x0303, 0x0304, 0x7f1c] {
            assert_eq!(version_number(&version_name(v)), Some(v));
        }
    }
}
