//! Decode: raw ring-buffer records (bytes laid out by `audit_common::event`) -> [`KernelEvent`].
//!
//! Nothing here trusts lengths blindly: every section is checked against the record size, so a
//! malformed record is a [`DecodeError`], never a panic. Kernel path walks (components leaf
//! first) become absolute paths here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use audit_common::event::{
    AccessBody, ActionCommon, COMM_LEN, CgroupMoveBody, CompatBody, ConnectBody, ConnectOutcome,
    CopyBody, EventHeader, EventKind, ExecBody, ExitBody, FD_RECEIVED, FdBody, FileBody, FileFacts,
    ForkBody, HEADER_LEN, KernelAddr, MapExecBody, OpenBody, PR_SET_MM_MAP, SetExeBody, SignalBody,
    Span, Syscall, UringBody, UringDoneBody, UringSetupBody, VAR_OFFSET, file_flags, flags,
};
use audit_common::net::{self, PacketBody};
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

/// A path the kernel walked, and the facts of the inode at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelPath {
    /// Absolute (`/etc/shadow`); relative-looking when the walk was cut (the leading components
    /// are missing) or ended on an internal mount (`memfd:x`).
    pub(crate) path: Vec<u8>,
    pub(crate) facts: FileFacts,
    /// For a file on overlayfs (`file_flags::STACKED`): what lies under it; `None` when it could
    /// not be read.
    pub(crate) under: Option<Box<Under>>,
}

/// The files under an overlayfs file, each walked to the root of its filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Under {
    /// The file the kernel reads and writes.
    pub(crate) real: KernelPath,
    /// For an upper file, the lower file it was copied up from.
    pub(crate) origin: Option<KernelPath>,
}

/// The acting image's executable, when the kernel could read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Exe {
    pub(crate) facts: Option<FileFacts>,
    /// Announced once per image (see `EXE_SEEN` in audit-ebpf).
    pub(crate) path: Option<KernelPath>,
}

/// What an action's record carries besides its kind-specific arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sections {
    /// The path as the process passed it; `None` when it could not be read.
    pub(crate) requested: Option<Vec<u8>>,
    /// The object the kernel acted on: the file opened, the executable loaded, a unix peer's
    /// socket file.
    pub(crate) kpath: Option<KernelPath>,
    /// The directory the requested path was resolved from, as the kernel saw it, when there is
    /// no object (a failure; a script).
    pub(crate) base: Option<Vec<u8>>,
    /// exec: the interpreter string of a script; connect: a unix peer's abstract name; file
    /// change: the second path as passed.
    pub(crate) extra: Option<Vec<u8>>,
    /// File change: the directory the second path was resolved from.
    pub(crate) base2: Option<Vec<u8>>,
    /// exec: the arguments; `None` when they could not be read.
    pub(crate) argv: Option<Vec<Vec<u8>>>,
    pub(crate) exe: Exe,
}

/// A decoded kernel record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelEvent {
    pub(crate) task: Task,
    /// [`flags`] bits.
    pub(crate) flags: u32,
    /// Syscall return value (negative errno); meaningless with `flags::INCOMPLETE`.
    pub(crate) retval: i64,
    pub(crate) body: Body,
}

