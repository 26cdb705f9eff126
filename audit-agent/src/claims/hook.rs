//! Claude Code's hook payloads (`PreToolUse`, `PostToolUse`, `PostToolUseFailure`; JSON on the
//! hook's stdin): `session_id`, `cwd`, `hook_event_name`, `tool_name`, `tool_input`,
//! `tool_use_id`, and after the call `tool_response` (or, for a failure, `error` and
//! `is_interrupt`). `PostToolUse` runs when the tool completed: the runtime claims it succeeded
//! unless the response says it was interrupted or failed. `PostToolUseFailure` claims it failed.

use serde_json::Value;

use super::{Claim, Rejected, effects_of};
use crate::event::{ClaimPhase, ClaimSource};

/// Whether a JSON payload looks like a Claude Code hook payload.
pub(crate) fn is_hook(v: &Value) -> bool {
    v.get("hook_event_name").is_some() && v.get("tool_name").is_some()
}

/// The claim of a hook payload; `digest` is the payload's sha256.
pub(crate) fn claim(v: &Value, digest: String) -> Result<Claim, Rejected> {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let bad = |field: &'static str, problem: &str| Rejected::Field {
        field,
        problem: problem.into(),
    };
    let phase = match v.get("hook_event_name").and_then(Value::as_str) {
        Some("PreToolUse") => ClaimPhase::Pre,
        Some("PostToolUse" | "PostToolUseFailure") => ClaimPhase::Post,
        Some(other) => {
            return Err(bad(
                "hook_event_name",
                &format!(
                    "is `{other}`: only PreToolUse, PostToolUse and PostToolUseFailure describe \
                     tool calls"
                ),
            ));
        }
        None => return Err(bad("hook_event_name", "must be a string")),
    };
    let tool = text("tool_name").ok_or_else(|| bad("tool_name", "must be a string"))?;
    let input = v.get("tool_input").cloned().unwrap_or(Value::Null);
    if !input.is_object() && !input.is_null() {
        return Err(bad("tool_input", "must be an object"));
    }
    let failure = v.get("hook_event_name").and_then(Value::as_str) == Some("PostToolUseFailure");
    let (success, error) = match (phase, v.get("tool_response")) {
        _ if failure => (Some(false), error_of(v)),
        (ClaimPhase::Post, Some(r)) => outcome(r),
        (ClaimPhase::Post, None) => (Some(true), None),
        _ => (None, None),
    };
    Ok(Claim {
        source: ClaimSource::ClaudeCode,
        phase,
        session: text("session_id"),
        call_id: text("tool_use_id"),
        effects: effects_of(&tool, &input),
        tool,
        cwd: text("cwd").map(String::into_bytes),
        success,
        error,
        started: None,
        ended: None,
        payload_sha256: digest,
    })
}

/// What a tool response says of the call: failed when interrupted, when `success` is false or
/// an `error` is given; succeeded otherwise.
fn outcome(r: &Value) -> (Option<bool>, Option<String>) {
    let error = error_of(r);
    let failed = r.get("interrupted").and_then(Value::as_bool) == Some(true)
        || r.get("success").and_then(Value::as_bool) == Some(false)
        || error.is_some();
    (Some(!failed), error)
}

/// The `error` member, as text (absent, null or empty: none).
fn error_of(v: &Value) -> Option<String> {
    v.get("error")
        .and_then(|e| {
            e.as_str()
                .map(str::to_string)
                .or_else(|| Some(e.to_string()))
        })
        .filter(|e| e != "null" && !e.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::claims::Effect;

    #[test]
    fn a_pre_and_a_post_payload_become_the_two_phases_of_one_call() {
        let pre = json!({"session_id": "s1", "cwd": "/w", "hook_event_name": "PreToolUse",
            "tool_name": "Bash", "tool_input": {"command": "make test"}, "tool_use_id": "toolu_1"});
        let c = claim(&pre, "d".into()).unwrap();
        assert_eq!(
            (c.phase, c.call_id.as_deref(), c.success),
            (ClaimPhase::Pre, Some("toolu_1"), None)
        );
        assert_eq!(
            c.effects,
            vec![Effect::Exec {
                command: "make test".into(),
                background: false
            }]
        );
        let mut post = pre.clone();
        post["hook_event_name"] = json!("PostToolUse");
        post["tool_response"] = json!({"stdout": "ok", "stderr": "", "interrupted": false});
        let c = claim(&post, "d".into()).unwrap();
        assert_eq!((c.phase, c.success), (ClaimPhase::Post, Some(true)));
        post["tool_response"] = json!({"interrupted": true});
        assert_eq!(claim(&post, "d".into()).unwrap().success, Some(false));
        post["tool_response"] = json!({"success": false, "error": "EACCES"});
        let c = claim(&post, "d".into()).unwrap();
        assert_eq!(
            (c.success, c.error.as_deref()),
            (Some(false), Some("EACCES"))
        );
        let mut failure = pre.clone();
        failure["hook_event_name"] = json!("PostToolUseFailure");
        failure["error"] = json!("Exit code 2");
        failure["is_interrupt"] = json!(false);
        let c = claim(&failure, "d".into()).unwrap();
        assert_eq!(
            (c.phase, c.success, c.error.as_deref()),
            (ClaimPhase::Post, Some(false), Some("Exit code 2"))
        );
    }

    #[test]
    fn other_hook_events_and_bad_fields_are_refused_with_the_field_named() {
        let e = claim(
            &json!({"hook_event_name": "Stop", "tool_name": "x"}),
            "d".into(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hook_event_name"), "{e}");
        let e = claim(
            &json!({"hook_event_name": "PreToolUse", "tool_name": "x", "tool_input": 3}),
            "d".into(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "field `tool_input` must be an object");
    }
}
