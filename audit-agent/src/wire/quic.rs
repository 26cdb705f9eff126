//! QUIC Initial packets (RFC 9000 17.2.2, RFC 9001 5): the client's first packets carry its TLS
//! ClientHello in CRYPTO frames, encrypted with keys anyone can derive from the packet itself
//! (the Destination Connection ID and a salt the RFC publishes). Decrypting them is reading what
//! the packet says — the server name — not breaking anything: the Initial keys protect against
//! tampering on path, not against reading.
//!
//! [`initial`] removes header protection, decrypts, and returns the CRYPTO frames' bytes by
//! offset; the caller reassembles them across packets (a post-quantum hello spans two) and reads
//! the hello with `tls::client_hello_message`. Versions 1 (RFC 9000) and 2 (RFC 9369); any other
//! version is reported as such, unread.

use aes::cipher::{BlockEncrypt as _, KeyInit as _, generic_array::GenericArray};
use aes_gcm::{Aes128Gcm, aead::Aead as _, aead::Payload};
use hkdf::Hkdf;
use sha2::Sha256;

use super::Issue;

pub(crate) const VERSION_1: u32 = 1;
pub(crate) const VERSION_2: u32 = 0x6b33_43cf;
const SALT_V1: [u8; 20] = [
    0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad,
    0xcc, 0xbb, 0x7f, 0x0a,
];
const SALT_V2: [u8; 20] = [
    0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb,
    0xf9, 0xbd, 0x2e, 0xd9,
];
/// Most CRYPTO bytes kept from one connection's Initials.
pub(crate) const CRYPTO_MAX: u64 = 16384;

/// What one Initial packet carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Initial {
    pub(crate) version: u32,
    /// The Destination Connection ID (the client's choice in its first Initial: the key).
    pub(crate) dcid: Vec<u8>,
    /// CRYPTO frames: (offset in the handshake stream, bytes).
    pub(crate) crypto: Vec<(u64, Vec<u8>)>,
}

/// What a datagram that starts with a QUIC long header is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Datagram {
    /// An Initial packet, decrypted.
    Initial(Initial),
    /// A long-header packet of a version this cannot decrypt (or another packet type first).
    Unreadable { version: u32, issue: Issue },
}

/// Whether `b` starts like a QUIC long-header packet (header form and fixed bit set).
pub(crate) fn is_long_header(b: &[u8]) -> bool {
    b.len() >= 7 && b[0] & 0xc0 == 0xc0
}

/// Reads the first packet of a datagram a client sent.
pub(crate) fn initial(b: &[u8]) -> Datagram {
    let bad = |version, issue| Datagram::Unreadable { version, issue };
    if !is_long_header(b) {
        return bad(0, Issue::Malformed);
    }
    let version = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
    let (salt, labels, initial_type) = match version {
        VERSION_1 => (&SALT_V1, ["quic key", "quic iv", "quic hp"], 0),
        VERSION_2 => (&SALT_V2, ["quicv2 key", "quicv2 iv", "quicv2 hp"], 1),
        _ => return bad(version, Issue::UnknownVersion),
    };
    if (b[0] >> 4) & 0x03 != initial_type {
        return bad(version, Issue::Malformed);
    }
    match decrypt(b, salt, &labels) {
        Some(i) => Datagram::Initial(Initial { version, ..i }),
        None => bad(version, Issue::Malformed),
    }
}

/// A variable-length integer (RFC 9000 16) at `*at`.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let first = *b.get(*at)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(*at..*at + len)?;
    let mut v = u64::from(first & 0x3f);
    for x in &bytes[1..] {
        v = (v << 8) | u64::from(*x);
    }
    *at += len;
    Some(v)
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(secret: &[u8], label: &str, len: usize) -> Option<Vec<u8>> {
    let full = format!("tls13 {label}");
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push(u8::try_from(full.len()).ok()?);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    let mut out = vec![0; len];
    Hkdf::<Sha256>::from_prk(secret)
        .ok()?
        .expand(&info, &mut out)
        .ok()?;
    Some(out)
}

