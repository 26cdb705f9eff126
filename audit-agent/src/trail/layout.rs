//! Where records live, in one place: object keys in a store, their partitions, manifest keys, and
//! the names of spool files derived from them. Seal, upload, verify and query all go through it.
//!
//! ```text
//! <prefix>/v1/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<stream>-<first seq>.ndjson.gz
//! <prefix>/ocsf/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<stream>-<first seq>.ndjson.gz
//! <prefix>/ecs/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<stream>-<first seq>.ndjson.gz
//! <prefix>/v1/_manifests/<stream>/<sequence>.json
//! <prefix>/ext/<source>-<class>/region=<region>/accountId=<account>/eventDay=YYYYMMDD/<stream>-<first seq>.parquet
//! ```
//! `<stream>` is `<host>-<boot id>-<spool id>` ([`StreamId`]).
//! (`ext/`: the Amazon Security Lake sink, lake.rs; its keys are made there, under [`LAKE_DIR`].)
//! Partitions are Hive-style (readable by Athena, Trino and DuckDB). Partition values and host
//! names are percent-encoded (every byte outside `A-Za-z0-9._-`, and a leading `.`), so any agent
//! id or host name gives a valid, unambiguous key. `first seq` is zero-padded to 20 digits so
//! keys sort in sequence order.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::stream::StreamId;
use crate::{
    event::{Event, Timestamp},
    time,
};

/// Partition of records that belong to no agent (gap records).
pub(crate) const AUDIT_PARTITION: &str = "_audit";
/// Where manifests live, relative to the store prefix.
pub(crate) const MANIFESTS: &str = "v1/_manifests/";
const RECORDS_SUFFIX: &str = ".ndjson.gz";

/// The Content-Type of every object the layout has, by file extension: records objects are gzip
/// files (of JSON lines), manifests JSON, Security Lake objects Parquet. Set on upload to S3 (a
/// directory store has none).
pub(crate) const CONTENT_TYPES: [(&str, &str); 3] = [
    ("gz", "application/gzip"),
    ("json", "application/json"),
    ("parquet", "application/vnd.apache.parquet"),
];

/// Where Security Lake objects live (custom sources are under `ext/` in a Security Lake bucket).
pub(crate) const LAKE_DIR: &str = "ext";

/// Bytes left as they are in key components: `A-Za-z0-9._-` (a leading `.` is encoded apart).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// Percent-encodes a partition value or key component.
pub(crate) fn encode(s: &str) -> String {
    match s.strip_prefix('.') {
        Some(rest) => format!("%2E{}", utf8_percent_encode(rest, COMPONENT)),
        None => utf8_percent_encode(s, COMPONENT).to_string(),
    }
}

/// Reverses [`encode`]; `None` when the result is not UTF-8.
pub(crate) fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Which rendering an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ObjectFormat {
    Native,
    Ocsf,
    Ecs,
    /// OCSF as Parquet, for Amazon Security Lake (keys from lake.rs).
    #[serde(rename = "ocsf_parquet")]
    OcsfParquet,
}

impl ObjectFormat {
    /// The top-level directory of the format.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Self::Native => "v1",
            Self::Ocsf => "ocsf",
            Self::Ecs => "ecs",
            Self::OcsfParquet => LAKE_DIR,
        }
    }

    fn from_dir(d: &str) -> Option<Self> {
        match d {
            "v1" => Some(Self::Native),
            "ocsf" => Some(Self::Ocsf),
            "ecs" => Some(Self::Ecs),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Ocsf => "ocsf",
            Self::Ecs => "ecs",
            Self::OcsfParquet => "ocsf_parquet",
        }
    }
}

impl StreamId {
    /// `<host>-<boot id>-<spool id>` as used in keys (`<host>-<boot id>` before spool ids).
    pub(crate) fn key_part(&self) -> String {
        let host_boot = format!("{}-{}", encode(&self.host), encode(&self.boot_id));
        match self.spool.as_str() {
            "" => host_boot,
            spool => format!("{host_boot}-{}", encode(spool)),
        }
    }
}

/// One agent and one UTC hour of the trail. Typed: its strings (`dt=YYYY-MM-DD/hour=HH`) are
/// made only when a key or file name is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Partition {
    pub(crate) agent: String,
    /// The first instant of the hour.
    pub(crate) hour: Timestamp,
}

impl Partition {
    /// The partition an event is stored under (gaps: [`AUDIT_PARTITION`]).
    pub(crate) fn of(e: &Event) -> Self {
        Self {
            agent: Self::agent_of(e).to_string(),
            hour: time::hour_of(e.time),
        }
    }

    /// The partition a key's agent, date and hour strings name; `None` unless they are exactly
    /// what [`Partition`] writes (so a parsed key renders back to itself).
    fn parse(agent: &str, date: &str, hour: &str) -> Option<Self> {
        let (start, _) = time::hour_window(date, hour)?;
        let (d, h) = time::date_hour(start);
        (d == date && h == hour).then_some(())?;
        Some(Self {
            agent: decode(agent)?,
            hour: start,
        })
    }

