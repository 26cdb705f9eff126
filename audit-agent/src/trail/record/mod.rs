//! The native record (`audit-agent/v1`, documented in `docs/schema.md`): an [`Event`] as one JSON
//! object, and back. Field names are a contract with SIEMs, query engines and `query`: add
//! fields; do not rename or remove them. Fields documented as `string/null` are always present.
//!
//! Kernel bytes (paths, arguments, comm) are written escaped (`escape.rs`) and unescaped when
//! read, so a record read back is the event that was written.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize, Serializer};

use crate::{
    escape::{Escaped, unescape},
    event::{
        Action, Activity, AgentIdentity, Body, Decision, Detail, Event, Gap, GapReason, Host,
        K8sPod, MatchedBy, Outcome, OutcomeKind, Process, Subject, Verdict,
    },
    linux, time,
};

mod json;
mod network;
mod resource;

use self::json::{Members, Object, Tree};

use self::resource::{CompletionIn, ResourceOut, completion_in, completion_out, resource_out};
pub(crate) use self::resource::{ResourceIn, resource_in};

pub(crate) const SCHEMA: &str = "audit-agent/v1";

/// Serializes raw bytes as an escaped JSON string without building a `String`.
pub(super) struct Bytes<'a>(pub(super) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Most kernel bytes need no escaping of ours: then one pass of serde_json's own.
        let clean = !self.0.iter().any(|&b| b < 0x20 || b == b'\\' || b == 0x7f);
        match std::str::from_utf8(self.0) {
            Ok(text) if clean => s.serialize_str(text),
            _ => s.collect_str(&Escaped(self.0)),
        }
    }
}

/// Serializes a timestamp in the wire form.
struct Time(jiff::Timestamp);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(time::wire_form(self.0).as_str())
    }
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    by_process: Vec<ProcessLoss>,
}

