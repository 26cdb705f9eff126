//! A small JSON writer for the record's hot path: every record passes through it, so it writes
//! straight into the caller's buffer — field names as the constant bytes they are, numbers with
//! `itoa`, strings escaped eight bytes at a time — where serde would scan each field name and
//! value byte by byte. The output is exactly serde_json's compact form (same escapes, same
//! lowercase `\u00xx`); rare parts (gap, pod, connect completion, owner, io_uring, ia32) still go
//! through serde into the same buffer.
//!
//! The record's member functions write to any [`Members`]: [`Object`] is the text, [`Tree`] the
//! same members as a `serde_json` value for the renderings that copy parts of the native record
//! (OCSF `unmapped`, ECS `audit_agent`), so nothing parses a record another stage printed.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::escape::Escaped;

/// Where a record's members go: [`Object`] writes them as JSON text (the record's one writer,
/// on every record's path), [`Tree`] builds them as a `serde_json` value (what the OCSF and ECS
/// renderings copy from) — the same member functions write both, so the value is the record, not
/// a parse of it.
pub(super) trait Members {
    /// A member whose value is an object.
    type Nested<'n>: Members
    where
        Self: 'n;

    /// A member whose value is a nested object; [`Members::close`] ends it.
    fn object(&mut self, name: &'static str) -> Self::Nested<'_>;
    fn close(self);
    fn str(&mut self, name: &'static str, value: &str);
    /// A string member made of `parts`, joined.
    fn joined(&mut self, name: &'static str, parts: &[&str]);
    fn opt_str(&mut self, name: &'static str, value: Option<&str>);
    /// Kernel bytes: escaped as `escape.rs` says (see [`kernel_text`]).
    fn bytes(&mut self, name: &'static str, value: &[u8]);
    fn opt_bytes(&mut self, name: &'static str, value: Option<&[u8]>);
    /// An array of kernel byte strings.
    fn bytes_list<'v>(&mut self, name: &'static str, values: impl Iterator<Item = &'v [u8]>);
    fn u64(&mut self, name: &'static str, value: u64);
    fn i64(&mut self, name: &'static str, value: i64) {
        self.opt_i64(name, Some(value));
    }
    fn opt_i64(&mut self, name: &'static str, value: Option<i64>);
    fn null(&mut self, name: &'static str);
    fn bool(&mut self, name: &'static str, value: bool);
    fn strings<S: AsRef<str>>(&mut self, name: &'static str, values: &[S]);
    /// A member written by serde (parts with many optional fields).
    fn serde(&mut self, name: &'static str, value: &impl Serialize) -> serde_json::Result<()>;
}

/// Writes one JSON object's members into `buf`; [`Members::close`] ends it.
pub(super) struct Object<'b> {
    buf: &'b mut Vec<u8>,
    first: bool,
}

impl<'b> Object<'b> {
    pub(super) fn open(buf: &'b mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self { buf, first: true }
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
}

impl Members for Object<'_> {
    type Nested<'n>
        = Object<'n>
    where
        Self: 'n;

    #[inline(always)]
    fn object(&mut self, name: &'static str) -> Object<'_> {
        Object::open(self.key(name))
    }

    fn close(self) {
        self.buf.push(b'}');
    }

    #[inline(always)]
    fn str(&mut self, name: &'static str, value: &str) {
        string(self.key(name), value.as_bytes());
    }

    #[inline(always)]
    fn joined(&mut self, name: &'static str, parts: &[&str]) {
        let buf = self.key(name);
        buf.push(b'"');
        for p in parts {
            string_contents(buf, p.as_bytes());
        }
        buf.push(b'"');
    }

    #[inline(always)]
    fn opt_str(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(v) => self.str(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    #[inline(always)]
    fn bytes(&mut self, name: &'static str, value: &[u8]) {
        kernel_bytes(self.key(name), value);
    }

    #[inline(always)]
    fn opt_bytes(&mut self, name: &'static str, value: Option<&[u8]>) {
        match value {
            Some(v) => self.bytes(name, v),
            None => self.key(name).extend_from_slice(b"null"),
        }
    }

    fn bytes_list<'v>(&mut self, name: &'static str, values: impl Iterator<Item = &'v [u8]>) {
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
    fn u64(&mut self, name: &'static str, value: u64) {
        let mut n = itoa::Buffer::new();
        self.key(name).extend_from_slice(n.format(value).as_bytes());
    }

    #[inline(always)]
    fn opt_i64(&mut self, name: &'static str, value: Option<i64>) {
        let buf = self.key(name);
        match value {
            Some(v) => buf.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            None => buf.extend_from_slice(b"null"),
        }
    }

    #[inline(always)]
    fn null(&mut self, name: &'static str) {
        self.key(name).extend_from_slice(b"null");
    }

    #[inline(always)]
    fn bool(&mut self, name: &'static str, value: bool) {
        let text: &[u8] = if value { b"true" } else { b"false" };
        self.key(name).extend_from_slice(text);
    }

    #[inline(always)]
    fn strings<S: AsRef<str>>(&mut self, name: &'static str, values: &[S]) {
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

    fn serde(&mut self, name: &'static str, value: &impl Serialize) -> serde_json::Result<()> {
        serde_json::to_writer(self.key(name), value)
    }
}

/// Builds one object's members as a JSON value: what [`Object`] would write, already read.
pub(super) struct Tree<'m>(pub(super) &'m mut Map<String, Value>);

impl Members for Tree<'_> {
    type Nested<'n>
        = Tree<'n>
    where
        Self: 'n;

    fn object(&mut self, name: &'static str) -> Tree<'_> {
        self.0.insert(name.into(), Value::Object(Map::new()));
        match self.0.get_mut(name) {
            Some(Value::Object(m)) => Tree(m),
            _ => unreachable!("the object just inserted"),
        }
    }

    fn close(self) {}

    fn str(&mut self, name: &'static str, value: &str) {
        self.0.insert(name.into(), value.into());
    }

    fn joined(&mut self, name: &'static str, parts: &[&str]) {
        self.0.insert(name.into(), parts.concat().into());
    }

    fn opt_str(&mut self, name: &'static str, value: Option<&str>) {
        self.0.insert(name.into(), value.into());
    }

    fn bytes(&mut self, name: &'static str, value: &[u8]) {
        self.0.insert(name.into(), kernel_text(value).into());
    }

    fn opt_bytes(&mut self, name: &'static str, value: Option<&[u8]>) {
        self.0.insert(name.into(), value.map(kernel_text).into());
    }

    fn bytes_list<'v>(&mut self, name: &'static str, values: impl Iterator<Item = &'v [u8]>) {
        let list = values.map(|v| kernel_text(v).into()).collect();
        self.0.insert(name.into(), Value::Array(list));
    }

    fn u64(&mut self, name: &'static str, value: u64) {
        self.0.insert(name.into(), value.into());
    }

    fn opt_i64(&mut self, name: &'static str, value: Option<i64>) {
        self.0.insert(name.into(), value.into());
    }

    fn null(&mut self, name: &'static str) {
        self.0.insert(name.into(), Value::Null);
    }

    fn bool(&mut self, name: &'static str, value: bool) {
        self.0.insert(name.into(), value.into());
    }

    fn strings<S: AsRef<str>>(&mut self, name: &'static str, values: &[S]) {
        let list = values.iter().map(|v| v.as_ref().into()).collect();
        self.0.insert(name.into(), Value::Array(list));
    }

    fn serde(&mut self, name: &'static str, value: &impl Serialize) -> serde_json::Result<()> {
        self.0.insert(name.into(), serde_json::to_value(value)?);
        Ok(())
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

/// Kernel bytes as a JSON string: printable ASCII (the usual path, comm, address) in one pass,
/// anything else as [`kernel_text`] says.
fn kernel_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    if plain_ascii(b) {
        buf.push(b'"');
        buf.extend_from_slice(b);
        buf.push(b'"');
        return;
    }
    string(buf, kernel_text(b).as_bytes());
}

/// Kernel bytes as the record's text: clean UTF-8 as it is, anything else through [`Escaped`]
/// (the same rule as `Bytes`, which serde parts use).
fn kernel_text(b: &[u8]) -> Cow<'_, str> {
    let clean = !b.iter().any(|&c| c < 0x20 || c == b'\\' || c == 0x7f);
    match std::str::from_utf8(b) {
        Ok(s) if clean => Cow::Borrowed(s),
        _ => Cow::Owned(Escaped(b).to_string()),
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

    #[test]
    fn a_tree_holds_what_the_object_writes_read_back() {
        fn members(o: &mut impl Members) {
            o.str("a", "x\"y");
            o.opt_str("b", None);
            o.u64("c", u64::MAX);
            o.opt_i64("d", Some(-5));
            o.i64("k", 7);
            o.null("l");
            o.bool("e", false);
            o.strings("f", &["1", "2"]);
            o.joined("g", &["ab", "-", "7"]);
            o.bytes("h", b"p\xffq\\");
            o.bytes_list("m", [&b"\x01"[..], b"ok"].into_iter());
            o.serde("n", &[1u8, 2]).unwrap();
            let mut inner = o.object("i");
            inner.opt_bytes("j", None);
            inner.opt_bytes("o", Some(b"\t"));
            inner.close();
        }
        let mut buf = Vec::new();
        let mut o = Object::open(&mut buf);
        members(&mut o);
        o.close();
        let mut tree = Map::new();
        members(&mut Tree(&mut tree));
        let written: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(Value::Object(tree), written);
    }
}
