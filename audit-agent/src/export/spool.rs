//! The spool: a local directory where every record is appended before it is acknowledged, and
//! where sealed batches wait for upload. It survives agent crashes and store outages.
//!
//! ```text
//! <spool>/state.json              stream, next seq, manifest chain head (written atomically)
//! <spool>/open/<segment>.ndjson   segments being appended to (one per agent and UTC hour)
//! <spool>/ready/<segment>.ndjson  closed segments waiting to be sealed
//! <spool>/sealed/<...>.gz         compressed objects waiting for upload
//! <spool>/sealed/manifest-<n>.json  their manifests, uploaded after the objects
//! ```
//! Segment names are `<first seq>+<agent>+<YYYY-MM-DD>+<HH>.ndjson` (agent percent-encoded).

use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    ExportStats,
    layout::{AUDIT_PARTITION, date_hour, decode, encode},
    manifest::Link,
};
use crate::{
    record::Record,
    sink::{Accepted, Sink},
};

/// Persistent state of a spool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub host: String,
    /// Boot of the current stream.
    pub boot_id: String,
    /// Next sequence number to assign (records continue it across restarts and reboots).
    pub next_seq: u64,
    /// Next manifest sequence in the current stream.
    pub next_manifest: u64,
    /// Last manifest of the current stream.
    pub head: Option<Link>,
    /// Last manifest of the previous stream (linked from the first manifest of this one).
    pub previous_stream_head: Option<Link>,
    /// Whether the last run stopped cleanly.
    pub clean_shutdown: bool,
    /// When the last run stopped (RFC 3339), if cleanly.
    pub stopped_at: Option<String>,
}

/// The directories of a spool.
#[derive(Debug, Clone)]
pub struct SpoolDirs {
    pub root: PathBuf,
    pub open: PathBuf,
    pub ready: PathBuf,
    pub sealed: PathBuf,
}

impl SpoolDirs {
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        let d = Self {
            root: root.to_path_buf(),
            open: root.join("open"),
            ready: root.join("ready"),
            sealed: root.join("sealed"),
        };
        for p in [&d.root, &d.open, &d.ready, &d.sealed] {
            fs::create_dir_all(p).with_context(|| {
                format!(
                    "cannot create spool directory {} (set [export] spool_dir to a writable \
                     directory; on Kubernetes a hostPath)",
                    p.display()
                )
            })?;
        }
        // Probe writability now rather than on the first record.
        let probe = d.root.join(".write-test");
        fs::write(&probe, b"ok")
            .with_context(|| format!("spool directory {} is not writable", d.root.display()))?;
        let _ = fs::remove_file(probe);
        Ok(d)
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn load_state(&self) -> anyhow::Result<Option<State>> {
        match fs::read(self.state_path()) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("spool state {} is corrupt", self.state_path().display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read spool state"),
        }
    }

    pub fn save_state(&self, s: &State) -> anyhow::Result<()> {
        write_atomic(&self.state_path(), &serde_json::to_vec_pretty(s)?)
    }
}

/// Writes `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Identity of a segment: what goes into its object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegmentName {
    pub first_seq: u64,
    pub agent_id: String,
    pub dt: String,
    pub hour: String,
}

impl SegmentName {
    pub fn file_name(&self) -> String {
        format!(
            "{:020}+{}+{}+{}.ndjson",
            self.first_seq,
            encode(&self.agent_id),
            self.dt,
            self.hour
        )
    }

    pub fn parse(file: &str) -> Option<Self> {
        let stem = file.strip_suffix(".ndjson")?;
        let mut p = stem.split('+');
        let s = Self {
            first_seq: p.next()?.parse().ok()?,
            agent_id: decode(p.next()?)?,
            dt: p.next()?.to_string(),
            hour: p.next()?.to_string(),
        };
        p.next().is_none().then_some(s)
    }
}

/// Partition of a record: (agent id, date, hour).
fn partition(rec: &Record) -> (String, String, String) {
    let agent = if rec.is_gap() {
        AUDIT_PARTITION.to_string()
    } else {
        rec.agent_id().to_string()
    };
    let (dt, hour) = date_hour(rec.unix_ns);
    (agent, dt, hour)
}

