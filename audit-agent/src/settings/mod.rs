//! A configuration compiled into what the pipeline runs on: the policy, the agent registry, the
//! kernel watch plan and the validated settings of capture, export and metrics. Start-up,
//! `check-config` and reload all go through [`Settings::load`] / [`Settings::parse`], so they
//! accept and reject exactly the same files.

use std::{net::SocketAddr, path::Path, time::Duration};

use crate::{
    capture::plan::WatchPlan,
    claims::listen::{ClaimsSettings, Limits},
    config::{self, Config, ConfigErrors, K8sConf, Problems},
    export::ExportSettings,
    identity::Registry,
    policy::Policy,
};

/// The embedded default configuration's text.
pub(crate) const BUILTIN: &str = include_str!("../../../deploy/config.default.toml");
/// How the embedded default is named in messages, metrics and `check-config`.
pub(crate) const BUILTIN_SOURCE: &str = "<builtin config>";

/// Kernel-side settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaptureSettings {
    pub(crate) ring_buffer_bytes: u32,
    pub(crate) cgroup_rescan: Duration,
    /// How long an in-progress connect's record waits for its outcome.
    pub(crate) connect_outcome_wait: Duration,
    /// Whether 32-bit system calls are recorded.
    pub(crate) compat_syscalls: bool,
    /// Whether kernel objects are read through kernel functions where the kernel has them.
    pub(crate) kfuncs: bool,
    /// Whether watched sockets' packets are read (DNS, TLS, HTTP), and which ports are DNS.
    pub(crate) packets: bool,
    pub(crate) dns_ports: Vec<u16>,
}

/// `[metrics]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetricsSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) store_staleness: Duration,
}

/// What the command line adds to the configuration's watch plan (`watch --cgroup/--uid/--all`).
#[derive(Debug, Clone, Default)]
pub(crate) struct CliWatch {
    pub(crate) cgroups: Vec<String>,
    pub(crate) uids: Vec<u32>,
    pub(crate) all: bool,
}

/// A compiled configuration.
pub(crate) struct Settings {
    /// Where it came from (for messages and the info metric).
    pub(crate) source: String,
    pub(crate) policy: Policy,
    pub(crate) registry: Registry,
    pub(crate) watch: WatchPlan,
    pub(crate) k8s: K8sConf,
    pub(crate) capture: CaptureSettings,
    pub(crate) export: Option<ExportSettings>,
    pub(crate) metrics: Option<MetricsSettings>,
    pub(crate) claims: Option<ClaimsSettings>,
}

impl Settings {
    /// Reads and compiles a configuration file.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read configuration file {}: {e}", path.display())
        })?;
        Ok(Self::parse(&text, &path.display().to_string())?)
    }

    /// Compiles configuration text; `file` names it in errors. Every problem is reported.
    pub(crate) fn parse(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        let cfg = config::parse(text, file)?;
        let mut p = Problems::new(text, file);
        let settings = Self::compile(&cfg, file, &mut p);
        p.finish(settings)
    }

    /// The embedded default configuration (`deploy/config.default.toml`): `run --builtin-config`,
    /// and the policy of `trace` without `--config`.
    pub(crate) fn builtin() -> Result<Self, ConfigErrors> {
        Self::parse(BUILTIN, BUILTIN_SOURCE)
    }

    /// The settings of an empty configuration (`watch` without `--config`).
    pub(crate) fn empty() -> Self {
        Self::compile(&Config::default(), "<none>", &mut Problems::new("", ""))
    }

    fn compile(cfg: &Config, source: &str, p: &mut Problems) -> Self {
        let registry = Registry::compile(cfg, p);
        let policy = Policy::compile(cfg, p);
        let watch = WatchPlan::compile(cfg, p);
        Self {
            source: source.to_string(),
            policy,
            registry,
            watch,
            k8s: cfg.k8s.clone(),
            capture: compile_capture(cfg, p),
            export: cfg.export.as_ref().map(|e| ExportSettings::compile(e, p)),
            metrics: cfg.metrics.as_ref().and_then(|m| compile_metrics(m, p)),
            claims: cfg.claims.as_ref().map(|c| compile_claims(c, p)),
        }
    }

    /// The watch plan with the command line's additions.
    pub(crate) fn watch_plan(&self, cli: &CliWatch) -> WatchPlan {
        let mut plan = self.watch.clone();
        if cli.all {
            plan = plan.with_all();
        }
        for c in &cli.cgroups {
            plan.add_subtree(c);
        }
        for u in &cli.uids {
            plan.add_uid(*u);
        }
        plan
    }

    /// Whether anything at all is selected for watching: cgroups, uids or everything, or pods
    /// (by an agent's pod selectors or the agent id label). Start-up and reload both ask this.
    pub(crate) fn watches_anything(&self, cli: &CliWatch) -> bool {
        !self.watch_plan(cli).is_empty()
            || self.registry.uses_k8s()
            || self.k8s.agent_id_label.is_some()
    }
}

