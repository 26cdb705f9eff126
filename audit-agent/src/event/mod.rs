//! The typed event: what every stage between decoding and the output formats works on.
//!
//! ```text
//! decode (kernel bytes) -> enrich -> Event -> identity, policy (Stage) -> sequence -> sink
//!                                           \-> summaries, telemetry (Observer)
//! ```
//!
//! Nothing here is text for an output: paths are raw bytes, addresses are `IpAddr`s, time is a
//! [`Timestamp`], actions, outcomes, decisions and match kinds are enums. Only `format/` turns an
//! event into the native JSON record, OCSF, or a line for a terminal, and back.

mod claim;
mod kinds;

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

pub(crate) use jiff::Timestamp;

pub(crate) use self::claim::{Claim, ClaimRecord, Effect};

pub(crate) use self::kinds::{
    Action, ClaimPhase, ClaimSource, Decision, GapReason, HostSource, MatchedBy, Opaque, Outcome,
    OutcomeKind, Transport, WireIssue,
};

/// One record of the trail: an action the kernel observed, or a gap.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    /// When the action was attempted (syscall entry); for a gap, when it was written.
    pub(crate) time: Timestamp,
    pub(crate) host: Arc<Host>,
    /// Stamped by the sequencer (0 before).
    pub(crate) seq: u64,
    /// The writer's stream id: with `seq` the record id `<stream>-<seq>`.
    pub(crate) stream: Arc<str>,
    pub(crate) body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    Activity(Box<Activity>),
    Gap(Gap),
}

/// Host facts shared by every event of a writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) boot_id: String,
}

/// An action by a watched process: the five facts and the policy context.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Activity {
    pub(crate) action: Action,
    /// The system call that performed it (`openat`, `execve`, ...).
    pub(crate) syscall: &'static str,
    pub(crate) process: Process,
    pub(crate) subject: Subject,
    /// Filled by the identity stage.
    pub(crate) agent: Option<Arc<AgentIdentity>>,
    pub(crate) resource: Resource,
    pub(crate) outcome: Outcome,
    /// Protected sets the resource belongs to (policy stage).
    pub(crate) protected: Vec<Arc<str>>,
    /// Of those, the sets it belongs to only by its identity (device and inode of a protected
    /// file), not by path: a hardlink, bind mount or chroot view of a protected file.
    pub(crate) protected_by_inode: Vec<Arc<str>>,
    /// Filled by the policy stage.
    pub(crate) verdict: Option<Verdict>,
}

/// The acting process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    pub(crate) tid: u32,
    pub(crate) ppid: u32,
    /// `comm` bytes.
    pub(crate) comm: Vec<u8>,
    /// Executable of the process image (its kernel path: the file its exec loaded, as
    /// `mm->exe_file` named it then), when known.
    pub(crate) exe: Option<Arc<[u8]>>,
    /// The process replaced what `mm->exe_file` (`/proc/PID/exe`) names since its exec
    /// (`prctl(PR_SET_MM)`): `exe` stays the file the exec loaded.
    pub(crate) exe_replaced: bool,
    /// With `exe_replaced`: the file `mm->exe_file` names now, when the agent knows it.
    pub(crate) exe_reported: Option<Arc<[u8]>>,
    pub(crate) exec_id: Option<Arc<str>>,
    pub(crate) parent_exec_id: Option<Arc<str>>,
    /// Exec ids of the images this one descends from, nearest first (the parent's first), as
    /// far as the process table knows them (bounded). Identity follows them: a descendant of an
    /// attributed image keeps its agent even behind ancestors that did nothing.
    pub(crate) ancestors: Arc<[Arc<str>]>,
}

/// Credentials and placement of the acting process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Subject {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cgroup_id: u64,
    /// cgroup path relative to the cgroup2 mount, when it could be resolved.
    pub(crate) cgroup: Option<Arc<str>>,
    pub(crate) container_id: Option<String>,
    pub(crate) k8s: Option<Arc<K8sPod>>,
}

