//! Attribute: the stage that says which agent acted. An agent identity is matched by cgroup path
//! glob, uid or Kubernetes pod selectors (config `[[agents]]`). The first identity sticks: an
//! attributed process image keeps its agent wherever it moves, and every image that descends
//! from it — however many silent ancestors lie between — keeps it too (`ancestor`), so an agent
//! can neither shed its identity nor take another's by moving cgroups or changing uid. Activity
//! matching nothing is `unattributed`. Also fills `subject.container_id` and `subject.k8s` from
//! the cgroup path.

mod container;
pub(crate) mod k8s;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use self::k8s::{PodCache, PodInfo};
use crate::{
    bounded::Generations,
    config::{Config, Problems},
    event::{AgentIdentity, Event, K8sPod, MatchedBy, Process, Stage, Subject},
    policy::pattern::{PathSet, path_glob},
    telemetry::tables::TableStat,
    versioned::Versioned,
};

/// Exec ids remembered for lineage per generation (`Generations`: at most twice this many).
/// An exec id nothing else holds any more — no image in the process table, no ancestry of one,
/// no record in flight — can never be looked up again, and is swept out: the table holds the
/// images of live processes and their ancestors, not the host's recent history, so short-lived
/// processes neither grow it nor push a silent ancestor out (before sweeping, 1,000 agents
/// exec'ing 100 times a second filled it to 2 × 32,768 entries in 650 s, +15 MiB of RSS, and any
/// process could flush its ancestors' attribution by forking enough children). Only with more
/// live images than a generation holds do generations turn over: then attribution of
/// long-silent ancestors is lost, never wrong.
const LINEAGE_GENERATION: usize = 32_768;
/// Cgroup paths whose matching agent is remembered per generation (`CgroupMatches`).
const CGROUP_MATCHES_GENERATION: usize = 8_192;
/// Agents named by pod labels remembered, and pods (with their container) as records carry
/// them; beyond, forgotten all at once (made again from the pod cache on the next record).
const MAX_LABELLED: usize = 10_000;
const MAX_PODS: usize = 10_000;

struct Agent {
    /// The identity once per way of matching (in `MatchedBy::ALL` order), shared by every event.
    by: Vec<Arc<AgentIdentity>>,
    /// Its id, shared by the lineage entries of the images it acted in.
    id: Arc<str>,
    cgroups: PathSet,
    uids: HashSet<u32>,
    k8s: K8sSelector,
}

impl Agent {
    fn new(info: AgentIdentity, cgroups: PathSet, uids: HashSet<u32>, k8s: K8sSelector) -> Self {
        let id = Arc::from(info.id.as_str());
        let by = MatchedBy::ALL
            .iter()
            .map(|m| {
                let mut a = info.clone();
                a.matched_by = Some(*m);
                Arc::new(a)
            })
            .collect();
        Self {
            by,
            id,
            cgroups,
            uids,
            k8s,
        }
    }

    fn id(&self) -> &str {
        &self.id
    }
}

