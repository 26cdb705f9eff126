//! What the report counts over the scope's records: agents, hosts, policy versions, actions
//! over time by decision, top resources and destinations, failed attempts, and each protected
//! action's row. What a record counts as (a protected action, denied, a destination, failed, and
//! how its failure is named) is decided in `crate::summary`, as for the trace's summary.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{Activity, AgentOut, HostOut, PolicyVersion, Row, Totals};
use crate::{
    event::{Action, Decision, Event, Timestamp},
    format::resource_text,
    summary::{
        decision, destination_host, error_text, failure, in_protected_set, is_address,
        is_protected_action, succeeded,
    },
    time,
    trail::record,
};

/// Entries in each top list.
const TOP: usize = 10;
/// Failed attempts listed (the total stays exact).
const FAILURES: usize = 25;
/// At most this many bars in the activity chart: the bucket grows until the records fit.
const MAX_BUCKETS: i64 = 48;
/// Bucket sizes to choose from, in seconds: a second up to a week.
const BUCKET_SIZES: [i64; 9] = [1, 10, 60, 300, 900, 3600, 6 * 3600, 86_400, 7 * 86_400];

/// Actions in one bucket of time, by decision.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Bucket {
    #[serde(with = "time::wire")]
    pub(crate) start: Timestamp,
    pub(crate) allow: u64,
    pub(crate) deny: u64,
    pub(crate) review: u64,
    /// Records without a verdict.
    pub(crate) none: u64,
}

impl Bucket {
    pub(crate) fn total(&self) -> u64 {
        self.allow + self.deny + self.review + self.none
    }
}

/// A resource or destination and how often it was acted on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Count {
    pub(crate) name: String,
    pub(crate) count: u64,
    pub(crate) denied: u64,
    pub(crate) protected: bool,
}

/// Failed attempts of one action on one resource with one error.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Failure {
    pub(crate) action: &'static str,
    pub(crate) resource: String,
    pub(crate) errno: String,
    pub(crate) count: u64,
    pub(crate) agents: Vec<String>,
}

/// The program each process image ran, and the image that started it.
pub(crate) struct Lineage(HashMap<String, (String, Option<String>)>);

/// Images followed up a lineage.
const LINEAGE_DEPTH: usize = 6;

fn program(p: &crate::event::Process) -> String {
    let name = p.exe.as_deref().unwrap_or(&p.comm);
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    String::from_utf8_lossy(base).into_owned()
}

impl Lineage {
    pub(crate) fn of<'a>(events: impl Iterator<Item = &'a Event>) -> Self {
        let mut m = HashMap::new();
        for a in events.filter_map(Event::activity) {
            if let Some(id) = &a.process.exec_id {
                m.entry(id.to_string()).or_insert_with(|| {
                    (
                        program(&a.process),
                        a.process.parent_exec_id.as_deref().map(str::to_string),
                    )
                });
            }
        }
        Self(m)
    }

    fn chain(&self, p: &crate::event::Process) -> Vec<String> {
        let mut out = vec![program(p)];
        let mut next = p.parent_exec_id.as_deref().map(str::to_string);
        while let Some(id) = next.take()
            && out.len() < LINEAGE_DEPTH
        {
            if let Some((name, parent)) = self.0.get(&id) {
                out.push(name.clone());
                next.clone_from(parent);
            }
        }
        out
    }
}

/// The row of a protected action.
pub(crate) fn row(e: &Event, lineage: &Lineage) -> Option<Row> {
    let a = e.activity()?;
    let agent = a.agent.as_deref();
    Some(Row {
        id: record::record_id(e),
        time: e.time,
        agent: e.agent_id().to_string(),
        owner: agent.and_then(|g| g.owner.clone()),
        pid: a.process.pid,
        lineage: lineage.chain(&a.process),
        action: a.action.name(),
        syscall: a.syscall,
        resource: resource_text(a),
        protected: a.protected.iter().map(ToString::to_string).collect(),
        outcome: a.outcome.kind().name(),
        errno: error_text(a),
        decision: a.verdict.as_ref().map(|v| v.decision.name()),
        rule: a
            .verdict
            .as_ref()
            .and_then(|v| v.rule.as_deref().map(str::to_string)),
        policy_version: a.verdict.as_ref().map(|v| v.version.to_string()),
    })
}

