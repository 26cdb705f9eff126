//! Every map the programs share. Sizes are defaults; user space may override `max_entries` at load
//! time (`EbpfLoader::map_max_entries`), e.g. the ring buffer size from the configuration.

use audit_common::event::{EventHeader, EventKind, FileFacts, FixedEvent, SignalBody};
use audit_common::net::{DNS_PORTS_MAX, PacketEvent, SockState};
use audit_common::{
    counters::Counters,
    event::PendingEvent,
    filter::{CgroupVerdict, FileKey, FilterConfig, FollowVerdict, ProcessDrops},
};
use aya_ebpf::{
    btf_maps::SkStorage,
    macros::{btf_map, map},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};

/// `BPF_F_NO_PREALLOC`: hash entries are allocated on insert, so the big pending slots only use
/// memory for threads that are actually watched.
const NO_PREALLOC: u32 = 1;

/// `[0]`: the agent's own tgid as the kernel sees it (the initial pid namespace), recorded by
/// the `connect4` program when the agent connects to the "who am I" address (`WHOAMI_*`) right
/// after loading — `getpid()` is namespace-local when the agent runs in a container. Written
/// once; the agent's activity is never reported.
#[map]
pub static AGENT: Array<u32> = Array::with_max_entries(1, 0);

/// Files of protected sets, by identity (filled by user space from its inode index). A record
/// naming one may use the ring buffer's reserve (`RING_RESERVE`): a flood of other records
/// cannot push it out.
#[map]
pub static PROTECTED_FILES: HashMap<FileKey, u32> = HashMap::with_max_entries(65536, 0);

/// Signals watched processes sent to the agent, by `ktime_ns`: a copy of each record also sent
/// through the ring, kept until user space has read that one. The daemon pins this map in bpffs,
/// so a record the agent could not read before a SIGKILL landed survives it and the next start
/// delivers it. LRU: a flood of signals evicts the oldest, never the last.
#[map]
pub static SIGNALS_TO_AGENT: LruHashMap<u64, FixedEvent<SignalBody>> =
    LruHashMap::with_max_entries(256, 0);

/// Records lost per process (tgid): a gap record names the processes that flooded.
#[map]
pub static DROPS_BY_TGID: LruHashMap<u32, ProcessDrops> = LruHashMap::with_max_entries(4096, 0);

/// io_uring requests recorded at submission, until their completion: `struct io_kiocb *` ->
/// opcode | fixed-slot bit << 8 | submitting tgid << 32.
#[map]
pub static URING_REQS: HashMap<u64, u64> = HashMap::with_max_entries(16384, 0);

/// Records for user space.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Filter configuration (one entry), written by user space.
#[map]
pub static FILTER: Array<FilterConfig> = Array::with_max_entries(1, 0);

/// cgroup id -> `CGROUP_EXACT` | `CGROUP_SUBTREE`.
#[map]
pub static WATCHED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Watched user ids (value unused).
#[map]
pub static WATCHED_UIDS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Processes (tgid) once watched: every process the moment it performs a watched action or execs
/// while watched, and every child of one at fork. They stay watched whatever their cgroup or uid
/// becomes (moving to another cgroup does not shed the watch). Emptied at exit.
#[map]
pub static FOLLOWED: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// `[0]`: the number of entries in `FOLLOWED` (while it is zero the follow-set lookup is
/// skipped); `[1]`: its generation, bumped at every insert and removal (invalidates
/// `FOLLOW_CACHE`). Both kept with atomic adds.
#[map]
pub static FOLLOWED_COUNT: Array<u64> = Array::with_max_entries(2, 0);

