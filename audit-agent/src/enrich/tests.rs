//! Enrichment as a specification: every fact on the event comes from the kernel record, with its
//! provenance; what could not be read is flagged, never invented.

use std::{net::IpAddr, time::Duration};

use audit_common::event::{ConnectOutcome, Syscall, file_flags, flags};

use super::*;
use crate::{
    decode::{
        KernelPath, Sections, Task,
        sample::{self, Open},
    },
    event::{ExitStatus, FileRef, Interpreter, PassedAddr, PathSource, Requested},
    linux::SockAddr,
};

fn enricher(connect_wait: Duration) -> Enricher {
    let host = HostInfo {
        name: "h".into(),
        boot_id: "0123456789".into(),
    };
    Enricher::new(
        &host,
        Cgroup2::find().expect("cgroup2 mounted"),
        connect_wait,
    )
}

fn activity(e: &Event) -> &Activity {
    e.activity().expect("an activity")
}

fn file(e: &Event) -> &FileRef {
    activity(e).resource.file().expect("a file target")
}

#[test]
fn a_successful_open_names_the_file_the_kernel_opened() {
    let mut o = Open::ok(1, "/tmp/link-to-shadow", 9);
    o.object = Some(sample::kpath("/etc/shadow", 9));
    let e = enricher(Duration::ZERO).enrich(o.event()).unwrap();
    let f = file(&e);
    assert_eq!(
        f.path(),
        Some(&b"/etc/shadow"[..]),
        "the kernel's path decides"
    );
    assert_eq!(f.path_source(), Some(PathSource::Kernel));
    assert_eq!(f.requested.as_deref(), Some(&b"/tmp/link-to-shadow"[..]));
    let id = f.object.as_ref().unwrap().id.unwrap();
    assert_eq!((id.dev_major, id.dev_minor, id.ino), (8, 1, 9));
    assert_eq!(id.mount_ns, Some(sample::MNT_NS));
    assert!(!activity(&e).resource.unreadable.contains(&Field::Path));
}

#[test]
fn a_failed_open_is_resolved_against_the_kernels_directory_lexically() {
    let o = Open::failed(1, "../b/./missing", "/home/a", 2);
    let e = enricher(Duration::ZERO).enrich(o.event()).unwrap();
    let f = file(&e);
    assert_eq!(f.path(), Some(&b"/home/b/missing"[..]));
    assert_eq!(f.path_source(), Some(PathSource::Resolved));
    assert_eq!(activity(&e).outcome, Outcome::Failure(2));
}

#[test]
fn an_unreadable_path_is_flagged_and_never_empty() {
    let mut o = Open::failed(1, "x", "/", 14);
    o.requested = None;
    o.flags = flags::PATH_FAULT;
    let e = enricher(Duration::ZERO).enrich(o.event()).unwrap();
    assert_eq!(file(&e).path(), None);
    let unreadable = &activity(&e).resource.unreadable;
    assert!(unreadable.contains(&Field::RequestedPath) && unreadable.contains(&Field::Path));
}

#[test]
fn a_path_read_at_exit_says_so() {
    let mut o = Open::ok(1, "/etc/hosts", 3);
    o.flags = flags::PATH_AT_EXIT;
    let e = enricher(Duration::ZERO).enrich(o.event()).unwrap();
    assert_eq!(file(&e).requested_from, Requested::AtExit);
}

#[test]
fn a_deleted_or_detached_file_says_so() {
    let mut o = Open::ok(1, "/proc/self/fd/5", 3);
    let mut k = sample::kpath("memfd:payload", 3);
    k.facts.flags |= file_flags::DETACHED | file_flags::DELETED;
    o.object = Some(k);
    let e = enricher(Duration::ZERO).enrich(o.event()).unwrap();
    let obj = file(&e).object.clone().unwrap();
    assert!(obj.deleted && obj.detached && !obj.cut);
    assert_eq!(
        obj.id.unwrap().mount_ns,
        None,
        "no namespace root reaches it"
    );
}

