//! Claims in, against the real daemon: hook payloads through `audit-agent claim` and OTLP spans
//! encoded by OpenTelemetry's own classes land as `agent.claim` records, attributed to the
//! process the kernel saw send them, chained and signed like every record (`verify`); bad
//! payloads, wrong content types and floods get a clear error, a counted rejection in the trail,
//! and leave the kernel's records alone.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use audit_tests::{trail::Trail, *};

/// A daemon taking claims on a socket and an OTLP port, its trail in a local store.
struct Daemon {
    dir: Scratch,
    cg: TestCgroup,
    agent: Agent,
    socket: PathBuf,
    otlp: SocketAddr,
    public_key: String,
}

impl Daemon {
    fn start(tag: &str) -> Self {
        let dir = Scratch::new(tag);
        let cg = TestCgroup::new(tag);
        let (key, public_key) = keygen(&dir);
        let socket = dir.path("claims.sock");
        let otlp = SocketAddr::from((
            [127, 0, 0, 1],
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        ));
        let config = format!(
            r#"
[[agents]]
id = "claims-bot"
cgroup = ["{cg}"]

[claims]
socket = "{socket}"
otlp_listen = "{otlp}"
per_second = 20

[export]
store = "file://{store}"
spool_dir = "{spool}"
segment_max_age_ms = 300
signing_key = "{key}"
"#,
            cg = cg.rel,
            socket = socket.display(),
            store = dir.path("store").display(),
            spool = dir.path("spool").display(),
            key = key.display(),
        );
        let cfg = dir.path("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let agent = Agent::start(["run", "--config", cfg.to_str().unwrap()]);
        Self {
            dir,
            cg,
            agent,
            socket,
            otlp,
            public_key,
        }
    }

    /// `audit-agent claim` with `payload` on stdin, run in the agent's cgroup through a shell
    /// (as hook runners run it).
    fn claim(&self, payload: &[u8]) -> Output {
        let mut child = self
            .cg
            .command("sh")
            .arg("-c")
            .arg(format!("{} claim", agent_bin().display()))
            .env("AUDIT_AGENT_CLAIMS_SOCKET", &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `claim` stops reading past the largest payload it takes: the rest meets a closed pipe.
        let mut stdin = child.stdin.take().unwrap();
        let payload = payload.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&payload);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out
    }

    /// One span sent by `tests/peers/otlp_send.py` from the agent's cgroup: (status, body).
    fn span(&self, encoding: &str, call: &str, content_type: Option<&str>) -> (u16, String) {
        let python =
            std::path::Path::new(&std::env::var("AUDIT_TEST_TOOLS").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/audit-agent/tools",
                    std::env::var("HOME").unwrap()
                )
            }))
            .join("validators-venv/bin/python");
        let out = self
            .cg
            .command(python)
            .arg(workspace_root().join("tests/peers/otlp_send.py"))
            .arg(format!("http://{}/v1/traces", self.otlp))
            .args([encoding, call, "Bash", r#"{"command":"make test"}"#])
            .args(content_type)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (status, body) = text.split_once(' ').unwrap();
        (status.parse().unwrap(), body.trim().to_string())
    }

    /// Stops the daemon; the trail's records.
    fn stop(self) -> (Vec<Value>, Scratch, String) {
        let _ = self.agent.stop();
        let records = Trail::dir(&self.dir.path("store")).records();
        (records, self.dir, self.public_key)
    }
}

fn hook(event: &str, call: &str, input: Value) -> Vec<u8> {
    json!({
        "session_id": "s-1", "transcript_path": "/dev/null", "cwd": "/srv/app",
        "hook_event_name": event, "tool_name": "Bash", "tool_input": input,
        "tool_use_id": call, "tool_response": {"stdout": "", "stderr": "", "interrupted": false}
    })
    .to_string()
    .into_bytes()
}

fn claims(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["action"] == "agent.claim")
        .collect()
}

