//! The report's integrity verdict: what `verify` found over the window, and the gap records
//! that say what was lost, in words a reader outside engineering can act on.

use serde::Serialize;

use super::Read;
use crate::{digest::sha256_hex, event::GapReason, read::verify, time, trail::record};

/// How far the trail of the window can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Level {
    /// Complete, untouched, signed by the pinned key, nothing lost.
    Verified,
    /// Untouched, with qualifications the findings name: records lost (and explained), or
    /// signatures not checked against a trusted key, or no signatures at all.
    Qualified,
    /// Objects missing or modified, chains broken, signatures bad, unexplained holes, objects
    /// no manifest lists, or a cut tail: the trail cannot be relied on as it stands.
    Failed,
}

#[derive(Debug, Serialize)]
pub(crate) struct Integrity {
    pub(crate) level: Level,
    pub(crate) headline: String,
    /// One sentence per finding, worst first.
    pub(crate) findings: Vec<String>,
    pub(crate) signers: Vec<Signer>,
    pub(crate) unsigned_manifests: u64,
    pub(crate) streams: u64,
    pub(crate) objects_checked: u64,
    pub(crate) records_checked: u64,
    /// Gap records in the window.
    pub(crate) gaps: Vec<GapOut>,
    /// `verify`'s own report, for tools.
    pub(crate) verify: verify::Report,
}

/// A key that signed manifests in the window.
#[derive(Debug, Serialize)]
pub(crate) struct Signer {
    pub(crate) public_key: String,
    /// `SHA256:` and the first 16 hex digits of the SHA-256 of the key's 32 bytes.
    pub(crate) fingerprint: String,
    /// The key was given with `--public-key`: every signature was checked against it.
    pub(crate) pinned: bool,
}

/// A gap record: records the trail says were lost, and why.
#[derive(Debug, Serialize)]
pub(crate) struct GapOut {
    pub(crate) id: String,
    pub(crate) host: String,
    #[serde(with = "time::wire")]
    pub(crate) from: jiff::Timestamp,
    #[serde(with = "time::wire")]
    pub(crate) to: jiff::Timestamp,
    pub(crate) reason: &'static str,
    pub(crate) explanation: &'static str,
    pub(crate) lost: u64,
    pub(crate) by_action: Vec<(String, u64)>,
}

/// What each gap reason means, for the reader.
fn explain(reason: GapReason) -> &'static str {
    match reason {
        GapReason::RingbufFull => {
            "the kernel produced records faster than the agent read them; the kernel counted the loss"
        }
        GapReason::PendingFull => {
            "too many threads were inside watched system calls at once; the kernel counted the loss"
        }
        GapReason::DecodeError => "a kernel record could not be decoded",
        GapReason::SpoolFull => {
            "the agent's local spool reached its size limit while the store was unreachable"
        }
        GapReason::DiskFull => "the disk holding the agent's spool was full",
        GapReason::SpoolWriteFailed => "writing to the agent's spool failed",
        GapReason::AgentRestart => {
            "the audit agent was stopped and restarted; actions in between were not observed"
        }
        GapReason::AgentCrash => {
            "the audit agent stopped without a clean shutdown; actions until its restart were not observed"
        }
    }
}

fn fingerprint(key_hex: &str) -> String {
    let digest =
        hex::decode(key_hex).map_or_else(|_| sha256_hex(key_hex.as_bytes()), |b| sha256_hex(&b));
    format!("SHA256:{}", &digest[..16])
}

fn gap_out(r: &Read) -> Option<GapOut> {
    let g = r.event.gap()?;
    Some(GapOut {
        id: record::record_id(&r.event),
        host: r.event.host.name.clone(),
        from: g.from,
        to: g.to,
        reason: g.reason.name(),
        explanation: explain(g.reason),
        lost: g.lost,
        by_action: g.by_action.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    })
}

/// Tampering and holes `verify` found, one sentence each.
fn tamper_findings(v: &verify::Report) -> Vec<String> {
    let mut f = Vec::new();
    for s in &v.streams {
        let stream = &s.stream;
        for m in &s.missing {
            f.push(format!(
                "Stream {stream}: object {m} is listed by a manifest but missing."
            ));
        }
        for m in &s.modified {
            f.push(format!(
                "Stream {stream}: object {m} was modified after it was sealed."
            ));
        }
        for b in &s.broken_links {
            f.push(format!(
                "Stream {stream}: the manifest chain is broken: {b}."
            ));
        }
        for b in &s.bad_signatures {
            f.push(format!("Stream {stream}: bad signature: {b}."));
        }
        if let Some(t) = &s.tail {
            f.push(format!("Stream {stream}: {t}."));
        }
        for g in s.seq_gaps.iter().filter(|g| !g.explained) {
            f.push(format!(
                "Stream {stream}: records {}..{} are missing and no gap record explains them.",
                g.from, g.to
            ));
        }
    }
    for k in &v.unreferenced {
        f.push(format!(
            "Object {k} is in the store but no manifest lists it (planted, or its manifest never \
             arrived); its records are not in this report."
        ));
    }
    f
}

impl Integrity {
    /// Judges `v` (verify over the window) and the window's gap records.
    pub(super) fn judge(v: verify::Report, gaps: &[Read], pinned: bool) -> Self {
        let mut findings = tamper_findings(&v);
        let failed = !findings.is_empty();
        let gaps: Vec<GapOut> = gaps.iter().filter_map(gap_out).collect();
        let lost: u64 = gaps.iter().map(|g| g.lost).sum();
        if !gaps.is_empty() {
            findings.push(format!(
                "{lost} record(s) were lost in {} gap(s), each recorded by the agent (see Gaps): \
                 actions in those windows may be missing from this report.",
                gaps.len()
            ));
        }
        let keys: std::collections::BTreeSet<&String> =
            v.streams.iter().flat_map(|s| s.signed_by.iter()).collect();
        let unsigned: u64 = v.streams.iter().map(|s| s.unsigned).sum();
        if keys.is_empty() {
            findings.push(
                "The manifests are not signed: the hash chain shows the trail is internally \
                 consistent, but whoever can write to the store could have rewritten it whole."
                    .into(),
            );
        } else if !pinned {
            findings.push(format!(
                "Signed by {}, but no trusted key was given (--public-key): a trail re-signed \
                 with another key would look the same.",
                keys.iter()
                    .map(|k| fingerprint(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let level = if failed {
            Level::Failed
        } else if findings.is_empty() {
            Level::Verified
        } else {
            Level::Qualified
        };
        let headline = match level {
            Level::Verified => "Verified: the trail of this window is complete, untouched and \
                                signed by the trusted key."
                .to_string(),
            Level::Qualified => "Untouched, with qualifications: read the findings below.".into(),
            Level::Failed => "NOT VERIFIED: the trail of this window was altered or has \
                              unexplained holes. Do not rely on this report without investigating."
                .into(),
        };
        Self {
            level,
            headline,
            findings,
            signers: keys
                .iter()
                .map(|k| Signer {
                    public_key: (*k).clone(),
                    fingerprint: fingerprint(k),
                    pinned,
                })
                .collect(),
            unsigned_manifests: unsigned,
            streams: v.streams.len() as u64,
            objects_checked: v.streams.iter().map(|s| s.objects_checked).sum(),
            records_checked: v.streams.iter().map(|s| s.records).sum(),
            gaps,
            verify: v,
        }
    }
}