#[derive(Default)]
struct Tally {
    count: u64,
    denied: u64,
    protected: bool,
}

/// Counts over the scope's records.
#[derive(Default)]
pub(crate) struct Summaries {
    totals: Totals,
    exec_ids: BTreeSet<String>,
    agents: BTreeMap<String, AgentOut>,
    hosts: BTreeMap<String, BTreeSet<String>>,
    versions: BTreeMap<String, PolicyVersion>,
    /// (time, decision) of every record, bucketed at the end.
    times: Vec<(Timestamp, Option<Decision>)>,
    resources: HashMap<String, Tally>,
    destinations: HashMap<String, Tally>,
    /// Network actions by the name of their destination (lookups excluded).
    by_host: HashMap<String, Tally>,
    failures: BTreeMap<(&'static str, String, String), (u64, BTreeSet<String>)>,
}

impl Summaries {
    pub(crate) fn add(&mut self, e: &Event) {
        let Some(a) = e.activity() else { return };
        let decision = decision(a);
        self.count(e, a, decision);
        let agent = e.agent_id().to_string();
        self.agents
            .entry(agent.clone())
            .or_insert_with(|| {
                let g = a.agent.as_deref();
                AgentOut {
                    id: agent.clone(),
                    name: g.and_then(|g| g.name.clone()),
                    workflow: g.and_then(|g| g.workflow.clone()),
                    owner: g.and_then(|g| g.owner.clone()),
                    records: 0,
                }
            })
            .records += 1;
        self.hosts
            .entry(e.host.name.clone())
            .or_default()
            .insert(e.host.boot_id.clone());
        if let Some(v) = &a.verdict {
            let pv = self
                .versions
                .entry(v.version.to_string())
                .or_insert_with(|| PolicyVersion {
                    version: v.version.to_string(),
                    first: e.time,
                    last: e.time,
                    records: 0,
                });
            pv.first = pv.first.min(e.time);
            pv.last = pv.last.max(e.time);
            pv.records += 1;
        }
        let resource = resource_text(a);
        if a.action == Action::Exit {
            // An exit is no resource used; a failing one is a failure.
            self.failure(a, resource, agent);
            return;
        }
        let tallies = if is_address(a) {
            &mut self.destinations
        } else {
            &mut self.resources
        };
        let t = tallies.entry(resource.clone()).or_default();
        t.count += 1;
        t.denied += u64::from(decision == Some(Decision::Deny));
        t.protected |= in_protected_set(a);
        if let Some(host) = destination_host(a) {
            let t = self.by_host.entry(host).or_default();
            t.count += 1;
            t.denied += u64::from(decision == Some(Decision::Deny));
            t.protected |= in_protected_set(a);
        }
        self.failure(a, resource, agent);
    }

    fn failure(&mut self, a: &crate::event::Activity, resource: String, agent: String) {
        if let Some(why) = failure(a) {
            let key = (a.action.name(), resource, why);
            let f = self.failures.entry(key).or_default();
            f.0 += 1;
            f.1.insert(agent);
        }
    }

    fn count(&mut self, e: &Event, a: &crate::event::Activity, decision: Option<Decision>) {
        let t = &mut self.totals;
        t.records += 1;
        t.protected_actions += u64::from(is_protected_action(a));
        t.deny += u64::from(decision == Some(Decision::Deny));
        t.deny_succeeded += u64::from(decision == Some(Decision::Deny) && succeeded(a));
        t.review += u64::from(decision == Some(Decision::Review));
        t.failed += u64::from(failure(a).is_some());
        if let Some(id) = &a.process.exec_id {
            self.exec_ids.insert(id.to_string());
        }
        self.times.push((e.time, decision));
    }

