//! The evidence report, end to end: the real daemon writes a trail (to Garage over HTTP and to a
//! directory), `audit-agent report` builds the report of one workflow, and a real headless
//! Chromium opens the HTML, takes a screenshot and prints it to PDF with nothing in its console.
//! A report over a tampered or gapped trail says so at the top.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use audit_tests::{garage::Garage, trail::Trail, *};
use serde_json::Value;

/// A trail written by the daemon: two agents of workflow `customer-support` and one of
/// `nightly`, each touching protected resources.
struct Written {
    dir: Scratch,
    url: String,
    env: Vec<(&'static str, String)>,
    trail: Trail,
    /// The signing key's public half.
    public: String,
    config: PathBuf,
    /// Pids of the workloads (support-a, support-b, nightly).
    pids: [i64; 3],
}

/// A file name chosen to break out of the report's markup and its embedded JSON.
const HOSTILE: &str = "/nonexistent-report/customers/</script><img src=x onerror=alert(1)>.csv";

fn store_lines(url: &str, endpoint: Option<&str>) -> String {
    let endpoint = endpoint
        .map(|e| format!("endpoint = \"{e}\"\nregion = \"garage\"\nallow_http = true\n"))
        .unwrap_or_default();
    format!("store = \"{url}\"\n{endpoint}")
}

fn config(dir: &Scratch, cgroups: [&TestCgroup; 3], store: &str, key: &Path) -> String {
    format!(
        r#"
[[agents]]
id = "triage-bot"
name = "Triage bot"
workflow = "customer-support"
owner = "support-lead@example.com"
cgroup = ["{a}"]

[[agents]]
id = "refund-bot"
workflow = "customer-support"
owner = "payments@example.com"
cgroup = ["{b}"]

[[agents]]
id = "nightly-bot"
workflow = "nightly"
cgroup = ["{c}"]

[[protected]]
name = "secrets"
files = ["/nonexistent-report/secret-*"]

[[protected]]
name = "customer-data"
files = ["/nonexistent-report/customers/**"]

[[rules]]
id = "no-secrets"
protected = ["secrets"]
decision = "deny"

[[rules]]
id = "customer-data-reviewed"
protected = ["customer-data"]
decision = "review"

[export]
{store}spool_dir = "{spool}"
segment_max_age_ms = 300
signing_key = "{key}"
"#,
        a = cgroups[0].rel,
        b = cgroups[1].rel,
        c = cgroups[2].rel,
        spool = dir.path("spool").display(),
        key = key.display(),
    )
}

fn start_daemon(w: &Written) -> Agent {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["run", "--config", w.config.to_str().unwrap()]);
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    Agent::start_with(&mut cmd)
}

fn write_trail(
    tag: &str,
    url: String,
    env: Vec<(&'static str, String)>,
    endpoint: Option<String>,
    trail: Trail,
) -> Written {
    let dir = Scratch::new(tag);
    let root = TestCgroup::new(tag);
    let (a, b, c) = (root.child("a"), root.child("b"), root.child("c"));
    let (key, public) = keygen(&dir);
    let cfg = config(
        &dir,
        [&a, &b, &c],
        &store_lines(&url, endpoint.as_deref()),
        &key,
    );
    let config = dir.path("config.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut w = Written {
        dir,
        url,
        env,
        trail,
        public,
        config,
        pids: [0; 3],
    };
    let agent = start_daemon(&w);
    let ra = a.workload([
        "open-many",
        "/nonexistent-report/notes",
        "5",
        "0",
        "open",
        "/nonexistent-report/settings",
        "open",
        "/nonexistent-report/settings",
        "open",
        "/nonexistent-report/settings",
        "open",
        "/nonexistent-report/secret-api-key",
        "open",
        "/nonexistent-report/customers/alice.csv",
        "open",
        HOSTILE,
        "connect4",
        "127.0.0.1",
        "9",
    ]);
    let rb = b.workload(["open", "/nonexistent-report/secret-db-password"]);
    let rc = c.workload(["open", "/nonexistent-report/secret-nightly"]);
    w.pids = [pid_of(&ra), pid_of(&rb), pid_of(&rc)];
    let _ = agent.stop();
    w
}

fn run(w: &Written, args: &[&str]) -> Output {
    let mut cmd = Command::new(agent_bin());
    cmd.args(args);
    for (k, v) in &w.env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `report` of the `customer-support` workflow over the last hour; (exit ok, stderr).
fn report(w: &Written, out: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec![
        "report",
        &w.url,
        "--workflow",
        "customer-support",
        "--since",
        "1h",
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = run(w, &args);
    (o.status.success(), stderr(&o))
}

fn json_report(w: &Written, name: &str, extra: &[&str]) -> Value {
    let out = w.dir.path(name);
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let (_, err) = report(w, &out, &args);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("no report: {e}: {err}"));
    serde_json::from_str(&text).unwrap()
}

fn query(w: &Written, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["query", w.url.as_str(), "--format", "json"];
    a.extend_from_slice(args);
    let o = run(w, &a);
    assert!(o.status.success(), "query {args:?}: {}", stderr(&o));
    parse_lines(&o.stdout)
}

/// Headless Chromium: opens `html`, takes a screenshot and prints a PDF. Returns the console
/// lines (the report's Content-Security-Policy turns any fetch or script into one).
fn chromium(html: &Path, png: &Path, pdf: &Path) -> Vec<String> {
    let url = format!("file://{}", html.display());
    let mut console = Vec::new();
    for out in [
        format!("--screenshot={}", png.display()),
        format!("--print-to-pdf={}", pdf.display()),
    ] {
        let o = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1200,1800",
                "--enable-logging=stderr",
                "--log-level=0",
                "--no-pdf-header-footer",
            ])
            .arg(out)
            .arg(&url)
            .output()
            .expect("chromium (installed by `cargo xtask setup --test`)");
        assert!(o.status.success(), "chromium: {}", stderr(&o));
        console.extend(
            stderr(&o)
                .lines()
                .filter(|l| l.contains(":CONSOLE"))
                .map(str::to_string),
        );
    }
    console
}

