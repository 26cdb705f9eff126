//! Reconciliation over synthetic trails: a runtime (image `rt`) submits hook claims through a
//! wrapper shell; its commands and file accesses are records like the kernel's.

use std::sync::Arc;

use super::*;
use crate::{
    claims::Effect,
    event::{Body, FileRef, Host, KernelFile, Process, Resource, Subject},
    time::from_nanos,
};

/// A trail being written: records at increasing times.
struct Trail {
    events: Vec<Event>,
    seq: u64,
    /// The pid of each image: an image an exec started keeps the pid of the image that ran
    /// the exec; any other is a process of its own.
    pids: std::collections::HashMap<String, u32>,
}

fn t(s: u64) -> Timestamp {
    from_nanos(i128::from(1_800_000_000_000_000_000u64 + s * 1_000_000_000))
}

impl Trail {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            seq: 0,
            pids: std::collections::HashMap::new(),
        }
    }

    fn push(
        &mut self,
        at: u64,
        image: &str,
        parent: &str,
        action: Action,
        resource: Resource,
        outcome: Outcome,
    ) {
        self.seq += 1;
        let fresh = u32::try_from(self.pids.len()).unwrap() + 100;
        let pid = *self.pids.entry(image.to_string()).or_insert(fresh);
        if let Detail::Exec {
            new_exec_id: Some(new),
            ..
        } = &resource.detail
        {
            self.pids.insert(new.to_string(), pid);
        }
        self.events.push(Event {
            time: t(at),
            host: Arc::new(Host {
                name: "h".into(),
                boot_id: "b".into(),
            }),
            seq: self.seq,
            stream: Arc::from("s"),
            body: Body::Activity(Box::new(Activity {
                action,
                syscall: "x",
                process: Process {
                    pid,
                    exec_id: Some(Arc::from(image)),
                    parent_exec_id: Some(Arc::from(parent)),
                    ..Process::default()
                },
                subject: Subject::default(),
                agent: None,
                resource,
                outcome,
                protected: if action == Action::Open {
                    vec![Arc::from("secrets")]
                } else {
                    Vec::new()
                },
                protected_by_inode: Vec::new(),
                verdict: None,
            })),
        });
    }

    /// `image` (a child of `parent`) execs `argv` as `new`.
    fn exec(&mut self, at: u64, image: &str, parent: &str, new: &str, argv: &[&str], ok: bool) {
        let resource = Resource {
            target: Target::File(FileRef::default()),
            detail: Detail::Exec {
                argv: Some(argv.iter().map(|a| a.as_bytes().to_vec()).collect()),
                argv_from_image: true,
                dirfd: None,
                new_exec_id: ok.then(|| Arc::from(new)),
                interpreter: None,
            },
            ..resource()
        };
        let outcome = if ok {
            Outcome::Success(0)
        } else {
            Outcome::Failure(2)
        };
        self.push(at, image, parent, Action::Exec, resource, outcome);
    }

    fn open(&mut self, at: u64, image: &str, parent: &str, path: &str, write: bool, ok: bool) {
        let resource = Resource {
            target: Target::File(FileRef {
                requested: Some(path.as_bytes().to_vec()),
                object: ok.then(|| KernelFile {
                    path: path.as_bytes().to_vec(),
                    ..KernelFile::default()
                }),
                resolved: (!ok).then(|| path.as_bytes().to_vec()),
                ..FileRef::default()
            }),
            detail: Detail::Open {
                flags: if write { 0o1101 } else { 0 },
                mode: 0o644,
                dirfd: None,
                resolve: 0,
            },
            ..resource()
        };
        let outcome = if ok {
            Outcome::Success(3)
        } else {
            Outcome::Failure(13)
        };
        self.push(at, image, parent, Action::Open, resource, outcome);
    }

    /// `image`'s process exits with `code`.
    fn exit(&mut self, at: u64, image: &str, parent: &str, code: u8) {
        let status = Some(crate::event::ExitStatus::Code(code));
        let resource = Resource {
            target: Target::Process { pid: 1 },
            detail: Detail::Exit(status),
            ..resource()
        };
        let outcome = crate::event::ExitStatus::outcome(status);
        self.push(at, image, parent, Action::Exit, resource, outcome);
    }

    /// A hook claim submitted by `hook` (a child of the wrapper `sh`, a child of `rt`).
    fn claim(
        &mut self,
        at: u64,
        hook: &str,
        phase: ClaimPhase,
        call: &str,
        effects: Vec<Effect>,
        success: Option<bool>,
    ) {
        let c = Claim {
            source: ClaimSource::ClaudeCode,
            phase,
            session: Some("s".into()),
            call_id: Some(call.into()),
            tool: "Tool".into(),
            effects,
            cwd: Some(b"/w".to_vec()),
            success,
            error: None,
            started: None,
            ended: None,
            payload_sha256: String::new(),
        };
        let resource = Resource {
            target: Target::Call,
            detail: Detail::Claim(Box::new(ClaimRecord::Claim(c))),
            ..resource()
        };
        // The runtime forks; its copy execs the wrapper shell, which execs the hook.
        let (copy, wrapper) = (format!("fork-{hook}"), format!("sh-{hook}"));
        self.exec(
            at,
            &copy,
            "rt",
            &wrapper,
            &["sh", "-c", "audit-agent claim"],
            true,
        );
        self.exec(at, &wrapper, "rt", hook, &["audit-agent", "claim"], true);
        self.push(
            at,
            hook,
            &wrapper,
            Action::Claim,
            resource,
            Outcome::Success(0),
        );
    }

    /// An OTLP span of a call, sent by the runtime itself `received` seconds in, its start
    /// and end by the runtime's clock (seconds, which may be off).
    fn span(&mut self, received: u64, call: &str, effects: Vec<Effect>, start: u64, end: u64) {
        let c = Claim {
            source: ClaimSource::Otlp,
            phase: ClaimPhase::Complete,
            session: Some("s".into()),
            call_id: Some(call.into()),
            tool: "Tool".into(),
            effects,
            cwd: Some(b"/w".to_vec()),
            success: Some(true),
            error: None,
            started: Some(t(start)),
            ended: Some(t(end)),
            payload_sha256: String::new(),
        };
        let resource = Resource {
            target: Target::Call,
            detail: Detail::Claim(Box::new(ClaimRecord::Claim(c))),
            ..resource()
        };
        self.push(
            received,
            "rt",
            "init",
            Action::Claim,
            resource,
            Outcome::Success(0),
        );
    }

    fn findings(&self) -> Findings {
        reconcile(&self.events, false)
    }
}

