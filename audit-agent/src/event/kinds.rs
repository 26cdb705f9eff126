//! The closed vocabularies of an event: actions, outcomes, decisions, how an agent was matched,
//! why records were lost. Each has one name on the wire (`name`) and parses back from it.

use serde::{Deserialize, Serialize};

/// Defines a fieldless enum with a wire name per variant, `name()`, `parse()` and `ALL`.
macro_rules! named_enum {
    ($(#[$meta:meta])* $vis:vis enum $ty:ident { $($(#[$vmeta:meta])* $var:ident = $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $ty { $($(#[$vmeta])* $var,)* }

        impl $ty {
            pub(crate) const ALL: &'static [Self] = &[$(Self::$var),*];

            pub(crate) fn name(self) -> &'static str {
                match self { $(Self::$var => $name,)* }
            }

            pub(crate) fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$var),)* _ => None }
            }

            /// Every wire name, for error messages.
            #[allow(dead_code)] // generated for every vocabulary; not every one needs it
            pub(crate) fn names() -> String {
                Self::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

named_enum! {
    /// What a watched process did.
    pub(crate) enum Action {
        Exec = "process.exec",
        Open = "file.open",
        Connect = "network.connect",
        /// unlink, unlinkat.
        Delete = "file.delete",
        /// rename, renameat, renameat2.
        Rename = "file.rename",
        /// truncate, ftruncate.
        Truncate = "file.truncate",
        /// chmod, fchmod, fchmodat, fchmodat2.
        Chmod = "file.chmod",
        /// chown, lchown, fchown, fchownat.
        Chown = "file.chown",
        /// link, linkat (a hard link).
        Link = "file.link",
        /// symlink, symlinkat.
        Symlink = "file.symlink",
        /// mkdir, mkdirat.
        Mkdir = "file.mkdir",
        /// rmdir, unlinkat(AT_REMOVEDIR).
        Rmdir = "file.rmdir",
        /// A watched process moved (or was moved) to another cgroup.
        CgroupMove = "process.cgroup_move",
        /// A watched process sent a signal to the audit agent.
        Signal = "process.signal",
        /// A watched process ended: how (its exit code, or the signal that killed it).
        Exit = "process.exit",
        /// ptrace, process_vm_readv/writev, pidfd_getfd: reaching into another process.
        Access = "process.access",
        /// sendto, sendmsg, sendmmsg to an address (datagrams, TCP Fast Open).
        Send = "network.send",
        /// A watched process created an io_uring instance.
        UringSetup = "process.io_uring_setup",
        /// A 32-bit system call audit-agent does not record as another action (its number,
        /// arguments and any path it names).
        CompatSyscall = "process.compat_syscall",
        /// A DNS query a watched socket sent, with the answer it received.
        Dns = "network.dns",
        /// A TLS ClientHello a watched connection sent (the server name it asked for).
        Tls = "network.tls",
        /// An HTTP/1.x request a watched connection sent.
        Http = "network.http",
        /// What an agent runtime said a tool call did (a hook payload, an OTLP span), or a
        /// payload refused as no claim.
        Claim = "agent.claim",
        /// prctl(PR_SET_MM): a process replaced what `mm->exe_file` (`/proc/PID/exe`) names.
        SetExe = "process.set_exe",
        /// A regular file in a process's fd table when the agent first saw it (inherited, or
        /// opened before it was watched).
        Held = "file.held",
        /// A regular file a process received from another one (`SCM_RIGHTS` over a unix socket).
        Receive = "file.receive",
        /// sendfile, splice, copy_file_range: the kernel moved bytes from one file to another.
        Copy = "file.copy",
        /// A file mapped executable by an image that runs without an ELF interpreter (the
        /// dynamic loader run as a program maps the program it runs: no exec names it), or a
        /// protected file mapped executable by any image.
        MapExec = "process.map_exec",
    }
}

impl Action {
    /// The action name of gap records (not an [`Action`]: a gap is not something a process did).
    pub(crate) const GAP: &'static str = "audit.gap";

    /// Whether the action changes the file system without opening a file.
    pub(crate) fn is_file_change(self) -> bool {
        !matches!(
            self,
            Self::Exec
                | Self::Open
                | Self::Connect
                | Self::CgroupMove
                | Self::Signal
                | Self::Exit
                | Self::Access
                | Self::Send
                | Self::UringSetup
                | Self::CompatSyscall
                | Self::Dns
                | Self::Tls
                | Self::Http
                | Self::Claim
                | Self::SetExe
                | Self::Held
                | Self::Receive
                | Self::Copy
                | Self::MapExec
        )
    }

    /// Whether the action names a file the process obtained or read without an open on record
    /// (a held, received or copied file): protected like an open.
    pub(crate) fn is_file_without_open(self) -> bool {
        matches!(self, Self::Held | Self::Receive | Self::Copy)
    }

    /// Whether the action goes to a network destination (an address, and names for it).
    pub(crate) fn is_network(self) -> bool {
        matches!(
            self,
            Self::Connect | Self::Send | Self::Dns | Self::Tls | Self::Http
        )
    }
}

named_enum! {
    /// What was wrong with a message a watched socket sent or received (DNS, TLS, HTTP): it is
    /// recorded as far as it was valid, and these say why it stops there.
    pub(crate) enum WireIssue {
        /// The capture ended before the message did (the packet or the stream's captured bytes
        /// were cut), or the connection closed or went quiet before it was complete.
        Truncated = "truncated",
        /// The bytes break the protocol's rules (a length beyond the message, a bad label).
        Malformed = "malformed",
        /// A DNS compression pointer that does not point backwards (a loop, or a forward jump).
        CompressionLoop = "compression_loop",
        /// A DNS name longer than 255 bytes.
        NameTooLong = "name_too_long",
        /// More DNS answer records than are read (64), or fewer than the header announced.
        TooManyRecords = "too_many_records",
        /// A connection to a TLS port (443, 853, 8443) whose first bytes are not a TLS handshake.
        NotTls = "not_tls",
        /// An HTTP request line or header longer than what was captured.
        TooLong = "too_long",
        /// A QUIC version whose Initial packets cannot be decrypted here (not 1 or 2).
        UnknownVersion = "unknown_version",
    }
}

named_enum! {
    /// Where a destination's host name comes from.
    pub(crate) enum HostSource {
        /// A DNS answer the agent's processes received for the address (within its TTL, or
        /// flagged as past it), or the name a DNS query asked for.
        Dns = "dns",
        /// The server name of the connection's TLS ClientHello.
        TlsSni = "tls_sni",
        /// The `Host` header (or absolute target) of the connection's HTTP request.
        HttpHost = "http_host",
        /// The target of an HTTP `CONNECT` sent on the connection: a proxy was asked to tunnel
        /// to this host.
        HttpConnect = "http_connect",
    }
}

named_enum! {
    /// What a connection hides from the trail, as its first bytes show.
    pub(crate) enum Opaque {
        /// The TLS hello encrypts the real one: the server name on record is the public name
        /// of whoever terminates ECH, not the destination.
        EncryptedClientHello = "encrypted_client_hello",
        /// A DNS-over-HTTPS service: the names looked up through it are not visible.
        DnsOverHttps = "dns_over_https",
        /// DNS over TLS (port 853): the names looked up through it are not visible.
        DnsOverTls = "dns_over_tls",
    }
}

named_enum! {
    /// Where a claim came from.
    pub(crate) enum ClaimSource {
        /// A Claude Code hook payload (`PreToolUse`, `PostToolUse`).
        ClaudeCode = "claude_code",
        /// The generic claim form (`audit-agent/v1`).
        Generic = "generic",
        /// An OpenTelemetry GenAI `execute_tool` span (OTLP/HTTP).
        Otlp = "otlp",
    }
}

named_enum! {
    /// Which part of a tool call a claim reports.
    pub(crate) enum ClaimPhase {
        /// Before the call (what it is about to do).
        Pre = "pre",
        /// After the call (what it did, and whether it succeeded).
        Post = "post",
        /// The whole call (a span: start, end, status).
        Complete = "complete",
    }
}

named_enum! {
    /// The transport a DNS message used.
    pub(crate) enum Transport {
        Udp = "udp",
        Tcp = "tcp",
    }
}

named_enum! {
    /// A policy decision. audit-agent records verdicts; it does not block.
    #[derive(Default, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub(crate) enum Decision {
        #[default]
        Allow = "allow",
        Deny = "deny",
        Review = "review",
    }
}

