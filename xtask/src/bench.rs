//! `cargo xtask bench`: overhead, throughput/loss and query benchmarks, side by side with no
//! tracing, empty programs (the floor), bpftrace and auditd, all measured in the same run.
//! Writes docs/benchmarks.md and target/bench/results.json.

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

mod agents;
mod lifecycle;
mod profile;
mod results;

use results::{
    Machine, Network, OpStat, Overhead, OverheadRow, ProgramCost, ProgramRow, ProgramRuns, Query,
    QueryRun, RateRow, Results, Throughput, ToolRun,
};

/// Unprivileged uid the auditd "watched" load runs as: `nobody`, an existing user. (With a uid
/// that has no passwd entry, auditd's ENRICHED name lookups miss on every record and it gets
/// another ~14x slower; measured here: 678 us/op instead of 47 us/op.)
const AUDIT_UID: u32 = 65534;

struct Env {
    root: PathBuf,
    out: PathBuf,
    agent: PathBuf,
    loadgen: PathBuf,
    gen_store: PathBuf,
    cg_fs: PathBuf,
    /// cgroup paths relative to the cgroup2 mount.
    watched: String,
    unwatched: String,
    file: PathBuf,
    quick: bool,
}

fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")?;
    mi.lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(_, b)| b.starts_with("cgroup2 "))
        .and_then(|(a, _)| a.split_whitespace().nth(4).map(PathBuf::from))
        .context("no cgroup2 mount")
}

impl Env {
    fn cg_path(&self, rel: &str) -> PathBuf {
        self.cg_fs.join(rel.trim_start_matches('/'))
    }

    /// A command started inside a cgroup (and as a uid), moved before exec, pinned to the load
    /// CPU (the last one) so tracers on CPU 0 do not share its core.
    fn cmd_in(&self, program: &Path, cgroup: &str, uid: Option<u32>) -> Command {
        let mut c = Command::new(program);
        let procs = self.cg_path(cgroup).join("cgroup.procs");
        let cpu = load_cpu();
        // SAFETY: only write(2), sched_setaffinity(2), setgid(2), setuid(2) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                std::fs::write(&procs, b"0")?;
                pin(cpu);
                if let Some(u) = uid
                    && (libc::setgid(u) != 0 || libc::setuid(u) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }

    /// ns/op of one loadgen measurement.
    fn measure(&self, op: &str, cgroup: &str, uid: Option<u32>, ms: u64) -> anyhow::Result<f64> {
        let arg = match op {
            "open" | "open_paced" => self.file.display().to_string(),
            "connect" => "1".into(),
            _ => "-".into(),
        };
        let out = self
            .cmd_in(&self.loadgen, cgroup, uid)
            .args(["time", op, &arg, &ms.to_string()])
            .stderr(Stdio::inherit())
            .output()?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("loadgen output: {}", String::from_utf8_lossy(&out.stdout)))?;
        v["ns_per_op"].as_f64().context("ns_per_op")
    }
}

/// The CPU the load runs on (the last one); tracers run on the others.
fn load_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// Pins the calling process (or thread) to one CPU; a no-op on failure.
fn pin(cpu: usize) {
    // SAFETY: cpu_set_t is a plain bitmask; sched_setaffinity on ourselves.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pins a command to every CPU except the load CPU.
fn pin_tracer(cmd: &mut Command) -> &mut Command {
    let load = load_cpu();
    let n = load + 1;
    // SAFETY: sched_setaffinity on the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for c in (0..n).filter(|c| *c != load || n == 1) {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
    cmd
}

/// Runs a command to completion; returns (stdout, wall seconds, CPU seconds user+sys).
fn run_timed(cmd: &mut Command) -> anyhow::Result<(Vec<u8>, f64, f64)> {
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut b);
        b
    });
    let mut stderr = child.stderr.take().context("stderr")?;
    let ereader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut b);
        b
    });
    let mut status = 0;
    // SAFETY: rusage is a plain out-struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if r < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let wall = started.elapsed().as_secs_f64();
    let out = reader.join().unwrap_or_default();
    let err = ereader.join().unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&err));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((out, wall, tv(ru.ru_utime) + tv(ru.ru_stime)))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A tracer running for one configuration.
