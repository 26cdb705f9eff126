//! OCSF 1.3.0 output for SIEMs: Process Activity (1007, Launch), File System Activity (1001,
//! Open), Network Activity (4001, Open), with the `host` and `security_control` profiles (and
//! `container` for containerised processes). The
//! mapping table is in `docs/schema.md`.
//!
//! Note on `security_control`: audit-agent observes, it does not block. `action_id` and
//! `disposition_id` carry the policy verdict; what the kernel did is in `status_id`.

use serde_json::{Map, Value, json};

use crate::record::{Record, action, decision, outcome};

pub const OCSF_VERSION: &str = "1.3.0";

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// (severity_id, severity, action_id, action, disposition_id, disposition) of a verdict.
fn verdict_ids(decision: &str) -> (u8, &'static str, u8, &'static str, u8, &'static str) {
    match decision {
        decision::DENY => (4, "High", 2, "Denied", 2, "Blocked"),
        decision::REVIEW => (3, "Medium", 1, "Allowed", 15, "Detected"),
        _ => (1, "Informational", 1, "Allowed", 1, "Allowed"),
    }
}

/// The `container` profile's object, when the process runs in a container: the container id,
/// and from Kubernetes the container name and pod uid. Pod name, namespace, service account and
/// labels stay in `unmapped.subject.k8s` (OCSF 1.3.0 has no attributes for them).
fn container(rec: &Record) -> Option<Value> {
    let subject = rec.subject.as_ref()?;
    let k8s = subject.k8s.as_ref();
    let uid = subject.container_id.as_ref();
    let name = k8s.and_then(|k| k.container.as_ref());
    if uid.is_none() && name.is_none() {
        return None;
    }
    let mut c = Map::new();
    if let Some(uid) = uid {
        c.insert("uid".into(), json!(uid));
    }
    if let Some(name) = name {
        c.insert("name".into(), json!(name));
    }
    if let Some(k8s) = k8s {
        c.insert("orchestrator".into(), json!("Kubernetes"));
        if let Some(pod) = &k8s.pod_uid {
            c.insert("pod_uuid".into(), json!(pod));
        }
    }
    Some(Value::Object(c))
}

