//! The configuration file (TOML), documented field by field in `docs/configuration.md`.
//!
//! Loading is two steps: parse (syntax, types, unknown fields; from `toml` with positions) and
//! validate (references between sections, globs, CIDRs, duplicates). Every error names the file,
//! line and column, and the field: `config.toml:12:9: rules[0].agents[1]: unknown agent `x``.

use std::{collections::HashSet, ops::Range, path::Path};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use toml::Spanned;

use crate::policy::pattern::{NetPattern, path_glob};

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/audit-agent/config.toml";

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    #[default]
    Allow,
    Deny,
    Review,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Review => "review",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Decision when no rule matches.
    #[serde(default)]
    pub default_decision: Decision,
    #[serde(default)]
    pub agents: Vec<AgentConf>,
    #[serde(default)]
    pub protected: Vec<ProtectedConf>,
    #[serde(default)]
    pub rules: Vec<RuleConf>,
    #[serde(default)]
    pub watch: WatchConf,
    #[serde(default)]
    pub capture: CaptureConf,
    /// Durable export (daemon mode).
    #[serde(default)]
    pub export: Option<crate::export::ExportConf>,
    /// Prometheus metrics and health endpoints.
    #[serde(default)]
    pub metrics: Option<crate::telemetry::MetricsConf>,
    /// Kubernetes identity (pods of this node from the API server).
    #[serde(default)]
    pub k8s: crate::identity::k8s::K8sConf,
}

/// A registered agent identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConf {
    pub id: Spanned<String>,
    pub name: Option<String>,
    pub workflow: Option<String>,
    pub owner: Option<String>,
    /// cgroup path globs relative to the cgroup2 mount.
    #[serde(default)]
    pub cgroup: Vec<Spanned<String>>,
    #[serde(default)]
    pub uid: Vec<Spanned<u32>>,
    /// Kubernetes namespaces (pods in any of them).
    #[serde(default)]
    pub k8s_namespace: Vec<String>,
    /// Kubernetes service accounts (pods running as any of them).
    #[serde(default)]
    pub k8s_service_account: Vec<String>,
    /// Pod labels that must all be present with these values.
    #[serde(default)]
    pub k8s_labels: std::collections::BTreeMap<String, String>,
}

/// A named set of protected resources.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectedConf {
    pub name: Spanned<String>,
    /// Path globs of files (also matches unix socket paths of connects).
    #[serde(default)]
    pub files: Vec<Spanned<String>>,
    /// Network destinations: CIDR with optional port or port range.
    #[serde(default)]
    pub network: Vec<Spanned<String>>,
    /// Path globs of executables.
    #[serde(default)]
    pub exec: Vec<Spanned<String>>,
}

/// An ordered policy rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConf {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Agent ids, `unattributed`, or `*` (the default).
    #[serde(default = "star")]
    pub agents: Vec<Spanned<String>>,
    /// `process.exec`, `file.open`, `network.connect`; all when omitted.
    #[serde(default)]
    pub actions: Vec<Spanned<String>>,
    /// Names of protected sets.
    #[serde(default)]
    pub protected: Vec<Spanned<String>>,
    /// Path globs (`/...`) and network patterns.
    #[serde(default)]
    pub resources: Vec<Spanned<String>>,
    pub decision: Spanned<Decision>,
}

fn star() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "*".to_string())]
}

/// Extra things to watch besides the agents (their activity is recorded as `unattributed`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WatchConf {
    /// Watch every process on the host (investigations).
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub cgroups: Vec<Spanned<String>>,
    #[serde(default)]
    pub uids: Vec<u32>,
}

/// Kernel-side tuning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConf {
    /// Ring buffer size in bytes (power of two, >= 4096).
    #[serde(default = "default_ring")]
    pub ring_buffer_bytes: Spanned<u32>,
    /// How often cgroup globs are re-matched against the hierarchy, in milliseconds.
    #[serde(default = "default_rescan")]
    pub cgroup_rescan_ms: u64,
}

fn default_ring() -> Spanned<u32> {
    Spanned::new(0..0, 8 * 1024 * 1024)
}

fn default_rescan() -> u64 {
    500
}

impl Default for CaptureConf {
    fn default() -> Self {
        Self {
            ring_buffer_bytes: default_ring(),
            cgroup_rescan_ms: default_rescan(),
        }
    }
}