/// Pods an agent covers: every non-empty part must match.
#[derive(Debug, Clone, Default)]
struct K8sSelector {
    namespaces: Vec<String>,
    service_accounts: Vec<String>,
    labels: BTreeMap<String, String>,
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

/// Compiled registries are numbered, so a cache of one is never taken for another's.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The registered agent identities, indexed by id and uid; cgroup matches are cached by the
/// identity stage (`CgroupMatches`), so attributing a record costs the same with a thousand agents
/// as with one.
pub(crate) struct Registry {
    agents: Vec<Agent>,
    /// Every agent's identities (`Agent::by`), agent after agent in one dense table: attributing
    /// a record reads one pointer of it, which stays in cache with a thousand agents (reaching it
    /// through each agent's own `Vec` cost two cache misses a record more).
    identities: Vec<Arc<AgentIdentity>>,
    by_id: crate::FastMap<Arc<str>, usize>,
    /// The first agent (in config order) of each uid.
    by_uid: crate::FastMap<u32, usize>,
    generation: u64,
}

impl Registry {
    /// Compiles `[[agents]]`; problems are recorded in `p`.
    pub(crate) fn compile(cfg: &Config, p: &mut Problems) -> Self {
        let mut ids = HashSet::new();
        let mut agents = Vec::new();
        for (i, a) in cfg.agents.iter().enumerate() {
            let id = a.id.get_ref();
            if id.is_empty() || id.trim() != id {
                p.at(
                    a.id.span(),
                    format!(
                        "agents[{i}].id: must be a non-empty string without surrounding spaces"
                    ),
                );
            } else if id == "*" || id == crate::event::UNATTRIBUTED {
                p.at(a.id.span(), format!("agents[{i}].id: `{id}` is reserved"));
            } else if !ids.insert(id.clone()) {
                p.at(
                    a.id.span(),
                    format!("agents[{i}].id: duplicate agent id `{id}`"),
                );
            }
            if a.cgroup.is_empty() && a.uid.is_empty() && !a.selects_pods() {
                p.at(
                    a.id.span(),
                    format!(
                        "agents[{i}]: agent `{id}` has an empty selector: give `cgroup` globs, \
                         `uid`s and/or k8s_namespace / k8s_service_account / k8s_labels"
                    ),
                );
            }
            let info = AgentIdentity {
                id: id.clone(),
                name: a.name.clone(),
                workflow: a.workflow.clone(),
                owner: a.owner.clone(),
                matched_by: None,
            };
            let k8s = K8sSelector {
                namespaces: a.k8s_namespace.clone(),
                service_accounts: a.k8s_service_account.clone(),
                labels: a.k8s_labels.clone(),
            };
            let cgroups = PathSet::compile(&a.cgroup, &format!("agents[{i}].cgroup"), p);
            let uids = a.uid.iter().map(|u| *u.get_ref()).collect();
            agents.push(Agent::new(info, cgroups, uids, k8s));
        }
        Self::indexed(agents)
    }

