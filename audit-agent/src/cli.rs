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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Load the kernel programs and stream records of watched processes until Ctrl-C / SIGTERM.
    Watch(WatchArgs),
    /// Run the daemon: capture continuously, spool, export to the configured store.
    Run(RunArgs),
    /// Run a command in a dedicated cgroup and record what it and its descendants do; print a
    /// summary. Exit status is the command's.
    Trace(TraceArgs),
    /// Records from a stored trail, filtered and sorted by time.
    Query(QueryArgs),
    /// Check a store: every manifest chain, every object's hash, sequence gaps, signatures.
    /// Exit status 0 only when everything verifies.
    Verify(VerifyArgs),
    /// An evidence report for one workflow or agent over a time window: a self-contained HTML
    /// page (or JSON) with the trail's integrity verdict, every protected action with its policy
    /// context, summaries and the records behind every row.
    Report(ReportArgs),
    /// Hand what an agent says it did to the audit agent: reads one hook payload (Claude Code's
    /// PreToolUse/PostToolUse, or the generic claim form) on stdin and submits it on the claims
    /// socket. Meant to be an agent runtime's hook command; prints nothing on success.
    Claim(ClaimArgs),
    /// Set what agents said their tool calls did (agent.claim records, or --claims FILE) against
    /// what the kernel recorded: each call substantiated, contradicted, unsubstantiated or not
    /// locally verifiable; each protected record explained by a call or not.
    Reconcile(ReconcileArgs),
    /// Validate a configuration file without loading anything into the kernel.
    CheckConfig {
        /// The configuration file.
        #[arg(required_unless_present = "builtin")]
        file: Option<PathBuf>,
        /// Print the embedded default configuration (`run --builtin-config`, and the policy of
        /// `trace` without `--config`) and check it.
        #[arg(long, conflicts_with = "file")]
        builtin: bool,
    },
    /// Create an Ed25519 key for signing manifests ([export] signing_key); prints the public key.
    Keygen {
        /// Where to write the private key (must not exist).
        file: PathBuf,
    },
    /// Benchmark support: attach empty programs to the same hooks until SIGINT/SIGTERM.
    #[command(hide = true)]
    BenchFloor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReconcileFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["workflow", "agent"])))]
pub(crate) struct ReconcileArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The workflow to reconcile (`agent.workflow`; repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) workflow: Vec<String>,
    /// The agent to reconcile (repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) agent: Vec<String>,
    /// Start of the window: RFC 3339 or a duration back from now (2h, 7d).
    #[arg(long, value_name = "T")]
    pub(crate) since: String,
    /// End of the window [default: now].
    #[arg(long, value_name = "T")]
    pub(crate) until: Option<String>,
    /// Claims from a file besides those in the trail: JSON lines of hook payloads or generic
    /// claims, or an OTLP/JSON traces export.
    #[arg(long, value_name = "FILE")]
    pub(crate) claims: Option<PathBuf>,
    /// Explain every record of the scope, not only protected ones.
    #[arg(long)]
    pub(crate) all: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: ReconcileFormat,
}

#[derive(Debug, Args)]
pub(crate) struct ClaimArgs {
    /// The claims socket ([claims] socket of the daemon's configuration; `trace` sets the
    /// variable for the command it runs).
    #[arg(
        long,
        value_name = "PATH",
        env = "AUDIT_AGENT_CLAIMS_SOCKET",
        default_value = "/run/audit-agent/claims.sock"
    )]
    pub(crate) socket: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// Configuration: policy rules and protected sets apply; what is watched is only the command
    /// [default: the built-in policy, see `check-config --builtin`].
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Attribute the records to this agent id [default: trace:<command name>].
    #[arg(long, value_name = "ID")]
    pub(crate) agent: Option<String>,
    /// Record format [default: text on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Write records to FILE [default: stderr, like strace].
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Also write the records to a store (same layout, spooling and manifests as the daemon).
    #[arg(long, value_name = "URL")]
    pub(crate) export: Option<String>,
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QueryFormat {
    Table,
    Json,
    Ocsf,
    Ecs,
}

