//! `audit-agent trace -- CMD [ARGS...]`: run a command in a fresh, dedicated cgroup so that it
//! and all its descendants — and nothing else — are watched from the first instruction; stream
//! its records, then print a summary. Exit status is the command's.

use std::{
    fs::File,
    io::BufWriter,
    os::unix::process::ExitStatusExt as _,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::signal::unix::{SignalKind, signal};

use super::assemble::{Extras, assemble};
use crate::{
    capture::{cgroup::Cgroup2, plan::WatchPlan},
    claims::listen::{ClaimsSettings, Limits},
    cli::TraceArgs,
    enrich::host::HostInfo,
    export::{ExportSettings, Exporter},
    format::Format,
    pipeline::Sequencer,
    settings::Settings,
    sink::{Sink, Tee, WriterSink},
    summary::trace::{Summary, SummaryObserver},
    time,
    trail::{
        store::Store,
        stream::{StreamId, record_stream},
    },
};

/// A cgroup created for one trace and removed afterwards.
struct TraceCgroup {
    rel: String,
    fs: PathBuf,
}

impl TraceCgroup {
    fn create(cg: &Cgroup2) -> anyhow::Result<Self> {
        let rel = format!(
            "/audit-agent-trace/{}-{}",
            std::process::id(),
            time::now().subsec_nanosecond()
        );
        let fs = cg.fs_path(&rel);
        std::fs::create_dir_all(&fs).with_context(|| {
            format!(
                "cannot create the trace cgroup {} (needs root and a writable cgroup2 mount)",
                fs.display()
            )
        })?;
        Ok(Self { rel, fs })
    }

    fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.fs.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// Waits until no process is left (up to `patience`), then kills stragglers. Returns how
    /// many had to be killed.
    async fn drain(&self, patience: Duration) -> usize {
        let until = Instant::now() + patience;
        while !self.pids().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.pids();
        if left.is_empty() {
            return 0;
        }
        if std::fs::write(self.fs.join("cgroup.kill"), b"1").is_err() {
            for p in &left {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(*p, libc::SIGKILL) };
            }
        }
        let until = Instant::now() + Duration::from_secs(2);
        while !self.pids().is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        left.len()
    }
}

impl Drop for TraceCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.fs).is_ok() || !self.fs.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(cgroup = %self.fs.display(), "could not remove the trace cgroup");
    }
}

/// An export of the trace's records and its spool (removed once everything is uploaded).
struct TraceExport {
    exporter: Exporter,
    spool: PathBuf,
}

impl TraceExport {
    /// Seals and uploads what is left; the spool goes when nothing remains in it.
    async fn finish(self) -> anyhow::Result<()> {
        if self.exporter.finish().await?.all_uploaded {
            let _ = std::fs::remove_dir_all(&self.spool);
        } else {
            eprintln!(
                "audit-agent: warning: the export did not finish; data remains in the trace spool {}",
                self.spool.display()
            );
        }
        Ok(())
    }
}

/// The trace's outputs: records to stderr or `--output`, and to `--export`'s store.
async fn outputs(
    args: &TraceArgs,
    settings: &Settings,
    host: &HostInfo,
    started: jiff::Timestamp,
) -> anyhow::Result<(Vec<Box<dyn Sink + Send>>, Option<TraceExport>)> {
    let to_terminal = args.output.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let format: Format = super::default_format(args.format, to_terminal);
    let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
    let mut exporter = None;
    if let Some(url) = &args.export {
        let spool = std::env::temp_dir().join(format!(
            "audit-agent-trace-{}-{}",
            std::process::id(),
            started.as_nanosecond()
        ));
        let conf = ExportSettings::for_trace(settings.export.as_ref(), url, spool.clone())?;
        let store = Store::open(&conf.store)?;
        store.check().await?;
        // Each trace is its own stream, so its keys and chain never collide with the daemon's.
        let stream = StreamId {
            host: format!(
                "{}/trace-{}-{}",
                host.name,
                started.as_second(),
                std::process::id()
            ),
            boot_id: host.boot_id.clone(),
            spool: String::new(), // the trace's own spool's
        };
        let (e, writer, _) = Exporter::start(&conf, store, stream)?;
        sinks.push(Box::new(writer));
        exporter = Some(TraceExport { exporter: e, spool });
    }
    match &args.output {
        Some(p) => {
            let f = File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            sinks.push(Box::new(WriterSink::new(format, BufWriter::new(f))));
        }
        None => sinks.push(Box::new(WriterSink::new(format, std::io::stderr()))),
    }
    Ok((sinks, exporter))
}

/// Starts the command in the trace cgroup: it moves itself in between fork and exec, so its
/// exec is the first thing recorded.
fn spawn_in(
    cg: &TraceCgroup,
    program: &str,
    args: &[String],
    claims_socket: &std::path::Path,
) -> anyhow::Result<tokio::process::Child> {
    let procs = cg.fs.join("cgroup.procs");
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env("AUDIT_AGENT_CLAIMS_SOCKET", claims_socket);
    // SAFETY: the closure only performs a write(2) to a file and returns.
    unsafe {
        command.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    command
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))
}

