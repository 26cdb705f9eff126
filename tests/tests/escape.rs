//! Identity escape, as attacks: a watched process moves itself or its children to other cgroups
//! to leave the watch or take another agent's identity. Once watched, a process stays watched
//! and keeps its first agent, however it moves and however many silent ancestors stand between.

use std::time::Duration;

use audit_tests::*;

/// Two agents on two cgroups below `root`, and a third cgroup nobody watches.
struct Agents {
    root: TestCgroup,
    a: TestCgroup,
    b: TestCgroup,
    outside: TestCgroup,
    dir: Scratch,
}

impl Agents {
    fn new(tag: &str) -> Self {
        let root = TestCgroup::new(tag);
        let a = root.child("a");
        let b = root.child("b");
        let outside = TestCgroup::new(&format!("{tag}-outside"));
        Self {
            root,
            a,
            b,
            outside,
            dir: Scratch::new(tag),
        }
    }

    fn config(&self) -> String {
        format!(
            "[[agents]]\nid = \"agent-a\"\ncgroup = [\"{}\"]\n\n[[agents]]\nid = \"agent-b\"\ncgroup = [\"{}\"]\n",
            self.a.rel, self.b.rel
        )
    }

    /// `watch` on the configuration alone (it watches both agents' cgroups).
    fn watch(&self) -> Agent {
        self.watch_with("")
    }

    /// `watch` on the configuration with `policy` (protected sets and rules) before it.
    fn watch_with(&self, policy: &str) -> Agent {
        let file = self.dir.path("config.toml");
        // Top-level keys first: the agents' tables end the top level.
        std::fs::write(&file, format!("{policy}\n{}", self.config())).unwrap();
        Agent::start([
            "watch",
            "--format",
            "json",
            "--config",
            file.to_str().unwrap(),
        ])
    }

    fn marker(&self, name: &str) -> String {
        format!("/nonexistent-escape/{name}-{}", self.root.id())
    }
}

/// The one open of `path`; panics with every open otherwise.
fn open_of<'a>(records: &'a [Value], path: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "file.open" && r["resource"]["path"] == path)
        .collect();
    assert_eq!(found.len(), 1, "one open of {path}: {found:#?}");
    found[0]
}

#[test]
fn a_watched_process_that_moves_itself_out_stays_watched_and_the_move_is_recorded() {
    let g = Agents::new("escape-self");
    let agent = g.watch();
    let marker = g.marker("after-move");
    let report = g.a.workload([
        "move-cgroup",
        g.outside.fs.to_str().unwrap(),
        "open",
        &marker,
    ]);
    let records = agent.stop();

    assert_eq!(report[0]["ret"], 0, "moved: {report:?}");
    // (The harness moving the workload into a's cgroup before its exec is a move too.)
    let moves: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["action"] == "process.cgroup_move"
                && r["resource"]["cgroup"] == g.outside.rel.as_str()
        })
        .collect();
    assert_eq!(moves.len(), 1, "{moves:#?}");
    assert_eq!(moves[0]["resource"]["cgroup_id"], g.outside.id());
    assert_eq!(moves[0]["resource"]["pid"], report[0]["pid"]);
    assert_eq!(moves[0]["agent"]["id"], "agent-a");
    let after = open_of(&records, &marker);
    assert_eq!(after["subject"]["cgroup"], g.outside.rel.as_str());
    assert_eq!(after["agent"]["id"], "agent-a", "{after:#}");
    assert_eq!(after["agent"]["matched_by"], "ancestor");
}

