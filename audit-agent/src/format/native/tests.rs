//! The native record: what is written reads back as the same event, and the wire form is the
//! documented one.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use super::*;
use crate::{event::UNATTRIBUTED, time::from_nanos};

fn activity(action: Action, syscall: &'static str, target: Target, detail: Detail) -> Event {
    Event {
        time: from_nanos(1_764_186_121_123_456_789),
        host: Arc::new(Host {
            name: "node-7".into(),
            boot_id: "b473886d".into(),
        }),
        seq: 42,
        stream: Arc::from("9f3a2b1c4d5e6f70"),
        body: Body::Activity(Box::new(Activity {
            action,
            syscall,
            process: Process {
                pid: 4242,
                tid: 4243,
                ppid: 1,
                comm: b"py\xffthon".to_vec(),
                exe: Some(Arc::from(&b"/usr/bin/python3"[..])),
                exec_id: Some(Arc::from("b4-4242-1")),
                parent_exec_id: None,
            },
            subject: Subject {
                uid: 1001,
                gid: 1001,
                cgroup_id: 8812,
                cgroup: Some(Arc::from("/agents/support")),
                container_id: None,
                k8s: None,
            },
            agent: Some(Arc::new(AgentIdentity {
                id: "support-bot".into(),
                name: Some("Support bot".into()),
                workflow: None,
                owner: None,
                matched_by: Some(MatchedBy::Cgroup),
            })),
            resource: Resource {
                target,
                detail,
                truncated: vec![],
            },
            outcome: Outcome::Failure(13),
            protected: vec![Arc::from("secrets")],
            verdict: Some(Verdict {
                decision: Decision::Deny,
                rule: Some(Arc::from("no-secrets")),
                version: Arc::from("sha256:39cdf0784a1d9dd7"),
            }),
        })),
    }
}

fn file(requested: &[u8], resolved: Option<&[u8]>) -> Target {
    Target::File(FileRef {
        requested: requested.to_vec(),
        resolved: resolved.map(<[u8]>::to_vec),
    })
}

fn line(e: &Event) -> String {
    let mut out = Vec::new();
    write(e, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn round_trip(e: &Event) {
    let l = line(e);
    assert_eq!(&read(l.as_bytes()).unwrap(), e, "{l}");
}

#[test]
fn every_kind_of_event_reads_back_as_written() {
    let open = Detail::Open {
        flags: 0o1 | 0o100 | 0o2000000,
        mode: 0o640,
        dirfd: Some(3),
    };
    round_trip(&activity(
        Action::Open,
        "openat",
        file(b"rel/\xff", Some(b"/tmp/rel/\xff")),
        open,
    ));
    let exec = Detail::Exec {
        argv: vec![b"cat".to_vec(), b"a\\b".to_vec(), b"\x1b[31m".to_vec()],
        dirfd: None,
        new_exec_id: Some(Arc::from("b4-4242-9")),
    };
    round_trip(&activity(
        Action::Exec,
        "execve",
        file(b"/usr/bin/cat", None),
        exec,
    ));
    for target in [
        Target::Inet("10.0.0.1".parse::<IpAddr>().unwrap(), 5432),
        Target::Inet("::ffff:10.0.0.1".parse::<IpAddr>().unwrap(), 443),
        Target::Unix(b"/run/a.sock".to_vec()),
        Target::Unix(b"\0abs\0tract".to_vec()),
        Target::OtherAddress { family: 0 },
        Target::OtherAddress { family: 17 },
    ] {
        round_trip(&activity(
            Action::Connect,
            "connect",
            target,
            Detail::Connect,
        ));
    }
    let mut with_pod = activity(
        Action::Connect,
        "connect",
        Target::Unix(b"/x".to_vec()),
        Detail::Connect,
    );
    if let Some(a) = with_pod.activity_mut() {
        a.subject.container_id = Some("ab".repeat(32));
        a.subject.k8s = Some(Arc::new(K8sPod {
            namespace: "support".into(),
            pod: "bot-0".into(),
            pod_uid: "3f2a".into(),
            container: Some("agent".into()),
            service_account: "bot".into(),
            labels: BTreeMap::from([("app".into(), "bot".into())]),
        }));
        a.outcome = Outcome::InProgress;
    }
    round_trip(&with_pod);
}

#[test]
fn gaps_read_back_with_their_window_and_seqs() {
    let mut g = activity(Action::Open, "openat", file(b"/x", None), Detail::Connect);
    g.body = Body::Gap(Gap {
        lost: 3,
        reason: GapReason::SpoolFull,
        by_action: BTreeMap::from([("file.open".into(), 3)]),
        from: from_nanos(1),
        to: from_nanos(2),
        seqs: Some((7, 9)),
    });
    round_trip(&g);
}

#[test]
fn the_wire_form_is_the_documented_one() {
    let e = activity(
        Action::Open,
        "openat",
        file(b"/etc/shadow", None),
        Detail::Open {
            flags: 0o2000000,
            mode: 0,
            dirfd: None,
        },
    );
    assert_eq!(
        line(&e),
        concat!(
            r#"{"schema":"audit-agent/v1","id":"9f3a2b1c4d5e6f70-42","seq":42,"time":"2025-11-26T19:42:01.123456789Z","#,
            r#""host":{"name":"node-7","boot_id":"b473886d"},"action":"file.open","syscall":"openat","#,
            r#""agent":{"id":"support-bot","name":"Support bot","workflow":null,"owner":null,"matched_by":"cgroup"},"#,
            r#""process":{"pid":4242,"tid":4243,"ppid":1,"comm":"py\\xffthon","exe":"/usr/bin/python3","exec_id":"b4-4242-1","parent_exec_id":null},"#,
            r#""subject":{"uid":1001,"gid":1001,"cgroup_id":8812,"cgroup":"/agents/support"},"#,
            r#""resource":{"path":"/etc/shadow","flags":["O_RDONLY","O_CLOEXEC"]},"#,
            r#""result":{"outcome":"failure","retval":-13,"errno":"EACCES"},"#,
            r#""protected":["secrets"],"policy":{"decision":"deny","rule":"no-secrets","version":"sha256:39cdf0784a1d9dd7"}}"#
        )
    );
}

#[test]
fn unattributed_activity_has_an_agent_with_null_fields() {
    let mut e = activity(
        Action::Open,
        "open",
        file(b"/x", None),
        Detail::Open {
            flags: 0,
            mode: 0,
            dirfd: None,
        },
    );
    if let Some(a) = e.activity_mut() {
        a.agent = Some(Arc::new(AgentIdentity::unattributed()));
    }
    let v: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
    assert_eq!(v["agent"]["id"], UNATTRIBUTED);
    for field in ["name", "workflow", "owner", "matched_by"] {
        assert!(
            v["agent"]
                .get(field)
                .is_some_and(serde_json::Value::is_null),
            "agent.{field}"
        );
    }
}

#[test]
fn malformed_records_name_the_field() {
    let bad = line(&activity(
        Action::Open,
        "openat",
        file(b"/x", None),
        Detail::Connect,
    ))
    .replace("\"failure\"", "\"maybe\"");
    assert_eq!(
        read(bad.as_bytes()).unwrap_err().to_string(),
        "field `result.outcome` has an invalid value"
    );
    assert!(read(b"{}").is_err());
}
