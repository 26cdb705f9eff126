//! Section 8: many agents on one node. One `[[agents]]` entry and one cgroup per agent, each agent
//! a process opening a file at a paced rate and fork+exec'ing now and then (`loadgen agents`),
//! the daemon (`audit-agent run`) exporting to a local store. Per agent count: the daemon's RSS
//! over time, its CPU per record (everything it spent from the start of the load to its exit,
//! sealing and uploading included), objects written per second, records delivered, kernel
//! drops, and `verify` of the trail it left.

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde_json::Value;

use super::{
    Env, final_statistics, load_cpu, pin, proc_ticks,
    results::{AgentRun, Agents, RssSample},
    start_until,
};

/// Records per second each agent causes (its opens; its execs add a few).
pub(super) const PER_AGENT_RATE: u64 = 20;
/// How often each agent fork+execs `/bin/true`: a little process churn.
pub(super) const EXEC_EVERY_MS: u64 = 10_000;
/// Agent counts of the sweep; the last one also runs long.
const SWEEP: [usize; 4] = [10, 100, 300, 1000];

/// The section: one agent at the rate of the largest count's total (the reference), the sweep,
/// the largest count for a long run, and the reference again: the same run of the same code has
/// moved by 15% between two runs minutes apart on these machines, so the long run is set against
/// the mean of a reference before it and one after.
pub(super) fn agents(env: &Env) -> anyhow::Result<Agents> {
    let (short, long) = if env.quick {
        (20.0, 60.0)
    } else {
        (60.0, 600.0)
    };
    let largest = SWEEP[SWEEP.len() - 1];
    let mut runs = Vec::new();
    let total = PER_AGENT_RATE * largest as u64;
    runs.push(run(env, 1, total, short)?);
    for n in &SWEEP[..SWEEP.len() - 1] {
        runs.push(run(env, *n, PER_AGENT_RATE, short)?);
    }
    runs.push(run(env, largest, PER_AGENT_RATE, long)?);
    runs.push(run(env, 1, total, short)?);
    Ok(Agents {
        per_agent_rate: PER_AGENT_RATE,
        exec_every_ms: EXEC_EVERY_MS,
        runs,
    })
}

/// The cgroups of `n` agents (`<mount>/audit-bench/agents/aNNNN`), made afresh.
fn cgroups(env: &Env, n: usize) -> anyhow::Result<PathBuf> {
    let root = env.cg_path("/audit-bench/agents");
    remove_cgroups(&root);
    for i in 0..n {
        std::fs::create_dir_all(root.join(format!("a{i:04}")))?;
    }
    Ok(root)
}

fn remove_cgroups(root: &Path) {
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
    let _ = std::fs::remove_dir(root);
}

/// The daemon's configuration: one agent per cgroup, the store and spool under `dir`.
fn config(n: usize, dir: &Path) -> anyhow::Result<PathBuf> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut s = String::new();
    for i in 0..n {
        let _ = writeln!(
            s,
            "[[agents]]\nid = \"agent-{i:04}\"\ncgroup = [\"/audit-bench/agents/a{i:04}\"]\n"
        );
    }
    let _ = write!(
        s,
        "[[protected]]\nname = \"secrets\"\nfiles = [\"/etc/shadow\"]\n\n\
         [[rules]]\nid = \"no-secrets\"\nprotected = [\"secrets\"]\ndecision = \"deny\"\n\n\
         [export]\nstore = \"file://{}\"\nspool_dir = \"{}\"\n",
        dir.join("trail").display(),
        dir.join("spool").display()
    );
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, s)?;
    Ok(cfg)
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `RssAnon`, ...).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    status_kb(pid, "VmRSS")
}

/// Records objects (native, `*.ndjson.gz` under `v1/`) in a directory store.
fn objects_in(store: &Path) -> u64 {
    fn walk(d: &Path) -> u64 {
        std::fs::read_dir(d).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else {
                        u64::from(p.to_string_lossy().ends_with(".ndjson.gz"))
                    }
                })
                .sum()
        })
    }
    walk(&store.join("v1"))
}