/// `gap.by_process[]`: a process and the records it lost in the window.
#[derive(Serialize, Deserialize)]
struct ProcessLoss {
    pid: u32,
    lost: u64,
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

pub(super) fn family_number(name: &str) -> Option<u16> {
    Some(match name {
        "unspec" => 0,
        "unix" => 1,
        "inet" => 2,
        "inet6" => 10,
        other => other.strip_prefix("af_")?.parse().ok()?,
    })
}

/// The `agent`, `process` and `subject` members, copied from `cache` when it holds them.
fn actor_cached(
    a: &Activity,
    out: &mut Object<'_>,
    cache: &mut ActorCache,
) -> serde_json::Result<()> {
    if let Some(members) = cache.holds(a) {
        out.copied(members);
        return Ok(());
    }
    let from = out.written();
    actor_out(a, out)?;
    cache.keep(a, out.since(from));
    Ok(())
}

/// The `agent`, `process` and `subject` members.
fn actor_out(a: &Activity, out: &mut impl Members) -> serde_json::Result<()> {
    agent_out(a.agent.as_deref(), out);
    process_out(&a.process, out);
    subject_out(&a.subject, out)
}

fn agent_out(agent: Option<&AgentIdentity>, out: &mut impl Members) {
    let mut o = out.object("agent");
    o.str(
        "id",
        agent.map_or(crate::event::UNATTRIBUTED, |x| x.id.as_str()),
    );
    o.opt_str("name", agent.and_then(|x| x.name.as_deref()));
    o.opt_str("workflow", agent.and_then(|x| x.workflow.as_deref()));
    o.opt_str("owner", agent.and_then(|x| x.owner.as_deref()));
    let matched_by = agent.and_then(|x| x.matched_by).map(MatchedBy::name);
    o.opt_str("matched_by", matched_by);
    o.close();
}

fn process_out(p: &Process, out: &mut impl Members) {
    let mut o = out.object("process");
    o.u64("pid", p.pid.into());
    o.u64("tid", p.tid.into());
    o.u64("ppid", p.ppid.into());
    o.bytes("comm", &p.comm);
    o.opt_bytes("exe", p.exe.as_deref());
    if p.exe_replaced {
        o.bool("exe_replaced", true);
        if let Some(now) = p.exe_reported.as_deref() {
            o.bytes("exe_reported", now);
        }
    }
    o.opt_str("exec_id", p.exec_id.as_deref());
    o.opt_str("parent_exec_id", p.parent_exec_id.as_deref());
    o.close();
}

fn subject_out(s: &Subject, out: &mut impl Members) -> serde_json::Result<()> {
    let mut o = out.object("subject");
    o.u64("uid", s.uid.into());
    o.u64("gid", s.gid.into());
    o.u64("cgroup_id", s.cgroup_id);
    o.opt_str("cgroup", s.cgroup.as_deref());
    if let Some(id) = &s.container_id {
        o.str("container_id", id);
    }
    if let Some(k) = s.k8s.as_deref() {
        o.serde(
            "k8s",
            &K8sOut {
                namespace: &k.namespace,
                pod: &k.pod,
                pod_uid: &k.pod_uid,
                container: k.container.as_deref(),
                service_account: &k.service_account,
                labels: &k.labels,
            },
        )?;
    }
    o.close();
    Ok(())
}

/// The members after the actor's: resource, result, protected sets, verdict.
fn activity_out(a: &Activity, out: &mut impl Members) -> serde_json::Result<()> {
    let mut o = out.object("resource");
    let mut resource = ResourceOut::default();
    resource_out(&a.resource, &mut resource);
    resource.write(&mut o)?;
    o.close();
    let mut o = out.object("result");
    o.str("outcome", a.outcome.kind().name());
    if a.action != Action::Exit {
        o.opt_i64("retval", a.outcome.retval());
    }
    // A DNS record's failure is a response code (`resource.dns.response.rcode`), an HTTP
    // record's a status (`resource.http.response.status`), an exit record's its exit status
    // (`resource.exit_code` or `resource.signal`): none is an errno.
    let errno = a.outcome.errno().filter(|_| {
        !matches!(
            a.action,
            Action::Dns | Action::Http | Action::Claim | Action::Exit
        )
    });
    o.opt_str("errno", errno.map(errno_name).as_deref());
    if let Some(c) = completion_out(&a.resource.detail) {
        o.serde("completion", &c)?;
    }
    o.close();

    out.strings("protected", &a.protected);
    if !a.protected_by_inode.is_empty() {
        out.strings("protected_by_inode", &a.protected_by_inode);
    }
    if let Some(v) = &a.verdict {
        let mut o = out.object("policy");
        o.str("decision", v.decision.name());
        o.opt_str("rule", v.rule.as_deref());
        o.str("version", &v.version);
        if v.by_inode {
            o.bool("via_inode", true);
        }
        o.close();
    }
    Ok(())
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
    write_with(e, buf, &mut ActorCache::default())
}

/// The `agent`, `process` and `subject` members of the last activity written by each thread,
/// and what they were written from. Records of one thread share them (about a third of a
/// record's bytes), so they are written once and copied while their sources compare equal —
/// also when many agents' threads take turns.
#[derive(Default)]
pub(crate) struct ActorCache {
    by_tid: crate::FastMap<u32, CachedActor>,
    /// Its size, for a long-lived cache (the spool's).
    stat: Option<crate::telemetry::tables::TableStat>,
}

struct CachedActor {
    of: (Option<Arc<AgentIdentity>>, Process, Subject),
    members: Vec<u8>,
}

/// Threads whose actor members are kept; beyond, they are forgotten all at once.
const ACTOR_THREADS: usize = 4096;

impl ActorCache {
    /// A cache whose size is reported (`audit_table_entries{table="serialized_actors"}`).
    pub(crate) fn measured() -> Self {
        Self {
            stat: Some(crate::telemetry::tables::TableStat::named(
                "serialized_actors",
            )),
            ..Self::default()
        }
    }

    fn holds(&self, a: &Activity) -> Option<&[u8]> {
        let c = self.by_tid.get(&a.process.tid)?;
        let (agent, p, s) = &c.of;
        (*agent == a.agent && *p == a.process && *s == a.subject).then_some(&c.members[..])
    }

