//! Evaluate policy: the stage that decides, for every event, which protected sets its resource
//! belongs to and what the ordered rules say about it (first match wins, else the default).
//!
//! Policy is evaluated on the typed target: the executable for exec, the file of an open, the
//! address and port of a connect. `query` reuses the same matchers on stored records.

pub(crate) mod host;
pub(crate) mod inode;
pub(crate) mod pattern;

use std::{collections::HashSet, sync::Arc};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use self::{
    host::HostPattern,
    inode::InodeIndex,
    pattern::{NetPattern, PathSet, Resources},
};
use crate::{
    config::{Config, Problems, RuleConf},
    event::{Action, Decision, Event, Resource, Stage, Target, UNATTRIBUTED, Verdict},
    versioned::Versioned,
};

#[derive(Debug)]
struct ProtectedSet {
    name: Arc<str>,
    files: PathSet,
    network: Vec<NetPattern>,
    exec: PathSet,
    hosts: Vec<HostPattern>,
}

impl ProtectedSet {
    /// Whether the set names the resource by one of its paths, its address or its host names.
    fn names(&self, action: Action, r: &Resource) -> bool {
        match (action, &r.target) {
            (Action::Open, Target::File(_)) => self.files.matches_any(r.paths()),
            // A process that makes `mm->exe_file` name a protected program claims to be it;
            // mapping a file executable runs its code as an exec would.
            (Action::Exec | Action::SetExe | Action::MapExec, Target::File(_)) => {
                self.exec.matches_any(r.paths())
            }
            (a, Target::File(_)) if a.is_file_without_open() => self.files.matches_any(r.paths()),
            (a, Target::Inet(ip, port)) if a.is_network() => {
                self.network.iter().any(|n| n.contains(*ip, Some(*port)))
                    || self.names_host(a, r, *port)
            }
            (Action::Connect | Action::Send, Target::Unix(_)) => self.files.matches_any(r.paths()),
            (a, Target::File(_)) if a.is_file_change() => self.files.matches_any(r.paths()),
            _ => false,
        }
    }

    /// Whether a host pattern matches any name of the destination. A lookup has no port: its
    /// name is what was asked for, not where a connection went.
    fn names_host(&self, action: Action, r: &Resource, port: u16) -> bool {
        let port = (action != Action::Dns).then_some(port);
        self.hosts
            .iter()
            .any(|h| r.host_names().any(|n| h.matches(n, port)))
    }
}

/// How a resource belongs to a protected set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Membership {
    No,
    /// One of its paths matches the set.
    ByPath,
    /// Only its device and inode do: a hardlink, bind mount or chroot view of a protected file.
    ByInode,
}

/// The sets whose files (or executables, for exec) have the resource's identity.
fn inode_sets<'a>(
    index: &'a InodeIndex,
    action: Action,
    r: &'a Resource,
) -> impl Iterator<Item = usize> + 'a {
    r.file_ids()
        .flat_map(move |id| match action {
            Action::Exec | Action::SetExe | Action::MapExec => index.exec_sets(id),
            _ => index.file_sets(id),
        })
        .copied()
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    /// `None`: every agent.
    agents: Option<HashSet<String>>,
    /// `None`: every action.
    actions: Option<HashSet<Action>>,
    /// Indexes into the protected sets.
    sets: Vec<usize>,
    resources: Resources,
    decision: Decision,
}

impl Rule {
    /// Whether the rule applies, and how: `ByInode` when only a set the resource belongs to by
    /// inode made it apply.
    fn matches(
        &self,
        agent: &str,
        action: Action,
        r: &Resource,
        sets: &[Membership],
    ) -> Membership {
        if self.agents.as_ref().is_some_and(|a| !a.contains(agent))
            || self.actions.as_ref().is_some_and(|a| !a.contains(&action))
        {
            return Membership::No;
        }
        if (self.sets.is_empty() && self.resources.is_empty())
            || self.sets.iter().any(|&i| sets[i] == Membership::ByPath)
            || self.resources.matches(r)
        {
            return Membership::ByPath;
        }
        if self.sets.iter().any(|&i| sets[i] == Membership::ByInode) {
            return Membership::ByInode;
        }
        Membership::No
    }
}

