//! The journal: where the pipeline appends every record first, whatever its agent. One gzip
//! stream (one compressor, one file write per flush) however many agents a host runs; records
//! are acknowledged once the stream is sync-flushed into it (see `segment`).
//!
//! A journal is closed when it holds [`MAX_BYTES`] of records, before one partition's records
//! in it would exceed `segment_max_bytes`, or when it is old enough (`SpoolLimits`). Its index —
//! which partition (agent and UTC hour) each record belongs to, in runs, with each partition's
//! seq and time range, and the stream's checksum — goes to the sealer thread with it
//! ([`ClosedJournal`]), which cuts it into the partitions' segment files (`partitions`) without
//! parsing a record. A journal a crash left is read record by record instead
//! (`Partitions::recover`).
//!
//! ```text
//! <spool>/journal/<first seq>.ndjson.gz   a journal (gzip, sync-flushed, no trailer) ...
//! <spool>/journal/<first seq>.ndjson      ... or plain NDJSON (see `SpoolWriter::journal_level`)
//! <spool>/journal/spare                   an empty file the next journal is made from
//! ```
//!
//! Files are recycled: a journal the sealer has cut becomes the spare (emptied), which the next
//! journal takes by a rename. Creating a file costs an inode allocation, which on a file system
//! that has seen many deletions is slow (ext4 searches its bitmaps for inodes not recently
//! deleted): the pipeline thread should not wait for that.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use super::{
    segment::{End, SegmentFile},
    spool_dir::{SpoolDirs, private_options},
};
use crate::trail::{layout::Partition, manifest::SegmentMeta};
use crate::{
    FastMap,
    event::{AgentIdentity, Event, Timestamp},
};

/// The most records (uncompressed) a journal holds: a closed journal is read whole into memory
/// once, to cut it into partitions. The more records of each partition a journal holds, the less
/// cutting costs per record (each partition's chunk has a fixed cost: a file write, a
/// compressor reset, its dictionary).
pub(crate) const MAX_BYTES: u64 = 32 << 20;

/// A partition's records in one journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedPartition {
    pub(crate) partition: Partition,
    pub(crate) meta: SegmentMeta,
    /// Bytes of its records in the journal.
    pub(crate) bytes: u64,
}

/// Where each record of a closed journal belongs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JournalIndex {
    /// CRC-32 and length of the journal's records.
    pub(crate) crc: u32,
    pub(crate) len: u64,
    /// Length of the journal file.
    pub(crate) stored: u64,
    /// The gzip level it was compressed at (`None`: plain NDJSON).
    pub(crate) level: Option<u32>,
    pub(crate) partitions: Vec<IndexedPartition>,
    /// (partition, bytes): consecutive records of one partition, in journal order.
    pub(crate) runs: Vec<(u32, u64)>,
}

impl JournalIndex {
    /// Notes record `seq` of partition `p` at time `t`, `len` bytes.
    fn add(&mut self, p: u32, seq: u64, t: Timestamp, len: u64) {
        let part = &mut self.partitions[p as usize];
        part.meta.add(seq, t);
        part.bytes += len;
        match self.runs.last_mut() {
            Some((last, n)) if *last == p => *n += len,
            _ => self.runs.push((p, len)),
        }
    }
}

/// A journal the pipeline closed, for the sealer to cut.
#[derive(Debug)]
pub(crate) struct ClosedJournal {
    pub(crate) path: PathBuf,
    pub(crate) index: JournalIndex,
}

/// The journal of records from `first_seq` on (gzip, or plain).
fn journal_path(dirs: &SpoolDirs, first_seq: u64, gzip: bool) -> PathBuf {
    let ext = if gzip { "ndjson.gz" } else { "ndjson" };
    dirs.journal.join(format!("{first_seq:020}.{ext}"))
}

/// The spare file the next journal is made from.
fn spare(dirs: &SpoolDirs) -> PathBuf {
    dirs.journal.join("spare")
}

/// Every journal file, in sequence order.
pub(crate) fn journals(dirs: &SpoolDirs) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(&dirs.journal)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ndjson.gz") || name.ends_with(".ndjson")
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Done with a journal (cut into partitions): it becomes the spare, emptied, unless there is
/// one; else it is deleted.
pub(crate) fn recycle(dirs: &SpoolDirs, journal: &Path) -> std::io::Result<()> {
    let spare = spare(dirs);
    if spare.exists() {
        return fs::remove_file(journal);
    }
    private_options().write(true).open(journal)?.set_len(0)?;
    fs::rename(journal, spare)
}