    fn keep(&mut self, a: &Activity, members: &[u8]) {
        if self.by_tid.len() >= ACTOR_THREADS && !self.by_tid.contains_key(&a.process.tid) {
            if let Some(s) = &self.stat {
                s.evicted(self.by_tid.len());
            }
            self.by_tid = crate::FastMap::default();
        }
        let of = (a.agent.clone(), a.process.clone(), a.subject.clone());
        match self.by_tid.entry(a.process.tid) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let c = e.get_mut();
                c.of = of;
                c.members.clear();
                c.members.extend_from_slice(members);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(CachedActor {
                    of,
                    members: members.to_vec(),
                });
                if let Some(s) = &self.stat {
                    s.set_entries(self.by_tid.len());
                }
            }
        }
    }
}

/// [`write`], with the actor members copied from `cache` when they are the last ones written.
/// Never inlined: the benchmark's profile finds the serializer's share by this symbol.
#[inline(never)]
pub(crate) fn write_with(
    e: &Event,
    buf: &mut Vec<u8>,
    cache: &mut ActorCache,
) -> serde_json::Result<()> {
    let mut out = Object::open(buf);
    record_out(e, &mut out, |a, out| actor_cached(a, out, cache))?;
    out.close();
    Ok(())
}

/// The record of `e` as a JSON value (what OCSF `unmapped` and ECS `audit_agent.*` copy from),
/// built by the members [`write`] writes, not by reading what it wrote.
pub(crate) fn to_value(e: &Event) -> serde_json::Value {
    let mut members = serde_json::Map::new();
    match record_out(e, &mut Tree(&mut members), actor_out) {
        Ok(()) => serde_json::Value::Object(members),
        Err(_) => serde_json::Value::Null,
    }
}

/// A record's members, in order, into `out`; `actor` writes the agent, process and subject.
fn record_out<O: Members>(
    e: &Event,
    out: &mut O,
    actor: impl FnOnce(&Activity, &mut O) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    out.str("schema", SCHEMA);
    out.joined("id", &[&e.stream, "-", itoa::Buffer::new().format(e.seq)]);
    out.u64("seq", e.seq);
    out.str("time", time::wire_form(e.time).as_str());
    let mut host = out.object("host");
    host.str("name", &e.host.name);
    host.str("boot_id", &e.host.boot_id);
    host.close();
    out.str("action", e.action_name());
    match &e.body {
        Body::Activity(a) => {
            out.str("syscall", a.syscall);
            actor(a, out)?;
            activity_out(a, out)?;
        }
        Body::Gap(g) => out.serde("gap", &gap_out(g))?,
    }
    Ok(())
}

fn gap_out(g: &Gap) -> GapOut<'_> {
    GapOut {
        lost: g.lost,
        reason: g.reason.name(),
        by_action: &g.by_action,
        from: Time(g.from),
        to: Time(g.to),
        seq_from: g.seqs.map(|s| s.0),
        seq_to: g.seqs.map(|s| s.1),
        by_process: g
            .by_process
            .iter()
            .map(|&(pid, lost)| ProcessLoss { pid, lost })
            .collect(),
    }
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
    protected_by_inode: Vec<String>,
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
    exe_replaced: bool,
    #[serde(default)]
    exe_reported: Option<String>,
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

#[derive(Deserialize)]
struct ResultIn {
    outcome: String,
    #[serde(default)]
    retval: Option<i64>,
    #[serde(default)]
    completion: Option<CompletionIn>,
}

#[derive(Deserialize)]
struct PolicyIn {
    decision: String,
    #[serde(default)]
    rule: Option<String>,
    version: String,
    #[serde(default)]
    via_inode: bool,
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
    #[serde(default)]
    by_process: Vec<ProcessLoss>,
}

/// Where a stored record stands in its stream, read without the rest of it: its seq, its time as
/// written and, for a gap, the seqs it explains. What the spool, the sealer and verify need of
/// every line (a whole record is [`read`]).
#[derive(Deserialize)]
pub(crate) struct Position<'a> {
    pub(crate) seq: u64,
    #[serde(borrow, default)]
    pub(crate) time: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) gap: Option<GapSeqs>,
}