    /// The agent part of an event's partition.
    pub(crate) fn agent_of(e: &Event) -> &str {
        match e.gap() {
            Some(_) => AUDIT_PARTITION,
            None => e.agent_id(),
        }
    }

    /// The time window `[start, end)` the partition covers.
    pub(crate) fn window(&self) -> (Timestamp, Timestamp) {
        let end = self.hour.checked_add(jiff::SignedDuration::from_hours(1));
        (self.hour, end.unwrap_or(Timestamp::MAX))
    }

    fn dirs(&self, format: ObjectFormat) -> String {
        let (date, hour) = time::date_hour(self.hour);
        format!(
            "{}/agent_id={}/dt={date}/hour={hour}",
            format.dir(),
            encode(&self.agent),
        )
    }
}

/// A records object: what its key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectName {
    pub(crate) format: ObjectFormat,
    pub(crate) partition: Partition,
    /// The stream's key part (`<host>-<boot id>-<spool id>`, encoded).
    pub(crate) stream: String,
    pub(crate) first_seq: u64,
}

impl ObjectName {
    pub(crate) fn new(format: ObjectFormat, segment: &SegmentName, stream: &StreamId) -> Self {
        Self {
            format,
            partition: segment.partition.clone(),
            stream: stream.key_part(),
            first_seq: segment.first_seq,
        }
    }

    /// The key relative to the store prefix.
    pub(crate) fn key(&self) -> String {
        format!(
            "{}/{}-{:020}{RECORDS_SUFFIX}",
            self.partition.dirs(self.format),
            self.stream,
            self.first_seq
        )
    }

    /// Parses a key relative to the store prefix.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split('/');
        let format = ObjectFormat::from_dir(parts.next()?)?;
        let agent = parts.next()?.strip_prefix("agent_id=")?;
        let date = parts.next()?.strip_prefix("dt=")?;
        let hour = parts.next()?.strip_prefix("hour=")?;
        let partition = Partition::parse(agent, date, hour)?;
        let file = parts.next()?.strip_suffix(RECORDS_SUFFIX)?;
        if parts.next().is_some() {
            return None;
        }
        let (stream, seq) = file.rsplit_once('-')?;
        Some(Self {
            format,
            partition,
            stream: stream.to_string(),
            first_seq: seq.parse().ok()?,
        })
    }

    /// The name of the sealed object's file in the spool.
    pub(crate) fn spool_file(&self) -> String {
        let segment = SegmentName {
            first_seq: self.first_seq,
            partition: self.partition.clone(),
        };
        format!("{}.{}.gz", segment.stem(), self.format.name())
    }
}

/// A spool segment: the records of one partition from `first_seq` on, before sealing.
/// File name `<first seq>+<agent>+<YYYY-MM-DD>+<HH>.ndjson.gz` (agent percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SegmentName {
    pub(crate) first_seq: u64,
    pub(crate) partition: Partition,
}

impl SegmentName {
    fn stem(&self) -> String {
        let (date, hour) = time::date_hour(self.partition.hour);
        format!(
            "{:020}+{}+{date}+{hour}",
            self.first_seq,
            encode(&self.partition.agent),
        )
    }

    /// The segment's file: gzip-compressed NDJSON (see `segment`).
    pub(crate) fn file_name(&self) -> String {
        format!("{}.ndjson.gz", self.stem())
    }

    /// The file name of the segment in versions that spooled plain NDJSON.
    pub(crate) fn plain_file_name(&self) -> String {
        format!("{}.ndjson", self.stem())
    }

    /// A segment's file name, of this version or an earlier one.
    pub(crate) fn parse(file: &str) -> Option<Self> {
        let stem = (file.strip_suffix(".ndjson.gz")).or_else(|| file.strip_suffix(".ndjson"))?;
        let mut p = stem.split('+');
        let s = Self {
            first_seq: p.next()?.parse().ok()?,
            partition: Partition::parse(p.next()?, p.next()?, p.next()?)?,
        };
        p.next().is_none().then_some(s)
    }

    /// The segment a records object was sealed from.
    pub(crate) fn of_object(o: &ObjectName) -> Self {
        Self {
            first_seq: o.first_seq,
            partition: o.partition.clone(),
        }
    }
}

/// Key of a manifest, relative to the store prefix.
pub(crate) fn manifest_key(stream: &StreamId, sequence: u64) -> String {
    format!("{MANIFESTS}{}/{sequence:010}.json", stream.key_part())
}

/// (stream key part, sequence) of a manifest key; `None` for any other key.
pub(crate) fn parse_manifest_key(key: &str) -> Option<(&str, u64)> {
    let (stream, file) = key.strip_prefix(MANIFESTS)?.split_once('/')?;
    Some((stream, file.strip_suffix(".json")?.parse().ok()?))
}

