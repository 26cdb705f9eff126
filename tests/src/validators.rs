//! Tools SIEM users check our outputs with, none written here: `tests/validators/*.py` run by the
//! virtualenv `cargo xtask setup --test` makes. `ocsf.py`: the official OCSF 1.3.0 schema (the
//! schema.ocsf.io export packaged by `ocsf-json-schema`, turned into strict JSON Schema) checked
//! by `jsonschema`. `prometheus.py`: the Prometheus client's classic and OpenMetrics parsers.

use std::{
    collections::BTreeMap,
    io::Write as _,
    process::{Command, Output, Stdio},
};

use serde_json::Value;

use crate::{helm::tool, workspace_root};

/// Runs `tests/validators/<script>` with `args`, `input` on stdin.
fn run(script: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(tool("validators-venv/bin/python"))
        .arg(workspace_root().join("tests/validators").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Validates `events` against the official OCSF 1.3.0 schema; panics with every error.
pub fn assert_ocsf_valid(events: &[&Value]) {
    assert!(!events.is_empty(), "no OCSF events to validate");
    let mut input = Vec::new();
    for e in events {
        serde_json::to_writer(&mut input, e).unwrap();
        input.push(b'\n');
    }
    let out = run("ocsf.py", &["1.3.0"], &input);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "events fail the official OCSF 1.3.0 schema ({stderr}):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(&format!("{} event(s), 0 invalid", events.len())),
        "{stderr}"
    );
}

/// Validates `docs` against the official ECS field definitions (`ecs.js`, `@elastic/ecs`); panics
/// with every error.
pub fn assert_ecs_valid(docs: &[&Value]) {
    assert!(!docs.is_empty(), "no ECS documents to validate");
    let mut input = Vec::new();
    for d in docs {
        serde_json::to_writer(&mut input, d).unwrap();
        input.push(b'\n');
    }
    let mut child = Command::new("node")
        .arg(workspace_root().join("tests/validators/ecs.js"))
        .arg("audit_agent")
        .env("NODE_PATH", tool("ecs/node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains(&format!("{} document(s), 0 invalid", docs.len())),
        "documents fail the official ECS definitions ({stderr}):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Parquet files as pyarrow reads them (`parquet.py`): per file, `schema` (column -> Arrow
/// type), `compression` (codecs used) and `rows`.
pub fn read_parquet(paths: &[std::path::PathBuf]) -> Vec<Value> {
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let out = run("parquet.py", &args, b"");
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::parse_lines(&out.stdout)
}

/// What `promtool check metrics` (Prometheus's own parser of the classic text format, and its
/// linter) says of `text`: `Ok` when it parses with nothing to report, else its findings.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package, installed by `cargo xtask setup --test`)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(said)
    }
}

/// Runs `sql` in DuckDB (`duckdb_sql.py`); its JSON answer, or a panic with DuckDB's error.
pub fn duckdb_sql(sql: &str) -> String {
    let out = run("duckdb_sql.py", &[], sql.as_bytes());
    assert!(
        out.status.success(),
        "DuckDB: {}\n{sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The metric families (name -> type) the Prometheus client parses from `text` as `format`
/// (`classic` or `openmetrics`), or its parser's error.
pub fn prometheus_families(format: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    let out = run("prometheus.py", &[format], text.as_bytes());
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("families as JSON"))
}
