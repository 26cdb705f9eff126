//! The records the kernel emits into the ring buffer.
//!
//! Every record starts with an [`EventHeader`]. Action records (exec, open, connect) are built in a
//! per-thread pending slot: at syscall entry with what the process passed, at syscall exit (or at
//! `sched_process_exec`) with what the kernel acted on, and emitted with the result. Their body is
//! a fixed part followed by variable **sections** (argv, the requested path, the kernel's path of
//! the object, ...) located by [`Sections`], so a record is only as long as what it carries.
//! Lifecycle and outcome records are fixed-size.
//!
//! Provenance is explicit: a value read from the process's memory (the requested path, argv at
//! entry, the socket address as passed) is flagged as such; a value the kernel acted on (the
//! `struct file` behind a returned fd, the exec's `linux_binprm`, the socket's address copy) is
//! flagged as kernel; a value that could not be read is flagged unreadable, never left empty.

/// `TASK_COMM_LEN` in the kernel.
pub const COMM_LEN: usize = 16;
/// Longest path the kernel accepts (`PATH_MAX`, including the trailing NUL).
pub const PATH_MAX: usize = 4096;
/// Longest path component plus its NUL (`NAME_MAX` + 1).
pub const NAME_READ: usize = 256;
/// Bytes a kernel path walk may write: components (leaf first, NUL-terminated) of up to
/// `PATH_MAX` bytes, plus room for the last component read (a component may start at any offset
/// up to `PATH_MAX`), plus one more component of slack: the verifier's bound on the offset is
/// looser than the walk's own.
pub const WALK_MAX: usize = PATH_MAX + 2 * NAME_READ;
/// Most components a kernel path walk follows (mount crossings count too).
pub const WALK_DEPTH: usize = 96;
/// Most argv bytes (NUL-separated) kept per exec.
pub const ARGV_MAX_BYTES: usize = 2048;
/// Most bytes read for one argument at syscall entry.
pub const ARG_MAX_BYTES: usize = 1024;
/// Most arguments kept per exec (at syscall entry; the new image's argument area is read whole,
/// up to `ARGV_MAX_BYTES`).
pub const ARGV_MAX_ARGS: usize = 32;
/// Bytes of `struct sockaddr` kept per connect (`sockaddr_un` is 110).
pub const SOCKADDR_MAX: usize = 128;
/// Most bytes of an exec's interpreter string (`#!` line).
pub const INTERP_MAX: usize = 256;

/// What a record describes.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Open = 2,
    Connect = 3,
    Fork = 4,
    Exit = 5,
    /// The final state of a non-blocking connect ([`ConnectOutcome`]).
    ConnectOutcome = 6,
    /// A change to the file system without an open: delete, rename, truncate, mode, owner,
    /// links, directories ([`FileBody`]).
    File = 7,
    /// A watched process moved to another cgroup ([`CgroupMoveBody`]).
    CgroupMove = 8,
    /// A watched process sent a signal to the agent ([`SignalBody`]).
    Signal = 9,
    /// A watched process reached into another one: ptrace, process_vm_readv/writev,
    /// pidfd_getfd ([`AccessBody`]).
    Access = 10,
    /// A datagram (or TCP Fast Open) sent to an address: sendto, sendmsg, sendmmsg with a
    /// destination ([`ConnectBody`]).
    Send = 11,
    /// An io_uring request submitted by a watched process ([`UringBody`]).
    Uring = 12,
    /// The completion of a recorded io_uring request ([`UringDoneBody`]).
    UringDone = 13,
    /// A watched process created an io_uring instance ([`UringSetupBody`]).
    UringSetup = 14,
    /// A 32-bit (compat) system call of a watched task ([`CompatBody`]).
    Compat = 15,
    /// Payload a watched socket sent or received: DNS, the first bytes of a TCP connection
    /// (`crate::net::PacketBody`).
    Packet = 16,
    /// A process replaced what `mm->exe_file` names (`prctl(PR_SET_MM)`) ([`SetExeBody`]).
    SetExe = 17,
    /// A file in a watched process's fd table it did not open on record: held when the agent
    /// first saw the process, or received from another process ([`FdBody`]).
    Fd = 18,
    /// Bytes moved between two files by the kernel: sendfile, splice, copy_file_range
    /// ([`CopyBody`]).
    Copy = 19,
    /// A file mapped executable (mmap, mprotect with `PROT_EXEC`) by an image the kernel started
    /// without an ELF interpreter — the dynamic loader run as a program — or a protected file
    /// mapped executable by any image ([`MapExecBody`]).
    MapExec = 24,
}

