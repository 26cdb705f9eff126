//! Reconciliation's findings for people and tools: the JSON document (`audit-agent/reconcile/v1`,
//! documented in docs/claims.md) and a table for a terminal.

use std::fmt::Write as _;

use serde::Serialize;

use super::{CallOutcome, Findings};
use crate::{event::Timestamp, time};

pub(crate) const SCHEMA: &str = "audit-agent/reconcile/v1";

/// Counts of the findings.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) substantiated: usize,
    pub(crate) contradicted: usize,
    pub(crate) unsubstantiated: usize,
    pub(crate) not_locally_verifiable: usize,
    pub(crate) records_explained: usize,
    pub(crate) records_unexplained: usize,
}

pub(crate) fn totals(f: &Findings) -> Totals {
    let count = |o| f.calls.iter().filter(|c| c.outcome == o).count();
    Totals {
        substantiated: count(CallOutcome::Substantiated),
        contradicted: count(CallOutcome::Contradicted),
        unsubstantiated: count(CallOutcome::Unsubstantiated),
        not_locally_verifiable: count(CallOutcome::NotLocallyVerifiable),
        records_explained: f.records.iter().filter(|r| r.explained).count(),
        records_unexplained: f.records.iter().filter(|r| !r.explained).count(),
    }
}

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    store: &'a str,
    scope: &'a Scope,
    /// Whether `records` holds every record of the scope or only protected ones.
    all_records: bool,
    totals: Totals,
    calls: &'a [super::CallFinding],
    records: &'a [super::RecordFinding],
}

/// What was reconciled: who and when.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Scope {
    pub(crate) agents: Vec<String>,
    pub(crate) workflows: Vec<String>,
    #[serde(with = "time::wire")]
    pub(crate) since: Timestamp,
    #[serde(with = "time::wire")]
    pub(crate) until: Timestamp,
}

pub(crate) fn json(
    f: &Findings,
    store: &str,
    scope: &Scope,
    all: bool,
) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&Document {
        schema: SCHEMA,
        store,
        scope,
        all_records: all,
        totals: totals(f),
        calls: &f.calls,
        records: &f.records,
    })
}

pub(crate) fn table(f: &Findings) -> String {
    let mut s = String::new();
    let t = totals(f);
    let _ = writeln!(
        s,
        "tool calls: {} substantiated, {} contradicted, {} unsubstantiated, {} not locally verifiable",
        t.substantiated, t.contradicted, t.unsubstantiated, t.not_locally_verifiable
    );
    for c in &f.calls {
        let _ = writeln!(s, "  {:<24} {:<14} {}", c.call, c.tool, c.outcome.name());
        for r in &c.reasons {
            let _ = writeln!(s, "      {r}");
        }
    }
    let _ = writeln!(
        s,
        "records: {} explained by a claim, {} unexplained",
        t.records_explained, t.records_unexplained
    );
    for r in f.records.iter().filter(|r| !r.explained) {
        let _ = writeln!(
            s,
            "  UNEXPLAINED {}  {:<16} {} [{}] ({})",
            crate::time::rfc3339(r.time),
            r.action,
            r.resource,
            r.protected.join(","),
            r.id
        );
    }
    s
}
