//! The file format of a spool segment: one gzip stream of native records (NDJSON), compressed as
//! the records are written. A closed segment is its native object byte for byte, so sealing
//! neither reads the records back nor compresses them again, and the spool holds the compressed
//! size of what waits in it.
//!
//! Write order (what a crash can leave):
//! - records are appended to memory ([`SegmentFile::push`]);
//! - every [`WRITE_AT`] bytes of records they are compressed and what the compressor has finished
//!   is written ([`End::Continue`]): whole deflate blocks, the stream going on;
//! - at each flush of the spool, the acknowledgement point, the stream is sync-flushed
//!   ([`End::Sync`]): everything so far is on a byte boundary and decodes to whole records;
//! - closing writes the stream's end and its CRC ([`End::Finish`]).
//!
//! A write that fails part way is cut off again, so the file only ever grows by whole writes. A
//! crash leaves a stream without its end: [`salvage`] decodes what it holds, cuts a torn last
//! record, and writes it again as a complete gzip file. Segments of versions before this format
//! (plain NDJSON, `.ndjson`) are still recovered and sealed ([`Stored`]).

use std::{
    borrow::Cow,
    fs::{self, File},
    io::{Read as _, Write as _},
    path::Path,
};

use anyhow::Context as _;
use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};

/// Records are compressed and written whenever this many bytes of them wait in memory.
const WRITE_AT: usize = 256 * 1024;

/// How far [`SegmentFile::write_out`] takes the gzip stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Only what the compressor has finished (a crash may lose the rest: not yet acknowledged).
    Continue,
    /// Everything so far, decodable on its own (the spool's acknowledgement point).
    Sync,
    /// The end of the stream: the file is a complete gzip object.
    Finish,
}

/// The file of an open segment and its compressor.
pub(crate) struct SegmentFile {
    file: File,
    /// Records appended but not yet compressed.
    records: Vec<u8>,
    /// The compressor; its output (`gz.get_ref()`) waits there until it is written whole.
    gz: GzEncoder<Vec<u8>>,
    /// Length of the file: what was written whole.
    written: u64,
}

impl SegmentFile {
    pub(crate) fn new(file: File, level: u32) -> Self {
        Self {
            file,
            records: Vec::with_capacity(64 * 1024),
            gz: GzEncoder::new(Vec::with_capacity(16 * 1024), Compression::new(level)),
            written: 0,
        }
    }

    /// Appends one record (a line with its newline) in memory.
    pub(crate) fn push(&mut self, line: &[u8]) {
        self.records.extend_from_slice(line);
    }

    /// Whether enough records wait to compress and write them now.
    pub(crate) fn wants_write(&self) -> bool {
        self.records.len() >= WRITE_AT
    }

    /// Bytes accepted but not in the file yet (records, or their compressed form).
    pub(crate) fn unwritten(&self) -> usize {
        self.records.len() + self.gz.get_ref().len()
    }

    /// Compresses the waiting records and writes the stream up to `end`. Returns the bytes
    /// added to the file. A partial write is cut off again and kept to be written whole later.
    pub(crate) fn write_out(&mut self, end: End) -> std::io::Result<u64> {
        if !self.records.is_empty() {
            // Into memory: cannot fail.
            self.gz.write_all(&self.records)?;
            self.records.clear();
        }
        match end {
            End::Continue => {}
            End::Sync => self.gz.flush()?,
            End::Finish => self.gz.try_finish()?,
        }
        let out = self.gz.get_mut();
        if out.is_empty() {
            return Ok(0);
        }
        match self.file.write_all(out) {
            Ok(()) => {
                let n = out.len() as u64;
                self.written += n;
                out.clear();
                Ok(n)
            }
            Err(e) => {
                let _ = self.file.set_len(self.written);
                Err(e)
            }
        }
    }
}

/// A segment file as stored: gzip (this format) or plain NDJSON (earlier versions).
pub(crate) enum Stored {
    Gzip(Vec<u8>),
    Plain(Vec<u8>),
}

