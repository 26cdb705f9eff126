//! Kubernetes identity: the pods of this node, from the API server (list, then watch; cached and
//! bounded), so records can say which namespace, pod, container and service account acted, and
//! agents can be selected by them or named by a pod label.
//!
//! Works without Kubernetes: when no API is configured or reachable, records simply carry no
//! `subject.k8s` (logged once, never an error).

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use serde::Deserialize;

/// `[k8s]` in the configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct K8sConf {
    /// `auto` (when running in a cluster: KUBERNETES_SERVICE_HOST is set), `on` or `off`.
    #[serde(default)]
    pub enabled: K8sMode,
    /// API server URL [default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT].
    pub api_server: Option<String>,
    /// Bearer token file [default: the pod's service account token].
    pub token_file: Option<PathBuf>,
    /// CA bundle for the API server [default: the pod's service account ca.crt].
    pub ca_file: Option<PathBuf>,
    /// This node's name [default: $NODE_NAME, else the host name].
    pub node_name: Option<String>,
    /// A pod label whose value is the agent id (e.g. `ai.agent/id`), for pods no [[agents]]
    /// entry selects.
    pub agent_id_label: Option<String>,
    /// Most pods cached.
    #[serde(default = "default_max_pods")]
    pub max_pods: usize,
}

fn default_max_pods() -> usize {
    10_000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum K8sMode {
    #[default]
    Auto,
    On,
    Off,
}

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the agent knows about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    /// container id (64 hex) -> container name.
    pub containers: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Meta,
    #[serde(default)]
    spec: Spec,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    resource_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    service_account_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default, rename = "containerID")]
    container_id: Option<String>,
}

impl From<Pod> for PodInfo {
    fn from(p: Pod) -> Self {
        let containers = p
            .status
            .container_statuses
            .into_iter()
            .chain(p.status.init_container_statuses)
            .chain(p.status.ephemeral_container_statuses)
            .filter_map(|c| {
                // "containerd://<id>", "cri-o://<id>", "docker://<id>"
                let id = c.container_id?.rsplit("://").next()?.to_string();
                Some((id, c.name))
            })
            .collect();
        Self {
            uid: p.metadata.uid,
            namespace: p.metadata.namespace,
            name: p.metadata.name,
            service_account: p
                .spec
                .service_account_name
                .unwrap_or_else(|| "default".into()),
            labels: p.metadata.labels,
            containers,
        }
    }
}

/// Pods of this node by uid. Bounded: beyond `max`, new pods are not cached (counted).
pub struct PodCache {
    pods: RwLock<HashMap<String, Arc<PodInfo>>>,
    max: usize,
    /// Changes whenever the set of pods changes (watch planners re-resolve then).
    pub generation: AtomicU64,
    pub overflow: AtomicU64,
}

