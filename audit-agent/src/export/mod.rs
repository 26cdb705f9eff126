//! Export: the durable half of the pipeline. Records are appended to a local spool (the
//! pipeline's sink), sealed into gzip NDJSON objects with a manifest chain, and uploaded to an
//! object store with retries. See `docs/storage.md` for the layout and guarantees.

mod journal;
mod lake;
mod partitions;
mod seal;
mod segment;
mod spool;
mod spool_dir;
mod upload;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::{Notify, watch};

use self::{
    partitions::PartitionLimits,
    seal::{Sealer, StartInfo},
    spool::{SpoolLimits, SpoolWriter},
    spool_dir::{SpoolDirs, SpoolLock},
    upload::Uploader,
};
use crate::config::{ExportConf, Problems};
use crate::trail::{
    layout::ObjectFormat,
    manifest, object,
    store::{Store, StoreSettings},
    stream::StreamId,
};

/// `[export.security_lake]`, checked; a problem is recorded at the table's line.
fn lake_settings(c: &ExportConf, p: &mut Problems) -> Option<lake::LakeSettings> {
    let conf = c.security_lake.as_ref()?;
    let s = lake::LakeSettings {
        source: conf.get_ref().source.clone(),
        region: conf.get_ref().region.clone(),
        account_id: conf.get_ref().account_id.clone(),
    };
    if let Err(e) = s.check() {
        p.at(conf.span(), format!("export.security_lake.{e}"));
    }
    Some(s)
}

/// `[export]`, validated: what the spool, sealer and uploader run with.
#[derive(Debug, Clone)]
pub(crate) struct ExportSettings {
    pub(crate) store: StoreSettings,
    pub(crate) spool_dir: PathBuf,
    spool_max_bytes: u64,
    segment_max_bytes: u64,
    segment_max_age: Duration,
    segments_per_s: u32,
    shutdown_grace: Duration,
    heartbeat: Duration,
    /// What is written beside the native objects (`ocsf`, `ecs`, `security_lake`).
    renderings: seal::Renderings,
    signing_key: Option<SigningKey>,
    gzip_level: u32,
}

impl ExportSettings {
    /// Checks `[export]`; every problem is recorded at its line. The signing key is loaded (and
    /// its file permissions checked) here, so `check-config` catches a missing or bad key.
    pub(crate) fn compile(c: &ExportConf, p: &mut Problems) -> Self {
        if let Err(e) = StoreSettings::check_url(c.store.get_ref()) {
            p.at(c.store.span(), format!("export.store: {e}"));
        }
        if *c.gzip_level.get_ref() > 9 {
            p.at(
                c.gzip_level.span(),
                format!(
                    "export.gzip_level: {} is not in 0-9",
                    c.gzip_level.get_ref()
                ),
            );
        }
        let v = *c.segment_max_bytes.get_ref();
        if !(1024..=object::MAX_SEGMENT_BYTES).contains(&v) {
            p.at(
                c.segment_max_bytes.span(),
                format!(
                    "export.segment_max_bytes: {v} is outside 1024..={} (objects are read back \
                     with bounded memory)",
                    object::MAX_SEGMENT_BYTES
                ),
            );
        }
        if *c.heartbeat_ms.get_ref() < 100 {
            p.at(
                c.heartbeat_ms.span(),
                "export.heartbeat_ms: must be at least 100",
            );
        }
        if *c.segment_max_age_ms.get_ref() == 0 {
            p.at(
                c.segment_max_age_ms.span(),
                "export.segment_max_age_ms: must be positive",
            );
        }
        if *c.segments_per_s.get_ref() == 0 {
            p.at(
                c.segments_per_s.span(),
                "export.segments_per_s: must be at least 1",
            );
        }
        if c.spool_max_bytes.get_ref() < c.segment_max_bytes.get_ref() {
            p.at(
                c.spool_max_bytes.span(),
                "export.spool_max_bytes: must be at least segment_max_bytes",
            );
        }
        let signing_key = c.signing_key.as_ref().and_then(|k| {
            manifest::load_signing_key(k.get_ref())
                .map_err(|e| p.at(k.span(), format!("export.signing_key: {e:#}")))
                .ok()
        });
        Self {
            store: StoreSettings {
                store: c.store.get_ref().clone(),
                endpoint: c.endpoint.clone(),
                region: c.region.clone(),
                allow_http: c.allow_http,
            },
            spool_dir: c.spool_dir.clone(),
            spool_max_bytes: *c.spool_max_bytes.get_ref(),
            segment_max_bytes: *c.segment_max_bytes.get_ref(),
            segment_max_age: Duration::from_millis(*c.segment_max_age_ms.get_ref()),
            segments_per_s: *c.segments_per_s.get_ref(),
            shutdown_grace: Duration::from_millis(c.shutdown_grace_ms),
            heartbeat: Duration::from_millis(*c.heartbeat_ms.get_ref()),
            renderings: seal::Renderings {
                extra: [(c.ocsf, ObjectFormat::Ocsf), (c.ecs, ObjectFormat::Ecs)]
                    .into_iter()
                    .filter_map(|(on, f)| on.then_some(f))
                    .collect(),
                lake: lake_settings(c, p),
            },
            signing_key,
            gzip_level: *c.gzip_level.get_ref(),
        }
    }

