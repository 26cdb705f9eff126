//! What an action was performed on, from a kernel record: the file or address the kernel acted
//! on, what the process asked for, and which values could not be read.

use audit_common::event::{FileFacts, file_flags, flags};

use audit_common::event::Syscall;

use crate::{
    decode::{Body, FileChange, KernelEvent, KernelPath, Sections},
    escape::until_nul,
    event::{
        Access, AccessKind, Action, Change, ChangeFlags, Destination, Detail, ExitStatus, Field,
        FileCopy, FileId, FileRef, Interpreter, KernelFile, MapExec, PassedAddr, RealFile,
        RealRoot, Requested, Resource, SetExe, Stacked, Target, UringRef,
    },
    linux::SockAddr,
};

const AT_FDCWD: i32 = -100;

/// A kernel path walk's result as the event carries it.
pub(super) fn kernel_file(k: &KernelPath) -> KernelFile {
    let f = &k.facts;
    let valid = f.flags & file_flags::VALID != 0;
    let detached = f.flags & file_flags::DETACHED != 0;
    KernelFile {
        path: k.path.clone(),
        id: valid.then(|| file_id(f)),
        deleted: f.flags & file_flags::DELETED != 0,
        detached,
        cut: f.flags & file_flags::CUT != 0,
        stacked: (f.flags & file_flags::STACKED != 0).then(|| match &k.under {
            Some(u) => Stacked::Real(Box::new(RealFile {
                origin: u.origin.as_ref().map(|o| Box::new(real_file(o))),
                ..real_file(&u.real)
            })),
            None => Stacked::Unreadable,
        }),
    }
}

fn file_id(f: &FileFacts) -> FileId {
    let detached = f.flags & file_flags::DETACHED != 0;
    FileId {
        dev_major: f.dev >> 20,
        dev_minor: f.dev & 0xf_ffff,
        ino: f.ino,
        mount_id: f.mnt_id,
        mount_ns: (!detached && f.mnt_ns != 0).then_some(f.mnt_ns),
        mode: f.mode,
    }
}

/// The real file under an overlay file, named from the root of its filesystem (the enricher
/// places it under the host's mount point, `mounts.rs`).
fn real_file(k: &KernelPath) -> RealFile {
    let f = &k.facts;
    RealFile {
        path: k.path.clone(),
        root: RealRoot::Filesystem,
        id: file_id(f),
        upper: f.flags & file_flags::UPPER != 0,
        deleted: f.flags & file_flags::DELETED != 0,
        cut: f.flags & file_flags::CUT != 0,
        origin: None,
    }
}

/// A file only the kernel names (no path was passed): a file behind an fd, an executable.
fn kernel_ref(k: Option<&KernelPath>) -> FileRef {
    FileRef {
        requested: None,
        requested_from: Requested::AtEntry,
        resolved: None,
        object: k.map(kernel_file),
    }
}