/// The daemon's RSS (and its anonymous part) once a second while the load generator runs, and the generator's output.
fn sample_rss_until_done(
    pid: u32,
    generator: std::process::Child,
    started: Instant,
) -> anyhow::Result<(std::process::Output, Vec<RssSample>)> {
    let mut rss = Vec::new();
    let mut next = started;
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| generator.wait_with_output());
        while !h.is_finished() {
            if Instant::now() >= next {
                if let (Some(kb), Some(anon)) = (vm_rss_kb(pid), status_kb(pid, "RssAnon")) {
                    rss.push(RssSample {
                        t_s: started.elapsed().as_secs_f64(),
                        rss_mib: kb as f64 / 1024.0,
                        anon_mib: anon as f64 / 1024.0,
                    });
                }
                next += Duration::from_secs(1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join()
            .map_err(|_| anyhow::anyhow!("loadgen waiter panicked"))
    })??;
    Ok((out, rss))
}

/// Stops the daemon with SIGINT (it seals and uploads what the load spooled) and waits for it:
/// the CPU seconds it spent in all.
fn stop_for_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    // SAFETY: rusage is a plain out-struct; wait4 on our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    let waited = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    if waited < 0 {
        anyhow::bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// One run: `n` agents at `rate` opens/s each for `secs`.
fn run(env: &Env, n: usize, rate: u64, secs: f64) -> anyhow::Result<AgentRun> {
    eprintln!("bench: {n} agent(s) at {rate} opens/s each for {secs:.0} s");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let dir = env.out.join(format!("agents-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let cg = cgroups(env, n)?;
    let cfg = config(n, &dir)?;
    let store = dir.join("trail");
    let mut child = start_until(
        Command::new(&env.agent).args(["run", "--config", cfg.to_str().unwrap_or_default()]),
        "ready: watching",
        Some(&dir.join("agent.log")),
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle_mib = vm_rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let t0 = proc_ticks(pid);
    let objects0 = objects_in(&store);
    let cpu = load_cpu();
    let mut load = Command::new(&env.loadgen);
    load.args([
        "agents",
        &cg.display().to_string(),
        &n.to_string(),
        &rate.to_string(),
        &secs.to_string(),
        &env.file.display().to_string(),
        &EXEC_EVERY_MS.to_string(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    // SAFETY: only sched_setaffinity(2) between fork and exec.
    unsafe {
        load.pre_exec(move || {
            pin(cpu);
            Ok(())
        });
    }
    let started = Instant::now();
    let wall_start = std::time::SystemTime::now();
    let generator = load.spawn().context("loadgen agents")?;
    let (out, rss) = sample_rss_until_done(pid, generator, started)?;
    let window = started.elapsed().as_secs_f64();
    let hour_crossed_at_s = next_hour_within(wall_start, window);
    let t1 = proc_ticks(pid);
    let objects1 = objects_in(&store);
    let peak_rss_mib = super::vm_hwm_kb(pid) as f64 / 1024.0;
    let load: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("loadgen: {}", String::from_utf8_lossy(&out.stdout)))?;
    // The rest of the work the load caused: sealing and uploading what is spooled, at exit.
    let cpu_total = stop_for_cpu_seconds(pid)? - t0 as f64 / hz;
    let _ = child.try_wait();
    std::thread::sleep(Duration::from_millis(200));
    remove_cgroups(&cg);
    let stopped = final_statistics(&dir.join("agent.log"))?;
    let records = stopped["records"].as_u64().unwrap_or(0);
    let verify = Command::new(&env.agent)
        .args(["verify", &format!("file://{}", store.display())])
        .output()?;
    let verify_text = String::from_utf8_lossy(&verify.stdout);
    Ok(AgentRun {
        agents: n,
        rate_per_agent: rate,
        seconds: window,
        events: load["events"].as_u64().unwrap_or(0),
        execs: load["execs"].as_u64().unwrap_or(0),
        records_delivered: records,
        kernel_drops: stopped["lost"].as_u64().unwrap_or(0),
        cpu_us_per_record: cpu_total / records.max(1) as f64 * 1e6,
        cpu_percent_during_load: (t1 - t0) as f64 / hz / window * 100.0,
        objects_per_s: (objects1 - objects0) as f64 / window,
        objects_total: objects_in(&store),
        rss_idle_mib,
        peak_rss_mib,
        rss,
        verify_ok: verify.status.success(),
        verify: verify_text.lines().last().unwrap_or_default().to_string(),
        latency_p99_ms: stopped["latency_p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        hour_crossed_at_s,
    })
}

/// Seconds from `start` to the next UTC hour, if it comes within `window` seconds: there every
/// agent starts a new partition while the last hour's segments are closed at their rate.
fn next_hour_within(start: std::time::SystemTime, window: f64) -> Option<f64> {
    let since_epoch = start
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let to_next = 3600.0 - since_epoch.rem_euclid(3600.0);
    (to_next <= window).then_some(to_next)
}
