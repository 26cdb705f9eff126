//! Output formats, the only place events become text: the native JSON record, OCSF for SIEMs,
//! aligned lines for terminals and tables for `query` (the evidence report's HTML is `report/html`). Every output path (watch, trace, export,
//! query) goes through [`write_event`], so all accept all formats.

pub(crate) mod ecs;

pub(crate) mod ocsf;
mod text;

use std::fmt::Write as _;

use crate::{
    escape::Escaped,
    event::{Action, Activity, Detail, Event, ExitStatus, Target},
    trail::record,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line, native schema (docs/schema.md).
    Json,
    /// One aligned, human-readable line per record.
    Text,
    /// OCSF 1.3.0 events, one JSON object per line (docs/schema.md has the mapping).
    Ocsf,
    /// Elastic Common Schema documents, one per line (docs/siem.md has the mapping).
    Ecs,
}

/// Appends `e` in `format` to `out`, newline-terminated.
pub(crate) fn write_event(format: Format, e: &Event, out: &mut Vec<u8>) -> anyhow::Result<()> {
    match format {
        Format::Json => record::write(e, out)?,
        Format::Ocsf => serde_json::to_writer(&mut *out, &ocsf::to_ocsf(e))?,
        Format::Ecs => serde_json::to_writer(&mut *out, &ecs::to_ecs(e))?,
        Format::Text => text::write(e, out),
    }
    out.push(b'\n');
    Ok(())
}

/// OCSF and ECS consumers treat absent and null alike; absent keeps documents small and
/// validators quiet.
pub(crate) fn strip_nulls(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The resource as people read it: the path (the kernel's when known), `ip:port`,
/// `[ip6]:port`, a unix socket path (`@name` when abstract), or the address family;
/// `<unreadable>` when nothing could be read.
/// What a claim says, in a line: the tool, its call and phase, and the effects it implies.
fn claim_text(c: &crate::event::ClaimRecord) -> String {
    use crate::{claims::Effect, event::ClaimRecord};
    match c {
        ClaimRecord::Rejected { reason, count, .. } => format!("rejected ({reason}) x{count}"),
        ClaimRecord::Claim(c) => {
            let effects: Vec<String> = c
                .effects
                .iter()
                .map(|e| match e {
                    Effect::Exec { command, .. } => format!("exec {command:?}"),
                    Effect::Read { path } => format!("read {}", Escaped(path)),
                    Effect::Write { path } => format!("write {}", Escaped(path)),
                    Effect::Scan { path: Some(path) } => format!("scan {}", Escaped(path)),
                    Effect::Scan { path: None } => "scan .".to_string(),
                    Effect::Fetch { url, .. } => format!("fetch {url}"),
                })
                .collect();
            let call = c.call_id.as_deref().unwrap_or("-");
            format!("{} {call} {}: {}", c.tool, c.phase, effects.join(", "))
        }
    }
}

/// A failure's name: the DNS response code of a lookup (`NXDOMAIN`), the status of an HTTP
/// request (`HTTP 403`), else the errno (`ENOENT`).
pub(crate) fn failure_text(a: &Activity, code: i32) -> String {
    match a.action {
        Action::Dns => {
            crate::wire::dns::rcode_name(u8::try_from(code).unwrap_or(u8::MAX)).into_owned()
        }
        Action::Http => format!("HTTP {code}"),
        Action::Exit => match &a.resource.detail {
            Detail::Exit(Some(ExitStatus::Signal { sig, core_dumped })) => format!(
                "{}{}",
                crate::linux::signal_name(u32::from(*sig)),
                if *core_dumped { " (core dumped)" } else { "" }
            ),
            _ => format!("exit {code}"),
        },
        _ => record::errno_name(code).into_owned(),
    }
}

pub(crate) fn resource_text(a: &Activity) -> String {
    let mut s = String::new();
    if let Detail::Claim(c) = &a.resource.detail {
        return claim_text(c);
    }
    if let (Detail::Exit(_), Some(exe)) = (&a.resource.detail, &a.process.exe) {
        // What ended is the program the process ran.
        let _ = write!(s, "{} (pid {})", Escaped(exe), a.process.pid);
        return s;
    }
    if let Detail::Dns(d) = &a.resource.detail {
        // A lookup names what was asked, and of whom.
        let (name, qtype) = d.question.as_ref().map_or(("?".into(), "?".into()), |q| {
            (q.name.to_string(), crate::wire::dns::type_name(q.qtype))
        });
        let _ = write!(s, "{name} {qtype} @");
    }
    match &a.resource.target {
        Target::File(f) => match f.path() {
            Some(p) => {
                let _ = write!(s, "{}", Escaped(p));
            }
            None => s.push_str("<unreadable>"),
        },
        Target::Inet(ip, port) if ip.is_ipv6() => {
            let _ = write!(s, "[{ip}]:{port}");
        }
        Target::Inet(ip, port) => {
            let _ = write!(s, "{ip}:{port}");
        }
        Target::Unix(f) => match f.path().map(|p| p.split_first()) {
            Some(Some((0, name))) => {
                let _ = write!(s, "@{}", Escaped(name));
            }
            Some(_) => {
                let _ = write!(s, "{}", Escaped(f.path().unwrap_or_default()));
            }
            None => s.push_str("<unreadable>"),
        },
        Target::OtherAddress { family } => s.push_str(&record::family_name(*family)),
        Target::Cgroup { path, .. } => {
            let _ = write!(s, "{}", Escaped(path));
        }
        Target::Process { pid } => {
            let _ = write!(s, "pid {pid}");
        }
        Target::Ring { fd } => {
            let _ = write!(s, "io_uring fd {fd}");
        }
        Target::Call => s.push('-'),
    }
    if a.action != Action::Dns
        && let Some(h) = a
            .resource
            .destination
            .as_deref()
            .and_then(|d| d.hosts.first())
    {
        let _ = write!(s, " ({})", h.name);
    }
    s
}

/// `HH:MM:SS.mmm` of an event's time (UTC).
pub(crate) fn short_time(e: &Event) -> String {
    let t = crate::time::rfc3339(e.time);
    t.get(11..23).unwrap_or(&t).to_string()
}
