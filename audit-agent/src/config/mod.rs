//! The configuration file (TOML), documented field by field in `docs/configuration.md`.
//!
//! This module only reads: syntax, types and unknown fields, with positions kept for every value
//! a later check may reject. It depends on no other stage. `settings.rs` compiles the result into
//! what the pipeline runs on; every error names the file, line, column and field:
//! `config.toml:12:9: rules[0].agents[1]: unknown agent `x``.

use std::{collections::BTreeMap, ops::Range, path::PathBuf};

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::event::Decision;

/// Where the daemon looks when `--config` is not given.
pub(crate) const DEFAULT_PATH: &str = "/etc/audit-agent/config.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// Decision when no rule matches.
    #[serde(default)]
    pub(crate) default_decision: Decision,
    #[serde(default)]
    pub(crate) agents: Vec<AgentConf>,
    #[serde(default)]
    pub(crate) protected: Vec<ProtectedConf>,
    #[serde(default)]
    pub(crate) rules: Vec<RuleConf>,
    #[serde(default)]
    pub(crate) watch: WatchConf,
    #[serde(default)]
    pub(crate) capture: CaptureConf,
    /// Durable export (daemon mode).
    #[serde(default)]
    pub(crate) export: Option<ExportConf>,
    /// Prometheus metrics and health endpoints.
    #[serde(default)]
    pub(crate) metrics: Option<MetricsConf>,
    /// Kubernetes identity (pods of this node from the API server).
    #[serde(default)]
    pub(crate) k8s: K8sConf,
    /// What agents say they did: hook payloads and OTLP tool spans (docs/claims.md).
    #[serde(default)]
    pub(crate) claims: Option<ClaimsConf>,
}

/// `[claims]`: where claims are taken in.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimsConf {
    /// The unix socket `audit-agent claim` hands hook payloads to.
    #[serde(default)]
    pub(crate) socket: Option<std::path::PathBuf>,
    /// Address of the OTLP/HTTP receiver (`POST /v1/traces`); off when absent.
    #[serde(default)]
    pub(crate) otlp_listen: Option<Spanned<String>>,
    /// Claims a second one process may submit (twice that in a burst).
    #[serde(default = "default_claims_per_second")]
    pub(crate) per_second: Spanned<u32>,
}

fn default_claims_per_second() -> Spanned<u32> {
    Spanned::new(0..0, 50)
}

/// A registered agent identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentConf {
    pub(crate) id: Spanned<String>,
    pub(crate) name: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) owner: Option<String>,
    /// cgroup path globs relative to the cgroup2 mount.
    #[serde(default)]
    pub(crate) cgroup: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) uid: Vec<Spanned<u32>>,
    /// Kubernetes namespaces (pods in any of them).
    #[serde(default)]
    pub(crate) k8s_namespace: Vec<String>,
    /// Kubernetes service accounts (pods running as any of them).
    #[serde(default)]
    pub(crate) k8s_service_account: Vec<String>,
    /// Pod labels that must all be present with these values.
    #[serde(default)]
    pub(crate) k8s_labels: BTreeMap<String, String>,
}

impl AgentConf {
    pub(crate) fn selects_pods(&self) -> bool {
        !self.k8s_namespace.is_empty()
            || !self.k8s_service_account.is_empty()
            || !self.k8s_labels.is_empty()
    }
}

/// A named set of protected resources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProtectedConf {
    pub(crate) name: Spanned<String>,
    /// Path globs of files (also matches unix socket paths of connects).
    #[serde(default)]
    pub(crate) files: Vec<Spanned<String>>,
    /// Network destinations: CIDR with optional port or port range.
    #[serde(default)]
    pub(crate) network: Vec<Spanned<String>>,
    /// Path globs of executables.
    #[serde(default)]
    pub(crate) exec: Vec<Spanned<String>>,
    /// Host name patterns of network destinations, with optional ports.
    #[serde(default)]
    pub(crate) hosts: Vec<Spanned<String>>,
}

/// An ordered policy rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConf {
    pub(crate) id: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)] // documentation for people reading the file
    pub(crate) description: Option<String>,
    /// Agent ids, `unattributed`, or `*` (the default).
    #[serde(default = "star")]
    pub(crate) agents: Vec<Spanned<String>>,
    /// Action names; all when omitted.
    #[serde(default)]
    pub(crate) actions: Vec<Spanned<String>>,
    /// Names of protected sets.
    #[serde(default)]
    pub(crate) protected: Vec<Spanned<String>>,
    /// Path globs (`/...`) and network patterns.
    #[serde(default)]
    pub(crate) resources: Vec<Spanned<String>>,
    pub(crate) decision: Spanned<Decision>,
}