    /// `agents` with their indexes built.
    fn indexed(agents: Vec<Agent>) -> Self {
        let (mut by_id, mut by_uid) = (crate::FastMap::default(), crate::FastMap::default());
        for (i, a) in agents.iter().enumerate() {
            by_id.entry(Arc::clone(&a.id)).or_insert(i);
            for u in &a.uids {
                by_uid.entry(*u).or_insert(i);
            }
        }
        let identities = agents.iter().flat_map(|a| a.by.iter().cloned()).collect();
        Self {
            agents,
            identities,
            by_id,
            by_uid,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.agents.len()
    }

    /// Registers an ad-hoc identity for everything in `cgroup` and below (used by `trace`); it
    /// takes precedence over configured agents.
    pub(crate) fn add_first(&mut self, id: &str, cgroup: &str) -> anyhow::Result<()> {
        let glob = format!("{cgroup}/**");
        path_glob(&glob).map_err(anyhow::Error::msg)?;
        let info = AgentIdentity {
            id: id.to_string(),
            ..AgentIdentity::unattributed()
        };
        let cgroups = PathSet::new([glob.as_str()]).map_err(anyhow::Error::msg)?;
        let mut agents = std::mem::take(&mut self.agents);
        agents.insert(
            0,
            Agent::new(info, cgroups, HashSet::new(), K8sSelector::default()),
        );
        *self = Self::indexed(agents);
        Ok(())
    }

    /// The first agent (in config order) whose cgroup globs match `cgroup` (one glob set per
    /// agent: the identity stage caches the answer per cgroup).
    fn cgroup_agent(&self, cgroup: &str) -> Option<usize> {
        self.agents
            .iter()
            .position(|a| a.cgroups.matches(cgroup.as_bytes()))
    }

    /// Direct match: cgroup globs first (in config order; `by_cgroup` is the first agent whose
    /// globs match the subject's cgroup), then uids, then pod selectors.
    fn direct(
        &self,
        by_cgroup: Option<usize>,
        s: &Subject,
        pod: Option<&PodInfo>,
    ) -> Option<(usize, MatchedBy)> {
        if let Some(i) = by_cgroup {
            return Some((i, MatchedBy::Cgroup));
        }
        if let Some(i) = self.by_uid.get(&s.uid) {
            return Some((*i, MatchedBy::Uid));
        }
        let pod = pod?;
        self.agents
            .iter()
            .position(|a| a.k8s.matches(pod))
            .map(|i| (i, MatchedBy::K8s))
    }

    /// Whether any agent selects this pod (so its cgroups must be watched).
    pub(crate) fn selects_pod(&self, pod: &PodInfo) -> bool {
        self.agents.iter().any(|a| a.k8s.matches(pod))
    }

    /// Whether any agent uses Kubernetes selectors.
    pub(crate) fn uses_k8s(&self) -> bool {
        self.agents.iter().any(|a| !a.k8s.is_empty())
    }

    /// The index of the agent with this id.
    fn by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Agent `i`'s identity as matched `by`.
    fn identity(&self, i: usize, by: MatchedBy) -> Arc<AgentIdentity> {
        let way = MatchedBy::ALL
            .iter()
            .position(|m| *m == by)
            .expect("every way of matching is in ALL");
        Arc::clone(&self.identities[i * MatchedBy::ALL.len() + way])
    }

    /// Whether agents `a` and `b` are one (two entries of one id are one agent).
    fn same_agent(&self, a: usize, b: usize) -> bool {
        a == b || self.agents[a].id == self.agents[b].id
    }

    /// Agent `i` as lineage keeps it.
    fn attributed(&self, i: usize) -> Attributed {
        Attributed {
            id: Arc::clone(&self.agents[i].id),
            at: Some((self.generation, i)),
        }
    }

    /// The index of the agent an image was attributed to, if it is (still) configured.
    fn agent_of(&self, a: &Attributed) -> Option<usize> {
        match a.at {
            Some((generation, i)) if generation == self.generation => Some(i),
            _ => self.by_id(&a.id),
        }
    }
}

/// The agent registry, swappable at run time (configuration reload); judged by event time.
pub(crate) type SharedRegistry = Arc<Versioned<Registry>>;

/// Kubernetes context of the identity stage.
pub(crate) struct K8sIdentity {
    pub(crate) pods: Arc<PodCache>,
    /// A pod label whose value names the agent.
    pub(crate) agent_id_label: Option<String>,
}

pub(crate) struct IdentityStage {
    registry: SharedRegistry,
    k8s: Option<K8sIdentity>,
    /// Agents named by a pod label and not in the configuration (bounded).
    labelled: HashMap<String, Arc<AgentIdentity>>,
    /// (pod uid, container id, pod cache generation) -> the pod as events carry it.
    pods: HashMap<(String, Option<String>), (u64, Arc<K8sPod>)>,
    labelled_stat: TableStat,
    pods_stat: TableStat,
    /// exec id -> the agent of attributed process images.
    lineage: Generations<Arc<str>, Attributed>,
    /// The first agent matching each cgroup path.
    by_cgroup: CgroupMatches,
    /// Matches of this agent id are reported as `trace`.
    trace_id: Option<String>,
    unattributed: Arc<AgentIdentity>,
}

/// The agent an image was first attributed to, as lineage keeps it.
struct Attributed {
    /// Its id (the registry's own `Arc` for a configured agent: no copy).
    id: Arc<str>,
    /// Registry generation and index of a configured agent: a lookup in the same registry
    /// needs no hash lookup of the id.
    at: Option<(u64, usize)>,
}

/// Whether an exec id is held besides the lineage table (see [`LINEAGE_GENERATION`]).
fn held_elsewhere(exec_id: &Arc<str>) -> bool {
    Arc::strong_count(exec_id) > 1
}

/// The first agent whose cgroup globs match a cgroup path, remembered per path for one registry
/// (a reload's registry starts afresh): a record costs one lookup, not one glob match per agent.
struct CgroupMatches {
    /// The registry the answers are for.
    generation: Option<u64>,
    agents: Generations<Arc<str>, Option<usize>>,
}

impl CgroupMatches {
    fn agent(&mut self, registry: &Registry, cgroup: Option<&Arc<str>>) -> Option<usize> {
        let cgroup = cgroup?;
        if self.generation != Some(registry.generation) {
            self.agents.clear();
            self.generation = Some(registry.generation);
        }
        if let Some(found) = self.agents.get(cgroup) {
            return *found;
        }
        let found = registry.cgroup_agent(cgroup);
        self.agents.insert(Arc::clone(cgroup), found);
        found
    }
}

impl IdentityStage {
    pub(crate) fn new(registry: SharedRegistry) -> Self {
        Self {
            registry,
            k8s: None,
            labelled: HashMap::new(),
            pods: HashMap::new(),
            labelled_stat: TableStat::named("labelled_agents"),
            pods_stat: TableStat::named("pod_identities"),
            lineage: Generations::new(LINEAGE_GENERATION, TableStat::named("lineage"))
                .sweeping(held_elsewhere),
            by_cgroup: CgroupMatches {
                generation: None,
                agents: Generations::new(
                    CGROUP_MATCHES_GENERATION,
                    TableStat::named("cgroup_agents"),
                ),
            },
            trace_id: None,
            unattributed: Arc::new(AgentIdentity::unattributed()),
        }
    }

