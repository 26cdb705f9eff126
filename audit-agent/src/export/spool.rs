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
//! ```
//! Segment names are `<first seq>+<agent>+<YYYY-MM-DD>+<HH>.ndjson.gz` (agent percent-encoded);
//! a segment is compressed as it is written (the format and its write order: `segment`).
//!
//! The pipeline writes one stream, the journal, whatever the number of agents; the sealer thread
//! cuts closed journals into the partitions' segments, closes those by size and by age (at a
//! configured rate), and seals what is closed (`seal`).

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    ExportStats,
    journal::{ClosedJournal, Journal},
    manifest::Link,
    segment::{End, Stored, salvage},
};
use crate::{
    event::{Event, GapReason, Timestamp},
    format::native,
    sink::{Accepted, Sink},
};

/// Persistent state of a spool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    /// The spool's id, part of its streams' names (`StreamId::spool`); empty in spools of
    /// versions before it, until the first start of this one.
    #[serde(default)]
    pub(crate) spool_id: String,
    pub(crate) host: String,
    /// Boot of the current stream.
    pub(crate) boot_id: String,
    /// Next sequence number to assign (records continue it across restarts and reboots).
    pub(crate) next_seq: u64,
    /// Next manifest sequence in the current stream.
    pub(crate) next_manifest: u64,
    /// Last manifest of the current stream.
    pub(crate) head: Option<Link>,
    /// Last manifest of the previous stream (linked from the first manifest of this one).
    pub(crate) previous_stream_head: Option<Link>,
    /// Whether the last run stopped cleanly.
    pub(crate) clean_shutdown: bool,
    /// When the last run stopped, if cleanly.
    #[serde(default, with = "crate::time::wire_opt")]
    pub(crate) stopped_at: Option<Timestamp>,
}

impl State {
    /// The stream the state's chain belongs to.
    pub(crate) fn stream(&self) -> super::layout::StreamId {
        super::layout::StreamId {
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            spool: self.spool_id.clone(),
        }
    }
}

/// The directories of a spool.
#[derive(Debug, Clone)]
pub(crate) struct SpoolDirs {
    pub(crate) root: PathBuf,
    pub(crate) journal: PathBuf,
    pub(crate) open: PathBuf,
    pub(crate) ready: PathBuf,
    pub(crate) sealed: PathBuf,
    pub(crate) conflicts: PathBuf,
}

/// Creates the spool's root directory (and its parents), private.
fn create_root(root: &Path) -> anyhow::Result<()> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create {} (set [export] spool_dir to a writable directory; on \
                 Kubernetes a hostPath)",
                parent.display()
            )
        })?;
    }
    private_dir(root)
}

impl SpoolDirs {
    pub(crate) fn create(root: &Path) -> anyhow::Result<Self> {
        let d = Self {
            root: root.to_path_buf(),
            journal: root.join("journal"),
            open: root.join("open"),
            ready: root.join("ready"),
            sealed: root.join("sealed"),
            conflicts: root.join("conflicts"),
        };
        create_root(&d.root)?;
        for p in [&d.journal, &d.open, &d.ready, &d.sealed, &d.conflicts] {
            private_dir(p)?;
        }
        // Probe writability now rather than on the first record.
        let probe = d.root.join(".write-test");
        match write_private(&probe, b"ok") {
            Ok(()) => {}
            // A full disk is not a configuration error: the daemon starts, uploads what the
            // spool holds (freeing it) and counts what it cannot write.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                tracing::error!(spool = %d.root.display(), "the spool's file system is full");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("spool directory {} is not writable", d.root.display())
                });
            }
        }
        let _ = fs::remove_file(probe);
        Ok(d)
    }

    /// A sealed manifest waiting for upload.
    pub(crate) fn manifest_path(&self, sequence: u64) -> PathBuf {
        self.sealed.join(format!("manifest-{sequence:010}.json"))
    }

    /// Sealed manifests waiting for upload, in chain order.
    pub(crate) fn manifests(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.sealed)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("manifest-") && n.ends_with(".json"))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// The sealed file of a manifest's object entry, while it waits for upload.
    pub(crate) fn sealed_object(&self, e: &super::manifest::ObjectEntry) -> Option<PathBuf> {
        super::layout::spool_file_of(&e.key).map(|f| self.sealed.join(f))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn alive_path(&self) -> PathBuf {
        self.root.join("alive")
    }

    /// Records that the daemon is alive now (the `alive` file's modification time).
    pub(crate) fn mark_alive(&self) -> std::io::Result<()> {
        private_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.alive_path())?
            .set_modified(std::time::SystemTime::now())
    }

    /// When a previous run was last known alive.
    pub(crate) fn last_alive(&self) -> Option<Timestamp> {
        let t = fs::metadata(self.alive_path()).ok()?.modified().ok()?;
        Timestamp::try_from(t).ok()
    }

    pub(crate) fn load_state(&self) -> anyhow::Result<Option<State>> {
        match fs::read(self.state_path()) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("spool state {} is corrupt", self.state_path().display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read spool state"),
        }
    }

    pub(crate) fn save_state(&self, s: &State) -> anyhow::Result<()> {
        write_atomic(&self.state_path(), &serde_json::to_vec_pretty(s)?)
    }
}

