//! Decoding kernel records: sections land where the kernel put them, walks become paths, and a
//! malformed record is an error or a missing value, never a panic or an invented one.

use audit_common::event::{
    ActionCommon, ConnectBody, EventHeader, ExecBody, FileFacts, KernelAddr, OpenBody, Sections,
    Span, VAR_OFFSET,
};

use super::*;

/// A record as the kernel lays it out: header, fixed part, variable sections.
struct Raw {
    header: EventHeader,
    var: Vec<u8>,
    sections: Sections,
}

impl Raw {
    fn new(kind: EventKind, syscall: Syscall, flags: u32) -> Self {
        let mut header = EventHeader::ZERO;
        header.kind = kind as u16;
        header.syscall = syscall as u16;
        header.flags = flags;
        header.pid = 10;
        header.tid = 11;
        header.comm[..3].copy_from_slice(b"cat");
        Self {
            header,
            var: Vec::new(),
            sections: Sections::default(),
        }
    }

    /// Appends a section, returning where it lies.
    fn section(&mut self, bytes: &[u8]) -> Span {
        let span = Span {
            off: self.var.len() as u16,
            len: bytes.len() as u16,
        };
        self.var.extend_from_slice(bytes);
        self.sections.end = self.var.len() as u16;
        span
    }

    fn common(&self, file: FileFacts, exe: FileFacts) -> ActionCommon {
        ActionCommon {
            sections: self.sections,
            file,
            exe,
            real: FileFacts::default(),
            origin: FileFacts::default(),
        }
    }

    /// The record bytes with `fixed` as the fixed part.
    fn bytes<B: Copy>(mut self, fixed: B) -> Vec<u8> {
        let mut body = vec![0u8; VAR_OFFSET];
        // SAFETY: B is a plain-data repr(C) record type no larger than VAR_OFFSET.
        let raw =
            unsafe { std::slice::from_raw_parts((&raw const fixed).cast::<u8>(), size_of::<B>()) };
        body[..raw.len()].copy_from_slice(raw);
        body.extend_from_slice(&self.var);
        self.header.body_len = body.len() as u16;
        // SAFETY: as above, for the header.
        let head = unsafe {
            std::slice::from_raw_parts((&raw const self.header).cast::<u8>(), HEADER_LEN)
        };
        [head, &body].concat()
    }
}

/// A walk as the kernel writes it: components leaf first, each NUL-terminated.
fn walk(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in path.split('/').filter(|c| !c.is_empty()).rev() {
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    out
}

fn facts(ino: u64, extra: u16) -> FileFacts {
    FileFacts {
        ino,
        dev: (8 << 20) | 1,
        mnt_id: 21,
        mnt_ns: 4_026_531_841,
        mode: 0o100_640,
        flags: file_flags::VALID | extra,
    }
}

fn open_body(common: ActionCommon) -> OpenBody {
    OpenBody {
        common,
        dirfd: -100,
        mode: 0,
        flags: 0,
        resolve: 0,
        user_path: 0,
    }
}

fn sections_of(ev: &KernelEvent) -> &super::Sections {
    match &ev.body {
        Body::Open { sections, .. }
        | Body::Exec { sections, .. }
        | Body::Connect { sections, .. } => sections,
        other => panic!("not an action: {other:?}"),
    }
}

#[test]
fn an_open_carries_the_requested_path_and_the_kernels_path_of_the_file() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.requested = raw.section(b"../etc/./shadow\0");
    raw.sections.kpath = raw.section(&walk("/etc/shadow"));
    let common = raw.common(facts(42, 0), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    let s = sections_of(&ev);
    assert_eq!(s.requested.as_deref(), Some(&b"../etc/./shadow"[..]));
    let k = s.kpath.as_ref().unwrap();
    assert_eq!(k.path, b"/etc/shadow");
    assert_eq!(k.facts.ino, 42);
    assert_eq!(s.base, None);
    assert_eq!(ev.task.comm, b"cat");
}

#[test]
fn a_file_on_an_overlay_carries_the_real_file_under_it() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.kpath = raw.section(&walk("/merged/secret"));
    // Walked to the root of its filesystem: the root's own name ends the walk.
    let mut real_walk = walk("/srv/lower/secret");
    real_walk.extend_from_slice(b"/\0");
    raw.sections.real = raw.section(&real_walk);
    let mut common = raw.common(facts(42, file_flags::STACKED), FileFacts::default());
    common.real = facts(7, file_flags::FS_ROOT);
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    let k = sections_of(&ev).kpath.as_ref().unwrap();
    assert_eq!(k.path, b"/merged/secret");
    let under = k.under.as_ref().expect("the real file");
    assert_eq!(under.real.path, b"/srv/lower/secret");
    assert_eq!(under.real.facts.ino, 7);
    assert_eq!(under.origin, None);

    // Copied up: the upper file, and the lower one it came from.
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.kpath = raw.section(&walk("/merged/secret"));
    raw.sections.real = raw.section(&walk("/srv/upper/secret"));
    raw.sections.origin = raw.section(&walk("/srv/lower/secret"));
    let mut common = raw.common(facts(42, file_flags::STACKED), FileFacts::default());
    common.real = facts(8, file_flags::FS_ROOT | file_flags::UPPER);
    common.origin = facts(7, file_flags::FS_ROOT);
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    let under = sections_of(&ev)
        .kpath
        .as_ref()
        .unwrap()
        .under
        .clone()
        .unwrap();
    assert_eq!(under.real.path, b"/srv/upper/secret");
    assert_eq!(under.origin.unwrap().path, b"/srv/lower/secret");

    // The kernel side could not read it: no real file (enrichment says it is unreadable).
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.kpath = raw.section(&walk("/merged/secret"));
    let common = raw.common(facts(42, file_flags::STACKED), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).kpath.as_ref().unwrap().under, None);
}