#[test]
fn a_watched_process_that_moves_out_still_connects_under_the_kernels_eye() {
    // The connect programs are attached to the cgroup that holds what is watched, not to the
    // root; a watched process that leaves it is followed there. The workload waits on a FIFO
    // until the agent says it followed, then connects: the record has the kernel's copy.
    let g = Agents::new("escape-connect");
    let mut agent = g.watch();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fifo = g.dir.path("go");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let moved = "cgroup programs moved";
    // Once at the start: from the root to the cgroup that holds a's and b's.
    agent.wait_for_stderr_count(moved, 1, Duration::from_secs(30));
    let (outside, a) = (g.outside.fs.clone(), &g.a);
    let report = std::thread::scope(|s| {
        let run = s.spawn(|| {
            a.workload([
                "move-cgroup",
                outside.to_str().unwrap(),
                "block-open",
                fifo.to_str().unwrap(),
                "connect4",
                "127.0.0.1",
                &port,
            ])
        });
        agent.wait_for_stderr_count(moved, 2, Duration::from_secs(30));
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        run.join().unwrap()
    });
    let records = agent.stop();

    let connect = report.iter().find(|r| r["action"] == "connect4").unwrap();
    assert_eq!(connect["ret"], 0, "{report:?}");
    let r: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "network.connect" && r["process"]["pid"] == connect["pid"])
        .collect();
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0]["subject"]["cgroup"], g.outside.rel.as_str());
    assert_eq!(r[0]["resource"]["address_source"], "kernel", "{:#}", r[0]);
    assert_eq!(r[0]["agent"]["id"], "agent-a");
}

#[test]
fn a_child_that_moves_into_another_agents_cgroup_keeps_its_first_agent() {
    let g = Agents::new("escape-child");
    let agent = g.watch();
    let marker = g.marker("impersonation");
    let report = g.a.workload([
        "fork",
        "move-cgroup",
        g.b.fs.to_str().unwrap(),
        "open",
        &marker,
    ]);
    let records = agent.stop();

    assert_eq!(report[0]["ret"], 0, "moved: {report:?}");
    let r = open_of(&records, &marker);
    assert_eq!(
        r["subject"]["cgroup"],
        g.b.rel.as_str(),
        "it is in b's cgroup"
    );
    assert_eq!(r["agent"]["id"], "agent-a", "but it is a's: {r:#}");
    assert_eq!(r["agent"]["matched_by"], "ancestor");
}

#[test]
fn a_grandchild_behind_a_silent_parent_keeps_its_identity() {
    let g = Agents::new("escape-grandchild");
    let agent = g.watch();
    let marker = g.marker("grandchild");
    // The child only forks: it has no record of its own.
    let report = g.a.workload([
        "fork",
        "fork",
        "move-cgroup",
        g.outside.fs.to_str().unwrap(),
        "open",
        &marker,
    ]);
    let records = agent.stop();

    assert_eq!(report[0]["ret"], 0, "moved: {report:?}");
    let r = open_of(&records, &marker);
    assert_eq!(r["process"]["pid"], report[0]["pid"]);
    assert_eq!(r["agent"]["id"], "agent-a", "{r:#}");
    assert_eq!(r["agent"]["matched_by"], "ancestor");
}