named_enum! {
    /// How an event was attributed to its agent.
    pub(crate) enum MatchedBy {
        Cgroup = "cgroup",
        Uid = "uid",
        Ancestor = "ancestor",
        Trace = "trace",
        K8s = "k8s",
        K8sLabel = "k8s_label",
    }
}

named_enum! {
    /// Why records are missing from the trail.
    pub(crate) enum GapReason {
        /// The kernel ring buffer was full.
        RingbufFull = "ringbuf_full",
        /// Too many threads had a watched syscall in flight.
        PendingFull = "pending_full",
        /// A kernel record could not be decoded.
        DecodeError = "decode_error",
        /// The spool size limit was hit.
        SpoolFull = "spool_full",
        /// The spool's file system is full (or below the room sealing needs).
        DiskFull = "disk_full",
        /// Writing to the spool failed for another reason (an I/O error).
        SpoolWriteFailed = "spool_write_failed",
        /// The daemon was stopped between `from` and `to`.
        AgentRestart = "agent_restart",
        /// The daemon did not stop cleanly.
        AgentCrash = "agent_crash",
    }
}

named_enum! {
    /// The kind of a result, without its value.
    pub(crate) enum OutcomeKind {
        Success = "success",
        Failure = "failure",
        /// A non-blocking connect still connecting (`EINPROGRESS`).
        InProgress = "in_progress",
        /// The thread ended inside the syscall, or the agent stopped first.
        Unknown = "unknown",
    }
}

