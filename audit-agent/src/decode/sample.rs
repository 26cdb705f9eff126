//! Decoded kernel events for tests of the stages after decoding, shaped as the kernel side
//! produces them (see `audit-ebpf`): a successful open names its file by a kernel walk, a failed
//! one carries the directory its path was resolved from.

use audit_common::event::{FileFacts, Syscall, file_flags};

use super::{Body, Exe, KernelEvent, KernelPath, Sections, Task};

/// Device 8:1, the facts' mount namespace.
pub(crate) const DEV: u32 = (8 << 20) | 1;
pub(crate) const MNT_NS: u32 = 4_026_531_841;

pub(crate) fn task(pid: u32, tid: u32, ktime_ns: u64) -> Task {
    Task {
        pid,
        tid,
        ppid: 1,
        uid: 1000,
        gid: 1000,
        cgroup_id: 1,
        comm: b"cat".to_vec(),
        ktime_ns,
    }
}

/// Facts of a regular file reached through mount 21.
pub(crate) fn facts(ino: u64) -> FileFacts {
    FileFacts {
        ino,
        dev: DEV,
        mnt_id: 21,
        mnt_ns: MNT_NS,
        mode: 0o100_644,
        flags: file_flags::VALID,
    }
}

pub(crate) fn kpath(path: &str, ino: u64) -> KernelPath {
    KernelPath {
        path: path.as_bytes().to_vec(),
        facts: facts(ino),
        under: None,
    }
}

/// What the kernel records for an open of `path`: on success the file it opened (`object`, by
/// default `path` itself), on failure the directory `path` was resolved from.
pub(crate) struct Open {
    pub(crate) tid: u32,
    pub(crate) requested: Option<&'static str>,
    pub(crate) object: Option<KernelPath>,
    pub(crate) base: Option<&'static str>,
    pub(crate) retval: i64,
    pub(crate) flags: u32,
}

impl Open {
    /// A successful open of `path`, its kernel path the same.
    pub(crate) fn ok(tid: u32, path: &'static str, ino: u64) -> Self {
        Self {
            tid,
            requested: Some(path),
            object: Some(kpath(path, ino)),
            base: None,
            retval: 3,
            flags: 0,
        }
    }

    /// A failed open of `path` resolved from `base`.
    pub(crate) fn failed(tid: u32, path: &'static str, base: &'static str, errno: i64) -> Self {
        Self {
            tid,
            requested: Some(path),
            object: None,
            base: Some(base),
            retval: -errno,
            flags: 0,
        }
    }

    pub(crate) fn event(self) -> KernelEvent {
        KernelEvent {
            task: task(100, self.tid, u64::from(self.tid) * 1000),
            flags: self.flags,
            retval: self.retval,
            body: Body::Open {
                syscall: Syscall::Openat,
                dirfd: -100,
                flags: 0,
                mode: 0,
                resolve: 0,
                sections: Sections {
                    requested: self.requested.map(|p| p.as_bytes().to_vec()),
                    kpath: self.object,
                    base: self.base.map(|b| b.as_bytes().to_vec()),
                    exe: Exe {
                        facts: Some(facts(500)),
                        path: None,
                    },
                    ..Sections::default()
                },
            },
        }
    }
}

/// A successful open of `path` by thread `tid` (the pipeline tests' workhorse).
pub(crate) fn open(tid: u32, path: &'static str, retval: i64) -> KernelEvent {
    if retval >= 0 {
        let mut o = Open::ok(tid, path, u64::from(tid));
        o.retval = retval;
        o.event()
    } else {
        Open::failed(tid, path, "/", -retval).event()
    }
}