/// Per-CPU cache of the last follow-set verdict: an unwatched process in a tight loop pays one
/// array read per syscall, not a hash lookup.
#[map]
pub static FOLLOW_CACHE: PerCpuArray<FollowVerdict> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU cache of the last cgroup verdict: consecutive syscalls from the same cgroup (the
/// common case) skip the ancestor walk and the hash lookup.
#[map]
pub static CGROUP_CACHE: PerCpuArray<CgroupVerdict> = PerCpuArray::with_max_entries(1, 0);

/// Per-thread (tid) slot where an action record is built between syscall entry and exit. An entry
/// lives as long as its thread: it is removed by `sched_process_exit`.
#[map]
pub static PENDING: HashMap<u32, PendingEvent> = HashMap::with_max_entries(16384, NO_PREALLOC);

/// One bit per thread id (tids are below 2^22, the kernel's PID_MAX_LIMIT), set while the thread
/// has a `PENDING` slot. A syscall exit of a thread without one — every unwatched thread — leaves
/// after this array lookup, which the verifier inlines, instead of a hash lookup (512 KiB).
#[map]
pub static HAS_SLOT: Array<u64> = Array::with_max_entries(1 << 16, 0);

/// An all-zero `PendingEvent` used as the initial value of new `PENDING` entries (the value of a
/// map update must come from memory the verifier knows; the stack is far too small).
#[map]
pub static PENDING_INIT: PerCpuArray<PendingEvent> = PerCpuArray::with_max_entries(1, 0);

/// The executable of a process as last announced: its `struct file *` and the facts records
/// carry (the file the last exec loaded, when `mm->exe_file` was replaced since).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SeenExe {
    pub file: u64,
    pub facts: FileFacts,
    /// 1: `mm->exe_file` is not the file the exec loaded (`EXE_REPLACED`).
    pub replaced: u32,
    /// 0: made by `prctl.rs` for a process no record has named yet (its first is `FIRST_SIGHT`).
    pub seen: u32,
}

/// The state of a looped path walk (`vfs::walk_looped`) between its steps. In a map, not in
/// the loop's context on the stack: there, each caller's state reached the step callback and the
/// verifier checked the step once per caller state and iteration.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkCursor {
    /// The `struct mount` of the current dentry, and that mount's root.
    pub mnt: u64,
    pub root: u64,
    pub d: u64,
    pub len: u64,
    /// `mount->mnt_ns` where the walk ended.
    pub ns: u64,
    /// `file_flags` the walk adds.
    pub flags: u16,
    /// 0 while walking, 1 when done, 2 when a pointer could not be read.
    pub end: u16,
    pub _pad: u32,
}

/// One walk's cursor per CPU: a walk runs to completion inside its program, and no walk nests
/// in another (none runs from an interrupt).
#[map]
pub static WALK_CURSOR: PerCpuArray<WalkCursor> = PerCpuArray::with_max_entries(1, 0);

/// Who the records of one fd-table walk (`fds.rs`) are about, and what they say beside the file.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct WalkSubject {
    pub pid_tgid: u64,
    /// The acting image's executable, as the record that started the walk had it.
    pub exe: FileFacts,
    pub exe_flags: u32,
    pub how: u32,
    pub syscall: u16,
    pub _pad: u16,
    pub socket_fd: i32,
    /// The fd the record that started the walk obtained (an open's), and its file: on record
    /// already, not again as held.
    pub skip_fd: i64,
    pub skip: FileFacts,
}

/// The subject of the held-files walk, read by its `bpf_loop` callback from here rather than
/// from the caller's stack: on the stack, the caller's precise values (flags that are constants
/// on one path and read on another, an fd to skip or none) reached the callback, which the
/// verifier then checked once per combination (383k instructions for each of the two walk
/// programs). Per CPU: a program runs to completion on its CPU, and the walk runs only in the
/// context of the task it walks (after a system call's or an exec's record), never from an
/// interrupt that could nest inside another walk on the same CPU.
#[map]
pub static HELD_SUBJECT: PerCpuArray<WalkSubject> = PerCpuArray::with_max_entries(1, 0);

/// tgid -> its executable when its path was last announced (in a record's exe section). A
/// process whose image changed, or that was never announced, gets its exe path walked once;
/// every record carries the executable's device and inode, copied from here while
/// `mm->exe_file` is the same file (one pointer read instead of the inode's). No entry: the agent
/// has not seen the process yet (its first record walks its fd table, `fds.rs`). Removed at exit;
/// a fork child of a watched process gets a copy (its files are its parent's).
#[map]
pub static EXE_SEEN: LruHashMap<u32, SeenExe> = LruHashMap::with_max_entries(65536, 0);

/// tgid -> the record of the last replacement of its `mm->exe_file` since its exec
/// (`prctl.rs`), for every process of the host, watched or not: its executable stays the file
/// the exec loaded, and a process first seen after the change has the change recorded then
/// (`BEFORE_WATCH`). Removed at exec and exit, copied to fork children (they inherit the mm's
/// `exe_file`). Not preallocated: entries exist only for processes that replaced their exe.
#[map]
pub static EXE_REPLACED: HashMap<u32, PendingEvent> = HashMap::with_max_entries(4096, NO_PREALLOC);

