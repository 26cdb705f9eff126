//! Assembling a running pipeline from a configuration, shared by `watch`, `run` and `trace`:
//! kernel filter plan -> capture -> enrich -> identity -> policy -> sink.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{
    capture::{Capture, CaptureOptions, cgroup::Cgroup2, plan::WatchPlan},
    config::Config,
    enrich::{Enricher, host::HostInfo},
    identity::{
        IdentityStage, K8sIdentity, Registry, SharedRegistry,
        k8s::{self, PodCache},
    },
    pipeline::{Pipeline, Sequencer, WatchRefresher, stream_id},
    policy::{Policy, PolicyStage, SharedPolicy},
    sink::Sink,
    telemetry::{Telemetry, serve},
    timefmt::now_unix_ns,
    versioned::Versioned,
};

/// Loads `--config`, or an empty configuration when none is given.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// What the kernel should watch: the configured agents and `[watch]`, plus command-line extras.
pub fn watch_plan(
    cfg: &Config,
    cgroups: &[String],
    uids: &[u32],
    all: bool,
) -> anyhow::Result<WatchPlan> {
    let mut plan = WatchPlan::new(all || cfg.watch.all);
    for a in &cfg.agents {
        for g in &a.cgroup {
            plan.add_glob(g.get_ref())?;
        }
        for u in &a.uid {
            plan.add_uid(*u.get_ref());
        }
    }
    for g in &cfg.watch.cgroups {
        plan.add_glob(g.get_ref())?;
    }
    for u in &cfg.watch.uids {
        plan.add_uid(*u);
    }
    for c in cgroups {
        plan.add_subtree(c);
    }
    for u in uids {
        plan.add_uid(*u);
    }
    Ok(plan)
}

/// Handles to swap identity and policy at run time.
#[derive(Clone)]
pub struct Live {
    pub registry: SharedRegistry,
    pub policy: SharedPolicy,
}

pub struct Assembly {
    pub pipeline: Pipeline,
    pub live: Live,
    pub host: HostInfo,
    /// Present when `[metrics]` is configured (the server is already listening).
    pub telemetry: Option<Arc<Telemetry>>,
    /// Sends a new watch plan to the pipeline (configuration reload).
    pub plan_updates: tokio::sync::watch::Sender<WatchPlan>,
}

/// Optional pieces of an assembly.
#[derive(Default)]
pub struct Extras<'a> {
    /// (agent id, cgroup): an ad-hoc identity for a cgroup (trace).
    pub trace_agent: Option<(&'a str, &'a str)>,
    /// First sequence number and stream id (the daemon continues its stream across restarts).
    pub sequence: Option<Sequencer>,
    /// Where the configuration came from (for the info metric).
    pub config_source: Option<&'a str>,
}

/// Loads the programs, applies the watch plan, and builds the pipeline into `sink`.
pub async fn assemble(
    cfg: &Config,
    plan: WatchPlan,
    cgroup2: Cgroup2,
    sink: Box<dyn Sink + Send>,
    ring_buffer_bytes: Option<u32>,
    extras: Extras<'_>,
) -> anyhow::Result<Assembly> {
    if plan.is_empty()
        && !(cfg.k8s.agent_id_label.is_some()
            || cfg.agents.iter().any(|a| {
                !a.k8s_namespace.is_empty()
                    || !a.k8s_service_account.is_empty()
                    || !a.k8s_labels.is_empty()
            }))
    {
        bail!(
            "nothing to watch: give --cgroup PATH, --uid UID or --all, or a --config with \
             [[agents]] or a [watch] section"
        );
    }
    let mut registry = Registry::from_config(cfg)?;
    if let Some((id, cg)) = extras.trace_agent {
        registry.add_first(id, cg)?;
    }
    let registry: SharedRegistry = Versioned::new(registry);
    let policy: SharedPolicy = Versioned::new(Policy::compile(cfg)?);

    let ring = ring_buffer_bytes.unwrap_or(*cfg.capture.ring_buffer_bytes.get_ref());
    if ring < 4096 || !ring.is_power_of_two() {
        bail!("ring buffer size {ring}: must be a power of two of at least 4096");
    }
    let mut capture = Capture::start(&CaptureOptions {
        ring_buffer_bytes: ring,
        ..Default::default()
    })?;
    for tp in &capture.missing {
        tracing::warn!(tracepoint = %tp, "tracepoint not available on this kernel; not captured");
    }
    let set = plan.resolve(&cgroup2);
    capture.set_watch(&set)?;

    let host = HostInfo::read();
    let enricher = Enricher::new(&host, cgroup2.clone());
    let seq = extras.sequence.unwrap_or_else(|| {
        let start = now_unix_ns().to_string();
        let pid = std::process::id().to_string();
        Sequencer::new(stream_id(&[&host.name, &host.boot_id, &start, &pid]), 1)
    });
    let mut pipeline = Pipeline::new(capture, enricher, sink, seq)?;
    let telemetry = match &cfg.metrics {
        Some(m) => {
            let t = Telemetry::new();
            t.set_store_staleness(m.store_staleness_s);
            let addr = serve(t.clone(), &m.listen).await?;
            tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
            pipeline.telemetry = Some(t.clone());
            Some(t)
        }
        None => None,
    };
    let mut identity = IdentityStage::new(registry.clone());
    if let Some((id, _)) = extras.trace_agent {
        identity = identity.with_trace_id(id);
    }
    let mut dynamic: Option<crate::pipeline::DynamicGlobs> = None;
    if let Some(target) = k8s::target(&cfg.k8s, &host.name)? {
        let pods = PodCache::new(cfg.k8s.max_pods);
        tracing::info!(api = %target.base, node = %target.node, "kubernetes identity enabled");
        k8s::spawn_watcher(target, pods.clone())?;
        identity = identity.with_k8s(K8sIdentity {
            pods: pods.clone(),
            agent_id_label: cfg.k8s.agent_id_label.clone(),
        });
        let (registry, label) = (registry.clone(), cfg.k8s.agent_id_label.clone());
        dynamic = Some(Box::new(move || {
            let reg = registry.current();
            let generation = pods.generation.load(std::sync::atomic::Ordering::Relaxed);
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
        }));
    }
    pipeline.stages.push(Box::new(identity));
    pipeline
        .stages
        .push(Box::new(PolicyStage::new(policy.clone())));
    let (plan_updates, plan_rx) = tokio::sync::watch::channel(plan.clone());
    pipeline.refresher = Some(WatchRefresher {
        plan,
        cgroup2,
        interval: Duration::from_millis(cfg.capture.cgroup_rescan_ms.max(50)),
        last: Instant::now(),
        current: set.clone(),
        updates: Some(plan_rx),
        dynamic,
        dynamic_generation: u64::MAX,
    });
    let version = policy.current().version().to_string();
    if let Some(t) = &telemetry {
        t.set_info(&version, extras.config_source.unwrap_or("<none>"));
        t.health
            .attached
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    tracing::info!(
        subtrees = ?set.subtrees.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        exact = ?set.exact.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        uids = ?set.uids,
        all = set.all,
        agents = cfg.agents.len(),
        policy = %version,
        "ready: watching"
    );
    Ok(Assembly {
        pipeline,
        live: Live { registry, policy },
        host,
        telemetry,
        plan_updates,
    })
}
