//! Section 4: where the daemon's CPU goes. The daemon (release build, with line tables) takes the
//! throughput load at 100k opens/s under `perf record` with DWARF call graphs; each stage's share
//! of the daemon's samples (inclusive: the stage and what it calls) times the CPU per record the
//! throughput section measured without perf gives the stage's cost per record.

use std::{process::Command, time::Duration};

use anyhow::Context as _;

use super::{Env, Tracer, agent_config, results::Profile, results::StageCost, start_until};

/// The rate profiled (a throughput row's rate, so its CPU per record applies).
pub(super) const RATE: u64 = 100_000;

const SPOOL_WRITE: &str =
    "<audit_agent::export::spool::SpoolWriter as audit_agent::sink::Sink>::write";
const SPOOL_FLUSH: &str =
    "<audit_agent::export::spool::SpoolWriter as audit_agent::sink::Sink>::flush";
const SERIALIZE: &str = "audit_agent::trail::record::write_with";
const DEFLATE: &str = "zlib_rs::deflate::deflate";
const GZIP_CRC: &str = "flate2::crc::Crc::update";
const SHA256: &str = "audit_agent::digest::sha256_hex";

/// A stage: its name, what it covers, the symbols whose inclusive shares add up to it, and the
/// symbols (called from those) whose shares are taken out again because another stage counts
/// them.
struct Stage {
    name: &'static str,
    covers: &'static str,
    symbols: &'static [&'static str],
    net_of: &'static [&'static str],
}

const STAGES: [Stage; 10] = [
    Stage {
        name: "ring buffer",
        covers: "reading kernel records",
        symbols: &["audit_agent::capture::drain"],
        net_of: &[],
    },
    Stage {
        name: "decode",
        covers: "kernel bytes to records",
        symbols: &["audit_agent::decode::decode_parts"],
        net_of: &[],
    },
    Stage {
        name: "enrich",
        covers: "process table, paths, cgroups",
        symbols: &["audit_agent::enrich::Enricher::enrich"],
        net_of: &[],
    },
    Stage {
        name: "identity",
        covers: "agent attribution",
        symbols: &["<audit_agent::identity::IdentityStage as audit_agent::event::Stage>::apply"],
        net_of: &[],
    },
    Stage {
        name: "policy",
        covers: "protected sets and rules",
        symbols: &["<audit_agent::policy::PolicyStage as audit_agent::event::Stage>::apply"],
        net_of: &[],
    },
    Stage {
        name: "serialize",
        covers: "native JSON",
        symbols: &[SERIALIZE],
        net_of: &[],
    },
    Stage {
        name: "compress",
        covers: "gzip of segments as they are written (deflate and CRC)",
        symbols: &[DEFLATE, GZIP_CRC],
        net_of: &[],
    },
    Stage {
        name: "spool",
        covers: "appending compressed records to segment files (the kernel's copy into the page cache), rotating segments",
        symbols: &[SPOOL_WRITE, SPOOL_FLUSH],
        net_of: &[SERIALIZE, DEFLATE, GZIP_CRC],
    },
    Stage {
        name: "seal: sha256",
        covers: "object hashes (sealer thread)",
        symbols: &[SHA256],
        net_of: &[],
    },
    Stage {
        name: "seal: rest",
        covers: "reading closed segments, writing objects (fsync) and manifests",
        symbols: &["audit_agent::export::seal::Sealer::seal_ready"],
        net_of: &[SHA256],
    },
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
    // A symbol can be listed more than once (copies of one function at different addresses):
    // its share is their sum.
    let mut by_symbol: Vec<(String, f64)> = Vec::new();
    for (symbol, share) in text.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        let children: f64 = words.next()?.strip_suffix('%')?.parse().ok()?;
        let _self = words.next()?;
        let _kind = words.next()?;
        let rest: Vec<&str> = words.collect();
        // The symbol, then perf's trailing columns.
        let symbol = rest.join(" ");
        let symbol = symbol.trim_end_matches(" - -").trim().to_string();
        Some((symbol, children))
    }) {
        match by_symbol.iter_mut().find(|(s, _)| *s == symbol) {
            Some((_, total)) => *total += share,
            None => by_symbol.push((symbol, share)),
        }
    }
    Ok(by_symbol)
}

/// Profiles the daemon; `runs` is its CPU per record in runs without perf (µs), the median of
/// which prices the stages.
pub(super) fn profile(env: &Env, mut runs: Vec<f64>) -> anyhow::Result<Profile> {
    runs.sort_by(f64::total_cmp);
    let us_per_record = runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN);
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
    let share = |s: &str| shares.iter().find(|(n, _)| n == s).map_or(0.0, |x| x.1);
    let stages = STAGES
        .iter()
        .map(|st| {
            let percent = st.symbols.iter().map(|s| share(s)).sum::<f64>()
                - st.net_of.iter().map(|s| share(s)).sum::<f64>();
            if !st.symbols.iter().any(|s| shares.iter().any(|(n, _)| n == s)) {
                // A stage at 0.0 is more often a function that moved than one that is free.
                eprintln!(
                    "bench: warning: no sample of stage {:?} ({}): if the code moved, update STAGES \
                     in xtask/src/bench/profile.rs",
                    st.name,
                    st.symbols.join(", ")
                );
            }
            StageCost {
                stage: st.name.into(),
                covers: st.covers.into(),
                percent_of_samples: percent,
                us_per_record: percent / 100.0 * us_per_record,
            }
        })
        .collect::<Vec<_>>();
    Ok(Profile {
        rate: RATE,
        us_per_record,
        runs_us_per_record: runs,
        stages,
    })
}
