//! Operations, end to end: metrics and health endpoints, configuration reload, and Kubernetes
//! identity (real kernel and cgroups laid out like kubepods; the API server is a local stand-in
//! because no cluster can exist on these machines).

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use audit_tests::{
    fake_k8s::{FakeApi, pod},
    garage::Garage,
    *,
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// (status, body) of GET path.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_accepting(port, path, None);
    (status, body)
}

/// (status, content type, body) of GET path with an `Accept` header.
fn http_get_accepting(port: u16, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// Scrapers get the format they ask for: Prometheus's classic parser and linter (promtool) finds
/// nothing to report in the classic answer, and the Prometheus client's parsers read every
/// counter as a counter in both (promtool reads an OpenMetrics counter as untyped).
fn assert_both_expositions_parse(port: u16) {
    use audit_tests::validators::{prometheus_families, promtool_check};
    let (_, ctype, classic) =
        http_get_accepting(port, "/metrics", Some("text/plain;version=0.0.4"));
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    promtool_check(&classic).unwrap_or_else(|e| panic!("promtool on the classic answer: {e}"));
    let families = prometheus_families("classic", &classic).unwrap();
    let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (_, ctype, om) = http_get_accepting(port, "/metrics", Some(prometheus));
    assert_eq!(
        ctype,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om_families = prometheus_families("openmetrics", &om).unwrap();
    let kind = |f: &std::collections::BTreeMap<String, String>, name: &str| {
        f.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no family {name} in {f:?}"))
    };
    for counter in ["audit_records", "audit_uploads", "audit_lost_records"] {
        assert_eq!(kind(&families, counter), "counter", "classic {counter}");
        assert_eq!(
            kind(&om_families, counter),
            "counter",
            "OpenMetrics {counter}"
        );
    }
    assert_eq!(
        kind(&families, "audit_delivery_latency_seconds"),
        "histogram"
    );
    assert_eq!(kind(&om_families, "audit_build_info"), "gauge");
    assert_eq!(kind(&families, "audit_build_info"), "gauge");
    // What classic clients made of the OpenMetrics answer, before negotiation.
    assert!(promtool_check(&om).is_err());
}

/// Every family a classic scrape exposes is named in docs/deployment.md (as `name` or
/// `name{labels}`).
fn assert_every_metric_is_documented(classic: &str) {
    let doc = std::fs::read_to_string(workspace_root().join("docs/deployment.md")).unwrap();
    let undocumented: Vec<&str> = classic
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|name| !doc.contains(&format!("`{name}`")) && !doc.contains(&format!("`{name}{{")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/deployment.md: {undocumented:?}"
    );
}

fn daemon(cfg: &str, dir: &Scratch, env: &[(&'static str, String)]) -> Agent {
    let p = dir.path("config.toml");
    std::fs::write(&p, cfg).unwrap();
    let mut c = Command::new(agent_bin());
    c.args(["run", "--config", p.to_str().unwrap()]);
    for (k, v) in env {
        c.env(k, v);
    }
    Agent::start_with(&mut c)
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
}

#[test]
fn metrics_health_and_readiness_report_the_running_daemon() {
    let g = Garage::shared();
    g.bucket("metrics");
    let cg = TestCgroup::new("metrics");
    let dir = Scratch::new("metrics");
    let port = free_port();
    let cfg = format!(
        "[[agents]]\nid = \"m-agent\"\ncgroup = [\"{}\"]\n\n[[protected]]\nname = \"s\"\nfiles = [\"/nonexistent-metrics/*\"]\n\n\
         [[rules]]\nid = \"deny-s\"\nprotected = [\"s\"]\ndecision = \"deny\"\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n\
         [export]\nstore = \"s3://metrics/t\"\nendpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\nspool_dir = \"{}\"\nsegment_max_age_ms = 300\n",
        cg.rel,
        g.endpoint(),
        dir.path("spool").display()
    );
    let agent = daemon(&cfg, &dir, &g.env());
    cg.workload(["open", "/nonexistent-metrics/a", "open", "/etc/hostname"]);
    // Until everything asserted below has happened (the kernel counters are sampled and the
    // batch uploaded on the pipeline's and the uploader's own schedules).
    let records = |decision: &str| {
        format!(
            "audit_records_total{{action=\"file.open\",agent=\"m-agent\",decision=\"{decision}\"}}"
        )
    };
    wait_until("the records counted, sampled and uploaded", || {
        let m = http_get(port, "/metrics").1;
        let at_least = |name: &str, n: f64| {
            m.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v >= n)
        };
        at_least(&records("deny"), 1.0)
            && at_least(&records("allow"), 1.0)
            && at_least("audit_kernel_records_emitted_total", 2.0)
            && at_least("audit_ring_buffer_reads_total", 2.0)
            && at_least("audit_uploads_total", 2.0)
            && at_least("audit_delivery_latency_seconds_count", 2.0)
            && http_get(port, "/readyz").0 == 200
    });
    let (code, body) = http_get(port, "/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(port, "/readyz");
    assert_eq!(code, 200, "{body}");
    let (code, m) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &m,
            "audit_records_total{action=\"file.open\",agent=\"m-agent\",decision=\"deny\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &m,
            "audit_records_total{action=\"file.open\",agent=\"m-agent\",decision=\"allow\"}"
        ) >= 1.0
    );
    assert!(metric(&m, "audit_kernel_records_emitted_total") >= 2.0);
    assert!(metric(&m, "audit_ring_buffer_reads_total") >= 2.0);
    assert!(
        metric(&m, "audit_uploads_total") >= 2.0,
        "objects and a manifest uploaded"
    );
    assert_eq!(metric(&m, "audit_upload_failures_total"), 0.0);
    // Loss counters exist at 0 before any loss, so an alert on their increase fires on the first.
    for reason in ["ringbuf_full", "spool_full", "disk_full", "agent_crash"] {
        let l = format!("{{reason=\"{reason}\"}}");
        assert_eq!(
            metric(&m, &format!("audit_lost_records_total{l}")),
            0.0,
            "{reason}"
        );
        assert_eq!(
            metric(&m, &format!("audit_gap_records_total{l}")),
            0.0,
            "{reason}"
        );
    }
    assert!(metric(&m, "audit_last_upload_timestamp_seconds") > 1.7e9);
    assert!(metric(&m, "audit_delivery_latency_seconds_count") >= 2.0);
    for name in [
        "audit_spool_bytes",
        "audit_spool_pending_batches",
        "audit_oldest_unsent_age_seconds",
        "audit_pipeline_batch_records",
        "audit_upload_latency_seconds_count",
    ] {
        metric(&m, name);
    }
    // The bounded tables that grow with what the host runs report their size (the processes
    // have exited: their images are gone; what they were attributed to stays; spare files are
    // taken as soon as new segments need them).
    for table in [
        "process_images",
        "lineage",
        "cgroup_agents",
        "serialized_actors",
        "spare_files",
    ] {
        let entries = metric(&m, &format!("audit_table_entries{{table=\"{table}\"}}"));
        assert!(
            ["process_images", "spare_files"].contains(&table) || entries >= 1.0,
            "{table}: {entries}"
        );
        metric(
            &m,
            &format!("audit_table_evictions_total{{table=\"{table}\"}}"),
        );
    }
    assert!(
        m.contains("audit_build_info{version=\"0.1.0\",policy_version=\"sha256:"),
        "{m}"
    );
    assert_both_expositions_parse(port);
    assert_every_metric_is_documented(&m);
    let _ = agent.stop();
}

#[test]
fn readiness_holds_while_a_healthy_store_is_idle() {
    let g = Garage::shared();
    g.bucket("idle");
    let cg = TestCgroup::new("idle");
    let dir = Scratch::new("idle");
    let port = free_port();
    // A staleness far shorter than the idle probe's period: readiness must come from the
    // store's answers, not from how recently something was uploaded.
    let cfg = format!(
        "[[agents]]\nid = \"i\"\ncgroup = [\"{}\"]\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nstore_staleness_s = 1\n\n\
         [export]\nstore = \"s3://idle/t\"\nendpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\nspool_dir = \"{}\"\n",
        cg.rel,
        g.endpoint(),
        dir.path("spool").display()
    );
    let agent = daemon(&cfg, &dir, &g.env());
    wait_until("/readyz to report ready", || {
        http_get(port, "/readyz").0 == 200
    });
    // Nothing to upload from now on: sampled every 200 ms for 30 s (two idle probes).
    let mut not_ready = Vec::new();
    for _ in 0..150 {
        let (code, body) = http_get(port, "/readyz");
        if code != 200 {
            not_ready.push(body);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = agent.stop();
    assert!(
        not_ready.is_empty(),
        "{} of 150 samples not ready: {not_ready:?}",
        not_ready.len()
    );
}

#[test]
fn readiness_fails_while_the_store_is_unreachable_but_liveness_holds() {
    let cg = TestCgroup::new("unready");
    let dir = Scratch::new("unready");
    let port = free_port();
    let cfg = format!(
        "[[agents]]\nid = \"u\"\ncgroup = [\"{}\"]\n\n[metrics]\nlisten = \"127.0.0.1:{port}\"\nstore_staleness_s = 1\n\n\
         [export]\nstore = \"s3://nobucket/t\"\nendpoint = \"http://127.0.0.1:1\"\nregion = \"garage\"\nallow_http = true\nspool_dir = \"{}\"\n",
        cg.rel,
        dir.path("spool").display()
    );
    let env = vec![
        ("AWS_ACCESS_KEY_ID", "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "y".to_string()),
    ];
    let agent = daemon(&cfg, &dir, &env);
    wait_until("/readyz to report the unreachable store", || {
        http_get(port, "/readyz").0 == 503
    });
    let (code, body) = http_get(port, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("store not reachable"), "{body}");
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/nope").0, 404);
    let _ = agent.stop();
}

fn wait_log(agent: &mut Agent, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.stderr().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` x{count} in:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_on_sighup_and_file_change_applies_new_rules_and_rejects_invalid_ones() {
    let cg = TestCgroup::new("reload");
    let dir = Scratch::new("reload");
    let target = "/nonexistent-reload/x";
    let cfg = |decision: &str| {
        format!(
            "[[agents]]\nid = \"r\"\ncgroup = [\"{}\"]\n\n[[rules]]\nid = \"x-rule\"\nresources = [\"/nonexistent-reload/**\"]\ndecision = \"{decision}\"\n",
            cg.rel
        )
    };
    let path = dir.path("config.toml");
    std::fs::write(&path, cfg("allow")).unwrap();
    let out = dir.path("records.json");
    let mut agent = Agent::start([
        "watch",
        "--format",
        "json",
        "--config",
        path.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    let r1 = cg.workload(["open", target]);
    std::fs::write(&path, cfg("deny")).unwrap();
    agent.signal(libc::SIGHUP);
    wait_log(&mut agent, "configuration reloaded", 1);
    let r2 = cg.workload(["open", target]);
    // An invalid file is rejected; the deny rule stays in force.
    std::fs::write(&path, "[[rules]]\nid = \"broken\"\n").unwrap();
    agent.signal(libc::SIGHUP);
    wait_log(&mut agent, "configuration reload rejected", 1);
    let r3 = cg.workload(["open", target]);
    // A content change alone (no signal) is picked up too.
    std::fs::write(&path, cfg("review")).unwrap();
    wait_log(&mut agent, "configuration reloaded", 2);
    let r4 = cg.workload(["open", target]);
    let log = agent.stderr();
    let _ = agent.stop();
    assert!(
        log.contains("missing field `decision`"),
        "the rejection says why:\n{log}"
    );
    let records = parse_lines(&std::fs::read(&out).unwrap());
    let verdict = |rep: &[Value]| {
        let r = one(&records, pid_of(rep), "file.open", target);
        (
            r["policy"]["decision"].as_str().unwrap().to_string(),
            r["policy"]["version"].as_str().unwrap().to_string(),
        )
    };
    let (d1, v1) = verdict(&r1);
    let (d2, v2) = verdict(&r2);
    let (d3, v3) = verdict(&r3);
    let (d4, v4) = verdict(&r4);
    assert_eq!(
        (d1.as_str(), d2.as_str(), d3.as_str(), d4.as_str()),
        ("allow", "deny", "deny", "review")
    );
    assert!(v1 != v2 && v2 == v3 && v3 != v4, "{v1} {v2} {v3} {v4}");
    assert!(
        log.contains(&format!("\"policy_version\":\"{v2}\"")),
        "the new version is logged:\n{log}"
    );
}

#[test]
fn kubernetes_pods_attribute_records_and_only_selected_pods_are_watched() {
    let root = TestCgroup::new("k8s");
    let dir = Scratch::new("k8s");
    let (uid_a, uid_b, uid_c) = (
        "11111111-aaaa-4bbb-8ccc-000000000001",
        "11111111-aaaa-4bbb-8ccc-000000000002",
        "11111111-aaaa-4bbb-8ccc-000000000003",
    );
    let cid = |n: char| n.to_string().repeat(64);
    // cgroups as the kubelet's systemd driver lays them out (containerd).
    let cg = |uid: &str, c: char| {
        root.child(&format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
            uid.replace('-', "_"),
            cid(c)
        ))
    };
    let api = FakeApi::start(vec![
        pod(
            uid_a,
            "support-7f9c",
            "support",
            "bot",
            json!({"app": "support"}),
            ("main", &cid('a')),
        ),
        pod(
            uid_c,
            "other-1",
            "other",
            "default",
            json!({"app": "other"}),
            ("main", &cid('c')),
        ),
    ]);
    let token = dir.path("token");
    // As Kubernetes projects it: the token alone, no trailing newline.
    std::fs::write(&token, "s3cr3t-token").unwrap();
    let (a, c) = (cg(uid_a, 'a'), cg(uid_c, 'c'));
    let cfg = dir.path("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[k8s]\nenabled = \"on\"\napi_server = \"{}\"\ntoken_file = \"{}\"\nnode_name = \"node-1\"\nagent_id_label = \"ai.agent/id\"\n\n\
             [[agents]]\nid = \"support-bot\"\nname = \"Support bot\"\nk8s_namespace = [\"support\"]\nk8s_service_account = [\"bot\"]\n",
            api.url(),
            token.display()
        ),
    )
    .unwrap();
    let out = dir.path("records.json");
    let mut agent = Agent::start([
        "watch",
        "--format",
        "json",
        "--config",
        cfg.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    // The pods are listed, and the selected pod's cgroup joins the kernel's watch set.
    agent.wait_for_stderr("kubernetes pods listed", Duration::from_secs(60));
    agent.wait_for_stderr("cgroup watch set changed", Duration::from_secs(60));
    // A configuration that selects agents only by Kubernetes fields reloads like any other, and
    // pods keep their identity after it.
    agent.signal(libc::SIGHUP);
    agent.wait_for_stderr("configuration reloaded", Duration::from_secs(60));
    assert!(
        !agent.stderr().contains("reload rejected"),
        "{}",
        agent.stderr()
    );
    let ra = a.workload(["open", "/etc/hostname"]);
    let rc = c.workload(["open", "/etc/hostname"]);
    // A pod that appears later (watch), naming its agent with a label.
    api.add(pod(
        uid_b,
        "coder-x-1",
        "dev",
        "default",
        json!({"ai.agent/id": "coder-x"}),
        ("worker", &cid('b')),
    ));
    let b = cg(uid_b, 'b');
    agent.wait_for_stderr_count("cgroup watch set changed", 2, Duration::from_secs(60));
    let rb = b.workload(["open", "/etc/hostname"]);
    let records = {
        let _ = agent.stop();
        parse_lines(&std::fs::read(&out).unwrap())
    };
    let r = one(&records, pid_of(&ra), "file.open", "/etc/hostname");
    assert_eq!(r["agent"]["id"], "support-bot");
    assert_eq!(r["agent"]["matched_by"], "k8s");
    assert_eq!(
        r["subject"]["k8s"],
        json!({"namespace": "support", "pod": "support-7f9c", "pod_uid": uid_a, "container": "main",
               "service_account": "bot", "labels": {"app": "support"}})
    );
    assert_eq!(r["subject"]["container_id"], cid('a').as_str());
    let r = one(&records, pid_of(&rb), "file.open", "/etc/hostname");
    assert_eq!(r["agent"]["id"], "coder-x");
    assert_eq!(r["agent"]["matched_by"], "k8s_label");
    assert_eq!(r["subject"]["k8s"]["container"], "worker");
    assert!(
        records.iter().all(|r| r["process"]["pid"] != pid_of(&rc)),
        "an unselected pod is not watched"
    );
    let seen = api.seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(
            |(line, auth)| line.contains("fieldSelector=spec.nodeName%3Dnode-1")
                && auth == "bearer s3cr3t-token"
        ),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|(line, _)| line.contains("watch=true")),
        "{seen:?}"
    );
    // Pod records in the SIEM formats: OCSF's container profile and ECS's container and
    // orchestrator fields validate against the official definitions.
    let pods: Vec<Value> = records
        .iter()
        .filter(|r| r["subject"]["k8s"].is_object())
        .cloned()
        .collect();
    let ocsf = rendered_as(&dir, &pods, "ocsf");
    audit_tests::validators::assert_ocsf_valid(&ocsf.iter().collect::<Vec<_>>());
    let e = ocsf
        .iter()
        .find(|e| e["actor"]["process"]["pid"] == pid_of(&ra))
        .unwrap();
    assert_eq!(
        e["actor"]["process"]["container"],
        json!({"uid": cid('a'), "name": "main", "orchestrator": "Kubernetes", "pod_uuid": uid_a})
    );
    let ecs = rendered_as(&dir, &pods, "ecs");
    audit_tests::validators::assert_ecs_valid(&ecs.iter().collect::<Vec<_>>());
    let d = ecs
        .iter()
        .find(|d| d["process"]["pid"] == pid_of(&ra))
        .unwrap();
    assert_eq!(d["container"], json!({"id": cid('a'), "name": "main"}));
    assert_eq!(
        d["orchestrator"],
        json!({"type": "kubernetes", "namespace": "support",
               "resource": {"type": "pod", "name": "support-7f9c", "id": uid_a}})
    );
}

/// `records` as `audit-agent query --format FORMAT` renders them: stored in a directory as one
/// (unlisted) object, read back with `--include-unlisted`.
fn rendered_as(dir: &Scratch, records: &[Value], format: &str) -> Vec<Value> {
    use std::io::Write as _;
    let store = dir.path(&format!("render-{format}"));
    let key = store.join("v1/agent_id=x/dt=2026-01-01/hour=00/h-b-00000000000000000001.ndjson.gz");
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for r in records {
        writeln!(gz, "{r}").unwrap();
    }
    std::fs::write(&key, gz.finish().unwrap()).unwrap();
    let o = Command::new(agent_bin())
        .args([
            "query",
            &format!("file://{}", store.display()),
            "--include-unlisted",
        ])
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    parse_lines(&o.stdout)
}

#[test]
fn without_kubernetes_records_have_no_k8s_fields_and_nothing_fails() {
    let cg = TestCgroup::new("nok8s");
    let agent = Agent::watch_cgroup(&cg);
    let r = cg.workload(["open", "/etc/hostname"]);
    let records = agent.stop();
    let rec = one(&records, pid_of(&r), "file.open", "/etc/hostname");
    assert!(rec["subject"].get("k8s").is_none());
}
