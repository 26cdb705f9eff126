//! SIEM outputs, checked by tools their users run and none written here: OCSF against the
//! official 1.3.0 schema (`tests/validators/ocsf.py`), for every action the product records, in
//! and out of containers, and for gap records.

use std::{
    collections::BTreeSet,
    os::unix::io::AsRawFd as _,
    process::{Command, Stdio},
};

use audit_tests::{garage::Garage, trail::Trail, *};
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
        // A file in flight on the socket it starts with as fd 8 (`write_trail`); fd 3 is the
        // first open's; then it claims to be another program.
        vec!["recv-fd".into(), "8".into()],
        vec!["sendfile".into(), "3".into(), d("copied")],
        vec!["set-exe-map".into(), "/usr/sbin/agetty".into()],
        vec!["move-cgroup".into(), other.fs.display().to_string()],
    ] {
        args.extend(change);
    }
    // A file under an overlay (`resource.file.real`), in a mount namespace of the workload's own
    // (layers of their own per run: an upper layer stays in use until its overlay is gone).
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let layers = ["lower", "upper", "work", "merged"].map(|l| d(&format!("overlay-{run}/{l}")));
    for l in &layers {
        std::fs::create_dir_all(l).unwrap();
    }
    std::fs::write(format!("{}/file", layers[0]), b"l").unwrap();
    args.extend(["unshare-mount".into(), "mount-overlay".into()]);
    args.extend(layers.iter().cloned());
    args.extend(["open".into(), format!("{}/file", layers[3])]);
    // Last: the dynamic loader runs a program no exec names (`process.map_exec`).
    args.extend(["exec", "/lib64/ld-linux-x86-64.so.2", "/bin/true"].map(String::from));
    args
}

/// A lookup, a TLS hello and an HTTP request (`network.dns`, `network.tls`, `network.http`).
fn every_network_record(cg: &TestCgroup, resolver: std::net::Ipv4Addr, server: std::net::Ipv4Addr) {
    let (r, s) = (resolver.to_string(), server.to_string());
    net::netclient(cg, &["dns", &r, "api.example.test", "A", "udp"]);
    net::netclient(cg, &["hello", &s, "8443", "api.example.test", "1"]);
    net::netclient(
        cg,
        &[
            "raw",
            &s,
            "8080",
            "GET /v1/x?y=1 HTTP/1.1\\r\\nHost: api.example.test\\r\\n\\r\\n",
        ],
    );
}

/// A claim with every field, and one refused (`agent.claim`), filed from `cg` through
/// `audit-agent claim` on the daemon's socket.
fn every_claim(cg: &TestCgroup, socket: &std::path::Path) {
    let good = r#"{"claim": "audit-agent/v1", "phase": "complete", "session": "s", "call_id": "c1",
        "tool": "deploy", "cwd": "/srv", "success": false, "error": "boom",
        "started": "2026-12-05T10:00:00Z", "ended": "2026-12-05T10:00:02Z",
        "effects": [{"exec": "make", "background": true}, {"read": "/a"}, {"write": "/b"},
                    {"scan": "/c"}, {"fetch": "https://api.example.test/x"}]}"#;
    for (payload, ok) in [(good, true), ("not json", false)] {
        let mut child = cg
            .command(agent_bin())
            .arg("claim")
            .env("AUDIT_AGENT_CLAIMS_SOCKET", socket)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .unwrap();
        assert_eq!(child.wait().unwrap().success(), ok, "{payload}");
    }
}

