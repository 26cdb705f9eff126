//! The records the kernel emits into the ring buffer.
//!
//! Every record starts with an [`EventHeader`]. Action records (exec, open, connect) are built in a
//! per-thread pending slot at syscall entry and emitted at syscall exit with the result; their body
//! follows the header and ends with variable-length bytes (paths, argv), so a record is only as long
//! as what it carries. Lifecycle records (fork, exit) are fixed-size.

/// `TASK_COMM_LEN` in the kernel.
pub const COMM_LEN: usize = 16;
/// Longest path the kernel accepts (`PATH_MAX`, including the trailing NUL).
pub const PATH_MAX: usize = 4096;
/// Most argv bytes (NUL-separated) kept per exec.
pub const ARGV_MAX_BYTES: usize = 2048;
/// Most bytes read for one argument.
pub const ARG_MAX_BYTES: usize = 1024;
/// Most arguments kept per exec.
pub const ARGV_MAX_ARGS: usize = 32;
/// Bytes of `struct sockaddr` kept per connect (`sockaddr_un` is 110).
pub const SOCKADDR_MAX: usize = 128;

/// What a record describes.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    Open = 2,
    Connect = 3,
    Fork = 4,
    Exit = 5,
}

impl EventKind {
    /// Number of slots in per-kind counter arrays (index = kind value). A power of two, so the
    /// kernel can bound an index with a mask (the verifier cannot follow a modulo).
    pub const SLOTS: usize = 8;

    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Exec,
            2 => Self::Open,
            3 => Self::Connect,
            4 => Self::Fork,
            5 => Self::Exit,
            _ => return None,
        })
    }
}

/// Which system call produced an action record.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syscall {
    Execve = 1,
    Execveat = 2,
    Openat = 3,
    Openat2 = 4,
    Open = 5,
    Creat = 6,
    Connect = 7,
}

impl Syscall {
    pub const fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::Execve,
            2 => Self::Execveat,
            3 => Self::Openat,
            4 => Self::Openat2,
            5 => Self::Open,
            6 => Self::Creat,
            7 => Self::Connect,
            _ => return None,
        })
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Execve => "execve",
            Self::Execveat => "execveat",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::Open => "open",
            Self::Creat => "creat",
            Self::Connect => "connect",
        }
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The path did not fit and was cut.
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    /// Arguments were left out or cut (too many, or too many bytes).
    pub const ARGV_TRUNCATED: u16 = 1 << 1;
    /// The thread ended between syscall entry and exit: no result is known.
    pub const INCOMPLETE: u16 = 1 << 2;
    /// The path could not be read from user memory.
    pub const PATH_FAULT: u16 = 1 << 3;
    /// The argument vector could not be read from user memory.
    pub const ARGV_FAULT: u16 = 1 << 4;
    /// The exec path is the kernel's own copy (from `sched_process_exec`).
    pub const KERNEL_FILENAME: u16 = 1 << 5;
    /// The socket address could not be read from user memory.
    pub const ADDR_FAULT: u16 = 1 << 6;
    /// A fork record: the child is a thread of the same process (`pid == child`'s tgid).
    pub const THREAD: u16 = 1 << 7;
}

/// Common prefix of every record (72 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// [`EventKind`]; 0 in a pending slot means "no syscall in flight".
    pub kind: u16,
    /// [`Syscall`] for action records, 0 otherwise.
    pub syscall: u16,
    /// [`flags`] bits.
    pub flags: u16,
    /// Bytes of body that follow the header in the emitted record.
    pub body_len: u16,
    /// Process id (tgid) as seen from the initial pid namespace.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Parent process id (`real_parent->tgid`).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
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
        flags: 0,
        body_len: 0,
        pid: 0,
        tid: 0,
        ppid: 0,
        uid: 0,
        gid: 0,
        _pad: 0,
        ktime_ns: 0,
        cgroup_id: 0,
        retval: 0,
        comm: [0; COMM_LEN],
    };
}

/// Fixed part of an open record; followed by `path_len` bytes of path (NUL included when whole).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenBody {
    /// Directory fd the path is relative to (`AT_FDCWD` = -100 for `open`/`creat`).
    pub dirfd: i32,
    pub mode: u32,
    pub flags: u64,
    /// `open_how.resolve` for `openat2`, 0 otherwise.
    pub resolve: u64,
    pub path_len: u32,
    pub _pad: u32,
}

/// Fixed part of an exec record; followed by `argv_len` bytes of NUL-separated arguments, then
/// `path_len` bytes of path.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecBody {
    /// `execveat` dirfd (`AT_FDCWD` for `execve`).
    pub dirfd: i32,
    /// `execveat` flags (`AT_EMPTY_PATH`, `AT_SYMLINK_NOFOLLOW`).
    pub at_flags: u32,
    /// Number of arguments kept.
    pub argc: u32,
    pub argv_len: u32,
    pub path_len: u32,
    pub _pad: u32,
}

/// Body of a connect record (fixed size).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ConnectBody {
    pub fd: i32,
    /// `addrlen` as passed by the caller.
    pub addrlen: u32,
    /// The first `min(addrlen, SOCKADDR_MAX)` bytes of the `struct sockaddr`.
    pub addr: [u8; SOCKADDR_MAX],
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
    pub _pad: u32,
}

/// A lifecycle record as written to the ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LifecycleEvent<B> {
    pub header: EventHeader,
    pub body: B,
}

/// Size of the per-thread pending body: exec is the largest (fixed part, argv, then a full path
/// at an offset of at most `ARGV_MAX_BYTES`).
pub const PENDING_BODY_LEN: usize =
    core::mem::size_of::<ExecBody>() + ARGV_MAX_BYTES + PATH_MAX + 8;

/// A per-thread slot where an action record is assembled between syscall entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingEvent {
    pub header: EventHeader,
    pub body: [u8; PENDING_BODY_LEN],
}

/// Offset of the variable part of an exec body.
pub const EXEC_VAR_OFFSET: usize = core::mem::size_of::<ExecBody>();
/// Offset of the path in an open body.
pub const OPEN_PATH_OFFSET: usize = core::mem::size_of::<OpenBody>();
/// Size of the header, the start of every body.
pub const HEADER_LEN: usize = core::mem::size_of::<EventHeader>();

const _: () = assert!(HEADER_LEN == 72);
const _: () = assert!(OPEN_PATH_OFFSET + PATH_MAX <= PENDING_BODY_LEN);
const _: () = assert!(EXEC_VAR_OFFSET + ARGV_MAX_BYTES + ARG_MAX_BYTES <= PENDING_BODY_LEN);
const _: () = assert!(core::mem::size_of::<ConnectBody>() <= PENDING_BODY_LEN);
