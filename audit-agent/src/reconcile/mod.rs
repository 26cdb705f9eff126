//! Claimed vs observed: what agents said their tool calls did (`agent.claim` records) set
//! against what the kernel recorded.
//!
//! - Claims are grouped into **calls** (a call's `pre` and `post`, joined by session and call
//!   id; a span is a whole call). A call has a time window (from its first claim to its last,
//!   or a span's start to end, its clock aligned to the daemon's), the **runtime** that made it
//!   (the process that submitted the hook, above wrapper shells; an OTLP sender itself), and the
//!   effects it implies.
//! - Each effect is looked for in the records of the runtime and its descendants inside the
//!   window (with [`SLACK`] either side): a command by an exec whose arguments carry it
//!   (normalised: `cd X &&` and `VAR=value` prefixes dropped); a file read or written by an open
//!   (or a rename onto it) of that path, resolved against the call's cwd; a fetch by a
//!   connection whose destination names the URL's host (named destinations) on its port.
//! - A call is `substantiated` (every effect found), `contradicted` (found, but the kernel saw it
//!   fail while the runtime said it succeeded, or the other way round; or another file of the
//!   same name was used), `unsubstantiated` (an effect not found) or `not_locally_verifiable`
//!   (no effect the machine could show: a web search, a sub-agent, an MCP tool).
//! - Every record (protected ones by default) is `explained` — it lies in the process subtree of
//!   a call's command (a background command's later records too), or is a call's found effect —
//!   or `unexplained`. Records of the claim submissions themselves are left out.

mod lineage;
pub(crate) mod output;

use std::{sync::Arc, time::Duration};

use self::lineage::{Lineage, contains};
use crate::{
    claims::{Claim, Effect},
    event::{
        Action, Activity, ClaimPhase, ClaimRecord, ClaimSource, Detail, Event, Outcome, Target,
        Timestamp,
    },
    format::resource_text,
    trail::record::record_id,
};

/// Time allowed either side of a call's window (hooks run just before and after the tool).
pub(crate) const SLACK: Duration = Duration::from_secs(2);
/// How long a call with no `post` is taken to last.
const OPEN_CALL: Duration = Duration::from_secs(600);

/// What a call's claims turn out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CallOutcome {
    Substantiated,
    Contradicted,
    Unsubstantiated,
    NotLocallyVerifiable,
}

impl CallOutcome {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Substantiated => "substantiated",
            Self::Contradicted => "contradicted",
            Self::Unsubstantiated => "unsubstantiated",
            Self::NotLocallyVerifiable => "not_locally_verifiable",
        }
    }
}

/// What ties a record to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Signal {
    /// The record's process is the call's command or descends from it.
    Lineage,
    /// It happened inside the call's window.
    Time,
    /// It names what the call said (the command, the path, the host).
    Argument,
    /// It happened after the call ended, in the subtree of a command that outlives its call.
    Background,
}

/// One tool call as claimed, and what the kernel showed of it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CallFinding {
    /// The call id (`tool_use_id`, `gen_ai.tool.call.id`), else the id of its first claim.
    pub(crate) call: String,
    pub(crate) session: Option<String>,
    pub(crate) tool: String,
    pub(crate) source: &'static str,
    /// The `agent.claim` records of the call.
    pub(crate) claim_ids: Vec<String>,
    pub(crate) effects: Vec<String>,
    /// What the runtime said of the result (`null`: it did not say).
    pub(crate) claimed_success: Option<bool>,
    pub(crate) outcome: CallOutcome,
    /// The records that show the effects (or the failures that contradict them).
    pub(crate) evidence: Vec<String>,
    /// Why the outcome is what it is, in words.
    pub(crate) reasons: Vec<String>,
    #[serde(with = "crate::time::wire")]
    pub(crate) from: Timestamp,
    #[serde(with = "crate::time::wire")]
    pub(crate) to: Timestamp,
}

/// Why a record is explained: the call, the signals that tie it, and how strongly.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Explanation {
    pub(crate) call: String,
    pub(crate) signals: Vec<Signal>,
    pub(crate) confidence: f64,
}

