//! The native record (`audit-agent/v1`, documented in `docs/schema.md`): an [`Event`] as one JSON
//! object, and back. Field names are a contract with SIEMs, query engines and `query`: add
//! fields; do not rename or remove them. Fields documented as `string/null` are always present.
//!
//! Kernel bytes (paths, arguments, comm) are written escaped (`escape.rs`) and unescaped when
//! read, so a record read back is the event that was written.

use std::{borrow::Cow, collections::BTreeMap, net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize, Serializer};

use crate::{
    escape::{Escaped, unescape},
    event::{
        Action, Activity, AgentIdentity, Body, Decision, Detail, Event, Field, FileRef, Gap,
        GapReason, Host, K8sPod, MatchedBy, Outcome, OutcomeKind, Process, Resource, Subject,
        Target, Verdict,
    },
    linux, time,
};

pub(crate) const SCHEMA: &str = "audit-agent/v1";

/// Serializes raw bytes as an escaped JSON string without building a `String`.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Escaped(self.0))
    }
}

/// Serializes a timestamp in the wire form.
struct Time(jiff::Timestamp);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:.9}", self.0))
    }
}

#[derive(Serialize)]
struct Out<'a> {
    schema: &'static str,
    id: String,
    seq: u64,
    time: Time,
    host: HostOut<'a>,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    syscall: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<AgentOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<ProcessOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<SubjectOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<ResourceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<ResultOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protected: Option<&'a [Arc<str>]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gap: Option<GapOut<'a>>,
}

#[derive(Serialize)]
struct HostOut<'a> {
    name: &'a str,
    boot_id: &'a str,
}

#[derive(Serialize)]
struct AgentOut<'a> {
    id: &'a str,
    name: Option<&'a str>,
    workflow: Option<&'a str>,
    owner: Option<&'a str>,
    matched_by: Option<&'static str>,
}

#[derive(Serialize)]
struct ProcessOut<'a> {
    pid: u32,
    tid: u32,
    ppid: u32,
    comm: Bytes<'a>,
    exe: Option<Bytes<'a>>,
    exec_id: Option<&'a str>,
    parent_exec_id: Option<&'a str>,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    cgroup: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s: Option<K8sOut<'a>>,
}

#[derive(Serialize)]
struct K8sOut<'a> {
    namespace: &'a str,
    pod: &'a str,
    pod_uid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    service_account: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize, Default)]
struct ResourceOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<Bytes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved_path: Option<Bytes<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv: Option<Vec<Bytes<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<Vec<Cow<'static, str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirfd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    family: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    truncated: Vec<&'static str>,
}

#[derive(Serialize)]
struct ResultOut {
    outcome: &'static str,
    retval: Option<i64>,
    errno: Option<Cow<'static, str>>,
}

#[derive(Serialize)]
struct PolicyOut<'a> {
    decision: &'static str,
    rule: Option<&'a str>,
    version: &'a str,
}

#[derive(Serialize)]
struct GapOut<'a> {
    lost: u64,
    reason: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    by_action: &'a BTreeMap<String, u64>,
    from: Time,
    to: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq_from: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq_to: Option<u64>,
}

/// `resource.family` of an address family number.
pub(crate) fn family_name(family: u16) -> Cow<'static, str> {
    match family {
        0 => "unspec".into(),
        1 => "unix".into(),
        2 => "inet".into(),
        10 => "inet6".into(),
        f => format!("af_{f}").into(),
    }
}

fn family_number(name: &str) -> Option<u16> {
    Some(match name {
        "unspec" => 0,
        "unix" => 1,
        "inet" => 2,
        "inet6" => 10,
        other => other.strip_prefix("af_")?.parse().ok()?,
    })
}

/// `@name` for abstract unix sockets, the path otherwise (escaped).
fn unix_address(path: &[u8]) -> String {
    match path.split_first() {
        Some((0, name)) => format!("@{}", Escaped(name)),
        _ => Escaped(path).to_string(),
    }
}

