//! Kernel truth, tested as attacks: a watched program tries to make its record lie — with memory
//! the probe cannot read, a racing thread, aliases of a protected file, namespaces, fileless
//! executables, non-blocking connects — and records its own ground truth (`/proc/self/fd/N`,
//! `fstat`, `SO_ERROR`). Every test fails if a record names another file, executable, address or
//! outcome than the kernel acted on, or presents a value it could not read as a fact.

use std::{
    net::TcpListener,
    os::unix::{
        ffi::OsStrExt as _,
        fs::{MetadataExt as _, symlink},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use audit_tests::*;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 test path").to_string()
}

/// The open record of the report line `rep`: same thread, returned fd and inode (ld.so's opens
/// at exec return the same fd numbers).
fn open_of<'a>(records: &'a [Value], rep: &Value) -> &'a Value {
    let all = by_tid(records, &rep["tid"], "file.open");
    let found: Vec<&&Value> = all
        .iter()
        .filter(|r| {
            r["result"]["retval"] == rep["ret"] && r["resource"]["file"]["ino"] == rep["ino"]
        })
        .collect();
    assert_eq!(found.len(), 1, "one open for {rep} among {all:#?}");
    found[0]
}

/// The last exec by the thread of `rep` (the first is the workload's own start).
fn last_exec<'a>(records: &'a [Value], rep: &Value) -> &'a Value {
    by_tid(records, &rep["tid"], "process.exec")
        .pop()
        .unwrap_or_else(|| panic!("no exec by {rep}"))
}

/// The record names exactly the file the process got: the path `/proc/self/fd/N` shows, and the
/// same device and inode.
fn assert_names_the_opened_file(r: &Value, truth: &Value) {
    assert_eq!(r["resource"]["path"], truth["truth"], "path: {r:#}");
    assert_eq!(r["resource"]["path_source"], "kernel", "{r:#}");
    assert_eq!(r["resource"]["file"]["ino"], truth["ino"], "inode: {r:#}");
    assert_eq!(r["resource"]["file"]["dev"], truth["dev"], "device: {r:#}");
    assert!(r["resource"].get("unreadable").is_none(), "{r:#}");
}

fn assert_denied_as_secret(r: &Value, by_inode: bool) {
    assert_eq!(r["protected"], json!(["secrets"]), "{r:#}");
    assert_eq!(r["policy"]["decision"], "deny", "{r:#}");
    assert_eq!(r["policy"]["rule"], "no-secrets", "{r:#}");
    if by_inode {
        assert_eq!(r["protected_by_inode"], json!(["secrets"]), "{r:#}");
        assert_eq!(r["policy"]["via_inode"], true, "{r:#}");
    } else {
        assert!(r.get("protected_by_inode").is_none(), "{r:#}");
    }
}

/// A protected file `secret` in a scratch directory.
fn secret_file(dir: &Scratch) -> PathBuf {
    let d = dir.path("vault");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("secret");
    std::fs::write(&f, "s3cr3t").unwrap();
    f
}

#[test]
fn a_path_in_memory_the_probe_cannot_read_is_never_recorded_empty() {
    let cg = TestCgroup::new("truth-mapped");
    let dir = Scratch::new("truth-mapped");
    let file = dir.path("target.txt");
    std::fs::write(&file, "x").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload([
        "open-mapped",
        &s(&file),
        "connect4-mapped",
        "127.0.0.1",
        "9",
    ]);
    let records = agent.stop();

    let r = open_of(&records, &report[0]);
    assert_names_the_opened_file(r, &report[0]);
    // The requested path is the same, read at entry or (page not resident) at exit.
    let read = &r["resource"]["requested_path_read"];
    assert!(read.is_null() || *read == "exit", "{r:#}");
    assert!(r["resource"].get("requested_path").is_none(), "{r:#}");

    // The address came from the kernel's own copy, whatever the process's page held.
    let c = by_tid(&records, &report[1]["tid"], "network.connect");
    assert_eq!(c.len(), 1, "{c:#?}");
    assert_eq!(c[0]["resource"]["address"], "127.0.0.1");
    assert_eq!(c[0]["resource"]["port"], 9);
    assert_eq!(c[0]["resource"]["address_source"], "kernel");
    assert_eq!(c[0]["result"]["retval"], report[1]["ret"]);
}

#[test]
fn a_racing_thread_cannot_make_a_record_name_another_file() {
    let cg = TestCgroup::new("truth-race");
    let dir = Scratch::new("truth-race");
    let (a, b) = (dir.path("a.txt"), dir.path("b.txt"));
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&b)], &[], ""));
    let report = cg.workload(["race-open", &s(&a), &s(&b), "2000"]);
    let records = agent.stop();

    let opens = report[0]["opens"].as_array().unwrap();
    let recs = by_tid(&records, &report[0]["tid"], "file.open");
    // The workload's own opens (ld.so and libraries come before, at exec) are the last 2000.
    let recs = &recs[recs.len() - opens.len()..];
    let mut swapped = 0;
    for (truth, r) in opens.iter().zip(recs) {
        assert_eq!(r["result"]["retval"], truth["fd"]);
        assert_names_the_opened_file(r, truth);
        let is_b = truth["truth"] == s(&b).as_str();
        assert_eq!(r["policy"]["decision"], if is_b { "deny" } else { "allow" });
        // What the process passed is kept beside it, and may be the other name.
        if let Some(req) = r["resource"].get("requested_path") {
            assert!(*req == s(&a).as_str() || *req == s(&b).as_str(), "{r:#}");
            swapped += 1;
        }
    }
    eprintln!(
        "{swapped} of {} opens passed a name other than the file opened",
        opens.len()
    );
}

#[test]
fn aliases_of_a_protected_file_are_named_by_the_file_the_kernel_opened() {
    let cg = TestCgroup::new("truth-alias");
    let dir = Scratch::new("truth-alias");
    let secret = secret_file(&dir);
    let link = dir.path("innocent-link");
    symlink(&secret, &link).unwrap();
    let vault = secret.parent().unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let aliases = [
        s(&link),
        format!("{}/../vault/secret", s(vault)),
        format!("{}//secret", s(vault)),
        format!("{}/./secret", s(vault)),
        format!("/proc/self/root{}", s(&secret)),
    ];
    let mut args = Vec::new();
    for p in &aliases {
        args.extend(["open".to_string(), p.clone()]);
    }
    let report = cg.workload(&args);
    let records = agent.stop();

    assert_eq!(report.len(), aliases.len());
    for (rep, alias) in report.iter().zip(&aliases) {
        let r = open_of(&records, rep);
        assert_eq!(rep["truth"], s(&secret).as_str());
        assert_names_the_opened_file(r, rep);
        assert_eq!(r["resource"]["requested_path"], alias.as_str());
        assert_denied_as_secret(r, false);
    }
}

