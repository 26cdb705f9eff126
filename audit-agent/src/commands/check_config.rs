//! `audit-agent check-config FILE`: compile without touching the kernel — exactly what start-up
//! and reload accept. `--builtin` prints the embedded default and checks it, the verdict as a
//! TOML comment, so the output is a configuration to start from (`> config.toml`).

use std::{io::Write as _, path::Path};

use crate::settings::{BUILTIN, BUILTIN_SOURCE, CliWatch, Settings};

pub(crate) fn run(path: Option<&Path>, builtin: bool) -> anyhow::Result<()> {
    let (s, name, text) = match path {
        Some(p) if !builtin => (Settings::load(p)?, p.display().to_string(), ""),
        _ => (Settings::builtin()?, format!("# {BUILTIN_SOURCE}"), BUILTIN),
    };
    let (sets, rules) = s.policy.counts();
    let note = if s.watches_anything(&CliWatch::default()) {
        ""
    } else {
        "; watches nothing by itself (add [[agents]] or [watch], or use --cgroup/--uid/--all)"
    };
    let verdict = format!(
        "{name}: OK ({} agent(s), {sets} protected set(s), {rules} rule(s), default {}, policy version {}){note}",
        s.registry.len(),
        s.policy.default_decision(),
        s.policy.version()
    );
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}{verdict}").and_then(|()| out.flush()) {
        // A reader that stopped early (`| head`) wanted no more.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}