fn exec(tid: u32, flags: u32, sections: Sections, retval: i64) -> KernelEvent {
    KernelEvent {
        task: sample::task(200, tid, 5000),
        flags,
        retval,
        body: KernelBody::Exec {
            syscall: Syscall::Execve,
            dirfd: -100,
            at_flags: 0,
            sections,
        },
    }
}

#[test]
fn a_script_exec_names_the_script_and_its_interpreter() {
    let sections = Sections {
        requested: Some(b"./run.sh".to_vec()),
        kpath: Some(sample::kpath("/usr/bin/bash", 77)),
        base: Some(b"/work".to_vec()),
        extra: Some(b"/bin/bash\0".to_vec()),
        argv: Some(vec![b"/bin/bash".to_vec(), b"./run.sh".to_vec()]),
        ..Sections::default()
    };
    let ev = exec(200, flags::SCRIPT | flags::ARGV_FROM_IMAGE, sections, 0);
    let mut en = enricher(Duration::ZERO);
    let e = en.enrich(ev).unwrap();
    let r = &activity(&e).resource;
    assert_eq!(r.file().unwrap().path(), Some(&b"/work/run.sh"[..]));
    let Detail::Exec {
        interpreter: Some(Interpreter { shebang, loaded }),
        argv_from_image,
        new_exec_id,
        ..
    } = &r.detail
    else {
        panic!("no interpreter: {r:?}")
    };
    assert_eq!(shebang, b"/bin/bash");
    assert_eq!(loaded.as_ref().unwrap().path, b"/usr/bin/bash");
    assert!(*argv_from_image);
    assert!(new_exec_id.is_some());
    let paths: Vec<&[u8]> = r.paths().collect();
    assert_eq!(
        paths,
        [&b"/work/run.sh"[..], b"/bin/bash", b"/usr/bin/bash"]
    );

    // The new image runs the interpreter: later records of the process name it.
    let mut o = Open::ok(1, "/etc/hosts", 3).event();
    o.task = sample::task(200, 200, 6000);
    if let KernelBody::Open { sections, .. } = &mut o.body {
        sections.exe.facts = Some(sample::facts(77));
    }
    let later = en.enrich(o).unwrap();
    assert_eq!(
        activity(&later).process.exe.as_deref(),
        Some(&b"/usr/bin/bash"[..])
    );
}

#[test]
fn unreadable_arguments_are_flagged() {
    let sections = Sections {
        requested: Some(b"/bin/true".to_vec()),
        kpath: Some(sample::kpath("/usr/bin/true", 5)),
        argv: None,
        ..Sections::default()
    };
    let e = enricher(Duration::ZERO)
        .enrich(exec(1, flags::ARGV_FAULT, sections, 0))
        .unwrap();
    assert!(activity(&e).resource.unreadable.contains(&Field::Argv));
}

#[test]
fn the_acting_executable_comes_from_the_kernels_announcement() {
    let mut en = enricher(Duration::ZERO);
    let mut first = Open::ok(1, "/a", 3).event();
    if let KernelBody::Open { sections, .. } = &mut first.body {
        sections.exe = Exe {
            facts: Some(sample::facts(500)),
            path: Some(sample::kpath("/usr/bin/python3.12", 500)),
        };
    }
    let e = en.enrich(first).unwrap();
    assert_eq!(
        activity(&e).process.exe.as_deref(),
        Some(&b"/usr/bin/python3.12"[..])
    );
    // Later records carry only the identity.
    let e = en.enrich(Open::ok(2, "/b", 4).event()).unwrap();
    assert_eq!(
        activity(&e).process.exe.as_deref(),
        Some(&b"/usr/bin/python3.12"[..])
    );
}

