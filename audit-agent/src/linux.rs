//! Linux constants turned into names: errno values, open(2) flags, socket address families and
//! `struct sockaddr` decoding. Pure tables, x86_64/aarch64 generic values.

use std::{
    borrow::Cow,
    net::{Ipv4Addr, Ipv6Addr},
};

mod ia32;

/// Name of an errno value (`2` -> `ENOENT`).
pub(crate) fn errno_name(errno: i32) -> Option<&'static str> {
    match errno {
        512 => Some("ERESTARTSYS"),
        513 => Some("ERESTARTNOINTR"),
        514 => Some("ERESTARTNOHAND"),
        516 => Some("ERESTART_RESTARTBLOCK"),
        _ => ERRNO_NAMES
            .get(usize::try_from(errno).ok()?)
            .copied()
            .filter(|n| !n.is_empty()),
    }
}

/// The `syscall` of records made from packets (`network.dns`, `network.tls`, `network.http`): no
/// system call of the process carried them (a connection's bytes leave in softirq context, from
/// an io_uring worker, ...).
pub(crate) const PACKET_SYSCALL: &str = "packet";

/// The `syscall` of `agent.claim` records: a runtime said it, no system call did it.
pub(crate) const CLAIM_SYSCALL: &str = "claim";

/// The `syscall` of `process.exit` records: the process's last thread left the kernel
/// (`exit`, `exit_group`, or a fatal signal; the record says which by its status).
pub(crate) const EXIT_SYSCALL: &str = "exit";

/// The static name of a system call (`ia32:<name>` for a 32-bit one); `unknown` for one
/// audit-agent does not record.
pub(crate) fn syscall_name(s: &str) -> &'static str {
    // The numbers have gaps (ranges are kept apart so parallel additions do not collide).
    (0..=u8::MAX)
        .filter_map(|n| audit_common::event::Syscall::from_u16(n.into()).map(|c| c.name()))
        .chain(
            ia32::IA32_SYSCALLS
                .iter()
                .copied()
                .filter(|n| !n.is_empty()),
        )
        .chain(["ia32", PACKET_SYSCALL, CLAIM_SYSCALL, EXIT_SYSCALL])
        .find(|n| *n == s)
        .unwrap_or("unknown")
}

/// The record name of ia32 system call `nr`: `ia32:open`, or `ia32` for a number this table
/// does not know (the number is in the record).
pub(crate) fn ia32_syscall_name(nr: u32) -> &'static str {
    ia32::IA32_SYSCALLS
        .get(nr as usize)
        .copied()
        .filter(|n| !n.is_empty())
        .unwrap_or("ia32")
}

