//! Operations: Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
//! on one small HTTP server (`[metrics] listen = "0.0.0.0:9464"`).
//!
//! Hot-path counters are aggregated per batch by the pipeline and added here; values that live
//! elsewhere (kernel counters, export statistics) are copied in at scrape time.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use audit_common::{counters::Counters, event::EventKind};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use serde::Deserialize;

use crate::{export::ExportStats, timefmt::now_unix_ns};

/// `[metrics]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConf {
    /// Address to serve /metrics, /healthz and /readyz on.
    pub listen: String,
    /// /readyz fails when the store has not answered for this long (seconds).
    #[serde(default = "default_store_staleness")]
    pub store_staleness_s: u64,
}

fn default_store_staleness() -> u64 {
    120
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub action: String,
    pub agent: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub reason: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TruncLabels {
    pub what: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GapLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub version: String,
    pub policy_version: String,
    pub config: String,
}

/// Health state, written by the parts that know it.
#[derive(Debug, Default)]
pub struct Health {
    /// The kernel programs are loaded and attached.
    pub attached: AtomicBool,
    /// Exporting to a store (readiness then depends on the spool and the store).
    pub exporting: AtomicBool,
}

/// All metrics and health of one agent process.
pub struct Telemetry {
    registry: Mutex<Registry>,
    pub records: Family<RecordLabels, Counter>,
    pub gap_records: Family<GapLabels, Counter>,
    pub lost: Family<GapLabels, Counter>,
    kernel_emitted: Counter,
    kernel_drops: Family<KindLabels, Counter>,
    truncations: Family<TruncLabels, Counter>,
    pub ring_reads: Counter,
    pub queue_depth: Gauge,
    pub delivery_latency: Histogram,
    spool_bytes: Gauge,
    pending_batches: Gauge,
    uploads_ok: Counter,
    uploads_failed: Counter,
    upload_latency: Histogram,
    oldest_unsent_age: Gauge<f64, AtomicU64>,
    last_upload: Gauge,
    info: Mutex<Option<Family<InfoLabels, Gauge>>>,
    /// Last kernel counters copied in (to add deltas).
    kernel_seen: Mutex<Counters>,
    export_seen: Mutex<(u64, u64, [u64; 7])>,
    pub export: Mutex<Option<Arc<ExportStats>>>,
    pub health: Health,
    store_staleness_s: AtomicI64,
}

fn kind_name(k: usize) -> &'static str {
    match k {
        k if k == EventKind::Exec as usize => "process.exec",
        k if k == EventKind::Open as usize => "file.open",
        k if k == EventKind::Connect as usize => "network.connect",
        _ => "process.lifecycle",
    }
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        let mut r = Registry::with_prefix("audit");
        let t = Self {
            records: Family::default(),
            gap_records: Family::default(),
            lost: Family::default(),
            kernel_emitted: Counter::default(),
            kernel_drops: Family::default(),
            truncations: Family::default(),
            ring_reads: Counter::default(),
            queue_depth: Gauge::default(),
            delivery_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            spool_bytes: Gauge::default(),
            pending_batches: Gauge::default(),
            uploads_ok: Counter::default(),
            uploads_failed: Counter::default(),
            upload_latency: Histogram::new(crate::export::UPLOAD_BUCKETS),
            oldest_unsent_age: Gauge::default(),
            last_upload: Gauge::default(),
            info: Mutex::new(None),
            kernel_seen: Mutex::new(Counters::default()),
            export_seen: Mutex::new((0, 0, [0; 7])),
            export: Mutex::new(None),
            health: Health::default(),
            store_staleness_s: AtomicI64::new(120),
            registry: Mutex::new(Registry::default()),
        };
        r.register(
            "records",
            "Records written, by action, agent and policy decision",
            t.records.clone(),
        );
        r.register(
            "gap_records",
            "Gap records written, by reason",
            t.gap_records.clone(),
        );
        r.register(
            "lost_records",
            "Records lost (counted in gap records), by reason",
            t.lost.clone(),
        );
        r.register(
            "kernel_records_emitted",
            "Records the kernel wrote to the ring buffer",
            t.kernel_emitted.clone(),
        );
        r.register(
            "kernel_drops",
            "Records the kernel could not deliver, by reason and action",
            t.kernel_drops.clone(),
        );
        r.register(
            "kernel_truncations",
            "Paths or argument vectors cut to fit, by what",
            t.truncations.clone(),
        );
        r.register(
            "ring_buffer_reads",
            "Records read from the kernel ring buffer",
            t.ring_reads.clone(),
        );
        r.register(
            "pipeline_queue_depth",
            "Records read from the kernel and not yet written (last batch)",
            t.queue_depth.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Syscall entry to record accepted by the sink",
            t.delivery_latency.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes in the spool (open, ready and sealed)",
            t.spool_bytes.clone(),
        );
        r.register(
            "spool_pending_batches",
            "Sealed batches waiting for upload",
            t.pending_batches.clone(),
        );
        r.register(
            "uploads",
            "Objects and manifests the store confirmed",
            t.uploads_ok.clone(),
        );
        r.register(
            "upload_failures",
            "Upload attempts that failed (retried)",
            t.uploads_failed.clone(),
        );
        r.register(
            "upload_latency_seconds",
            "Time for the store to confirm one upload",
            t.upload_latency.clone(),
        );
        r.register(
            "oldest_unsent_age_seconds",
            "Age of the oldest sealed batch not yet uploaded (0 when none)",
            t.oldest_unsent_age.clone(),
        );
        r.register(
            "last_upload_timestamp_seconds",
            "Unix time of the last confirmed upload (0 = never)",
            t.last_upload.clone(),
        );
        *t.registry.lock().unwrap_or_else(|e| e.into_inner()) = r;
        Arc::new(t)
    }

    /// Records the configuration and policy version (an info metric; replaced on reload).
    pub fn set_info(&self, policy_version: &str, config: &str) {
        let fam = Family::<InfoLabels, Gauge>::default();
        fam.get_or_create(&InfoLabels {
            version: env!("CARGO_PKG_VERSION").into(),
            policy_version: policy_version.into(),
            config: config.into(),
        })
        .set(1);
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        if info.is_none() {
            reg.register(
                "build_info",
                "Agent version, policy version and configuration source (value 1)",
                fam.clone(),
            );
            *info = Some(fam);
        } else if let Some(existing) = info.as_ref() {
            existing.clear();
            existing
                .get_or_create(&InfoLabels {
                    version: env!("CARGO_PKG_VERSION").into(),
                    policy_version: policy_version.into(),
                    config: config.into(),
                })
                .set(1);
        }
    }

    pub fn set_store_staleness(&self, s: u64) {
        self.store_staleness_s.store(s as i64, Ordering::Relaxed);
    }

    /// Copies the kernel's cumulative counters in (adds what is new since the last call).
    pub fn kernel_counters(&self, now: &Counters) {
        let mut seen = self.kernel_seen.lock().unwrap_or_else(|e| e.into_inner());
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let emitted: u64 = now.emitted.iter().sum::<u64>();
        let emitted_seen: u64 = seen.emitted.iter().sum::<u64>();
        self.kernel_emitted.inc_by(d(emitted, emitted_seen));
        for k in 0..EventKind::SLOTS {
            for (reason, cur, prev) in [
                ("ringbuf_full", now.ringbuf_full[k], seen.ringbuf_full[k]),
                ("pending_full", now.pending_full[k], seen.pending_full[k]),
            ] {
                if cur > prev {
                    self.kernel_drops
                        .get_or_create(&KindLabels {
                            reason: reason.into(),
                            action: kind_name(k).into(),
                        })
                        .inc_by(cur - prev);
                }
            }
        }
        for (what, cur, prev) in [
            ("path", now.path_truncated, seen.path_truncated),
            ("argv", now.argv_truncated, seen.argv_truncated),
        ] {
            self.truncations
                .get_or_create(&TruncLabels { what: what.into() })
                .inc_by(d(cur, prev));
        }
        *seen = *now;
    }

    /// Copies export statistics in (scrape time).
    fn refresh_export(&self) {
        let Some(st) = self
            .export
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        self.spool_bytes
            .set(st.spool_bytes.load(Ordering::Relaxed) as i64);
        self.pending_batches
            .set(st.pending_batches.load(Ordering::Relaxed) as i64);
        let mut seen = self.export_seen.lock().unwrap_or_else(|e| e.into_inner());
        let ok = st.uploads_ok.load(Ordering::Relaxed);
        let failed = st.uploads_failed.load(Ordering::Relaxed);
        self.uploads_ok.inc_by(ok.saturating_sub(seen.0));
        self.uploads_failed.inc_by(failed.saturating_sub(seen.1));
        // Re-play histogram bucket increments as observations at each bucket's upper bound.
        for (i, b) in st.upload_buckets.iter().enumerate() {
            let c = b.load(Ordering::Relaxed);
            let v = crate::export::UPLOAD_BUCKETS
                .get(i)
                .copied()
                .unwrap_or(10.0);
            for _ in 0..c.saturating_sub(seen.2[i]) {
                self.upload_latency.observe(v);
            }
            seen.2[i] = c;
        }
        *seen = (ok, failed, seen.2);
        let oldest = st.oldest_unsent_unix.load(Ordering::Relaxed);
        let now = (now_unix_ns() / 1_000_000_000) as i64;
        self.oldest_unsent_age.set(if oldest > 0 {
            (now - oldest).max(0) as f64
        } else {
            0.0
        });
        self.last_upload
            .set(st.last_upload_unix.load(Ordering::Relaxed));
    }

    pub fn render(&self) -> String {
        self.refresh_export();
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = encode(&mut out, &reg);
        out
    }

    /// Liveness: the process is serving and its programs are attached.
    pub fn healthz(&self) -> (bool, String) {
        if self.health.attached.load(Ordering::Relaxed) {
            (true, "ok: programs attached\n".into())
        } else {
            (false, "not ready: kernel programs not attached\n".into())
        }
    }

    /// Readiness: attached, spool writable, store reachable recently (when exporting).
    pub fn readyz(&self) -> (bool, String) {
        let mut problems = Vec::new();
        if !self.health.attached.load(Ordering::Relaxed) {
            problems.push("kernel programs not attached".to_string());
        }
        if self.health.exporting.load(Ordering::Relaxed)
            && let Some(st) = self
                .export
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            if !st.spool_writable.load(Ordering::Relaxed) {
                problems.push("spool directory not writable".to_string());
            }
            let ok_at = st.store_ok_unix.load(Ordering::Relaxed);
            let now = (now_unix_ns() / 1_000_000_000) as i64;
            let max = self.store_staleness_s.load(Ordering::Relaxed);
            if ok_at == 0 || now - ok_at > max {
                let last = st.last_error.lock().map(|e| e.clone()).ok().flatten();
                problems.push(format!(
                    "store not reachable in the last {max}s{}",
                    last.map(|e| format!(": {e}")).unwrap_or_default()
                ));
            }
        }
        if problems.is_empty() {
            (true, "ok\n".into())
        } else {
            (false, format!("not ready: {}\n", problems.join("; ")))
        }
    }
}

/// Serves /metrics, /healthz and /readyz until the process ends.
pub async fn serve(t: Arc<Telemetry>, listen: &str) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("[metrics] listen = \"{listen}\": cannot bind"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let t = t.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let t = t.clone();
                    async move { Ok::<_, Infallible>(route(&t, req.uri().path())) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A probe's (status, content type, body): 200 when it passes, else 503 with the reasons.
fn probe((ok, msg): (bool, String)) -> (StatusCode, &'static str, String) {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, "text/plain", msg)
}

fn route(t: &Telemetry, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            t.render(),
        ),
        "/healthz" => probe(t.healthz()),
        "/readyz" => probe(t.readyz()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz, /readyz\n".into(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
