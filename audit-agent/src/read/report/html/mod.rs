//! The evidence report as one self-contained HTML page: inline CSS and SVG, no scripts, nothing
//! fetched, printable to PDF (A4, tables break between rows). The machine-readable appendix is
//! embedded as JSON (`<script type="application/json" id="evidence">`, never executed).

mod chart;

use std::fmt::Write as _;

use super::{ClaimedVsObserved, Count, Failure, Level, Report, Row};
use crate::{reconcile::CallOutcome, time};

/// Nothing may be fetched or run: the page is complete as written, whoever views it, and a
/// viewer's console reports any attempt (the tests rely on that).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Text for HTML element content and double-quoted attributes.
pub(super) fn esc(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).into_owned()
}

const STYLE: &str = r#"
:root { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1b1b1b; }
body { max-width: 1100px; margin: 24px auto; padding: 0 16px; font-size: 14px; line-height: 1.45; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; }
.sub { color: #555; margin: 0 0 16px; }
.verdict { border-radius: 6px; padding: 12px 16px; margin: 16px 0; border: 2px solid; }
.verdict h2 { border: 0; margin: 0 0 6px; font-size: 20px; }
.verified { background: #e8f5e9; border-color: #2e7d32; }
.qualified { background: #fff4e0; border-color: #c77700; }
.failed { background: #fdecea; border-color: #b3261e; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; vertical-align: top; padding: 4px 6px; border-bottom: 1px solid #e2e2e2; }
th { background: #f3f3f3; font-weight: 600; }
td.mono, .mono { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 12px; word-break: break-all; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card b { display: block; font-size: 22px; }
.deny { color: #b3261e; font-weight: 700; } .review { color: #c77700; font-weight: 700; } .allow { color: #2e7d32; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }
svg.chart { width: 100%; height: auto; }
.note { color: #555; font-size: 12px; }
@page { size: A4; margin: 14mm; }
td.res { width: 26%; }
@media print { body { margin: 0; max-width: none; font-size: 10px; } table { font-size: 9px; } td.mono, .mono { font-size: 8.5px; } .note { font-size: 8px; } th, td { padding: 2px 3px; } tr, .card, svg { break-inside: avoid; } h2 { break-after: avoid; } }
"#;

/// A time as a reader wants it: `2026-11-27 11:31:22.418` (every time in the report is UTC;
/// the JSON and the records keep nanoseconds).
fn when(t: jiff::Timestamp) -> String {
    let s = time::rfc3339(t);
    let s = s.get(..23).unwrap_or(&s);
    esc(&s.replacen('T', " ", 1))
}

/// The whole page.
pub(crate) fn render(r: &Report) -> String {
    let mut s = String::new();
    let who = scope_name(r);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\
         <title>Audit evidence report: {}</title><style>{STYLE}</style></head><body>",
        esc(&who)
    );
    let _ = write!(
        s,
        "<h1>Audit evidence report: {}</h1><p class=\"sub\">{} to {} UTC · generated {} UTC by \
         audit-agent from <span class=\"mono\">{}</span></p>",
        esc(&who),
        when(r.scope.since),
        when(r.scope.until),
        when(r.generated),
        esc(&r.store)
    );
    integrity(&mut s, r);
    scope(&mut s, r);
    glance(&mut s, r);
    protected(&mut s, &r.protected_actions);
    tops(&mut s, "Top resources", &r.top_resources);
    tops(&mut s, "Top destinations", &r.top_destinations);
    tops(&mut s, "Destinations by host", &r.destinations_by_host);
    failures(&mut s, &r.failed_attempts, r.totals.failed);
    claims(&mut s, r.claimed_vs_observed.as_ref());
    gaps(&mut s, r);
    appendix(&mut s, r);
    s.push_str("</body></html>\n");
    s
}

fn scope_name(r: &Report) -> String {
    let mut parts: Vec<String> = r
        .scope
        .workflows
        .iter()
        .map(|w| format!("workflow {w}"))
        .collect();
    parts.extend(
        r.scope
            .agents_requested
            .iter()
            .map(|a| format!("agent {a}")),
    );
    parts.join(", ")
}

fn integrity(s: &mut String, r: &Report) {
    let i = &r.integrity;
    let class = match i.level {
        Level::Verified => "verified",
        Level::Qualified => "qualified",
        Level::Failed => "failed",
    };
    let _ = write!(
        s,
        "<section id=\"integrity\" class=\"verdict {class}\"><h2>Integrity: {}</h2><p>{} \
         {} stream(s), {} object(s) and {} record(s) in the window were re-hashed against their \
         manifest chains.</p>",
        esc(&class.to_uppercase()),
        esc(&i.headline),
        i.streams,
        i.objects_checked,
        i.records_checked
    );
    if !i.findings.is_empty() {
        s.push_str("<ul>");
        for f in &i.findings {
            let _ = write!(s, "<li>{}</li>", esc(f));
        }
        s.push_str("</ul>");
    }
    for k in &i.signers {
        let _ = write!(
            s,
            "<p>Signed by key <span class=\"mono\">{}</span> ({}){}</p>",
            esc(&k.fingerprint),
            esc(&k.public_key),
            if k.pinned {
                ": the trusted key given to the report"
            } else {
                ": not checked against a trusted key"
            }
        );
    }
    s.push_str("</section>");
}

fn scope(s: &mut String, r: &Report) {
    let sc = &r.scope;
    s.push_str("<section id=\"scope\"><h2>Scope</h2><table><tr><th>Agent</th><th>Name</th><th>Workflow</th><th>Owner</th><th>Records</th></tr>");
    for a in &sc.agents {
        let _ = write!(
            s,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.id),
            esc(a.name.as_deref().unwrap_or("")),
            esc(a.workflow.as_deref().unwrap_or("")),
            esc(a.owner.as_deref().unwrap_or("")),
            a.records
        );
    }
    s.push_str("</table><table><tr><th>Host</th><th>Boot ids</th></tr>");
    for h in &sc.hosts {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"mono\">{}</td></tr>",
            esc(&h.name),
            esc(&h.boot_ids.join(", "))
        );
    }
    s.push_str("</table><table><tr><th>Policy version in force</th><th>From</th><th>To</th><th>Records judged</th></tr>");
    for p in &sc.policy_versions {
        let _ = write!(
            s,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.version),
            when(p.first),
            when(p.last),
            p.records
        );
    }
    s.push_str("</table></section>");
}

fn glance(s: &mut String, r: &Report) {
    let t = &r.totals;
    s.push_str("<section id=\"glance\"><h2>At a glance</h2><div class=\"cards\">");
    for (n, label, class) in [
        (t.records, "actions recorded", ""),
        (t.protected_actions, "protected actions", ""),
        (t.deny, "denied by policy", "deny"),
        (t.deny_succeeded, "denied, yet succeeded", "deny"),
        (t.review, "for review", "review"),
        (t.failed, "failed attempts", ""),
        (t.processes, "processes", ""),
        (
            t.lost,
            "records lost (gaps)",
            if t.lost > 0 { "deny" } else { "" },
        ),
    ] {
        let _ = write!(
            s,
            "<div class=\"card\"><b class=\"{class}\">{n}</b>{label}</div>"
        );
    }
    let a = &r.activity;
    let _ = write!(
        s,
        "</div><h3>Actions per {} by decision</h3><div class=\"legend\"><span style=\"background:{}\"></span>deny<span style=\"background:{}\"></span>review<span style=\"background:{}\"></span>allow<span style=\"background:{}\"></span>no verdict</div>{}</section>",
        chart::bucket_name(a.bucket_seconds),
        chart::DENY,
        chart::REVIEW,
        chart::ALLOW,
        chart::NONE,
        chart::activity(&a.buckets, a.bucket_seconds)
    );
}

fn decision_cell(d: Option<&str>) -> String {
    match d {
        Some(d) => format!("<span class=\"{d}\">{}</span>", esc(&d.to_uppercase())),
        None => "—".into(),
    }
}

fn protected(s: &mut String, rows: &[Row]) {
    let _ = write!(
        s,
        "<section id=\"protected\"><h2>Protected actions ({})</h2><p class=\"note\">Every action \
         on a protected resource or with a deny or review verdict; denied first, then for review, \
         then by time. audit-agent observes and does not block: a deny verdict says the policy \
         forbids the action, and Result says what the kernel did. The record id names the stored \
         record (Appendix).</p>",
        rows.len()
    );
    if rows.is_empty() {
        s.push_str("<p>None in this window.</p></section>");
        return;
    }
    s.push_str("<table><tr><th>Time</th><th>Agent</th><th>Process</th><th>Action</th><th>Resource</th><th>Result</th><th>Decision</th><th>Rule</th><th>Record</th></tr>");
    for r in rows {
        let result = match &r.errno {
            Some(e) => format!("{} ({e})", r.outcome),
            None => r.outcome.to_string(),
        };
        let sets = if r.protected.is_empty() {
            String::new()
        } else {
            format!(
                "<br><span class=\"note\">protected: {}</span>",
                esc(&r.protected.join(", "))
            )
        };
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}{}</td><td>{} <span class=\"note\">pid {}</span></td><td>{}<br><span class=\"note\">{}</span></td><td class=\"mono res\">{}{sets}</td><td>{}</td><td>{}</td><td>{}<br><span class=\"note mono\">{}</span></td><td class=\"mono\">{}</td></tr>",
            when(r.time),
            esc(&r.agent),
            r.owner
                .as_deref()
                .map(|o| format!("<br><span class=\"note\">{}</span>", esc(o)))
                .unwrap_or_default(),
            esc(&r.lineage.join(" ← ")),
            r.pid,
            esc(r.action),
            esc(r.syscall),
            esc(&r.resource),
            esc(&result),
            decision_cell(r.decision),
            esc(r.rule.as_deref().unwrap_or("default")),
            esc(r.policy_version.as_deref().unwrap_or("")),
            esc(&r.id)
        );
    }
    s.push_str("</table></section>");
}

fn tops(s: &mut String, title: &str, items: &[Count]) {
    let _ = write!(s, "<section><h2>{}</h2>", esc(title));
    if items.is_empty() {
        s.push_str("<p>None.</p></section>");
        return;
    }
    let _ = write!(
        s,
        "{}<p class=\"note\">Red: denied. * a protected resource.</p></section>",
        chart::bars(items, title)
    );
}

fn failures(s: &mut String, items: &[Failure], total: u64) {
    let _ = write!(
        s,
        "<section id=\"failed\"><h2>Failed attempts ({total})</h2>"
    );
    if items.is_empty() {
        s.push_str("<p>None.</p></section>");
        return;
    }
    s.push_str("<table><tr><th>Count</th><th>Action</th><th>Resource</th><th>Error</th><th>Agents</th></tr>");
    for f in items {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}</td></tr>",
            f.count,
            esc(f.action),
            esc(&f.resource),
            esc(&f.errno),
            esc(&f.agents.join(", "))
        );
    }
    s.push_str("</table></section>");
}