    /// `trace --export URL`: the configured export (or the defaults) writing to `url` from a
    /// private spool, sealing every two seconds.
    pub(crate) fn for_trace(
        base: Option<&Self>,
        url: &str,
        spool_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        StoreSettings::check_url(url).map_err(|e| anyhow::anyhow!("--export: {e}"))?;
        let mut s = match base {
            Some(b) => b.clone(),
            None => {
                let conf: ExportConf = toml::from_str(&format!("store = {url:?}"))
                    .context("default export settings")?;
                Self::compile(&conf, &mut Problems::new("", ""))
            }
        };
        s.store.store = url.to_string();
        s.spool_dir = spool_dir;
        s.segment_max_age = s.segment_max_age.min(Duration::from_secs(2));
        Ok(s)
    }
}

/// Export counters and gauges: the metrics of this module (registered with
/// [`ExportStats::register`]) and the facts readiness needs.
#[derive(Debug)]
pub(crate) struct ExportStats {
    /// Bytes in the spool (open, ready and sealed); the spool limit is checked against it.
    pub(crate) spool_bytes: Gauge,
    records_spooled: Counter,
    segments_sealed: Counter,
    batches_uploaded: Counter,
    uploads_ok: Counter,
    uploads_failed: Counter,
    upload_conflicts: Counter,
    upload_latency: Histogram,
    last_upload_unix: Gauge,
    oldest_unsent_age: Gauge,
    pending_batches: Gauge,
    /// Last time the store answered (an upload or a probe), Unix seconds; 0 = never.
    pub(crate) store_ok_unix: AtomicI64,
    /// The last contact with the store (an upload or a probe) failed.
    pub(crate) store_failing: AtomicBool,
    /// Whether the last spool write probe succeeded.
    pub(crate) spool_writable: AtomicBool,
    pub(crate) last_error: Mutex<Option<String>>,
}

impl ExportStats {
    fn new() -> Self {
        Self {
            spool_bytes: Gauge::default(),
            records_spooled: Counter::default(),
            segments_sealed: Counter::default(),
            batches_uploaded: Counter::default(),
            uploads_ok: Counter::default(),
            uploads_failed: Counter::default(),
            upload_conflicts: Counter::default(),
            upload_latency: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
            last_upload_unix: Gauge::default(),
            oldest_unsent_age: Gauge::default(),
            pending_batches: Gauge::default(),
            store_ok_unix: AtomicI64::new(0),
            store_failing: AtomicBool::new(false),
            spool_writable: AtomicBool::new(true),
            last_error: Mutex::new(None),
        }
    }

