//! Query a stored trail: list only the partitions inside the agent and time filters (hierarchical
//! listing: agent, then day, then hour), fetch and decompress objects concurrently, filter
//! records, sort by time. Records are matched on the same typed values the pipeline produced —
//! action, decision and outcome enums, the resource as a policy [`Target`] matched by the
//! policy's own patterns.

use std::{borrow::Cow, collections::HashSet, sync::Arc};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use serde::Deserialize;

use crate::{
    event::{Action, Decision, OutcomeKind, Timestamp},
    policy::{host::HostPattern, pattern::Resources},
    time,
    trail::record::{self, ResourceIn},
    trail::{
        layout::{self, AUDIT_PARTITION, ObjectFormat},
        manifest,
        object::{MAX_MANIFEST_BYTES, MAX_OBJECT_BYTES, MAX_STORED_BYTES, ObjectLines},
        store::{Store, unusable},
    },
};

/// What to look for.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    pub(crate) agents: Vec<String>,
    pub(crate) workflows: Vec<String>,
    /// Action names (`audit.gap` included).
    pub(crate) actions: Vec<String>,
    pub(crate) decisions: Vec<Decision>,
    /// `Some(None)`: any protected set; `Some(Some(name))`: that set.
    pub(crate) protected: Option<Option<String>>,
    pub(crate) outcome: Option<OutcomeKind>,
    pub(crate) since: Option<Timestamp>,
    pub(crate) until: Option<Timestamp>,
    resources: Option<Resources>,
    hosts: Vec<HostPattern>,
    /// Record ids (`STREAM-SEQ`).
    ids: Vec<String>,
}

/// The command line's filters, before checking.
#[derive(Debug, Default, Clone)]
pub(crate) struct FilterArgs {
    pub(crate) agents: Vec<String>,
    pub(crate) workflows: Vec<String>,
    pub(crate) actions: Vec<String>,
    pub(crate) resources: Vec<String>,
    /// Host name patterns (`--host`).
    pub(crate) hosts: Vec<String>,
    /// Record ids (`--id`).
    pub(crate) ids: Vec<String>,
    pub(crate) decisions: Vec<String>,
    pub(crate) protected: Option<Option<String>>,
    pub(crate) outcome: Option<String>,
    pub(crate) since: Option<Timestamp>,
    pub(crate) until: Option<Timestamp>,
}

