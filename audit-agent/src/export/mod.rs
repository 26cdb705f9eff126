//! Export: the durable half of the pipeline. Records are appended to a local spool (the
//! pipeline's sink), sealed into gzip NDJSON objects with a manifest chain, and uploaded to an
//! object store with retries. See `docs/storage.md` for the layout and guarantees.

pub mod layout;
pub mod manifest;
pub mod seal;
pub mod spool;
pub mod store;
pub mod upload;
pub mod verify;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::Deserialize;
use tokio::sync::{Notify, watch};

use self::{
    layout::StreamId,
    seal::{Sealer, StartInfo},
    spool::{SpoolDirs, SpoolLimits, SpoolWriter},
    store::{Store, StoreSettings},
    upload::Uploader,
};

/// `[export]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConf {
    /// `s3://bucket/prefix` or `file:///path`.
    pub store: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub allow_http: Option<bool>,
    #[serde(default = "defaults::spool_dir")]
    pub spool_dir: PathBuf,
    /// Spool size limit (open + sealed, bytes); beyond it records are dropped and a gap record
    /// says how many.
    #[serde(default = "defaults::spool_max_bytes")]
    pub spool_max_bytes: u64,
    /// Seal a segment at this many uncompressed bytes ...
    #[serde(default = "defaults::segment_max_bytes")]
    pub segment_max_bytes: u64,
    /// ... or at this age, whichever comes first.
    #[serde(default = "defaults::segment_max_age_ms")]
    pub segment_max_age_ms: u64,
    /// On SIGTERM, how long to keep uploading before leaving the rest in the spool.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// Also write OCSF objects under `<prefix>/ocsf/`.
    #[serde(default)]
    pub ocsf: bool,
    /// Ed25519 key (32-byte seed, hex) to sign manifests with.
    pub signing_key: Option<PathBuf>,
    /// gzip level 0-9.
    #[serde(default = "defaults::gzip_level")]
    pub gzip_level: u32,
}

mod defaults {
    use std::path::PathBuf;

    pub fn spool_dir() -> PathBuf {
        PathBuf::from("/var/lib/audit-agent/spool")
    }
    pub fn spool_max_bytes() -> u64 {
        1 << 30
    }
    pub fn segment_max_bytes() -> u64 {
        8 << 20
    }
    pub fn segment_max_age_ms() -> u64 {
        10_000
    }
    pub fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub fn gzip_level() -> u32 {
        // Measured: level 3 stores ~17.5 bytes/record and leaves the agent headroom at the
        // generator's maximum rate; level 6 costs noticeably more CPU for little gain.
        3
    }
}

impl ExportConf {
    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            store: self.store.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
        }
    }

    /// Checks values that TOML types cannot; returns (field, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        let s = self.store.trim();
        if !(s.starts_with("s3://")
            || s.starts_with("file://")
            || s.starts_with('/')
            || s.starts_with('.'))
        {
            v.push((
                "export.store",
                format!("`{s}`: use s3://bucket/prefix or file:///path"),
            ));
        }
        if s.strip_prefix("s3://")
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        {
            v.push(("export.store", format!("`{s}` has no bucket")));
        }
        if self.gzip_level > 9 {
            v.push((
                "export.gzip_level",
                format!("{} is not in 0-9", self.gzip_level),
            ));
        }
        if self.segment_max_bytes < 1024 {
            v.push((
                "export.segment_max_bytes",
                format!("{} is below 1024", self.segment_max_bytes),
            ));
        }
        if self.segment_max_age_ms == 0 {
            v.push(("export.segment_max_age_ms", "must be positive".into()));
        }
        if self.spool_max_bytes < self.segment_max_bytes {
            v.push((
                "export.spool_max_bytes",
                "must be at least segment_max_bytes".into(),
            ));
        }
        v
    }
}

