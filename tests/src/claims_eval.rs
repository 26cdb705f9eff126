//! The measured accuracy of claimed-vs-observed reconciliation: the labelled scenarios of
//! `tests/peers/claims_scenarios.json`, each played by `tests/peers/fake_agent.py` (a scripted
//! agent runtime that runs real commands, reads and writes real files, fetches from a real HTTP
//! server and reports its tool calls through real hooks, `audit-agent claim`) as one agent in its
//! own cgroup under the real daemon; then `audit-agent reconcile` of each agent, compared with
//! the labels. Used by `tests/tests/reconcile.rs` (which asserts the goals) and the
//! `claims-eval` binary (`cargo xtask bench` puts its table in docs/benchmarks.md).

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{Agent, Scratch, TestCgroup, agent_bin, net, parse_lines, wait_until, workspace_root};

/// What a claimed call was expected to be and what reconciliation said.
#[derive(Debug, Clone)]
pub struct CallCase {
    pub scenario: String,
    pub call: String,
    pub expected: String,
    pub got: String,
    pub reasons: Vec<String>,
}

/// What a protected record was expected to be (`explained` or `unexplained`) and what it got.
#[derive(Debug, Clone)]
pub struct RecordCase {
    pub scenario: String,
    pub file: String,
    pub record: String,
    pub expected: String,
    pub got: String,
}

/// Precision and recall of one finding, with the counts behind them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub true_pos: usize,
    pub false_pos: usize,
    pub false_neg: usize,
}

impl Score {
    fn of(pairs: impl Iterator<Item = (bool, bool)>) -> Self {
        let mut s = Self {
            true_pos: 0,
            false_pos: 0,
            false_neg: 0,
        };
        for (expected, got) in pairs {
            match (expected, got) {
                (true, true) => s.true_pos += 1,
                (false, true) => s.false_pos += 1,
                (true, false) => s.false_neg += 1,
                (false, false) => {}
            }
        }
        s
    }

    /// 1 when nothing was predicted (no false claim was made).
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    /// 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The findings of every scenario against its labels.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    pub calls: Vec<CallCase>,
    pub records: Vec<RecordCase>,
    /// Protected records no label covers, and labelled files no record showed (a broken
    /// scenario, not a finding).
    pub unlabelled: Vec<String>,
}

impl Evaluation {
    /// Protected records reported `unexplained`.
    pub fn unexplained(&self) -> Score {
        Score::of(
            self.records
                .iter()
                .map(|r| (r.expected == "unexplained", r.got == "unexplained")),
        )
    }

    /// Calls reported `unsubstantiated` or `contradicted`.
    pub fn flagged(&self) -> Score {
        let flagged = |o: &str| matches!(o, "unsubstantiated" | "contradicted");
        Score::of(
            self.calls
                .iter()
                .map(|c| (flagged(&c.expected), flagged(&c.got))),
        )
    }

    /// Every case whose finding is not its label, in words.
    pub fn failures(&self) -> Vec<String> {
        let calls = self.calls.iter().filter(|c| c.expected != c.got).map(|c| {
            format!(
                "{}: call {} expected {}, got {} ({})",
                c.scenario,
                c.call,
                c.expected,
                c.got,
                c.reasons.join("; ")
            )
        });
        let records = self
            .records
            .iter()
            .filter(|r| r.expected != r.got)
            .map(|r| {
                format!(
                    "{}: record {} of {} expected {}, got {}",
                    r.scenario, r.record, r.file, r.expected, r.got
                )
            });
        calls.chain(records).collect()
    }

    /// The table docs/benchmarks.md shows.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let scenarios: Vec<&str> = {
            let mut v: Vec<&str> = self.calls.iter().map(|c| c.scenario.as_str()).collect();
            v.extend(self.records.iter().map(|r| r.scenario.as_str()));
            v.dedup();
            v
        };
        let _ = writeln!(
            t,
            "{} scenarios, {} claimed calls, {} protected records.\n",
            {
                let mut s = scenarios.clone();
                s.sort_unstable();
                s.dedup();
                s.len()
            },
            self.calls.len(),
            self.records.len()
        );
        t.push_str("| finding | precision | recall | true pos. | false pos. | false neg. |\n");
        t.push_str("|---|---|---|---|---|---|\n");
        for (name, s) in [
            ("`unexplained` protected records", self.unexplained()),
            ("`unsubstantiated` or `contradicted` calls", self.flagged()),
        ] {
            let _ = writeln!(
                t,
                "| {name} | {:.2} | {:.2} | {} | {} | {} |",
                s.precision(),
                s.recall(),
                s.true_pos,
                s.false_pos,
                s.false_neg
            );
        }
        let exact = self.calls.iter().filter(|c| c.expected == c.got).count();
        let _ = writeln!(
            t,
            "\nCalls with exactly the labelled outcome: {exact} of {}.",
            self.calls.len()
        );
        let failures = self.failures();
        if failures.is_empty() {
            t.push_str("Every finding matched its label.\n");
        } else {
            t.push_str("Findings that did not match their label:\n");
            for f in failures {
                let _ = writeln!(t, "- {f}");
            }
        }
        t
    }
}

