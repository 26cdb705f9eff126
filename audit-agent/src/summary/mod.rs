//! Summaries of records: `trace.rs`, the text `audit-agent trace` prints at the end.

pub(crate) mod trace;