enum Tracer {
    None,
    Proc(Child),
    Auditd(Child),
}

impl Tracer {
    fn stop(self) -> anyhow::Result<()> {
        match self {
            Tracer::None => Ok(()),
            Tracer::Proc(mut c) => {
                // SAFETY: plain kill(2) on our child.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                let until = Instant::now() + Duration::from_secs(30);
                while c.try_wait()?.is_none() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
                // The kernel detaches a stopped agent's programs in the background: the next
                // configuration is measured without them.
                lifecycle::wait_released();
                Ok(())
            }
            Tracer::Auditd(mut c) => {
                let _ = Command::new("auditctl").arg("-D").output();
                let _ = Command::new("auditctl").args(["-e", "0"]).output();
                let _ = c.kill();
                let _ = c.wait();
                Ok(())
            }
        }
    }
}

/// Starts a process and waits until a line of its output (stdout or stderr) contains `ready`.
fn start_until(cmd: &mut Command, ready: &str, log: Option<&Path>) -> anyhow::Result<Child> {
    start_unpinned_until(pin_tracer(cmd), ready, log)
}

/// [`start_until`] on every CPU: for what a user waits for at start (the kernel verifies the
/// programs on the loading threads, as many at once as there are cores), not the load's cost.
fn start_unpinned_until(
    cmd: &mut Command,
    ready: &str,
    log: Option<&Path>,
) -> anyhow::Result<Child> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut log_file = log.map(std::fs::File::create).transpose()?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let mut log = log_file.as_mut().and_then(|f| f.try_clone().ok());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = std::io::Write::write_all(f, format!("{line}\n").as_bytes());
                }
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains(ready) => {
                // Keep draining in the background (the channel's threads own the pipes).
                std::thread::spawn(move || for _ in rx {});
                return Ok(child);
            }
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{cmd:?} exited before `{ready}`")
            }
            Err(_) if Instant::now() > deadline => bail!("{cmd:?} not ready in 60 s"),
            Err(_) => {}
        }
    }
}

fn agent_config(env: &Env, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[agents]]\nid = \"bench\"\ncgroup = [\"{}\"]\n\n[[protected]]\nname = \"secrets\"\nfiles = [\"/etc/shadow\"]\n\n\
             [[rules]]\nid = \"no-secrets\"\nprotected = [\"secrets\"]\ndecision = \"deny\"\n\n\
             [export]\nstore = \"file://{}\"\nspool_dir = \"{}\"\n",
            env.watched,
            dir.join("trail").display(),
            dir.join("spool").display()
        ),
    )?;
    Ok(cfg)
}

fn bpftrace_script(env: &Env) -> String {
    let cg = env.cg_path(&env.watched).display().to_string();
    let filt = format!("/cgroup == cgroupid(\"{cg}\")/");
    format!(
        "tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_openat2, tracepoint:syscalls:sys_enter_open\n{filt}\n\
         {{ @path[tid] = str(args->filename); @t[tid] = nsecs; }}\n\
         tracepoint:syscalls:sys_enter_creat\n{filt}\n{{ @path[tid] = str(args->pathname); @t[tid] = nsecs; }}\n\
         tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_openat2, tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_creat\n/@t[tid]/\n\
         {{ printf(\"%llu file.open pid=%d tid=%d uid=%d comm=%s path=%s ret=%d\\n\", @t[tid], pid, tid, uid, comm, @path[tid], args->ret); delete(@path[tid]); delete(@t[tid]); }}\n\
         tracepoint:syscalls:sys_enter_execve, tracepoint:syscalls:sys_enter_execveat\n{filt}\n{{ @path[tid] = str(args->filename); @t[tid] = nsecs; }}\n\
         tracepoint:syscalls:sys_exit_execve, tracepoint:syscalls:sys_exit_execveat\n/@t[tid]/\n\
         {{ printf(\"%llu process.exec pid=%d tid=%d uid=%d comm=%s path=%s ret=%d\\n\", @t[tid], pid, tid, uid, comm, @path[tid], args->ret); delete(@path[tid]); delete(@t[tid]); }}\n\
         tracepoint:syscalls:sys_enter_connect\n{filt}\n\
         {{ @fam[tid] = *(uint16 *)uptr(args->uservaddr); @port[tid] = *(uint16 *)uptr(args->uservaddr + 2); @t[tid] = nsecs; }}\n\
         tracepoint:syscalls:sys_exit_connect\n/@t[tid]/\n\
         {{ printf(\"%llu network.connect pid=%d tid=%d uid=%d comm=%s family=%d port=%d ret=%d\\n\", @t[tid], pid, tid, uid, comm, @fam[tid], (@port[tid] >> 8) | ((@port[tid] & 0xff) << 8), args->ret); delete(@fam[tid]); delete(@port[tid]); delete(@t[tid]); }}\n"
    )
}