/// The scenario set, with `{port}` filled in.
fn scenarios(port: u16) -> Vec<Value> {
    let path = workspace_root().join("tests/peers/claims_scenarios.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("{port}", &port.to_string());
    let v: Value = serde_json::from_str(&text).expect("claims_scenarios.json is JSON");
    v["scenarios"].as_array().expect("scenarios").clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn agent_id(scenario: &str) -> String {
    format!("eval-{}", scenario.replace('_', "-"))
}

/// Writes the scenario's files into its work directory (`{w}` is that directory).
fn prepare(work: &Path, scenario: &Value) {
    std::fs::create_dir_all(work).expect("work dir");
    let w = work.to_str().expect("utf-8 path");
    for (name, content) in scenario["files"].as_object().into_iter().flatten() {
        let path = work.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        let content = content.as_str().expect("file content").replace("{w}", w);
        std::fs::write(&path, content).expect("write scenario file");
    }
}

/// The trail the scenarios left, kept until dropped.
pub struct Played {
    pub root: Scratch,
    /// The store's URL (`file://...`).
    pub store: String,
    /// When the daemon started (RFC 3339): every record is after it.
    pub since: String,
}

impl Played {
    /// The agent id of a scenario.
    pub fn agent(scenario: &str) -> String {
        agent_id(scenario)
    }
}

/// Runs every scenario under one daemon and reconciles each agent.
pub fn run() -> (Evaluation, Played) {
    let root = Scratch::new("claims-eval");
    let port = free_port();
    // What the agents fetch.
    std::fs::write(root.path("README"), "fetched\n").expect("write README");
    let _http = net::http_server(SocketAddr::from(([127, 0, 0, 1], port)), &root.0);
    let scenarios = scenarios(port);
    let cgroups: Vec<TestCgroup> = scenarios
        .iter()
        .map(|s| TestCgroup::new(&agent_id(s["name"].as_str().expect("name"))))
        .collect();
    let socket = root.path("claims.sock");
    let otlp = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let store = root.path("store");
    let mut config = format!(
        "default_decision = \"allow\"\n\n[[protected]]\nname = \"secrets\"\n\
         files = [\"{}/**/secrets/**\"]\n\n[[rules]]\nid = \"secrets-review\"\n\
         protected = [\"secrets\"]\ndecision = \"review\"\n\n[claims]\nsocket = \"{}\"\n\
         otlp_listen = \"{otlp}\"\n\n\
         [export]\nstore = \"file://{}\"\nspool_dir = \"{}\"\nsegment_max_age_ms = 300\n",
        root.0.display(),
        socket.display(),
        store.display(),
        root.path("spool").display()
    );
    for (s, cg) in scenarios.iter().zip(&cgroups) {
        let _ = write!(
            config,
            "\n[[agents]]\nid = \"{}\"\ncgroup = [\"{}\"]\n",
            agent_id(s["name"].as_str().expect("name")),
            cg.rel
        );
    }
    let cfg = root.path("config.toml");
    std::fs::write(&cfg, config).expect("write config");
    let since = jiff::Timestamp::now().to_string();
    let daemon = Agent::start(["run", "--config", cfg.to_str().expect("utf-8")]);
    for (s, cg) in scenarios.iter().zip(&cgroups) {
        play(&root, s, cg, &socket, otlp);
    }
    let _ = daemon.stop();
    let mut eval = Evaluation::default();
    for s in &scenarios {
        let findings = reconcile(&store, &agent_id(s["name"].as_str().expect("name")), &since);
        compare(s, &findings, &mut eval);
    }
    let store = format!("file://{}", store.display());
    (eval, Played { root, store, since })
}

/// Plays one scenario in its cgroup, noise beside it, and waits until every process of the
/// cgroup (background commands too) has ended.
fn play(root: &Scratch, scenario: &Value, cg: &TestCgroup, socket: &Path, otlp: SocketAddr) {
    let name = scenario["name"].as_str().expect("name");
    let work = root.path(name);
    prepare(&work, scenario);
    let steps = root.path(&format!("{name}.json"));
    std::fs::write(&steps, scenario.to_string()).expect("write steps");
    let w = work.to_str().expect("utf-8 path");
    // Noise: processes of the same agent outside the runtime's tree, while it works.
    let noise: Vec<_> = scenario["noise"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            cg.command("bash")
                .args(["-c", &n.as_str().expect("noise command").replace("{w}", w)])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn noise")
        })
        .collect();
    let out = cg
        .command("python3")
        .arg(workspace_root().join("tests/peers/fake_agent.py"))
        .arg(&steps)
        .arg(agent_bin())
        .arg(&work)
        .env("AUDIT_AGENT_CLAIMS_SOCKET", socket)
        .env("AUDIT_AGENT_OTLP_URL", format!("http://{otlp}/v1/traces"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run fake_agent.py");
    assert!(out.status.success(), "fake_agent.py in {name} failed");
    assert_eq!(
        parse_lines(&out.stdout).len(),
        scenario["steps"].as_array().map_or(0, Vec::len),
        "every step of {name} reported"
    );
    for mut n in noise {
        let _ = n.wait();
    }
    let procs = cg.fs.join("cgroup.procs");
    wait_until(&format!("every process of {name} ended"), || {
        std::fs::read_to_string(&procs).is_ok_and(|p| p.trim().is_empty())
    });
}

/// `audit-agent reconcile` of one agent, as its JSON document.
fn reconcile(store: &Path, agent: &str, since: &str) -> Value {
    let out = Command::new(agent_bin())
        .args(["reconcile", &format!("file://{}", store.display())])
        .args(["--agent", agent, "--since", since, "--format", "json"])
        .output()
        .expect("run audit-agent reconcile");
    assert!(
        out.status.success(),
        "reconcile {agent}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reconcile JSON")
}

/// A record label: `"explained"`, or counts (`{"explained": 2, "unexplained": 1}`) as a list.
fn label_list(label: &Value) -> Vec<String> {
    match label {
        Value::String(s) => vec![s.clone()],
        Value::Object(counts) => counts
            .iter()
            .flat_map(|(k, n)| std::iter::repeat_n(k.clone(), n.as_u64().unwrap_or(0) as usize))
            .collect(),
        other => panic!("bad record label {other}"),
    }
}

/// Sets one scenario's findings against its labels.
fn compare(scenario: &Value, findings: &Value, eval: &mut Evaluation) {
    let name = scenario["name"].as_str().expect("name").to_string();
    let steps = scenario["steps"].as_array().expect("steps");
    let calls: BTreeMap<&str, &Value> = findings["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["call"].as_str().unwrap_or_default(), c))
        .collect();
    for step in steps {
        let Some(expected) = step["expect"].as_str() else {
            continue;
        };
        let id = step["id"].as_str().expect("step id");
        let (got, reasons) = match calls.get(id) {
            Some(c) => (
                c["outcome"].as_str().unwrap_or_default().to_string(),
                c["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(String::from))
                    .collect(),
            ),
            None => ("absent".to_string(), Vec::new()),
        };
        eval.calls.push(CallCase {
            scenario: name.clone(),
            call: id.to_string(),
            expected: expected.to_string(),
            got,
            reasons,
        });
    }
    // Labels of protected files, by the steps that touch them and the noise: one label for
    // every record of the file, or how many records of it get each.
    let mut labels: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for table in steps
        .iter()
        .map(|s| &s["records"])
        .chain([&scenario["noise_records"]])
    {
        for (file, label) in table.as_object().into_iter().flatten() {
            labels.insert(file.clone(), label_list(label));
        }
    }
    // The findings of each file's records: (record id, explained or not).
    let mut by_file: BTreeMap<String, Vec<(String, &str)>> = BTreeMap::new();
    for r in findings["records"].as_array().into_iter().flatten() {
        let resource = r["resource"].as_str().unwrap_or_default();
        let file = resource.rsplit('/').next().unwrap_or(resource).to_string();
        let got = if r["explained"] == true {
            "explained"
        } else {
            "unexplained"
        };
        let id = r["id"].as_str().unwrap_or_default().to_string();
        if !labels.contains_key(&file) {
            eval.unlabelled.push(format!(
                "{name}: protected record {id} of {resource} has no label"
            ));
        }
        by_file.entry(file).or_default().push((id, got));
    }
    let mut seen: Vec<String> = Vec::new();
    for (file, mut got) in by_file {
        let Some(expected) = labels.get(&file) else {
            continue;
        };
        seen.push(file.clone());
        // Which of a file's records a claim explains is not labelled, only how many: pair the
        // labels and the findings in the same order.
        let mut expected = if expected.len() == 1 {
            vec![expected[0].clone(); got.len()]
        } else {
            expected.clone()
        };
        expected.sort();
        got.sort_by_key(|(_, g)| *g);
        if expected.len() != got.len() {
            eval.unlabelled.push(format!(
                "{name}: {} records of {file}, {} labelled",
                got.len(),
                expected.len()
            ));
        }
        for ((record, got), expected) in got.into_iter().zip(expected) {
            eval.records.push(RecordCase {
                scenario: name.clone(),
                file: file.clone(),
                record,
                expected,
                got: got.to_string(),
            });
        }
    }
    for file in labels.keys().filter(|f| !seen.contains(f)) {
        eval.unlabelled.push(format!(
            "{name}: no protected record of the labelled file {file}"
        ));
    }
}
