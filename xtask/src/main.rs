//! Build, run and test automation: `cargo xtask <command>`.
//!
//! Every command first makes sure the machine has what it needs (idempotent, quick when already
//! there): nightly `rust-src`, `bpf-linker` 0.10.4, and for tests Garage 2.5.0,
//! kubernetes-validate and systemd-analyze.

mod bench;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (rust-src, bpf-linker, Garage, apt packages).
    Setup {
        /// Also install what tests need (Garage, kubernetes-validate, systemd-analyze).
        #[arg(long)]
        test: bool,
        /// Also install what benchmarks need (bpftrace, auditd, DuckDB).
        #[arg(long)]
        bench: bool,
    },
    /// Build everything (eBPF programs are built and embedded by audit-agent/build.rs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run the agent on the embedded default (as root).
    Run {
        /// Arguments for `audit-agent` instead of the default.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit tests and the real-kernel / real-S3 integration tests (as root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Overhead, throughput/loss and query benchmarks vs no tracing, bpftrace, auditd and
    /// DuckDB; writes docs/benchmarks.md and target/bench/results.json (as root).
    Bench {
        /// Shorter samples and one pass (a smoke run, not for publishing).
        #[arg(long)]
        quick: bool,
        /// Only section 5 (start and stop), printed instead of written to docs/benchmarks.md.
        #[arg(long)]
        start_stop: bool,
        /// Only section 7 (claims reconciliation accuracy), printed.
        #[arg(long, conflicts_with = "start_stop")]
        claims: bool,
        /// Only section 8 (many agents on one node), written into docs/benchmarks.md in place
        /// of its last run.
        #[arg(long, conflicts_with_all = ["start_stop", "claims"])]
        agents: bool,
    },
    /// fmt --check and clippy -D warnings on the user-space crates.
    Lint,
}

fn main() -> anyhow::Result<()> {
    // `cargo xtask` runs this through `cargo run`, which points LD_LIBRARY_PATH at target/: every
    // program the bench or the tests start would inherit it, and each dynamically linked one
    // (`/bin/true` in the fork+exec loads) would probe ~80 library paths there before loading
    // libc — failed opens a watched load records. Cargo sets it again for what it runs itself.
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Cmd::Setup { test, bench } => {
            setup::build_tools()?;
            if test {
                setup::test_tools()?;
            }
            if bench {
                setup::bench_tools()?;
            }
            Ok(())
        }
        Cmd::Build { release } => {
            setup::build_tools()?;
            build(release)
        }
        Cmd::Run { args } => {
            setup::build_tools()?;
            build(true)?;
            let bin = root.join("target/release/audit-agent");
            let args = if args.is_empty() {
                // The daemon on the embedded default (deploy/config.default.toml): every process
                // on this host, trail in ./audit-trail, no S3 needed.
                vec!["run".into(), "--builtin-config".into()]
            } else {
                args
            };
            eprintln!("xtask: running {} {}", bin.display(), args.join(" "));
            let status = Command::new(&bin).args(&args).status()?;
            if !status.success() {
                bail!("audit-agent exited with {status}");
            }
            Ok(())
        }
        Cmd::Test { args } => {
            require_root("the kernel tests load eBPF programs and create cgroups")?;
            setup::build_tools()?;
            setup::test_tools()?;
            build(false)?;
            let bin = root.join("target/debug/audit-agent");
            let tools = setup::helm_and_kubectl()?;
            run(Command::new("cargo")
                .args(["test", "--no-fail-fast"])
                .args(&args)
                .env("AUDIT_AGENT_BIN", &bin)
                .env("AUDIT_TEST_TOOLS", &tools)
                // Two cores: keep concurrent kernel tests from starving each other.
                .env("RUST_TEST_THREADS", "2"))
        }
        Cmd::Bench {
            quick,
            start_stop,
            claims,
            agents,
        } => {
            require_root("the benchmarks load eBPF programs, create cgroups and start auditd")?;
            let part = if start_stop {
                bench::Part::StartStop
            } else if claims {
                bench::Part::Claims
            } else if agents {
                bench::Part::Agents
            } else {
                bench::Part::All
            };
            setup::build_tools()?;
            if matches!(part, bench::Part::All | bench::Part::Claims) {
                // What the agents of the claims scenarios (section 7) run.
                setup::scenario_tools()?;
            }
            if part == bench::Part::All {
                // The peers (bpftrace, auditd, DuckDB); the other parts measure only the agent.
                setup::bench_tools()?;
            }
            build(true)?;
            bench::run(&root, quick, part)
        }
        Cmd::Lint => {
            setup::build_tools()?;
            run(Command::new("cargo").args(["fmt", "--all", "--", "--check"]))?;
            run(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))
        }
    }
}

fn build(release: bool) -> anyhow::Result<()> {
    let mut cmd = Command::new("cargo");
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn require_root(why: &str) -> anyhow::Result<()> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        bail!("run this as root: {why}");
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
