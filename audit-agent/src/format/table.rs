//! Aligned table output for `query --format table`.

use crate::record::{Record, outcome};

fn cell(r: &Record) -> [String; 7] {
    let time = r
        .time
        .get(..23)
        .map_or(r.time.clone(), |t| t.replace('T', " "));
    if let Some(g) = &r.gap {
        return [
            time,
            "-".into(),
            r.action.clone(),
            format!("LOST {}", g.lost),
            g.reason.clone(),
            String::new(),
            format!("{} .. {}", g.from, g.to),
        ];
    }
    let res = r
        .resource
        .as_ref()
        .map_or(String::new(), |res| match (&res.address, res.port) {
            (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.clone(),
            _ => res
                .resolved_path
                .clone()
                .or_else(|| res.path.clone())
                .unwrap_or_default(),
        });
    let result = r
        .result
        .as_ref()
        .map_or(String::new(), |o| match &*o.outcome {
            outcome::SUCCESS => "ok".into(),
            outcome::FAILURE => o.errno.as_deref().unwrap_or("failure").to_string(),
            other => other.into(),
        });
    let verdict = r.policy.as_ref().map_or(String::new(), |p| match &p.rule {
        Some(rule) => format!("{} ({rule})", p.decision),
        None => p.decision.to_string(),
    });
    [
        time,
        r.agent_id().to_string(),
        r.action.clone(),
        result,
        verdict,
        r.protected
            .as_ref()
            .map(|p| p.join(","))
            .unwrap_or_default(),
        res,
    ]
}

/// Renders rows with aligned columns (the last column is not padded).
pub fn render(records: &[Record]) -> String {
    const HEAD: [&str; 7] = [
        "TIME",
        "AGENT",
        "ACTION",
        "RESULT",
        "POLICY",
        "PROTECTED",
        "RESOURCE",
    ];
    let rows: Vec<[String; 7]> = records.iter().map(cell).collect();
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