fn resource() -> Resource {
    Resource {
        target: Target::Call,
        detail: Detail::Compat,
        truncated: Vec::new(),
        unreadable: Vec::new(),
        uring: None,
        ia32: None,
        destination: None,
    }
}

fn exec_effect(c: &str) -> Vec<Effect> {
    vec![Effect::Exec {
        command: c.into(),
        background: false,
    }]
}

fn outcome(f: &Findings, call: &str) -> CallOutcome {
    f.calls
        .iter()
        .find(|c| c.call == call)
        .unwrap_or_else(|| panic!("no call {call}: {f:#?}"))
        .outcome
}

#[test]
fn a_command_claimed_and_run_explains_what_its_subtree_did() {
    let mut tr = Trail::new();
    tr.claim(
        10,
        "h1",
        ClaimPhase::Pre,
        "c1",
        exec_effect("cd /w && FOO=1 cat /etc/shadow"),
        None,
    );
    tr.exec(
        11,
        "rt-fork",
        "rt",
        "bash-1",
        &["bash", "-c", "cd /w && FOO=1 cat /etc/shadow"],
        true,
    );
    tr.exec(
        11,
        "bash-1",
        "rt-fork",
        "cat-1",
        &["cat", "/etc/shadow"],
        true,
    );
    tr.open(11, "cat-1", "bash-1", "/etc/shadow", false, true);
    tr.claim(
        12,
        "h2",
        ClaimPhase::Post,
        "c1",
        exec_effect("cd /w && FOO=1 cat /etc/shadow"),
        Some(true),
    );
    let f = tr.findings();
    assert_eq!(outcome(&f, "c1"), CallOutcome::Substantiated);
    assert_eq!(f.calls[0].claim_ids.len(), 2, "pre and post are one call");
    assert_eq!(f.records.len(), 1, "the protected open");
    assert!(f.records[0].explained);
    assert_eq!(f.records[0].explained_by[0].call, "c1");
    assert!(
        f.records[0].explained_by[0]
            .signals
            .contains(&Signal::Lineage)
    );
}