impl EventKind {
    /// Number of slots in per-kind counter arrays (index = kind value). A power of two, so the
    /// kernel can bound an index with a mask (the verifier cannot follow a modulo).
    pub const SLOTS: usize = 32;

    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Open,
            3 => Self::Connect,
            4 => Self::Fork,
            5 => Self::Exit,
            6 => Self::ConnectOutcome,
            7 => Self::File,
            8 => Self::CgroupMove,
            9 => Self::Signal,
            10 => Self::Access,
            11 => Self::Send,
            12 => Self::Uring,
            13 => Self::UringDone,
            14 => Self::UringSetup,
            15 => Self::Compat,
            16 => Self::Packet,
            17 => Self::SetExe,
            18 => Self::Fd,
            19 => Self::Copy,
            24 => Self::MapExec,
            _ => return None,
        })
    }
}

/// Which system call produced an action record.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Not started by a system call the agent saw enter (e.g. an exec seen only at
    /// `sched_process_exec`).
    Unknown = 0,
    Execve = 1,
    Execveat = 2,
    Openat = 3,
    Openat2 = 4,
    Open = 5,
    Creat = 6,
    Connect = 7,
    Unlink = 8,
    Unlinkat = 9,
    Rmdir = 10,
    Rename = 11,
    Renameat = 12,
    Renameat2 = 13,
    Truncate = 14,
    Ftruncate = 15,
    Chmod = 16,
    Fchmod = 17,
    Fchmodat = 18,
    Fchmodat2 = 19,
    Chown = 20,
    Lchown = 21,
    Fchown = 22,
    Fchownat = 23,
    Link = 24,
    Linkat = 25,
    Symlink = 26,
    Symlinkat = 27,
    Mkdir = 28,
    Mkdirat = 29,
    OpenByHandleAt = 30,
    PidfdGetfd = 31,
    ProcessVmReadv = 32,
    ProcessVmWritev = 33,
    Ptrace = 34,
    Sendto = 35,
    Sendmsg = 36,
    Sendmmsg = 37,
    /// An io_uring request (the opcode is in the record).
    IoUring = 38,
    /// A 32-bit system call (`int 0x80`, ia32 `sysenter`/`syscall`); its number is in the record.
    Compat = 39,
    Prctl = 40,
    Recvmsg = 41,
    Recvmmsg = 42,
    /// `sendfile64` (the x86-64 `sendfile`).
    Sendfile = 43,
    Splice = 44,
    CopyFileRange = 45,
    /// mmap, mprotect (executable mappings). Numbers below 256, not necessarily contiguous.
    Mmap = 64,
    Mprotect = 65,
}