/// A trail the daemon wrote with every action, in and out of containers and pods, a restart's
/// gap, and OCSF copies.
struct Written {
    _dir: Scratch,
    url: String,
    env: Vec<(&'static str, String)>,
    trail: Trail,
}

/// The trail of `every_action` in a plain cgroup, a docker container and a Kubernetes pod, by
/// agent `support-bot`, written to `url`.
fn write_trail(tag: &str, url: String, garage: Option<&Garage>, trail: Trail) -> Written {
    let dir = Scratch::new(tag);
    let root = TestCgroup::new(tag);
    let plain = root.child("plain");
    let docker = root.child(&format!("docker-{}.scope", "ab".repeat(32)));
    let pod = root.child(&format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod3f2a9c1e_1b2c_4d5e_8f90_0a1b2c3d4e5f.slice/cri-containerd-{}.scope",
        "cd".repeat(32)
    ));
    let elsewhere = root.child("elsewhere");
    let endpoint = garage
        .map(|g| {
            format!(
                "endpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\n",
                g.endpoint()
            )
        })
        .unwrap_or_default();
    let env = garage.map(Garage::env).unwrap_or_default();
    let cfg = dir.path("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[[agents]]
id = "support-bot"
name = "Support bot"
workflow = "customer-support"
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

[claims]
socket = "{socket}"

[export]
store = "{url}"
{endpoint}spool_dir = "{spool}"
segment_max_age_ms = 300
ocsf = true
ecs = true

[export.security_lake]
source = "audit-agent"
region = "eu-west-1"
account_id = "123456789012"
"#,
            root = root.rel,
            spool = dir.path("spool").display(),
            socket = dir.path("claims.sock").display(),
        ),
    )
    .unwrap();
    let start = || {
        let mut cmd = Command::new(agent_bin());
        cmd.args(["run", "--config", cfg.to_str().unwrap()]);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        Agent::start_with(&mut cmd)
    };
    let agent = start();
    let mut target = Command::new("sleep")
        .arg("60")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Peers for the network records: a resolver and a server that takes any bytes.
    let net = net::Net::new(tag);
    let (resolver, server) = (net.ip(1), net.ip(2));
    let _dns = net::dnsd(resolver, &[&format!("api.example.test={server}")], None);
    let _tls = net::sink_server(std::net::SocketAddr::new(server.into(), 8443));
    let _http = net::http_server(std::net::SocketAddr::new(server.into(), 8080), &dir.0);
    for cg in [&plain, &docker, &pod] {
        let args = every_action(&dir, &elsewhere, agent.pid(), target.id());
        // Started with a file of ours (held) and a socket with one in flight (received).
        let held = std::fs::File::open(dir.path("b")).unwrap();
        let (ours, theirs) = unix_pair();
        send_fd(&ours, held.as_raw_fd());
        let report = cg.workload_with_fds(&[(held.as_raw_fd(), 9), (theirs.as_raw_fd(), 8)], &args);
        assert!(!report.is_empty(), "the workload ran in {}", cg.rel);
        every_network_record(cg, resolver, server);
        every_claim(cg, &dir.path("claims.sock"));
    }
    let _ = target.kill();
    let _ = target.wait();
    let _ = agent.stop();
    // A restart: the time the agent was down is a gap record.
    let _ = start().stop();
    Written {
        _dir: dir,
        url,
        env,
        trail,
    }
}

#[test]
fn ocsf_of_every_action_and_gap_validates_against_the_official_schema() {
    let d = Scratch::new("siem-ocsf-store");
    let store = d.path("store");
    let w = write_trail(
        "siem-ocsf",
        format!("file://{}", store.display()),
        None,
        Trail::dir(&store),
    );
    let objects = w.trail.objects("ocsf");
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
        (1007, 2),  // exit
        (1007, 3),  // process.access
        (1007, 99), // signal, cgroup move, io_uring setup, 32-bit call
        (1001, 14), // open, held and received files
        (1001, 2),  // copy
        (1001, 1),  // link, symlink, mkdir
        (1001, 3),  // truncate
        (1001, 4),  // delete, rmdir
        (1001, 5),  // rename
        (1001, 7),  // chmod, chown
        (1005, 1),  // map_exec: what the dynamic loader maps
        (4001, 1),  // connect
        (4001, 6),  // send, TLS hello
        (4002, 3),  // HTTP GET
        (4003, 6),  // DNS query and answer
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
    // The same records as ECS documents: every field an ECS field of its type (or under
    // `audit_agent.*`), categorization as ECS allows it, the AI agent in `gen_ai.agent`.
    let ecs = w.trail.objects("ecs");
    let docs: Vec<&Value> = ecs.values().flatten().collect();
    assert_eq!(docs.len(), events.len());
    audit_tests::validators::assert_ecs_valid(&docs);
    let kinds: BTreeSet<(String, String)> = docs
        .iter()
        .map(|d| {
            (
                d["event"]["kind"].as_str().unwrap().to_string(),
                d["event"]["category"][0]
                    .as_str()
                    .unwrap_or("-")
                    .to_string(),
            )
        })
        .collect();
    for want in [
        ("event", "process"),
        ("event", "file"),
        ("event", "network"),
        ("event", "library"),
        ("pipeline_error", "-"),
    ] {
        assert!(
            kinds.contains(&(want.0.into(), want.1.into())),
            "{want:?} in {kinds:?}"
        );
    }
    assert!(docs.iter().all(|d| d.get("agent").is_none()));
    let in_pod = docs
        .iter()
        .find(|d| d["container"]["id"] == "cd".repeat(32))
        .expect("a document of the pod's container");
    assert_eq!(in_pod["gen_ai"]["agent"]["id"], "support-bot");
    // (`orchestrator.*` needs the pod from the API server: tests/tests/ops.rs has pods.)
    check_security_lake(&w, &events);
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

/// `audit-agent query` of `w` with `args`, as JSON records.
fn query(w: &Written, args: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["query", &w.url]).args(args);
    if !args.contains(&"--format") {
        cmd.args(["--format", "json"]);
    }
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    parse_lines(&o.stdout)
}

