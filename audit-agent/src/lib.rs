//! audit-agent: a kernel-level audit trail for AI agents.
//!
//! The pipeline reads top to bottom, one module per stage:
//!
//! ```text
//! capture -> decode -> enrich -> identity, policy -> sink (spool -> export)
//! kernel     bytes     Event      Stage               format/ turns events into text
//! ```
//!
//! `event` defines the typed event every stage works on; `settings` compiles the configuration
//! once into what the stages run on; `commands/` wires them per subcommand. Everything is private
//! to the crate: [`main`] is the only entry point.

mod bounded;
mod capture;
mod claims;
mod cli;
mod commands;
mod config;
mod decode;
mod digest;
mod enrich;
mod escape;
mod event;
mod export;
mod format;
mod identity;
mod latency;
mod linux;
mod logging;
mod names;
mod pipeline;
mod policy;
mod read;
mod reconcile;
mod settings;
mod sink;
mod summary;
mod telemetry;
mod time;
mod trail;
mod versioned;
mod wire;

use clap::Parser as _;

/// Hash maps looked up for every record (process table, cgroup paths, lineage, open segments):
/// foldhash, hashbrown's own default, instead of std's SipHash, which was 2–3% of the daemon's
/// CPU under load. Its seed is random per process, as std's is; the keys are ids the daemon
/// derives (pids, cgroup ids, exec ids, partitions), bounded by the maps' own limits.
pub(crate) type FastMap<K, V> = foldhash::HashMap<K, V>;

use crate::cli::{Cli, Command};

/// The soft limit on open files up to the hard one (1024 by default under systemd, far below
/// what the kernel allows): the spool keeps a file open per agent's open segment, within half of
/// what the limit leaves (`export::partitions`).
pub(crate) fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit on this process, with a struct read from the kernel.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Parses the command line, sets up logging, runs the chosen command; returns the exit code.
pub fn main() -> std::process::ExitCode {
    // glibc gives every busy thread its own malloc arena (~9 MB resident each here); two are
    // plenty for this workload and keep the agent's memory small and predictable.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    raise_open_files_limit();
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("audit-agent: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("audit-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs one command; `Ok(false)` is a clean failure (verify found problems).
async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Watch(args) => commands::watch::run(args).await.map(|()| true),
        Command::Run(args) => commands::run::run(args).await.map(|()| true),
        Command::Trace(args) => std::process::exit(commands::trace::run(args).await?),
        Command::Query(args) => commands::query::run(args).await.map(|()| true),
        Command::Verify(args) => commands::verify::run(args).await,
        Command::Report(args) => commands::report::run(args).await,
        Command::Reconcile(args) => commands::reconcile::run(args).await.map(|()| true),
        Command::Claim(args) => commands::claim::run(&args).await.map(|()| true),
        Command::CheckConfig { file, builtin } => {
            commands::check_config::run(file.as_deref(), builtin).map(|()| true)
        }
        Command::Keygen { file } => commands::keygen::run(&file).map(|()| true),
        Command::BenchFloor => {
            let stop = commands::shutdown_signal();
            let _programs = capture::attach_floor(capture::cgroup::Cgroup2::find()?.mount())?;
            tracing::info!("ready: floor programs attached");
            stop.await;
            Ok(true)
        }
    }
}
