//! The spool: a local directory where every record is appended before it is acknowledged, and
//! where sealed batches wait for upload. It survives agent crashes and store outages.
//!
//! ```text
//! <spool>/lock                    held (flock) by the daemon writing the spool; holds its pid
//! <spool>/state.json              spool id, stream, next seq, manifest chain head (written atomically)
//! <spool>/alive                   touched every second while the daemon runs: its time is
//!                                 when a crashed run was last known alive
//! <spool>/journal/<first seq>.ndjson.gz  every record, as it is acknowledged (see `journal`)
//! <spool>/journal/spare           an empty file the next journal is made from
//! <spool>/open/<segment>.ndjson.gz   segments being cut from journals (one per agent and UTC
//!                                 hour; see `partitions`)
//! <spool>/ready/<segment>.ndjson.gz  closed segments waiting to be sealed
//! <spool>/ready/<segment>.ndjson.meta  their seq and time range (see `SegmentMeta`)
//! <spool>/sealed/<...>.gz         compressed objects waiting for upload
//! <spool>/sealed/manifest-<n>.json  their manifests, uploaded after the objects
//! <spool>/conflicts/              what the store already held other content for (never
//!                                 overwritten there; kept here for the operator, see `upload`)
//! <spool>/spare/<n>               files of uploaded objects, emptied, that new segments,
//!                                 manifests and state are made from (`SpoolDirs::create_file`)
//! ```
//! Segment names are `<first seq>+<agent>+<YYYY-MM-DD>+<HH>.ndjson.gz` (agent percent-encoded);
//! a segment is compressed as it is written (the format and its write order: `segment`).
//!
//! The pipeline writes one stream, the journal, whatever the number of agents; the sealer thread
//! cuts closed journals into the partitions' segments, closes those by size and by age (at a
//! configured rate), and seals what is closed (`seal`).

use std::{
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    ExportStats,
    journal::{ClosedJournal, Journal},
    segment::{End, Stored, salvage},
    spool_dir::{SpoolDirs, meta_path, read_meta},
};
use crate::{
    event::{Event, GapReason},
    sink::{Accepted, Sink},
    trail::record,
};

/// The longest a journal stays open. Each agent's records in a journal become one chunk of its
/// segment, and a chunk has fixed costs (a compressor reset, Huffman trees, a file write), so
/// with many quiet agents the cut costs less per record the longer a journal runs: 1,000 agents
/// at 20 records/s each, measured per thread over 60 s, cost the sealer 1.46 µs a record with
/// 1 s journals, 1.15 with 2 s and 1.07–1.24 with 4 s (the size limit, 32 MiB, closes them at
/// ~3 s there), and the pipeline thread 3.80 → 3.52 (fewer journals to open and index). A journal is
/// mapped while it is cut, so [`journal::MAX_BYTES`], not the age, bounds that memory.
const JOURNAL_MAX_AGE: Duration = Duration::from_secs(4);

/// Limits of the spool.
#[derive(Debug, Clone)]
pub(crate) struct SpoolLimits {
    /// Everything in the spool (journal + open + ready + sealed) may not exceed this.
    pub(crate) max_bytes: u64,
    pub(crate) segment_max_bytes: u64,
    pub(crate) segment_max_age: Duration,
    /// gzip level of the journal (it is compressed as it is written).
    pub(crate) gzip_level: u32,
}

impl SpoolLimits {
    /// A journal is closed at [`journal::MAX_BYTES`], before one partition's records in it
    /// exceed `segment_max_bytes`, or at this age: records reach their partition's segment this
    /// long after they are acknowledged at most ([`JOURNAL_MAX_AGE`], or half `segment_max_age`
    /// when that is shorter).
    fn journal_max_age(&self) -> Duration {
        (self.segment_max_age / 2).min(JOURNAL_MAX_AGE)
    }
}

