//! The audit record: the native output schema (`audit-agent/v1`), documented in `docs/schema.md`.
//!
//! Field names are a contract with SIEMs, query engines and `audit-agent query`. Add fields; do
//! not rename or remove them.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "audit-agent/v1";

/// Values of [`Record::action`].
pub mod action {
    pub const EXEC: &str = "process.exec";
    pub const OPEN: &str = "file.open";
    pub const CONNECT: &str = "network.connect";
    /// Records were lost (counted in the kernel or the agent); see [`super::Gap`].
    pub const GAP: &str = "audit.gap";
    pub const ALL: [&str; 3] = [EXEC, OPEN, CONNECT];
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub schema: String,
    /// Unique id: `<stream>-<seq>`.
    pub id: String,
    /// Per-host monotonic sequence number (gaps are explained by `audit.gap` records).
    pub seq: u64,
    /// When the action was attempted (syscall entry), RFC 3339 UTC with nanoseconds.
    pub time: String,
    /// Shared by every record of a host (a refcount, not a copy, per record).
    pub host: Arc<Host>,
    pub action: String,
    /// The system call that performed the action (`openat`, `execve`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Arc<Agent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Outcome>,
    /// Names of the protected sets the resource belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<Vec<Arc<str>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    /// Event time in ns since the epoch (not serialized: `time` carries it).
    #[serde(skip)]
    pub unix_ns: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub boot_id: String,
}

/// Who acted, as an agent identity (filled by the identity stage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `cgroup`, `uid`, `k8s`, `k8s_label`, `ancestor` or `trace`; null for unattributed activity.
    #[serde(default)]
    pub matched_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub comm: String,
    /// Executable of the acting process image; null when unknown.
    pub exe: Option<Arc<str>>,
    /// Host-unique id of the process image (changes at exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<Arc<str>>,
    /// `exec_id` of the image that created this one (by fork or exec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// cgroup path relative to the cgroup2 mount; null when it no longer exists.
    pub cgroup: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8s>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct K8s {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What was acted on. Which fields are present depends on the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resource {
    /// open, exec: the path (escaped, see docs/schema.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// open, exec: the absolute path after resolving a relative `path` against the directory it
    /// was relative to (cwd or dirfd), when that differs from `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_path: Option<String>,
    /// exec: the argument vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// open: symbolic flags (`O_WRONLY`, `O_CREAT`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    /// open: creation mode (octal) when the flags can create a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// open, execveat: directory fd a relative path is resolved against (-100 = cwd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirfd: Option<i32>,
    /// connect: `inet`, `inet6`, `unix`, `unspec` or `af_<n>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// connect: IP address, or unix socket path (`@name` for the abstract namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// exec: `exec_id` of the image started by a successful exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<Arc<str>>,
    /// Something was cut to fit (`path`, `argv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
}

/// Values of [`Outcome::outcome`].
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    /// A non-blocking connect that is still connecting (`EINPROGRESS`).
    pub const IN_PROGRESS: &str = "in_progress";
    /// The thread ended inside the syscall, or the agent stopped first: no result is known.
    pub const UNKNOWN: &str = "unknown";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub outcome: Cow<'static, str>,
    /// Raw syscall return value (fd, 0, or negative errno); null when unknown.
    pub retval: Option<i64>,
    /// errno name on failure, else null.
    pub errno: Option<Cow<'static, str>>,
}

/// Values of [`Policy::decision`].
pub mod decision {
    pub const ALLOW: &str = "allow";
    pub const DENY: &str = "deny";
    pub const REVIEW: &str = "review";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub decision: Cow<'static, str>,
    /// Id of the matching rule; null when the default decision applied.
    pub rule: Option<Arc<str>>,
    /// Digest of the effective policy.
    pub version: Arc<str>,
}

/// An explicit hole in the trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Records lost in this window.
    pub lost: u64,
    /// `ringbuf_full`, `pending_full`, `decode_error` or `spool_full`.
    pub reason: String,
    /// Losses per action (`process.exec`, `file.open`, `network.connect`, `process.lifecycle`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_action: BTreeMap<String, u64>,
    /// Window in which the losses happened.
    pub from: String,
    pub to: String,
    /// For losses after sequencing (`spool_full`): the sequence numbers that were dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_to: Option<u64>,
}

impl Record {
    /// The agent id this record is attributed to (`unattributed` when none).
    pub fn agent_id(&self) -> &str {
        self.agent
            .as_ref()
            .map_or("unattributed", |a| a.id.as_str())
    }

    pub fn is_gap(&self) -> bool {
        self.action == action::GAP
    }
}