/// The client's Initial key, IV and header-protection key for `dcid`.
pub(crate) fn client_keys(
    dcid: &[u8],
    salt: &[u8; 20],
    labels: &[&str; 3],
) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), dcid);
    let client = expand_label(&prk, "client in", 32)?;
    Some((
        expand_label(&client, labels[0], 16)?,
        expand_label(&client, labels[1], 12)?,
        expand_label(&client, labels[2], 16)?,
    ))
}

/// Removes header protection and decrypts the first packet of `b`; its CRYPTO frames.
fn decrypt(b: &[u8], salt: &[u8; 20], labels: &[&str; 3]) -> Option<Initial> {
    let mut at = 5;
    let dcid_len = usize::from(*b.get(at)?);
    let dcid = b.get(at + 1..at + 1 + dcid_len)?.to_vec();
    at += 1 + dcid_len;
    let scid_len = usize::from(*b.get(at)?);
    at += 1 + scid_len;
    let token_len = usize::try_from(varint(b, &mut at)?).ok()?;
    at = at.checked_add(token_len)?;
    let length = usize::try_from(varint(b, &mut at)?).ok()?;
    let pn_offset = at;
    let end = pn_offset.checked_add(length)?;
    let packet = b.get(..end)?;
    let (key, iv, hp) = client_keys(&dcid, salt, labels)?;
    // Header protection: a mask from a sample 4 bytes past the packet number's start.
    let mut sample = GenericArray::clone_from_slice(packet.get(pn_offset + 4..pn_offset + 20)?);
    aes::Aes128::new_from_slice(&hp)
        .ok()?
        .encrypt_block(&mut sample);
    let mut header = packet[..pn_offset].to_vec();
    header[0] ^= sample[0] & 0x0f;
    let pn_len = usize::from(header[0] & 0x03) + 1;
    let mut pn = 0u64;
    for i in 0..pn_len {
        let byte = packet.get(pn_offset + i)? ^ sample[1 + i];
        header.push(byte);
        pn = (pn << 8) | u64::from(byte);
    }
    let mut nonce = iv;
    for (i, x) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= x;
    }
    let plain = Aes128Gcm::new_from_slice(&key)
        .ok()?
        .decrypt(
            GenericArray::from_slice(&nonce),
            Payload {
                msg: packet.get(pn_offset + pn_len..)?,
                aad: &header,
            },
        )
        .ok()?;
    Some(Initial {
        version: 0,
        dcid,
        crypto: crypto_frames(&plain),
    })
}

/// The CRYPTO frames of a decrypted Initial payload (padding, pings and acks skipped; reading
/// stops at any other frame).
fn crypto_frames(p: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(ty) = varint(p, &mut at) {
        match ty {
            0x00 | 0x01 => {}
            0x02 | 0x03 => {
                let Some(()) = skip_ack(p, &mut at, ty == 0x03) else {
                    break;
                };
            }
            0x06 => {
                let (Some(offset), Some(len)) = (varint(p, &mut at), varint(p, &mut at)) else {
                    break;
                };
                let Some(data) = usize::try_from(len)
                    .ok()
                    .and_then(|len| p.get(at..at.checked_add(len)?))
                else {
                    break;
                };
                at += data.len();
                if offset < CRYPTO_MAX {
                    out.push((offset, data.to_vec()));
                }
            }
            _ => break,
        }
    }
    out
}

fn skip_ack(p: &[u8], at: &mut usize, ecn: bool) -> Option<()> {
    varint(p, at)?; // largest acknowledged
    varint(p, at)?; // delay
    let ranges = varint(p, at)?;
    varint(p, at)?; // first range
    for _ in 0..ranges.min(256) {
        varint(p, at)?;
        varint(p, at)?;
    }
    if ecn {
        for _ in 0..3 {
            varint(p, at)?;
        }
    }
    Some(())
}

