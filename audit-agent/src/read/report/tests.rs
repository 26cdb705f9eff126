//! The report's model from records: which rows, in which order, with which lineage; how time is
//! bucketed; what the verdict says about an unsigned or gapped trail.

use serde_json::json;

use super::*;
use crate::read::verify;

/// A stored record: the docs' example, changed by `patch` (top-level keys replaced).
fn record(seq: u64, patch: serde_json::Value) -> Read {
    let mut r = json!({"schema":"audit-agent/v1","id":format!("9f3a2b1c4d5e6f70-{seq}"),"seq":seq,
        "time":"2026-11-26T19:42:01.123456789Z",
        "host":{"name":"node-7","boot_id":"b473886d"},
        "action":"file.open","syscall":"openat",
        "agent":{"id":"support-bot","name":"Support bot","workflow":"customer-support","owner":"support@example.com","matched_by":"cgroup"},
        "process":{"pid":4242,"tid":4242,"ppid":4200,"comm":"cat","exe":"/usr/bin/cat",
                   "exec_id":"b4-4242-3","parent_exec_id":"b4-4200-2"},
        "subject":{"uid":1001,"gid":1001,"cgroup_id":8812,"cgroup":"/agents/support"},
        "resource":{"path":"/etc/hostname","path_source":"kernel"},
        "result":{"outcome":"success","retval":3,"errno":null},
        "protected":[],
        "policy":{"decision":"allow","rule":null,"version":"sha256:39cdf0784a1d9dd7"}});
    for (k, v) in patch.as_object().unwrap() {
        r[k] = v.clone();
    }
    let line = serde_json::to_vec(&r).unwrap();
    Read {
        event: record::read(&line).unwrap(),
        hit: Hit::for_test(line, "v1/agent_id=support-bot/o.ndjson.gz"),
    }
}

fn verdict(decision: &str, rule: &str) -> serde_json::Value {
    json!({"decision":decision,"rule":rule,"version":"sha256:39cdf0784a1d9dd7"})
}

fn scope() -> Scope {
    Scope {
        workflows: vec!["customer-support".into()],
        agents: vec![],
        since: "2026-11-26T00:00:00Z".parse().unwrap(),
        until: "2026-11-27T00:00:00Z".parse().unwrap(),
    }
}

fn integrity(gaps: &[Read]) -> Integrity {
    let v = verify::Report {
        store: "file:///s".into(),
        streams: vec![verify::StreamReport::default()],
        ..Default::default()
    };
    Integrity::judge(v, gaps, false)
}

#[test]
fn protected_actions_are_denied_first_then_for_review_then_by_time() {
    let records = [
        record(
            1,
            json!({"time":"2026-11-26T10:00:00Z","protected":["customer-data"]}),
        ),
        record(
            2,
            json!({"time":"2026-11-26T11:00:00Z","policy":verdict("review","reviewed")}),
        ),
        record(
            3,
            json!({"time":"2026-11-26T12:00:00Z","policy":verdict("deny","no-secrets"),"protected":["secrets"]}),
        ),
        record(4, json!({"time":"2026-11-26T09:00:00Z"})),
        record(
            5,
            json!({"time":"2026-11-26T08:00:00Z","policy":verdict("deny","no-secrets")}),
        ),
    ];
    let r = assemble("file:///s", &scope(), integrity(&[]), &records, &[]);
    let seqs: Vec<&str> = r.protected_actions.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(
        seqs,
        [
            "9f3a2b1c4d5e6f70-5",
            "9f3a2b1c4d5e6f70-3",
            "9f3a2b1c4d5e6f70-2",
            "9f3a2b1c4d5e6f70-1"
        ],
        "record 4 (allowed, unprotected) is not a protected action"
    );
    assert_eq!(
        (r.totals.records, r.totals.deny, r.totals.review),
        (5, 2, 1)
    );
    assert_eq!(r.appendix.len(), 4);
    assert_eq!(r.appendix[0].object, "v1/agent_id=support-bot/o.ndjson.gz");
    assert_eq!(
        r.scope.agents[0].owner.as_deref(),
        Some("support@example.com")
    );
}

#[test]
fn lineage_follows_parent_images_the_scope_knows() {
    let records = [
        record(
            1,
            json!({"process":{"pid":1,"tid":1,"ppid":0,"comm":"python3","exe":"/usr/bin/python3.11","exec_id":"b4-1-1","parent_exec_id":"b4-0-0"}}),
        ),
        record(
            2,
            json!({"process":{"pid":2,"tid":2,"ppid":1,"comm":"sh","exe":"/usr/bin/dash","exec_id":"b4-2-2","parent_exec_id":"b4-1-1"}}),
        ),
        record(
            3,
            json!({"policy":verdict("deny","no-secrets"),"process":{"pid":3,"tid":3,"ppid":2,"comm":"cat","exe":"/usr/bin/cat","exec_id":"b4-3-3","parent_exec_id":"b4-2-2"}}),
        ),
    ];
    let r = assemble("file:///s", &scope(), integrity(&[]), &records, &[]);
    assert_eq!(
        r.protected_actions[0].lineage,
        ["cat", "dash", "python3.11"]
    );
    assert_eq!(r.totals.processes, 3);
}

#[test]
fn activity_buckets_grow_until_the_records_fit_and_count_every_record() {
    let at = |seq, t: &str, d: &str| record(seq, json!({"time":t,"policy":verdict(d,"r")}));
    let records = [
        at(1, "2026-11-26T10:00:10Z", "allow"),
        at(2, "2026-11-26T10:00:40Z", "deny"),
        at(3, "2026-11-26T13:00:00Z", "review"),
    ];
    let r = assemble("file:///s", &scope(), integrity(&[]), &records, &[]);
    // Three hours do not fit 48 one-minute bars; they fit 36 five-minute bars.
    assert_eq!(r.activity.bucket_seconds, 300);
    assert_eq!(r.activity.buckets.len(), 37);
    let first = &r.activity.buckets[0];
    assert_eq!(
        first.start,
        "2026-11-26T10:00:00Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!((first.allow, first.deny, first.review), (1, 1, 0));
    assert_eq!(r.activity.buckets[36].review, 1);
    let total: u64 = r.activity.buckets.iter().map(Bucket::total).sum();
    assert_eq!(total, 3);
}

#[test]
fn an_unsigned_or_gapped_trail_is_qualified_and_says_why() {
    let i = integrity(&[]);
    assert_eq!(i.level, Level::Qualified);
    assert!(i.findings[0].contains("not signed"));
    let gap = record(
        9,
        json!({"action":"audit.gap","agent":null,"process":null,"subject":null,"resource":null,
               "result":null,"policy":null,"protected":null,
               "gap":{"lost":7,"reason":"ringbuf_full","by_action":{"file.open":7},
                      "from":"2026-11-26T10:00:00Z","to":"2026-11-26T10:00:01Z"}}),
    );
    let i = integrity(&[gap]);
    assert_eq!(i.gaps[0].lost, 7);
    assert!(
        i.gaps[0]
            .explanation
            .contains("faster than the agent read them")
    );
    assert!(i.findings[0].contains("7 record(s) were lost in 1 gap(s)"));
}
