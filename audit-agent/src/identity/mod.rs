//! Attribute: the stage that says which agent acted. An agent identity is matched by cgroup path
//! glob or uid (config `[[agents]]`); a process that matches neither but descends from an
//! attributed process image keeps its ancestor's identity (`matched_by = "ancestor"`), so an
//! agent cannot shed its identity by moving cgroups or changing uid. Activity matching nothing is
//! `unattributed`. Also fills `subject.container_id` from the cgroup path.

pub mod container;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
};

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
    by: [Arc<record::Agent>; 4],
    cgroups: PathSet,
    uids: HashSet<u32>,
}

const MATCHED_BY: [&str; 4] = ["cgroup", "uid", "ancestor", "trace"];

fn with_matches(info: &record::Agent) -> [Arc<record::Agent>; 4] {
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
            },
        );
        Ok(())
    }

    /// Direct match: cgroup globs first (in config order), then uids.
    fn direct(&self, cgroup: Option<&str>, uid: u32) -> Option<(&Agent, &'static str)> {
        if let Some(cg) = cgroup {
            if let Some(a) = self
                .agents
                .iter()
                .find(|a| a.cgroups.matches(cg.as_bytes()))
            {
                return Some((a, "cgroup"));
            }
        }
        self.agents
            .iter()
            .find(|a| a.uids.contains(&uid))
            .map(|a| (a, "uid"))
    }

    fn by_id(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.info.id == id)
    }
}

/// A registry that can be swapped at run time (configuration reload).
pub type SharedRegistry = Arc<RwLock<Arc<Registry>>>;

pub struct IdentityStage {
    registry: SharedRegistry,
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
        let registry = self
            .registry
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()));
        let (cgroup, uid) = rec
            .subject
            .as_ref()
            .map_or((None, 0), |s| (s.cgroup.clone(), s.uid));
        if let (Some(s), Some(cg)) = (rec.subject.as_mut(), cgroup.as_deref()) {
            s.container_id = container::parse(cg).container_id;
        }
        let (exec_id, parent_exec_id) = rec.process.as_ref().map_or((None, None), |p| {
            (p.exec_id.clone(), p.parent_exec_id.clone())
        });
        let new_image = rec.resource.as_ref().and_then(|r| r.exec_id.clone());

        let found = match registry.direct(cgroup.as_deref(), uid) {
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
            None => rec.agent = Some(Arc::clone(&self.unattributed)),
        }
    }
}
