//! Section 4: where the daemon's CPU goes. The daemon (release build, with line tables) takes the
//! throughput load at 100k opens/s under `perf record` with DWARF call graphs; each stage's share
//! of the daemon's samples (inclusive: the stage and what it calls) times the CPU per record the
//! throughput section measured without perf gives the stage's cost per record.

use std::{process::Command, time::Duration};

use anyhow::Context as _;

use super::{Env, Tracer, agent_config, results::Profile, results::StageCost, start_until};

/// The rate profiled (a throughput row's rate, so its CPU per record applies).
pub(super) const RATE: u64 = 100_000;

/// Symbols of the sealer's own stages, inside `seal_ready`: "seal: rest" is `seal_ready` less them.
const SEAL_PARTS: [&str; 2] = [
    "zlib_rs::deflate::deflate",
    "audit_agent::export::manifest::sha256_hex",
];

/// (stage, what it covers, symbols whose inclusive shares add up to it). Stages do not nest,
/// except "seal: rest", which is computed net of [`SEAL_PARTS`].
const STAGES: [(&str, &str, &[&str]); 9] = [
    (
        "ring buffer",
        "reading kernel records",
        &["audit_agent::capture::drain"],
    ),
    (
        "decode",
        "kernel bytes to records",
        &["audit_agent::decode::decode_parts"],
    ),
    (
        "enrich",
        "process table, paths, cgroups",
        &["audit_agent::enrich::Enricher::enrich"],
    ),
    (
        "identity",
        "agent attribution",
        &["<audit_agent::identity::IdentityStage as audit_agent::event::Stage>::apply"],
    ),
    (
        "policy",
        "protected sets and rules",
        &["<audit_agent::policy::PolicyStage as audit_agent::event::Stage>::apply"],
    ),
    (
        "serialize + spool",
        "native JSON, segment files",
        &["<audit_agent::export::spool::SpoolWriter as audit_agent::sink::Sink>::write"],
    ),
    (
        "seal: gzip",
        "compressing objects (sealer thread)",
        &["zlib_rs::deflate::deflate"],
    ),
    (
        "seal: sha256",
        "object hashes (sealer thread)",
        &["audit_agent::export::manifest::sha256_hex"],
    ),
    (
        "seal: rest",
        "reading segments, writing objects and manifests",
        &["audit_agent::export::seal::Sealer::seal_ready"],
    ),
];

/// Inclusive shares (percent of samples) by symbol, from `perf report --children`.
fn shares(data: &std::path::Path) -> anyhow::Result<Vec<(String, f64)>> {
    let out = Command::new("perf")
        .args([
            "report",
            "--children",
            "--sort",
            "symbol",
            "--stdio",
            "-g",
            "none",
            "-i",
        ])
        .arg(data)
        .output()
        .context("perf report (Debian's linux-perf)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let children: f64 = words.next()?.strip_suffix('%')?.parse().ok()?;
            let _self = words.next()?;
            let _kind = words.next()?;
            let rest: Vec<&str> = words.collect();
            // The symbol, then perf's trailing columns.
            let symbol = rest.join(" ");
            let symbol = symbol.trim_end_matches(" - -").trim().to_string();
            Some((symbol, children))
        })
        .collect())
}

pub(super) fn profile(env: &Env, us_per_record: f64) -> anyhow::Result<Profile> {
    eprintln!("bench: profile at {RATE} opens/s");
    let dir = env.out.join("profile");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = agent_config(env, &dir)?;
    let child = start_until(
        Command::new(&env.agent).args(["run", "--config", cfg.to_str().unwrap_or_default()]),
        "ready: watching",
        Some(&dir.join("agent.log")),
    )?;
    let data = dir.join("perf.data");
    let secs = if env.quick { 3 } else { 5 };
    let mut perf = Command::new("perf")
        .args(["record", "-F", "999", "--call-graph", "dwarf,16384", "-o"])
        .arg(&data)
        .args([
            "-p",
            &child.id().to_string(),
            "--",
            "sleep",
            &(secs + 1).to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("perf record (Debian's linux-perf)")?;
    std::thread::sleep(Duration::from_millis(300));
    env.cmd_in(&env.loadgen, &env.watched, None)
        .args([
            "rate",
            &env.file.display().to_string(),
            &RATE.to_string(),
            &secs.to_string(),
        ])
        .output()?;
    perf.wait()?;
    Tracer::Proc(child).stop()?;
    let shares = shares(&data)?;
    let stages = STAGES
        .iter()
        .map(|(stage, covers, symbols)| {
            let share = |s: &str| shares.iter().find(|(n, _)| n == s).map_or(0.0, |x| x.1);
            let mut percent: f64 = symbols.iter().map(|s| share(s)).sum();
            if *stage == "seal: rest" {
                percent -= SEAL_PARTS.iter().map(|s| share(s)).sum::<f64>();
            }
            StageCost {
                stage: (*stage).into(),
                covers: (*covers).into(),
                percent_of_samples: percent,
                us_per_record: percent / 100.0 * us_per_record,
            }
        })
        .collect::<Vec<_>>();
    Ok(Profile {
        rate: RATE,
        us_per_record,
        stages,
    })
}