#[test]
fn an_action_no_claim_covers_is_unexplained_and_a_claim_of_nothing_unsubstantiated() {
    let mut tr = Trail::new();
    tr.claim(
        10,
        "h1",
        ClaimPhase::Pre,
        "c1",
        exec_effect("make test"),
        None,
    );
    tr.claim(
        12,
        "h2",
        ClaimPhase::Post,
        "c1",
        exec_effect("make test"),
        Some(true),
    );
    // Another process of the agent (a sibling of the runtime) runs the command: that is not
    // the runtime's doing.
    tr.exec(11, "other", "init", "make-o", &["make", "test"], true);
    // The runtime reads a secret on its own, outside any call's command.
    tr.open(20, "rt", "init", "/root/.ssh/id_rsa", false, true);
    let f = tr.findings();
    assert_eq!(outcome(&f, "c1"), CallOutcome::Unsubstantiated, "{f:#?}");
    assert!(!f.records[0].explained, "{f:#?}");
}

#[test]
fn a_write_the_kernel_refused_contradicts_a_claimed_success_and_another_file_too() {
    let mut tr = Trail::new();
    let write = |p: &str| {
        vec![Effect::Write {
            path: p.as_bytes().to_vec(),
        }]
    };
    tr.claim(10, "h1", ClaimPhase::Pre, "w1", write("out.txt"), None);
    tr.open(11, "rt", "init", "/w/out.txt", true, false);
    tr.claim(
        12,
        "h2",
        ClaimPhase::Post,
        "w1",
        write("out.txt"),
        Some(true),
    );
    tr.claim(
        20,
        "h3",
        ClaimPhase::Pre,
        "w2",
        write("/w/a/report.md"),
        None,
    );
    tr.open(21, "rt", "init", "/w/b/report.md", true, true);
    tr.claim(
        22,
        "h4",
        ClaimPhase::Post,
        "w2",
        write("/w/a/report.md"),
        Some(true),
    );
    tr.claim(30, "h5", ClaimPhase::Pre, "w3", write("/w/ok.txt"), None);
    tr.open(31, "rt", "init", "/w/ok.txt", true, true);
    tr.claim(
        32,
        "h6",
        ClaimPhase::Post,
        "w3",
        write("/w/ok.txt"),
        Some(true),
    );
    let f = tr.findings();
    assert_eq!(
        outcome(&f, "w1"),
        CallOutcome::Contradicted,
        "EACCES, relative path resolved"
    );
    assert!(
        f.calls[0].reasons[0].contains("EACCES"),
        "{:?}",
        f.calls[0].reasons
    );
    assert_eq!(
        outcome(&f, "w2"),
        CallOutcome::Contradicted,
        "another report.md"
    );
    assert_eq!(outcome(&f, "w3"), CallOutcome::Substantiated);
}

#[test]
fn a_background_command_explains_what_it_does_after_its_call_and_a_failed_exec_contradicts() {
    let mut tr = Trail::new();
    let bg = vec![Effect::Exec {
        command: "./server".into(),
        background: true,
    }];
    tr.claim(10, "h1", ClaimPhase::Pre, "b1", bg.clone(), None);
    tr.exec(11, "rt-fork", "rt", "server-1", &["./server"], true);
    tr.claim(12, "h2", ClaimPhase::Post, "b1", bg, Some(true));
    tr.open(100, "server-1", "rt-fork", "/etc/shadow", false, true);
    tr.claim(
        200,
        "h3",
        ClaimPhase::Pre,
        "x1",
        exec_effect("nosuchtool --x"),
        None,
    );
    tr.exec(201, "rt-fork2", "rt", "-", &["nosuchtool", "--x"], false);
    tr.claim(
        202,
        "h4",
        ClaimPhase::Post,
        "x1",
        exec_effect("nosuchtool --x"),
        Some(true),
    );
    let f = tr.findings();
    assert_eq!(outcome(&f, "b1"), CallOutcome::Substantiated);
    let r = &f.records[0];
    assert!(
        r.explained_by[0].signals.contains(&Signal::Background),
        "{r:#?}"
    );
    assert_eq!(outcome(&f, "x1"), CallOutcome::Contradicted);
}

