//! Claims: what an agent runtime says a tool call did, taken in so it can be set against what
//! the kernel observed (`reconcile/`). A claim is evidence of what was said, and when: it is
//! stored in the trail as an `agent.claim` record, attributed like any other record to the
//! process the kernel saw submit it (`listen.rs`), never to whoever the payload says it is.
//!
//! The forms taken in:
//! - an agent hook's payload, handed over by `audit-agent claim` on a local socket: Claude Code's
//!   `PreToolUse`/`PostToolUse` (`hook.rs`), or the documented generic form (`generic.rs`);
//! - OpenTelemetry GenAI `execute_tool` spans, on an OTLP/HTTP receiver (`otlp.rs`);
//! - a file of either, offline (`reconcile --claims FILE`).
//!
//! Each becomes a typed [`Claim`]: the tool, the call it belongs to, and the effects it implies
//! ([`Effect`]: a command run, a file read or written, a URL fetched) — what reconciliation
//! looks for in the kernel's records.

pub(crate) mod generic;
pub(crate) mod hook;
pub(crate) mod listen;
pub(crate) mod otlp;

use std::sync::Arc;

pub(crate) use crate::event::{Claim, Effect};

/// Largest payload taken (bytes); larger ones are refused with a clear error.
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;

/// Why a payload is not a claim: said to the sender, counted, and recorded as a rejection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
    #[error("the payload is {0} bytes; at most {MAX_PAYLOAD} are taken")]
    TooLarge(usize),
    #[error("the payload is not JSON: {0}")]
    NotJson(String),
    #[error("the payload is neither a Claude Code hook payload nor the generic claim form ({0})")]
    UnknownForm(String),
    #[error("field `{field}` {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("too many claims from this process (more than {0} a second): slow down")]
    Flood(u32),
    #[error("unsupported content type `{0}`: send application/json or application/x-protobuf")]
    ContentType(String),
}

impl Rejected {
    /// The reason's name, as rejection records and metrics carry it.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::NotJson(_) => "not_json",
            Self::UnknownForm(_) => "unknown_form",
            Self::Field { .. } => "bad_field",
            Self::Flood(_) => "flood",
            Self::ContentType(_) => "content_type",
        }
    }
}

/// The effects a tool's arguments imply, by the names runtimes use: a `command` is run; a
/// `url` fetched; a `file_path`/`path`/`notebook_path` read, or written when the tool's name
/// says it writes (`Write`, `Edit`, `MultiEdit`, `NotebookEdit`, `write_file`, `edit_file`, ...);
/// files below a `path` (or the working directory) searched by a search or listing tool
/// (`Grep`, `Glob`, `LS`, ...).
pub(crate) fn effects_of(tool: &str, args: &serde_json::Value) -> Vec<Effect> {
    let text = |k: &str| args.get(k).and_then(serde_json::Value::as_str);
    if let Some(command) = text("command").or_else(|| text("cmd")) {
        let background = args
            .get("run_in_background")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        return vec![Effect::Exec {
            command: command.to_string(),
            background,
        }];
    }
    if let Some(url) = text("url")
        && let Some((host, port)) = url_host(url)
    {
        return vec![Effect::Fetch {
            url: url.to_string(),
            host,
            port,
        }];
    }
    let path = text("file_path")
        .or_else(|| text("notebook_path"))
        .or_else(|| text("path"));
    if scans(tool) {
        return vec![Effect::Scan {
            path: path.map(|p| p.as_bytes().to_vec()),
        }];
    }
    match path {
        Some(p) if writes(tool) => vec![Effect::Write {
            path: p.as_bytes().to_vec(),
        }],
        Some(p) if reads(tool) => vec![Effect::Read {
            path: p.as_bytes().to_vec(),
        }],
        _ => Vec::new(),
    }
}

fn writes(tool: &str) -> bool {
    let t = tool.to_ascii_lowercase();
    ["write", "edit", "create", "save", "append", "replace"]
        .iter()
        .any(|w| t.contains(w))
}

/// Search and listing tools (`Grep`, `Glob`, `LS`, `search_files`, `list_directory`, ...).
fn scans(tool: &str) -> bool {
    let t = tool.to_ascii_lowercase();
    ["grep", "glob", "search_files", "list", "find"]
        .iter()
        .any(|w| t.contains(w))
        || t == "ls"
}

fn reads(tool: &str) -> bool {
    let t = tool.to_ascii_lowercase();
    ["read", "view", "open", "cat"]
        .iter()
        .any(|w| t.contains(w))
}

/// The host (as records name hosts: lowercase, no trailing dot) and port of an http(s) URL.
pub(crate) fn url_host(url: &str) -> Option<(Arc<str>, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then(|| (Arc::from(host), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_imply_effects_by_the_names_runtimes_use() {
        assert_eq!(
            effects_of(
                "Bash",
                &json!({"command": "npm test", "run_in_background": true})
            ),
            vec![Effect::Exec {
                command: "npm test".into(),
                background: true
            }]
        );
        assert_eq!(
            effects_of("Edit", &json!({"file_path": "/w/a.rs", "old_string": "x"})),
            vec![Effect::Write {
                path: b"/w/a.rs".to_vec()
            }]
        );
        assert_eq!(
            effects_of("Read", &json!({"file_path": "/w/a.rs"})),
            vec![Effect::Read {
                path: b"/w/a.rs".to_vec()
            }]
        );
        assert_eq!(
            effects_of(
                "WebFetch",
                &json!({"url": "https://API.github.com./repos?x=1"})
            ),
            vec![Effect::Fetch {
                url: "https://API.github.com./repos?x=1".into(),
                host: "api.github.com".into(),
                port: 443
            }]
        );
        assert!(effects_of("WebSearch", &json!({"query": "rust"})).is_empty());
        assert_eq!(
            effects_of("Glob", &json!({"pattern": "**/*.rs"})),
            vec![Effect::Scan { path: None }],
            "a search of the working directory"
        );
        assert_eq!(
            effects_of("Grep", &json!({"pattern": "TODO", "path": "src"})),
            vec![Effect::Scan {
                path: Some(b"src".to_vec())
            }]
        );
        assert!(effects_of("Task", &json!({"prompt": "look around"})).is_empty());
    }

    #[test]
    fn urls_give_their_host_and_port() {
        assert_eq!(
            url_host("http://u@[::1]:8080/x"),
            Some(("::1".into(), 8080))
        );
        assert_eq!(
            url_host("https://a.example"),
            Some(("a.example".into(), 443))
        );
        assert_eq!(url_host("ftp://a.example"), None);
        assert_eq!(url_host("https://a.example:99999/"), None);
    }
}