/// A configuration error with its position.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// All errors found in one file (validation reports every problem, not just the first).
#[derive(Debug, Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// (line, column), both 1-based, of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, anyhow::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read configuration file {}: {e}", path.display())
        })?;
        Ok(Self::parse(&text, &path.display().to_string())?)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigErrors> {
        let err = |span: Range<usize>, message: String| {
            let (line, column) = position(text, span.start);
            ConfigError {
                file: file.to_string(),
                line,
                column,
                message,
            }
        };
        let cfg: Config = toml::from_str(text).map_err(|e| {
            ConfigErrors(vec![err(
                e.span().unwrap_or(0..0),
                e.message().trim().replace('\n', " "),
            )])
        })?;
        let errors = cfg.validate();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(
                errors.into_iter().map(|(s, m)| err(s, m)).collect(),
            ))
        }
    }

    /// Semantic checks; returns (span, "field: message") for every problem.
    fn validate(&self) -> Vec<(Range<usize>, String)> {
        let mut errs = Vec::new();
        let mut agent_ids = HashSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let id = a.id.get_ref();
            if id.is_empty() || id.trim() != id {
                errs.push((
                    a.id.span(),
                    format!(
                        "agents[{i}].id: must be a non-empty string without surrounding spaces"
                    ),
                ));
            } else if id == "*" || id == "unattributed" {
                errs.push((a.id.span(), format!("agents[{i}].id: `{id}` is reserved")));
            } else if !agent_ids.insert(id.clone()) {
                errs.push((
                    a.id.span(),
                    format!("agents[{i}].id: duplicate agent id `{id}`"),
                ));
            }
            let k8s = !a.k8s_namespace.is_empty()
                || !a.k8s_service_account.is_empty()
                || !a.k8s_labels.is_empty();
            if a.cgroup.is_empty() && a.uid.is_empty() && !k8s {
                errs.push((
                    a.id.span(),
                    format!(
                        "agents[{i}]: agent `{id}` has an empty selector: give `cgroup` globs, \
                         `uid`s and/or k8s_namespace / k8s_service_account / k8s_labels"
                    ),
                ));
            }
            for (j, g) in a.cgroup.iter().enumerate() {
                if let Err(e) = path_glob(g.get_ref()) {
                    errs.push((g.span(), format!("agents[{i}].cgroup[{j}]: {e}")));
                }
            }
        }
        let mut set_names = HashSet::new();
        for (i, p) in self.protected.iter().enumerate() {
            let name = p.name.get_ref();
            if name.is_empty() {
                errs.push((
                    p.name.span(),
                    format!("protected[{i}].name: must not be empty"),
                ));
            } else if !set_names.insert(name.clone()) {
                errs.push((
                    p.name.span(),
                    format!("protected[{i}].name: duplicate protected set `{name}`"),
                ));
            }
            if p.files.is_empty() && p.network.is_empty() && p.exec.is_empty() {
                errs.push((p.name.span(), format!("protected[{i}]: set `{name}` is empty: give `files`, `network` and/or `exec`")));
            }
            for (field, globs) in [("files", &p.files), ("exec", &p.exec)] {
                for (j, g) in globs.iter().enumerate() {
                    if let Err(e) = path_glob(g.get_ref()) {
                        errs.push((g.span(), format!("protected[{i}].{field}[{j}]: {e}")));
                    }
                }
            }
            for (j, n) in p.network.iter().enumerate() {
                if let Err(e) = NetPattern::parse(n.get_ref()) {
                    errs.push((n.span(), format!("protected[{i}].network[{j}]: {e}")));
                }
            }
        }
        let mut rule_ids = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let id = r.id.get_ref();
            if id.is_empty() {
                errs.push((r.id.span(), format!("rules[{i}].id: must not be empty")));
            } else if !rule_ids.insert(id.clone()) {
                errs.push((
                    r.id.span(),
                    format!("rules[{i}].id: duplicate rule id `{id}`"),
                ));
            }
            if r.agents.is_empty() {
                errs.push((
                    r.id.span(),
                    format!("rules[{i}].agents: empty; use [\"*\"] for every agent"),
                ));
            }
            for (j, a) in r.agents.iter().enumerate() {
                let a = a.get_ref();
                if a != "*" && a != "unattributed" && !agent_ids.contains(a) {
                    let mut known: Vec<&str> = agent_ids.iter().map(String::as_str).collect();
                    known.sort_unstable();
                    errs.push((
                        r.agents[j].span(),
                        format!(
                            "rules[{i}].agents[{j}]: unknown agent `{a}` (known: {}, unattributed, *)",
                            known.join(", ")
                        ),
                    ));
                }
            }
            for (j, a) in r.actions.iter().enumerate() {
                if !crate::record::action::ALL.contains(&a.get_ref().as_str()) {
                    errs.push((
                        a.span(),
                        format!(
                            "rules[{i}].actions[{j}]: unknown action `{}` (one of process.exec, file.open, network.connect)",
                            a.get_ref()
                        ),
                    ));
                }
            }
            for (j, p) in r.protected.iter().enumerate() {
                if !set_names.contains(p.get_ref()) {
                    errs.push((
                        p.span(),
                        format!(
                            "rules[{i}].protected[{j}]: unknown protected set `{}`",
                            p.get_ref()
                        ),
                    ));
                }
            }
            for (j, res) in r.resources.iter().enumerate() {
                let s = res.get_ref();
                let check = if s.starts_with('/') {
                    path_glob(s).map(|_| ())
                } else {
                    NetPattern::parse(s).map(|_| ())
                };
                if let Err(e) = check {
                    errs.push((res.span(), format!("rules[{i}].resources[{j}]: {e}")));
                }
            }
        }
        for (i, g) in self.watch.cgroups.iter().enumerate() {
            if let Err(e) = path_glob(g.get_ref()) {
                errs.push((g.span(), format!("watch.cgroups[{i}]: {e}")));
            }
        }
        if let Some(m) = &self.metrics
            && m.listen.parse::<std::net::SocketAddr>().is_err()
        {
            errs.push((
                0..0,
                format!(
                    "metrics.listen: `{}` is not an address like 0.0.0.0:9464",
                    m.listen
                ),
            ));
        }
        if let Some(e) = &self.export {
            for (field, msg) in e.problems() {
                errs.push((0..0, format!("{field}: {msg}")));
            }
        }
        let ring = *self.capture.ring_buffer_bytes.get_ref();
        if ring < 4096 || !ring.is_power_of_two() {
            errs.push((
                self.capture.ring_buffer_bytes.span(),
                format!(
                    "capture.ring_buffer_bytes: {ring} must be a power of two of at least 4096"
                ),
            ));
        }
        errs
    }

    /// Whether anything at all is selected for watching.
    pub fn watches_anything(&self) -> bool {
        !self.agents.is_empty()
            || self.k8s.agent_id_label.is_some()
            || self.watch.all
            || !self.watch.cgroups.is_empty()
            || !self.watch.uids.is_empty()
    }
}

#[cfg(test)]
mod tests;
