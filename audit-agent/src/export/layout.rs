//! Where records live in a store (Hive-style partitions readable by Athena, Trino and DuckDB):
//!
//! ```text
//! <prefix>/v1/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<host>-<boot id>-<first seq>.ndjson.gz
//! <prefix>/ocsf/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<host>-<boot id>-<first seq>.ndjson.gz
//! <prefix>/v1/_manifests/<host>-<boot id>/<sequence>.json
//! ```
//! Partition values are percent-encoded (every byte outside `A-Za-z0-9._-`, and a leading `.`),
//! so any agent id or host name gives a valid, unambiguous key. `first seq` is zero-padded to
//! 20 digits so keys sort in sequence order.

use crate::timefmt::civil_from_days;

/// Partition of records that belong to no agent (gap records).
pub const AUDIT_PARTITION: &str = "_audit";

/// Which rendering an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectFormat {
    Native,
    Ocsf,
}

impl ObjectFormat {
    pub fn dir(self) -> &'static str {
        match self {
            Self::Native => "v1",
            Self::Ocsf => "ocsf",
        }
    }
}

/// Percent-encodes a partition value or key component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode`].
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// (`YYYY-MM-DD`, `HH`) of an event time (UTC).
pub fn date_hour(unix_ns: i128) -> (String, String) {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}", secs.rem_euclid(86_400) / 3600),
    )
}

/// Identifies a writer's stream: host and boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamId {
    pub host: String,
    pub boot_id: String,
}

impl StreamId {
    /// `<host>-<boot id>` as used in keys.
    pub fn key_part(&self) -> String {
        format!("{}-{}", encode(&self.host), encode(&self.boot_id))
    }
}

/// Key of a records object, relative to the store prefix.
pub fn object_key(
    format: ObjectFormat,
    agent_id: &str,
    dt: &str,
    hour: &str,
    stream: &StreamId,
    first_seq: u64,
) -> String {
    format!(
        "{}/agent_id={}/dt={dt}/hour={hour}/{}-{first_seq:020}.ndjson.gz",
        format.dir(),
        encode(agent_id),
        stream.key_part()
    )
}

/// Key of a manifest, relative to the store prefix.
pub fn manifest_key(stream: &StreamId, sequence: u64) -> String {
    format!("v1/_manifests/{}/{sequence:010}.json", stream.key_part())
}

/// The partition values of a records object key (relative to the prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    pub format: ObjectFormat,
    pub agent_id: String,
    pub dt: String,
    pub hour: String,
    pub file: String,
}

/// Parses `v1/agent_id=../dt=../hour=../file` (or `ocsf/...`).
pub fn parse_object_key(rel: &str) -> Option<ObjectKey> {
    let mut parts = rel.split('/');
    let format = match parts.next()? {
        "v1" => ObjectFormat::Native,
        "ocsf" => ObjectFormat::Ocsf,
        _ => return None,
    };
    let agent_id = decode(parts.next()?.strip_prefix("agent_id=")?)?;
    let dt = parts.next()?.strip_prefix("dt=")?.to_string();
    let hour = parts.next()?.strip_prefix("hour=")?.to_string();
    let file = parts.next()?.to_string();
    if parts.next().is_some() || !file.ends_with(".ndjson.gz") {
        return None;
    }
    Some(ObjectKey {
        format,
        agent_id,
        dt,
        hour,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let s = StreamId {
            host: "node-1".into(),
            boot_id: "b473886d-3710-44df-b6ae-f1728d1537d7".into(),
        };
        let (dt, hour) = date_hour(1_764_186_121_000_000_000);
        assert_eq!((dt.as_str(), hour.as_str()), ("2025-11-26", "19"));
        let k = object_key(ObjectFormat::Native, "a/b", &dt, &hour, &s, 42);
        assert_eq!(
            k,
            "v1/agent_id=a%2Fb/dt=2025-11-26/hour=19/node-1-b473886d-3710-44df-b6ae-f1728d1537d7-00000000000000000042.ndjson.gz"
        );
        let p = parse_object_key(&k).unwrap();
        assert_eq!(
            (p.agent_id.as_str(), p.dt.as_str(), p.hour.as_str()),
            ("a/b", "2025-11-26", "19")
        );
        assert_eq!(parse_object_key("v1/_manifests/x/0000000001.json"), None);
        assert_eq!(
            manifest_key(&s, 7),
            "v1/_manifests/node-1-b473886d-3710-44df-b6ae-f1728d1537d7/0000000007.json"
        );
    }
}
