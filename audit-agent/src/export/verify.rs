//! `verify`: walks every manifest chain of a store, re-hashes every object, and reports per
//! stream: objects missing, objects modified, objects not in any manifest, broken chain links,
//! sequence gaps (and whether a gap record explains them), bad signatures.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read as _,
};

use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};

use super::{
    layout::{decode as decode_component, parse_object_key},
    manifest::{self, sha256_hex},
    store::{Store, unreachable_error},
};
use crate::{record::Record, timefmt::parse_rfc3339};

#[derive(Debug, Default, Clone)]
pub struct VerifyOptions {
    pub since_ns: Option<i128>,
    pub until_ns: Option<i128>,
    /// Require every manifest to be signed by this key (hex).
    pub public_key: Option<String>,
    pub progress: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeqGap {
    pub from: u64,
    pub to: u64,
    /// A gap record (e.g. spool_full) accounts for these sequence numbers.
    pub explained: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct StreamReport {
    pub stream: String,
    pub manifests: u64,
    pub objects_checked: u64,
    pub objects_skipped: u64,
    pub records: u64,
    pub missing: Vec<String>,
    pub modified: Vec<String>,
    pub broken_links: Vec<String>,
    pub seq_gaps: Vec<SeqGap>,
    pub bad_signatures: Vec<String>,
    pub signed_by: BTreeSet<String>,
    pub unsigned: u64,
}

impl StreamReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.modified.is_empty()
            && self.broken_links.is_empty()
            && self.bad_signatures.is_empty()
            && self.seq_gaps.iter().all(|g| g.explained)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub store: String,
    pub streams: Vec<StreamReport>,
    /// Objects under the layout that no manifest lists.
    pub unreferenced: Vec<String>,
}

impl Report {
    /// Everything verifies, and there was something to verify.
    pub fn ok(&self) -> bool {
        !self.streams.is_empty()
            && self.unreferenced.is_empty()
            && self.streams.iter().all(StreamReport::ok)
    }
}

fn strip_prefix<'a>(store: &Store, key: &'a str) -> &'a str {
    if store.prefix.is_empty() {
        key
    } else {
        key.strip_prefix(&store.prefix)
            .map_or(key, |k| k.trim_start_matches('/'))
    }
}