/// What the kernel records when a process replaces `mm->exe_file` (`prctl(PR_SET_MM)`): the
/// file before (`kpath`), after (`new`), and the image's own executable (announced in `exe`).
fn set_exe(flags: u32, retval: i64) -> KernelEvent {
    KernelEvent {
        task: sample::task(100, 100, 5000),
        flags: if retval == 0 {
            flags | audit_common::event::flags::EXE_REPLACED
        } else {
            flags
        },
        retval,
        body: KernelBody::SetExe {
            map: true,
            fd: 3,
            new: Some(sample::kpath("/usr/sbin/agetty", 600)),
            changed: retval == 0,
            changes: 1,
            sections: Sections {
                kpath: Some(sample::kpath("/opt/agent/bin/agent", 500)),
                exe: Exe {
                    facts: Some(sample::facts(500)),
                    path: Some(sample::kpath("/opt/agent/bin/agent", 500)),
                },
                ..Sections::default()
            },
        },
    }
}

#[test]
fn a_replaced_executable_leaves_the_process_named_by_the_one_it_ran() {
    let mut en = enricher(Duration::ZERO);
    let e = en.enrich(set_exe(flags::EXE_PATH, 0)).unwrap();
    let a = activity(&e);
    assert_eq!(a.action, Action::SetExe);
    assert_eq!(a.syscall, "prctl");
    assert_eq!(
        a.resource.file().unwrap().path(),
        Some(&b"/usr/sbin/agetty"[..])
    );
    let Detail::SetExe(x) = &a.resource.detail else {
        panic!("{a:?}")
    };
    assert_eq!(x.previous.as_ref().unwrap().path, b"/opt/agent/bin/agent");
    assert_eq!(a.process.exe.as_deref(), Some(&b"/opt/agent/bin/agent"[..]));
    assert!(a.process.exe_replaced);
    assert_eq!(
        a.process.exe_reported.as_deref(),
        Some(&b"/usr/sbin/agetty"[..])
    );
    // Later records carry the identity of the file the exec loaded, flagged.
    let mut o = Open::ok(100, "/etc/hosts", 3).event();
    o.flags |= flags::EXE_REPLACED;
    let later = en.enrich(o).unwrap();
    let p = &activity(&later).process;
    assert_eq!(p.exe.as_deref(), Some(&b"/opt/agent/bin/agent"[..]));
    assert!(p.exe_replaced);
    assert_eq!(p.exe_reported.as_deref(), Some(&b"/usr/sbin/agetty"[..]));
    // A refused attempt (the file still mapped: EBUSY) replaces nothing.
    let mut en = enricher(Duration::ZERO);
    let failed = en.enrich(set_exe(0, -16)).unwrap();
    assert_eq!(activity(&failed).outcome, Outcome::Failure(16));
    assert!(!activity(&failed).process.exe_replaced);
    assert_eq!(activity(&failed).process.exe_reported, None);
}

#[test]
fn an_executable_never_announced_is_unreadable_not_guessed() {
    let e = enricher(Duration::ZERO)
        .enrich(Open::ok(1, "/a", 3).event())
        .unwrap();
    assert_eq!(activity(&e).process.exe, None);
    assert_eq!(activity(&e).resource.unreadable, [Field::Exe]);
}

fn connect(
    tid: u32,
    flags: u32,
    passed: SockAddr,
    kernel: Option<(IpAddr, u16)>,
    retval: i64,
) -> KernelEvent {
    KernelEvent {
        task: sample::task(300, tid, u64::from(tid) * 1000),
        flags,
        retval,
        body: KernelBody::Connect {
            syscall: Syscall::Connect,
            fd: 3,
            sk: 0xabc,
            passed: Some(passed),
            kernel,
            cookie: None,
            sections: Sections::default(),
        },
    }
}

#[test]
fn a_connect_names_the_kernels_destination_and_keeps_a_differing_passed_address() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let passed = SockAddr::Inet("127.0.0.1".parse().unwrap(), 80);
    let mut en = enricher(Duration::ZERO);
    let e = en
        .enrich(connect(
            1,
            flags::ADDR_FROM_KERNEL,
            passed.clone(),
            Some((ip("10.0.0.9"), 443)),
            0,
        ))
        .unwrap();
    let r = &activity(&e).resource;
    assert_eq!(r.target, Target::Inet(ip("10.0.0.9"), 443));
    assert!(matches!(
        &r.detail,
        Detail::Connect { passed: Some(PassedAddr::Inet(a, 80)), from_kernel: true, .. } if *a == ip("127.0.0.1")
    ));

    let e = en
        .enrich(connect(
            2,
            flags::ADDR_FROM_KERNEL,
            passed,
            Some((ip("127.0.0.1"), 80)),
            0,
        ))
        .unwrap();
    assert!(matches!(
        &activity(&e).resource.detail,
        Detail::Connect {
            passed: None,
            from_kernel: true,
            ..
        }
    ));
}

