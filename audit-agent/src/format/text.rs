//! One aligned line per record, for terminals:
//!
//! ```text
//! 19:42:01.123456  file.open        1234 cat              ok 3          /etc/passwd [O_RDONLY]
//! ```
//! Strings in records are already escaped (no control characters), so output is terminal-safe.

use std::fmt::Write as _;

use crate::record::{Record, outcome};

pub fn write(rec: &Record, out: &mut Vec<u8>) {
    let mut line = String::with_capacity(160);
    // `time` is RFC 3339; keep HH:MM:SS.micro.
    let clock = rec.time.get(11..26).unwrap_or(&rec.time);
    let _ = write!(line, "{clock}  {:<15} ", rec.action);
    if let Some(gap) = &rec.gap {
        let _ = write!(
            line,
            "LOST {} record(s) ({}) between {} and {}",
            gap.lost, gap.reason, gap.from, gap.to
        );
        for (action, n) in &gap.by_action {
            let _ = write!(line, " {action}={n}");
        }
        out.extend_from_slice(line.as_bytes());
        return;
    }
    if let Some(agent) = &rec.agent {
        let _ = write!(line, "{:<16} ", truncate(&agent.id, 16));
    }
    if let Some(p) = &rec.process {
        let _ = write!(line, "{:>7} {:<15} ", p.pid, truncate(&p.comm, 15));
    }
    if let Some(r) = &rec.result {
        let res = match (&*r.outcome, &r.errno, r.retval) {
            (outcome::SUCCESS, _, Some(v)) => format!("ok {v}"),
            (outcome::UNKNOWN, _, _) => "unknown".to_string(),
            (_, Some(e), _) => e.to_string(),
            (o, None, _) => o.to_string(),
        };
        let _ = write!(line, "{res:<13} ");
    }
    if let Some(p) = &rec.policy {
        let verdict = match &p.rule {
            Some(rule) => format!("{}({rule})", p.decision),
            None => p.decision.to_string(),
        };
        let _ = write!(line, "{verdict:<20} ");
    }
    if let Some(r) = &rec.resource {
        if let Some(path) = r.resolved_path.as_ref().or(r.path.as_ref()) {
            line.push_str(path);
        }
        if let Some(argv) = &r.argv {
            let _ = write!(line, " argv=[{}]", argv.join(" "));
        }
        if let Some(flags) = &r.flags {
            let _ = write!(line, " [{}]", flags.join("|"));
        }
        match (&r.address, r.port) {
            (Some(a), Some(p)) if a.contains(':') => {
                let _ = write!(line, "[{a}]:{p}");
            }
            (Some(a), Some(p)) => {
                let _ = write!(line, "{a}:{p}");
            }
            (Some(a), None) => line.push_str(a),
            _ => {}
        }
        if !r.truncated.is_empty() {
            let _ = write!(line, " (truncated: {})", r.truncated.join(","));
        }
    }
    if let Some(protected) = rec.protected.as_ref().filter(|p| !p.is_empty()) {
        let _ = write!(line, " protected={}", protected.join(","));
    }
    out.extend_from_slice(line.trim_end().as_bytes());
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
