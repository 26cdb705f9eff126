//! Elastic Common Schema (ECS 9.4) output for Elasticsearch and Elastic Security: the
//! categorization fields (`event.kind`, `event.category`, `event.type`, `event.outcome`), the
//! process, file, destination, user, host, container and orchestrator field sets, the policy
//! verdict as `rule.*`, and the AI agent as `gen_ai.agent.*` — never `agent.*`, which in ECS names
//! the shipper (Filebeat, Elastic Agent) that sends the document. What ECS has no field for is
//! under `audit_agent.*`, as the native record has it. `observer.*` names audit-agent itself.
//! The mapping is in `docs/siem.md`; `tests/validators/ecs.js` checks every field against the
//! official ECS definitions.

use serde_json::{Map, Value, json};

use super::{resource_text, strip_nulls};
use crate::trail::record;
use crate::{
    escape::Escaped,
    event::{Action, Activity, Decision, Detail, Event, Gap, Outcome, Target},
    time,
};

pub(crate) const ECS_VERSION: &str = "9.4.0";

/// (`event.category`, `event.type`) of an action, as ECS's categorization allows them.
fn categorization(a: Action) -> (&'static str, &'static [&'static str]) {
    match a {
        Action::Exec => ("process", &["start"]),
        Action::Exit => ("process", &["end"]),
        Action::Access => ("process", &["access"]),
        Action::Signal | Action::UringSetup | Action::CompatSyscall => ("process", &["info"]),
        Action::CgroupMove => ("process", &["change"]),
        Action::Open => ("file", &["access"]),
        Action::Delete | Action::Rmdir => ("file", &["deletion"]),
        Action::Link | Action::Symlink | Action::Mkdir => ("file", &["creation"]),
        Action::Rename | Action::Truncate | Action::Chmod | Action::Chown => ("file", &["change"]),
        Action::Connect => ("network", &["connection", "start"]),
        Action::Send => ("network", &["connection"]),
        Action::Dns | Action::Tls | Action::Http => ("network", &["protocol"]),
        Action::Claim => ("api", &["info"]),
        Action::SetExe => ("process", &["change"]),
        Action::Held | Action::Receive | Action::Copy => ("file", &["access"]),
        Action::MapExec => ("library", &["start"]),
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Success(_) => "success",
        Outcome::Failure(_) => "failure",
        Outcome::InProgress | Outcome::Unknown => "unknown",
    }
}

fn base(e: &Event, kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@timestamp".into(), json!(time::rfc3339(e.time)));
    m.insert("ecs".into(), json!({ "version": ECS_VERSION }));
    m.insert(
        "observer".into(),
        json!({ "product": "audit-agent", "vendor": "audit-agent", "type": "audit",
                "version": env!("CARGO_PKG_VERSION"), "hostname": e.host.name }),
    );
    m.insert(
        "host".into(),
        json!({ "name": e.host.name, "hostname": e.host.name, "boot": { "id": e.host.boot_id } }),
    );
    m.insert(
        "event".into(),
        json!({ "kind": kind, "id": record::record_id(e), "sequence": e.seq,
                "module": "audit_agent", "dataset": "audit_agent.trail" }),
    );
    m
}

fn gap_doc(e: &Event, g: &Gap) -> Value {
    let mut m = base(e, "pipeline_error");
    let native = record::to_value(e);
    m["event"]["action"] = json!(Action::GAP);
    m["event"]["start"] = json!(time::rfc3339(g.from));
    m["event"]["end"] = json!(time::rfc3339(g.to));
    m["event"]["reason"] = json!(g.reason.name());
    m.insert(
        "message".into(),
        json!(format!(
            "audit-agent lost {} record(s) ({}) between {} and {}",
            g.lost,
            g.reason,
            time::rfc3339(g.from),
            time::rfc3339(g.to)
        )),
    );
    m.insert("audit_agent".into(), json!({ "gap": native["gap"] }));
    Value::Object(m)
}

fn process(a: &Activity) -> Value {
    let p = &a.process;
    let mut v = json!({
        "pid": p.pid,
        "thread": { "id": p.tid },
        "name": Escaped(&p.comm).to_string(),
        "entity_id": p.exec_id,
        "parent": { "pid": p.ppid, "entity_id": p.parent_exec_id },
    });
    if let Some(exe) = p.exe.as_deref() {
        v["executable"] = json!(Escaped(exe).to_string());
    }
    if let Detail::Exec { argv, .. } = &a.resource.detail
        && let Some(args) = argv
    {
        let args: Vec<String> = args.iter().map(|x| Escaped(x).to_string()).collect();
        v["command_line"] = json!(args.join(" "));
        v["args_count"] = json!(args.len());
        v["args"] = json!(args);
        // An exec names the program it started: the record's process is the one that asked.
        let path = resource_text(a);
        v["executable"] = json!(path);
        v["name"] = json!(path.rsplit('/').next().unwrap_or(&path));
    }
    if let Detail::Exit(Some(status)) = &a.resource.detail {
        v["exit_code"] = json!(status.shell_code());
    }
    v
}

/// `file.*` of a file's path: path, name, directory.
fn file(path: &str) -> Value {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    json!({ "path": path, "name": name, "directory": if dir.is_empty() { "/" } else { dir } })
}

/// The resource in ECS's own field sets (`file`, `destination`, `network`).
fn resource(a: &Activity, m: &mut Map<String, Value>) {
    let text = resource_text(a);
    match &a.resource.target {
        Target::File(_) if a.action == Action::MapExec => {
            // A file loaded into the process: ECS's `dll` field set (any shared object).
            let f = file(&text);
            m.insert(
                "dll".into(),
                json!({ "path": f["path"], "name": f["name"] }),
            );
        }
        Target::File(r) if a.action != Action::Exec => {
            let mut f = file(&text);
            if let Some(id) = r.object.as_ref().and_then(|k| k.id) {
                f["inode"] = json!(id.ino.to_string());
                f["mode"] = json!(format!("{:o}", id.mode & 0o7777));
            }
            if let Detail::Change(c) = &a.resource.detail
                && let Some(content) = &c.content
            {
                f["target_path"] = json!(Escaped(content).to_string());
            }
            m.insert("file".into(), f);
        }
        Target::Inet(ip, port) => {
            let mut dst = json!({ "ip": ip.to_string(), "port": port, "address": ip.to_string() });
            if let (Some(h), false) = (first_host(a), a.action == Action::Dns) {
                dst["domain"] = json!(h);
            }
            m.insert("destination".into(), dst);
            let mut net = json!({ "direction": "egress", "type": if ip.is_ipv6() { "ipv6" } else { "ipv4" } });
            protocol_fields(a, &mut net, m);
            m.insert("network".into(), net);
        }
        Target::Unix(_) => {
            m.insert("destination".into(), json!({ "address": text }));
            m.insert("network".into(), json!({ "direction": "internal" }));
        }
        _ => {}
    }
}

/// The destination's first name (`resource.host`).
fn first_host(a: &Activity) -> Option<&str> {
    a.resource
        .destination
        .as_deref()
        .and_then(|d| d.hosts.first())
        .map(|h| &*h.name)
}

/// `dns.*`, `tls.*`, `http.*` and `url.*` of DNS, TLS and HTTP records, and the protocol on
/// `network`.
fn protocol_fields(a: &Activity, net: &mut Value, m: &mut Map<String, Value>) {
    use crate::wire::{dns, tls};
    match &a.resource.detail {
        Detail::Dns(d) => {
            net["protocol"] = json!("dns");
            net["transport"] = json!(d.transport.name());
            let mut v = json!({ "id": d.id.to_string(), "type": if d.response.is_some() { "answer" } else { "query" } });
            if let Some(q) = &d.question {
                v["question"] = json!({ "name": q.name, "type": dns::type_name(q.qtype) });
            }
            if let Some(r) = &d.response {
                v["response_code"] = json!(dns::rcode_name(r.rcode));
                let mut ips = Vec::new();
                let answers: Vec<Value> = r
                    .answers
                    .iter()
                    .map(|rec| {
                        let data = match &rec.data {
                            dns::RData::A(ip) => {
                                ips.push(ip.to_string());
                                ip.to_string()
                            }
                            dns::RData::Aaaa(ip) => {
                                ips.push(ip.to_string());
                                ip.to_string()
                            }
                            dns::RData::Cname(n) => n.to_string(),
                            dns::RData::Other { len } => format!("({len} bytes)"),
                        };
                        json!({ "name": rec.name, "type": dns::type_name(rec.rtype), "ttl": rec.ttl, "data": data })
                    })
                    .collect();
                v["answers"] = json!(answers);
                if !ips.is_empty() {
                    v["resolved_ip"] = json!(ips);
                }
            }
            m.insert("dns".into(), v);
        }
        Detail::Tls(h) => {
            net["protocol"] = json!("tls");
            net["transport"] = json!("tcp");
            let mut v = json!({});
            if let Some(sni) = &h.sni {
                v["client"] = json!({ "server_name": sni });
            }
            if let Some(max) = h.versions.iter().max() {
                let name = tls::version_name(*max);
                if let Some(n) = name.strip_prefix("TLS") {
                    v["version"] = json!(n);
                    v["version_protocol"] = json!("tls");
                }
            }
            m.insert("tls".into(), v);
        }
        Detail::Http(x) => {
            let r = &x.request;
            net["protocol"] = json!("http");
            net["transport"] = json!("tcp");
            let mut h = json!({ "request": { "method": &*r.method } });
            if let Some(v) = r.version {
                h["version"] = json!(format!("1.{v}"));
            }
            if let Some(status) = x.response.as_ref().map(|a| a.status).filter(|s| *s > 0) {
                h["response"] = json!({ "status_code": status });
            }
            m.insert("http".into(), h);
            let target = Escaped(&r.target).to_string();
            let mut url = json!({ "original": target });
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            url["path"] = json!(path);
            if !query.is_empty() {
                url["query"] = json!(query);
            }
            if let Some(host) = &r.host {
                url["domain"] = json!(host);
            }
            if let Some(p) = r.port {
                url["port"] = json!(p);
            }
            m.insert("url".into(), url);
        }
        _ => {}
    }
}

/// `container.*` and `orchestrator.*` of a containerised process.
fn placement(a: &Activity, m: &mut Map<String, Value>) {
    let s = &a.subject;
    let k8s = s.k8s.as_deref();
    if let Some(id) = &s.container_id {
        let mut c = json!({ "id": id });
        if let Some(name) = k8s.and_then(|k| k.container.as_ref()) {
            c["name"] = json!(name);
        }
        m.insert("container".into(), c);
    }
    if let Some(k) = k8s {
        m.insert(
            "orchestrator".into(),
            json!({ "type": "kubernetes", "namespace": k.namespace,
                    "resource": { "type": "pod", "name": k.pod, "id": k.pod_uid } }),
        );
    }
}

fn activity_doc(e: &Event, a: &Activity) -> Value {
    let (category, types) = categorization(a.action);
    let mut m = base(e, "event");
    m["event"]["category"] = json!([category]);
    m["event"]["type"] = json!(types);
    m["event"]["action"] = json!(a.action.name());
    m["event"]["outcome"] = json!(outcome(a.outcome));
    let decision = a.verdict.as_ref().map_or(Decision::Allow, |v| v.decision);
    let rule = a.verdict.as_ref().and_then(|v| v.rule.as_deref());
    if let Some(v) = &a.verdict {
        m.insert(
            "rule".into(),
            json!({ "id": rule.unwrap_or("default"), "name": rule.unwrap_or("default_decision"),
                    "version": v.version.to_string(), "ruleset": "audit-agent policy" }),
        );
    }
    m.insert(
        "message".into(),
        json!(format!(
            "{} {} {} ({decision} by {})",
            e.agent_id(),
            a.action,
            resource_text(a),
            rule.unwrap_or("default")
        )),
    );
    m.insert("process".into(), process(a));
    m.insert(
        "user".into(),
        json!({ "id": a.subject.uid.to_string(), "group": { "id": a.subject.gid.to_string() } }),
    );
    if let Some(agent) = a.agent.as_deref() {
        let mut g = json!({ "id": agent.id });
        if let Some(name) = &agent.name {
            g["name"] = json!(name);
        }
        m.insert("gen_ai".into(), json!({ "agent": g }));
    }
    resource(a, &mut m);
    placement(a, &mut m);
    let native = record::to_value(e);
    let mut own = Map::new();
    for k in [
        "syscall",
        "agent",
        "subject",
        "resource",
        "result",
        "protected",
        "policy",
    ] {
        if !native[k].is_null() {
            own.insert(k.into(), native[k].clone());
        }
    }
    if a.process.exe_replaced {
        // ECS's `process.executable` is the file the exec loaded; what `/proc/PID/exe` says now
        // has no ECS field.
        own.insert("process".into(), native["process"].clone());
    }
    m.insert("audit_agent".into(), Value::Object(own));
    Value::Object(m)
}

/// Maps an event to an ECS document.
pub(crate) fn to_ecs(e: &Event) -> Value {
    strip_nulls(match e.activity() {
        Some(a) => activity_doc(e, a),
        None => gap_doc(e, e.gap().expect("an event is an activity or a gap")),
    })
}
