//! The partitions' segment files, kept by the sealer thread: closed journals are cut into them,
//! and they are closed (moved to `ready/`, to be sealed) by size, by age within a rate, or at a
//! bound. Memory and the number of objects a second do not grow with the number of agents:
//!
//! - a partition's open segment is a file and a few numbers (its stream's CRC and length, its
//!   seq and time range, the last [`DICTIONARY`] bytes of its records); no compressor is held
//!   open per partition: one [`Chunker`] compresses every partition's chunk in turn;
//! - segments are closed for their age (`segment_max_age`) at most `segments_per_s` a second,
//!   the oldest first (a burst of up to `segments_per_s × segment_max_age` at once); with more
//!   agents than that, each agent's segment simply stays open longer and holds more. Segments
//!   that would exceed `segment_max_bytes` are closed first, and at most [`MAX_OPEN`] are open:
//!   the oldest beyond that is closed early (counted in `audit_table_evictions_total`).
//!
//! A segment file grows by whole chunks (a failed write is cut off again): a crash leaves whole
//! records, which recovery salvages (`segment::salvage`). A journal is recycled only once every
//! chunk cut from it is in its segment file; a cut that failed part way resumes where it stopped.

use std::{
    collections::{HashMap, VecDeque},
    fs::{self, File},
    io::{Read as _, Write as _},
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    ExportStats,
    journal::{self, ClosedJournal, IndexedPartition, JournalIndex},
    segment::{self, Chunker, HEADER_LEN, Stored},
    spool::last_seq_in,
    spool_dir::{SpoolDirs, private_options, sync_dir},
};
use crate::trail::{
    layout::{Partition, SegmentName},
    manifest::SegmentMeta,
};
use crate::{FastMap, telemetry::tables::TableStat, trail::record};

/// Open segments at most; beyond, the oldest is closed early.
pub(crate) const MAX_OPEN: usize = 4096;
/// The last bytes of a partition's records kept to continue its stream with: the next chunk may
/// refer back to them (a preset dictionary), so small chunks of similar records compress nearly
/// as well as one stream (measured with a thousand agents: 33:1, against 46:1 for one agent's
/// single stream, and 17:1 without a dictionary). A kilobyte compresses chunks of 20 to 80
/// records as well as 4 KiB did (34:1 with either), and costs a quarter to set.
const DICTIONARY: usize = 1024;

/// What the partitions are closed by.
#[derive(Debug, Clone)]
pub(crate) struct PartitionLimits {
    pub(crate) segment_max_bytes: u64,
    pub(crate) segment_max_age: Duration,
    /// Segments closed a second for their age.
    pub(crate) segments_per_s: f64,
    pub(crate) gzip_level: u32,
}

/// One partition's open segment file.
struct OpenPartition {
    name: SegmentName,
    path: PathBuf,
    /// The file, kept open while the descriptor budget allows.
    file: Option<File>,
    /// Length of the file.
    stored: u64,
    /// CRC-32 and length of its records.
    crc: crc32fast::Hasher,
    len: u64,
    meta: SegmentMeta,
    opened: Instant,
    /// The last bytes of its records (the next chunk's dictionary).
    tail: Vec<u8>,
}

impl OpenPartition {
    /// Writes `bytes` at the end of the file; a failed write is cut off again.
    fn write_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let reopened;
        let file = match &self.file {
            Some(f) => f,
            None => {
                reopened = private_options().write(true).open(&self.path)?;
                &reopened
            }
        };
        if let Err(e) = file.write_all_at(bytes, self.stored) {
            let _ = file.set_len(self.stored);
            return Err(e);
        }
        self.stored += bytes.len() as u64;
        Ok(())
    }
}