/// `[0]`: entries in `EXE_REPLACED` (atomic adds): while it is zero, exec, fork and exit of the
/// whole host skip the lookup.
#[map]
pub static EXE_REPLACED_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// `[0]`: the program that records the files a process holds when the agent first sees it
/// (`fds.rs`), tail-called after its first record: a tracepoint program for tracepoints, a raw
/// tracepoint one for raw tracepoints (a program array serves one program type); `HELD_RAW[1]`:
/// the one that records the files a receive brought (a receive's exit is a raw program). Separate programs, filled by user space, so
/// the verifier checks the fd-table walks once instead of inside every program that records an
/// action.
/// `HELD_TP` and `HELD_RAW` slots.
pub const HELD: u32 = 0;
pub const RECEIVED: u32 = 1;
#[map]
pub static HELD_TP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static HELD_RAW: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// `[0]`: the program that completes a record with the acting image's executable and emits it
/// (`finish.rs`), tail-called by every program that records an action (one array per program
/// type, as above). The executable's facts, its path walk and the first-sight decision are then
/// verified once, in that program, instead of on every path of every recording program.
#[map]
pub static FINISH_TP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static FINISH_RAW: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The programs that complete a record at its system call's return, by the [`EventKind`] in
/// flight in the thread's slot: one per family of calls (`sys_exit_opens`, `sys_exit_execs`, ...),
/// and at `EventKind::Compat` the 32-bit calls' (`compat.rs`). Tail-called by the one program on
/// every system call's return (`sys_exit.rs`); filled by user space before anything is attached.
#[map]
pub static EXITS: ProgramArray = ProgramArray::with_max_entries(EventKind::SLOTS as u32, 0);

/// `[0]`: the program that walks the files behind the fds a system call names at its entry
/// (`fd_walks.rs`), tail-called by the enters of the calls that name files only by fd (copies,
/// file changes by fd), so the walk is verified once instead of in each of those programs.
#[map]
pub static FD_WALKS_TP: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The fds a receive brought (open-fd bitmap words after the call, less those before), for the
/// walk's `bpf_loop` callback: kept here, not on the stack, because the callback's own frame and
/// the walk's together come close to the verifier's 512-byte stack limit. Per CPU: a program runs
/// on one CPU from start to end.
#[map]
pub static RECEIVED_FDS: PerCpuArray<[u64; audit_common::event::FD_DIFF_WORDS]> =
    PerCpuArray::with_max_entries(1, 0);

/// Non-blocking connects still connecting: the socket's cookie -> the connect record it belongs
/// to (its tid and entry time). The `sock_ops` program (`sock.rs`) reports their final state.
#[map]
pub static CONNECTING: HashMap<u64, EventHeader> = HashMap::with_max_entries(16384, 0);

/// Number of entries in `CONNECTING` (atomic adds): while it is zero, the `sock_ops` program
/// leaves after one array read.
#[map]
pub static CONNECTING_COUNT: Array<u64> = Array::with_max_entries(1, 0);

/// `[0]`: changes to the cgroup hierarchies (mkdir, rmdir, rename; atomic adds,
/// `lifecycle.rs`): user space rescans the watched cgroup paths when it moved.
#[map]
pub static CGROUP_CHANGES: Array<u64> = Array::with_max_entries(1, 0);

/// Loss and volume counters (one entry per CPU).
#[map]
pub static COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(1, 0);

/// Sockets of watched processes (socket storage: an entry lives as long as its socket). Created
/// by the cgroup `connect4/6` and `sendmsg4/6` programs when a watched task uses the socket;
/// the cgroup `skb` programs inspect exactly the packets of sockets that have one (`packet.rs`).
/// A BTF map: socket storage needs the value's BTF.
#[btf_map]
pub static SOCKETS: SkStorage<SockState> = SkStorage::new();

/// Where a packet record is built before it is copied to the ring buffer (4 KiB of payload is
/// far beyond the 512-byte stack).
#[map]
pub static PACKET_SCRATCH: PerCpuArray<PacketEvent> = PerCpuArray::with_max_entries(1, 0);

/// DNS ports (value unused), written by user space from `[network] dns_ports`: UDP datagrams
/// to or from them, and the replies a TCP connection to one receives, are captured.
#[map]
pub static DNS_PORTS: HashMap<u16, u32> = HashMap::with_max_entries(DNS_PORTS_MAX, 0);