/// A query the docs show: its tree (`native`, `ocsf`), where it runs (`file`, `s3`), its SQL.
struct DocQuery {
    tree: String,
    place: String,
    sql: String,
}

/// Every SQL block of `doc` that follows a `<!-- tested: duckdb TREE PLACE -->` line.
fn doc_queries(doc: &str) -> Vec<DocQuery> {
    let text = std::fs::read_to_string(workspace_root().join(doc)).unwrap();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("<!-- tested: duckdb ") {
        let after = &rest[at + "<!-- tested: duckdb ".len()..];
        let (tags, body) = after.split_once("-->").unwrap();
        let mut tags = tags.split_whitespace().map(String::from);
        let sql_start = body.find("```sql\n").unwrap() + "```sql\n".len();
        let sql_end = sql_start + body[sql_start..].find("```").unwrap();
        out.push(DocQuery {
            tree: tags.next().unwrap(),
            place: tags.next().unwrap(),
            sql: body[sql_start..sql_end].to_string(),
        });
        rest = &body[sql_end..];
    }
    out
}

/// Runs SQL in real DuckDB (`tests/validators/duckdb_sql.py`): (columns, rows).
fn duckdb(sql: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let out = audit_tests::validators::duckdb_sql(sql);
    let v: Value = serde_json::from_str(&out).unwrap();
    let columns = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let rows = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().clone())
        .collect();
    (columns, rows)
}

