//! Decode: raw ring-buffer records (bytes laid out by `audit_common::event`) -> [`KernelEvent`].
//!
//! Nothing here trusts lengths blindly: every length is checked against the record size, so a
//! malformed record is a [`DecodeError`], never a panic.

use audit_common::event::{
    COMM_LEN, ConnectBody, EXEC_VAR_OFFSET, EventHeader, EventKind, ExecBody, ForkBody, HEADER_LEN,
    OPEN_PATH_OFFSET, OpenBody, Syscall,
};
use thiserror::Error;

use crate::{escape::until_nul, linux::SockAddr};

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record kind {0} is unknown")]
    UnknownKind(u16),
    #[error("{kind:?} record body of {len} bytes is shorter than its fixed part ({need})")]
    ShortBody {
        kind: EventKind,
        len: usize,
        need: usize,
    },
}

/// Who did it, as the kernel saw it at syscall entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) ppid: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cgroup_id: u64,
    pub(crate) comm: Vec<u8>,
    /// `CLOCK_BOOTTIME` ns at syscall entry.
    pub(crate) ktime_ns: u64,
}

/// A decoded kernel record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelEvent {
    pub(crate) task: Task,
    /// [`ev::flags`] bits.
    pub(crate) flags: u16,
    /// Syscall return value (negative errno); meaningless with `flags::INCOMPLETE`.
    pub(crate) retval: i64,
    pub(crate) body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Exec {
        syscall: Syscall,
        dirfd: i32,
        at_flags: u32,
        argv: Vec<Vec<u8>>,
        /// Kernel's filename on success (`flags::KERNEL_FILENAME`), requested path otherwise.
        path: Vec<u8>,
    },
    Open {
        syscall: Syscall,
        dirfd: i32,
        flags: u64,
        mode: u32,
        resolve: u64,
        path: Vec<u8>,
    },
    Connect {
        fd: i32,
        addr: SockAddr,
    },
    Fork {
        child_pid: u32,
    },
    Exit,
}