/// The pod and container a process runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct K8sPod {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) pod_uid: String,
    pub(crate) container: Option<String>,
    pub(crate) service_account: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// Who acted, as an agent identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AgentIdentity {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) workflow: Option<String>,
    pub(crate) owner: Option<String>,
    /// `None` for unattributed activity.
    pub(crate) matched_by: Option<MatchedBy>,
}

/// The id of activity no agent matches.
pub(crate) const UNATTRIBUTED: &str = "unattributed";

impl AgentIdentity {
    pub(crate) fn unattributed() -> Self {
        Self {
            id: UNATTRIBUTED.into(),
            name: None,
            workflow: None,
            owner: None,
            matched_by: None,
        }
    }
}

/// What the action was performed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) target: Target,
    pub(crate) detail: Detail,
    /// Values cut to fit.
    pub(crate) truncated: Vec<Field>,
    /// Values that could not be read (never written as empty).
    pub(crate) unreadable: Vec<Field>,
    /// Submitted through io_uring (`syscall` is then `io_uring`).
    pub(crate) uring: Option<UringRef>,
    /// A 32-bit system call (`syscall` is then `ia32:<name>`): its number and arguments.
    pub(crate) ia32: Option<Ia32Call>,
    /// A network action's destination by name, and its connection (`None` for other actions).
    pub(crate) destination: Option<Box<Destination>>,
}

/// A network destination by name: every host name known for it, where each came from, and the
/// connection the action belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Destination {
    /// The socket's cookie: every record of one connection (connect, send, DNS, TLS, HTTP)
    /// carries the same one.
    pub(crate) connection: Option<u64>,
    /// The names the connection is known by: what it asked for itself (TLS server name, HTTP
    /// Host or CONNECT target) first, then the chain of the last DNS answer the acting process
    /// received for the address (every name the agent was told, when it received none).
    /// Policy matches these.
    pub(crate) hosts: Vec<HostName>,
    /// Other names the agent was told for the same address (a shared address: a CDN, virtual
    /// hosts). Recorded, not matched by policy.
    pub(crate) other_hosts: Vec<HostName>,
    /// The names disagree: the connection asked for a name DNS never gave for its address.
    pub(crate) conflict: bool,
    /// What the connection hides from the trail (its real destination, or lookups made
    /// through it).
    pub(crate) opaque: Option<Opaque>,
}

/// One name of a destination and its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostName {
    /// Presentation form: lowercase, no trailing dot, odd bytes as `\DDD` (`wire::name_text`).
    pub(crate) name: Arc<str>,
    pub(crate) source: HostSource,
    /// For a DNS name: the answer that gave it.
    pub(crate) dns: Option<Arc<DnsOrigin>>,
    /// For a DNS name: the action came after the answer's TTL ran out (programs cache names
    /// longer than told to; the name is still what the agent was told).
    pub(crate) expired: bool,
}

/// The DNS answer a destination's name comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsOrigin {
    /// The name the process asked for (the head of the CNAME chain that led to the address).
    pub(crate) query: Arc<str>,
    /// The resolver that answered (the answer's source address).
    pub(crate) resolver: SocketAddr,
    /// The answer was sent by a socket of a watched process (an agent answering itself): its
    /// pid.
    pub(crate) resolver_pid: Option<u32>,
    /// When the answer arrived and the TTL it gave the address.
    pub(crate) answered: Timestamp,
    pub(crate) ttl: u32,
}

/// An HTTP request and, when its answer's first bytes were seen, the status (`network.http`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpExchange {
    pub(crate) request: crate::wire::http::Request,
    pub(crate) response: Option<crate::wire::http::Response>,
}

/// A DNS query and the answer it got (`network.dns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsLookup {
    pub(crate) transport: Transport,
    pub(crate) id: u16,
    /// The first question: the name and type asked for.
    pub(crate) question: Option<crate::wire::dns::Question>,
    /// `None`: no answer was seen within the wait.
    pub(crate) response: Option<DnsResponse>,
    /// An answer for which this socket sent no query (same resolver, port and id): recorded,
    /// but its names name nothing.
    pub(crate) unsolicited: bool,
    /// What was wrong with the query or the answer.
    pub(crate) issues: Vec<WireIssue>,
}