impl Syscall {
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::Unknown,
            1 => Self::Execve,
            2 => Self::Execveat,
            3 => Self::Openat,
            4 => Self::Openat2,
            5 => Self::Open,
            6 => Self::Creat,
            7 => Self::Connect,
            8 => Self::Unlink,
            9 => Self::Unlinkat,
            10 => Self::Rmdir,
            11 => Self::Rename,
            12 => Self::Renameat,
            13 => Self::Renameat2,
            14 => Self::Truncate,
            15 => Self::Ftruncate,
            16 => Self::Chmod,
            17 => Self::Fchmod,
            18 => Self::Fchmodat,
            19 => Self::Fchmodat2,
            20 => Self::Chown,
            21 => Self::Lchown,
            22 => Self::Fchown,
            23 => Self::Fchownat,
            24 => Self::Link,
            25 => Self::Linkat,
            26 => Self::Symlink,
            27 => Self::Symlinkat,
            28 => Self::Mkdir,
            29 => Self::Mkdirat,
            30 => Self::OpenByHandleAt,
            31 => Self::PidfdGetfd,
            32 => Self::ProcessVmReadv,
            33 => Self::ProcessVmWritev,
            34 => Self::Ptrace,
            35 => Self::Sendto,
            36 => Self::Sendmsg,
            37 => Self::Sendmmsg,
            38 => Self::IoUring,
            39 => Self::Compat,
            40 => Self::Prctl,
            41 => Self::Recvmsg,
            42 => Self::Recvmmsg,
            43 => Self::Sendfile,
            44 => Self::Splice,
            45 => Self::CopyFileRange,
            64 => Self::Mmap,
            65 => Self::Mprotect,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Execve => "execve",
            Self::Execveat => "execveat",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::Open => "open",
            Self::Creat => "creat",
            Self::Connect => "connect",
            Self::Unlink => "unlink",
            Self::Unlinkat => "unlinkat",
            Self::Rmdir => "rmdir",
            Self::Rename => "rename",
            Self::Renameat => "renameat",
            Self::Renameat2 => "renameat2",
            Self::Truncate => "truncate",
            Self::Ftruncate => "ftruncate",
            Self::Chmod => "chmod",
            Self::Fchmod => "fchmod",
            Self::Fchmodat => "fchmodat",
            Self::Fchmodat2 => "fchmodat2",
            Self::Chown => "chown",
            Self::Lchown => "lchown",
            Self::Fchown => "fchown",
            Self::Fchownat => "fchownat",
            Self::Link => "link",
            Self::Linkat => "linkat",
            Self::Symlink => "symlink",
            Self::Symlinkat => "symlinkat",
            Self::Mkdir => "mkdir",
            Self::Mkdirat => "mkdirat",
            Self::OpenByHandleAt => "open_by_handle_at",
            Self::PidfdGetfd => "pidfd_getfd",
            Self::ProcessVmReadv => "process_vm_readv",
            Self::ProcessVmWritev => "process_vm_writev",
            Self::Ptrace => "ptrace",
            Self::Sendto => "sendto",
            Self::Sendmsg => "sendmsg",
            Self::Sendmmsg => "sendmmsg",
            Self::IoUring => "io_uring",
            Self::Compat => "ia32",
            Self::Prctl => "prctl",
            Self::Recvmsg => "recvmsg",
            Self::Recvmmsg => "recvmmsg",
            Self::Sendfile => "sendfile",
            Self::Splice => "splice",
            Self::CopyFileRange => "copy_file_range",
            Self::Mmap => "mmap",
            Self::Mprotect => "mprotect",
        }
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The requested path did not fit and was cut.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// Arguments were left out or cut (too many, or too many bytes).
    pub const ARGV_TRUNCATED: u32 = 1 << 1;
    /// The thread ended between syscall entry and exit: no result is known.
    pub const INCOMPLETE: u32 = 1 << 2;
    /// The requested path could not be read from the process's memory (at entry or exit).
    pub const PATH_FAULT: u32 = 1 << 3;
    /// The argument vector could not be read.
    pub const ARGV_FAULT: u32 = 1 << 4;
    /// The socket address as passed could not be read from the process's memory.
    pub const ADDR_FAULT: u32 = 1 << 5;
    /// A fork record: the child is a thread of the same process.
    pub const THREAD: u32 = 1 << 6;
    /// The requested path was read at syscall exit (it could not be at entry; the kernel had
    /// faulted the page in by then).
    pub const PATH_AT_EXIT: u32 = 1 << 7;
    /// The requested path is the kernel's own copy (the exec's `bprm->filename`).
    pub const PATH_FROM_KERNEL: u32 = 1 << 8;
    /// argv was read from the new image's argument area (`mm->arg_start..arg_end`).
    pub const ARGV_FROM_IMAGE: u32 = 1 << 9;
    /// The base section was walked (an empty one is the root).
    pub const BASE_WALKED: u32 = 1 << 10;
    /// The second base section (of a file change's second path) was walked.
    pub const BASE2_WALKED: u32 = 1 << 11;
    /// A kernel path walk failed (a pointer could not be read): its section is missing.
    pub const KPATH_FAULT: u32 = 1 << 12;
    /// The address was taken from the kernel's copy (cgroup `sock_addr` hook).
    pub const ADDR_FROM_KERNEL: u32 = 1 << 13;
    /// The exec changed interpreter (`#!` script or binfmt_misc): `extra` holds `bprm->interp`.
    pub const SCRIPT: u32 = 1 << 14;
    /// The exe section announces the path of the acting image's executable.
    pub const EXE_PATH: u32 = 1 << 15;
    /// The acting image's executable could not be read (`mm` or `exe_file` missing).
    pub const EXE_FAULT: u32 = 1 << 16;
    /// A connect on a non-blocking socket: its final state follows as a [`ConnectOutcome`].
    pub const CONNECT_ASYNC: u32 = 1 << 17;
    /// A file change's second path (rename/link destination, symlink content) could not be read.
    pub const PATH2_FAULT: u32 = 1 << 18;
    /// A file change's second path was cut.
    pub const PATH2_TRUNCATED: u32 = 1 << 19;
    /// A signal the kernel generated itself (`si_code` > 0), not a process's kill(2).
    pub const SIGNAL_BY_KERNEL: u32 = 1 << 20;
    /// A 32-bit call's argument registers were not read: a successful exec had replaced them
    /// with the new image's by the time the call returned.
    pub const ARGS_UNREAD: u32 = 1 << 21;
    // The high bits, from the top down: other families of flags grow from the bottom.
    /// The process's `mm->exe_file` was replaced (`prctl(PR_SET_MM)`) since its last exec: `exe`
    /// names the file the exec loaded, not what `mm->exe_file` (`/proc/PID/exe`) says now.
    pub const EXE_REPLACED: u32 = 1 << 31;
    /// A [`super::SetExeBody`] record written when the agent first saw the process, after the
    /// change: the header is the process as it was when it made the change.
    pub const BEFORE_WATCH: u32 = 1 << 30;
    /// The first record of a process the agent saw (no executable announced for it yet): the
    /// files it holds follow as [`super::FdBody`] records.
    pub const FIRST_SIGHT: u32 = 1 << 29;
}