#[cfg(test)]
pub(crate) mod build {
    //! Client Initial packets for tests, protected as a real client protects them.

    use super::*;

    fn varint_bytes(v: u64) -> Vec<u8> {
        // Two-byte form for everything below 2^14, four above.
        if v < (1 << 14) {
            ((v as u16) | 0x4000).to_be_bytes().to_vec()
        } else {
            ((v as u32) | 0x8000_0000).to_be_bytes().to_vec()
        }
    }

    /// A version 1 Initial to `dcid` carrying `crypto` at `offset`, packet number `pn`, padded
    /// to 1200 bytes.
    pub(crate) fn initial(dcid: &[u8], pn: u32, offset: u64, crypto: &[u8]) -> Vec<u8> {
        let mut payload = vec![0x06];
        payload.extend(varint_bytes(offset));
        payload.extend(varint_bytes(crypto.len() as u64));
        payload.extend_from_slice(crypto);
        let mut header = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
        header.extend_from_slice(dcid);
        header.extend([0, 0]); // no source connection id, no token
        let overhead = header.len() + 2 + 4 + 16;
        payload.resize(payload.len().max(1200 - overhead), 0);
        header.extend(varint_bytes(4 + payload.len() as u64 + 16));
        let pn_offset = header.len();
        header.extend_from_slice(&pn.to_be_bytes());
        let (key, iv, hp) =
            client_keys(dcid, &SALT_V1, &["quic key", "quic iv", "quic hp"]).unwrap();
        let mut nonce = iv;
        for (i, x) in u64::from(pn).to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= x;
        }
        let sealed = Aes128Gcm::new_from_slice(&key)
            .unwrap()
            .encrypt(
                GenericArray::from_slice(&nonce),
                Payload {
                    msg: &payload,
                    aad: &header,
                },
            )
            .unwrap();
        let mut packet = header;
        packet.extend(sealed);
        let mut sample = GenericArray::clone_from_slice(&packet[pn_offset + 4..pn_offset + 20]);
        aes::Aes128::new_from_slice(&hp)
            .unwrap()
            .encrypt_block(&mut sample);
        packet[0] ^= sample[0] & 0x0f;
        for i in 0..4 {
            packet[pn_offset + i] ^= sample[1 + i];
        }
        packet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn initial_keys_are_those_of_rfc_9001_appendix_a() {
        let (key, iv, hp) = client_keys(
            &hex("8394c8f03e515708"),
            &SALT_V1,
            &["quic key", "quic iv", "quic hp"],
        )
        .unwrap();
        assert_eq!(key, hex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(iv, hex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(hp, hex("9f50449e04a0e810283a1e9933adedd2"));
    }

    #[test]
    fn a_protected_initial_reads_back_as_its_crypto_frames() {
        let hello = b"\x01\x00\x00\x05hello".to_vec();
        let p = build::initial(&hex("8394c8f03e515708"), 2, 0, &hello);
        assert!(is_long_header(&p));
        let Datagram::Initial(i) = initial(&p) else {
            panic!("not read");
        };
        assert_eq!(i.version, VERSION_1);
        assert_eq!(i.dcid, hex("8394c8f03e515708"));
        assert_eq!(i.crypto, vec![(0, hello)]);
    }

    #[test]
    fn a_tampered_or_unknown_packet_is_unreadable_not_a_crash() {
        let mut p = build::initial(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 0, b"x");
        let n = p.len();
        p[n - 1] ^= 1;
        assert!(matches!(
            initial(&p),
            Datagram::Unreadable {
                issue: Issue::Malformed,
                ..
            }
        ));
        p[1..5].copy_from_slice(&0xff00_001du32.to_be_bytes());
        assert_eq!(
            initial(&p),
            Datagram::Unreadable {
                version: 0xff00_001d,
                issue: Issue::UnknownVersion
            }
        );
        for cut in [7, 20, 100] {
            let q = build::initial(&[9; 8], 0, 0, b"x");
            let _ = initial(&q[..cut]);
        }
    }
}
