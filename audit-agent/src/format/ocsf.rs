//! OCSF 1.3.0 output for SIEMs: Process Activity (1007, Launch), File System Activity (1001,
//! Open), Network Activity (4001, Open), with the `host` and `security_control` profiles (and
//! `container` for containerised processes: the profile puts `container` on the process,
//! `actor.process.container`). Gaps are Base Events (0), which take no profile. The mapping
//! table is in `docs/schema.md`; `tests/validators/ocsf.py` checks every event against the
//! official schema.
//!
//! Note on `security_control`: audit-agent observes, it does not block. `action_id` and
//! `disposition_id` carry the policy verdict; what the kernel did is in `status_id`.

use serde_json::{Map, Value, json};

use super::{failure_text, resource_text, strip_nulls};
use crate::trail::record;
use crate::{
    escape::Escaped,
    event::{Action, Activity, Decision, Detail, Event, Gap, Outcome, Target},
    time,
};

pub(crate) const OCSF_VERSION: &str = "1.3.0";

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// (severity_id, severity, action_id, action, disposition_id, disposition) of a verdict.
fn verdict_ids(d: Decision) -> (u8, &'static str, u8, &'static str, u8, &'static str) {
    match d {
        Decision::Deny => (4, "High", 2, "Denied", 2, "Blocked"),
        Decision::Review => (3, "Medium", 1, "Allowed", 15, "Detected"),
        Decision::Allow => (1, "Informational", 1, "Allowed", 1, "Allowed"),
    }
}

fn metadata(e: &Event) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "audit-agent",
            "vendor_name": "audit-agent",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "profiles": ["host", "security_control"],
        "uid": record::record_id(e),
        "log_name": record::SCHEMA,
        "original_time": time::rfc3339(e.time),
    })
}

fn epoch_ms(e: &Event) -> i64 {
    e.time.as_millisecond()
}

/// Lost records fit no activity class: a Base Event (class 0) carrying the gap. A Base Event has
/// no `device` and takes neither the `host` nor the `security_control` profile: the host is in
/// `unmapped`.
fn gap_event(e: &Event, g: &Gap) -> Value {
    let (from, to) = (time::rfc3339(g.from), time::rfc3339(g.to));
    let native_gap = record::to_value(e);
    let mut metadata = metadata(e);
    metadata["profiles"] = json!([]);
    json!({
        "class_uid": 0, "class_name": "Base Event",
        "category_uid": 0, "category_name": "Uncategorized",
        "activity_id": 99, "activity_name": "Other", "type_uid": 99, "type_name": "Base Event: Other",
        "severity_id": 4, "severity": "High",
        "status_id": 2, "status": "Failure", "status_detail": g.reason.name(),
        "time": epoch_ms(e),
        "message": format!("audit-agent lost {} record(s) ({}) between {from} and {to}", g.lost, g.reason),
        "metadata": metadata,
        "unmapped": { "gap": native_gap["gap"], "seq": e.seq, "host": native_gap["host"] },
    })
}

fn device(e: &Event) -> Value {
    json!({ "hostname": e.host.name, "type_id": 0, "type": "Unknown" })
}

fn actor_process(a: &Activity) -> Value {
    let p = &a.process;
    let mut v = json!({
        "pid": p.pid,
        "tid": p.tid,
        "name": Escaped(&p.comm).to_string(),
        "uid": p.exec_id,
        "parent_process": { "pid": p.ppid, "uid": p.parent_exec_id },
        "user": { "uid": a.subject.uid.to_string(), "type_id": 0, "type": "Unknown" },
    });
    if let Some(exe) = p.exe.as_deref() {
        let exe = Escaped(exe).to_string();
        v["file"] =
            json!({ "path": exe, "name": basename(&exe), "type_id": 1, "type": "Regular File" });
    }
    v
}

