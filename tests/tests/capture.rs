//! Kernel capture, end to end: the real eBPF programs, real processes in real cgroups, the real
//! agent binary. Each test owns its cgroup and its agent, and asserts exact records.

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader},
    net::{Ipv6Addr, TcpListener},
    os::unix::{ffi::OsStrExt as _, net::UnixListener},
    process::Stdio,
    time::Duration,
};

use audit_tests::*;

fn path_str(p: &std::path::Path) -> String {
    p.to_str().expect("utf-8 test path").to_string()
}

#[test]
fn open_of_existing_file_reports_success_and_fd() {
    let cg = TestCgroup::new("open-ok");
    let dir = Scratch::new("open-ok");
    let file = dir.path("exists.txt");
    std::fs::write(&file, "x").unwrap();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["open", &path_str(&file)]);
    let records = agent.stop();

    let fd = report[0]["ret"].as_i64().unwrap();
    assert!(fd >= 3);
    let r = one(&records, pid_of(&report), "file.open", &path_str(&file));
    assert_eq!(r["schema"], "audit-agent/v1");
    assert_eq!(r["syscall"], "openat");
    assert_eq!(
        r["result"],
        json!({"outcome": "success", "retval": fd, "errno": null})
    );
    assert_eq!(r["resource"]["flags"], json!(["O_RDONLY"]));
    assert_eq!(r["process"]["tid"], report[0]["tid"]);
    assert_eq!(r["process"]["comm"], "workload");
    assert_eq!(r["subject"]["uid"], 0);
    assert_eq!(r["subject"]["cgroup"], cg.rel.as_str());
    assert_eq!(r["subject"]["cgroup_id"], cg.id());
    assert!(r["process"]["exe"].as_str().unwrap().ends_with("/workload"));
    assert!(r["time"].as_str().unwrap().ends_with('Z'));
    assert!(r["host"]["name"].is_string());
    assert!(r["seq"].as_u64().unwrap() >= 1);
    assert!(
        r["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{}", r["seq"]))
    );
}

#[test]
fn open_of_missing_file_reports_enoent() {
    let cg = TestCgroup::new("open-enoent");
    let missing = "/nonexistent-audit-test/missing.txt";
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["open", missing]);
    let records = agent.stop();

    assert_eq!(report[0]["ret"], -2);
    let r = one(&records, pid_of(&report), "file.open", missing);
    assert_eq!(
        r["result"],
        json!({"outcome": "failure", "retval": -2, "errno": "ENOENT"})
    );
}

#[test]
fn concurrent_threads_each_get_every_open_reported_with_its_result() {
    // 16 threads at once (neighbouring thread ids share a word of the kernel's slot bitmap),
    // 3 rounds of fresh threads, 50 opens each: every attempt is one record with its own tid.
    let cg = TestCgroup::new("threads");
    let prefix = "/nonexistent-audit-threads/f";
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["threads-open", prefix, "16", "50", "3"]);
    let records = agent.stop();

    let pid = pid_of(&report);
    let opens: Vec<&Value> = by_pid(&records, pid, "file.open")
        .into_iter()
        .filter(|r| {
            r["resource"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(prefix))
        })
        .collect();
    assert_eq!(opens.len(), 16 * 50 * 3);
    let paths: std::collections::BTreeSet<&str> = opens
        .iter()
        .map(|r| r["resource"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), opens.len(), "each open exactly once");
    let tids: std::collections::BTreeSet<i64> = report[0]["tids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    for r in &opens {
        assert_eq!(r["result"]["errno"], "ENOENT", "{r}");
        assert!(tids.contains(&r["process"]["tid"].as_i64().unwrap()), "{r}");
    }
}

#[test]
fn open_with_creat_and_wronly_reports_flags_and_mode() {
    let cg = TestCgroup::new("open-creat");
    let dir = Scratch::new("open-creat");
    let file = path_str(&dir.path("new.txt"));
    let agent = Agent::watch_cgroup(&cg);
    // O_WRONLY|O_CREAT|O_EXCL, mode 0640
    let report = cg.workload(["open-flags", &file, "301", "640"]);
    let records = agent.stop();

    let r = one(&records, pid_of(&report), "file.open", &file);
    assert_eq!(
        r["resource"]["flags"],
        json!(["O_WRONLY", "O_CREAT", "O_EXCL"])
    );
    assert_eq!(r["resource"]["mode"], "0640");
    assert_eq!(r["result"]["outcome"], "success");
}