/// Maps a record to an OCSF event.
pub fn to_ocsf(rec: &Record) -> Value {
    let time_ms = i64::try_from(rec.unix_ns.div_euclid(1_000_000)).unwrap_or(0);
    let time_ms = if rec.unix_ns == 0 {
        crate::timefmt::parse_rfc3339(&rec.time).map_or(0, |ns| (ns / 1_000_000) as i64)
    } else {
        time_ms
    };
    let metadata = json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "audit-agent",
            "vendor_name": "audit-agent",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "profiles": ["host", "security_control"],
        "uid": rec.id,
        "log_name": rec.schema,
        "original_time": rec.time,
    });
    let device = json!({
        "hostname": rec.host.name,
        "type_id": 0,
        "type": "Unknown",
    });

    if let Some(gap) = &rec.gap {
        // Lost records fit no activity class: a Base Event (class 0) carrying the gap.
        return json!({
            "class_uid": 0, "class_name": "Base Event",
            "category_uid": 0, "category_name": "Uncategorized",
            "activity_id": 99, "activity_name": "Other", "type_uid": 99, "type_name": "Base Event: Other",
            "severity_id": 4, "severity": "High",
            "status_id": 2, "status": "Failure", "status_detail": gap.reason,
            "time": time_ms,
            "message": format!("audit-agent lost {} record(s) ({}) between {} and {}", gap.lost, gap.reason, gap.from, gap.to),
            "metadata": metadata,
            "device": device,
            "unmapped": { "gap": gap, "seq": rec.seq },
        });
    }

    let agent = rec.agent.as_ref();
    let agent_id = rec.agent_id();
    let policy = rec.policy.as_ref();
    let dec = policy.map_or(decision::ALLOW, |p| &*p.decision);
    let (severity_id, severity, action_id, action_name, disposition_id, disposition) =
        verdict_ids(dec);
    let res = rec.resource.clone().unwrap_or_default();
    let path = res
        .resolved_path
        .clone()
        .or(res.path.clone())
        .unwrap_or_default();

    let proc_ = rec.process.as_ref();
    let mut actor_process = json!({
        "pid": proc_.map(|p| p.pid),
        "tid": proc_.map(|p| p.tid),
        "name": proc_.map(|p| p.comm.clone()),
        "uid": proc_.and_then(|p| p.exec_id.clone()),
        "parent_process": {
            "pid": proc_.map(|p| p.ppid),
            "uid": proc_.and_then(|p| p.parent_exec_id.clone()),
        },
        "user": {
            "uid": rec.subject.as_ref().map(|s| s.uid.to_string()),
            "type_id": 0, "type": "Unknown",
        },
    });
    if let Some(exe) = proc_.and_then(|p| p.exe.as_deref()) {
        actor_process["file"] =
            json!({ "path": exe, "name": basename(exe), "type_id": 1, "type": "Regular File" });
    }
    let actor = json!({
        "user": {
            "uid": agent_id,
            "name": agent.and_then(|a| a.name.clone()).unwrap_or_else(|| agent_id.to_string()),
            "type_id": 99,
            "type": "AI Agent",
        },
        "process": actor_process,
        "authorizations": [{
            "decision": dec,
            "policy": {
                "uid": policy.and_then(|p| p.rule.clone()).unwrap_or_else(|| "default".into()),
                "name": policy.and_then(|p| p.rule.clone()).unwrap_or_else(|| "default_decision".into()),
                "version": policy.map(|p| p.version.clone()),
            },
        }],
    });

    let result = rec.result.as_ref();
    let (status_id, status) = match result.map(|r| &*r.outcome) {
        Some(outcome::SUCCESS) => (1, "Success"),
        Some(outcome::FAILURE) => (2, "Failure"),
        Some(outcome::IN_PROGRESS) => (99, "In Progress"),
        _ => (0, "Unknown"),
    };

    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        match rec.action.as_str() {
            action::EXEC => (1007, "Process Activity", 1, "System Activity", 1, "Launch"),
            action::OPEN => (
                1001,
                "File System Activity",
                1,
                "System Activity",
                14,
                "Open",
            ),
            _ => (4001, "Network Activity", 4, "Network Activity", 1, "Open"),
        };
    let target = match rec.action.as_str() {
        action::CONNECT => {
            let a = res.address.clone().unwrap_or_default();
            if res.port.is_some() {
                format!("{a}:{}", res.port.unwrap_or(0))
            } else {
                a
            }
        }
        _ => path.clone(),
    };
    let verb = match rec.action.as_str() {
        action::EXEC => "executed",
        action::OPEN => "opened",
        _ => "connected to",
    };
    let rule = policy.and_then(|p| p.rule.as_deref()).unwrap_or("default");
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
        ("time", json!(time_ms)),
        ("severity_id", json!(severity_id)),
        ("severity", json!(severity)),
        ("status_id", json!(status_id)),
        ("status", json!(status)),
        (
            "status_code",
            json!(result.and_then(|r| r.retval).map(|v| v.to_string())),
        ),
        ("status_detail", json!(result.and_then(|r| r.errno.clone()))),
        ("action_id", json!(action_id)),
        ("action", json!(action_name)),
        ("disposition_id", json!(disposition_id)),
        ("disposition", json!(disposition)),
        (
            "message",
            json!(format!("{agent_id} {verb} {target} ({dec} by {rule})")),
        ),
        ("metadata", metadata),
        ("device", device),
        ("actor", actor),
    ] {
        ev.insert(k.into(), v);
    }
    match rec.action.as_str() {
        action::EXEC => {
            let mut launched = json!({
                "pid": proc_.map(|p| p.pid),
                "name": basename(&path),
                "file": { "path": path, "name": basename(&path), "type_id": 1, "type": "Regular File" },
                "cmd_line": res.argv.as_ref().map(|a| a.join(" ")),
                "parent_process": ev["actor"]["process"].clone(),
            });
            if let Some(id) = &res.exec_id {
                launched["uid"] = json!(id);
            }
            ev.insert("process".into(), launched);
        }
        action::OPEN => {
            ev.insert(
                "file".into(),
                json!({ "path": path, "name": basename(&path), "type_id": 0, "type": "Unknown" }),
            );
        }
        _ => {
            let v6 = res.family.as_deref() == Some("inet6");
            let dst = if res.family.as_deref() == Some("unix") {
                json!({ "name": res.address })
            } else {
                json!({ "ip": res.address, "port": res.port })
            };
            ev.insert("dst_endpoint".into(), dst);
            ev.insert("src_endpoint".into(), json!({ "hostname": rec.host.name }));
            ev.insert(
                "connection_info".into(),
                json!({
                    "direction_id": 2, "direction": "Outbound",
                    "protocol_ver_id": if v6 { 6 } else { 4 },
                }),
            );
        }
    }
    if let Some(container) = container(rec) {
        ev.insert("container".into(), container);
        if let Some(profiles) = ev["metadata"]["profiles"].as_array_mut() {
            profiles.push(json!("container"));
        }
    }
    let mut unmapped = json!({
        "schema": rec.schema,
        "seq": rec.seq,
        "time": rec.time,
        "boot_id": rec.host.boot_id,
        "syscall": rec.syscall,
        "agent": agent,
        "protected": rec.protected,
        "subject": rec.subject,
        "resource": res,
    });
    if let Some(map) = unmapped.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    ev.insert("unmapped".into(), unmapped);
    strip_nulls(Value::Object(ev))
}

