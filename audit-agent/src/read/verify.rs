//! `verify`: walks every manifest chain of a store, re-hashes every object (fetched
//! concurrently), and reports per stream: objects missing, objects modified, objects not in any
//! manifest, broken chain links, sequence gaps (and whether a gap record explains them), bad
//! signatures. A change that is what another manifest (of any stream) says the key holds is
//! told apart from tampering: a second writer overwrote it, and both streams are named.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt as _, TryStreamExt as _, stream};
use serde::{Deserialize, Serialize};

use crate::trail::{
    layout::{self, ObjectFormat, ObjectName},
    manifest::{self, ObjectEntry},
    object::{MAX_OBJECT_BYTES, MAX_STORED_BYTES, ObjectLines},
    store::{Store, unusable},
};
use crate::{digest::sha256_hex, event::Timestamp, time, trail::record::Position};

/// Objects fetched and checked at once.
const CONCURRENCY: usize = 8;

#[derive(Debug, Default, Clone)]
pub(crate) struct VerifyOptions {
    pub(crate) since: Option<Timestamp>,
    pub(crate) until: Option<Timestamp>,
    /// Require every manifest to be signed by this key (hex).
    pub(crate) public_key: Option<String>,
    pub(crate) progress: bool,
}

impl VerifyOptions {
    /// Whether `[from, to]` overlaps the window.
    fn overlaps(&self, from: Timestamp, to: Timestamp) -> bool {
        !(self.until.is_some_and(|u| from > u) || self.since.is_some_and(|s| to < s))
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SeqGap {
    pub(crate) from: u64,
    pub(crate) to: u64,
    /// A gap record (e.g. spool_full) accounts for these sequence numbers.
    pub(crate) explained: bool,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct StreamReport {
    pub(crate) stream: String,
    pub(crate) manifests: u64,
    pub(crate) objects_checked: u64,
    pub(crate) objects_skipped: u64,
    pub(crate) records: u64,
    pub(crate) missing: Vec<String>,
    pub(crate) modified: Vec<String>,
    pub(crate) broken_links: Vec<String>,
    pub(crate) seq_gaps: Vec<SeqGap>,
    pub(crate) bad_signatures: Vec<String>,
    /// Objects another writer's content replaced: what the store holds is what another
    /// manifest lists there, not what this stream's says.
    #[serde(default)]
    pub(crate) overwritten: Vec<String>,
    pub(crate) signed_by: BTreeSet<String>,
    pub(crate) unsigned: u64,
    /// Manifests sealed while the writer found the store ignoring create-only writes: each of
    /// their writes was checked first, not atomically.
    #[serde(default)]
    pub(crate) checked_first_writes: u64,
    /// The stream's last manifest is neither closing, nor linked by a later stream, nor recent.
    #[serde(default)]
    pub(crate) tail: Option<String>,
    /// The last manifest read, and the previous stream's tail the first one links to.
    #[serde(skip)]
    last: Option<(String, manifest::Body)>,
    #[serde(skip)]
    previous_stream: Option<manifest::Link>,
    /// Objects whose stored bytes differ from the manifest: (key, SHA-256 stored, the report).
    #[serde(skip)]
    differing: Vec<(String, String, String)>,
}

impl StreamReport {
    pub(crate) fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.modified.is_empty()
            && self.broken_links.is_empty()
            && self.bad_signatures.is_empty()
            && self.overwritten.is_empty()
            && self.tail.is_none()
            && self.seq_gaps.iter().all(|g| g.explained)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) store: String,
    pub(crate) streams: Vec<StreamReport>,
    /// Objects under the layout that no manifest lists.
    pub(crate) unreferenced: Vec<String>,
    /// Keys that signed manifests when no key was pinned (`--public-key`): a signature proves
    /// nothing until the key is one the verifier trusts — an attacker re-signs with their own.
    #[serde(default)]
    pub(crate) unpinned_keys: BTreeSet<String>,
}

impl Report {
    /// Everything verifies, and there was something to verify.
    pub(crate) fn ok(&self) -> bool {
        !self.streams.is_empty()
            && self.unreferenced.is_empty()
            && self.unpinned_keys.is_empty()
            && self.streams.iter().all(StreamReport::ok)
    }
}

/// Manifest keys per stream, and every other key of the layout.
struct Listing {
    manifests: BTreeMap<String, Vec<(u64, String)>>,
    objects: BTreeSet<String>,
}

async fn list(store: &Store) -> anyhow::Result<Listing> {
    let keys: Vec<String> = store
        .inner
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .map_err(|e| unusable(store, &e))?;
    let mut l = Listing {
        manifests: BTreeMap::new(),
        objects: BTreeSet::new(),
    };
    for key in keys {
        match layout::parse_manifest_key(&key) {
            Some((stream, n)) => l
                .manifests
                .entry(stream.to_string())
                .or_default()
                .push((n, key)),
            // Junk under _manifests and anything else in the layout is reported if unlisted.
            None if layout::is_trail_key(&key) => {
                l.objects.insert(key);
            }
            None => {}
        }
    }
    for list in l.manifests.values_mut() {
        list.sort();
    }
    Ok(l)
}

/// What checking one object found.
#[derive(Debug)]
enum ObjectCheck {
    Skipped,
    Missing,
    Modified(String),
    /// The stored bytes hash to `got`, not to what the manifest says.
    Differs {
        why: String,
        got: String,
    },
    /// Records, their seqs, and the seq ranges gap records explain.
    Ok {
        records: u64,
        seqs: Vec<u64>,
        explained: Vec<(u64, u64)>,
    },
}

/// Seqs and gap ranges of a native object's records.
/// What reading an object found.
struct Scanned {
    records: u64,
    seqs: Vec<u64>,
    /// Seq ranges its gap records explain.
    explained: Vec<(u64, u64)>,
    /// SHA-256 (hex) of the decompressed object.
    sha256: String,
}

/// Reads an object (its records when `native`), with bounded memory.
fn scan_records(
    gz: &[u8],
    limit: u64,
    native: bool,
) -> Result<Scanned, crate::trail::object::ObjectError> {
    let (mut n, mut seqs, mut explained) = (0, Vec::new(), Vec::new());
    let mut lines = ObjectLines::new(gz, limit);
    while let Some(line) = lines.next_line()? {
        if !native {
            continue;
        }
        n += 1;
        if let Some(p) = Position::of(line) {
            seqs.push(p.seq);
            explained.extend(p.explained());
        }
    }
    Ok(Scanned {
        records: n,
        seqs,
        explained,
        sha256: lines.finish()?,
    })
}

async fn check_object(
    store: &Store,
    o: &ObjectEntry,
    opts: &VerifyOptions,
) -> anyhow::Result<ObjectCheck> {
    if !opts.overlaps(o.meta.time_from, o.meta.time_to) {
        return Ok(ObjectCheck::Skipped);
    }
    let gz = match store.get_bounded(&o.key, MAX_STORED_BYTES).await {
        Ok(Some(gz)) => gz,
        Ok(None) => return Ok(ObjectCheck::Missing),
        Err(crate::trail::store::GetError::TooLarge(n)) => {
            return Ok(ObjectCheck::Modified(format!(
                "{}: {n} bytes stored, more than any object audit-agent writes ({MAX_STORED_BYTES})",
                o.key
            )));
        }
        Err(crate::trail::store::GetError::Store(e)) => return Err(e),
    };
    let (limit, sha, format) = (
        o.content_limit().min(MAX_OBJECT_BYTES),
        o.sha256.clone(),
        o.format,
    );
    let (key, stored, native) = (
        o.key.clone(),
        o.hashes_stored(),
        format == ObjectFormat::Native,
    );
    if stored {
        let got = sha256_hex(&gz);
        if got != sha {
            return Ok(hash_differs(&key, &got, &sha));
        }
        if !native {
            // Renderings of native records: the hash is all there is to check.
            return Ok(ObjectCheck::Ok {
                records: o.meta.records,
                seqs: Vec::new(),
                explained: Vec::new(),
            });
        }
    }
    tokio::task::spawn_blocking(move || {
        let s = match scan_records(&gz, limit, native) {
            Ok(s) => s,
            Err(e) => return ObjectCheck::Modified(format!("{key}: {e}")),
        };
        if !stored && s.sha256 != sha {
            return hash_differs(&key, &s.sha256, &sha);
        }
        ObjectCheck::Ok {
            records: s.records,
            seqs: s.seqs,
            explained: s.explained,
        }
    })
    .await
    .map_err(anyhow::Error::from)
}

fn hash_differs(key: &str, got: &str, manifest: &str) -> ObjectCheck {
    ObjectCheck::Differs {
        why: format!("{key}: sha256 {got}, manifest says {manifest}"),
        got: got.to_string(),
    }
}

/// Checks one manifest against its predecessor; the problems go to `sr`.
fn check_link(
    sr: &mut StreamReport,
    stream: &str,
    n: u64,
    key: &str,
    body: &manifest::Body,
    prev: &Option<(u64, String, String)>,
) {
    if body.sequence != n {
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
    match (prev, &body.prev) {
        (None, None) if n == 0 => {}
        (None, _) if n != 0 => sr.broken_links.push(format!(
            "{key}: chain starts at manifest {n}; manifests 0..{} are missing",
            n - 1
        )),
        (None, Some(_)) => sr
            .broken_links
            .push(format!("{key}: first manifest links to a predecessor")),
        (Some((pn, pkey, psha)), link) => {
            if pn + 1 != n {
                sr.broken_links.push(format!(
                    "{key}: manifest(s) {}..{} between {pkey} and it are missing",
                    pn + 1,
                    n - 1
                ));
            }
            match link {
                Some(l) if l.sha256 == *psha && l.key == *pkey => {}
                Some(l) if l.key == *pkey => sr.broken_links.push(format!(
                    "{key}: previous manifest {pkey} was modified (hash {psha} expected {})",
                    l.sha256
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
}

fn check_signature(
    sr: &mut StreamReport,
    key: &str,
    parsed: &manifest::Parsed,
    want: Option<&str>,
) {
    match (&parsed.signature, want) {
        (Some(Ok(k)), Some(want)) if k != want => sr.bad_signatures.push(format!(
            "{key}: signed by {k}, not by the required key {want}"
        )),
        (Some(Ok(k)), _) => {
            sr.signed_by.insert(k.clone());
        }
        (Some(Err(why)), _) => sr.bad_signatures.push(format!("{key}: {why}")),
        (None, _) if parsed.body.public_key.is_some() => sr.bad_signatures.push(format!(
            "{key}: names signing key {} but carries no signature (stripped)",
            parsed.body.public_key.as_deref().unwrap_or_default()
        )),
        (None, Some(_)) => sr
            .bad_signatures
            .push(format!("{key}: unsigned, but a signing key is required")),
        (None, None) => sr.unsigned += 1,
    }
}

/// Seqs seen, ranges gap records explain, ranges in objects not checked.
#[derive(Default)]
struct SeqAccount {
    seqs: Vec<u64>,
    explained: Vec<(u64, u64)>,
    unverified: Vec<(u64, u64)>,
}

async fn check_objects(
    store: &Store,
    opts: &VerifyOptions,
    objects: Vec<ObjectEntry>,
    sr: &mut StreamReport,
    acc: &mut SeqAccount,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<()> {
    let results: Vec<(ObjectEntry, anyhow::Result<ObjectCheck>)> = stream::iter(objects)
        .map(|o| async move {
            let r = check_object(store, &o, opts).await;
            (o, r)
        })
        .buffered(CONCURRENCY)
        .inspect(|_| {
            if let Some(b) = bar {
                b.inc(1);
            }
        })
        .collect()
        .await;
    for (o, r) in results {
        let native = o.format == ObjectFormat::Native;
        match r? {
            ObjectCheck::Skipped => {
                sr.objects_skipped += 1;
                acc.unverified.push((o.meta.first_seq, o.meta.last_seq));
            }
            ObjectCheck::Missing => {
                sr.objects_checked += 1;
                sr.missing.push(o.key.clone());
                if native {
                    acc.unverified.push((o.meta.first_seq, o.meta.last_seq));
                }
            }
            ObjectCheck::Modified(why) => {
                sr.objects_checked += 1;
                sr.modified.push(why);
            }
            ObjectCheck::Differs { why, got } => {
                sr.objects_checked += 1;
                sr.modified.push(why.clone());
                sr.differing.push((o.key.clone(), got, why));
            }
            ObjectCheck::Ok {
                records,
                seqs,
                explained,
            } => {
                sr.objects_checked += 1;
                // Records, not renderings: OCSF, ECS and Parquet copies hold the same ones.
                if native {
                    sr.records += records;
                }
                acc.seqs.extend(seqs);
                acc.explained.extend(explained);
            }
        }
    }
    Ok(())
}

async fn verify_stream(
    store: &Store,
    opts: &VerifyOptions,
    stream: &str,
    list: &[(u64, String)],
    seen: &mut Seen,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<StreamReport> {
    let mut sr = StreamReport {
        stream: layout::decode(stream).unwrap_or_else(|| stream.to_string()),
        manifests: list.len() as u64,
        ..Default::default()
    };
    let fetched: Vec<anyhow::Result<Option<bytes::Bytes>>> = stream::iter(list)
        .map(|(_, key)| store.get(key))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut prev: Option<(u64, String, String)> = None; // (sequence, key, sha of bytes)
    let mut objects = Vec::new();
    for ((n, key), bytes) in list.iter().zip(fetched) {
        let Some(bytes) = bytes? else {
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
        check_link(&mut sr, stream, *n, key, &parsed.body, &prev);
        check_signature(&mut sr, key, &parsed, opts.public_key.as_deref());
        seen.note(&sr.stream, &parsed.body);
        if parsed.body.store_writes == Some(crate::trail::store::Writes::CheckedFirst) {
            sr.checked_first_writes += 1;
        }
        let sha = sha256_hex(&bytes);
        seen.manifests.insert(key.clone(), sha.clone());
        if parsed.body.sequence == 0 {
            sr.previous_stream = parsed.body.previous_stream.clone();
        }
        let mut body = parsed.body;
        objects.append(&mut body.objects);
        sr.last = Some((key.clone(), body));
        prev = Some((*n, key.clone(), sha));
    }
    let mut acc = SeqAccount::default();
    check_objects(store, opts, objects, &mut sr, &mut acc, bar).await?;
    sr.seq_gaps = seq_gaps(&mut acc);
    Ok(sr)
}

pub(crate) async fn verify(store: &Store, opts: &VerifyOptions) -> anyhow::Result<Report> {
    let listing = list(store).await?;
    let bar = opts.progress.then(|| {
        let b = indicatif::ProgressBar::new(listing.objects.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("verify {bar:40} {pos}/{len} objects {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut report = Report {
        store: store.display.clone(),
        ..Default::default()
    };
    let mut seen = Seen::default();
    for (stream, list) in &listing.manifests {
        let sr = verify_stream(store, opts, stream, list, &mut seen, bar.as_ref()).await?;
        report.streams.push(sr);
    }
    check_tails(&mut report.streams, &seen.manifests, time::now());
    find_second_writers(&mut report.streams, &seen);
    let referenced = seen.referenced;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if opts.public_key.is_none() {
        report.unpinned_keys = report
            .streams
            .iter()
            .flat_map(|s| s.signed_by.iter().cloned())
            .collect();
    }
    report.unreferenced = listing
        .objects
        .into_iter()
        .filter(|k| !referenced.contains(k))
        .filter(|k| {
            ObjectName::parse(k)
                .map(|o| o.partition.window())
                .is_none_or(|(from, to)| opts.overlaps(from, to))
        })
        .collect();
    Ok(report)
}

/// Beyond twice the heartbeat interval, how old a live stream's newest manifest may be: the
/// sealer's one-second tick and the upload.
const TAIL_SLACK_MS: i128 = 5_000;

/// What reading every stream's manifests found: the objects they list, every manifest's hash,
/// and which content each stream says a key holds.
#[derive(Default)]
struct Seen {
    referenced: BTreeSet<String>,
    manifests: BTreeMap<String, String>,
    /// (object key, SHA-256) -> the streams whose manifests list that content at that key.
    listed: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Seen {
    /// Notes what a manifest of `stream` lists.
    fn note(&mut self, stream: &str, body: &manifest::Body) {
        for o in &body.objects {
            self.referenced.insert(o.key.clone());
            self.listed
                .entry((o.key.clone(), o.sha256.clone()))
                .or_default()
                .insert(stream.to_string());
        }
    }
}

/// Tells a second writer from tampering where the trail shows it: an object whose stored bytes
/// are exactly what another manifest lists at that key was written twice, by two writers (both
/// streams named), not edited. This stream's version is not in the store, so it still fails.
/// (A manifest replaced by a second writer of the same stream name cannot be told apart this
/// way: the version that would show it was at the same key. It stays a broken chain.)
fn find_second_writers(streams: &mut [StreamReport], seen: &Seen) {
    for sr in streams.iter_mut() {
        let me = sr.stream.clone();
        for (key, got, why) in std::mem::take(&mut sr.differing) {
            let Some(other) = seen
                .listed
                .get(&(key.clone(), got.clone()))
                .and_then(|s| s.iter().find(|s| **s != me).or_else(|| s.iter().next()))
            else {
                continue;
            };
            let writers = if *other == me {
                format!(
                    "two writers wrote stream {me} (a copy of its spool run beside the original, \
                     or daemons of versions before spool ids on one host)"
                )
            } else {
                format!("written by both stream {me} and stream {other}")
            };
            sr.modified.retain(|m| *m != why);
            sr.overwritten.push(format!(
                "{key}: holds what a manifest of stream {other} lists there (sha256 {got}), not \
                 what this stream's manifest lists: {writers}"
            ));
        }
    }
}

/// Nothing may cut a chain's tail unseen. A stream's last manifest must be a closing one (a clean
/// stop), or the one a later stream of the host links to (`previous_stream`, which must exist
/// unmodified), or recent: newer than twice the writer's heartbeat interval. Otherwise the newest
/// manifests were deleted, or the agent has been down since that manifest.
fn check_tails(streams: &mut [StreamReport], manifests: &BTreeMap<String, String>, now: Timestamp) {
    let mut anchored = BTreeSet::new();
    for sr in streams.iter_mut() {
        let Some(link) = sr.previous_stream.clone() else {
            continue;
        };
        match manifests.get(&link.key) {
            Some(sha) if *sha == link.sha256 => {
                anchored.insert(link.key);
            }
            Some(_) => sr.broken_links.push(format!(
                "the previous stream's last manifest {} was modified",
                link.key
            )),
            None => sr.broken_links.push(format!(
                "the previous stream's last manifest {} is missing (its tail was cut)",
                link.key
            )),
        }
    }
    for sr in streams.iter_mut() {
        let Some((key, last)) = &sr.last else {
            continue;
        };
        let Some(beat) = last.heartbeat_ms else {
            continue; // written before heartbeats: no expectation
        };
        let age = now.duration_since(last.created);
        // Twice the interval, plus the time a manifest takes to be written and uploaded.
        let recent = age.as_millis() <= i128::from(beat) * 2 + TAIL_SLACK_MS;
        if last.kind == manifest::ManifestKind::Closing || anchored.contains(key) || recent {
            continue;
        }
        let at = time::rfc3339(last.created);
        sr.tail = Some(format!(
            "the last manifest, {key} of {at}, is not a closing one and is older than twice the \
             heartbeat interval ({beat} ms): the tail was cut, or the agent has been down since {at}"
        ));
    }
}

/// Missing sequence numbers between the smallest and largest seen, minus those that are in
/// objects outside the checked window; each gap marked explained when a gap record covers it.
fn seq_gaps(acc: &mut SeqAccount) -> Vec<SeqGap> {
    acc.seqs.sort_unstable();
    acc.seqs.dedup();
    let mut gaps = Vec::new();
    for w in acc.seqs.windows(2) {
        if w[1] > w[0] + 1 {
            let (from, to) = (w[0] + 1, w[1] - 1);
            // Interleaved objects outside the window may hold these.
            if acc.unverified.iter().any(|(f, t)| *f <= to && *t >= from) {
                continue;
            }
            let explained = acc.explained.iter().any(|(f, t)| *f <= from && *t >= to);
            gaps.push(SeqGap {
                from,
                to,
                explained,
            });
        }
    }
    gaps
}

/// A human-readable report.
pub(crate) fn render(r: &Report) -> String {
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
            let keys: Vec<&str> = st.signed_by.iter().map(String::as_str).collect();
            let _ = writeln!(s, "  signed by {}", keys.join(", "));
        }
        if st.unsigned > 0 {
            let _ = writeln!(s, "  {} unsigned manifest(s)", st.unsigned);
        }
        if st.checked_first_writes > 0 {
            let _ = writeln!(
                s,
                "  {} manifest(s) sealed while the store did not honour create-only writes \
                 (If-None-Match ignored): each write was checked first, which is not atomic, so \
                 a second writer could overwrite; turn on the store-side protections \
                 (docs/storage.md)",
                st.checked_first_writes
            );
        }
        for (label, list) in [
            ("missing object", &st.missing),
            ("modified object", &st.modified),
            ("broken chain", &st.broken_links),
            ("bad signature", &st.bad_signatures),
            ("overwritten by a second writer", &st.overwritten),
            (
                "tail missing or agent down",
                &st.tail.iter().cloned().collect(),
            ),
        ] {
            for item in list {
                let _ = writeln!(s, "  {label}: {item}");
            }
        }
        for g in &st.seq_gaps {
            let how = if g.explained {
                "explained by a gap record"
            } else {
                "UNEXPLAINED"
            };
            let _ = writeln!(s, "  seq gap {}..{}: {how}", g.from, g.to);
        }
    }
    for k in &r.unreferenced {
        let _ = writeln!(s, "object not in any manifest: {k}");
    }
    for k in &r.unpinned_keys {
        let _ = writeln!(
            s,
            "signed by {k}, but no key is pinned: a trail re-signed by another key would verify \
             too; pass --public-key with the key you trust"
        );
    }
    if r.streams.is_empty() {
        let _ = writeln!(
            s,
            "no manifests found: nothing to verify (check the store URL and prefix)"
        );
    }
    let _ = writeln!(s, "verify: {}", if r.ok() { "OK" } else { "FAILED" });
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(seqs: &[u64], explained: &[(u64, u64)], unverified: &[(u64, u64)]) -> Vec<SeqGap> {
        seq_gaps(&mut SeqAccount {
            seqs: seqs.to_vec(),
            explained: explained.to_vec(),
            unverified: unverified.to_vec(),
        })
    }

    #[test]
    fn gaps_are_found_and_explained_by_gap_records() {
        let g = gaps(&[5, 1, 2, 3, 7, 8, 12], &[(9, 11)], &[]);
        let gap = |from, to, explained| SeqGap {
            from,
            to,
            explained,
        };
        assert_eq!(
            g,
            vec![gap(4, 4, false), gap(6, 6, false), gap(9, 11, true)]
        );
    }

    #[test]
    fn seqs_in_unchecked_objects_are_not_gaps() {
        assert!(gaps(&[1, 2, 6], &[], &[(3, 5)]).is_empty());
    }

    fn stream(last_key: &str, kind: manifest::ManifestKind, created: &str) -> StreamReport {
        let body: manifest::Body = serde_json::from_value(serde_json::json!({
            "schema": manifest::SCHEMA, "stream": {"host": "h", "boot_id": "b"},
            "sequence": 3, "created": created, "prev": null, "objects": [],
            "kind": kind, "heartbeat_ms": 1000,
        }))
        .unwrap();
        StreamReport {
            last: Some((last_key.into(), body)),
            ..Default::default()
        }
    }

    #[test]
    fn a_tail_is_closed_linked_by_the_next_boot_or_recent() {
        use manifest::ManifestKind::{Batch, Closing};
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let old = "2026-01-01T00:00:00Z";
        let shas = BTreeMap::from([("a/3".to_string(), "sha-a".to_string())]);
        let next_boot = |sha: &str| StreamReport {
            previous_stream: Some(manifest::Link {
                key: "a/3".into(),
                sha256: sha.into(),
            }),
            ..stream("b/0", Batch, "2026-01-01T00:00:59.5Z")
        };
        // Closed, or recent: fine.
        let mut s = vec![
            stream("a/3", Closing, old),
            stream("c/0", Batch, "2026-01-01T00:00:59Z"),
        ];
        check_tails(&mut s, &shas, now);
        assert!(s.iter().all(|s| s.tail.is_none()));
        // Old and not closed: the tail was cut or the agent is down...
        let mut s = vec![stream("a/3", Batch, old)];
        check_tails(&mut s, &shas, now);
        assert!(
            s[0].tail
                .as_ref()
                .unwrap()
                .contains("down since 2026-01-01T00:00:00")
        );
        // ... unless the next boot's first manifest links to it, unmodified.
        let mut s = vec![stream("a/3", Batch, old), next_boot("sha-a")];
        check_tails(&mut s, &shas, now);
        assert!(
            s.iter()
                .all(|s| s.tail.is_none() && s.broken_links.is_empty())
        );
        let mut s = vec![stream("a/3", Batch, old), next_boot("other")];
        check_tails(&mut s, &shas, now);
        assert!(s[0].tail.is_some() && s[1].broken_links[0].contains("was modified"));
        let mut s = vec![next_boot("sha-a")];
        check_tails(&mut s, &BTreeMap::new(), now);
        assert!(s[0].broken_links[0].contains("is missing (its tail was cut)"));
    }

    /// An object of two records, gzip-compressed, and the entry a manifest of `schema` lists.
    fn object(schema_v2: bool) -> (Vec<u8>, ObjectEntry) {
        use std::io::Write as _;
        let records = b"{\"seq\":1}\n{\"seq\":2}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(records).unwrap();
        let gz = gz.finish().unwrap();
        let (sha256, bytes, content_bytes) = if schema_v2 {
            (sha256_hex(&gz), gz.len() as u64, Some(records.len() as u64))
        } else {
            (sha256_hex(records), records.len() as u64, None)
        };
        (
            gz,
            ObjectEntry::of_two_records(sha256, bytes, content_bytes),
        )
    }

    #[tokio::test]
    async fn content_another_manifest_lists_is_a_second_writer_and_other_content_tampering() {
        let dir = std::env::temp_dir().join(format!("audit-verify-2w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&crate::trail::store::StoreSettings {
            store: format!("file://{}", dir.display()),
            ..Default::default()
        })
        .unwrap();
        let stream = crate::trail::stream::StreamId {
            host: "h".into(),
            boot_id: "b".into(),
            spool: "s".into(),
        };
        let gz = |level| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            std::io::Write::write_all(&mut e, b"{\"seq\":1}\n{\"seq\":2}\n").unwrap();
            e.finish().unwrap()
        };
        let (ours, theirs, forged) = (gz(1), gz(9), gz(0));
        let (_, mut entry) = object(true);
        entry.key =
            "v1/agent_id=a/dt=2026-01-01/hour=00/h-b-s-00000000000000000001.ndjson.gz".into();
        let listing = |bytes: &[u8]| ObjectEntry {
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
            ..entry.clone()
        };
        // Two writers of one stream name: each sealed the object, in different manifests.
        let mut prev = None;
        for (n, content) in [&ours, &theirs].into_iter().enumerate() {
            let body = manifest::Body {
                schema: manifest::SCHEMA.into(),
                stream: stream.clone(),
                sequence: n as u64,
                created: "2026-01-01T00:00:00Z".parse().unwrap(),
                prev: prev.take(),
                previous_stream: None,
                objects: vec![listing(content)],
                public_key: None,
                kind: manifest::ManifestKind::Batch,
                heartbeat_ms: None,
                store_writes: Some(crate::trail::store::Writes::CheckedFirst),
            };
            let bytes = manifest::encode(&body, None).unwrap();
            let key = layout::manifest_key(&stream, n as u64);
            store
                .inner
                .put(&store.path(&key), bytes.clone().into())
                .await
                .unwrap();
            prev = Some(manifest::Link {
                key,
                sha256: sha256_hex(&bytes),
            });
        }
        let report = |content: &Vec<u8>| {
            let (store, content, key) = (&store, content.clone(), entry.key.clone());
            async move {
                store
                    .inner
                    .put(&store.path(&key), content.into())
                    .await
                    .unwrap();
                let r = verify(store, &VerifyOptions::default()).await.unwrap();
                (r.streams[0].clone(), render(&r))
            }
        };
        let (sr, text) = report(&theirs).await;
        assert!(sr.modified.is_empty(), "{text}");
        assert!(
            text.contains(&format!(
                "overwritten by a second writer: {}: holds what a manifest of stream h-b-s lists \
                 there (sha256 {}), not what this stream's manifest lists: two writers wrote \
                 stream h-b-s",
                entry.key,
                sha256_hex(&theirs)
            )),
            "{text}"
        );
        assert!(text.contains("2 manifest(s) sealed while the store did not honour create-only"));
        assert!(text.contains("verify: FAILED"), "{text}");
        // Content no manifest lists is tampering.
        let (sr, text) = report(&forged).await;
        assert!(sr.overwritten.is_empty(), "{text}");
        assert!(
            text.contains(&format!("modified object: {}", entry.key)),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn objects_are_checked_by_stored_bytes_now_and_by_records_in_v1_manifests() {
        let dir = std::env::temp_dir().join(format!("audit-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&crate::trail::store::StoreSettings {
            store: format!("file://{}", dir.display()),
            endpoint: None,
            region: None,
            allow_http: None,
        })
        .unwrap();
        let opts = VerifyOptions::default();
        for v2 in [true, false] {
            let (gz, entry) = object(v2);
            let path = dir.join("v1");
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("o.ndjson.gz"), &gz).unwrap();
            let check = check_object(&store, &entry, &opts).await.unwrap();
            assert!(
                matches!(&check, ObjectCheck::Ok { records: 2, seqs, .. } if seqs == &[1, 2]),
                "v2 {v2}: {check:?}"
            );
            // The same records compressed differently: other stored bytes. A v2 manifest
            // names the stored object, so that is a modification; a v1 one names the records.
            let mut other = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut other, b"{\"seq\":1}\n{\"seq\":2}\n").unwrap();
            std::fs::write(path.join("o.ndjson.gz"), other.finish().unwrap()).unwrap();
            let check = check_object(&store, &entry, &opts).await.unwrap();
            let modified = matches!(
                check,
                ObjectCheck::Modified(_) | ObjectCheck::Differs { .. }
            );
            assert_eq!(modified, v2, "{check:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