#[test]
fn parallel_calls_are_told_apart_by_their_commands() {
    let mut tr = Trail::new();
    tr.claim(
        10,
        "h1",
        ClaimPhase::Pre,
        "p1",
        exec_effect("cat /etc/shadow"),
        None,
    );
    tr.claim(
        10,
        "h2",
        ClaimPhase::Pre,
        "p2",
        exec_effect("ls /tmp"),
        None,
    );
    tr.exec(11, "f1", "rt", "cat-1", &["cat", "/etc/shadow"], true);
    tr.exec(11, "f2", "rt", "ls-1", &["ls", "/tmp"], true);
    tr.open(11, "cat-1", "f1", "/etc/shadow", false, true);
    tr.claim(
        12,
        "h3",
        ClaimPhase::Post,
        "p1",
        exec_effect("cat /etc/shadow"),
        Some(true),
    );
    tr.claim(
        12,
        "h4",
        ClaimPhase::Post,
        "p2",
        exec_effect("ls /tmp"),
        Some(true),
    );
    let f = tr.findings();
    assert_eq!(f.records[0].explained_by.len(), 1);
    assert_eq!(f.records[0].explained_by[0].call, "p1");
}

#[test]
fn commands_lose_their_setup_prefixes() {
    assert_eq!(normalize_command("cd /repo && npm test"), "npm test");
    assert_eq!(
        normalize_command("cd a; cd b && X=1 Y=2 make -j4"),
        "make -j4"
    );
    assert_eq!(normalize_command("echo a=b"), "echo a=b");
}

#[test]
fn a_command_is_judged_by_how_its_shell_exited() {
    let mut tr = Trail::new();
    // Claimed to have succeeded; the shell found no such program and exited 127.
    tr.claim(
        10,
        "h1",
        ClaimPhase::Pre,
        "c1",
        exec_effect("nosuch --run"),
        None,
    );
    tr.exec(
        11,
        "rt-f1",
        "rt",
        "bash-1",
        &["bash", "-c", "nosuch --run"],
        true,
    );
    tr.exit(11, "bash-1", "rt-f1", 127);
    tr.claim(
        12,
        "h2",
        ClaimPhase::Post,
        "c1",
        exec_effect("nosuch --run"),
        Some(true),
    );
    // Claimed to have failed; the shell ran `make`, which exited 0.
    tr.claim(20, "h3", ClaimPhase::Pre, "c2", exec_effect("make"), None);
    tr.exec(21, "rt-f2", "rt", "bash-2", &["bash", "-c", "make"], true);
    tr.exec(21, "bash-2", "rt-f2", "make-2", &["make"], true);
    tr.exit(22, "make-2", "bash-2", 0);
    tr.claim(
        23,
        "h4",
        ClaimPhase::Post,
        "c2",
        exec_effect("make"),
        Some(false),
    );
    // Claimed success, and an inner step failed while the command as a whole succeeded.
    tr.claim(
        30,
        "h5",
        ClaimPhase::Pre,
        "c3",
        exec_effect("grep -q x f || true"),
        None,
    );
    tr.exec(
        31,
        "rt-f3",
        "rt",
        "bash-3",
        &["bash", "-c", "grep -q x f || true"],
        true,
    );
    tr.exec(
        31,
        "bash-3-f",
        "bash-3",
        "grep-3",
        &["grep", "-q", "x", "f"],
        true,
    );
    tr.exit(31, "grep-3", "bash-3-f", 1);
    tr.exit(32, "bash-3", "rt-f3", 0);
    tr.claim(
        33,
        "h6",
        ClaimPhase::Post,
        "c3",
        exec_effect("grep -q x f || true"),
        Some(true),
    );
    let f = tr.findings();
    assert_eq!(outcome(&f, "c1"), CallOutcome::Contradicted);
    let c1 = f.calls.iter().find(|c| c.call == "c1").unwrap();
    assert!(c1.reasons[0].contains("exit 127"), "{:?}", c1.reasons);
    assert_eq!(outcome(&f, "c2"), CallOutcome::Contradicted);
    assert_eq!(outcome(&f, "c3"), CallOutcome::Substantiated, "{f:#?}");
}

