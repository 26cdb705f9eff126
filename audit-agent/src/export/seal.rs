//! Sealing: turning closed segments into compressed objects plus one manifest per batch, durably
//! and crash-consistently. The order of a seal is:
//!
//! 1. write every object (temp + fsync + rename) into `sealed/`;
//! 2. write the manifest (same way);
//! 3. write `state.json` with the new chain head;
//! 4. delete the ready segments.
//!
//! Recovery at start undoes or completes an interrupted seal: a manifest newer than the state is
//! rolled forward (3 was lost), objects without a manifest are deleted (2 was lost; the segments
//! are still there and are sealed again into the same keys with the same bytes), and segments
//! already covered by a manifest are deleted (4 was lost).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use flate2::{Compression, write::GzEncoder};

use super::{
    ExportStats,
    journal::ClosedJournal,
    lake::LakeSettings,
    partitions::{PartitionLimits, Partitions},
    segment::Stored,
    spool::{max_ready_seq, recover_open_segments},
    spool_dir::{SpoolDirs, State, sync_dir},
};
use crate::trail::{
    layout::{self, ObjectFormat, ObjectName, SegmentName, manifest_key},
    manifest::{self, Body, Link, ManifestKind, ObjectEntry, SegmentMeta},
    store::Writes,
    stream::StreamId,
};
use crate::{
    digest::sha256_hex,
    event::Timestamp,
    format::{ecs::to_ecs, ocsf::to_ocsf},
    time,
    trail::record,
};

/// What a start found in the spool.
#[derive(Debug, Clone)]
pub(crate) struct StartInfo {
    /// State left by the previous run, if any.
    pub(crate) previous: Option<State>,
    /// The stream this run writes.
    pub(crate) stream: StreamId,
    /// First sequence number for this run.
    pub(crate) next_seq: u64,
    /// When the previous run was last known alive (see `SpoolDirs::mark_alive`).
    pub(crate) last_alive: Option<Timestamp>,
}

/// What is written beside each native object.
#[derive(Debug, Clone, Default)]
pub(crate) struct Renderings {
    /// JSON-lines renderings (OCSF, ECS), in their own trees.
    pub(crate) extra: Vec<ObjectFormat>,
    /// OCSF as Parquet for Amazon Security Lake.
    pub(crate) lake: Option<LakeSettings>,
}

pub(crate) struct Sealer {
    dirs: SpoolDirs,
    state: State,
    stream: StreamId,
    key: Option<SigningKey>,
    renderings: Renderings,
    gzip_level: u32,
    /// With nothing sealed for this long, a heartbeat manifest is written.
    heartbeat: Duration,
    /// When this run last wrote a manifest (or started).
    last_manifest: Instant,
    stats: Arc<ExportStats>,
    /// How the store takes create-only writes, once known (recorded in manifests).
    store_writes: Arc<OnceLock<Writes>>,
    /// The partitions' open segments, cut from the journal.
    partitions: Partitions,
    /// What the segments closed in this run hold (so sealing them reads no sidecar and no
    /// record), until they are sealed.
    closed: HashMap<PathBuf, SegmentMeta>,
    /// Stopping: every open segment is closed and sealed.
    draining: bool,
}