impl PodCache {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            pods: RwLock::new(HashMap::new()),
            max,
            generation: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        })
    }

    pub fn get(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.read().ok()?.get(uid).cloned()
    }

    pub fn all(&self) -> Vec<Arc<PodInfo>> {
        self.pods
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn upsert(&self, p: PodInfo) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if !pods.contains_key(&p.uid) && pods.len() >= self.max {
            self.overflow.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if pods.get(&p.uid).map(|x| &**x) != Some(&p) {
            pods.insert(p.uid.clone(), Arc::new(p));
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, uid: &str) {
        if self
            .pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid)
            .is_some()
        {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn replace(&self, all: Vec<PodInfo>) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        pods.clear();
        for p in all.into_iter().take(self.max) {
            pods.insert(p.uid.clone(), Arc::new(p));
        }
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.pods.read().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiTarget {
    pub base: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub node: String,
}

/// Resolves `[k8s]` against the environment; `None` when Kubernetes is not in use.
pub fn target(conf: &K8sConf, host_name: &str) -> anyhow::Result<Option<ApiTarget>> {
    let in_cluster = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let base = match (conf.enabled, &conf.api_server, &in_cluster) {
        (K8sMode::Off, _, _) => return Ok(None),
        (_, Some(url), _) => url.trim_end_matches('/').to_string(),
        (_, None, Some(host)) => {
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        }
        (K8sMode::On, None, None) => bail!(
            "[k8s] enabled = \"on\" but no api_server is set and KUBERNETES_SERVICE_HOST is not \
             in the environment (not running in a cluster)"
        ),
        (K8sMode::Auto, None, None) => return Ok(None),
    };
    let token_file = conf.token_file.clone().or_else(|| {
        let p = PathBuf::from(SA_DIR).join("token");
        p.exists().then_some(p)
    });
    let ca_file = conf.ca_file.clone().or_else(|| {
        let p = PathBuf::from(SA_DIR).join("ca.crt");
        p.exists().then_some(p)
    });
    let node = conf
        .node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .unwrap_or_else(|| host_name.to_string());
    Ok(Some(ApiTarget {
        base,
        token_file,
        ca_file,
        node,
    }))
}

fn client(t: &ApiTarget) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(ca) = &t.ca_file {
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            b = b.add_root_certificate(cert);
        }
    }
    Ok(b.build()?)
}

fn auth(t: &ApiTarget, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    // Projected tokens rotate: read the file for every request.
    match t
        .token_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
    {
        Some(tok) => r.bearer_auth(tok.trim()),
        None => r,
    }
}

#[derive(Deserialize)]
struct PodList {
    metadata: ListMeta,
    items: Vec<Pod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: Option<String>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

async fn list(c: &reqwest::Client, t: &ApiTarget, cache: &PodCache) -> anyhow::Result<String> {
    let url = format!("{}/api/v1/pods", t.base);
    let r = auth(t, c.get(&url))
        .query(&[("fieldSelector", format!("spec.nodeName={}", t.node))])
        .send()
        .await
        .with_context(|| format!("listing pods at {url}"))?;
    if !r.status().is_success() {
        bail!(
            "listing pods at {url}: HTTP {} (RBAC needs get/list/watch on pods)",
            r.status()
        );
    }
    let l: PodList = r.json().await.context("malformed pod list")?;
    cache.replace(l.items.into_iter().map(PodInfo::from).collect());
    Ok(l.metadata.resource_version.unwrap_or_default())
}

/// One watch: applies events until the server closes it. Returns the last resource version.
async fn watch(
    c: &reqwest::Client,
    t: &ApiTarget,
    cache: &PodCache,
    rv: String,
) -> anyhow::Result<String> {
    let url = format!("{}/api/v1/pods", t.base);
    let r = auth(t, c.get(&url))
        .query(&[
            ("fieldSelector", format!("spec.nodeName={}", t.node)),
            ("watch", "true".into()),
            ("allowWatchBookmarks", "true".into()),
            ("resourceVersion", rv.clone()),
            ("timeoutSeconds", "300".into()),
        ])
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("watching pods: HTTP {}", r.status());
    }
    let mut rv = rv;
    let mut buf = Vec::new();
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev: WatchEvent = serde_json::from_slice(&line).context("malformed watch event")?;
            match ev.kind.as_str() {
                "ERROR" => bail!("watch expired: {}", ev.object),
                "BOOKMARK" => {}
                kind => {
                    let pod: Pod = serde_json::from_value(ev.object)?;
                    if let Some(v) = &pod.metadata.resource_version {
                        rv.clone_from(v);
                    }
                    if kind == "DELETED" {
                        cache.remove(&pod.metadata.uid);
                    } else {
                        cache.upsert(pod.into());
                    }
                    continue;
                }
            }
        }
    }
    Ok(rv)
}