#[test]
fn a_hardlink_to_a_protected_file_is_protected_by_inode() {
    let cg = TestCgroup::new("truth-hardlink");
    let dir = Scratch::new("truth-hardlink");
    let secret = secret_file(&dir);
    let link = dir.path("hardlink");
    std::fs::hard_link(&secret, &link).unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload(["open", &s(&link)]);
    let records = agent.stop();

    let r = open_of(&records, &report[0]);
    assert_names_the_opened_file(r, &report[0]);
    assert_eq!(
        r["resource"]["path"],
        s(&link).as_str(),
        "the name the kernel used"
    );
    assert_denied_as_secret(r, true);
}

/// A protected file, and where it is seen through a bind mount of its directory (see
/// [`bind_and_open`]): (the file, the directory to bind onto, the file through it).
fn secret_and_view(dir: &Scratch) -> (PathBuf, PathBuf, PathBuf) {
    let secret = secret_file(dir);
    let view = dir.path("view");
    std::fs::create_dir_all(&view).unwrap();
    let via = view.join("secret");
    (secret, view, via)
}

/// Workload steps: in a new mount namespace, bind `secret`'s directory onto `view`, then open
/// `secret` through it.
fn bind_and_open(secret: &Path, view: &Path) -> [String; 6] {
    let via = view.join("secret");
    [
        "unshare-mount".into(),
        "bind".into(),
        s(secret.parent().unwrap()),
        s(view),
        "open".into(),
        s(&via),
    ]
}

#[test]
fn a_bind_mount_of_a_protected_directory_is_protected_by_inode() {
    let cg = TestCgroup::new("truth-bind");
    let dir = Scratch::new("truth-bind");
    let (secret, view, via) = secret_and_view(&dir);
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload(bind_and_open(&secret, &view));
    let records = agent.stop();

    assert_eq!(report[1]["ret"], 0, "bind mount: {report:?}");
    let r = open_of(&records, &report[2]);
    assert_names_the_opened_file(r, &report[2]);
    assert_eq!(
        r["resource"]["path"],
        s(&via).as_str(),
        "the mount it was reached through"
    );
    assert_ne!(
        r["resource"]["file"]["mount_id"],
        Value::Null,
        "the mount is identified"
    );
    assert_denied_as_secret(r, true);
}

#[test]
fn helper_reads_and_plain_loads_name_the_same_file_through_a_mount() {
    // Path walks read the kernel's objects with plain loads through `bpf_rdonly_cast` where the
    // kernel has it, else (kernels before 6.2, or `kfuncs = false`) with a helper call per
    // field: both must name the file the kernel opened, across a mount, with the same facts.
    let mut facts = Vec::new();
    for kfuncs in [true, false] {
        let cg = TestCgroup::new("truth-kfuncs");
        let dir = Scratch::new("truth-kfuncs");
        let (secret, view, via) = secret_and_view(&dir);
        let extra = format!("[capture]\nkfuncs = {kfuncs}\n");
        let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], &extra));
        let mut steps = vec!["open".to_string(), s(&secret)];
        steps.extend(bind_and_open(&secret, &view));
        let report = cg.workload(&steps);
        let records = agent.stop();

        let direct = open_of(&records, &report[0]);
        assert_names_the_opened_file(direct, &report[0]);
        assert_denied_as_secret(direct, false);
        let through = open_of(&records, &report[3]);
        assert_names_the_opened_file(through, &report[3]);
        assert_eq!(through["resource"]["path"], s(&via).as_str());
        assert_denied_as_secret(through, true);
        // The bind mount and its namespace are new in each run: compared as "the direct
        // open's or not"; the direct open's own mount and namespace are the host's.
        let d = &direct["resource"]["file"];
        let file = |r: &Value| {
            let f = &r["resource"]["file"];
            assert!(f["mount_id"].is_u64(), "kfuncs = {kfuncs}: {r:#}");
            assert!(f["mount_ns"].is_u64(), "kfuncs = {kfuncs}: {r:#}");
            json!([
                f["mount_id"] == d["mount_id"],
                f["mount_ns"] == d["mount_ns"],
                f["type"],
                f["mode"],
                f["flags"]
            ])
        };
        facts.push((
            d["mount_id"].clone(),
            d["mount_ns"].clone(),
            file(direct),
            file(through),
        ));
    }
    assert_eq!(facts[0], facts[1], "the same facts either way");
}

/// `dev` as records write it (`major:minor`) and the inode of `p`, as the host sees it.
fn identity(p: &Path) -> (String, u64) {
    let m = std::fs::metadata(p).unwrap();
    (
        format!("{}:{}", libc::major(m.dev()), libc::minor(m.dev())),
        m.ino(),
    )
}

/// `real` names the file `p` in `layer`, as the host sees it.
fn assert_names_layer_file(real: &Value, p: &Path, layer: &str) {
    let (dev, ino) = identity(p);
    assert_eq!(real["path"], s(p), "{real:#}");
    assert_eq!(real["path_root"], "host", "{real:#}");
    assert_eq!(real["layer"], layer, "{real:#}");
    assert_eq!(real["dev"], dev, "{real:#}");
    assert_eq!(real["ino"], ino, "{real:#}");
}

/// The record's file is on an overlay over the real file `p` in `layer`.
fn assert_real_file(r: &Value, p: &Path, layer: &str) {
    assert_eq!(r["resource"]["file"]["flags"], json!(["stacked"]), "{r:#}");
    assert_names_layer_file(&r["resource"]["file"]["real"], p, layer);
}

