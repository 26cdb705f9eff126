//! The investigation CLI against the real kernel and real stores: `trace` a command, `query` a
//! trail written by real capture (directory store and Garage).

use std::{
    net::TcpListener,
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use audit_tests::{garage::Garage, trail::Trail, *};

fn trace(args: &[&str]) -> Output {
    require_root();
    // Without cargo's loader path, traced binaries do not probe dozens of missing directories.
    Command::new(agent_bin())
        .arg("trace")
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_records(p: &Path) -> Vec<Value> {
    parse_lines(&std::fs::read(p).unwrap())
}

#[test]
fn trace_of_a_script_records_exactly_its_tree_and_summarizes_it() {
    let dir = Scratch::new("trace-script");
    let secret = dir.path("secret.txt");
    std::fs::write(&secret, "x").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path("policy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[protected]]\nname = \"secrets\"\nfiles = [\"{}\"]\n\n[[rules]]\nid = \"no-secrets\"\nprotected = [\"secrets\"]\ndecision = \"deny\"\n\n\
             [[rules]]\nid = \"loopback-review\"\nactions = [\"network.connect\"]\nresources = [\"127.0.0.0/8:{port}\"]\ndecision = \"review\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let script = dir.path("suspicious-agent.sh");
    let w = workload_bin();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             {w} open {secret} open /nonexistent-trace-file\n\
             {w} connect4 127.0.0.1 {port} connect4 127.0.0.1 {closed}\n\
             /bin/true child-arg &\nwait\n\
             exit 7\n",
            w = w.display(),
            secret = secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Activity outside the trace, at the same time, must not appear.
    let outside = std::thread::spawn(|| {
        for _ in 0..20 {
            let _ = std::fs::read("/etc/hostname");
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let out_file = dir.path("records.json");
    let o = trace(&[
        "--config",
        cfg.to_str().unwrap(),
        "--agent",
        "suspect",
        "--format",
        "json",
        "--output",
        out_file.to_str().unwrap(),
        "--",
        script.to_str().unwrap(),
    ]);
    outside.join().unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "the command's exit status; stderr:\n{}",
        stderr(&o)
    );
    let records = read_records(&out_file);
    let me = std::process::id() as i64;
    assert!(
        records.iter().all(|r| r["process"]["pid"] != me),
        "nothing from outside the cgroup"
    );
    assert!(
        records
            .iter()
            .all(|r| r["agent"]["id"] == "suspect" && r["agent"]["matched_by"] == "trace")
    );
    let cgroups: std::collections::BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r["subject"]["cgroup"].as_str())
        .collect();
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    assert!(
        cgroups
            .iter()
            .next()
            .unwrap()
            .starts_with("/audit-agent-trace/")
    );

    // The first record is the exec of the script itself.
    assert_eq!(records[0]["action"], "process.exec");
    assert_eq!(records[0]["resource"]["path"], script.to_str().unwrap());

    let find = |action: &str, pred: &dyn Fn(&Value) -> bool| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["action"] == action && pred(r))
            .collect()
    };
    let s = find("file.open", &|r| {
        r["resource"]["path"] == secret.to_str().unwrap()
    });
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0]["policy"],
        json!({"decision": "deny", "rule": "no-secrets", "version": s[0]["policy"]["version"]})
    );
    assert_eq!(s[0]["protected"], json!(["secrets"]));
    let m = find("file.open", &|r| {
        r["resource"]["path"] == "/nonexistent-trace-file"
    });
    assert_eq!(m[0]["result"]["errno"], "ENOENT");
    let c = find("network.connect", &|r| r["process"]["comm"] == "workload");
    assert_eq!(c.len(), 2);
    assert_eq!(c[0]["resource"]["port"], port);
    assert_eq!(c[0]["result"]["outcome"], "success");
    assert_eq!(c[0]["policy"]["decision"], "review");
    assert_eq!(c[1]["result"]["errno"], "ECONNREFUSED");
    let t = find("process.exec", &|r| {
        r["resource"]["path"] == real_path("/bin/true").as_str()
    });
    assert_eq!(t.len(), 1, "the backgrounded child");
    assert_eq!(t[0]["resource"]["argv"], json!(["/bin/true", "child-arg"]));

    // The summary.
    let err = stderr(&o);
    let summary = &err[err
        .find("== audit-agent trace summary ==")
        .expect("summary")..];
    assert!(
        summary.contains("command exited with status 7"),
        "{summary}"
    );
    let execs = records
        .iter()
        .filter(|r| r["action"] == "process.exec")
        .count();
    // The counts close the summary.
    let counts = &summary[summary.rfind("\nactions: ").expect("counts")..];
    let count_of = |action: &str| -> usize {
        counts
            .lines()
            .find_map(|l| l.trim().strip_prefix(action))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count for {action} in {summary}"))
    };
    assert_eq!(count_of("process.exec"), execs);
    assert_eq!(count_of("network.connect"), 2);
    assert_eq!(
        count_of("file.open"),
        records
            .iter()
            .filter(|r| r["action"] == "file.open")
            .count()
    );
    assert!(summary.contains("protected actions: 1"), "{summary}");
    assert!(
        summary.contains(&format!("{}  [secrets]", secret.display())),
        "{summary}"
    );
    assert!(
        summary.contains("deny verdicts: 1, review verdicts: 1"),
        "{summary}"
    );
    assert!(
        summary.contains("DENY by no-secrets") && summary.contains("REVIEW by loopback-review"),
        "{summary}"
    );
    assert!(
        summary.contains("file.open       /nonexistent-trace-file  ENOENT"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("network.connect 127.0.0.1:{closed}  ECONNREFUSED")),
        "{summary}"
    );
    assert!(summary.contains("ECONNREFUSED 1"), "{summary}");
    assert!(summary.contains("network destinations: 2"), "{summary}");
    assert!(
        summary.contains(&format!("  {}", real_path("/bin/true")))
            && summary.contains(&format!("  {}", script.display())),
        "{summary}"
    );
    // The cgroup is gone afterwards.
    let cg = cgroup2_mount().join(cgroups.iter().next().unwrap().trim_start_matches('/'));
    assert!(!cg.exists(), "trace cgroup removed");
}