#[test]
fn relative_open_with_a_dirfd_reports_the_dirfd() {
    let cg = TestCgroup::new("openat-rel");
    let dir = Scratch::new("openat-rel");
    std::fs::write(dir.path("rel.txt"), "x").unwrap();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["openat", &path_str(&dir.0), "rel.txt", "sleep", "300"]);
    let records = agent.stop();

    // Named by the file the kernel opened (below the dirfd's directory); the relative name the
    // process passed is kept beside it.
    let r = one(
        &records,
        pid_of(&report),
        "file.open",
        &path_str(&dir.path("rel.txt")),
    );
    assert_eq!(r["resource"]["requested_path"], "rel.txt");
    assert_eq!(r["resource"]["dirfd"], report[0]["dirfd"]);
    assert_eq!(r["result"]["retval"], report[0]["ret"]);
}

#[test]
fn open_of_a_4000_byte_path_is_captured_whole() {
    let cg = TestCgroup::new("open-long");
    let dir = Scratch::new("open-long");
    let mut p = dir.0.clone();
    while p.as_os_str().len() < 3700 {
        p.push("d".repeat(200));
    }
    std::fs::create_dir_all(&p).unwrap();
    let name = "f".repeat(4000 - p.as_os_str().len() - 1);
    let file = p.join(name);
    std::fs::write(&file, "x").unwrap();
    let file = path_str(&file);
    assert_eq!(file.len(), 4000);
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["open", &file]);
    let records = agent.stop();

    let r = one(&records, pid_of(&report), "file.open", &file);
    assert_eq!(r["result"]["outcome"], "success");
    assert!(r["resource"].get("truncated").is_none());
}

#[test]
fn non_utf8_file_name_survives_escaped() {
    let cg = TestCgroup::new("open-bytes");
    let dir = Scratch::new("open-bytes");
    let mut raw = dir.0.as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/caf\xff\xfe\\x.txt");
    let name = OsStr::from_bytes(&raw);
    std::fs::write(name, "x").unwrap();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload([OsStr::new("open"), name]);
    let records = agent.stop();

    let expected = format!("{}/caf\\xff\\xfe\\\\x.txt", path_str(&dir.0));
    let r = one(&records, pid_of(&report), "file.open", &expected);
    assert_eq!(r["result"]["outcome"], "success");
}

#[test]
fn raw_open_creat_and_openat2_syscalls_are_captured() {
    let cg = TestCgroup::new("open-legacy");
    let dir = Scratch::new("open-legacy");
    let existing = dir.path("a.txt");
    std::fs::write(&existing, "x").unwrap();
    let created = path_str(&dir.path("created.txt"));
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload([
        "sys-open",
        &path_str(&existing),
        "sys-creat",
        &created,
        "644",
        "openat2",
        &path_str(&existing),
    ]);
    let records = agent.stop();
    let pid = pid_of(&report);

    let opens: Vec<&Value> = by_pid(&records, pid, "file.open")
        .into_iter()
        .filter(|r| r["resource"]["path"] == path_str(&existing).as_str())
        .collect();
    let syscalls: Vec<&str> = opens
        .iter()
        .map(|r| r["syscall"].as_str().unwrap())
        .collect();
    assert_eq!(syscalls, ["open", "openat2"], "{opens:#?}");
    assert_eq!(opens[0]["result"]["retval"], report[0]["ret"]);
    assert_eq!(opens[1]["result"]["retval"], report[2]["ret"]);

    let c = one(&records, pid, "file.open", &created);
    assert_eq!(c["syscall"], "creat");
    assert_eq!(
        c["resource"]["flags"],
        json!(["O_WRONLY", "O_CREAT", "O_TRUNC"])
    );
    assert_eq!(c["resource"]["mode"], "0644");
    assert_eq!(c["result"]["retval"], report[1]["ret"]);
}