fn compile_capture(cfg: &Config, p: &mut Problems) -> CaptureSettings {
    let ring = &cfg.capture.ring_buffer_bytes;
    if let Err(e) = check_ring_size(*ring.get_ref()) {
        p.at(ring.span(), format!("capture.ring_buffer_bytes: {e}"));
    }
    CaptureSettings {
        ring_buffer_bytes: *ring.get_ref(),
        cgroup_rescan: Duration::from_millis(cfg.capture.cgroup_rescan_ms.max(50)),
        connect_outcome_wait: Duration::from_millis(cfg.capture.connect_outcome_wait_ms),
        compat_syscalls: cfg.capture.compat_syscalls,
        kfuncs: cfg.capture.kfuncs,
        packets: cfg.capture.packets,
        dns_ports: dns_ports(&cfg.capture.dns_ports, p),
    }
}

/// `[capture] dns_ports`: at most 16 ports, none of them 0 (none: no DNS is read).
fn dns_ports(ports: &toml::Spanned<Vec<u16>>, p: &mut Problems) -> Vec<u16> {
    let max = audit_common::net::DNS_PORTS_MAX as usize;
    let list = ports.get_ref();
    if list.contains(&0) || list.len() > max {
        p.at(
            ports.span(),
            format!(
                "capture.dns_ports: give at most {max} ports between 1 and 65535 (e.g. [53, 5353])"
            ),
        );
    }
    let mut v: Vec<u16> = list.iter().copied().filter(|&n| n != 0).take(max).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The ring buffer size rule, shared by the configuration and `--ring-buffer-bytes`.
pub(crate) fn check_ring_size(bytes: u32) -> Result<(), String> {
    if bytes < 4096 || !bytes.is_power_of_two() {
        return Err(format!("{bytes} must be a power of two of at least 4096"));
    }
    Ok(())
}

fn compile_claims(c: &config::ClaimsConf, p: &mut Problems) -> ClaimsSettings {
    let otlp_listen = c.otlp_listen.as_ref().and_then(|l| {
        l.get_ref()
            .parse::<SocketAddr>()
            .map_err(|_| {
                p.at(
                    l.span(),
                    format!(
                        "claims.otlp_listen: `{}` is not an address like 127.0.0.1:4318",
                        l.get_ref()
                    ),
                )
            })
            .ok()
    });
    if *c.per_second.get_ref() == 0 {
        p.at(c.per_second.span(), "claims.per_second: must be at least 1");
    }
    if c.socket.is_none() && c.otlp_listen.is_none() {
        p.at(
            0..0,
            "[claims]: give `socket` (for `audit-agent claim`) and/or `otlp_listen`",
        );
    }
    ClaimsSettings {
        socket: c.socket.clone(),
        otlp_listen,
        limits: Limits {
            per_second: *c.per_second.get_ref(),
        },
    }
}

fn compile_metrics(m: &config::MetricsConf, p: &mut Problems) -> Option<MetricsSettings> {
    match m.listen.get_ref().parse::<SocketAddr>() {
        Ok(listen) => Some(MetricsSettings {
            listen,
            store_staleness: Duration::from_secs(m.store_staleness_s),
        }),
        Err(_) => {
            p.at(
                m.listen.span(),
                format!(
                    "metrics.listen: `{}` is not an address like 0.0.0.0:9464",
                    m.listen.get_ref()
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