    /// Registers this module's metrics (they are kept here; the registry shares them).
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "spool_bytes",
            "Bytes in the spool (open, ready and sealed)",
            self.spool_bytes.clone(),
        );
        r.register(
            "spool_records",
            "Records appended to the spool",
            self.records_spooled.clone(),
        );
        r.register(
            "spool_segments_sealed",
            "Objects sealed",
            self.segments_sealed.clone(),
        );
        r.register(
            "spool_pending_batches",
            "Sealed batches waiting for upload",
            self.pending_batches.clone(),
        );
        r.register(
            "uploads",
            "Objects and manifests the store confirmed",
            self.uploads_ok.clone(),
        );
        r.register(
            "upload_failures",
            "Upload attempts that failed (retried)",
            self.uploads_failed.clone(),
        );
        r.register(
            "upload_conflicts",
            "Objects and manifests not uploaded because their key holds other content in the \
             store (never overwritten; kept in spool_dir/conflicts)",
            self.upload_conflicts.clone(),
        );
        r.register(
            "upload_batches",
            "Batches (objects and their manifest) uploaded",
            self.batches_uploaded.clone(),
        );
        r.register(
            "upload_latency_seconds",
            "Time for the store to confirm one upload",
            self.upload_latency.clone(),
        );
        r.register(
            "oldest_unsent_age_seconds",
            "Age of the oldest sealed batch not yet uploaded (0 when none)",
            self.oldest_unsent_age.clone(),
        );
        r.register(
            "last_upload_timestamp_seconds",
            "Unix time of the last confirmed upload (0 = never)",
            self.last_upload_unix.clone(),
        );
    }

    pub(crate) fn sub_spool_bytes(&self, n: u64) {
        self.spool_bytes
            .dec_by(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The store answered (an upload confirmed, or a probe) at `now` (Unix seconds).
    fn store_answered(&self, now: i64) {
        self.store_ok_unix.store(now, Ordering::Relaxed);
        self.store_failing.store(false, Ordering::Relaxed);
    }

    /// An upload or a probe failed.
    fn store_failed(&self, e: &anyhow::Error) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
        self.store_failing.store(true, Ordering::Relaxed);
    }
}

enum SealMsg {
    /// A journal the pipeline closed: to be cut into partitions.
    Journal(journal::ClosedJournal),
    Stop,
}

/// The sealer thread: compresses and hashes at a lower CPU priority (nice 10) than the pipeline,
/// so sealing bursts do not delay capture.
fn spawn_sealer(
    sealer: Arc<Mutex<Sealer>>,
    rx: std::sync::mpsc::Receiver<SealMsg>,
    uploads: Arc<Notify>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sealer".into())
        .spawn(move || {
            // SAFETY: setpriority on our own thread id; failure only means normal priority.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
            }
            loop {
                let first = match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(m) => Some(m),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(SealMsg::Stop),
                };
                let mut sealer = sealer.lock().unwrap_or_else(|e| e.into_inner());
                let mut stop = false;
                for m in first
                    .into_iter()
                    .chain(std::iter::from_fn(|| rx.try_recv().ok()))
                {
                    match m {
                        SealMsg::Journal(j) => sealer.journal_closed(j),
                        SealMsg::Stop => stop = true,
                    }
                }
                // At least once a second: a crash's gap starts at the last of these.
                sealer.mark_alive();
                if stop {
                    sealer.drain();
                }
                match sealer.seal_ready() {
                    Ok(n) if n > 0 => uploads.notify_one(),
                    Ok(_) if stop => {}
                    Ok(_) => match sealer.heartbeat_if_due() {
                        Ok(true) => uploads.notify_one(),
                        Ok(false) => {}
                        Err(e) => tracing::error!(
                            error = %format!("{e:#}"),
                            "writing a heartbeat manifest failed; will retry"
                        ),
                    },
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "sealing failed; will retry")
                    }
                }
                if stop {
                    return;
                }
            }
        })
}

/// A running export: sealer thread and uploader task, and the spool writer for the pipeline.
pub(crate) struct Exporter {
    sealer: Arc<Mutex<Sealer>>,
    seal_tx: std::sync::mpsc::Sender<SealMsg>,
    sealer_thread: std::thread::JoinHandle<()>,
    upload_wake: Arc<Notify>,
    stop_upload: watch::Sender<Option<Instant>>,
    uploader_task: tokio::task::JoinHandle<bool>,
    pub(crate) stats: Arc<ExportStats>,
    pub(crate) store: Store,
    grace: Duration,
    /// Held until the exporter is finished (or the process ends).
    _lock: SpoolLock,
}

/// What `finish` achieved.
#[derive(Debug)]
pub(crate) struct FinishReport {
    pub(crate) all_uploaded: bool,
}