#[test]
fn exec_of_bin_true_with_arguments_is_reported_with_the_kernel_filename() {
    let cg = TestCgroup::new("exec-ok");
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["exec", "/bin/true", "-a", "hello world"]);
    let records = agent.stop();

    let pid = pid_of(&report);
    // Named by the file the kernel loaded (/bin may be a symlink to /usr/bin).
    let loaded = path_str(&std::fs::canonicalize("/bin/true").unwrap());
    let r = one(&records, pid, "process.exec", &loaded);
    assert_eq!(r["syscall"], "execve");
    assert_eq!(r["resource"]["path_source"], "kernel");
    if loaded != "/bin/true" {
        assert_eq!(r["resource"]["requested_path"], "/bin/true");
    }
    assert_eq!(
        r["resource"]["argv"],
        json!(["/bin/true", "-a", "hello world"])
    );
    assert_eq!(
        r["result"],
        json!({"outcome": "success", "retval": 0, "errno": null})
    );
    // The acting image was the workload; the new image gets its own exec id, parented to it.
    assert!(r["process"]["exe"].as_str().unwrap().ends_with("/workload"));
    let new_id = r["resource"]["exec_id"].as_str().unwrap();
    assert_ne!(new_id, r["process"]["exec_id"].as_str().unwrap());
    // What /bin/true then opened is attributed to the new image.
    let after: Vec<&Value> = by_pid(&records, pid, "file.open")
        .into_iter()
        .filter(|o| o["process"]["exec_id"] == new_id)
        .collect();
    assert!(!after.is_empty(), "opens by the new image (ld.so, libc)");
    assert_eq!(
        after[0]["process"]["parent_exec_id"],
        r["process"]["exec_id"]
    );
    assert_eq!(after[0]["process"]["exe"], loaded.as_str());
}

#[test]
fn exec_of_a_missing_binary_reports_enoent_with_the_requested_path() {
    let cg = TestCgroup::new("exec-enoent");
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["exec", "/nonexistent-audit-test/bin", "x"]);
    let records = agent.stop();

    let r = one(
        &records,
        pid_of(&report),
        "process.exec",
        "/nonexistent-audit-test/bin",
    );
    assert_eq!(
        r["result"],
        json!({"outcome": "failure", "retval": -2, "errno": "ENOENT"})
    );
    assert_eq!(
        r["resource"]["argv"],
        json!(["/nonexistent-audit-test/bin", "x"])
    );
}

#[test]
fn exec_with_many_arguments_is_truncated_and_flagged() {
    let cg = TestCgroup::new("exec-argv");
    let agent = Agent::watch_cgroup(&cg);
    let mut args = vec!["exec".to_string(), "/bin/true".to_string()];
    // 40 arguments of 100 bytes: more than the 2048 bytes a record keeps.
    args.extend((0..40).map(|i| format!("{i:02}{}", "a".repeat(98))));
    let report = cg.workload(&args);
    let records = agent.stop();

    let loaded = path_str(&std::fs::canonicalize("/bin/true").unwrap());
    let r = one(&records, pid_of(&report), "process.exec", &loaded);
    let argv = r["resource"]["argv"].as_array().unwrap();
    assert_eq!(argv[0], "/bin/true");
    assert_eq!(argv[1], args[2].as_str());
    let kept: usize = argv.iter().map(|a| a.as_str().unwrap().len() + 1).sum();
    assert!(kept <= 2048 + 1 && argv.len() < 41, "{argv:?}");
    assert_eq!(r["resource"]["truncated"], json!(["argv"]));
}

fn connect_record(records: &[Value], pid: i64) -> &Value {
    let c = by_pid(records, pid, "network.connect");
    assert_eq!(c.len(), 1, "{c:#?}");
    c[0]
}

#[test]
fn connect_to_a_loopback_listener_succeeds() {
    let cg = TestCgroup::new("connect-ok");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["connect4", "127.0.0.1", &port.to_string()]);
    let records = agent.stop();

    let r = connect_record(&records, pid_of(&report));
    assert_eq!(r["syscall"], "connect");
    assert_eq!(
        without_connection_id(&r["resource"]),
        json!({"family": "inet", "address": "127.0.0.1", "port": port, "address_source": "kernel", "host": null}),
        "no name is known for a literal address"
    );
    assert_eq!(
        r["result"],
        json!({"outcome": "success", "retval": 0, "errno": null})
    );
}

#[test]
fn connect_to_a_closed_port_reports_econnrefused() {
    let cg = TestCgroup::new("connect-refused");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["connect4", "127.0.0.1", &port.to_string()]);
    let records = agent.stop();

    let r = connect_record(&records, pid_of(&report));
    assert_eq!(r["resource"]["port"], port);
    assert_eq!(
        r["result"],
        json!({"outcome": "failure", "retval": -111, "errno": "ECONNREFUSED"})
    );
}

#[test]
fn connect_over_ipv6_loopback_reports_the_v6_address() {
    let cg = TestCgroup::new("connect-v6");
    let l = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["connect6", "::1", &port.to_string()]);
    let records = agent.stop();

    let r = connect_record(&records, pid_of(&report));
    assert_eq!(
        without_connection_id(&r["resource"]),
        json!({"family": "inet6", "address": "::1", "port": port, "address_source": "kernel", "host": null}),
        "no name is known for a literal address"
    );
    assert_eq!(r["result"]["outcome"], "success");
}

