//! The file format of spool segments and of the journal: one gzip stream of native records
//! (NDJSON), compressed as the records are written. A closed segment is its native object byte
//! for byte, so sealing neither reads the records back nor compresses them again, and the spool
//! holds the compressed size of what waits in it.
//!
//! A stream is made of *chunks*: raw deflate data ending at a sync point (byte-aligned, not
//! final), after a 10-byte gzip header. Chunks written by different compressors can follow one
//! another in one stream, since none refers to data before its own start (or only to what
//! precedes it in the stream: a preset dictionary of the stream's last bytes); [`finish`] ends
//! a stream with an empty final block and the gzip trailer (CRC-32 and length of all chunks'
//! records). So the journal, where every record is appended first, can be cut into per-partition
//! chunks later, and a partition's segment file grows by chunks without a compressor of its own
//! held open.
//!
//! Write order of the journal ([`SegmentFile`]; what a crash can leave):
//! - records are appended to memory ([`SegmentFile::push`]);
//! - every [`WRITE_AT`] bytes of records they are compressed and what the compressor has finished
//!   is written ([`End::Continue`]): whole deflate blocks, the stream going on;
//! - at each flush of the spool, the acknowledgement point, the stream is sync-flushed
//!   ([`End::Sync`]): everything so far is on a byte boundary and decodes to whole records;
//! - closing a journal stops at a sync point: its deflate data is one chunk.
//!
//! A journal of several agents' records is written plain instead (its records as they are, no
//! compressor): the sealer cuts it and compresses each partition's records on their own, so
//! compressing it first would only be undone.
//!
//! A write that fails part way is cut off again, so a file only ever grows by whole writes. A
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
use flate2::{
    Compress, Compression, FlushCompress, Status, read::MultiGzDecoder, write::GzEncoder,
};

/// Records are compressed and written whenever this many bytes of them wait in memory.
const WRITE_AT: usize = 256 * 1024;

/// Length of the gzip header every stream here starts with.
pub(crate) const HEADER_LEN: usize = 10;

