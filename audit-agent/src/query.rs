//! Query a stored trail: list only the partitions inside the agent and time filters (hierarchical
//! listing: agent, then day, then hour), fetch and decompress objects concurrently, filter
//! records, sort by time.

use std::{borrow::Cow, io::Read as _, net::IpAddr, sync::Arc};

use anyhow::{Context as _, bail};
use futures::{StreamExt as _, stream};
use serde::Deserialize;

use crate::{
    export::{
        layout::{AUDIT_PARTITION, date_hour, decode, encode},
        store::{Store, unreachable_error},
    },
    policy::pattern::{NetPattern, PathSet},
    record::{action, decision, outcome},
};

/// What to look for.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub agents: Vec<String>,
    pub actions: Vec<String>,
    pub decisions: Vec<String>,
    /// `Some(None)`: any protected set; `Some(Some(name))`: that set.
    pub protected: Option<Option<String>>,
    pub outcome: Option<String>,
    pub since_ns: Option<i128>,
    pub until_ns: Option<i128>,
    paths: Option<PathSet>,
    nets: Vec<NetPattern>,
}

impl Filter {
    /// Validates names and compiles resource patterns (`/…` globs or network patterns).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        agents: Vec<String>,
        actions: Vec<String>,
        resources: Vec<String>,
        decisions: Vec<String>,
        protected: Option<Option<String>>,
        outcome: Option<String>,
        since_ns: Option<i128>,
        until_ns: Option<i128>,
    ) -> anyhow::Result<Self> {
        for a in &actions {
            if !action::ALL.contains(&a.as_str()) && a != action::GAP {
                bail!(
                    "unknown action `{a}` (one of process.exec, file.open, network.connect, audit.gap)"
                );
            }
        }
        for d in &decisions {
            if ![decision::ALLOW, decision::DENY, decision::REVIEW].contains(&d.as_str()) {
                bail!("unknown decision `{d}` (one of allow, deny, review)");
            }
        }
        if let Some(o) = &outcome
            && ![
                outcome::SUCCESS,
                outcome::FAILURE,
                outcome::IN_PROGRESS,
                outcome::UNKNOWN,
            ]
            .contains(&o.as_str())
        {
            bail!("unknown outcome `{o}` (one of success, failure, in_progress, unknown)");
        }
        if let (Some(s), Some(u)) = (since_ns, until_ns)
            && s > u
        {
            bail!("--since is after --until");
        }
        let globs: Vec<&str> = resources
            .iter()
            .map(String::as_str)
            .filter(|r| r.starts_with('/'))
            .collect();
        let paths = if globs.is_empty() {
            None
        } else {
            Some(PathSet::new(globs).map_err(|e| anyhow::anyhow!("--resource: {e}"))?)
        };
        let nets = resources
            .iter()
            .filter(|r| !r.starts_with('/'))
            .map(|r| NetPattern::parse(r).map_err(|e| anyhow::anyhow!("--resource: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            agents,
            actions,
            decisions,
            protected,
            outcome,
            since_ns,
            until_ns,
            paths,
            nets,
        })
    }

    fn has_record_filters(&self) -> bool {
        !self.actions.is_empty()
            || !self.decisions.is_empty()
            || self.protected.is_some()
            || self.outcome.is_some()
            || self.paths.is_some()
            || !self.nets.is_empty()
    }

    /// Whether the hour partition `dt`/`hour` can hold matching records.
    fn hour_in_window(&self, dt: &str, hour: &str) -> bool {
        let Some(start) = crate::timefmt::parse_rfc3339(&format!("{dt}T{hour}:00:00Z")) else {
            return true; // unknown layout: do not prune
        };
        let end = start + 3_600_000_000_000;
        !(self.since_ns.is_some_and(|s| end <= s) || self.until_ns.is_some_and(|u| start > u))
    }

    fn day_in_window(&self, dt: &str) -> bool {
        let Some(start) = crate::timefmt::parse_rfc3339(&format!("{dt}T00:00:00Z")) else {
            return true;
        };
        let end = start + 86_400_000_000_000;
        !(self.since_ns.is_some_and(|s| end <= s) || self.until_ns.is_some_and(|u| start > u))
    }

    fn matches(&self, r: &Light<'_>) -> bool {
        let t = crate::timefmt::parse_rfc3339(r.time).unwrap_or(0);
        if self.since_ns.is_some_and(|s| t < s) || self.until_ns.is_some_and(|u| t > u) {
            return false;
        }
        if r.action == action::GAP {
            // A gap can hide any agent's activity: shown unless record-level filters exclude it.
            return !self.has_record_filters() || self.actions.iter().any(|a| a == action::GAP);
        }
        if !self.agents.is_empty()
            && !self
                .agents
                .iter()
                .any(|a| Some(a.as_str()) == r.agent.as_ref().map(|a| a.id.as_ref()))
        {
            return false;
        }
        if !self.actions.is_empty() && !self.actions.iter().any(|a| a == r.action) {
            return false;
        }
        if !self.decisions.is_empty()
            && !self
                .decisions
                .iter()
                .any(|d| Some(d.as_str()) == r.policy.as_ref().map(|p| p.decision))
        {
            return false;
        }
        match &self.protected {
            Some(None) if r.protected.as_ref().is_none_or(|p| p.is_empty()) => return false,
            Some(Some(name))
                if !r
                    .protected
                    .as_ref()
                    .is_some_and(|p| p.iter().any(|x| x == name)) =>
            {
                return false;
            }
            _ => {}
        }
        if let Some(o) = &self.outcome
            && Some(o.as_str()) != r.result.as_ref().map(|x| x.outcome)
        {
            return false;
        }
        if self.paths.is_some() || !self.nets.is_empty() {
            let Some(res) = &r.resource else { return false };
            let path_hit = self.paths.as_ref().is_some_and(|p| {
                [
                    res.resolved_path.as_deref(),
                    res.path.as_deref(),
                    res.address.as_deref(),
                ]
                .into_iter()
                .flatten()
                .any(|s| {
                    p.matches(&crate::escape::unescape(s).unwrap_or_else(|| s.as_bytes().to_vec()))
                })
            });
            let net_hit = res
                .address
                .as_deref()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|ip| self.nets.iter().any(|n| n.contains(ip, res.port)));
            if !path_hit && !net_hit {
                return false;
            }
        }
        true
    }
}