#[test]
fn connect_to_a_unix_socket_reports_its_path() {
    let cg = TestCgroup::new("connect-unix");
    let dir = Scratch::new("connect-unix");
    let sock = path_str(&dir.path("s.sock"));
    let _l = UnixListener::bind(&sock).unwrap();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["connect-unix", &sock]);
    let records = agent.stop();

    let r = connect_record(&records, pid_of(&report));
    assert_eq!(r["resource"]["address"], sock.as_str());
    assert_eq!(
        r["resource"]["address_source"], "kernel",
        "the peer's bound path"
    );
    assert_eq!(r["resource"]["file"]["type"], "socket");
    assert_eq!(r["result"]["outcome"], "success");
}

#[test]
fn a_nonblocking_connect_is_recorded_with_how_it_ended() {
    let cg = TestCgroup::new("connect-nb");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let agent = Agent::watch_cgroup(&cg);
    let report = cg.workload(["connect4-nonblock", "127.0.0.1", &port.to_string()]);
    let records = agent.stop();

    let r = connect_record(&records, pid_of(&report));
    // The listener accepts the handshake even though the process exits at once.
    assert_eq!(r["result"]["outcome"], "success", "{r:#}");
    match report[0]["ret"].as_i64().unwrap() {
        0 => assert!(r["result"].get("completion").is_none()),
        -115 => {
            assert_eq!(r["result"]["retval"], 0);
            assert_eq!(r["result"]["completion"]["syscall_retval"], -115);
        }
        other => panic!("unexpected connect result {other}"),
    }
}

#[test]
fn process_in_another_cgroup_is_not_reported() {
    let watched = TestCgroup::new("watched");
    let other = TestCgroup::new("other");
    let agent = Agent::watch_cgroup(&watched);
    let outside = other.workload(["open", "/etc/hostname"]);
    let inside = watched.workload(["open", "/etc/hostname"]);
    let records = agent.stop();

    assert!(
        records
            .iter()
            .all(|r| r["process"]["pid"] != pid_of(&outside)),
        "nothing from the unwatched cgroup"
    );
    assert!(
        records
            .iter()
            .all(|r| r["subject"].is_null() || r["subject"]["cgroup"] == watched.rel.as_str())
    );
    one(&records, pid_of(&inside), "file.open", "/etc/hostname");
}

#[test]
fn cgroup_created_below_a_watched_one_after_start_is_watched() {
    let parent = TestCgroup::new("late-parent");
    let agent = Agent::watch_cgroup(&parent);
    let late = parent.child("late-child");
    let report = late.workload(["open", "/etc/hostname"]);
    let records = agent.stop();

    let r = one(&records, pid_of(&report), "file.open", "/etc/hostname");
    assert_eq!(r["subject"]["cgroup"], late.rel.as_str());
    assert_eq!(r["subject"]["cgroup_id"], late.id());
}

#[test]
fn forked_child_moved_to_another_cgroup_is_still_reported() {
    let watched = TestCgroup::new("follow-a");
    let elsewhere = TestCgroup::new("follow-b");
    let dir = Scratch::new("follow");
    let marker = path_str(&dir.path("after-move"));
    let agent = Agent::watch_cgroup(&watched);
    let report = watched.workload([
        "fork",
        "move-cgroup",
        &path_str(&elsewhere.fs),
        "open",
        &marker,
    ]);
    let records = agent.stop();

    // The child reported first (the parent reports after waiting for it).
    let child_pid = pid_of(&report);
    assert_eq!(report[0]["action"], "move-cgroup");
    assert_eq!(report[0]["ret"], 0);
    let r = one(&records, child_pid, "file.open", &marker);
    assert_eq!(r["subject"]["cgroup"], elsewhere.rel.as_str());
    assert_eq!(r["result"]["retval"], -2);
}

#[test]
fn uid_filter_reports_only_that_uid() {
    let cg = TestCgroup::new("uid");
    let dir = Scratch::new("uid");
    let before = path_str(&dir.path("as-root"));
    let after = path_str(&dir.path("as-nobody"));
    let agent = Agent::start(["watch", "--format", "json", "--uid", "65534"]);
    let report = cg.workload(["open", &before, "setuid", "65534", "open", &after]);
    let records = agent.stop();

    let pid = pid_of(&report);
    assert_eq!(report[1]["ret"], 0, "setuid worked");
    assert!(
        by_pid(&records, pid, "file.open")
            .iter()
            .all(|r| r["resource"]["path"] != before.as_str()),
        "root's open is not reported"
    );
    let r = one(&records, pid, "file.open", &after);
    assert_eq!(r["subject"]["uid"], 65534);
    assert_eq!(r["subject"]["gid"], 65534);
}