/// The answer to a DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsResponse {
    pub(crate) rcode: u8,
    /// TC: the resolver cut the answer (the client is expected to retry over TCP).
    pub(crate) truncated_flag: bool,
    /// The answer section as far as it was read (A, AAAA, CNAME with data; others by type).
    pub(crate) answers: Vec<crate::wire::dns::Record>,
    /// From the query to the answer.
    pub(crate) after: std::time::Duration,
    /// The answer was sent by a socket of a watched process (an agent answering itself): its
    /// pid.
    pub(crate) resolver_pid: Option<u32>,
}

/// What policy matches and outputs name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A file (open) or executable (exec).
    File(FileRef),
    /// An IP destination.
    Inet(IpAddr, u16),
    /// A unix socket: its path (an abstract name starts with a NUL byte).
    Unix(FileRef),
    /// A socket address of another family (`AF_UNSPEC` = 0), or one too short for its family.
    OtherAddress { family: u16 },
    /// A cgroup: its id and path below the cgroup2 root.
    Cgroup { id: u64, path: Vec<u8> },
    /// A process (the audit agent, for a signal).
    Process { pid: u32 },
    /// An io_uring instance, by its fd.
    Ring { fd: i32 },
    /// No resource beyond the call itself (a 32-bit call that names no path).
    Call,
}

/// A file the kernel acted on, named by the kernel: the path built from its dentry and mount
/// chain, and its identity.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KernelFile {
    /// Absolute; relative-looking when `cut` or `detached` (see [`KernelFile::cut`]).
    pub(crate) path: Vec<u8>,
    /// Device, inode and mount; `None` for an object without an inode (an abstract socket).
    pub(crate) id: Option<FileId>,
    /// The inode had no links left (deleted, or never linked: memfd, `O_TMPFILE`).
    pub(crate) deleted: bool,
    /// The walk ended on an internal mount (memfd, pipe, socket, anonymous inode) or a detached
    /// tree: the path is not reachable from any root.
    pub(crate) detached: bool,
    /// The walk stopped before the root (too deep or too long): the leading components are
    /// missing.
    pub(crate) cut: bool,
    /// The file is on a stacked filesystem (overlayfs): what lies under it.
    pub(crate) stacked: Option<Stacked>,
}

/// What lies under a file on a stacked filesystem (overlayfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stacked {
    /// The file the kernel reads and writes.
    Real(Box<RealFile>),
    /// The kernel side could not read it (`real_file` in `unreadable`).
    Unreadable,
}

/// The file under an overlayfs file: in the upper layer when it has been created or copied up
/// there, else in the topmost lower layer that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RealFile {
    /// Its path: from the root of its filesystem as the kernel walked it (layers are private
    /// mounts no namespace shows), placed under the mount point where the host mounts that part
    /// of the filesystem when it does ([`RealRoot::Host`]).
    pub(crate) path: Vec<u8>,
    pub(crate) root: RealRoot,
    /// Device, inode and mode; no mount (a layer's mount is private to the overlay).
    pub(crate) id: FileId,
    /// In the overlay's upper (writable) layer; else a lower one.
    pub(crate) upper: bool,
    pub(crate) deleted: bool,
    pub(crate) cut: bool,
    /// For an upper file over a lower one: that lower file, which it was copied up from (its
    /// contents, until written over: protecting the lower file protects the copy).
    pub(crate) origin: Option<Box<RealFile>>,
}

impl RealFile {
    /// The real file and its origin.
    pub(crate) fn with_origin(&self) -> impl Iterator<Item = &RealFile> {
        std::iter::once(self).chain(self.origin.as_deref())
    }
}

/// Where a real file's path starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RealRoot {
    /// The host's root: the path is where the host's mount table shows the file.
    Host,
    /// The root of the file's filesystem (`id.dev`), which the host mounts nowhere that shows
    /// the file.
    Filesystem,
}

impl KernelFile {
    /// The real file under a stacked one, when it could be read.
    pub(crate) fn real(&self) -> Option<&RealFile> {
        match &self.stacked {
            Some(Stacked::Real(r)) => Some(r),
            _ => None,
        }
    }
}