fn actor(e: &Event, a: &Activity) -> Value {
    let id = e.agent_id();
    let rule = a.verdict.as_ref().and_then(|v| v.rule.as_deref());
    json!({
        "user": {
            "uid": id,
            "name": a.agent.as_ref().and_then(|x| x.name.clone()).unwrap_or_else(|| id.to_string()),
            "type_id": 99,
            "type": "AI Agent",
        },
        "process": actor_process(a),
        "authorizations": [{
            "decision": a.verdict.as_ref().map_or(Decision::Allow, |v| v.decision).name(),
            "policy": {
                "uid": rule.unwrap_or("default"),
                "name": rule.unwrap_or("default_decision"),
                "version": a.verdict.as_ref().map(|v| v.version.to_string()),
            },
        }],
    })
}

/// The `container` profile's object, when the process runs in a container.
fn container(a: &Activity) -> Option<Value> {
    let s = &a.subject;
    let k8s = s.k8s.as_deref();
    let name = k8s.and_then(|k| k.container.as_ref());
    if s.container_id.is_none() && name.is_none() {
        return None;
    }
    let mut c = Map::new();
    if let Some(uid) = &s.container_id {
        c.insert("uid".into(), json!(uid));
    }
    if let Some(name) = name {
        c.insert("name".into(), json!(name));
    }
    if let Some(k8s) = k8s {
        c.insert("orchestrator".into(), json!("Kubernetes"));
        c.insert("pod_uuid".into(), json!(k8s.pod_uid));
    }
    Some(Value::Object(c))
}

/// An OCSF class and its category: (class_uid, class_name, category_uid, category_name).
type Class = (u32, &'static str, u32, &'static str);
const PROCESS: Class = (1007, "Process Activity", 1, "System Activity");
const FILE_SYSTEM: Class = (1001, "File System Activity", 1, "System Activity");
const MODULE: Class = (1005, "Module Activity", 1, "System Activity");
const NETWORK: Class = (4001, "Network Activity", 4, "Network Activity");
const HTTP: Class = (4002, "HTTP Activity", 4, "Network Activity");
const DNS: Class = (4003, "DNS Activity", 4, "Network Activity");
const BASE: Class = (0, "Base Event", 0, "Uncategorized");

/// The class, activity id and name, and message verb of an action: one table row per action,
/// the mapping docs/schema.md documents.
fn activity_of(action: Action) -> (Class, u32, &'static str, &'static str) {
    match action {
        Action::Exec => (PROCESS, 1, "Launch", "executed"),
        Action::Exit => (PROCESS, 2, "Terminate", "ended:"),
        Action::Open => (FILE_SYSTEM, 14, "Open", "opened"),
        Action::Connect => (NETWORK, 1, "Open", "connected to"),
        Action::Send => (NETWORK, 6, "Traffic", "sent to"),
        Action::UringSetup => (PROCESS, 99, "Other", "created an io_uring instance,"),
        Action::Access => (PROCESS, 3, "Open", "reached into"),
        Action::Signal => (PROCESS, 99, "Other", "signalled the audit agent,"),
        Action::CgroupMove => (PROCESS, 99, "Other", "moved a process to cgroup"),
        Action::CompatSyscall => (PROCESS, 99, "Other", "made a 32-bit system call on"),
        // The activity of DNS and HTTP records depends on the record (`network_activity`).
        Action::Dns => (DNS, 6, "Traffic", "looked up"),
        Action::Http => (HTTP, 99, "Other", "sent an HTTP request to"),
        Action::Tls => (NETWORK, 6, "Traffic", "sent a TLS hello to"),
        Action::MapExec => (MODULE, 1, "Load", "mapped for execution"),
        // Mapped as a Base Event (`claim_event`); this row is never used.
        Action::Claim => (BASE, 99, "Other", "claimed"),
        Action::SetExe => (PROCESS, 99, "Other", "made its executable claim to be"),
        Action::Held => (FILE_SYSTEM, 14, "Open", "held open"),
        Action::Receive => (FILE_SYSTEM, 14, "Open", "received"),
        Action::Copy => (FILE_SYSTEM, 2, "Read", "copied"),
        change => {
            let (id, name, verb) = file_activity(change);
            (FILE_SYSTEM, id, name, verb)
        }
    }
}