fn start_auditd() -> anyhow::Result<Option<Child>> {
    let ok = Command::new("auditctl")
        .arg("-s")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Ok(None);
    }
    let _ = Command::new("pkill").args(["-x", "auditd"]).status();
    std::thread::sleep(Duration::from_millis(300));
    let child = pin_tracer(Command::new("auditd").arg("-n"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1000));
    // Debian's default audit.rules: delete all, backlog 8192 (the kernel default of 64, left when
    // auditd is started without its rules file, makes syscalls wait on a full backlog).
    let rules = [
        vec!["-D"],
        vec!["-b", "8192"],
        vec!["-e", "1"],
        vec![
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "openat,open,creat,openat2,execve,execveat,connect",
            "-F",
            "uid=65534",
            "-k",
            "audit-agent-bench",
        ],
    ];
    for r in rules {
        let o = Command::new("auditctl").args(&r).output()?;
        if !o.status.success() {
            return Ok(None);
        }
    }
    Ok(Some(child))
}

/// Section 1: syscall overhead.
/// A table row: its label, the cgroup the load runs in, the uid it runs as.
type Row = (&'static str, String, Option<u32>);

/// Starts the tracer of one configuration; returns it and the rows measured under it, or `None`
/// when the configuration cannot run here (a note says why).
fn start_config(
    env: &Env,
    config: &str,
    dir: &Path,
    notes: &mut Vec<String>,
) -> anyhow::Result<Option<(Tracer, Vec<Row>)>> {
    let (u, w) = (env.unwatched.clone(), env.watched.clone());
    Ok(Some(match config {
        "baseline" => (Tracer::None, vec![("no tracing (baseline)", u, None)]),
        "floor" => {
            let c = start_until(Command::new(&env.agent).arg("bench-floor"), "ready", None)?;
            (Tracer::Proc(c), vec![("empty programs (floor)", u, None)])
        }
        "audit-agent" => {
            let cfg = agent_config(env, dir)?;
            let c = start_until(
                Command::new(&env.agent).args([
                    "run",
                    "--config",
                    cfg.to_str().unwrap_or_default(),
                ]),
                "ready: watching",
                Some(&dir.join("agent.log")),
            )?;
            (
                Tracer::Proc(c),
                vec![
                    ("audit-agent, load not watched", u, None),
                    (
                        "audit-agent, load watched (full pipeline to a local store)",
                        w,
                        None,
                    ),
                ],
            )
        }
        "bpftrace" => {
            let script = dir.join("peer.bt");
            std::fs::write(&script, bpftrace_script(env))?;
            let c = start_until(Command::new("bpftrace").arg(&script), "Attaching", None)?;
            (
                Tracer::Proc(c),
                vec![
                    ("bpftrace, load not watched", u, None),
                    ("bpftrace, load watched (cgroup filter, printing)", w, None),
                ],
            )
        }
        _ => match start_auditd()? {
            Some(c) => (
                Tracer::Auditd(c),
                vec![
                    ("auditd, load not watched (other uid)", u.clone(), None),
                    ("auditd, load watched (uid rule)", u, Some(AUDIT_UID)),
                ],
            ),
            None => {
                let note = "auditd skipped: the audit subsystem or auditctl is unavailable";
                if !notes.iter().any(|n| n == note) {
                    notes.push(note.into());
                }
                return Ok(None);
            }
        },
    }))
}

/// Samples (ns per operation) by (row, operation).
type Samples = std::collections::BTreeMap<(String, String), Vec<f64>>;

/// Median, range and ratio to the baseline of every row and operation.
fn summarize(order: &[String], samples: &Samples, ops: &[&str]) -> Vec<OverheadRow> {
    let of = |row: &str, op: &str| {
        samples
            .get(&(row.to_string(), op.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    order
        .iter()
        .map(|row| {
            let ops = ops
                .iter()
                .map(|op| {
                    let mut v = of(row, op);
                    let (min, max) = (
                        v.iter().copied().fold(f64::INFINITY, f64::min),
                        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    );
                    let m = median(&mut v);
                    let base = median(&mut of("no tracing (baseline)", op));
                    let stat = OpStat {
                        median_ns: m,
                        min_ns: min,
                        max_ns: max,
                        samples: v.len(),
                        ratio_to_baseline: m / base,
                    };
                    (op.to_string(), stat)
                })
                .collect();
            OverheadRow {
                config: row.clone(),
                ops,
            }
        })
        .collect()
}

/// Section 1: syscall overhead, every configuration interleaved over several passes.
fn overhead(env: &Env) -> anyhow::Result<Overhead> {
    let ops = ["syscall", "open", "open_paced", "connect", "forkexec"];
    let ms = if env.quick { 250 } else { 400 };
    let passes = if env.quick { 1 } else { 3 };
    let rounds = if env.quick { 3 } else { 5 };
    let mut samples = Samples::default();
    let mut notes = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for pass in 0..passes {
        for config in ["baseline", "floor", "audit-agent", "bpftrace", "auditd"] {
            eprintln!("bench: overhead pass {} config {config}", pass + 1);
            let dir = env.out.join(format!("overhead-{config}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let Some((tracer, rows)) = start_config(env, config, &dir, &mut notes)? else {
                continue;
            };
            std::thread::sleep(Duration::from_millis(500));
            for (row, cg, uid) in &rows {
                if !order.iter().any(|o| o == row) {
                    order.push(row.to_string());
                }
                for op in ops {
                    // Slow configurations (auditd watched) get fewer iterations, same time.
                    for _ in 0..rounds {
                        let ns = env.measure(op, cg, *uid, ms)?;
                        samples
                            .entry((row.to_string(), op.to_string()))
                            .or_default()
                            .push(ns);
                    }
                }
            }
            tracer.stop()?;
        }
    }
    Ok(Overhead {
        rows: summarize(&order, &samples, &ops),
        notes,
        ms_per_sample: ms,
        passes,
        rounds,
        program_cost: program_cost(env)?,
    })
}

fn proc_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().to_string())
            })
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Runs and run time (ns) of every loaded program, by name, while `load` runs, from the kernel's
/// BPF statistics (`kernel.bpf_stats_enabled`). Several loaded objects may have a program of a
/// name; they are summed (only attached ones run).
fn program_stats(
    load: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<std::collections::BTreeMap<String, (u64, u64)>> {
    // Program id -> (name, run count, run time).
    type Stats = std::collections::BTreeMap<u64, (String, u64, u64)>;
    let read = || -> anyhow::Result<Stats> {
        let out = Command::new("bpftool")
            .args(["prog", "show", "-j"])
            .output()
            .context("bpftool (installed by `cargo xtask bench`)")?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let name = p["name"].as_str()?.to_string();
                Some((
                    p["id"].as_u64()?,
                    (name, p["run_cnt"].as_u64()?, p["run_time_ns"].as_u64()?),
                ))
            })
            .collect())
    };
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1")?;
    let before = read()?;
    let r = load();
    let after = read();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0")?;
    r?;
    let mut by_name = std::collections::BTreeMap::<String, (u64, u64)>::new();
    for (id, (name, c1, t1)) in after? {
        let (_, c0, t0) = before.get(&id).cloned().unwrap_or_default();
        let e = by_name.entry(name).or_default();
        e.0 += c1.saturating_sub(c0);
        e.1 += t1.saturating_sub(t0);
    }
    Ok(by_name)
}