/// Just the fields filters need, borrowed from the line (much cheaper than a full `Record`).
#[derive(Deserialize)]
struct Light<'a> {
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
    resource: Option<LightResource<'a>>,
}

#[derive(Deserialize)]
struct LightAgent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
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

#[derive(Deserialize)]
struct LightResource<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resolved_path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
    #[serde(default)]
    port: Option<u16>,
}

/// A matching record: its sort key and its exact stored line.
#[derive(Debug, Clone)]
pub struct Hit {
    pub time: String,
    pub seq: u64,
    pub line: Vec<u8>,
}

/// How the scan went.
#[derive(Debug, Default, Clone)]
pub struct ScanStats {
    pub objects_read: u64,
    /// Objects in partitions pruned by the agent/time filters (not read).
    pub objects_pruned: u64,
    pub partitions_pruned: u64,
    pub records_scanned: u64,
    pub bytes_read: u64,
    pub corrupt: Vec<String>,
}

pub struct QueryOptions {
    pub skip_corrupt: bool,
    pub concurrency: usize,
    pub progress: bool,
}

fn rel<'a>(store: &Store, p: &'a str) -> &'a str {
    if store.prefix.is_empty() {
        p
    } else {
        p.strip_prefix(&store.prefix)
            .map_or(p, |r| r.trim_start_matches('/'))
    }
}

async fn list_dirs(store: &Store, dir: &str) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let res = store
        .inner
        .list_with_delimiter(Some(&store.path(dir)))
        .await
        .map_err(|e| unreachable_error(store, &e))?;
    let dirs = res
        .common_prefixes
        .iter()
        .map(|p| rel(store, p.as_ref()).to_string())
        .collect();
    let files = res
        .objects
        .iter()
        .map(|o| rel(store, o.location.as_ref()).to_string())
        .collect();
    Ok((dirs, files))
}

fn last_component(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or(p)
}

/// Lists object keys (relative to the prefix) in partitions that can match.
async fn plan(store: &Store, f: &Filter, stats: &mut ScanStats) -> anyhow::Result<Vec<String>> {
    let mut agent_dirs = Vec::new();
    if f.agents.is_empty() {
        let (dirs, _) = list_dirs(store, "v1").await?;
        agent_dirs.extend(dirs.into_iter().filter(|d| {
            !last_component(d).starts_with('_')
                || last_component(d) == format!("agent_id={AUDIT_PARTITION}")
        }));
    } else {
        for a in &f.agents {
            agent_dirs.push(format!("v1/agent_id={}", encode(a)));
        }
        if !f.has_record_filters() {
            agent_dirs.push(format!("v1/agent_id={AUDIT_PARTITION}"));
        }
    }
    let mut keys = Vec::new();
    for adir in agent_dirs {
        let (days, _) = list_dirs(store, &adir).await?;
        for day in days {
            let dt = last_component(&day).trim_start_matches("dt=").to_string();
            if !f.day_in_window(&dt) {
                let (hours, _) = list_dirs(store, &day).await?;
                stats.partitions_pruned += hours.len() as u64;
                for h in hours {
                    stats.objects_pruned += list_dirs(store, &h).await?.1.len() as u64;
                }
                continue;
            }
            let (hours, _) = list_dirs(store, &day).await?;
            for h in hours {
                let hour = last_component(&h).trim_start_matches("hour=").to_string();
                let (_, files) = list_dirs(store, &h).await?;
                if f.hour_in_window(&dt, &hour) {
                    keys.extend(files.into_iter().filter(|k| k.ends_with(".ndjson.gz")));
                } else {
                    stats.partitions_pruned += 1;
                    stats.objects_pruned += files.len() as u64;
                }
            }
        }
    }
    Ok(keys)
}