#[test]
fn a_unix_connect_names_the_peer_the_kernel_connected_to() {
    let mut ev = connect(1, 0, SockAddr::Unix(b"run/app.sock".to_vec()), None, 0);
    if let KernelBody::Connect { sections, .. } = &mut ev.body {
        sections.kpath = Some(sample::kpath("/srv/run/app.sock", 8));
    }
    let e = enricher(Duration::ZERO).enrich(ev).unwrap();
    let f = file(&e);
    assert_eq!(f.path(), Some(&b"/srv/run/app.sock"[..]));
    assert_eq!(f.requested.as_deref(), Some(&b"run/app.sock"[..]));

    let mut ev = connect(2, 0, SockAddr::Unix(b"\0bus".to_vec()), None, 0);
    if let KernelBody::Connect { sections, .. } = &mut ev.body {
        sections.extra = Some(b"\0bus".to_vec());
    }
    let e = enricher(Duration::ZERO).enrich(ev).unwrap();
    assert_eq!(file(&e).path(), Some(&b"\0bus"[..]));
    assert_eq!(file(&e).resolved, None, "an abstract name is not resolved");
    assert_eq!(file(&e).path_source(), Some(PathSource::Kernel));
    assert!(
        file(&e).object.as_ref().is_some_and(|o| o.id.is_none()),
        "an abstract socket has no file identity"
    );

    // The kernel could not read the peer's name: the name as passed, and a record that says so.
    let ev = connect(
        3,
        flags::KPATH_FAULT,
        SockAddr::Unix(b"\0bus".to_vec()),
        None,
        0,
    );
    let e = enricher(Duration::ZERO).enrich(ev).unwrap();
    assert_eq!(file(&e).path(), Some(&b"\0bus"[..]));
    assert_eq!(file(&e).path_source(), Some(PathSource::Requested));
    assert!(
        activity(&e)
            .resource
            .unreadable
            .contains(&Field::KernelPath)
    );
}

fn in_progress(tid: u32) -> KernelEvent {
    connect(
        tid,
        flags::CONNECT_ASYNC | flags::ADDR_FROM_KERNEL,
        SockAddr::Inet("10.1.1.1".parse().unwrap(), 22),
        Some(("10.1.1.1".parse().unwrap(), 22)),
        -115,
    )
}

fn outcome(tid: u32, new_state: u32, error: u32) -> KernelEvent {
    KernelEvent {
        task: Task {
            ktime_ns: u64::from(tid) * 1000,
            ..sample::task(300, tid, 0)
        },
        flags: 0,
        retval: 0,
        body: KernelBody::ConnectOutcome(ConnectOutcome {
            cookie: 0xabc,
            at_ns: u64::from(tid) * 1000 + 2_000_000,
            new_state,
            error,
        }),
    }
}

fn completion(e: &Event) -> Completion {
    match &activity(e).resource.detail {
        Detail::Connect {
            completion: Some(c),
            ..
        } => *c,
        d => panic!("no completion: {d:?}"),
    }
}

use crate::event::Completion;

#[test]
fn a_non_blocking_connect_is_held_until_the_kernel_reports_how_it_ended() {
    let mut en = enricher(Duration::from_secs(3600));
    assert!(en.enrich(in_progress(1)).is_none(), "held for its outcome");
    assert!(en.ready(false).is_empty());
    assert!(en.enrich(outcome(1, 7, 111)).is_none());
    let done = en.ready(false);
    assert_eq!(done.len(), 1);
    assert_eq!(activity(&done[0]).outcome, Outcome::Failure(111));
    let c = completion(&done[0]);
    assert_eq!(c.syscall_retval, -115);
    assert_eq!(c.after, Some(Duration::from_millis(2)));
}