struct OpenSegment {
    name: SegmentName,
    path: PathBuf,
    file: File,
    /// Bytes appended but not yet written to the file.
    buf: Vec<u8>,
    bytes: u64,
    opened: Instant,
    meta: SegmentMeta,
}

/// Seq and time range of a segment, written next to it when it is closed (`<name>.meta`) so
/// sealing need not re-read every record; recomputed from the records after a crash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SegmentMeta {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub time_from: String,
    pub time_to: String,
    #[serde(skip)]
    pub t_min: i128,
    #[serde(skip)]
    pub t_max: i128,
}

impl SegmentMeta {
    pub fn new(seq: u64, unix_ns: i128, time: &str) -> Self {
        Self {
            records: 0,
            first_seq: seq,
            last_seq: seq,
            time_from: time.to_string(),
            time_to: time.to_string(),
            t_min: unix_ns,
            t_max: unix_ns,
        }
    }

    pub fn add(&mut self, seq: u64, unix_ns: i128, time: &str) {
        self.records += 1;
        self.first_seq = self.first_seq.min(seq);
        self.last_seq = self.last_seq.max(seq);
        if unix_ns < self.t_min {
            self.t_min = unix_ns;
            self.time_from = time.to_string();
        }
        if unix_ns > self.t_max {
            self.t_max = unix_ns;
            self.time_to = time.to_string();
        }
    }
}

/// The sidecar file of a ready segment.
pub fn meta_path(segment: &Path) -> PathBuf {
    segment.with_extension("meta")
}

/// Limits of the spool.
#[derive(Debug, Clone)]
pub struct SpoolLimits {
    /// Everything in the spool (open + ready + sealed) may not exceed this.
    pub max_bytes: u64,
    pub segment_max_bytes: u64,
    pub segment_max_age: Duration,
}

/// The sink that appends records to the spool.
pub struct SpoolWriter {
    dirs: SpoolDirs,
    limits: SpoolLimits,
    open: HashMap<(String, String, String), OpenSegment>,
    stats: Arc<ExportStats>,
    /// Called when a segment is closed (wakes the sealer).
    on_ready: Box<dyn Fn() + Send>,
}

impl SpoolWriter {
    pub fn new(
        dirs: SpoolDirs,
        limits: SpoolLimits,
        stats: Arc<ExportStats>,
        on_ready: Box<dyn Fn() + Send>,
    ) -> Self {
        Self {
            dirs,
            limits,
            open: HashMap::new(),
            stats,
            on_ready,
        }
    }

    fn close_segment(&mut self, key: &(String, String, String)) -> anyhow::Result<()> {
        if let Some(mut seg) = self.open.remove(key) {
            seg.file.write_all(&seg.buf)?;
            seg.buf.clear();
            let to = self.dirs.ready.join(seg.name.file_name());
            // The sidecar first: a ready segment without one is simply rescanned.
            fs::write(meta_path(&to), serde_json::to_vec(&seg.meta)?)?;
            fs::rename(&seg.path, &to)
                .with_context(|| format!("cannot move {} to ready/", seg.path.display()))?;
            (self.on_ready)();
        }
        Ok(())
    }

    /// Closes segments that are too old (called on every flush).
    fn rotate_by_age(&mut self) -> anyhow::Result<()> {
        let old: Vec<_> = self
            .open
            .iter()
            .filter(|(_, s)| s.opened.elapsed() >= self.limits.segment_max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.close_segment(&k)?;
        }
        Ok(())
    }
}