/// Bits of [`FileFacts::flags`].
pub mod file_flags {
    /// The walk stopped before the root (too deep or too long): the path is a suffix.
    pub const CUT: u16 = 1 << 0;
    /// The inode has no links left (deleted, or an `O_TMPFILE`/memfd never linked).
    pub const DELETED: u16 = 1 << 1;
    /// The walk ended on a mount that is not the root of the task's mount namespace (an internal
    /// mount: memfd, pipe, socket, anonymous inode; or a detached tree).
    pub const DETACHED: u16 = 1 << 2;
    /// The facts are valid (a file was found and read).
    pub const VALID: u16 = 1 << 3;
    /// The inode belongs to a stacked filesystem (overlayfs): the file the kernel reads and writes
    /// is another one, below it (`ActionCommon::real`).
    pub const STACKED: u16 = 1 << 8;
    /// The walk went up the dentries to the root of the file's filesystem, across no mount (a
    /// layer of an overlay is reached through a private mount no namespace shows): the path is
    /// relative to that filesystem's root.
    pub const FS_ROOT: u16 = 1 << 9;
    /// The real file of a stacked one is in the overlay's upper (writable) layer; else a lower one.
    pub const UPPER: u16 = 1 << 10;
    /// The real file of a stacked one was copied up from a lower file (`ActionCommon::origin`).
    pub const ORIGIN: u16 = 1 << 11;
}

/// What the kernel knows about a file: identity and where the walk ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// Inode number.
    pub ino: u64,
    /// `sb->s_dev` (kernel encoding: major << 20 | minor).
    pub dev: u32,
    /// `mount->mnt_id` of the mount the file was reached through.
    pub mnt_id: u32,
    /// Inode number of the mount namespace the walk ended in (its root is the path's `/`).
    pub mnt_ns: u32,
    /// `inode->i_mode` (file type and permission bits).
    pub mode: u16,
    /// [`file_flags`] bits.
    pub flags: u16,
}

/// Where a variable-length section lies in the body's variable area (offset, length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub off: u16,
    pub len: u16,
}

/// The variable sections of an action body. Each lies in the variable area that follows the
/// fixed part; `end` is where the next one may go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sections {
    /// NUL-separated arguments (exec).
    pub argv: Span,
    /// The path as the process passed it (or the kernel's copy, see flags).
    pub requested: Span,
    /// A kernel path walk of the object acted on (`common.file`): components leaf first, each
    /// NUL-terminated (none = the root).
    pub kpath: Span,
    /// A kernel path walk of the directory a path was resolved from, when it named no object
    /// the kernel acted on (a failure; a script, whose file the kernel does not keep): the cwd,
    /// the dirfd's file, or the task's root for an absolute path.
    pub base: Span,
    /// exec: the interpreter string of a script; connect: the unix peer's bound name; file
    /// change: the second path as passed (rename/link destination, symlink content).
    pub extra: Span,
    /// The acting image's executable as a kernel path walk (leaf first), when announced.
    pub exe: Span,
    /// Number of arguments in `argv` (0: count the NUL-separated strings).
    pub argc: u16,
    /// First free byte of the variable area.
    pub end: u16,
    /// File change: a kernel path walk of the directory the second path was resolved from.
    pub base2: Span,
    /// The real file under a stacked `common.file` (`ActionCommon::real`): a walk to the root of
    /// its filesystem, leaf first.
    pub real: Span,
    /// The lower file an upper real file was copied up from (`ActionCommon::origin`), walked
    /// the same way.
    pub origin: Span,
}

