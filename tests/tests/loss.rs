//! Loss is never silent: with a ring buffer far too small for the load, every open the workload
//! performed is either delivered as a record or counted as dropped in a gap record.

use audit_tests::*;

fn opens_of(records: &[Value], pid: i64) -> u64 {
    by_pid(records, pid, "file.open").len() as u64
}

#[test]
fn with_a_tiny_ring_buffer_delivered_plus_dropped_equals_performed() {
    // Calibration: how many files the workload opens on its own (loader, libc) before its
    // markers, with a ring large enough to lose nothing.
    let cal = TestCgroup::new("loss-cal");
    let agent = Agent::watch_cgroup(&cal);
    let r = cal.workload(["open-many", "/nonexistent-loss/cal", "0", "0"]);
    let records = agent.stop();
    let startup = opens_of(&records, pid_of(&r));
    assert!(
        records.iter().all(|r| r["action"] != "audit.gap"),
        "calibration lost nothing"
    );

    const N: u64 = 20_000;
    let cg = TestCgroup::new("loss");
    let agent = Agent::start([
        "watch",
        "--format",
        "json",
        "--ring-buffer-bytes",
        "4096",
        "--cgroup",
        &cg.rel,
    ]);
    let r = cg.workload(["open-many", "/nonexistent-loss/m", &N.to_string(), "0"]);
    let records = agent.stop();
    let pid = pid_of(&r);
    let delivered = opens_of(&records, pid);
    let gaps: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "audit.gap")
        .collect();
    let dropped: u64 = gaps
        .iter()
        .filter(|g| g["gap"]["reason"] == "ringbuf_full")
        .map(|g| g["gap"]["by_action"]["file.open"].as_u64().unwrap_or(0))
        .sum();
    assert!(dropped > 0, "the tiny ring must overflow under this load");
    assert!(delivered > 0);
    assert_eq!(
        delivered + dropped,
        N + startup,
        "delivered {delivered} + dropped {dropped} != performed {} (startup opens {startup})",
        N + startup
    );
    for g in &gaps {
        assert!(g["gap"]["lost"].as_u64().unwrap() > 0);
        assert!(g["gap"]["from"].as_str().unwrap() <= g["gap"]["to"].as_str().unwrap());
    }
}

#[test]
fn a_stop_right_after_heavy_load_delivers_everything_performed() {
    // The stop comes the moment the load ends: whatever the kernel took in is drained before the
    // programs go (they are released in the background afterwards), and anything the ring could
    // not take is counted.
    const N: u64 = 50_000;
    let cal = TestCgroup::new("stop-cal");
    let agent = Agent::watch_cgroup(&cal);
    let r = cal.workload(["open-many", "/nonexistent-stop/cal", "0", "0"]);
    let startup = opens_of(&agent.stop(), pid_of(&r));
    let cg = TestCgroup::new("stop-load");
    let agent = Agent::watch_cgroup(&cg);
    let r = cg.workload(["open-many", "/nonexistent-stop/m", &N.to_string(), "0"]);
    let records = agent.stop();
    let delivered = opens_of(&records, pid_of(&r));
    let dropped: u64 = records
        .iter()
        .filter(|r| r["action"] == "audit.gap")
        .map(|g| g["gap"]["by_action"]["file.open"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        delivered + dropped,
        N + startup,
        "delivered {delivered} + dropped {dropped} != performed {}",
        N + startup
    );
}