/// Closes for age at most `per_s` a second, in bursts of at most `burst`.
struct Budget {
    per_s: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn new(per_s: f64, age: Duration) -> Self {
        let burst = (per_s * age.as_secs_f64()).max(1.0);
        Self {
            per_s,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn available(&mut self) -> usize {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.per_s).min(self.burst);
        self.at = now;
        self.tokens.floor() as usize
    }

    fn spend(&mut self, n: usize) {
        self.tokens -= n as f64;
    }
}

/// A chunk cut from a journal for one partition.
struct Cut {
    partition: Partition,
    meta: SegmentMeta,
    crc: crc32fast::Hasher,
    len: u64,
    /// Its records' last bytes, when known (the dictionary of the chunk after it).
    tail: Option<Vec<u8>>,
}

pub(crate) struct Partitions {
    dirs: SpoolDirs,
    limits: PartitionLimits,
    open: FastMap<Partition, OpenPartition>,
    /// Closed journals waiting to be cut, oldest first.
    queue: VecDeque<ClosedJournal>,
    chunker: Chunker,
    /// A chunk being written (reused).
    chunk: Vec<u8>,
    /// A chunk's records gathered (reused): one call of the compressor for the chunk, not one
    /// per run of records.
    gathered: Vec<u8>,
    budget: Budget,
    /// Open segments whose files may stay open (file descriptors are a limited resource).
    fd_budget: usize,
    table: TableStat,
    stats: Arc<ExportStats>,
    /// The journal being cut, and which of its partitions are in their segment files already.
    progress: Option<(PathBuf, Vec<bool>)>,
    /// Segments closed since last taken: their file in `ready/` and what they hold.
    closed: Vec<(PathBuf, SegmentMeta)>,
}

impl Partitions {
    pub(crate) fn new(dirs: SpoolDirs, limits: PartitionLimits, stats: Arc<ExportStats>) -> Self {
        Self {
            chunker: Chunker::new(limits.gzip_level),
            budget: Budget::new(limits.segments_per_s, limits.segment_max_age),
            dirs,
            limits,
            open: FastMap::default(),
            queue: VecDeque::new(),
            chunk: Vec::new(),
            gathered: Vec::new(),
            // Half of what is left after a thousand for everything else.
            fd_budget: open_files_limit().saturating_sub(1024) / 2,
            table: TableStat::named("open_partitions"),
            stats,
            progress: None,
            closed: Vec::new(),
        }
    }

    /// A journal the pipeline closed, to cut with the next [`Partitions::cut_closed`].
    pub(crate) fn journal_closed(&mut self, j: ClosedJournal) {
        self.queue.push_back(j);
    }

    /// Segments closed since the last call: their file in `ready/` and what they hold.
    pub(crate) fn take_closed(&mut self) -> Vec<(PathBuf, SegmentMeta)> {
        std::mem::take(&mut self.closed)
    }

    /// Cuts every closed journal into the partitions' segment files. Returns how many.
    pub(crate) fn cut_closed(&mut self) -> anyhow::Result<usize> {
        let mut n = 0;
        while let Some(j) = self.queue.front() {
            let (path, index) = (j.path.clone(), j.index.clone());
            self.cut(&path, &index)
                .with_context(|| format!("cutting {} into partitions", path.display()))?;
            self.queue.pop_front();
            n += 1;
        }
        if n > 0 {
            // Journals recycled stay so before any segment cut from them is sealed.
            sync_dir(&self.dirs.journal)?;
        }
        Ok(n)
    }

    /// Cuts one closed journal, then recycles it.
    fn cut(&mut self, path: &Path, index: &JournalIndex) -> anyhow::Result<()> {
        if self.progress.as_ref().is_none_or(|(p, _)| p != path) {
            self.progress = Some((path.to_path_buf(), vec![false; index.partitions.len()]));
        }
        let stored = fs::metadata(path)?.len();
        if stored != index.stored {
            // Not as its writer closed it (nothing can change it, but if something did): read
            // record by record, as after a crash.
            tracing::warn!(
                journal = %path.display(),
                bytes = stored,
                written = index.stored,
                "a journal is not as it was closed; reading it record by record"
            );
            self.recover_journal(path, &HashMap::new())?;
        } else if let ([p], true) = (
            &index.partitions[..],
            index.level == Some(self.limits.gzip_level),
        ) {
            // One partition: the journal's own chunk, as it is, not compressed again.
            let bytes = fs::read(path)?;
            let cut = Cut {
                partition: p.partition.clone(),
                meta: p.meta.clone(),
                crc: crc32fast::Hasher::new_with_initial_len(index.crc, index.len),
                len: index.len,
                tail: None,
            };
            self.append_once(0, cut, bytes.get(HEADER_LEN..).unwrap_or_default())?;
        } else {
            self.cut_records(path, index)?;
        }
        journal::recycle(&self.dirs, path)?;
        // Only now: until the journal is gone, a retry must skip what was appended.
        self.progress = None;
        self.stats.sub_spool_bytes(stored);
        Ok(())
    }

