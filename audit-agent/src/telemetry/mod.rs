//! Operations: Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
//! on one small HTTP server (`[metrics] listen = "0.0.0.0:9464"`).
//!
//! Each module owns its metrics: the pipeline's are kept by [`PipelineMetrics`], an observer of
//! the pipeline; the export's by `ExportStats`. Both register into the one [`Telemetry`]
//! registry, so a scrape reads the values where they are kept — nothing is copied or replayed.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

mod exposition;
pub(crate) mod tables;

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

use crate::{
    decode::kind_name,
    event::{Body, Event, GapReason, Observer, Timestamp},
    export::ExportStats,
    settings::MetricsSettings,
    time,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecordLabels {
    action: String,
    agent: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    reason: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TruncLabels {
    what: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GapLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    version: String,
    policy_version: String,
    config: String,
}

/// Health state, written by the parts that know it.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The kernel programs are loaded and attached.
    pub(crate) attached: AtomicBool,
}

/// The registry, health, and the server's view of the export.
pub(crate) struct Telemetry {
    registry: Mutex<Registry>,
    info: Family<InfoLabels, Gauge>,
    pub(crate) health: Health,
    export: Mutex<Option<Arc<ExportStats>>>,
    store_staleness: Duration,
}

impl Telemetry {
    pub(crate) fn new(settings: &MetricsSettings) -> Arc<Self> {
        let mut r = Registry::with_prefix("audit");
        let info = Family::<InfoLabels, Gauge>::default();
        r.register(
            "build_info",
            "Agent version, policy version and configuration source (value 1)",
            info.clone(),
        );
        tables::register(&mut r);
        Arc::new(Self {
            registry: Mutex::new(r),
            info,
            health: Health::default(),
            export: Mutex::new(None),
            store_staleness: settings.store_staleness,
        })
    }

    /// Lets a module register its own metrics.
    pub(crate) fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Serves readiness from the export's state, and its metrics.
    pub(crate) fn set_export(&self, stats: Arc<ExportStats>) {
        self.register(|r| stats.register(r));
        *self.export.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
    }

    /// Records the configuration and policy version (an info metric; replaced on reload).
    pub(crate) fn set_info(&self, policy_version: &str, config: &str) {
        self.info.clear();
        self.info
            .get_or_create(&InfoLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                policy_version: policy_version.into(),
                config: config.into(),
            })
            .set(1);
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = encode(&mut out, &reg);
        out
    }

    /// Liveness: the process is serving and its programs are attached.
    fn healthz(&self) -> (bool, String) {
        if self.health.attached.load(Ordering::Relaxed) {
            (true, "ok: programs attached\n".into())
        } else {
            (false, "not ready: kernel programs not attached\n".into())
        }
    }

    /// Readiness: attached, spool writable, and (when exporting) the store can be delivered to:
    /// it answered the last upload or probe, or failed for less than `store_staleness` since it
    /// last answered. An idle agent is judged by its idle probes, never by how long ago it last
    /// had something to upload.
    fn readyz(&self) -> (bool, String) {
        let mut problems = Vec::new();
        if !self.health.attached.load(Ordering::Relaxed) {
            problems.push("kernel programs not attached".to_string());
        }
        if let Some(st) = self
            .export
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            if !st.spool_writable.load(Ordering::Relaxed) {
                problems.push("spool directory not writable".to_string());
            }
            let ok_at = st.store_ok_unix.load(Ordering::Relaxed);
            let max = self.store_staleness.as_secs() as i64;
            let failing_too_long =
                st.store_failing.load(Ordering::Relaxed) && time::now().as_second() - ok_at > max;
            if ok_at == 0 || failing_too_long {
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

/// The pipeline's metrics: what it wrote, lost and how late, and the kernel's counters.
pub(crate) struct PipelineMetrics {
    records: Family<RecordLabels, Counter>,
    gap_records: Family<GapLabels, Counter>,
    lost: Family<GapLabels, Counter>,
    kernel_emitted: Counter,
    kernel_drops: Family<KindLabels, Counter>,
    truncations: Family<TruncLabels, Counter>,
    faults: Family<TruncLabels, Counter>,
    walks_cut: Counter,
    connects_untracked: Counter,
    sockets_uninspected: Counter,
    ring_reads: Counter,
    queue_depth: Gauge,
    delivery_latency: Histogram,
    /// Kernel counters already added (the kernel's are cumulative).
    kernel_seen: Counters,
    /// Records not yet added to `records`, all with the same labels: a run of records of one
    /// agent, action and decision (the usual burst) costs one counter update, at the end of the
    /// batch or when the labels change (labels are three strings to build and hash).
    run: Option<(RecordLabels, u64)>,
}

impl PipelineMetrics {
    /// Creates the metrics, registers them, and makes every loss series exist at 0 (so an alert
    /// on the first loss can fire). Long on purpose: one registration (name, help) per metric.
    pub(crate) fn register(t: &Telemetry) -> Self {
        let m = Self {
            records: Family::default(),
            gap_records: Family::default(),
            lost: Family::default(),
            kernel_emitted: Counter::default(),
            kernel_drops: Family::default(),
            truncations: Family::default(),
            faults: Family::default(),
            walks_cut: Counter::default(),
            connects_untracked: Counter::default(),
            sockets_uninspected: Counter::default(),
            ring_reads: Counter::default(),
            queue_depth: Gauge::default(),
            delivery_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            kernel_seen: Counters::default(),
            run: None,
        };
        t.register(|r| {
            r.register(
                "records",
                "Records written, by action, agent and policy decision",
                m.records.clone(),
            );
            r.register(
                "gap_records",
                "Gap records written, by reason",
                m.gap_records.clone(),
            );
            r.register(
                "lost_records",
                "Records lost (counted in gap records), by reason",
                m.lost.clone(),
            );
            r.register(
                "kernel_records_emitted",
                "Records the kernel wrote to the ring buffer",
                m.kernel_emitted.clone(),
            );
            r.register(
                "kernel_drops",
                "Records the kernel could not deliver, by reason and action",
                m.kernel_drops.clone(),
            );
            r.register(
                "kernel_truncations",
                "Paths or argument vectors cut to fit, by what",
                m.truncations.clone(),
            );
            r.register(
                "kernel_unreadable",
                "Values the kernel could not read (flagged `unreadable` on the record), by what",
                m.faults.clone(),
            );
            r.register(
                "kernel_path_walks_cut",
                "Kernel path walks cut before the root (deeper or longer than the walk allows)",
                m.walks_cut.clone(),
            );
            r.register(
                "connect_outcomes_untracked",
                "Non-blocking connects whose final state could not be followed (table full)",
                m.connects_untracked.clone(),
            );
            r.register(
                "sockets_uninspected",
                "Sockets of watched processes whose packets cannot be read (no socket storage)",
                m.sockets_uninspected.clone(),
            );
            r.register(
                "ring_buffer_reads",
                "Records read from the kernel ring buffer",
                m.ring_reads.clone(),
            );
            r.register(
                "pipeline_batch_records",
                "Kernel records in the last batch the pipeline processed",
                m.queue_depth.clone(),
            );
            r.register(
                "delivery_latency_seconds",
                "Syscall entry to record accepted by the sink",
                m.delivery_latency.clone(),
            );
        });
        m.create_loss_series();
        m
    }

    /// Makes every loss, drop, truncation and fault series exist at 0.
    fn create_loss_series(&self) {
        for reason in GapReason::ALL {
            let l = GapLabels {
                reason: reason.name().into(),
            };
            let _ = self.gap_records.get_or_create(&l);
            let _ = self.lost.get_or_create(&l);
        }
        for reason in ["ringbuf_full", "pending_full"] {
            for k in (1..EventKind::SLOTS).filter(|k| EventKind::from_u16(*k as u16).is_some()) {
                let _ = self.kernel_drops.get_or_create(&kind_labels(reason, k));
            }
        }
        for what in ["path", "argv"] {
            let _ = self
                .truncations
                .get_or_create(&TruncLabels { what: what.into() });
        }
        for what in FAULTS {
            let _ = self
                .faults
                .get_or_create(&TruncLabels { what: what.into() });
        }
    }
}

impl PipelineMetrics {
    /// Adds the records of the current run to `records`.
    fn add_run(&mut self) {
        if let Some((labels, n)) = self.run.take() {
            self.records.get_or_create(&labels).inc_by(n);
        }
    }
}

/// The `what` labels of `kernel_unreadable`.
const FAULTS: [&str; 4] = ["requested_path", "argv", "address", "kernel_path"];

fn kind_labels(reason: &str, kind: usize) -> KindLabels {
    KindLabels {
        reason: reason.into(),
        action: kind_name(kind).into(),
    }
}

impl Observer for PipelineMetrics {
    fn observe(&mut self, e: &Event, accepted: Timestamp) {
        match &e.body {
            Body::Gap(g) => {
                let l = GapLabels {
                    reason: g.reason.name().into(),
                };
                self.gap_records.get_or_create(&l).inc();
                self.lost.get_or_create(&l).inc_by(g.lost);
            }
            Body::Activity(a) => {
                let lag = accepted.duration_since(e.time).as_secs_f64();
                self.delivery_latency.observe(lag.max(0.0));
                let decision = a.verdict.as_ref().map_or("", |v| v.decision.name());
                match &mut self.run {
                    Some((l, n))
                        if l.action == a.action.name()
                            && l.agent == e.agent_id()
                            && l.decision == decision =>
                    {
                        *n += 1;
                    }
                    _ => {
                        self.add_run();
                        let labels = RecordLabels {
                            action: a.action.name().into(),
                            agent: e.agent_id().into(),
                            decision: decision.into(),
                        };
                        self.run = Some((labels, 1));
                    }
                }
            }
        }
    }

    fn batch(&mut self, n: usize) {
        self.add_run();
        self.ring_reads.inc_by(n as u64);
        self.queue_depth.set(n as i64);
    }

    fn kernel(&mut self, now: &Counters) {
        self.add_run();
        let seen = &self.kernel_seen;
        let emitted: u64 = now.emitted.iter().sum::<u64>();
        self.kernel_emitted
            .inc_by(emitted.saturating_sub(seen.emitted.iter().sum::<u64>()));
        for k in 0..EventKind::SLOTS {
            for (reason, cur, prev) in [
                ("ringbuf_full", now.ringbuf_full[k], seen.ringbuf_full[k]),
                ("pending_full", now.pending_full[k], seen.pending_full[k]),
            ] {
                if cur > prev {
                    self.kernel_drops
                        .get_or_create(&kind_labels(reason, k))
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
                .inc_by(cur.saturating_sub(prev));
        }
        let faults = [
            (now.path_fault, seen.path_fault),
            (now.argv_fault, seen.argv_fault),
            (now.addr_fault, seen.addr_fault),
            (now.walk_fault, seen.walk_fault),
        ];
        for (what, (cur, prev)) in FAULTS.into_iter().zip(faults) {
            self.faults
                .get_or_create(&TruncLabels { what: what.into() })
                .inc_by(cur.saturating_sub(prev));
        }
        self.walks_cut
            .inc_by(now.walk_cut.saturating_sub(seen.walk_cut));
        self.connects_untracked
            .inc_by(now.connecting_full.saturating_sub(seen.connecting_full));
        self.sockets_uninspected.inc_by(
            now.socket_storage_full
                .saturating_sub(seen.socket_storage_full),
        );
        self.kernel_seen = *now;
    }
}

/// Serves /metrics, /healthz and /readyz until the process ends.
pub(crate) async fn serve(t: Arc<Telemetry>, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
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
                    let accept = req
                        .headers()
                        .get(hyper::header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    async move { Ok::<_, Infallible>(route(&t, req.uri().path(), accept.as_deref())) }
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

/// A response to `path`; `/metrics` in the format `accept` asks for (exposition.rs).
fn route(t: &Telemetry, path: &str, accept: Option<&str>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" if exposition::wants_openmetrics(accept) => {
            (StatusCode::OK, exposition::OPENMETRICS, t.render())
        }
        "/metrics" => (
            StatusCode::OK,
            exposition::CLASSIC,
            exposition::to_classic(&t.render()),
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
