//! Command-line interface (clap). Each subcommand's logic lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::format::Format;

#[derive(Debug, Parser)]
#[command(
    name = "audit-agent",
    version,
    about = "Kernel-level audit trail for AI agents: what agents executed, opened and connected \
             to, as the kernel saw it"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the kernel programs and stream records of watched processes until Ctrl-C / SIGTERM.
    Watch(WatchArgs),
    /// Validate a configuration file without loading anything into the kernel.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Watch a cgroup v2 path (relative to the cgroup2 mount, e.g. /agents/support) and every
    /// cgroup below it, including ones created later. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Vec<String>,
    /// Watch processes of this user id (and their descendants). Repeatable.
    #[arg(long, value_name = "UID")]
    pub uid: Vec<u32>,
    /// Watch every process on the host except audit-agent itself (investigations).
    #[arg(long)]
    pub all: bool,
    /// Configuration file: agents (what to watch and how to attribute it), protected resources,
    /// policy rules. Command-line --cgroup/--uid/--all add to what it watches.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format; default: text on a terminal, json otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write records to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// Tuning of the kernel side.
#[derive(Debug, Args, Clone)]
pub struct KernelArgs {
    /// Ring buffer size in bytes (power of two, >= 4096); overrides the configuration.
    #[arg(long, value_name = "BYTES")]
    pub ring_buffer_bytes: Option<u32>,
}