impl KernelEvent {
    pub(crate) fn has_flag(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

fn read<T: Copy>(bytes: &[u8], at: usize) -> Option<T> {
    let end = at.checked_add(std::mem::size_of::<T>())?;
    let b = bytes.get(at..end)?;
    // SAFETY: the slice has exactly size_of::<T>() bytes and T is a plain-data repr(C) type.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub(crate) fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let h: EventHeader = read(bytes, 0).ok_or(DecodeError::Short(bytes.len()))?;
    let kind = EventKind::from_u16(h.kind).ok_or(DecodeError::UnknownKind(h.kind))?;
    let body_bytes = &bytes[HEADER_LEN..];
    let body_bytes = &body_bytes[..usize::from(h.body_len).min(body_bytes.len())];
    decode_parts(&h, kind, body_bytes)
}

/// Decodes a record from its header and body bytes (also used for pending slots read from the
/// kernel map at shutdown).
pub(crate) fn decode_parts(
    h: &EventHeader,
    kind: EventKind,
    body: &[u8],
) -> Result<KernelEvent, DecodeError> {
    let short = |need: usize| DecodeError::ShortBody {
        kind,
        len: body.len(),
        need,
    };
    let syscall = Syscall::from_u16(h.syscall);
    let body = match kind {
        EventKind::Exec => {
            let f: ExecBody = read(body, 0).ok_or_else(|| short(EXEC_VAR_OFFSET))?;
            let var = &body[EXEC_VAR_OFFSET..];
            let argv_len = (f.argv_len as usize).min(var.len());
            let path_len = (f.path_len as usize).min(var.len() - argv_len);
            let argv = var[..argv_len]
                .split(|&b| b == 0)
                .take(f.argc as usize)
                .map(<[u8]>::to_vec)
                .collect();
            Body::Exec {
                syscall: syscall.unwrap_or(Syscall::Execve),
                dirfd: f.dirfd,
                at_flags: f.at_flags,
                argv,
                path: until_nul(&var[argv_len..argv_len + path_len]).to_vec(),
            }
        }
        EventKind::Open => {
            let f: OpenBody = read(body, 0).ok_or_else(|| short(OPEN_PATH_OFFSET))?;
            let var = &body[OPEN_PATH_OFFSET..];
            let path_len = (f.path_len as usize).min(var.len());
            Body::Open {
                syscall: syscall.unwrap_or(Syscall::Openat),
                dirfd: f.dirfd,
                flags: f.flags,
                mode: f.mode,
                resolve: f.resolve,
                path: until_nul(&var[..path_len]).to_vec(),
            }
        }
        EventKind::Connect => {
            let f: ConnectBody =
                read(body, 0).ok_or_else(|| short(std::mem::size_of::<ConnectBody>()))?;
            Body::Connect {
                fd: f.fd,
                addr: SockAddr::decode(&f.addr, f.addrlen as usize),
            }
        }
        EventKind::Fork => {
            let f: ForkBody =
                read(body, 0).ok_or_else(|| short(std::mem::size_of::<ForkBody>()))?;
            Body::Fork {
                child_pid: f.child_pid,
            }
        }
        EventKind::Exit => Body::Exit,
    };
    Ok(KernelEvent {
        task: Task {
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            cgroup_id: h.cgroup_id,
            comm: until_nul(&h.comm[..COMM_LEN]).to_vec(),
            ktime_ns: h.ktime_ns,
        },
        flags: h.flags,
        retval: h.retval,
        body,
    })
}

/// The action name of a kernel event kind, as gap records and metrics count losses
/// (`process.lifecycle` for fork and exit records).
pub(crate) fn kind_name(kind: usize) -> &'static str {
    use crate::event::Action;
    match kind {
        k if k == EventKind::Exec as usize => Action::Exec.name(),
        k if k == EventKind::Open as usize => Action::Open.name(),
        k if k == EventKind::Connect as usize => Action::Connect.name(),
        _ => "process.lifecycle",
    }
}

#[cfg(test)]
/// Encodes a record the way the kernel lays it out (for tests and benchmarks of later stages).
pub(crate) fn encode_for_test(h: &EventHeader, body: &[u8]) -> Vec<u8> {
    let mut h = *h;
    h.body_len = body.len() as u16;
    let mut out = vec![0u8; HEADER_LEN];
    // SAFETY: out has HEADER_LEN bytes, EventHeader is repr(C) plain data of that size.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<EventHeader>(), h) };
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
/// Raw bytes of a plain-data struct (for building test records).
pub(crate) fn struct_bytes<T: Copy>(v: &T) -> Vec<u8> {
    let mut out = vec![0u8; std::mem::size_of::<T>()];
    // SAFETY: out has size_of::<T>() bytes.
    unsafe { std::ptr::write_unaligned(out.as_mut_ptr().cast::<T>(), *v) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_common::event::flags;

    fn header(kind: EventKind, syscall: u16) -> EventHeader {
        let mut h = EventHeader::ZERO;
        h.kind = kind as u16;
        h.syscall = syscall;
        h.pid = 10;
        h.tid = 11;
        h.ppid = 1;
        h.uid = 1000;
        h.gid = 1000;
        h.cgroup_id = 42;
        h.ktime_ns = 123;
        h.retval = -2;
        h.comm[..3].copy_from_slice(b"cat");
        h
    }

    #[test]
    fn open_record_decodes_path_and_arguments() {
        let fixed = OpenBody {
            dirfd: -100,
            mode: 0o644,
            flags: 0o101,
            resolve: 0,
            path_len: 10,
            _pad: 0,
        };
        let mut body = struct_bytes(&fixed);
        body.extend_from_slice(b"/etc/\xffxyz\0");
        let ev = decode(&encode_for_test(
            &header(EventKind::Open, Syscall::Openat as u16),
            &body,
        ))
        .unwrap();
        assert_eq!(ev.task.comm, b"cat");
        assert_eq!(ev.task.cgroup_id, 42);
        assert_eq!(ev.retval, -2);
        assert_eq!(
            ev.body,
            Body::Open {
                syscall: Syscall::Openat,
                dirfd: -100,
                flags: 0o101,
                mode: 0o644,
                resolve: 0,
                path: b"/etc/\xffxyz".to_vec()
            }
        );
    }

    #[test]
    fn exec_record_splits_argv_and_path() {
        let fixed = ExecBody {
            dirfd: -100,
            at_flags: 0,
            argc: 3,
            argv_len: 14,
            path_len: 10,
            _pad: 0,
        };
        let mut body = struct_bytes(&fixed);
        body.extend_from_slice(b"true\0-a\0hello\0/bin/true\0");
        let mut h = header(EventKind::Exec, Syscall::Execve as u16);
        h.flags = flags::KERNEL_FILENAME;
        let ev = decode(&encode_for_test(&h, &body)).unwrap();
        let Body::Exec { argv, path, .. } = &ev.body else {
            panic!("{ev:?}")
        };
        assert_eq!(argv, &[b"true".to_vec(), b"-a".to_vec(), b"hello".to_vec()]);
        assert_eq!(path, b"/bin/true");
        assert!(ev.has_flag(flags::KERNEL_FILENAME));
    }

    #[test]
    fn lying_lengths_are_clamped_not_trusted() {
        let fixed = OpenBody {
            dirfd: 3,
            mode: 0,
            flags: 0,
            resolve: 0,
            path_len: 60_000,
            _pad: 0,
        };
        let mut body = struct_bytes(&fixed);
        body.extend_from_slice(b"abc");
        let ev = decode(&encode_for_test(&header(EventKind::Open, 3), &body)).unwrap();
        assert!(matches!(ev.body, Body::Open { ref path, .. } if path == b"abc"));
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(decode(&[0; 10]), Err(DecodeError::Short(10)));
        let mut h = header(EventKind::Open, 3);
        h.kind = 99;
        assert_eq!(
            decode(&encode_for_test(&h, &[])),
            Err(DecodeError::UnknownKind(99))
        );
        assert!(matches!(
            decode(&encode_for_test(&header(EventKind::Open, 3), &[1, 2])),
            Err(DecodeError::ShortBody { .. })
        ));
    }

    #[test]
    fn connect_record_decodes_the_socket_address() {
        let mut addr = [0u8; audit_common::event::SOCKADDR_MAX];
        addr[..8].copy_from_slice(&[2, 0, 0x1f, 0x90, 127, 0, 0, 1]);
        let body = struct_bytes(&ConnectBody {
            fd: 3,
            addrlen: 16,
            addr,
        });
        let ev = decode(&encode_for_test(&header(EventKind::Connect, 7), &body)).unwrap();
        assert_eq!(
            ev.body,
            Body::Connect {
                fd: 3,
                addr: SockAddr::Inet(std::net::Ipv4Addr::LOCALHOST, 8080)
            }
        );
    }
}