fn resource_out(r: &Resource) -> ResourceOut<'_> {
    let mut out = ResourceOut {
        truncated: r.truncated.iter().map(|f| f.name()).collect(),
        ..Default::default()
    };
    match &r.target {
        Target::File(f) => {
            out.path = Some(Bytes(&f.requested));
            out.resolved_path = f.resolved.as_deref().map(Bytes);
        }
        Target::Inet(ip, port) => {
            out.family = Some(family_name(if ip.is_ipv4() { 2 } else { 10 }));
            out.address = Some(ip.to_string());
            out.port = Some(*port);
        }
        Target::Unix(p) => {
            out.family = Some(family_name(1));
            out.address = Some(unix_address(p));
        }
        Target::OtherAddress { family } => out.family = Some(family_name(*family)),
    }
    match &r.detail {
        Detail::Exec {
            argv,
            dirfd,
            new_exec_id,
        } => {
            out.argv = Some(argv.iter().map(|a| Bytes(a)).collect());
            out.dirfd = *dirfd;
            out.exec_id = new_exec_id.as_deref();
        }
        Detail::Open { flags, mode, dirfd } => {
            out.flags = Some(linux::open_flag_names(*flags));
            out.mode = linux::open_creates(*flags).then(|| format!("{mode:04o}"));
            out.dirfd = *dirfd;
        }
        Detail::Connect => {}
    }
    out
}

/// Fills the activity fields of a record.
fn activity_out<'a>(a: &'a Activity, out: &mut Out<'a>) {
    let agent = a.agent.as_deref();
    let p = &a.process;
    let s = &a.subject;
    out.agent = Some(AgentOut {
        id: agent.map_or(crate::event::UNATTRIBUTED, |x| x.id.as_str()),
        name: agent.and_then(|x| x.name.as_deref()),
        workflow: agent.and_then(|x| x.workflow.as_deref()),
        owner: agent.and_then(|x| x.owner.as_deref()),
        matched_by: agent.and_then(|x| x.matched_by).map(MatchedBy::name),
    });
    out.process = Some(ProcessOut {
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        comm: Bytes(&p.comm),
        exe: p.exe.as_deref().map(Bytes),
        exec_id: p.exec_id.as_deref(),
        parent_exec_id: p.parent_exec_id.as_deref(),
    });
    out.subject = Some(SubjectOut {
        uid: s.uid,
        gid: s.gid,
        cgroup_id: s.cgroup_id,
        cgroup: s.cgroup.as_deref(),
        container_id: s.container_id.as_deref(),
        k8s: s.k8s.as_deref().map(|k| K8sOut {
            namespace: &k.namespace,
            pod: &k.pod,
            pod_uid: &k.pod_uid,
            container: k.container.as_deref(),
            service_account: &k.service_account,
            labels: &k.labels,
        }),
    });
    out.resource = Some(resource_out(&a.resource));
    out.result = Some(ResultOut {
        outcome: a.outcome.kind().name(),
        retval: a.outcome.retval(),
        errno: a.outcome.errno().map(errno_name),
    });
    out.protected = Some(&a.protected);
    out.policy = a.verdict.as_ref().map(|v| PolicyOut {
        decision: v.decision.name(),
        rule: v.rule.as_deref(),
        version: &v.version,
    });
}

/// An errno's name (`ENOENT`), or `E<n>` for a number without one.
pub(crate) fn errno_name(errno: i32) -> Cow<'static, str> {
    linux::errno_name(errno).map_or_else(|| Cow::Owned(format!("E{errno}")), Cow::Borrowed)
}

/// The record id of an event.
pub(crate) fn record_id(e: &Event) -> String {
    format!("{}-{}", e.stream, e.seq)
}

/// Appends the record of `e` to `buf`, without a newline.
pub(crate) fn write(e: &Event, buf: &mut Vec<u8>) -> serde_json::Result<()> {
    let mut out = Out {
        schema: SCHEMA,
        id: record_id(e),
        seq: e.seq,
        time: Time(e.time),
        host: HostOut {
            name: &e.host.name,
            boot_id: &e.host.boot_id,
        },
        action: e.action_name(),
        syscall: None,
        agent: None,
        process: None,
        subject: None,
        resource: None,
        result: None,
        protected: None,
        policy: None,
        gap: None,
    };
    match &e.body {
        Body::Activity(a) => {
            out.syscall = Some(a.syscall);
            activity_out(a, &mut out);
        }
        Body::Gap(g) => {
            out.gap = Some(GapOut {
                lost: g.lost,
                reason: g.reason.name(),
                by_action: &g.by_action,
                from: Time(g.from),
                to: Time(g.to),
                seq_from: g.seqs.map(|s| s.0),
                seq_to: g.seqs.map(|s| s.1),
            })
        }
    }
    serde_json::to_writer(buf, &out)
}

