//! The Amazon Security Lake sink: the OCSF rendering of each sealed segment as Parquet, one OCSF
//! class per object and per custom source (Security Lake accepts one class per source), under
//! the layout Security Lake reads custom sources from:
//!
//! ```text
//! <prefix>/ext/<source>-<class>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/<host>-<boot id>-<first seq>.parquet
//! ```
//! (`<class>`: `file-activity` 1001, `module-activity` 1005, `process-activity` 1007,
//! `network-activity` 4001, `http-activity` 4002, `dns-activity` 4003, `base-event` 0). Rows are sorted by time and compressed with ZSTD. Each class has one fixed
//! Arrow schema, written below as Hive-style type strings (the notation of the Athena DDL in
//! docs/storage.md) and parsed once; events are decoded into it by `arrow-json` in strict mode,
//! so an OCSF attribute the schema lacks is an error, not a silently dropped column. Objects are
//! listed by the manifests like every other object: `verify` re-hashes them.

use std::{collections::BTreeMap, sync::Arc, sync::LazyLock};

use anyhow::{Context as _, bail};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use serde_json::Value;

/// `[export.security_lake]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LakeSettings {
    /// Custom source names are `<source>-<class>`.
    pub(crate) source: String,
    pub(crate) region: String,
    pub(crate) account_id: String,
}

impl LakeSettings {
    /// Checks the values Security Lake constrains; the error names the field.
    pub(crate) fn check(&self) -> Result<(), String> {
        let longest = CLASSES.iter().map(|c| c.1.len()).max().unwrap_or(0);
        if self.source.is_empty()
            || self.source.len() + 1 + longest > 64
            || !self
                .source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "source `{}`: letters, digits, `-` and `_`, at most {} characters (Security Lake \
                 custom source names are `<source>-<class>`, at most 64)",
                self.source,
                63 - longest
            ));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "account_id `{}`: an AWS account id is 12 digits",
                self.account_id
            ));
        }
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "region `{}`: an AWS region such as us-east-1",
                self.region
            ));
        }
        Ok(())
    }

    /// The key of a class's object for `day` (`YYYYMMDD`).
    pub(crate) fn key(&self, class_uid: u32, day: &str, stream: &str, first_seq: u64) -> String {
        format!(
            "{}/{}-{}/region={}/accountId={}/eventDay={day}/{stream}-{first_seq:020}{SUFFIX}",
            crate::trail::layout::LAKE_DIR,
            self.source,
            class_slug(class_uid),
            self.region,
            self.account_id
        )
    }
}

pub(crate) const SUFFIX: &str = ".parquet";

/// The OCSF classes audit-agent emits: uid and the custom source suffix.
const CLASSES: [(u32, &str); 7] = [
    (1001, "file-activity"),
    (1005, "module-activity"),
    (1007, "process-activity"),
    (4001, "network-activity"),
    (4002, "http-activity"),
    (4003, "dns-activity"),
    (0, "base-event"),
];

fn class_slug(class_uid: u32) -> &'static str {
    CLASSES
        .iter()
        .find(|c| c.0 == class_uid)
        .map_or("other", |c| c.1)
}

/// Attributes of every event.
const BASE: &str = "class_uid int, class_name string, category_uid int, category_name string,
  activity_id int, activity_name string, type_uid bigint, type_name string, time bigint,
  severity_id int, severity string, status_id int, status string, status_code string,
  status_detail string, message string,
  metadata struct<version:string, uid:string, log_name:string, original_time:string,
                  profiles:array<string>, product:struct<name:string, vendor_name:string, version:string>>,
  unmapped map<string,string>";

/// Attributes of every activity (System and Network Activity, host and security_control profiles).
const ACTIVITY: &str = "action_id int, action string, disposition_id int, disposition string,
  device struct<hostname:string, type_id:int, type:string>,
  actor struct<user:struct<uid:string, name:string, type_id:int, type:string>,
               process:struct<pid:int, tid:int, name:string, uid:string,
                              user:struct<uid:string, type_id:int, type:string>,
                              file:struct<path:string, name:string, type_id:int, type:string>,
                              parent_process:struct<pid:int, uid:string>,
                              container:struct<uid:string, name:string, orchestrator:string, pod_uuid:string>>,
               authorizations:array<struct<decision:string, policy:struct<uid:string, name:string, version:string>>>>";

