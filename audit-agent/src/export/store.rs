//! Object stores by URL: `file:///dir` (or a plain path) and `s3://bucket/prefix` (AWS S3 or any
//! S3-compatible endpoint), all through `object_store`.
//!
//! S3 settings come from `[export]` (endpoint, region, allow_http) on top of the standard
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//! `AWS_ALLOW_HTTP`, `AWS_SESSION_TOKEN`, ...).

use std::{sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use object_store::{
    ClientOptions, ObjectStore, aws::AmazonS3Builder, local::LocalFileSystem, path::Path,
};
use serde::Deserialize;

/// How to reach a store.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `s3://bucket/prefix` or `file:///path`.
    pub store: String,
    /// Any S3-compatible endpoint (`http://127.0.0.1:3900`); path-style requests are used.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Allow plain-HTTP endpoints.
    #[serde(default)]
    pub allow_http: Option<bool>,
}

/// An opened store and the key prefix inside it.
#[derive(Clone)]
pub struct Store {
    pub inner: Arc<dyn ObjectStore>,
    /// Key prefix (may be empty).
    pub prefix: String,
    /// For messages: the URL and endpoint.
    pub display: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl Store {
    pub fn open(s: &StoreSettings) -> anyhow::Result<Self> {
        let url = s.store.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                bail!("store URL `{url}` has no bucket (expected s3://bucket/prefix)");
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &s.endpoint {
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            } else if std::env::var_os("AWS_ENDPOINT_URL").is_some()
                || std::env::var_os("AWS_ENDPOINT").is_some()
            {
                b = b.with_virtual_hosted_style_request(false);
            }
            if let Some(r) = &s.region {
                b = b.with_region(r);
            }
            let mut opts = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(60));
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
            // Few, quick retries inside object_store: the uploader has its own unbounded backoff,
            // and interactive commands should fail fast with a clear message.
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
            Ok(Self {
                inner: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                display: format!("{url} at {endpoint}"),
            })
        } else {
            let path = url.strip_prefix("file://").unwrap_or(url);
            if path.is_empty() {
                bail!("store URL `{url}` has no path");
            }
            if url.contains("://") && !url.starts_with("file://") {
                bail!(
                    "store URL `{url}`: unsupported scheme (use s3://bucket/prefix or file:///path)"
                );
            }
            let dir = std::path::absolute(path)
                .with_context(|| format!("store URL `{url}`: bad path"))?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create store directory {}", dir.display()))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("cannot open store directory {}", dir.display()))?;
            Ok(Self {
                inner: Arc::new(fs),
                prefix: String::new(),
                display: format!("file://{}", dir.display()),
            })
        }
    }

    /// `prefix/rest` as a store path. Keys are used verbatim (`Path::parse`, not `Path::from`,
    /// which would percent-encode the `%` of our partition encoding a second time), so a key
    /// read back from a listing names the same object.
    pub fn path(&self, rest: &str) -> Path {
        let full = if self.prefix.is_empty() {
            rest.trim_end_matches('/').to_string()
        } else {
            format!("{}/{}", self.prefix, rest.trim_end_matches('/'))
        };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full))
    }

    /// Checks that the store answers (a cheap list); the error says where and why.
    pub async fn check(&self) -> anyhow::Result<()> {
        use futures::TryStreamExt as _;
        let prefix = self.path("v1");
        let mut list = self.inner.list(Some(&prefix));
        list.try_next()
            .await
            .map(|_| ())
            .map_err(|e| unreachable_error(self, &e))
    }
}

/// One actionable message for a store that cannot be used.
pub fn unreachable_error(store: &Store, e: &object_store::Error) -> anyhow::Error {
    let hint = match e {
        object_store::Error::NotFound { .. } => "the bucket does not exist",
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and bucket permissions"
        }
        _ => {
            "check the endpoint, that the server is running, and allow_http for plain-HTTP endpoints"
        }
    };
    anyhow::anyhow!("store {} is not usable: {e}; {hint}", store.display)
}