/// One record, explained by calls or not.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RecordFinding {
    pub(crate) id: String,
    #[serde(with = "crate::time::wire")]
    pub(crate) time: Timestamp,
    pub(crate) action: &'static str,
    pub(crate) resource: String,
    pub(crate) pid: u32,
    pub(crate) protected: Vec<String>,
    pub(crate) explained: bool,
    pub(crate) explained_by: Vec<Explanation>,
}

/// Everything reconciliation found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Findings {
    pub(crate) calls: Vec<CallFinding>,
    pub(crate) records: Vec<RecordFinding>,
}

/// A call being assembled from its claims.
struct Call {
    key: String,
    claims: Vec<(Claim, String, Timestamp)>,
    /// The image whose activity the call speaks for.
    runtime: Option<Arc<str>>,
    from: Timestamp,
    to: Timestamp,
}

impl Call {
    fn first(&self) -> &Claim {
        &self.claims[0].0
    }

    /// The effects of its richest claim (a `post` repeats a `pre`'s input).
    fn effects(&self) -> Vec<Effect> {
        self.claims
            .iter()
            .map(|(c, _, _)| c.effects.clone())
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }

    fn claimed_success(&self) -> Option<bool> {
        self.claims.iter().rev().find_map(|(c, _, _)| c.success)
    }

    fn cwd(&self) -> Option<&[u8]> {
        self.claims.iter().find_map(|(c, _, _)| c.cwd.as_deref())
    }

    fn background(&self) -> bool {
        self.effects().iter().any(|e| {
            matches!(
                e,
                Effect::Exec {
                    background: true,
                    ..
                }
            )
        })
    }

    fn inside(&self, t: Timestamp) -> bool {
        t >= self.from - SLACK && t <= self.to + SLACK
    }
}

/// One kernel record, with what matching needs of it.
struct Rec<'a> {
    id: String,
    e: &'a Event,
    a: &'a Activity,
    image: Option<&'a str>,
}

/// Sets claims against records. `all`: report every record, not only protected ones.
pub(crate) fn reconcile(events: &[Event], all: bool) -> Findings {
    let lineage = Lineage::of(events);
    let (calls, submitters) = calls(events, &lineage);
    let recs: Vec<Rec<'_>> = events
        .iter()
        .filter_map(|e| {
            let a = e.activity()?;
            (a.action != Action::Claim).then(|| Rec {
                id: record_id(e),
                e,
                a,
                image: a.process.exec_id.as_deref(),
            })
        })
        .filter(|r| {
            // The claim submissions themselves (the hook process and what it did).
            !r.image
                .is_some_and(|i| submitters.iter().any(|s| lineage.descends(i, s)))
        })
        .collect();
    let mut findings = Findings::default();
    let mut roots: Vec<(usize, Vec<Arc<str>>)> = Vec::new();
    let mut matched: Vec<(usize, Vec<String>)> = Vec::new();
    // Executions of commands already a call's (two calls of the same command each get one).
    let mut taken = std::collections::HashSet::new();
    for (i, call) in calls.iter().enumerate() {
        let (finding, call_roots) = judge(call, &recs, &lineage, &mut taken);
        roots.push((i, call_roots));
        matched.push((i, finding.evidence.clone()));
        findings.calls.push(finding);
    }
    for r in &recs {
        if !all && r.a.protected.is_empty() {
            continue;
        }
        let by = explain(r, &calls, &roots, &matched, &lineage);
        findings.records.push(RecordFinding {
            id: r.id.clone(),
            time: r.e.time,
            action: r.a.action.name(),
            resource: resource_text(r.a),
            pid: r.a.process.pid,
            protected: r.a.protected.iter().map(|p| p.to_string()).collect(),
            explained: !by.is_empty(),
            explained_by: by,
        });
    }
    findings
}