/// The seq range a gap record explains (absent in gaps before versions that counted them).
#[derive(Deserialize)]
pub(crate) struct GapSeqs {
    #[serde(default)]
    pub(crate) seq_from: Option<u64>,
    #[serde(default)]
    pub(crate) seq_to: Option<u64>,
}

impl Position<'_> {
    /// The position of a stored line; `None` when it is not a record.
    pub(crate) fn of(line: &[u8]) -> Option<Position<'_>> {
        serde_json::from_slice(line).ok()
    }

    /// The seqs a gap record explains.
    pub(crate) fn explained(&self) -> Option<(u64, u64)> {
        let g = self.gap.as_ref()?;
        g.seq_from.zip(g.seq_to)
    }
}

/// Why a stored line is not a record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("not a record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field `{0}` has an invalid value")]
    Field(&'static str),
}

pub(super) fn bytes(s: &str) -> Vec<u8> {
    unescape(s).unwrap_or_else(|| s.as_bytes().to_vec())
}

fn process_in(p: ProcessIn) -> Process {
    Process {
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        comm: bytes(&p.comm),
        exe: p.exe.as_deref().map(|e| Arc::from(bytes(e))),
        exe_replaced: p.exe_replaced,
        exe_reported: p.exe_reported.as_deref().map(|e| Arc::from(bytes(e))),
        exec_id: p.exec_id.map(Arc::from),
        ancestors: p
            .parent_exec_id
            .iter()
            .map(|e| Arc::from(e.as_str()))
            .collect(),
        parent_exec_id: p.parent_exec_id.map(Arc::from),
    }
}

fn subject_in(s: SubjectIn) -> Subject {
    Subject {
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
    }
}

fn agent_in(a: AgentIn) -> Arc<AgentIdentity> {
    Arc::new(AgentIdentity {
        matched_by: a.matched_by.as_deref().and_then(MatchedBy::parse),
        id: a.id,
        name: a.name,
        workflow: a.workflow,
        owner: a.owner,
    })
}

fn verdict_in(v: PolicyIn) -> Result<Verdict, ReadError> {
    Ok(Verdict {
        decision: Decision::parse(&v.decision).ok_or(ReadError::Field("policy.decision"))?,
        rule: v.rule.map(Arc::from),
        version: Arc::from(v.version),
        by_inode: v.via_inode,
    })
}

fn activity_in(i: In<'_>, action: Action) -> Result<Activity, ReadError> {
    let r = i.resource.unwrap_or_default();
    let result = i.result.ok_or(ReadError::Field("result"))?;
    let mut resource = resource_in(action, &r)?;
    if let (Detail::Connect { completion, .. }, Some(c)) =
        (&mut resource.detail, &result.completion)
    {
        *completion = Some(completion_in(c));
    }
    let names = |v: Vec<String>| v.into_iter().map(Arc::from).collect();
    let outcome = match &resource.detail {
        // An exit's outcome is its status (no return value is written).
        Detail::Exit(status) => crate::event::ExitStatus::outcome(*status),
        _ => Outcome::from_parts(
            OutcomeKind::parse(&result.outcome).ok_or(ReadError::Field("result.outcome"))?,
            result.retval,
        ),
    };
    Ok(Activity {
        action,
        syscall: linux::syscall_name(i.syscall.as_deref().unwrap_or_default()),
        process: process_in(i.process.ok_or(ReadError::Field("process"))?),
        subject: subject_in(i.subject.ok_or(ReadError::Field("subject"))?),
        agent: i.agent.map(agent_in),
        resource,
        outcome,
        protected: names(i.protected.unwrap_or_default()),
        protected_by_inode: names(i.protected_by_inode),
        verdict: i.policy.map(verdict_in).transpose()?,
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
        by_process: g.by_process.iter().map(|p| (p.pid, p.lost)).collect(),
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
