//! Attribute: the stage that says which agent acted. An agent identity is matched by cgroup path
//! glob or uid (config `[[agents]]`); a process that matches neither but descends from an
//! attributed process image keeps its ancestor's identity (`matched_by = "ancestor"`), so an
//! agent cannot shed its identity by moving cgroups or changing uid. Activity matching nothing is
//! `unattributed`. Also fills `subject.container_id` from the cgroup path.

pub mod container;
pub mod k8s;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use self::k8s::{PodCache, PodInfo};
use crate::{
    config::Config,
    pipeline::Stage,
    policy::pattern::PathSet,
    record::{self, Record},
};

pub const UNATTRIBUTED: &str = "unattributed";

/// Most exec ids remembered for lineage; beyond it the map is reset (attribution of very old,
/// silent ancestors is then lost, never wrong).
const MAX_LINEAGE: usize = 262_144;

struct Agent {
    info: record::Agent,
    /// `info` with `matched_by` set, one per way of matching, shared by every record.
    by: [Arc<record::Agent>; 6],
    cgroups: PathSet,
    uids: HashSet<u32>,
    k8s: K8sSelector,
}

/// Pods an agent covers: every non-empty part must match.
#[derive(Debug, Clone, Default)]
struct K8sSelector {
    namespaces: Vec<String>,
    service_accounts: Vec<String>,
    labels: std::collections::BTreeMap<String, String>,
}

impl K8sSelector {
    fn is_empty(&self) -> bool {
        self.namespaces.is_empty() && self.service_accounts.is_empty() && self.labels.is_empty()
    }

    fn matches(&self, p: &PodInfo) -> bool {
        !self.is_empty()
            && (self.namespaces.is_empty() || self.namespaces.contains(&p.namespace))
            && (self.service_accounts.is_empty()
                || self.service_accounts.contains(&p.service_account))
            && self.labels.iter().all(|(k, v)| p.labels.get(k) == Some(v))
    }
}

const MATCHED_BY: [&str; 6] = ["cgroup", "uid", "ancestor", "trace", "k8s", "k8s_label"];

fn with_matches(info: &record::Agent) -> [Arc<record::Agent>; 6] {
    MATCHED_BY.map(|by| {
        let mut a = info.clone();
        a.matched_by = Some(by.to_string());
        Arc::new(a)
    })
}

impl Agent {
    fn matched(&self, by: &str) -> Arc<record::Agent> {
        let i = MATCHED_BY.iter().position(|m| *m == by).unwrap_or(0);
        Arc::clone(&self.by[i])
    }
}

/// The registered agent identities.
pub struct Registry {
    agents: Vec<Agent>,
}

impl Registry {
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let mut agents = Vec::new();
        for a in &cfg.agents {
            let info = record::Agent {
                id: a.id.get_ref().clone(),
                name: a.name.clone(),
                workflow: a.workflow.clone(),
                owner: a.owner.clone(),
                matched_by: None,
            };
            agents.push(Agent {
                by: with_matches(&info),
                info,
                cgroups: PathSet::new(a.cgroup.iter().map(|g| g.get_ref().as_str()))
                    .map_err(|e| anyhow::anyhow!(e))?,
                uids: a.uid.iter().map(|u| *u.get_ref()).collect(),
                k8s: K8sSelector {
                    namespaces: a.k8s_namespace.clone(),
                    service_accounts: a.k8s_service_account.clone(),
                    labels: a.k8s_labels.clone(),
                },
            });
        }
        Ok(Self { agents })
    }

    pub fn empty() -> Self {
        Self { agents: Vec::new() }
    }

    /// Registers an ad-hoc identity for everything in `cgroup` and below (used by `trace`); it
    /// takes precedence over configured agents.
    pub fn add_first(&mut self, id: &str, cgroup: &str) -> anyhow::Result<()> {
        let info = record::Agent {
            id: id.to_string(),
            name: None,
            workflow: None,
            owner: None,
            matched_by: None,
        };
        self.agents.insert(
            0,
            Agent {
                by: with_matches(&info),
                info,
                cgroups: PathSet::new([format!("{cgroup}/**").as_str()])
                    .map_err(|e| anyhow::anyhow!(e))?,
                uids: HashSet::new(),
                k8s: K8sSelector::default(),
            },
        );
        Ok(())
    }

    /// Direct match: cgroup globs first (in config order), then uids, then Kubernetes
    /// selectors of the pod.
    fn direct(
        &self,
        cgroup: Option<&str>,
        uid: u32,
        pod: Option<&PodInfo>,
    ) -> Option<(&Agent, &'static str)> {
        if let Some(cg) = cgroup
            && let Some(a) = self
                .agents
                .iter()
                .find(|a| a.cgroups.matches(cg.as_bytes()))
        {
            return Some((a, "cgroup"));
        }
        if let Some(a) = self.agents.iter().find(|a| a.uids.contains(&uid)) {
            return Some((a, "uid"));
        }
        let pod = pod?;
        self.agents
            .iter()
            .find(|a| a.k8s.matches(pod))
            .map(|a| (a, "k8s"))
    }

    /// Whether any agent selects this pod (so its cgroups must be watched).
    pub fn selects_pod(&self, pod: &PodInfo) -> bool {
        self.agents.iter().any(|a| a.k8s.matches(pod))
    }

    /// Whether any agent uses Kubernetes selectors.
    pub fn uses_k8s(&self) -> bool {
        self.agents.iter().any(|a| !a.k8s.is_empty())
    }

    fn by_id(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.info.id == id)
    }
}