const FILE: &str = "file struct<path:string, name:string, type_id:int, type:string>,
  file_result struct<path:string, name:string, type_id:int, type:string>";

/// Module Activity's module: a file mapped for execution (`process.map_exec`).
const MODULE: &str =
    "module struct<file:struct<path:string, name:string, type_id:int, type:string>,
  base_address:string, load_type_id:int, load_type:string>";

const PROCESS: &str = "process struct<pid:int, tid:int, uid:string, name:string, cmd_line:string,
    file:struct<path:string, name:string, type_id:int, type:string>,
    user:struct<uid:string, type_id:int, type:string>,
    container:struct<uid:string, name:string, orchestrator:string, pod_uuid:string>,
    parent_process:struct<pid:int, tid:int, name:string, uid:string,
                          user:struct<uid:string, type_id:int, type:string>,
                          file:struct<path:string, name:string, type_id:int, type:string>,
                          parent_process:struct<pid:int, uid:string>,
                          container:struct<uid:string, name:string, orchestrator:string, pod_uuid:string>>>,
  exit_code int";

const NETWORK: &str = "src_endpoint struct<hostname:string>,
  dst_endpoint struct<ip:string, port:int, name:string, hostname:string>,
  connection_info struct<direction_id:int, direction:string, protocol_ver_id:int>";

/// Network Activity's TLS hello (`network.tls`).
const TLS: &str = "tls struct<version:string, sni:string>";

const HTTP: &str = "http_request struct<http_method:string, version:string,
    url:struct<url_string:string, path:string, query_string:string, hostname:string, port:int>>,
  http_response struct<code:int>";

const DNS: &str = "query struct<hostname:string, type:string, packet_uid:int>,
  answers array<struct<rdata:string, type:string, ttl:int, packet_uid:int>>,
  rcode_id int, rcode string, response_time bigint";

/// The Arrow schema of each class, parsed once.
static SCHEMAS: LazyLock<BTreeMap<u32, SchemaRef>> = LazyLock::new(|| {
    let schema = |parts: &[&str]| {
        let fields: Vec<Field> = parts.iter().flat_map(|p| columns(p)).collect();
        Arc::new(Schema::new(fields))
    };
    BTreeMap::from([
        (1001, schema(&[BASE, ACTIVITY, FILE])),
        (1005, schema(&[BASE, ACTIVITY, MODULE])),
        (1007, schema(&[BASE, ACTIVITY, PROCESS])),
        (4001, schema(&[BASE, ACTIVITY, NETWORK, TLS])),
        (4002, schema(&[BASE, ACTIVITY, NETWORK, HTTP])),
        (4003, schema(&[BASE, ACTIVITY, NETWORK, DNS])),
        (0, schema(&[BASE])),
    ])
});

/// The schema of a class (for tests and docs).
pub(crate) fn schema(class_uid: u32) -> Option<SchemaRef> {
    SCHEMAS.get(&class_uid).cloned()
}

/// `name type, name type, ...` as Arrow fields (all nullable).
fn columns(s: &str) -> Vec<Field> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let (name, r) = rest
            .split_once(char::is_whitespace)
            .expect("a column: name type");
        let (t, r) = data_type(r);
        out.push(Field::new(name.trim(), t, true));
        rest = r.trim_start().strip_prefix(',').unwrap_or(r).trim_start();
    }
    out
}

/// One Hive-style type from the start of `s`, and the rest.
fn data_type(s: &str) -> (DataType, &str) {
    let s = s.trim_start();
    if let Some(r) = s.strip_prefix("struct<") {
        let mut fields = Vec::new();
        let mut rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('>') {
                return (DataType::Struct(Fields::from(fields)), r);
            }
            let (name, r) = rest.split_once(':').expect("field:type");
            let (t, r) = data_type(r);
            fields.push(Field::new(name.trim(), t, true));
            rest = r.trim_start().strip_prefix(',').unwrap_or(r);
        }
    }
    if let Some(r) = s.strip_prefix("array<") {
        let (t, r) = data_type(r);
        let item = Field::new("item", t, true);
        return (
            DataType::List(Arc::new(item)),
            r.trim_start().strip_prefix('>').expect("array<...>"),
        );
    }
    if let Some(r) = s.strip_prefix("map<string,string>") {
        let entries = Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        );
        return (DataType::Map(Arc::new(entries), false), r);
    }
    let end = s.find([',', '>']).unwrap_or(s.len());
    let t = match s[..end].trim() {
        "string" => DataType::Utf8,
        "int" => DataType::Int32,
        "bigint" => DataType::Int64,
        other => panic!("lake schema: unknown type {other}"),
    };
    (t, &s[end..])
}