/// Which file: device, inode, and the mount it was reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub(crate) struct FileId {
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) ino: u64,
    pub(crate) mount_id: u32,
    /// The mount namespace the path's `/` belongs to; `None` for internal mounts.
    pub(crate) mount_ns: Option<u32>,
    /// `i_mode`: file type and permission bits.
    pub(crate) mode: u16,
}

/// Where a requested path was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Requested {
    /// The process's memory at syscall entry.
    #[default]
    AtEntry,
    /// The process's memory at syscall exit (unreadable at entry: not yet faulted in).
    AtExit,
    /// The kernel's own copy (an exec's `bprm->filename`).
    KernelCopy,
}

/// A file named by an action: what the process asked for and what the kernel acted on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FileRef {
    /// The path as the process passed it; `None` when it could not be read.
    pub(crate) requested: Option<Vec<u8>>,
    pub(crate) requested_from: Requested,
    /// `requested` made absolute against the directory the kernel resolved it from (cwd, dirfd,
    /// root), lexically, when no object is known (a failure, a script).
    pub(crate) resolved: Option<Vec<u8>>,
    /// The file the kernel acted on, when it did.
    pub(crate) object: Option<KernelFile>,
}

/// How the path a record names was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathSource {
    /// The kernel's path of the object it acted on.
    Kernel,
    /// The requested path, resolved against the kernel's directory.
    Resolved,
    /// The requested path as passed (relative, or no directory known).
    Requested,
}

impl FileRef {
    /// The path policy matches and outputs name: the kernel's, else the requested one resolved,
    /// else as passed; `None` when nothing could be read.
    pub(crate) fn path(&self) -> Option<&[u8]> {
        self.object
            .as_ref()
            .map(|o| o.path.as_slice())
            .or(self.resolved.as_deref())
            .or(self.requested.as_deref())
    }

    pub(crate) fn path_source(&self) -> Option<PathSource> {
        if self.object.is_some() {
            Some(PathSource::Kernel)
        } else if self.resolved.is_some() {
            Some(PathSource::Resolved)
        } else {
            self.requested.as_ref().map(|_| PathSource::Requested)
        }
    }
}

impl FileRef {
    /// The paths policy matches: the kernel's path when the kernel acted on a file — and the
    /// host's path of the real file under it when it is on an overlay; otherwise the request,
    /// resolved when it could be. The request is not matched beside a kernel path: what was read
    /// from the process's memory is not necessarily what the kernel resolved (a racing thread
    /// can change it in between), and an alias the kernel followed (a symlink) is caught through
    /// the file's identity instead (`policy::inode`).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &[u8]> {
        self.path()
            .into_iter()
            .chain(self.object.iter().flat_map(KernelFile::real_host_path))
    }
}

impl KernelFile {
    /// The host's path of the real file under this one (not a path from a filesystem's root:
    /// that names no file a policy path could).
    fn real_host_path(&self) -> impl Iterator<Item = &[u8]> {
        self.real()
            .into_iter()
            .flat_map(RealFile::with_origin)
            .filter(|r| r.root == RealRoot::Host)
            .map(|r| r.path.as_slice())
    }
}

impl Resource {
    /// `target` and `detail` with nothing cut, unread, or known besides (tests).
    #[cfg(test)]
    pub(crate) fn bare(target: Target, detail: Detail) -> Self {
        Self {
            target,
            detail,
            truncated: vec![],
            unreadable: vec![],
            uring: None,
            ia32: None,
            destination: None,
        }
    }

    /// The file or unix socket the action named, if any.
    pub(crate) fn file(&self) -> Option<&FileRef> {
        match &self.target {
            Target::File(f) | Target::Unix(f) => Some(f),
            Target::Inet(..)
            | Target::OtherAddress { .. }
            | Target::Cgroup { .. }
            | Target::Process { .. }
            | Target::Ring { .. }
            | Target::Call => None,
        }
    }

    /// A script's interpreter, for an exec.
    pub(crate) fn interpreter(&self) -> Option<&Interpreter> {
        match &self.detail {
            Detail::Exec { interpreter, .. } => interpreter.as_ref(),
            _ => None,
        }
    }