/// The agent registry, swappable at run time (configuration reload); judged by event time.
pub type SharedRegistry = Arc<crate::versioned::Versioned<Registry>>;

/// Kubernetes context of the identity stage.
pub struct K8sIdentity {
    pub pods: Arc<PodCache>,
    /// A pod label whose value names the agent.
    pub agent_id_label: Option<String>,
}

pub struct IdentityStage {
    registry: SharedRegistry,
    k8s: Option<K8sIdentity>,
    /// Agents named by a pod label and not in the configuration (bounded).
    labelled: HashMap<String, Arc<record::Agent>>,
    /// exec id -> agent id of attributed process images.
    lineage: HashMap<Arc<str>, Arc<str>>,
    /// How `trace` labels matches of its ad-hoc identity.
    trace_id: Option<String>,
    unattributed: Arc<record::Agent>,
}

impl IdentityStage {
    pub fn new(registry: SharedRegistry) -> Self {
        Self {
            registry,
            k8s: None,
            labelled: HashMap::new(),
            lineage: HashMap::new(),
            trace_id: None,
            unattributed: Arc::new(record::Agent {
                id: UNATTRIBUTED.to_string(),
                name: None,
                workflow: None,
                owner: None,
                matched_by: None,
            }),
        }
    }

    pub fn with_k8s(mut self, k8s: K8sIdentity) -> Self {
        self.k8s = Some(k8s);
        self
    }

    /// The agent a pod label names: the configured agent with that id, else an identity made
    /// from the label value alone.
    fn labelled_agent(&mut self, registry: &Registry, pod: &PodInfo) -> Option<Arc<record::Agent>> {
        let key = self.k8s.as_ref()?.agent_id_label.as_ref()?;
        let id = pod.labels.get(key)?;
        if let Some(a) = registry.by_id(id) {
            return Some(a.matched("k8s_label"));
        }
        if self.labelled.len() > 10_000 {
            self.labelled.clear();
        }
        Some(
            self.labelled
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(record::Agent {
                        id: id.clone(),
                        name: None,
                        workflow: None,
                        owner: None,
                        matched_by: Some("k8s_label".into()),
                    })
                })
                .clone(),
        )
    }

    /// Matches of agent `id` are reported as `matched_by = "trace"`.
    pub fn with_trace_id(mut self, id: &str) -> Self {
        self.trace_id = Some(id.to_string());
        self
    }

    fn remember(&mut self, exec_id: Option<&Arc<str>>, agent: &Arc<str>) {
        if let Some(e) = exec_id {
            if self.lineage.get(e).is_some_and(|a| a == agent) {
                return;
            }
            if self.lineage.len() >= MAX_LINEAGE {
                self.lineage.clear();
            }
            self.lineage.insert(Arc::clone(e), Arc::clone(agent));
        }
    }
}

impl Stage for IdentityStage {
    fn apply(&mut self, rec: &mut Record) {
        if rec.is_gap() {
            return;
        }
        let registry = self.registry.at(rec.unix_ns);
        let (cgroup, uid) = rec
            .subject
            .as_ref()
            .map_or((None, 0), |s| (s.cgroup.clone(), s.uid));
        let mut pod = None;
        if let (Some(s), Some(cg)) = (rec.subject.as_mut(), cgroup.as_deref()) {
            let c = container::parse(cg);
            if let (Some(k), Some(uid)) = (&self.k8s, &c.pod_uid) {
                pod = k.pods.get(uid);
            }
            if let Some(p) = &pod {
                s.k8s = Some(record::K8s {
                    namespace: Some(p.namespace.clone()),
                    pod: Some(p.name.clone()),
                    pod_uid: Some(p.uid.clone()),
                    container: c
                        .container_id
                        .as_ref()
                        .and_then(|id| p.containers.get(id).cloned()),
                    service_account: Some(p.service_account.clone()),
                    labels: p.labels.clone(),
                });
            }
            s.container_id = c.container_id;
        }
        let (exec_id, parent_exec_id) = rec.process.as_ref().map_or((None, None), |p| {
            (p.exec_id.clone(), p.parent_exec_id.clone())
        });
        let new_image = rec.resource.as_ref().and_then(|r| r.exec_id.clone());

        let found = match registry.direct(cgroup.as_deref(), uid, pod.as_deref()) {
            Some((a, by)) => Some((a, by)),
            None => [exec_id.as_ref(), parent_exec_id.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|e| self.lineage.get(e))
                .and_then(|id| registry.by_id(id))
                .map(|a| (a, "ancestor")),
        };
        match found {
            Some((a, by)) => {
                let by = if self.trace_id.as_deref() == Some(a.info.id.as_str()) {
                    "trace"
                } else {
                    by
                };
                let id: Arc<str> = Arc::from(a.info.id.as_str());
                rec.agent = Some(a.matched(by));
                self.remember(exec_id.as_ref(), &id);
                self.remember(new_image.as_ref(), &id);
            }
            None => {
                let labelled = pod
                    .as_deref()
                    .and_then(|p| self.labelled_agent(&registry, p));
                match labelled {
                    Some(a) => {
                        let id: Arc<str> = Arc::from(a.id.as_str());
                        rec.agent = Some(a);
                        self.remember(exec_id.as_ref(), &id);
                        self.remember(new_image.as_ref(), &id);
                    }
                    None => rec.agent = Some(Arc::clone(&self.unattributed)),
                }
            }
        }
    }
}
