//! The evidence report: one workflow (or agents) over a time window, for readers outside
//! engineering. It is built from two scans of the store — `verify` over the window (is the
//! trail complete and untouched?) and `query` for the scope's records and the window's gap
//! records — into [`Report`], a typed model that `html` renders as a self-contained HTML
//! page and that serializes as JSON for tools (docs/report.md).
//!
//! A *protected action* is a record whose resource belongs to a protected set, or whose policy
//! decision is `deny` or `review` (`crate::summary::is_protected_action`, which decides what a
//! record counts as for both summaries).

pub(crate) mod html;
mod integrity;
mod summary;

use std::{collections::BTreeMap, sync::Arc};

use anyhow::bail;
use serde::Serialize;
use serde_json::value::RawValue;

pub(crate) use self::integrity::{Integrity, Level};
use self::summary::Summaries;
pub(crate) use self::summary::{Bucket, Count, Failure};
use crate::{
    event::{Action, Decision, Event, Timestamp},
    read::query::{self, Filter, FilterArgs, Hit, QueryOptions},
    read::verify::{VerifyOptions, verify},
    time,
    trail::record,
    trail::store::Store,
};

/// The report's JSON schema name; later versions add fields, never rename them.
pub(crate) const SCHEMA: &str = "audit-agent/report/v1";

/// Whose actions, and when.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub(crate) workflows: Vec<String>,
    pub(crate) agents: Vec<String>,
    pub(crate) since: Timestamp,
    pub(crate) until: Timestamp,
}

pub(crate) struct Options {
    /// Require manifests to be signed by this key (hex).
    pub(crate) public_key: Option<String>,
    /// Progress bars on a terminal.
    pub(crate) progress: bool,
}

/// Everything a report shows.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) schema: &'static str,
    #[serde(with = "time::wire")]
    pub(crate) generated: Timestamp,
    pub(crate) store: String,
    pub(crate) scope: ScopeOut,
    pub(crate) integrity: Integrity,
    pub(crate) totals: Totals,
    /// Deny verdicts first, then review, then the rest; by time within each.
    pub(crate) protected_actions: Vec<Row>,
    pub(crate) activity: Activity,
    pub(crate) top_resources: Vec<Count>,
    pub(crate) top_destinations: Vec<Count>,
    /// Connections, sends, TLS hellos and HTTP requests by the host name of their destination.
    pub(crate) destinations_by_host: Vec<Count>,
    pub(crate) failed_attempts: Vec<Failure>,
    /// What the agents said they did, set against what was recorded (`None`: no agent filed a
    /// claim in the scope).
    pub(crate) claimed_vs_observed: Option<ClaimedVsObserved>,
    /// The records behind every protected action and gap, exactly as stored, with the object
    /// each was read from: a reviewer can re-check any row against the store.
    pub(crate) appendix: Vec<Evidence>,
}

/// Reconciliation of the scope (docs/claims.md): every call's outcome, and the protected
/// actions no claim explains.
#[derive(Debug, Serialize)]
pub(crate) struct ClaimedVsObserved {
    pub(crate) totals: crate::reconcile::output::Totals,
    pub(crate) calls: Vec<crate::reconcile::CallFinding>,
    pub(crate) unexplained: Vec<crate::reconcile::RecordFinding>,
}

