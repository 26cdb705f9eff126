//! A small JSON writer for the record's hot path: every record passes through it, so it writes
//! straight into the caller's buffer — field names as the constant bytes they are, numbers with
//! `itoa`, strings escaped eight bytes at a time — where serde would scan each field name and
//! value byte by byte. The output is exactly serde_json's compact form (same escapes, same
//! lowercase `\u00xx`); rare parts (gap, pod, connect completion, owner, io_uring, ia32) still go
//! through serde into the same buffer.

use serde::Serialize;

use crate::escape::Escaped;

/// Writes one JSON object's members into `buf`; [`Object::close`] ends it.
pub(super) struct Object<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Object<'b> {
    pub(super) fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, first: true }
    }

    pub(super) fn close(self) {
        self.buf.push(b'}');
    }

    /// A string member made of `parts`, joined.
    #[inline(always)]
    pub(super) fn joined(&mut self, name: &'static str, parts: &[&str]) {
        let buf = self.key(name);
        buf.push(b'"');
        for p in parts {
            string_contents(buf, p.as_bytes());
        }
        buf.push(b'"');
    }

    /// Starts a member: `,"name":`. Names are this module's constants and need no escaping.
    #[inline(always)]
    fn key(&mut self, name: &'static str) -> &mut Vec<u8> {
        debug_assert!(!needs_escape(name.as_bytes()), "{name}");
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b"\":");
        self.buf
    }

    #[inline(always)]
    pub(super) fn str(&mut self, name: &'static str, value: &str) {
        string(self.key(name), value.as_bytes());
    }

    #[inline(always)]
    pub(super) fn opt_str(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    /// Kernel bytes: escaped as `escape.rs` says, then as JSON.
    #[inline(always)]
    pub(super) fn bytes(&mut self, name: &'static str, value: &[u8]) {
        kernel_bytes(self.key(name), value);
    }

    #[inline(always)]
    pub(super) fn opt_bytes(&mut self, name: &'static str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.bytes(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    #[inline(always)]
    pub(super) fn u64(&mut self, name: &'static str, value: u64) {
        let mut n = itoa::Buffer::new();
        self.key(name).extend_from_slice(n.format(value).as_bytes());
    }

    #[inline(always)]
    pub(super) fn i64(&mut self, name: &'static str, value: i64) {
        self.opt_i64(name, Some(value));
    }

    #[inline(always)]
    pub(super) fn opt_i64(&mut self, name: &'static str, value: Option<i64>) {
        let buf = self.key(name);
        match value {
            Some(v) => buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => buf.extend_from_slice(b"null"),
        }
    }

    #[inline(always)]
    pub(super) fn null(&mut self, name: &'static str) {
        self.key(name).extend_from_slice(b"null");
    }

    /// An array of kernel byte strings.
    pub(super) fn bytes_list<'v>(
        &mut self,
        name: &'static str,
        values: impl Iterator<Item = &'v [u8]>,
    ) {
        let buf = self.key(name);
        buf.push(b'[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            kernel_bytes(buf, v);
        }
        buf.push(b']');
    }

    #[inline(always)]
    pub(super) fn bool(&mut self, name: &'static str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(name).extend_from_slice(text);
    }

    #[inline(always)]
    pub(super) fn strings<S: AsRef<str>>(&mut self, name: &'static str, values: &[S]) {
        let buf = self.key(name);
        buf.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            string(buf, v.as_ref().as_bytes());
        }
        buf.push(b']');
    }

    /// A member whose value is a nested object.
    #[inline(always)]
    pub(super) fn object(&mut self, name: &'static str) -> Object<'_> {
        Object::open(self.key(name))
    }

    /// How many bytes the output holds (to copy what a run of members wrote, see [`Self::copied`]).
    pub(super) fn written(&self) -> usize {
        self.buf.len()
    }

    /// The bytes written since `from` (a [`Self::written`] value).
    pub(super) fn since(&self, from: usize) -> &[u8] {
        &self.buf[from..]
    }

    /// Members written before by an object that had members already (so `members` starts with
    /// the separating comma), copied as they are.
    pub(super) fn copied(&mut self, members: &[u8]) {
        debug_assert!(!self.first && members.first() == Some(&b','));
        self.buf.extend_from_slice(members);
    }

    /// A member written by serde (parts with many optional fields).
    pub(super) fn serde(
        &mut self,
        name: &'static str,
        value: &impl Serialize,
    ) -> serde_json::Result<()> {
        serde_json::to_writer(self.key(name), value)
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The high bit of every byte of `x` that is below `n` (n <= 0x80).
fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH
}

/// The high bit of every byte of `x` that equals `c` (exact as a whole: any set means one does).
fn equal(x: u64, c: u8) -> u64 {
    let y = x ^ (ONES * u64::from(c));
    y.wrapping_sub(ONES) & !y & HIGH
}

/// Whether any byte of `b` is flagged: eight bytes at a time (SWAR) by `word`, which returns
/// nonzero for a word holding one, the rest by `byte`.
#[inline(always)]
fn any_byte(b: &[u8], word: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> bool {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        if word(u64::from_le_bytes(c.try_into().expect("chunks of eight"))) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| byte(c))
}

/// Whether JSON needs an escape anywhere in `b`: a control character, `"` or `\`.
fn needs_escape(b: &[u8]) -> bool {
    any_byte(
        b,
        |x| below(x, 0x20) | equal(x, b'"') | equal(x, b'\\'),
        |c| c < 0x20 || c == b'"' || c == b'\\',
    )
}

/// Whether `b` is printable ASCII without `"` or `\`: kernel bytes that are written as they
/// are, in one pass (the usual path, comm, address).
fn plain_ascii(b: &[u8]) -> bool {
    !any_byte(
        b,
        |x| below(x, 0x20) | (x & HIGH) | equal(x, 0x7f) | equal(x, b'"') | equal(x, b'\\'),
        |c| !(0x20..0x7f).contains(&c) || c == b'"' || c == b'\\',
    )
}

/// Writes `s` (valid UTF-8) as a JSON string, escaped as serde_json escapes.
fn string(buf: &mut Vec<u8>, s: &[u8]) {
    buf.push(b'"');
    string_contents(buf, s);
    buf.push(b'"');
}

/// `s` escaped, without the quotes.
fn string_contents(buf: &mut Vec<u8>, s: &[u8]) {
    if needs_escape(s) {
        escape_into(buf, s);
    } else {
        buf.extend_from_slice(s);
    }
}

fn escape_into(buf: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            c if c < 0x20 => &[],
            _ => continue,
        };
        buf.extend_from_slice(&s[start..i]);
        if short.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        } else {
            buf.extend_from_slice(short);
        }
        start = i + 1;
    }
    buf.extend_from_slice(&s[start..]);
}