/// errno names by value (Linux, generic; gaps are values without a name).
const ERRNO_NAMES: [&str; 134] = [
    "",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// open(2) flag bits and their names, in the order they are listed. `O_SYNC` (= `__O_SYNC |
/// O_DSYNC`) comes before `O_DSYNC`, `O_TMPFILE` (= `__O_TMPFILE | O_DIRECTORY`) before
/// `O_DIRECTORY`, so a combined flag is named once.
const OPEN_FLAGS: [(u64, &str); 17] = [
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o4010000, "O_SYNC"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o20200000, "O_TMPFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

const ACCESS_MODES: [&str; 4] = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"];

/// Symbolic names of open(2) flags, access mode first (`O_WRONLY|O_CREAT` -> `["O_WRONLY",
/// "O_CREAT"]`). Bits without a name come out as one hex value.
pub(crate) fn open_flag_names(flags: u64) -> Vec<Cow<'static, str>> {
    let mut out = vec![Cow::Borrowed(ACCESS_MODES[(flags & 0o3) as usize])];
    let mut rest = flags & !0o3;
    for (bits, name) in OPEN_FLAGS {
        if rest & bits == bits {
            out.push(Cow::Borrowed(name));
            rest &= !bits;
        }
    }
    if rest != 0 {
        out.push(Cow::Owned(format!("{rest:#x}")));
    }
    out
}

/// Reverses [`open_flag_names`]; `None` for a name it does not produce.
pub(crate) fn open_flags_from_names<S: AsRef<str>>(names: &[S]) -> Option<u64> {
    let mut flags = 0;
    for n in names {
        let n = n.as_ref();
        flags |= if let Some(i) = ACCESS_MODES.iter().position(|m| *m == n) {
            i as u64
        } else if let Some((bits, _)) = OPEN_FLAGS.iter().find(|(_, name)| *name == n) {
            *bits
        } else {
            u64::from_str_radix(n.strip_prefix("0x")?, 16).ok()?
        };
    }
    Some(flags)
}

/// Flag bits and their names.
pub(crate) type BitNames = [(u64, &'static str)];

/// openat2(2) `RESOLVE_*` flags.
pub(crate) const RESOLVE_FLAGS: &BitNames = &[
    (0x01, "RESOLVE_NO_XDEV"),
    (0x02, "RESOLVE_NO_MAGICLINKS"),
    (0x04, "RESOLVE_NO_SYMLINKS"),
    (0x08, "RESOLVE_BENEATH"),
    (0x10, "RESOLVE_IN_ROOT"),
    (0x20, "RESOLVE_CACHED"),
];

/// mmap(2) and mprotect(2) `PROT_*` bits.
pub(crate) const PROT_FLAGS: &BitNames = &[
    (0x1, "PROT_READ"),
    (0x2, "PROT_WRITE"),
    (0x4, "PROT_EXEC"),
    (0x8, "PROT_SEM"),
    (0x0100_0000, "PROT_GROWSDOWN"),
    (0x0200_0000, "PROT_GROWSUP"),
];

/// mmap(2) `MAP_*` flags (x86_64 and the generic values).
pub(crate) const MAP_FLAGS: &BitNames = &[
    (0x01, "MAP_SHARED"),
    (0x02, "MAP_PRIVATE"),
    (0x10, "MAP_FIXED"),
    (0x20, "MAP_ANONYMOUS"),
    (0x100, "MAP_GROWSDOWN"),
    (0x800, "MAP_DENYWRITE"),
    (0x1000, "MAP_EXECUTABLE"),
    (0x2000, "MAP_LOCKED"),
    (0x4000, "MAP_NORESERVE"),
    (0x8000, "MAP_POPULATE"),
    (0x1_0000, "MAP_NONBLOCK"),
    (0x2_0000, "MAP_STACK"),
    (0x4_0000, "MAP_HUGETLB"),
    (0x8_0000, "MAP_SYNC"),
    (0x10_0000, "MAP_FIXED_NOREPLACE"),
];

/// `AT_*` flags of the `*at` file-change calls.
pub(crate) const AT_FLAGS: &BitNames = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_REMOVEDIR"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x1000, "AT_EMPTY_PATH"),
];

/// renameat2(2) `RENAME_*` flags.
pub(crate) const RENAME_FLAGS: &BitNames = &[
    (0x1, "RENAME_NOREPLACE"),
    (0x2, "RENAME_EXCHANGE"),
    (0x4, "RENAME_WHITEOUT"),
];

/// `SPLICE_F_*` flags of `splice` (`copy_file_range` takes none).
pub(crate) const SPLICE_FLAGS: &BitNames = &[
    (0x1, "SPLICE_F_MOVE"),
    (0x2, "SPLICE_F_NONBLOCK"),
    (0x4, "SPLICE_F_MORE"),
    (0x8, "SPLICE_F_GIFT"),
];

/// `IORING_SETUP_*` flags.
pub(crate) const URING_SETUP_FLAGS: &BitNames = &[
    (1 << 0, "IORING_SETUP_IOPOLL"),
    (1 << 1, "IORING_SETUP_SQPOLL"),
    (1 << 2, "IORING_SETUP_SQ_AFF"),
    (1 << 3, "IORING_SETUP_CQSIZE"),
    (1 << 4, "IORING_SETUP_CLAMP"),
    (1 << 5, "IORING_SETUP_ATTACH_WQ"),
    (1 << 6, "IORING_SETUP_R_DISABLED"),
    (1 << 7, "IORING_SETUP_SUBMIT_ALL"),
    (1 << 8, "IORING_SETUP_COOP_TASKRUN"),
    (1 << 9, "IORING_SETUP_TASKRUN_FLAG"),
    (1 << 10, "IORING_SETUP_SQE128"),
    (1 << 11, "IORING_SETUP_CQE32"),
    (1 << 12, "IORING_SETUP_SINGLE_ISSUER"),
    (1 << 13, "IORING_SETUP_DEFER_TASKRUN"),
    (1 << 14, "IORING_SETUP_NO_MMAP"),
    (1 << 15, "IORING_SETUP_REGISTERED_FD_ONLY"),
    (1 << 16, "IORING_SETUP_NO_SQARRAY"),
];

/// Symbolic names of the bits of `flags` in `table`; bits without a name as one hex value.
pub(crate) fn bit_names(flags: u64, table: &BitNames) -> Vec<Cow<'static, str>> {
    let mut out: Vec<Cow<'static, str>> = table
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| Cow::Borrowed(*n))
        .collect();
    let rest = flags & !table.iter().fold(0, |a, (b, _)| a | b);
    if rest != 0 {
        out.push(Cow::Owned(format!("{rest:#x}")));
    }
    out
}

