//! `audit-agent query <store url> [filters]`: records from a stored trail, sorted by time.

use std::io::{IsTerminal as _, Write as _};

use super::store_args::open_store;
use crate::{
    cli::{QueryArgs, QueryFormat},
    format::{ocsf::to_ocsf, table},
    query::{Filter, QueryOptions, run as run_query},
    record::Record,
    timefmt::parse_rfc3339,
};

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let filter = Filter::new(
        args.agent.clone(),
        args.action.clone(),
        args.resource.clone(),
        args.decision.clone(),
        args.protected.clone().map(|p| (p != "*").then_some(p)),
        args.outcome.clone(),
        args.time.since_ns()?,
        args.time.until_ns()?,
    )?;
    let store = open_store(&args.store)?;
    store.check().await?;
    let opts = QueryOptions {
        skip_corrupt: args.skip_corrupt,
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
    match args.format {
        QueryFormat::Json => {
            for h in &hits {
                out.write_all(&h.line)?;
                out.write_all(b"\n")?;
            }
        }
        QueryFormat::Ocsf | QueryFormat::Table => {
            let mut recs = Vec::with_capacity(hits.len());
            for h in &hits {
                let mut r: Record = serde_json::from_slice(&h.line)?;
                r.unix_ns = parse_rfc3339(&r.time).unwrap_or(0);
                recs.push(r);
            }
            if args.format == QueryFormat::Table {
                out.write_all(table::render(&recs).as_bytes())?;
            } else {
                for r in &recs {
                    serde_json::to_writer(&mut out, &to_ocsf(r))?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    out.flush()?;
    if args.verbose {
        eprintln!(
            "scanned {} record(s) in {} object(s) ({} bytes); partition pruning skipped {} object(s) in {} partition(s); {:.3}s",
            stats.records_scanned,
            stats.objects_read,
            stats.bytes_read,
            stats.objects_pruned,
            stats.partitions_pruned,
            started.elapsed().as_secs_f64()
        );
    }
    for c in &stats.corrupt {
        eprintln!("skipped corrupt object {c}");
    }
    let shown = if hits.len() < matched {
        format!(" (showing the first {})", hits.len())
    } else {
        String::new()
    };
    eprintln!("{matched} record(s) matched{shown}");
    Ok(())
}
