//! Reading a trail back from a store (S3 or directory), and tampering with it, for the export
//! tests. Independent of audit-agent's own reader on purpose.

use std::{collections::BTreeMap, io::Read as _, sync::Arc};

use futures::TryStreamExt as _;
use object_store::{ObjectStore, PutPayload, local::LocalFileSystem, path::Path};
use serde_json::Value;

/// A store and a prefix inside it.
#[derive(Clone)]
pub struct Trail {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Trail {
    pub fn dir(path: &std::path::Path) -> Self {
        std::fs::create_dir_all(path).expect("store dir");
        Self {
            store: Arc::new(LocalFileSystem::new_with_prefix(path).expect("local store")),
            prefix: String::new(),
        }
    }

    fn full(&self, rel: &str) -> Path {
        let p = if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        Path::parse(&p).expect("valid key")
    }

    /// Every key under the prefix, relative to it.
    pub fn keys(&self) -> Vec<String> {
        let prefix =
            (!self.prefix.is_empty()).then(|| Path::parse(self.prefix.as_str()).expect("prefix"));
        let mut keys: Vec<String> = rt().block_on(async {
            self.store
                .list(prefix.as_ref())
                .map_ok(|m| m.location.to_string())
                .try_collect::<Vec<_>>()
                .await
                .expect("list")
        });
        if !self.prefix.is_empty() {
            for k in &mut keys {
                *k = k[self.prefix.len() + 1..].to_string();
            }
        }
        keys.sort();
        keys
    }

    pub fn get(&self, rel: &str) -> Vec<u8> {
        rt().block_on(async {
            self.store
                .get(&self.full(rel))
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes")
                .to_vec()
        })
    }

    /// The Content-Type the store answers with for `rel` (S3: as uploaded).
    pub fn content_type(&self, rel: &str) -> Option<String> {
        rt().block_on(async {
            let r = self.store.get(&self.full(rel)).await.expect("get");
            r.attributes
                .get(&object_store::Attribute::ContentType)
                .map(|v| v.to_string())
        })
    }

    pub fn put(&self, rel: &str, bytes: Vec<u8>) {
        rt().block_on(async {
            self.store
                .put(&self.full(rel), PutPayload::from(bytes))
                .await
                .expect("put")
        });
    }

    /// A records object, decompressed.
    pub fn get_gunzipped(&self, rel: &str) -> Vec<u8> {
        let mut raw = Vec::new();
        flate2::read::MultiGzDecoder::new(&self.get(rel)[..])
            .read_to_end(&mut raw)
            .expect("gunzip");
        raw
    }

    /// Replaces a records object with `raw`, compressed.
    pub fn put_gzipped(&self, rel: &str, raw: &[u8]) {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(raw).expect("gzip");
        self.put(rel, gz.finish().expect("gzip"));
    }

    pub fn delete(&self, rel: &str) {
        rt().block_on(async { self.store.delete(&self.full(rel)).await.expect("delete") });
    }

    /// Copies every object to `other` (same store, another prefix).
    pub fn copy_to(&self, other: &Trail) {
        for k in self.keys() {
            other.put(&k, self.get(&k));
        }
    }

    /// Records objects (gzip NDJSON) of one format dir (`v1` or `ocsf`), key -> lines.
    pub fn objects(&self, format_dir: &str) -> BTreeMap<String, Vec<Value>> {
        let mut out = BTreeMap::new();
        for k in self.keys() {
            if !k.starts_with(&format!("{format_dir}/agent_id=")) {
                continue;
            }
            let gz = self.get(&k);
            let mut raw = String::new();
            flate2::read::MultiGzDecoder::new(&gz[..])
                .read_to_string(&mut raw)
                .expect("gunzip");
            let lines = raw
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect();
            out.insert(k, lines);
        }
        out
    }

    /// Every native record in the trail.
    pub fn records(&self) -> Vec<Value> {
        self.objects("v1").into_values().flatten().collect()
    }

    pub fn manifests(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|k| k.starts_with("v1/_manifests/"))
            .collect()
    }
}
