//! Manifests: the tamper-evidence layer. One manifest per sealed batch lists every object's
//! SHA-256 (of the bytes stored; manifests v1: of the uncompressed bytes), its seq range, record
//! count and time range, and the hash
//! of the previous manifest of the same stream (host, boot and spool), forming a chain like
//! CloudTrail digest files. A manifest may be signed with Ed25519; the public key is recorded in it.
//!
//! File format: `{"manifest": BODY, "signature": null | {"alg":"ed25519","public_key":HEX,"value":HEX}}`.
//! The signature covers the exact bytes of BODY; the chain hash covers the exact bytes of the
//! whole file.

use anyhow::{Context as _, bail};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{layout::ObjectFormat, store::Writes, stream::StreamId};
use crate::event::Timestamp;

/// What the sealer writes. Objects' `sha256` and `bytes` are of the object as stored (for gzip,
/// the compressed bytes: hashing them costs a tenth of hashing the records, and anyone can check
/// an object with `sha256sum`), and `content_bytes` is its uncompressed size.
pub(crate) const SCHEMA: &str = "audit-agent/manifest/v2";
/// Earlier manifests, still verified: objects' `sha256` and `bytes` are of the uncompressed
/// records (Parquet objects: of the stored bytes).
const SCHEMA_V1: &str = "audit-agent/manifest/v1";

fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// A pointer to another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) key: String,
    /// SHA-256 of the whole manifest file.
    pub(crate) sha256: String,
}

/// What a segment holds: its record count, seq range and time range. One type for both places
/// it is written: beside a closed spool segment (`<name>.meta`, so sealing need not re-read every
/// record; recomputed from the records after a crash), and in the manifest entry of every object
/// sealed from the segment ([`ObjectEntry::meta`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub(crate) records: u64,
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    #[serde(with = "crate::time::wire")]
    pub(crate) time_from: Timestamp,
    #[serde(with = "crate::time::wire")]
    pub(crate) time_to: Timestamp,
}

impl SegmentMeta {
    pub(crate) fn new(seq: u64, t: Timestamp) -> Self {
        Self {
            records: 0,
            first_seq: seq,
            last_seq: seq,
            time_from: t,
            time_to: t,
        }
    }

    pub(crate) fn add(&mut self, seq: u64, t: Timestamp) {
        self.records += 1;
        self.first_seq = self.first_seq.min(seq);
        self.last_seq = self.last_seq.max(seq);
        self.time_from = self.time_from.min(t);
        self.time_to = self.time_to.max(t);
    }
}

/// One object of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectEntry {
    /// Key relative to the store prefix.
    pub(crate) key: String,
    pub(crate) format: ObjectFormat,
    pub(crate) agent_id: String,
    /// SHA-256 of the stored bytes (see [`ObjectEntry::hashes_stored`]).
    pub(crate) sha256: String,
    /// Size of what `sha256` covers.
    pub(crate) bytes: u64,
    /// Uncompressed size of a compressed object (manifests v2); absent in v1, where `sha256` and
    /// `bytes` are of the uncompressed records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) content_bytes: Option<u64>,
    /// Its records (of the object: a rendering may hold fewer than the segment), seq and time
    /// range; in the manifest these are fields of the entry itself.
    #[serde(flatten)]
    pub(crate) meta: SegmentMeta,
}

#[cfg(test)]
impl ObjectEntry {
    /// The entry of a native object `v1/o.ndjson.gz` of agent `a` holding seqs 1 and 2, both at
    /// 2026-01-01T00:00:00Z: the fixture of the manifest and verify tests.
    pub(crate) fn of_two_records(sha256: String, bytes: u64, content_bytes: Option<u64>) -> Self {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        Self {
            key: "v1/o.ndjson.gz".into(),
            format: ObjectFormat::Native,
            agent_id: "a".into(),
            sha256,
            bytes,
            content_bytes,
            meta: SegmentMeta {
                records: 2,
                first_seq: 1,
                last_seq: 2,
                time_from: t,
                time_to: t,
            },
        }
    }
}

