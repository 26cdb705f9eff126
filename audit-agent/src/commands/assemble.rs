//! Assembling a running pipeline from compiled settings, shared by `watch`, `run` and `trace`:
//! kernel watch plan -> capture -> enrich -> identity -> names -> policy -> sink, with metrics and the
//! Kubernetes pod watch when configured.

use std::sync::{Arc, atomic::Ordering};

use anyhow::bail;

use crate::{
    capture::{Capture, CaptureOptions, cgroup::Cgroup2, plan::WatchPlan},
    claims::listen::ClaimsSettings,
    config::K8sConf,
    enrich::{Enricher, host::HostInfo},
    identity::{
        IdentityStage, K8sIdentity, SharedRegistry,
        k8s::{self, PodCache},
    },
    names::NamingStage,
    pipeline::{DynamicGlobs, Pipeline, PipelineBuilder, Sequencer, WatchRefresher},
    policy::{PolicyStage, SharedPolicy, inode},
    settings::{MetricsSettings, Settings, check_ring_size},
    sink::Sink,
    telemetry::{PipelineMetrics, Telemetry, serve},
    time,
    trail::stream::record_stream,
    versioned::Versioned,
};

/// Handles to swap identity, policy and the watch plan at run time (configuration reload).
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) registry: SharedRegistry,
    pub(crate) policy: SharedPolicy,
    pub(crate) plans: tokio::sync::watch::Sender<WatchPlan>,
    pub(crate) telemetry: Option<Arc<Telemetry>>,
}

impl Live {
    /// Makes `s` the configuration in force from now on: actions from now are judged by it,
    /// those still in the pipeline by the one in force when they happened.
    pub(crate) fn replace(&self, s: Settings, plan: WatchPlan) {
        let now = time::now();
        if let Some(t) = &self.telemetry {
            t.set_info(s.policy.version(), &s.source);
        }
        self.registry.replace(s.registry, now);
        self.policy.replace(s.policy, now);
        let _ = self.plans.send(plan);
    }
}

pub(crate) struct Assembly {
    pub(crate) pipeline: Pipeline<Capture>,
    pub(crate) live: Live,
}

/// Optional pieces of an assembly.
#[derive(Default)]
pub(crate) struct Extras<'a> {
    /// (agent id, cgroup): an ad-hoc identity for a cgroup (trace).
    pub(crate) trace_agent: Option<(&'a str, &'a str)>,
    /// First sequence number and stream id (the daemon continues its stream across restarts).
    pub(crate) sequence: Option<Sequencer>,
    /// Overrides the configured ring buffer size.
    pub(crate) ring_buffer_bytes: Option<u32>,
    /// Pin the map of signals sent to the agent here, so they outlive a SIGKILL (the daemon).
    pub(crate) signal_pin: Option<std::path::PathBuf>,
    /// Observers besides the metrics (a trace summary).
    pub(crate) observers: Vec<Box<dyn crate::event::Observer>>,
    /// Where claims are taken in besides the configuration's `[claims]` (trace's own socket).
    pub(crate) claims: Option<ClaimsSettings>,
}

/// Loads and attaches the programs and makes them watch `plan` as resolved now.
fn start_capture(
    opts: &CaptureOptions,
    plan: &WatchPlan,
    cgroup2: &Cgroup2,
) -> anyhow::Result<(Capture, crate::capture::WatchSet)> {
    check_ring_size(opts.ring_buffer_bytes).map_err(|e| anyhow::anyhow!("ring buffer size {e}"))?;
    let mut capture = Capture::start(opts)?;
    for tp in &capture.missing {
        tracing::warn!(tracepoint = %tp, "tracepoint not available on this kernel; not captured");
    }
    let set = plan.resolve(cgroup2);
    capture.set_watch(&set)?;
    Ok((capture, set))
}

/// Starts the metrics server when `[metrics]` is configured.
async fn start_metrics(
    settings: Option<&MetricsSettings>,
    version: &str,
    source: &str,
) -> anyhow::Result<Option<Arc<Telemetry>>> {
    let Some(m) = settings else {
        return Ok(None);
    };
    let t = Telemetry::new(m);
    let addr = serve(t.clone(), m.listen).await?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    t.set_info(version, source);
    Ok(Some(t))
}

/// Starts the pod watch when Kubernetes is in use: pods give identity to events, and selected
/// pods' cgroups join the watch set.
async fn start_k8s(
    conf: &K8sConf,
    host: &HostInfo,
    registry: &SharedRegistry,
    identity: IdentityStage,
    refresher: WatchRefresher,
) -> anyhow::Result<(IdentityStage, WatchRefresher)> {
    let Some(target) = k8s::target(conf, &host.name)? else {
        return Ok((identity, refresher));
    };
    let pods = PodCache::new(conf.max_pods);
    tracing::info!(api = %target.base, node = %target.node, "kubernetes identity enabled");
    k8s::spawn_watcher(target, pods.clone()).await?;
    let identity = identity.with_k8s(K8sIdentity {
        pods: pods.clone(),
        agent_id_label: conf.agent_id_label.clone(),
    });
    let globs = pod_globs(registry.clone(), pods, conf.agent_id_label.clone());
    Ok((identity, refresher.with_dynamic(globs)))
}