/// The sink that appends records to the spool: to the journal, one stream for every agent.
///
/// A full or failing disk degrades to counted loss, never a dead daemon: while the spool cannot
/// be written (or its file system has less free space than sealing needs, [`SpoolWriter::reserve`])
/// new records are refused with the reason (`disk_full`, `spool_write_failed`) and counted into
/// gap records, records already accepted wait in memory, and writing resumes when space returns.
pub(crate) struct SpoolWriter {
    dirs: SpoolDirs,
    limits: SpoolLimits,
    /// The journal records are appended to (opened with the first record after a close).
    journal: Option<Journal>,
    /// Journals whose closing could not be written (full disk): retried with every flush.
    closing: Vec<Journal>,
    stats: Arc<ExportStats>,
    /// Why the spool cannot be written now, if it cannot.
    unwritable: Option<GapReason>,
    /// When free space was last checked.
    space_checked: Option<Instant>,
    /// Called with each journal closed (hands it to the sealer).
    on_ready: Box<dyn Fn(ClosedJournal) + Send>,
    /// The record being written (reused: no allocation per record).
    line: Vec<u8>,
    /// The actor members of the last record, copied into the next while they are the same.
    actors: record::ActorCache,
    /// Partitions in the journal closed last: the next one's compression follows from it.
    last_partitions: usize,
}

impl SpoolWriter {
    pub(crate) fn new(
        dirs: SpoolDirs,
        limits: SpoolLimits,
        stats: Arc<ExportStats>,
        on_ready: Box<dyn Fn(ClosedJournal) + Send>,
    ) -> Self {
        Self {
            dirs,
            limits,
            journal: None,
            closing: Vec::new(),
            stats,
            unwritable: None,
            space_checked: None,
            on_ready,
            line: Vec::with_capacity(4096),
            actors: record::ActorCache::measured(),
            last_partitions: 1,
        }
    }

    /// The gzip level of the next journal. A journal of one partition becomes its segment as it
    /// is (compressed at `gzip_level`); one of several is cut and each partition's records
    /// compressed on their own, so it is written plain (`None`: no compression, no checksum,
    /// nothing to inflate when it is cut). The last journal tells which kind the next one will
    /// likely be.
    fn journal_level(&self) -> Option<u32> {
        (self.last_partitions <= 1).then_some(self.limits.gzip_level)
    }

    /// Free space the spool's file system must keep: sealing writes a compressed copy of a
    /// segment before removing it, and state and manifests need room too.
    fn reserve(&self) -> u64 {
        (1 << 20).max(self.limits.segment_max_bytes / 4)
    }

    /// Notes a failed write: records are refused until the spool can be written again.
    fn failed(&mut self, e: &std::io::Error) {
        let reason = match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => GapReason::DiskFull,
            _ => GapReason::SpoolWriteFailed,
        };
        if self.unwritable.is_none() {
            tracing::error!(
                spool = %self.dirs.root.display(),
                error = %e,
                "cannot write the spool: refusing new records and counting them in gap records \
                 until it can be written again (records already accepted wait in memory)"
            );
        }
        self.unwritable = Some(reason);
    }

    /// At most every 200 ms: whether the spool's file system still has the reserve; when the
    /// spool was unwritable and has room again, writes what waited and resumes.
    fn check_space(&mut self) {
        if self
            .space_checked
            .is_some_and(|t| t.elapsed() < Duration::from_millis(200))
        {
            return;
        }
        self.space_checked = Some(Instant::now());
        let Some(free) = free_bytes(&self.dirs.root) else {
            return;
        };
        if free < self.reserve() {
            if self.unwritable.is_none() {
                tracing::error!(
                    spool = %self.dirs.root.display(),
                    free,
                    reserve = self.reserve(),
                    "the spool's file system is full: refusing new records and counting them in \
                     gap records until space returns"
                );
                self.unwritable = Some(GapReason::DiskFull);
            }
            return;
        }
        if self.unwritable.is_some() && self.write_buffers().is_ok() {
            tracing::info!(spool = %self.dirs.root.display(), "the spool can be written again");
            self.unwritable = None;
        }
    }

    /// Writes the journal up to a sync point (the acknowledgement), and finishes the closing of
    /// journals a full disk held back.
    fn write_buffers(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        if let Some(j) = &mut self.journal {
            match j.out.write_out(End::Sync) {
                Ok(n) => {
                    self.stats.spool_bytes.inc_by(n as i64);
                }
                Err(e) => result = Err(e),
            }
        }
        for j in std::mem::take(&mut self.closing) {
            if let Err(e) = self.finish_journal(j) {
                result = Err(e);
            }
        }
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    fn close_journal(&mut self) {
        if let Some(j) = self.journal.take()
            && let Err(e) = self.finish_journal(j)
        {
            self.failed(&e);
        }
    }

    /// Ends a journal and hands it to the sealer, which cuts it; when the disk does not let it,
    /// keeps it (its records in memory) in `closing` for the next flush.
    fn finish_journal(&mut self, mut j: Journal) -> std::io::Result<()> {
        match j.close() {
            Ok(n) => {
                self.last_partitions = j.partitions();
                self.stats.spool_bytes.inc_by(n as i64);
                (self.on_ready)(j.closed());
                Ok(())
            }
            Err(e) => {
                self.closing.push(j);
                Err(e)
            }
        }
    }
}