#[test]
fn walks_become_absolute_paths_unless_cut_or_detached() {
    assert_eq!(walk_to_path(&walk("/a/b/c"), &facts(1, 0)), b"/a/b/c");
    assert_eq!(walk_to_path(b"", &facts(1, 0)), b"/", "the root itself");
    assert_eq!(
        walk_to_path(&walk("/b/c"), &facts(1, file_flags::CUT)),
        b"b/c",
        "a cut walk has lost its leading components: it must not look absolute"
    );
    assert_eq!(
        walk_to_path(b"memfd:x\0", &facts(1, file_flags::DETACHED)),
        b"memfd:x"
    );
    assert_eq!(
        walk_to_path(b"c\0/\0b\0", &facts(1, 0)),
        b"/b/c",
        "a mount root's `/` name is not a component"
    );
}

#[test]
fn a_root_walk_is_the_root_and_a_missing_walk_is_no_path() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, flags::KPATH_FAULT);
    raw.sections.requested = raw.section(b"/\0");
    let common = raw.common(FileFacts::default(), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(
        sections_of(&ev).kpath,
        None,
        "no walk and no valid facts: nothing"
    );

    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.requested = raw.section(b"/\0");
    let common = raw.common(facts(2, 0), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).kpath.as_ref().unwrap().path, b"/");
}

#[test]
fn a_failed_open_carries_the_directory_it_was_resolved_from() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, flags::BASE_WALKED);
    raw.header.retval = -2;
    raw.sections.requested = raw.section(b"missing\0");
    raw.sections.base = raw.section(&walk("/home/agent"));
    let common = raw.common(FileFacts::default(), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    let s = sections_of(&ev);
    assert_eq!(s.base.as_deref(), Some(&b"/home/agent"[..]));
    assert_eq!(s.kpath, None);
    assert_eq!(ev.retval, -2);

    // An absolute path is resolved from the root: an empty walk.
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, flags::BASE_WALKED);
    raw.sections.requested = raw.section(b"/missing\0");
    let common = raw.common(FileFacts::default(), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).base.as_deref(), Some(&b"/"[..]));
}

#[test]
fn an_unreadable_requested_path_is_none_not_empty() {
    let raw = Raw::new(EventKind::Open, Syscall::Openat, flags::PATH_FAULT);
    let common = raw.common(FileFacts::default(), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).requested, None);
    assert!(ev.has_flag(flags::PATH_FAULT));
}

fn exec_record(flags: u32, argv: Option<&[u8]>, argc: u16) -> KernelEvent {
    let mut raw = Raw::new(EventKind::Exec, Syscall::Execve, flags);
    if let Some(a) = argv {
        raw.sections.argv = raw.section(a);
    }
    raw.sections.argc = argc;
    raw.sections.requested = raw.section(b"/bin/ls\0");
    raw.sections.kpath = raw.section(&walk("/usr/bin/ls"));
    let common = raw.common(facts(7, 0), facts(9, 0));
    decode(&raw.bytes(ExecBody {
        common,
        dirfd: -100,
        at_flags: 0,
        user_path: 0,
    }))
    .unwrap()
}

#[test]
fn exec_arguments_split_on_nul_and_respect_the_count() {
    let ev = exec_record(0, Some(b"ls\0-l\0\0x\0"), 0);
    let args = sections_of(&ev).argv.clone().unwrap();
    assert_eq!(
        args,
        [&b"ls"[..], b"-l", b"", b"x"],
        "an empty argument is kept"
    );
    let ev = exec_record(0, Some(b"ls\0-l\0junk"), 2);
    assert_eq!(sections_of(&ev).argv.clone().unwrap(), [&b"ls"[..], b"-l"]);
}

#[test]
fn unreadable_arguments_are_none_and_no_arguments_are_empty() {
    assert_eq!(
        sections_of(&exec_record(flags::ARGV_FAULT, None, 0)).argv,
        None
    );
    assert_eq!(sections_of(&exec_record(0, None, 0)).argv, Some(Vec::new()));
}