#[test]
fn two_calls_of_one_command_take_one_execution_each_and_a_third_is_unexplained() {
    let mut tr = Trail::new();
    for (h, call) in [("h1", "c1"), ("h2", "c2")] {
        tr.claim(
            10,
            h,
            ClaimPhase::Pre,
            call,
            exec_effect("cat /s/key"),
            None,
        );
    }
    // Three executions of the same command: the runtime ran one no call reported.
    for n in 1..=3 {
        let (copy, cat) = (format!("f{n}"), format!("cat-{n}"));
        tr.exec(11, &copy, "rt", &cat, &["cat", "/s/key"], true);
        tr.open(11, &cat, &copy, "/s/key", false, true);
    }
    for (h, call) in [("h3", "c1"), ("h4", "c2")] {
        tr.claim(
            12,
            h,
            ClaimPhase::Post,
            call,
            exec_effect("cat /s/key"),
            Some(true),
        );
    }
    let f = tr.findings();
    assert_eq!(outcome(&f, "c1"), CallOutcome::Substantiated);
    assert_eq!(outcome(&f, "c2"), CallOutcome::Substantiated);
    let explained: Vec<bool> = f.records.iter().map(|r| r.explained).collect();
    assert_eq!(explained, [true, true, false], "{f:#?}");
}

#[test]
fn a_search_explains_the_reads_below_its_directory_by_the_runtime_and_its_tools() {
    let mut tr = Trail::new();
    let scan = vec![Effect::Scan {
        path: Some(b"src".to_vec()),
    }];
    tr.claim(10, "h1", ClaimPhase::Pre, "g1", scan.clone(), None);
    // The runtime's search tool (a subprocess, like ripgrep) reads below /w/src ...
    tr.exec(11, "f1", "rt", "rg-1", &["rg", "TOKEN", "/w/src"], true);
    tr.open(11, "rg-1", "f1", "/w/src/secrets/token", false, true);
    // ... and the runtime itself reads elsewhere during the call.
    tr.open(11, "rt", "init", "/w/other/secret", false, true);
    tr.claim(12, "h2", ClaimPhase::Post, "g1", scan, Some(true));
    let f = tr.findings();
    assert_eq!(outcome(&f, "g1"), CallOutcome::Substantiated);
    let by_path = |p: &str| {
        f.records
            .iter()
            .find(|r| r.resource == p)
            .unwrap()
            .explained
    };
    assert!(by_path("/w/src/secrets/token"));
    assert!(!by_path("/w/other/secret"), "{f:#?}");
}

#[test]
fn span_windows_follow_the_senders_clock_ahead_or_behind() {
    for offset in [-40i64, 0, 40] {
        let mut tr = Trail::new();
        // The runtime's clock reads `offset` seconds more than the daemon's.
        let rt =
            |daemon: u64| u64::try_from(1000 + i64::try_from(daemon).unwrap() + offset).unwrap();
        tr.exec(100, "f1", "rt", "cat-1", &["cat", "/s/a"], true);
        tr.open(100, "cat-1", "f1", "/s/a", false, true);
        tr.span(101, "s1", exec_effect("cat /s/a"), rt(99), rt(101));
        tr.exec(200, "f2", "rt", "cat-2", &["cat", "/s/b"], true);
        tr.open(200, "cat-2", "f2", "/s/b", false, true);
        // Exported in a batch a few seconds after it ended.
        tr.span(205, "s2", exec_effect("cat /s/b"), rt(199), rt(201));
        let f = tr.findings();
        assert_eq!(
            outcome(&f, "s1"),
            CallOutcome::Substantiated,
            "offset {offset}"
        );
        assert_eq!(
            outcome(&f, "s2"),
            CallOutcome::Substantiated,
            "offset {offset}"
        );
        assert!(
            f.records.iter().all(|r| r.explained),
            "offset {offset}: {f:#?}"
        );
    }
}