/// File System Activity `activity_id`, its name, and a verb for the message, of a file change.
fn file_activity(a: Action) -> (u32, &'static str, &'static str) {
    match a {
        Action::Delete => (4, "Delete", "deleted"),
        Action::Rmdir => (4, "Delete", "removed the directory"),
        Action::Rename => (5, "Rename", "renamed"),
        Action::Truncate => (3, "Update", "truncated"),
        Action::Chmod => (7, "Set Security", "changed the mode of"),
        Action::Chown => (7, "Set Security", "changed the owner of"),
        Action::Link => (1, "Create", "hard-linked"),
        Action::Symlink => (1, "Create", "created the symlink"),
        Action::Mkdir => (1, "Create", "created the directory"),
        Action::Exec
        | Action::Open
        | Action::Connect
        | Action::Send
        | Action::CgroupMove
        | Action::Signal
        | Action::Exit
        | Action::Access
        | Action::UringSetup
        | Action::CompatSyscall
        | Action::Dns
        | Action::Tls
        | Action::Http
        | Action::Claim
        | Action::SetExe
        | Action::Held
        | Action::Receive
        | Action::Copy
        | Action::MapExec => (99, "Other", "changed"),
    }
}

fn status(o: Outcome) -> (u32, &'static str) {
    match o {
        Outcome::Success(_) => (1, "Success"),
        Outcome::Failure(_) => (2, "Failure"),
        Outcome::InProgress => (99, "In Progress"),
        Outcome::Unknown => (0, "Unknown"),
    }
}

/// The class-specific object: the launched process, the file, or the endpoints.
fn class_object(e: &Event, a: &Activity, ev: &mut Map<String, Value>) {
    let target = resource_text(a);
    match (&a.resource.target, &a.resource.detail) {
        (
            _,
            Detail::Exec {
                argv, new_exec_id, ..
            },
        ) => {
            let argv = argv.as_deref().unwrap_or_default();
            let launched = launched_process(a, argv, new_exec_id.as_deref(), &target, ev);
            ev.insert("process".into(), launched);
        }
        (_, Detail::Open { .. } | Detail::Fd { .. }) => {
            ev.insert("file".into(), file_object(&target));
        }
        (_, Detail::Copy(c)) => {
            ev.insert("file".into(), file_object(&target));
            if let Some(to) = &c.to {
                let to = Escaped(&to.path).to_string();
                ev.insert("file_result".into(), file_object(&to));
            }
        }
        // The process acted on is the actor itself (`process` below); its executable stays the
        // file its exec loaded, what it claims is the resource.
        (_, Detail::SetExe(_)) => {}
        (_, Detail::Move { pid }) => {
            ev.insert("process".into(), json!({ "pid": pid }));
        }
        (_, Detail::Exit(status)) => {
            // The process that ended is the actor's own.
            ev.insert("process".into(), ev["actor"]["process"].clone());
            if let Some(status) = status {
                ev.insert("exit_code".into(), json!(status.shell_code()));
            }
        }
        (_, Detail::MapExec(m)) => {
            // A memory-mapped file (`load_type_id` 4, Mapped) at the kernel's mapping.
            ev.insert(
                "module".into(),
                json!({
                    "file": { "path": target, "name": basename(&target), "type_id": 1, "type": "Regular File" },
                    "base_address": format!("{:#x}", m.start),
                    "load_type_id": 4,
                    "load_type": "Mapped",
                }),
            );
        }
        (_, Detail::Ring { .. } | Detail::Compat | Detail::Claim(_)) => {}
        (t, Detail::Access(_)) => {
            if let Target::Process { pid } = t {
                ev.insert("process".into(), json!({ "pid": pid }));
            }
        }
        (t, Detail::Signal { .. }) => {
            if let Target::Process { pid } = t {
                ev.insert(
                    "process".into(),
                    json!({ "pid": pid, "name": "audit-agent" }),
                );
            }
        }
        (_, Detail::Change(c)) => {
            ev.insert("file".into(), file_object(&target));
            if let Some(p) = c.to.as_ref().and_then(|t| t.path()) {
                let new = Escaped(p).to_string();
                ev.insert("file_result".into(), file_object(&new));
            }
        }
        (_, Detail::Dns(d)) => {
            network_endpoints(e, a, ev);
            dns_object(d, ev);
        }
        (_, Detail::Tls(h)) => {
            network_endpoints(e, a, ev);
            let mut tls = json!({ "version": h.versions.iter().max().map(|v| crate::wire::tls::version_name(*v)) });
            if let Some(sni) = &h.sni {
                tls["sni"] = json!(sni);
            }
            ev.insert("tls".into(), tls);
        }
        (t, Detail::Http(x)) => {
            network_endpoints(e, a, ev);
            match x.response.as_ref().filter(|r| r.status > 0) {
                Some(r) => {
                    http_object(t, &x.request, ev);
                    ev.insert("http_response".into(), json!({ "code": r.status }));
                }
                // HTTP Activity requires the response: without one seen, the request is
                // Network Activity traffic (its fields in `unmapped`).
                None => set_class(ev, (4001, "Network Activity"), (6, "Traffic")),
            }
        }
        (t, Detail::Connect { .. }) => connect_objects(e, a, t, target, ev),
    }
}