async fn get(store: &Store, rel: &str) -> Result<Option<Vec<u8>>, anyhow::Error> {
    match store.inner.get(&store.path(rel)).await {
        Ok(r) => Ok(Some(
            r.bytes()
                .await
                .map_err(|e| unreachable_error(store, &e))?
                .to_vec(),
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(unreachable_error(store, &e)),
    }
}

pub fn gunzip(gz: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(gz.len() * 6);
    flate2::read::MultiGzDecoder::new(gz).read_to_end(&mut out)?;
    Ok(out)
}

fn overlaps(opts: &VerifyOptions, from: &str, to: &str) -> bool {
    let (f, t) = (parse_rfc3339(from), parse_rfc3339(to));
    !(opts.until_ns.is_some_and(|u| f.is_some_and(|f| f > u))
        || opts.since_ns.is_some_and(|s| t.is_some_and(|t| t < s)))
}

pub async fn verify(store: &Store, opts: &VerifyOptions) -> anyhow::Result<Report> {
    // Everything in the layout.
    let root = store.path("");
    let listing: Vec<String> = store
        .inner
        .list(if store.prefix.is_empty() {
            None
        } else {
            Some(&root)
        })
        .map_ok(|m| strip_prefix(store, m.location.as_ref()).to_string())
        .try_collect()
        .await
        .map_err(|e| unreachable_error(store, &e))?;
    let mut manifests: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut objects: BTreeSet<String> = BTreeSet::new();
    for key in listing {
        if let Some(rest) = key.strip_prefix("v1/_manifests/") {
            if let Some((stream, file)) = rest.split_once('/')
                && let Some(n) = file
                    .strip_suffix(".json")
                    .and_then(|n| n.parse::<u64>().ok())
            {
                manifests
                    .entry(stream.to_string())
                    .or_default()
                    .push((n, key.clone()));
                continue;
            }
            objects.insert(key); // junk under _manifests: reported as unreferenced
        } else if parse_object_key(&key).is_some()
            || key.starts_with("v1/")
            || key.starts_with("ocsf/")
        {
            objects.insert(key);
        }
    }
    let total_objects = objects.len() as u64;
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total_objects);
        b.set_style(
            indicatif::ProgressStyle::with_template("verify {bar:40} {pos}/{len} objects {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };

    let mut report = Report {
        store: store.display.clone(),
        ..Default::default()
    };
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for (stream, mut list) in manifests {
        list.sort();
        let mut sr = StreamReport {
            stream: decode_stream(&stream),
            manifests: list.len() as u64,
            ..Default::default()
        };
        let mut prev: Option<(u64, String, String)> = None; // (sequence, key, sha of bytes)
        let mut seqs: Vec<u64> = Vec::new();
        let mut explained: Vec<(u64, u64)> = Vec::new();
        let mut unverified_ranges: Vec<(u64, u64)> = Vec::new();
        for (n, key) in &list {
            let Some(bytes) = get(store, key).await? else {
                sr.broken_links
                    .push(format!("{key}: listed but cannot be read"));
                continue;
            };
            let parsed = match manifest::decode(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    sr.broken_links.push(format!("{key}: {e:#}"));
                    prev = None;
                    continue;
                }
            };
            let body = &parsed.body;
            if body.sequence != *n {
                sr.broken_links.push(format!(
                    "{key}: holds manifest {} of the chain (manifests were moved or reordered)",
                    body.sequence
                ));
            }
            if body.stream.key_part() != stream {
                sr.broken_links.push(format!(
                    "{key}: belongs to stream {}",
                    body.stream.key_part()
                ));
            }
            match (&prev, &body.prev) {
                (None, None) if *n == 0 => {}
                (None, _) if *n != 0 => sr.broken_links.push(format!(
                    "{key}: chain starts at manifest {n}; manifests 0..{} are missing",
                    n - 1
                )),
                (None, Some(_)) => sr
                    .broken_links
                    .push(format!("{key}: first manifest links to a predecessor")),
                (Some((pn, pkey, psha)), link) => {
                    if *pn + 1 != *n {
                        sr.broken_links.push(format!(
                            "{key}: manifest(s) {}..{} between {pkey} and it are missing",
                            pn + 1,
                            n - 1
                        ));
                    }
                    match link {
                        Some(l) if l.sha256 == *psha && l.key == *pkey => {}
                        Some(l) if l.key == *pkey => sr.broken_links.push(format!(
                            "{key}: previous manifest {pkey} was modified (hash {} expected {})",
                            psha, l.sha256
                        )),
                        Some(l) => sr.broken_links.push(format!(
                            "{key}: links to {} but the previous manifest present is {pkey}",
                            l.key
                        )),
                        None => sr
                            .broken_links
                            .push(format!("{key}: has no link to {pkey}")),
                    }
                }
                _ => {}
            }
            match (&parsed.signature, &opts.public_key) {
                (Some(Ok(k)), Some(want)) if k != want => sr.bad_signatures.push(format!(
                    "{key}: signed by {k}, not by the required key {want}"
                )),
                (Some(Ok(k)), _) => {
                    sr.signed_by.insert(k.clone());
                }
                (Some(Err(why)), _) => sr.bad_signatures.push(format!("{key}: {why}")),
                (None, Some(_)) => sr
                    .bad_signatures
                    .push(format!("{key}: unsigned, but a signing key is required")),
                (None, None) => sr.unsigned += 1,
            }
            for o in &body.objects {
                referenced.insert(o.key.clone());
                if !overlaps(opts, &o.time_from, &o.time_to) {
                    sr.objects_skipped += 1;
                    unverified_ranges.push((o.first_seq, o.last_seq));
                    continue;
                }
                sr.objects_checked += 1;
                if let Some(b) = &bar {
                    b.inc(1);
                }
                let Some(gz) = get(store, &o.key).await? else {
                    sr.missing.push(o.key.clone());
                    if o.format == super::layout::ObjectFormat::Native {
                        unverified_ranges.push((o.first_seq, o.last_seq));
                    }
                    continue;
                };
                let raw = match gunzip(&gz) {
                    Ok(r) => r,
                    Err(e) => {
                        sr.modified.push(format!("{}: not valid gzip ({e})", o.key));
                        continue;
                    }
                };
                let sha = sha256_hex(&raw);
                if sha != o.sha256 {
                    sr.modified.push(format!(
                        "{}: sha256 {sha}, manifest says {}",
                        o.key, o.sha256
                    ));
                    continue;
                }
                if o.format == super::layout::ObjectFormat::Native {
                    for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                        sr.records += 1;
                        if let Ok(rec) = serde_json::from_slice::<Record>(line) {
                            seqs.push(rec.seq);
                            if let Some(g) = rec.gap
                                && let (Some(f), Some(t)) = (g.seq_from, g.seq_to)
                            {
                                explained.push((f, t));
                            }
                        }
                    }
                }
            }
            prev = Some((*n, key.clone(), sha256_hex(&bytes)));
        }
        sr.seq_gaps = seq_gaps(&mut seqs, &explained, &unverified_ranges);
        report.streams.push(sr);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    for key in objects {
        if referenced.contains(&key) {
            continue;
        }
        if let Some(k) = parse_object_key(&key) {
            let t = format!("{}T{}:00:00Z", k.dt, k.hour);
            let t_end = format!("{}T{}:59:59.999999999Z", k.dt, k.hour);
            if !overlaps(opts, &t, &t_end) {
                continue;
            }
        }
        report.unreferenced.push(key);
    }
    Ok(report)
}

fn decode_stream(s: &str) -> String {
    // host and boot id are each percent-encoded; `-` is plain in both, so show as stored.
    decode_component(s).unwrap_or_else(|| s.to_string())
}

/// Missing sequence numbers between the smallest and largest seen, minus those that are in
/// objects outside the checked window; each gap marked explained when a gap record covers it.
fn seq_gaps(
    seqs: &mut Vec<u64>,
    explained: &[(u64, u64)],
    unverified: &[(u64, u64)],
) -> Vec<SeqGap> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut gaps = Vec::new();
    for w in seqs.windows(2) {
        if w[1] > w[0] + 1 {
            let (from, to) = (w[0] + 1, w[1] - 1);
            // Interleaved objects outside the window may hold these.
            if unverified.iter().any(|(f, t)| *f <= to && *t >= from) {
                continue;
            }
            let covered = explained.iter().any(|(f, t)| *f <= from && *t >= to);
            gaps.push(SeqGap {
                from,
                to,
                explained: covered,
            });
        }
    }
    gaps
}

/// A human-readable report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "store {}", r.store);
    for st in &r.streams {
        let _ = writeln!(
            s,
            "stream {}: {} manifest(s), {} object(s) checked, {} skipped (outside time window), {} record(s) — {}",
            st.stream,
            st.manifests,
            st.objects_checked,
            st.objects_skipped,
            st.records,
            if st.ok() { "OK" } else { "FAILED" }
        );
        if !st.signed_by.is_empty() {
            let _ = writeln!(
                s,
                "  signed by {}",
                st.signed_by.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        if st.unsigned > 0 {
            let _ = writeln!(s, "  {} unsigned manifest(s)", st.unsigned);
        }
        for (label, list) in [
            ("missing object", &st.missing),
            ("modified object", &st.modified),
            ("broken chain", &st.broken_links),
            ("bad signature", &st.bad_signatures),
        ] {
            for item in list {
                let _ = writeln!(s, "  {label}: {item}");
            }
        }
        for g in &st.seq_gaps {
            let _ = writeln!(
                s,
                "  seq gap {}..{}: {}",
                g.from,
                g.to,
                if g.explained {
                    "explained by a gap record"
                } else {
                    "UNEXPLAINED"
                }
            );
        }
    }
    for k in &r.unreferenced {
        let _ = writeln!(s, "object not in any manifest: {k}");
    }
    if r.streams.is_empty() {
        let _ = writeln!(
            s,
            "no manifests found: nothing to verify (check the store URL and prefix)"
        );
    }
    let _ = writeln!(
        s,
        "{}",
        if r.ok() {
            "verify: OK"
        } else {
            "verify: FAILED"
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_found_and_explained_by_gap_records() {
        let mut s = vec![5, 1, 2, 3, 7, 8, 12];
        let g = seq_gaps(&mut s, &[(9, 11)], &[]);
        assert_eq!(
            g,
            vec![
                SeqGap {
                    from: 4,
                    to: 4,
                    explained: false
                },
                SeqGap {
                    from: 6,
                    to: 6,
                    explained: false
                },
                SeqGap {
                    from: 9,
                    to: 11,
                    explained: true
                },
            ]
        );
    }

    #[test]
    fn seqs_in_unchecked_objects_are_not_gaps() {
        let mut s = vec![1, 2, 6];
        assert!(seq_gaps(&mut s, &[], &[(3, 5)]).is_empty());
    }
}