/// Counts of `records` by the values `key` gives, as sorted (key..., count) rows.
fn grouped(records: &[Value], key: impl Fn(&Value) -> Vec<Value>) -> Vec<Vec<Value>> {
    let mut counts = std::collections::BTreeMap::<String, (Vec<Value>, u64)>::new();
    for r in records {
        let k = key(r);
        counts
            .entry(serde_json::to_string(&k).unwrap())
            .or_insert((k, 0))
            .1 += 1;
    }
    let mut rows: Vec<Vec<Value>> = counts
        .into_values()
        .map(|(mut k, n)| {
            k.push(n.into());
            k
        })
        .collect();
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

#[test]
fn every_duckdb_query_the_docs_show_answers_like_audit_agent_query() {
    let g = Garage::shared();
    g.bucket("siem-duckdb");
    let w = write_trail(
        "siem-duckdb",
        "s3://siem-duckdb/trail".into(),
        Some(g),
        Trail {
            store: g.client("siem-duckdb"),
            prefix: "trail".into(),
        },
    );
    // The same trail in a directory, for the queries of a local store.
    let local = Scratch::new("siem-duckdb-local");
    let local_store = local.path("audit-trail");
    w.trail.copy_to(&Trail::dir(&local_store));

    run_documented_commands(&w);
    let queries = doc_queries("docs/storage.md");
    assert_eq!(queries.len(), 4, "the docs' DuckDB queries");
    let env = |k: &str| w.env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
    for q in &queries {
        let sql = match q.place.as_str() {
            "file" => q
                .sql
                .replace("'audit-trail/", &format!("'{}/", local_store.display())),
            "s3" => q
                .sql
                .replace("s3://audit/trail", "s3://siem-duckdb/trail")
                .replace("'GK...'", &format!("'{}'", env("AWS_ACCESS_KEY_ID")))
                .replace(
                    "SECRET '...'",
                    &format!("SECRET '{}'", env("AWS_SECRET_ACCESS_KEY")),
                )
                .replace("127.0.0.1:3900", g.endpoint().trim_start_matches("http://")),
            other => panic!("unknown place {other}"),
        };
        let (columns, rows) = duckdb(&sql);
        let expected = expected_answer(&w, &columns);
        assert_eq!(sorted(rows), expected, "{} {}: {sql}", q.tree, q.place);
    }
}

/// What `audit-agent query` says each documented query must answer, told apart by its columns.
fn expected_answer(w: &Written, columns: &[String]) -> Vec<Vec<Value>> {
    let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
    match cols[..] {
        ["time", "action", "path", "address", "decision", "rule"] => {
            let recs = query(
                w,
                &["--agent", "support-bot", "--protected", "--since", "1d"],
            );
            assert!(!recs.is_empty());
            sorted(
                recs.iter()
                    .map(|r| {
                        vec![
                            r["time"].clone(),
                            r["action"].clone(),
                            r["resource"]["path"].clone(),
                            r["resource"]["address"].clone(),
                            r["policy"]["decision"].clone(),
                            r["policy"]["rule"].clone(),
                        ]
                    })
                    .collect(),
            )
        }
        ["agent_id", "rule", "denied"] => grouped(&query(w, &["--decision", "deny"]), |r| {
            vec![r["agent"]["id"].clone(), r["policy"]["rule"].clone()]
        }),
        ["reason", "lost", "since", "until"] => {
            let gaps = query(w, &["--action", "audit.gap"]);
            assert_eq!(gaps.len(), 1, "the restart");
            let g = &gaps[0]["gap"];
            vec![vec![
                g["reason"].clone(),
                g["lost"].clone(),
                g["from"].clone(),
                g["to"].clone(),
            ]]
        }
        ["class_name", "agent", "denied"] => {
            let denied = query(
                w,
                &["--decision", "deny", "--format", "ocsf", "--since", "1d"],
            );
            grouped(&denied, |e| {
                vec![e["class_name"].clone(), e["actor"]["user"]["uid"].clone()]
            })
        }
        _ => panic!("a documented query this test does not know: {columns:?}"),
    }
}

/// A Hive type, as Athena's DDL writes it.
#[derive(Debug)]
enum Hive {
    Scalar(String),
    Struct(Vec<(String, Hive)>),
    Array(Box<Hive>),
    Map(Box<Hive>),
}

/// Parses one Hive type from the start of `s`; returns it and the rest.
fn hive_type(s: &str) -> (Hive, &str) {
    let s = s.trim_start();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("struct<") {
        let mut rest = &s["struct<".len()..];
        let mut fields = Vec::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('>') {
                return (Hive::Struct(fields), r);
            }
            let (name, r) = rest.split_once(':').expect("field:type");
            let (t, r) = hive_type(r);
            fields.push((name.trim().trim_matches('`').to_string(), t));
            rest = r.trim_start().strip_prefix(',').unwrap_or(r);
        }
    }
    if lower.starts_with("array<") {
        let (t, r) = hive_type(&s["array<".len()..]);
        return (
            Hive::Array(Box::new(t)),
            r.trim_start().strip_prefix('>').unwrap(),
        );
    }
    if lower.starts_with("map<") {
        let (_, r) = hive_type(&s["map<".len()..]);
        let (v, r) = hive_type(r.trim_start().strip_prefix(',').unwrap());
        return (
            Hive::Map(Box::new(v)),
            r.trim_start().strip_prefix('>').unwrap(),
        );
    }
    // A scalar ends at the next separator, after its parameters: `decimal(20,0)`.
    let params = s
        .find('(')
        .filter(|p| s[..*p].chars().all(char::is_alphanumeric));
    let from = params.map_or(0, |p| p + s[p..].find(')').unwrap());
    let end = from
        + s[from..]
            .find([',', '>', ')', '\n'])
            .unwrap_or(s.len() - from);
    let end = if params.is_some() {
        end.max(from + 1)
    } else {
        end
    };
    (
        Hive::Scalar(s[..end].trim().to_ascii_lowercase()),
        &s[end..],
    )
}

