//! Agent identity, protected resources and policy verdicts on real kernel records, native and
//! OCSF.

use std::{net::TcpListener, time::Duration};

use audit_tests::*;

/// Two cgroup agents, one uid agent, a protected file set and a protected network range.
fn config(root: &TestCgroup, secret: &str, port: u16) -> String {
    format!(
        r#"
default_decision = "allow"

[[agents]]
id = "support-bot"
name = "Support bot"
workflow = "customer-support"
owner = "support@example.com"
cgroup = ["{root}/support/**"]

[[agents]]
id = "coder"
name = "Coding agent"
workflow = "code-changes"
cgroup = ["{root}/coder"]

[[agents]]
id = "batch"
workflow = "nightly"
uid = [65534]

[[agents]]
id = "late"
cgroup = ["{root}/late-*/worker"]

[[protected]]
name = "secrets"
files = ["{secret}"]

[[protected]]
name = "db"
network = ["127.0.0.0/8:{port}"]

[[rules]]
id = "coder-may-use-db"
agents = ["coder"]
protected = ["db"]
decision = "allow"

[[rules]]
id = "no-secrets"
agents = ["*"]
protected = ["secrets"]
decision = "deny"

[[rules]]
id = "db-needs-review"
protected = ["db"]
decision = "review"

[watch]
cgroups = ["{root}/other/**"]
"#,
        root = root.rel
    )
}

struct Setup {
    root: TestCgroup,
    _dir: Scratch,
    secret: String,
    port: u16,
    _listener: TcpListener,
    config: std::path::PathBuf,
}

fn setup(tag: &str) -> Setup {
    let root = TestCgroup::new(tag);
    let dir = Scratch::new(tag);
    let secret = dir.path("secret.txt").to_str().unwrap().to_string();
    std::fs::write(&secret, "s3cr3t").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = dir.path("config.toml");
    std::fs::write(&config, config_text(&root, &secret, port)).unwrap();
    Setup {
        root,
        _dir: dir,
        secret,
        port,
        _listener: listener,
        config,
    }
}

fn config_text(root: &TestCgroup, secret: &str, port: u16) -> String {
    config(root, secret, port)
}

fn start(s: &Setup, format: &str) -> Agent {
    Agent::start([
        "watch",
        "--format",
        format,
        "--config",
        s.config.to_str().unwrap(),
    ])
}

