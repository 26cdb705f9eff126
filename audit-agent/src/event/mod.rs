//! The typed event: what every stage between decoding and the output formats works on.
//!
//! ```text
//! decode (kernel bytes) -> enrich -> Event -> identity, policy (Stage) -> sequence -> sink
//!                                           \-> summaries, telemetry (Observer)
//! ```
//!
//! Nothing here is text for an output: paths are raw bytes, addresses are `IpAddr`s, time is a
//! [`Timestamp`], actions, outcomes, decisions and match kinds are enums. Only `format/` turns an
//! event into the native JSON record, OCSF, or a line for a terminal, and back.

mod kinds;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

pub(crate) use jiff::Timestamp;

pub(crate) use self::kinds::{Action, Decision, GapReason, MatchedBy, Outcome, OutcomeKind};

/// One record of the trail: an action the kernel observed, or a gap.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// When the action was attempted (syscall entry); for a gap, when it was written.
    pub(crate) time: Timestamp,
    pub(crate) host: Arc<Host>,
    /// Stamped by the sequencer (0 before).
    pub(crate) seq: u64,
    /// The writer's stream id: with `seq` the record id `<stream>-<seq>`.
    pub(crate) stream: Arc<str>,
    pub(crate) body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Activity(Box<Activity>),
    Gap(Gap),
}

/// Host facts shared by every event of a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) boot_id: String,
}

/// An action by a watched process: the five facts and the policy context.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Activity {
    pub(crate) action: Action,
    /// The system call that performed it (`openat`, `execve`, ...).
    pub(crate) syscall: &'static str,
    pub(crate) process: Process,
    pub(crate) subject: Subject,
    /// Filled by the identity stage.
    pub(crate) agent: Option<Arc<AgentIdentity>>,
    pub(crate) resource: Resource,
    pub(crate) outcome: Outcome,
    /// Protected sets the resource belongs to (policy stage).
    pub(crate) protected: Vec<Arc<str>>,
    /// Filled by the policy stage.
    pub(crate) verdict: Option<Verdict>,
}

/// The acting process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) ppid: u32,
    /// `comm` bytes.
    pub(crate) comm: Vec<u8>,
    /// Executable of the process image (raw path bytes), when known.
    pub(crate) exe: Option<Arc<[u8]>>,
    pub(crate) exec_id: Option<Arc<str>>,
    pub(crate) parent_exec_id: Option<Arc<str>>,
}

/// Credentials and placement of the acting process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subject {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cgroup_id: u64,
    /// cgroup path relative to the cgroup2 mount, when it could be resolved.
    pub(crate) cgroup: Option<Arc<str>>,
    pub(crate) container_id: Option<String>,
    pub(crate) k8s: Option<Arc<K8sPod>>,
}

/// The pod and container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct K8sPod {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) pod_uid: String,
    pub(crate) container: Option<String>,
    pub(crate) service_account: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// Who acted, as an agent identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentIdentity {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) owner: Option<String>,
    /// `None` for unattributed activity.
    pub(crate) matched_by: Option<MatchedBy>,
}

/// The id of activity no agent matches.
pub(crate) const UNATTRIBUTED: &str = "unattributed";

impl AgentIdentity {
    pub(crate) fn unattributed() -> Self {
        Self {
            id: UNATTRIBUTED.into(),
            name: None,
            workflow: None,
            owner: None,
            matched_by: None,
        }
    }
}

/// What the action was performed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) target: Target,
    pub(crate) detail: Detail,
    /// Values cut to fit.
    pub(crate) truncated: Vec<Field>,
}

/// What policy matches and outputs name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A file (open) or executable (exec).
    File(FileRef),
    /// An IP destination.
    Inet(IpAddr, u16),
    /// A unix socket path (an abstract name starts with a NUL byte).
    Unix(Vec<u8>),
    /// A socket address of another family (`AF_UNSPEC` = 0), or one too short for its family.
    OtherAddress { family: u16 },
}

/// A file named by an action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FileRef {
    /// The path as the process passed it.
    pub(crate) requested: Vec<u8>,
    /// `requested` made absolute against the directory it was relative to, when it was relative
    /// and that directory is known.
    pub(crate) resolved: Option<Vec<u8>>,
}

impl FileRef {
    /// The path policy matches: the absolute form when known, else as passed.
    pub(crate) fn path(&self) -> &[u8] {
        self.resolved.as_deref().unwrap_or(&self.requested)
    }
}

/// Per-action details of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detail {
    Exec {
        argv: Vec<Vec<u8>>,
        /// `execveat` dirfd when not the cwd.
        dirfd: Option<i32>,
        /// `exec_id` of the image a successful exec started.
        new_exec_id: Option<Arc<str>>,
    },
    Open {
        flags: u64,
        mode: u32,
        dirfd: Option<i32>,
    },
    Connect,
}

/// A value of a record that could be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Path,
    Argv,
}

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Argv => "argv",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "path" => Self::Path,
            "argv" => Self::Argv,
            _ => return None,
        })
    }
}

/// The policy verdict on an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) decision: Decision,
    /// The matching rule; `None` when the default decision applied.
    pub(crate) rule: Option<Arc<str>>,
    /// Digest of everything that decided it.
    pub(crate) version: Arc<str>,
}

/// An explicit hole in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// Records lost in the window.
    pub(crate) lost: u64,
    pub(crate) reason: GapReason,
    /// Losses per action name (`process.lifecycle` for fork/exit records).
    pub(crate) by_action: BTreeMap<String, u64>,
    pub(crate) from: Timestamp,
    pub(crate) to: Timestamp,
    /// Sequence numbers that were dropped after sequencing (`spool_full`).
    pub(crate) seqs: Option<(u64, u64)>,
}

impl Event {
    /// The activity, unless this is a gap.
    pub(crate) fn activity(&self) -> Option<&Activity> {
        match &self.body {
            Body::Activity(a) => Some(a),
            Body::Gap(_) => None,
        }
    }

    pub(crate) fn activity_mut(&mut self) -> Option<&mut Activity> {
        match &mut self.body {
            Body::Activity(a) => Some(a),
            Body::Gap(_) => None,
        }
    }

    pub(crate) fn gap(&self) -> Option<&Gap> {
        match &self.body {
            Body::Gap(g) => Some(g),
            Body::Activity(_) => None,
        }
    }

    /// The agent id the event is attributed to (`unattributed` when none; gaps have none).
    pub(crate) fn agent_id(&self) -> &str {
        self.activity()
            .and_then(|a| a.agent.as_deref())
            .map_or(UNATTRIBUTED, |a| a.id.as_str())
    }

    /// The action name (`audit.gap` for gaps).
    pub(crate) fn action_name(&self) -> &'static str {
        match &self.body {
            Body::Activity(a) => a.action.name(),
            Body::Gap(_) => Action::GAP,
        }
    }
}

/// A transform between enrichment and the sink (agent identity, policy verdict, ...).
pub(crate) trait Stage: Send {
    fn apply(&mut self, event: &mut Event);
}

/// Sees every event the sink accepted (summaries, metrics); cannot change it.
pub(crate) trait Observer: Send {
    fn observe(&mut self, event: &Event);

    /// After every batch: how many kernel records it held.
    fn batch(&mut self, _kernel_records: usize) {}

    /// After every loss check: the kernel's cumulative counters.
    fn kernel(&mut self, _counters: &audit_common::counters::Counters) {}
}