fn star() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "*".to_string())]
}

/// Extra things to watch besides the agents (their activity is recorded as `unattributed`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchConf {
    /// Watch every process on the host (investigations).
    #[serde(default)]
    pub(crate) all: bool,
    #[serde(default)]
    pub(crate) cgroups: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) uids: Vec<u32>,
}

/// Kernel-side tuning.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaptureConf {
    /// Ring buffer size in bytes (power of two, >= 4096).
    #[serde(default = "default_ring")]
    pub(crate) ring_buffer_bytes: Spanned<u32>,
    /// How often cgroup globs are re-matched against the hierarchy, in milliseconds.
    #[serde(default = "default_rescan")]
    pub(crate) cgroup_rescan_ms: u64,
    /// How long the record of a non-blocking connect waits for its outcome, in milliseconds.
    #[serde(default = "default_connect_wait")]
    pub(crate) connect_outcome_wait_ms: u64,
    /// Record 32-bit system calls (a check on every system call of the machine; see
    /// docs/benchmarks.md).
    #[serde(default = "default_true")]
    pub(crate) compat_syscalls: bool,
    /// Read the kernel's dentries, mounts, files and inodes with plain loads through kernel
    /// functions (`bpf_rdonly_cast`, Linux 6.2) where the kernel has them; `false` reads them with
    /// a helper call per field, as on older kernels.
    #[serde(default = "default_true")]
    pub(crate) kfuncs: bool,
    /// Read DNS messages, TLS ClientHellos and HTTP requests from the packets of watched
    /// processes' sockets, to name their destinations (cgroup `skb` programs).
    #[serde(default = "default_true")]
    pub(crate) packets: bool,
    /// Ports whose UDP datagrams (and TCP replies) are read as DNS.
    #[serde(default = "default_dns_ports")]
    pub(crate) dns_ports: Spanned<Vec<u16>>,
}

fn default_dns_ports() -> Spanned<Vec<u16>> {
    Spanned::new(0..0, vec![53])
}

fn default_true() -> bool {
    true
}

fn default_connect_wait() -> u64 {
    10_000
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
            connect_outcome_wait_ms: default_connect_wait(),
            compat_syscalls: true,
            kfuncs: true,
            packets: true,
            dns_ports: default_dns_ports(),
        }
    }
}

/// `[export.security_lake]`: where Security Lake finds the Parquet objects.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct SecurityLakeConf {
    /// Custom source names are `<source>-<class>` (`audit-agent-file-activity`, ...).
    #[serde(default = "defaults::lake_source")]
    pub(crate) source: String,
    /// The AWS region in the layout (`region=`).
    pub(crate) region: String,
    /// The AWS account id in the layout (`accountId=`).
    pub(crate) account_id: String,
}

/// `[export]`: the daemon's spool and store.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportConf {
    /// `s3://bucket/prefix` or `file:///path`.
    pub(crate) store: Spanned<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) allow_http: Option<bool>,
    #[serde(default = "defaults::spool_dir")]
    pub(crate) spool_dir: PathBuf,
    /// Spool size limit (open + sealed, bytes); beyond it records are dropped and a gap record
    /// says how many.
    #[serde(default = "defaults::spool_max_bytes")]
    pub(crate) spool_max_bytes: Spanned<u64>,
    /// Seal a segment at this many uncompressed bytes ...
    #[serde(default = "defaults::segment_max_bytes")]
    pub(crate) segment_max_bytes: Spanned<u64>,
    /// ... or at this age, whichever comes first ...
    #[serde(default = "defaults::segment_max_age_ms")]
    pub(crate) segment_max_age_ms: Spanned<u64>,
    /// ... sealing at most this many segments a second for their age (oldest first): the
    /// objects written a second are bounded by this, not by the number of agents.
    #[serde(default = "defaults::segments_per_s")]
    pub(crate) segments_per_s: Spanned<u32>,
    /// On SIGTERM, how long to keep uploading before leaving the rest in the spool.
    #[serde(default = "defaults::shutdown_grace_ms")]
    pub(crate) shutdown_grace_ms: u64,
    /// With nothing to seal for this long, write a heartbeat manifest (anchors the chain's tail).
    #[serde(default = "defaults::heartbeat_ms")]
    pub(crate) heartbeat_ms: Spanned<u64>,
    /// Also write OCSF objects under `<prefix>/ocsf/`.
    #[serde(default)]
    pub(crate) ocsf: bool,
    /// Also write ECS documents under `<prefix>/ecs/`.
    #[serde(default)]
    pub(crate) ecs: bool,
    /// Also write OCSF as Parquet for Amazon Security Lake under `<prefix>/ext/`.
    pub(crate) security_lake: Option<Spanned<SecurityLakeConf>>,
    /// Ed25519 key (32-byte seed, hex) to sign manifests with.
    pub(crate) signing_key: Option<Spanned<PathBuf>>,
    /// gzip level 0-9.
    #[serde(default = "defaults::gzip_level")]
    pub(crate) gzip_level: Spanned<u32>,
}