impl Sink for SpoolWriter {
    fn write(&mut self, rec: &Record) -> anyhow::Result<Accepted> {
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        let len = line.len() as u64;
        // Gap records always fit: they are what makes a loss visible.
        if !rec.is_gap()
            && self.stats.spool_bytes.load(Ordering::Relaxed) + len > self.limits.max_bytes
        {
            return Ok(Accepted::Dropped);
        }
        let key = partition(rec);
        if !self.open.contains_key(&key) {
            let name = SegmentName {
                first_seq: rec.seq,
                agent_id: key.0.clone(),
                dt: key.1.clone(),
                hour: key.2.clone(),
            };
            let path = self.dirs.open.join(name.file_name());
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot create spool segment {}", path.display()))?;
            self.open.insert(
                key.clone(),
                OpenSegment {
                    name,
                    path,
                    file,
                    buf: Vec::with_capacity(64 * 1024),
                    bytes: 0,
                    opened: Instant::now(),
                    meta: SegmentMeta::new(rec.seq, rec.unix_ns, &rec.time),
                },
            );
        }
        let full = {
            let seg = self.open.get_mut(&key).expect("inserted above");
            seg.meta.add(rec.seq, rec.unix_ns, &rec.time);
            seg.buf.extend_from_slice(&line);
            seg.bytes += len;
            if seg.buf.len() >= 256 * 1024 {
                seg.file.write_all(&seg.buf)?;
                seg.buf.clear();
            }
            seg.bytes >= self.limits.segment_max_bytes
        };
        self.stats.spool_bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.records_spooled.fetch_add(1, Ordering::Relaxed);
        if full {
            self.close_segment(&key)?;
        }
        Ok(Accepted::Yes)
    }

    /// Writes every buffered record to its segment file (the acknowledgement point: from here a
    /// crash of the agent loses nothing) and rotates segments by age.
    fn flush(&mut self) -> anyhow::Result<()> {
        for seg in self.open.values_mut() {
            if !seg.buf.is_empty() {
                seg.file.write_all(&seg.buf)?;
                seg.buf.clear();
            }
        }
        self.rotate_by_age()
    }

    /// Closes every open segment (shutdown).
    fn close(&mut self) -> anyhow::Result<()> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for k in keys {
            self.close_segment(&k)?;
        }
        Ok(())
    }
}

/// Recovery at start: segments left open by a previous run become ready (a torn last line from
/// a crash mid-write is cut off). Returns the highest seq found in ready segments.
pub fn recover_open_segments(dirs: &SpoolDirs) -> anyhow::Result<Option<u64>> {
    for e in fs::read_dir(&dirs.open)? {
        let e = e?;
        let path = e.path();
        truncate_torn_tail(&path)?;
        let to = dirs.ready.join(e.file_name());
        let _ = fs::remove_file(meta_path(&to));
        fs::rename(&path, to)?;
    }
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

fn truncate_torn_tail(path: &Path) -> anyhow::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let back = len.min(1 << 20);
    f.seek(SeekFrom::Start(len - back))?;
    let mut tail = vec![0; back as usize];
    f.read_exact(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(len - back, |i| len - back + i as u64 + 1);
    tracing::warn!(
        file = %path.display(),
        cut = len - keep,
        "spool segment ends with a torn record (crash mid-write); cutting it off"
    );
    f.set_len(keep)?;
    f.sync_all()?;
    Ok(())
}

/// The seq of the last complete line of a segment file.
fn last_seq_in(path: &Path) -> anyhow::Result<Option<u64>> {
    #[derive(Deserialize)]
    struct Seq {
        seq: u64,
    }
    let bytes = fs::read(path)?;
    Ok(bytes
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice::<Seq>(l).ok())
        .map(|s| s.seq))
}

/// Bytes currently in the spool (for the size limit at start).
pub fn spool_size(dirs: &SpoolDirs) -> u64 {
    [&dirs.open, &dirs.ready, &dirs.sealed]
        .iter()
        .filter_map(|d| fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_for_any_agent_id() {
        for agent in ["support-bot", "a+b", "x/y", "_audit"] {
            let n = SegmentName {
                first_seq: 42,
                agent_id: agent.into(),
                dt: "2026-11-26".into(),
                hour: "19".into(),
            };
            assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
        }
        assert_eq!(SegmentName::parse("junk.ndjson"), None);
    }

    #[test]
    fn torn_tails_are_cut_to_the_last_complete_line() {
        let dir = std::env::temp_dir().join(format!("audit-torn-{}", std::process::id()));
        fs::write(&dir, b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"ti").unwrap();
        truncate_torn_tail(&dir).unwrap();
        assert_eq!(fs::read(&dir).unwrap(), b"{\"seq\":1}\n{\"seq\":2}\n");
        assert_eq!(last_seq_in(&dir).unwrap(), Some(2));
        let _ = fs::remove_file(&dir);
    }
}