impl ObjectEntry {
    /// Whether `sha256` is of the object as stored (manifests v2, and Parquet objects always),
    /// rather than of its decompressed records (gzip objects in manifests v1).
    pub(crate) fn hashes_stored(&self) -> bool {
        self.content_bytes.is_some() || self.format == ObjectFormat::OcsfParquet
    }

    /// At most how many bytes the object decompresses to.
    pub(crate) fn content_limit(&self) -> u64 {
        self.content_bytes.unwrap_or(self.bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) schema: String,
    pub(crate) stream: StreamId,
    /// Position in the stream's chain (0, 1, 2, ...).
    pub(crate) sequence: u64,
    #[serde(with = "crate::time::wire")]
    pub(crate) created: Timestamp,
    /// The previous manifest of this stream; null for the first.
    pub(crate) prev: Option<Link>,
    /// For a first manifest: the last manifest of the spool's previous stream, if known.
    #[serde(default)]
    pub(crate) previous_stream: Option<Link>,
    pub(crate) objects: Vec<ObjectEntry>,
    /// Hex Ed25519 public key when signed.
    #[serde(default)]
    pub(crate) public_key: Option<String>,
    /// What the manifest marks (absent in manifests before heartbeats: `batch`).
    #[serde(default)]
    pub(crate) kind: ManifestKind,
    /// The writer's heartbeat interval: a newer manifest follows within it, unless the stream
    /// closed. `verify` reports a stream whose last manifest is older than twice this and not a
    /// closing one (absent before heartbeats: no expectation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) heartbeat_ms: Option<u64>,
    /// How the writer found the store takes create-only writes when it sealed this manifest
    /// (absent: not known yet — the store had not answered — or a version before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) store_writes: Option<Writes>,
}

/// What a manifest marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ManifestKind {
    /// Sealed objects.
    #[default]
    Batch,
    /// No objects: the writer was alive with nothing to seal.
    Heartbeat,
    /// A clean stop: the stream ends here (until the writer starts again).
    Closing,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Signature {
    pub(crate) alg: String,
    pub(crate) public_key: String,
    pub(crate) value: String,
}

#[derive(Serialize)]
struct FileOut<'a> {
    manifest: &'a RawValue,
    signature: Option<Signature>,
}

#[derive(Deserialize)]
struct FileIn<'a> {
    #[serde(borrow)]
    manifest: &'a RawValue,
    signature: Option<Signature>,
}

/// Serializes (and signs) a manifest body into file bytes.
pub(crate) fn encode(body: &Body, key: Option<&SigningKey>) -> anyhow::Result<Vec<u8>> {
    let body_json = serde_json::to_string(body)?;
    let raw = RawValue::from_string(body_json)?;
    let signature = key.map(|k| Signature {
        alg: "ed25519".into(),
        public_key: hex::encode(k.verifying_key().as_bytes()),
        value: hex::encode(k.sign(raw.get().as_bytes()).to_bytes()),
    });
    Ok(serde_json::to_vec(&FileOut {
        manifest: &raw,
        signature,
    })?)
}

/// A parsed manifest file and what could be checked from it alone.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) body: Body,
    /// None: unsigned. Some(Ok(key)): valid signature by `key`. Some(Err(why)): bad signature.
    pub(crate) signature: Option<Result<String, String>>,
}

pub(crate) fn decode(bytes: &[u8]) -> anyhow::Result<Parsed> {
    let file: FileIn<'_> = serde_json::from_slice(bytes).context("not a manifest file")?;
    let body: Body =
        serde_json::from_str(file.manifest.get()).context("malformed manifest body")?;
    if body.schema != SCHEMA && body.schema != SCHEMA_V1 {
        bail!("unknown manifest schema `{}`", body.schema);
    }
    let signature = file.signature.map(|s| {
        let check = || -> Result<String, String> {
            if s.alg != "ed25519" {
                return Err(format!("unsupported signature algorithm {}", s.alg));
            }
            if body.public_key.as_deref() != Some(s.public_key.as_str()) {
                return Err("signature key differs from the manifest's public_key".into());
            }
            let pk: [u8; 32] = unhex(&s.public_key)
                .and_then(|v| v.try_into().ok())
                .ok_or("malformed public key")?;
            let sig: [u8; 64] = unhex(&s.value)
                .and_then(|v| v.try_into().ok())
                .ok_or("malformed signature")?;
            let vk = VerifyingKey::from_bytes(&pk).map_err(|e| e.to_string())?;
            vk.verify(
                file.manifest.get().as_bytes(),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| "signature does not match the manifest".to_string())?;
            Ok(s.public_key.clone())
        };
        check()
    });
    Ok(Parsed { body, signature })
}

