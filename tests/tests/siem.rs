//! SIEM outputs, checked by tools their users run and none written here: OCSF against the
//! official 1.3.0 schema (`tests/validators/ocsf.py`), for every action the product records, in
//! and out of containers, and for gap records.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
};

use audit_tests::{trail::Trail, *};
use serde_json::Value;

/// Everything a watched process can do that audit-agent records, in one workload run.
fn every_action(dir: &Scratch, other: &TestCgroup, agent_pid: u32, target: u32) -> Vec<String> {
    let d = |p: &str| dir.path(p).display().to_string();
    std::fs::write(dir.path("a"), b"a").unwrap();
    std::fs::write(dir.path("b"), b"b").unwrap();
    let (agent, target) = (agent_pid.to_string(), target.to_string());
    let mut args: Vec<String> = [
        "open",
        "/etc/hostname",
        "open",
        "/nonexistent-siem/secret",
        "openat2",
        "/etc/hostname",
        "connect4",
        "127.0.0.1",
        "9",
        "connect6",
        "::1",
        "9",
        "connect-unix",
        "/nonexistent-siem/sock",
        "udp-sendto",
        "127.0.0.1",
        "9",
        "unix-sendto",
        "/nonexistent-siem/dgram",
    ]
    .map(String::from)
    .to_vec();
    for change in [
        vec!["mkdir".into(), d("dir")],
        vec!["rmdir".into(), d("dir")],
        vec!["symlink".into(), "/etc/passwd".into(), d("sym")],
        vec!["link".into(), d("a"), d("hard")],
        vec!["chmod".into(), d("a"), "600".into()],
        vec!["chown".into(), d("a"), "0".into(), "0".into()],
        vec!["truncate".into(), d("a"), "0".into()],
        vec!["rename-exchange".into(), d("a"), d("b")],
        vec!["unlink".into(), d("hard")],
        vec!["uring-open".into(), "/etc/hostname".into()],
        vec!["uring-connect".into(), "127.0.0.1".into(), "9".into()],
        vec!["ia32-open".into(), "/etc/hostname".into()],
        vec!["ia32-call".into(), "20".into()],
        vec!["ptrace-peek".into(), target.clone()],
        vec!["vm-read".into(), target.clone()],
        vec!["getfd".into(), target.clone(), "1".into()],
        vec!["kill".into(), agent.clone(), "18".into()],
        vec!["move-cgroup".into(), other.fs.display().to_string()],
        vec!["exec".into(), "/bin/true".into()],
    ] {
        args.extend(change);
    }
    args
}

#[test]
fn ocsf_of_every_action_and_gap_validates_against_the_official_schema() {
    let dir = Scratch::new("siem-ocsf");
    let root = TestCgroup::new("siem-ocsf");
    let plain = root.child("plain");
    let docker = root.child(&format!("docker-{}.scope", "ab".repeat(32)));
    let pod = root.child(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3f2a9c1e_1b2c_4d5e_8f90_0a1b2c3d4e5f.slice/cri-containerd-{}.scope",
        "cd".repeat(32)
    ));
    let elsewhere = root.child("elsewhere");
    let store = dir.path("store");
    let cfg = dir.path("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[agents]]
id = "coder"
name = "Coding agent"
workflow = "code-changes"
cgroup = ["{root}/**"]

[[protected]]
name = "secrets"
files = ["/nonexistent-siem/secret"]

[[rules]]
id = "no-secrets"
protected = ["secrets"]
decision = "deny"

[[rules]]
id = "egress"
actions = ["network.connect"]
decision = "review"

[export]
store = "file://{store}"
spool_dir = "{spool}"
segment_max_age_ms = 300
ocsf = true
"#,
            root = root.rel,
            store = store.display(),
            spool = dir.path("spool").display()
        ),
    )
    .unwrap();
    let start = || Agent::start(["run", "--config", cfg.to_str().unwrap()]);
    let agent = start();
    let mut target = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for cg in [&plain, &docker, &pod] {
        let args = every_action(&dir, &elsewhere, agent.pid(), target.id());
        let report = cg.workload(&args);
        assert!(!report.is_empty(), "the workload ran in {}", cg.rel);
    }
    let _ = target.kill();
    let _ = target.wait();
    let _ = agent.stop();
    // A restart: the time the agent was down is a gap record.
    let _ = start().stop();

    let objects = Trail::dir(&store).objects("ocsf");
    let events: Vec<&Value> = objects.values().flatten().collect();
    audit_tests::validators::assert_ocsf_valid(&events);

    // Every class and activity the product maps to is in what was validated.
    let seen: BTreeSet<(i64, i64)> = events
        .iter()
        .map(|e| {
            (
                e["class_uid"].as_i64().unwrap(),
                e["activity_id"].as_i64().unwrap(),
            )
        })
        .collect();
    for want in [
        (1007, 1),  // exec
        (1007, 3),  // process.access
        (1007, 99), // signal, cgroup move, io_uring setup, 32-bit call
        (1001, 14), // open
        (1001, 1),  // link, symlink, mkdir
        (1001, 3),  // truncate
        (1001, 4),  // delete, rmdir
        (1001, 5),  // rename
        (1001, 7),  // chmod, chown
        (4001, 1),  // connect
        (4001, 6),  // send
        (0, 99),    // gap
    ] {
        assert!(seen.contains(&want), "no event of {want:?} in {seen:?}");
    }
    // The container profile puts the container on the process, in a container and in a pod.
    let containers: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e["actor"]["process"]["container"]["uid"].as_str())
        .map(String::from)
        .collect();
    assert_eq!(
        containers,
        BTreeSet::from(["ab".repeat(32), "cd".repeat(32)])
    );
    assert!(events.iter().any(|e| {
        e["metadata"]["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "container")
    }));
    // A unix connect claims no IP version.
    let unix = events
        .iter()
        .find(|e| e["dst_endpoint"]["name"] == "/nonexistent-siem/sock")
        .expect("the unix connect");
    assert!(
        unix["connection_info"].get("protocol_ver_id").is_none(),
        "{unix:#}"
    );
}
