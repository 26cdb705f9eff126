//! Evaluate policy: the stage that decides, for every record, which protected sets its resource
//! belongs to and what the ordered rules say about it (first match wins, else the default).
//!
//! Policy is evaluated on what the kernel acted on: the executable path for exec, the path of an
//! open (resolved against cwd/dirfd when relative), the address and port of a connect.

pub mod pattern;

use std::{collections::HashSet, net::IpAddr, sync::Arc};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use self::pattern::{NetPattern, PathSet};
use crate::{
    config::{Config, Decision},
    escape::unescape,
    pipeline::Stage,
    record::{self, Record, action},
};

/// What a resource is, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file (open) or executable (exec) path.
    Path(Vec<u8>),
    /// An IP destination.
    Inet(IpAddr, Option<u16>),
    /// A unix socket path (abstract names start with a NUL byte).
    Unix(Vec<u8>),
    /// Nothing matchable (e.g. `AF_UNSPEC`).
    None,
}

impl Target {
    /// The resource a record's action was performed on.
    pub fn of(rec: &Record) -> Self {
        let Some(r) = &rec.resource else {
            return Self::None;
        };
        let bytes = |s: &str| unescape(s).unwrap_or_else(|| s.as_bytes().to_vec());
        match rec.action.as_str() {
            action::OPEN | action::EXEC => r
                .resolved_path
                .as_deref()
                .or(r.path.as_deref())
                .map_or(Self::None, |p| Self::Path(bytes(p))),
            action::CONNECT => match (r.family.as_deref(), r.address.as_deref()) {
                (Some("inet" | "inet6"), Some(a)) => {
                    a.parse().map_or(Self::None, |ip| Self::Inet(ip, r.port))
                }
                (Some("unix"), Some(a)) => match a.strip_prefix('@') {
                    Some(name) => {
                        let mut b = vec![0];
                        b.extend(bytes(name));
                        Self::Unix(b)
                    }
                    None => Self::Unix(bytes(a)),
                },
                _ => Self::None,
            },
            _ => Self::None,
        }
    }
}

#[derive(Debug)]
struct ProtectedSet {
    name: Arc<str>,
    files: PathSet,
    network: Vec<NetPattern>,
    exec: PathSet,
}

impl ProtectedSet {
    fn contains(&self, act: &str, t: &Target) -> bool {
        match (act, t) {
            (action::OPEN, Target::Path(p)) => self.files.matches(p),
            (action::EXEC, Target::Path(p)) => self.exec.matches(p),
            (action::CONNECT, Target::Inet(ip, port)) => {
                self.network.iter().any(|n| n.contains(*ip, *port))
            }
            (action::CONNECT, Target::Unix(p)) => self.files.matches(p),
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Rule {
    id: Arc<str>,
    /// `None`: every agent.
    agents: Option<HashSet<String>>,
    /// `None`: every action.
    actions: Option<HashSet<String>>,
    sets: Vec<usize>,
    paths: PathSet,
    nets: Vec<NetPattern>,
    decision: Decision,
}

impl Rule {
    fn matches(&self, agent: &str, act: &str, t: &Target, in_sets: &[bool]) -> bool {
        if self.agents.as_ref().is_some_and(|a| !a.contains(agent)) {
            return false;
        }
        if self.actions.as_ref().is_some_and(|a| !a.contains(act)) {
            return false;
        }
        if self.sets.is_empty() && self.paths.is_empty() && self.nets.is_empty() {
            return true;
        }
        self.sets.iter().any(|&i| in_sets[i])
            || match t {
                Target::Path(p) | Target::Unix(p) => self.paths.matches(p),
                Target::Inet(ip, port) => self.nets.iter().any(|n| n.contains(*ip, *port)),
                Target::None => false,
            }
    }
}

/// The outcome of evaluating one action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub protected: Vec<Arc<str>>,
    pub decision: Decision,
    /// `None` when the default decision applied.
    pub rule: Option<Arc<str>>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    version: Arc<str>,
    default: Decision,
    sets: Vec<ProtectedSet>,
    rules: Vec<Rule>,
}

/// The canonical form hashed into the policy version: comments, formatting and agent metadata do
/// not change it; any change to a rule, a protected set or the default does.
#[derive(Serialize)]
struct Canonical<'a> {
    default_decision: Decision,
    protected: Vec<CanonicalProtected<'a>>,
    rules: Vec<CanonicalRule<'a>>,
}

/// A protected set: name, file globs, network destinations, executable globs.
type CanonicalProtected<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);

#[derive(Serialize)]
struct CanonicalRule<'a> {
    id: &'a str,
    agents: Vec<&'a str>,
    actions: Vec<&'a str>,
    protected: Vec<&'a str>,
    resources: Vec<&'a str>,
    decision: Decision,
}