#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Only this agent (repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) agent: Vec<String>,
    /// Only agents of this workflow (`agent.workflow`; repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) workflow: Vec<String>,
    /// Only this action: process.exec, file.open, network.connect, network.dns, network.tls,
    /// network.http, audit.gap, ... (repeatable).
    #[arg(long, value_name = "A")]
    pub(crate) action: Vec<String>,
    /// Only resources matching: a path glob (/etc/**), network pattern (10.0.0.0/8:443) or host
    /// pattern (api.stripe.com) (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub(crate) resource: Vec<String>,
    /// Only network records whose destination has a name matching: api.stripe.com,
    /// *.githubusercontent.com:443, **.github.com (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) host: Vec<String>,
    /// Only the record with this id (`STREAM-SEQ`, as reconcile and report findings name
    /// records; repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) id: Vec<String>,
    /// Only this decision: allow, deny, review (repeatable).
    #[arg(long, value_name = "D")]
    pub(crate) decision: Vec<String>,
    /// Only protected resources (of set NAME, if given).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "*")]
    pub(crate) protected: Option<String>,
    /// Only this outcome: success, failure, in_progress, unknown.
    #[arg(long, value_name = "O")]
    pub(crate) outcome: Option<String>,
    #[command(flatten)]
    pub(crate) time: TimeArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: QueryFormat,
    /// Show at most N records (the first N by time).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
    /// Report partition pruning and scan statistics on stderr.
    #[arg(long, short)]
    pub(crate) verbose: bool,
    /// Skip (and report) corrupt objects instead of failing.
    #[arg(long)]
    pub(crate) skip_corrupt: bool,
    /// Also read objects that no manifest lists (by default they are skipped and counted:
    /// planted, or sealed by a seal whose manifest never arrived).
    #[arg(long)]
    pub(crate) include_unlisted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    /// One self-contained page: opens offline, prints to PDF.
    Html,
    /// The same content for tools (schema `audit-agent/report/v1`).
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).multiple(true).args(["workflow", "agent"])))]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// The workflow to report on (`agent.workflow`; repeatable).
    #[arg(long, value_name = "NAME")]
    pub(crate) workflow: Vec<String>,
    /// The agent to report on (repeatable).
    #[arg(long, value_name = "ID")]
    pub(crate) agent: Vec<String>,
    /// Start of the window: RFC 3339 or a duration back from now (2h, 7d).
    #[arg(long, value_name = "T")]
    pub(crate) since: String,
    /// End of the window [default: now].
    #[arg(long, value_name = "T")]
    pub(crate) until: Option<String>,
    /// Where to write the report.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: PathBuf,
    #[arg(long, value_enum, default_value = "html")]
    pub(crate) format: ReportFormat,
    /// The Ed25519 public key the trail must be signed with (hex, or a file holding it); without
    /// it, signatures are reported as not checked against a trusted key.
    #[arg(long, value_name = "KEY")]
    pub(crate) public_key: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Configuration file [default: /etc/audit-agent/config.toml].
    #[arg(long, short, value_name = "FILE", conflicts_with = "builtin_config")]
    pub(crate) config: Option<PathBuf>,
    /// Use the embedded default: watch everything, store in ./audit-trail (no S3 needed).
    #[arg(long)]
    pub(crate) builtin_config: bool,
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
}

/// Which store to read.
#[derive(Debug, Args, Clone)]
pub(crate) struct StoreArgs {
    /// `s3://bucket/prefix` or `file:///path`.
    #[arg(value_name = "STORE_URL")]
    pub(crate) url: String,
    /// Take endpoint, region and allow_http from this configuration's [export] section
    /// (otherwise from AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, ...).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// A time window.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct TimeArgs {
    /// Start: RFC 3339 or a duration back from now (2h, 7d).
    #[arg(long, value_name = "T")]
    pub(crate) since: Option<String>,
    /// End: RFC 3339 or a duration back from now.
    #[arg(long, value_name = "T")]
    pub(crate) until: Option<String>,
}

impl TimeArgs {
    pub(crate) fn since(&self) -> anyhow::Result<Option<jiff::Timestamp>> {
        crate::time::bound(self.since.as_deref())
    }

    pub(crate) fn until(&self) -> anyhow::Result<Option<jiff::Timestamp>> {
        crate::time::bound(self.until.as_deref())
    }
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) time: TimeArgs,
    /// Require every manifest to be signed by this Ed25519 public key (hex, or a file with it).
    #[arg(long, value_name = "KEY")]
    pub(crate) public_key: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Watch a cgroup v2 path (relative to the cgroup2 mount, e.g. /agents/support) and every
    /// cgroup below it, including ones created later. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub(crate) cgroup: Vec<String>,
    /// Watch processes of this user id (and their descendants). Repeatable.
    #[arg(long, value_name = "UID")]
    pub(crate) uid: Vec<u32>,
    /// Watch every process on the host except audit-agent itself (investigations).
    #[arg(long)]
    pub(crate) all: bool,
    /// Configuration file: agents (what to watch and how to attribute it), protected resources,
    /// policy rules. Command-line --cgroup/--uid/--all add to what it watches.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Output format; default: text on a terminal, json otherwise.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// Write records to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) kernel: KernelArgs,
}

/// Tuning of the kernel side.
#[derive(Debug, Args, Clone)]
pub(crate) struct KernelArgs {
    /// Ring buffer size in bytes (power of two, >= 4096); overrides the configuration.
    #[arg(long, value_name = "BYTES")]
    pub(crate) ring_buffer_bytes: Option<u32>,
}
