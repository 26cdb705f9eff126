//! `audit-agent reconcile STORE --workflow W | --agent A --since T`: the scope's records (claims
//! included) from the store, and claims from `--claims FILE`, reconciled (`reconcile/`).

use std::sync::Arc;

use anyhow::Context as _;

use super::store_args::open_store;
use crate::{
    claims::{Claim, listen, otlp},
    cli::{ReconcileArgs, ReconcileFormat},
    event::{
        Action, Activity, Body, ClaimRecord, Detail, Event, Host, Outcome, Process, Resource,
        Subject, Target, Timestamp,
    },
    read::query::{self, Filter, FilterArgs, QueryOptions},
    reconcile::{self, output},
    time,
    trail::record,
};

pub(crate) async fn run(args: ReconcileArgs) -> anyhow::Result<()> {
    let now = time::now();
    let since = time::parse_bound(&args.since, now).context("--since")?;
    let until = match &args.until {
        Some(u) => time::parse_bound(u, now).context("--until")?,
        None => now,
    };
    anyhow::ensure!(since <= until, "--since is after --until");
    let store = open_store(&args.store)?;
    store.check().await?;
    let filter = Filter::new(FilterArgs {
        agents: args.agent.clone(),
        workflows: args.workflow.clone(),
        actions: Action::ALL.iter().map(|a| a.name().to_string()).collect(),
        since: Some(since),
        until: Some(until),
        ..Default::default()
    })?;
    let opts = QueryOptions {
        skip_corrupt: true,
        include_unlisted: false,
        concurrency: 8,
        progress: false,
    };
    let (hits, _) = query::run(&store, &filter, &opts).await?;
    let mut events: Vec<Event> = hits
        .iter()
        .map(|h| record::read(&h.line))
        .collect::<Result<_, _>>()?;
    if let Some(file) = &args.claims {
        events.extend(offline_claims(file, since, until)?);
    }
    events.sort_by_key(|e| e.time);
    let findings = reconcile::reconcile(&events, args.all);
    let scope = output::Scope {
        agents: args.agent.clone(),
        workflows: args.workflow.clone(),
        since,
        until,
    };
    match args.format {
        ReconcileFormat::Json => {
            println!(
                "{}",
                output::json(&findings, &store.display, &scope, args.all)?
            )
        }
        ReconcileFormat::Table => print!("{}", output::table(&findings)),
    }
    Ok(())
}

/// Claims from a file: an OTLP/JSON export (one object with `resourceSpans`), or JSON lines of
/// hook payloads or generic claims. A claim with no time of its own (a hook payload) is taken
/// to span the whole window; no process submitted it, so any of the scope's records may match.
fn offline_claims(
    file: &std::path::Path,
    since: Timestamp,
    until: Timestamp,
) -> anyhow::Result<Vec<Event>> {
    let text = std::fs::read(file)
        .with_context(|| format!("cannot read claims from {}", file.display()))?;
    let claims: Vec<Claim> = if text.trim_ascii_start().starts_with(b"{\"resourceSpans\"") {
        otlp::claims("application/json", &text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    } else {
        text.split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.trim_ascii().is_empty())
            .map(|(n, l)| {
                listen::parse(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), n + 1))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let host = Arc::new(Host {
        name: "offline".into(),
        boot_id: String::new(),
    });
    Ok(claims
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            if c.started.is_none() {
                c.started = Some(since);
                c.ended = Some(until);
            }
            let at = c.ended.unwrap_or(until);
            Event {
                time: at,
                host: Arc::clone(&host),
                seq: i as u64 + 1,
                stream: Arc::from("claims-file"),
                body: Body::Activity(Box::new(Activity {
                    action: Action::Claim,
                    syscall: crate::linux::CLAIM_SYSCALL,
                    process: Process::default(),
                    subject: Subject::default(),
                    agent: None,
                    resource: Resource {
                        target: Target::Call,
                        detail: Detail::Claim(Box::new(ClaimRecord::Claim(c))),
                        truncated: Vec::new(),
                        unreadable: Vec::new(),
                        uring: None,
                        ia32: None,
                        destination: None,
                    },
                    outcome: Outcome::Success(0),
                    protected: Vec::new(),
                    protected_by_inode: Vec::new(),
                    verdict: None,
                })),
            }
        })
        .collect())
}