/// An overlay's directories in `dir`: the lower layer `lower`, then `upper`, `work`, `merged`.
fn layers(dir: &Scratch, lower: &str) -> [PathBuf; 4] {
    [lower, "upper", "work", "merged"].map(|n| {
        let d = dir.path(n);
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

#[test]
fn a_file_under_an_overlay_is_named_and_protected_by_the_real_file() {
    let cg = TestCgroup::new("truth-overlay");
    let dir = Scratch::new("truth-overlay");
    let [lower, upper, work, merged] = layers(&dir, "lower");
    std::fs::write(lower.join("secret"), "s3cr3t").unwrap();
    std::fs::write(lower.join("notes"), "n").unwrap();
    std::fs::copy(
        std::fs::canonicalize("/bin/true").unwrap(),
        lower.join("tool"),
    )
    .unwrap();
    // The protected sets name the real files; the agent reaches them only through its own
    // overlay, mounted in a mount namespace of its own.
    let agent = Agent::watch_config(
        &cg,
        &dir,
        &deny_policy(
            &[s(&lower.join("secret")), format!("{}/notes", s(&lower))],
            &[s(&lower.join("tool"))],
            "",
        ),
    );
    let report = cg.workload([
        "unshare-mount",
        "mount-overlay",
        &s(&lower),
        &s(&upper),
        &s(&work),
        &s(&merged),
        "open",
        &s(&merged.join("secret")),
        // O_WRONLY | O_APPEND: copied up into the upper layer before the open returns.
        "open-flags",
        &s(&merged.join("notes")),
        "2001",
        "0",
        "exec",
        &s(&merged.join("tool")),
    ]);
    let records = agent.stop();
    assert_eq!(report[1]["ret"], 0, "mount: {report:?}");

    // Each open names the overlay file the process got (its truth) and the file under it.
    let read = open_of(&records, &report[2]);
    assert_names_the_opened_file(read, &report[2]);
    assert_real_file(read, &lower.join("secret"), "lower");
    assert_denied_as_secret(read, false);
    // Written: the kernel copied the protected file up into the upper layer — another file — and
    // opened that; the record names both, and the protected origin decides.
    let written = open_of(&records, &report[3]);
    assert_names_the_opened_file(written, &report[3]);
    assert_real_file(written, &upper.join("notes"), "upper");
    assert_ne!(
        identity(&upper.join("notes")),
        identity(&lower.join("notes"))
    );
    assert_names_layer_file(
        &written["resource"]["file"]["real"]["origin"],
        &lower.join("notes"),
        "lower",
    );
    assert_denied_as_secret(written, false);

    // The exec names the overlay's file and the real one, which the exec set protects.
    let e = last_exec(&records, &report[4]);
    assert_eq!(e["resource"]["path"], s(&merged.join("tool")), "{e:#}");
    assert_real_file(e, &lower.join("tool"), "lower");
    assert_denied_as_secret(e, false);
}

#[test]
fn a_layer_the_host_does_not_mount_is_named_from_its_filesystems_root() {
    let cg = TestCgroup::new("truth-overlay-hidden");
    let dir = Scratch::new("truth-overlay-hidden");
    let [hidden, upper, work, merged] = layers(&dir, "hidden");
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    // The lower layer lies on a tmpfs mounted only in the workload's own mount namespace.
    let report = cg.workload([
        "unshare-mount",
        "mount-tmpfs",
        &s(&hidden),
        "mkdir",
        &s(&hidden.join("low")),
        // O_WRONLY | O_CREAT: the file, and its identity as fstat gives it.
        "open-flags",
        &s(&hidden.join("low/file")),
        "101",
        "600",
        "mount-overlay",
        &s(&hidden.join("low")),
        &s(&upper),
        &s(&work),
        &s(&merged),
        "open",
        &s(&merged.join("file")),
    ]);
    let records = agent.stop();
    assert!(
        report[..5].iter().all(|r| r["ret"].as_i64() >= Some(0)),
        "{report:?}"
    );

    let r = open_of(&records, &report[5]);
    // The overlay file the process got (stat(2) reports a per-layer device of overlayfs' making
    // for it, not the overlay's own: `dev` is not compared).
    assert_eq!(r["resource"]["path"], report[5]["truth"], "{r:#}");
    assert_eq!(r["resource"]["file"]["ino"], report[5]["ino"], "{r:#}");
    let real = &r["resource"]["file"]["real"];
    assert_eq!(real["path"], "/low/file", "{r:#}");
    assert_eq!(real["path_root"], "filesystem", "{r:#}");
    assert_eq!(real["layer"], "lower", "{r:#}");
    assert_eq!(real["dev"], report[3]["dev"], "{r:#}");
    assert_eq!(real["ino"], report[3]["ino"], "{r:#}");
}

#[test]
fn chroot_and_resolve_in_root_are_named_by_the_real_path() {
    let cg = TestCgroup::new("truth-chroot");
    let dir = Scratch::new("truth-chroot");
    let secret = secret_file(&dir);
    let jail = secret.parent().unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload([
        "openat2-in-root",
        &s(jail),
        "/secret",
        "chroot",
        &s(jail),
        "open",
        "/secret",
    ]);
    let records = agent.stop();

    let in_root = open_of(&records, &report[0]);
    assert_eq!(in_root["syscall"], "openat2");
    assert_eq!(in_root["resource"]["resolve"], json!(["RESOLVE_IN_ROOT"]));
    let chrooted = open_of(&records, &report[2]);
    for (r, rep) in [(in_root, &report[0]), (chrooted, &report[2])] {
        // /proc/self/fd shows the path relative to the process's root after chroot: compare
        // with the real file instead.
        assert_eq!(r["resource"]["path"], s(&secret).as_str(), "{r:#}");
        assert_eq!(r["resource"]["file"]["ino"], rep["ino"]);
        assert_eq!(r["resource"]["requested_path"], "/secret");
        assert_denied_as_secret(r, false);
    }
}

#[test]
fn a_failed_relative_open_is_resolved_against_the_directory_at_the_time() {
    let cg = TestCgroup::new("truth-cwd");
    let dir = Scratch::new("truth-cwd");
    let (first, second) = (dir.path("first"), dir.path("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(first.join("present"), "x").unwrap();
    std::fs::write(dir.path("other"), "o").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload([
        "chdir",
        &s(&first),
        "open",
        "missing",
        "open",
        "present",
        "dup2-over",
        &s(&dir.path("other")),
        "3",
        "chdir",
        &s(&second),
    ]);
    let records = agent.stop();

    let missing = &by_tid(&records, &report[1]["tid"], "file.open")
        .into_iter()
        .find(|r| r["resource"]["requested_path"] == "missing")
        .expect("the failed open");
    assert_eq!(
        missing["resource"]["path"],
        s(&first.join("missing")).as_str()
    );
    assert_eq!(missing["resource"]["path_source"], "resolved");
    assert_eq!(missing["result"]["errno"], "ENOENT");
    // The fd of `present` is later replaced by dup2 and the cwd changes: the record keeps what
    // the kernel opened then.
    assert_eq!(report[2]["ret"], 3, "{report:?}");
    let present = open_of(&records, &report[2]);
    assert_names_the_opened_file(present, &report[2]);
    assert_eq!(present["resource"]["requested_path"], "present");
}

/// Past the first 64 descriptors the kernel moves the fd table to a new allocation: the file
/// behind a high fd is still the one the kernel opened (the fd table is read through the task's
/// BTF pointer).
#[test]
fn a_file_opened_past_the_first_fd_table_is_named_by_the_kernel() {
    let cg = TestCgroup::new("truth-fdt");
    let dir = Scratch::new("truth-fdt");
    let target = dir.path("target");
    std::fs::write(&target, "t").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload(["hold-fds", "100", "open", &s(&target)]);
    let records = agent.stop();
    assert_eq!(report[0]["ret"], 100, "{report:?}");
    assert!(report[1]["ret"].as_i64() >= Some(100), "{report:?}");
    assert_names_the_opened_file(open_of(&records, &report[1]), &report[1]);
}

#[test]
fn forked_children_and_quick_exits_keep_their_executable() {
    let cg = TestCgroup::new("truth-exe");
    let dir = Scratch::new("truth-exe");
    let file = dir.path("f");
    std::fs::write(&file, "x").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload(["fork", "open", &s(&file)]);
    let records = agent.stop();

    let child = &report[0];
    let r = open_of(&records, child);
    let exe = std::fs::canonicalize(workload_bin()).unwrap();
    assert_eq!(r["process"]["exe"], s(&exe).as_str());
    assert_eq!(r["process"]["pid"], child["pid"]);
    assert_ne!(child["pid"], report[1]["pid"], "the open was the child's");
}

#[test]
fn fexecve_and_memfd_execs_name_the_file_the_kernel_loaded() {
    let cg = TestCgroup::new("truth-fexec");
    let dir = Scratch::new("truth-fexec");
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[s(&truth)], ""));
    let fexec = cg.workload(["fexecve", "/bin/true", "true", "x"]);
    let memfd = cg.workload(["memfd-exec", "/bin/true", "true", "y"]);
    let records = agent.stop();

    let exec_of = |rep: &[Value]| -> Value { last_exec(&records, &rep[0]).clone() };
    let f = exec_of(&fexec);
    assert_eq!(f["syscall"], "execveat");
    assert_eq!(f["resource"]["path"], s(&truth).as_str());
    assert_eq!(f["resource"]["path_source"], "kernel");
    assert_eq!(
        f["resource"]["file"]["ino"],
        std::fs::metadata(&truth).unwrap().ino()
    );
    assert_eq!(f["resource"]["argv"], json!(["/bin/true", "true", "x"]));
    assert_eq!(f["result"]["outcome"], "success");
    assert_denied_as_secret(&f, false);

    let m = exec_of(&memfd);
    assert_eq!(m["resource"]["path"], "memfd:payload", "{m:#}");
    assert_eq!(m["resource"]["path_source"], "kernel");
    let flags = m["resource"]["file"]["flags"].as_array().unwrap();
    assert!(flags.contains(&json!("detached")), "fileless: {m:#}");
    assert_eq!(m["resource"]["argv"], json!(["/bin/true", "true", "y"]));
    // Same bytes, another inode: not the protected executable.
    assert_eq!(m["policy"]["decision"], "allow");
    // What the new image then does names the memfd as its executable.
    let after = by_pid(&records, memfd[0]["pid"].as_i64().unwrap(), "file.open");
    assert!(
        after.iter().any(|o| o["process"]["exe"] == "memfd:payload"),
        "{after:#?}"
    );
}

#[test]
fn a_script_exec_records_the_script_and_its_interpreter() {
    let cg = TestCgroup::new("truth-script");
    let dir = Scratch::new("truth-script");
    let script = dir.path("run.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[s(&sh)], ""));
    let report = cg.workload(["chdir", &s(&dir.0), "exec", "./run.sh", "arg"]);
    let records = agent.stop();

    let r = last_exec(&records, &report[0]);
    assert_eq!(r["resource"]["path"], s(&script).as_str());
    assert_eq!(r["resource"]["path_source"], "resolved");
    assert_eq!(r["resource"]["requested_path"], "./run.sh");
    assert_eq!(r["resource"]["interpreter"]["shebang"], "/bin/sh");
    assert_eq!(r["resource"]["interpreter"]["path"], s(&sh).as_str());
    assert_eq!(
        r["resource"]["interpreter"]["file"]["ino"],
        std::fs::metadata(&sh).unwrap().ino()
    );
    // The kernel ran the interpreter with the script as an argument.
    assert_eq!(r["resource"]["argv"], json!(["/bin/sh", "./run.sh", "arg"]));
    assert_eq!(r["resource"]["argv_source"], "image");
    assert_denied_as_secret(r, false);
}

#[test]
fn an_exec_through_a_symlink_is_named_by_the_loaded_file() {
    let cg = TestCgroup::new("truth-exec-link");
    let dir = Scratch::new("truth-exec-link");
    let truth = std::fs::canonicalize("/bin/true").unwrap();
    let link = dir.path("harmless");
    symlink(&truth, &link).unwrap();
    // The protected set names the executable by a path the agent never uses.
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &["/bin/true".into()], ""));
    let report = cg.workload(["exec", &s(&link)]);
    let records = agent.stop();

    let e = last_exec(&records, &report[0]);
    assert_eq!(e["resource"]["path"], s(&truth).as_str());
    assert_eq!(e["resource"]["requested_path"], s(&link).as_str());
    // /bin/true is a symlink to the same file on merged-/usr systems: matched by inode.
    assert_eq!(e["protected"], json!(["secrets"]));
    assert_eq!(e["policy"]["decision"], "deny");
}

/// The `process.map_exec` records of a thread, in sequence order.
fn mappings<'a>(records: &'a [Value], rep: &Value) -> Vec<&'a Value> {
    by_tid(records, &rep["tid"], "process.map_exec")
}