// ---------------------------------------------------------------------------------------------
// Reading

#[derive(Deserialize)]
struct In<'a> {
    id: String,
    seq: u64,
    time: String,
    host: Host2,
    action: String,
    #[serde(default)]
    syscall: Option<String>,
    #[serde(default)]
    agent: Option<AgentIn>,
    #[serde(default)]
    process: Option<ProcessIn>,
    #[serde(default)]
    subject: Option<SubjectIn>,
    #[serde(borrow, default)]
    resource: Option<ResourceIn<'a>>,
    #[serde(default)]
    result: Option<ResultIn>,
    #[serde(default)]
    protected: Option<Vec<String>>,
    #[serde(default)]
    policy: Option<PolicyIn>,
    #[serde(default)]
    gap: Option<GapIn>,
}

#[derive(Deserialize)]
struct Host2 {
    name: String,
    boot_id: String,
}

#[derive(Deserialize)]
struct AgentIn {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    matched_by: Option<String>,
}

#[derive(Deserialize)]
struct ProcessIn {
    pid: u32,
    tid: u32,
    ppid: u32,
    comm: String,
    #[serde(default)]
    exe: Option<String>,
    #[serde(default)]
    exec_id: Option<String>,
    #[serde(default)]
    parent_exec_id: Option<String>,
}

#[derive(Deserialize)]
struct SubjectIn {
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    #[serde(default)]
    cgroup: Option<String>,
    #[serde(default)]
    container_id: Option<String>,
    #[serde(default)]
    k8s: Option<K8sIn>,
}

#[derive(Deserialize)]
struct K8sIn {
    namespace: String,
    pod: String,
    pod_uid: String,
    #[serde(default)]
    container: Option<String>,
    service_account: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// `resource` of a stored record (borrowed where the JSON allows).
#[derive(Deserialize, Default)]
pub(crate) struct ResourceIn<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resolved_path: Option<Cow<'a, str>>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    dirfd: Option<i32>,
    #[serde(borrow, default)]
    family: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    exec_id: Option<String>,
    #[serde(default)]
    truncated: Vec<String>,
}

#[derive(Deserialize)]
struct ResultIn {
    outcome: String,
    #[serde(default)]
    retval: Option<i64>,
}

#[derive(Deserialize)]
struct PolicyIn {
    decision: String,
    #[serde(default)]
    rule: Option<String>,
    version: String,
}

#[derive(Deserialize)]
struct GapIn {
    lost: u64,
    reason: String,
    #[serde(default)]
    by_action: BTreeMap<String, u64>,
    from: String,
    to: String,
    #[serde(default)]
    seq_from: Option<u64>,
    #[serde(default)]
    seq_to: Option<u64>,
}

/// Why a stored line is not a record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("not a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field `{0}` has an invalid value")]
    Field(&'static str),
}

fn bytes(s: &str) -> Vec<u8> {
    unescape(s).unwrap_or_else(|| s.as_bytes().to_vec())
}

/// The target of a stored record's resource, as the policy matches it.
pub(crate) fn target(action: Action, r: &ResourceIn<'_>) -> Result<Target, ReadError> {
    if action != Action::Connect {
        return Ok(Target::File(FileRef {
            requested: bytes(r.path.as_deref().unwrap_or_default()),
            resolved: r.resolved_path.as_deref().map(bytes),
        }));
    }
    let family = r
        .family
        .as_deref()
        .and_then(family_number)
        .ok_or(ReadError::Field("resource.family"))?;
    Ok(match (family, r.address.as_deref()) {
        (2 | 10, Some(a)) => Target::Inet(
            a.parse::<IpAddr>()
                .map_err(|_| ReadError::Field("resource.address"))?,
            r.port.unwrap_or(0),
        ),
        (1, Some(a)) => Target::Unix(match a.strip_prefix('@') {
            Some(name) => [&[0u8][..], &bytes(name)].concat(),
            None => bytes(a),
        }),
        (family, _) => Target::OtherAddress { family },
    })
}