/// OCSF consumers treat absent and null alike; absent keeps events small and validators quiet.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(subject: Value) -> Record {
        serde_json::from_value(json!({
            "schema": "audit-agent/v1", "id": "s-1", "seq": 1,
            "time": "2026-11-26T19:42:01.123456789Z",
            "host": {"name": "node-7", "boot_id": "b"},
            "action": "file.open", "syscall": "openat",
            "agent": {"id": "support-bot", "matched_by": "k8s"},
            "process": {"pid": 1, "tid": 1, "ppid": 0, "comm": "python3", "exe": null},
            "subject": subject,
            "resource": {"path": "/etc/shadow"},
            "result": {"outcome": "success", "retval": 3, "errno": null},
            "policy": {"decision": "deny", "rule": "no-secrets", "version": "sha256:0"},
        }))
        .expect("record")
    }

    #[test]
    fn kubernetes_pod_processes_get_the_container_profile() {
        let ev = to_ocsf(&record(json!({
            "uid": 0, "gid": 0, "cgroup_id": 7, "cgroup": "/kubepods.slice/x",
            "container_id": "ab".repeat(32),
            "k8s": {"namespace": "support", "pod": "bot-0", "pod_uid": "3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f",
                    "container": "agent", "service_account": "bot", "labels": {"ai.agent/id": "support-bot"}},
        })));
        assert_eq!(
            ev["metadata"]["profiles"],
            json!(["host", "security_control", "container"])
        );
        assert_eq!(
            ev["container"],
            json!({"uid": "ab".repeat(32), "name": "agent", "orchestrator": "Kubernetes",
                   "pod_uuid": "3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f"})
        );
        assert_eq!(ev["unmapped"]["subject"]["k8s"]["pod"], "bot-0");
    }

    #[test]
    fn processes_outside_containers_have_no_container_profile() {
        let ev = to_ocsf(&record(json!({
            "uid": 0, "gid": 0, "cgroup_id": 7, "cgroup": "/agents/support",
        })));
        assert_eq!(
            ev["metadata"]["profiles"],
            json!(["host", "security_control"])
        );
        assert!(ev.get("container").is_none());
    }
}