impl Filter {
    /// Validates names and compiles resource patterns (`/…` globs or network patterns).
    pub(crate) fn new(a: FilterArgs) -> anyhow::Result<Self> {
        for x in &a.actions {
            if Action::parse(x).is_none() && x != Action::GAP {
                bail!(
                    "unknown action `{x}` (one of {}, {})",
                    Action::names(),
                    Action::GAP
                );
            }
        }
        let decisions = a
            .decisions
            .iter()
            .map(|d| {
                Decision::parse(d).ok_or_else(|| {
                    anyhow::anyhow!("unknown decision `{d}` (one of {})", Decision::names())
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let outcome = a
            .outcome
            .as_deref()
            .map(|o| {
                OutcomeKind::parse(o).ok_or_else(|| {
                    anyhow::anyhow!("unknown outcome `{o}` (one of {})", OutcomeKind::names())
                })
            })
            .transpose()?;
        if let (Some(s), Some(u)) = (a.since, a.until)
            && s > u
        {
            bail!("--since is after --until");
        }
        let resources = (!a.resources.is_empty())
            .then(|| Resources::parse(a.resources.iter().map(String::as_str)))
            .transpose()
            .map_err(|e| anyhow::anyhow!("--resource: {e}"))?;
        let hosts = a
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(|e| anyhow::anyhow!("--host: {e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            agents: a.agents,
            workflows: a.workflows,
            actions: a.actions,
            decisions,
            protected: a.protected,
            outcome,
            since: a.since,
            until: a.until,
            resources,
            hosts,
            ids: a.ids,
        })
    }

    fn has_record_filters(&self) -> bool {
        !self.actions.is_empty()
            || !self.workflows.is_empty()
            || !self.decisions.is_empty()
            || self.protected.is_some()
            || self.outcome.is_some()
            || self.resources.is_some()
            || !self.hosts.is_empty()
            || !self.ids.is_empty()
    }

    /// Whether `[from, to)` can hold matching records.
    fn window_overlaps(&self, w: Option<(Timestamp, Timestamp)>) -> bool {
        let Some((start, end)) = w else {
            return true; // unknown layout: do not prune
        };
        !(self.since.is_some_and(|s| end <= s) || self.until.is_some_and(|u| start > u))
    }

    fn matches(&self, r: &Light<'_>) -> bool {
        let Some(t) = time::parse(r.time) else {
            return false;
        };
        if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
            return false;
        }
        if !self.ids.is_empty() {
            // Exactly the records asked for, gaps included.
            return self.ids.iter().any(|id| *id == r.id);
        }
        if r.action == Action::GAP {
            // A gap can hide any agent's activity: shown unless record-level filters exclude it.
            return !self.has_record_filters() || self.actions.iter().any(|a| a == Action::GAP);
        }
        let agent = r.agent.as_ref();
        let any = |want: &[String], have: Option<&str>| {
            want.is_empty() || want.iter().any(|w| Some(w.as_str()) == have)
        };
        any(&self.agents, agent.map(|a| a.id.as_ref()))
            && any(&self.workflows, agent.and_then(|a| a.workflow.as_deref()))
            && any(&self.actions, Some(r.action))
            && (self.decisions.is_empty()
                || r.policy
                    .as_ref()
                    .and_then(|p| Decision::parse(p.decision))
                    .is_some_and(|d| self.decisions.contains(&d)))
            && self.protected_matches(r)
            && self
                .outcome
                .is_none_or(|o| r.result.as_ref().map(|x| x.outcome) == Some(o.name()))
            && self.resource_matches(r)
    }

    fn protected_matches(&self, r: &Light<'_>) -> bool {
        let sets = r.protected.as_deref().unwrap_or_default();
        match &self.protected {
            None => true,
            Some(None) => !sets.is_empty(),
            Some(Some(name)) => sets.iter().any(|x| x == name),
        }
    }

    fn resource_matches(&self, r: &Light<'_>) -> bool {
        if self.resources.is_none() && self.hosts.is_empty() {
            return true;
        }
        let (Some(action), Some(res)) = (Action::parse(r.action), &r.resource) else {
            return false;
        };
        let Ok(res) = record::resource_in(action, res) else {
            return false;
        };
        self.resources.as_ref().is_none_or(|x| x.matches(&res))
            && (self.hosts.is_empty() || self.host_matches(action, &res))
    }

    /// Whether a host pattern matches a name of the record's destination (a lookup: the name
    /// asked for, without a port).
    fn host_matches(&self, action: Action, r: &crate::event::Resource) -> bool {
        let port = match r.target {
            crate::event::Target::Inet(_, p) if action != Action::Dns => Some(p),
            _ => None,
        };
        self.hosts
            .iter()
            .any(|h| r.host_names().any(|n| h.matches(n, port)))
    }
}

/// Just the fields filters need, borrowed from the line (much cheaper than a whole event).
#[derive(Deserialize)]
struct Light<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    time: &'a str,
    seq: u64,
    #[serde(borrow)]
    action: &'a str,
    #[serde(borrow, default)]
    agent: Option<LightAgent<'a>>,
    #[serde(borrow, default)]
    policy: Option<LightPolicy<'a>>,
    #[serde(borrow, default)]
    protected: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    result: Option<LightResult<'a>>,
    #[serde(borrow, default)]
    resource: Option<ResourceIn<'a>>,
}

#[derive(Deserialize)]
struct LightAgent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow, default)]
    workflow: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct LightPolicy<'a> {
    #[serde(borrow)]
    decision: &'a str,
}

#[derive(Deserialize)]
struct LightResult<'a> {
    #[serde(borrow)]
    outcome: &'a str,
}

