//! The official OCSF schema as a validator: `tests/ocsf/validate.py` run by the virtualenv
//! `cargo xtask setup --test` makes (`ocsf-json-schema`: the 1.3.0 export of schema.ocsf.io
//! turned into strict JSON Schema; `jsonschema`: the validator).

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{helm::tool, workspace_root};

/// Validates `events` against the official OCSF 1.3.0 schema; panics with every error.
pub fn assert_valid(events: &[&Value]) {
    assert!(!events.is_empty(), "no OCSF events to validate");
    let python = tool("ocsf-venv/bin/python");
    let mut child = Command::new(python)
        .arg(workspace_root().join("tests/ocsf/validate.py"))
        .arg("1.3.0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the OCSF validator");
    let mut input = Vec::new();
    for e in events {
        serde_json::to_writer(&mut input, e).unwrap();
        input.push(b'\n');
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
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