/// Common prefix of every record (72 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// [`EventKind`]; 0 in a pending slot means "no syscall in flight".
    pub kind: u16,
    /// [`Syscall`] for action records, 0 otherwise.
    pub syscall: u16,
    /// Bytes of body that follow the header in the emitted record.
    pub body_len: u16,
    pub _pad: u16,
    /// [`flags`] bits.
    pub flags: u32,
    /// Process id (tgid) as seen from the initial pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id (`real_parent->tgid`).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `CLOCK_BOOTTIME` nanoseconds at syscall entry (the attempt).
    pub ktime_ns: u64,
    /// cgroup v2 id (the cgroup directory's inode number).
    pub cgroup_id: u64,
    /// Syscall return value (negative errno on failure); 0 for lifecycle records.
    pub retval: i64,
    pub comm: [u8; COMM_LEN],
}

impl EventHeader {
    pub const ZERO: Self = Self {
        kind: 0,
        syscall: 0,
        body_len: 0,
        _pad: 0,
        flags: 0,
        pid: 0,
        tid: 0,
        ppid: 0,
        uid: 0,
        gid: 0,
        ktime_ns: 0,
        cgroup_id: 0,
        retval: 0,
        comm: [0; COMM_LEN],
    };
}

/// The start of every action body: where its sections lie, the file the kernel acted on, and
/// the acting image's executable.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ActionCommon {
    pub sections: Sections,
    /// open: the file opened (success) or the directory a failed path was relative to;
    /// exec: the executable loaded (`bprm->file`, the interpreter for a script);
    /// connect (unix): the peer's socket file, or the base of a failed relative path.
    pub file: FileFacts,
    /// The acting image's executable (`mm->exe_file`).
    pub exe: FileFacts,
    /// When `file` is on overlayfs ([`file_flags::STACKED`]): the file under it that the kernel
    /// reads and writes — the upper layer's, else the topmost lower layer's ([`file_flags::UPPER`]
    /// says which). Not valid when it could not be read.
    pub real: FileFacts,
    /// When `real` is in the upper layer over a lower file: that lower file, which it was copied
    /// up from (its data, until written over).
    pub origin: FileFacts,
}

/// Fixed part of an open record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenBody {
    pub common: ActionCommon,
    /// Directory fd the path is relative to (`AT_FDCWD` = -100 for `open`/`creat`).
    pub dirfd: i32,
    pub mode: u32,
    pub flags: u64,
    /// `open_how.resolve` for `openat2`, 0 otherwise.
    pub resolve: u64,
    /// The filename pointer as passed (kernel side only: re-read at exit).
    pub user_path: u64,
}

/// Fixed part of a file-change record. Which fields a system call has is implied by
/// [`EventHeader::syscall`]; absent ones are 0 (`dirfd`s: `AT_FDCWD`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileBody {
    pub common: ActionCommon,
    /// Directory of the first path (`AT_FDCWD` = -100 for the cwd).
    pub dirfd: i32,
    /// Directory of the second path.
    pub dirfd2: i32,
    /// The fd changed (`ftruncate`, `fchmod`, `fchown`); its file is `common.file`.
    pub fd: i32,
    /// New mode (`chmod`, `mkdir`).
    pub mode: u32,
    /// New owner and group (`chown`; `u32::MAX` = unchanged).
    pub uid: u32,
    pub gid: u32,
    /// `AT_*` / `RENAME_*` flags.
    pub flags: u32,
    pub _pad: u32,
    /// New length (`truncate`).
    pub length: u64,
    /// The path pointers as passed (kernel side only: re-read at exit).
    pub user_path: u64,
    pub user_path2: u64,
}

/// Fixed part of an access record (ptrace, process_vm_readv/writev, pidfd_getfd). For
/// `pidfd_getfd` the file obtained is `common.file` (walked in `kpath`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct AccessBody {
    pub common: ActionCommon,
    /// The target process: as passed (ptrace, process_vm_*), or the pidfd's own `struct pid`
    /// read by the kernel (pidfd_getfd, see [`AccessBody::pid_from_kernel`]).
    pub target_pid: u32,
    /// 1 when `target_pid` is the kernel's (the initial pid namespace's number).
    pub pid_from_kernel: u32,
    /// The caller's pid namespace level: above 0, a pid it passed is its namespace's number.
    pub caller_ns_level: u32,
    /// pidfd_getfd: the fd taken from the target.
    pub target_fd: i32,
    /// ptrace: the request; process_vm_*: the number of remote iovecs.
    pub request: u64,
    /// ptrace: the address argument.
    pub addr: u64,
}

