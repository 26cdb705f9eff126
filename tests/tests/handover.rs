//! Files obtained without an open, tested as attacks: a watched program reads a protected file
//! through a descriptor it inherited at exec, held when it became watched, or received from an
//! unwatched process over a unix socket, and moves its bytes with sendfile, splice,
//! copy_file_range or mmap + write — no open on record. Each program records its own ground
//! truth (`/proc/self/fd/N`, `fstat`); every test fails unless the trail names the file the
//! kernel's fd table held, by its kernel identity, with its protected set and verdict.

use std::os::unix::io::AsRawFd as _;

use audit_tests::*;

/// A protected file `vault/secret` in `dir`, and the policy denying it (`secrets`).
fn secret(dir: &Scratch) -> (String, String) {
    let d = dir.path("vault");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("secret");
    std::fs::write(&f, "s3cr3t bytes").unwrap();
    let f = f.to_str().unwrap().to_string();
    let policy = deny_policy(std::slice::from_ref(&f), &[], "");
    (f, policy)
}

fn out(dir: &Scratch, name: &str) -> String {
    dir.path(name).to_str().unwrap().to_string()
}

/// The record names the file whose truth the workload reported (`truth`, `ino`, `dev`), by the
/// kernel, as the protected secret.
fn assert_names_the_secret(r: &Value, truth: &Value) {
    assert_eq!(r["resource"]["path"], truth["truth"], "{r:#}");
    assert_eq!(r["resource"]["path_source"], "kernel", "{r:#}");
    assert_eq!(r["resource"]["file"]["ino"], truth["ino"], "{r:#}");
    assert_eq!(r["resource"]["file"]["dev"], truth["dev"], "{r:#}");
    assert_eq!(r["protected"], json!(["secrets"]), "{r:#}");
    assert_eq!(r["policy"]["decision"], "deny", "{r:#}");
    assert_eq!(r["policy"]["rule"], "no-secrets", "{r:#}");
}

/// The one record of `action` by `pid` holding fd `fd`.
fn of_fd<'a>(records: &'a [Value], pid: &Value, action: &str, fd: &Value) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["action"] == action && r["process"]["pid"] == *pid && r["resource"]["fd"] == *fd
        })
        .collect();
    assert_eq!(found.len(), 1, "one {action} of fd {fd}: {found:#?}");
    found[0]
}

/// The copy records of the thread of `rep` made by `syscall`, in order.
fn copies<'a>(records: &'a [Value], rep: &Value, syscall: &str) -> Vec<&'a Value> {
    by_tid(records, &rep["tid"], "file.copy")
        .into_iter()
        .filter(|r| r["syscall"] == syscall)
        .collect()
}

/// The copy moved the bytes of the file behind `fd` (the secret) into the file with inode
/// `to_ino`, as the workload saw them.
fn assert_copied(r: &Value, rep: &Value, to_ino: &Value) {
    assert_names_the_secret(r, rep);
    assert_eq!(r["resource"]["fd"], rep["fd"], "{r:#}");
    assert_eq!(r["resource"]["to_file"]["ino"], *to_ino, "{r:#}");
    assert_eq!(r["result"]["outcome"], "success", "{r:#}");
    assert_eq!(r["result"]["retval"], rep["ret"], "{r:#}");
}

/// [`assert_copied`] into the workload's output file `path` (its `out_fd`, `to`, `to_ino`).
fn assert_copied_to(r: &Value, rep: &Value, path: &str) {
    assert_copied(r, rep, &rep["to_ino"]);
    assert_eq!(rep["to"], path);
    assert_eq!(r["resource"]["to_path"], rep["to"], "{r:#}");
    assert_eq!(r["resource"]["to_fd"], rep["out_fd"], "{r:#}");
}

#[test]
fn an_inherited_descriptor_and_every_copy_of_its_bytes_name_the_protected_file() {
    let cg = TestCgroup::new("handover-inherit");
    let dir = Scratch::new("handover-inherit");
    let (secret, policy) = secret(&dir);
    let agent = Agent::watch_config(&cg, &dir, &policy);
    // Opened by us (unwatched), handed to the workload as fd 7 across its exec.
    let f = std::fs::File::open(&secret).unwrap();
    let (o1, o2, o3, o4) = (
        out(&dir, "o1"),
        out(&dir, "o2"),
        out(&dir, "o3"),
        out(&dir, "o4"),
    );
    let report = cg.workload_with_fds(
        &[(f.as_raw_fd(), 7)],
        [
            "fd-truth",
            "7",
            "sendfile",
            "7",
            &o1,
            "splice",
            "7",
            &o2,
            "copy-range",
            "7",
            &o3,
            "mmap-write",
            "7",
            &o4,
        ],
    );
    let records = agent.stop();
    let pid = &report[0]["pid"];

    // The descriptor the process started with, from the kernel's fd table.
    let held = of_fd(&records, pid, "file.held", &json!(7));
    assert_names_the_secret(held, &report[0]);
    assert_eq!(
        held["syscall"], "execve",
        "held when first seen, at its exec: {held:#}"
    );

    // sendfile and copy_file_range: the secret's bytes into o1, o3.
    let (sendfile, copy_range) = (&report[1], &report[3]);
    for (rep, syscall, path) in [
        (sendfile, "sendfile", &o1),
        (copy_range, "copy_file_range", &o3),
    ] {
        let c = copies(&records, rep, syscall);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_copied_to(c[0], rep, path);
        assert_eq!(c[0]["resource"]["length"], 12, "{:#}", c[0]);
    }
    // splice: the secret into a pipe (then the pipe into o2).
    let splice = &report[2];
    let c = copies(&records, splice, "splice");
    assert_eq!(c.len(), 2, "{c:#?}");
    assert_copied(c[0], splice, &splice["pipe_ino"]);
    assert_eq!(
        c[1]["resource"]["file"]["ino"], splice["pipe_ino"],
        "{:#}",
        c[1]
    );
    assert_eq!(
        c[1]["resource"]["to_file"]["ino"], splice["to_ino"],
        "{:#}",
        c[1]
    );
    // mmap + write: no system call names the file; the descriptor it was mapped from is on
    // record (held, above).
    assert_eq!(std::fs::read(&o4).unwrap(), b"s3cr3t bytes");
    assert_eq!(report[4]["ino"], held["resource"]["file"]["ino"]);
    // Each copy wrote what it was asked to.
    for o in [&o1, &o2, &o3] {
        assert_eq!(std::fs::read(o).unwrap(), b"s3cr3t bytes", "{o}");
    }
}