/// The x86_64 dynamic loader, as the ABI names it (a symlink into the C library's directory).
const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// The first file the loader run by `rep`'s exec mapped executable: `program`, named by the
/// kernel's mapping (path, device, inode), recorded as the loader's doing and denied by the
/// exec set that names it.
fn assert_loader_mapped<'a>(records: &'a [Value], rep: &Value, program: &Path) -> &'a Value {
    let first = *mappings(records, rep)
        .first()
        .unwrap_or_else(|| panic!("no mapping among {records:#?}"));
    let (dev, ino) = identity(program);
    assert_eq!(first["resource"]["path"], s(program), "{first:#}");
    assert_eq!(first["resource"]["path_source"], "kernel", "{first:#}");
    assert_eq!(first["resource"]["file"]["dev"], dev, "{first:#}");
    assert_eq!(first["resource"]["file"]["ino"], ino, "{first:#}");
    assert_eq!(first["resource"]["loader"], true, "{first:#}");
    assert_eq!(first["syscall"], "mmap", "{first:#}");
    assert_denied_as_secret(first, false);
    first
}

#[test]
fn a_protected_program_run_by_the_dynamic_loader_is_judged_as_executed() {
    let cg = TestCgroup::new("truth-loader-cat");
    let dir = Scratch::new("truth-loader-cat");
    let input = dir.path("input");
    std::fs::write(&input, "x").unwrap();
    let cat = Path::new("/usr/bin/cat");
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[s(cat)], ""));
    // `ld.so /usr/bin/cat FILE`: cat runs, and no exec names it.
    let report = cg.workload(["exec", LOADER, &s(cat), &s(&input)]);
    let records = agent.stop();

    let exec = last_exec(&records, &report[0]);
    let loader = std::fs::canonicalize(LOADER).unwrap();
    assert_eq!(exec["resource"]["path"], s(&loader), "{exec:#}");
    // The program the loader mapped, by the kernel's mapping: cat's device and inode; the exec
    // set on /usr/bin/cat matches it, with its verdict.
    assert_loader_mapped(&records, &report[0], cat);
}