    /// Every path the resource is known by ([`FileRef::paths`]): the file, a rename's or link's
    /// new name, a copy's destination, and for a script the interpreter as named and as loaded
    /// (running a script runs its interpreter).
    pub(crate) fn paths(&self) -> impl Iterator<Item = &[u8]> {
        let to = match &self.detail {
            Detail::Change(c) => c.to.as_ref(),
            _ => None,
        };
        let taken = self
            .taken()
            .into_iter()
            .flat_map(|k| std::iter::once(k.path.as_slice()).chain(k.real_host_path()));
        let interp = self.interpreter().into_iter().flat_map(|i| {
            std::iter::once(i.shebang.as_slice())
                .chain(i.loaded.as_ref().map(|k| k.path.as_slice()))
                .chain(i.loaded.iter().flat_map(KernelFile::real_host_path))
        });
        self.file()
            .into_iter()
            .chain(to)
            .flat_map(FileRef::paths)
            .chain(interp)
            .chain(taken)
    }

    /// Every host name known for a network destination (`Destination::hosts`).
    pub(crate) fn host_names(&self) -> impl Iterator<Item = &str> {
        self.destination
            .iter()
            .flat_map(|d| d.hosts.iter().map(|h| &*h.name))
    }

    /// The identities of the files the kernel acted on (the file, a script's interpreter, a
    /// copy's destination), and of the real files under them when they are on an overlay.
    pub(crate) fn file_ids(&self) -> impl Iterator<Item = &FileId> {
        self.kernel_files().flat_map(|k| {
            k.id.iter().chain(
                k.real()
                    .into_iter()
                    .flat_map(RealFile::with_origin)
                    .map(|r| &r.id),
            )
        })
    }

    /// The files the kernel acted on: the file, a script's interpreter, a file taken from
    /// another process.
    pub(crate) fn kernel_files(&self) -> impl Iterator<Item = &KernelFile> {
        let object = self.file().and_then(|f| f.object.as_ref());
        let loaded = self.interpreter().and_then(|i| i.loaded.as_ref());
        object.into_iter().chain(loaded).chain(self.taken())
    }

    /// [`Resource::kernel_files`], to change.
    pub(crate) fn kernel_files_mut(&mut self) -> impl Iterator<Item = &mut KernelFile> {
        let (object, loaded, taken) = match (&mut self.target, &mut self.detail) {
            (
                Target::File(f),
                Detail::Exec {
                    interpreter: Some(i),
                    ..
                },
            ) => (f.object.as_mut(), i.loaded.as_mut(), None),
            (Target::File(f) | Target::Unix(f), Detail::Access(a)) => {
                (f.object.as_mut(), None, a.file.as_mut())
            }
            (Target::File(f), Detail::Copy(c)) => (f.object.as_mut(), None, c.to.as_mut()),
            (Target::File(f) | Target::Unix(f), _) => (f.object.as_mut(), None, None),
            (_, Detail::Access(a)) => (None, None, a.file.as_mut()),
            _ => (None, None, None),
        };
        object.into_iter().chain(loaded).chain(taken)
    }

    /// The file pidfd_getfd took from another process, or a copy's destination.
    fn taken(&self) -> Option<&KernelFile> {
        match &self.detail {
            Detail::Access(a) => a.file.as_ref(),
            Detail::Copy(c) => c.to.as_ref(),
            _ => None,
        }
    }
}

/// A socket address as the process passed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PassedAddr {
    Inet(IpAddr, u16),
    Unix(Vec<u8>),
    Other { family: u16 },
}

/// How a non-blocking connect finished, after its syscall returned `EINPROGRESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completion {
    /// What the syscall itself returned (`-EINPROGRESS`).
    pub(crate) syscall_retval: i64,
    /// From the attempt to the final state; `None` when it was not known within the wait.
    pub(crate) after: Option<std::time::Duration>,
    /// How long the agent waited for it.
    pub(crate) waited: std::time::Duration,
}