/// A file acted on whose type the record does not say.
fn file_object(path: &str) -> Value {
    json!({ "path": path, "name": basename(path), "type_id": 0, "type": "Unknown" })
}

/// The process an exec launched: the actor's process is its parent.
fn launched_process(
    a: &Activity,
    argv: &[Vec<u8>],
    new_exec_id: Option<&str>,
    target: &str,
    ev: &Map<String, Value>,
) -> Value {
    let args: Vec<String> = argv.iter().map(|x| Escaped(x).to_string()).collect();
    let mut launched = json!({
        "pid": a.process.pid,
        "name": basename(target),
        "file": { "path": target, "name": basename(target), "type_id": 1, "type": "Regular File" },
        "cmd_line": args.join(" "),
        "parent_process": ev["actor"]["process"].clone(),
    });
    if let Some(id) = new_exec_id {
        launched["uid"] = json!(id);
    }
    if let Some(c) = ev["actor"]["process"].get("container") {
        launched["container"] = c.clone();
    }
    launched
}

/// Where a connect went (and the host asked for), from where, outbound.
fn connect_objects(
    e: &Event,
    a: &Activity,
    t: &Target,
    target: String,
    ev: &mut Map<String, Value>,
) {
    let mut dst = match t {
        Target::Inet(ip, port) => json!({ "ip": ip.to_string(), "port": port }),
        _ => json!({ "name": target }),
    };
    if let Some(h) = first_host(a) {
        dst["hostname"] = json!(h);
    }
    // The IP version only for IP destinations: a unix or other socket has none.
    let version = match t {
        Target::Inet(ip, _) if ip.is_ipv6() => json!(6),
        Target::Inet(..) => json!(4),
        _ => Value::Null,
    };
    ev.insert("dst_endpoint".into(), dst);
    ev.insert("src_endpoint".into(), json!({ "hostname": e.host.name }));
    ev.insert(
        "connection_info".into(),
        json!({ "direction_id": 2, "direction": "Outbound", "protocol_ver_id": version }),
    );
}

/// The destination's first name (`resource.host`).
fn first_host(a: &Activity) -> Option<&str> {
    a.resource
        .destination
        .as_deref()
        .and_then(|d| d.hosts.first())
        .map(|h| &*h.name)
}

/// `dst_endpoint` (the peer of a DNS, TLS or HTTP record, with its name), `src_endpoint`,
/// `connection_info`.
fn network_endpoints(e: &Event, a: &Activity, ev: &mut Map<String, Value>) {
    if let Target::Inet(ip, port) = &a.resource.target {
        let mut dst = json!({ "ip": ip.to_string(), "port": port });
        if let (Some(h), false) = (first_host(a), a.action == Action::Dns) {
            dst["hostname"] = json!(h);
        }
        ev.insert("dst_endpoint".into(), dst);
        ev.insert(
            "connection_info".into(),
            json!({ "direction_id": 2, "direction": "Outbound", "protocol_ver_id": if ip.is_ipv6() { 6 } else { 4 } }),
        );
    }
    ev.insert("src_endpoint".into(), json!({ "hostname": e.host.name }));
}

