//! `audit-agent check-config FILE`: compile without touching the kernel — exactly what start-up
//! and reload accept.

use std::path::Path;

use crate::settings::{CliWatch, Settings};

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let s = Settings::load(path)?;
    let (sets, rules) = s.policy.counts();
    let note = if s.watches_anything(&CliWatch::default()) {
        ""
    } else {
        "; watches nothing by itself (add [[agents]] or [watch], or use --cgroup/--uid/--all)"
    };
    println!(
        "{}: OK ({} agent(s), {sets} protected set(s), {rules} rule(s), default {}, policy version {}){note}",
        path.display(),
        s.registry.len(),
        s.policy.default_decision(),
        s.policy.version()
    );
    Ok(())
}