/// Program time (ns) per openat+close, (enter, exit), while `load` runs: enter, the
/// `sys_enter_openat` program; exit, the one program every system call returns through (raw
/// `sys_exit`, with the exit program it tail-calls for a record in flight) — the returns of the
/// openat and of its close, and of the few other calls of the machine in the same window.
fn program_ns(load: impl FnOnce() -> anyhow::Result<f64>) -> anyhow::Result<(f64, f64)> {
    let stats = program_stats(load)?;
    let (openats, enter_ns) = stats.get("sys_enter_openat").copied().unwrap_or_default();
    let (_, exit_ns) = stats.get("sys_exit").copied().unwrap_or_default();
    let per_openat = |ns: u64| {
        if openats > 0 {
            ns as f64 / openats as f64
        } else {
            f64::NAN
        }
    };
    Ok((per_openat(enter_ns), per_openat(exit_ns)))
}

/// Every program an unwatched socket+connect+close runs: (name, runs per connect, ns per
/// connect), counted by the runs of `sys_enter_connect`.
fn connect_programs(
    load: impl FnOnce() -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<ProgramRuns>> {
    let stats = program_stats(load)?;
    let connects = stats.get("sys_enter_connect").map_or(0, |s| s.0).max(1) as f64;
    let mut rows: Vec<ProgramRuns> = stats
        .into_iter()
        .filter(|(_, (runs, _))| *runs as f64 / connects >= 0.5)
        .map(|(name, (runs, ns))| ProgramRuns {
            name,
            runs_per_op: runs as f64 / connects,
            ns_per_op: ns as f64 / connects,
        })
        .collect();
    rows.sort_by(|a, b| b.ns_per_op.total_cmp(&a.ns_per_op));
    Ok(rows)
}

/// In-kernel cost per openat, measured with BPF statistics: precise where wall-clock ratios on
/// a shared VM are noisy. The statistics themselves add a fixed cost to every program run, the
/// same for all configurations; the floor row shows it.
fn program_cost(env: &Env) -> anyhow::Result<ProgramCost> {
    let ms = 400;
    let floor = start_until(Command::new(&env.agent).arg("bench-floor"), "ready", None)?;
    std::thread::sleep(Duration::from_millis(300));
    let (fe, fx) = program_ns(|| env.measure("open", &env.unwatched, None, ms))?;
    let connect_floor = connect_programs(|| env.measure("connect", &env.unwatched, None, ms))?;
    Tracer::Proc(floor).stop()?;
    let dir = env.out.join("program-cost");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = agent_config(env, &dir)?;
    let agent = start_until(
        Command::new(&env.agent).args(["run", "--config", cfg.to_str().unwrap_or_default()]),
        "ready: watching",
        None,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let (ue, ux) = program_ns(|| env.measure("open", &env.unwatched, None, ms))?;
    let connect_unwatched = connect_programs(|| env.measure("connect", &env.unwatched, None, ms))?;
    let (we, wx) = program_ns(|| env.measure("open", &env.watched, None, ms))?;
    let (pe, px) = program_ns(|| env.measure("open_paced", &env.watched, None, ms))?;
    Tracer::Proc(agent).stop()?;
    let row = |config: &str, enter_ns, exit_ns| ProgramRow {
        config: config.into(),
        enter_ns,
        exit_ns,
    };
    Ok(ProgramCost {
        rows: vec![
            row("empty programs (floor)", fe, fx),
            row("audit-agent, load not watched", ue, ux),
            row("audit-agent, load watched (tight loop)", we, wx),
            row("audit-agent, load watched at 100,000 a second", pe, px),
        ],
        added_unwatched_ns: (ue + ux) - (fe + fx),
        added_watched_ns: (we + wx) - (fe + fx),
        added_watched_paced_ns: (pe + px) - (fe + fx),
        connect_floor,
        connect_unwatched,
    })
}

/// Section 5: what the packet programs cost network traffic — a loopback TCP stream (64 KiB
/// writes) and UDP request/response round trips, unwatched and watched, beside the baseline and
/// the floor (empty programs on every hook, the cgroup `skb` ones included). Configurations are
/// interleaved over passes, as in section 1.
fn network(env: &Env) -> anyhow::Result<Network> {
    let ops = ["tcp", "udp_rr"];
    let ms = if env.quick { 250 } else { 400 };
    let passes = if env.quick { 1 } else { 3 };
    let rounds = if env.quick { 3 } else { 5 };
    let mut samples = Samples::default();
    let mut notes = Vec::new();
    let mut order: Vec<String> = Vec::new();
    for pass in 0..passes {
        for config in ["baseline", "floor", "audit-agent"] {
            eprintln!("bench: network pass {} config {config}", pass + 1);
            let dir = env.out.join(format!("network-{config}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let Some((tracer, rows)) = start_config(env, config, &dir, &mut notes)? else {
                continue;
            };
            std::thread::sleep(Duration::from_millis(500));
            for (row, cg, uid) in &rows {
                if !order.iter().any(|o| o == row) {
                    order.push(row.to_string());
                }
                for op in ops {
                    for _ in 0..rounds {
                        let ns = env.measure(op, cg, *uid, ms)?;
                        samples
                            .entry((row.to_string(), op.to_string()))
                            .or_default()
                            .push(ns);
                    }
                }
            }
            tracer.stop()?;
        }
    }
    Ok(Network {
        rows: summarize(&order, &samples, &ops),
        ms_per_sample: ms,
        passes,
        rounds,
    })
}

/// Section 2: throughput and loss.
fn throughput(env: &Env) -> anyhow::Result<Throughput> {
    let secs = if env.quick { 3.0 } else { 5.0 };
    let mut rows = Vec::new();
    for rate in [10_000u64, 50_000, 100_000, 250_000, 0] {
        eprintln!(
            "bench: throughput {}",
            if rate == 0 {
                "max".into()
            } else {
                rate.to_string()
            }
        );
        rows.push(rate_run(env, rate, secs)?);
    }
    let best = rows
        .iter()
        .filter(|r| r.zero_loss)
        .map(|r| r.achieved_rate)
        .fold(0.0, f64::max);
    Ok(Throughput {
        rows,
        highest_zero_loss_rate: best,
        seconds_per_rate: secs,
    })
}

/// The daemon's CPU per record at `rate` (µs), from `runs` runs of the throughput load: the
/// same work costs run to run what the shared VM lets it (±25% seen), so the goal is judged on
/// the median.
fn cpu_per_record(env: &Env, rate: u64, runs: usize) -> anyhow::Result<Vec<f64>> {
    let secs = if env.quick { 3.0 } else { 5.0 };
    (0..runs)
        .map(|i| {
            eprintln!("bench: CPU per record at {rate}/s, run {}", i + 1);
            let r = rate_run(env, rate, secs)?;
            Ok(r.agent_cpu_percent_of_one_core / 100.0 / r.achieved_rate * 1e6)
        })
        .collect()
}

/// One run of the daemon under the generator at `rate` opens/s (0: as fast as it can).
fn rate_run(env: &Env, rate: u64, secs: f64) -> anyhow::Result<RateRow> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let dir = env.out.join(format!("throughput-{rate}"));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = agent_config(env, &dir)?;
    let log = dir.join("agent.log");
    let child = start_until(
        Command::new(&env.agent).args(["run", "--config", cfg.to_str().unwrap_or_default()]),
        "ready: watching",
        Some(&log),
    )?;
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    let t0 = proc_ticks(pid);
    let out = env
        .cmd_in(&env.loadgen, &env.watched, None)
        .args([
            "rate",
            &env.file.display().to_string(),
            &rate.to_string(),
            &secs.to_string(),
        ])
        .output()?;
    let t1 = proc_ticks(pid);
    let hwm = vm_hwm_kb(pid);
    let load: Value = serde_json::from_slice(&out.stdout)?;
    Tracer::Proc(child).stop()?;
    std::thread::sleep(Duration::from_millis(200));
    let stopped = final_statistics(&log)?;
    let events = load["events"].as_u64().unwrap_or(0);
    let records = stopped["records"].as_u64().unwrap_or(0);
    let lost = stopped["lost"].as_u64().unwrap_or(0);
    let window = load["secs"].as_f64().unwrap_or(secs);
    Ok(RateRow {
        target_rate: (rate != 0).then_some(rate),
        achieved_rate: load["events_per_s"].as_f64().unwrap_or(f64::NAN),
        events,
        records_delivered: records,
        kernel_drops: lost,
        agent_cpu_percent_of_one_core: (t1 - t0) as f64 / hz / window * 100.0,
        agent_peak_rss_mib: hwm as f64 / 1024.0,
        latency_p50_ms: stopped["latency_p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        latency_p99_ms: stopped["latency_p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        zero_loss: lost == 0 && records >= events,
    })
}

/// Section 3: query.
fn query(env: &Env) -> anyhow::Result<Query> {
    let records: u64 = 1_000_000;
    let store = env.out.join("query-store");
    let stamp = store.join(".params");
    let params = format!("{records} 10 24 v2-manifests");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(params.as_str()) {
        eprintln!("bench: generating a {records}-record store");
        let _ = std::fs::remove_dir_all(&store);
        run_timed(
            Command::new(&env.gen_store)
                .arg(&store)
                .args(["1000000", "10", "24"]),
        )?;
        std::fs::write(&stamp, &params)?;
    }
    let url = format!("file://{}", store.display());
    let full = vec!["--decision".to_string(), "deny".into()];
    let pruned: Vec<String> = [
        "--agent",
        "agent-03",
        "--since",
        "2026-11-01T05:00:00Z",
        "--until",
        "2026-11-01T06:59:59Z",
    ]
    .map(String::from)
    .to_vec();
    let duck = env.root.join("xtask/src/bench_duckdb.py");
    let mut out = std::collections::BTreeMap::new();
    for (name, args, duck_q) in [
        ("full scan", &full, "full"),
        ("pruned (1 agent, 2 hours)", &pruned, "pruned"),
    ] {
        eprintln!("bench: query {name}");
        let (mut ours_wall, mut ours_cpu, mut d_wall, mut d_cpu) = (vec![], vec![], vec![], vec![]);
        let (mut scanned, mut matched_ours, mut matched_duck) = (0u64, 0u64, 0u64);
        for _ in 0..3 {
            let mut c = Command::new(&env.agent);
            c.args(["query", &url, "--format", "json", "--verbose"])
                .args(args.iter());
            let (stdout, wall, cpu) = run_timed(&mut c)?;
            matched_ours = stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
            ours_wall.push(wall);
            ours_cpu.push(cpu);
            let (dout, dw, dc) =
                run_timed(Command::new("python3").arg(&duck).arg(&store).arg(duck_q))?;
            let d: Value = serde_json::from_slice(&dout)?;
            matched_duck = d["count"].as_u64().unwrap_or(0);
            d_wall.push(dw);
            d_cpu.push(dc);
        }
        if duck_q == "full" {
            scanned = records;
        }
        let (ow, oc, dw, dc) = (
            median(&mut ours_wall),
            median(&mut ours_cpu),
            median(&mut d_wall),
            median(&mut d_cpu),
        );
        let run = |wall_s, cpu_s: f64, matched| ToolRun {
            wall_s,
            cpu_s,
            matched,
            records_per_s_per_core: (scanned > 0).then(|| scanned as f64 / cpu_s),
        };
        out.insert(
            name.to_string(),
            QueryRun {
                audit_agent: run(ow, oc, matched_ours),
                duckdb: run(dw, dc, matched_duck),
                same_result: matched_ours == matched_duck,
                args: args.clone(),
            },
        );
    }
    Ok(Query {
        records,
        objects: 240,
        queries: out,
    })
}

fn machine() -> Machine {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        kernel: sh("uname -r"),
        cpu: sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        cores: sh("nproc"),
        memory: sh("grep MemTotal /proc/meminfo | awk '{print $2 \" kB\"}'"),
        date: sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        commit: sh("git describe --always --dirty --abbrev=7 --exclude '*'"),
        bpftrace: sh("bpftrace --version"),
        auditd: sh("auditctl -v"),
        duckdb: sh("python3 -c 'import duckdb; print(duckdb.__version__)'"),
    }
}

/// The statistics a stopped daemon logged last (its `capture stopped` line in `log`).
fn final_statistics(log: &Path) -> anyhow::Result<Value> {
    std::fs::read_to_string(log)?
        .lines()
        .filter(|l| l.contains("capture stopped"))
        .find_map(|l| serde_json::from_str(l).ok())
        .context("agent did not log its final statistics")
}

/// Which part of the bench to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every section; writes docs/benchmarks.md.
    All,
    /// Section 5 (start and stop) only; printed.
    StartStop,
    /// Section 7 (claims reconciliation accuracy) only; printed.
    Claims,
    /// Section 8 (many agents on one node) only; written into docs/benchmarks.md in place of
    /// its last run.
    Agents,
}

/// Section 7: the labelled claims scenarios under the daemon, reconciled (`claims-eval`).
fn claims_accuracy(env: &Env) -> anyhow::Result<results::ClaimsAccuracy> {
    eprintln!("bench: claims scenarios");
    let out = Command::new(env.root.join("target/release/claims-eval"))
        .env("AUDIT_AGENT_BIN", &env.agent)
        .stderr(Stdio::inherit())
        .output()
        .context("running claims-eval")?;
    anyhow::ensure!(out.status.success(), "claims-eval failed: {}", out.status);
    serde_json::from_slice(&out.stdout).context("claims-eval output")
}

pub fn run(root: &Path, quick: bool, part: Part) -> anyhow::Result<()> {
    let started = Instant::now();
    lifecycle::note_programs_before();
    let cg_fs = cgroup2_mount()?;
    for c in ["audit-bench/w", "audit-bench/u"] {
        std::fs::create_dir_all(cg_fs.join(c))?;
    }
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out)?;
    let file = out.join("open-target");
    std::fs::write(&file, b"x")?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    let env = Env {
        root: root.to_path_buf(),
        out: out.clone(),
        agent: root.join("target/release/audit-agent"),
        loadgen: root.join("target/release/loadgen"),
        gen_store: root.join("target/release/gen-store"),
        cg_fs,
        watched: "/audit-bench/w".into(),
        unwatched: "/audit-bench/u".into(),
        file,
        quick,
    };
    if part == Part::Agents {
        let a = agents::agents(&env)?;
        std::fs::write(out.join("agents.json"), serde_json::to_vec_pretty(&a)?)?;
        let mut section = String::new();
        results::render_agents(&mut section, &a);
        let doc = root.join("docs/benchmarks.md");
        let text = std::fs::read_to_string(&doc).unwrap_or_default();
        std::fs::write(&doc, results::splice_agents(&text, &section))?;
        eprintln!(
            "bench: section 8 done in {:.0} s; wrote it into docs/benchmarks.md and target/bench/agents.json",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if part == Part::Claims {
        let c = claims_accuracy(&env)?;
        let mut s = String::new();
        results::render_claims(&mut s, &c);
        println!("{s}");
        return Ok(());
    }
    if part == Part::StartStop {
        let l = lifecycle::measure(&env)?;
        std::fs::write(out.join("start-stop.json"), serde_json::to_vec_pretty(&l)?)?;
        let mut s = String::new();
        results::render_lifecycle(&mut s, &l);
        println!("{s}");
        return Ok(());
    }
    let overhead = overhead(&env)?;
    let network = network(&env)?;
    let throughput = throughput(&env)?;
    let query = query(&env)?;
    let runs = cpu_per_record(&env, profile::RATE, if quick { 1 } else { 5 })?;
    let profile = profile::profile(&env, runs)?;
    let lifecycle = lifecycle::measure(&env)?;
    let claims = claims_accuracy(&env)?;
    let agents = agents::agents(&env)?;
    let results = Results {
        machine: machine(),
        overhead,
        network,
        throughput,
        query,
        profile,
        lifecycle,
        claims,
        agents,
        duration_s: started.elapsed().as_secs_f64(),
        quick,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&results)?,
    )?;
    std::fs::write(root.join("docs/benchmarks.md"), results::render(&results))?;
    eprintln!(
        "bench: done in {:.0} s; wrote docs/benchmarks.md and target/bench/results.json",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