/// Reverses [`bit_names`]; `None` for a name it does not produce.
pub(crate) fn bits_from_names<S: AsRef<str>>(names: &[S], table: &BitNames) -> Option<u64> {
    let mut flags = 0;
    for n in names {
        let n = n.as_ref();
        flags |= match table.iter().find(|(_, name)| *name == n) {
            Some((b, _)) => *b,
            None => u64::from_str_radix(n.strip_prefix("0x")?, 16).ok()?,
        };
    }
    Some(flags)
}

/// Whether open(2) flags can create a file (so `mode` matters).
pub(crate) fn open_creates(flags: u64) -> bool {
    flags & 0o100 != 0 || flags & 0o20000000 != 0
}

/// A decoded `struct sockaddr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SockAddr {
    Inet(Ipv4Addr, u16),
    Inet6(Ipv6Addr, u16),
    /// Path socket (bytes), or abstract name with a leading NUL.
    Unix(Vec<u8>),
    /// `AF_UNSPEC`: dissolves an association.
    Unspec,
    Other(u16),
    /// Too short to hold its family's address.
    Malformed(u16),
}

impl SockAddr {
    /// Decodes `bytes` (at most `addrlen` of which were passed by the caller).
    pub(crate) fn decode(bytes: &[u8], addrlen: usize) -> Self {
        let bytes = &bytes[..addrlen.min(bytes.len())];
        if bytes.len() < 2 {
            return Self::Malformed(0);
        }
        let family = u16::from_ne_bytes([bytes[0], bytes[1]]);
        match family {
            0 => Self::Unspec,
            1 => {
                let path = &bytes[2..];
                if path.first() == Some(&0) {
                    // Abstract namespace: the name is every byte of addrlen, NULs included.
                    Self::Unix(path.to_vec())
                } else {
                    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
                    Self::Unix(path[..end].to_vec())
                }
            }
            2 if bytes.len() >= 8 => Self::Inet(
                Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]),
                u16::from_be_bytes([bytes[2], bytes[3]]),
            ),
            10 if bytes.len() >= 24 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&bytes[8..24]);
                Self::Inet6(Ipv6Addr::from(a), u16::from_be_bytes([bytes[2], bytes[3]]))
            }
            2 | 10 => Self::Malformed(family),
            f => Self::Other(f),
        }
    }
}

/// Signal names by number (x86_64 and arm64 share them).
const SIGNALS: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// `SIGKILL`, ...; real-time signals as `SIGRTMIN+n`; others as `SIG<n>`.
pub(crate) fn signal_name(sig: u32) -> Cow<'static, str> {
    match SIGNALS.get(sig as usize) {
        Some(n) if !n.is_empty() => Cow::Borrowed(*n),
        _ if (34..=64).contains(&sig) => Cow::Owned(format!("SIGRTMIN+{}", sig - 34)),
        _ => Cow::Owned(format!("SIG{sig}")),
    }
}

/// Reverses [`signal_name`].
pub(crate) fn signal_number(name: &str) -> Option<u32> {
    if let Some(i) = SIGNALS.iter().position(|n| !n.is_empty() && *n == name) {
        return Some(i as u32);
    }
    if let Some(n) = name.strip_prefix("SIGRTMIN+") {
        return n.parse::<u32>().ok().map(|n| n + 34);
    }
    name.strip_prefix("SIG")?.parse().ok()
}

/// What the kernel did with a generated signal (`TRACE_SIGNAL_*`).
const DELIVERY: [&str; 5] = [
    "delivered",
    "ignored",
    "already_pending",
    "overflow",
    "lose_info",
];

pub(crate) fn signal_delivery_name(result: i32) -> Cow<'static, str> {
    match DELIVERY.get(usize::try_from(result).unwrap_or(usize::MAX)) {
        Some(n) => Cow::Borrowed(*n),
        None => Cow::Owned(result.to_string()),
    }
}

pub(crate) fn signal_delivery_number(name: &str) -> Option<i32> {
    DELIVERY
        .iter()
        .position(|n| *n == name)
        .map(|i| i as i32)
        .or_else(|| name.parse().ok())
}

