//! Kubernetes identity: the pods of this node, from the API server (the `kube` crate's watcher:
//! list, watch, bookmarks, relist with backoff), cached by pod uid and bounded, so records can say
//! which namespace, pod, container and service account acted, and agents can be selected by them
//! or named by a pod label.
//!
//! Works without Kubernetes: when no API is configured or reachable, records simply carry no
//! `subject.k8s` (logged once, never an error).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt as _, watcher};

use crate::config::{K8sConf, K8sMode};

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the agent knows about one pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct PodInfo {
    pub(crate) uid: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) service_account: String,
    pub(crate) labels: BTreeMap<String, String>,
    /// container id (64 hex) -> container name.
    pub(crate) containers: HashMap<String, String>,
}

impl From<&Pod> for PodInfo {
    fn from(p: &Pod) -> Self {
        let status = p.status.as_ref();
        let statuses = status.into_iter().flat_map(|s| {
            s.container_statuses
                .iter()
                .chain(&s.init_container_statuses)
                .chain(&s.ephemeral_container_statuses)
                .flatten()
        });
        let containers = statuses
            .filter_map(|c| {
                // "containerd://<id>", "cri-o://<id>", "docker://<id>"
                let id = c.container_id.as_deref()?.rsplit("://").next()?.to_string();
                Some((id, c.name.clone()))
            })
            .collect();
        let meta = &p.metadata;
        Self {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            service_account: p
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
            labels: meta.labels.clone().unwrap_or_default(),
            containers,
        }
    }
}

/// Pods of this node by uid. Bounded: beyond `max`, new pods are not cached (counted).
pub(crate) struct PodCache {
    pods: RwLock<HashMap<String, Arc<PodInfo>>>,
    max: usize,
    /// Changes whenever the set of pods changes (watch planners re-resolve then).
    generation: AtomicU64,
    overflow: AtomicU64,
}