impl ClaimedVsObserved {
    fn of(records: &[Read]) -> Option<Self> {
        let mut events: Vec<Event> = records.iter().map(|r| r.event.clone()).collect();
        if !events
            .iter()
            .any(|e| e.activity().is_some_and(|a| a.action == Action::Claim))
        {
            return None;
        }
        events.sort_by_key(|e| e.time);
        let f = crate::reconcile::reconcile(&events, false);
        Some(Self {
            totals: crate::reconcile::output::totals(&f),
            unexplained: f.records.into_iter().filter(|r| !r.explained).collect(),
            calls: f.calls,
        })
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ScopeOut {
    pub(crate) workflows: Vec<String>,
    pub(crate) agents_requested: Vec<String>,
    #[serde(with = "time::wire")]
    pub(crate) since: Timestamp,
    #[serde(with = "time::wire")]
    pub(crate) until: Timestamp,
    pub(crate) agents: Vec<AgentOut>,
    pub(crate) hosts: Vec<HostOut>,
    pub(crate) policy_versions: Vec<PolicyVersion>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AgentOut {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) owner: Option<String>,
    pub(crate) records: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct HostOut {
    pub(crate) name: String,
    pub(crate) boot_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PolicyVersion {
    pub(crate) version: String,
    #[serde(with = "time::wire")]
    pub(crate) first: Timestamp,
    #[serde(with = "time::wire")]
    pub(crate) last: Timestamp,
    pub(crate) records: u64,
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Totals {
    pub(crate) records: u64,
    pub(crate) protected_actions: u64,
    pub(crate) deny: u64,
    /// Denied by policy, and the kernel reports the action succeeded (audit-agent records
    /// verdicts; it does not block).
    pub(crate) deny_succeeded: u64,
    pub(crate) review: u64,
    pub(crate) failed: u64,
    /// Distinct process images (exec ids).
    pub(crate) processes: u64,
    /// Records the trail says were lost in the window (gap records).
    pub(crate) lost: u64,
}

/// One protected action.
#[derive(Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    #[serde(with = "time::wire")]
    pub(crate) time: Timestamp,
    pub(crate) agent: String,
    pub(crate) owner: Option<String>,
    pub(crate) pid: u32,
    /// The acting program, then the programs that started it, nearest first, as far as the
    /// scope's records know them.
    pub(crate) lineage: Vec<String>,
    pub(crate) action: &'static str,
    pub(crate) syscall: &'static str,
    pub(crate) resource: String,
    pub(crate) protected: Vec<String>,
    pub(crate) outcome: &'static str,
    pub(crate) errno: Option<String>,
    pub(crate) decision: Option<&'static str>,
    pub(crate) rule: Option<String>,
    pub(crate) policy_version: Option<String>,
}

/// Actions over time, by decision.
#[derive(Debug, Serialize)]
pub(crate) struct Activity {
    pub(crate) bucket_seconds: i64,
    pub(crate) buckets: Vec<Bucket>,
}

/// A stored record behind a row.
#[derive(Debug, Serialize)]
pub(crate) struct Evidence {
    pub(crate) id: String,
    /// The object key, relative to the store URL.
    pub(crate) object: String,
    pub(crate) record: Box<RawValue>,
}

/// A record read back: the typed event, and where it came from.
struct Read {
    event: Event,
    hit: Hit,
}

fn progress(msg: &str) {
    eprintln!("report: {msg}");
}

/// Builds the report of `scope` from `store`.
pub(crate) async fn build(store: &Store, scope: &Scope, opts: &Options) -> anyhow::Result<Report> {
    progress(&format!(
        "verifying the trail between {} and {}",
        time::rfc3339(scope.since),
        time::rfc3339(scope.until)
    ));
    let verified = verify(
        store,
        &VerifyOptions {
            since: Some(scope.since),
            until: Some(scope.until),
            public_key: opts.public_key.clone(),
            progress: opts.progress,
        },
    )
    .await?;
    if verified.streams.is_empty() {
        bail!(
            "cannot verify {}: it holds no manifests, so nothing in it can be shown to be \
             complete or untouched (check the store URL and prefix; `audit-agent verify` tells more)",
            store.display
        );
    }
    let checked: u64 = verified.streams.iter().map(|s| s.objects_checked).sum();
    progress(&format!(
        "verified {checked} object(s) in {} stream(s); reading records",
        verified.streams.len()
    ));
    let (records, stats) = records(store, scope, opts.progress).await?;
    let (gaps, _) = read(store, gap_filter(scope)?, opts.progress).await?;
    progress(&format!(
        "read {} object(s) ({} bytes, {} pruned); {} record(s) in scope, {} gap record(s)",
        stats.objects_read,
        stats.bytes_read,
        stats.objects_pruned,
        records.len(),
        gaps.len()
    ));
    if records.is_empty() {
        bail!("{}", empty_window(store, scope, opts).await?);
    }
    let integrity = Integrity::judge(verified, &gaps, opts.public_key.is_some());
    Ok(assemble(&store.display, scope, integrity, &records, &gaps))
}

fn filter(scope: &Scope, actions: Vec<String>) -> anyhow::Result<Filter> {
    Filter::new(FilterArgs {
        agents: scope.agents.clone(),
        workflows: scope.workflows.clone(),
        actions,
        since: Some(scope.since),
        until: Some(scope.until),
        ..Default::default()
    })
}

/// Every gap record of the window, whoever's activity it may hide.
fn gap_filter(scope: &Scope) -> anyhow::Result<Filter> {
    Filter::new(FilterArgs {
        actions: vec![Action::GAP.to_string()],
        since: Some(scope.since),
        until: Some(scope.until),
        ..Default::default()
    })
}

async fn records(
    store: &Store,
    scope: &Scope,
    progress: bool,
) -> anyhow::Result<(Vec<Read>, query::ScanStats)> {
    let actions = Action::ALL.iter().map(|a| a.name().to_string()).collect();
    read(store, filter(scope, actions)?, progress).await
}

async fn read(
    store: &Store,
    f: Filter,
    progress: bool,
) -> anyhow::Result<(Vec<Read>, query::ScanStats)> {
    let opts = QueryOptions {
        skip_corrupt: true,
        include_unlisted: false,
        concurrency: 8,
        progress,
    };
    let (hits, stats) = query::run(store, &f, &opts).await?;
    let reads = hits
        .into_iter()
        .map(|hit| {
            Ok(Read {
                event: record::read(&hit.line)?,
                hit,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((reads, stats))
}

/// Why the window is empty, with what the window does hold.
async fn empty_window(store: &Store, scope: &Scope, opts: &Options) -> anyhow::Result<String> {
    let everything = Filter::new(FilterArgs {
        since: Some(scope.since),
        until: Some(scope.until),
        ..Default::default()
    })?;
    let (all, _) = read(store, everything, opts.progress).await?;
    let mut seen = BTreeMap::<String, Vec<String>>::new();
    for r in &all {
        if let Some(agent) = r.event.activity().and_then(|a| a.agent.as_deref()) {
            let wf = agent.workflow.clone().unwrap_or_else(|| "(none)".into());
            let agents = seen.entry(wf).or_default();
            if !agents.contains(&agent.id) {
                agents.push(agent.id.clone());
            }
        }
    }
    let mut who = Vec::new();
    who.extend(scope.workflows.iter().map(|w| format!("workflow `{w}`")));
    who.extend(scope.agents.iter().map(|a| format!("agent `{a}`")));
    let window = format!(
        "between {} and {}",
        time::rfc3339(scope.since),
        time::rfc3339(scope.until)
    );
    let held = if seen.is_empty() {
        format!(
            "the store holds no records {window}: widen --since/--until (`audit-agent query {} \
             --limit 5` shows the newest records' times)",
            store.display
        )
    } else {
        let list: Vec<String> = seen
            .iter()
            .map(|(wf, agents)| format!("workflow {wf}: agents {}", agents.join(", ")))
            .collect();
        format!("the window holds records of: {}", list.join("; "))
    };
    Ok(format!(
        "no records of {} {window}; {held}",
        who.join(" or ")
    ))
}

/// Decision rank for ordering rows: deny, review, then the rest.
fn rank(d: Option<Decision>) -> u8 {
    match d {
        Some(Decision::Deny) => 0,
        Some(Decision::Review) => 1,
        _ => 2,
    }
}

fn assemble(
    store: &str,
    scope: &Scope,
    integrity: Integrity,
    records: &[Read],
    gaps: &[Read],
) -> Report {
    let mut s = Summaries::default();
    for r in records {
        s.add(&r.event);
    }
    let lineage = summary::Lineage::of(records.iter().map(|r| &r.event));
    let mut rows: Vec<(&Read, Row)> = records
        .iter()
        .filter(|r| {
            r.event
                .activity()
                .is_some_and(crate::summary::is_protected_action)
        })
        .filter_map(|r| Some((r, summary::row(&r.event, &lineage)?)))
        .collect();
    rows.sort_by_key(|(_, row)| (rank(row.decision.and_then(Decision::parse)), row.time));
    let appendix = rows
        .iter()
        .map(|(r, _)| *r)
        .chain(gaps)
        .map(evidence)
        .collect();
    let mut totals = s.totals();
    totals.lost = gaps
        .iter()
        .filter_map(|g| g.event.gap())
        .map(|g| g.lost)
        .sum();
    Report {
        schema: SCHEMA,
        generated: time::now(),
        store: store.to_string(),
        scope: ScopeOut {
            workflows: scope.workflows.clone(),
            agents_requested: scope.agents.clone(),
            since: scope.since,
            until: scope.until,
            agents: s.agents(),
            hosts: s.hosts(),
            policy_versions: s.policy_versions(),
        },
        integrity,
        totals,
        activity: s.activity(),
        top_resources: s.top_resources(),
        top_destinations: s.top_destinations(),
        destinations_by_host: s.destinations_by_host(),
        failed_attempts: s.failed_attempts(),
        claimed_vs_observed: ClaimedVsObserved::of(records),
        protected_actions: rows.into_iter().map(|(_, row)| row).collect(),
        appendix,
    }
}

fn evidence(r: &Read) -> Evidence {
    let record = std::str::from_utf8(&r.hit.line)
        .ok()
        .and_then(|l| RawValue::from_string(l.to_string()).ok())
        .unwrap_or_else(|| RawValue::from_string("null".into()).expect("null is JSON"));
    Evidence {
        id: record::record_id(&r.event),
        object: Arc::clone(&r.hit.object).to_string(),
        record,
    }
}

#[cfg(test)]
mod tests;
