//! Enrich: the transform stage that turns a decoded kernel event into a typed [`Event`]:
//! wall-clock time, host, process image (exe, exec ids), cgroup path, and the absolute path of
//! relative opens/execs.
//!
//! Lifecycle events (fork, exit) only update the process table and produce no event.

pub(crate) mod host;
mod process;

use std::sync::Arc;

use audit_common::event::flags;

use self::{host::HostInfo, process::ProcessTable};
use crate::{
    capture::cgroup::{Cgroup2, CgroupPaths},
    decode::{Body as KernelBody, KernelEvent},
    event::{
        Action, Activity, Body, Detail, Event, Field, FileRef, Host, Outcome, Process, Resource,
        Subject, Target,
    },
    linux::SockAddr,
    time::BootClock,
};

const AT_FDCWD: i32 = -100;

pub(crate) struct Enricher {
    host: Arc<Host>,
    /// The stream of unsequenced events (the sequencer sets the real one).
    unsequenced: Arc<str>,
    clock: BootClock,
    cgroups: CgroupPaths,
    procs: ProcessTable,
}

impl Enricher {
    pub(crate) fn new(host: &HostInfo, cgroup2: Cgroup2) -> Self {
        Self {
            host: Arc::new(Host {
                name: host.name.clone(),
                boot_id: host.boot_id.clone(),
            }),
            unsequenced: Arc::from(""),
            clock: BootClock::new(),
            cgroups: CgroupPaths::new(cgroup2),
            procs: ProcessTable::new(host.boot_short()),
        }
    }

    /// Re-samples the boot-clock offset (call periodically; NTP slews the wall clock).
    pub(crate) fn refresh_clock(&mut self) {
        self.clock.refresh();
    }

    pub(crate) fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Turns an event into a typed one; lifecycle events update state and return `None`.
    pub(crate) fn enrich(&mut self, ev: KernelEvent) -> Option<Event> {
        let t = &ev.task;
        // The acting image: for an exec, the one that called it (the exec below replaces it).
        let img = self.procs.get(t.pid).clone();
        let (action, syscall, resource) = match &ev.body {
            KernelBody::Fork { child_pid } => {
                self.procs.on_fork(t.pid, *child_pid, t.ktime_ns);
                return None;
            }
            KernelBody::Exit => {
                self.procs.on_exit(t.pid);
                return None;
            }
            KernelBody::Exec { syscall, .. } => (Action::Exec, syscall.name(), self.exec(&ev)),
            KernelBody::Open { syscall, .. } => (Action::Open, syscall.name(), open(&ev)),
            KernelBody::Connect { addr, .. } => (Action::Connect, "connect", connect(addr)),
        };
        let outcome = if ev.has_flag(flags::INCOMPLETE) {
            Outcome::Unknown
        } else {
            Outcome::from_retval(ev.retval, action == Action::Connect)
        };
        let activity = Activity {
            action,
            syscall,
            process: Process {
                pid: t.pid,
                tid: t.tid,
                ppid: t.ppid,
                comm: t.comm.clone(),
                exe: img.exe,
                exec_id: Some(img.exec_id),
                parent_exec_id: img.parent_exec_id,
            },
            subject: Subject {
                uid: t.uid,
                gid: t.gid,
                cgroup_id: t.cgroup_id,
                cgroup: self.cgroups.path(t.cgroup_id),
                container_id: None,
                k8s: None,
            },
            agent: None,
            resource,
            outcome,
            protected: Vec::new(),
            verdict: None,
        };
        Some(Event {
            time: self.clock.to_wall(t.ktime_ns),
            host: Arc::clone(&self.host),
            seq: 0,
            stream: Arc::clone(&self.unsequenced),
            body: Body::Activity(Box::new(activity)),
        })
    }

    /// An exec's resource; a successful exec also starts a new image in the process table.
    fn exec(&mut self, ev: &KernelEvent) -> Resource {
        let KernelBody::Exec {
            dirfd, argv, path, ..
        } = &ev.body
        else {
            unreachable!("called for exec events only")
        };
        let file = FileRef {
            resolved: resolve(ev.task.pid, *dirfd, path),
            requested: path.clone(),
        };
        let new_exec_id = (ev.retval == 0 && !ev.has_flag(flags::INCOMPLETE)).then(|| {
            let exe = Arc::from(file.path());
            self.procs.on_exec(ev.task.pid, Some(exe), ev.task.ktime_ns)
        });
        Resource {
            target: Target::File(file),
            detail: Detail::Exec {
                argv: argv.clone(),
                dirfd: (*dirfd != AT_FDCWD).then_some(*dirfd),
                new_exec_id,
            },
            truncated: truncated(ev),
        }
    }
}

fn truncated(ev: &KernelEvent) -> Vec<Field> {
    let mut t = Vec::new();
    if ev.has_flag(flags::PATH_TRUNCATED) {
        t.push(Field::Path);
    }
    if ev.has_flag(flags::ARGV_TRUNCATED) {
        t.push(Field::Argv);
    }
    t
}

fn open(ev: &KernelEvent) -> Resource {
    let KernelBody::Open {
        dirfd,
        flags,
        mode,
        path,
        ..
    } = &ev.body
    else {
        unreachable!("called for open events only")
    };
    Resource {
        target: Target::File(FileRef {
            resolved: resolve(ev.task.pid, *dirfd, path),
            requested: path.clone(),
        }),
        detail: Detail::Open {
            flags: *flags,
            mode: *mode,
            dirfd: (*dirfd != AT_FDCWD).then_some(*dirfd),
        },
        truncated: truncated(ev),
    }
}

fn connect(addr: &SockAddr) -> Resource {
    let target = match addr {
        SockAddr::Inet(ip, port) => Target::Inet((*ip).into(), *port),
        SockAddr::Inet6(ip, port) => Target::Inet((*ip).into(), *port),
        SockAddr::Unix(path) => Target::Unix(path.clone()),
        SockAddr::Unspec => Target::OtherAddress { family: 0 },
        SockAddr::Other(f) | SockAddr::Malformed(f) => Target::OtherAddress { family: *f },
    };
    Resource {
        target,
        detail: Detail::Connect,
        truncated: Vec::new(),
    }
}

/// Absolute form of a relative `path`, resolved against the directory it was relative to (the
/// process's cwd for `AT_FDCWD`, else `dirfd`), read from /proc at enrichment time. `None` when
/// the path is already absolute or the process is gone.
fn resolve(pid: u32, dirfd: i32, path: &[u8]) -> Option<Vec<u8>> {
    // Absolute paths need nothing; an empty path names no file (ENOENT, or the dirfd itself with
    // AT_EMPTY_PATH, which `dirfd` already records).
    if path.is_empty() || path.first() == Some(&b'/') {
        return None;
    }
    let base = if dirfd == AT_FDCWD {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
    } else {
        std::fs::read_link(format!("/proc/{pid}/fd/{dirfd}")).ok()?
    };
    let base = base.as_os_str().as_encoded_bytes();
    if base.first() != Some(&b'/') {
        return None; // e.g. "anon_inode:[...]": not a directory path
    }
    Some(join_lexically(base, path))
}

/// Joins and normalizes `.` and `..` without touching the filesystem.
fn join_lexically(base: &[u8], rel: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_lexically() {
        assert_eq!(join_lexically(b"/home/a", b"x/./y"), b"/home/a/x/y");
        assert_eq!(join_lexically(b"/home/a", b"../b"), b"/home/b");
        assert_eq!(join_lexically(b"/", b"../../etc"), b"/etc");
        assert_eq!(join_lexically(b"/tmp", b""), b"/tmp");
    }
}