/// Joins and normalizes `.` and `..` without touching the filesystem.
pub(super) fn join_lexically(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in base.split(|&b| b == b'/').chain(rel.split(|&b| b == b'/')) {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The file an action named: the object the kernel acted on, the request, and the request
/// resolved against the kernel's base directory when there is no object.
fn file_ref(ev: &KernelEvent, s: &Sections) -> FileRef {
    let requested_from = if ev.has_flag(flags::PATH_FROM_KERNEL) {
        Requested::KernelCopy
    } else if ev.has_flag(flags::PATH_AT_EXIT) {
        Requested::AtExit
    } else {
        Requested::AtEntry
    };
    let object = s.kpath.as_ref().map(kernel_file);
    let resolved = match (&object, &s.base, &s.requested) {
        (None, Some(base), Some(req)) if !req.is_empty() => Some(join_lexically(base, req)),
        _ => None,
    };
    FileRef {
        requested: s.requested.clone(),
        requested_from,
        resolved,
        object,
    }
}

fn truncated_and_unreadable(ev: &KernelEvent, r: &mut Resource) {
    if ev.has_flag(flags::PATH_TRUNCATED) {
        r.truncated.push(Field::Path);
    }
    if ev.has_flag(flags::ARGV_TRUNCATED) {
        r.truncated.push(Field::Argv);
    }
    if ev.has_flag(flags::PATH_FAULT) {
        r.unreadable.push(Field::RequestedPath);
    }
    if ev.has_flag(flags::KPATH_FAULT) {
        r.unreadable.push(Field::KernelPath);
    }
    if ev.has_flag(flags::PATH2_TRUNCATED) {
        r.truncated.push(Field::NewPath);
    }
    if ev.has_flag(flags::PATH2_FAULT) {
        r.unreadable.push(Field::NewPath);
    }
    if let Target::File(f) | Target::Unix(f) = &r.target
        && f.path().is_none()
    {
        r.unreadable.push(Field::Path);
    }
    if r.kernel_files()
        .any(|k| k.stacked == Some(Stacked::Unreadable))
        || origin_lost(ev)
    {
        r.unreadable.push(Field::RealFile);
    }
}

/// Whether the kernel found the lower file an overlay's upper file was copied up from, but could
/// not write its walk (no room left in the record).
fn origin_lost(ev: &KernelEvent) -> bool {
    let sections = match &ev.body {
        Body::Exec { sections, .. }
        | Body::Open { sections, .. }
        | Body::File { sections, .. }
        | Body::Access { sections, .. }
        | Body::Compat { sections, .. }
        | Body::MapExec { sections, .. } => sections,
        _ => return false,
    };
    sections
        .kpath
        .as_ref()
        .and_then(|k| k.under.as_ref())
        .is_some_and(|u| u.real.facts.flags & file_flags::ORIGIN != 0 && u.origin.is_none())
}

/// The resource of an action record (exec, open, connect); `None` for other records.
pub(super) fn resource(ev: &KernelEvent) -> Option<Resource> {
    let (target, detail) = target_and_detail(ev)?;
    let destination = match (&ev.body, &target) {
        (Body::Connect { cookie, .. } | Body::Compat { cookie, .. }, Target::Inet(..)) => {
            Some(Box::new(Destination {
                connection: *cookie,
                ..Destination::default()
            }))
        }
        (Body::Uring { .. }, Target::Inet(..)) => Some(Box::default()),
        _ => None,
    };
    let mut r = Resource {
        target,
        detail,
        truncated: Vec::new(),
        unreadable: Vec::new(),
        uring: uring_ref(ev),
        ia32: None,
        destination,
    };
    truncated_and_unreadable(ev, &mut r);
    if let Detail::Exec { argv: None, .. } = r.detail {
        r.unreadable.push(Field::Argv);
    }
    if let Detail::Exit(None) = r.detail {
        r.unreadable.push(Field::ExitStatus);
    }
    if let (Target::OtherAddress { .. }, Detail::Connect { passed: None, .. }) =
        (&r.target, &r.detail)
        && ev.has_flag(flags::ADDR_FAULT)
    {
        r.unreadable.push(Field::Address);
    }
    Some(r)
}

/// What an action record acted on, and how.
fn target_and_detail(ev: &KernelEvent) -> Option<(Target, Detail)> {
    Some(match &ev.body {
        Body::Exec {
            dirfd, sections, ..
        } => exec(ev, *dirfd, sections),
        Body::Open {
            dirfd,
            flags,
            mode,
            resolve,
            sections,
            ..
        } => (
            Target::File(file_ref(ev, sections)),
            Detail::Open {
                flags: *flags,
                mode: *mode,
                dirfd: (*dirfd != AT_FDCWD).then_some(*dirfd),
                resolve: *resolve,
            },
        ),
        Body::Connect {
            passed,
            kernel,
            sections,
            ..
        } => connect(ev, passed.as_ref(), *kernel, sections),
        Body::File { .. } => change(ev)?,
        Body::Uring { .. } => uring(ev)?,
        Body::Compat { sections, .. } => (
            if sections.requested.is_some() || sections.kpath.is_some() {
                Target::File(file_ref(ev, sections))
            } else {
                Target::Call
            },
            Detail::Compat,
        ),
        Body::UringSetup {
            fd,
            sq_entries,
            cq_entries,
            flags,
        } => (
            Target::Ring { fd: *fd },
            Detail::Ring {
                sq_entries: *sq_entries,
                cq_entries: *cq_entries,
                flags: *flags,
            },
        ),
        Body::Access { .. } => access(ev)?,
        _ => return held_or_mapped(ev).or_else(|| process_acted_on(ev)),
    })
}

/// What the records of files a process holds, copies, maps or makes its executable acted on,
/// and how.
fn held_or_mapped(ev: &KernelEvent) -> Option<(Target, Detail)> {
    Some(match &ev.body {
        Body::SetExe {
            map,
            fd,
            new,
            changes,
            sections,
            ..
        } => (
            Target::File(kernel_ref(new.as_ref())),
            Detail::SetExe(SetExe {
                previous: sections.kpath.as_ref().map(kernel_file),
                fd: *fd,
                map: *map,
                replacements: *changes,
                before_watch: ev.has_flag(flags::BEFORE_WATCH),
            }),
        ),
        Body::Fd {
            fd,
            received_on,
            sections,
            ..
        } => (
            Target::File(kernel_ref(sections.kpath.as_ref())),
            Detail::Fd {
                fd: *fd,
                socket_fd: *received_on,
            },
        ),
        Body::Copy {
            in_fd,
            out_fd,
            to,
            len,
            flags,
            sections,
            ..
        } => (
            Target::File(kernel_ref(sections.kpath.as_ref())),
            Detail::Copy(Box::new(FileCopy {
                to: to.as_ref().map(kernel_file),
                in_fd: *in_fd,
                out_fd: *out_fd,
                len: *len,
                flags: *flags,
            })),
        ),
        Body::MapExec {
            syscall,
            prot,
            flags,
            fd,
            no_interp,
            mapped: (start, end),
            sections,
            ..
        } => (
            Target::File(file_ref(ev, sections)),
            Detail::MapExec(MapExec {
                prot: *prot,
                mmap: (*syscall == Syscall::Mmap).then_some((*flags, *fd)),
                start: *start,
                len: end.saturating_sub(*start),
                loader: *no_interp,
            }),
        ),
        _ => return None,
    })
}

/// The process or cgroup the records of signals, cgroup moves and exits acted on, and how.
fn process_acted_on(ev: &KernelEvent) -> Option<(Target, Detail)> {
    Some(match &ev.body {
        Body::Signal {
            sig,
            target_pid,
            result,
        } => (
            Target::Process { pid: *target_pid },
            Detail::Signal {
                sig: *sig,
                delivery: *result,
                by_kernel: ev.has_flag(flags::SIGNAL_BY_KERNEL),
            },
        ),
        Body::CgroupMove {
            moved_pid,
            dst_id,
            path,
        } => (
            Target::Cgroup {
                id: *dst_id,
                path: path.clone(),
            },
            Detail::Move { pid: *moved_pid },
        ),
        Body::Exit { status } => (
            Target::Process { pid: ev.task.pid },
            Detail::Exit(
                (*status != audit_common::event::EXIT_STATUS_UNREAD)
                    .then(|| ExitStatus::from_wait(*status)),
            ),
        ),
        _ => return None,
    })
}

/// The io_uring request a record was submitted as.
fn uring_ref(ev: &KernelEvent) -> Option<UringRef> {
    match &ev.body {
        Body::Uring {
            opcode, user_data, ..
        } => Some(UringRef {
            op: uring_op_name(*opcode),
            user_data: *user_data,
        }),
        _ => None,
    }
}

/// ptrace, process_vm_readv/writev, pidfd_getfd: the target process and how it was reached.
fn access(ev: &KernelEvent) -> Option<(Target, Detail)> {
    let Body::Access {
        syscall,
        target_pid,
        pid_from_kernel,
        caller_ns_level,
        target_fd,
        request,
        addr,
        sections,
    } = &ev.body
    else {
        return None;
    };
    let kind = match syscall {
        Syscall::Ptrace => AccessKind::Ptrace {
            request: *request,
            addr: *addr,
        },
        Syscall::ProcessVmWritev => AccessKind::VmWrite,
        Syscall::PidfdGetfd => AccessKind::GetFd { fd: *target_fd },
        _ => AccessKind::VmRead,
    };
    Some((
        Target::Process { pid: *target_pid },
        Detail::Access(Access {
            kind,
            pid_from_kernel: *pid_from_kernel,
            caller_namespaced: *caller_ns_level > 0,
            file: sections.kpath.as_ref().map(kernel_file),
            target_exec_id: None,
            target_agent: None,
        }),
    ))
}

fn exec(ev: &KernelEvent, dirfd: i32, s: &Sections) -> (Target, Detail) {
    let mut file = file_ref(ev, s);
    let mut interpreter = None;
    if ev.has_flag(flags::SCRIPT) {
        // The loaded file is the interpreter; the script is what was asked for.
        interpreter = Some(Interpreter {
            shebang: s
                .extra
                .clone()
                .map(|b| crate::escape::until_nul(&b).to_vec())
                .unwrap_or_default(),
            loaded: file.object.take(),
        });
        if let (Some(base), Some(req)) = (&s.base, &file.requested) {
            file.resolved = Some(join_lexically(base, req));
        }
    }
    (
        Target::File(file),
        Detail::Exec {
            argv: s.argv.clone(),
            argv_from_image: ev.has_flag(flags::ARGV_FROM_IMAGE),
            dirfd: (dirfd != AT_FDCWD).then_some(dirfd),
            new_exec_id: None,
            interpreter,
        },
    )
}

fn passed_addr(a: &SockAddr) -> PassedAddr {
    match a {
        SockAddr::Inet(ip, port) => PassedAddr::Inet((*ip).into(), *port),
        SockAddr::Inet6(ip, port) => PassedAddr::Inet((*ip).into(), *port),
        SockAddr::Unix(p) => PassedAddr::Unix(p.clone()),
        SockAddr::Unspec => PassedAddr::Other { family: 0 },
        SockAddr::Other(f) | SockAddr::Malformed(f) => PassedAddr::Other { family: *f },
    }
}

fn connect(
    ev: &KernelEvent,
    passed: Option<&SockAddr>,
    kernel: Option<(std::net::IpAddr, u16)>,
    s: &Sections,
) -> (Target, Detail) {
    let passed = passed.map(passed_addr);
    let target = match (kernel, &passed) {
        (Some((ip, port)), _) => Target::Inet(ip, port),
        (None, Some(PassedAddr::Inet(ip, port))) => Target::Inet(*ip, *port),
        (None, Some(PassedAddr::Unix(path))) => Target::Unix(unix_ref(ev, path, s)),
        (None, Some(PassedAddr::Other { family })) => Target::OtherAddress { family: *family },
        (None, None) => Target::OtherAddress { family: 0 },
    };
    // The address as passed is kept only when it says something the target does not: it
    // differs from what the kernel connected to, or there is no kernel copy to trust.
    let same = match (&target, &passed) {
        (Target::Inet(a, p), Some(PassedAddr::Inet(b, q))) => a == b && p == q,
        (Target::Unix(_), Some(PassedAddr::Unix(_))) => true,
        (Target::OtherAddress { family }, Some(PassedAddr::Other { family: f })) => family == f,
        _ => false,
    };
    (
        target,
        Detail::Connect {
            passed: (!same).then_some(passed).flatten(),
            from_kernel: kernel.is_some(),
            completion: None,
        },
    )
}

/// A unix destination: the peer's bound path (or abstract name) the kernel connected to, else
/// the path as passed, resolved against the cwd for a failure.
fn unix_ref(ev: &KernelEvent, passed: &[u8], s: &Sections) -> FileRef {
    let mut f = file_ref(ev, s);
    f.requested = Some(passed.to_vec());
    if f.object.is_none()
        && let Some(name) = &s.extra
    {
        // An abstract peer: its name, as the kernel bound it.
        let mut path = vec![0];
        path.extend_from_slice(name.strip_prefix(&[0]).unwrap_or(name));
        f.object = Some(KernelFile {
            path,
            ..Default::default()
        });
    }
    if passed.first() == Some(&0) {
        f.resolved = None;
    }
    f
}

/// `unlinkat`: remove a directory.
const AT_REMOVEDIR: u32 = 0x200;

/// The action a file-change system call performs.
pub(super) fn change_action(syscall: Syscall, flags: u32) -> Option<Action> {
    use Syscall as S;
    Some(match syscall {
        S::Unlink => Action::Delete,
        S::Unlinkat if flags & AT_REMOVEDIR != 0 => Action::Rmdir,
        S::Unlinkat => Action::Delete,
        S::Rmdir => Action::Rmdir,
        S::Rename | S::Renameat | S::Renameat2 => Action::Rename,
        S::Truncate | S::Ftruncate => Action::Truncate,
        S::Chmod | S::Fchmod | S::Fchmodat | S::Fchmodat2 => Action::Chmod,
        S::Chown | S::Lchown | S::Fchown | S::Fchownat => Action::Chown,
        S::Link | S::Linkat => Action::Link,
        S::Symlink | S::Symlinkat => Action::Symlink,
        S::Mkdir | S::Mkdirat => Action::Mkdir,
        _ => return None,
    })
}

/// A file change's second path (rename and link destinations), resolved against the directory
/// the kernel resolved it from.
fn second_ref(s: &Sections) -> Option<FileRef> {
    let requested = s.extra.as_deref().map(|b| until_nul(b).to_vec())?;
    let resolved = s
        .base2
        .as_ref()
        .map(|base| join_lexically(base, &requested));
    Some(FileRef {
        requested: Some(requested),
        requested_from: Requested::AtEntry,
        resolved,
        object: None,
    })
}

/// What a file change's second path means, the same for a system call and an io_uring
/// request: (a rename's or link's destination, a symlink's content, the flags as named).
fn change_names(
    action: Action,
    flags: u32,
    sections: &Sections,
) -> (Option<FileRef>, Option<Vec<u8>>, ChangeFlags) {
    let to = matches!(action, Action::Rename | Action::Link)
        .then(|| second_ref(sections))
        .flatten();
    let content = (action == Action::Symlink)
        .then(|| sections.extra.as_deref().map(|b| until_nul(b).to_vec()))
        .flatten();
    let flags = if action == Action::Rename {
        ChangeFlags::Rename(flags)
    } else {
        ChangeFlags::At(flags)
    };
    (to, content, flags)
}

fn change(ev: &KernelEvent) -> Option<(Target, Detail)> {
    let Body::File {
        change:
            FileChange {
                syscall,
                dirfd,
                fd,
                mode,
                uid,
                gid,
                flags,
                length,
                ..
            },
        sections,
    } = &ev.body
    else {
        return None;
    };
    let action = change_action(*syscall, *flags)?;
    let mut file = file_ref(ev, sections);
    if file.object.is_none()
        && file.resolved.is_none()
        && let (Some(base), Some(req)) = (&sections.base, &file.requested)
    {
        // An empty path with AT_EMPTY_PATH: the dirfd itself is the file.
        file.resolved = Some(join_lexically(base, req));
    }
    let unchanged = |id: u32| (id != u32::MAX).then_some(id);
    let (to, content, flags) = change_names(action, *flags, sections);
    let detail = Change {
        to,
        content,
        mode: matches!(action, Action::Chmod | Action::Mkdir).then_some(*mode),
        owner: (action == Action::Chown).then_some((unchanged(*uid), unchanged(*gid))),
        length: (action == Action::Truncate).then_some(*length),
        flags,
        dirfd: (*dirfd != AT_FDCWD && *fd < 0).then_some(*dirfd),
        fd: (*fd >= 0).then_some(*fd),
    };
    Some((Target::File(file), Detail::Change(detail)))
}

/// io_uring opcodes audit-agent records, and their names.
const URING_OPS: &[(u8, &str)] = &[
    (9, "sendmsg"),
    (16, "connect"),
    (18, "openat"),
    (26, "send"),
    (28, "openat2"),
    (35, "renameat"),
    (36, "unlinkat"),
    (37, "mkdirat"),
    (38, "symlinkat"),
    (39, "linkat"),
    (47, "send_zc"),
    (48, "sendmsg_zc"),
    (55, "ftruncate"),
];

pub(super) fn uring_op_name(op: u8) -> &'static str {
    URING_OPS
        .iter()
        .find(|(o, _)| *o == op)
        .map_or("unknown", |(_, n)| n)
}

/// The action an io_uring request performs.
pub(super) fn uring_action(op: u8, flags: u32, addr: Option<&SockAddr>) -> Option<Action> {
    Some(match op {
        18 | 28 => Action::Open,
        16 => Action::Connect,
        9 | 26 | 47 | 48 if addr.is_some() => Action::Send,
        35 => Action::Rename,
        36 if flags & AT_REMOVEDIR != 0 => Action::Rmdir,
        36 => Action::Delete,
        37 => Action::Mkdir,
        38 => Action::Symlink,
        39 => Action::Link,
        55 => Action::Truncate,
        _ => return None,
    })
}

/// An io_uring request's resource: the same fields as the system call it stands for.
fn uring(ev: &KernelEvent) -> Option<(Target, Detail)> {
    let Body::Uring {
        opcode,
        fd,
        flags,
        open_flags,
        mode,
        resolve,
        length,
        addr,
        fixed,
        sections,
        ..
    } = &ev.body
    else {
        return None;
    };
    let action = uring_action(*opcode, *flags, addr.as_ref())?;
    if matches!(action, Action::Connect | Action::Send) {
        let (target, mut detail) = connect(ev, addr.as_ref(), None, sections);
        if let Detail::Connect { from_kernel, .. } = &mut detail {
            *from_kernel = true;
        }
        return Some((target, detail));
    }
    let file = file_ref(ev, sections);
    let dirfd = (*fd != AT_FDCWD && !*fixed).then_some(*fd);
    if action == Action::Open {
        return Some((
            Target::File(file),
            Detail::Open {
                flags: *open_flags,
                mode: *mode as u32,
                dirfd,
                resolve: *resolve,
            },
        ));
    }
    let (to, content, flags) = change_names(action, *flags, sections);
    let change = Change {
        to,
        content,
        mode: (action == Action::Mkdir).then_some(*mode as u32),
        owner: None,
        length: (action == Action::Truncate).then_some(*length),
        flags,
        dirfd: if action == Action::Truncate {
            None
        } else {
            dirfd
        },
        fd: (action == Action::Truncate).then_some(*fd),
    };
    Some((Target::File(file), Detail::Change(change)))
}