/// A compiled policy.
#[derive(Debug)]
pub(crate) struct Policy {
    version: Arc<str>,
    default: Decision,
    sets: Vec<ProtectedSet>,
    rules: Vec<Rule>,
}

/// Everything that decides a verdict, hashed into the policy version: the default, the protected
/// sets, the rules, and which processes each agent covers (a rule naming an agent judges exactly
/// the processes the agent's selectors match). Comments, formatting and agent metadata (name,
/// owner, workflow) do not change it.
#[derive(Serialize)]
struct Canonical<'a> {
    default_decision: Decision,
    protected: Vec<CanonicalProtected<'a>>,
    rules: Vec<CanonicalRule<'a>>,
    agents: Vec<CanonicalAgent<'a>>,
    agent_id_label: Option<&'a str>,
}

/// A protected set: name, file globs, network destinations, executable globs, and host patterns
/// only when there are any (so sets without them keep the version they had before hosts
/// existed).
#[derive(Serialize)]
#[serde(untagged)]
enum CanonicalProtected<'a> {
    Paths(&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>),
    WithHosts(
        &'a str,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
        Vec<&'a str>,
    ),
}

#[derive(Serialize)]
struct CanonicalRule<'a> {
    id: &'a str,
    agents: Vec<&'a str>,
    actions: Vec<&'a str>,
    protected: Vec<&'a str>,
    resources: Vec<&'a str>,
    decision: Decision,
}

#[derive(Serialize)]
struct CanonicalAgent<'a> {
    id: &'a str,
    cgroup: Vec<&'a str>,
    uid: Vec<u32>,
    k8s_namespace: &'a [String],
    k8s_service_account: &'a [String],
    k8s_labels: &'a std::collections::BTreeMap<String, String>,
}

fn strs(v: &[Spanned<String>]) -> Vec<&str> {
    v.iter().map(|s| s.get_ref().as_str()).collect()
}

/// The `sha256:` + 16 hex digits of everything that decides a verdict.
fn version_of(cfg: &Config) -> Arc<str> {
    let canonical = Canonical {
        default_decision: cfg.default_decision,
        protected: cfg
            .protected
            .iter()
            .map(|p| {
                let (name, files, net, exec) = (
                    p.name.get_ref().as_str(),
                    strs(&p.files),
                    strs(&p.network),
                    strs(&p.exec),
                );
                if p.hosts.is_empty() {
                    CanonicalProtected::Paths(name, files, net, exec)
                } else {
                    CanonicalProtected::WithHosts(name, files, net, exec, strs(&p.hosts))
                }
            })
            .collect(),
        rules: cfg.rules.iter().map(canonical_rule).collect(),
        agents: cfg
            .agents
            .iter()
            .map(|a| CanonicalAgent {
                id: a.id.get_ref(),
                cgroup: strs(&a.cgroup),
                uid: a.uid.iter().map(|u| *u.get_ref()).collect(),
                k8s_namespace: &a.k8s_namespace,
                k8s_service_account: &a.k8s_service_account,
                k8s_labels: &a.k8s_labels,
            })
            .collect(),
        agent_id_label: cfg.k8s.agent_id_label.as_deref(),
    };
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    let digest = Sha256::digest(bytes);
    format!("sha256:{}", hex::encode(&digest[..8])).into()
}

fn canonical_rule(r: &RuleConf) -> CanonicalRule<'_> {
    CanonicalRule {
        id: r.id.get_ref(),
        agents: strs(&r.agents),
        actions: strs(&r.actions),
        protected: strs(&r.protected),
        resources: strs(&r.resources),
        decision: *r.decision.get_ref(),
    }
}

