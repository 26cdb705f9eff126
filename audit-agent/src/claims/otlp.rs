//! OpenTelemetry GenAI `execute_tool` spans (semantic conventions, gen-ai-spans): an OTLP/HTTP
//! `POST /v1/traces` body, as protobuf (`application/x-protobuf`) or JSON
//! (`application/json`), becomes one claim per tool span: `gen_ai.tool.name`,
//! `gen_ai.tool.call.id`, `gen_ai.tool.call.arguments` (opt-in in the conventions: without it a
//! call implies no effect), `gen_ai.conversation.id`, the span's start and end (the runtime's
//! clock) and its status (`ERROR`: the call failed). Other spans are skipped.
//!
//! The protobuf messages are the subset of opentelemetry-proto's `trace/v1` this reads, declared
//! with `prost` (field numbers as in the .proto; unknown fields are skipped). The
//! `opentelemetry-proto` crate would bring the OpenTelemetry SDK with it for the trace types.

use prost::Message as _;
use serde_json::Value;

use super::{Claim, Rejected, effects_of};
use crate::digest::sha256_hex as digest;
use crate::event::{ClaimPhase, ClaimSource};

/// A span as both encodings give it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Span {
    name: String,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(String, String)>,
    /// 0 unset, 1 ok, 2 error.
    status: i32,
    status_message: String,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The claims of an OTLP body of `content_type`; `Ok(vec![])` when it holds no tool span.
pub(crate) fn claims(content_type: &str, body: &[u8]) -> Result<Vec<Claim>, Rejected> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let spans = match media {
        "application/x-protobuf" | "application/protobuf" => from_protobuf(body)?,
        "application/json" => from_json(body)?,
        other => return Err(Rejected::ContentType(other.to_string())),
    };
    let body_digest = digest(body);
    Ok(spans
        .iter()
        .filter_map(|s| claim(s, &body_digest))
        .collect())
}

/// The claim of a tool span; `body_digest`: the request's sha256 (every span of it carries it).
fn claim(s: &Span, body_digest: &str) -> Option<Claim> {
    let is_tool = s.attr("gen_ai.operation.name") == Some("execute_tool")
        || s.name.starts_with("execute_tool");
    if !is_tool {
        return None;
    }
    let tool = s
        .attr("gen_ai.tool.name")
        .map(str::to_string)
        .or_else(|| s.name.strip_prefix("execute_tool ").map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    let args: Value = s
        .attr("gen_ai.tool.call.arguments")
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or(Value::Null);
    let time = |ns: u64| (ns > 0).then(|| crate::time::from_nanos(i128::from(ns)));
    let error = (s.status == 2).then(|| {
        s.attr("error.type")
            .map(str::to_string)
            .unwrap_or_else(|| s.status_message.clone())
    });
    Some(Claim {
        source: ClaimSource::Otlp,
        phase: ClaimPhase::Complete,
        session: s.attr("gen_ai.conversation.id").map(str::to_string),
        call_id: s.attr("gen_ai.tool.call.id").map(str::to_string),
        effects: effects_of(&tool, &args),
        tool,
        cwd: None,
        success: Some(s.status != 2),
        error,
        started: time(s.start_ns),
        ended: time(s.end_ns),
        payload_sha256: body_digest.to_string(),
    })
}

// --- protobuf (opentelemetry/proto/collector/trace/v1, trace/v1, common/v1) ---

#[derive(Clone, PartialEq, prost::Message)]
struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(message, repeated, tag = "2")]
    spans: Vec<PbSpan>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbSpan {
    #[prost(string, tag = "5")]
    name: String,
    #[prost(fixed64, tag = "7")]
    start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    status: Option<Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct KeyValue {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3, 4")]
    value: Option<any_value::Value>,
}

mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub(super) enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(bool, tag = "2")]
        Bool(bool),
        #[prost(int64, tag = "3")]
        Int(i64),
        #[prost(double, tag = "4")]
        Double(f64),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct Status {
    #[prost(string, tag = "2")]
    message: String,
    #[prost(int32, tag = "3")]
    code: i32,
}

fn from_protobuf(body: &[u8]) -> Result<Vec<Span>, Rejected> {
    let req = ExportTraceServiceRequest::decode(body).map_err(|e| Rejected::Field {
        field: "body",
        problem: format!("is not an OTLP ExportTraceServiceRequest: {e}"),
    })?;
    let text = |v: &Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::String(s)) => s.clone(),
        Some(any_value::Value::Bool(b)) => b.to_string(),
        Some(any_value::Value::Int(i)) => i.to_string(),
        Some(any_value::Value::Double(d)) => d.to_string(),
        None => String::new(),
    };
    Ok(req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| Span {
            name: s.name.clone(),
            start_ns: s.start_time_unix_nano,
            end_ns: s.end_time_unix_nano,
            attributes: s
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), text(&kv.value)))
                .collect(),
            status: s.status.as_ref().map_or(0, |st| st.code),
            status_message: s
                .status
                .as_ref()
                .map(|st| st.message.clone())
                .unwrap_or_default(),
        })
        .collect())
}

