//! Reading stored objects back with bounded memory, whatever they hold: `verify` and `query`
//! stream an object's records one line at a time instead of decompressing it whole, stop at a
//! total size no object audit-agent writes reaches, and refuse lines no record reaches — so a
//! gzip bomb or a planted multi-gigabyte line costs a clear error, not the machine's memory.

use std::io::{BufRead as _, BufReader, Read};

use sha2::{Digest as _, Sha256};

/// No object is decompressed beyond this, whatever its manifest says (gzip bombs): a segment is
/// sealed once it reaches `segment_max_bytes`, so it holds at most one record more.
pub(crate) const MAX_OBJECT_BYTES: u64 = MAX_SEGMENT_BYTES + MAX_LINE_BYTES as u64;
/// No stored (compressed) object is fetched beyond this: objects are sealed at
/// `segment_max_bytes` (at most [`MAX_SEGMENT_BYTES`]) and gzip adds little even to random data.
pub(crate) const MAX_STORED_BYTES: u64 = 2 * MAX_SEGMENT_BYTES;
/// The largest `segment_max_bytes` a configuration may set.
pub(crate) const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// No manifest is fetched beyond this (a batch lists a few objects per agent).
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// No record is longer than this (paths and arguments are bounded by the kernel side).
pub(crate) const MAX_LINE_BYTES: usize = 4 << 20;

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObjectError {
    #[error("not valid gzip ({0})")]
    Corrupt(std::io::Error),
    #[error("decompresses to more than {0} bytes")]
    TooLarge(u64),
    #[error("line {0} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong(u64),
}

/// Feeds what it reads into a SHA-256.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The lines of a gzip object, read one at a time.
pub(crate) struct ObjectLines<'a> {
    reader: BufReader<Hashing<flate2::read::MultiGzDecoder<&'a [u8]>>>,
    line: Vec<u8>,
    limit: u64,
    total: u64,
    number: u64,
}

impl<'a> ObjectLines<'a> {
    /// Reads `gz`, refusing to decompress more than `limit` bytes.
    pub(crate) fn new(gz: &'a [u8], limit: u64) -> Self {
        Self {
            reader: BufReader::with_capacity(
                64 * 1024,
                Hashing {
                    inner: flate2::read::MultiGzDecoder::new(gz),
                    hash: Sha256::new(),
                },
            ),
            line: Vec::new(),
            limit,
            total: 0,
            number: 0,
        }
    }

    /// The next non-empty line (without its newline), or `None` at the end.
    pub(crate) fn next_line(&mut self) -> Result<Option<&[u8]>, ObjectError> {
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.line)
                .map_err(ObjectError::Corrupt)?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            self.total += n as u64;
            if self.total > self.limit {
                return Err(ObjectError::TooLarge(self.limit));
            }
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            } else if self.line.len() > MAX_LINE_BYTES {
                return Err(ObjectError::LineTooLong(self.number));
            }
            if !self.line.is_empty() {
                return Ok(Some(&self.line));
            }
        }
    }

    /// Reads to the end; the SHA-256 (hex) of the decompressed bytes.
    pub(crate) fn finish(mut self) -> Result<String, ObjectError> {
        while self.next_line()?.is_some() {}
        Ok(hex::encode(self.reader.into_inner().hash.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn lines_come_one_at_a_time_with_the_hash_of_everything() {
        let raw = b"{\"seq\":1}\n\n{\"seq\":2}\n";
        let z = gz(raw);
        let mut l = ObjectLines::new(&z, 1000);
        assert_eq!(l.next_line().unwrap(), Some(&b"{\"seq\":1}"[..]));
        assert_eq!(l.next_line().unwrap(), Some(&b"{\"seq\":2}"[..]));
        assert_eq!(l.next_line().unwrap(), None);
        assert_eq!(l.finish().unwrap(), hex::encode(Sha256::digest(raw)));
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_a_huge_line_at_the_line_limit() {
        let mut lines = b"{}\n".repeat(400_000);
        lines.truncate(1 << 20);
        let bomb = gz(&lines);
        assert!(bomb.len() < 16 * 1024);
        let mut l = ObjectLines::new(&bomb, 1000);
        let err = loop {
            match l.next_line() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("read past the limit"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ObjectError::TooLarge(1000)), "{err}");
        let one_line = gz(&vec![b'x'; MAX_LINE_BYTES + 10]);
        let err = ObjectLines::new(&one_line, MAX_OBJECT_BYTES)
            .finish()
            .unwrap_err();
        assert!(matches!(err, ObjectError::LineTooLong(1)), "{err}");
        assert!(matches!(
            ObjectLines::new(b"nope", 10).finish(),
            Err(ObjectError::Corrupt(_))
        ));
    }
}