#[test]
fn every_record_carries_agent_protected_sets_and_verdict() {
    let s = setup("policy");
    let support = s.root.child("support/worker-1");
    let coder = s.root.child("coder");
    let batch = s.root.child("batch");
    let agent = start(&s, "json");
    let port = s.port.to_string();
    let sup = support.workload([
        "open",
        &s.secret,
        "open",
        "/etc/hostname",
        "connect4",
        "127.0.0.1",
        &port,
    ]);
    let cod = coder.workload(["open", &s.secret, "connect4", "127.0.0.1", &port]);
    let bat = batch.workload([
        "setuid",
        "65534",
        "open",
        "/etc/hostname",
        "connect4",
        "127.0.0.1",
        &port,
    ]);
    let records = agent.stop();

    let version = records[0]["policy"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(version.starts_with("sha256:"));
    assert!(
        records
            .iter()
            .filter(|r| r["action"] != "audit.gap")
            .all(|r| r["policy"]["version"] == version.as_str())
    );

    // support-bot: matched by cgroup glob; secret denied; db reviewed; everything else allowed.
    let r = one(&records, pid_of(&sup), "file.open", &s.secret);
    assert_eq!(
        r["agent"],
        json!({"id": "support-bot", "name": "Support bot", "workflow": "customer-support",
               "owner": "support@example.com", "matched_by": "cgroup"})
    );
    assert_eq!(r["protected"], json!(["secrets"]));
    assert_eq!(
        r["policy"],
        json!({"decision": "deny", "rule": "no-secrets", "version": version})
    );
    let r = one(&records, pid_of(&sup), "file.open", "/etc/hostname");
    assert_eq!(r["protected"], json!([]));
    assert_eq!(
        r["policy"],
        json!({"decision": "allow", "rule": null, "version": version})
    );
    let c = by_pid(&records, pid_of(&sup), "network.connect");
    assert_eq!(c[0]["protected"], json!(["db"]));
    assert_eq!(c[0]["policy"]["decision"], "review");
    assert_eq!(c[0]["policy"]["rule"], "db-needs-review");

    // coder: exact cgroup; its own rule allows the db, the secret is still denied.
    let r = one(&records, pid_of(&cod), "file.open", &s.secret);
    assert_eq!(r["agent"]["id"], "coder");
    assert_eq!(r["agent"]["matched_by"], "cgroup");
    assert_eq!(r["policy"]["decision"], "deny");
    let c = by_pid(&records, pid_of(&cod), "network.connect");
    assert_eq!(c[0]["protected"], json!(["db"]));
    assert_eq!(c[0]["policy"]["rule"], "coder-may-use-db");
    assert_eq!(c[0]["policy"]["decision"], "allow");

    // batch: matched by uid once it runs as 65534 (its cgroup is not registered or watched).
    let r = one(&records, pid_of(&bat), "file.open", "/etc/hostname");
    assert_eq!(r["agent"]["id"], "batch");
    assert_eq!(r["agent"]["matched_by"], "uid");
    assert_eq!(r["agent"]["workflow"], "nightly");
    let c = by_pid(&records, pid_of(&bat), "network.connect");
    assert_eq!(c[0]["policy"]["decision"], "review");
}

#[test]
fn unregistered_watched_cgroup_is_unattributed() {
    let s = setup("unattr");
    let other = s.root.child("other");
    let agent = start(&s, "json");
    let rep = other.workload(["open", &s.secret]);
    let records = agent.stop();

    let r = one(&records, pid_of(&rep), "file.open", &s.secret);
    assert_eq!(r["agent"]["id"], "unattributed");
    assert_eq!(r["agent"]["matched_by"], Value::Null);
    // Policy still applies to unattributed activity.
    assert_eq!(r["policy"]["decision"], "deny");
}

#[test]
fn cgroups_created_after_start_are_attributed() {
    let s = setup("late");
    // The agent's cgroup exists (as in a deployment); containers appear below it later.
    let _support = s.root.child("support");
    let mut agent = start(&s, "json");
    // Below a `/**` glob: covered by the kernel subtree check immediately.
    let sub = s.root.child("support/new-container");
    let r1 = sub.workload(["open", "/etc/hostname"]);
    // A wildcard glob in the middle: picked up by the periodic rescan (which says so).
    let changes = agent.stderr().matches("cgroup watch set changed").count();
    let late = s.root.child("late-7/worker");
    agent.wait_for_stderr_count(
        "cgroup watch set changed",
        changes + 1,
        Duration::from_secs(120),
    );
    let r2 = late.workload(["open", "/etc/hostname"]);
    let records = agent.stop();

    let r = one(&records, pid_of(&r1), "file.open", "/etc/hostname");
    assert_eq!(r["agent"]["id"], "support-bot");
    assert_eq!(r["subject"]["cgroup"], sub.rel.as_str());
    let r = one(&records, pid_of(&r2), "file.open", "/etc/hostname");
    assert_eq!(r["agent"]["id"], "late");
    assert_eq!(r["subject"]["cgroup"], late.rel.as_str());
}

#[test]
fn a_child_that_leaves_its_agents_cgroup_keeps_the_agents_identity() {
    let s = setup("ancestor");
    let support = s.root.child("support");
    let elsewhere = TestCgroup::new("ancestor-elsewhere");
    let agent = start(&s, "json");
    let rep = support.workload([
        "open",
        "/etc/hostname",
        "fork",
        "move-cgroup",
        elsewhere.fs.to_str().unwrap(),
        "open",
        &s.secret,
    ]);
    let records = agent.stop();

    // rep[0] is the parent's open; rep[1] the child's cgroup move.
    assert_eq!(rep[1]["action"], "move-cgroup");
    let child = rep[1]["pid"].as_i64().unwrap();
    let r = one(&records, child, "file.open", &s.secret);
    assert_eq!(r["subject"]["cgroup"], elsewhere.rel.as_str());
    assert_eq!(r["agent"]["id"], "support-bot");
    assert_eq!(r["agent"]["matched_by"], "ancestor");
    assert_eq!(r["policy"]["decision"], "deny");
}

#[test]
fn ocsf_output_of_all_three_classes_is_valid_and_maps_verdicts() {
    let s = setup("ocsf");
    let support = s.root.child("support");
    let agent = start(&s, "ocsf");
    let port = s.port.to_string();
    let rep = support.workload([
        "open",
        &s.secret,
        "connect4",
        "127.0.0.1",
        &port,
        "exec",
        "/bin/true",
        "x",
    ]);
    let events = agent.stop();
    let pid = pid_of(&rep);
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["actor"]["process"]["pid"] == pid)
        .collect();
    audit_tests::validators::assert_ocsf_valid(&mine);
    let find = |class: i64| -> &Value {
        mine.iter()
            .find(|e| e["class_uid"] == class)
            .unwrap_or_else(|| panic!("no class {class}"))
    };
    assert_eq!(find(1007)["class_name"], "Process Activity");

    let file = mine
        .iter()
        .find(|e| e["class_uid"] == 1001 && e["file"]["path"] == s.secret.as_str())
        .expect("the secret's open");
    assert_eq!(file["file"]["path"], s.secret.as_str());
    assert_eq!(
        (file["action_id"].as_i64(), file["disposition_id"].as_i64()),
        (Some(2), Some(2)),
        "deny"
    );
    assert_eq!(file["actor"]["user"]["uid"], "support-bot");
    assert_eq!(file["actor"]["authorizations"][0]["decision"], "deny");
    assert_eq!(
        file["actor"]["authorizations"][0]["policy"]["uid"],
        "no-secrets"
    );
    assert_eq!(file["status_id"], 1);

    let net = find(4001);
    assert_eq!(
        net["dst_endpoint"],
        json!({"ip": "127.0.0.1", "port": s.port})
    );
    assert_eq!(
        (net["action_id"].as_i64(), net["disposition_id"].as_i64()),
        (Some(1), Some(15)),
        "review"
    );

    let exec = mine
        .iter()
        .find(|e| {
            e["class_uid"] == 1007
                && e["process"]["file"]["path"] == real_path("/bin/true").as_str()
        })
        .expect("the exec of /bin/true");
    assert_eq!(exec["process"]["cmd_line"], "/bin/true x");
    assert_eq!(
        (exec["action_id"].as_i64(), exec["disposition_id"].as_i64()),
        (Some(1), Some(1)),
        "allow"
    );
    assert_eq!(
        exec["actor"]["authorizations"][0]["policy"]["uid"],
        "default"
    );
}

#[test]
fn check_config_reports_errors_with_file_line_and_field() {
    let dir = Scratch::new("check");
    let bad = dir.path("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nid = \"r\"\nagents = [\"nobody\"]\ndecision = \"deny\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(agent_bin())
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3:11: rules[0].agents[0]: unknown agent `nobody`",
            bad.display()
        )),
        "{err}"
    );
    let ok = std::process::Command::new(agent_bin())
        .args(["check-config", "../deploy/config.example.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK (2 agent(s)"));
}