/// The gzip header of a stream compressed at `level`: no name, no time, OS unknown (what
/// flate2's `GzEncoder` writes).
pub(crate) fn header(level: u32) -> [u8; HEADER_LEN] {
    let xfl = match level {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// The end of a stream whose chunks hold records of CRC-32 `crc` and length `len`: an empty
/// final block (the chunks end byte-aligned) and the gzip trailer.
pub(crate) fn finish(crc: u32, len: u64) -> [u8; 10] {
    let mut t = [0u8; 10];
    t[..2].copy_from_slice(&[0x03, 0x00]);
    t[2..6].copy_from_slice(&crc.to_le_bytes());
    // ISIZE is the length modulo 2^32 (RFC 1952).
    t[6..].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// Compresses `input` into `out` (appending) as raw deflate; with `FlushCompress::Sync` the
/// output ends at a sync point.
pub(crate) fn deflate(
    c: &mut Compress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    flush: FlushCompress,
) -> std::io::Result<()> {
    loop {
        out.reserve(input.len() / 4 + 4096);
        let (in0, out0) = (c.total_in(), c.total_out());
        let status = c
            .compress_vec(input, out, flush)
            .map_err(std::io::Error::other)?;
        let consumed = (c.total_in() - in0) as usize;
        input = &input[consumed..];
        let stalled = consumed == 0 && c.total_out() == out0;
        // Done when the input is in and, for a flush, the compressor had room left over.
        let flushed = flush == FlushCompress::None || out.len() < out.capacity();
        if (input.is_empty() && flushed) || (stalled && status == Status::BufError) {
            return Ok(());
        }
    }
}

/// A raw deflate compressor for chunks, reused from chunk to chunk.
pub(crate) struct Chunker {
    deflate: Compress,
}

impl Chunker {
    pub(crate) fn new(level: u32) -> Self {
        Self {
            deflate: Compress::new(Compression::new(level), false),
        }
    }

    /// Appends to `out` one chunk holding `parts` (in order). `dictionary`: the last bytes of
    /// the stream the chunk continues (at most 32 KiB), which the chunk may refer back to.
    pub(crate) fn chunk<'a>(
        &mut self,
        dictionary: &[u8],
        parts: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        self.deflate.reset();
        if !dictionary.is_empty() {
            self.deflate
                .set_dictionary(dictionary)
                .map_err(std::io::Error::other)?;
        }
        for p in parts {
            deflate(&mut self.deflate, p, out, FlushCompress::None)?;
        }
        deflate(&mut self.deflate, &[], out, FlushCompress::Sync)
    }
}

/// How far [`SegmentFile::write_out`] takes the gzip stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Only what the compressor has finished (a crash may lose the rest: not yet acknowledged).
    Continue,
    /// Everything so far, decodable on its own (the spool's acknowledgement point, and where a
    /// journal ends: its deflate data is then one chunk).
    Sync,
}

/// A file written as one gzip stream, and its compressor (or as plain NDJSON): the journal.
pub(crate) struct SegmentFile {
    file: File,
    /// Records appended but not yet compressed.
    records: Vec<u8>,
    /// `None`: the file is plain NDJSON.
    deflate: Option<Compress>,
    /// Compressed output (the header first) waiting to be written whole.
    out: Vec<u8>,
    /// CRC-32 of the records compressed so far.
    crc: crc32fast::Hasher,
    /// Length of the records compressed so far.
    len: u64,
    /// Length of the file: what was written whole.
    written: u64,
}

impl SegmentFile {
    /// A gzip stream at `level`, or plain NDJSON for `None`.
    pub(crate) fn new(file: File, level: Option<u32>) -> Self {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Some(level) = level {
            out.extend_from_slice(&header(level));
        }
        Self {
            file,
            records: Vec::with_capacity(64 * 1024),
            deflate: level.map(|l| Compress::new(Compression::new(l), false)),
            out,
            crc: crc32fast::Hasher::new(),
            len: 0,
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
        self.records.len() + self.out.len()
    }

    /// CRC-32 and length of the records written (valid after a write up to `Sync`). A plain
    /// file keeps no CRC (its records are checksummed when they are cut into chunks).
    pub(crate) fn checksum(&self) -> (u32, u64) {
        (self.crc.clone().finalize(), self.len)
    }

    /// Length of the file.
    pub(crate) fn stored(&self) -> u64 {
        self.written
    }

    /// Compresses the waiting records and writes the stream up to `end`. Returns the bytes
    /// added to the file. A partial write is cut off again and kept to be written whole later.
    pub(crate) fn write_out(&mut self, end: End) -> std::io::Result<u64> {
        let Some(compress) = &mut self.deflate else {
            // Plain: the records are the output.
            self.len += self.records.len() as u64;
            if self.out.is_empty() {
                std::mem::swap(&mut self.records, &mut self.out);
            } else {
                self.out.append(&mut self.records);
            }
            return self.write_pending();
        };
        if !self.records.is_empty() {
            // Into memory: cannot fail.
            deflate(compress, &self.records, &mut self.out, FlushCompress::None)?;
            self.crc.update(&self.records);
            self.len += self.records.len() as u64;
            self.records.clear();
        }
        match end {
            End::Continue => {}
            End::Sync => deflate(compress, &[], &mut self.out, FlushCompress::Sync)?,
        }
        self.write_pending()
    }

    /// Writes the output waiting whole; a partial write is cut off again.
    fn write_pending(&mut self) -> std::io::Result<u64> {
        if self.out.is_empty() {
            return Ok(0);
        }
        match self.file.write_all(&self.out) {
            Ok(()) => {
                let n = self.out.len() as u64;
                self.written += n;
                self.out.clear();
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
    super::spool_dir::write_atomic(path, &bytes)?;
    Ok(cut as u64)
}

/// Decodes `gz` as far as it goes: what it held, and how the decoding ended.
pub(crate) fn gunzip(gz: &[u8]) -> (Vec<u8>, std::io::Result<usize>) {
    let mut out = Vec::with_capacity(gz.len() * 16);
    let end = gunzip_into(gz, &mut out);
    (out, end)
}

/// Decodes `gz` into `out` (appending) as far as it goes (a journal has no trailer: its
/// decoding ends at its last chunk); returns how the decoding ended.
pub(crate) fn gunzip_into(gz: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    MultiGzDecoder::new(gz).read_to_end(out)
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

    /// What any gzip reader (one member) decodes from `gz`.
    fn gunzip_one(gz: &[u8]) -> Vec<u8> {
        let mut one = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut one)
            .unwrap();
        one
    }

    /// Pushes `lines` into `seg` as the journal does (written out whenever enough wait), with a
    /// sync after every `sync_every` of them and at the end, each followed by `synced` with
    /// every record pushed so far. Returns them.
    fn write_as_the_journal(
        seg: &mut SegmentFile,
        lines: &[Vec<u8>],
        sync_every: usize,
        mut synced: impl FnMut(&[u8]),
    ) -> Vec<u8> {
        let mut all = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            seg.push(l);
            all.extend_from_slice(l);
            if seg.wants_write() {
                seg.write_out(End::Continue).unwrap();
            }
            if (i + 1) % sync_every == 0 || i + 1 == lines.len() {
                seg.write_out(End::Sync).unwrap();
                synced(&all);
            }
        }
        all
    }

    #[test]
    fn a_journal_is_one_gzip_stream_of_its_records_once_finished() {
        let d = scratch("finished");
        let path = d.join("s.ndjson.gz");
        let mut seg = SegmentFile::new(File::create(&path).unwrap(), Some(2));
        let all = write_as_the_journal(&mut seg, &lines(20_000), 3000, |_| {});
        assert_eq!(seg.unwritten(), 0);
        let (crc, len) = seg.checksum();
        assert_eq!(len, all.len() as u64);
        assert_eq!(seg.stored(), fs::metadata(&path).unwrap().len());
        let mut gz = fs::read(&path).unwrap();
        gz.extend_from_slice(&finish(crc, len));
        fs::write(&path, &gz).unwrap();
        let stored = Stored::read(&path).unwrap();
        assert!(matches!(stored, Stored::Gzip(_)));
        assert_eq!(stored.records().unwrap().as_ref(), &all[..]);
        assert_eq!(stored.records_len(), all.len() as u64);
        assert_eq!(
            gunzip_one(&gz),
            all,
            "a single-member gzip file, readable by any gzip reader"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn chunks_of_different_compressors_make_one_stream() {
        let d = scratch("chunks");
        let all = lines(3000);
        // A journal's own chunk (its file without the header) ...
        let path = d.join("journal.ndjson.gz");
        let mut journal = SegmentFile::new(File::create(&path).unwrap(), Some(2));
        for l in &all[..1000] {
            journal.push(l);
        }
        journal.write_out(End::Sync).unwrap();
        let (crc0, len0) = journal.checksum();
        let mut stream = fs::read(&path).unwrap();
        // ... then chunks of a chunker: without a dictionary, and with the stream's last bytes.
        let mut chunker = Chunker::new(2);
        let mut crc = crc32fast::Hasher::new_with_initial_len(crc0, len0);
        let mut so_far: Vec<u8> = all[..1000].concat();
        for (i, part) in [&all[1000..1500], &all[1500..3000]].iter().enumerate() {
            let dictionary = if i == 0 {
                &[][..]
            } else {
                &so_far[so_far.len() - 4096..]
            };
            chunker
                .chunk(dictionary, part.iter().map(Vec::as_slice), &mut stream)
                .unwrap();
            for l in part.iter() {
                crc.update(l);
                so_far.extend_from_slice(l);
            }
        }
        stream.extend_from_slice(&finish(crc.finalize(), so_far.len() as u64));
        assert_eq!(gunzip_one(&stream), all.concat());
        assert_eq!(gunzip(&stream).0, all.concat());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_plain_journal_holds_its_records_as_written_at_every_sync() {
        let d = scratch("plain");
        let path = d.join("s.ndjson");
        let mut seg = SegmentFile::new(File::create(&path).unwrap(), None);
        let all = write_as_the_journal(&mut seg, &lines(20_000), 5000, |all| {
            assert_eq!(
                fs::read(&path).unwrap(),
                all,
                "everything acknowledged is in the file"
            );
        });
        assert_eq!(seg.checksum().1, all.len() as u64);
        assert_eq!(seg.stored(), all.len() as u64);
        assert!(matches!(Stored::read(&path).unwrap(), Stored::Plain(_)));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_crash_keeps_every_record_acknowledged_by_a_sync_and_no_torn_one() {
        let d = scratch("crash");
        let path = d.join("s.ndjson.gz");
        let mut seg = SegmentFile::new(File::create(&path).unwrap(), Some(2));
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
        let d = scratch("plain-earlier");
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