impl PodCache {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            pods: RwLock::new(HashMap::new()),
            max,
            generation: AtomicU64::new(0),
            overflow: AtomicU64::new(0),
        })
    }

    pub(crate) fn get(&self, uid: &str) -> Option<Arc<PodInfo>> {
        self.pods.read().ok()?.get(uid).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<PodInfo>> {
        self.pods
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn upsert(&self, p: PodInfo) {
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

    fn remove(&self, uid: &str) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        if pods.remove(uid).is_some() {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Replaces everything after a (re)list.
    fn replace(&self, all: Vec<PodInfo>) {
        let mut pods = self.pods.write().unwrap_or_else(|e| e.into_inner());
        pods.clear();
        for p in all.into_iter().take(self.max) {
            pods.insert(p.uid.clone(), Arc::new(p));
        }
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.pods.read().map(|p| p.len()).unwrap_or(0)
    }
}

/// How to reach the API server.
#[derive(Debug, Clone)]
pub(crate) struct ApiTarget {
    pub(crate) base: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pub(crate) node: String,
}

/// The API server URL `[k8s]` and the environment give; `None` when Kubernetes is not in use.
fn api_base(conf: &K8sConf) -> anyhow::Result<Option<String>> {
    let in_cluster = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    Ok(Some(match (conf.enabled, &conf.api_server, &in_cluster) {
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
    }))
}

/// Resolves `[k8s]` against the environment; `None` when Kubernetes is not in use.
pub(crate) fn target(conf: &K8sConf, host_name: &str) -> anyhow::Result<Option<ApiTarget>> {
    let Some(base) = api_base(conf)? else {
        return Ok(None);
    };
    let default_file = |name: &str| {
        let p = Path::new(SA_DIR).join(name);
        p.exists().then_some(p)
    };
    Ok(Some(ApiTarget {
        base,
        token_file: conf.token_file.clone().or_else(|| default_file("token")),
        ca_file: conf.ca_file.clone().or_else(|| default_file("ca.crt")),
        node: conf
            .node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok())
            .unwrap_or_else(|| host_name.to_string()),
    }))
}

/// A token file with surrounding whitespace is sent verbatim (an invalid header): say so.
fn check_token_file(path: &Path) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("[k8s] token_file {}: cannot read it", path.display()))?;
    if token.trim() != token {
        bail!(
            "[k8s] token_file {}: the token has surrounding whitespace (a trailing newline?); \
             write the token alone, e.g. `printf %s \"$TOKEN\" > {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// A client for `t`, configured the way a kubeconfig would (kube reads the CA bundle and
/// re-reads rotating projected tokens itself).
async fn client(t: &ApiTarget) -> anyhow::Result<kube::Client> {
    if let Some(f) = &t.token_file {
        check_token_file(f)?;
    }
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(serde_json::json!({
        "clusters": [{"name": "api", "cluster": {
            "server": t.base, "certificate-authority": path(&t.ca_file)}}],
        "users": [{"name": "agent", "user": {"tokenFile": path(&t.token_file)}}],
        "contexts": [{"name": "node", "context": {"cluster": "api", "user": "agent"}}],
        "current-context": "node",
    }))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("configuring the Kubernetes client for {}", t.base))?;
    Ok(kube::Client::try_from(config)?)
}

/// Keeps `cache` in sync with this node's pods until the process ends.
pub(crate) async fn spawn_watcher(t: ApiTarget, cache: Arc<PodCache>) -> anyhow::Result<()> {
    let api: kube::Api<Pod> = kube::Api::all(client(&t).await?);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", t.node));
    let mut events = watcher(api, config).default_backoff().boxed();
    tokio::spawn(async move {
        let mut listing: Vec<PodInfo> = Vec::new();
        let mut warned = false;
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Init) => listing.clear(),
                Ok(watcher::Event::InitApply(p)) => listing.push(PodInfo::from(&p)),
                Ok(watcher::Event::InitDone) => {
                    cache.replace(std::mem::take(&mut listing));
                    tracing::info!(pods = cache.len(), node = %t.node, "kubernetes pods listed");
                    warned = false;
                }
                Ok(watcher::Event::Apply(p)) => cache.upsert(PodInfo::from(&p)),
                Ok(watcher::Event::Delete(p)) => {
                    cache.remove(p.metadata.uid.as_deref().unwrap_or_default())
                }
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "kubernetes API not usable; records carry no k8s fields until it is");
                    warned = true;
                }
                Err(e) => tracing::debug!(error = %e, "kubernetes watch error; retrying"),
            }
        }
    });
    Ok(())
}

/// cgroup globs that cover a pod (systemd driver: `pod<uid with _>`, cgroupfs: `pod<uid>`).
pub(crate) fn pod_globs(uid: &str) -> [String; 2] {
    [
        format!("/**/*pod{uid}*/**"),
        format!("/**/*pod{}*/**", uid.replace('-', "_")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"support-7f9c","namespace":"support","uid":"3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f",
      "labels":{"app":"support","ai.agent/id":"support-bot"},"resourceVersion":"42"},
      "spec":{"serviceAccountName":"bot","nodeName":"node-1","containers":[]},
      "status":{"containerStatuses":[{"name":"main","image":"x","imageID":"","ready":true,"restartCount":0,"containerID":"containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}],
                "initContainerStatuses":[{"name":"init","image":"x","imageID":"","ready":true,"restartCount":0,"containerID":"containerd://aaaa"}]}}"#;

    fn pod() -> PodInfo {
        PodInfo::from(&serde_json::from_str::<Pod>(POD).unwrap())
    }

    #[test]
    fn pods_parse_into_identity() {
        let p = pod();
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
        let mut p = pod();
        c.upsert(p.clone());
        let g = c.generation();
        c.upsert(p.clone());
        assert_eq!(c.generation(), g, "unchanged pod: no new generation");
        p.uid = "other".into();
        c.upsert(p);
        assert_eq!(c.len(), 1);
        assert_eq!(c.overflow.load(Ordering::Relaxed), 1);
        c.remove("3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f");
        assert_eq!(c.len(), 0);
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
            let e = target(&on, "h").unwrap_err().to_string();
            assert!(e.contains("not running in a cluster"), "{e}");
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
