//! Configuration reload: on SIGHUP, or when the file's contents change, the agents, protected
//! sets and rules are swapped in without stopping capture (no record is dropped: stages read the
//! current registry and policy per record, and the kernel filter adds new entries before removing
//! old ones). An invalid file is rejected with its error and the running configuration stays.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sha2::{Digest as _, Sha256};
use tokio::signal::unix::{SignalKind, signal};

use super::assemble::{Assembly, Live, watch_plan};
use crate::{capture::plan::WatchPlan, config::Config, identity::Registry, policy::Policy};

fn digest(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .ok()
        .map(|b| Sha256::digest(&b).to_vec())
}

/// What the command line adds to the configuration's watch plan (`watch --cgroup/--uid/--all`).
#[derive(Debug, Clone, Default)]
pub struct CliWatch {
    pub cgroups: Vec<String>,
    pub uids: Vec<u32>,
    pub all: bool,
}

/// How often the configuration file is checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// Watches `path` for SIGHUP and content changes (checked every [`POLL`]) and swaps the new
/// configuration into the running assembly `a`.
pub fn spawn(path: PathBuf, cli: CliWatch, running: Config, a: &Assembly) -> anyhow::Result<()> {
    let (live, plans, telemetry) = (a.live.clone(), a.plan_updates.clone(), a.telemetry.clone());
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut last = digest(&path);
        let mut running = running;
        loop {
            let why = tokio::select! {
                _ = hup.recv() => "SIGHUP",
                () = tokio::time::sleep(POLL) => {
                    let now = digest(&path);
                    if now == last || now.is_none() {
                        continue;
                    }
                    "file changed"
                }
            };
            last = digest(&path);
            match reload(&path, &cli, &live) {
                Ok((cfg, version, plan)) => {
                    let _ = plans.send(plan);
                    if let Some(t) = &telemetry {
                        t.set_info(&version, &path.display().to_string());
                    }
                    if format!("{:?}", cfg.export) != format!("{:?}", running.export)
                        || format!("{:?}", cfg.metrics) != format!("{:?}", running.metrics)
                        || format!("{:?}", cfg.capture) != format!("{:?}", running.capture)
                    {
                        tracing::warn!(
                            "[export], [metrics] and [capture] changes take effect at the next restart"
                        );
                    }
                    tracing::info!(
                        trigger = why,
                        policy_version = %version,
                        agents = cfg.agents.len(),
                        rules = cfg.rules.len(),
                        "configuration reloaded"
                    );
                    running = cfg;
                }
                Err(e) => tracing::error!(
                    trigger = why,
                    error = %format!("{e:#}"),
                    "configuration reload rejected; the running configuration stays in force"
                ),
            }
        }
    });
    Ok(())
}

fn reload(path: &Path, cli: &CliWatch, live: &Live) -> anyhow::Result<(Config, String, WatchPlan)> {
    let cfg = Config::load(path)?;
    let registry = Registry::from_config(&cfg)?;
    let policy = Policy::compile(&cfg)?;
    let plan = watch_plan(&cfg, &cli.cgroups, &cli.uids, cli.all)?;
    if plan.is_empty() {
        anyhow::bail!("{}: the new configuration watches nothing", path.display());
    }
    let version = policy.version().to_string();
    // Actions from now on are judged by the new version; those still in the pipeline by the old.
    let now = crate::timefmt::now_unix_ns();
    live.registry.replace(registry, now);
    live.policy.replace(policy, now);
    Ok((cfg, version, plan))
}