/// Whether a key lies in the part of the store the layout owns (records or manifests).
pub(crate) fn is_trail_key(key: &str) -> bool {
    ["v1/", "ocsf/", "ecs/", "ext/"]
        .iter()
        .any(|p| key.starts_with(p))
}

/// The name of an object's sealed file in the spool, from its key (`None`: not an object key).
pub(crate) fn spool_file_of(key: &str) -> Option<String> {
    if let Some(o) = ObjectName::parse(key) {
        return Some(o.spool_file());
    }
    let lake = key.strip_prefix(LAKE_DIR)?.strip_prefix('/')?;
    lake.ends_with(".parquet")
        .then(|| format!("lake.{}", encode(lake)))
}

/// The directory of an agent's partitions (for listing).
pub(crate) fn agent_dir(format: ObjectFormat, agent_id: &str) -> String {
    format!("{}/agent_id={}", format.dir(), encode(agent_id))
}

/// The value of a `name=value` directory (the last component of `dir`).
pub(crate) fn dir_value<'a>(dir: &'a str, name: &str) -> Option<&'a str> {
    dir.trim_end_matches('/')
        .rsplit('/')
        .next()?
        .strip_prefix(name)?
        .strip_prefix('=')
}

/// Whether a key is a records object (`*.ndjson.gz`).
pub(crate) fn is_records_object(key: &str) -> bool {
    key.ends_with(RECORDS_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> StreamId {
        StreamId {
            host: "node-1".into(),
            boot_id: "b473886d-3710-44df-b6ae-f1728d1537d7".into(),
            spool: "5c0f3e9a17d2b846".into(),
        }
    }

    #[test]
    fn any_agent_id_encodes_to_a_safe_reversible_component() {
        for id in [
            "support-bot",
            "a/b",
            "x=y",
            "100%",
            ".hidden",
            "..",
            "é",
            "a b",
            "_audit",
        ] {
            let e = encode(id);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b)),
                "{e}"
            );
            assert!(!e.starts_with('.'));
            assert_eq!(decode(&e).as_deref(), Some(id));
        }
        assert_eq!(encode("support-bot"), "support-bot");
        assert_eq!(encode("a/b=c"), "a%2Fb%3Dc");
        assert_ne!(
            encode("a/b"),
            encode("a%2Fb"),
            "no ambiguity between encoded and literal"
        );
    }

    #[test]
    fn keys_are_hive_partitioned_and_parse_back() {
        let seg = SegmentName {
            first_seq: 42,
            partition: Partition {
                agent: "a/b".into(),
                hour: time::parse("2025-11-26T19:00:00Z").unwrap(),
            },
        };
        let o = ObjectName::new(ObjectFormat::Native, &seg, &stream());
        let k = o.key();
        assert_eq!(
            k,
            "v1/agent_id=a%2Fb/dt=2025-11-26/hour=19/node-1-b473886d-3710-44df-b6ae-f1728d1537d7-5c0f3e9a17d2b846-00000000000000000042.ndjson.gz"
        );
        assert_eq!(ObjectName::parse(&k), Some(o.clone()));
        assert_eq!(SegmentName::of_object(&o), seg);
        assert_eq!(
            o.spool_file(),
            "00000000000000000042+a%2Fb+2025-11-26+19.native.gz"
        );
        assert_eq!(ObjectName::parse("v1/_manifests/x/0000000001.json"), None);
        let m = manifest_key(&stream(), 7);
        assert_eq!(
            m,
            "v1/_manifests/node-1-b473886d-3710-44df-b6ae-f1728d1537d7-5c0f3e9a17d2b846/0000000007.json"
        );
        assert_eq!(
            parse_manifest_key(&m),
            Some((
                "node-1-b473886d-3710-44df-b6ae-f1728d1537d7-5c0f3e9a17d2b846",
                7
            ))
        );
        // Streams of versions before spool ids were host and boot.
        let legacy = StreamId {
            spool: String::new(),
            ..stream()
        };
        assert_eq!(
            legacy.key_part(),
            "node-1-b473886d-3710-44df-b6ae-f1728d1537d7"
        );
        assert_eq!(
            dir_value("v1/agent_id=a%2Fb/dt=2025-11-26/", "dt"),
            Some("2025-11-26")
        );
    }

    #[test]
    fn segment_names_round_trip_for_any_agent_id() {
        for agent in ["support-bot", "a+b", "x/y", "_audit"] {
            let n = SegmentName {
                first_seq: 42,
                partition: Partition {
                    agent: agent.into(),
                    hour: time::parse("2026-11-26T19:00:00Z").unwrap(),
                },
            };
            assert_eq!(SegmentName::parse(&n.file_name()), Some(n));
        }
        assert_eq!(SegmentName::parse("junk.ndjson"), None);
    }
}