/// An executable mapping: what the call asked for and what the kernel mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapExec {
    /// `PROT_*` as passed.
    pub(crate) prot: u32,
    /// mmap: its `MAP_*` flags and the fd passed; `None` for mprotect.
    pub(crate) mmap: Option<(u32, i32)>,
    /// The mapping's start address and length, as the kernel made it.
    pub(crate) start: u64,
    pub(crate) len: u64,
    /// The image runs without an ELF interpreter (`AT_BASE` 0): the dynamic loader exec'd as a
    /// program, or a static program — it maps the programs it runs itself.
    pub(crate) loader: bool,
}

/// An exec's interpreter, for a `#!` script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    /// The interpreter as the `#!` line names it (`bprm->interp`).
    pub(crate) shebang: Vec<u8>,
    /// The executable the kernel loaded for it (`bprm->file`).
    pub(crate) loaded: Option<KernelFile>,
}

/// Per-action details of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detail {
    Exec {
        /// `None` when the arguments could not be read.
        argv: Option<Vec<Vec<u8>>>,
        /// Read from the new image's argument area (else as passed at entry).
        argv_from_image: bool,
        /// `execveat` dirfd when not the cwd.
        dirfd: Option<i32>,
        /// `exec_id` of the image a successful exec started.
        new_exec_id: Option<Arc<str>>,
        interpreter: Option<Interpreter>,
    },
    Open {
        flags: u64,
        mode: u32,
        dirfd: Option<i32>,
        /// `openat2` `RESOLVE_*` flags.
        resolve: u64,
    },
    Connect {
        /// The address as passed, when it differs from the one the kernel connected to (or no
        /// kernel copy exists); `None` when it could not be read or matches.
        passed: Option<PassedAddr>,
        /// The destination is the kernel's own copy.
        from_kernel: bool,
        completion: Option<Completion>,
    },
    /// A file change without an open (delete, rename, truncate, chmod, chown, link, symlink,
    /// mkdir, rmdir).
    Change(Change),
    /// A cgroup move: the process moved (the actor may have moved another one).
    Move { pid: u32 },
    /// A signal: its number, what the kernel did with it (`TRACE_SIGNAL_*`), and whether the
    /// kernel generated it itself (a child's exit notifying its parent) rather than a kill(2).
    Signal {
        sig: u32,
        delivery: i32,
        by_kernel: bool,
    },
    /// A watched process ended (the target is the process itself); `None`: the kernel side
    /// could not read how (`unreadable` says `exit_status`).
    Exit(Option<ExitStatus>),
    /// Reaching into another process (the target is `Target::Process`).
    Access(Access),
    /// An io_uring instance created: its queue sizes and `IORING_SETUP_*` flags.
    Ring {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
    },
    /// A 32-bit system call recorded as itself (`Resource::ia32` has its number and arguments).
    Compat,
    /// A file mapped executable (the target is the file the kernel mapped).
    MapExec(MapExec),
    /// A DNS query and its answer (the target is the resolver).
    Dns(Box<DnsLookup>),
    /// A TLS ClientHello (the target is the server's address).
    Tls(Box<crate::wire::tls::Hello>),
    /// An HTTP/1.x request and the status it got (the target is the server's address).
    Http(Box<HttpExchange>),
    /// What an agent said it did, or a payload refused as no claim (the target is the call).
    Claim(Box<ClaimRecord>),
    /// An executable replaced (the target is the file `mm->exe_file` names after the call).
    SetExe(SetExe),
    /// A file held or received, by its fd (the target is the file).
    Fd {
        fd: i32,
        /// Received on this unix socket (`file.receive`).
        socket_fd: Option<i32>,
    },
    /// Bytes moved between files (the target is the source).
    Copy(Box<FileCopy>),
}

/// `process.set_exe`: what the call replaced, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetExe {
    /// What `mm->exe_file` named before the call.
    pub(crate) previous: Option<KernelFile>,
    /// The fd passed (`PR_SET_MM_MAP`: as read from the process's memory).
    pub(crate) fd: i32,
    /// Through `PR_SET_MM_MAP` (else `PR_SET_MM_EXE_FILE`).
    pub(crate) map: bool,
    /// Replacements since the exec, this one included (0: the call changed nothing).
    pub(crate) replacements: u32,
    /// Recorded when the agent first saw the process, after the change: the actor is the
    /// process as it was then.
    pub(crate) before_watch: bool,
}