/// Loads the programs, applies the watch plan, and builds the pipeline into `sink`.
pub(crate) async fn assemble(
    settings: Settings,
    plan: WatchPlan,
    cgroup2: Cgroup2,
    sink: Box<dyn Sink + Send>,
    mut extras: Extras<'_>,
) -> anyhow::Result<Assembly> {
    let ring = extras
        .ring_buffer_bytes
        .unwrap_or(settings.capture.ring_buffer_bytes);
    let Settings {
        source,
        policy,
        mut registry,
        k8s,
        capture,
        metrics,
        claims,
        ..
    } = settings;
    if let Some((id, cg)) = extras.trace_agent {
        registry.add_first(id, cg)?;
    }
    let version = policy.version().to_string();
    let (registry, policy) = (Versioned::new(registry), Versioned::new(policy));
    let opts = CaptureOptions {
        ring_buffer_bytes: ring,
        max_pending_threads: 16384,
        cgroup_root: cgroup2.mount().to_path_buf(),
        signal_pin: extras.signal_pin.take(),
        compat_syscalls: capture.compat_syscalls,
        kfuncs: capture.kfuncs,
        packets: capture.packets,
        dns_ports: capture.dns_ports.clone(),
    };
    let (mut source_capture, set) = start_capture(&opts, &plan, &cgroup2)?;
    // Protected files found by the policy's inode index get the ring buffer's reserve.
    let protected = inode::Published::default();
    source_capture.protect_from(protected.clone());
    let host = HostInfo::read();
    let seq = extras.sequence.take().unwrap_or_else(|| {
        let start = time::now().as_nanosecond().to_string();
        let pid = std::process::id().to_string();
        Sequencer::new(record_stream(&[&host.name, &host.boot_id, &start, &pid]), 1)
    });
    let enricher = Enricher::new(&host, cgroup2.clone(), capture.connect_outcome_wait);
    let mut b = Pipeline::builder(source_capture, enricher, sink, seq);
    let telemetry = start_metrics(metrics.as_ref(), &version, &source).await?;
    if let Some(t) = &telemetry {
        b = b.observer(Box::new(PipelineMetrics::register(t)));
    }
    for o in extras.observers.drain(..) {
        b = b.observer(o);
    }
    if let Some(c) = extras.claims.take().or(claims) {
        b = b.claims(crate::claims::listen::start(&c, &cgroup2).await?);
    }
    let mut identity = IdentityStage::new(registry.clone());
    if let Some((id, _)) = extras.trace_agent {
        identity = identity.with_trace_id(id);
    }
    let (plans, plan_rx) = tokio::sync::watch::channel(plan.clone());
    let refresher = WatchRefresher::new(plan, set.clone(), cgroup2, capture.cgroup_rescan, plan_rx);
    let (identity, refresher) = start_k8s(&k8s, &host, &registry, identity, refresher).await?;
    let pipeline = finish(b, identity, policy.clone(), refresher, protected)?;
    if let Some(t) = &telemetry {
        t.health.attached.store(true, Ordering::Relaxed);
    }
    tracing::info!(
        subtrees = ?set.subtrees.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        exact = ?set.exact.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        uids = ?set.uids,
        all = set.all,
        agents = registry.current().len(),
        policy = %version,
        "ready: watching"
    );
    Ok(Assembly {
        pipeline,
        live: Live {
            registry,
            policy,
            plans,
            telemetry,
        },
    })
}

fn finish(
    b: PipelineBuilder<Capture>,
    identity: IdentityStage,
    policy: SharedPolicy,
    refresher: WatchRefresher,
    protected: inode::Published,
) -> anyhow::Result<Pipeline<Capture>> {
    b.stage(identity)
        .stage(NamingStage::new())
        .stage(PolicyStage::new(
            policy,
            inode::Refreshing::host_root(),
            Some(protected),
        ))
        .refresher(refresher)
        .build()
}

/// The cgroups of the pods some agent selects (or the agent id label names), re-resolved when
/// the pod cache changes.
fn pod_globs(registry: SharedRegistry, pods: Arc<PodCache>, label: Option<String>) -> DynamicGlobs {
    Box::new(move || {
        let reg = registry.current();
        let generation = pods.generation();
        if !reg.uses_k8s() && label.is_none() {
            return (generation, Vec::new());
        }
        let globs = pods
            .all()
            .iter()
            .filter(|p| {
                reg.selects_pod(p) || label.as_ref().is_some_and(|l| p.labels.contains_key(l))
            })
            .flat_map(|p| k8s::pod_globs(&p.uid))
            .collect();
        (generation, globs)
    })
}

/// Refuses a configuration that selects nothing to watch, with what to give instead.
pub(crate) fn require_watch(watches_anything: bool) -> anyhow::Result<()> {
    if !watches_anything {
        bail!(
            "nothing to watch: give --cgroup PATH, --uid UID or --all, or a --config with \
             [[agents]] or a [watch] section"
        );
    }
    Ok(())
}

/// Compiles `--config`, or the empty configuration when none is given.
pub(crate) fn load_settings(path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    match path {
        Some(p) => Settings::load(p),
        None => Ok(Settings::empty()),
    }
}