#[test]
fn a_program_the_dynamic_loader_runs_is_named_by_the_kernels_mapping_of_it() {
    let cg = TestCgroup::new("truth-loader");
    let dir = Scratch::new("truth-loader");
    // The program: a copy of the workload, so that it can list its own mappings.
    let program = dir.path("tool");
    std::fs::copy(workload_bin(), &program).unwrap();
    let loader = std::fs::canonicalize(LOADER).unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[s(&program)], ""));
    // No exec names the program: the kernel execs the loader, which maps the program itself.
    let report = cg.workload(["exec", &s(&loader), &s(&program), "report-maps"]);
    let records = agent.stop();
    let maps = &report[1];
    assert_eq!(maps["action"], "report-maps", "{report:?}");

    let exec = last_exec(&records, &report[0]);
    assert_eq!(exec["resource"]["path"], s(&loader), "{exec:#}");
    assert!(
        exec.get("protected").is_none_or(|p| p == &json!([])),
        "{exec:#}"
    );

    // The first file the loader mapped executable is the program: the mapping the kernel lists
    // for it (start address, device, inode), and its path; the exec set protects it.
    let first = assert_loader_mapped(&records, maps, &program);
    let truth = maps["maps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["ino"] == identity(&program).1)
        .unwrap_or_else(|| panic!("the program is not mapped executable: {maps}"));
    assert_eq!(first["resource"]["addr"], truth["start"], "{first:#}");
    assert_eq!(first["process"]["exe"], s(&loader), "{first:#}");
    // The libraries it maps next are the loader's doing too, and on record.
    assert!(mappings(&records, maps).len() > 1, "{records:#?}");
}

#[test]
fn a_protected_file_mapped_executable_by_any_program_is_recorded() {
    let cg = TestCgroup::new("truth-map-exec");
    let dir = Scratch::new("truth-map-exec");
    let (protected, other) = (dir.path("protected.so"), dir.path("other.so"));
    for f in [&protected, &other] {
        std::fs::write(f, vec![0u8; 4096]).unwrap();
    }
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[s(&protected)], ""));
    let report = cg.workload([
        "mmap-exec",
        &s(&protected),
        "mmap-exec",
        &s(&other),
        "mprotect-exec",
        &s(&protected),
    ]);
    let records = agent.stop();
    assert!(report.iter().all(|r| r["ret"] == 0), "{report:?}");

    // An ordinary program's executable mappings are its libraries' (not recorded), unless the
    // file is protected: mapped executable directly, or made executable later.
    let m = mappings(&records, &report[0]);
    assert_eq!(m.len(), 2, "{m:#?}");
    for (r, (rep, syscall)) in m
        .iter()
        .zip([(&report[0], "mmap"), (&report[2], "mprotect")])
    {
        assert_eq!(r["syscall"], syscall, "{r:#}");
        assert_eq!(r["resource"]["path"], rep["truth"], "{r:#}");
        assert_eq!(r["resource"]["file"]["ino"], rep["ino"], "{r:#}");
        assert_eq!(r["resource"]["addr"], rep["addr"], "{r:#}");
        assert_eq!(r["resource"]["loader"], false, "{r:#}");
        assert_denied_as_secret(r, false);
    }
}

