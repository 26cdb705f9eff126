//! Query filters on stored lines: each alone, combined, and at the time and partition edges.

use super::*;

#[allow(clippy::too_many_arguments)] // one per filtered field: each case reads as a row
fn line(
    agent: &str,
    workflow: &str,
    action: &str,
    path: &str,
    decision: &str,
    protected: &[&str],
    outcome: &str,
    time: &str,
) -> String {
    serde_json::json!({
        "schema": "audit-agent/v1", "id": "x-1", "seq": 1, "time": time,
        "host": {"name": "h", "boot_id": "b"}, "action": action,
        "agent": {"id": agent, "name": null, "workflow": workflow, "owner": null, "matched_by": "cgroup"},
        "resource": {"path": path},
        "result": {"outcome": outcome, "retval": 0, "errno": null},
        "protected": protected,
        "policy": {"decision": decision, "rule": null, "version": "v"}
    })
    .to_string()
}

const T: &str = "2026-11-26T10:00:00.000000000Z";

fn shadow() -> String {
    line(
        "bot",
        "support",
        "file.open",
        "/etc/shadow",
        "deny",
        &["secrets"],
        "success",
        T,
    )
}

fn f(a: FilterArgs) -> Filter {
    Filter::new(a).unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn hit(filter: &Filter, l: &str) -> bool {
    filter.matches(&serde_json::from_str(l).unwrap())
}

#[test]
fn each_filter_and_combinations() {
    let l = shadow();
    let all = FilterArgs::default;
    assert!(hit(&f(all()), &l));
    for (ids, found) in [
        (&["x-1"][..], true),
        (&["x-2", "x-1"], true),
        (&["x-2"], false),
    ] {
        let ids = s(ids);
        assert_eq!(hit(&f(FilterArgs { ids, ..all() }), &l), found);
    }
    assert!(hit(
        &f(FilterArgs {
            agents: s(&["bot"]),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            agents: s(&["other"]),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            workflows: s(&["support"]),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            workflows: s(&["billing"]),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            actions: s(&["file.open", "process.exec"]),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            actions: s(&["network.connect"]),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            resources: s(&["/etc/**"]),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            resources: s(&["/tmp/**"]),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            decisions: s(&["deny"]),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            decisions: s(&["allow"]),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            protected: Some(None),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            protected: Some(Some("secrets".into())),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            protected: Some(Some("pii".into())),
            ..all()
        }),
        &l
    ));
    assert!(hit(
        &f(FilterArgs {
            outcome: Some("success".into()),
            ..all()
        }),
        &l
    ));
    assert!(!hit(
        &f(FilterArgs {
            outcome: Some("failure".into()),
            ..all()
        }),
        &l
    ));
    let combined = FilterArgs {
        agents: s(&["bot"]),
        workflows: s(&["support"]),
        actions: s(&["file.open"]),
        resources: s(&["/etc/*"]),
        decisions: s(&["deny"]),
        protected: Some(Some("secrets".into())),
        outcome: Some("success".into()),
        ..all()
    };
    assert!(hit(&f(combined.clone()), &l));
    assert!(!hit(
        &f(FilterArgs {
            decisions: s(&["review"]),
            ..combined
        }),
        &l
    ));
    let unprotected = line(
        "bot",
        "support",
        "file.open",
        "/tmp/x",
        "allow",
        &[],
        "success",
        T,
    );
    assert!(!hit(
        &f(FilterArgs {
            protected: Some(None),
            ..all()
        }),
        &unprotected
    ));
}

#[test]
fn network_resources_match_with_the_policy_patterns() {
    let c = serde_json::json!({
        "schema": "audit-agent/v1", "id": "x-1", "seq": 1, "time": T,
        "host": {"name": "h", "boot_id": "b"}, "action": "network.connect",
        "resource": {"family": "inet", "address": "10.1.2.3", "port": 5432},
    })
    .to_string();
    let res = |r: &str| {
        f(FilterArgs {
            resources: s(&[r]),
            ..Default::default()
        })
    };
    assert!(hit(&res("10.0.0.0/8:5432"), &c));
    assert!(!hit(&res("10.0.0.0/8:22"), &c));
    assert!(!hit(&res("/etc/**"), &c));
}

#[test]
fn time_bounds_are_inclusive_and_partitions_prune_at_hour_edges() {
    let l = shadow();
    let t = time::parse(T).unwrap();
    let ns = jiff::SignedDuration::from_nanos(1);
    let at = |since, until| {
        f(FilterArgs {
            since,
            until,
            ..Default::default()
        })
    };
    assert!(hit(&at(Some(t), None), &l));
    assert!(!hit(&at(Some(t + ns), None), &l));
    assert!(hit(&at(None, Some(t)), &l));
    assert!(!hit(&at(None, Some(t - ns)), &l));
    // Hour 09 ends exactly at 10:00: pruned for since=10:00, kept for since just before.
    let hour = |q: &Filter, h: &str| q.window_overlaps(time::hour_window("2026-11-26", h));
    assert!(!hour(&at(Some(t), None), "09"));
    assert!(hour(&at(Some(t), None), "10"));
    assert!(hour(&at(Some(t - ns), None), "09"));
    assert!(hour(&at(None, Some(t)), "10"));
    assert!(!hour(&at(None, Some(t)), "11"));
    assert!(!at(None, Some(t)).window_overlaps(time::day_window("2026-11-27")));
}

#[test]
fn gap_records_show_unless_record_filters_exclude_them() {
    let g = serde_json::json!({"schema":"audit-agent/v1","id":"x","seq":2,"time":T,
        "host":{"name":"h","boot_id":"b"},"action":"audit.gap",
        "gap":{"lost":3,"reason":"ringbuf_full","from":T,"to":T}})
    .to_string();
    assert!(hit(
        &f(FilterArgs {
            agents: s(&["bot"]),
            ..Default::default()
        }),
        &g
    ));
    assert!(!hit(
        &f(FilterArgs {
            actions: s(&["file.open"]),
            ..Default::default()
        }),
        &g
    ));
    assert!(hit(
        &f(FilterArgs {
            actions: s(&["audit.gap"]),
            ..Default::default()
        }),
        &g
    ));
    assert!(!hit(
        &f(FilterArgs {
            protected: Some(None),
            ..Default::default()
        }),
        &g
    ));
}

#[test]
fn bad_input_is_named() {
    let e = |a: FilterArgs| Filter::new(a).unwrap_err().to_string();
    assert!(
        e(FilterArgs {
            actions: s(&["file.read"]),
            ..Default::default()
        })
        .contains("unknown action `file.read`")
    );
    assert!(
        e(FilterArgs {
            decisions: s(&["maybe"]),
            ..Default::default()
        })
        .contains("unknown decision `maybe`")
    );
    assert!(
        e(FilterArgs {
            outcome: Some("meh".into()),
            ..Default::default()
        })
        .contains("unknown outcome `meh`")
    );
    assert!(
        e(FilterArgs {
            resources: s(&["/a/[b"]),
            ..Default::default()
        })
        .contains("invalid glob")
    );
}