impl Stored {
    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(if bytes.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip(bytes)
        } else {
            Self::Plain(bytes)
        })
    }

    /// Bytes in the spool.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::Gzip(b) | Self::Plain(b) => b.len() as u64,
        }
    }

    /// The records (NDJSON).
    pub(crate) fn records(&self) -> anyhow::Result<Cow<'_, [u8]>> {
        match self {
            Self::Plain(b) => Ok(Cow::Borrowed(b)),
            Self::Gzip(gz) => {
                let (out, end) = gunzip(gz);
                end.context("a spool segment is not valid gzip")?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Length of the records, without decompressing them: a gzip stream ends with it (modulo
    /// 2^32; segments stay far below, see `object::MAX_SEGMENT_BYTES`).
    pub(crate) fn records_len(&self) -> u64 {
        match self {
            Self::Plain(b) => b.len() as u64,
            Self::Gzip(gz) => gz
                .last_chunk::<4>()
                .map_or(0, |t| u64::from(u32::from_le_bytes(*t))),
        }
    }
}

/// Recovery of a segment a crash left open: keeps every whole record it holds and makes it a
/// complete file again (gzip: decoded as far as it goes and written anew; plain: cut after the
/// last newline). Returns the bytes cut off.
pub(crate) fn salvage(path: &Path, level: u32) -> anyhow::Result<u64> {
    let stored = Stored::read(path)?;
    let records: Cow<'_, [u8]> = match &stored {
        Stored::Plain(b) => Cow::Borrowed(b),
        // A stream without its end decodes up to an error: what came before it is whole.
        Stored::Gzip(gz) => Cow::Owned(gunzip(gz).0),
    };
    let keep = records
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let cut = records.len() - keep;
    let bytes = match stored {
        Stored::Plain(_) if cut == 0 => return Ok(0),
        Stored::Plain(_) => records[..keep].to_vec(),
        Stored::Gzip(_) => {
            let mut gz = GzEncoder::new(Vec::new(), Compression::new(level));
            gz.write_all(&records[..keep])?;
            gz.finish()?
        }
    };
    super::spool::write_atomic(path, &bytes)?;
    Ok(cut as u64)
}

/// Decodes `gz` as far as it goes: what it held, and how the decoding ended.
fn gunzip(gz: &[u8]) -> (Vec<u8>, std::io::Result<usize>) {
    let mut out = Vec::with_capacity(gz.len() * 16);
    let end = MultiGzDecoder::new(gz).read_to_end(&mut out);
    (out, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("audit-segment-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn lines(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{{\"seq\":{i},\"path\":\"/data/{}\"}}\n", i * 7919).into_bytes())
            .collect()
    }

    #[test]
    fn a_finished_segment_is_one_gzip_stream_of_its_records() {
        let d = scratch("finished");
        let path = d.join("s.ndjson.gz");
        let mut seg = SegmentFile::new(File::create(&path).unwrap(), 2);
        let mut all = Vec::new();
        for (i, l) in lines(20_000).iter().enumerate() {
            seg.push(l);
            all.extend_from_slice(l);
            if seg.wants_write() {
                seg.write_out(End::Continue).unwrap();
            }
            if i % 3000 == 0 {
                seg.write_out(End::Sync).unwrap();
            }
        }
        seg.write_out(End::Finish).unwrap();
        assert_eq!(seg.unwritten(), 0);
        let stored = Stored::read(&path).unwrap();
        assert!(matches!(stored, Stored::Gzip(_)));
        assert_eq!(stored.records().unwrap().as_ref(), &all[..]);
        assert_eq!(stored.records_len(), all.len() as u64);
        let mut one = Vec::new();
        flate2::read::GzDecoder::new(&fs::read(&path).unwrap()[..])
            .read_to_end(&mut one)
            .unwrap();
        assert_eq!(
            one, all,
            "a single-member gzip file, readable by any gzip reader"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_crash_keeps_every_record_acknowledged_by_a_sync_and_no_torn_one() {
        let d = scratch("crash");
        let path = d.join("s.ndjson.gz");
        let mut seg = SegmentFile::new(File::create(&path).unwrap(), 2);
        let all = lines(5000);
        for l in &all[..3000] {
            seg.push(l);
        }
        seg.write_out(End::Sync).unwrap();
        let acknowledged = fs::metadata(&path).unwrap().len();
        for l in &all[3000..] {
            seg.push(l);
        }
        seg.write_out(End::Continue).unwrap();
        // The process dies here, and at every shorter length a torn write could have left.
        let whole = fs::read(&path).unwrap();
        for len in [
            acknowledged as usize,
            acknowledged as usize + 7,
            whole.len(),
        ] {
            fs::write(&path, &whole[..len.min(whole.len())]).unwrap();
            salvage(&path, 2).unwrap();
            let stored = Stored::read(&path).unwrap();
            let got = stored.records().unwrap().into_owned();
            let n = got.iter().filter(|&&b| b == b'\n').count();
            assert!(n >= 3000, "records acknowledged by the sync survive ({n})");
            assert_eq!(
                got,
                all[..n].concat(),
                "whole records, in order, nothing torn"
            );
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn plain_segments_of_earlier_versions_are_cut_after_their_last_line() {
        let d = scratch("plain");
        let path = d.join("s.ndjson");
        fs::write(&path, b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"ti").unwrap();
        assert_eq!(salvage(&path, 2).unwrap(), 12);
        let stored = Stored::read(&path).unwrap();
        assert_eq!(
            stored.records().unwrap().as_ref(),
            b"{\"seq\":1}\n{\"seq\":2}\n"
        );
        let _ = fs::remove_dir_all(&d);
    }
}