/// Export counters and gauges (read by metrics and health).
#[derive(Debug, Default)]
pub struct ExportStats {
    pub spool_bytes: AtomicU64,
    pub records_spooled: AtomicU64,
    pub records_dropped: AtomicU64,
    pub segments_sealed: AtomicU64,
    pub batches_uploaded: AtomicU64,
    pub uploads_ok: AtomicU64,
    pub uploads_failed: AtomicU64,
    pub upload_nanos: AtomicU64,
    /// Upload latency histogram buckets (seconds): 0.01, 0.05, 0.1, 0.5, 1, 5, +Inf.
    pub upload_buckets: [AtomicU64; 7],
    pub last_upload_unix: AtomicI64,
    /// Creation time of the oldest batch not yet uploaded (0 = none).
    pub oldest_unsent_unix: AtomicI64,
    /// Sealed batches waiting for upload.
    pub pending_batches: AtomicU64,
    /// Last time the store answered (an upload or an idle check), Unix seconds.
    pub store_ok_unix: AtomicI64,
    /// Whether the last spool write probe succeeded.
    pub spool_writable: std::sync::atomic::AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

pub const UPLOAD_BUCKETS: [f64; 6] = [0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

impl ExportStats {
    pub fn observe_upload(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = UPLOAD_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(UPLOAD_BUCKETS.len());
        self.upload_buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn sub_spool_bytes(&self, n: u64) {
        let _ = self
            .spool_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

enum SealMsg {
    Wake,
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
                let stop = match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(SealMsg::Wake) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => false,
                    Ok(SealMsg::Stop) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        true
                    }
                };
                match sealer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .seal_ready()
                {
                    Ok(n) if n > 0 => uploads.notify_one(),
                    Ok(_) => {}
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
pub struct Exporter {
    sealer: Arc<Mutex<Sealer>>,
    seal_tx: std::sync::mpsc::Sender<SealMsg>,
    sealer_thread: std::thread::JoinHandle<()>,
    upload_wake: Arc<Notify>,
    stop_upload: watch::Sender<Option<Instant>>,
    uploader_task: tokio::task::JoinHandle<bool>,
    pub stats: Arc<ExportStats>,
    pub store: Store,
    grace: Duration,
}

/// What `finish` achieved.
#[derive(Debug)]
pub struct FinishReport {
    pub all_uploaded: bool,
    pub left_in_spool: usize,
}

impl Exporter {
    /// Opens the spool (recovering a previous run), seals what it left, and starts uploading it
    /// first. Returns the exporter, the sink for the pipeline, and what was found.
    pub fn start(
        conf: &ExportConf,
        store: Store,
        stream: StreamId,
    ) -> anyhow::Result<(Self, SpoolWriter, StartInfo)> {
        let dirs = SpoolDirs::create(&conf.spool_dir)?;
        let key = conf
            .signing_key
            .as_deref()
            .map(manifest::load_signing_key)
            .transpose()?;
        let stats = Arc::new(ExportStats::default());
        stats.spool_writable.store(true, Ordering::Relaxed);
        let (mut sealer, start) = Sealer::open(
            dirs.clone(),
            stream,
            key,
            conf.ocsf,
            conf.gzip_level,
            stats.clone(),
        )?;
        let recovered = sealer
            .seal_ready()
            .context("sealing segments left by the previous run")?;
        if recovered > 0 {
            tracing::info!(
                objects = recovered,
                "sealed segments left by the previous run"
            );
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
            let wake = seal_tx.clone();
            SpoolWriter::new(
                dirs,
                SpoolLimits {
                    max_bytes: conf.spool_max_bytes,
                    segment_max_bytes: conf.segment_max_bytes,
                    segment_max_age: Duration::from_millis(conf.segment_max_age_ms),
                },
                stats.clone(),
                Box::new(move || {
                    let _ = wake.send(SealMsg::Wake);
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
                grace: Duration::from_millis(conf.shutdown_grace_ms),
            },
            writer,
            start,
        ))
    }

    /// After the pipeline closed its segments: seal everything, upload within the grace period,
    /// record a clean stop. Whatever is not uploaded stays in the spool for the next start.
    pub async fn finish(self) -> anyhow::Result<FinishReport> {
        // The sealer seals everything left, then exits.
        let _ = self.seal_tx.send(SealMsg::Stop);
        let thread = self.sealer_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the sealer thread panicked"))?;
        let _ = self.stop_upload.send(Some(Instant::now() + self.grace));
        self.upload_wake.notify_one();
        let all_uploaded = self.uploader_task.await.unwrap_or(false);
        let s = self.sealer.clone();
        let left = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.mark_clean_shutdown()?;
            Ok(0)
        })
        .await??;
        Ok(FinishReport {
            all_uploaded,
            left_in_spool: left,
        })
    }
}