/// The PNG's width and height, from its header.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", p.display());
    let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// The text of the element with `id` (the embedded appendix).
fn script_json(html: &str, id: &str) -> Value {
    let open = format!("<script type=\"application/json\" id=\"{id}\">");
    let start = html.find(&open).expect("appendix block") + open.len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).unwrap()
}

/// What every report of a clean trail must show: scope, every protected action of the workflow
/// (and nothing of other workflows), deny first, records behind every row.
fn check_content(w: &Written, r: &Value) {
    assert_eq!(r["schema"], "audit-agent/report/v1");
    let agents: Vec<&str> = r["scope"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(agents, ["refund-bot", "triage-bot"]);
    let triage = &r["scope"]["agents"][1];
    assert_eq!(triage["owner"], "support-lead@example.com");
    assert_eq!(triage["name"], "Triage bot");
    assert_eq!(r["scope"]["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(r["scope"]["policy_versions"].as_array().unwrap().len(), 1);

    // Exactly the protected actions `query` finds for the workflow.
    let deny = query(w, &["--workflow", "customer-support", "--decision", "deny"]);
    let review = query(
        w,
        &["--workflow", "customer-support", "--decision", "review"],
    );
    assert_eq!((deny.len(), review.len()), (2, 2));
    let rows = r["protected_actions"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|x| x["id"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = deny.iter().map(|x| x["id"].as_str().unwrap()).collect();
    expected.extend(review.iter().map(|x| x["id"].as_str().unwrap()));
    assert_eq!(ids, expected, "deny first, then review, by time");
    let resources: Vec<&str> = rows
        .iter()
        .map(|x| x["resource"].as_str().unwrap())
        .collect();
    assert!(
        !resources.iter().any(|p| p.contains("nightly")),
        "{resources:?}"
    );
    let key = rows
        .iter()
        .find(|x| x["resource"] == "/nonexistent-report/secret-api-key")
        .unwrap();
    assert_eq!(key["agent"], "triage-bot");
    assert_eq!(key["owner"], "support-lead@example.com");
    assert_eq!(key["decision"], "deny");
    assert_eq!(key["rule"], "no-secrets");
    assert_eq!(key["protected"], serde_json::json!(["secrets"]));
    assert_eq!(key["outcome"], "failure");
    assert_eq!(key["errno"], "ENOENT");
    assert_eq!(key["pid"], w.pids[0]);
    assert_eq!(key["lineage"][0], "workload");
    assert!(
        key["policy_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Totals agree with query.
    let all = query(w, &["--workflow", "customer-support"]);
    assert_eq!(r["totals"]["records"], all.len());
    assert_eq!(r["totals"]["deny"], 2);
    assert_eq!(r["totals"]["review"], 2);
    let in_buckets: u64 = r["activity"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            ["allow", "deny", "review", "none"]
                .iter()
                .map(|k| b[k].as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(in_buckets, all.len() as u64);
    assert!(r["top_destinations"][0]["name"] == "127.0.0.1:9");
    assert!(
        r["failed_attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["resource"] == "/nonexistent-report/settings"
                && f["count"] == 3
                && f["errno"] == "ENOENT")
    );

    // The appendix holds every row's stored record, and names an object that exists.
    let keys = w.trail.keys();
    for row in rows {
        let e = r["appendix"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == row["id"])
            .unwrap_or_else(|| panic!("no evidence for {}", row["id"]));
        assert_eq!(e["record"]["id"], row["id"]);
        assert_eq!(e["record"]["resource"]["path"], row["resource"]);
        let object = e["object"].as_str().unwrap();
        assert!(keys.iter().any(|k| k == object), "{object} in {keys:?}");
        let stored = String::from_utf8_lossy(&w.trail.get_gunzipped(object)).into_owned();
        let line = stored
            .lines()
            .find(|l| l.contains(&format!("\"id\":\"{}\"", row["id"].as_str().unwrap())))
            .expect("the record is in its object");
        assert_eq!(serde_json::from_str::<Value>(line).unwrap(), e["record"]);
    }
}

/// The HTML report: verdict at the top, every row, charts, the appendix; Chromium renders and
/// prints it with a clean console.
fn check_html(w: &Written, name: &str, extra: &[&str], verdict: &str) -> String {
    let html = w.dir.path(&format!("{name}.html"));
    let (_, err) = report(w, &html, extra);
    let text = std::fs::read_to_string(&html).unwrap_or_else(|e| panic!("{e}: {err}"));
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not in the report"))
    };
    assert!(at(verdict) < at("id=\"scope\""), "the verdict comes first");
    assert!(at("<svg class=\"chart\"") > 0);
    for path in [
        "/nonexistent-report/secret-api-key",
        "/nonexistent-report/secret-db-password",
        "/nonexistent-report/customers/alice.csv",
    ] {
        at(path);
    }
    assert!(
        !text.contains("secret-nightly"),
        "another workflow's record"
    );
    let appendix = script_json(&text, "evidence");
    assert!(
        appendix
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["record"]["resource"]["path"] == HOSTILE)
    );
    let json = json_report(w, &format!("{name}.json"), extra);
    assert_eq!(appendix, json["appendix"]);
    // Outside the JSON block, nothing that fetches or runs: the hostile file name is text.
    let open = text.find("<script type=\"application/json\"").unwrap();
    let close = open + text[open..].find("</script>").unwrap();
    let markup = format!("{}{}", &text[..open], &text[close + "</script>".len()..]);
    for fetches in ["<script", "<img", "href=", "<link", "@import", "url("] {
        assert!(
            !markup.contains(fetches),
            "`{fetches}` in a self-contained report"
        );
    }
    assert!(markup.contains("customers/&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;.csv"));
    let (png, pdf) = (
        w.dir.path(&format!("{name}.png")),
        w.dir.path(&format!("{name}.pdf")),
    );
    let console = chromium(&html, &png, &pdf);
    assert!(console.is_empty(), "console of {name}: {console:#?}");
    assert_eq!(png_size(&png), (1200, 1800));
    assert!(std::fs::read(&pdf).unwrap().starts_with(b"%PDF-"));
    text
}

#[test]
fn a_report_of_a_signed_garage_trail_shows_every_protected_action_verified() {
    let g = Garage::shared();
    g.bucket("report");
    let w = write_trail(
        "report-s3",
        "s3://report/evidence".into(),
        g.env(),
        Some(g.endpoint()),
        Trail {
            store: g.client("report"),
            prefix: "evidence".into(),
        },
    );
    let r = json_report(&w, "pinned.json", &["--public-key", &w.public]);
    assert_eq!(r["integrity"]["level"], "verified", "{:#}", r["integrity"]);
    assert_eq!(
        r["integrity"]["signers"][0]["public_key"],
        w.public.as_str()
    );
    assert_eq!(r["integrity"]["signers"][0]["pinned"], true);
    assert!(
        r["integrity"]["signers"][0]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    check_content(&w, &r);
    check_html(
        &w,
        "pinned",
        &["--public-key", &w.public],
        "Integrity: VERIFIED",
    );
    // Without the trusted key, the same trail is qualified, and the report says why.
    let r = json_report(&w, "unpinned.json", &[]);
    assert_eq!(r["integrity"]["level"], "qualified");
    assert!(
        r["integrity"]["findings"][0]
            .as_str()
            .unwrap()
            .contains("no trusted key was given")
    );
}

#[test]
fn a_report_over_a_gapped_then_tampered_directory_trail_says_so_at_the_top() {
    let d = Scratch::new("report-file-store");
    let store = d.path("store");
    let w = write_trail(
        "report-file",
        format!("file://{}", store.display()),
        vec![],
        None,
        Trail::dir(&store),
    );
    // A restart leaves a gap record: the window's loss is on the report.
    let _ = start_daemon(&w).stop();
    let r = json_report(&w, "gapped.json", &["--public-key", &w.public]);
    assert_eq!(r["integrity"]["level"], "qualified", "{:#}", r["integrity"]);
    let gaps = r["integrity"]["gaps"].as_array().unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0]["reason"], "agent_restart");
    assert!(
        gaps[0]["explanation"]
            .as_str()
            .unwrap()
            .contains("stopped and restarted")
    );
    assert!(
        r["appendix"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == gaps[0]["id"] && e["record"]["action"] == "audit.gap")
    );
    check_content(&w, &r);
    let html = check_html(
        &w,
        "gapped",
        &["--public-key", &w.public],
        "Integrity: QUALIFIED",
    );
    assert!(html.contains("agent_restart"));

    // Tampering: a deny record rewritten to allow. The report is written, says NOT VERIFIED at
    // the top, and the command fails.
    let deny = query(&w, &["--decision", "deny", "--agent", "triage-bot"]);
    let object = w
        .trail
        .objects("v1")
        .into_iter()
        .find(|(_, lines)| lines.iter().any(|l| l["id"] == deny[0]["id"]))
        .map(|(k, _)| k)
        .unwrap();
    let text = String::from_utf8_lossy(&w.trail.get_gunzipped(&object)).into_owned();
    w.trail.put_gzipped(
        &object,
        text.replace("\"decision\":\"deny\"", "\"decision\":\"allow\"")
            .as_bytes(),
    );
    let out = w.dir.path("tampered.html");
    let (ok, err) = report(&w, &out, &["--public-key", &w.public]);
    assert!(!ok && err.contains("did NOT verify"), "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    let top = html.find("Integrity: FAILED").expect("verdict");
    assert!(top < html.find("id=\"scope\"").unwrap());
    assert!(html.contains("was modified after it was sealed"));
    assert!(html.contains(&object), "the finding names the object");
    let png = w.dir.path("tampered.png");
    assert!(chromium(&out, &png, &w.dir.path("tampered.pdf")).is_empty());
}

#[test]
fn the_console_check_catches_a_page_that_fetches_or_runs_anything() {
    // The report's Content-Security-Policy makes Chromium log any fetch or script: a page with
    // one must not pass the check the tests above rely on.
    let d = Scratch::new("report-csp");
    let page = d.path("p.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"></head>\
         <body><img src=\"missing.png\"></body></html>",
    )
    .unwrap();
    let console = chromium(&page, &d.path("p.png"), &d.path("p.pdf"));
    assert!(
        console
            .iter()
            .any(|l| l.contains("Content Security Policy")),
        "{console:#?}"
    );
}

#[test]
fn report_errors_name_what_to_fix() {
    let d = Scratch::new("report-errors");
    let store = d.path("store");
    let w = write_trail(
        "report-err",
        format!("file://{}", store.display()),
        vec![],
        None,
        Trail::dir(&store),
    );
    let out = w.dir.path("x.html");
    let o = run(
        &w,
        &[
            "report",
            &w.url,
            "--workflow",
            "billing",
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert!(!o.status.success() && !out.exists());
    assert!(
        err.contains("no records of workflow `billing`")
            && err.contains("workflow customer-support: agents")
            && err.contains("workflow nightly: agents nightly-bot"),
        "{err}"
    );
    let o = run(
        &w,
        &[
            "report",
            &w.url,
            "--agent",
            "triage-bot",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2000-01-02T00:00:00Z",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&o).contains("the store holds no records between"),
        "{}",
        stderr(&o)
    );
    let empty = d.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(
        &w,
        &[
            "report",
            &format!("file://{}", empty.display()),
            "--agent",
            "x",
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        stderr(&o).contains("holds no manifests, so nothing in it can be shown"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &w,
        &[
            "report",
            &w.url,
            "--since",
            "1h",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("--workflow"), "{}", stderr(&o));
    let o = run(
        &w,
        &[
            "report",
            &w.url,
            "--agent",
            "a",
            "--since",
            "yesterday-ish",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(stderr(&o).contains("--since"), "{}", stderr(&o));
}
