//! One aligned line per event, for terminals:
//!
//! ```text
//! 19:42:01.123456  file.open       unattributed      1234 cat             ok 3          allow                /etc/passwd [O_RDONLY]
//! ```
//! Kernel bytes are escaped (no control characters reach the terminal).

use std::fmt::Write as _;

use super::{failure_text, resource_text};
use crate::{
    escape::Escaped,
    event::{Activity, Body, Detail, Event, Gap, Outcome},
    linux, time,
};

pub(super) fn write(e: &Event, out: &mut Vec<u8>) {
    let mut line = String::with_capacity(160);
    let t = time::rfc3339(e.time);
    let clock = t.get(11..26).unwrap_or(&t);
    let _ = write!(line, "{clock}  {:<15} ", e.action_name());
    match &e.body {
        Body::Gap(g) => gap(&mut line, g),
        Body::Activity(a) => activity(&mut line, a),
    }
    out.extend_from_slice(line.trim_end().as_bytes());
}

fn gap(line: &mut String, g: &Gap) {
    let _ = write!(
        line,
        "LOST {} record(s) ({}) between {} and {}",
        g.lost,
        g.reason,
        time::rfc3339(g.from),
        time::rfc3339(g.to)
    );
    for (action, n) in &g.by_action {
        let _ = write!(line, " {action}={n}");
    }
    for (pid, n) in &g.by_process {
        let _ = write!(line, " pid:{pid}={n}");
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn activity(line: &mut String, a: &Activity) {
    if let Some(agent) = &a.agent {
        let _ = write!(line, "{:<16} ", truncate(&agent.id, 16));
    }
    let comm = Escaped(&a.process.comm).to_string();
    let _ = write!(line, "{:>7} {:<15} ", a.process.pid, truncate(&comm, 15));
    let result = match a.outcome {
        Outcome::Success(v) => format!("ok {v}"),
        Outcome::Unknown => "unknown".into(),
        Outcome::InProgress => "in_progress".into(),
        Outcome::Failure(e) => failure_text(a, e),
    };
    let _ = write!(line, "{result:<13} ");
    if let Some(v) = &a.verdict {
        let verdict = match &v.rule {
            Some(rule) => format!("{}({rule})", v.decision),
            None => v.decision.to_string(),
        };
        let _ = write!(line, "{verdict:<20} ");
    }
    line.push_str(&resource_text(a));
    detail_text(line, &a.resource.detail);
    for (what, fields) in [
        ("truncated", &a.resource.truncated),
        ("unreadable", &a.resource.unreadable),
    ] {
        if !fields.is_empty() {
            let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            let _ = write!(line, " ({what}: {})", names.join(","));
        }
    }
    if !a.protected.is_empty() {
        let _ = write!(line, " protected={}", a.protected.join(","));
    }
}

/// What an action's details add to its line.
fn detail_text(line: &mut String, detail: &Detail) {
    match detail {
        Detail::Exec {
            argv, interpreter, ..
        } => {
            match argv {
                Some(argv) => {
                    let args: Vec<String> = argv.iter().map(|x| Escaped(x).to_string()).collect();
                    let _ = write!(line, " argv=[{}]", args.join(" "));
                }
                None => line.push_str(" argv=<unreadable>"),
            }
            if let Some(i) = interpreter {
                let _ = write!(line, " interpreter={}", Escaped(&i.shebang));
            }
        }
        Detail::Open { flags, .. } => {
            let _ = write!(line, " [{}]", linux::open_flag_names(*flags).join("|"));
        }
        Detail::Connect { .. } | Detail::Dns(_) | Detail::Tls(_) | Detail::Http(_) => {}
        Detail::Claim(_) => {}
        Detail::Change(c) => change_text(line, c),
        Detail::Move { pid } => {
            let _ = write!(line, " pid={pid}");
        }
        Detail::Signal { sig, .. } => {
            let _ = write!(line, " {}", linux::signal_name(*sig));
        }
        Detail::Exit(_) => {}
        Detail::Compat => {}
        Detail::MapExec(m) => {
            let prot = linux::bit_names(u64::from(m.prot), linux::PROT_FLAGS);
            let _ = write!(line, " [{}] at {:#x}", prot.join("|"), m.start);
            if m.loader {
                line.push_str(" loader");
            }
        }
        Detail::Ring { flags, .. } => {
            let names = linux::bit_names(u64::from(*flags), linux::URING_SETUP_FLAGS);
            let _ = write!(line, " [{}]", names.join("|"));
        }
        Detail::Access(acc) => {
            let _ = write!(line, " {}", linux::access_name(&acc.kind));
            if let Some(f) = &acc.file {
                let _ = write!(line, " -> {}", Escaped(&f.path));
            }
        }
        Detail::SetExe(x) => {
            if let Some(p) = &x.previous {
                let _ = write!(line, " (was {})", Escaped(&p.path));
            }
            if x.before_watch {
                line.push_str(" before_watch");
            }
        }
        Detail::Fd { fd, socket_fd } => {
            let _ = write!(line, " fd={fd}");
            if let Some(s) = socket_fd {
                let _ = write!(line, " via fd {s}");
            }
        }
        Detail::Copy(c) => match &c.to {
            Some(to) => {
                let _ = write!(line, " -> {}", Escaped(&to.path));
            }
            None => line.push_str(" -> <unreadable>"),
        },
    }
}

/// What a file change did besides naming its file.
fn change_text(line: &mut String, c: &crate::event::Change) {
    if let Some(to) = &c.to {
        match to.path() {
            Some(p) => {
                let _ = write!(line, " -> {}", Escaped(p));
            }
            None => line.push_str(" -> <unreadable>"),
        }
    }
    if let Some(content) = &c.content {
        let _ = write!(line, " -> {:?}", Escaped(content).to_string());
    }
    if let Some(m) = c.mode {
        let _ = write!(line, " mode={m:04o}");
    }
    if let Some((uid, gid)) = c.owner {
        let id = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let _ = write!(line, " owner={}:{}", id(uid), id(gid));
    }
    if let Some(l) = c.length {
        let _ = write!(line, " length={l}");
    }
}