/// The columns of the first `CREATE EXTERNAL TABLE` after a `<!-- tested: athena TREE -->` line.
fn athena_columns(doc: &str, tree: &str) -> Vec<(String, Hive)> {
    let text = std::fs::read_to_string(workspace_root().join(doc)).unwrap();
    let at = text
        .find(&format!("<!-- tested: athena {tree} -->"))
        .unwrap_or_else(|| panic!("no Athena DDL for {tree} in {doc}"));
    let ddl = &text[at..];
    let mut rest = &ddl[ddl.find('(').unwrap() + 1..];
    let mut cols = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |x| x.1); // a comment line
            continue;
        }
        if rest.starts_with(')') {
            return cols;
        }
        let (name, r) = rest.split_once(char::is_whitespace).unwrap();
        let (t, r) = hive_type(r);
        cols.push((name.trim_matches('`').to_string(), t));
        rest = r.trim_start().strip_prefix(',').unwrap_or(r);
    }
}

/// Where a JSON value at `path` does not fit the declared type (or is not declared).
fn undeclared(path: &str, v: &Value, t: Option<&Hive>, out: &mut BTreeSet<String>) {
    let Some(t) = t else {
        out.insert(format!("{path}: not declared"));
        return;
    };
    match (v, t) {
        (Value::Null, _) => {}
        (Value::Object(m), Hive::Struct(fields)) => {
            for (k, x) in m {
                let ft = fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|f| &f.1);
                undeclared(&format!("{path}.{k}"), x, ft, out);
            }
        }
        (Value::Object(m), Hive::Map(vt)) => {
            for (k, x) in m {
                undeclared(&format!("{path}[{k}]"), x, Some(vt), out);
            }
        }
        (Value::Array(a), Hive::Array(et)) => {
            for x in a {
                undeclared(&format!("{path}[]"), x, Some(et), out);
            }
        }
        (Value::String(_), Hive::Scalar(s)) if s == "string" => {}
        // The OpenX JSON SerDe keeps an object or array as its JSON text in a string column.
        (Value::Object(_) | Value::Array(_), Hive::Scalar(s)) if s == "string" => {}
        (Value::Bool(_), Hive::Scalar(s)) if s == "boolean" => {}
        (Value::Number(n), Hive::Scalar(s)) => {
            let fits = match s.as_str() {
                "int" => n.as_i64().is_some_and(|x| i32::try_from(x).is_ok()),
                "bigint" => n.as_i64().is_some(),
                "double" | "decimal(20,0)" => true,
                _ => false,
            };
            if !fits {
                out.insert(format!("{path}: {n} is not {s}"));
            }
        }
        (v, t) => {
            out.insert(format!("{path}: {v} does not fit {t:?}"));
        }
    }
}

fn assert_ddl_declares(doc: &str, tree: &str, records: &[&Value]) {
    let cols = athena_columns(doc, tree);
    let table = Hive::Struct(cols);
    let mut missing = BTreeSet::new();
    for r in records {
        undeclared("", r, Some(&table), &mut missing);
    }
    assert!(
        missing.is_empty(),
        "the {tree} Athena DDL in {doc} misses what records hold:\n{}",
        missing.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_athena_ddl_declares_every_field_the_records_hold() {
    let d = Scratch::new("siem-athena-store");
    let store = d.path("store");
    let w = write_trail(
        "siem-athena",
        format!("file://{}", store.display()),
        None,
        Trail::dir(&store),
    );
    let native = w.trail.objects("v1");
    assert_ddl_declares(
        "docs/storage.md",
        "native",
        &native.values().flatten().collect::<Vec<_>>(),
    );
    let ocsf = w.trail.objects("ocsf");
    assert_ddl_declares(
        "docs/storage.md",
        "ocsf",
        &ocsf.values().flatten().collect::<Vec<_>>(),
    );
}

/// Field paths the record tables of `docs/schema.md` document (first cells, e.g.
/// `` `subject.k8s.namespace`, `.pod` ``; a bare or dotted suffix continues the previous path).
fn documented_fields() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join("docs/schema.md")).unwrap();
    let end = text.find("## OCSF").unwrap();
    let mut out = BTreeSet::new();
    for line in text[..end].lines().filter(|l| l.starts_with("| `")) {
        let cell = line.split('|').nth(1).unwrap();
        let mut parent = String::new();
        for token in cell.split('`').skip(1).step_by(2) {
            let path = if let Some(rel) = token.strip_prefix('.') {
                format!("{parent}.{rel}")
            } else if token.contains('.') || parent.is_empty() {
                token.to_string()
            } else {
                format!("{parent}.{token}")
            };
            parent = path
                .rsplit_once('.')
                .map_or(String::new(), |x| x.0.to_string());
            out.insert(path);
        }
    }
    out
}