/// Claimed vs observed: the calls the kernel did not bear out, and the protected actions no
/// claim explains.
fn claims(s: &mut String, c: Option<&ClaimedVsObserved>) {
    s.push_str("<section id=\"claims\"><h2>Claimed vs observed</h2>");
    let Some(c) = c else {
        s.push_str("<p>No agent in this scope reported its tool calls (no claims).</p></section>");
        return;
    };
    let t = &c.totals;
    let _ = write!(
        s,
        "<p>{} tool call(s) claimed: {} substantiated, <span class=\"deny\">{} contradicted</span>, \
         <span class=\"review\">{} unsubstantiated</span>, {} not locally verifiable. {} protected \
         action(s) explained by a claim, <span class=\"deny\">{} unexplained</span>.</p>",
        c.calls.len(),
        t.substantiated,
        t.contradicted,
        t.unsubstantiated,
        t.not_locally_verifiable,
        t.records_explained,
        t.records_unexplained
    );
    let flagged: Vec<_> = c
        .calls
        .iter()
        .filter(|x| !matches!(x.outcome, CallOutcome::Substantiated))
        .collect();
    if !flagged.is_empty() {
        s.push_str(
            "<table><tr><th>Call</th><th>Tool</th><th>Outcome</th><th>Why</th><th>Claims</th></tr>",
        );
        for x in flagged {
            let _ = write!(
                s,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                esc(&x.call),
                esc(&x.tool),
                esc(x.outcome.name()),
                esc(&x.reasons.join("; ")),
                esc(&x.claim_ids.join(" "))
            );
        }
        s.push_str("</table>");
    }
    if !c.unexplained.is_empty() {
        s.push_str("<table><tr><th>Time</th><th>Unexplained protected action</th><th>Resource</th><th>Record</th></tr>");
        for r in &c.unexplained {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
                when(r.time),
                esc(r.action),
                esc(&r.resource),
                esc(&r.id)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</section>");
}

fn gaps(s: &mut String, r: &Report) {
    let g = &r.integrity.gaps;
    let _ = write!(s, "<section id=\"gaps\"><h2>Gaps ({})</h2>", g.len());
    if g.is_empty() {
        s.push_str("<p>The agent recorded no loss in this window.</p></section>");
        return;
    }
    s.push_str("<table><tr><th>From</th><th>To</th><th>Host</th><th>Lost</th><th>Why</th><th>Record</th></tr>");
    for x in g {
        let by: Vec<String> = x
            .by_action
            .iter()
            .map(|(a, n)| format!("{a}: {n}"))
            .collect();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}<br><span class=\"note\">{}</span></td><td><b>{}</b>: {}</td><td class=\"mono\">{}</td></tr>",
            when(x.from),
            when(x.to),
            esc(&x.host),
            x.lost,
            esc(&by.join(", ")),
            esc(x.reason),
            esc(x.explanation),
            esc(&x.id)
        );
    }
    s.push_str("</table></section>");
}

fn appendix(s: &mut String, r: &Report) {
    let _ = write!(
        s,
        "<section id=\"appendix\"><h2>Appendix: the records behind every row</h2><p class=\"note\">\
         Each record below is embedded in this file exactly as stored (the JSON block \
         <span class=\"mono\">#evidence</span>), with the object it was read from. \
         <span class=\"mono\">audit-agent verify {store}</span> re-checks that object against \
         its manifest chain; <span class=\"mono\">audit-agent query {store} --since T --until T \
         --format json</span> around a row's time shows the record.</p><table><tr><th>Record</th>\
         <th>Object</th></tr>",
        store = esc(&r.store)
    );
    for e in &r.appendix {
        let _ = write!(
            s,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td></tr>",
            esc(&e.id),
            esc(&e.object)
        );
    }
    let json = serde_json::to_string(&r.appendix).unwrap_or_else(|_| "[]".into());
    // Records hold what watched processes named (paths, argv): no `<` may reach the HTML
    // parser, which could end the block (`</script>`) or change how it ends (`<!--`). `\u003c`
    // is the same JSON string.
    let _ = write!(
        s,
        "</table><script type=\"application/json\" id=\"evidence\">{}</script></section>",
        json.replace('<', "\\u003c")
    );
}