// --- JSON (the OTLP/JSON mapping: lowerCamelCase, 64-bit integers as strings) ---

fn from_json(body: &[u8]) -> Result<Vec<Span>, Rejected> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Rejected::NotJson(e.to_string()))?;
    let list = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let nanos = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        _ => 0,
    };
    let mut out = Vec::new();
    for rs in list(&v, "resourceSpans") {
        for ss in list(&rs, "scopeSpans") {
            for s in list(&ss, "spans") {
                out.push(Span {
                    name: s.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    start_ns: nanos(s.get("startTimeUnixNano")),
                    end_ns: nanos(s.get("endTimeUnixNano")),
                    attributes: list(&s, "attributes")
                        .iter()
                        .filter_map(|kv| {
                            Some((
                                kv.get("key")?.as_str()?.to_string(),
                                json_value(kv.get("value")?),
                            ))
                        })
                        .collect(),
                    status: s
                        .pointer("/status/code")
                        .and_then(|c| c.as_i64().or_else(|| status_name(c.as_str()?)))
                        .unwrap_or(0) as i32,
                    status_message: s
                        .pointer("/status/message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                });
            }
        }
    }
    Ok(out)
}

/// `STATUS_CODE_ERROR` and its siblings, as some exporters write the enum by name.
fn status_name(s: &str) -> Option<i64> {
    match s {
        "STATUS_CODE_UNSET" => Some(0),
        "STATUS_CODE_OK" => Some(1),
        "STATUS_CODE_ERROR" => Some(2),
        _ => None,
    }
}

/// An `AnyValue` as text.
fn json_value(v: &Value) -> String {
    for k in ["stringValue", "intValue", "doubleValue", "boolValue"] {
        if let Some(x) = v.get(k) {
            return match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::claims::Effect;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::String(v.into())),
            }),
        }
    }

    #[test]
    fn a_protobuf_tool_span_is_a_complete_claim_and_other_spans_are_skipped() {
        let span = |name: &str, attrs: Vec<KeyValue>, code| PbSpan {
            name: name.into(),
            start_time_unix_nano: 1_800_000_000_000_000_000,
            end_time_unix_nano: 1_800_000_002_000_000_000,
            attributes: attrs,
            status: Some(Status {
                message: "boom".into(),
                code,
            }),
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(
                            "execute_tool run_shell",
                            vec![
                                kv("gen_ai.operation.name", "execute_tool"),
                                kv("gen_ai.tool.name", "run_shell"),
                                kv("gen_ai.tool.call.id", "call_7"),
                                kv("gen_ai.tool.call.arguments", r#"{"command":"git push"}"#),
                                kv("gen_ai.conversation.id", "conv_1"),
                            ],
                            2,
                        ),
                        span("chat gpt-5", vec![kv("gen_ai.operation.name", "chat")], 0),
                    ],
                }],
            }],
        };
        let claims = claims("application/x-protobuf", &req.encode_to_vec()).unwrap();
        assert_eq!(claims.len(), 1);
        let c = &claims[0];
        assert_eq!(
            (c.tool.as_str(), c.call_id.as_deref()),
            ("run_shell", Some("call_7"))
        );
        assert_eq!(c.session.as_deref(), Some("conv_1"));
        assert_eq!((c.success, c.error.as_deref()), (Some(false), Some("boom")));
        assert_eq!(
            c.effects,
            vec![Effect::Exec {
                command: "git push".into(),
                background: false
            }]
        );
        assert!(c.ended > c.started);
    }

    #[test]
    fn the_json_encoding_gives_the_same_claim() {
        let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
            "name": "execute_tool fetch", "startTimeUnixNano": "1800000000000000000",
            "endTimeUnixNano": "1800000001000000000",
            "attributes": [
                {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                {"key": "gen_ai.tool.name", "value": {"stringValue": "fetch"}},
                {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": "{\"url\":\"https://api.example.com/v1\"}"}}
            ],
            "status": {"code": "STATUS_CODE_OK"}}]}]}]});
        let claims = claims(
            "application/json; charset=utf-8",
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(claims[0].success, Some(true));
        assert!(
            matches!(&claims[0].effects[0], Effect::Fetch { host, port: 443, .. } if &**host == "api.example.com")
        );
    }

    #[test]
    fn wrong_content_types_and_garbage_are_refused_with_the_reason() {
        assert_eq!(
            claims("text/plain", b"x").unwrap_err().reason(),
            "content_type"
        );
        assert_eq!(
            claims("application/json", b"{").unwrap_err().reason(),
            "not_json"
        );
        assert_eq!(
            claims("application/x-protobuf", b"\xff\xff\xff")
                .unwrap_err()
                .reason(),
            "bad_field"
        );
    }
}