#[test]
fn hook_payloads_and_otlp_spans_land_as_signed_records_of_the_process_that_sent_them() {
    let d = Daemon::start("claims-in");
    let pre = d.claim(&hook(
        "PreToolUse",
        "toolu_1",
        json!({"command": "make test"}),
    ));
    assert!(
        pre.status.success(),
        "{}",
        String::from_utf8_lossy(&pre.stderr)
    );
    assert!(
        pre.stdout.is_empty() && pre.stderr.is_empty(),
        "a hook prints nothing"
    );
    let post = d.claim(&hook(
        "PostToolUse",
        "toolu_1",
        json!({"command": "make test"}),
    ));
    assert!(post.status.success());
    assert_eq!(d.span("protobuf", "call_pb", None), (200, String::new()));
    assert_eq!(d.span("json", "call_json", None), (200, "{}".to_string()));
    // A process outside every agent files a claim: it is its own, not the agent's.
    let mut outsider = Command::new(agent_bin())
        .arg("claim")
        .env("AUDIT_AGENT_CLAIMS_SOCKET", &d.socket)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    outsider
        .stdin
        .take()
        .unwrap()
        .write_all(&hook(
            "PreToolUse",
            "toolu_x",
            json!({"command": "rm -rf /"}),
        ))
        .unwrap();
    assert!(outsider.wait().unwrap().success());
    let (records, dir, public_key) = d.stop();

    let claims = claims(&records);
    let of = |call: &str| -> Vec<&Value> {
        claims
            .iter()
            .copied()
            .filter(|r| r["resource"]["claim"]["call_id"] == call)
            .collect()
    };
    let hook_claims = of("toolu_1");
    assert_eq!(hook_claims.len(), 2, "{claims:#?}");
    for r in &hook_claims {
        assert_eq!(r["agent"]["id"], "claims-bot");
        assert_eq!(r["resource"]["claim"]["source"], "claude_code");
        assert_eq!(
            r["resource"]["claim"]["effects"],
            json!([{"exec": "make test"}])
        );
        // The submitter is the hook process the kernel saw, not anything the payload says.
        assert_eq!(
            r["process"]["exe"],
            real_path(agent_bin().to_str().unwrap()).as_str()
        );
    }
    assert_eq!(hook_claims[1]["resource"]["claim"]["success"], true);
    for call in ["call_pb", "call_json"] {
        let span = of(call);
        assert_eq!(span.len(), 1, "{call}: {claims:#?}");
        let c = &span[0]["resource"]["claim"];
        assert_eq!(
            (c["source"].as_str(), c["phase"].as_str()),
            (Some("otlp"), Some("complete"))
        );
        assert_eq!(c["session"], "otlp-conversation");
        assert!(c["started"].is_string() && c["ended"].is_string(), "{c}");
        assert_eq!(span[0]["agent"]["id"], "claims-bot");
        assert_eq!(span[0]["process"]["comm"], "python");
    }
    let outsider = of("toolu_x");
    assert_eq!(outsider.len(), 1);
    assert_ne!(outsider[0]["agent"]["id"], "claims-bot");

    // Claims are chained and signed with everything else.
    let out = Command::new(agent_bin())
        .args(["verify", &format!("file://{}", dir.path("store").display())])
        .args(["--public-key", &public_key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_claims_get_a_clear_error_a_counted_rejection_and_leave_kernel_records_alone() {
    let d = Daemon::start("claims-bad");
    let refused = |payload: &[u8], says: &str| {
        let out = d.claim(payload);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{says:?} in {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    };
    refused(b"not json", "the payload is not JSON");
    refused(&vec![b' '; 2 << 20], "at most 1048576 are taken");
    refused(
        br#"{"hello": 1}"#,
        "neither a Claude Code hook payload nor the generic",
    );
    refused(
        &hook("PreToolUse", "toolu_2", json!(3)),
        "field `tool_input` must be an object",
    );
    let (status, body) = d.span("json", "call_ct", Some("text/plain"));
    assert_eq!(status, 415);
    assert!(
        body.contains("unsupported content type `text/plain`"),
        "{body}"
    );
    // One process floods the socket: more than 20 a second (40 in a burst) are refused.
    let flood =
        d.cg.command("python3")
            .arg("-c")
            .arg(format!(
                r#"
import socket
refused = 0
for i in range(120):
    s = socket.socket(socket.AF_UNIX)
    s.connect({socket:?})
    s.sendall(b'{{"claim": "audit-agent/v1", "phase": "pre", "tool": "t", "call_id": "f%d"}}' % i)
    s.shutdown(socket.SHUT_WR)
    answer = s.recv(4096).decode()
    refused += answer.startswith("error: too many claims")
    s.close()
print(refused)
"#,
                socket = d.socket.to_str().unwrap()
            ))
            .output()
            .unwrap();
    assert!(
        flood.status.success(),
        "{}",
        String::from_utf8_lossy(&flood.stderr)
    );
    let flooded: u64 = String::from_utf8_lossy(&flood.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(flooded > 0, "the flood was refused in part");
    // Meanwhile the agent's own actions are recorded as always.
    let dir = Scratch::new("claims-bad-files");
    let files: Vec<String> = (0..20)
        .map(|i| {
            let p = dir.path(&format!("f{i}"));
            std::fs::write(&p, "x").unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect();
    let mut args = Vec::new();
    for f in &files {
        args.extend(["open", f.as_str()]);
    }
    let report = d.cg.workload(&args);
    let (records, _dir, _) = d.stop();

    for f in &files {
        assert_eq!(
            records
                .iter()
                .filter(|r| r["action"] == "file.open" && r["resource"]["path"] == f.as_str())
                .count(),
            1,
            "{f}"
        );
    }
    assert_eq!(report.len(), files.len());
    let rejections: Vec<&Value> = claims(&records)
        .into_iter()
        .filter(|r| r["resource"]["claim"]["rejected"].is_string())
        .collect();
    let count = |reason: &str| -> u64 {
        rejections
            .iter()
            .filter(|r| r["resource"]["claim"]["rejected"] == reason)
            .map(|r| r["resource"]["claim"]["count"].as_u64().unwrap())
            .sum()
    };
    for reason in [
        "not_json",
        "too_large",
        "unknown_form",
        "bad_field",
        "content_type",
    ] {
        assert_eq!(count(reason), 1, "{reason}: {rejections:#?}");
    }
    assert_eq!(count("flood"), flooded, "every refused claim is counted");
    let r = rejections
        .iter()
        .find(|r| r["resource"]["claim"]["rejected"] == "bad_field")
        .unwrap();
    assert_eq!(
        r["agent"]["id"], "claims-bot",
        "a rejection is the sender's too"
    );
    assert_eq!(
        r["resource"]["claim"]["message"],
        "field `tool_input` must be an object"
    );
}