/// Keeps `cache` in sync with this node's pods: list, then watch; relist after errors with
/// backoff. Runs until the process ends.
pub fn spawn_watcher(t: ApiTarget, cache: Arc<PodCache>) -> anyhow::Result<()> {
    let c = client(&t)?;
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            let rv = match list(&c, &t, &cache).await {
                Ok(rv) => {
                    if failures > 0 || !cache.is_empty() {
                        tracing::info!(pods = cache.len(), node = %t.node, "kubernetes pods listed");
                    }
                    failures = 0;
                    rv
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %format!("{e:#}"), "kubernetes API not usable; records carry no k8s fields until it is");
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(u64::from(failures.min(6)) * 5)).await;
                    continue;
                }
            };
            let mut rv = rv;
            loop {
                match watch(&c, &t, &cache, rv.clone()).await {
                    Ok(next) => rv = next,
                    Err(e) => {
                        tracing::debug!(error = %format!("{e:#}"), "pod watch ended; relisting");
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Ok(())
}

/// cgroup globs that cover a pod (systemd driver: `pod<uid with _>`, cgroupfs: `pod<uid>`).
pub fn pod_globs(uid: &str) -> [String; 2] {
    [
        format!("/**/*pod{uid}*/**"),
        format!("/**/*pod{}*/**", uid.replace('-', "_")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"{"metadata":{"name":"support-7f9c","namespace":"support","uid":"3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f",
      "labels":{"app":"support","ai.agent/id":"support-bot"},"resourceVersion":"42"},
      "spec":{"serviceAccountName":"bot","nodeName":"node-1"},
      "status":{"containerStatuses":[{"name":"main","containerID":"containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
                "initContainerStatuses":[{"name":"init","containerID":"containerd://aaaa"}]}}"#;

    #[test]
    fn pods_parse_into_identity() {
        let p: PodInfo = serde_json::from_str::<Pod>(POD).unwrap().into();
        assert_eq!(p.namespace, "support");
        assert_eq!(p.name, "support-7f9c");
        assert_eq!(p.service_account, "bot");
        assert_eq!(p.labels["ai.agent/id"], "support-bot");
        assert_eq!(
            p.containers["0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
            "main"
        );
        assert_eq!(p.containers["aaaa"], "init");
    }

    #[test]
    fn cache_is_bounded_and_tracks_changes() {
        let c = PodCache::new(1);
        let mut p: PodInfo = serde_json::from_str::<Pod>(POD).unwrap().into();
        c.upsert(p.clone());
        let g = c.generation.load(Ordering::Relaxed);
        c.upsert(p.clone());
        assert_eq!(
            c.generation.load(Ordering::Relaxed),
            g,
            "unchanged pod: no new generation"
        );
        p.uid = "other".into();
        c.upsert(p);
        assert_eq!(c.len(), 1);
        assert_eq!(c.overflow.load(Ordering::Relaxed), 1);
        c.remove("3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f");
        assert!(c.is_empty());
    }

    #[test]
    fn off_or_outside_a_cluster_means_no_kubernetes() {
        let conf = K8sConf {
            enabled: K8sMode::Off,
            api_server: Some("http://x".into()),
            ..Default::default()
        };
        assert!(target(&conf, "h").unwrap().is_none());
        if std::env::var("KUBERNETES_SERVICE_HOST").is_err() {
            assert!(target(&K8sConf::default(), "h").unwrap().is_none());
            let on = K8sConf {
                enabled: K8sMode::On,
                ..Default::default()
            };
            assert!(
                target(&on, "h")
                    .unwrap_err()
                    .to_string()
                    .contains("not running in a cluster")
            );
        }
        let explicit = K8sConf {
            api_server: Some("http://127.0.0.1:1/".into()),
            node_name: Some("n".into()),
            ..Default::default()
        };
        let t = target(&explicit, "h").unwrap().unwrap();
        assert_eq!(
            (t.base.as_str(), t.node.as_str()),
            ("http://127.0.0.1:1", "n")
        );
    }

    #[test]
    fn pod_globs_cover_both_drivers() {
        let g = pod_globs("3f2a-1b");
        assert_eq!(g[0], "/**/*pod3f2a-1b*/**");
        assert_eq!(g[1], "/**/*pod3f2a_1b*/**");
    }
}
