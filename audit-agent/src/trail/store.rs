//! Object stores by URL: `file:///dir` (or a plain path) and `s3://bucket/prefix` (AWS S3 or any
//! S3-compatible endpoint), all through `object_store`; a key prefix is applied by its
//! `PrefixStore`, so every other module works with keys relative to the trail's root.
//!
//! S3 settings come from `[export]` (endpoint, region, allow_http) on top of the standard
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `AWS_SESSION_TOKEN`, ...).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::Context as _;
use object_store::{
    ClientOptions, ObjectStore, PutMode, PutPayload, aws::AmazonS3Builder, local::LocalFileSystem,
    path::Path, prefix::PrefixStore,
};
use serde::{Deserialize, Serialize};

use super::object::MAX_STORED_BYTES;
use crate::digest::sha256_hex;

/// How to reach a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoreSettings {
    /// `s3://bucket/prefix` or `file:///path`.
    pub(crate) store: String,
    /// Any S3-compatible endpoint (`http://127.0.0.1:3900`); path-style requests are used.
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    /// Allow plain-HTTP endpoints.
    pub(crate) allow_http: Option<bool>,
}

impl StoreSettings {
    /// Checks the form of a store URL.
    pub(crate) fn check_url(url: &str) -> Result<(), String> {
        let s = url.trim();
        if let Some(rest) = s.strip_prefix("s3://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("`{s}` has no bucket (expected s3://bucket/prefix)"));
            }
            return Ok(());
        }
        if s.contains("://") && !s.starts_with("file://") {
            return Err(format!(
                "`{s}`: unsupported scheme (use s3://bucket/prefix or file:///path)"
            ));
        }
        if s.trim_start_matches("file://").is_empty() {
            return Err(format!("`{s}` has no path"));
        }
        if !(s.starts_with("file://") || s.starts_with('/') || s.starts_with('.')) {
            return Err(format!("`{s}`: use s3://bucket/prefix or file:///path"));
        }
        Ok(())
    }
}

/// An opened store, rooted at the trail's prefix.
#[derive(Clone)]
pub(crate) struct Store {
    pub(crate) inner: Arc<dyn ObjectStore>,
    /// For messages: the URL and endpoint.
    pub(crate) display: String,
    /// How the store takes create-only writes, once [`Store::probe_writes`] found out.
    pub(crate) writes: Arc<OnceLock<Writes>>,
}

/// How a store takes the create-only writes every object and manifest is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Writes {
    /// It refuses to write a key that exists, atomically (`If-None-Match: *` on S3, honoured by
    /// AWS S3 since 2024; a directory store links the new file in only if the name is free).
    CreateOnly,
    /// It ignores `If-None-Match` and overwrites (Garage 2.5.0): each write is preceded by a
    /// check that the key is free, which a second writer can race (not atomic).
    CheckedFirst,
}

/// Where the create-only probe writes, relative to the prefix: outside the trail's layout, so
/// `verify` and `query` ignore it. One tiny object per store, written again at every start.
const PROBE_KEY: &str = "_audit-agent/create-only-probe";

/// What a create-only write did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Put {
    Created,
    /// The key already holds exactly these bytes: an earlier attempt delivered them (a
    /// re-upload after a crash, or a lost answer).
    AlreadyThere,
}

/// Why a create-only write did not happen.
#[derive(Debug)]
pub(crate) enum PutError {
    /// The key holds other content (described): nothing was written, and retrying cannot help.
    Conflict(String),
    /// The store could not be used (retry).
    Store(anyhow::Error),
}

impl std::fmt::Display for PutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Conflict(why) => f.write_str(why),
            Self::Store(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

fn s3(url: &str, rest: &str, s: &StoreSettings) -> anyhow::Result<Store> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let env_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT").is_some();
    if let Some(e) = &s.endpoint {
        b = b.with_endpoint(e);
    }
    if s.endpoint.is_some() || env_endpoint {
        b = b.with_virtual_hosted_style_request(false);
    }
    if let Some(r) = &s.region {
        b = b.with_region(r);
    }
    let mut opts = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    for (extension, mime) in super::layout::CONTENT_TYPES {
        opts = opts.with_content_type_for_suffix(extension, mime);
    }
    if let Some(h) = s.allow_http {
        opts = opts.with_allow_http(h);
    } else if std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true" || v == "1") {
        opts = opts.with_allow_http(true);
    }
    let endpoint = s
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .unwrap_or_else(|| "AWS".into());
    // Few, quick retries inside object_store: the uploader has its own unbounded backoff, and
    // interactive commands should fail fast with a clear message.
    let retry = object_store::RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    // Every PUT carries its SHA-256 (x-amz-checksum-sha256): the store checks what arrived, and
    // AWS requires a checksum on writes to buckets with Object Lock retention.
    let store = b
        .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
        .with_client_options(opts)
        .with_retry(retry)
        .build()
        .with_context(|| format!("cannot configure S3 store {url} ({endpoint})"))?;
    let prefix = prefix.trim_matches('/');
    let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(store)
    } else {
        Arc::new(PrefixStore::new(store, prefix))
    };
    Ok(Store {
        inner,
        display: format!("{url} at {endpoint}"),
        writes: Arc::default(),
    })
}

