//! Turning kernel bytes (paths, arguments, comm) into strings without losing anything.
//!
//! Valid UTF-8 is kept as is, except: a backslash is written `\\`, and every byte that is not part
//! of valid UTF-8, and every ASCII control character, is written `\xHH` (two lowercase hex
//! digits). The mapping is reversible ([`unescape`]), so non-UTF-8 file names survive into JSON
//! and back, and a file name cannot inject terminal control sequences into text output.

use std::fmt;

/// Displays bytes escaped as described in the module documentation, without allocating.
pub(crate) struct Escaped<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(s) => return write_str_escaped(f, s),
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid` was just validated by from_utf8.
                    write_str_escaped(f, std::str::from_utf8(valid).unwrap_or_default())?;
                    let bad = e.error_len().unwrap_or(after.len());
                    for b in &after[..bad] {
                        write!(f, "\\x{b:02x}")?;
                    }
                    rest = &after[bad..];
                }
            }
        }
        Ok(())
    }
}

fn write_str_escaped(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if c == '\\' || c.is_ascii_control() {
            f.write_str(&s[start..i])?;
            if c == '\\' {
                f.write_str("\\\\")?;
            } else {
                write!(f, "\\x{:02x}", c as u32)?;
            }
            start = i + c.len_utf8();
        }
    }
    f.write_str(&s[start..])
}

#[cfg(test)]
/// Escapes `bytes` as described in the module documentation.
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    Escaped(bytes).to_string()
}

/// Reverses [`escape_bytes`]. Returns `None` for a malformed escape.
pub(crate) fn unescape(s: &str) -> Option<Vec<u8>> {
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
pub(crate) fn until_nul(bytes: &[u8]) -> &[u8] {
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
