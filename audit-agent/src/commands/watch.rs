//! `audit-agent watch`: load, filter, stream records until SIGINT/SIGTERM, drain, exit.

use std::{fs::File, io::BufWriter};

use anyhow::Context as _;

use super::assemble::{Extras, assemble, load_settings, require_watch};
use crate::{
    capture::cgroup::Cgroup2,
    cli::WatchArgs,
    settings::CliWatch,
    sink::{Sink, WriterSink},
};

pub(crate) async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let settings = load_settings(args.config.as_deref())?;
    let cgroup2 = Cgroup2::find()?;
    // Command-line cgroups must exist: a typo should fail now, not watch nothing.
    for c in &args.cgroup {
        cgroup2.resolve(c)?;
    }
    let cli = CliWatch {
        cgroups: args.cgroup.clone(),
        uids: args.uid.clone(),
        all: args.all,
    };
    require_watch(settings.watches_anything(&cli))?;
    let plan = settings.watch_plan(&cli);
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
    let extras = Extras {
        ring_buffer_bytes: args.kernel.ring_buffer_bytes,
        ..Default::default()
    };
    // Before `ready`: a SIGTERM from then on is a clean stop.
    let stop = super::shutdown_signal();
    let a = assemble(settings, plan, cgroup2, sink, extras).await?;
    if let Some(path) = &args.config {
        super::reload::spawn(path.clone(), cli, &a.live)?;
    }
    let stats = a.pipeline.run(stop).await?;
    stats.log("stopped");
    Ok(())
}
