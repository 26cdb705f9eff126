//! `audit-agent run`: the daemon. Captures continuously into the spool and exports to the
//! configured store; survives store outages and its own crashes (see docs/storage.md).

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::assemble::{Extras, assemble, watch_plan};
use crate::{
    capture::cgroup::Cgroup2,
    cli::RunArgs,
    config::{Config, DEFAULT_PATH},
    enrich::host::HostInfo,
    export::{Exporter, layout::StreamId, store::Store},
    pipeline::{Sequencer, gap, stream_id},
    timefmt::{now_unix_ns, parse_rfc3339},
};

/// The embedded default configuration (deploy/config.default.toml).
pub const BUILTIN_CONFIG: &str = include_str!("../../../deploy/config.default.toml");

pub fn load(args: &RunArgs) -> anyhow::Result<(Config, String, Option<PathBuf>)> {
    if args.builtin_config {
        let c = Config::parse(BUILTIN_CONFIG, "<builtin config>")?;
        return Ok((c, "<builtin config>".into(), None));
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
    Ok((Config::load(&path)?, path.display().to_string(), Some(path)))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (cfg, source, path) = load(&args)?;
    let Some(export) = cfg.export.clone() else {
        bail!(
            "{source}: `run` needs an [export] section (store = \"s3://bucket/prefix\" or \"file:///path\")"
        );
    };
    let store = Store::open(&export.store_settings())?;
    // An unreachable store is not fatal: records spool until it is back.
    if let Err(e) = store.check().await {
        tracing::warn!(error = %format!("{e:#}"), "store not reachable now; records will spool until it is");
    }
    let host = HostInfo::read();
    let stream = StreamId {
        host: host.name.clone(),
        boot_id: host.boot_id.clone(),
    };
    let (exporter, writer, start) =
        Exporter::start(&export, store, stream).context("starting the export spool")?;
    let cgroup2 = Cgroup2::find()?;
    let plan = watch_plan(&cfg, &[], &[], false)?;
    let seq = Sequencer::new(stream_id(&[&host.name, &host.boot_id]), start.next_seq);
    let mut a = assemble(
        &cfg,
        plan,
        cgroup2,
        Box::new(writer),
        args.kernel.ring_buffer_bytes,
        Extras {
            sequence: Some(seq),
            config_source: Some(&source),
            ..Default::default()
        },
    )
    .await?;
    if let Some(t) = &a.telemetry {
        *t.export.lock().unwrap_or_else(|e| e.into_inner()) = Some(exporter.stats.clone());
        t.health
            .exporting
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(path) = path {
        super::reload::spawn(path, super::reload::CliWatch::default(), cfg.clone(), &a)?;
    }
    if let Some(prev) = &start.previous {
        // The time the agent was not running is a hole in the trail: say so.
        let now = now_unix_ns();
        let from = prev
            .stopped_at
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(now);
        let reason = if prev.clean_shutdown {
            "agent_restart"
        } else {
            "agent_crash"
        };
        let mut g = gap(0, reason, Default::default(), from, now);
        if !prev.clean_shutdown {
            g.from = g.to.clone();
        }
        a.pipeline.emit_gap(g)?;
    }
    tracing::info!(store = %exporter.store.display, spool = %export.spool_dir.display(), first_seq = start.next_seq, "exporting");
    let stats = a.pipeline.run(super::shutdown_signal()).await?;
    stats.log("capture stopped; sealing and uploading");
    let report = exporter.finish().await?;
    if report.all_uploaded {
        tracing::info!("everything uploaded; stopped");
    } else {
        tracing::warn!(
            "upload did not finish within the grace period; the rest stays in the spool for the next start"
        );
    }
    Ok(())
}