fn directory(url: &str) -> anyhow::Result<Store> {
    let path = url.strip_prefix("file://").unwrap_or(url);
    let dir = std::path::absolute(path).with_context(|| format!("store URL `{url}`: bad path"))?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create store directory {}", dir.display()))?;
    let fs = LocalFileSystem::new_with_prefix(&dir)
        .with_context(|| format!("cannot open store directory {}", dir.display()))?;
    Ok(Store {
        inner: Arc::new(fs),
        display: format!("file://{}", dir.display()),
        writes: Arc::default(),
    })
}

impl Store {
    pub(crate) fn open(s: &StoreSettings) -> anyhow::Result<Self> {
        let url = s.store.trim();
        StoreSettings::check_url(url).map_err(|e| anyhow::anyhow!("store URL {e}"))?;
        match url.strip_prefix("s3://") {
            Some(rest) => s3(url, rest, s),
            None => directory(url),
        }
    }

    /// A key as a store path. Keys are used verbatim (`Path::parse`, not `Path::from`, which
    /// would percent-encode the `%` of the partition encoding a second time), so a key read
    /// back from a listing names the same object.
    pub(crate) fn path(&self, key: &str) -> Path {
        let key = key.trim_end_matches('/');
        Path::parse(key).unwrap_or_else(|_| Path::from(key))
    }

    /// Checks that the store answers (a cheap list); the error says where and why.
    pub(crate) async fn check(&self) -> anyhow::Result<()> {
        use futures::TryStreamExt as _;
        let prefix = self.path("v1");
        let mut list = self.inner.list(Some(&prefix));
        list.try_next()
            .await
            .map(|_| ())
            .map_err(|e| unusable(self, &e))
    }

