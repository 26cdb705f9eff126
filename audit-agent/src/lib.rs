//! audit-agent: a kernel-level audit trail for AI agents.
//!
//! The pipeline reads top to bottom, one module per stage:
//!
//! ```text
//! capture  -> decode -> enrich -> (identity, policy) -> sink
//! kernel      bytes     Record    verdicts              stdout / spool -> export
//! ```
//!
//! `main.rs` parses the command line and wires these together through `commands/`.

pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod escape;
pub mod export;
pub mod format;
pub mod identity;
pub mod latency;
pub mod linux;
pub mod logging;
pub mod pipeline;
pub mod policy;
pub mod query;
pub mod record;
pub mod sink;
pub mod summary;
pub mod telemetry;
pub mod timefmt;
pub mod versioned;