#[test]
fn the_agents_own_activity_never_appears() {
    let cg = TestCgroup::new("self");
    let agent = Agent::start(["watch", "--format", "json", "--all"]);
    let agent_pid = i64::from(agent.pid());
    // Enough activity for the agent to read /proc and write output while watching everything.
    let report = cg.workload([
        "exec",
        "/bin/sh",
        "-c",
        "cat /etc/hostname; ls /proc/self/ >/dev/null",
    ]);
    let records = agent.stop();

    assert!(!records.is_empty());
    assert!(!by_pid(&records, pid_of(&report), "process.exec").is_empty());
    assert!(
        records.iter().all(|r| r["process"]["pid"] != agent_pid),
        "a record of the agent itself: {:#?}",
        records.iter().find(|r| r["process"]["pid"] == agent_pid)
    );
}

/// Starts a workload blocked in open() of a FIFO; returns it and its pid.
fn blocked_open(cg: &TestCgroup, fifo: &std::path::Path) -> (std::process::Child, i64) {
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = cg
        .command(workload_bin())
        .args(["block-open", &path_str(fifo)])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid = serde_json::from_str::<Value>(&line).unwrap()["pid"]
        .as_i64()
        .unwrap();
    // Wait until it is inside open() (its current system call is openat, 257 on x86-64).
    while !std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .unwrap_or_default()
        .starts_with("257 ")
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, pid)
}

#[test]
fn a_process_killed_inside_a_syscall_is_reported_as_interrupted() {
    let cg = TestCgroup::new("killed");
    let dir = Scratch::new("killed");
    let fifo = dir.path("fifo");
    let agent = Agent::watch_cgroup(&cg);
    let (mut child, pid) = blocked_open(&cg, &fifo);
    child.kill().unwrap();
    child.wait().unwrap();
    let records = agent.stop();

    // The kernel unwinds the blocked open with -ERESTARTSYS on its way to deliver SIGKILL: the
    // attempt is on record, with what the kernel did.
    let r = one(&records, pid, "file.open", &path_str(&fifo));
    assert_eq!(
        r["result"],
        json!({"outcome": "failure", "retval": -512, "errno": "ERESTARTSYS"})
    );
}

#[test]
fn syscalls_in_flight_at_shutdown_are_flushed_not_dropped() {
    let cg = TestCgroup::new("inflight");
    let dir = Scratch::new("inflight");
    let fifo = dir.path("fifo");
    let agent = Agent::watch_cgroup(&cg);
    let (mut child, pid) = blocked_open(&cg, &fifo);
    let records = agent.stop();
    child.kill().unwrap();
    child.wait().unwrap();

    let r = one(&records, pid, "file.open", &path_str(&fifo));
    assert_eq!(r["result"]["outcome"], "unknown");
}

#[test]
fn sequence_numbers_are_strictly_increasing_and_ids_unique() {
    let cg = TestCgroup::new("seq");
    let agent = Agent::watch_cgroup(&cg);
    cg.workload([
        "exec",
        "/bin/sh",
        "-c",
        "for i in 1 2 3 4 5; do cat /etc/hostname; done",
    ]);
    let records = agent.stop();

    assert!(records.len() > 10);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let ids: std::collections::HashSet<&str> =
        records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), records.len());
}

#[test]
fn watch_with_a_missing_cgroup_fails_with_a_clear_error() {
    require_root();
    let out = std::process::Command::new(agent_bin())
        .args(["watch", "--cgroup", "/no/such/cgroup-audit-test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cgroup `/no/such/cgroup-audit-test` does not exist"),
        "{err}"
    );
}

#[test]
fn watch_without_anything_to_watch_is_an_error() {
    let out = std::process::Command::new(agent_bin())
        .arg("watch")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to watch"));
}

/// A resource without its `connection_id` (the socket's cookie: a number the kernel chose),
/// after checking there is one.
fn without_connection_id(resource: &Value) -> Value {
    let mut r = resource.clone();
    let id = r
        .as_object_mut()
        .and_then(|o| o.remove("connection_id"))
        .and_then(|c| c.as_u64());
    assert!(id.is_some_and(|c| c > 0), "a connection id: {resource}");
    r
}
