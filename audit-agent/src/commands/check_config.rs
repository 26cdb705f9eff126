//! `audit-agent check-config FILE`: validate without touching the kernel.

use std::path::Path;

use crate::{config::Config, policy::Policy};

pub fn run(path: &Path) -> anyhow::Result<()> {
    let cfg = Config::load(path)?;
    let policy = Policy::compile(&cfg)?;
    println!(
        "{}: OK ({} agent(s), {} protected set(s), {} rule(s), default {}, policy version {})",
        path.display(),
        cfg.agents.len(),
        cfg.protected.len(),
        cfg.rules.len(),
        cfg.default_decision.as_str(),
        policy.version()
    );
    Ok(())
}