/// Compiles the protected sets; every bad pattern is recorded with its position.
fn compile_sets(cfg: &Config, p: &mut Problems) -> Vec<ProtectedSet> {
    let mut names = HashSet::new();
    let mut sets = Vec::new();
    for (i, s) in cfg.protected.iter().enumerate() {
        let name = s.name.get_ref();
        if name.is_empty() {
            p.at(
                s.name.span(),
                format!("protected[{i}].name: must not be empty"),
            );
        } else if !names.insert(name.clone()) {
            p.at(
                s.name.span(),
                format!("protected[{i}].name: duplicate protected set `{name}`"),
            );
        }
        if s.files.is_empty() && s.network.is_empty() && s.exec.is_empty() && s.hosts.is_empty() {
            p.at(
                s.name.span(),
                format!(
                    "protected[{i}]: set `{name}` is empty: give `files`, `network`, `exec` \
                     and/or `hosts`"
                ),
            );
        }
        sets.push(ProtectedSet {
            name: Arc::from(name.as_str()),
            files: PathSet::compile(&s.files, &format!("protected[{i}].files"), p),
            network: NetPattern::compile_all(&s.network, &format!("protected[{i}].network"), p),
            exec: PathSet::compile(&s.exec, &format!("protected[{i}].exec"), p),
            hosts: HostPattern::compile_all(&s.hosts, &format!("protected[{i}].hosts"), p),
        });
    }
    sets
}

/// Compiles one rule, checking its references against the agents and sets.
fn compile_rule(
    i: usize,
    r: &RuleConf,
    agent_ids: &[&str],
    sets: &[ProtectedSet],
    p: &mut Problems,
) -> Rule {
    if r.agents.is_empty() {
        p.at(
            r.id.span(),
            format!("rules[{i}].agents: empty; use [\"*\"] for every agent"),
        );
    }
    for (j, a) in r.agents.iter().enumerate() {
        let name = a.get_ref().as_str();
        if name != "*" && name != UNATTRIBUTED && !agent_ids.contains(&name) {
            let mut known = agent_ids.to_vec();
            known.sort_unstable();
            p.at(
                a.span(),
                format!(
                    "rules[{i}].agents[{j}]: unknown agent `{name}` (known: {}, unattributed, *)",
                    known.join(", ")
                ),
            );
        }
    }
    let mut actions = HashSet::new();
    for (j, a) in r.actions.iter().enumerate() {
        match Action::parse(a.get_ref()) {
            Some(act) => {
                actions.insert(act);
            }
            None => p.at(
                a.span(),
                format!(
                    "rules[{i}].actions[{j}]: unknown action `{}` (one of {})",
                    a.get_ref(),
                    Action::names()
                ),
            ),
        }
    }
    let mut set_ix = Vec::new();
    for (j, s) in r.protected.iter().enumerate() {
        match sets.iter().position(|x| *x.name == **s.get_ref()) {
            Some(ix) => set_ix.push(ix),
            None => p.at(
                s.span(),
                format!(
                    "rules[{i}].protected[{j}]: unknown protected set `{}`",
                    s.get_ref()
                ),
            ),
        }
    }
    let agents = strs(&r.agents);
    Rule {
        id: Arc::from(r.id.get_ref().as_str()),
        agents: (!agents.contains(&"*")).then(|| agents.iter().map(|s| s.to_string()).collect()),
        actions: (!r.actions.is_empty()).then_some(actions),
        sets: set_ix,
        resources: Resources::compile(&r.resources, &format!("rules[{i}].resources"), p),
        decision: *r.decision.get_ref(),
    }
}

impl Policy {
    /// Compiles the policy parts of a configuration; problems are recorded in `p`.
    pub(crate) fn compile(cfg: &Config, p: &mut Problems) -> Self {
        let sets = compile_sets(cfg, p);
        let agent_ids: Vec<&str> = cfg.agents.iter().map(|a| a.id.get_ref().as_str()).collect();
        let mut ids = HashSet::new();
        let mut rules = Vec::new();
        for (i, r) in cfg.rules.iter().enumerate() {
            let id = r.id.get_ref();
            if id.is_empty() {
                p.at(r.id.span(), format!("rules[{i}].id: must not be empty"));
            } else if !ids.insert(id.clone()) {
                p.at(
                    r.id.span(),
                    format!("rules[{i}].id: duplicate rule id `{id}`"),
                );
            }
            rules.push(compile_rule(i, r, &agent_ids, &sets, p));
        }
        Self {
            version: version_of(cfg),
            default: cfg.default_decision,
            sets,
            rules,
        }
    }