#[test]
fn trace_of_a_command_that_exits_immediately_still_captures_its_exec_and_opens() {
    let dir = Scratch::new("trace-quick");
    let out_file = dir.path("r.json");
    let o = trace(&[
        "--format",
        "json",
        "--output",
        out_file.to_str().unwrap(),
        "--",
        "/bin/true",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_records(&out_file);
    assert_eq!(records[0]["action"], "process.exec");
    assert_eq!(
        records[0]["resource"]["path"],
        real_path("/bin/true").as_str()
    );
    assert_eq!(records[0]["agent"]["id"], "trace:true");
    let opens = records
        .iter()
        .filter(|r| r["action"] == "file.open")
        .count();
    assert!(opens >= 2, "ld.so.cache and libc at least: {records:#?}");
    let o = trace(&[
        "--output",
        out_file.to_str().unwrap(),
        "--",
        "/bin/sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let o = trace(&["--", "/nonexistent-binary"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot start `/nonexistent-binary`"),
        "{}",
        stderr(&o)
    );
}

/// The summary's text, from its title on.
fn summary_of(o: &Output) -> String {
    let err = stderr(o);
    let at = err
        .find("== audit-agent trace summary ==")
        .unwrap_or_else(|| panic!("no summary in:\n{err}"));
    err[at..].to_string()
}

#[test]
fn trace_without_a_config_flags_credentials_the_metadata_service_and_data_movers() {
    let dir = Scratch::new("trace-builtin");
    // Any executable named curl is a data mover, wherever it is.
    let curl = dir.path("curl");
    std::fs::copy(workload_bin(), &curl).unwrap();
    let w = workload_bin();
    let out_file = dir.path("r.json");
    // The metadata service does not answer on these machines (no route): the attempt is the
    // action. Non-blocking, so a machine with a route does not wait for a timeout either.
    let o = trace(&[
        "--format",
        "json",
        "--output",
        out_file.to_str().unwrap(),
        "--",
        w.to_str().unwrap(),
        "open",
        "/etc/shadow",
        "connect4-nonblock",
        "169.254.169.254",
        "80",
        "open",
        "/etc/hostname",
        "exec",
        curl.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let records = read_records(&out_file);
    let find = |action: &str, resource: &dyn Fn(&Value) -> bool| -> &Value {
        records
            .iter()
            .find(|r| r["action"] == action && resource(&r["resource"]))
            .unwrap_or_else(|| panic!("no {action} in {records:#?}"))
    };
    let reviewed = |r: &Value, set: &str, rule: &str| {
        assert_eq!(r["protected"], json!([set]), "{r}");
        assert_eq!(r["policy"]["decision"], "review", "{r}");
        assert_eq!(r["policy"]["rule"], rule, "{r}");
    };
    reviewed(
        find("file.open", &|r| r["path"] == "/etc/shadow"),
        "credentials",
        "credential-access",
    );
    reviewed(
        find("network.connect", &|r| r["address"] == "169.254.169.254"),
        "cloud-metadata",
        "cloud-metadata",
    );
    reviewed(
        find("process.exec", &|r| r["path"] == curl.to_str().unwrap()),
        "data-movers",
        "data-mover-exec",
    );
    let other = find("file.open", &|r| r["path"] == "/etc/hostname");
    assert_eq!(other["policy"]["decision"], "allow");
    assert_eq!(other["protected"], json!([]));
    // The summary leads with them.
    let summary = summary_of(&o);
    assert!(summary.contains("protected actions: 3"), "{summary}");
    assert!(
        summary.contains("deny verdicts: 0, review verdicts: 3"),
        "{summary}"
    );
    for line in [
        "/etc/shadow  [credentials]".to_string(),
        "169.254.169.254:80  [cloud-metadata]".to_string(),
        format!("{}  REVIEW by data-mover-exec", curl.display()),
    ] {
        assert!(summary.contains(&line), "{line} in {summary}");
    }
    // The built-in policy is the one `check-config --builtin` shows.
    let shown = Command::new(agent_bin())
        .args(["check-config", "--builtin"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    let version = other["policy"]["version"].as_str().unwrap();
    assert!(
        shown.contains(&format!("policy version {version})")),
        "{shown}"
    );
}

#[test]
fn trace_summary_folds_path_searches_and_the_tracers_own_sigchld() {
    let dir = Scratch::new("trace-fold");
    let out_file = dir.path("r.json");
    // Two directories without the program before the one with it: the tracer's own start of
    // `env` searches PATH, and `env` searches it again for a program that exists nowhere.
    let path = "/nonexistent-i28-a:/nonexistent-i28-b:/usr/bin:/bin";
    let o = Command::new(agent_bin())
        .args(["trace", "--format", "json", "--output"])
        .arg(&out_file)
        .args(["--", "env", "nosuchcmd-i28"])
        .env("PATH", path)
        // No locale: `env`'s complaint then opens no locale files (their misses would be
        // failures of their own).
        .env("LC_ALL", "C")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let records = read_records(&out_file);
    let failed_execs = |name: &str| {
        records
            .iter()
            .filter(|r| {
                r["action"] == "process.exec"
                    && r["result"]["errno"] == "ENOENT"
                    && r["resource"]["path"]
                        .as_str()
                        .is_some_and(|p| p.ends_with(&format!("/{name}")))
            })
            .count()
    };
    // The records keep every probe, and the kernel's SIGCHLD to the tracer, said to be the
    // kernel's.
    assert_eq!(failed_execs("env"), 2, "{records:#?}");
    assert_eq!(failed_execs("nosuchcmd-i28"), 4, "{records:#?}");
    let sigchld: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.signal")
        .collect();
    assert_eq!(sigchld.len(), 1, "{records:#?}");
    assert_eq!(sigchld[0]["resource"]["signal"], "SIGCHLD");
    assert_eq!(sigchld[0]["resource"]["origin"], "kernel");
    // The summary says what the command did: one line per search, no signal.
    let summary = summary_of(&o);
    assert!(!summary.contains("process.signal"), "{summary}");
    // The 2 probes before `env` was found, and 3 of the 4 of the search that found nothing.
    assert!(
        summary.contains("(5 PATH search probe(s) folded into their search"),
        "{summary}"
    );
    assert!(
        summary.contains("1 SIGCHLD of the command's end to the tracer left out"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!(
            "  {}  (found by a PATH search after 2 places)",
            real_path("/usr/bin/env")
        )),
        "{summary}"
    );
    // The search that found nothing, and `env`'s exit with 127 (the records say how it ended).
    assert!(
        summary.contains("failed actions: 2 (ENOENT 1, exit 127 1), 2 distinct"),
        "{summary}"
    );
    let searches: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("nosuchcmd-i28"))
        .collect();
    assert_eq!(
        searches,
        ["  process.exec    nosuchcmd-i28  ENOENT  (PATH search: 4 places tried)"],
        "{summary}"
    );
}

#[test]
fn trace_export_writes_a_verifiable_trail() {
    let dir = Scratch::new("trace-export");
    let store = dir.path("store");
    let url = format!("file://{}", store.display());
    let o = trace(&[
        "--export",
        &url,
        "--output",
        dir.path("r.json").to_str().unwrap(),
        "--",
        "/bin/cat",
        "/etc/hostname",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let local = read_records(&dir.path("r.json"));
    let stored = Trail::dir(&store).records();
    let ids = |v: &[Value]| {
        v.iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        ids(&local),
        ids(&stored),
        "the store has exactly what was streamed"
    );
    let v = Command::new(agent_bin())
        .args(["verify", &url])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// A trail written by real capture: two agents, several objects.
struct Written {
    _dir: Scratch,
    url: String,
    env: Vec<(&'static str, String)>,
    marker: String,
}

fn write_trail(
    url: String,
    env: Vec<(&'static str, String)>,
    endpoint: Option<String>,
    tag: &str,
) -> Written {
    let dir = Scratch::new(tag);
    let root = TestCgroup::new(tag);
    let a = root.child("alpha");
    let b = root.child("beta");
    let endpoint = endpoint
        .map(|e| format!("endpoint = \"{e}\"\nregion = \"garage\"\nallow_http = true\n"))
        .unwrap_or_default();
    let cfg = format!(
        "[[agents]]\nid = \"alpha\"\ncgroup = [\"{a}\"]\n\n[[agents]]\nid = \"beta\"\ncgroup = [\"{b}\"]\n\n\
         [[protected]]\nname = \"secrets\"\nfiles = [\"/nonexistent-q/secret-*\"]\n\n\
         [[rules]]\nid = \"no-secrets\"\nprotected = [\"secrets\"]\ndecision = \"deny\"\n\n\
         [export]\nstore = \"{url}\"\n{endpoint}spool_dir = \"{spool}\"\nsegment_max_age_ms = 300\n",
        a = a.rel,
        b = b.rel,
        spool = dir.path("spool").display()
    );
    let cfg_path = dir.path("c.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.args(["run", "--config", cfg_path.to_str().unwrap()]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let agent = Agent::start_with(&mut cmd);
    let marker = format!("/nonexistent-q/{tag}-{}", std::process::id());
    a.workload([
        "open-many",
        &format!("{marker}-a"),
        "30",
        "0",
        "open",
        "/nonexistent-q/secret-1",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    b.workload([
        "open-many",
        &format!("{marker}-b"),
        "20",
        "0",
        "exec",
        "/bin/true",
    ]);
    let _ = agent.stop();
    Written {
        _dir: dir,
        url,
        env,
        marker,
    }
}

fn query(w: &Written, args: &[&str]) -> (Vec<Value>, String) {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("query")
        .arg(&w.url)
        .args(["--format", "json", "--verbose"])
        .args(args);
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "query {args:?} failed: {}", stderr(&o));
    (parse_lines(&o.stdout), stderr(&o))
}

fn objects_read(err: &str) -> u64 {
    err.split(" object(s) (")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no object count in {err}"))
}

fn query_suite(w: &Written) {
    let (all, err) = query(w, &[]);
    let total_objects = objects_read(&err);
    assert!(total_objects >= 2, "{err}");
    assert!(err.contains(&format!("{} record(s) matched", all.len())));
    let times: Vec<&str> = all.iter().map(|r| r["time"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|t| t[0] <= t[1]), "sorted by time");
    let alpha_markers = all
        .iter()
        .filter(|r| {
            r["resource"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(&format!("{}-a", w.marker)))
        })
        .count();
    assert_eq!(alpha_markers, 30);

    // --agent reads only that agent's partitions.
    let (alpha, err) = query(w, &["--agent", "alpha"]);
    assert!(
        alpha
            .iter()
            .all(|r| r["agent"]["id"] == "alpha" || r["action"] == "audit.gap")
    );
    assert!(objects_read(&err) < total_objects, "pruned: {err}");
    assert!(err.contains("partition pruning skipped"), "{err}");
    // Each filter.
    let (execs, _) = query(w, &["--action", "process.exec"]);
    assert!(!execs.is_empty() && execs.iter().all(|r| r["action"] == "process.exec"));
    let (res, _) = query(w, &["--resource", &format!("{}-b-*", w.marker)]);
    assert_eq!(res.len(), 20);
    let (deny, _) = query(w, &["--decision", "deny"]);
    assert_eq!(deny.len(), 1);
    assert_eq!(deny[0]["resource"]["path"], "/nonexistent-q/secret-1");
    let (prot, _) = query(w, &["--protected"]);
    assert_eq!(prot.len(), 1);
    let (prot_named, _) = query(w, &["--protected", "secrets"]);
    assert_eq!(prot_named.len(), 1);
    let (none, _) = query(w, &["--protected", "other"]);
    assert!(none.is_empty());
    let (fail, _) = query(w, &["--outcome", "failure", "--agent", "beta"]);
    assert!(
        fail.len() >= 20
            && fail
                .iter()
                .all(|r| r["result"]["outcome"] == "failure" && r["agent"]["id"] == "beta")
    );
    // Combined.
    let (comb, _) = query(
        w,
        &[
            "--agent",
            "alpha",
            "--action",
            "file.open",
            "--decision",
            "deny",
            "--protected",
            "--outcome",
            "failure",
        ],
    );
    assert_eq!(comb.len(), 1);
    let (lim, err) = query(w, &["--limit", "5"]);
    assert_eq!(lim.len(), 5);
    assert!(err.contains("(showing the first 5)"));
    assert_eq!(lim[..], all[..5]);
    // Time bounds: inclusive at record times; hour partitions outside the window are not read.
    let first = all[0]["time"].as_str().unwrap();
    let last = all[all.len() - 1]["time"].as_str().unwrap();
    let (w1, _) = query(w, &["--since", first, "--until", last]);
    assert_eq!(w1.len(), all.len());
    let (w2, _) = query(w, &["--since", last]);
    assert!(w2.iter().all(|r| r["time"].as_str().unwrap() >= last) && !w2.is_empty());
    let hour_start = format!("{}:00:00Z", &first[..13]);
    let next_hour = {
        let h: u32 = first[11..13].parse().unwrap();
        if h < 23 {
            format!("{}T{:02}:00:00Z", &first[..10], h + 1)
        } else {
            "2999-01-01T00:00:00Z".into()
        }
    };
    let (in_hour, err) = query(w, &["--since", &hour_start]);
    assert_eq!(in_hour.len(), all.len(), "{err}");
    let (after, err) = query(w, &["--since", &next_hour]);
    assert!(after.is_empty());
    assert_eq!(objects_read(&err), 0, "every partition pruned: {err}");
    let before_hour = format!("{}.999999999Z", {
        let t = &hour_start[..19];
        // one nanosecond before the hour: previous hour's last instant
        let h: u32 = t[11..13].parse().unwrap();
        if h > 0 {
            format!("{}T{:02}:59:59", &t[..10], h - 1)
        } else {
            "1970-01-01T00:00:00".into()
        }
    });
    let (before, err) = query(w, &["--until", &before_hour]);
    assert!(before.is_empty());
    assert_eq!(objects_read(&err), 0, "{err}");
    let (rel, _) = query(w, &["--since", "1h"]);
    assert_eq!(rel.len(), all.len());
}

#[test]
fn query_a_directory_store_written_by_real_capture() {
    let d = Scratch::new("q-file");
    let url = format!("file://{}", d.path("store").display());
    let w = write_trail(url, vec![], None, "qfile");
    query_suite(&w);
}

#[test]
fn query_a_garage_store_written_by_real_capture() {
    let g = Garage::shared();
    g.bucket("query");
    let w = write_trail(
        "s3://query/trail".into(),
        g.env(),
        Some(g.endpoint()),
        "qs3",
    );
    query_suite(&w);
}

#[test]
fn query_bad_input_and_corrupt_objects_get_clear_errors() {
    let d = Scratch::new("q-bad");
    let store = d.path("store");
    let url = format!("file://{}", store.display());
    let w = write_trail(url.clone(), vec![], None, "qbad");
    let run = |args: &[&str]| {
        Command::new(agent_bin())
            .arg("query")
            .arg(&w.url)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, msg) in [
        (vec!["--since", "yesterday"], "malformed time `yesterday`"),
        (vec!["--action", "file.read"], "unknown action `file.read`"),
        (vec!["--decision", "maybe"], "unknown decision `maybe`"),
        (vec!["--resource", "/a/[b"], "invalid glob"),
    ] {
        let o = run(&args);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(msg), "{args:?}: {}", stderr(&o));
    }
    // Corrupt one object.
    let trail = Trail::dir(&store);
    let key = trail.objects("v1").into_keys().next().unwrap();
    trail.put(&key, b"this is not gzip".to_vec());
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("corrupt object {key}"))
            && stderr(&o).contains("--skip-corrupt"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--skip-corrupt", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("skipped corrupt object {key}")));
    let o = Command::new(agent_bin())
        .args(["query", "s3://b/x"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "r")
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("is not usable"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn query_reads_only_objects_a_manifest_lists_unless_asked() {
    let d = Scratch::new("q-planted");
    let store = d.path("store");
    let w = write_trail(
        format!("file://{}", store.display()),
        vec![],
        None,
        "qplant",
    );
    let trail = Trail::dir(&store);
    let (key, records) = trail.objects("v1").into_iter().next().unwrap();
    // A planted object: another copy of real records, under a name no manifest lists.
    let planted = key.replace(".ndjson.gz", "9.ndjson.gz");
    trail.put(&planted, trail.get(&key));
    let count = |args: &[&str]| {
        let o = Command::new(agent_bin())
            .args(["query", &w.url, "--format", "json"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let n = String::from_utf8_lossy(&o.stdout).lines().count();
        (n, stderr(&o))
    };
    let (listed, err) = count(&[]);
    assert!(
        err.contains("skipped 1 object(s) that no manifest lists") && err.contains(&planted),
        "{err}"
    );
    let (all, _) = count(&["--include-unlisted"]);
    assert_eq!(
        all,
        listed + records.len(),
        "the planted records are read only when asked"
    );
}

/// The largest resident set of any child this test process has waited for, in bytes.
fn children_max_rss() -> u64 {
    // SAFETY: getrusage into a zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss as u64 * 1024
}

#[test]
fn gzip_bombs_and_huge_lines_cost_a_clear_error_not_memory() {
    use std::io::Write as _;
    let d = Scratch::new("q-bomb");
    let store = d.path("store");
    let url = format!("file://{}", store.display());
    let w = write_trail(url.clone(), vec![], None, "qbomb");
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    // 128 MiB of newlines in about 130 KB (concatenated gzip members of 1 MiB each): more than
    // any object audit-agent writes (segments are at most 64 MiB).
    let member = gz(&vec![b'\n'; 1 << 20]);
    let bomb: Vec<u8> = member.repeat(128);
    // One 8 MiB line (no record is longer than 4 MiB).
    let line = gz(&vec![b'x'; 8 << 20]);
    let trail = Trail::dir(&store);
    let keys: Vec<String> = trail.objects("v1").into_keys().take(2).collect();
    trail.put(&keys[0], bomb);
    trail.put(&keys[1], line);
    for (cmd, args) in [("query", vec!["--skip-corrupt"]), ("verify", vec![])] {
        let o = Command::new(agent_bin())
            .arg(cmd)
            .arg(&w.url)
            .args(&args)
            .output()
            .unwrap();
        let err = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
        let (bomb, line) = if cmd == "query" {
            // Bounded by what audit-agent ever writes.
            (
                "decompresses to more than 71303168 bytes",
                "line 1 is longer than 4194304 bytes",
            )
        } else {
            // The manifest names the stored bytes: a replaced object fails its hash before
            // anything is decompressed.
            ("manifest says", "manifest says")
        };
        for (key, why) in [(&keys[0], bomb), (&keys[1], line)] {
            let at = err
                .find(key.as_str())
                .unwrap_or_else(|| panic!("{cmd}: {err}"));
            assert!(
                err[at..].lines().next().unwrap().contains(why),
                "{cmd}: {err}"
            );
        }
        // query skips them as asked; verify fails.
        assert_eq!(o.status.success(), cmd == "query", "{cmd}: {err}");
        assert!(
            children_max_rss() < 300 << 20,
            "{cmd} stayed small: max RSS {} MiB",
            children_max_rss() >> 20
        );
    }
}

#[test]
fn query_table_output_is_aligned() {
    let d = Scratch::new("q-table");
    let url = format!("file://{}", d.path("store").display());
    let w = write_trail(url, vec![], None, "qtable");
    let o = Command::new(agent_bin())
        .args(["query", &w.url, "--agent", "alpha", "--limit", "3"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("AGENT") && lines[0].contains("RESOURCE")
    );
    assert_eq!(lines.len(), 4);
    // Every row's action starts in the ACTION column (which actions come first depends on what
    // the workload held and probed: its stdout is a file.held when it is a regular file).
    let col = lines[0].find("ACTION").unwrap();
    assert!(
        lines[1..].iter().all(|l| {
            let action = l[col..].split(' ').next().unwrap_or("");
            l.as_bytes()[col - 1] == b' '
                && (action.starts_with("file.") || action.starts_with("process."))
        }),
        "{text}"
    );
}