#[test]
fn a_relative_unix_socket_is_named_by_the_socket_the_kernel_connected_to() {
    let cg = TestCgroup::new("truth-unix");
    let dir = Scratch::new("truth-unix");
    let sock = dir.path("app.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&sock)], &[], ""));
    let report = cg.workload([
        "chdir",
        &s(&dir.0),
        "connect-unix",
        "app.sock",
        "connect-unix",
        "nope.sock",
    ]);
    let records = agent.stop();

    let c = by_tid(&records, &report[1]["tid"], "network.connect");
    assert_eq!(c.len(), 2, "{c:#?}");
    assert_eq!(c[0]["resource"]["address"], s(&sock).as_str());
    assert_eq!(c[0]["resource"]["address_source"], "kernel");
    assert_eq!(c[0]["resource"]["requested_address"], "app.sock");
    assert_eq!(
        c[0]["resource"]["file"]["ino"],
        std::fs::metadata(&sock).unwrap().ino()
    );
    assert_eq!(c[0]["result"]["outcome"], "success");
    assert_denied_as_secret(c[0], false);
    assert_eq!(
        c[1]["resource"]["address"],
        s(&dir.path("nope.sock")).as_str()
    );
    assert_eq!(c[1]["resource"]["address_source"], "resolved");
    assert_eq!(c[1]["result"]["errno"], "ENOENT");
}

/// `@` and an abstract name as the trail writes it: printable ASCII as is, any other byte `\xHH`
/// (enough for the names these tests use; `docs/schema.md` has the whole escaping).
fn abstract_address(name: &[u8]) -> String {
    let mut out = String::from("@");
    for &b in name {
        if b.is_ascii_graphic() && b != b'\\' || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[test]
fn an_abstract_unix_socket_is_named_by_the_name_the_kernel_connected_to() {
    use std::os::{
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixDatagram, UnixListener},
    };
    let cg = TestCgroup::new("truth-abstract");
    // Names with a control byte and a byte that is not UTF-8: both escaped on the record.
    let name = |kind: &str| {
        let mut n = format!("audit-test-{kind}-{}", std::process::id()).into_bytes();
        n.extend_from_slice(&[0x01, 0xff]);
        n
    };
    let (stream, dgram) = (name("stream"), name("dgram"));
    let _l = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&stream).unwrap()).unwrap();
    let _d = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&dgram).unwrap()).unwrap();
    let agent = Agent::watch_cgroup(&cg);
    let arg = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
    let report = cg.workload([
        "connect-abstract".into(),
        arg(&stream),
        "connect-abstract-dgram".into(),
        arg(&dgram),
    ]);
    let records = agent.stop();

    let c = by_tid(&records, &report[0]["tid"], "network.connect");
    assert_eq!(c.len(), 2, "{c:#?}");
    for (r, rep) in c.iter().zip(&report) {
        assert_eq!(rep["ret"], 0, "{rep}");
        // Ground truth: the peer's name as getpeername(2) gave it to the process.
        let peer = hex_bytes(rep["peer_hex"].as_str().unwrap());
        assert_eq!(r["resource"]["family"], "unix", "{r:#}");
        assert_eq!(r["resource"]["address"], abstract_address(&peer), "{r:#}");
        assert_eq!(r["resource"]["address_source"], "kernel", "{r:#}");
        // An abstract socket has no inode: no file identity, rather than a zero one.
        assert!(r["resource"].get("file").is_none(), "{r:#}");
        assert!(r["resource"].get("requested_address").is_none(), "{r:#}");
        assert!(r["resource"].get("unreadable").is_none(), "{r:#}");
        assert_eq!(r["result"]["outcome"], "success", "{r:#}");
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The connect records of a thread in the order of the attempts (a held record is written when
/// its outcome is known, so sequence order may differ).
fn connects_in_time_order<'a>(records: &'a [Value], rep: &Value) -> Vec<&'a Value> {
    let mut c = by_tid(records, &rep["tid"], "network.connect");
    c.sort_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()));
    c
}

/// The outcome the process itself saw (`SO_ERROR` after waiting) and the record's agree.
fn assert_outcome_matches_so_error(r: &Value, rep: &Value) {
    assert_eq!(rep["ret"], -115, "non-blocking: EINPROGRESS first ({rep})");
    match rep["so_error"].as_i64().unwrap() {
        0 => assert_eq!(r["result"]["outcome"], "success", "{r:#}"),
        e => {
            assert_eq!(r["result"]["outcome"], "failure", "{r:#}");
            assert_eq!(r["result"]["retval"], -e, "{r:#}");
        }
    }
    assert_eq!(r["result"]["completion"]["syscall_retval"], -115, "{r:#}");
    assert!(r["result"]["completion"]["after_ms"].is_number(), "{r:#}");
}

#[test]
fn non_blocking_connects_record_how_they_ended() {
    let cg = TestCgroup::new("truth-nb");
    let dir = Scratch::new("truth-nb");
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port().to_string();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload([
        "connect4-nb-wait",
        "127.0.0.1",
        &open_port,
        "0",
        "connect4-nb-wait",
        "127.0.0.1",
        &closed_port,
        "0",
        "netns-blackhole",
        "connect4-nb-wait",
        "10.9.9.9",
        "80",
        "1",
    ]);
    let records = agent.stop();

    assert_eq!(report[2]["ret"], 0, "network namespace set up: {report:?}");
    let (ok, refused, blackholed) = (&report[0], &report[1], &report[3]);
    assert_eq!(ok["so_error"], 0);
    assert_eq!(refused["so_error"], 111);
    assert_eq!(blackholed["so_error"], 110, "ETIMEDOUT after one SYN retry");
    let recs = connects_in_time_order(&records, ok);
    assert_eq!(recs.len(), 3, "{recs:#?}");
    for (rep, r) in [ok, refused, blackholed].into_iter().zip(&recs) {
        assert_outcome_matches_so_error(r, rep);
    }
    assert_eq!(
        recs[1]["resource"]["port"],
        closed_port.parse::<u16>().unwrap()
    );
    assert_eq!(recs[2]["resource"]["address"], "10.9.9.9");
    assert_eq!(recs[2]["result"]["errno"], "ETIMEDOUT");
}