/// Fixed part of an io_uring submission record: the prepared request as the kernel holds it. Paths
/// are the kernel's own copies (`struct filename`: `requested`, `extra`), addresses the kernel's
/// copy of the destination (`addr`); the result follows in a [`UringDoneBody`] record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringBody {
    pub common: ActionCommon,
    /// The `struct io_kiocb *`: joins the completion.
    pub req: u64,
    pub user_data: u64,
    /// `IORING_OP_*`.
    pub opcode: u32,
    /// The request's fd (`sqe->fd`): the dirfd of a path, the socket, the file truncated.
    pub fd: i32,
    /// The second path's dirfd (rename, link).
    pub dfd2: i32,
    /// `RENAME_*`, `AT_*` flags.
    pub flags: u32,
    /// openat/openat2: `open_how`.
    pub open_flags: u64,
    pub mode: u64,
    pub resolve: u64,
    /// ftruncate: the length.
    pub length: u64,
    /// Bytes of `addr` used; 0: no destination.
    pub addrlen: u32,
    /// The request's fd is a registered (fixed) file, or openat installs into a fixed slot.
    pub fixed: u32,
    pub addr: [u8; SOCKADDR_MAX],
}

/// Fixed part of an io_uring completion record; for an open that returned an fd, the file is
/// `common.file` (walked in `kpath`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringDoneBody {
    pub common: ActionCommon,
    pub req: u64,
    pub user_data: u64,
    pub res: i64,
}

/// Body of a 32-bit system call record: its ia32 number and arguments as passed (registers); the
/// first path argument (`sections.requested`), a second one (`sections.extra`), the file behind a
/// returned fd (opens), and for a connect or send the kernel's copy of the address (cgroup
/// `connect4/6`, `sendmsg4/6`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CompatBody {
    pub common: ActionCommon,
    /// The ia32 system call number (`arch/x86/entry/syscalls/syscall_32.tbl`).
    pub nr: u32,
    pub _pad: u32,
    pub args: [u64; 6],
    pub kaddr: KernelAddr,
    /// The socket's cookie, for a connect or send (0: unknown).
    pub cookie: u64,
}

/// `prctl` options that replace `mm->exe_file` ([`SetExeBody::option`]).
pub const PR_SET_MM_EXE_FILE: u32 = 13;
pub const PR_SET_MM_MAP: u32 = 14;

/// Fixed part of an executable replacement record (`prctl(PR_SET_MM, PR_SET_MM_EXE_FILE | _MAP)`).
/// `common.file` (walked in `kpath`) is what `mm->exe_file` named before the call; `new` (walked
/// in `extra`) what it names after (the file behind `fd`, for a failure); `common.exe` (announced
/// in `exe`) is the image's own executable, the file its exec loaded.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SetExeBody {
    pub common: ActionCommon,
    /// The fd passed (`PR_SET_MM_MAP`: `prctl_mm_map.exe_fd` as read from the process's memory).
    pub fd: i32,
    /// [`PR_SET_MM_EXE_FILE`] or [`PR_SET_MM_MAP`].
    pub option: u32,
    pub new: FileFacts,
    /// 1 when `mm->exe_file` changed.
    pub changed: u32,
    /// Replacements since the last exec, this one included.
    pub changes: u32,
    /// Kernel side only: the record was written to the ring buffer; the caller is watched; the
    /// `struct file *` before and after.
    pub reported: u32,
    pub watched: u32,
    pub old_file: u64,
    pub new_file: u64,
}

/// How a process came to hold the file of an [`FdBody`] record.
pub const FD_HELD: u32 = 1;
pub const FD_RECEIVED: u32 = 2;

/// Words of the fd table's open bitmap compared around a receive (fds below `64 *` this).
pub const FD_DIFF_WORDS: usize = 8;

/// Fixed part of a record of a file in a process's fd table that it did not open on record
/// (`common.file`, walked in `kpath`): held when the agent first saw the process ([`FD_HELD`];
/// `syscall` is the system call it was first seen making), or received over a unix socket
/// ([`FD_RECEIVED`]: a new fd that appeared in the table during `recvmsg`/`recvmmsg`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FdBody {
    pub common: ActionCommon,
    pub fd: i32,
    /// [`FD_HELD`] or [`FD_RECEIVED`].
    pub how: u32,
    /// The socket it was received on.
    pub socket_fd: i32,
    pub _pad: u32,
    /// Kernel side only: the open-fd bitmap at `recvmsg` entry.
    pub open_before: [u64; FD_DIFF_WORDS],
}