impl Policy {
    /// Compiles a validated configuration (patterns were checked by `Config::parse`).
    pub fn compile(cfg: &Config) -> anyhow::Result<Self> {
        let map_err = |e: String| anyhow::anyhow!(e);
        let mut sets = Vec::new();
        for p in &cfg.protected {
            sets.push(ProtectedSet {
                name: Arc::from(p.name.get_ref().as_str()),
                files: PathSet::new(strs(&p.files)).map_err(map_err)?,
                network: p
                    .network
                    .iter()
                    .map(|n| NetPattern::parse(n.get_ref()))
                    .collect::<Result<_, _>>()
                    .map_err(map_err)?,
                exec: PathSet::new(strs(&p.exec)).map_err(map_err)?,
            });
        }
        let mut rules = Vec::new();
        for r in &cfg.rules {
            let agents = strs(&r.agents);
            let resources = strs(&r.resources);
            rules.push(Rule {
                id: Arc::from(r.id.get_ref().as_str()),
                agents: (!agents.contains(&"*"))
                    .then(|| agents.iter().map(|s| s.to_string()).collect()),
                actions: (!r.actions.is_empty())
                    .then(|| r.actions.iter().map(|a| a.get_ref().clone()).collect()),
                sets: r
                    .protected
                    .iter()
                    .filter_map(|n| sets.iter().position(|s| *s.name == **n.get_ref()))
                    .collect(),
                paths: PathSet::new(resources.iter().copied().filter(|s| s.starts_with('/')))
                    .map_err(map_err)?,
                nets: resources
                    .iter()
                    .filter(|s| !s.starts_with('/'))
                    .map(|s| NetPattern::parse(s))
                    .collect::<Result<_, _>>()
                    .map_err(map_err)?,
                decision: *r.decision.get_ref(),
            });
        }
        let canonical = Canonical {
            default_decision: cfg.default_decision,
            protected: cfg
                .protected
                .iter()
                .map(|p| {
                    (
                        p.name.get_ref().as_str(),
                        strs(&p.files),
                        strs(&p.network),
                        strs(&p.exec),
                    )
                })
                .collect(),
            rules: cfg
                .rules
                .iter()
                .map(|r| CanonicalRule {
                    id: r.id.get_ref(),
                    agents: strs(&r.agents),
                    actions: strs(&r.actions),
                    protected: strs(&r.protected),
                    resources: strs(&r.resources),
                    decision: *r.decision.get_ref(),
                })
                .collect(),
        };
        let digest = Sha256::digest(serde_json::to_vec(&canonical)?);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            version: Arc::from(format!("sha256:{hex}")),
            default: cfg.default_decision,
            sets,
            rules,
        })
    }

    /// The policy of an empty configuration: everything allowed, nothing protected.
    pub fn empty() -> Self {
        Self::compile(&Config::default()).expect("the empty policy compiles")
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn version_arc(&self) -> &Arc<str> {
        &self.version
    }

    pub fn evaluate(&self, agent: &str, act: &str, target: &Target) -> Verdict {
        let in_sets: Vec<bool> = self.sets.iter().map(|s| s.contains(act, target)).collect();
        let protected = self
            .sets
            .iter()
            .zip(&in_sets)
            .filter(|(_, m)| **m)
            .map(|(s, _)| Arc::clone(&s.name))
            .collect();
        for r in &self.rules {
            if r.matches(agent, act, target, &in_sets) {
                return Verdict {
                    protected,
                    decision: r.decision,
                    rule: Some(Arc::clone(&r.id)),
                };
            }
        }
        Verdict {
            protected,
            decision: self.default,
            rule: None,
        }
    }
}

fn strs(v: &[toml::Spanned<String>]) -> Vec<&str> {
    v.iter().map(|s| s.get_ref().as_str()).collect()
}

/// The policy, swappable at run time (configuration reload); judged by event time.
pub type SharedPolicy = Arc<crate::versioned::Versioned<Policy>>;

/// The pipeline stage: fills `protected` and `policy` on every action record.
pub struct PolicyStage {
    policy: SharedPolicy,
}

impl PolicyStage {
    pub fn new(policy: SharedPolicy) -> Self {
        Self { policy }
    }
}

impl Stage for PolicyStage {
    fn apply(&mut self, rec: &mut Record) {
        if rec.is_gap() {
            return;
        }
        let policy = self.policy.at(rec.unix_ns);
        let v = policy.evaluate(rec.agent_id(), &rec.action, &Target::of(rec));
        rec.protected = Some(v.protected);
        rec.policy = Some(record::Policy {
            decision: std::borrow::Cow::Borrowed(v.decision.as_str()),
            rule: v.rule,
            version: Arc::clone(policy.version_arc()),
        });
    }
}

#[cfg(test)]
mod tests;
