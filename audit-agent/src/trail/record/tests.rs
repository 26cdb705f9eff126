//! The native record: what is written reads back as the same event, and the wire form is the
//! documented one.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Duration};

use super::*;
use crate::{
    event::{
        Change, ChangeFlags, Completion, ExitStatus, Field, FileCopy, FileId, FileRef, Ia32Call,
        Interpreter, KernelFile, MapExec, PassedAddr, RealFile, RealRoot, Requested, Resource,
        SetExe, Stacked, Target, UNATTRIBUTED,
    },
    time::from_nanos,
};

fn activity(action: Action, syscall: &'static str, target: Target, detail: Detail) -> Event {
    // A network action's IP destination always has a destination (names, connection).
    let destination =
        (action.is_network() && matches!(target, Target::Inet(..))).then(Box::default);
    Event {
        time: from_nanos(1_764_186_121_123_456_789),
        host: Arc::new(Host {
            name: "node-7".into(),
            boot_id: "b473886d".into(),
        }),
        seq: 42,
        stream: Arc::from("9f3a2b1c4d5e6f70"),
        body: Body::Activity(Box::new(Activity {
            action,
            syscall,
            process: Process {
                pid: 4242,
                tid: 4243,
                ppid: 1,
                comm: b"py\xffthon".to_vec(),
                exe: Some(Arc::from(&b"/usr/bin/python3"[..])),
                exe_replaced: false,
                exe_reported: None,
                exec_id: Some(Arc::from("b4-4242-1")),
                parent_exec_id: None,
                ancestors: Arc::from([]),
            },
            subject: Subject {
                uid: 1001,
                gid: 1001,
                cgroup_id: 8812,
                cgroup: Some(Arc::from("/agents/support")),
                container_id: None,
                k8s: None,
            },
            agent: Some(Arc::new(AgentIdentity {
                id: "support-bot".into(),
                name: Some("Support bot".into()),
                workflow: None,
                owner: None,
                matched_by: Some(MatchedBy::Cgroup),
            })),
            resource: Resource {
                target,
                detail,
                truncated: vec![],
                unreadable: vec![],
                uring: None,
                ia32: None,
                destination,
            },
            outcome: Outcome::Failure(13),
            protected: vec![Arc::from("secrets")],
            protected_by_inode: vec![],
            verdict: Some(Verdict {
                decision: Decision::Deny,
                rule: Some(Arc::from("no-secrets")),
                by_inode: false,
                version: Arc::from("sha256:39cdf0784a1d9dd7"),
            }),
        })),
    }
}

/// A file the process named by `requested`, resolved lexically (no object: a failure).
fn file(requested: &[u8], resolved: Option<&[u8]>) -> Target {
    Target::File(FileRef {
        requested: Some(requested.to_vec()),
        requested_from: Requested::AtEntry,
        resolved: resolved.map(<[u8]>::to_vec),
        object: None,
    })
}

fn kernel_file(path: &[u8]) -> KernelFile {
    KernelFile {
        path: path.to_vec(),
        id: Some(FileId {
            dev_major: 259,
            dev_minor: 3,
            ino: 1_234_567,
            mount_id: 29,
            mount_ns: Some(4_026_531_841),
            mode: 0o100_640,
        }),
        deleted: false,
        detached: false,
        cut: false,
        stacked: None,
    }
}

impl Target {
    /// The file, on an overlay: `real` is the file under it (`None`: unreadable).
    fn with_stacked(mut self, real: Option<RealFile>) -> Self {
        if let Target::File(FileRef {
            object: Some(k), ..
        }) = &mut self
        {
            k.stacked = Some(match real {
                Some(r) => Stacked::Real(Box::new(r)),
                None => Stacked::Unreadable,
            });
        }
        self
    }
}

/// A file the kernel opened at `path`, requested as `requested`.
fn opened(requested: Option<&[u8]>, path: &[u8], from: Requested) -> Target {
    Target::File(FileRef {
        requested: requested.map(<[u8]>::to_vec),
        requested_from: from,
        resolved: None,
        object: Some(kernel_file(path)),
    })
}

fn unix(requested: &[u8], peer: Option<KernelFile>) -> Target {
    Target::Unix(FileRef {
        requested: Some(requested.to_vec()),
        requested_from: Requested::AtEntry,
        resolved: None,
        object: peer,
    })
}

fn connect(passed: Option<PassedAddr>, from_kernel: bool) -> Detail {
    Detail::Connect {
        passed,
        from_kernel,
        completion: None,
    }
}

fn open_detail() -> Detail {
    Detail::Open {
        flags: 0o2000000,
        mode: 0,
        dirfd: None,
        resolve: 0,
    }
}