/// DNS Activity: `query`, `answers`, `rcode_id`/`rcode`, `response_time`, and the activity (a
/// query alone, an unsolicited response, or both).
fn dns_object(d: &crate::event::DnsLookup, ev: &mut Map<String, Value>) {
    use crate::wire::dns;
    if let Some(q) = &d.question {
        ev.insert(
            "query".into(),
            json!({ "hostname": q.name, "type": dns::type_name(q.qtype), "packet_uid": d.id }),
        );
    }
    let (id, name) = match (&d.response, d.unsolicited) {
        (None, _) => (1, "Query"),
        (Some(_), true) => (2, "Response"),
        (Some(_), false) => (6, "Traffic"),
    };
    set_class(ev, (4003, "DNS Activity"), (id, name));
    let Some(r) = &d.response else {
        return;
    };
    let answers: Vec<Value> = r
        .answers
        .iter()
        .map(|rec| {
            let rdata = match &rec.data {
                dns::RData::A(ip) => ip.to_string(),
                dns::RData::Aaaa(ip) => ip.to_string(),
                dns::RData::Cname(n) => n.to_string(),
                dns::RData::Other { len } => format!("({len} bytes)"),
            };
            json!({ "rdata": rdata, "type": dns::type_name(rec.rtype), "ttl": rec.ttl, "packet_uid": d.id })
        })
        .collect();
    ev.insert("answers".into(), json!(answers));
    // OCSF's rcode_id follows the RFC codes 0-10 (11+ as Other).
    let rcode_id = if r.rcode <= 10 {
        u32::from(r.rcode)
    } else {
        99
    };
    ev.insert("rcode_id".into(), json!(rcode_id));
    ev.insert("rcode".into(), json!(dns::rcode_name(r.rcode)));
    ev.insert(
        "response_time".into(),
        json!(u64::try_from(r.after.as_millis()).unwrap_or(u64::MAX)),
    );
}

/// Sets an event's class and activity (and with them its type).
fn set_class(ev: &mut Map<String, Value>, class: (u32, &str), activity: (u32, &str)) {
    ev.insert("class_uid".into(), json!(class.0));
    ev.insert("class_name".into(), json!(class.1));
    ev.insert("activity_id".into(), json!(activity.0));
    ev.insert("activity_name".into(), json!(activity.1));
    ev.insert("type_uid".into(), json!(class.0 * 100 + activity.0));
    ev.insert(
        "type_name".into(),
        json!(format!("{}: {}", class.1, activity.1)),
    );
}

/// HTTP Activity: `http_request` (method, URL, version) and the activity its method names.
fn http_object(t: &Target, r: &crate::wire::http::Request, ev: &mut Map<String, Value>) {
    let (id, name) = match &*r.method {
        "CONNECT" => (1, "Connect"),
        "DELETE" => (2, "Delete"),
        "GET" => (3, "Get"),
        "HEAD" => (4, "Head"),
        "OPTIONS" => (5, "Options"),
        "POST" => (6, "Post"),
        "PUT" => (7, "Put"),
        "TRACE" => (8, "Trace"),
        _ => (99, "Other"),
    };
    set_class(ev, (4002, "HTTP Activity"), (id, name));
    let target = Escaped(&r.target).to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.clone(), None),
    };
    let mut url = json!({ "url_string": target, "path": path });
    if let Some(q) = query {
        url["query_string"] = json!(q);
    }
    if let Some(h) = &r.host {
        url["hostname"] = json!(h);
    }
    if let Some(p) = r.port.or(match t {
        Target::Inet(_, p) => Some(*p),
        _ => None,
    }) {
        url["port"] = json!(p);
    }
    let mut req = json!({ "http_method": &*r.method, "url": url });
    if let Some(v) = r.version {
        req["version"] = json!(format!("HTTP/1.{v}"));
    }
    ev.insert("http_request".into(), req);
}

/// Everything OCSF has no attribute for, as the native record has it.
fn unmapped(e: &Event) -> Value {
    let rec = record::to_value(e);
    let mut u = Map::new();
    for k in [
        "schema",
        "seq",
        "time",
        "syscall",
        "agent",
        "protected",
        "subject",
        "resource",
    ] {
        if !rec[k].is_null() {
            u.insert(k.into(), rec[k].clone());
        }
    }
    if e.activity().is_some_and(|a| a.process.exe_replaced) {
        // What `/proc/PID/exe` says now: OCSF's process file is the file the exec loaded.
        u.insert("process".into(), rec["process"].clone());
    }
    u.insert("boot_id".into(), json!(e.host.boot_id));
    Value::Object(u)
}

