//! Enrich: the transform stage that turns a decoded kernel event into an audit [`Record`]:
//! wall-clock time, host, process image (exe, exec ids), cgroup path, symbolic flags, errno names,
//! and the absolute path of relative opens/execs.
//!
//! Lifecycle events (fork, exit) only update the process table and produce no record.

pub mod host;
pub mod process;

use std::{borrow::Cow, sync::Arc};

use audit_common::event::flags;

use self::{host::HostInfo, process::ProcessTable};
use crate::{
    capture::cgroup::{Cgroup2, CgroupPaths},
    decode::{Body, KernelEvent},
    escape::escape_bytes,
    linux::{self, SockAddr},
    record::{self, Host, Outcome, Process, Record, Resource, Subject, action, outcome},
    timefmt::{BootClock, rfc3339_nanos},
};

const AT_FDCWD: i32 = -100;

pub struct Enricher {
    host: Arc<Host>,
    clock: BootClock,
    cgroups: CgroupPaths,
    procs: ProcessTable,
}

impl Enricher {
    pub fn new(host: &HostInfo, cgroup2: Cgroup2) -> Self {
        Self {
            host: Arc::new(Host {
                name: host.name.clone(),
                boot_id: host.boot_id.clone(),
            }),
            clock: BootClock::new(),
            cgroups: CgroupPaths::new(cgroup2),
            procs: ProcessTable::new(host.boot_short()),
        }
    }

    /// Re-samples the boot-clock offset (call periodically; NTP slews the wall clock).
    pub fn refresh_clock(&mut self) {
        self.clock.refresh();
    }