fn line(e: &Event) -> String {
    let mut out = Vec::new();
    write(e, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn round_trip(e: &Event) {
    let l = line(e);
    assert_eq!(&read(l.as_bytes()).unwrap(), e, "{l}");
}

/// Every kind of open target: lexical paths, kernel objects reached by a link, requested at
/// exit, unreadable, a deleted memfd through /proc.
fn opens() -> Vec<Event> {
    let open = Detail::Open {
        flags: 0o1 | 0o100 | 0o2000000,
        mode: 0o640,
        dirfd: Some(3),
        resolve: 0x08 | 0x10,
    };
    [
        file(b"rel/\xff", Some(b"/tmp/rel/\xff")),
        file(b"rel", None),
        opened(Some(b"/tmp/link"), b"/etc/shadow", Requested::AtEntry),
        opened(Some(b"/etc/shadow"), b"/etc/shadow", Requested::AtExit),
        opened(None, b"/etc/shadow", Requested::AtEntry),
        Target::File(FileRef {
            requested: Some(b"/proc/self/fd/3".to_vec()),
            requested_from: Requested::AtEntry,
            resolved: None,
            object: Some(KernelFile {
                path: b"memfd:x".to_vec(),
                deleted: true,
                detached: true,
                cut: false,
                ..kernel_file(b"")
            }),
        }),
        opened(None, b"/merged/secret", Requested::AtEntry).with_stacked(Some(RealFile {
            path: b"/srv/lower/secr\xffet".to_vec(),
            root: RealRoot::Host,
            id: FileId {
                mount_id: 0,
                mount_ns: None,
                ..kernel_file(b"").id.unwrap()
            },
            upper: false,
            deleted: false,
            cut: false,
            origin: None,
        })),
        opened(None, b"/merged/new", Requested::AtEntry).with_stacked(Some(RealFile {
            path: b"/layers/upper/new".to_vec(),
            root: RealRoot::Filesystem,
            id: FileId {
                ino: 77,
                mount_id: 0,
                mount_ns: None,
                ..kernel_file(b"").id.unwrap()
            },
            upper: true,
            deleted: true,
            cut: false,
            origin: Some(Box::new(RealFile {
                path: b"/layers/lower/new".to_vec(),
                root: RealRoot::Host,
                id: FileId {
                    ino: 78,
                    mount_id: 0,
                    mount_ns: None,
                    ..kernel_file(b"").id.unwrap()
                },
                upper: false,
                deleted: false,
                cut: true,
                origin: None,
            })),
        })),
        opened(None, b"/merged/x", Requested::AtEntry).with_stacked(None),
    ]
    .into_iter()
    .map(|target| {
        let mut e = activity(Action::Open, "openat", target, open.clone());
        if let Some(a) = e.activity_mut()
            && a.resource.file().unwrap().requested.is_none()
        {
            a.resource.unreadable.push(Field::RequestedPath);
        }
        e
    })
    .collect()
}

#[test]
fn every_kind_of_open_reads_back_as_written() {
    opens().iter().for_each(round_trip);
}

/// Execs: argv from the image, argv unreadable, a script with its interpreter.
fn execs() -> Vec<Event> {
    let exec = |argv: Option<Vec<Vec<u8>>>, interpreter: Option<Interpreter>| Detail::Exec {
        argv_from_image: argv.is_some(),
        argv,
        dirfd: None,
        new_exec_id: Some(Arc::from("b4-4242-9")),
        interpreter,
    };
    let argv = vec![
        b"cat".to_vec(),
        b"a\\b".to_vec(),
        b"\x1b[31m".to_vec(),
        vec![],
    ];
    let from_image = activity(
        Action::Exec,
        "execve",
        opened(Some(b"/bin/cat"), b"/usr/bin/cat", Requested::KernelCopy),
        exec(Some(argv), None),
    );
    let mut unreadable = activity(
        Action::Exec,
        "execve",
        opened(Some(b"/bin/cat"), b"/usr/bin/cat", Requested::AtEntry),
        exec(None, None),
    );
    unreadable.activity_mut().unwrap().resource.unreadable = vec![Field::Argv];
    let script = activity(
        Action::Exec,
        "execve",
        file(b"./run.sh", Some(b"/work/run.sh")),
        exec(
            Some(vec![b"/bin/sh".to_vec(), b"./run.sh".to_vec()]),
            Some(Interpreter {
                shebang: b"/bin/sh".to_vec(),
                loaded: Some(kernel_file(b"/usr/bin/dash")),
            }),
        ),
    );
    vec![from_image, unreadable, script]
}

#[test]
fn every_kind_of_exec_reads_back_as_written() {
    execs().iter().for_each(round_trip);
}

/// Connects: IPv4 and IPv6 with and without what was passed, unix paths (relative, abstract),
/// other families.
fn connects() -> Vec<Event> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    [
        (Target::Inet(ip("10.0.0.1"), 5432), connect(None, true)),
        (
            Target::Inet(ip("10.0.0.1"), 5432),
            connect(Some(PassedAddr::Inet(ip("127.0.0.1"), 80)), true),
        ),
        (
            Target::Inet(ip("::ffff:10.0.0.1"), 443),
            connect(None, false),
        ),
        (
            Target::Inet(ip("2001:db8::1"), 443),
            connect(Some(PassedAddr::Inet(ip("2001:db8::2"), 443)), true),
        ),
        (unix(b"/run/a.sock", None), connect(None, false)),
        (
            unix(b"run/a.sock", Some(kernel_file(b"/srv/run/a.sock"))),
            connect(None, false),
        ),
        (
            unix(
                b"\0abs\0tract",
                Some(KernelFile {
                    path: b"\0abs\0tract".to_vec(),
                    ..KernelFile::default()
                }),
            ),
            connect(None, false),
        ),
        (Target::OtherAddress { family: 0 }, connect(None, false)),
        (Target::OtherAddress { family: 17 }, connect(None, false)),
    ]
    .into_iter()
    .map(|(target, detail)| activity(Action::Connect, "connect", target, detail))
    .collect()
}

#[test]
fn every_kind_of_connect_reads_back_as_written() {
    connects().iter().for_each(round_trip);
}

/// Executable mappings: an mmap by the loader, an mprotect of a protected file, an mmap whose
/// mapping could not be looked up. Named by the kernel's mapping only: no path was passed.
fn map_execs() -> Vec<Event> {
    let cat = || opened(None, b"/usr/bin/cat", Requested::AtEntry);
    let unread = Target::File(FileRef::default());
    [
        ("mmap", Some((0x02 | 0x10 | 0x800, 3)), true, cat()),
        ("mprotect", None, false, cat()),
        ("mmap", Some((0x02, 4)), false, unread),
    ]
    .into_iter()
    .map(|(syscall, mmap, loader, target)| {
        let detail = Detail::MapExec(MapExec {
            prot: 0x1 | 0x4,
            mmap,
            start: 0x7f00_dead_0000,
            len: 20480,
            loader,
        });
        let mut e = activity(Action::MapExec, syscall, target, detail);
        let a = e.activity_mut().unwrap();
        if a.resource.file().unwrap().object.is_none() {
            a.resource.unreadable.push(Field::KernelPath);
            (a.protected, a.verdict) = (vec![], None);
        }
        e
    })
    .collect()
}

#[test]
fn executable_mappings_read_back_as_written() {
    for e in map_execs() {
        round_trip(&e);
        let l = line(&e);
        assert!(l.contains(r#""prot":["PROT_READ","PROT_EXEC"]"#), "{l}");
        assert!(l.contains(r#""addr":"0x7f00dead0000""#), "{l}");
    }
}

/// One change of each kind, with its flags.
fn changes() -> Vec<Event> {
    let to = FileRef {
        requested: Some(b"b".to_vec()),
        requested_from: Requested::AtEntry,
        resolved: Some(b"/w/b".to_vec()),
        object: None,
    };
    [
        (
            Action::Rename,
            "renameat2",
            Change {
                to: Some(to.clone()),
                flags: ChangeFlags::Rename(2),
                ..Change::default()
            },
        ),
        (
            Action::Link,
            "linkat",
            Change {
                to: Some(to),
                flags: ChangeFlags::At(0x400),
                dirfd: Some(5),
                ..Change::default()
            },
        ),
        (
            Action::Chown,
            "fchownat",
            Change {
                owner: Some((Some(0), None)),
                flags: ChangeFlags::At(0x100),
                ..Change::default()
            },
        ),
        (
            Action::Symlink,
            "symlink",
            Change {
                content: Some(b"../x".to_vec()),
                ..Change::default()
            },
        ),
        (
            Action::Truncate,
            "truncate",
            Change {
                length: Some(7),
                ..Change::default()
            },
        ),
        (
            Action::Mkdir,
            "mkdir",
            Change {
                mode: Some(0o750),
                ..Change::default()
            },
        ),
        (Action::Delete, "unlink", Change::default()),
        (Action::Rmdir, "rmdir", Change::default()),
    ]
    .into_iter()
    .map(|(action, syscall, change)| {
        activity(
            action,
            syscall,
            file(b"a", Some(b"/w/a")),
            Detail::Change(change),
        )
    })
    .collect()
}

#[test]
fn file_changes_read_back_as_written() {
    changes().iter().for_each(round_trip);
}

/// A non-blocking connect refused after the call returned EINPROGRESS.
fn refused_later() -> Event {
    let mut e = activity(
        Action::Connect,
        "connect",
        Target::Inet("10.0.0.1".parse().unwrap(), 22),
        Detail::Connect {
            passed: None,
            from_kernel: true,
            completion: Some(Completion {
                syscall_retval: -115,
                after: Some(Duration::from_micros(2_500)),
                waited: Duration::from_micros(3_001),
            }),
        },
    );
    e.activity_mut().unwrap().outcome = Outcome::Failure(111);
    e
}

#[test]
fn a_non_blocking_connect_reads_back_with_its_completion() {
    let e = refused_later();
    round_trip(&e);
    let v: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
    assert_eq!(v["result"]["completion"]["after_ms"], 2.5);
    assert_eq!(v["result"]["completion"]["syscall_retval"], -115);
}

/// An open by a Kubernetes pod's container, protected by inode.
fn in_a_pod() -> Event {
    let mut e = activity(
        Action::Open,
        "openat",
        opened(Some(b"/tmp/h"), b"/tmp/h", Requested::AtEntry),
        open_detail(),
    );
    if let Some(a) = e.activity_mut() {
        a.subject.container_id = Some("ab".repeat(32));
        a.subject.k8s = Some(Arc::new(K8sPod {
            namespace: "support".into(),
            pod: "bot-0".into(),
            pod_uid: "3f2a".into(),
            container: Some("agent".into()),
            service_account: "bot".into(),
            labels: BTreeMap::from([("app".into(), "bot".into())]),
        }));
        a.protected_by_inode = vec![Arc::from("secrets")];
        a.verdict.as_mut().unwrap().by_inode = true;
    }
    e
}

#[test]
fn pods_and_inode_matches_read_back() {
    round_trip(&in_a_pod());
}

fn gap() -> Event {
    let mut g = activity(Action::Open, "openat", file(b"/x", None), open_detail());
    g.body = Body::Gap(Gap {
        lost: 3,
        reason: GapReason::SpoolFull,
        by_action: BTreeMap::from([("file.open".into(), 3)]),
        from: from_nanos(1),
        to: from_nanos(2),
        seqs: Some((7, 9)),
        by_process: vec![(4242, 3)],
    });
    g
}

#[test]
fn gaps_read_back_with_their_window_and_seqs() {
    round_trip(&gap());
}

#[test]
fn the_wire_form_is_the_documented_one() {
    let e = activity(
        Action::Open,
        "openat",
        opened(Some(b"/etc/shadow"), b"/etc/shadow", Requested::AtEntry),
        open_detail(),
    );
    assert_eq!(
        line(&e),
        concat!(
            r#"{"schema":"audit-agent/v1","id":"9f3a2b1c4d5e6f70-42","seq":42,"time":"2025-11-26T19:42:01.123456789Z","#,
            r#""host":{"name":"node-7","boot_id":"b473886d"},"action":"file.open","syscall":"openat","#,
            r#""agent":{"id":"support-bot","name":"Support bot","workflow":null,"owner":null,"matched_by":"cgroup"},"#,
            r#""process":{"pid":4242,"tid":4243,"ppid":1,"comm":"py\\xffthon","exe":"/usr/bin/python3","exec_id":"b4-4242-1","parent_exec_id":null},"#,
            r#""subject":{"uid":1001,"gid":1001,"cgroup_id":8812,"cgroup":"/agents/support"},"#,
            r#""resource":{"path":"/etc/shadow","path_source":"kernel","#,
            r#""file":{"dev":"259:3","ino":1234567,"mount_id":29,"mount_ns":4026531841,"type":"file","mode":"0640"},"#,
            r#""flags":["O_RDONLY","O_CLOEXEC"]},"#,
            r#""result":{"outcome":"failure","retval":-13,"errno":"EACCES"},"#,
            r#""protected":["secrets"],"policy":{"decision":"deny","rule":"no-secrets","version":"sha256:39cdf0784a1d9dd7"}}"#
        )
    );
}

#[test]
fn unattributed_activity_has_an_agent_with_null_fields() {
    let mut e = activity(Action::Open, "open", file(b"/x", None), open_detail());
    if let Some(a) = e.activity_mut() {
        a.agent = Some(Arc::new(AgentIdentity::unattributed()));
    }
    let v: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
    assert_eq!(v["agent"]["id"], UNATTRIBUTED);
    for field in ["name", "workflow", "owner", "matched_by"] {
        assert!(
            v["agent"]
                .get(field)
                .is_some_and(serde_json::Value::is_null),
            "agent.{field}"
        );
    }
}

#[test]
fn malformed_records_name_the_field() {
    let bad = line(&activity(
        Action::Open,
        "openat",
        file(b"/x", None),
        open_detail(),
    ))
    .replace("\"failure\"", "\"maybe\"");
    assert_eq!(
        read(bad.as_bytes()).unwrap_err().to_string(),
        "field `result.outcome` has an invalid value"
    );
    assert!(read(b"{}").is_err());
}

/// 32-bit calls: an open, one with no record of its own, one with a path.
fn ia32_calls() -> Vec<Event> {
    let call = Ia32Call {
        nr: 5,
        args: Some([0x4000_0000, 0, 0, 7, 5, 0xffff_fff0]),
    };
    let mut open = activity(
        Action::Open,
        "ia32:open",
        opened(Some(b"/etc/hostname"), b"/etc/hostname", Requested::AtEntry),
        open_detail(),
    );
    let mut other = activity(
        Action::CompatSyscall,
        "ia32:getpid",
        Target::Call,
        Detail::Compat,
    );
    let mut with_path = activity(
        Action::CompatSyscall,
        "ia32:chdir",
        file(b"d", Some(b"/w/d")),
        Detail::Compat,
    );
    for (e, nr) in [(&mut open, 5), (&mut other, 20), (&mut with_path, 12)] {
        if let Some(a) = e.activity_mut() {
            a.resource.ia32 = Some(Ia32Call { nr, ..call });
        }
    }
    vec![open, other, with_path]
}

#[test]
fn thirty_two_bit_calls_read_back_as_written() {
    let calls = ia32_calls();
    calls.iter().for_each(round_trip);
    assert!(line(&calls[1]).contains(r#""syscall":"ia32:getpid""#));
}

/// A file only the kernel names (behind an fd, an executable): no path was passed.
fn kernel_only(path: &[u8]) -> Target {
    Target::File(FileRef {
        object: Some(kernel_file(path)),
        ..FileRef::default()
    })
}

/// Held, received and copied files (a copy to a pipe, and one whose destination is unread).
fn without_an_open() -> Vec<Event> {
    let held = activity(
        Action::Held,
        "execve",
        kernel_only(b"/srv/vault/secret"),
        Detail::Fd {
            fd: 7,
            socket_fd: None,
        },
    );
    let received = activity(
        Action::Receive,
        "recvmsg",
        kernel_only(b"/srv/vault/secret"),
        Detail::Fd {
            fd: 4,
            socket_fd: Some(8),
        },
    );
    let copy = |flags, to: Option<KernelFile>| {
        activity(
            Action::Copy,
            "splice",
            kernel_only(b"/srv/vault/secret"),
            Detail::Copy(Box::new(FileCopy {
                to,
                in_fd: 7,
                out_fd: 3,
                len: 65536,
                flags,
            })),
        )
    };
    vec![
        held,
        received,
        copy(0, Some(kernel_file(b"pipe:[7228327]"))),
        copy(0x5, None),
        copy(0x5, Some(kernel_file(b"/tmp/out"))),
    ]
}

#[test]
fn files_obtained_without_an_open_read_back_as_written() {
    let records = without_an_open();
    records.iter().for_each(round_trip);
    let l = line(&records[1]);
    assert!(
        l.contains(r#""path":"/srv/vault/secret","path_source":"kernel","#),
        "{l}"
    );
    assert!(l.contains(r#""fd":4,"socket_fd":8"#), "{l}");
    let l = line(&records[4]);
    assert!(
        l.contains(r#""flags":["SPLICE_F_MOVE","SPLICE_F_MORE"],"length":65536,"fd":7"#),
        "{l}"
    );
    assert!(
        l.contains(r#""to_fd":3,"to_path":"/tmp/out","to_file":{"#),
        "{l}"
    );
}

/// Executables replaced: while watched (with the file before), and unknown before.
fn replaced_executables() -> Vec<Event> {
    let set = |before_watch, previous: Option<KernelFile>| {
        activity(
            Action::SetExe,
            "prctl",
            kernel_only(b"/usr/sbin/agetty"),
            Detail::SetExe(SetExe {
                previous,
                fd: 3,
                map: before_watch,
                replacements: 2,
                before_watch,
            }),
        )
    };
    let mut changed = set(true, Some(kernel_file(b"/tmp/agent")));
    if let Some(a) = changed.activity_mut() {
        a.process.exe_replaced = true;
        a.process.exe_reported = Some(Arc::from(&b"/usr/sbin/agetty"[..]));
    }
    let mut unknown = set(false, None);
    if let Some(a) = unknown.activity_mut() {
        a.process.exe_replaced = true;
    }
    vec![changed, unknown, set(false, None)]
}

#[test]
fn a_replaced_executable_reads_back_as_written() {
    let records = replaced_executables();
    records.iter().for_each(round_trip);
    let l = line(&records[0]);
    assert!(
        l.contains(
            r#""exe":"/usr/bin/python3","exe_replaced":true,"exe_reported":"/usr/sbin/agetty","#
        ),
        "{l}"
    );
    assert!(
        l.contains(r#""fd":3,"prctl":"PR_SET_MM_MAP","previous_path":"/tmp/agent","#),
        "{l}"
    );
    assert!(l.contains(r#""replacements":2,"before_watch":true"#), "{l}");
    // Only a replaced executable is said to be one.
    assert!(!line(&records[2]).contains("exe_replaced"));
}

/// The actor members copied from the last record are exactly what writing them anew gives, and
/// any change to the agent, the process or the subject is written anew.
#[test]
fn copied_actor_members_are_the_ones_written_anew() {
    let base = activity(
        Action::Open,
        "openat",
        opened(Some(b"a"), b"/srv/a", Requested::AtEntry),
        open_detail(),
    );
    let changed = |f: &dyn Fn(&mut Activity)| {
        let mut e = base.clone();
        if let Body::Activity(a) = &mut e.body {
            f(a);
        }
        e
    };
    let sequence = [
        base.clone(),
        base.clone(),
        changed(&|a| a.process.tid = 4244),
        changed(&|a| a.process.tid = 4244),
        changed(&|a| a.process.comm = b"other".to_vec()),
        changed(&|a| a.process.exe = None),
        changed(&|a| a.subject.cgroup = Some(Arc::from("/agents/other"))),
        changed(&|a| a.subject.uid = 0),
        changed(&|a| a.agent = None),
        changed(&|a| {
            a.agent = Some(Arc::new(AgentIdentity {
                id: "coder".into(),
                name: None,
                workflow: None,
                owner: None,
                matched_by: Some(MatchedBy::Uid),
            }))
        }),
        base.clone(),
    ];
    let mut cache = ActorCache::default();
    for e in &sequence {
        let mut copied = Vec::new();
        write_with(e, &mut copied, &mut cache).unwrap();
        assert_eq!(String::from_utf8(copied).unwrap(), line(e));
    }
}

/// A destination named by DNS (with its answer's provenance, past its TTL), by the TLS server
/// name, with a conflict, a connection id and what the connection hides.
fn named(ip: &str) -> Box<crate::event::Destination> {
    use crate::event::{DnsOrigin, HostName, HostSource, Opaque};
    Box::new(crate::event::Destination {
        connection: Some(77),
        hosts: vec![
            HostName {
                name: "api.stripe.com".into(),
                source: HostSource::TlsSni,
                dns: None,
                expired: false,
            },
            HostName {
                name: "edge.example.net".into(),
                source: HostSource::Dns,
                dns: Some(Arc::new(DnsOrigin {
                    query: "api.example.com".into(),
                    resolver: format!("{ip}:53").parse().unwrap(),
                    resolver_pid: Some(99),
                    answered: from_nanos(1_764_186_120_000_000_000),
                    ttl: 60,
                })),
                expired: true,
            },
        ],
        other_hosts: vec![HostName {
            name: "other.example.com".into(),
            source: HostSource::Dns,
            dns: None,
            expired: false,
        }],
        conflict: true,
        opaque: Some(Opaque::EncryptedClientHello),
    })
}

/// A DNS lookup, a TLS hello, an HTTP exchange and a connect, each to a named destination.
fn network() -> Vec<Event> {
    use crate::{
        event::{DnsLookup, DnsResponse, Transport, WireIssue},
        wire::{dns, http, tls},
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let lookup = DnsLookup {
        transport: Transport::Tcp,
        id: 4660,
        question: Some(dns::Question {
            name: "api.example.com".into(),
            qtype: dns::TYPE_AAAA,
            qclass: 1,
        }),
        response: Some(DnsResponse {
            rcode: 3,
            truncated_flag: true,
            answers: vec![
                dns::Record {
                    name: "api.example.com".into(),
                    rtype: dns::TYPE_CNAME,
                    ttl: 300,
                    data: dns::RData::Cname("edge.example.net".into()),
                },
                dns::Record {
                    name: "edge.example.net".into(),
                    rtype: dns::TYPE_AAAA,
                    ttl: 60,
                    data: dns::RData::Aaaa("2001:db8::7".parse().unwrap()),
                },
                dns::Record {
                    name: "edge.example.net".into(),
                    rtype: 16,
                    ttl: 5,
                    data: dns::RData::Other { len: 12 },
                },
            ],
            after: Duration::from_micros(2500),
            resolver_pid: Some(99),
        }),
        unsolicited: true,
        issues: vec![WireIssue::CompressionLoop],
    };
    let hello = tls::Hello {
        sni: Some("api.stripe.com".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        versions: vec![0x0304, 0x0303],
        ech: true,
        quic: true,
        issues: vec![WireIssue::Truncated],
        len: 0,
    };
    let request = http::Request {
        method: "POST".into(),
        target: b"/v1/charges?\xff".to_vec(),
        version: Some(1),
        host: Some("api.stripe.com".into()),
        port: Some(8080),
        issues: vec![WireIssue::TooLong],
        len: 0,
    };
    [
        (
            Action::Dns,
            Target::Inet(ip("10.0.0.53"), 53),
            Detail::Dns(Box::new(lookup)),
            Outcome::Failure(3),
        ),
        (
            Action::Tls,
            Target::Inet(ip("2001:db8::7"), 443),
            Detail::Tls(Box::new(hello)),
            Outcome::Success(0),
        ),
        (
            Action::Http,
            Target::Inet(ip("192.0.2.7"), 8080),
            Detail::Http(Box::new(crate::event::HttpExchange {
                request,
                response: Some(http::Response {
                    status: 403,
                    version: Some(1),
                    issues: vec![],
                }),
            })),
            Outcome::Failure(403),
        ),
        (
            Action::Connect,
            Target::Inet(ip("192.0.2.7"), 443),
            connect(None, true),
            Outcome::Success(0),
        ),
    ]
    .into_iter()
    .map(|(action, target, detail, outcome)| {
        let mut e = activity(action, crate::linux::PACKET_SYSCALL, target, detail);
        if let Some(a) = e.activity_mut() {
            a.resource.destination = Some(named("10.0.0.53"));
            a.outcome = outcome;
        }
        e
    })
    .collect()
}

#[test]
fn network_records_read_back_with_their_names_and_protocol_fields() {
    network().iter().for_each(round_trip);
}

/// A lookup answered NXDOMAIN, without its question.
fn dns_failure() -> Event {
    use crate::event::{DnsLookup, DnsResponse, Transport};
    let lookup = DnsLookup {
        transport: Transport::Udp,
        id: 1,
        question: None,
        response: Some(DnsResponse {
            rcode: 3,
            truncated_flag: false,
            answers: vec![],
            after: Duration::ZERO,
            resolver_pid: None,
        }),
        unsolicited: false,
        issues: vec![],
    };
    let mut e = activity(
        Action::Dns,
        "packet",
        Target::Inet("10.0.0.53".parse().unwrap(), 53),
        Detail::Dns(Box::new(lookup)),
    );
    if let Some(a) = e.activity_mut() {
        a.outcome = Outcome::Failure(3);
    }
    e
}

#[test]
fn a_dns_failure_is_a_response_code_never_an_errno() {
    let l = line(&dns_failure());
    assert!(
        l.contains(r#""result":{"outcome":"failure","retval":-3,"errno":null}"#),
        "{l}"
    );
    assert!(l.contains(r#""rcode":"NXDOMAIN""#), "{l}");
}

/// Exits: codes 0 and 127, killed, dumped core, status unread.
fn exits() -> Vec<Event> {
    [
        Some(ExitStatus::Code(0)),
        Some(ExitStatus::Code(127)),
        Some(ExitStatus::Signal {
            sig: 9,
            core_dumped: false,
        }),
        Some(ExitStatus::Signal {
            sig: 11,
            core_dumped: true,
        }),
        None,
    ]
    .into_iter()
    .map(|status| {
        let mut e = activity(
            Action::Exit,
            "exit",
            Target::Process { pid: 4242 },
            Detail::Exit(status),
        );
        let a = e.activity_mut().unwrap();
        a.outcome = ExitStatus::outcome(status);
        if status.is_none() {
            a.resource.unreadable.push(Field::ExitStatus);
        }
        e
    })
    .collect()
}

#[test]
fn an_exit_reads_back_with_its_status_and_names_no_errno() {
    for e in exits() {
        round_trip(&e);
        let l = line(&e);
        assert!(
            !l.contains("retval") && l.contains(r#""errno":null"#),
            "{l}"
        );
    }
    let mut e = activity(
        Action::Exit,
        "exit",
        Target::Process { pid: 4242 },
        Detail::Exit(Some(ExitStatus::Code(2))),
    );
    e.activity_mut().unwrap().outcome = ExitStatus::outcome(Some(ExitStatus::Code(2)));
    assert!(
        line(&e).contains(
            r#""resource":{"pid":4242,"exit_code":2},"result":{"outcome":"failure","errno":null}"#
        ),
        "{}",
        line(&e)
    );
}

/// What else a process does: moves a process to another cgroup, signals, reaches into another
/// process, sets up an io_uring, sends to an address, opens through io_uring.
fn process_actions() -> Vec<Event> {
    use crate::event::{Access, AccessKind, UringRef};
    let access = |kind, file| {
        Detail::Access(Access {
            kind,
            pid_from_kernel: true,
            caller_namespaced: false,
            file,
            target_exec_id: Some(Arc::from("b4-77-1")),
            target_agent: Some(Arc::from("coder")),
        })
    };
    let mut uring_open = activity(
        Action::Open,
        "io_uring",
        opened(Some(b"/etc/shadow"), b"/etc/shadow", Requested::AtEntry),
        open_detail(),
    );
    uring_open.activity_mut().unwrap().resource.uring = Some(UringRef {
        op: "openat",
        user_data: 0xdead_beef,
    });
    vec![
        activity(
            Action::CgroupMove,
            "unknown",
            Target::Cgroup {
                id: 9001,
                path: b"/elsewhere".to_vec(),
            },
            Detail::Move { pid: 77 },
        ),
        activity(
            Action::Signal,
            "unknown",
            Target::Process { pid: 77 },
            Detail::Signal {
                sig: 9,
                delivery: 0,
                by_kernel: false,
            },
        ),
        activity(
            Action::Access,
            "ptrace",
            Target::Process { pid: 77 },
            access(
                AccessKind::Ptrace {
                    request: 16,
                    addr: 0,
                },
                None,
            ),
        ),
        activity(
            Action::Access,
            "pidfd_getfd",
            Target::Process { pid: 77 },
            access(AccessKind::GetFd { fd: 3 }, Some(kernel_file(b"/srv/db"))),
        ),
        activity(
            Action::UringSetup,
            "io_uring",
            Target::Ring { fd: 5 },
            Detail::Ring {
                sq_entries: 8,
                cq_entries: 16,
                flags: 0,
            },
        ),
        activity(
            Action::Send,
            "sendto",
            Target::Inet("192.0.2.9".parse().unwrap(), 53),
            connect(None, true),
        ),
        uring_open,
    ]
}

/// A claim with every kind of effect, and a refusal.
fn claims() -> Vec<Event> {
    use crate::{
        claims::{Claim, Effect},
        event::{ClaimPhase, ClaimRecord, ClaimSource},
    };
    let claim = Claim {
        source: ClaimSource::ClaudeCode,
        phase: ClaimPhase::Post,
        session: Some("s-1".into()),
        call_id: Some("toolu_01".into()),
        tool: "Bash".into(),
        effects: vec![
            Effect::Exec {
                command: "cat /etc/hostname".into(),
                background: false,
            },
            Effect::Read {
                path: b"/w/\xff".to_vec(),
            },
            Effect::Write {
                path: b"/w/out".to_vec(),
            },
            Effect::Scan { path: None },
            Effect::Fetch {
                url: "https://api.example.com/v1".into(),
                host: Arc::from("api.example.com"),
                port: 443,
            },
        ],
        cwd: Some(b"/w".to_vec()),
        success: Some(false),
        error: Some("exit 1".into()),
        started: Some(from_nanos(1_764_186_120_000_000_000)),
        ended: Some(from_nanos(1_764_186_121_000_000_000)),
        payload_sha256: "ab".repeat(32),
    };
    let refused = ClaimRecord::Rejected {
        source: None,
        reason: Arc::from("flood"),
        message: "more than 200 claims a second".into(),
        count: 12,
    };
    [ClaimRecord::Claim(claim), refused]
        .into_iter()
        .map(|c| {
            let mut e = activity(
                Action::Claim,
                crate::linux::CLAIM_SYSCALL,
                Target::Call,
                Detail::Claim(Box::new(c)),
            );
            let a = e.activity_mut().unwrap();
            (a.outcome, a.protected, a.verdict) = (Outcome::Success(0), vec![], None);
            e
        })
        .collect()
}

/// One of every kind of record this file builds.
fn corpus() -> Vec<Event> {
    [
        opens(),
        execs(),
        connects(),
        map_execs(),
        changes(),
        without_an_open(),
        replaced_executables(),
        ia32_calls(),
        network(),
        exits(),
        process_actions(),
        claims(),
        vec![refused_later(), in_a_pod(), gap(), dns_failure()],
    ]
    .concat()
}

#[test]
fn the_other_process_actions_and_claims_read_back_as_written() {
    process_actions().iter().for_each(round_trip);
    claims().iter().for_each(round_trip);
}

#[test]
fn the_record_as_a_value_is_what_its_line_reads_as() {
    // OCSF and ECS copy members from `to_value`, which builds them with the writer's own member
    // functions: it must be exactly the written line, read.
    for e in corpus() {
        let written: serde_json::Value = serde_json::from_str(&line(&e)).unwrap();
        assert_eq!(to_value(&e), written, "{}", line(&e));
    }
}

/// The bytes every rendering makes of a fixed input: a change that alters a record, an OCSF or
/// ECS document or a terminal line shows here as a diff against `golden/`. After a deliberate
/// change, `AUDIT_UPDATE_GOLDEN=1 cargo test -p audit-agent --lib golden` writes the new bytes;
/// review them like code.
#[test]
fn every_rendering_of_the_corpus_is_the_golden_one() {
    use crate::format::{Format, write_event};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/trail/record/golden");
    let update = std::env::var_os("AUDIT_UPDATE_GOLDEN").is_some();
    let corpus = corpus();
    let mut differ = Vec::new();
    for (format, file) in [
        (Format::Json, "native.jsonl"),
        (Format::Ocsf, "ocsf.jsonl"),
        (Format::Ecs, "ecs.jsonl"),
        (Format::Text, "text.txt"),
    ] {
        let mut out = Vec::new();
        for e in &corpus {
            write_event(format, e, &mut out).unwrap();
        }
        let path = dir.join(file);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &out).unwrap();
            continue;
        }
        let golden = std::fs::read(&path).unwrap_or_default();
        if golden != out {
            let first = golden
                .split(|b| *b == b'\n')
                .zip(out.split(|b| *b == b'\n'))
                .position(|(g, o)| g != o)
                .unwrap_or(golden.len().min(out.len()));
            differ.push(format!("{file} (first differing line {})", first + 1));
        }
    }
    assert!(
        differ.is_empty(),
        "renderings differ from src/trail/record/golden: {}; if deliberate, run with \
         AUDIT_UPDATE_GOLDEN=1 and review the diff",
        differ.join(", ")
    );
}