    /// Cuts a journal of several partitions: read once (a plain one mapped, a gzip one
    /// decompressed as a stream), each partition's records compressed into one chunk.
    fn cut_records(&mut self, path: &Path, index: &JournalIndex) -> anyhow::Result<()> {
        let file = File::open(path)?;
        // A gzip journal of several partitions is rare (the one after a quiet spell): its
        // records are inflated into memory for the cut and the buffer freed after it, not kept
        // (up to `journal::MAX_BYTES`, for the daemon's life).
        let mut inflated = Vec::new();
        let mapped;
        let records: &[u8] = match index.level {
            Some(_) => {
                inflated.reserve(index.len as usize);
                // A journal has no trailer: its decoding ends with an error after its last chunk.
                let file = std::io::BufReader::with_capacity(256 * 1024, file);
                let _ = flate2::read::MultiGzDecoder::new(file).read_to_end(&mut inflated);
                &inflated
            }
            None => match map_journal(&file, index.stored) {
                Ok(m) => {
                    mapped = m;
                    mapped.as_deref().unwrap_or_default()
                }
                // A file system that cannot map files: read into memory instead.
                Err(_) => {
                    (&file).read_to_end(&mut inflated)?;
                    &inflated
                }
            },
        };
        anyhow::ensure!(
            records.len() as u64 >= index.len,
            "the journal holds {} bytes of records, its index says {}",
            records.len(),
            index.len
        );
        // Each partition's runs of records, by the byte counts of the index: no record is read.
        let mut lines: Vec<Vec<&[u8]>> = vec![Vec::new(); index.partitions.len()];
        let mut at = 0usize;
        for (p, n) in &index.runs {
            let of = lines
                .get_mut(*p as usize)
                .context("a run of no partition")?;
            let end = at + *n as usize;
            of.push(
                records
                    .get(at..end)
                    .context("fewer records than the index says")?,
            );
            at = end;
        }
        let result = index
            .partitions
            .iter()
            .zip(&lines)
            .enumerate()
            .try_for_each(|(i, (p, lines))| self.cut_lines(i, p, lines));
        drop(lines);
        result
    }

    /// Compresses `lines` (records of partition `p`, number `i` in its journal, in runs) into a
    /// chunk and appends it.
    fn cut_lines(&mut self, i: usize, p: &IndexedPartition, lines: &[&[u8]]) -> anyhow::Result<()> {
        if self.progress.as_ref().is_some_and(|(_, done)| done[i]) {
            return Ok(());
        }
        let mut gathered = std::mem::take(&mut self.gathered);
        gathered.clear();
        for l in lines {
            gathered.extend_from_slice(l);
        }
        let len = gathered.len() as u64;
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.clear();
        // The dictionary only when the chunk continues the open segment (see `append`).
        let dictionary = self
            .open
            .get(&p.partition)
            .filter(|o| o.len + len <= self.limits.segment_max_bytes)
            .map_or(&[][..], |o| &o.tail[..]);
        self.chunker
            .chunk(dictionary, [&gathered[..]], &mut chunk)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&gathered);
        let tail = gathered[gathered.len().saturating_sub(DICTIONARY)..].to_vec();
        self.gathered = gathered;
        let cut = Cut {
            partition: p.partition.clone(),
            meta: p.meta.clone(),
            crc,
            len,
            tail: Some(tail),
        };
        let appended = self.append_once(i, cut, &chunk);
        self.chunk = chunk;
        appended
    }

    /// Appends chunk `i` of the journal being cut, unless it is in its segment already.
    fn append_once(&mut self, i: usize, cut: Cut, chunk: &[u8]) -> anyhow::Result<()> {
        if self.progress.as_ref().is_some_and(|(_, done)| done[i]) {
            return Ok(());
        }
        self.append(cut, chunk)?;
        if let Some((_, done)) = &mut self.progress {
            done[i] = true;
        }
        Ok(())
    }