#[test]
fn a_traced_command_stays_traced_wherever_it_moves() {
    let g = Agents::new("escape-trace");
    let marker = g.marker("traced");
    let out = g.dir.path("records.json");
    let o = std::process::Command::new(agent_bin())
        .args([
            "trace",
            "--format",
            "json",
            "--output",
            out.to_str().unwrap(),
            "--",
        ])
        .arg(workload_bin())
        .args([
            "move-cgroup",
            g.outside.fs.to_str().unwrap(),
            "open",
            &marker,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let records = parse_lines(&std::fs::read(&out).unwrap());
    let r = open_of(&records, &marker);
    assert_eq!(r["subject"]["cgroup"], g.outside.rel.as_str());
    assert!(
        r["agent"]["id"].as_str().unwrap().starts_with("trace:"),
        "{r:#}"
    );
}

#[test]
fn a_watched_process_that_signals_the_agent_is_recorded() {
    let g = Agents::new("escape-signal");
    let agent = g.watch();
    let report = g.a.workload(["kill", &agent.pid().to_string(), "15"]);
    assert_eq!(report[0]["ret"], 0, "{report:?}");
    // SIGTERM: the agent stops on its own, draining what the kernel recorded.
    let records = agent.finish();
    let sig: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.signal")
        .collect();
    assert_eq!(sig.len(), 1, "{sig:#?}");
    assert_eq!(sig[0]["resource"]["signal"], "SIGTERM");
    assert_eq!(sig[0]["resource"]["delivery"], "delivered");
    // Sent by the process's kill(2), not generated by the kernel.
    assert_eq!(sig[0]["resource"].get("origin"), None, "{:#}", sig[0]);
    assert_eq!(sig[0]["process"]["pid"], report[0]["pid"]);
    assert_eq!(sig[0]["agent"]["id"], "agent-a");
}

/// The host pid of the only child of `pid` (what `unshare --fork` runs).
fn only_child(pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kids: Vec<u32> = children
        .split_whitespace()
        .map(|c| c.parse().unwrap())
        .collect();
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    kids[0]
}

#[test]
fn an_agent_in_its_own_pid_namespace_excludes_itself_by_its_host_pid() {
    let cg = TestCgroup::new("escape-pidns");
    let dir = Scratch::new("escape-pidns");
    let marker = format!("/nonexistent-escape/pidns-{}", cg.id());
    let agent = Agent::start_with(
        std::process::Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--"])
            .arg(agent_bin())
            .args(["watch", "--format", "json", "--cgroup", &cg.rel]),
    );
    let host_pid = only_child(agent.pid());
    // Inside its namespace the agent is pid 1; the kernel knows it by its host pid.
    assert!(
        agent
            .stderr()
            .contains(&format!("\"host_tgid\":{host_pid},\"local_pid\":1")),
        "{}",
        agent.stderr()
    );
    let report = cg.workload(["open", &marker]);
    // `unshare` does not forward signals: stop the agent itself.
    // SAFETY: plain kill(2) of our grandchild, which is alive (it has not been waited for).
    unsafe { libc::kill(host_pid as i32, libc::SIGINT) };
    let records = agent.finish();
    let _ = dir;
    assert!(
        records
            .iter()
            .any(|r| r["resource"]["path"] == marker.as_str()
                && r["process"]["pid"] == report[0]["pid"]),
        "the watched workload is recorded"
    );
    assert!(
        records.iter().all(|r| r["process"]["pid"] != host_pid),
        "nothing of the agent itself"
    );
}

#[test]
fn a_flood_cannot_hide_a_protected_open_and_the_gap_names_the_flooder() {
    let cg = TestCgroup::new("escape-flood");
    let dir = Scratch::new("escape-flood");
    let secret = dir.path("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let config = dir.path("config.toml");
    std::fs::write(
        &config,
        deny_policy(&[secret.to_str().unwrap().to_string()], &[], ""),
    )
    .unwrap();
    // A small ring, and the agent stopped while the flood runs: the ring fills for certain.
    let agent = Agent::start([
        "watch",
        "--format",
        "json",
        "--cgroup",
        &cg.rel,
        "--config",
        config.to_str().unwrap(),
        "--ring-buffer-bytes",
        "65536",
    ]);
    agent.signal(libc::SIGSTOP);
    let flood = cg.workload(["open-many", "/nonexistent-flood/f", "3000", "0"]);
    let protected = cg.workload(["open", secret.to_str().unwrap()]);
    agent.signal(libc::SIGCONT);
    let records = agent.stop();

    let opened = records
        .iter()
        .find(|r| r["action"] == "file.open" && r["resource"]["path"] == secret.to_str().unwrap());
    let opened = opened.expect("the protected open survives the flood");
    assert_eq!(opened["process"]["pid"], protected[0]["pid"]);
    assert_eq!(opened["policy"]["decision"], "deny");
    let gaps: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "audit.gap" && r["gap"]["reason"] == "ringbuf_full")
        .collect();
    assert!(!gaps.is_empty(), "the flood lost records: a gap says so");
    let flooder = &gaps[0]["gap"]["by_process"][0];
    assert_eq!(flooder["pid"], flood[0]["pid"], "{:#}", gaps[0]);
    let lost: u64 = gaps
        .iter()
        .map(|g| g["gap"]["lost"].as_u64().unwrap())
        .sum();
    assert!(lost > 1000, "{lost}");
}

/// A process of agent b that opened `secret` and waits: (child, pid, fd).
fn victim(g: &Agents, secret: &str) -> (std::process::Child, i64, i64) {
    use std::io::BufRead as _;
    let mut child =
        g.b.command(workload_bin())
            .args(["open", secret, "sleep", "60000"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    (
        child,
        v["pid"].as_i64().unwrap(),
        v["ret"].as_i64().unwrap(),
    )
}

#[test]
fn reaching_into_another_agents_process_is_recorded_with_the_target_and_its_agent() {
    let g = Agents::new("escape-access");
    let secret = g.dir.path("secret");
    std::fs::write(&secret, "s3cr3t").unwrap();
    let secret_s = secret.to_str().unwrap().to_string();
    let agent = g.watch_with(&deny_policy(std::slice::from_ref(&secret_s), &[], ""));
    let (mut child, pid, fd) = victim(&g, &secret_s);
    let report = g.a.workload([
        "ptrace-peek",
        &pid.to_string(),
        "vm-read",
        &pid.to_string(),
        "getfd",
        &pid.to_string(),
        &fd.to_string(),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let records = agent.stop();

    let access: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.access" && r["process"]["pid"] == report[0]["pid"])
        .collect();
    let kinds: Vec<String> = access
        .iter()
        .map(|r| {
            let a = r["resource"]["access"].as_str().unwrap().to_string();
            match r["resource"]["ptrace_request"].as_str() {
                Some(req) => format!("{a}:{req}"),
                None => a,
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ptrace:PTRACE_ATTACH",
            "ptrace:PTRACE_PEEKDATA",
            "ptrace:PTRACE_DETACH",
            "vm_read",
            "getfd"
        ],
        "{access:#?}"
    );
    for r in &access {
        assert_eq!(r["resource"]["pid"], pid, "{r:#}");
        assert_eq!(r["resource"]["target_agent"], "agent-b", "{r:#}");
        assert_eq!(r["agent"]["id"], "agent-a");
    }
    assert_eq!(access[0]["result"]["outcome"], "success");
    assert_eq!(access[3]["result"]["retval"], report[3]["ret"]);
    // The file taken out of the victim, named by the kernel: a protected one.
    let getfd = access[4];
    assert_eq!(getfd["resource"]["pid_source"], "kernel");
    assert_eq!(getfd["resource"]["path"], report[4]["truth"]);
    assert_eq!(getfd["resource"]["file"]["ino"], report[4]["ino"]);
    assert_eq!(getfd["protected"], json!(["secrets"]));
    assert_eq!(getfd["policy"]["decision"], "deny");
}

/// The workload's executable, as the kernel names it.
fn workload_exe() -> String {
    real_path(workload_bin().to_str().unwrap())
}

/// No record by `pid` after its exec names another executable than `exe` (whatever
/// `/proc/PID/exe` says).
fn assert_every_record_names(records: &[Value], pid: &Value, exe: &str) {
    for r in records
        .iter()
        .filter(|r| r["process"]["pid"] == *pid && r["action"] != "process.exec")
    {
        assert_eq!(r["process"]["exe"], exe, "{r:#}");
    }
}

#[test]
fn a_process_that_replaces_its_executable_keeps_the_one_it_ran_and_the_change_is_recorded() {
    let g = Agents::new("escape-exe");
    let f = g.dir.path("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.to_str().unwrap().to_string();
    let claimed = real_path("/usr/sbin/agetty");
    // agetty is a protected program: claiming to be it is judged like running it.
    let agent = g.watch_with(&deny_policy(&[], std::slice::from_ref(&claimed), ""));
    let report = g.a.workload([
        "set-exe-file",
        &claimed,
        "set-exe-map",
        &claimed,
        "open",
        &f,
    ]);
    let records = agent.stop();
    let exe = workload_exe();
    let (by_file, by_map) = (&report[0], &report[1]);
    // Ground truth: the kernel reports the claimed file as the executable now.
    assert_eq!(by_map["ret"], 0, "{by_map}");
    assert_eq!(by_map["truth"], claimed.as_str());
    assert_eq!(by_map["was"], exe.as_str());
    let pid = &by_map["pid"];

    // Each attempt is on record: what the executable was, what it was to be, the result.
    let sets: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.set_exe" && r["process"]["pid"] == *pid)
        .collect();
    assert_eq!(sets.len(), 2, "{sets:#?}");
    for (r, rep, prctl) in [
        (sets[0], by_file, "PR_SET_MM_EXE_FILE"),
        (sets[1], by_map, "PR_SET_MM_MAP"),
    ] {
        assert_eq!(r["syscall"], "prctl", "{r:#}");
        assert_eq!(r["resource"]["prctl"], prctl, "{r:#}");
        assert_eq!(r["resource"]["fd"], rep["fd"], "{r:#}");
        assert_eq!(r["resource"]["path"], claimed.as_str(), "{r:#}");
        assert_eq!(r["resource"]["file"]["ino"], rep["new_ino"], "{r:#}");
        assert_eq!(r["result"]["retval"], rep["ret"], "{r:#}");
        assert_eq!(r["protected"], json!(["secrets"]), "{r:#}");
        assert_eq!(r["policy"]["decision"], "deny", "{r:#}");
        assert_eq!(r["agent"]["id"], "agent-a");
        assert!(r["resource"].get("before_watch").is_none(), "{r:#}");
    }
    // (PR_SET_MM_EXE_FILE needs CAP_SYS_RESOURCE, which root may lack; PR_SET_MM_MAP needs
    // CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE. Either way the record says what happened.)
    let map = sets[1];
    assert_eq!(map["resource"]["previous_path"], by_map["was"], "{map:#}");
    assert_eq!(
        map["resource"]["previous_file"]["ino"], by_map["was_ino"],
        "{map:#}"
    );
    assert_eq!(
        map["resource"]["previous_file"]["dev"], by_map["was_dev"],
        "{map:#}"
    );
    assert_eq!(map["process"]["exe_replaced"], true, "{map:#}");
    assert_eq!(map["process"]["exe_reported"], claimed.as_str(), "{map:#}");

    // Afterwards the process is still the program it ran, and says it claims another.
    let open = one(&records, pid.as_i64().unwrap(), "file.open", &f);
    assert_eq!(open["process"]["exe_replaced"], true, "{open:#}");
    assert_eq!(
        open["process"]["exe_reported"],
        claimed.as_str(),
        "{open:#}"
    );
    assert_every_record_names(&records, pid, &exe);
}

#[test]
fn a_process_that_replaced_its_executable_before_it_was_watched_is_named_by_the_one_it_ran() {
    let g = Agents::new("escape-exe-before");
    let f = g.dir.path("f");
    std::fs::write(&f, "x").unwrap();
    let f = f.to_str().unwrap().to_string();
    let claimed = real_path("/usr/sbin/agetty");
    let agent = g.watch();
    // Unwatched, it claims to be agetty; then it moves into agent a's cgroup and acts.
    let report = g.outside.workload([
        "set-exe-map",
        &claimed,
        "move-cgroup",
        g.a.fs.to_str().unwrap(),
        "open",
        &f,
    ]);
    let records = agent.stop();
    let exe = workload_exe();
    let laundered = &report[0];
    assert_eq!(laundered["ret"], 0, "{laundered}");
    assert_eq!(laundered["truth"], claimed.as_str());
    let pid = &laundered["pid"];

    // The change is recorded when the agent first sees the process, from what the kernel held
    // when it was made.
    let sets: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.set_exe" && r["process"]["pid"] == *pid)
        .collect();
    assert_eq!(sets.len(), 1, "{sets:#?}");
    let set = sets[0];
    assert_eq!(set["resource"]["before_watch"], true, "{set:#}");
    assert_eq!(set["resource"]["path"], claimed.as_str(), "{set:#}");
    assert_eq!(
        set["resource"]["file"]["ino"], laundered["new_ino"],
        "{set:#}"
    );
    assert_eq!(set["resource"]["previous_path"], exe.as_str(), "{set:#}");
    assert_eq!(
        set["resource"]["previous_file"]["ino"], laundered["was_ino"],
        "{set:#}"
    );
    assert_eq!(set["result"]["outcome"], "success", "{set:#}");

    // Its first watched action: named by the program it ran, and flagged.
    let open = one(&records, pid.as_i64().unwrap(), "file.open", &f);
    assert_eq!(open["agent"]["id"], "agent-a");
    assert_eq!(open["process"]["exe_replaced"], true, "{open:#}");
    assert_eq!(
        open["process"]["exe_reported"],
        claimed.as_str(),
        "{open:#}"
    );
    assert!(set["seq"].as_u64() < open["seq"].as_u64());
    assert!(set["time"].as_str() < open["time"].as_str());
    assert_every_record_names(&records, pid, &exe);
}