mod defaults {
    use std::path::PathBuf;

    use toml::Spanned;

    pub(super) fn lake_source() -> String {
        "audit-agent".into()
    }

    pub(super) fn spool_dir() -> PathBuf {
        PathBuf::from("/var/lib/audit-agent/spool")
    }
    pub(super) fn spool_max_bytes() -> Spanned<u64> {
        Spanned::new(0..0, 1 << 30)
    }
    pub(super) fn segment_max_bytes() -> Spanned<u64> {
        Spanned::new(0..0, 8 << 20)
    }
    pub(super) fn segment_max_age_ms() -> Spanned<u64> {
        Spanned::new(0..0, 10_000)
    }
    pub(super) fn segments_per_s() -> Spanned<u32> {
        Spanned::new(0..0, 10)
    }
    pub(super) fn shutdown_grace_ms() -> u64 {
        10_000
    }
    pub(super) fn heartbeat_ms() -> Spanned<u64> {
        Spanned::new(0..0, 60_000)
    }
    pub(super) fn gzip_level() -> Spanned<u32> {
        // Measured (zlib-rs, records of ten agents with varied paths and addresses): level 2
        // compresses 32.7:1 at 0.45-0.50 µs per record, level 3 33.3:1 at 0.53-0.64 µs, level 1
        // only 23:1; level 6 costs noticeably more CPU for no gain.
        Spanned::new(0..0, 2)
    }
}

/// `[metrics]`: Prometheus metrics and health endpoints.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsConf {
    /// Address to serve /metrics, /healthz and /readyz on.
    pub(crate) listen: Spanned<String>,
    /// /readyz fails when the store has not answered for this long (seconds).
    #[serde(default = "default_store_staleness")]
    pub(crate) store_staleness_s: u64,
}

fn default_store_staleness() -> u64 {
    120
}

/// `[k8s]`: Kubernetes identity.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct K8sConf {
    /// `auto` (when running in a cluster: KUBERNETES_SERVICE_HOST is set), `on` or `off`.
    #[serde(default)]
    pub(crate) enabled: K8sMode,
    /// API server URL [default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT].
    pub(crate) api_server: Option<String>,
    /// Bearer token file [default: the pod's service account token].
    pub(crate) token_file: Option<PathBuf>,
    /// CA bundle for the API server [default: the pod's service account ca.crt].
    pub(crate) ca_file: Option<PathBuf>,
    /// This node's name [default: $NODE_NAME, else the host name].
    pub(crate) node_name: Option<String>,
    /// A pod label whose value is the agent id (e.g. `ai.agent/id`), for pods no [[agents]]
    /// entry selects.
    pub(crate) agent_id_label: Option<String>,
    /// Most pods cached.
    #[serde(default = "default_max_pods")]
    pub(crate) max_pods: usize,
}

fn default_max_pods() -> usize {
    10_000
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum K8sMode {
    #[default]
    Auto,
    On,
    Off,
}

/// A configuration error with its position.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{file}:{line}:{column}: {message}")]
pub(crate) struct ConfigError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
}

/// All errors found in one file (every problem is reported, not just the first).
#[derive(Debug, Error)]
pub(crate) struct ConfigErrors(pub(crate) Vec<ConfigError>);

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

/// Collects problems found while compiling a configuration, turning spans into positions.
pub(crate) struct Problems<'a> {
    text: &'a str,
    file: &'a str,
    list: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Self {
        Self {
            text,
            file,
            list: Vec::new(),
        }
    }

    /// Records `message` (already prefixed with the field) at `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |i| before.len() - i - 1)
            + 1;
        self.list.push(ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    /// `Ok(value)` when nothing was recorded.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.list))
        }
    }
}

/// Parses configuration text (syntax, types, unknown fields); `file` names it in errors.
pub(crate) fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    toml::from_str(text).map_err(|e| {
        let mut p = Problems::new(text, file);
        p.at(
            e.span().unwrap_or(0..0),
            e.message().trim().replace('\n', " "),
        );
        ConfigErrors(p.list)
    })
}