#[test]
fn a_connect_that_outlasts_the_wait_is_released_in_progress_and_says_so() {
    let cg = TestCgroup::new("truth-nb-wait");
    let dir = Scratch::new("truth-nb-wait");
    let config = deny_policy(&[], &[], "[capture]\nconnect_outcome_wait_ms = 300\n");
    let agent = Agent::watch_config(&cg, &dir, &config);
    // A SYN into the void keeps retrying for about two minutes: the record is released first.
    let mut child = cg
        .command(workload_bin())
        .args(["netns-blackhole", "connect4-nb-wait", "10.9.9.9", "80", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let record = loop {
        let recs = agent.records_so_far();
        if let Some(r) = recs
            .iter()
            .find(|r| r["action"] == "network.connect" && r["process"]["pid"] == child.id())
        {
            break r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no connect record");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    agent.stop();

    assert_eq!(record["result"]["outcome"], "in_progress", "{record:#}");
    assert_eq!(record["result"]["retval"], -115);
    let c = &record["result"]["completion"];
    assert!(
        c.get("after_ms").is_none(),
        "no final state known: {record:#}"
    );
    assert!(c["waited_ms"].as_f64().unwrap() >= 300.0, "{record:#}");
}

#[test]
fn an_open_by_handle_names_the_file_the_kernel_opened() {
    let cg = TestCgroup::new("truth-handle");
    let dir = Scratch::new("truth-handle");
    let secret = secret_file(&dir);
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload(["open-by-handle", &s(&secret)]);
    let records = agent.stop();

    let r = open_of(&records, &report[0]);
    assert_eq!(r["syscall"], "open_by_handle_at");
    assert_names_the_opened_file(r, &report[0]);
    assert!(
        r["resource"].get("requested_path").is_none(),
        "a handle, no path: {r:#}"
    );
    assert_denied_as_secret(r, false);
}

#[test]
fn sends_to_an_address_name_the_destination_the_kernel_used() {
    let cg = TestCgroup::new("truth-send");
    let dir = Scratch::new("truth-send");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port().to_string();
    let tfo = TcpListener::bind("127.0.0.1:0").unwrap();
    let tfo_port = tfo.local_addr().unwrap().port().to_string();
    let sock = dir.path("dgram.sock");
    let _unix = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let report = cg.workload([
        "udp-sendto",
        "127.0.0.1",
        &port,
        "udp-sendmsg",
        "127.0.0.1",
        &port,
        "tfo",
        "127.0.0.1",
        &tfo_port,
        "chdir",
        &s(&dir.0),
        "unix-sendto",
        "dgram.sock",
    ]);
    let records = agent.stop();

    let sends = by_tid(&records, &report[0]["tid"], "network.send");
    assert_eq!(sends.len(), 4, "{sends:#?}");
    for (r, (syscall, port)) in
        sends
            .iter()
            .zip([("sendto", &port), ("sendmsg", &port), ("sendto", &tfo_port)])
    {
        assert_eq!(r["syscall"], syscall);
        assert_eq!(r["resource"]["address"], "127.0.0.1");
        assert_eq!(r["resource"]["port"], port.parse::<u16>().unwrap());
        assert_eq!(r["resource"]["address_source"], "kernel", "{r:#}");
    }
    assert_eq!(sends[0]["result"]["retval"], 1);
    assert_eq!(sends[1]["result"]["retval"], report[1]["ret"]);
    assert_eq!(sends[3]["resource"]["address"], s(&sock).as_str());
    assert_eq!(sends[3]["resource"]["requested_address"], "dgram.sock");
    assert_eq!(sends[3]["result"]["retval"], 1);
}

/// The record of an io_uring request by the thread of `rep`, with its action and result.
fn uring_record<'a>(records: &'a [Value], rep: &Value, action: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["action"] == action
                && r["process"]["pid"] == rep["pid"]
                && r["syscall"] == "io_uring"
                && r["result"]["retval"] == rep["ret"]
        })
        .collect();
    assert_eq!(found.len(), 1, "one {action} for {rep}: {found:#?}");
    assert_eq!(found[0]["resource"]["io_uring"]["user_data"], 42);
    found[0]
}

#[test]
fn io_uring_requests_are_recorded_from_the_kernels_copy_like_their_syscalls() {
    let cg = TestCgroup::new("truth-uring");
    let dir = Scratch::new("truth-uring");
    let secret = secret_file(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let (made, moved, gone) = (dir.path("made"), dir.path("moved"), dir.path("gone"));
    std::fs::write(&gone, "x").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload([
        "uring-open",
        &s(&secret),
        "uring-mkdir",
        &s(&made),
        "uring-rename",
        &s(&made),
        &s(&moved),
        "uring-unlink",
        &s(&gone),
        "uring-connect",
        "127.0.0.1",
        &port.to_string(),
        "uring-sendto",
        "127.0.0.1",
        &udp_port.to_string(),
    ]);
    let records = agent.stop();

    let open = uring_record(&records, &report[0], "file.open");
    assert_names_the_opened_file(open, &report[0]);
    assert_eq!(open["resource"]["requested_path_read"], "kernel_copy");
    assert_eq!(open["resource"]["io_uring"]["op"], "openat");
    assert_denied_as_secret(open, false);

    let mkdir = uring_record(&records, &report[1], "file.mkdir");
    assert_eq!(mkdir["resource"]["path"], s(&made).as_str(), "{mkdir:#}");
    assert_eq!(mkdir["resource"]["mode"], "0750");
    let rename = uring_record(&records, &report[2], "file.rename");
    assert_eq!(rename["resource"]["path"], s(&made).as_str());
    assert_eq!(rename["resource"]["new_path"], s(&moved).as_str());
    let unlink = uring_record(&records, &report[3], "file.delete");
    assert_eq!(unlink["resource"]["path"], s(&gone).as_str());
    assert!(!gone.exists() && moved.is_dir());

    for (rep, action, port) in [
        (&report[4], "network.connect", port),
        (&report[5], "network.send", udp_port),
    ] {
        let r = uring_record(&records, rep, action);
        assert_eq!(r["resource"]["address"], "127.0.0.1", "{r:#}");
        assert_eq!(r["resource"]["port"], port, "{r:#}");
        assert_eq!(r["resource"]["address_source"], "kernel", "{r:#}");
    }
    let setups = by_pid(&records, pid_of(&report), "process.io_uring_setup");
    assert_eq!(
        setups.len(),
        report.len(),
        "one ring per request: {setups:#?}"
    );
}

#[test]
fn an_sqpoll_kernel_thread_is_attributed_to_the_process_that_owns_the_ring() {
    let cg = TestCgroup::new("truth-sqpoll");
    let dir = Scratch::new("truth-sqpoll");
    let secret = secret_file(&dir);
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    let report = cg.workload(["uring-sqpoll-open", &s(&secret)]);
    let records = agent.stop();

    // Submitted by the ring's kernel thread, not by the syscall of any watched thread.
    let open = uring_record(&records, &report[0], "file.open");
    assert_ne!(open["process"]["tid"], report[0]["tid"], "{open:#}");
    assert!(
        open["process"]["comm"]
            .as_str()
            .unwrap()
            .starts_with("iou-sqp-"),
        "{open:#}"
    );
    assert_eq!(open["agent"]["id"], records[0]["agent"]["id"]);
    assert_names_the_opened_file(open, &report[0]);
    assert_denied_as_secret(open, false);
    let setup = &by_pid(&records, pid_of(&report), "process.io_uring_setup")[0];
    assert_eq!(
        setup["resource"]["setup_flags"],
        json!(["IORING_SETUP_SQPOLL"])
    );
}

#[test]
fn a_32_bit_system_call_is_recorded_as_the_action_it_performs() {
    let cg = TestCgroup::new("truth-ia32");
    let dir = Scratch::new("truth-ia32");
    let secret = secret_file(&dir);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (made, gone) = (dir.path("made"), dir.path("gone"));
    std::fs::write(&gone, "x").unwrap();
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[s(&secret)], &[], ""));
    // `int 0x80` from a 64-bit process: the syscalls:* tracepoints never see these.
    let report = cg.workload([
        "ia32-open",
        &s(&secret),
        "ia32-mkdir",
        &s(&made),
        "ia32-unlink",
        &s(&gone),
        "ia32-connect",
        "127.0.0.1",
        &port.to_string(),
        "ia32-socketcall-connect",
        "127.0.0.1",
        &port.to_string(),
        "ia32-call",
        "20",
    ]);
    let records = agent.stop();
    let of = |rep: &Value, syscall: &str| -> Value {
        let found: Vec<&Value> = records
            .iter()
            .filter(|r| r["process"]["tid"] == rep["tid"] && r["syscall"] == syscall)
            .collect();
        assert_eq!(found.len(), 1, "one {syscall} record for {rep}: {found:#?}");
        found[0].clone()
    };

    let open = of(&report[0], "ia32:open");
    assert_eq!(open["action"], "file.open");
    assert_names_the_opened_file(&open, &report[0]);
    assert_denied_as_secret(&open, false);
    assert_eq!(open["resource"]["ia32"]["nr"], 5);

    let mkdir = of(&report[1], "ia32:mkdir");
    assert_eq!(mkdir["action"], "file.mkdir");
    assert_eq!(mkdir["resource"]["path"], s(&made).as_str());
    assert_eq!(mkdir["resource"]["mode"], "0750");
    assert!(made.is_dir());
    let unlink = of(&report[2], "ia32:unlink");
    assert_eq!(unlink["action"], "file.delete");
    assert_eq!(unlink["resource"]["path"], s(&gone).as_str());

    for (rep, syscall) in [
        (&report[3], "ia32:connect"),
        (&report[4], "ia32:socketcall"),
    ] {
        let c = of(rep, syscall);
        assert_eq!(c["action"], "network.connect", "{c:#}");
        assert_eq!(c["resource"]["address"], "127.0.0.1", "{c:#}");
        assert_eq!(c["resource"]["port"], port, "{c:#}");
        assert_eq!(c["resource"]["address_source"], "kernel", "{c:#}");
        assert_eq!(c["result"]["retval"], rep["ret"]);
    }

    // A call with no action of its own is still recorded, by number and name.
    let other = of(&report[5], "ia32:getpid");
    assert_eq!(other["action"], "process.compat_syscall");
    assert_eq!(other["resource"]["ia32"]["nr"], 20);
    assert_eq!(other["result"]["retval"], report[5]["ret"]);
}

