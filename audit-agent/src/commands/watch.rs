//! `audit-agent watch`: load, filter, stream records until SIGINT/SIGTERM, drain, exit.

use std::{fs::File, io::BufWriter};

use anyhow::Context as _;

use super::assemble::{Extras, assemble, load_config, watch_plan};
use crate::{
    capture::cgroup::Cgroup2,
    cli::WatchArgs,
    sink::{Sink, WriterSink},
};

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let cfg = load_config(args.config.as_deref())?;
    let cgroup2 = Cgroup2::find()?;
    // Command-line cgroups must exist: a typo should fail now, not watch nothing.
    for c in &args.cgroup {
        cgroup2.resolve(c)?;
    }
    let plan = watch_plan(&cfg, &args.cgroup, &args.uid, args.all)?;
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
    let source = args.config.as_ref().map(|p| p.display().to_string());
    let a = assemble(
        &cfg,
        plan,
        cgroup2,
        sink,
        args.kernel.ring_buffer_bytes,
        Extras {
            config_source: source.as_deref(),
            ..Default::default()
        },
    )
    .await?;
    if let Some(path) = &args.config {
        super::reload::spawn(
            path.clone(),
            super::reload::CliWatch {
                cgroups: args.cgroup.clone(),
                uids: args.uid.clone(),
                all: args.all,
            },
            cfg.clone(),
            &a,
        )?;
    }
    let stats = a.pipeline.run(super::shutdown_signal()).await?;
    stats.log("stopped");
    Ok(())
}