/// What the system call returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Return value (fd, 0, ...).
    Success(i64),
    /// errno (positive).
    Failure(i32),
    /// `EINPROGRESS` from a non-blocking connect.
    InProgress,
    Unknown,
}

/// `EINPROGRESS` on Linux.
const EINPROGRESS: i32 = 115;

impl Outcome {
    /// The outcome of a syscall return value; a connect's `EINPROGRESS` is its own outcome.
    pub(crate) fn from_retval(retval: i64, connect: bool) -> Self {
        if retval >= 0 {
            return Self::Success(retval);
        }
        let errno = i32::try_from(-retval).unwrap_or(i32::MAX);
        if connect && errno == EINPROGRESS {
            Self::InProgress
        } else {
            Self::Failure(errno)
        }
    }

    pub(crate) fn kind(self) -> OutcomeKind {
        match self {
            Self::Success(_) => OutcomeKind::Success,
            Self::Failure(_) => OutcomeKind::Failure,
            Self::InProgress => OutcomeKind::InProgress,
            Self::Unknown => OutcomeKind::Unknown,
        }
    }

    /// The raw return value (negative errno on failure); `None` when unknown.
    pub(crate) fn retval(self) -> Option<i64> {
        match self {
            Self::Success(v) => Some(v),
            Self::Failure(e) => Some(-i64::from(e)),
            Self::InProgress => Some(-i64::from(EINPROGRESS)),
            Self::Unknown => None,
        }
    }

    /// The errno for failures and in-progress connects.
    pub(crate) fn errno(self) -> Option<i32> {
        match self {
            Self::Failure(e) => Some(e),
            Self::InProgress => Some(EINPROGRESS),
            _ => None,
        }
    }

    /// Rebuilds an outcome from its wire parts.
    pub(crate) fn from_parts(kind: OutcomeKind, retval: Option<i64>) -> Self {
        match (kind, retval) {
            (OutcomeKind::Success, v) => Self::Success(v.unwrap_or(0)),
            (OutcomeKind::Failure, Some(v)) => Self::Failure(i32::try_from(-v).unwrap_or(i32::MAX)),
            (OutcomeKind::Failure, None) => Self::Failure(0),
            (OutcomeKind::InProgress, _) => Self::InProgress,
            (OutcomeKind::Unknown, _) => Self::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.name()), Some(*a));
        }
        for r in GapReason::ALL {
            assert_eq!(GapReason::parse(r.name()), Some(*r));
        }
        assert_eq!(Decision::parse("deny"), Some(Decision::Deny));
        assert_eq!(MatchedBy::parse("k8s_label"), Some(MatchedBy::K8sLabel));
        assert_eq!(Action::parse("file.read"), None);
        assert_eq!(
            Decision::names(),
            "allow, deny, review",
            "names list every variant for messages"
        );
    }

    #[test]
    fn outcomes_round_trip_through_their_wire_parts() {
        for o in [
            Outcome::Success(3),
            Outcome::Failure(2),
            Outcome::InProgress,
            Outcome::Unknown,
        ] {
            assert_eq!(Outcome::from_parts(o.kind(), o.retval()), o);
        }
        assert_eq!(Outcome::from_retval(-115, true), Outcome::InProgress);
        assert_eq!(Outcome::from_retval(-115, false), Outcome::Failure(115));
        assert_eq!(Outcome::from_retval(4, false), Outcome::Success(4));
    }
}