fn scan_object(gz: &[u8], f: &Filter, hits: &mut Vec<Hit>) -> Result<u64, String> {
    let mut raw = Vec::with_capacity(gz.len() * 8);
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not valid gzip: {e}"))?;
    let mut n = 0;
    for (i, line) in raw
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        n += 1;
        let light: Light<'_> = serde_json::from_slice(line)
            .map_err(|e| format!("line {}: not a record: {e}", i + 1))?;
        if f.matches(&light) {
            hits.push(Hit {
                time: light.time.to_string(),
                seq: light.seq,
                line: line.to_vec(),
            });
        }
    }
    Ok(n)
}

/// Runs a query; returns matches sorted by (time, seq).
/// One scanned object: its key, its compressed size, and (records scanned, hits) or the reason it
/// could not be read.
type ObjectScan = (String, usize, Result<(u64, Vec<Hit>), String>);

pub async fn run(
    store: &Store,
    f: &Filter,
    opts: &QueryOptions,
) -> anyhow::Result<(Vec<Hit>, ScanStats)> {
    let mut stats = ScanStats::default();
    let keys = plan(store, f, &mut stats).await?;
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
        .map(|key| {
            let (store, f) = (store.clone(), f.clone());
            async move {
                let bytes = store
                    .inner
                    .get(&store.path(&key))
                    .await
                    .map_err(|e| unreachable_error(&store, &e))?
                    .bytes()
                    .await
                    .map_err(|e| unreachable_error(&store, &e))?;
                let len = bytes.len();
                let scanned = tokio::task::spawn_blocking(move || {
                    let mut hits = Vec::new();
                    scan_object(&bytes, &f, &mut hits).map(|n| (n, hits))
                })
                .await
                .context("scan task")?;
                Ok((key, len, scanned))
            }
        })
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

/// Partition values of a key, for `--verbose`.
pub fn describe_key(key: &str) -> String {
    key.split('/')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| format!("{k}={}", decode(v).unwrap_or_else(|| v.to_string())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Hour partition of a time (exposed for tests).
pub fn partition_of(ns: i128) -> (String, String) {
    date_hour(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        agent: &str,
        action: &str,
        path: &str,
        decision: &str,
        protected: &[&str],
        outcome: &str,
        time: &str,
    ) -> String {
        serde_json::json!({
            "schema": "audit-agent/v1", "id": "x-1", "seq": 1, "time": time,
            "host": {"name": "h", "boot_id": "b"}, "action": action,
            "agent": {"id": agent, "name": null, "workflow": null, "matched_by": "cgroup"},
            "resource": {"path": path},
            "result": {"outcome": outcome, "retval": 0, "errno": null},
            "protected": protected,
            "policy": {"decision": decision, "rule": null, "version": "v"}
        })
        .to_string()
    }

    fn f(
        agents: &[&str],
        actions: &[&str],
        res: &[&str],
        dec: &[&str],
        prot: Option<Option<&str>>,
        out: Option<&str>,
    ) -> Filter {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Filter::new(
            s(agents),
            s(actions),
            s(res),
            s(dec),
            prot.map(|p| p.map(str::to_string)),
            out.map(str::to_string),
            None,
            None,
        )
        .unwrap()
    }

    fn hit(filter: &Filter, l: &str) -> bool {
        filter.matches(&serde_json::from_str(l).unwrap())
    }

    #[test]
    fn each_filter_and_combinations() {
        let l = line(
            "bot",
            "file.open",
            "/etc/shadow",
            "deny",
            &["secrets"],
            "success",
            "2026-11-26T10:00:00.000000000Z",
        );
        assert!(hit(&f(&[], &[], &[], &[], None, None), &l));
        assert!(hit(&f(&["bot"], &[], &[], &[], None, None), &l));
        assert!(!hit(&f(&["other"], &[], &[], &[], None, None), &l));
        assert!(hit(
            &f(&[], &["file.open", "process.exec"], &[], &[], None, None),
            &l
        ));
        assert!(!hit(
            &f(&[], &["network.connect"], &[], &[], None, None),
            &l
        ));
        assert!(hit(&f(&[], &[], &["/etc/**"], &[], None, None), &l));
        assert!(!hit(&f(&[], &[], &["/tmp/**"], &[], None, None), &l));
        assert!(hit(&f(&[], &[], &[], &["deny"], None, None), &l));
        assert!(!hit(&f(&[], &[], &[], &["allow"], None, None), &l));
        assert!(hit(&f(&[], &[], &[], &[], Some(None), None), &l));
        assert!(hit(&f(&[], &[], &[], &[], Some(Some("secrets")), None), &l));
        assert!(!hit(&f(&[], &[], &[], &[], Some(Some("pii")), None), &l));
        assert!(hit(&f(&[], &[], &[], &[], None, Some("success")), &l));
        assert!(!hit(&f(&[], &[], &[], &[], None, Some("failure")), &l));
        assert!(hit(
            &f(
                &["bot"],
                &["file.open"],
                &["/etc/*"],
                &["deny"],
                Some(Some("secrets")),
                Some("success")
            ),
            &l
        ));
        assert!(!hit(
            &f(
                &["bot"],
                &["file.open"],
                &["/etc/*"],
                &["review"],
                Some(Some("secrets")),
                Some("success")
            ),
            &l
        ));
        let unprotected = line(
            "bot",
            "file.open",
            "/tmp/x",
            "allow",
            &[],
            "success",
            "2026-11-26T10:00:00.000000000Z",
        );
        assert!(!hit(&f(&[], &[], &[], &[], Some(None), None), &unprotected));
    }

    #[test]
    fn time_bounds_are_inclusive_and_partitions_prune_at_hour_edges() {
        let l = line(
            "bot",
            "file.open",
            "/x",
            "allow",
            &[],
            "success",
            "2026-11-26T10:00:00.000000000Z",
        );
        let t = crate::timefmt::parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
        let mut q = f(&[], &[], &[], &[], None, None);
        q.since_ns = Some(t);
        assert!(hit(&q, &l));
        q.since_ns = Some(t + 1);
        assert!(!hit(&q, &l));
        q.since_ns = None;
        q.until_ns = Some(t);
        assert!(hit(&q, &l));
        q.until_ns = Some(t - 1);
        assert!(!hit(&q, &l));
        // Hour 09 ends exactly at 10:00: pruned for since=10:00, kept for since=09:59:59.9.
        let mut q = f(&[], &[], &[], &[], None, None);
        q.since_ns = Some(t);
        assert!(!q.hour_in_window("2026-11-26", "09"));
        assert!(q.hour_in_window("2026-11-26", "10"));
        q.since_ns = Some(t - 1);
        assert!(q.hour_in_window("2026-11-26", "09"));
        q.since_ns = None;
        q.until_ns = Some(t);
        assert!(q.hour_in_window("2026-11-26", "10"));
        assert!(!q.hour_in_window("2026-11-26", "11"));
        assert!(!q.day_in_window("2026-11-27"));
    }

    #[test]
    fn gap_records_show_unless_record_filters_exclude_them() {
        let g = serde_json::json!({"schema":"audit-agent/v1","id":"x","seq":2,"time":"2026-11-26T10:00:00.000000000Z",
            "host":{"name":"h","boot_id":"b"},"action":"audit.gap",
            "gap":{"lost":3,"reason":"ringbuf_full","from":"a","to":"b"}}).to_string();
        assert!(hit(&f(&["bot"], &[], &[], &[], None, None), &g));
        assert!(!hit(&f(&[], &["file.open"], &[], &[], None, None), &g));
        assert!(hit(&f(&[], &["audit.gap"], &[], &[], None, None), &g));
        assert!(!hit(&f(&[], &[], &[], &[], Some(None), None), &g));
    }

    #[test]
    fn bad_input_is_named() {
        let e = |a: Vec<String>, d: Vec<String>, o: Option<String>, r: Vec<String>| {
            Filter::new(vec![], a, r, d, None, o, None, None)
                .unwrap_err()
                .to_string()
        };
        assert!(
            e(vec!["file.read".into()], vec![], None, vec![])
                .contains("unknown action `file.read`")
        );
        assert!(e(vec![], vec!["maybe".into()], None, vec![]).contains("unknown decision `maybe`"));
        assert!(e(vec![], vec![], Some("meh".into()), vec![]).contains("unknown outcome `meh`"));
        assert!(e(vec![], vec![], None, vec!["/a/[b".into()]).contains("invalid glob"));
    }
}