/// Kernel bytes as a JSON string: clean UTF-8 (the usual case) as it is, anything else through
/// [`Escaped`] first (the same rule as `Bytes`, which serde parts use).
fn kernel_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    if plain_ascii(b) {
        buf.push(b'"');
        buf.extend_from_slice(b);
        buf.push(b'"');
        return;
    }
    let clean = !b.iter().any(|&c| c < 0x20 || c == b'\\' || c == 0x7f);
    match std::str::from_utf8(b) {
        Ok(_) if clean => string(buf, b),
        _ => string(buf, Escaped(b).to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut buf = Vec::new();
        string(&mut buf, s.as_bytes());
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut specials: Vec<char> = (0u8..0x20).map(char::from).collect();
        specials.extend(['"', '\\', '\u{7f}', '/', 'é', '\u{2028}', '€', '\u{10ffff}']);
        // Every special character at every position of strings around the eight-byte stride.
        for len in 0..20 {
            for at in 0..len {
                for &c in &specials {
                    let s: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert_eq!(written(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn kernel_bytes_take_the_plain_path_only_when_nothing_needs_escaping() {
        // Every byte value at every position around the eight-byte stride: the one-pass path
        // must write what escaping then JSON-escaping writes.
        for len in 1..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let b: Vec<u8> = (0..len).map(|i| if i == at { c } else { b'a' }).collect();
                    let mut fast = Vec::new();
                    kernel_bytes(&mut fast, &b);
                    let slow = serde_json::to_vec(&Escaped(&b).to_string()).unwrap();
                    assert_eq!(fast, slow, "{b:?}");
                }
            }
        }
    }

    #[test]
    fn members_are_compact_json_that_serde_reads_back() {
        let mut buf = Vec::new();
        let mut o = Object::open(&mut buf);
        o.str("a", "x\"y");
        o.opt_str("b", None);
        o.u64("c", u64::MAX);
        o.opt_i64("d", Some(-5));
        o.bool("e", true);
        o.strings("f", &["1", "2"]);
        o.joined("g", &["ab", "-", "7"]);
        o.bytes("h", b"p\xffq\\");
        let mut inner = o.object("i");
        inner.opt_bytes("j", None);
        inner.close();
        o.close();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            r#"{"a":"x\"y","b":null,"c":18446744073709551615,"d":-5,"e":true,"f":["1","2"],"g":"ab-7","h":"p\\xffq\\\\","i":{"j":null}}"#
        );
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }
}
