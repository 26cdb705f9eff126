//! The spool: a local directory where every record is appended before it is acknowledged, and
//! where sealed batches wait for upload. It survives agent crashes and store outages.
//!
//! ```text
//! <spool>/state.json              stream, next seq, manifest chain head (written atomically)
//! <spool>/alive                   touched every second while the daemon runs: its time is
//!                                 when a crashed run was last known alive
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
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{
    ExportStats,
    layout::{Partition, SegmentName},
    manifest::Link,
};
use crate::{
    event::{Event, Timestamp},
    format::native,
    sink::{Accepted, Sink},
};

/// Persistent state of a spool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
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

/// The directories of a spool.
#[derive(Debug, Clone)]
pub(crate) struct SpoolDirs {
    pub(crate) root: PathBuf,
    pub(crate) open: PathBuf,
    pub(crate) ready: PathBuf,
    pub(crate) sealed: PathBuf,
}

impl SpoolDirs {
    pub(crate) fn create(root: &Path) -> anyhow::Result<Self> {
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
        super::layout::ObjectName::parse(&e.key).map(|o| self.sealed.join(o.spool_file()))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn alive_path(&self) -> PathBuf {
        self.root.join("alive")
    }

    /// Records that the daemon is alive now (the `alive` file's modification time).
    pub(crate) fn mark_alive(&self) -> std::io::Result<()> {
        OpenOptions::new()
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

/// Writes `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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

pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
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
    /// Everything in the spool (open + ready + sealed) may not exceed this.
    pub(crate) max_bytes: u64,
    pub(crate) segment_max_bytes: u64,
    pub(crate) segment_max_age: Duration,
}

/// The sink that appends records to the spool.
pub(crate) struct SpoolWriter {
    dirs: SpoolDirs,
    limits: SpoolLimits,
    open: HashMap<Partition, OpenSegment>,
    stats: Arc<ExportStats>,
    /// Called when a segment is closed (wakes the sealer).
    on_ready: Box<dyn Fn() + Send>,
}

impl SpoolWriter {
    pub(crate) fn new(
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

    fn close_segment(&mut self, key: &Partition) -> anyhow::Result<()> {
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
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted> {
        let mut line = Vec::with_capacity(1024);
        native::write(e, &mut line)?;
        line.push(b'\n');
        let len = line.len() as u64;
        // Gap records always fit: they are what makes a loss visible.
        if e.gap().is_none()
            && self.stats.spool_bytes.get().max(0) as u64 + len > self.limits.max_bytes
        {
            return Ok(Accepted::Dropped);
        }
        let key = Partition::of(e);
        if !self.open.contains_key(&key) {
            let name = SegmentName {
                first_seq: e.seq,
                partition: key.clone(),
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
                    meta: SegmentMeta::new(e.seq, e.time),
                },
            );
        }
        let full = {
            let seg = self.open.get_mut(&key).expect("inserted above");
            seg.meta.add(e.seq, e.time);
            seg.buf.extend_from_slice(&line);
            seg.bytes += len;
            if seg.buf.len() >= 256 * 1024 {
                seg.file.write_all(&seg.buf)?;
                seg.buf.clear();
            }
            seg.bytes >= self.limits.segment_max_bytes
        };
        self.stats.spool_bytes.inc_by(len as i64);
        self.stats.records_spooled.inc();
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
pub(crate) fn recover_open_segments(dirs: &SpoolDirs) -> anyhow::Result<Option<u64>> {
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
pub(crate) fn spool_size(dirs: &SpoolDirs) -> u64 {
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
    fn torn_tails_are_cut_to_the_last_complete_line() {
        let dir = std::env::temp_dir().join(format!("audit-torn-{}", std::process::id()));
        fs::write(&dir, b"{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"ti").unwrap();
        truncate_torn_tail(&dir).unwrap();
        assert_eq!(fs::read(&dir).unwrap(), b"{\"seq\":1}\n{\"seq\":2}\n");
        assert_eq!(last_seq_in(&dir).unwrap(), Some(2));
        let _ = fs::remove_file(&dir);
    }
}