impl Sealer {
    /// Opens the spool, recovers from an interrupted previous run, and starts (or continues)
    /// the stream of this host, boot and spool (`stream` names host and boot; the spool's id
    /// comes from its state, or is made for a new spool).
    pub(crate) fn open(
        dirs: SpoolDirs,
        stream: StreamId,
        key: Option<SigningKey>,
        (renderings, limits, heartbeat): (Renderings, PartitionLimits, Duration),
        (stats, store_writes): (Arc<ExportStats>, Arc<OnceLock<Writes>>),
    ) -> anyhow::Result<(Self, StartInfo)> {
        let gzip_level = limits.gzip_level;
        let previous = dirs.load_state()?;
        let mut state = previous.clone().unwrap_or_else(|| State {
            host: stream.host.clone(),
            boot_id: stream.boot_id.clone(),
            next_seq: 1,
            ..Default::default()
        });
        let spool = match previous.as_ref().map(|p| p.spool_id.as_str()) {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => super::spool_dir::new_spool_id()?,
        };
        let stream = StreamId { spool, ..stream };
        let mut s = Self {
            state: State::default(),
            stream: stream.clone(),
            key,
            renderings,
            gzip_level,
            heartbeat,
            last_manifest: Instant::now(),
            partitions: Partitions::new(dirs.clone(), limits, stats.clone()),
            dirs,
            stats,
            store_writes,
            draining: false,
            closed: HashMap::new(),
        };
        s.roll_forward(&mut state)?;
        if state.stream() != stream {
            // A new boot (or the first start of a spool made before spool ids) starts a new
            // chain, linked to the previous one.
            state.previous_stream_head = state.head.take();
            state.next_manifest = 0;
            state.boot_id = stream.boot_id.clone();
            state.host = stream.host.clone();
            state.spool_id = stream.spool.clone();
        }
        s.remove_orphans()?;
        recover_open_segments(&s.dirs, s.gzip_level)?;
        s.partitions.recover()?;
        if let Some(max) = max_ready_seq(&s.dirs)? {
            state.next_seq = state.next_seq.max(max + 1);
        }
        state.clean_shutdown = false;
        state.stopped_at = None;
        if let Err(e) = s.dirs.save_state(&state) {
            // A full disk: starting (and uploading, which frees it) matters more; the next
            // successful seal writes the state.
            tracing::error!(error = %format!("{e:#}"), "cannot write the spool state now");
        }
        s.state = state;
        let start = StartInfo {
            previous,
            stream: s.stream.clone(),
            next_seq: s.state.next_seq,
            last_alive: s.dirs.last_alive(),
        };
        if let Err(e) = s.dirs.mark_alive() {
            tracing::warn!(error = %e, "cannot record liveness in the spool");
        }
        s.stats
            .spool_bytes
            .set(super::spool::spool_size(&s.dirs) as i64);
        Ok((s, start))
    }

    /// Completes seals whose state update was lost.
    fn roll_forward(&self, state: &mut State) -> anyhow::Result<()> {
        for path in self.dirs.manifests()? {
            let bytes = fs::read(&path)?;
            let Ok(m) = manifest::decode(&bytes) else {
                continue;
            };
            let b = &m.body;
            if b.stream != state.stream() {
                continue;
            }
            if b.sequence >= state.next_manifest {
                tracing::info!(manifest = %path.display(), "completing an interrupted seal");
                state.next_manifest = b.sequence + 1;
                state.head = Some(Link {
                    key: manifest_key(&b.stream, b.sequence),
                    sha256: sha256_hex(&bytes),
                });
                if let Some(max) = b.objects.iter().map(|o| o.meta.last_seq).max() {
                    state.next_seq = state.next_seq.max(max + 1);
                }
            }
        }
        Ok(())
    }