/// One daemon per spool: the lock on `<spool>/lock` (flock), held while the daemon runs and
/// released by the kernel however it ends. A second daemon on the spool would interleave its
/// records and manifests with the first's under one stream name.
#[derive(Debug)]
pub(crate) struct SpoolLock {
    _file: File,
}

impl SpoolLock {
    /// Creates the spool's root if needed and locks it; refuses a spool another process holds,
    /// naming it and the pid it wrote.
    pub(crate) fn acquire(root: &Path) -> anyhow::Result<Self> {
        create_root(root)?;
        let path = root.join("lock");
        let mut file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the spool lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(String::new, |p| format!(" (pid {p})"));
                anyhow::bail!(
                    "spool {} is in use by another audit-agent{pid}: one daemon per spool (two \
                     would write one stream over each other); stop the other one, or give this \
                     one its own [export] spool_dir",
                    root.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Self { _file: file })
    }
}

/// A new random id (16 hex digits) for a spool.
pub(crate) fn new_spool_id() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    super::manifest::getrandom(&mut b)?;
    Ok(hex::encode(b))
}

/// The spool is private: directories 0700 and files 0600 whatever the umask, and no symlink is
/// ever followed in it. Its directories are checked (real directories, owned by the daemon's
/// user) when the spool opens; after that only that user can add entries, and every file is
/// opened with `O_NOFOLLOW` — new ones with `O_EXCL` after removing whatever had the name, so a
/// planted symlink is replaced, never written through.
fn private_dir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot create spool directory {} (set [export] spool_dir to a writable \
                     directory; on Kubernetes a hostPath)",
                    p.display()
                )
            });
        }
    }
    let m = fs::symlink_metadata(p)
        .with_context(|| format!("cannot inspect spool directory {}", p.display()))?;
    if !m.file_type().is_dir() {
        anyhow::bail!(
            "spool directory {} is not a directory (a symlink or file); refusing to use it: \
             remove it or set [export] spool_dir elsewhere",
            p.display()
        );
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        anyhow::bail!(
            "spool directory {} is owned by uid {}, not by this daemon's uid {me}; refusing to \
             use it (another user could read or replace records): chown it or choose another \
             [export] spool_dir",
            p.display(),
            m.uid()
        );
    }
    if m.mode() & 0o777 != 0o700 {
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make spool directory {} private", p.display()))?;
    }
    Ok(())
}

/// Options for every file in the spool: mode 0600, symlinks not followed.
pub(crate) fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = OpenOptions::new();
    o.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Creates `path` afresh (whatever had the name, a planted symlink included, is removed first).
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    private_options().write(true).create_new(true).open(path)
}

/// Writes `bytes` to a new private file at `path`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private(path)?.write_all(bytes)
}

/// Writes `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            create_private(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Seq and time range of a segment, written next to it when it is closed (`<name>.meta`) so
/// sealing need not re-read every record; recomputed from the records after a crash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) records: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    #[serde(with = "crate::time::wire")]
    pub(crate) time_from: Timestamp,
    #[serde(with = "crate::time::wire")]
    pub(crate) time_to: Timestamp,
}

impl SegmentMeta {
    pub(crate) fn new(seq: u64, t: Timestamp) -> Self {
        Self {
            records: 0,
            first_seq: seq,
            last_seq: seq,
            time_from: t,
            time_to: t,
        }
    }

    /// The sidecar of the ready segment at `segment`, if it has a usable one.
    pub(crate) fn of(segment: &Path) -> Option<Self> {
        let bytes = fs::read(meta_path(segment)).ok()?;
        serde_json::from_slice::<Self>(&bytes)
            .ok()
            .filter(|m| m.records > 0)
    }

    pub(crate) fn add(&mut self, seq: u64, t: Timestamp) {
        self.records += 1;
        self.first_seq = self.first_seq.min(seq);
        self.last_seq = self.last_seq.max(seq);
        self.time_from = self.time_from.min(t);
        self.time_to = self.time_to.max(t);
    }
}

/// The sidecar file of a ready segment.
pub(crate) fn meta_path(segment: &Path) -> PathBuf {
    segment.with_extension("meta")
}

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
    /// exceed `segment_max_bytes`, or at this age: records reach their partition's segment this long after they are
    /// acknowledged at most (a second, or half `segment_max_age` when that is shorter).
    fn journal_max_age(&self) -> Duration {
        (self.segment_max_age / 2).min(Duration::from_secs(1))
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
    actors: native::ActorCache,
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
            actors: native::ActorCache::measured(),
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
        native::write_with(e, &mut line, &mut self.actors)?;
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
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    if let Some(meta) = SegmentMeta::of(path) {
        return Ok(Some(meta.last_seq));
    }
    let stored = Stored::read(path)?;
    Ok(stored
        .records()?
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice::<Seq>(l).ok())
        .map(|s| s.seq))
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
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink};

    use super::*;

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