#[test]
fn a_32_bit_exec_is_recorded_from_what_the_kernel_still_has() {
    let cg = TestCgroup::new("truth-ia32-exec");
    let dir = Scratch::new("truth-ia32-exec");
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    let missing = dir.path("missing");
    // A failed exec returns to the caller with its registers as passed. A successful one
    // returns into the new image: into a 64-bit one the kernel turns the call into a 64-bit
    // execve (`set_personality_64bit`), so no 32-bit call returns, and the exec is the
    // kernel's `linux_binprm`.
    let report = cg.workload(["ia32-execve", &s(&missing), "ia32-execve", "/bin/true"]);
    let records = agent.stop();
    let execs: Vec<&Value> = records
        .iter()
        .filter(|r| r["syscall"] == "ia32:execve")
        .collect();
    assert_eq!(execs.len(), 1, "only the failed one: {execs:#?}");
    let failed = execs[0];
    assert_eq!(failed["result"]["retval"], report[0]["ret"], "{failed:#}");
    assert_eq!(failed["resource"]["ia32"]["nr"], 11);
    assert!(failed["resource"]["ia32"]["args"].is_array(), "{failed:#}");
    assert_eq!(failed["resource"]["path"], s(&missing).as_str());
    assert_eq!(failed["resource"]["requested_path_read"], "exit");

    let pid = &failed["process"]["pid"];
    let image = records
        .iter()
        .rfind(|r| r["action"] == "process.exec" && r["process"]["pid"] == *pid)
        .unwrap_or_else(|| panic!("the exec of {pid}: {records:#?}"));
    let true_bin = std::fs::canonicalize("/bin/true").unwrap();
    assert_eq!(
        image["resource"]["path"],
        s(&true_bin).as_str(),
        "{image:#}"
    );
    assert_eq!(image["resource"]["path_source"], "kernel", "{image:#}");
}

/// The `process.exit` record of process `pid`.
fn exit_of(records: &[Value], pid: &Value) -> Value {
    let exits: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.exit" && r["process"]["pid"] == *pid)
        .collect();
    assert_eq!(exits.len(), 1, "one exit of {pid}: {exits:#?}");
    exits[0].clone()
}

#[test]
fn an_exit_says_what_the_parent_was_told() {
    let cg = TestCgroup::new("truth-exit");
    let dir = Scratch::new("truth-exit");
    let agent = Agent::watch_config(&cg, &dir, &deny_policy(&[], &[], ""));
    // Each child ends another way; the parent reports the wait status it got.
    let code = cg.workload(["fork", "exit", "3"]);
    let killed = cg.workload(["fork", "raise", "9"]);
    // Threads end one by one with different codes, the main thread first or last: the record
    // must say the code the parent is told.
    let leader_first = cg.workload(["fork", "exit-threads", "0", "5", "leader"]);
    let leader_last = cg.workload(["fork", "exit-threads", "6", "0", "other"]);
    let records = agent.stop();

    let status = |report: &[Value]| report.last().unwrap()["status"].as_i64().unwrap();
    let child = |report: &[Value]| report.last().unwrap()["ret"].clone();
    assert_eq!(status(&code), 3 << 8);
    let r = exit_of(&records, &child(&code));
    assert_eq!(r["resource"]["exit_code"], 3, "{r:#}");
    assert_eq!(r["result"]["outcome"], "failure");
    assert_eq!(r["syscall"], "exit");

    assert_eq!(status(&killed), 9);
    let r = exit_of(&records, &child(&killed));
    assert_eq!(r["resource"]["signal"], "SIGKILL", "{r:#}");
    assert_eq!(r["resource"]["core_dumped"], false);
    assert!(r["resource"].get("exit_code").is_none());

    for report in [&leader_first, &leader_last] {
        let told = status(report);
        assert_eq!(told & 0x7f, 0, "an exit, not a signal");
        let r = exit_of(&records, &child(report));
        assert_eq!(r["resource"]["exit_code"], told >> 8, "{r:#}");
    }
    let r = exit_of(&records, &child(&leader_first));
    // The exit names the image that ended: the workload the child still ran.
    let exe = std::fs::canonicalize(workload_bin()).unwrap();
    assert_eq!(r["process"]["exe"], s(&exe).as_str());
}