fn activity_event(e: &Event, a: &Activity) -> Value {
    let dec = a.verdict.as_ref().map_or(Decision::Allow, |v| v.decision);
    let (severity_id, severity, action_id, action_name, disposition_id, disposition) =
        verdict_ids(dec);
    let (class, activity_id, activity_name, verb) = activity_of(a.action);
    let (class_uid, class_name, category_uid, category_name) = class;
    let (status_id, status_name) = status(a.outcome);
    let rule = a
        .verdict
        .as_ref()
        .and_then(|v| v.rule.as_deref())
        .unwrap_or("default");
    let mut ev = Map::new();
    for (k, v) in [
        ("class_uid", json!(class_uid)),
        ("class_name", json!(class_name)),
        ("category_uid", json!(category_uid)),
        ("category_name", json!(category_name)),
        ("activity_id", json!(activity_id)),
        ("activity_name", json!(activity_name)),
        ("type_uid", json!(class_uid * 100 + activity_id)),
        ("type_name", json!(format!("{class_name}: {activity_name}"))),
        ("time", json!(epoch_ms(e))),
        ("severity_id", json!(severity_id)),
        ("severity", json!(severity)),
        ("status_id", json!(status_id)),
        ("status", json!(status_name)),
        (
            "status_code",
            json!(a.outcome.retval().map(|v| v.to_string())),
        ),
        (
            "status_detail",
            json!(a.outcome.errno().map(|c| failure_text(a, c))),
        ),
        ("action_id", json!(action_id)),
        ("action", json!(action_name)),
        ("disposition_id", json!(disposition_id)),
        ("disposition", json!(disposition)),
        (
            "message",
            json!(format!(
                "{} {verb} {} ({dec} by {rule})",
                e.agent_id(),
                resource_text(a)
            )),
        ),
        ("metadata", metadata(e)),
        ("device", device(e)),
        ("actor", actor(e, a)),
    ] {
        ev.insert(k.into(), v);
    }
    if let Some(c) = container(a) {
        ev["actor"]["process"]["container"] = c;
        if let Some(profiles) = ev["metadata"]["profiles"].as_array_mut() {
            profiles.push(json!("container"));
        }
    }
    // After the actor's container: a launched process is in its parent's container.
    class_object(e, a, &mut ev);
    // Process Activity requires the process acted on; an io_uring setup or a 32-bit call acts
    // on the caller itself.
    if class_uid == 1007 && !ev.contains_key("process") {
        let own = ev["actor"]["process"].clone();
        ev.insert("process".into(), own);
    }
    ev.insert("unmapped".into(), unmapped(e));
    strip_nulls(Value::Object(ev))
}

/// A claim is no activity of the host OCSF has a class for: a Base Event (class 0, no profile),
/// the claim as the native record has it in `unmapped`.
fn claim_event(e: &Event, a: &Activity) -> Value {
    let native = record::to_value(e);
    let mut metadata = metadata(e);
    metadata["profiles"] = json!([]);
    let (status_id, status) = status(a.outcome);
    json!({
        "class_uid": 0, "class_name": "Base Event",
        "category_uid": 0, "category_name": "Uncategorized",
        "activity_id": 99, "activity_name": "Other", "type_uid": 99, "type_name": "Base Event: Other",
        "severity_id": 1, "severity": "Informational",
        "status_id": status_id, "status": status,
        "time": epoch_ms(e),
        "message": format!("{} claimed {}", e.agent_id(), resource_text(a)),
        "metadata": metadata,
        "unmapped": {
            "agent": native["agent"], "process": native["process"], "subject": native["subject"],
            "resource": native["resource"], "seq": e.seq, "host": native["host"],
        },
    })
}

/// Maps an event to an OCSF event.
pub(crate) fn to_ocsf(e: &Event) -> Value {
    match e.activity() {
        Some(a) if a.action == Action::Claim => strip_nulls(claim_event(e, a)),
        Some(a) => activity_event(e, a),
        None => gap_event(e, e.gap().expect("an event is an activity or a gap")),
    }
}