    /// Appends a chunk to its partition's segment (a new one when there is none, or when the
    /// chunk would take it beyond `segment_max_bytes`).
    fn append(&mut self, cut: Cut, chunk: &[u8]) -> anyhow::Result<()> {
        if let Some(o) = self.open.get(&cut.partition)
            && o.len > 0
            && o.len + cut.len > self.limits.segment_max_bytes
        {
            self.close(&cut.partition.clone())?;
        }
        if !self.open.contains_key(&cut.partition) {
            self.create(&cut)?;
        }
        let o = self.open.get_mut(&cut.partition).expect("created above");
        o.write_end(chunk)?;
        o.crc.combine(&cut.crc);
        o.len += cut.len;
        o.meta.first_seq = o.meta.first_seq.min(cut.meta.first_seq);
        o.meta.last_seq = o.meta.last_seq.max(cut.meta.last_seq);
        o.meta.time_from = o.meta.time_from.min(cut.meta.time_from);
        o.meta.time_to = o.meta.time_to.max(cut.meta.time_to);
        o.meta.records += cut.meta.records;
        match cut.tail {
            Some(t) => {
                o.tail.extend_from_slice(&t);
                let old = o.tail.len().saturating_sub(DICTIONARY);
                o.tail.drain(..old);
            }
            None => o.tail.clear(),
        }
        self.stats.spool_bytes.inc_by(chunk.len() as i64);
        Ok(())
    }

    /// A new segment file for the partition of `cut`, named by its first record.
    fn create(&mut self, cut: &Cut) -> anyhow::Result<()> {
        let name = SegmentName {
            first_seq: cut.meta.first_seq,
            partition: cut.partition.clone(),
        };
        let path = self.dirs.open.join(name.file_name());
        let mut file = self.dirs.create_file(&path)?;
        if let Err(e) = file.write_all(&segment::header(self.limits.gzip_level)) {
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        self.stats.spool_bytes.inc_by(HEADER_LEN as i64);
        let keep = self.open.len() < self.fd_budget;
        self.open.insert(
            cut.partition.clone(),
            OpenPartition {
                name,
                path,
                file: keep.then_some(file),
                stored: HEADER_LEN as u64,
                crc: crc32fast::Hasher::new(),
                len: 0,
                meta: SegmentMeta {
                    records: 0,
                    ..cut.meta.clone()
                },
                opened: Instant::now(),
                tail: Vec::new(),
            },
        );
        self.table.set_entries(self.open.len());
        Ok(())
    }

    /// Ends a partition's segment and moves it to `ready/`.
    fn close(&mut self, key: &Partition) -> anyhow::Result<()> {
        let Some(o) = self.open.get_mut(key) else {
            return Ok(());
        };
        let end = segment::finish(o.crc.clone().finalize(), o.len);
        o.write_end(&end)?;
        let to = self.dirs.ready.join(o.name.file_name());
        if let Err(e) = fs::rename(&o.path, &to) {
            o.stored -= end.len() as u64;
            let _ = private_options()
                .write(true)
                .open(&o.path)
                .and_then(|f| f.set_len(o.stored));
            return Err(e.into());
        }
        self.stats.spool_bytes.inc_by(end.len() as i64);
        let o = self.open.remove(key).expect("looked up above");
        self.closed.push((to, o.meta));
        self.table.set_entries(self.open.len());
        Ok(())
    }

    /// Closes what is due: everything when `all` (a stop); else the oldest beyond [`MAX_OPEN`]
    /// (counted as evictions), and segments older than `segment_max_age`, oldest first, as many
    /// as the rate allows. Returns how many were closed.
    pub(crate) fn close_due(&mut self, all: bool) -> anyhow::Result<usize> {
        let mut by_age: Vec<(Instant, Partition)> = self
            .open
            .iter()
            .map(|(k, o)| (o.opened, k.clone()))
            .collect();
        by_age.sort_by_key(|(t, _)| *t);
        if all {
            for (_, k) in &by_age {
                self.close(k)?;
            }
            return Ok(by_age.len());
        }
        let over = by_age.len().saturating_sub(MAX_OPEN);
        for (_, k) in &by_age[..over] {
            self.close(k)?;
            self.table.evicted(1);
        }
        let aged = by_age[over..]
            .iter()
            .take_while(|(t, _)| t.elapsed() >= self.limits.segment_max_age)
            .count()
            .min(self.budget.available());
        for (_, k) in &by_age[over..over + aged] {
            self.close(k)?;
            self.budget.spend(1);
        }
        Ok(over + aged)
    }

    /// At start, before anything is sealed: the journals a previous run left (closed or cut
    /// short by a crash) are read record by record and cut into new segments, leaving out the
    /// records a segment in `ready/` already holds (a crash while a journal was cut), and
    /// everything is closed.
    pub(crate) fn recover(&mut self) -> anyhow::Result<()> {
        let journals = journal::journals(&self.dirs)?;
        if journals.is_empty() {
            return Ok(());
        }
        let held = ready_last_seqs(&self.dirs)?;
        for path in &journals {
            self.recover_journal(path, &held)
                .with_context(|| format!("recovering {}", path.display()))?;
            fs::remove_file(path)?;
        }
        sync_dir(&self.dirs.journal)?;
        self.close_due(true)?;
        Ok(())
    }

    fn recover_journal(
        &mut self,
        path: &Path,
        held: &HashMap<Partition, u64>,
    ) -> anyhow::Result<()> {
        let stored = Stored::read(path)?;
        let records = match &stored {
            Stored::Gzip(gz) => segment::gunzip(gz).0,
            Stored::Plain(b) => b.clone(),
        };
        // A crash mid-write: the last record may be torn.
        let whole = records
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let mut by: Vec<(IndexedPartition, Vec<&[u8]>)> = Vec::new();
        let mut at_of: HashMap<Partition, usize> = HashMap::new();
        let mut unreadable = 0u64;
        for line in records[..whole].split_inclusive(|&b| b == b'\n') {
            let Ok(e) = record::read(line.strip_suffix(b"\n").unwrap_or(line)) else {
                unreadable += 1;
                continue;
            };
            let p = Partition::of(&e);
            if held.get(&p).is_some_and(|last| e.seq <= *last) {
                continue;
            }
            let at = *at_of.entry(p.clone()).or_insert_with(|| {
                let meta = SegmentMeta::new(e.seq, e.time);
                by.push((
                    IndexedPartition {
                        partition: p,
                        meta,
                        bytes: 0,
                    },
                    Vec::new(),
                ));
                by.len() - 1
            });
            let (ip, lines) = &mut by[at];
            ip.meta.add(e.seq, e.time);
            ip.bytes += line.len() as u64;
            lines.push(line);
        }
        if unreadable > 0 || whole < records.len() {
            tracing::warn!(
                journal = %path.display(),
                unreadable,
                cut = records.len() - whole,
                "a journal left by a crash holds lines that are not whole records; they are left out"
            );
        }
        self.progress = None;
        for (ip, lines) in &by {
            self.cut_lines(0, ip, lines)?;
        }
        self.progress = None;
        Ok(())
    }
}

/// A plain journal's bytes, mapped (`None` when it is empty): cut where the pipeline wrote them,
/// in the page cache, instead of copied into the heap first (with many agents a journal is tens
/// of MiB, read once).
fn map_journal(file: &File, len: u64) -> std::io::Result<Option<memmap2::Mmap>> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: a closed journal is not written again, and only this sealer truncates it, after
    // its cut (`journal::recycle`); the spool is private to this daemon (mode 0700, one daemon
    // per spool, `SpoolLock`). A file truncated under the mapping anyway would stop the
    // daemon with SIGBUS when read past its end; one rewritten would give wrong records.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file)? };
    map.advise(memmap2::Advice::Sequential)?;
    Ok(Some(map))
}