/// The open journal: its file, and the index being built.
pub(crate) struct Journal {
    pub(crate) path: PathBuf,
    pub(crate) out: SegmentFile,
    /// Bytes of records appended (uncompressed).
    pub(crate) bytes: u64,
    pub(crate) opened: Instant,
    index: JournalIndex,
    /// Partitions in `index` by agent: (UTC hour as seconds / 3600, partition number).
    by_agent: FastMap<String, Vec<(i64, u32)>>,
    /// The same by the address of the identity a record carries (the `Arc` kept, so the
    /// address is not reused while here): the usual lookup, without hashing or comparing the
    /// agent's id, whose bytes are one more cache miss per record with a thousand agents.
    by_identity: FastMap<usize, (Arc<AgentIdentity>, i64, u32)>,
}

/// The identity `e` carries, if any, and its address.
fn identity(e: &Event) -> Option<(&Arc<AgentIdentity>, usize)> {
    let a = e.activity()?.agent.as_ref()?;
    Some((a, Arc::as_ptr(a) as usize))
}

impl Journal {
    /// A new journal for records from `first_seq` on (made from the spare when there is one),
    /// compressed at `level` (`None`: plain).
    pub(crate) fn create(
        dirs: &SpoolDirs,
        first_seq: u64,
        level: Option<u32>,
    ) -> std::io::Result<Self> {
        let path = journal_path(dirs, first_seq, level.is_some());
        let recycled = fs::rename(spare(dirs), &path).is_ok();
        let file: File = private_options()
            .create(!recycled)
            .truncate(true)
            .write(true)
            .open(&path)?;
        Ok(Self {
            path,
            out: SegmentFile::new(file, level),
            bytes: 0,
            opened: Instant::now(),
            index: JournalIndex {
                level,
                ..JournalIndex::default()
            },
            by_agent: FastMap::default(),
            by_identity: FastMap::default(),
        })
    }

    /// Appends one serialized record of `e` (`line`, with its newline) in memory, unless
    /// `len` more bytes would take the journal beyond [`MAX_BYTES`], or the records of `e`'s
    /// partition in it beyond `segment_max_bytes` (a partition's chunk never holds more than a
    /// segment may): then returns `false`, and the journal is to be closed first.
    pub(crate) fn push(&mut self, e: &Event, line: &[u8], segment_max_bytes: u64) -> bool {
        let len = line.len() as u64;
        // The UTC hour as seconds / 3600: a partition is an agent's hour.
        let hour = e.time.as_second().div_euclid(3600);
        let known = self.known(e, hour);
        let of_partition = known.map_or(0, |p| self.index.partitions[p as usize].bytes);
        if self.bytes > 0
            && (self.bytes + len > MAX_BYTES
                || (of_partition > 0 && of_partition + len > segment_max_bytes))
        {
            return false;
        }
        let p = known.unwrap_or_else(|| self.add_partition(e, hour));
        self.index.add(p, e.seq, e.time, len);
        self.out.push(line);
        self.bytes += len;
        true
    }

    /// The number of `e`'s partition in the index, if it has one: a lookup by agent id and hour,
    /// without building the partition's strings.
    fn known(&mut self, e: &Event, hour: i64) -> Option<u32> {
        let identity = identity(e);
        if let Some((_, at)) = identity
            && let Some((_, h, p)) = self.by_identity.get(&at)
            && *h == hour
        {
            return Some(*p);
        }
        let p = self
            .by_agent
            .get(Partition::agent_of(e))?
            .iter()
            .find(|(h, _)| *h == hour)
            .map(|(_, p)| *p)?;
        self.remember_identity(e, hour, p);
        Some(p)
    }

    fn remember_identity(&mut self, e: &Event, hour: i64, p: u32) {
        if let Some((a, at)) = identity(e) {
            self.by_identity.insert(at, (Arc::clone(a), hour, p));
        }
    }

    /// Adds `e`'s partition to the index; returns its number.
    fn add_partition(&mut self, e: &Event, hour: i64) -> u32 {
        let n = self.index.partitions.len() as u32;
        self.index.partitions.push(IndexedPartition {
            partition: Partition::of(e),
            meta: SegmentMeta::new(e.seq, e.time),
            bytes: 0,
        });
        self.by_agent
            .entry(Partition::agent_of(e).to_string())
            .or_default()
            .push((hour, n));
        self.remember_identity(e, hour, n);
        n
    }

    /// Ends the journal at a sync point: from then on the sealer may cut it. Returns the bytes
    /// added to the spool. On failure it can be tried again.
    pub(crate) fn close(&mut self) -> std::io::Result<u64> {
        let n = self.out.write_out(End::Sync)?;
        let (crc, len) = self.out.checksum();
        self.index.crc = crc;
        self.index.len = len;
        self.index.stored = self.out.stored();
        Ok(n)
    }

    /// How many partitions it holds records of.
    pub(crate) fn partitions(&self) -> usize {
        self.index.partitions.len()
    }

    /// The closed journal, for the sealer.
    pub(crate) fn closed(self) -> ClosedJournal {
        ClosedJournal {
            path: self.path,
            index: self.index,
        }
    }
}