/// Whether `path` (`a.b.c`) is a column or a struct field of the DDL.
fn declared(cols: &[(String, Hive)], path: &str) -> bool {
    let mut fields = cols;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let Some((_, t)) = fields.iter().find(|(n, _)| n == p) else {
            return false;
        };
        let t = match t {
            Hive::Array(e) => e.as_ref(),
            t => t,
        };
        match t {
            Hive::Struct(f) => fields = f,
            _ => return parts.peek().is_none() || matches!(t, Hive::Map(_)),
        }
    }
    true
}

#[test]
fn the_athena_ddl_declares_every_documented_field() {
    let cols = athena_columns("docs/storage.md", "native");
    let fields = documented_fields();
    for f in [
        "subject.k8s.pod",
        "subject.k8s.labels",
        "gap.by_action",
        "resource.new_path_source",
        "resource.file",
        "policy.via_inode",
    ] {
        assert!(
            fields.contains(f),
            "{f} not found in the docs' tables: {fields:?}"
        );
    }
    let missing: Vec<&String> = fields.iter().filter(|f| !declared(&cols, f)).collect();
    assert!(
        missing.is_empty(),
        "documented but not in the Athena DDL: {missing:?}"
    );
}

/// The Security Lake objects: one OCSF class per object and per custom source, the Security Lake
/// layout, ZSTD, rows sorted by time, one schema per class; read back by pyarrow, their rows are
/// the OCSF events (valid against the official schema); `verify` re-hashes them.
fn check_security_lake(w: &Written, events: &[&Value]) {
    let keys: Vec<String> = w
        .trail
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("ext/"))
        .collect();
    assert!(!keys.is_empty(), "no Security Lake objects");
    let dir = Scratch::new("siem-lake-read");
    let mut paths = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let parts: Vec<&str> = k.split('/').collect();
        assert_eq!(parts.len(), 6, "{k}");
        assert!(parts[1].starts_with("audit-agent-"), "{k}");
        assert_eq!(parts[2], "region=eu-west-1");
        assert_eq!(parts[3], "accountId=123456789012");
        assert!(parts[4].starts_with("eventDay=") && parts[4].len() == "eventDay=".len() + 8);
        assert!(parts[5].ends_with(".parquet"));
        let p = dir.path(&format!("{i}.parquet"));
        std::fs::write(&p, w.trail.get(k)).unwrap();
        paths.push(p);
    }
    let files = audit_tests::validators::read_parquet(&paths);
    let source_class = |source: &str| match source.trim_start_matches("audit-agent-") {
        "file-activity" => 1001,
        "module-activity" => 1005,
        "process-activity" => 1007,
        "network-activity" => 4001,
        "http-activity" => 4002,
        "dns-activity" => 4003,
        "base-event" => 0,
        other => panic!("source {other}"),
    };
    let mut schemas = std::collections::BTreeMap::<i64, Value>::new();
    let mut rows_by_class = std::collections::BTreeMap::<i64, usize>::new();
    let mut rows = Vec::new();
    for (f, key) in files.iter().zip(&keys) {
        let class = source_class(key.split('/').nth(1).unwrap());
        assert_eq!(f["compression"], serde_json::json!(["ZSTD"]), "{key}");
        let file_rows = f["rows"].as_array().unwrap();
        assert!(
            file_rows.iter().all(|r| r["class_uid"] == class),
            "{key}: one class"
        );
        let times: Vec<i64> = file_rows
            .iter()
            .map(|r| r["time"].as_i64().unwrap())
            .collect();
        assert!(
            times.windows(2).all(|t| t[0] <= t[1]),
            "{key}: sorted by time"
        );
        let day = key.split("eventDay=").nth(1).unwrap();
        assert!(file_rows.iter().all(|r| {
            r["metadata"]["original_time"]
                .as_str()
                .unwrap()
                .replace('-', "")[..8]
                == day[..8]
        }));
        let known = schemas.entry(class).or_insert_with(|| f["schema"].clone());
        assert_eq!(known, &f["schema"], "one schema per class");
        *rows_by_class.entry(class).or_default() += file_rows.len();
        rows.extend(file_rows.iter().cloned());
    }
    let mut by_class = std::collections::BTreeMap::<i64, usize>::new();
    for e in events {
        *by_class
            .entry(e["class_uid"].as_i64().unwrap())
            .or_default() += 1;
    }
    assert_eq!(rows_by_class, by_class, "every OCSF event, once");
    assert!(schemas[&1001].get("file").is_some() && schemas[&4001].get("dst_endpoint").is_some());
    assert!(schemas[&0].get("actor").is_none());
    // Back to OCSF events: absent attributes are null columns, `unmapped` a map of JSON text.
    let restored: Vec<Value> = rows.into_iter().map(ocsf_of_row).collect();
    audit_tests::validators::assert_ocsf_valid(&restored.iter().collect::<Vec<_>>());
    // Covered by the chain: verify hashes them, and catches a changed one.
    let verify = |w: &Written| {
        let mut cmd = Command::new(agent_bin());
        cmd.args(["verify", &w.url]);
        for (k, v) in &w.env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (ok, out) = verify(w);
    assert!(ok, "{out}");
    let mut bytes = w.trail.get(&keys[0]);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    w.trail.put(&keys[0], bytes);
    let (ok, out) = verify(w);
    assert!(
        !ok && out.contains(&format!("modified object: {}", keys[0])),
        "{out}"
    );
}