fn detail_in(action: Action, r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(match action {
        Action::Exec => Detail::Exec {
            argv: r.argv.iter().flatten().map(|a| bytes(a)).collect(),
            dirfd: r.dirfd,
            new_exec_id: r.exec_id.as_deref().map(Arc::from),
        },
        Action::Open => Detail::Open {
            flags: linux::open_flags_from_names(r.flags.as_deref().unwrap_or_default())
                .ok_or(ReadError::Field("resource.flags"))?,
            mode: match &r.mode {
                Some(m) => {
                    u32::from_str_radix(m, 8).map_err(|_| ReadError::Field("resource.mode"))?
                }
                None => 0,
            },
            dirfd: r.dirfd,
        },
        Action::Connect => Detail::Connect,
    })
}

fn activity_in(i: In<'_>, action: Action) -> Result<Activity, ReadError> {
    let r = i.resource.unwrap_or_default();
    let result = i.result.ok_or(ReadError::Field("result"))?;
    let p = i.process.ok_or(ReadError::Field("process"))?;
    let s = i.subject.ok_or(ReadError::Field("subject"))?;
    Ok(Activity {
        action,
        syscall: linux::syscall_name(i.syscall.as_deref().unwrap_or_default()),
        process: Process {
            pid: p.pid,
            tid: p.tid,
            ppid: p.ppid,
            comm: bytes(&p.comm),
            exe: p.exe.as_deref().map(|e| Arc::from(bytes(e))),
            exec_id: p.exec_id.map(Arc::from),
            parent_exec_id: p.parent_exec_id.map(Arc::from),
        },
        subject: Subject {
            uid: s.uid,
            gid: s.gid,
            cgroup_id: s.cgroup_id,
            cgroup: s.cgroup.map(Arc::from),
            container_id: s.container_id,
            k8s: s.k8s.map(|k| {
                Arc::new(K8sPod {
                    namespace: k.namespace,
                    pod: k.pod,
                    pod_uid: k.pod_uid,
                    container: k.container,
                    service_account: k.service_account,
                    labels: k.labels,
                })
            }),
        },
        agent: i.agent.map(|a| {
            Arc::new(AgentIdentity {
                matched_by: a.matched_by.as_deref().and_then(MatchedBy::parse),
                id: a.id,
                name: a.name,
                workflow: a.workflow,
                owner: a.owner,
            })
        }),
        resource: Resource {
            target: target(action, &r)?,
            detail: detail_in(action, &r)?,
            truncated: r.truncated.iter().filter_map(|t| Field::parse(t)).collect(),
        },
        outcome: Outcome::from_parts(
            OutcomeKind::parse(&result.outcome).ok_or(ReadError::Field("result.outcome"))?,
            result.retval,
        ),
        protected: i
            .protected
            .unwrap_or_default()
            .into_iter()
            .map(Arc::from)
            .collect(),
        verdict: i
            .policy
            .map(|v| {
                Ok::<_, ReadError>(Verdict {
                    decision: Decision::parse(&v.decision)
                        .ok_or(ReadError::Field("policy.decision"))?,
                    rule: v.rule.map(Arc::from),
                    version: Arc::from(v.version),
                })
            })
            .transpose()?,
    })
}

fn gap_in(g: GapIn) -> Result<Gap, ReadError> {
    Ok(Gap {
        lost: g.lost,
        reason: GapReason::parse(&g.reason).ok_or(ReadError::Field("gap.reason"))?,
        by_action: g.by_action,
        from: time::parse(&g.from).ok_or(ReadError::Field("gap.from"))?,
        to: time::parse(&g.to).ok_or(ReadError::Field("gap.to"))?,
        seqs: g.seq_from.zip(g.seq_to),
    })
}

/// Parses one stored record back into the event that was written.
pub(crate) fn read(line: &[u8]) -> Result<Event, ReadError> {
    let mut i: In<'_> = serde_json::from_slice(line)?;
    let time = time::parse(&i.time).ok_or(ReadError::Field("time"))?;
    let stream =
        i.id.rsplit_once('-')
            .map_or_else(String::new, |(s, _)| s.to_string());
    let host = Arc::new(Host {
        name: std::mem::take(&mut i.host.name),
        boot_id: std::mem::take(&mut i.host.boot_id),
    });
    let seq = i.seq;
    let body = if i.action == Action::GAP {
        Body::Gap(gap_in(i.gap.take().ok_or(ReadError::Field("gap"))?)?)
    } else {
        let action = Action::parse(&i.action).ok_or(ReadError::Field("action"))?;
        Body::Activity(Box::new(activity_in(i, action)?))
    };
    Ok(Event {
        time,
        host,
        seq,
        stream: Arc::from(stream),
        body,
    })
}

#[cfg(test)]
mod tests;