/// Reads an Ed25519 signing key: a file holding the 32-byte seed as 64 hex digits.
pub(crate) fn load_signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read signing key {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "signing key {} is accessible by other users (mode {:04o}): anyone who reads it can \
             forge manifests; `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    let seed: [u8; 32] = unhex(text.trim())
        .and_then(|v| v.try_into().ok())
        .with_context(|| {
            format!(
                "signing key {} must contain a 32-byte Ed25519 seed as 64 hex digits \
                 (create one with `audit-agent keygen`)",
                path.display()
            )
        })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// A new random signing key seed (hex) and its public key (hex).
pub(crate) fn generate_key() -> anyhow::Result<(String, String)> {
    let mut seed = [0u8; 32];
    getrandom(&mut seed)?;
    let k = SigningKey::from_bytes(&seed);
    Ok((hex::encode(seed), hex::encode(k.verifying_key().as_bytes())))
}

pub(crate) fn getrandom(buf: &mut [u8]) -> anyhow::Result<()> {
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Body {
        Body {
            schema: SCHEMA.into(),
            stream: StreamId {
                host: "h".into(),
                boot_id: "b".into(),
                spool: "s".into(),
            },
            sequence: 0,
            created: "2026-01-01T00:00:00Z".parse().unwrap(),
            prev: None,
            previous_stream: None,
            objects: vec![],
            public_key: None,
            kind: ManifestKind::Batch,
            heartbeat_ms: Some(60_000),
            store_writes: Some(Writes::CreateOnly),
        }
    }

    #[test]
    fn an_object_entry_keeps_its_fields_flat_and_in_order() {
        let entry = ObjectEntry::of_two_records("00".into(), 3, Some(5));
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(
            json,
            r#"{"key":"v1/o.ndjson.gz","format":"native","agent_id":"a","sha256":"00","bytes":3,"content_bytes":5,"records":2,"first_seq":1,"last_seq":2,"time_from":"2026-01-01T00:00:00.000000000Z","time_to":"2026-01-01T00:00:00.000000000Z"}"#
        );
        assert_eq!(serde_json::from_str::<ObjectEntry>(&json).unwrap(), entry);
    }

    #[test]
    fn unsigned_manifests_round_trip() {
        let bytes = encode(&body(), None).unwrap();
        let p = decode(&bytes).unwrap();
        assert_eq!(p.body, body());
        assert!(p.signature.is_none());
    }

    #[test]
    fn signatures_verify_and_detect_any_change() {
        let k = SigningKey::from_bytes(&[7; 32]);
        let mut b = body();
        b.public_key = Some(hex::encode(k.verifying_key().as_bytes()));
        let bytes = encode(&b, Some(&k)).unwrap();
        let p = decode(&bytes).unwrap();
        assert_eq!(
            p.signature,
            Some(Ok(hex::encode(k.verifying_key().as_bytes())))
        );
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\"sequence\":0", "\"sequence\":1");
        let p = decode(tampered.as_bytes()).unwrap();
        assert_eq!(
            p.signature,
            Some(Err("signature does not match the manifest".into()))
        );
    }

    #[test]
    fn generated_keys_load() {
        let (seed, public) = generate_key().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("audit-key-{}", std::process::id()));
        std::fs::write(&dir, &seed).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&dir).unwrap_err().to_string();
        assert!(
            err.contains("accessible by other users (mode 0644)"),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o600)).unwrap();
        let k = load_signing_key(&dir).unwrap();
        assert_eq!(hex::encode(k.verifying_key().as_bytes()), public);
        std::fs::write(&dir, "nope").unwrap();
        assert!(
            load_signing_key(&dir)
                .unwrap_err()
                .to_string()
                .contains("64 hex digits")
        );
        let _ = std::fs::remove_file(&dir);
    }
}