/// The calls of the claim records, and the images that submitted claims.
fn calls(events: &[Event], lineage: &Lineage) -> (Vec<Call>, Vec<Arc<str>>) {
    let mut calls: Vec<Call> = Vec::new();
    let mut submitters: Vec<Arc<str>> = Vec::new();
    let clocks = ClockBounds::of(events);
    for e in events {
        let (Some(a), Some(c)) = (e.activity(), claim_of(e)) else {
            continue;
        };
        let submitter = a.process.exec_id.clone();
        if let Some(s) = &submitter
            && c.source != ClaimSource::Otlp
            && !submitters.contains(s)
        {
            submitters.push(Arc::clone(s));
        }
        let runtime = match (&submitter, c.source) {
            (Some(s), ClaimSource::Otlp) => Some(Arc::clone(s)),
            (Some(s), _) => lineage.runtime_of(s),
            (None, _) => None,
        };
        let id = record_id(e);
        let key = match &c.call_id {
            Some(call) => format!("{}\u{0}{call}", c.session.as_deref().unwrap_or("")),
            None => id.clone(),
        };
        let clock = a
            .process
            .exec_id
            .as_ref()
            .and_then(|s| clocks.get(s).copied());
        let (from, to) = window(c, e.time, clock);
        match calls.iter_mut().find(|x| x.key == key) {
            Some(call) => {
                call.from = call.from.min(from);
                call.to = call.to.max(to);
                call.claims.push((c.clone(), id, e.time));
            }
            None => calls.push(Call {
                key,
                claims: vec![(c.clone(), id, e.time)],
                runtime,
                from,
                to,
            }),
        }
    }
    for call in &mut calls {
        let has_end = call
            .claims
            .iter()
            .any(|(c, _, _)| matches!(c.phase, ClaimPhase::Post | ClaimPhase::Complete));
        if !has_end {
            call.to = call.from + OPEN_CALL;
        }
    }
    (calls, submitters)
}

/// How long after its end a span is taken to reach the daemon at most (an exporter's batch
/// delay and the export itself).
pub(crate) const MAX_EXPORT_DELAY: Duration = Duration::from_secs(10);

/// The bounds on how far a sender's clock is behind the daemon's (`θ`: daemon time = runtime
/// time + θ), from its spans' end times and when each was received: no span is received
/// before it ended (`θ ≤ received − end`, for each), and each is received within
/// [`MAX_EXPORT_DELAY`] of its end (`θ ≥ received − end − MAX_EXPORT_DELAY`).
#[derive(Clone, Copy)]
struct ClockBounds {
    lo: jiff::SignedDuration,
    hi: jiff::SignedDuration,
}

impl ClockBounds {
    /// The bounds of each sender of spans (by the image that sent them).
    fn of(events: &[Event]) -> crate::FastMap<Arc<str>, Self> {
        let mut delays: crate::FastMap<Arc<str>, (jiff::SignedDuration, jiff::SignedDuration)> =
            crate::FastMap::default();
        for e in events {
            let (Some(a), Some(c)) = (e.activity(), claim_of(e)) else {
                continue;
            };
            let (Some(end), Some(sender)) = (c.ended, &a.process.exec_id) else {
                continue;
            };
            let d = e.time.duration_since(end);
            let b = delays.entry(Arc::clone(sender)).or_insert((d, d));
            *b = (b.0.min(d), b.1.max(d));
        }
        let max = jiff::SignedDuration::try_from(MAX_EXPORT_DELAY).unwrap_or_default();
        delays
            .into_iter()
            .map(|(s, (min_d, max_d))| {
                (
                    s,
                    Self {
                        lo: (max_d - max).min(min_d),
                        hi: min_d,
                    },
                )
            })
            .collect()
    }
}

/// A claim's window: a span's start to end by the runtime's clock, moved to the daemon's by
/// every clock offset its sender's spans allow (as given, for a claim no process sent); a
/// hook's receipt time.
fn window(c: &Claim, received: Timestamp, clock: Option<ClockBounds>) -> (Timestamp, Timestamp) {
    match (c.started, c.ended, clock) {
        (Some(s), Some(e), Some(b)) => (s + b.lo, e + b.hi),
        // No sender to learn a clock from (a claims file): the times as given.
        (Some(s), Some(e), None) => (s, e),
        _ => (received, received),
    }
}

