//! `audit-agent watch`: load, filter, stream records until SIGINT/SIGTERM, drain, exit.

use std::{collections::BTreeSet, fs::File, io::BufWriter};

use anyhow::{Context as _, bail};

use crate::{
    capture::{Capture, CaptureOptions, WatchSet, cgroup::Cgroup2},
    cli::{KernelArgs, WatchArgs},
    enrich::{Enricher, host::HostInfo},
    pipeline::{Pipeline, Sequencer, stream_id},
    sink::{Sink, WriterSink},
    timefmt::now_unix_ns,
};

pub fn capture_options(k: &KernelArgs) -> anyhow::Result<CaptureOptions> {
    let n = k.ring_buffer_bytes;
    if n < 4096 || !n.is_power_of_two() {
        bail!("--ring-buffer-bytes {n}: must be a power of two of at least 4096");
    }
    Ok(CaptureOptions {
        ring_buffer_bytes: n,
        ..Default::default()
    })
}

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let cgroup2 = Cgroup2::find()?;
    let subtrees = args
        .cgroup
        .iter()
        .map(|p| cgroup2.resolve(p))
        .collect::<Result<Vec<_>, _>>()?;
    let uids: BTreeSet<u32> = args.uid.iter().copied().collect();
    if !args.all && subtrees.is_empty() && uids.is_empty() {
        bail!("nothing to watch: give --cgroup PATH, --uid UID or --all");
    }
    let set = WatchSet {
        all: args.all,
        subtrees,
        exact: Vec::new(),
        uids,
    };

    let format = super::default_format(
        args.format,
        args.output.is_none() && super::stdout_is_terminal(),
    );
    let sink: Box<dyn Sink + Send> = match &args.output {
        Some(path) => {
            let f = File::create(path)
                .with_context(|| format!("cannot create output file {}", path.display()))?;
            Box::new(WriterSink::new(format, BufWriter::new(f)))
        }
        None => Box::new(WriterSink::new(format, std::io::stdout())),
    };

    let mut capture = Capture::start(&capture_options(&args.kernel)?)?;
    for tp in &capture.missing {
        tracing::warn!(tracepoint = %tp, "tracepoint not available on this kernel; not captured");
    }
    capture.set_watch(&set)?;

    let host = HostInfo::read();
    let enricher = Enricher::new(&host, cgroup2);
    let start = now_unix_ns().to_string();
    let pid = std::process::id().to_string();
    let seq = Sequencer::new(stream_id(&[&host.name, &host.boot_id, &start, &pid]), 1);
    let pipeline = Pipeline::new(capture, enricher, sink, seq)?;
    tracing::info!(
        cgroups = ?set.subtrees.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
        uids = ?set.uids,
        all = set.all,
        "ready: watching"
    );
    let stats = pipeline.run(super::shutdown_signal()).await?;
    tracing::info!(
        records = stats.records,
        gaps = stats.gaps,
        lost = stats.lost,
        "stopped"
    );
    Ok(())
}