impl Sink for SpoolWriter {
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        record::write_with(e, &mut line, &mut self.actors)?;
        line.push(b'\n');
        let accepted = self.append(e, &line);
        self.line = line;
        accepted
    }

    /// Writes every buffered record to the journal (the acknowledgement point: from here a crash
    /// of the agent loses nothing) and closes the journal when it is old enough.
    fn flush(&mut self) -> anyhow::Result<()> {
        self.check_space();
        if self.unwritable.is_some() {
            return Ok(());
        }
        if self.write_buffers().is_err() {
            return Ok(());
        }
        if self
            .journal
            .as_ref()
            .is_some_and(|j| j.opened.elapsed() >= self.limits.journal_max_age())
        {
            self.close_journal();
        }
        Ok(())
    }

    /// Closes the journal (shutdown).
    fn close(&mut self) -> anyhow::Result<()> {
        self.close_journal();
        let unwritten: usize = (self.journal.iter().chain(&self.closing))
            .map(|j| j.out.unwritten())
            .sum();
        if unwritten > 0 {
            tracing::error!(
                bytes = unwritten,
                "records accepted while the spool could not be written are lost at this stop"
            );
        }
        Ok(())
    }
}

impl SpoolWriter {
    /// Appends one serialized record (`line`, with its newline) to the journal.
    fn append(&mut self, e: &Event, line: &[u8]) -> anyhow::Result<Accepted> {
        let len = line.len() as u64;
        // Gap records always fit: they are what makes a loss visible (while the disk is full
        // they wait in memory with the records accepted before it filled).
        if e.gap().is_none() {
            if self.unwritable.is_some() {
                self.check_space();
            }
            if let Some(reason) = self.unwritable {
                return Ok(Accepted::Dropped(reason));
            }
            if self.stats.spool_bytes.get().max(0) as u64 + len > self.limits.max_bytes {
                return Ok(Accepted::Dropped(GapReason::SpoolFull));
            }
        }
        if let Some(j) = &mut self.journal
            && !j.push(e, line, self.limits.segment_max_bytes)
        {
            self.close_journal();
        }
        if self.journal.is_none() {
            match Journal::create(&self.dirs, e.seq, self.journal_level()) {
                Ok(mut j) => {
                    j.push(e, line, self.limits.segment_max_bytes);
                    self.journal = Some(j);
                }
                Err(err) => {
                    self.failed(&err);
                    return Ok(Accepted::Dropped(
                        self.unwritable.unwrap_or(GapReason::DiskFull),
                    ));
                }
            }
        }
        let j = self.journal.as_mut().expect("opened above");
        // While the spool is unwritable, buffers (of gap records) wait for `check_space`.
        let written = if j.out.wants_write() && self.unwritable.is_none() {
            j.out.write_out(End::Continue)
        } else {
            Ok(0)
        };
        match written {
            Ok(n) => {
                self.stats.spool_bytes.inc_by(n as i64);
            }
            Err(err) => self.failed(&err),
        }
        self.stats.records_spooled.inc();
        Ok(Accepted::Yes)
    }
}

/// Free bytes for an unprivileged writer on the file system holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs into a zeroed struct, with a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail.saturating_mul(st.f_frsize))
}

/// Recovery at start: segments left open by a previous run become ready (whole records kept,
/// a torn last one cut off: `segment::salvage`).
pub(crate) fn recover_open_segments(dirs: &SpoolDirs, gzip_level: u32) -> anyhow::Result<()> {
    for e in fs::read_dir(&dirs.open)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "tmp") {
            // A salvage interrupted before its rename: the segment itself is still there.
            fs::remove_file(&path)?;
            continue;
        }
        let cut = salvage(&path, gzip_level)?;
        if cut > 0 {
            tracing::warn!(
                file = %path.display(),
                cut,
                "spool segment ends with a torn record (crash mid-write); cutting it off"
            );
        }
        let to = dirs.ready.join(path.file_name().unwrap_or_default());
        let _ = fs::remove_file(meta_path(&to));
        fs::rename(&path, to)?;
    }
    Ok(())
}