/// `file.copy`: where the bytes went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileCopy {
    /// The destination, the kernel's file behind `out_fd`.
    pub(crate) to: Option<KernelFile>,
    pub(crate) in_fd: i32,
    pub(crate) out_fd: i32,
    /// Bytes asked for.
    pub(crate) len: u64,
    /// `splice` / `copy_file_range` flags.
    pub(crate) flags: u32,
}

/// How a process ended, from the wait status the kernel set when its last thread exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// It exited with this code (`exit(2)`, `exit_group(2)`, a return from `main`).
    Code(u8),
    /// A signal ended it (and dumped its core).
    Signal { sig: u8, core_dumped: bool },
}

impl ExitStatus {
    /// Decodes a wait status (`WIFEXITED`/`WEXITSTATUS`, `WTERMSIG`, `WCOREDUMP`).
    pub(crate) fn from_wait(status: u32) -> Self {
        match status & 0x7f {
            0 => Self::Code(((status >> 8) & 0xff) as u8),
            sig => Self::Signal {
                sig: sig as u8,
                core_dumped: status & 0x80 != 0,
            },
        }
    }

    /// The status as a shell reports it (`$?`): the code, or 128 plus the signal.
    pub(crate) fn shell_code(self) -> i32 {
        match self {
            Self::Code(c) => i32::from(c),
            Self::Signal { sig, .. } => 128 + i32::from(sig),
        }
    }

    /// A process succeeded when it exited with 0; how an unread one ended is unknown.
    pub(crate) fn outcome(status: Option<Self>) -> Outcome {
        match status.map(Self::shell_code) {
            Some(0) => Outcome::Success(0),
            Some(c) => Outcome::Failure(c),
            None => Outcome::Unknown,
        }
    }
}

/// A 32-bit system call as passed: its ia32 number and the six argument registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ia32Call {
    pub(crate) nr: u32,
    /// `None`: not read (a successful exec had replaced them when the call returned).
    pub(crate) args: Option<[u64; 6]>,
}

/// The io_uring request an action was submitted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UringRef {
    /// The opcode's name (`openat`, `connect`, ...).
    pub(crate) op: &'static str,
    /// The submitter's tag for the request.
    pub(crate) user_data: u64,
}

/// How a process reached into another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessKind {
    /// ptrace with its request.
    Ptrace {
        request: u64,
        addr: u64,
    },
    /// process_vm_readv / process_vm_writev.
    VmRead,
    VmWrite,
    /// pidfd_getfd: the target's fd taken.
    GetFd {
        fd: i32,
    },
}

/// What an access record says besides the target's pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Access {
    pub(crate) kind: AccessKind,
    /// The pid is the kernel's (from the pidfd); else as passed.
    pub(crate) pid_from_kernel: bool,
    /// The caller is in a pid namespace below the initial one: a pid it passed is its
    /// namespace's number, not the host's.
    pub(crate) caller_namespaced: bool,
    /// pidfd_getfd: the file obtained.
    pub(crate) file: Option<KernelFile>,
    /// The target's process image and agent, when known.
    pub(crate) target_exec_id: Option<Arc<str>>,
    pub(crate) target_agent: Option<Arc<str>>,
}

/// The flags of a file change: `RENAME_*` of renameat2, or the `AT_*` of the other `*at` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeFlags {
    At(u32),
    Rename(u32),
}

impl Default for ChangeFlags {
    fn default() -> Self {
        Self::At(0)
    }
}

/// What a file change did besides naming its file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Change {
    /// rename, link: the new name.
    pub(crate) to: Option<FileRef>,
    /// symlink: what the link contains (a string, not resolved).
    pub(crate) content: Option<Vec<u8>>,
    /// chmod, mkdir: the mode asked for.
    pub(crate) mode: Option<u32>,
    /// chown: the owner and group asked for (`None` each: unchanged).
    pub(crate) owner: Option<(Option<u32>, Option<u32>)>,
    /// truncate: the length asked for.
    pub(crate) length: Option<u64>,
    pub(crate) flags: ChangeFlags,
    /// The directory fd of the (first) path, when not the cwd.
    pub(crate) dirfd: Option<i32>,
    /// The fd changed (`ftruncate`, `fchmod`, `fchown`).
    pub(crate) fd: Option<i32>,
}

