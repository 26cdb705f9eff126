//! `audit-agent report <store url> --workflow NAME | --agent ID --since T -o FILE`: the evidence
//! report of one workflow over a window (docs/report.md).

use std::io::IsTerminal as _;

use anyhow::Context as _;

use super::{store_args::open_store, verify::public_key};
use crate::{
    cli::{ReportArgs, ReportFormat},
    read::report::{self, Level, Options, Scope, html},
    time,
};

/// Writes the report; `Ok(false)` (exit status 1) when the trail of the window did not verify —
/// the report is written all the same and says so at the top.
pub(crate) async fn run(args: ReportArgs) -> anyhow::Result<bool> {
    let now = time::now();
    let since = time::parse_bound(&args.since, now).context("--since")?;
    let until = match &args.until {
        Some(u) => time::parse_bound(u, now).context("--until")?,
        None => now,
    };
    anyhow::ensure!(since <= until, "--since is after --until");
    let scope = Scope {
        workflows: args.workflow.clone(),
        agents: args.agent.clone(),
        since,
        until,
    };
    let opts = Options {
        public_key: public_key(args.public_key.as_deref())?,
        progress: std::io::stderr().is_terminal(),
    };
    let store = open_store(&args.store)?;
    store.check().await?;
    let r = report::build(&store, &scope, &opts).await?;
    let body = match args.format {
        ReportFormat::Html => html::render(&r),
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
    };
    std::fs::write(&args.output, body)
        .with_context(|| format!("cannot write the report to {}", args.output.display()))?;
    eprintln!(
        "report: {} protected action(s) of {} record(s); integrity {:?}; written to {}",
        r.totals.protected_actions,
        r.totals.records,
        r.integrity.level,
        args.output.display()
    );
    if r.integrity.level == Level::Failed {
        eprintln!(
            "report: the trail of this window did NOT verify; the report says so at the top \
             (`audit-agent verify` has the details)"
        );
    }
    Ok(r.integrity.level != Level::Failed)
}
