//! Configuration reload: on SIGHUP, or when the file's contents change, the agents, protected
//! sets, rules and watch plan are swapped in without stopping capture (no record is dropped:
//! stages read the registry and policy in force at each event's time, and the kernel filter adds
//! new entries before removing old ones). The file is compiled exactly as at start-up; an invalid
//! one is rejected with its errors and the running configuration stays.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sha2::{Digest as _, Sha256};
use tokio::signal::unix::{SignalKind, signal};

use super::assemble::{Live, require_watch};
use crate::settings::{CliWatch, Settings};

fn digest(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .ok()
        .map(|b| Sha256::digest(&b).to_vec())
}

/// How often the configuration file is checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// Watches `path` for SIGHUP and content changes (checked every [`POLL`]) and swaps the new
/// configuration into the running pipeline.
pub(crate) fn spawn(path: PathBuf, cli: CliWatch, live: &Live) -> anyhow::Result<()> {
    let live = live.clone();
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        let mut last = digest(&path);
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
                Ok(version) => tracing::info!(
                    trigger = why,
                    policy_version = %version,
                    "configuration reloaded ([export], [metrics] and [capture] changes take effect at the next restart)"
                ),
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

fn reload(path: &Path, cli: &CliWatch, live: &Live) -> anyhow::Result<String> {
    let s = Settings::load(path)?;
    require_watch(s.watches_anything(cli))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let plan = s.watch_plan(cli);
    let version = s.policy.version().to_string();
    live.replace(s, plan);
    Ok(version)
}