    pub fn clock(&self) -> &BootClock {
        &self.clock
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Remembers the path of a cgroup the agent knows about (e.g. one it created).
    pub fn know_cgroup(&mut self, id: u64, path: String) {
        self.cgroups.insert(id, path);
    }

    /// Resolves a cgroup id to its path.
    pub fn cgroup_path(&mut self, id: u64) -> Option<Arc<str>> {
        self.cgroups.path(id)
    }

    /// Turns an event into a record; lifecycle events update state and return `None`.
    pub fn enrich(&mut self, ev: KernelEvent) -> Option<Record> {
        let t = &ev.task;
        match &ev.body {
            Body::Fork { child_pid } => {
                self.procs.on_fork(t.pid, *child_pid, t.ktime_ns);
                return None;
            }
            Body::Exit => {
                self.procs.on_exit(t.pid);
                return None;
            }
            _ => {}
        }
        let img = self.procs.get(t.pid).clone();
        let unix_ns = self.clock.to_unix_ns(t.ktime_ns);
        let incomplete = ev.has_flag(flags::INCOMPLETE);
        let mut truncated = Vec::new();
        if ev.has_flag(flags::PATH_TRUNCATED) {
            truncated.push("path".to_string());
        }
        if ev.has_flag(flags::ARGV_TRUNCATED) {
            truncated.push("argv".to_string());
        }

        let (act, syscall, resource) = match &ev.body {
            Body::Exec {
                syscall,
                dirfd,
                argv,
                path,
                ..
            } => {
                let resolved = resolve(t.pid, *dirfd, path);
                let mut r = Resource {
                    path: Some(escape_bytes(path)),
                    resolved_path: resolved.clone(),
                    argv: Some(argv.iter().map(|a| escape_bytes(a)).collect()),
                    dirfd: (*dirfd != AT_FDCWD).then_some(*dirfd),
                    truncated,
                    ..Default::default()
                };
                if ev.retval == 0 && !incomplete {
                    let exe = resolved.or_else(|| r.path.clone()).map(Arc::from);
                    r.exec_id = Some(self.procs.on_exec(t.pid, exe, t.ktime_ns));
                }
                (action::EXEC, syscall.name(), r)
            }
            Body::Open {
                syscall,
                dirfd,
                flags: oflags,
                mode,
                path,
                ..
            } => (
                action::OPEN,
                syscall.name(),
                Resource {
                    path: Some(escape_bytes(path)),
                    resolved_path: resolve(t.pid, *dirfd, path),
                    flags: Some(linux::open_flag_names(*oflags)),
                    mode: linux::open_creates(*oflags).then(|| format!("{mode:04o}")),
                    dirfd: (*dirfd != AT_FDCWD).then_some(*dirfd),
                    truncated,
                    ..Default::default()
                },
            ),
            Body::Connect { addr, .. } => {
                let (address, port) = match addr {
                    SockAddr::Inet(ip, port) => (Some(ip.to_string()), Some(*port)),
                    SockAddr::Inet6(ip, port) => (Some(ip.to_string()), Some(*port)),
                    SockAddr::Unix(path) => (Some(unix_address(path)), None),
                    _ => (None, None),
                };
                (
                    action::CONNECT,
                    "connect",
                    Resource {
                        family: Some(addr.family()),
                        address,
                        port,
                        ..Default::default()
                    },
                )
            }
            Body::Fork { .. } | Body::Exit => return None,
        };

        let result = if incomplete {
            Outcome {
                outcome: Cow::Borrowed(outcome::UNKNOWN),
                retval: None,
                errno: None,
            }
        } else if ev.retval >= 0 {
            Outcome {
                outcome: Cow::Borrowed(outcome::SUCCESS),
                retval: Some(ev.retval),
                errno: None,
            }
        } else {
            let errno = i32::try_from(-ev.retval).unwrap_or(0);
            let in_progress = act == action::CONNECT && errno == linux::EINPROGRESS;
            Outcome {
                outcome: Cow::Borrowed(if in_progress {
                    outcome::IN_PROGRESS
                } else {
                    outcome::FAILURE
                }),
                retval: Some(ev.retval),
                errno: Some(
                    linux::errno_name(errno)
                        .map_or_else(|| Cow::Owned(format!("E{errno}")), Cow::Borrowed),
                ),
            }
        };

        Some(Record {
            schema: record::SCHEMA.into(),
            id: String::new(),
            seq: 0,
            time: rfc3339_nanos(unix_ns),
            host: Arc::clone(&self.host),
            action: act.into(),
            syscall: Some(syscall.into()),
            agent: None,
            process: Some(Process {
                pid: t.pid,
                tid: t.tid,
                ppid: t.ppid,
                comm: escape_bytes(&t.comm),
                exe: img.exe,
                exec_id: Some(img.exec_id),
                parent_exec_id: img.parent_exec_id,
            }),
            subject: Some(Subject {
                uid: t.uid,
                gid: t.gid,
                cgroup_id: t.cgroup_id,
                cgroup: self.cgroups.path(t.cgroup_id),
                container_id: None,
                k8s: None,
            }),
            resource: Some(resource),
            result: Some(result),
            protected: None,
            policy: None,
            gap: None,
            unix_ns,
        })
    }
}

/// `@name` for abstract unix sockets (NULs inside the name escaped), the path otherwise.
fn unix_address(path: &[u8]) -> String {
    match path.split_first() {
        Some((0, name)) => format!("@{}", escape_bytes(name)),
        _ => escape_bytes(path),
    }
}

/// Absolute form of a relative `path`, resolved against the directory it was relative to (the
/// process's cwd for `AT_FDCWD`, else `dirfd`), read from /proc at enrichment time. `None` when
/// the path is already absolute or the process is gone.
fn resolve(pid: u32, dirfd: i32, path: &[u8]) -> Option<String> {
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
    Some(escape_bytes(&join_lexically(base, path)))
}

/// Joins and normalizes `.` and `..` without touching the filesystem.
pub fn join_lexically(base: &[u8], rel: &[u8]) -> Vec<u8> {
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

    #[test]
    fn abstract_unix_names_get_an_at_sign() {
        assert_eq!(unix_address(b"\0my\0sock"), "@my\\x00sock");
        assert_eq!(unix_address(b"/run/a.sock"), "/run/a.sock");
    }
}