    pub(crate) fn totals(&self) -> Totals {
        Totals {
            processes: self.exec_ids.len() as u64,
            ..self.totals
        }
    }

    pub(crate) fn agents(&self) -> Vec<AgentOut> {
        self.agents
            .values()
            .map(|a| AgentOut {
                id: a.id.clone(),
                name: a.name.clone(),
                workflow: a.workflow.clone(),
                owner: a.owner.clone(),
                records: a.records,
            })
            .collect()
    }

    pub(crate) fn hosts(&self) -> Vec<HostOut> {
        self.hosts
            .iter()
            .map(|(name, boots)| HostOut {
                name: name.clone(),
                boot_ids: boots.iter().cloned().collect(),
            })
            .collect()
    }

    pub(crate) fn policy_versions(&self) -> Vec<PolicyVersion> {
        let mut v: Vec<PolicyVersion> = self
            .versions
            .values()
            .map(|p| PolicyVersion {
                version: p.version.clone(),
                first: p.first,
                last: p.last,
                records: p.records,
            })
            .collect();
        v.sort_by_key(|p| p.first);
        v
    }

    /// Actions per bucket by decision, from the first record's bucket to the last's.
    pub(crate) fn activity(&self) -> Activity {
        let (Some(first), Some(last)) = (
            self.times.iter().map(|t| t.0).min(),
            self.times.iter().map(|t| t.0).max(),
        ) else {
            return Activity {
                bucket_seconds: 3600,
                buckets: Vec::new(),
            };
        };
        let span = last.as_second() - first.as_second();
        let size = BUCKET_SIZES
            .into_iter()
            .find(|s| span / s < MAX_BUCKETS)
            .unwrap_or(BUCKET_SIZES[BUCKET_SIZES.len() - 1]);
        let start = first.as_second().div_euclid(size) * size;
        let n = (last.as_second() - start) / size + 1;
        let mut buckets: Vec<Bucket> = (0..n)
            .map(|i| Bucket {
                start: Timestamp::from_second(start + i * size).unwrap_or(first),
                ..Default::default()
            })
            .collect();
        for (t, d) in &self.times {
            let Ok(i) = usize::try_from((t.as_second() - start) / size) else {
                continue;
            };
            let Some(b) = buckets.get_mut(i) else {
                continue;
            };
            match d {
                Some(Decision::Allow) => b.allow += 1,
                Some(Decision::Deny) => b.deny += 1,
                Some(Decision::Review) => b.review += 1,
                None => b.none += 1,
            }
        }
        Activity {
            bucket_seconds: size,
            buckets,
        }
    }

    fn top(tallies: &HashMap<String, Tally>) -> Vec<Count> {
        let mut v: Vec<Count> = tallies
            .iter()
            .map(|(name, t)| Count {
                name: name.clone(),
                count: t.count,
                denied: t.denied,
                protected: t.protected,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
        v.truncate(TOP);
        v
    }

    pub(crate) fn top_resources(&self) -> Vec<Count> {
        Self::top(&self.resources)
    }

    pub(crate) fn top_destinations(&self) -> Vec<Count> {
        Self::top(&self.destinations)
    }

    /// Network actions by destination host (the first name each record carries; `(no name)
    /// ADDRESS` when none is known).
    pub(crate) fn destinations_by_host(&self) -> Vec<Count> {
        Self::top(&self.by_host)
    }

    pub(crate) fn failed_attempts(&self) -> Vec<Failure> {
        let mut v: Vec<Failure> = self
            .failures
            .iter()
            .map(|((action, resource, errno), (count, agents))| Failure {
                action,
                resource: resource.clone(),
                errno: errno.clone(),
                count: *count,
                agents: agents.iter().cloned().collect(),
            })
            .collect();
        v.sort_by_key(|f| std::cmp::Reverse(f.count));
        v.truncate(FAILURES);
        v
    }
}