/// The claim a record carries, if it is one.
fn claim_of(e: &Event) -> Option<&Claim> {
    match &e.activity()?.resource.detail {
        Detail::Claim(c) => match c.as_ref() {
            ClaimRecord::Claim(c) => Some(c),
            ClaimRecord::Rejected { .. } => None,
        },
        _ => None,
    }
}

/// Whether the record's process is the runtime or descends from it. A claim no process
/// submitted (from a file) speaks for the whole scope.
fn of_runtime(r: &Rec<'_>, call: &Call, lineage: &Lineage) -> bool {
    match (r.image, &call.runtime) {
        (Some(i), Some(rt)) => lineage.descends(i, rt),
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

/// A call's finding, and the images its command started (whose records it explains).
fn judge(
    call: &Call,
    recs: &[Rec<'_>],
    lineage: &Lineage,
    taken: &mut std::collections::HashSet<String>,
) -> (CallFinding, Vec<Arc<str>>) {
    let first = call.first();
    let effects = call.effects();
    let claimed = call.claimed_success();
    let mut evidence = Vec::new();
    let mut reasons = Vec::new();
    let mut roots = Vec::new();
    let mut outcome = if effects.is_empty() {
        reasons.push(format!(
            "`{}` implies nothing the machine can show",
            first.tool
        ));
        CallOutcome::NotLocallyVerifiable
    } else {
        CallOutcome::Substantiated
    };
    for effect in &effects {
        let m = find(effect, call, recs, lineage, taken);
        evidence.extend(
            m.found
                .iter()
                .chain(&m.failed)
                .chain(&m.exit)
                .map(|r| r.id.clone()),
        );
        let verdict = verdict(effect, &m, claimed);
        roots.extend(m.roots);
        if let Some((o, why)) = verdict {
            reasons.push(why);
            outcome = worst(outcome, o);
        }
    }
    let finding = CallFinding {
        call: first
            .call_id
            .clone()
            .unwrap_or_else(|| call.claims[0].1.clone()),
        session: first.session.clone(),
        tool: first.tool.clone(),
        source: first.source.name(),
        claim_ids: call.claims.iter().map(|(_, id, _)| id.clone()).collect(),
        effects: effects.iter().map(effect_text).collect(),
        claimed_success: claimed,
        outcome,
        evidence,
        reasons,
        from: call.from,
        to: call.to,
    };
    (finding, roots)
}

/// The more serious of two outcomes.
fn worst(a: CallOutcome, b: CallOutcome) -> CallOutcome {
    use CallOutcome::*;
    let rank = |o| match o {
        Substantiated => 0,
        NotLocallyVerifiable => 1,
        Unsubstantiated => 2,
        Contradicted => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// What matching one effect found.
#[derive(Default)]
struct Matched<'r, 'a> {
    /// Records that did it (a command: that started it), successfully.
    found: Vec<&'r Rec<'a>>,
    /// Records that tried it and failed.
    failed: Vec<&'r Rec<'a>>,
    /// Records that did the same to another file of the same name.
    other: Vec<&'r Rec<'a>>,
    /// A command's result: the exit of the process that ran it whole.
    exit: Option<&'r Rec<'a>>,
    roots: Vec<Arc<str>>,
}

impl<'r, 'a> Matched<'r, 'a> {
    /// A record that did what the effect says: successfully, or not.
    fn add(&mut self, r: &'r Rec<'a>) {
        if matches!(r.a.outcome, Outcome::Success(_)) {
            self.found.push(r);
        } else {
            self.failed.push(r);
        }
    }

    /// Whether the kernel saw the effect succeed (`None`: it cannot tell, as for a command
    /// still running). A command succeeded when it exited 0.
    fn succeeded(&self) -> Option<bool> {
        match self.found.first() {
            Some(r) if r.a.action == Action::Exec => self
                .exit
                .map(|x| matches!(x.a.outcome, Outcome::Success(_))),
            Some(_) => Some(true),
            None => (!self.failed.is_empty()).then_some(false),
        }
    }

    /// The record that shows the failure.
    fn failure_record(&self) -> Option<&Rec<'_>> {
        self.exit
            .filter(|x| matches!(x.a.outcome, Outcome::Failure(_)))
            .or(self.failed.first().copied())
    }
}

/// The outcome an effect gives the call, with the reason (`None`: it is substantiated).
fn verdict(
    effect: &Effect,
    m: &Matched<'_, '_>,
    claimed: Option<bool>,
) -> Option<(CallOutcome, String)> {
    let what = effect_text(effect);
    if m.found.is_empty() && m.failed.is_empty() {
        if let Some(r) = m.other.first() {
            return Some((
                CallOutcome::Contradicted,
                format!(
                    "no {what}; the kernel saw {} instead ({})",
                    resource_text(r.a),
                    r.id
                ),
            ));
        }
        return Some((
            CallOutcome::Unsubstantiated,
            format!("no record shows {what} by the runtime or its commands during the call"),
        ));
    }
    match (claimed, m.succeeded()) {
        (Some(true), Some(false)) => {
            let r = m.failure_record()?;
            Some((
                CallOutcome::Contradicted,
                format!(
                    "the runtime said the call succeeded, but the kernel saw {what} fail: {} ({})",
                    failure(r.a),
                    r.id
                ),
            ))
        }
        (Some(false), Some(true)) => {
            let r = m.exit.unwrap_or(m.found[0]);
            Some((
                CallOutcome::Contradicted,
                format!(
                    "the runtime said the call failed, but the kernel saw {what} succeed ({})",
                    r.id
                ),
            ))
        }
        _ => None,
    }
}

fn failure(a: &Activity) -> String {
    match a.outcome {
        Outcome::Failure(code) => crate::format::failure_text(a, code),
        o => o.kind().name().to_string(),
    }
}

fn effect_text(e: &Effect) -> String {
    match e {
        Effect::Exec { command, .. } => format!("the command `{command}`"),
        Effect::Read { path } => format!("a read of {}", crate::escape::Escaped(path)),
        Effect::Write { path } => format!("a write of {}", crate::escape::Escaped(path)),
        Effect::Scan { path: Some(path) } => {
            format!("a search of {}", crate::escape::Escaped(path))
        }
        Effect::Scan { path: None } => "a search of the working directory".to_string(),
        Effect::Fetch { host, port, .. } => format!("a connection to {host}:{port}"),
    }
}

fn find<'r, 'a>(
    effect: &Effect,
    call: &Call,
    recs: &'r [Rec<'a>],
    lineage: &Lineage,
    taken: &mut std::collections::HashSet<String>,
) -> Matched<'r, 'a> {
    let candidates = recs
        .iter()
        .filter(|r| call.inside(r.e.time) && of_runtime(r, call, lineage));
    match effect {
        Effect::Exec { command, .. } => {
            find_command(command, call, candidates, recs, lineage, taken)
        }
        Effect::Read { path } | Effect::Write { path } => {
            let write = matches!(effect, Effect::Write { .. });
            let want = resolve(path, call.cwd());
            let mut m = Matched::default();
            for r in candidates {
                let Some(kind) = file_use(r.a) else { continue };
                if kind.writes != write && !(write && kind.renames) {
                    continue;
                }
                let paths = record_paths(r.a);
                if paths.contains(&want) {
                    m.add(r);
                } else if paths.iter().any(|p| basename(p) == basename(&want)) {
                    m.other.push(r);
                }
            }
            m
        }
        Effect::Scan { path } => {
            let want = resolve(path.as_deref().unwrap_or(b"."), call.cwd());
            let mut m = Matched::default();
            for r in candidates {
                let reads = file_use(r.a).is_some_and(|k| !k.writes);
                if reads && record_paths(r.a).iter().any(|p| below(p, &want)) {
                    m.add(r);
                }
            }
            m
        }
        Effect::Fetch { host, port, .. } => {
            let mut m = Matched::default();
            for r in candidates.filter(|r| r.a.action.is_network()) {
                let Target::Inet(ip, p) = r.a.resource.target else {
                    continue;
                };
                let named =
                    r.a.resource.host_names().any(|n| n == &**host) || ip.to_string() == **host;
                if p == *port && named {
                    m.add(r);
                }
            }
            m
        }
    }
}

/// A command's execution: of the execs carrying it, the first no other call has taken,
/// preferring one that ran, and one given the whole command (the shell it was handed to); with
/// the execs of it below that one, the images it started (whose records it explains) and how
/// it exited.
fn find_command<'r, 'a>(
    command: &str,
    call: &Call,
    candidates: impl Iterator<Item = &'r Rec<'a>>,
    recs: &'r [Rec<'a>],
    lineage: &Lineage,
    taken: &mut std::collections::HashSet<String>,
) -> Matched<'r, 'a> {
    let mut m = Matched::default();
    let want = normalize_command(command);
    let execs: Vec<&Rec<'_>> = candidates
        .filter(|r| r.a.action == Action::Exec && exec_matches(r.a, &want))
        .collect();
    // A program looked up along `PATH` is tried (and fails) in each directory before the one
    // that runs: an attempt that failed is the execution only when none succeeded.
    let free = || execs.iter().filter(|r| !taken.contains(&r.id));
    let ran = |r: &&&Rec<'_>| matches!(r.a.outcome, Outcome::Success(_));
    let Some(runner) = free()
        .filter(ran)
        .find(|r| carries_whole(r.a, &want))
        .or_else(|| free().find(ran))
        .or_else(|| free().next())
        .copied()
    else {
        return m;
    };
    let started = new_image(runner);
    for r in execs {
        let below = started
            .as_ref()
            .zip(r.image)
            .is_some_and(|(s, i)| lineage.descends(i, s));
        if r.id != runner.id && !below {
            continue;
        }
        // The same execution, further on (the shell exec'ing the program): no other call's.
        taken.insert(r.id.clone());
        m.add(r);
        if matches!(r.a.outcome, Outcome::Success(_)) {
            m.roots.extend(r.image.map(Arc::from));
            m.roots.extend(new_image(r));
        }
    }
    // A command that ran from the runtime's own image names no new image of its own: keep
    // only roots below the runtime.
    m.roots.retain(|root| Some(root) != call.runtime.as_ref());
    m.exit = started.and_then(|image| exit_of(runner, &image, recs, lineage));
    m
}

/// The image a successful exec started.
fn new_image(r: &Rec<'_>) -> Option<Arc<str>> {
    match &r.a.resource.detail {
        Detail::Exec {
            new_exec_id: Some(n),
            ..
        } if matches!(r.a.outcome, Outcome::Success(_)) => Some(Arc::clone(n)),
        _ => None,
    }
}

/// The exit of the process an exec ran in: in the image it started, or in one that image
/// went on to exec.
fn exit_of<'r, 'a>(
    exec: &Rec<'_>,
    image: &str,
    recs: &'r [Rec<'a>],
    lineage: &Lineage,
) -> Option<&'r Rec<'a>> {
    recs.iter().find(|x| {
        x.a.action == Action::Exit
            && x.a.process.pid == exec.a.process.pid
            && x.e.time >= exec.e.time
            && x.image.is_some_and(|i| lineage.descends(i, image))
    })
}

/// Whether `path` is `dir` or lies below it.
fn below(path: &[u8], dir: &[u8]) -> bool {
    path == dir
        || (path.starts_with(dir) && (dir.ends_with(b"/") || path.get(dir.len()) == Some(&b'/')))
}

/// A command as a shell would run it, without what only sets up its environment: leading
/// `cd DIR &&` / `cd DIR;` and `VAR=value` words.
pub(crate) fn normalize_command(c: &str) -> String {
    let mut rest = c.trim();
    loop {
        let before = rest;
        if let Some(after) = rest.strip_prefix("cd ") {
            match after
                .find("&&")
                .map(|i| (i, 2))
                .or_else(|| after.find(';').map(|i| (i, 1)))
            {
                Some((i, n)) => rest = after[i + n..].trim_start(),
                None => break,
            }
        }
        if let Some((word, after)) = rest.split_once(' ')
            && word.contains('=')
            && !word.starts_with('=')
            && word
                .split('=')
                .next()
                .is_some_and(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            rest = after.trim_start();
        }
        if rest == before {
            break;
        }
    }
    rest.to_string()
}

fn argv(a: &Activity) -> Option<&[Vec<u8>]> {
    match &a.resource.detail {
        Detail::Exec {
            argv: Some(argv), ..
        } => Some(argv),
        _ => None,
    }
}

/// Whether an exec's arguments carry the whole (normalised) command line.
fn carries_whole(a: &Activity, want: &str) -> bool {
    argv(a).is_some_and(|argv| {
        let joined: Vec<u8> = argv
            .iter()
            .flat_map(|x| x.iter().copied().chain([b' ']))
            .collect();
        contains(&joined, want.as_bytes())
    })
}

/// Whether an exec's arguments carry the command: the whole (normalised) command line, or its
/// program (by name) with every one of its words.
fn exec_matches(a: &Activity, want: &str) -> bool {
    let Some(argv) = argv(a) else {
        return false;
    };
    if carries_whole(a, want) {
        return true;
    }
    let mut words = want.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    let argv0 = argv.first().map(|a| basename(a)).unwrap_or_default();
    argv0 == basename(program.as_bytes())
        && words.all(|w| argv.iter().any(|x| x.as_slice() == w.as_bytes()))
}

/// How a record uses a file: whether it reads, writes, or renames onto its path.
struct FileUse {
    writes: bool,
    renames: bool,
}

fn file_use(a: &Activity) -> Option<FileUse> {
    const O_ACCMODE: u64 = 3;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    match &a.resource.detail {
        Detail::Open { flags, .. } => Some(FileUse {
            writes: flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0,
            renames: false,
        }),
        Detail::Change(_) if matches!(a.action, Action::Rename | Action::Truncate) => {
            Some(FileUse {
                writes: true,
                renames: a.action == Action::Rename,
            })
        }
        _ => None,
    }
}

/// The paths a file record names (a rename's new name too).
fn record_paths(a: &Activity) -> Vec<Vec<u8>> {
    a.resource.paths().map(<[u8]>::to_vec).collect()
}

fn basename(p: &[u8]) -> &[u8] {
    p.rsplit(|&b| b == b'/').next().unwrap_or(p)
}

/// `path` made absolute against `cwd` and normalised lexically (`.`, `..`, `//`).
fn resolve(path: &[u8], cwd: Option<&[u8]>) -> Vec<u8> {
    let joined = match (path.first(), cwd) {
        (Some(b'/'), _) | (_, None) => path.to_vec(),
        (_, Some(cwd)) => [cwd, b"/", path].concat(),
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in joined.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The calls that explain a record: its process lies in a call's command subtree, or it is a
/// call's found effect.
fn explain(
    r: &Rec<'_>,
    calls: &[Call],
    roots: &[(usize, Vec<Arc<str>>)],
    matched: &[(usize, Vec<String>)],
    lineage: &Lineage,
) -> Vec<Explanation> {
    let mut out = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        let key = || {
            call.first()
                .call_id
                .clone()
                .unwrap_or_else(|| call.claims[0].1.clone())
        };
        let in_subtree = r
            .image
            .is_some_and(|img| roots[i].1.iter().any(|root| lineage.descends(img, root)));
        let is_effect = matched[i].1.contains(&r.id);
        if !in_subtree && !is_effect {
            continue;
        }
        let mut signals = Vec::new();
        if in_subtree || of_runtime(r, call, lineage) {
            signals.push(Signal::Lineage);
        }
        if call.inside(r.e.time) {
            signals.push(Signal::Time);
        } else if in_subtree && (call.background() || r.e.time > call.to) {
            signals.push(Signal::Background);
        }
        if is_effect {
            signals.push(Signal::Argument);
        }
        let confidence = 0.35 * f64::from(u8::from(signals.contains(&Signal::Lineage)))
            + 0.25
                * f64::from(u8::from(
                    signals.contains(&Signal::Time) || signals.contains(&Signal::Background),
                ))
            + 0.4 * f64::from(u8::from(is_effect || in_subtree));
        out.push(Explanation {
            call: key(),
            signals,
            confidence: (confidence * 100.0).round() / 100.0,
        });
    }
    out
}

#[cfg(test)]
mod tests;