/// The soft limit on open files (`main` raises it to the hard limit at start).
fn open_files_limit() -> usize {
    // SAFETY: getrlimit into a zeroed struct.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 0;
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

/// The last seq each partition's ready segments hold.
fn ready_last_seqs(dirs: &SpoolDirs) -> anyhow::Result<HashMap<Partition, u64>> {
    let mut held: HashMap<Partition, u64> = HashMap::new();
    for e in fs::read_dir(&dirs.ready)? {
        let path = e?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| SegmentName::parse(&n.to_string_lossy()))
        else {
            continue;
        };
        if let Some(last) = last_seq_in(&path)? {
            let seen = held.entry(name.partition).or_default();
            *seen = (*seen).max(last);
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::{
        event::{Action, Activity, AgentIdentity, Body, Detail, Event, Host, MatchedBy, Outcome},
        event::{Process, Resource, Subject, Target},
        export::{
            segment::Stored,
            spool::{SpoolLimits, SpoolWriter},
        },
        sink::Sink as _,
        time::from_nanos,
    };

    fn scratch(tag: &str) -> SpoolDirs {
        let d = std::env::temp_dir().join(format!("audit-parts-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        SpoolDirs::create(&d).unwrap()
    }

    /// A record of agent `agent` with sequence number `seq`, in the hour of 2026-11-26T19.
    fn record(agent: usize, seq: u64) -> Event {
        Event {
            time: from_nanos(1_795_719_600_000_000_000 + i128::from(seq) * 1_000_000),
            host: Arc::new(Host {
                name: "node-7".into(),
                boot_id: "b".into(),
            }),
            seq,
            stream: Arc::from("s"),
            body: Body::Activity(Box::new(Activity {
                action: Action::Signal,
                syscall: "kill",
                process: Process {
                    pid: 1000 + agent as u32,
                    tid: 1000 + agent as u32,
                    ppid: 1,
                    comm: b"agent".to_vec(),
                    ..Process::default()
                },
                subject: Subject {
                    cgroup: Some(Arc::from(format!("/agents/a{agent}"))),
                    ..Subject::default()
                },
                agent: Some(Arc::new(AgentIdentity {
                    id: format!("agent-{agent}"),
                    name: None,
                    workflow: None,
                    owner: None,
                    matched_by: Some(MatchedBy::Cgroup),
                })),
                resource: Resource::bare(
                    Target::Process { pid: 1 },
                    Detail::Signal {
                        sig: 15,
                        delivery: 0,
                        by_kernel: false,
                    },
                ),
                outcome: Outcome::Success(0),
                protected: vec![],
                protected_by_inode: vec![],
                verdict: None,
            })),
        }
    }

    fn limits(segment_max_bytes: u64, segments_per_s: f64) -> PartitionLimits {
        PartitionLimits {
            segment_max_bytes,
            segment_max_age: Duration::from_secs(3600),
            segments_per_s,
            gzip_level: 2,
        }
    }

    /// A spool writer whose closed journals are collected.
    fn writer(
        dirs: &SpoolDirs,
        stats: &Arc<ExportStats>,
        segment_max_bytes: u64,
    ) -> (SpoolWriter, Arc<Mutex<Vec<ClosedJournal>>>) {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let to = closed.clone();
        let w = SpoolWriter::new(
            dirs.clone(),
            SpoolLimits {
                max_bytes: 1 << 30,
                segment_max_bytes,
                segment_max_age: Duration::from_secs(3600),
                gzip_level: 2,
            },
            stats.clone(),
            Box::new(move |j| to.lock().unwrap().push(j)),
        );
        (w, closed)
    }

    /// Closes the writer's journal and cuts every journal it closed into the partitions.
    fn close_and_cut(
        w: &mut SpoolWriter,
        closed: &Mutex<Vec<ClosedJournal>>,
        parts: &mut Partitions,
    ) {
        w.close().unwrap();
        for j in closed.lock().unwrap().drain(..) {
            parts.journal_closed(j);
        }
        parts.cut_closed().unwrap();
    }

    /// Every ready segment: its partition's agent and the seqs of its records, checked to be
    /// one gzip member of whole records.
    fn ready(dirs: &SpoolDirs) -> Vec<(String, Vec<u64>)> {
        let mut out = Vec::new();
        for e in fs::read_dir(&dirs.ready).unwrap().flatten() {
            let name = SegmentName::parse(&e.file_name().to_string_lossy()).unwrap();
            let gz = fs::read(e.path()).unwrap();
            let mut records = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut records)
                .unwrap();
            assert_eq!(Stored::Gzip(gz).records_len(), records.len() as u64);
            let seqs = records
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let e = record::read(l).unwrap();
                    assert_eq!(Partition::of(&e), name.partition);
                    e.seq
                })
                .collect();
            out.push((name.partition.agent, seqs));
        }
        out.sort();
        out
    }

    #[test]
    fn journals_of_many_agents_are_cut_into_one_whole_segment_per_agent() {
        let dirs = scratch("cut");
        let stats = Arc::new(ExportStats::new());
        let (mut w, closed) = writer(&dirs, &stats, 8 << 20);
        let mut parts = Partitions::new(dirs.clone(), limits(8 << 20, 10.0), stats.clone());
        let mut seq = 1;
        // Three journals, the agents' records interleaved; one journal of agent 0 alone.
        for round in 0..3 {
            for i in 0..60 {
                let agent = if round == 1 { 0 } else { i % 7 };
                w.write(&record(agent, seq)).unwrap();
                seq += 1;
            }
            close_and_cut(&mut w, &closed, &mut parts);
        }
        assert_eq!(journal::journals(&dirs).unwrap(), Vec::<PathBuf>::new());
        assert!(dirs.journal.join("spare").exists(), "a journal is recycled");
        assert_eq!(parts.close_due(true).unwrap(), 7);
        let segments = ready(&dirs);
        assert_eq!(segments.len(), 7, "one segment per agent");
        let mut all: Vec<u64> = segments.iter().flat_map(|(_, s)| s.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (1..seq).collect::<Vec<_>>(), "every record once");
        for (agent, seqs) in &segments {
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{agent}: in order");
        }
        let metas = parts.take_closed();
        assert_eq!(metas.len(), 7);
        for (path, meta) in metas {
            let name = SegmentName::parse(&path.file_name().unwrap().to_string_lossy()).unwrap();
            let (_, seqs) = segments
                .iter()
                .find(|(a, _)| *a == name.partition.agent)
                .unwrap();
            assert_eq!(meta.records, seqs.len() as u64);
            assert_eq!(
                (meta.first_seq, meta.last_seq),
                (seqs[0], *seqs.last().unwrap())
            );
            assert_eq!(name.first_seq, seqs[0], "named by its first record");
        }
        let _ = fs::remove_dir_all(&dirs.root);
    }

    #[test]
    fn one_identity_s_records_either_side_of_an_hour_go_to_two_partitions() {
        let dirs = scratch("hour");
        let stats = Arc::new(ExportStats::new());
        let (mut w, closed) = writer(&dirs, &stats, 8 << 20);
        let mut parts = Partitions::new(dirs.clone(), limits(8 << 20, 10.0), stats.clone());
        // One `Arc` of the identity for every record, as the identity stage hands them out.
        let first = record(1, 1);
        let hour_ms = 3_600_000;
        for seq in [1, hour_ms - 1, hour_ms, hour_ms + 1, 2] {
            let mut e = first.clone();
            e.seq = seq;
            e.time = from_nanos(1_795_719_600_000_000_000 + i128::from(seq) * 1_000_000);
            w.write(&e).unwrap();
        }
        close_and_cut(&mut w, &closed, &mut parts);
        parts.close_due(true).unwrap();
        let mut hours: Vec<(jiff::Timestamp, u64)> = parts
            .take_closed()
            .into_iter()
            .map(|(path, meta)| {
                let name = SegmentName::parse(&path.file_name().unwrap().to_string_lossy());
                (name.unwrap().partition.hour, meta.records)
            })
            .collect();
        hours.sort();
        assert_eq!(hours.iter().map(|(_, n)| *n).collect::<Vec<_>>(), [3, 2]);
        let _ = fs::remove_dir_all(&dirs.root);
    }

    #[test]
    fn a_segment_never_exceeds_segment_max_bytes() {
        let dirs = scratch("max");
        let stats = Arc::new(ExportStats::new());
        let max = 8 * 1024;
        let (mut w, closed) = writer(&dirs, &stats, max);
        let mut parts = Partitions::new(dirs.clone(), limits(max, 10.0), stats.clone());
        for seq in 1..=300 {
            w.write(&record((seq % 2) as usize, seq)).unwrap();
            if seq % 40 == 0 {
                w.close().unwrap();
            }
        }
        close_and_cut(&mut w, &closed, &mut parts);
        parts.close_due(true).unwrap();
        let segments = ready(&dirs);
        assert!(segments.len() > 2, "{segments:?}");
        for e in fs::read_dir(&dirs.ready).unwrap().flatten() {
            let len = Stored::read(&e.path()).unwrap().records_len();
            assert!(len <= max, "{} holds {len} bytes", e.path().display());
        }
        let n: usize = segments.iter().map(|(_, s)| s.len()).sum();
        assert_eq!(n, 300);
        let _ = fs::remove_dir_all(&dirs.root);
    }

    #[test]
    fn segments_are_closed_for_their_age_at_the_configured_rate_oldest_first() {
        let dirs = scratch("rate");
        let stats = Arc::new(ExportStats::new());
        let (mut w, closed) = writer(&dirs, &stats, 8 << 20);
        let mut parts = Partitions::new(
            dirs.clone(),
            PartitionLimits {
                segment_max_age: Duration::ZERO,
                ..limits(8 << 20, 2.0)
            },
            stats.clone(),
        );
        for seq in 1..=50 {
            w.write(&record(seq as usize, seq)).unwrap();
        }
        close_and_cut(&mut w, &closed, &mut parts);
        // A burst of at most rate × age, at least one; then the rate.
        assert_eq!(parts.close_due(false).unwrap(), 1);
        assert_eq!(parts.close_due(false).unwrap(), 0, "the budget is spent");
        assert_eq!(ready(&dirs)[0].1, vec![1], "the oldest first");
        assert_eq!(
            parts.close_due(true).unwrap(),
            49,
            "a stop closes everything"
        );
        let _ = fs::remove_dir_all(&dirs.root);
    }

    #[test]
    fn a_journal_a_crash_left_is_recovered_without_duplicates() {
        let dirs = scratch("recover");
        let stats = Arc::new(ExportStats::new());
        let (mut w, closed) = writer(&dirs, &stats, 8 << 20);
        let mut parts = Partitions::new(dirs.clone(), limits(8 << 20, 10.0), stats.clone());
        for seq in 1..=40 {
            w.write(&record((seq % 4) as usize, seq)).unwrap();
        }
        w.close().unwrap();
        let j = closed.lock().unwrap().pop().unwrap();
        // The crash: the journal was cut into two of its four partitions' segments, not
        // recycled; the next journal's last record is torn.
        let kept = fs::read(&j.path).unwrap();
        parts.journal_closed(j);
        parts.cut_closed().unwrap();
        let first = journal::journals(&dirs).unwrap();
        assert!(first.is_empty());
        fs::write(dirs.journal.join(format!("{:020}.ndjson.gz", 1)), &kept).unwrap();
        for (p, o) in &parts.open {
            if p.agent == "agent-2" || p.agent == "agent-3" {
                fs::remove_file(&o.path).unwrap();
            }
        }
        for seq in 41..=50 {
            w.write(&record((seq % 4) as usize, seq)).unwrap();
        }
        w.flush().unwrap();
        let open = journal::journals(&dirs).unwrap().pop().unwrap();
        let mut torn = fs::read(&open).unwrap();
        torn.truncate(torn.len() - 3);
        fs::write(&open, torn).unwrap();
        drop(parts);
        // The restart: open segments salvaged, journals read record by record.
        super::super::spool::recover_open_segments(&dirs, 2).unwrap();
        let mut parts = Partitions::new(dirs.clone(), limits(8 << 20, 10.0), stats.clone());
        parts.recover().unwrap();
        assert!(journal::journals(&dirs).unwrap().is_empty());
        let mut all: Vec<u64> = ready(&dirs).into_iter().flat_map(|(_, s)| s).collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "no record twice");
        assert_eq!(
            all[..40],
            (1..=40).collect::<Vec<_>>()[..],
            "every record of the journal"
        );
        assert!(
            all.len() >= 40 && all.len() <= 50,
            "whole records of the torn one"
        );
        let _ = fs::remove_dir_all(&dirs.root);
    }

    /// Not a check: what writing and cutting cost per record, 1,000 agents' records interleaved
    /// (`cargo test --release -p audit-agent --lib cutting_cost -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn cutting_cost() {
        crate::raise_open_files_limit(); // as the daemon does: segment files stay open
        let dirs = scratch("cost");
        let stats = Arc::new(ExportStats::new());
        let (mut w, closed) = writer(&dirs, &stats, 8 << 20);
        let mut parts = Partitions::new(dirs.clone(), limits(8 << 20, 10.0), stats.clone());
        let (agents, per_journal, journals) = (
            1000,
            std::env::var("PJ").map_or(20, |v| v.parse().unwrap()),
            10,
        );
        let (mut seq, mut timed) = (0, 0);
        let (mut spent, mut writing) = (Duration::ZERO, Duration::ZERO);
        let events: Vec<Event> = (0..agents).map(|a| record(a, 0)).collect();
        // The first journal is compressed (the writer had seen one partition at most): not timed.
        for n in 0..=journals {
            let t = Instant::now();
            for _ in 0..per_journal {
                for e in &events {
                    seq += 1;
                    let mut e = e.clone();
                    e.seq = seq;
                    w.write(&e).unwrap();
                }
            }
            w.flush().unwrap();
            if n > 0 {
                writing += t.elapsed();
            }
            w.close().unwrap();
            for j in closed.lock().unwrap().drain(..) {
                parts.journal_closed(j);
            }
            let t = Instant::now();
            parts.cut_closed().unwrap();
            if n > 0 {
                spent += t.elapsed();
                timed += agents * per_journal;
            }
        }
        eprintln!(
            "write: {:.3} us per record, cut: {:.3} us per record ({timed} records)",
            writing.as_secs_f64() * 1e6 / timed as f64,
            spent.as_secs_f64() * 1e6 / timed as f64
        );
        let _ = fs::remove_dir_all(&dirs.root);
    }
}