/// Fixed part of a copy record (sendfile, splice, copy_file_range): the source is `common.file`
/// (walked in `kpath`), the destination `to` (walked in `extra`), both the kernel's files behind
/// the fds at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CopyBody {
    pub common: ActionCommon,
    pub in_fd: i32,
    pub out_fd: i32,
    pub to: FileFacts,
    /// Bytes asked for.
    pub len: u64,
    /// `splice`/`copy_file_range` flags.
    pub flags: u32,
    pub _pad: u32,
}

/// Fixed part of an executable-mapping record: the call's arguments, and the mapping the kernel
/// made (`vma->vm_file` is `common.file`, walked in `kpath`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MapExecBody {
    pub common: ActionCommon,
    /// The address passed (mmap: a hint, or where `MAP_FIXED` puts it; mprotect: the start).
    pub addr: u64,
    pub len: u64,
    /// `PROT_*` and (mmap) `MAP_*` as passed.
    pub prot: u32,
    pub flags: u32,
    /// mmap: the fd passed; mprotect: -1.
    pub fd: i32,
    /// 1 when the image runs without an ELF interpreter (`AT_BASE` 0 in the kernel's auxiliary
    /// vector: it was exec'd as the loader itself, or is static).
    pub no_interp: u32,
    /// The mapping found at the call's address: its start and end (`vm_start`, `vm_end`).
    pub vm_start: u64,
    pub vm_end: u64,
}

/// Body of an io_uring creation record: `header` is the creating task, `retval` the ring fd.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UringSetupBody {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// `IORING_SETUP_*` (SQPOLL: a kernel thread submits for the process).
    pub flags: u32,
    pub fd: i32,
}

/// Fixed part of an exec record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecBody {
    pub common: ActionCommon,
    /// `execveat` dirfd (`AT_FDCWD` for `execve`).
    pub dirfd: i32,
    /// `execveat` flags (`AT_EMPTY_PATH`, `AT_SYMLINK_NOFOLLOW`).
    pub at_flags: u32,
    /// The filename pointer as passed (kernel side only).
    pub user_path: u64,
}

/// The kernel's copy of a connect destination (from the cgroup `sock_addr` hook).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelAddr {
    /// `AF_INET` or `AF_INET6`; 0 when the hook did not run (unix, other families).
    pub family: u16,
    /// Port, host byte order.
    pub port: u16,
    pub _pad: u32,
    /// IPv4 in the first four bytes, or IPv6.
    pub ip: [u8; 16],
}

/// Fixed part of a connect record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectBody {
    pub common: ActionCommon,
    pub fd: i32,
    /// `addrlen` as passed by the caller.
    pub addrlen: u32,
    /// The address pointer as passed (kernel side only: re-read at exit).
    pub user_addr: u64,
    /// The socket (`struct sock *`), to match [`ConnectOutcome`] records; 0 if unknown.
    pub sk: u64,
    /// The address as the kernel copied it.
    pub kaddr: KernelAddr,
    /// The socket's cookie (`bpf_get_socket_cookie`, from the cgroup `sock_addr` hook): the
    /// connection id its packet records carry too. 0 when the hook did not run.
    pub cookie: u64,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the `struct sockaddr` as passed.
    pub addr: [u8; SOCKADDR_MAX],
}

/// The final state of a non-blocking connect, emitted when its socket leaves `SYN_SENT`:
/// `header.tid` and `header.ktime_ns` are those of the connect record it completes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The socket's cookie (`bpf_get_socket_cookie`), as in its connect record.
    pub cookie: u64,
    /// `CLOCK_BOOTTIME` when the state changed.
    pub at_ns: u64,
    /// The TCP state reached (1 = ESTABLISHED, 7 = CLOSE).
    pub new_state: u32,
    /// `sk->sk_err` when it closed (ECONNREFUSED, ETIMEDOUT, ...), else 0.
    pub error: u32,
}

/// Most bytes of a cgroup path kept in a move record.
pub const CGROUP_PATH_MAX: usize = 512;