#[test]
fn an_outcome_that_arrives_before_its_record_still_completes_it() {
    let mut en = enricher(Duration::from_secs(3600));
    assert!(en.enrich(outcome(4, 1, 0)).is_none());
    assert!(en.enrich(in_progress(4)).is_none());
    let done = en.ready(false);
    assert_eq!(activity(&done[0]).outcome, Outcome::Success(0));
}

#[test]
fn a_connect_without_an_outcome_is_released_in_progress_when_flushed() {
    let mut en = enricher(Duration::from_secs(3600));
    assert!(en.enrich(in_progress(9)).is_none());
    let done = en.ready(true);
    assert_eq!(activity(&done[0]).outcome, Outcome::InProgress);
    assert_eq!(completion(&done[0]).after, None);
}

#[test]
fn a_file_on_an_overlay_names_the_files_under_it_or_says_they_were_unreadable() {
    use crate::decode::Under;
    let stacked = |under: Option<Under>| {
        let mut o = Open::ok(1, "/merged/notes", 9);
        let k = o.object.as_mut().unwrap();
        k.facts.flags |= file_flags::STACKED;
        k.under = under.map(Box::new);
        enricher(Duration::ZERO).enrich(o.event()).unwrap()
    };
    let layer = |p: &str, ino: u64, flags: u16| KernelPath {
        facts: audit_common::event::FileFacts {
            flags: file_flags::VALID | file_flags::FS_ROOT | flags,
            ..sample::facts(ino)
        },
        ..sample::kpath(p, ino)
    };

    // Copied up: the upper file, and the lower one it came from; both are the file's identities.
    let e = stacked(Some(Under {
        real: layer("/upper/notes", 20, file_flags::UPPER | file_flags::ORIGIN),
        origin: Some(layer("/lower/notes", 21, 0)),
    }));
    let k = file(&e).object.as_ref().unwrap();
    let real = k.real().expect("the real file");
    assert!(real.upper);
    assert_eq!(real.origin.as_ref().unwrap().path, b"/lower/notes");
    let inos: Vec<u64> = activity(&e).resource.file_ids().map(|id| id.ino).collect();
    assert_eq!(inos, [9, 20, 21]);
    assert!(!activity(&e).resource.unreadable.contains(&Field::RealFile));

    // The kernel found an origin but had no room left to name it; or read nothing under the file.
    for under in [
        Some(Under {
            real: layer("/upper/notes", 20, file_flags::UPPER | file_flags::ORIGIN),
            origin: None,
        }),
        None,
    ] {
        let e = stacked(under);
        assert!(activity(&e).resource.unreadable.contains(&Field::RealFile));
    }
}

#[test]
fn kernel_paths_keep_their_flags() {
    let k = KernelPath {
        path: b"b/c".to_vec(),
        facts: audit_common::event::FileFacts {
            flags: file_flags::VALID | file_flags::CUT,
            ..sample::facts(1)
        },
        under: None,
    };
    let f = kernel_file(&k);
    assert!(f.cut && !f.deleted && !f.detached);
}

fn change(syscall: Syscall, flags: u32, sections: Sections) -> KernelEvent {
    KernelEvent {
        task: sample::task(400, 400, 9000),
        flags: 0,
        retval: 0,
        body: KernelBody::File {
            change: FileChange {
                syscall,
                dirfd: -100,
                dirfd2: -100,
                fd: -1,
                mode: 0o640,
                uid: 0,
                gid: u32::MAX,
                flags,
                length: 0,
            },
            sections,
        },
    }
}

#[test]
fn file_changes_become_their_actions() {
    use audit_common::event::Syscall as S;
    for (syscall, flags, action) in [
        (S::Unlinkat, 0, Action::Delete),
        (S::Unlinkat, 0x200, Action::Rmdir),
        (S::Renameat2, 2, Action::Rename),
        (S::Ftruncate, 0, Action::Truncate),
        (S::Fchmodat2, 0, Action::Chmod),
        (S::Lchown, 0, Action::Chown),
        (S::Symlinkat, 0, Action::Symlink),
    ] {
        assert_eq!(resource::change_action(syscall, flags), Some(action));
    }
    assert_eq!(resource::change_action(S::Openat, 0), None);
}