/// A Parquet row as the OCSF event it was: nulls dropped, `unmapped` (key, JSON text) pairs as an
/// object.
fn ocsf_of_row(row: Value) -> Value {
    fn strip(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k, strip(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(strip).collect()),
            v => v,
        }
    }
    let mut e = strip(row);
    if let Some(pairs) = e.get("unmapped").and_then(Value::as_array).cloned() {
        let obj: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|p| {
                let (k, v) = (p[0].as_str().unwrap(), p[1].as_str().unwrap());
                (
                    k.to_string(),
                    serde_json::from_str(v).unwrap_or(Value::String(v.into())),
                )
            })
            .collect();
        e["unmapped"] = Value::Object(obj);
    }
    e
}

/// The blocks of `doc` after a `<!-- tested: TAG -->` line, with the fence's language.
fn tested_blocks(doc: &str, tag: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(doc)).unwrap();
    let marker = format!("<!-- tested: {tag} -->");
    text.split(&marker)
        .skip(1)
        .map(|after| {
            let start = after.find("```").unwrap();
            let body = &after[start + 3..];
            let body = &body[body.find('\n').unwrap() + 1..];
            body[..body.find("```").unwrap()].to_string()
        })
        .collect()
}

#[test]
fn the_siem_docs_configurations_pass_check_config() {
    let blocks = tested_blocks("docs/siem.md", "check-config");
    assert!(!blocks.is_empty());
    let d = Scratch::new("siem-docs-config");
    for (i, b) in blocks.iter().enumerate() {
        let p = d.path(&format!("{i}.toml"));
        std::fs::write(&p, b).unwrap();
        let o = Command::new(agent_bin())
            .args(["check-config", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{b}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Every `$ audit-agent ...` line the SIEM docs show runs against `w` (its URL for the docs').
fn run_documented_commands(w: &Written) {
    let blocks = tested_blocks("docs/siem.md", "audit-agent");
    let lines: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b.lines())
        .filter_map(|l| l.strip_prefix("$ audit-agent "))
        .collect();
    assert!(!lines.is_empty());
    for l in lines {
        let args: Vec<String> = l
            .replace("s3://audit/trail", &w.url)
            .split_whitespace()
            .map(String::from)
            .collect();
        let mut cmd = Command::new(agent_bin());
        cmd.args(&args);
        for (k, v) in &w.env {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "{l}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let docs = parse_lines(&o.stdout);
        assert!(!docs.is_empty(), "{l}: no output");
        audit_tests::validators::assert_ecs_valid(&docs.iter().collect::<Vec<_>>());
    }
}
