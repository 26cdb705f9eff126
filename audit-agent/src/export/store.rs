//! Object stores by URL: `file:///dir` (or a plain path) and `s3://bucket/prefix` (AWS S3 or any
//! S3-compatible endpoint), all through `object_store`; a key prefix is applied by its
//! `PrefixStore`, so every other module works with keys relative to the trail's root.
//!
//! S3 settings come from `[export]` (endpoint, region, allow_http) on top of the standard
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `AWS_SESSION_TOKEN`, ...).

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use object_store::{
    ClientOptions, ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem, path::Path,
    prefix::PrefixStore,
};

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
    let store = b
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
