//! `audit-agent run`: the daemon. Captures continuously into the spool and exports to the
//! configured store; survives store outages and its own crashes (see docs/storage.md).

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::assemble::{Extras, assemble, require_watch};
use crate::{
    capture::cgroup::Cgroup2,
    cli::RunArgs,
    config::DEFAULT_PATH,
    enrich::host::HostInfo,
    event::GapReason,
    export::Exporter,
    pipeline::{Sequencer, gap},
    settings::{CliWatch, Settings},
    time,
    trail::{store::Store, stream::StreamId},
};

fn load(args: &RunArgs) -> anyhow::Result<(Settings, Option<PathBuf>)> {
    if args.builtin_config {
        return Ok((Settings::builtin()?, None));
    }
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    if args.config.is_none() && !path.exists() {
        bail!(
            "no configuration: {DEFAULT_PATH} does not exist; pass --config FILE (example: \
             deploy/config.example.toml) or --builtin-config for the embedded default"
        );
    }
    Ok((Settings::load(&path)?, Some(path)))
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (settings, path) = load(&args)?;
    let Some(export) = settings.export.clone() else {
        bail!(
            "{}: `run` needs an [export] section (store = \"s3://bucket/prefix\" or \"file:///path\")",
            settings.source
        );
    };
    require_watch(settings.watches_anything(&CliWatch::default()))?;
    let store = Store::open(&export.store)?;
    // An unreachable store is not fatal: records spool until it is back.
    if let Err(e) = store.check().await {
        tracing::warn!(error = %format!("{e:#}"), "store not reachable now; records will spool until it is");
    } else if let Err(e) = store.probe_writes().await {
        // Found out before the first upload instead.
        tracing::warn!(error = %format!("{e:#}"), "cannot find out whether the store refuses overwrites now");
    }
    let host = HostInfo::read();
    let stream = StreamId {
        host: host.name.clone(),
        boot_id: host.boot_id.clone(),
        spool: String::new(), // the spool's own
    };
    let (exporter, writer, start) =
        Exporter::start(&export, store, stream).context("starting the export spool")?;
    let plan = settings.watch_plan(&CliWatch::default());
    let extras = Extras {
        // Record ids are unique per daemon: its spool is part of them.
        sequence: Some(Sequencer::new(start.stream.record_stream(), start.next_seq)),
        ring_buffer_bytes: args.kernel.ring_buffer_bytes,
        signal_pin: Some(crate::capture::signal_pin_path(&export.spool_dir)),
        ..Default::default()
    };
    // Before `ready`: a SIGTERM from then on is a clean stop.
    let stop = super::shutdown_signal();
    let mut a = assemble(settings, plan, Cgroup2::find()?, Box::new(writer), extras).await?;
    if let Some(t) = &a.live.telemetry {
        t.set_export(exporter.stats.clone());
    }
    if let Some(path) = path {
        super::reload::spawn(path, CliWatch::default(), &a.live)?;
    }
    if let Some(prev) = &start.previous {
        // The time the agent was not running is a hole in the trail: say so.
        let now = time::now();
        let (reason, from) = if prev.clean_shutdown {
            (GapReason::AgentRestart, prev.stopped_at.unwrap_or(now))
        } else {
            // From the last second the crashed run was known alive.
            (GapReason::AgentCrash, start.last_alive.unwrap_or(now))
        };
        a.pipeline
            .emit_gap(gap(0, reason, Default::default(), from, now))?;
    }
    tracing::info!(store = %exporter.store.display, spool = %export.spool_dir.display(), stream = %start.stream.key_part(), first_seq = start.next_seq, "exporting");
    let stats = a.pipeline.run(stop).await?;
    stats.log("capture stopped; sealing and uploading");
    let report = exporter.finish().await?;
    if report.all_uploaded {
        tracing::info!("everything uploaded; stopped");
    } else {
        tracing::warn!(
            "not everything was sealed and uploaded before the grace period ended (errors above \
             say why); the rest stays in the spool for the next start"
        );
    }
    Ok(())
}