/// The fields of a file change without an open (delete, rename, chmod, chown, truncate, link,
/// mkdir, ...); which apply depends on `syscall`. One type for the 64-bit calls decoded here and
/// the 32-bit ones `enrich/compat.rs` turns into them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileChange {
    pub(crate) syscall: Syscall,
    pub(crate) dirfd: i32,
    pub(crate) dirfd2: i32,
    pub(crate) fd: i32,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) flags: u32,
    pub(crate) length: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Exec {
        syscall: Syscall,
        dirfd: i32,
        at_flags: u32,
        sections: Sections,
    },
    Open {
        syscall: Syscall,
        dirfd: i32,
        flags: u64,
        mode: u32,
        resolve: u64,
        sections: Sections,
    },
    /// A connect, or a send to an address (`syscall` says which).
    Connect {
        syscall: Syscall,
        fd: i32,
        /// The `struct sock *`, to match the outcome of a non-blocking connect.
        sk: u64,
        /// The address as passed; `None` when it could not be read.
        passed: Option<SockAddr>,
        /// The kernel's copy of an IP destination.
        kernel: Option<(IpAddr, u16)>,
        /// The socket's cookie when the socket is watched (its packets carry it too).
        cookie: Option<u64>,
        sections: Sections,
    },
    /// A file change without an open; which fields apply depends on `syscall`.
    File {
        change: FileChange,
        sections: Sections,
    },
    ConnectOutcome(ConnectOutcome),
    /// A watched process moved to cgroup `dst_id` (`path` below the cgroup2 root).
    CgroupMove {
        moved_pid: u32,
        dst_id: u64,
        path: Vec<u8>,
    },
    /// ptrace, process_vm_readv/writev, pidfd_getfd.
    Access {
        syscall: Syscall,
        target_pid: u32,
        pid_from_kernel: bool,
        caller_ns_level: u32,
        target_fd: i32,
        request: u64,
        addr: u64,
        sections: Sections,
    },
    /// An io_uring request as submitted (paths and destination are the kernel's copies).
    Uring {
        req: u64,
        user_data: u64,
        opcode: u8,
        fd: i32,
        dfd2: i32,
        flags: u32,
        open_flags: u64,
        mode: u64,
        resolve: u64,
        length: u64,
        /// The destination (connect, send), when the request has one.
        addr: Option<SockAddr>,
        fixed: bool,
        sections: Sections,
    },
    /// The completion of a recorded io_uring request.
    UringDone {
        req: u64,
        res: i64,
        sections: Sections,
    },
    /// A watched process created an io_uring instance.
    UringSetup {
        fd: i32,
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
    },
    /// A 32-bit system call: its ia32 number and argument registers as passed; a connect's or
    /// send's destination from the kernel. Enrichment names it and records it as the action it
    /// is (`enrich/compat.rs`).
    Compat {
        nr: u32,
        args: [u64; 6],
        kernel: Option<(IpAddr, u16)>,
        cookie: Option<u64>,
        sections: Sections,
    },
    /// A file mapped executable (mmap, mprotect): the call's arguments, the mapping made.
    MapExec {
        syscall: Syscall,
        addr: u64,
        len: u64,
        prot: u32,
        flags: u32,
        fd: i32,
        /// The image runs without an ELF interpreter (the loader itself, or a static program).
        no_interp: bool,
        /// The mapping's range (`vm_start`, `vm_end`).
        mapped: (u64, u64),
        sections: Sections,
    },
    /// A watched process signalled the agent.
    Signal {
        sig: u32,
        target_pid: u32,
        result: i32,
    },
    Fork {
        child_pid: u32,
    },
    /// The process ended; its wait status.
    Exit {
        status: u32,
    },
    /// Payload a watched socket sent or received (the task is the socket's owner).
    Packet(Box<Packet>),
    /// `prctl(PR_SET_MM)` replacing what `mm->exe_file` names: the file before (`sections.kpath`),
    /// after (`new`), and the image's own executable (`sections.exe`).
    SetExe {
        /// Through `PR_SET_MM_MAP` (else `PR_SET_MM_EXE_FILE`).
        map: bool,
        fd: i32,
        new: Option<KernelPath>,
        changed: bool,
        changes: u32,
        sections: Sections,
    },
    /// A file in the fd table the process did not open on record (`sections.kpath`).
    Fd {
        syscall: Syscall,
        fd: i32,
        /// Received on this unix socket (else held when the process was first seen).
        received_on: Option<i32>,
        sections: Sections,
    },
    /// sendfile, splice, copy_file_range: from `sections.kpath` to `to`.
    Copy {
        syscall: Syscall,
        in_fd: i32,
        out_fd: i32,
        to: Option<KernelPath>,
        len: u64,
        flags: u32,
        sections: Sections,
    },
}

/// Which way a packet went, seen from the watched socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    Egress,
    Ingress,
}

/// The transport a packet used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    Tcp,
    Udp,
}