/// A matching record: its sort key, its exact stored line, and the object it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    time: String,
    seq: u64,
    pub(crate) line: Vec<u8>,
    pub(crate) object: Arc<str>,
}

#[cfg(test)]
impl Hit {
    pub(crate) fn for_test(line: Vec<u8>, object: &str) -> Self {
        Self {
            time: String::new(),
            seq: 0,
            line,
            object: Arc::from(object),
        }
    }
}

/// How the scan went.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScanStats {
    pub(crate) objects_read: u64,
    /// Objects in partitions pruned by the agent/time filters (not read).
    pub(crate) objects_pruned: u64,
    pub(crate) partitions_pruned: u64,
    pub(crate) records_scanned: u64,
    pub(crate) bytes_read: u64,
    pub(crate) corrupt: Vec<String>,
    /// Objects that could match but no manifest lists (not read unless asked).
    pub(crate) unlisted: Vec<String>,
}

pub(crate) struct QueryOptions {
    pub(crate) skip_corrupt: bool,
    /// Also read objects no manifest lists.
    pub(crate) include_unlisted: bool,
    pub(crate) concurrency: usize,
    pub(crate) progress: bool,
}

/// (sub-directories, objects) directly under `dir`.
async fn list_dir(store: &Store, dir: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let res = store
        .inner
        .list_with_delimiter(Some(&store.path(dir)))
        .await
        .map_err(|e| unusable(store, &e))?;
    let dirs = res
        .common_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    let files = res.objects.iter().map(|o| o.location.to_string()).collect();
    Ok((dirs, files))
}

/// The agent directories a filter can match.
async fn agent_dirs(store: &Store, f: &Filter) -> anyhow::Result<Vec<String>> {
    let native = ObjectFormat::Native;
    if f.agents.is_empty() {
        let (dirs, _) = list_dir(store, native.dir()).await?;
        return Ok(dirs
            .into_iter()
            .filter(|d| {
                layout::dir_value(d, "agent_id")
                    .and_then(layout::decode)
                    .is_some_and(|a| !a.starts_with('_') || a == AUDIT_PARTITION)
            })
            .collect());
    }
    let mut dirs: Vec<String> = f
        .agents
        .iter()
        .map(|a| layout::agent_dir(native, a))
        .collect();
    if !f.has_record_filters() {
        dirs.push(layout::agent_dir(native, AUDIT_PARTITION));
    }
    Ok(dirs)
}