/// ptrace(2) requests and their names.
const PTRACE_REQUESTS: &[(u64, &str)] = &[
    (0, "PTRACE_TRACEME"),
    (1, "PTRACE_PEEKTEXT"),
    (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSER"),
    (4, "PTRACE_POKETEXT"),
    (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSER"),
    (7, "PTRACE_CONT"),
    (8, "PTRACE_KILL"),
    (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"),
    (13, "PTRACE_SETREGS"),
    (14, "PTRACE_GETFPREGS"),
    (15, "PTRACE_SETFPREGS"),
    (16, "PTRACE_ATTACH"),
    (17, "PTRACE_DETACH"),
    (24, "PTRACE_SYSCALL"),
    (0x4200, "PTRACE_SETOPTIONS"),
    (0x4201, "PTRACE_GETEVENTMSG"),
    (0x4202, "PTRACE_GETSIGINFO"),
    (0x4203, "PTRACE_SETSIGINFO"),
    (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"),
    (0x4206, "PTRACE_SEIZE"),
    (0x4207, "PTRACE_INTERRUPT"),
    (0x4208, "PTRACE_LISTEN"),
    (0x4209, "PTRACE_PEEKSIGINFO"),
];

pub(crate) fn ptrace_request_name(request: u64) -> Cow<'static, str> {
    PTRACE_REQUESTS
        .iter()
        .find(|(r, _)| *r == request)
        .map_or_else(
            || Cow::Owned(format!("{request:#x}")),
            |(_, n)| Cow::Borrowed(*n),
        )
}

pub(crate) fn ptrace_request_number(name: &str) -> Option<u64> {
    PTRACE_REQUESTS
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(r, _)| *r)
        .or_else(|| u64::from_str_radix(name.strip_prefix("0x")?, 16).ok())
}

/// `ptrace(PTRACE_ATTACH)`, `process_vm_readv`, ... for a line of text.
pub(crate) fn access_name(kind: &crate::event::AccessKind) -> String {
    use crate::event::AccessKind as K;
    match kind {
        K::Ptrace { request, .. } => format!("ptrace({})", ptrace_request_name(*request)),
        K::VmRead => "process_vm_readv".into(),
        K::VmWrite => "process_vm_writev".into(),
        K::GetFd { fd } => format!("pidfd_getfd(fd {fd})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_values_have_their_names() {
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(13), Some("EACCES"));
        assert_eq!(errno_name(111), Some("ECONNREFUSED"));
        assert_eq!(errno_name(115), Some("EINPROGRESS"));
        assert_eq!(errno_name(36), Some("ENAMETOOLONG"));
        assert_eq!(errno_name(133), Some("EHWPOISON"));
        assert_eq!(errno_name(41), None);
        assert_eq!(errno_name(9999), None);
        assert_eq!(errno_name(-1), None);
    }

    #[test]
    fn open_flags_are_named_access_mode_first() {
        assert_eq!(open_flag_names(0), ["O_RDONLY"]);
        assert_eq!(open_flag_names(0o1 | 0o100), ["O_WRONLY", "O_CREAT"]);
        assert_eq!(
            open_flag_names(0o2 | 0o2000000 | 0o200000),
            ["O_RDWR", "O_DIRECTORY", "O_CLOEXEC"]
        );
        assert_eq!(open_flag_names(0o4010000), ["O_RDONLY", "O_SYNC"]);
        assert_eq!(open_flag_names(0o20200000 | 0o2), ["O_RDWR", "O_TMPFILE"]);
        assert_eq!(open_flag_names(0x8000_0000), ["O_RDONLY", "0x80000000"]);
    }

    #[test]
    fn inet_addresses_decode_with_host_order_ports() {
        let mut b = vec![2, 0, 0x1f, 0x90, 127, 0, 0, 1];
        b.resize(16, 0);
        assert_eq!(
            SockAddr::decode(&b, 16),
            SockAddr::Inet(Ipv4Addr::LOCALHOST, 8080)
        );
        let mut b6 = vec![10, 0, 0, 80, 0, 0, 0, 0];
        b6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        b6.extend_from_slice(&[0; 4]);
        assert_eq!(
            SockAddr::decode(&b6, 28),
            SockAddr::Inet6(Ipv6Addr::LOCALHOST, 80)
        );
    }

    #[test]
    fn unix_paths_and_abstract_names_decode() {
        let mut b = vec![1, 0];
        b.extend_from_slice(b"/run/x.sock\0junk");
        assert_eq!(
            SockAddr::decode(&b, b.len()),
            SockAddr::Unix(b"/run/x.sock".to_vec())
        );
        let mut a = vec![1, 0, 0];
        a.extend_from_slice(b"abstract");
        assert_eq!(
            SockAddr::decode(&a, a.len()),
            SockAddr::Unix(b"\0abstract".to_vec())
        );
    }

    #[test]
    fn short_and_unknown_addresses_are_kept_as_such() {
        assert_eq!(SockAddr::decode(&[2, 0, 1], 3), SockAddr::Malformed(2));
        assert_eq!(SockAddr::decode(&[0, 0], 2), SockAddr::Unspec);
        assert_eq!(SockAddr::decode(&[17, 0, 1, 2], 4), SockAddr::Other(17));
        assert_eq!(SockAddr::decode(&[], 0), SockAddr::Malformed(0));
    }
}