/// A packet of a watched socket, as its headers say and as far as its payload was captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packet {
    /// The socket's cookie: the connection id.
    pub(crate) cookie: u64,
    pub(crate) direction: Direction,
    pub(crate) transport: Transport,
    /// This socket's end and the peer's, from the packet's IP and transport headers.
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    /// TCP: where `data` starts in the stream (0: the first byte after the SYN).
    pub(crate) offset: u32,
    /// Payload bytes the packet carried.
    pub(crate) payload_len: u32,
    pub(crate) tcp_flags: u8,
    /// The local / remote port is a DNS port.
    pub(crate) local_dns_port: bool,
    pub(crate) remote_dns_port: bool,
    /// The captured payload: all of it, unless the record's or the stream's limit cut it.
    pub(crate) data: Vec<u8>,
}

impl Packet {
    /// Whether less was captured than the packet carried.
    pub(crate) fn cut(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.payload_len)
    }
}

impl KernelEvent {
    pub(crate) fn has_flag(&self, flag: u32) -> bool {
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

/// A section's bytes, if it lies inside the body.
fn span(body: &[u8], s: Span) -> Option<&[u8]> {
    if s.len == 0 {
        return None;
    }
    let start = VAR_OFFSET.checked_add(usize::from(s.off))?;
    body.get(start..start.checked_add(usize::from(s.len))?)
}

/// Turns a walk (components leaf first, each NUL-terminated) into a path.
pub(crate) fn walk_to_path(walk: &[u8], facts: &FileFacts) -> Vec<u8> {
    // Root first: the walk read backwards (no list of components: this runs for every record).
    let comps = walk
        .rsplit(|&b| b == 0)
        .filter(|c| !c.is_empty() && *c != b"/");
    let cut = facts.flags & file_flags::CUT != 0;
    let detached = facts.flags & file_flags::DETACHED != 0;
    let mut out = Vec::with_capacity(walk.len() + 1);
    for (i, c) in comps.enumerate() {
        if i > 0 || !(cut || detached) {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn kernel_path(body: &[u8], s: Span, facts: FileFacts) -> Option<KernelPath> {
    let walk = span(body, s).unwrap_or_default();
    (facts.flags & file_flags::VALID != 0 || !walk.is_empty()).then(|| KernelPath {
        path: walk_to_path(walk, &facts),
        facts,
        under: None,
    })
}

/// A second file the kernel walked into the `extra` section (a replaced executable's new file, a
/// copy's destination), with its own facts.
fn second_walk(body: &[u8], s: Span, facts: FileFacts) -> Option<KernelPath> {
    let walk = span(body, s)?;
    Some(KernelPath {
        path: walk_to_path(walk, &facts),
        facts,
        under: None,
    })
}

/// The walk of the object acted on, with the files under it when it is on overlayfs.
fn object_path(body: &[u8], c: &ActionCommon) -> Option<KernelPath> {
    let mut k = kernel_path(body, c.sections.kpath, c.file)?;
    if c.file.flags & file_flags::STACKED != 0 && c.real.flags & file_flags::VALID != 0 {
        k.under = kernel_path(body, c.sections.real, c.real).map(|real| {
            Box::new(Under {
                real,
                origin: kernel_path(body, c.sections.origin, c.origin),
            })
        });
    }
    Some(k)
}

/// The sections of an action body.
fn sections(h: &EventHeader, body: &[u8], c: &ActionCommon) -> Sections {
    let s = c.sections;
    let text = |sp: Span| span(body, sp).map(|b| until_nul(b).to_vec());
    let argv = span(body, s.argv).map(|b| {
        let args = b.strip_suffix(&[0]).unwrap_or(b).split(|&x| x == 0);
        match s.argc {
            0 => args.map(<[u8]>::to_vec).collect(),
            n => args.take(usize::from(n)).map(<[u8]>::to_vec).collect(),
        }
    });
    let has_exe = h.flags & flags::EXE_FAULT == 0 && c.exe.flags & file_flags::VALID != 0;
    Sections {
        requested: text(s.requested),
        kpath: object_path(body, c),
        base: (h.flags & flags::BASE_WALKED != 0).then(|| {
            walk_to_path(
                span(body, s.base).unwrap_or_default(),
                &FileFacts::default(),
            )
        }),
        extra: span(body, s.extra).map(<[u8]>::to_vec),
        base2: (h.flags & flags::BASE2_WALKED != 0).then(|| {
            walk_to_path(
                span(body, s.base2).unwrap_or_default(),
                &FileFacts::default(),
            )
        }),
        argv: argv.or_else(|| (h.flags & flags::ARGV_FAULT == 0).then(Vec::new)),
        exe: Exe {
            facts: has_exe.then_some(c.exe),
            path: (h.flags & flags::EXE_PATH != 0)
                .then(|| kernel_path(body, s.exe, c.exe))
                .flatten(),
        },
    }
}

/// An address of a packet header (`ip`: IPv4 in the first four bytes, or IPv6).
fn packet_addr(family: u16, ip: [u8; 16], port: u16) -> Option<SocketAddr> {
    kernel_addr(KernelAddr {
        family,
        port,
        _pad: 0,
        ip,
    })
    .map(SocketAddr::from)
}

/// A packet record: its fixed part and the captured payload after it.
fn packet(body: &[u8]) -> Option<Packet> {
    let f: PacketBody = read(body, 0)?;
    let data = body.get(size_of::<PacketBody>()..)?;
    let data = &data[..usize::from(f.captured).min(data.len())];
    Some(Packet {
        cookie: f.cookie,
        direction: if f.direction == net::INGRESS {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        transport: if f.protocol == net::IPPROTO_TCP {
            Transport::Tcp
        } else {
            Transport::Udp
        },
        local: packet_addr(f.family, f.local_ip, f.local_port)?,
        remote: packet_addr(f.family, f.remote_ip, f.remote_port)?,
        offset: f.offset,
        payload_len: f.payload_len,
        tcp_flags: f.tcp_flags,
        local_dns_port: f.flags & net::packet_flags::LOCAL_DNS_PORT != 0,
        remote_dns_port: f.flags & net::packet_flags::REMOTE_DNS_PORT != 0,
        data: data.to_vec(),
    })
}

/// The kernel's copy of an IP destination.
fn kernel_addr(k: KernelAddr) -> Option<(IpAddr, u16)> {
    match k.family {
        2 => Some((
            IpAddr::V4(Ipv4Addr::new(k.ip[0], k.ip[1], k.ip[2], k.ip[3])),
            k.port,
        )),
        10 => Some((IpAddr::V6(Ipv6Addr::from(k.ip)), k.port)),
        _ => None,
    }
}

/// The typed body of an action record. Long on purpose: one arm per kind, each reading that
/// kind's fixed part (`audit_common::event`) field by field.
fn decode_action(h: &EventHeader, kind: EventKind, body: &[u8]) -> Result<Body, DecodeError> {
    let short = |need: usize| DecodeError::ShortBody {
        kind,
        len: body.len(),
        need,
    };
    let syscall = Syscall::from_u16(h.syscall).unwrap_or(Syscall::Unknown);
    Ok(match kind {
        EventKind::Exec => {
            let f: ExecBody = read(body, 0).ok_or_else(|| short(size_of::<ExecBody>()))?;
            Body::Exec {
                syscall,
                dirfd: f.dirfd,
                at_flags: f.at_flags,
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Open => {
            let f: OpenBody = read(body, 0).ok_or_else(|| short(size_of::<OpenBody>()))?;
            Body::Open {
                syscall,
                dirfd: f.dirfd,
                flags: f.flags,
                mode: f.mode,
                resolve: f.resolve,
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Uring => {
            let f: UringBody = read(body, 0).ok_or_else(|| short(size_of::<UringBody>()))?;
            uring_body(h, body, &f)
        }
        EventKind::UringDone => {
            let f: UringDoneBody =
                read(body, 0).ok_or_else(|| short(size_of::<UringDoneBody>()))?;
            Body::UringDone {
                req: f.req,
                res: f.res,
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Compat => {
            let f: CompatBody = read(body, 0).ok_or_else(|| short(size_of::<CompatBody>()))?;
            Body::Compat {
                nr: f.nr,
                args: f.args,
                kernel: kernel_addr(f.kaddr),
                cookie: (f.cookie != 0).then_some(f.cookie),
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Access => {
            let f: AccessBody = read(body, 0).ok_or_else(|| short(size_of::<AccessBody>()))?;
            access_body(h, body, &f, syscall)
        }
        EventKind::SetExe => {
            let f: SetExeBody = read(body, 0).ok_or_else(|| short(size_of::<SetExeBody>()))?;
            Body::SetExe {
                map: f.option == PR_SET_MM_MAP,
                fd: f.fd,
                new: second_walk(body, f.common.sections.extra, f.new),
                changed: f.changed != 0,
                changes: f.changes,
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Fd => {
            let f: FdBody = read(body, 0).ok_or_else(|| short(size_of::<FdBody>()))?;
            Body::Fd {
                syscall,
                fd: f.fd,
                received_on: (f.how == FD_RECEIVED).then_some(f.socket_fd),
                sections: sections(h, body, &f.common),
            }
        }
        EventKind::Copy => {
            let f: CopyBody = read(body, 0).ok_or_else(|| short(size_of::<CopyBody>()))?;
            copy_body(h, body, &f, syscall)
        }
        EventKind::MapExec => {
            let f: MapExecBody = read(body, 0).ok_or_else(|| short(size_of::<MapExecBody>()))?;
            map_exec_body(h, body, &f, syscall)
        }
        EventKind::File => {
            let f: FileBody = read(body, 0).ok_or_else(|| short(size_of::<FileBody>()))?;
            file_body(h, body, &f, syscall)
        }
        _ => {
            let f: ConnectBody = read(body, 0).ok_or_else(|| short(size_of::<ConnectBody>()))?;
            connect_body(h, body, &f, syscall)
        }
    })
}

/// An io_uring request as submitted.
fn uring_body(h: &EventHeader, body: &[u8], f: &UringBody) -> Body {
    Body::Uring {
        req: f.req,
        user_data: f.user_data,
        opcode: f.opcode as u8,
        fd: f.fd,
        dfd2: f.dfd2,
        flags: f.flags,
        open_flags: f.open_flags,
        mode: f.mode,
        resolve: f.resolve,
        length: f.length,
        addr: (f.addrlen > 0).then(|| SockAddr::decode(&f.addr, f.addrlen as usize)),
        fixed: f.fixed != 0,
        sections: sections(h, body, &f.common),
    }
}

/// A reach into another process (ptrace, process_vm_*, pidfd_getfd).
fn access_body(h: &EventHeader, body: &[u8], f: &AccessBody, syscall: Syscall) -> Body {
    Body::Access {
        syscall,
        target_pid: f.target_pid,
        pid_from_kernel: f.pid_from_kernel != 0,
        caller_ns_level: f.caller_ns_level,
        target_fd: f.target_fd,
        request: f.request,
        addr: f.addr,
        sections: sections(h, body, &f.common),
    }
}

/// A mapping made executable.
fn map_exec_body(h: &EventHeader, body: &[u8], f: &MapExecBody, syscall: Syscall) -> Body {
    Body::MapExec {
        syscall,
        addr: f.addr,
        len: f.len,
        prot: f.prot,
        flags: f.flags,
        fd: f.fd,
        no_interp: f.no_interp != 0,
        mapped: (f.vm_start, f.vm_end),
        sections: sections(h, body, &f.common),
    }
}

/// An in-kernel copy between two files.
fn copy_body(h: &EventHeader, body: &[u8], f: &CopyBody, syscall: Syscall) -> Body {
    Body::Copy {
        syscall,
        in_fd: f.in_fd,
        out_fd: f.out_fd,
        to: second_walk(body, f.common.sections.extra, f.to),
        len: f.len,
        flags: f.flags,
        sections: sections(h, body, &f.common),
    }
}

/// A connect or send: the address passed and the kernel's.
fn connect_body(h: &EventHeader, body: &[u8], f: &ConnectBody, syscall: Syscall) -> Body {
    Body::Connect {
        syscall,
        fd: f.fd,
        sk: f.sk,
        passed: (h.flags & flags::ADDR_FAULT == 0)
            .then(|| SockAddr::decode(&f.addr, f.addrlen as usize)),
        kernel: kernel_addr(f.kaddr),
        cookie: (f.cookie != 0).then_some(f.cookie),
        sections: sections(h, body, &f.common),
    }
}

/// A file change.
fn file_body(h: &EventHeader, body: &[u8], f: &FileBody, syscall: Syscall) -> Body {
    Body::File {
        change: FileChange {
            syscall,
            dirfd: f.dirfd,
            dirfd2: f.dirfd2,
            fd: f.fd,
            mode: f.mode,
            uid: f.uid,
            gid: f.gid,
            flags: f.flags,
            length: f.length,
        },
        sections: sections(h, body, &f.common),
    }
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
    let body = match kind {
        EventKind::Exec
        | EventKind::Open
        | EventKind::Connect
        | EventKind::File
        | EventKind::Access
        | EventKind::Send
        | EventKind::Uring
        | EventKind::UringDone
        | EventKind::Compat
        | EventKind::SetExe
        | EventKind::Fd
        | EventKind::Copy
        | EventKind::MapExec => decode_action(h, kind, body)?,
        EventKind::UringSetup => {
            let f: UringSetupBody =
                read(body, 0).ok_or_else(|| short(size_of::<UringSetupBody>()))?;
            Body::UringSetup {
                fd: f.fd,
                sq_entries: f.sq_entries,
                cq_entries: f.cq_entries,
                flags: f.flags,
            }
        }
        EventKind::ConnectOutcome => {
            Body::ConnectOutcome(read(body, 0).ok_or_else(|| short(size_of::<ConnectOutcome>()))?)
        }
        EventKind::Fork => {
            let f: ForkBody = read(body, 0).ok_or_else(|| short(size_of::<ForkBody>()))?;
            Body::Fork {
                child_pid: f.child_pid,
            }
        }
        EventKind::Exit => {
            let f: ExitBody = read(body, 0).ok_or_else(|| short(size_of::<ExitBody>()))?;
            Body::Exit { status: f.status }
        }
        EventKind::Packet => Body::Packet(Box::new(
            packet(body).ok_or_else(|| short(size_of::<PacketBody>()))?,
        )),
        EventKind::Signal => {
            let f: SignalBody = read(body, 0).ok_or_else(|| short(size_of::<SignalBody>()))?;
            Body::Signal {
                sig: f.sig,
                target_pid: f.target_pid,
                result: f.result,
            }
        }
        EventKind::CgroupMove => {
            let f: CgroupMoveBody =
                read(body, 0).ok_or_else(|| short(size_of::<CgroupMoveBody>()))?;
            let len = (f.path_len as usize).min(f.path.len());
            Body::CgroupMove {
                moved_pid: f.moved_pid,
                dst_id: f.dst_id,
                path: f.path[..len].to_vec(),
            }
        }
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
/// (`process.lifecycle` for fork records, `file.change` for any file change: the kernel counts
/// losses per kind).
pub(crate) fn kind_name(kind: usize) -> &'static str {
    use crate::event::Action;
    match kind {
        k if k == EventKind::Exec as usize => Action::Exec.name(),
        k if k == EventKind::Open as usize => Action::Open.name(),
        k if k == EventKind::Connect as usize || k == EventKind::ConnectOutcome as usize => {
            Action::Connect.name()
        }
        k if k == EventKind::File as usize => "file.change",
        k if k == EventKind::CgroupMove as usize => Action::CgroupMove.name(),
        k if k == EventKind::Signal as usize => Action::Signal.name(),
        k if k == EventKind::Access as usize => Action::Access.name(),
        k if k == EventKind::Send as usize => Action::Send.name(),
        k if k == EventKind::Uring as usize || k == EventKind::UringDone as usize => "io_uring",
        k if k == EventKind::UringSetup as usize => Action::UringSetup.name(),
        k if k == EventKind::Packet as usize => "network.payload",
        k if k == EventKind::Exit as usize => Action::Exit.name(),
        k if k == EventKind::SetExe as usize => Action::SetExe.name(),
        // Held and received files count together: the kernel counts losses per kind.
        k if k == EventKind::Fd as usize => "file.fd",
        k if k == EventKind::Copy as usize => Action::Copy.name(),
        k if k == EventKind::MapExec as usize => Action::MapExec.name(),
        _ => "process.lifecycle",
    }
}

#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod tests;