#[test]
fn a_rename_names_both_paths_resolved_against_the_kernels_directories() {
    let sections = Sections {
        requested: Some(b"old".to_vec()),
        base: Some(b"/work".to_vec()),
        extra: Some(b"../archive/new\0".to_vec()),
        base2: Some(b"/work/sub".to_vec()),
        ..Sections::default()
    };
    let e = enricher(Duration::ZERO)
        .enrich(change(Syscall::Renameat2, 2, sections))
        .unwrap();
    let a = activity(&e);
    assert_eq!(a.action, Action::Rename);
    assert_eq!(file(&e).path(), Some(&b"/work/old"[..]));
    let Detail::Change(c) = &a.resource.detail else {
        panic!("not a change")
    };
    let to = c.to.as_ref().unwrap();
    assert_eq!(to.path(), Some(&b"/work/archive/new"[..]));
    assert_eq!(to.requested.as_deref(), Some(&b"../archive/new"[..]));
    assert_eq!(c.flags, crate::event::ChangeFlags::Rename(2));
    let paths: Vec<&[u8]> = a.resource.paths().collect();
    assert_eq!(
        paths,
        [&b"/work/old"[..], b"/work/archive/new"],
        "policy sees both names"
    );
}

#[test]
fn a_chown_keeps_unchanged_ids_as_none_and_a_symlink_its_content() {
    let e = enricher(Duration::ZERO)
        .enrich(change(
            Syscall::Chown,
            0,
            Sections {
                requested: Some(b"/etc/passwd".to_vec()),
                base: Some(b"/".to_vec()),
                ..Sections::default()
            },
        ))
        .unwrap();
    let Detail::Change(c) = &activity(&e).resource.detail else {
        panic!("not a change")
    };
    assert_eq!(c.owner, Some((Some(0), None)));
    assert_eq!(c.mode, None, "chown sets no mode");

    let e = enricher(Duration::ZERO)
        .enrich(change(
            Syscall::Symlink,
            0,
            Sections {
                requested: Some(b"link".to_vec()),
                base: Some(b"/tmp".to_vec()),
                extra: Some(b"../etc/shadow\0".to_vec()),
                ..Sections::default()
            },
        ))
        .unwrap();
    let Detail::Change(c) = &activity(&e).resource.detail else {
        panic!("not a change")
    };
    assert_eq!(file(&e).path(), Some(&b"/tmp/link"[..]));
    assert_eq!(c.content.as_deref(), Some(&b"../etc/shadow"[..]));
    assert_eq!(c.to, None, "a symlink's content is not resolved");
}

#[test]
fn an_exit_is_recorded_with_its_status_and_the_image_that_ended() {
    let mut en = enricher(Duration::ZERO);
    let exit = |status: u32| KernelEvent {
        task: sample::task(100, 100, 5_000),
        flags: 0,
        retval: 0,
        body: crate::decode::Body::Exit { status },
    };
    let e = en.enrich(exit(1 << 8)).expect("an exit record");
    let a = activity(&e);
    assert_eq!(a.action, Action::Exit);
    assert_eq!(a.resource.target, Target::Process { pid: 100 });
    assert_eq!(a.resource.detail, Detail::Exit(Some(ExitStatus::Code(1))));
    assert_eq!(a.outcome, Outcome::Failure(1));
    assert!(a.process.exec_id.is_some(), "names the image that ended");
    let e = en.enrich(exit(0x80 | 11)).unwrap();
    let a = activity(&e);
    assert_eq!(
        a.resource.detail,
        Detail::Exit(Some(ExitStatus::Signal {
            sig: 11,
            core_dumped: true
        }))
    );
    assert_eq!(a.outcome, Outcome::Failure(139));
    assert_eq!(
        activity(&en.enrich(exit(0)).unwrap()).outcome,
        Outcome::Success(0)
    );
}
