//! Aligned table output for `query --format table`.

use crate::format::{failure_text, resource_text};
use crate::{
    event::{Body, Event, Outcome},
    time,
};

fn cells(e: &Event) -> [String; 7] {
    let t = time::rfc3339(e.time);
    let when = t.get(..23).map_or(t.clone(), |t| t.replace('T', " "));
    match &e.body {
        Body::Gap(g) => [
            when,
            "-".into(),
            e.action_name().into(),
            format!("LOST {}", g.lost),
            g.reason.to_string(),
            String::new(),
            format!("{} .. {}", time::rfc3339(g.from), time::rfc3339(g.to)),
        ],
        Body::Activity(a) => [
            when,
            e.agent_id().to_string(),
            a.action.to_string(),
            match a.outcome {
                Outcome::Success(_) => "ok".into(),
                Outcome::Failure(code) => failure_text(a, code),
                other => other.kind().to_string(),
            },
            a.verdict
                .as_ref()
                .map_or_else(String::new, |v| match &v.rule {
                    Some(rule) => format!("{} ({rule})", v.decision),
                    None => v.decision.to_string(),
                }),
            a.protected.join(","),
            resource_text(a),
        ],
    }
}

/// Renders rows with aligned columns (the last column is not padded).
pub(crate) fn render(events: &[Event]) -> String {
    const HEAD: [&str; 7] = [
        "TIME",
        "AGENT",
        "ACTION",
        "RESULT",
        "POLICY",
        "PROTECTED",
        "RESOURCE",
    ];
    let rows: Vec<[String; 7]> = events.iter().map(cells).collect();
    let mut widths = HEAD.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count()).min(40);
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&HEAD.map(String::from));
    for r in &rows {
        line(r);
    }
    out
}