    pub(crate) fn with_k8s(mut self, k8s: K8sIdentity) -> Self {
        self.k8s = Some(k8s);
        self
    }

    /// Matches of agent `id` are reported as `matched_by = "trace"`.
    pub(crate) fn with_trace_id(mut self, id: &str) -> Self {
        self.trace_id = Some(id.to_string());
        self
    }

    /// The agent a pod label names: the configured agent with that id, else an identity made
    /// from the label value alone.
    fn labelled_agent(
        &mut self,
        registry: &Registry,
        pod: &PodInfo,
    ) -> Option<(Arc<AgentIdentity>, Option<usize>)> {
        let key = self.k8s.as_ref()?.agent_id_label.as_ref()?;
        let id = pod.labels.get(key)?;
        if let Some(i) = registry.by_id(id) {
            return Some((registry.identity(i, MatchedBy::K8sLabel), Some(i)));
        }
        if self.labelled.len() > MAX_LABELLED {
            self.labelled_stat.evicted(self.labelled.len());
            self.labelled = HashMap::new();
        }
        let agent = self.labelled.entry(id.clone()).or_insert_with(|| {
            Arc::new(AgentIdentity {
                id: id.clone(),
                matched_by: Some(MatchedBy::K8sLabel),
                ..AgentIdentity::unattributed()
            })
        });
        let agent = Arc::clone(agent);
        self.labelled_stat.set_entries(self.labelled.len());
        Some((agent, None))
    }

    /// The agent of the process an access record reaches into, when its image is attributed.
    fn target_agent(&self, a: &mut crate::event::Activity) {
        if let crate::event::Detail::Access(acc) = &mut a.resource.detail {
            acc.target_agent = acc
                .target_exec_id
                .as_ref()
                .and_then(|e| self.lineage.peek(e))
                .map(|a| Arc::clone(&a.id));
        }
    }

    /// Remembers the first agent of an image.
    fn remember(&mut self, exec_id: Option<&Arc<str>>, agent: &impl Fn() -> Attributed) {
        let Some(e) = exec_id else { return };
        if self.lineage.get(e).is_none() {
            self.lineage.insert(Arc::clone(e), agent());
        }
    }

    /// The identity an image already has: its own first one, else the nearest attributed
    /// ancestor's (`ancestor`: carried over, not matched where the process is now). Agents
    /// removed from the configuration since are skipped.
    fn sticky(&mut self, registry: &Registry, p: &Process) -> Option<(usize, MatchedBy)> {
        p.exec_id
            .iter()
            .chain(p.ancestors.iter())
            .chain(p.parent_exec_id.as_ref())
            .find_map(|e| registry.agent_of(self.lineage.get(e)?))
            .map(|agent| (agent, MatchedBy::Ancestor))
    }

