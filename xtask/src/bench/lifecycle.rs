//! Section 5: how long the agent takes to start and to stop, as a person at a terminal waits for
//! it: `trace -- true` from start to exit, `watch` and `run` from start to "ready: watching" and
//! from SIGINT/SIGTERM to exit. Each run starts from a kernel holding none of the agent's
//! programs: the kernel releases a stopped agent's programs in the background (seconds after it
//! exited), which is measured too.

use std::{
    collections::BTreeSet,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::{
    Env, agent_config, median,
    results::{Lifecycle, Timing},
    run_timed, start_unpinned_until,
};

/// Programs the kernel held when the bench started.
static PROGRAMS_BEFORE: OnceLock<BTreeSet<u32>> = OnceLock::new();

/// The ids of the BPF programs the kernel holds (`BPF_PROG_GET_NEXT_ID`; ids are never reused
/// while the kernel runs).
fn programs() -> BTreeSet<u32> {
    const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
    let (mut ids, mut id) = (BTreeSet::new(), 0u32);
    loop {
        // start_id, next_id, open_flags.
        let mut attr = [id, 0u32, 0u32];
        // SAFETY: bpf(2) with a 12-byte attribute block it reads and writes.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_GET_NEXT_ID,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if r != 0 {
            return ids;
        }
        id = attr[1];
        ids.insert(id);
    }
}

/// Notes the programs the kernel holds before the bench starts anything.
pub(super) fn note_programs_before() {
    let _ = PROGRAMS_BEFORE.set(programs());
}

/// Waits until the programs loaded since `before` are gone (a stopped agent's are released in
/// the background), at most 15 s; returns how long that took.
fn wait_gone_since(before: &BTreeSet<u32>) -> Duration {
    let started = Instant::now();
    let loaded: BTreeSet<u32> = programs().difference(before).copied().collect();
    while programs().intersection(&loaded).next().is_some()
        && started.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

/// Waits until the programs loaded since the bench started are released: every configuration
/// is measured without the programs of the one before.
pub(super) fn wait_released() {
    if let Some(before) = PROGRAMS_BEFORE.get() {
        wait_gone_since(before);
    }
}

fn timing(mut seconds: Vec<f64>) -> Timing {
    let min = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    let max = seconds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Timing {
        median_s: median(&mut seconds),
        min_s: min,
        max_s: max,
        runs: seconds.len(),
    }
}

/// Start to ready, and signal to exit, of a long-running command.
fn start_and_stop(cmd: &mut Command, signal: i32) -> anyhow::Result<(f64, f64, f64)> {
    wait_released();
    let before = programs();
    let started = Instant::now();
    let mut child = start_unpinned_until(cmd, "ready: watching", None)?;
    let ready = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    // SAFETY: plain kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait()?;
    let stop = stopping.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "{cmd:?} exited with {status}");
    let released = wait_gone_since(&before).as_secs_f64();
    Ok((ready, stop, released))
}

/// Section 5.
pub(super) fn measure(env: &Env) -> anyhow::Result<Lifecycle> {
    let runs = if env.quick { 3 } else { 7 };
    let mut trace = Vec::new();
    let mut trace_released = Vec::new();
    for i in 0..runs {
        eprintln!("bench: start and stop, trace -- true, run {}", i + 1);
        wait_released();
        let before = programs();
        let (_, wall, _) = run_timed(Command::new(&env.agent).args([
            "trace",
            "--output",
            "/dev/null",
            "--",
            "true",
        ]))?;
        trace.push(wall);
        trace_released.push(wait_gone_since(&before).as_secs_f64());
    }
    let dir = env.out.join("start-stop");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = agent_config(env, &dir)?;
    let (mut watch, mut run) = (Vec::new(), Vec::new());
    for i in 0..runs {
        eprintln!("bench: start and stop, watch and run, run {}", i + 1);
        watch.push(start_and_stop(
            Command::new(&env.agent).args([
                "watch",
                "--cgroup",
                &env.watched,
                "--format",
                "json",
                "--output",
                "/dev/null",
            ]),
            libc::SIGINT,
        )?);
        run.push(start_and_stop(
            Command::new(&env.agent).args(["run", "--config", cfg.to_str().unwrap_or_default()]),
            libc::SIGTERM,
        )?);
    }
    let column =
        |v: &[(f64, f64, f64)], k: usize| timing(v.iter().map(|t| [t.0, t.1, t.2][k]).collect());
    let mut released: Vec<f64> = trace_released;
    released.extend(watch.iter().chain(&run).map(|t| t.2));
    Ok(Lifecycle {
        trace_true: timing(trace),
        watch_ready: column(&watch, 0),
        watch_stop: column(&watch, 1),
        run_ready: column(&run, 0),
        run_stop: column(&run, 1),
        released_after_exit: timing(released),
    })
}
