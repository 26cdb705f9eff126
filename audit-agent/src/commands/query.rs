//! `audit-agent query <store url> [filters]`: records from a stored trail, sorted by time.

use std::io::{IsTerminal as _, Write as _};

use super::store_args::open_store;
use crate::{
    cli::{QueryArgs, QueryFormat},
    format::{ecs::to_ecs, ocsf::to_ocsf},
    read::{
        query::{Filter, FilterArgs, QueryOptions, ScanStats, run as run_query},
        table,
    },
    trail::record,
};

fn filter(args: &QueryArgs) -> anyhow::Result<Filter> {
    Filter::new(FilterArgs {
        agents: args.agent.clone(),
        workflows: args.workflow.clone(),
        actions: args.action.clone(),
        resources: args.resource.clone(),
        hosts: args.host.clone(),
        ids: args.id.clone(),
        decisions: args.decision.clone(),
        protected: args.protected.clone().map(|p| (p != "*").then_some(p)),
        outcome: args.outcome.clone(),
        since: args.time.since()?,
        until: args.time.until()?,
    })
}

fn report_stats(stats: &ScanStats, seconds: f64) {
    eprintln!(
        "scanned {} record(s) in {} object(s) ({} bytes); partition pruning skipped {} object(s) in {} partition(s); {seconds:.3}s",
        stats.records_scanned,
        stats.objects_read,
        stats.bytes_read,
        stats.objects_pruned,
        stats.partitions_pruned,
    );
}

pub(crate) async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let filter = filter(&args)?;
    let store = open_store(&args.store)?;
    store.check().await?;
    let opts = QueryOptions {
        skip_corrupt: args.skip_corrupt,
        include_unlisted: args.include_unlisted,
        concurrency: 8,
        progress: std::io::stderr().is_terminal(),
    };
    let started = std::time::Instant::now();
    let (mut hits, stats) = run_query(&store, &filter, &opts).await?;
    let matched = hits.len();
    if let Some(n) = args.limit {
        hits.truncate(n);
    }
    let mut out = std::io::stdout().lock();
    if args.format == QueryFormat::Json {
        for h in &hits {
            out.write_all(&h.line)?;
            out.write_all(b"\n")?;
        }
    } else {
        let events = hits
            .iter()
            .map(|h| record::read(&h.line))
            .collect::<Result<Vec<_>, _>>()?;
        match args.format {
            QueryFormat::Table => out.write_all(table::render(&events).as_bytes())?,
            siem => {
                let map = if siem == QueryFormat::Ecs {
                    to_ecs
                } else {
                    to_ocsf
                };
                for e in &events {
                    serde_json::to_writer(&mut out, &map(e))?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    if args.verbose {
        report_stats(&stats, started.elapsed().as_secs_f64());
    }
    for c in &stats.corrupt {
        eprintln!("skipped corrupt object {c}");
    }
    if !stats.unlisted.is_empty() {
        eprintln!(
            "skipped {} object(s) that no manifest lists (`verify` reports them; \
             --include-unlisted reads them): {}",
            stats.unlisted.len(),
            stats.unlisted.join(", ")
        );
    }
    let shown = if hits.len() < matched {
        format!(" (showing the first {})", hits.len())
    } else {
        String::new()
    };
    eprintln!("{matched} record(s) matched{shown}");
    Ok(())
}