/// Body of a cgroup move record: `header` is the task that wrote `cgroup.procs` (or the moved
/// process itself).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CgroupMoveBody {
    /// The process moved.
    pub moved_pid: u32,
    /// Bytes of `path` used (cut at [`CGROUP_PATH_MAX`]).
    pub path_len: u32,
    /// The destination cgroup's id.
    pub dst_id: u64,
    /// The destination cgroup's path below the cgroup2 root.
    pub path: [u8; CGROUP_PATH_MAX],
}

/// Body of a signal record: `header` is the sender.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalBody {
    pub sig: u32,
    /// The process signalled (the agent) and the thread the kernel chose.
    pub target_pid: u32,
    pub target_tid: u32,
    /// The kernel's delivery result (`TRACE_SIGNAL_*`: 0 delivered, 1 ignored, 2 already pending,
    /// 3 overflow, 4 lose info).
    pub result: i32,
}

/// Body of a fork record: `header.pid`/`tid` are the parent.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkBody {
    /// The new task's id (a pid for a process, a tid for a thread; see [`flags::THREAD`]).
    pub child_pid: u32,
    pub _pad: u32,
}

/// Body of an exit record: `header.tid` ended; `group_dead` when the whole process ended.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitBody {
    pub group_dead: u32,
    /// The wait status the parent will be told (exit code in bits 8-15, or the killing signal
    /// in bits 0-6 and a core dump in bit 7), read at `sched_process_exit`;
    /// [`EXIT_STATUS_UNREAD`] when it could not be read.
    pub status: u32,
}

/// [`ExitBody::status`] when the kernel side could not read it (no wait status is this).
pub const EXIT_STATUS_UNREAD: u32 = u32::MAX;

/// A fixed-size record as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FixedEvent<B> {
    pub header: EventHeader,
    pub body: B,
}

/// Size of the largest fixed part of an action body.
pub const FIXED_MAX: usize = max(
    core::mem::size_of::<OpenBody>(),
    max(
        core::mem::size_of::<ExecBody>(),
        max(
            core::mem::size_of::<ConnectBody>(),
            max(
                core::mem::size_of::<FileBody>(),
                max(
                    core::mem::size_of::<AccessBody>(),
                    max(
                        core::mem::size_of::<UringBody>(),
                        max(
                            core::mem::size_of::<UringDoneBody>(),
                            max(
                                core::mem::size_of::<SetExeBody>(),
                                max(
                                    core::mem::size_of::<FdBody>(),
                                    max(
                                        core::mem::size_of::<CopyBody>(),
                                        core::mem::size_of::<MapExecBody>(),
                                    ),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    ),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Size of the variable area of a pending slot: room for every section of the largest record at
/// its maximum size, so a section never lacks room — but one. The worst cases: a script exec (argv
/// at entry and from the image, the requested path, the exe announcement, the interpreter's walk
/// and that of the real file under it when it is on an overlay, the interpreter string, the
/// script's base directory) and a rename (two requested paths, two base directories, the exe
/// announcement). Each section is written at the running end, bounded by the verifier checks in
/// `audit-ebpf/src/sections.rs`. The one that can lack room: the walk of an overlay file's origin
/// after every other section took its maximum (the per-CPU slot template cannot exceed 32 KiB);
/// the real file's facts then still say an origin exists ([`file_flags::ORIGIN`]), and user space
/// that it could not be read.
pub const VAR_SIZE: usize = 2 * ARGV_MAX_BYTES + 2 * PATH_MAX + 4 * WALK_MAX + INTERP_MAX + 512;

/// The variable area starts here in every action body (after the largest fixed part, rounded),
/// so sections are located the same way whatever the kind.
pub const VAR_OFFSET: usize = (FIXED_MAX + 7) & !7;

/// Size of the per-thread pending body.
pub const PENDING_BODY_LEN: usize = VAR_OFFSET + VAR_SIZE;

/// A per-thread slot where an action record is assembled between syscall entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingEvent {
    pub header: EventHeader,
    pub body: [u8; PENDING_BODY_LEN],
}

/// Size of the header, the start of every body.
pub const HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

const _: () = assert!(HEADER_LEN == 72);
const _: () = assert!(PENDING_BODY_LEN < u16::MAX as usize);
// The slot template is a per-CPU array value: at most 32 KiB (`PCPU_MIN_UNIT_SIZE`).
const _: () = assert!(core::mem::size_of::<PendingEvent>() <= 32 * 1024);
const _: () = assert!(core::mem::size_of::<FileFacts>() == 24);