/// `unmapped` as Security Lake tables have it: each attribute's value as JSON text.
fn flatten_unmapped(mut e: Value) -> Value {
    if let Some(u) = e.get_mut("unmapped").and_then(Value::as_object_mut) {
        for v in u.values_mut() {
            if !v.is_string() {
                *v = Value::String(v.to_string());
            }
        }
    }
    e
}

/// One Parquet object: its class, day, rows and bytes.
pub(crate) struct LakeObject {
    pub(crate) class_uid: u32,
    /// `YYYYMMDD` of the events' time.
    pub(crate) day: String,
    pub(crate) records: u64,
    pub(crate) parquet: Vec<u8>,
}

/// The OCSF events of a segment as Parquet objects, one per class and day.
pub(crate) fn objects(ocsf_events: Vec<Value>) -> anyhow::Result<Vec<LakeObject>> {
    let mut groups: BTreeMap<(u32, String), Vec<Value>> = BTreeMap::new();
    for e in ocsf_events {
        let class = e["class_uid"].as_u64().unwrap_or(0) as u32;
        let ms = e["time"].as_i64().unwrap_or(0);
        let day = jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y%m%d").to_string())
            .unwrap_or_else(|_| "19700101".into());
        groups.entry((class, day)).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|((class_uid, day), mut events)| {
            events.sort_by_key(|e| e["time"].as_i64().unwrap_or(0));
            let records = events.len() as u64;
            let parquet = encode(class_uid, events)?;
            Ok(LakeObject {
                class_uid,
                day,
                records,
                parquet,
            })
        })
        .collect()
}

fn encode(class_uid: u32, events: Vec<Value>) -> anyhow::Result<Vec<u8>> {
    let Some(schema) = schema(class_uid) else {
        bail!("OCSF class {class_uid} has no Security Lake schema");
    };
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_strict_mode(true)
        .build_decoder()?;
    let events: Vec<Value> = events.into_iter().map(flatten_unmapped).collect();
    decoder
        .serialize(&events)
        .with_context(|| format!("OCSF class {class_uid} events do not fit its Parquet schema"))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))?;
    while let Some(batch) = decoder.flush()? {
        writer.write(&batch)?;
    }
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_schema_parses() {
        for (class, _) in CLASSES {
            let s = schema(class).unwrap();
            assert!(s.field_with_name("metadata").is_ok());
            assert!(s.field_with_name("unmapped").is_ok());
        }
        assert!(schema(1001).unwrap().field_with_name("file").is_ok());
        assert!(schema(0).unwrap().field_with_name("actor").is_err());
    }

    #[test]
    fn settings_are_checked_for_security_lake() {
        let ok = LakeSettings {
            source: "audit-agent".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        };
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.key(1001, "20261127", "node-b", 7),
            "ext/audit-agent-file-activity/region=us-east-1/accountId=123456789012/eventDay=20261127/node-b-00000000000000000007.parquet"
        );
        for bad in [
            LakeSettings {
                account_id: "12345".into(),
                ..ok.clone()
            },
            LakeSettings {
                source: "a b".into(),
                ..ok.clone()
            },
            LakeSettings {
                region: "US_EAST".into(),
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err());
        }
    }

    #[test]
    fn an_attribute_outside_the_schema_is_an_error() {
        let line = br#"{"class_uid":0,"time":1,"metadata":{"version":"1.3.0"},"surprise":1}"#;
        assert!(objects(vec![serde_json::from_slice(line).unwrap()]).is_err());
        let line = br#"{"class_uid":0,"time":1,"metadata":{"version":"1.3.0"},"unmapped":{"gap":{"lost":1}}}"#;
        let o = objects(vec![serde_json::from_slice(line).unwrap()]).unwrap();
        assert_eq!((o[0].class_uid, o[0].records), (0, 1));
        assert!(o[0].parquet.starts_with(b"PAR1"));
    }
}
