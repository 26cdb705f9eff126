//! Turning kernel bytes (paths, arguments, comm) into strings without losing anything.
//!
//! Valid UTF-8 is kept as is, except: a backslash is written `\\`, and every byte that is not part
//! of valid UTF-8, and every ASCII control character, is written `\xHH` (two lowercase hex
//! digits). The mapping is reversible ([`unescape`]), so non-UTF-8 file names survive into JSON
//! and back, and a file name cannot inject terminal control sequences into text output.

use std::fmt::Write as _;

/// Escapes `bytes` as described in the module documentation.
pub fn escape_bytes(bytes: &[u8]) -> String {
    // Fast path: plain printable ASCII/UTF-8 without backslashes or controls.
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(|c| c == '\\' || c.is_ascii_control())
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    let mut rest = bytes;
    while !rest.is_empty() {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                push_escaped_str(&mut out, s);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid` was just validated by from_utf8.
                push_escaped_str(&mut out, std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(after.len());
                for b in &after[..bad] {
                    let _ = write!(out, "\\x{b:02x}");
                }
                rest = &after[bad..];
            }
        }
    }
    out
}

fn push_escaped_str(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_ascii_control() {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// Reverses [`escape_bytes`]. Returns `None` for a malformed escape.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1)? {
            b'\\' => {
                out.push(b'\\');
                i += 2;
            }
            b'x' => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Bytes up to the first NUL.
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_utf8_is_unchanged() {
        assert_eq!(escape_bytes(b"/etc/passwd"), "/etc/passwd");
        assert_eq!(escape_bytes("/tmp/caf\u{e9}".as_bytes()), "/tmp/caf\u{e9}");
    }

    #[test]
    fn invalid_bytes_become_hex_escapes() {
        assert_eq!(escape_bytes(b"/tmp/a\xffb\xfe"), "/tmp/a\\xffb\\xfe");
    }

    #[test]
    fn backslash_and_controls_are_escaped() {
        assert_eq!(escape_bytes(b"a\\b"), "a\\\\b");
        assert_eq!(escape_bytes(b"x\x1b[31my\n"), "x\\x1b[31my\\x0a");
    }

    #[test]
    fn escaping_round_trips() {
        for case in [
            &b"/tmp/\xff\xfe\x00z"[..],
            b"a\\xffb",
            b"\\",
            "ü\u{1F600}".as_bytes(),
            b"\xe2\x82",
        ] {
            assert_eq!(unescape(&escape_bytes(case)).unwrap(), case);
        }
    }

    #[test]
    fn malformed_escapes_are_rejected() {
        assert_eq!(unescape("a\\q"), None);
        assert_eq!(unescape("a\\x4"), None);
        assert_eq!(unescape("a\\"), None);
    }
}