    /// The object at `key`; `None` when there is none.
    /// Fetches `key` unless it is larger than `max` bytes (checked before its body is read).
    pub(crate) async fn get_bounded(
        &self,
        key: &str,
        max: u64,
    ) -> Result<Option<bytes::Bytes>, GetError> {
        match self.inner.get(&self.path(key)).await {
            Ok(r) if r.meta.size > max => Err(GetError::TooLarge(r.meta.size)),
            Ok(r) => Ok(Some(
                r.bytes()
                    .await
                    .map_err(|e| GetError::Store(unusable(self, &e)))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(GetError::Store(unusable(self, &e))),
        }
    }

    /// Finds out (once) whether the store refuses to overwrite: writes the probe object
    /// create-only twice (the first may find it there from an earlier start); the second write
    /// must be refused. Says what it found in the log.
    pub(crate) async fn probe_writes(&self) -> anyhow::Result<Writes> {
        if let Some(w) = self.writes.get() {
            return Ok(*w);
        }
        let path = self.path(PROBE_KEY);
        let mut found = None;
        for _ in 0..2 {
            let payload = PutPayload::from_static(b"audit-agent create-only probe\n");
            match self
                .inner
                .put_opts(&path, payload, PutMode::Create.into())
                .await
            {
                Ok(_) => {}
                Err(
                    object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ) => {
                    found = Some(Writes::CreateOnly);
                    break;
                }
                Err(object_store::Error::NotImplemented) => break,
                Err(e) => return Err(unusable(self, &e)),
            }
        }
        let w = found.unwrap_or(Writes::CheckedFirst);
        if self.writes.set(w).is_err() {
            return Ok(w); // a concurrent probe said it
        }
        match w {
            Writes::CreateOnly => tracing::info!(
                store = %self.display,
                "the store refuses to overwrite: objects and manifests are written create-only"
            ),
            Writes::CheckedFirst => tracing::warn!(
                store = %self.display,
                "the store does not honour create-only writes (If-None-Match: * was ignored; \
                 Garage does this): each object and manifest is written only after checking \
                 that its key is free, which is not atomic — a second writer could still \
                 overwrite; turn on the store-side protections in docs/storage.md"
            ),
        }
        Ok(w)
    }

    /// Writes `bytes` at `key` unless the key exists. A key holding the same bytes counts as
    /// delivered; one holding other bytes is a conflict and is left as it is.
    pub(crate) async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<Put, PutError> {
        let writes = match self.probe_writes().await {
            Ok(w) => w,
            Err(e) => return Err(PutError::Store(e)),
        };
        if writes == Writes::CheckedFirst
            && let Some(done) = self.compare(key, &bytes).await?
        {
            return done;
        }
        let mode = match writes {
            Writes::CreateOnly => PutMode::Create,
            Writes::CheckedFirst => PutMode::Overwrite,
        };
        let payload = PutPayload::from(bytes::Bytes::from(bytes.clone()));
        match self
            .inner
            .put_opts(&self.path(key), payload, mode.into())
            .await
        {
            Ok(_) => Ok(Put::Created),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => match self.compare(key, &bytes).await? {
                Some(done) => done,
                // Refused, then gone: deleted in between; the next attempt writes it.
                None => Err(PutError::Store(anyhow::anyhow!(
                    "store {}: {key} was refused as existing but is not there now",
                    self.display
                ))),
            },
            Err(e) => Err(PutError::Store(unusable(self, &e))),
        }
    }

    /// What `key` holds compared with `ours`: `None` when nothing; else delivered (the same
    /// bytes) or a conflict naming both contents.
    async fn compare(
        &self,
        key: &str,
        ours: &[u8],
    ) -> Result<Option<Result<Put, PutError>>, PutError> {
        let path = self.path(key);
        let size = match self.inner.head(&path).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(PutError::Store(unusable(self, &e))),
        };
        let theirs = if size == ours.len() as u64 {
            match self.get_bounded(key, MAX_STORED_BYTES).await {
                Ok(Some(b)) if b.as_ref() == ours => return Ok(Some(Ok(Put::AlreadyThere))),
                Ok(Some(b)) => format!("sha256 {}, {size} bytes", sha256_hex(&b)),
                Ok(None) => return Ok(None),
                Err(GetError::TooLarge(n)) => format!("{n} bytes"),
                Err(GetError::Store(e)) => return Err(PutError::Store(e)),
            }
        } else {
            format!("{size} bytes")
        };
        Ok(Some(Err(PutError::Conflict(format!(
            "{key} already exists in store {} with other content ({theirs}; ours: sha256 {}, {} \
             bytes): another writer used this key; it was not overwritten",
            self.display,
            sha256_hex(ours),
            ours.len()
        )))))
    }

    pub(crate) async fn get(&self, key: &str) -> anyhow::Result<Option<bytes::Bytes>> {
        match self.inner.get(&self.path(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| unusable(self, &e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unusable(self, &e)),
        }
    }
}

/// Why a bounded fetch failed.
#[derive(Debug)]
pub(crate) enum GetError {
    /// The object is this many bytes, beyond the bound.
    TooLarge(u64),
    Store(anyhow::Error),
}

/// One actionable message for a store that cannot be used.
pub(crate) fn unusable(store: &Store, e: &object_store::Error) -> anyhow::Error {
    anyhow::anyhow!("store {} is not usable: {e}; {}", store.display, hint(e))
}

/// What to check for an object_store error.
fn hint(e: &object_store::Error) -> &'static str {
    let text = e.to_string();
    match e {
        object_store::Error::NotFound { .. } => "the bucket or object does not exist",
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and bucket permissions"
        }
        _ if text.contains("NoSuchBucket") => {
            "the bucket does not exist: create it or fix the store URL"
        }
        _ if text.contains("403")
            || text.contains("AccessDenied")
            || text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch") =>
        {
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and bucket permissions"
        }
        _ => {
            "check the endpoint, that the server is running, and allow_http for plain-HTTP endpoints"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_create_only_a_same_re_upload_is_delivered_and_other_content_a_conflict() {
        let dir = std::env::temp_dir().join(format!("audit-store-create-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&StoreSettings {
            store: format!("file://{}", dir.display()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(store.probe_writes().await.unwrap(), Writes::CreateOnly);
        let key = "v1/agent_id=a/dt=2026-01-01/hour=00/s-00000000000000000001.ndjson.gz";
        let put = |b: &'static [u8]| store.put_new(key, b.to_vec());
        assert_eq!(put(b"ours").await.unwrap(), Put::Created);
        // A re-upload after a crash: the same key with the same bytes.
        assert_eq!(put(b"ours").await.unwrap(), Put::AlreadyThere);
        for other in [&b"ourz"[..], b"longer content"] {
            let Err(PutError::Conflict(why)) = store.put_new(key, other.to_vec()).await else {
                panic!("a conflict");
            };
            assert!(
                why.starts_with(&format!("{key} already exists in store file://"))
                    && why.contains("it was not overwritten"),
                "{why}"
            );
        }
        assert_eq!(std::fs::read(dir.join(key)).unwrap(), b"ours");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