/// Waits for the command, forwarding SIGINT/SIGTERM to it.
async fn wait_forwarding_signals(
    child: &mut tokio::process::Child,
) -> anyhow::Result<std::process::ExitStatus> {
    let pid = child.id().map_or(0, |p| p as i32);
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            s = child.wait() => return Ok(s?),
            _ = int.recv() => {
                // A terminal Ctrl-C reaches the command too; forward only if it is still running.
                tokio::time::sleep(Duration::from_millis(100)).await;
                // SAFETY: plain kill(2) on our child.
                unsafe { libc::kill(pid, libc::SIGINT) };
            }
            _ = term.recv() => {
                // SAFETY: plain kill(2) on our child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

/// This trace's claims socket, removed when the trace ends.
struct TempSocket {
    path: std::path::PathBuf,
}

impl TempSocket {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("audit-agent-claims-{}.sock", std::process::id()));
        Self { path }
    }
}

impl Drop for TempSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn exit_description(status: std::process::ExitStatus) -> (i32, String) {
    match (status.code(), status.signal()) {
        (Some(c), _) => (c, format!("exited with status {c}")),
        (None, Some(sig)) => (128 + sig, format!("killed by signal {sig}")),
        _ => (1, "ended".to_string()),
    }
}

pub(crate) async fn run(args: TraceArgs) -> anyhow::Result<i32> {
    let Some((program, cmd_args)) = args.command.split_first() else {
        bail!("no command: usage `audit-agent trace [OPTIONS] -- CMD [ARGS...]`");
    };
    // Without a configuration, the built-in policy: credentials, the metadata service and data
    // movers are flagged from the first trace on.
    let settings = match args.config.as_deref() {
        Some(path) => Settings::load(path)?,
        None => Settings::builtin()?,
    };
    let cgroup2 = Cgroup2::find()?;
    let cg = TraceCgroup::create(&cgroup2)?;
    let cmd_name = std::path::Path::new(program)
        .file_name()
        .map_or_else(|| program.clone(), |n| n.to_string_lossy().into_owned());
    let agent_id = args
        .agent
        .clone()
        .unwrap_or_else(|| format!("trace:{cmd_name}"));
    let host = HostInfo::read();
    let started_at = time::now();
    let (sinks, exporter) = outputs(&args, &settings, &host, started_at).await?;
    let mut plan = WatchPlan::new(false);
    plan.add_subtree(&cg.rel);
    let started_ns = started_at.as_nanosecond().to_string();
    let claims_socket = TempSocket::new();
    let summary = Arc::new(Mutex::new(
        Summary::new(std::process::id()).with_claims_socket(&claims_socket.path),
    ));
    let extras = Extras {
        trace_agent: Some((&agent_id, &cg.rel)),
        sequence: Some(Sequencer::new(
            record_stream(&[&host.name, &host.boot_id, &started_ns, "trace"]),
            1,
        )),
        ring_buffer_bytes: args.kernel.ring_buffer_bytes,
        observers: vec![Box::new(SummaryObserver(summary.clone()))],
        signal_pin: None,
        // The command's hooks hand claims to this trace (AUDIT_AGENT_CLAIMS_SOCKET).
        claims: Some(ClaimsSettings {
            socket: Some(claims_socket.path.clone()),
            otlp_listen: None,
            limits: Limits { per_second: 50 },
        }),
    };
    let a = assemble(settings, plan, cgroup2, Box::new(Tee(sinks)), extras).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pipeline = tokio::spawn(a.pipeline.run(async {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let mut child = spawn_in(&cg, program, cmd_args, &claims_socket.path)?;
    let status = wait_forwarding_signals(&mut child).await?;
    let duration = started.elapsed();
    let killed = cg.drain(Duration::from_secs(2)).await;
    // The records of every process that was in the cgroup are in the ring buffer now: each was
    // written by that process before it left the cgroup, or, for the SIGCHLD that ended the wait
    // above, by the kernel before the wait returned. The stop drains the ring: no fixed wait.
    let _ = stop_tx.send(());
    let stats = pipeline.await.context("pipeline task")??;
    if let Some(e) = exporter {
        e.finish().await?;
    }
    let (code, exit) = exit_description(status);
    let mut text = summary
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .render(duration, &exit);
    if killed > 0 {
        text.push_str(&format!(
            "note: {killed} process(es) of the command were still running 2s after it exited and were killed\n"
        ));
    }
    if stats.lost > 0 {
        text.push_str(&format!(
            "note: {} record(s) lost in the kernel (ring buffer full)\n",
            stats.lost
        ));
    }
    eprint!("{text}");
    Ok(code)
}