    /// Deletes objects no manifest references, and ready segments a manifest already covers.
    fn remove_orphans(&self) -> anyhow::Result<()> {
        let mut referenced = HashSet::new();
        let mut covered = HashSet::new();
        for path in self.dirs.manifests()? {
            if let Ok(m) = manifest::decode(&fs::read(&path)?) {
                for o in &m.body.objects {
                    referenced.extend(layout::spool_file_of(&o.key));
                    if let Some(o) = ObjectName::parse(&o.key) {
                        let segment = SegmentName::of_object(&o);
                        covered.insert(segment.file_name());
                        covered.insert(segment.plain_file_name());
                    }
                }
            }
        }
        for e in fs::read_dir(&self.dirs.sealed)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let object = name.ends_with(".gz") || name.ends_with(".parquet");
            if (object && !referenced.contains(&name)) || name.ends_with(".tmp") {
                tracing::info!(file = %name, "removing an object of an interrupted seal");
                fs::remove_file(e.path())?;
            }
        }
        for dir in [&self.dirs.ready, &self.dirs.open] {
            for e in fs::read_dir(dir)? {
                let e = e?;
                if covered.contains(&e.file_name().to_string_lossy().into_owned()) {
                    fs::remove_file(e.path())?;
                }
            }
        }
        Ok(())
    }

    /// Records that the daemon is alive now.
    pub(crate) fn mark_alive(&self) {
        let _ = self.dirs.mark_alive();
    }

    /// Records a clean stop in the state.
    pub(crate) fn mark_clean_shutdown(&mut self) -> anyhow::Result<()> {
        self.state.clean_shutdown = true;
        self.state.stopped_at = Some(time::now());
        self.dirs.save_state(&self.state)
    }

    fn gzip(&self, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut enc = GzEncoder::new(
            Vec::with_capacity(bytes.len() / 6),
            Compression::new(self.gzip_level),
        );
        enc.write_all(bytes)?;
        Ok(enc.finish()?)
    }

    fn write_object(&self, name: &str, gz: &[u8]) -> anyhow::Result<()> {
        let path = self.dirs.sealed.join(name);
        let tmp = path.with_extension("tmp");
        let written = super::spool_dir::create_private(&tmp).and_then(|mut f| {
            f.write_all(gz)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A partial object would only take the room the next attempt needs.
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        fs::rename(&tmp, &path)?;
        self.stats.spool_bytes.inc_by(gz.len() as i64);
        Ok(())
    }

    /// Makes the segment at `segment` (its bytes durable) the sealed object `name`: a second
    /// name for the same file, so nothing is copied; the segment's own name is removed once the
    /// batch's manifest is written.
    fn link_object(&self, segment: &Path, name: &str, len: u64) -> anyhow::Result<()> {
        fs::File::open(segment)?.sync_all()?;
        let path = self.dirs.sealed.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs::hard_link(segment, &path)?;
        self.stats.spool_bytes.inc_by(len as i64);
        Ok(())
    }

    /// Closed segments waiting to be sealed, in sequence order.
    fn ready_segments(&self) -> anyhow::Result<Vec<(SegmentName, PathBuf)>> {
        let mut ready: Vec<(SegmentName, PathBuf)> = fs::read_dir(&self.dirs.ready)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                Some((
                    SegmentName::parse(&e.file_name().to_string_lossy())?,
                    e.path(),
                ))
            })
            .collect();
        ready.sort_by_key(|(n, _)| n.first_seq);
        Ok(ready)
    }

    /// Writes the objects of one segment (native, and OCSF and ECS when enabled) into `sealed/`; the
    /// files read are added to `consumed` (path, bytes) for removal once the manifest is safe.
    fn seal_segment(
        &self,
        name: &SegmentName,
        path: &Path,
        consumed: &mut Vec<(PathBuf, u64)>,
    ) -> anyhow::Result<Vec<ObjectEntry>> {
        let stored = Stored::read(path)?;
        consumed.push((path.to_path_buf(), stored.len()));
        let meta = self
            .closed
            .get(path)
            .cloned()
            .or_else(|| super::spool_dir::read_meta(path));
        consumed.push((super::spool_dir::meta_path(path), 0));
        // The records are decompressed only when something needs them: the native object is
        // the segment's own gzip stream.
        let renders = !self.renderings.extra.is_empty() || self.renderings.lake.is_some();
        let records = match (&stored, &meta) {
            (Stored::Gzip(_), Some(_)) if !renders => None,
            _ => Some(stored.records()?),
        };
        let meta = match meta.or_else(|| scan(records.as_deref().unwrap_or_default())) {
            Some(m) => m,
            None => return Ok(Vec::new()), // empty segment
        };
        let entry = |key: String, format, stored: &[u8], content_bytes, records| ObjectEntry {
            key,
            format,
            agent_id: name.partition.agent.clone(),
            sha256: sha256_hex(stored),
            bytes: stored.len() as u64,
            content_bytes,
            meta: SegmentMeta {
                records,
                ..meta.clone()
            },
        };
        let mut entries = Vec::new();
        let native = ObjectName::new(ObjectFormat::Native, name, &self.stream);
        let gz = match &stored {
            Stored::Gzip(gz) => {
                // The segment is the object: linked into `sealed/`, not copied.
                self.link_object(path, &native.spool_file(), gz.len() as u64)?;
                Cow::Borrowed(gz)
            }
            Stored::Plain(b) => {
                let gz = self.gzip(b)?;
                self.write_object(&native.spool_file(), &gz)?;
                Cow::Owned(gz)
            }
        };
        let content = Some(stored.records_len());
        entries.push(entry(
            native.key(),
            ObjectFormat::Native,
            &gz,
            content,
            meta.records,
        ));
        let Some(records) = records.filter(|_| renders) else {
            return Ok(entries);
        };
        let Rendered { lines, lake_events } = render(
            &records,
            &self.renderings.extra,
            self.renderings.lake.is_some(),
        );
        if let Some(lake) = &self.renderings.lake {
            // A Security Lake object that cannot be made (an OCSF attribute its Parquet schema
            // lacks) must not hold back the records: they are sealed without it, and it is said.
            let objects = super::lake::objects(lake_events).unwrap_or_else(|e| {
                tracing::error!(
                    error = %format!("{e:#}"),
                    segment = %path.display(),
                    "no Security Lake objects for this segment; its records are sealed without them"
                );
                Vec::new()
            });
            for o in objects {
                let key = lake.key(o.class_uid, &o.day, &self.stream.key_part(), name.first_seq);
                let file = layout::spool_file_of(&key).context("a Security Lake key")?;
                self.write_object(&file, &o.parquet)?;
                entries.push(entry(
                    key,
                    ObjectFormat::OcsfParquet,
                    &o.parquet,
                    None,
                    o.records,
                ));
            }
        }
        for (format, bytes) in lines {
            let object = ObjectName::new(format, name, &self.stream);
            let gz = self.gzip(&bytes)?;
            self.write_object(&object.spool_file(), &gz)?;
            let content = Some(bytes.len() as u64);
            entries.push(entry(object.key(), format, &gz, content, meta.records));
        }
        Ok(entries)
    }

    /// Writes the next manifest of the chain for `objects`, then the state pointing at it.
    fn write_manifest(
        &mut self,
        kind: ManifestKind,
        objects: Vec<ObjectEntry>,
    ) -> anyhow::Result<()> {
        let seq = self.state.next_manifest;
        let last = objects.iter().map(|o| o.meta.last_seq).max().unwrap_or(0);
        let body = Body {
            schema: manifest::SCHEMA.into(),
            stream: self.stream.clone(),
            sequence: seq,
            created: time::now(),
            prev: self.state.head.clone(),
            previous_stream: if seq == 0 {
                self.state.previous_stream_head.clone()
            } else {
                None
            },
            public_key: self
                .key
                .as_ref()
                .map(|k| hex::encode(k.verifying_key().as_bytes())),
            objects,
            kind,
            heartbeat_ms: Some(self.heartbeat.as_millis() as u64),
            store_writes: self.store_writes.get().copied(),
        };
        let bytes = manifest::encode(&body, self.key.as_ref())?;
        self.dirs
            .write_atomic(&self.dirs.manifest_path(seq), &bytes)?;
        self.stats.spool_bytes.inc_by(bytes.len() as i64);
        self.state.head = Some(Link {
            key: manifest_key(&self.stream, seq),
            sha256: sha256_hex(&bytes),
        });
        self.state.next_manifest = seq + 1;
        self.state.next_seq = self.state.next_seq.max(last + 1);
        self.last_manifest = Instant::now();
        self.dirs.save_state(&self.state)
    }

    /// Writes a heartbeat manifest when nothing was sealed for the heartbeat interval: even an
    /// idle stream's tail stays recent, so a cut tail shows (`verify`). Returns whether it wrote.
    pub(crate) fn heartbeat_if_due(&mut self) -> anyhow::Result<bool> {
        if self.last_manifest.elapsed() < self.heartbeat {
            return Ok(false);
        }
        self.write_manifest(ManifestKind::Heartbeat, Vec::new())?;
        Ok(true)
    }

    /// A clean stop: seals what is left and writes the closing manifest that ends the stream.
    pub(crate) fn close_stream(&mut self) -> anyhow::Result<()> {
        self.drain();
        self.seal_ready()?;
        self.write_manifest(ManifestKind::Closing, Vec::new())
    }

    /// A journal the pipeline closed, to be cut with the next seal.
    pub(crate) fn journal_closed(&mut self, j: ClosedJournal) {
        self.partitions.journal_closed(j);
    }

    /// From now on every open segment is closed and sealed (a stop).
    pub(crate) fn drain(&mut self) {
        self.draining = true;
    }

    /// Cuts closed journals into the partitions' segments, closes the segments that are due
    /// (all of them when draining), and seals every ready segment into one batch. Returns the
    /// number of objects sealed. What is ready is sealed even when cutting or closing failed
    /// (a full disk): that error is returned after.
    pub(crate) fn seal_ready(&mut self) -> anyhow::Result<usize> {
        let cut = self
            .partitions
            .cut_closed()
            .and_then(|_| self.partitions.close_due(self.draining));
        self.closed.extend(self.partitions.take_closed());
        let sealed = self.seal_ready_segments()?;
        cut.map(|_| sealed)
    }

    /// Seals every ready segment into one batch. Returns the number of objects sealed.
    fn seal_ready_segments(&mut self) -> anyhow::Result<usize> {
        let ready = self.ready_segments()?;
        if ready.is_empty() {
            return Ok(0);
        }
        let mut entries = Vec::new();
        let mut consumed = Vec::new();
        for (name, path) in &ready {
            entries.extend(self.seal_segment(name, path, &mut consumed)?);
        }
        sync_dir(&self.dirs.sealed)?;
        let n = entries.len();
        if n > 0 {
            self.write_manifest(ManifestKind::Batch, entries)?;
        }
        for (path, len) in consumed {
            self.closed.remove(&path);
            if len == 0 && !path.exists() {
                continue;
            }
            fs::remove_file(&path)?;
            self.stats.sub_spool_bytes(len);
        }
        self.stats.segments_sealed.inc_by(n as u64);
        Ok(n)
    }
}