#[test]
fn a_descriptor_held_when_a_process_becomes_watched_is_recorded() {
    let cg = TestCgroup::new("handover-moved");
    let outside = TestCgroup::new("handover-moved-outside");
    let dir = Scratch::new("handover-moved");
    let (secret, policy) = secret(&dir);
    let agent = Agent::watch_config(&cg, &dir, &policy);
    let f = std::fs::File::open(&secret).unwrap();
    let o = out(&dir, "o");
    // Started unwatched with the secret as fd 7; moves itself into the watched cgroup, then
    // sends the secret's bytes into a file.
    let report = outside.workload_with_fds(
        &[(f.as_raw_fd(), 7)],
        [
            "fd-truth",
            "7",
            "move-cgroup",
            cg.fs.to_str().unwrap(),
            "sendfile",
            "7",
            &o,
        ],
    );
    let records = agent.stop();
    let pid = &report[0]["pid"];

    let held = of_fd(&records, pid, "file.held", &json!(7));
    assert_names_the_secret(held, &report[0]);
    // Walked after its first record (the open of `o`, whose own fd is on record once: as opened).
    let first = by_pid(&records, pid.as_i64().unwrap(), "file.open")
        .into_iter()
        .find(|r| r["resource"]["path"] == o.as_str())
        .expect("the open of o");
    assert!(
        first["seq"].as_u64() < held["seq"].as_u64(),
        "{first:#} {held:#}"
    );
    assert!(
        !records
            .iter()
            .any(|r| r["action"] == "file.held" && r["resource"]["path"] == o.as_str()),
        "the file just opened is not also held"
    );
    let c = copies(&records, &report[2], "sendfile");
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_copied_to(c[0], &report[2], &o);
}

#[test]
fn a_file_received_from_an_unwatched_process_is_recorded() {
    let cg = TestCgroup::new("handover-received");
    let dir = Scratch::new("handover-received");
    let (secret, policy) = secret(&dir);
    let agent = Agent::watch_config(&cg, &dir, &policy);
    // We (unwatched) put the secret in flight; the workload holds the other end as fd 8.
    let (ours, theirs) = unix_pair();
    let f = std::fs::File::open(&secret).unwrap();
    send_fd(&ours, f.as_raw_fd());
    let o = out(&dir, "o");
    let report = cg.workload_with_fds(
        &[(theirs.as_raw_fd(), 8)],
        ["recv-fd", "8", "sendfile", "3", &o],
    );
    let records = agent.stop();
    let got = &report[0];
    assert!(got["ret"].as_i64().unwrap() >= 0, "{got}");
    assert_eq!(got["truth"], secret.as_str());

    let r = of_fd(&records, &got["pid"], "file.receive", &got["ret"]);
    assert_names_the_secret(r, got);
    assert_eq!(r["resource"]["socket_fd"], 8, "{r:#}");
    assert_eq!(r["syscall"], "recvmsg", "{r:#}");
    // In flight when the workload started: never in its fd table then.
    assert!(
        !records
            .iter()
            .any(|r| r["action"] == "file.held" && r["resource"]["path"] == secret.as_str()),
        "{records:#?}"
    );
    // And what it did with it.
    if got["ret"] == 3 {
        let c = copies(&records, &report[1], "sendfile");
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_names_the_secret(c[0], got);
    }
}

#[test]
fn a_descriptor_passed_at_the_number_it_already_has_reaches_the_workload() {
    // The harness itself: our descriptors are close-on-exec, and a `dup2` onto the number an fd
    // already has leaves it so — the workload then found another socket there, or none (it hung
    // on one once, in siem.rs, when the pair happened to be made at fd 8).
    let cg = TestCgroup::new("handover-same-number");
    let (ours, theirs) = unix_pair();
    let f = std::fs::File::open("/etc/hostname").unwrap();
    send_fd(&ours, f.as_raw_fd());
    let at = theirs.as_raw_fd();
    let report = cg.workload_with_fds(&[(at, at)], ["recv-fd".to_string(), at.to_string()]);
    assert!(report[0]["ret"].as_i64().unwrap() >= 0, "{report:?}");
    assert_eq!(report[0]["truth"], "/etc/hostname");
}