    /// Fills the container id and pod of `s` from its cgroup path; returns the pod.
    fn place(&mut self, s: &mut Subject) -> Option<Arc<PodInfo>> {
        let c = container::parse(s.cgroup.as_deref()?);
        let pod = match (&self.k8s, &c.pod_uid) {
            (Some(k), Some(uid)) => k.pods.get(uid),
            _ => None,
        };
        if let (Some(p), Some(k)) = (&pod, &self.k8s) {
            s.k8s = Some(self.pod_of(p, c.container_id.as_deref(), k.pods.generation()));
        }
        s.container_id = c.container_id;
        pod
    }

    /// The pod as events carry it, built once per pod, container and cache generation.
    fn pod_of(&mut self, p: &PodInfo, container: Option<&str>, generation: u64) -> Arc<K8sPod> {
        if self.pods.len() > MAX_PODS {
            self.pods_stat.evicted(self.pods.len());
            self.pods = HashMap::new();
        }
        let key = (p.uid.clone(), container.map(str::to_string));
        let entry = self
            .pods
            .entry(key)
            .or_insert_with(|| (u64::MAX, Arc::default()));
        if entry.0 != generation {
            *entry = (
                generation,
                Arc::new(K8sPod {
                    namespace: p.namespace.clone(),
                    pod: p.name.clone(),
                    pod_uid: p.uid.clone(),
                    container: container.and_then(|id| p.containers.get(id).cloned()),
                    service_account: p.service_account.clone(),
                    labels: p.labels.clone(),
                }),
            );
        }
        let pod = Arc::clone(&entry.1);
        self.pods_stat.set_entries(self.pods.len());
        pod
    }
}

impl Stage for IdentityStage {
    fn apply(&mut self, event: &mut Event) {
        let registry = self.registry.at(event.time);
        let Some(a) = event.activity_mut() else {
            return;
        };
        let pod = self.place(&mut a.subject);
        let exec_id = a.process.exec_id.clone();
        let new_image = match &a.resource.detail {
            crate::event::Detail::Exec { new_exec_id, .. } => new_exec_id.clone(),
            _ => None,
        };
        // Where the process is now decides how it is matched, unless that names another agent
        // than the one it already had: then the first identity stays.
        let by_cgroup = self.by_cgroup.agent(&registry, a.subject.cgroup.as_ref());
        let direct = registry.direct(by_cgroup, &a.subject, pod.as_deref());
        let found = match (self.sticky(&registry, &a.process), direct) {
            (Some(first), Some(now)) if !registry.same_agent(first.0, now.0) => Some(first),
            (first, now) => now.or(first),
        };
        // The agent's index when it is configured.
        let (agent, index) = match found {
            Some((i, by)) => {
                // (The agent's id is read only under `trace`: one cache miss less a record.)
                let traced = self.trace_id.as_deref();
                let by = if traced.is_some_and(|t| t == registry.agents[i].id()) {
                    MatchedBy::Trace
                } else {
                    by
                };
                (registry.identity(i, by), Some(i))
            }
            None => match pod
                .as_deref()
                .and_then(|p| self.labelled_agent(&registry, p))
            {
                Some(labelled) => labelled,
                None => {
                    a.agent = Some(Arc::clone(&self.unattributed));
                    self.target_agent(a);
                    return;
                }
            },
        };
        let attributed = || match index {
            Some(i) => registry.attributed(i),
            None => Attributed {
                id: Arc::from(agent.id.as_str()),
                at: None,
            },
        };
        self.remember(exec_id.as_ref(), &attributed);
        self.remember(new_image.as_ref(), &attributed);
        a.agent = Some(agent);
        self.target_agent(a);
    }
}

#[cfg(test)]
mod tests;