impl Exporter {
    /// Opens the spool (recovering a previous run), seals what it left, and starts uploading it
    /// first. Returns the exporter, the sink for the pipeline, and what was found.
    pub(crate) fn start(
        conf: &ExportSettings,
        store: Store,
        stream: StreamId,
    ) -> anyhow::Result<(Self, SpoolWriter, StartInfo)> {
        // Before anything in the spool is read or written.
        let lock = SpoolLock::acquire(&conf.spool_dir)?;
        let dirs = SpoolDirs::create(&conf.spool_dir)?;
        let stats = Arc::new(ExportStats::new());
        let limits = PartitionLimits {
            segment_max_bytes: conf.segment_max_bytes,
            segment_max_age: conf.segment_max_age,
            segments_per_s: f64::from(conf.segments_per_s),
            gzip_level: conf.gzip_level,
        };
        let (mut sealer, start) = Sealer::open(
            dirs.clone(),
            stream,
            conf.signing_key.clone(),
            (conf.renderings.clone(), limits, conf.heartbeat),
            (stats.clone(), store.writes.clone()),
        )?;
        match sealer.seal_ready() {
            Ok(0) => {}
            Ok(recovered) => tracing::info!(
                objects = recovered,
                "sealed segments left by the previous run"
            ),
            // A full disk: upload what is sealed first (that frees room); the sealer retries.
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "cannot seal what the previous run left yet; will retry"
            ),
        }
        let sealer = Arc::new(Mutex::new(sealer));
        let upload_wake = Arc::new(Notify::new());
        let (stop_upload, stop_rx) = watch::channel(None);

        let uploader = Uploader {
            store: store.clone(),
            dirs: dirs.clone(),
            stats: stats.clone(),
            wake: upload_wake.clone(),
        };
        let uploader_task = tokio::spawn(uploader.run(stop_rx));
        let (seal_tx, seal_rx) = std::sync::mpsc::channel();
        let sealer_thread = spawn_sealer(sealer.clone(), seal_rx, upload_wake.clone())?;
        let writer = {
            let to_sealer = seal_tx.clone();
            SpoolWriter::new(
                dirs,
                SpoolLimits {
                    max_bytes: conf.spool_max_bytes,
                    segment_max_bytes: conf.segment_max_bytes,
                    segment_max_age: conf.segment_max_age,
                    gzip_level: conf.gzip_level,
                },
                stats.clone(),
                Box::new(move |j| {
                    let _ = to_sealer.send(SealMsg::Journal(j));
                }),
            )
        };
        Ok((
            Self {
                sealer,
                seal_tx,
                sealer_thread,
                upload_wake,
                stop_upload,
                uploader_task,
                stats,
                store,
                grace: conf.shutdown_grace,
                _lock: lock,
            },
            writer,
            start,
        ))
    }

    /// After the pipeline closed its segments: seal everything, upload within the grace period,
    /// record a clean stop. Whatever is not uploaded stays in the spool for the next start.
    pub(crate) async fn finish(self) -> anyhow::Result<FinishReport> {
        // The sealer seals everything left, then exits.
        let _ = self.seal_tx.send(SealMsg::Stop);
        let thread = self.sealer_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the sealer thread panicked"))?;
        let s = self.sealer.clone();
        let closed = tokio::task::spawn_blocking(move || {
            s.lock().unwrap_or_else(|e| e.into_inner()).close_stream()
        })
        .await?;
        let closed_ok = closed.is_ok();
        if let Err(e) = closed {
            // The stream then ends like a crash's: `verify` reports its tail as unanchored, and
            // what could not be sealed stays in the spool for the next start.
            tracing::error!(error = %format!("{e:#}"), "cannot write the closing manifest");
        }
        let _ = self.stop_upload.send(Some(Instant::now() + self.grace));
        self.upload_wake.notify_one();
        let all_uploaded = self.uploader_task.await.unwrap_or(false) && closed_ok;
        let s = self.sealer.clone();
        tokio::task::spawn_blocking(move || {
            s.lock()
                .unwrap_or_else(|e| e.into_inner())
                .mark_clean_shutdown()
        })
        .await??;
        Ok(FinishReport { all_uploaded })
    }
}
