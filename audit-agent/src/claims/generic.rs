//! The generic claim form, for runtimes other than Claude Code (docs/claims.md):
//!
//! ```json
//! {"claim": "audit-agent/v1", "phase": "pre" | "post" | "complete",
//!  "session": "...", "call_id": "...", "tool": "...",
//!  "arguments": {...},                                       // effects derived by name, or
//!  "effects": [{"exec": "cmd"}, {"read": "/p"}, {"write": "/p"}, {"fetch": "https://..."}],
//!  "cwd": "...", "success": true, "error": "...",
//!  "started": "RFC 3339", "ended": "RFC 3339"}
//! ```

use serde_json::Value;

use super::{Claim, Effect, Rejected, effects_of, url_host};
use crate::event::{ClaimPhase, ClaimSource};

/// The marker of the generic form.
pub(crate) const FORM: &str = "audit-agent/v1";

pub(crate) fn is_generic(v: &Value) -> bool {
    v.get("claim").and_then(Value::as_str) == Some(FORM)
}

fn bad(field: &'static str, problem: &str) -> Rejected {
    Rejected::Field {
        field,
        problem: problem.into(),
    }
}

/// The claim of a generic payload; `digest` is the payload's sha256.
pub(crate) fn claim(v: &Value, digest: String) -> Result<Claim, Rejected> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let phase = match v.get("phase").and_then(Value::as_str) {
        Some("pre") => ClaimPhase::Pre,
        Some("post") => ClaimPhase::Post,
        Some("complete") | None => ClaimPhase::Complete,
        Some(other) => {
            return Err(bad(
                "phase",
                &format!("is `{other}`: give pre, post or complete"),
            ));
        }
    };
    let tool = text("tool").ok_or_else(|| bad("tool", "must be a string"))?;
    let effects = match (v.get("effects"), v.get("arguments")) {
        (Some(list), _) => effects(list)?,
        (None, Some(args)) => effects_of(&tool, args),
        (None, None) => Vec::new(),
    };
    let time = |k: &'static str| -> Result<_, Rejected> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(t) => t
                .as_str()
                .and_then(crate::time::parse)
                .map(Some)
                .ok_or_else(|| bad(k, "must be an RFC 3339 time")),
        }
    };
    Ok(Claim {
        source: ClaimSource::Generic,
        phase,
        session: text("session"),
        call_id: text("call_id"),
        tool,
        effects,
        cwd: text("cwd").map(String::into_bytes),
        success: v.get("success").and_then(Value::as_bool),
        error: text("error"),
        started: time("started")?,
        ended: time("ended")?,
        payload_sha256: digest,
    })
}

fn effects(list: &Value) -> Result<Vec<Effect>, Rejected> {
    let items = list
        .as_array()
        .ok_or_else(|| bad("effects", "must be an array"))?;
    items
        .iter()
        .map(|e| {
            let one = |k: &str| e.get(k).and_then(Value::as_str);
            if let Some(c) = one("exec") {
                return Ok(Effect::Exec {
                    command: c.into(),
                    background: e.get("background").and_then(Value::as_bool) == Some(true),
                });
            }
            if let Some(p) = one("read") {
                return Ok(Effect::Read {
                    path: p.as_bytes().to_vec(),
                });
            }
            if let Some(p) = one("write") {
                return Ok(Effect::Write {
                    path: p.as_bytes().to_vec(),
                });
            }
            if let Some(p) = one("scan") {
                return Ok(Effect::Scan {
                    path: (p != ".").then(|| p.as_bytes().to_vec()),
                });
            }
            if let Some(u) = one("fetch") {
                let (host, port) = url_host(u)
                    .ok_or_else(|| bad("effects", &format!("`{u}` is no http(s) URL")))?;
                return Ok(Effect::Fetch {
                    url: u.into(),
                    host,
                    port,
                });
            }
            Err(bad(
                "effects",
                &format!("entry {e} is none of exec, read, write, scan, fetch"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_generic_claim_names_its_effects_or_its_arguments() {
        let c = claim(
            &json!({"claim": FORM, "phase": "complete", "tool": "deploy", "call_id": "c1",
                "effects": [{"exec": "kubectl apply -f x"}, {"fetch": "https://api.example.com/x"}],
                "success": true, "started": "2026-12-05T10:00:00Z", "ended": "2026-12-05T10:00:02Z"}),
            "d".into(),
        )
        .unwrap();
        assert_eq!(c.effects.len(), 2);
        assert_eq!(c.phase, ClaimPhase::Complete);
        assert!(c.ended > c.started);
        let c = claim(
            &json!({"claim": FORM, "tool": "read_file", "arguments": {"path": "/etc/hosts"}}),
            "d".into(),
        )
        .unwrap();
        assert_eq!(
            c.effects,
            vec![Effect::Read {
                path: b"/etc/hosts".to_vec()
            }]
        );
    }

    #[test]
    fn bad_generic_fields_are_named() {
        let e = claim(
            &json!({"claim": FORM, "tool": "x", "effects": [{"delete": "/"}]}),
            "d".into(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("none of exec, read, write, scan, fetch"),
            "{e}"
        );
        let e = claim(
            &json!({"claim": FORM, "tool": "x", "started": "yesterday"}),
            "d".into(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "field `started` must be an RFC 3339 time");
    }
}