/// Seq and time range of a segment's records, read from the records themselves (after a crash,
/// when the writer's sidecar is missing).
fn scan(bytes: &[u8]) -> Option<SegmentMeta> {
    let mut m: Option<SegmentMeta> = None;
    for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(p) = record::Position::of(l) else {
            continue;
        };
        let Some(t) = p.time.as_deref().and_then(time::parse) else {
            continue;
        };
        m.get_or_insert_with(|| SegmentMeta::new(p.seq, t))
            .add(p.seq, t);
    }
    m
}

/// A segment's renderings: the lines of every extra format, and the OCSF events for Security
/// Lake.
struct Rendered {
    lines: Vec<(ObjectFormat, Vec<u8>)>,
    lake_events: Vec<serde_json::Value>,
}

/// Renders native records (JSON lines) as every format of `extra`, one line each, and as the
/// OCSF events of Security Lake when `lake`: each record is read into its typed event once, and
/// its OCSF event made once for both.
fn render(records: &[u8], extra: &[ObjectFormat], lake: bool) -> Rendered {
    let mut lines: Vec<(ObjectFormat, Vec<u8>)> = extra
        .iter()
        .map(|f| (*f, Vec::with_capacity(records.len() * 2)))
        .collect();
    let mut lake_events = Vec::new();
    let needs_ocsf = lake || extra.contains(&ObjectFormat::Ocsf);
    for l in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(e) = record::read(l) else {
            continue;
        };
        let ocsf = needs_ocsf.then(|| to_ocsf(&e));
        for (format, out) in &mut lines {
            let written = match (format, &ocsf) {
                (ObjectFormat::Ocsf, Some(v)) => serde_json::to_writer(&mut *out, v),
                (ObjectFormat::Ecs, _) => serde_json::to_writer(&mut *out, &to_ecs(&e)),
                _ => continue,
            };
            if written.is_ok() {
                out.push(b'\n');
            }
        }
        if lake {
            lake_events.extend(ocsf);
        }
    }
    Rendered { lines, lake_events }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dirs: &SpoolDirs) -> StartInfo {
        let stream = StreamId {
            host: "h".into(),
            boot_id: "b".into(),
            spool: String::new(),
        };
        let limits = PartitionLimits {
            segment_max_bytes: 8 << 20,
            segment_max_age: Duration::from_secs(10),
            segments_per_s: 10.0,
            gzip_level: 1,
        };
        let settings = (Renderings::default(), limits, Duration::from_secs(60));
        let stats = (Arc::new(ExportStats::new()), Arc::default());
        Sealer::open(dirs.clone(), stream, None, settings, stats)
            .unwrap()
            .1
    }

    #[test]
    fn a_spool_keeps_its_stream_across_restarts_and_an_older_one_starts_a_linked_new_one() {
        let root = std::env::temp_dir().join(format!("audit-seal-stream-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dirs = SpoolDirs::create(&root).unwrap();
        // What a version before spool ids left: the stream of host and boot, five manifests in.
        let old_head = Link {
            key: "v1/_manifests/h-b/0000000004.json".into(),
            sha256: "ab".repeat(32),
        };
        dirs.save_state(&State {
            host: "h".into(),
            boot_id: "b".into(),
            next_seq: 42,
            next_manifest: 5,
            head: Some(old_head.clone()),
            ..Default::default()
        })
        .unwrap();
        let first = open(&dirs);
        assert_eq!(first.stream.spool.len(), 16, "{:?}", first.stream);
        assert_eq!(first.next_seq, 42, "records continue their sequence");
        let state = dirs.load_state().unwrap().unwrap();
        assert_eq!(state.spool_id, first.stream.spool);
        assert_eq!(state.next_manifest, 0, "a new chain");
        assert_eq!(state.previous_stream_head, Some(old_head.clone()));
        // A restart on the same spool continues the same stream.
        let again = open(&dirs);
        assert_eq!(again.stream, first.stream);
        let state = dirs.load_state().unwrap().unwrap();
        assert_eq!(state.previous_stream_head, Some(old_head));
        // Another spool on the same host and boot is another stream.
        let other = SpoolDirs::create(&root.join("other")).unwrap();
        assert_ne!(open(&other).stream.spool, first.stream.spool);
        fs::remove_dir_all(&root).unwrap();
    }
}