    pub(crate) fn version(&self) -> &Arc<str> {
        &self.version
    }

    pub(crate) fn default_decision(&self) -> Decision {
        self.default
    }

    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.sets.len(), self.rules.len())
    }

    /// How `r` belongs to each protected set, `index` giving the sets by identity.
    fn memberships(&self, action: Action, r: &Resource, index: &InodeIndex) -> Vec<Membership> {
        let mut m: Vec<Membership> = self
            .sets
            .iter()
            .map(|s| {
                if s.names(action, r) {
                    Membership::ByPath
                } else {
                    Membership::No
                }
            })
            .collect();
        for i in inode_sets(index, action, r) {
            if let Some(x) = m.get_mut(i)
                && *x == Membership::No
            {
                *x = Membership::ByInode;
            }
        }
        m
    }

    /// Judges `agent` doing `action` to `r`: the protected sets it belongs to (by path or
    /// inode), those it belongs to by inode only, and the verdict.
    pub(crate) fn evaluate(
        &self,
        agent: &str,
        action: Action,
        r: &Resource,
        index: &InodeIndex,
    ) -> Evaluation {
        let sets = self.memberships(action, r, index);
        let names = |want: &[Membership]| {
            self.sets
                .iter()
                .zip(&sets)
                .filter(|(_, m)| want.contains(m))
                .map(|(s, _)| Arc::clone(&s.name))
                .collect()
        };
        let (rule, how) = self
            .rules
            .iter()
            .map(|rule| (rule, rule.matches(agent, action, r, &sets)))
            .find(|(_, how)| *how != Membership::No)
            .map_or((None, Membership::No), |(rule, how)| (Some(rule), how));
        Evaluation {
            protected: names(&[Membership::ByPath, Membership::ByInode]),
            protected_by_inode: names(&[Membership::ByInode]),
            verdict: Verdict {
                decision: rule.map_or(self.default, |r| r.decision),
                rule: rule.map(|r| Arc::clone(&r.id)),
                by_inode: how == Membership::ByInode,
                version: Arc::clone(&self.version),
            },
        }
    }
}

/// What policy says about one action.
#[derive(Debug)]
pub(crate) struct Evaluation {
    pub(crate) protected: Vec<Arc<str>>,
    pub(crate) protected_by_inode: Vec<Arc<str>>,
    pub(crate) verdict: Verdict,
}

/// The policy, swappable at run time (configuration reload); judged by event time.
pub(crate) type SharedPolicy = Arc<Versioned<Policy>>;

/// The pipeline stage: fills `protected` and `verdict` on every activity.
pub(crate) struct PolicyStage {
    policy: SharedPolicy,
    inodes: inode::Refreshing,
}

impl PolicyStage {
    /// `root`: where protected files are looked up by identity ([`inode::Refreshing::host_root`]);
    /// their identities are published to `kernel` (the capture gives their records priority).
    pub(crate) fn new(
        policy: SharedPolicy,
        root: std::path::PathBuf,
        kernel: Option<inode::Published>,
    ) -> Self {
        let mut inodes = inode::Refreshing::new(root);
        if let Some(k) = kernel {
            inodes = inodes.publishing(k);
        }
        inodes.get(&policy.current(), crate::time::now());
        Self { policy, inodes }
    }
}

impl Stage for PolicyStage {
    fn apply(&mut self, event: &mut Event) {
        let policy = self.policy.at(event.time);
        let index = self.inodes.get(&policy, event.time);
        if let Some(a) = event.activity_mut() {
            let agent = a.agent.clone();
            let id = agent.as_deref().map_or(UNATTRIBUTED, |x| x.id.as_str());
            let e = policy.evaluate(id, a.action, &a.resource, &index);
            a.protected = e.protected;
            a.protected_by_inode = e.protected_by_inode;
            a.verdict = Some(e.verdict);
        }
    }
}

#[cfg(test)]
mod tests;