/// The highest seq in ready segments.
pub(crate) fn max_ready_seq(dirs: &SpoolDirs) -> anyhow::Result<Option<u64>> {
    let mut max = None;
    for e in fs::read_dir(&dirs.ready)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "meta") {
            continue;
        }
        if let Some(seq) = last_seq_in(&path)? {
            max = max.max(Some(seq));
        }
    }
    Ok(max)
}

/// The seq of the last complete line of a segment file: from its sidecar when it has one (no
/// need to decompress it at every start), else from the records.
pub(crate) fn last_seq_in(path: &Path) -> anyhow::Result<Option<u64>> {
    if let Some(meta) = read_meta(path) {
        return Ok(Some(meta.last_seq));
    }
    let stored = Stored::read(path)?;
    Ok(stored
        .records()?
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(record::Position::of)
        .map(|p| p.seq))
}

/// Bytes currently in the spool (for the size limit at start).
pub(crate) fn spool_size(dirs: &SpoolDirs) -> u64 {
    [&dirs.journal, &dirs.open, &dirs.ready, &dirs.sealed]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink},
        path::PathBuf,
    };

    use super::{
        super::spool_dir::{SpoolLock, State},
        *,
    };

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("audit-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_spool_is_private_whatever_the_umask() {
        let d = scratch("private");
        let root = d.join("spool");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        // SAFETY: umask has no preconditions; restored below.
        let old = unsafe { libc::umask(0) };
        let made = SpoolDirs::create(&root).and_then(|s| {
            s.save_state(&State::default())?;
            Ok(s)
        });
        unsafe { libc::umask(old) };
        let dirs = made.unwrap();
        for p in [
            &dirs.root,
            &dirs.open,
            &dirs.ready,
            &dirs.sealed,
            &dirs.conflicts,
        ] {
            assert_eq!(
                fs::metadata(p).unwrap().mode() & 0o777,
                0o700,
                "{}",
                p.display()
            );
        }
        let state = fs::metadata(dirs.state_path()).unwrap();
        assert_eq!(state.mode() & 0o777, 0o600);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn planted_symlinks_are_replaced_never_written_through() {
        let d = scratch("symlinks");
        let victim = d.join("victim");
        fs::write(&victim, "precious").unwrap();
        let root = d.join("spool");
        let dirs = SpoolDirs::create(&root).unwrap();
        for planted in [
            root.join(".write-test"),
            root.join("state.tmp"),
            root.join("alive"),
        ] {
            let _ = fs::remove_file(&planted);
            symlink(&victim, &planted).unwrap();
        }
        SpoolDirs::create(&root).unwrap();
        dirs.save_state(&State::default()).unwrap();
        let alive = dirs.mark_alive();
        assert!(
            alive.is_err(),
            "the alive file is opened without following a symlink"
        );
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn one_process_holds_a_spool_and_a_second_is_refused_naming_it() {
        let d = scratch("lock");
        let root = d.join("spool");
        let held = SpoolLock::acquire(&root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("lock")).unwrap().trim(),
            std::process::id().to_string()
        );
        // flock locks belong to an open file: a second open, even in this process, is refused.
        let err = format!("{:#}", SpoolLock::acquire(&root).unwrap_err());
        assert!(
            err.contains(&format!(
                "spool {} is in use by another audit-agent (pid {})",
                root.display(),
                std::process::id()
            )),
            "{err}"
        );
        drop(held);
        SpoolLock::acquire(&root).unwrap();
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_spool_that_is_a_symlink_or_someone_elses_is_refused() {
        let d = scratch("refused");
        let real = d.join("elsewhere");
        fs::create_dir(&real).unwrap();
        let link = d.join("spool");
        symlink(&real, &link).unwrap();
        let err = format!("{:#}", SpoolDirs::create(&link).unwrap_err());
        assert!(
            err.contains("is not a directory (a symlink or file)"),
            "{err}"
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let theirs = d.join("theirs");
            fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = format!("{:#}", SpoolDirs::create(&theirs).unwrap_err());
            assert!(err.contains("is owned by uid 65534"), "{err}");
        }
        let _ = fs::remove_dir_all(&d);
    }
}