/// A value of a record that could be cut or unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Path,
    Argv,
    RequestedPath,
    Address,
    KernelPath,
    Exe,
    /// A file change's second path (new name, symlink content).
    NewPath,
    /// How a process ended.
    ExitStatus,
    /// The real file under an overlayfs file.
    RealFile,
}

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Argv => "argv",
            Self::RequestedPath => "requested_path",
            Self::Address => "address",
            Self::KernelPath => "kernel_path",
            Self::Exe => "exe",
            Self::NewPath => "new_path",
            Self::ExitStatus => "exit_status",
            Self::RealFile => "real_file",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "path" => Self::Path,
            "argv" => Self::Argv,
            "requested_path" => Self::RequestedPath,
            "address" => Self::Address,
            "kernel_path" => Self::KernelPath,
            "exit_status" => Self::ExitStatus,
            "exe" => Self::Exe,
            "new_path" => Self::NewPath,
            "real_file" => Self::RealFile,
            _ => return None,
        })
    }
}

/// The policy verdict on an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) decision: Decision,
    /// The matching rule; `None` when the default decision applied.
    pub(crate) rule: Option<Arc<str>>,
    /// The rule matched through a protected set the resource belongs to only by inode.
    pub(crate) by_inode: bool,
    /// Digest of everything that decided it.
    pub(crate) version: Arc<str>,
}

/// An explicit hole in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// Records lost in the window.
    pub(crate) lost: u64,
    pub(crate) reason: GapReason,
    /// Losses per action name (`process.lifecycle` for fork records).
    pub(crate) by_action: BTreeMap<String, u64>,
    pub(crate) from: Timestamp,
    pub(crate) to: Timestamp,
    /// Sequence numbers that were dropped after sequencing (`spool_full`).
    pub(crate) seqs: Option<(u64, u64)>,
    /// The processes that lost the most records in the window (pid, records), most first: the
    /// kernel counts losses per process, so a flood names its source.
    pub(crate) by_process: Vec<(u32, u64)>,
}

impl Event {
    /// The activity, unless this is a gap.
    pub(crate) fn activity(&self) -> Option<&Activity> {
        match &self.body {
            Body::Activity(a) => Some(a),
            Body::Gap(_) => None,
        }
    }

    pub(crate) fn activity_mut(&mut self) -> Option<&mut Activity> {
        match &mut self.body {
            Body::Activity(a) => Some(a),
            Body::Gap(_) => None,
        }
    }

    pub(crate) fn gap(&self) -> Option<&Gap> {
        match &self.body {
            Body::Gap(g) => Some(g),
            Body::Activity(_) => None,
        }
    }

    /// The agent id the event is attributed to (`unattributed` when none; gaps have none).
    pub(crate) fn agent_id(&self) -> &str {
        self.activity()
            .and_then(|a| a.agent.as_deref())
            .map_or(UNATTRIBUTED, |a| a.id.as_str())
    }

    /// The action name (`audit.gap` for gaps).
    pub(crate) fn action_name(&self) -> &'static str {
        match &self.body {
            Body::Activity(a) => a.action.name(),
            Body::Gap(_) => Action::GAP,
        }
    }
}

/// A transform between enrichment and the sink (agent identity, policy verdict, ...).
pub(crate) trait Stage: Send {
    fn apply(&mut self, event: &mut Event);
}

/// Sees every event the sink accepted (summaries, metrics); cannot change it.
pub(crate) trait Observer: Send {
    /// `accepted` is when the sink took it (one clock read per record, shared by every observer).
    fn observe(&mut self, event: &Event, accepted: Timestamp);

    /// After every batch: how many kernel records it held.
    fn batch(&mut self, _kernel_records: usize) {}

    /// After every loss check: the kernel's cumulative counters.
    fn kernel(&mut self, _counters: &audit_common::counters::Counters) {}
}