/// The objects the store's manifests list: records sealed and committed to a chain. An object
/// outside every manifest was planted, or uploaded by a seal whose manifest never followed;
/// `query` leaves it out unless asked (and `verify` reports it).
async fn listed_objects(store: &Store) -> anyhow::Result<HashSet<String>> {
    let keys: Vec<String> = store
        .inner
        .list(Some(&store.path(layout::MANIFESTS)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .map_err(|e| unusable(store, &e))?;
    let bodies: Vec<_> = stream::iter(
        keys.iter()
            .filter(|k| layout::parse_manifest_key(k).is_some()),
    )
    .map(|k| store.get_bounded(k, MAX_MANIFEST_BYTES))
    .buffer_unordered(16)
    .collect()
    .await;
    let mut listed = HashSet::new();
    for b in bodies {
        if let Ok(Some(bytes)) = b
            && let Ok(m) = manifest::decode(&bytes)
        {
            listed.extend(m.body.objects.into_iter().map(|o| o.key));
        }
    }
    Ok(listed)
}

/// Lists object keys in partitions that can match.
async fn plan(store: &Store, f: &Filter, stats: &mut ScanStats) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for adir in agent_dirs(store, f).await? {
        for day in list_dir(store, &adir).await?.0 {
            let date = layout::dir_value(&day, "dt")
                .unwrap_or_default()
                .to_string();
            let day_in = f.window_overlaps(time::day_window(&date));
            for h in list_dir(store, &day).await?.0 {
                let hour = layout::dir_value(&h, "hour").unwrap_or_default();
                let files = list_dir(store, &h).await?.1;
                if day_in && f.window_overlaps(time::hour_window(&date, hour)) {
                    keys.extend(files.into_iter().filter(|k| layout::is_records_object(k)));
                } else {
                    stats.partitions_pruned += 1;
                    stats.objects_pruned += files.len() as u64;
                }
            }
        }
    }
    Ok(keys)
}

fn scan_object(key: &str, gz: &[u8], f: &Filter, hits: &mut Vec<Hit>) -> Result<u64, String> {
    let object: Arc<str> = Arc::from(key);
    let mut lines = ObjectLines::new(gz, MAX_OBJECT_BYTES);
    let mut n = 0;
    while let Some(line) = lines.next_line().map_err(|e| e.to_string())? {
        n += 1;
        let light: Light<'_> =
            serde_json::from_slice(line).map_err(|e| format!("record {n}: not a record: {e}"))?;
        if f.matches(&light) {
            hits.push(Hit {
                time: light.time.to_string(),
                seq: light.seq,
                line: line.to_vec(),
                object: object.clone(),
            });
        }
    }
    Ok(n)
}

/// One scanned object: its key, its compressed size, and (records scanned, hits) or the reason it
/// could not be read.
type ObjectScan = (String, usize, Result<(u64, Vec<Hit>), String>);

async fn scan(store: &Store, key: String, f: Arc<Filter>) -> anyhow::Result<ObjectScan> {
    let bytes = match store.get_bounded(&key, MAX_STORED_BYTES).await {
        Ok(Some(b)) => b,
        Ok(None) => anyhow::bail!("object {key} vanished while querying"),
        Err(crate::trail::store::GetError::TooLarge(n)) => {
            let why = format!("{n} bytes, more than any object audit-agent writes");
            return Ok((key, 0, Err(why)));
        }
        Err(crate::trail::store::GetError::Store(e)) => return Err(e),
    };
    let len = bytes.len();
    let object = key.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        let mut hits = Vec::new();
        scan_object(&object, &bytes, &f, &mut hits).map(|n| (n, hits))
    })
    .await
    .context("scan task")?;
    Ok((key, len, scanned))
}

/// Runs a query; returns matches sorted by (time, seq).
pub(crate) async fn run(
    store: &Store,
    f: &Filter,
    opts: &QueryOptions,
) -> anyhow::Result<(Vec<Hit>, ScanStats)> {
    let mut stats = ScanStats::default();
    let mut keys = plan(store, f, &mut stats).await?;
    if !opts.include_unlisted {
        let listed = listed_objects(store).await?;
        let (read, unlisted) = keys.into_iter().partition(|k| listed.contains(k));
        keys = read;
        stats.unlisted = unlisted;
    }
    let bar = (opts.progress && keys.len() > 20).then(|| {
        let b = indicatif::ProgressBar::new(keys.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("query {bar:40} {pos}/{len} objects")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let f = Arc::new(f.clone());
    let results: Vec<anyhow::Result<ObjectScan>> = stream::iter(keys)
        .map(|key| scan(store, key, f.clone()))
        .buffer_unordered(opts.concurrency.max(1))
        .inspect(|_| {
            if let Some(b) = &bar {
                b.inc(1);
            }
        })
        .collect()
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut hits = Vec::new();
    for r in results {
        let (key, len, scanned) = r?;
        stats.objects_read += 1;
        stats.bytes_read += len as u64;
        match scanned {
            Ok((n, h)) => {
                stats.records_scanned += n;
                hits.extend(h);
            }
            Err(why) if opts.skip_corrupt => {
                tracing::warn!(object = %key, error = %why, "corrupt object skipped");
                stats.corrupt.push(format!("{key}: {why}"));
            }
            Err(why) => bail!(
                "corrupt object {key}: {why} (run `audit-agent verify`, or pass --skip-corrupt to skip it)"
            ),
        }
    }
    hits.sort_by(|a, b| (a.time.as_str(), a.seq).cmp(&(b.time.as_str(), b.seq)));
    Ok((hits, stats))
}

#[cfg(test)]
mod tests;