#[test]
fn the_acting_executable_is_known_by_identity_and_announced_by_path() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, flags::EXE_PATH);
    raw.sections.exe = raw.section(&walk("/usr/bin/python3.12"));
    let common = raw.common(FileFacts::default(), facts(99, 0));
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    let exe = &sections_of(&ev).exe;
    assert_eq!(exe.facts.unwrap().ino, 99);
    assert_eq!(exe.path.as_ref().unwrap().path, b"/usr/bin/python3.12");

    let raw = Raw::new(EventKind::Open, Syscall::Openat, flags::EXE_FAULT);
    let common = raw.common(FileFacts::default(), facts(99, 0));
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).exe, Exe::default());
}

fn connect_record(flags: u32, kaddr: KernelAddr, addr: &[u8]) -> KernelEvent {
    let raw = Raw::new(EventKind::Connect, Syscall::Connect, flags);
    let mut a = [0u8; audit_common::event::SOCKADDR_MAX];
    a[..addr.len()].copy_from_slice(addr);
    let common = raw.common(FileFacts::default(), FileFacts::default());
    decode(&raw.bytes(ConnectBody {
        common,
        fd: 3,
        addrlen: addr.len() as u32,
        user_addr: 0,
        sk: 0xffff_8880_0000_1000,
        kaddr,
        cookie: 0,
        addr: a,
    }))
    .unwrap()
}

#[test]
fn a_connect_carries_the_kernels_destination_and_the_address_as_passed() {
    let passed = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    let kaddr = KernelAddr {
        family: 2,
        port: 5432,
        _pad: 0,
        ip: [10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let ev = connect_record(flags::ADDR_FROM_KERNEL, kaddr, &passed);
    let Body::Connect {
        fd,
        sk,
        passed,
        kernel,
        ..
    } = ev.body
    else {
        panic!("not a connect")
    };
    assert_eq!((fd, sk), (3, 0xffff_8880_0000_1000));
    assert_eq!(kernel, Some(("10.0.0.5".parse().unwrap(), 5432)));
    assert_eq!(
        passed,
        Some(SockAddr::Inet(Ipv4Addr::LOCALHOST, 8080)),
        "what the process passed stays distinct from what the kernel connected to"
    );
}

#[test]
fn an_unreadable_address_is_none() {
    let ev = connect_record(flags::ADDR_FAULT, KernelAddr::default(), &[]);
    let Body::Connect { passed, kernel, .. } = ev.body else {
        panic!("not a connect")
    };
    assert_eq!((passed, kernel), (None, None));
}

#[test]
fn connect_outcomes_decode() {
    let mut header = EventHeader::ZERO;
    header.kind = EventKind::ConnectOutcome as u16;
    header.tid = 5;
    header.ktime_ns = 1000;
    let body = ConnectOutcome {
        cookie: 1,
        at_ns: 2000,
        new_state: 7,
        error: 111,
    };
    let ev = decode_parts(&header, EventKind::ConnectOutcome, &body_bytes(&body)).unwrap();
    assert_eq!(ev.body, Body::ConnectOutcome(body));
    assert_eq!((ev.task.tid, ev.task.ktime_ns), (5, 1000));
}

fn body_bytes<B: Copy>(b: &B) -> Vec<u8> {
    // SAFETY: a plain-data repr(C) record.
    unsafe { std::slice::from_raw_parts((b as *const B).cast::<u8>(), size_of::<B>()) }.to_vec()
}

#[test]
fn malformed_records_are_errors_not_panics() {
    assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
    let mut h = EventHeader::ZERO;
    h.kind = 77;
    assert_eq!(decode(&body_bytes(&h)), Err(DecodeError::UnknownKind(77)));
    h.kind = EventKind::Open as u16;
    h.body_len = 8;
    let mut bytes = body_bytes(&h);
    bytes.extend_from_slice(&[0; 8]);
    assert!(matches!(
        decode(&bytes),
        Err(DecodeError::ShortBody {
            kind: EventKind::Open,
            len: 8,
            ..
        })
    ));
}

#[test]
fn a_section_pointing_outside_the_record_is_missing() {
    let mut raw = Raw::new(EventKind::Open, Syscall::Openat, 0);
    raw.sections.requested = raw.section(b"/etc/passwd\0");
    raw.sections.kpath = Span {
        off: 4000,
        len: 200,
    };
    let common = raw.common(FileFacts::default(), FileFacts::default());
    let ev = decode(&raw.bytes(open_body(common))).unwrap();
    assert_eq!(sections_of(&ev).kpath, None);
    assert_eq!(
        sections_of(&ev).requested.as_deref(),
        Some(&b"/etc/passwd"[..])
    );
}

#[test]
fn lifecycle_records_decode() {
    let mut h = EventHeader::ZERO;
    h.kind = EventKind::Fork as u16;
    h.pid = 1;
    let body = audit_common::event::ForkBody {
        child_pid: 2,
        _pad: 0,
    };
    let ev = decode_parts(&h, EventKind::Fork, &body_bytes(&body)).unwrap();
    assert_eq!(ev.body, Body::Fork { child_pid: 2 });
    assert_eq!(kind_name(EventKind::Fork as usize), "process.lifecycle");
    assert_eq!(
        kind_name(EventKind::ConnectOutcome as usize),
        "network.connect"
    );
}
