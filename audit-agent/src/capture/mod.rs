//! Capture: the source stage. Loads the embedded eBPF programs, attaches them, keeps the kernel
//! filter maps, and hands out decoded records from the ring buffer.
//!
//! ```text
//! preflight (privileges, BTF, tracefs, cgroup2) -> offsets -> load -> attach -> Filter -> read
//! ```

/// Loads `p` unless it already is (the parallel load did it).
macro_rules! load_once {
    ($p:expr, $name:expr) => {
        if $p.fd().is_err() {
            $p.load()
                .with_context(|| format!("the kernel verifier rejected program {}", $name))?;
        }
    };
}

pub(crate) mod btf;
pub(crate) mod cgroup;
mod cover;
mod detach;
mod kfunc;
mod pin;
pub(crate) mod plan;
pub(crate) mod preflight;
pub(crate) mod tracefs;

use std::{collections::BTreeSet, io};

use anyhow::{Context as _, anyhow, bail};
use audit_common::{
    counters::Counters,
    event::{EventKind, HEADER_LEN, PendingEvent},
    filter::{
        CGROUP_EXACT, CGROUP_SUBTREE, FileKey, FilterConfig, MODE_ALL, MODE_FILTERED, MODE_PAUSED,
        ProcessDrops,
    },
    offsets::{ABSENT, KernelTypes, Offsets},
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
};
use tokio::io::unix::AsyncFd;

pub(crate) use self::detach::Links;
pub(crate) use self::pin::signal_pin_path;
use self::{
    btf::Btf,
    cgroup::CgroupDir,
    cover::{CgroupPrograms, PACKET_PROGRAMS, SOCK_ADDR, SOCK_OPS},
    pin::SignalPin,
    tracefs::TraceFs,
};
use crate::{
    decode::{self, KernelEvent},
    policy::inode::Published,
};

/// The eBPF object built by `build.rs` from `audit-ebpf`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/audit"));

/// Empty programs on the same hooks: the benchmark floor (`audit-agent bench-floor`).
static FLOOR_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/floor"));

/// Loads and attaches the floor programs (empty programs on every hook the real ones use); they
/// stay attached while the returned value lives.
pub(crate) fn attach_floor(cgroup_root: &std::path::Path) -> anyhow::Result<(Ebpf, Links)> {
    preflight::check_privileges()?;
    let tracefs = TraceFs::find_or_mount()?;
    let mut ebpf = EbpfLoader::new()
        .load(FLOOR_OBJECT)
        .context("loading the floor programs")?;
    // The floor has no tail-called programs (no exits, no compat): nothing but hooks.
    let every_hook = Wanted {
        compat: false,
        uring: true,
        packets: true,
        maps: true,
        walks: false,
    };
    load_in_parallel(&mut ebpf, &tracefs, &every_hook)?;
    let mut links = Links::default();
    attach_all(&mut ebpf, &tracefs, &mut links, true)?;
    let _ = attach_uring(&mut ebpf, &tracefs, &mut links)?;
    // On the root, where the real ones are before the first watch set (`cover.rs`).
    for link in cover::attach(&mut ebpf, cgroup_root, "/", true)? {
        links.keep(link);
    }
    Ok((ebpf, links))
}

/// A system call's name (`sys_enter_<name>`) and whether every kernel must have it.
type Call = (&'static str, bool);

/// System calls, by family: (the family's exit program, the record it completes, [(system call,
/// required)]). Each call has its own `sys_enter_<call>` program (what it passed differs); one
/// exit program serves the whole family — it reads everything from the slot — so the verifier
/// checks it once instead of once per call (that took seconds). Exit programs are not attached:
/// the one raw `sys_exit` program ([`SYS_EXIT`]) tail-calls them by the record in flight
/// (`EXITS`). Optional calls are missing on other architectures (arm64 has only the `*at` forms)
/// or older kernels (`fchmodat2` is Linux 6.6).
const SYSCALLS: &[(&str, EventKind, &[Call])] = &[
    (
        "sys_exit_execs",
        EventKind::Exec,
        &[("execve", true), ("execveat", false)],
    ),
    (
        "sys_exit_opens",
        EventKind::Open,
        &[
            ("openat", true),
            ("openat2", false),
            ("open", false),
            ("creat", false),
            ("open_by_handle_at", false),
        ],
    ),
    ("sys_exit_connect", EventKind::Connect, &[("connect", true)]),
    // Sends to an address (audit-ebpf/src/send.rs).
    (
        "sys_exit_sends",
        EventKind::Send,
        &[("sendto", false), ("sendmsg", false), ("sendmmsg", false)],
    ),
    // Reaching into other processes (audit-ebpf/src/access.rs).
    (
        "sys_exit_access",
        EventKind::Access,
        &[
            ("ptrace", false),
            ("process_vm_readv", false),
            ("process_vm_writev", false),
            ("pidfd_getfd", false),
        ],
    ),
    // Executables replaced with PR_SET_MM (audit-ebpf/src/prctl.rs): every process's prctl
    // leaves after two loads unless it replaces its executable.
    ("sys_exit_prctl", EventKind::SetExe, &[("prctl", false)]),
    // Files received over unix sockets, and bytes copied between files (audit-ebpf/src/fds.rs).
    (
        "sys_exit_recvs",
        EventKind::Fd,
        &[("recvmsg", false), ("recvmmsg", false)],
    ),
    (
        "sys_exit_copies",
        EventKind::Copy,
        &[
            ("sendfile64", false),
            ("splice", false),
            ("copy_file_range", false),
        ],
    ),
    // File changes without an open (audit-ebpf/src/files.rs).
    (
        "sys_exit_files",
        EventKind::File,
        &[
            ("unlink", false),
            ("unlinkat", false),
            ("rmdir", false),
            ("rename", false),
            ("renameat", false),
            ("renameat2", false),
            ("truncate", false),
            ("ftruncate", false),
            ("chmod", false),
            ("fchmod", false),
            ("fchmodat", false),
            ("fchmodat2", false),
            ("chown", false),
            ("lchown", false),
            ("fchown", false),
            ("fchownat", false),
            ("link", false),
            ("linkat", false),
            ("symlink", false),
            ("symlinkat", false),
            ("mkdir", false),
            ("mkdirat", false),
        ],
    ),
    // Files mapped executable (audit-ebpf/src/mmap.rs).
    (
        MAP_EXEC,
        EventKind::MapExec,
        &[("mmap", false), ("mprotect", false)],
    ),
];

/// The executable-mapping family: its programs call `bpf_find_vma` (Linux 5.17), which older
/// kernels refuse; there they are left out and reported missing.
const MAP_EXEC: &str = "sys_exit_maps";
const MAP_EXEC_HELPER: &str = "bpf_find_vma";
/// The helper the fd-table walks loop with (Linux 5.17): without it held and received files are
/// not recorded; with it, a walk the verifier rejects is an error like any other program's.
const HELD_WALK_HELPER: &str = "bpf_loop";

/// Other tracepoint programs: (program name, category, tracepoint, required).
const TRACEPOINTS: &[(&str, &str, &str, bool)] = &[
    ("sched_process_exit", "sched", "sched_process_exit", true),
    // Moves of watched processes to other cgroups (they stay watched either way).
    ("cgroup_attach_task", "cgroup", "cgroup_attach_task", false),
    // Changes to the hierarchy: rescans of the watched paths only when one happened.
    ("cgroup_changed", "cgroup", "cgroup_mkdir", false),
    ("cgroup_changed", "cgroup", "cgroup_rmdir", false),
    ("cgroup_changed", "cgroup", "cgroup_rename", false),
];

/// io_uring's tracepoints (audit-ebpf/src/uring.rs), attached when the request structures could
/// be read from BTF.
const URING_TRACEPOINTS: &[&str] = &[
    "io_uring_submit_req",
    "io_uring_complete",
    "io_uring_create",
];

/// The one program on every system call's return (audit-ebpf/src/sys_exit.rs, raw tracepoint
/// `sys_exit`): it tail-calls the exit program of the record in flight ([`SYSCALLS`]) or, for a
/// 32-bit call, [`COMPAT_EXIT`]. Attached before any entry program.
const SYS_EXIT: &str = "sys_exit";

/// The return of a 32-bit system call (audit-ebpf/src/compat.rs), tail-called by [`SYS_EXIT`]
/// when `[capture] compat_syscalls` is on and this kernel's `thread_info.status` was found.
const COMPAT_EXIT: &str = "compat_exit";

/// Raw tracepoints: they hand the programs the kernel objects (the child task, the
/// `linux_binprm`, the socket changing state) without building a record first.
const RAW_TRACEPOINTS: &[&str] = &[
    "sched_process_fork",
    "sched_process_exec",
    "signal_generate",
];

/// Settings of the kernel side.
#[derive(Debug, Clone)]
pub(crate) struct CaptureOptions {
    /// Ring buffer size in bytes (a power of two, at least one page).
    pub(crate) ring_buffer_bytes: u32,
    /// Most threads with a pending slot at once.
    pub(crate) max_pending_threads: u32,
    /// The root of the cgroup v2 hierarchy (the cgroup programs attach below it, `cover.rs`).
    pub(crate) cgroup_root: std::path::PathBuf,
    /// Where to pin the map of signals sent to the agent (the daemon: see `pin.rs`).
    pub(crate) signal_pin: Option<std::path::PathBuf>,
    /// Record 32-bit system calls (`[capture] compat_syscalls`).
    pub(crate) compat_syscalls: bool,
    /// Read kernel objects through kernel functions where the kernel has them (`[capture]
    /// kfuncs`, see `kfunc.rs`).
    pub(crate) kfuncs: bool,
    /// Read watched sockets' packets (`[capture] packets`), and which ports are DNS.
    pub(crate) packets: bool,
    pub(crate) dns_ports: Vec<u16>,
}

/// What to watch, in kernel terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WatchSet {
    pub(crate) all: bool,
    /// cgroups watched with everything below them.
    pub(crate) subtrees: Vec<CgroupDir>,
    /// cgroups watched by themselves only.
    pub(crate) exact: Vec<CgroupDir>,
    pub(crate) uids: BTreeSet<u32>,
}

/// Loaded and attached programs, and the user-space ends of their maps.
pub(crate) struct Capture {
    /// The programs' attachments; dropped first, all at once (see [`Links`]).
    _links: Links,
    /// The cgroup programs, attached where they cover everything watched (`cover.rs`).
    cgroup_programs: CgroupPrograms,
    // Keeps the programs and the maps not taken below alive; the cgroup programs move.
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    filter: Array<MapData, FilterConfig>,
    cgroups: HashMap<MapData, u64, u32>,
    uids: HashMap<MapData, u32, u32>,
    pending: HashMap<MapData, u32, PendingEvent>,
    counters: PerCpuArray<MapData, Counters>,
    /// Changes to the cgroup hierarchies (`CGROUP_CHANGES`); `None` when this kernel lacks one of
    /// the tracepoints that count them.
    cgroup_changes: Option<Array<MapData, u64>>,
    /// Identities of protected files in the kernel (`PROTECTED_FILES`): where updates come
    /// from, and what the map holds.
    protected_files: HashMap<MapData, FileKey, u32>,
    protected: (Option<Published>, BTreeSet<(u32, u64)>),
    /// Records lost per process (`DROPS_BY_TGID`).
    drops: HashMap<MapData, u32, ProcessDrops>,
    /// Signals sent to the agent, kept in the kernel until their records reached the trail.
    signals: SignalPin,
    /// Records a previous run left unread (its last signals), delivered first.
    left_by_previous_run: Vec<KernelEvent>,
    current: WatchSet,
    /// Bumped at every filter change (invalidates the kernel's per-CPU verdict cache).
    generation: u32,
    /// Tracepoints that this kernel lacks (optional ones only).
    pub(crate) missing: Vec<String>,
}

/// Loads the eBPF object with this kernel's offsets, the agent's own identity and the ring's
/// sizes set in its globals, and whether path walks may use `bpf_loop` (the programs are verified
/// later, in parallel).
fn load_object(
    opts: &CaptureOptions,
    offsets: &Offsets,
    whoami: &Whoami,
    btf: &Btf,
    compat: bool,
) -> anyhow::Result<Ebpf> {
    let wakeup_bytes = u64::from(opts.ring_buffer_bytes / 8);
    // An eighth of the ring is kept for records of protected files (see `fits` in
    // audit-ebpf/src/emit.rs).
    let ring_bytes = u64::from(opts.ring_buffer_bytes);
    let ring_reserve = ring_bytes / 8;
    let (object, types) = match kfunc::rdonly_cast(btf).filter(|_| opts.kfuncs) {
        Some((id, types)) => (kfunc::patch_rdonly_cast(EBPF_OBJECT, id)?.0, types),
        None => {
            if opts.kfuncs {
                tracing::info!(
                    "this kernel lacks the bpf_rdonly_cast kfunc (Linux 6.2): path walks read \
                     the kernel's objects with a helper call per field"
                );
            } else {
                tracing::info!(
                    "path walks read the kernel's objects with a helper call per field \
                     ([capture] kfuncs = false)"
                );
            }
            (EBPF_OBJECT.to_vec(), KernelTypes::NONE)
        }
    };
    EbpfLoader::new()
        .override_global("KTYPES", &types, true)
        .override_global("OFFSETS", offsets, true)
        .override_global("WHOAMI_IP4", &whoami.ip_be(), true)
        .override_global("WHOAMI_PORT", &whoami.port_be(), true)
        .override_global("WAKEUP_BYTES", &wakeup_bytes, true)
        .override_global("RING_BYTES", &ring_bytes, true)
        .override_global("RING_RESERVE", &ring_reserve, true)
        .override_global("PACKETS", &u32::from(opts.packets), true)
        .override_global("COMPAT", &u32::from(compat), true)
        .override_global(
            "LOOPS",
            &u32::from(btf.has_function(HELD_WALK_HELPER)),
            true,
        )
        .map_max_entries("EVENTS", opts.ring_buffer_bytes)
        .map_max_entries("PENDING", opts.max_pending_threads)
        .load(&object)
        .context("loading the eBPF programs into the kernel failed")
}

/// Attaches the cgroup programs (the packet ones when `opts` asks for them) to the root, until
/// the first watch set; names the packet programs as not captured when left out.
fn cgroup_programs(
    opts: &CaptureOptions,
    ebpf: &mut Ebpf,
    missing: &mut Vec<String>,
) -> anyhow::Result<CgroupPrograms> {
    if opts.packets {
        set_dns_ports(ebpf, &opts.dns_ports)?;
    } else {
        missing.extend(
            PACKET_PROGRAMS
                .iter()
                .map(|(p, _)| format!("cgroup_skb:{p}")),
        );
    }
    CgroupPrograms::attach_at_root(ebpf, &opts.cgroup_root, opts.packets)
}

impl Capture {
    /// Checks requirements, loads and attaches the programs. Nothing is reported until
    /// [`Capture::set_watch`] is called.
    pub(crate) fn start(opts: &CaptureOptions) -> anyhow::Result<Self> {
        if EBPF_OBJECT.is_empty() {
            bail!(
                "this audit-agent binary was built without its eBPF programs (AYA_BUILD_SKIP was \
                 set); rebuild with `cargo xtask build`"
            );
        }
        let started = std::time::Instant::now();
        preflight::check_privileges()?;
        detach::remove_stale();
        let btf = Btf::from_sys_fs()?;
        let tracefs = TraceFs::find_or_mount()?;
        let offsets = kernel_offsets(&tracefs, &btf)?;
        preflight::raise_memlock_limit();
        let offsets_read = started.elapsed();

        let whoami = Whoami::random();
        let compat = opts.compat_syscalls && offsets.task_ts_status != ABSENT;
        let mut ebpf = load_object(opts, &offsets, &whoami, &btf, compat)?;
        let object_loaded = started.elapsed();

        let uring = offsets.uring_submit_req != ABSENT;
        let maps = btf.has_function(MAP_EXEC_HELPER);
        // Without the walks (a kernel without `bpf_loop`, before 5.17) held and received files
        // are not recorded; the rest is.
        let walks = btf.has_function(HELD_WALK_HELPER);
        let wanted = Wanted {
            compat,
            uring,
            packets: opts.packets,
            maps,
            walks,
        };
        load_in_parallel(&mut ebpf, &tracefs, &wanted)?;
        // Before any program that tail-calls them is attached.
        fill_tail_calls(&mut ebpf, &wanted)?;
        let verified = started.elapsed();
        let mut links = Links::default();
        // Off by configuration is said as such, not as something this kernel lacks.
        let compat_missing = opts.compat_syscalls && !compat;
        if !opts.compat_syscalls {
            tracing::info!(
                "32-bit system calls are not recorded ([capture] compat_syscalls = false)"
            );
        }
        let mut missing =
            attach_programs(&mut ebpf, &tracefs, &mut links, compat_missing, uring, maps)?;
        if !walks {
            missing.push(format!(
                "file.held, file.receive (needs {HELD_WALK_HELPER}, Linux 5.17)"
            ));
        }
        let cgroup_programs = cgroup_programs(opts, &mut ebpf, &mut missing)?;
        // Its "who am I" connect needs `connect4` where the agent is: on the root, for now.
        introduce_self(&ebpf, &whoami)?;
        tracing::debug!(
            offsets_ms = offsets_read.as_millis() as u64,
            object_ms = (object_loaded - offsets_read).as_millis() as u64,
            verify_ms = (verified - object_loaded).as_millis() as u64,
            attach_ms = (started.elapsed() - verified).as_millis() as u64,
            "programs loaded and attached"
        );

        Self::with_maps(ebpf, (links, cgroup_programs), missing, opts)
    }

    /// The running capture: the maps user space reads and writes, taken out of the loaded
    /// object, the links that keep the programs attached, and what could not be attached.
    fn with_maps(
        mut ebpf: Ebpf,
        (links, cgroup_programs): (Links, CgroupPrograms),
        missing: Vec<String>,
        opts: &CaptureOptions,
    ) -> anyhow::Result<Self> {
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| anyhow!("map {name} is missing from the eBPF object"))
        };
        let ring = RingBuf::try_from(take(&mut ebpf, "EVENTS")?)?;
        let filter = Array::try_from(take(&mut ebpf, "FILTER")?)?;
        let cgroups = HashMap::try_from(take(&mut ebpf, "WATCHED_CGROUPS")?)?;
        let uids = HashMap::try_from(take(&mut ebpf, "WATCHED_UIDS")?)?;
        let pending = HashMap::try_from(take(&mut ebpf, "PENDING")?)?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?)?;
        let counted = !missing.iter().any(|m| m.starts_with("cgroup:cgroup_"));
        let cgroup_changes = if counted {
            Some(Array::try_from(take(&mut ebpf, "CGROUP_CHANGES")?)?)
        } else {
            None
        };
        let protected_files = HashMap::try_from(take(&mut ebpf, "PROTECTED_FILES")?)?;
        let drops = HashMap::try_from(take(&mut ebpf, "DROPS_BY_TGID")?)?;
        let (signals, left_by_previous_run) = SignalPin::take_over(
            take(&mut ebpf, "SIGNALS_TO_AGENT")?,
            opts.signal_pin.as_deref(),
        )?;
        // SAFETY: the RingBuf owns its map fd and keeps it open for as long as the AsyncFd owns
        // the RingBuf; nothing else closes or replaces it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow!("registering the ring buffer with tokio: {e}"))?;
        Ok(Self {
            _links: links,
            cgroup_programs,
            ebpf,
            ring,
            filter,
            cgroups,
            uids,
            pending,
            counters,
            cgroup_changes,
            protected_files,
            protected: (None, BTreeSet::new()),
            drops,
            signals,
            left_by_previous_run,
            current: WatchSet::default(),
            generation: 0,
            missing,
        })
    }

    /// Makes the kernel report exactly `set` (plus followed descendants). Entries are added before
    /// the mode is switched on, and stale ones removed after, so nothing watched is ever missed.
    pub(crate) fn set_watch(&mut self, set: &WatchSet) -> anyhow::Result<()> {
        // The cgroup programs first: a process the new set watches finds them in place.
        self.cgroup_programs.cover_watch_set(&mut self.ebpf, set)?;
        let mut levels = 0u32;
        for dir in &set.subtrees {
            self.cgroups
                .insert(dir.id, CGROUP_SUBTREE | self.flags_of(set, dir.id), 0)?;
            levels |= 1 << dir.level.min(audit_common::filter::MAX_CGROUP_LEVEL);
        }
        for dir in &set.exact {
            self.cgroups
                .insert(dir.id, CGROUP_EXACT | self.flags_of(set, dir.id), 0)?;
        }
        for uid in &set.uids {
            self.uids.insert(uid, 1, 0)?;
        }
        self.generation = self.generation.wrapping_add(1);
        let cfg = FilterConfig {
            mode: if set.all { MODE_ALL } else { MODE_FILTERED },
            uids: u32::from(!set.uids.is_empty()),
            exact_cgroups: u32::from(!set.exact.is_empty()),
            subtree_levels: levels,
            generation: self.generation,
            ..Default::default()
        };
        self.filter.set(0, cfg, 0)?;
        let keep: BTreeSet<u64> = set
            .subtrees
            .iter()
            .chain(&set.exact)
            .map(|d| d.id)
            .collect();
        for old in self.current.subtrees.iter().chain(&self.current.exact) {
            if !keep.contains(&old.id) {
                let _ = self.cgroups.remove(&old.id);
            }
        }
        for uid in &self.current.uids {
            if !set.uids.contains(uid) {
                let _ = self.uids.remove(uid);
            }
        }
        self.current = set.clone();
        Ok(())
    }

    fn flags_of(&self, set: &WatchSet, id: u64) -> u32 {
        let sub = set.subtrees.iter().any(|d| d.id == id);
        let exact = set.exact.iter().any(|d| d.id == id);
        (if sub { CGROUP_SUBTREE } else { 0 }) | (if exact { CGROUP_EXACT } else { 0 })
    }

    /// Stops reporting new syscalls; those in flight still complete and are emitted.
    pub(crate) fn pause(&mut self) -> anyhow::Result<()> {
        self.generation = self.generation.wrapping_add(1);
        let cfg = FilterConfig {
            mode: MODE_PAUSED,
            generation: self.generation,
            ..Default::default()
        };
        self.filter.set(0, cfg, 0)?;
        Ok(())
    }

    /// Waits until records are available, then decodes up to `max` of them into `out`.
    /// Undecodable records are counted in the returned value, never silently skipped.
    pub(crate) async fn read(
        &mut self,
        out: &mut Vec<KernelEvent>,
        max: usize,
    ) -> io::Result<usize> {
        self.sync_protected();
        if self.take_left_by_previous_run(out) {
            return Ok(0);
        }
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let before = out.len();
            let (n, bad, drained) = drain(guard.get_inner_mut(), out, max);
            if drained {
                guard.clear_ready();
            }
            drop(guard);
            self.cover_moves(&out[before..]);
            if n > 0 || bad > 0 {
                return Ok(bad);
            }
        }
    }

    /// Widens the cgroup programs' cover to where watched processes moved (`cover.rs`).
    fn cover_moves(&mut self, new: &[KernelEvent]) {
        for ev in new {
            if let decode::Body::CgroupMove { path, .. } = &ev.body {
                let path = String::from_utf8_lossy(path);
                if let Err(e) = self.cgroup_programs.cover_move(&mut self.ebpf, &path) {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        cgroup = %path,
                        "a watched process moved out of the cgroups the connect and packet \
                         programs cover, and they could not follow: its connects and sends are \
                         recorded with the address as passed, its packets not read"
                    );
                }
            }
        }
    }

    /// Takes protected-file identities from `from` (the policy stage publishes them).
    pub(crate) fn protect_from(&mut self, from: Published) {
        self.protected.0 = Some(from);
    }

    /// Brings `PROTECTED_FILES` up to the newest published identities.
    pub(crate) fn sync_protected(&mut self) {
        let Some(keys) = self.protected.0.as_ref().and_then(Published::take) else {
            return;
        };
        let want: BTreeSet<(u32, u64)> = keys.iter().map(|k| (k.dev, k.ino)).collect();
        for &(dev, ino) in want.difference(&self.protected.1) {
            let key = FileKey { dev, _pad: 0, ino };
            if let Err(e) = self.protected_files.insert(key, 1, 0) {
                tracing::warn!(error = %e, "protected files beyond the kernel map's size get no reserve");
                break;
            }
        }
        for &(dev, ino) in self.protected.1.difference(&want) {
            let _ = self.protected_files.remove(&FileKey { dev, _pad: 0, ino });
        }
        self.protected.1 = want;
    }

    /// The records of these signals to the agent (by `ktime_ns`) reached the trail.
    pub(crate) fn signals_delivered(&mut self, ktimes: &[u64]) {
        self.signals.delivered(ktimes);
    }

    /// After a clean stop: nothing needs to outlive the agent in the kernel.
    pub(crate) fn release(&mut self) {
        self.signals.release();
    }

    /// Records lost so far per process (cumulative).
    pub(crate) fn drops_by_process(&self) -> Vec<(u32, ProcessDrops)> {
        self.drops.iter().filter_map(Result::ok).collect()
    }

    /// Decodes up to `max` records available now (after any a previous run left). Returns
    /// (records added, undecodable).
    pub(crate) fn read_up_to(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> (usize, usize) {
        let before = out.len();
        self.take_left_by_previous_run(out);
        let drained = out.len();
        let (_, bad, _) = drain(self.ring.get_mut(), out, max);
        self.cover_moves(&out[drained..]);
        (out.len() - before, bad)
    }

    /// Moves the records a previous run left in the kernel (see `pin`) into `out`, whichever
    /// read comes first: a stop right after the start drains with `read_up_to` and never awaits
    /// `read`, and those records must not be lost with it. Returns whether there were any.
    fn take_left_by_previous_run(&mut self, out: &mut Vec<KernelEvent>) -> bool {
        let any = !self.left_by_previous_run.is_empty();
        out.append(&mut self.left_by_previous_run);
        any
    }

    /// How many times the cgroup hierarchies changed (mkdir, rmdir, rename) since the start;
    /// `None` when not counted.
    pub(crate) fn cgroup_changes(&self) -> Option<u64> {
        self.cgroup_changes.as_ref()?.get(&0, 0).ok()
    }

    /// Sums the per-CPU counters.
    pub(crate) fn counters(&self) -> anyhow::Result<Counters> {
        let per_cpu = self.counters.get(&0, 0)?;
        let mut total = Counters::default();
        for c in per_cpu.iter() {
            total.accumulate(c);
        }
        Ok(total)
    }

    /// Records still in flight in the kernel's pending slots (call after [`Capture::pause`] and
    /// a drain): each is returned marked incomplete, so an attempt the agent saw start is never
    /// dropped at shutdown.
    pub(crate) fn take_in_flight(&mut self) -> Vec<KernelEvent> {
        let mut out = Vec::new();
        let keys: Vec<u32> = self.pending.keys().filter_map(Result::ok).collect();
        for tid in keys {
            let Ok(slot) = self.pending.get(&tid, 0) else {
                continue;
            };
            let Some(kind) = EventKind::from_u16(slot.header.kind) else {
                continue;
            };
            let mut h = slot.header;
            h.flags |= audit_common::event::flags::INCOMPLETE;
            if let Ok(ev) = decode::decode_parts(&h, kind, &slot.body) {
                out.push(ev);
            }
        }
        out
    }
}

/// The "who am I" address: the agent connects to it once after loading, and the `connect4`
/// program records the agent's tgid as the kernel sees it (the initial pid namespace, which
/// `getpid()` is not when the agent runs in a container). Random per start, so no other process
/// can claim to be the agent.
struct Whoami {
    ip: std::net::Ipv4Addr,
    port: u16,
}

impl Whoami {
    fn random() -> Self {
        let mut b = [0u8; 5];
        // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
        let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        if n != b.len() as isize {
            // Not secret, only unguessable in practice: fall back to the clock.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            b.copy_from_slice(&t.to_le_bytes()[..5]);
        }
        Self {
            ip: std::net::Ipv4Addr::new(127, b[0] | 1, b[1], b[2] | 1),
            port: u16::from_le_bytes([b[3], b[4]]) | 1024,
        }
    }

    fn ip_be(&self) -> u32 {
        u32::from_ne_bytes(self.ip.octets())
    }

    fn port_be(&self) -> u32 {
        u32::from(self.port.to_be())
    }

    /// Connects to the address (refused by the program) and reads back the tgid it recorded.
    fn introduce(&self, agent: &Array<&MapData, u32>) -> anyhow::Result<u32> {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let _ = sock.connect((self.ip, self.port));
        match agent.get(&0, 0)? {
            0 => bail!(
                "the connect4 program did not see the agent's own connect: is the agent inside \
                 the cgroup v2 hierarchy the programs are attached to?"
            ),
            tgid => Ok(tgid),
        }
    }
}

/// Which of the optional programs this start loads: 32-bit system calls, io_uring, packets,
/// executable mappings (`bpf_find_vma`) and the fd-table walks (`bpf_loop`).
#[derive(Clone, Copy)]
struct Wanted {
    compat: bool,
    uring: bool,
    packets: bool,
    maps: bool,
    walks: bool,
}

/// Verifies the programs that [`attach_programs`] (or the floor) will attach, each on its own
/// thread: verification is the kernel's CPU time (0.01 to 0.7 s a program here, seconds in
/// all), and the kernel verifies programs of a privileged loader concurrently. Programs left
/// out are loaded when attached.
fn load_in_parallel(ebpf: &mut Ebpf, tracefs: &TraceFs, what: &Wanted) -> anyhow::Result<()> {
    let Wanted {
        compat,
        uring,
        packets,
        maps,
        walks,
    } = *what;
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for &(prog, category, name, _) in TRACEPOINTS {
        if tracefs.has(category, name) {
            wanted.insert(prog.into());
        }
    }
    wanted.insert(SYS_EXIT.into());
    for &(exit, _, calls) in SYSCALLS.iter().filter(|(e, _, _)| maps || *e != MAP_EXEC) {
        wanted.insert(exit.into());
        for &(call, _) in calls {
            let enter = format!("sys_enter_{call}");
            if tracefs.has("syscalls", &enter) {
                wanted.insert(enter);
            }
        }
    }
    wanted.extend(RAW_TRACEPOINTS.iter().map(|n| n.to_string()));
    wanted.extend(SOCK_ADDR.iter().map(|n| n.to_string()));
    wanted.insert(SOCK_OPS.into());
    if compat {
        wanted.insert(COMPAT_EXIT.into());
    }
    if uring {
        wanted.extend(URING_TRACEPOINTS.iter().map(|n| n.to_string()));
    }
    if packets {
        wanted.extend(PACKET_PROGRAMS.iter().map(|(n, _)| n.to_string()));
    }
    wanted.extend(tail_called(walks).map(|t| t.0.to_string()));
    let programs: Vec<(&str, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter(|(name, _)| wanted.contains(*name))
        .collect();
    let started = std::time::Instant::now();
    let n = programs.len();
    std::thread::scope(|s| {
        let loads: Vec<_> = programs
            .into_iter()
            .map(|(name, p)| {
                let load = move || {
                    let t = std::time::Instant::now();
                    load_program(p).map(|()| t.elapsed())
                };
                (name, s.spawn(load))
            })
            .collect();
        for (name, load) in loads {
            let took = load
                .join()
                .map_err(|_| anyhow!("loading program {name} panicked"))?
                .with_context(|| format!("the kernel verifier rejected program {name}"))?;
            tracing::debug!(program = name, ms = took.as_millis() as u64, "verified");
        }
        anyhow::Ok(())
    })?;
    tracing::debug!(
        programs = n,
        ms = started.elapsed().as_millis() as u64,
        "programs verified"
    );
    Ok(())
}

/// Loads one program of the kinds this agent attaches.
fn load_program(p: &mut aya::programs::Program) -> Result<(), aya::programs::ProgramError> {
    use aya::programs::Program;
    match p {
        Program::TracePoint(p) => p.load(),
        Program::RawTracePoint(p) => p.load(),
        Program::CgroupSockAddr(p) => p.load(),
        Program::SockOps(p) => p.load(),
        _ => Ok(()),
    }
}

/// Loads and attaches every program; returns the optional tracepoints this kernel lacks.
fn attach_all(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    links: &mut Links,
    maps: bool,
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    // The return first: an entry that begins a record must see its call return.
    attach_raw(ebpf, links, SYS_EXIT, "sys_exit")?;
    let mut attach = |ebpf: &mut Ebpf, prog: &str, category: &str, name: &str| {
        let p: &mut TracePoint = program(ebpf, prog)?.try_into()?;
        load_once!(p, prog);
        let id = p
            .attach(category, name)
            .with_context(|| format!("attaching {prog} to {category}:{name} failed"))?;
        links.keep_tracepoint(p.take_link(id)?);
        anyhow::Ok(())
    };
    for &(prog, category, name, required) in TRACEPOINTS {
        if !tracefs.has(category, name) {
            if required {
                bail!(
                    "tracepoint {category}:{name} is missing from this kernel; audit-agent \
                     needs CONFIG_FTRACE_SYSCALLS and the sched tracepoints"
                );
            }
            missing.push(format!("{category}:{name}"));
            continue;
        }
        attach(ebpf, prog, category, name)?;
    }
    for &(exit, _, calls) in SYSCALLS {
        for &(call, required) in calls {
            let enter = format!("sys_enter_{call}");
            if exit == MAP_EXEC && !maps {
                missing.push(format!(
                    "syscalls:{enter} (needs {MAP_EXEC_HELPER}, Linux 5.17)"
                ));
                continue;
            }
            if !tracefs.has("syscalls", &enter) {
                if required {
                    bail!(
                        "tracepoint syscalls:{enter} is missing from this kernel; audit-agent \
                         needs CONFIG_FTRACE_SYSCALLS"
                    );
                }
                missing.push(format!("syscalls:{enter}"));
                continue;
            }
            attach(ebpf, &enter, "syscalls", &enter)?;
        }
    }
    for &name in RAW_TRACEPOINTS {
        attach_raw(ebpf, links, name, name)?;
    }
    Ok(missing)
}

/// Attaches every program; returns the optional hooks left out (32-bit calls without their
/// offsets, io_uring without its offsets, executable mappings without their helper, tracepoints
/// some kernels lack).
fn attach_programs(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    links: &mut Links,
    compat_missing: bool,
    uring: bool,
    maps: bool,
) -> anyhow::Result<Vec<String>> {
    let mut missing = attach_all(ebpf, tracefs, links, maps)?;
    if compat_missing {
        missing.push("32-bit system calls (raw_syscalls:sys_exit, TS_COMPAT)".into());
    }
    if !uring {
        missing.extend(URING_TRACEPOINTS.iter().map(|t| format!("io_uring:{t}")));
    } else {
        missing.extend(attach_uring(ebpf, tracefs, links)?);
    }
    Ok(missing)
}

/// Fills `DNS_PORTS` (`[capture] dns_ports`).
fn set_dns_ports(ebpf: &mut Ebpf, ports: &[u16]) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut("DNS_PORTS")
        .ok_or_else(|| anyhow!("map DNS_PORTS is missing from the eBPF object"))?;
    let mut map: HashMap<&mut MapData, u16, u32> = HashMap::try_from(map)?;
    for port in ports {
        map.insert(port, 1, 0)?;
    }
    Ok(())
}

/// Makes the agent known to its own programs by the id the kernel gives it (see `Whoami`), so
/// they exclude exactly it, in a pid namespace too.
fn introduce_self(ebpf: &Ebpf, whoami: &Whoami) -> anyhow::Result<()> {
    let agent_map: Array<&MapData, u32> = Array::try_from(
        ebpf.map("AGENT")
            .ok_or_else(|| anyhow!("map AGENT is missing from the eBPF object"))?,
    )?;
    let host_tgid = whoami.introduce(&agent_map)?;
    if host_tgid != std::process::id() {
        tracing::info!(
            host_tgid,
            local_pid = std::process::id(),
            "running in a pid namespace: excluding the agent by its host process id"
        );
    }
    Ok(())
}

/// Programs that are loaded, never attached, and put where the programs that record actions
/// tail-call them (one program array per program type): the end of every record — the acting
/// image's executable and the emission (audit-ebpf/src/finish.rs), the walks of the files behind
/// the fds of copies and changes by fd (audit-ebpf/src/fd_walks.rs) — and the walks of the files a
/// process holds when the agent first sees it or receives (audit-ebpf/src/fds.rs), which need
/// `bpf_loop` (the last field). The arrays keep their entries while the agent holds their maps
/// (`Capture::ebpf`).
const TAIL_CALLED: &[(&str, &str, u32, bool)] = &[
    ("exe_and_emit_tp", "FINISH_TP", 0, false),
    ("exe_and_emit_raw", "FINISH_RAW", 0, false),
    ("fd_walks_tp", "FD_WALKS_TP", 0, false),
    ("held_files_tp", "HELD_TP", 0, true),
    ("held_files_raw", "HELD_RAW", 0, true),
    ("received_files_raw", "HELD_RAW", 1, true),
];

/// The [`TAIL_CALLED`] programs this kernel can run (`walks`: it has `bpf_loop`).
fn tail_called(
    walks: bool,
) -> impl Iterator<Item = &'static (&'static str, &'static str, u32, bool)> {
    TAIL_CALLED.iter().filter(move |t| walks || !t.3)
}

/// Puts the [`tail_called`] programs and the exit programs (the [`SYSCALLS`] families', and
/// [`COMPAT_EXIT`] when wanted), verified by [`load_in_parallel`], into their arrays.
fn fill_tail_calls(ebpf: &mut Ebpf, what: &Wanted) -> anyhow::Result<()> {
    for &(name, array, index, _) in tail_called(what.walks) {
        put_tail_called(ebpf, name, array, index)?;
    }
    for &(exit, kind, _) in SYSCALLS
        .iter()
        .filter(|(e, _, _)| what.maps || *e != MAP_EXEC)
    {
        put_tail_called(ebpf, exit, "EXITS", kind as u32)?;
    }
    if what.compat {
        put_tail_called(ebpf, COMPAT_EXIT, "EXITS", EventKind::Compat as u32)?;
    }
    Ok(())
}

/// Puts program `name` at `index` of program array `array`.
fn put_tail_called(ebpf: &mut Ebpf, name: &str, array: &str, index: u32) -> anyhow::Result<()> {
    let fd = match program(ebpf, name)? {
        aya::programs::Program::TracePoint(p) => {
            load_once!(p, name);
            p.fd()?.try_clone()?
        }
        aya::programs::Program::RawTracePoint(p) => {
            load_once!(p, name);
            p.fd()?.try_clone()?
        }
        _ => bail!("program {name} has an unexpected type"),
    };
    let map = ebpf
        .map_mut(array)
        .ok_or_else(|| anyhow!("map {array} is missing from the eBPF object"))?;
    let mut slots: ProgramArray<&mut MapData> = ProgramArray::try_from(map)?;
    slots
        .set(index, &fd, 0)
        .with_context(|| format!("putting {name} into {array}"))?;
    Ok(())
}

/// Attaches program `name` to raw tracepoint `tp`.
fn attach_raw(ebpf: &mut Ebpf, links: &mut Links, name: &str, tp: &str) -> anyhow::Result<()> {
    let p: &mut RawTracePoint = program(ebpf, name)?.try_into()?;
    load_once!(p, name);
    let id = p
        .attach(tp)
        .with_context(|| format!("attaching {name} to raw tracepoint {tp} failed"))?;
    links.keep(p.take_link(id)?);
    Ok(())
}

/// Attaches the io_uring programs (after their offsets were found); returns the tracepoints this
/// kernel lacks.
fn attach_uring(
    ebpf: &mut Ebpf,
    tracefs: &TraceFs,
    links: &mut Links,
) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for &name in URING_TRACEPOINTS {
        if !tracefs.has("io_uring", name) {
            missing.push(format!("io_uring:{name}"));
            continue;
        }
        let p: &mut TracePoint = program(ebpf, name)?.try_into()?;
        load_once!(p, name);
        let id = p
            .attach("io_uring", name)
            .with_context(|| format!("attaching {name} to io_uring:{name} failed"))?;
        links.keep_tracepoint(p.take_link(id)?);
    }
    Ok(missing)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} is missing from the eBPF object"))
}

/// Decodes up to `max` records. Returns (decoded, undecodable, ring now empty).
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Vec<KernelEvent>,
    max: usize,
) -> (usize, usize, bool) {
    let (mut n, mut bad) = (0, 0);
    while n < max {
        let Some(item) = ring.next() else {
            return (n, bad, true);
        };
        match decode::decode(&item) {
            Ok(ev) => {
                out.push(ev);
                n += 1;
            }
            Err(_) if item.len() < HEADER_LEN => bad += 1,
            Err(_) => bad += 1,
        }
    }
    (n, bad, false)
}

/// Reads tracepoint argument offsets from tracefs and kernel struct offsets from BTF.
pub(crate) fn kernel_offsets(tracefs: &TraceFs, btf: &Btf) -> anyhow::Result<Offsets> {
    let mut o = Offsets::UNSET;
    tracepoint_offsets(tracefs, &mut o)?;
    struct_offsets(btf, &mut o)?;
    if let Err(e) = uring_offsets(tracefs, btf, &mut o) {
        // Without them io_uring requests are not recorded (the tracepoints stay detached).
        tracing::warn!(error = %e, "io_uring requests cannot be decoded on this kernel; not recorded");
        o.uring_submit_req = ABSENT;
    }
    if let Err(e) = compat_offsets(btf, &mut o) {
        tracing::warn!(error = %e, "32-bit system calls cannot be read on this kernel; not recorded");
        o.task_ts_status = ABSENT;
    }
    if let Err(e) = overlay_offsets(btf, &mut o) {
        tracing::warn!(
            error = %e,
            "the files under an overlayfs file cannot be read on this kernel; such files are \
             named by the overlay alone"
        );
        o.ovl_inode_vfs = ABSENT;
    }
    Ok(o)
}

/// The offset of `st.member` from kernel BTF, checked to fit the programs' u16 fields.
fn member_offset(btf: &Btf, st: &str, member: &str) -> anyhow::Result<u16> {
    let off = btf.member_offset(st, member)?;
    u16::try_from(off).map_err(|_| anyhow!("{st}.{member} at offset {off} is beyond 64 KiB"))
}

/// Offsets of overlayfs' inode and lower stack, to name the real file under an overlay file.
/// Optional: the kernel's BTF lacks them when overlayfs is not built in.
fn overlay_offsets(btf: &Btf, o: &mut Offsets) -> anyhow::Result<()> {
    let m = |st: &str, member: &str| member_offset(btf, st, member);
    o.ovl_inode_vfs = m("ovl_inode", "vfs_inode")?;
    o.ovl_inode_upper = m("ovl_inode", "__upperdentry")?;
    o.ovl_inode_oe = m("ovl_inode", "oe")?;
    o.ovl_entry_numlower = m("ovl_entry", "__numlower")?;
    o.ovl_entry_lowerstack = m("ovl_entry", "__lowerstack")?;
    o.ovl_path_dentry = m("ovl_path", "dentry")?;
    Ok(())
}

/// Offsets for 32-bit system calls: `TS_COMPAT`'s word and the ia32 argument registers. Only
/// x86 has them (elsewhere compat calls are not recorded, and startup says so).
fn compat_offsets(btf: &Btf, o: &mut Offsets) -> anyhow::Result<()> {
    let m = |st: &str, member: &str| member_offset(btf, st, member);
    o.task_ts_status = m("task_struct", "thread_info.status")?;
    o.regs_orig_ax = m("pt_regs", "orig_ax")?;
    o.regs_bx = m("pt_regs", "bx")?;
    o.regs_cx = m("pt_regs", "cx")?;
    o.regs_dx = m("pt_regs", "dx")?;
    o.regs_si = m("pt_regs", "si")?;
    o.regs_di = m("pt_regs", "di")?;
    o.regs_bp = m("pt_regs", "bp")?;
    Ok(())
}

/// Offsets of io_uring's tracepoints and of the prepared request (`io_kiocb` and the per-opcode
/// structures at its start). Optional: a kernel without io_uring, or with other structures,
/// records no io_uring requests and says so.
fn uring_offsets(tracefs: &TraceFs, btf: &Btf, o: &mut Offsets) -> anyhow::Result<()> {
    let m = |st: &str, member: &str| member_offset(btf, st, member);
    let f = tracefs.format("io_uring", "io_uring_submit_req")?;
    o.uring_submit_req = f.offset("req")?;
    o.uring_submit_user_data = f.offset("user_data")?;
    o.uring_submit_opcode = f.offset("opcode")?;
    let f = tracefs.format("io_uring", "io_uring_complete")?;
    o.uring_complete_req = f.offset("req")?;
    o.uring_complete_user_data = f.offset("user_data")?;
    o.uring_complete_res = f.offset("res")?;
    let f = tracefs.format("io_uring", "io_uring_create")?;
    o.uring_create_fd = f.offset("fd")?;
    o.uring_create_sq = f.offset("sq_entries")?;
    o.uring_create_cq = f.offset("cq_entries")?;
    o.uring_create_flags = f.offset("flags")?;
    o.kiocb_flags = m("io_kiocb", "flags")?;
    o.kiocb_cqe = m("io_kiocb", "cqe")?;
    o.kiocb_async_data = m("io_kiocb", "async_data")?;
    o.io_open_dfd = m("io_open", "dfd")?;
    o.io_open_file_slot = m("io_open", "file_slot")?;
    o.io_open_filename = m("io_open", "filename")?;
    o.io_open_how = m("io_open", "how")?;
    o.io_rename_old_dfd = m("io_rename", "old_dfd")?;
    o.io_rename_new_dfd = m("io_rename", "new_dfd")?;
    o.io_rename_oldpath = m("io_rename", "oldpath")?;
    o.io_rename_newpath = m("io_rename", "newpath")?;
    o.io_rename_flags = m("io_rename", "flags")?;
    // link and symlink requests are `io_link`, read with io_rename's offsets: check they agree.
    for f in ["old_dfd", "new_dfd", "oldpath", "newpath", "flags"] {
        if m("io_link", f)? != m("io_rename", f)? {
            bail!("io_link.{f} and io_rename.{f} differ on this kernel");
        }
    }
    o.io_unlink_dfd = m("io_unlink", "dfd")?;
    o.io_unlink_flags = m("io_unlink", "flags")?;
    o.io_unlink_filename = m("io_unlink", "filename")?;
    o.io_mkdir_dfd = m("io_mkdir", "dfd")?;
    o.io_mkdir_mode = m("io_mkdir", "mode")?;
    o.io_mkdir_filename = m("io_mkdir", "filename")?;
    o.io_ftrunc_len = m("io_ftrunc", "len")?;
    o.msghdr_async_name = m("io_async_msghdr", "msg.msg_name")?;
    o.msghdr_async_addr = m("io_async_msghdr", "addr")?;
    o.io_connect_addr_len = m("io_connect", "addr_len")?;
    Ok(())
}

fn tracepoint_offsets(tracefs: &TraceFs, o: &mut Offsets) -> anyhow::Result<()> {
    let sc = "syscalls";
    let f = tracefs.format(sc, "sys_enter_execve")?;
    o.execve_filename = f.offset("filename")?;
    o.execve_argv = f.offset("argv")?;
    if tracefs.has(sc, "sys_enter_execveat") {
        let f = tracefs.format(sc, "sys_enter_execveat")?;
        o.execveat_fd = f.offset("fd")?;
        o.execveat_filename = f.offset("filename")?;
        o.execveat_argv = f.offset("argv")?;
        o.execveat_flags = f.offset("flags")?;
    }
    if tracefs.has(sc, "sys_enter_openat2") {
        let f = tracefs.format(sc, "sys_enter_openat2")?;
        o.openat2_dfd = f.offset("dfd")?;
        o.openat2_filename = f.offset("filename")?;
        o.openat2_how = f.offset("how")?;
    }
    if tracefs.has(sc, "sys_enter_open") {
        let f = tracefs.format(sc, "sys_enter_open")?;
        o.open_filename = f.offset("filename")?;
        o.open_flags = f.offset("flags")?;
        o.open_mode = f.offset("mode")?;
    }
    if tracefs.has(sc, "sys_enter_creat") {
        let f = tracefs.format(sc, "sys_enter_creat")?;
        o.creat_pathname = f.offset("pathname")?;
        o.creat_mode = f.offset("mode")?;
    }
    let f = tracefs.format(sc, "sys_enter_connect")?;
    o.connect_fd = f.offset("fd")?;
    o.connect_uservaddr = f.offset("uservaddr")?;
    o.connect_addrlen = f.offset("addrlen")?;
    o.sys_enter_args = syscall_args_offset(tracefs)?;
    fixed_record_layout(o.sys_enter_args)?;
    let f = tracefs.format("sched", "sched_process_exit")?;
    o.sched_exit_pid = f.offset("pid")?;
    o.sched_exit_group_dead = f.optional("group_dead").unwrap_or(ABSENT);
    if tracefs.has("cgroup", "cgroup_attach_task") {
        let f = tracefs.format("cgroup", "cgroup_attach_task")?;
        o.cgroup_attach_root = f.offset("dst_root")?;
        o.cgroup_attach_id = f.offset("dst_id")?;
        o.cgroup_attach_pid = f.offset("pid")?;
        o.cgroup_attach_path = f.offset("dst_path")?;
    }
    Ok(())
}

/// The programs read the entries' arguments at a fixed offset (plain context loads, see
/// [`audit_common::offsets::SYS_ENTER_ARG0`]): refuses a kernel that puts them elsewhere. (Return
/// values come from the raw `sys_exit`'s arguments, not from a trace record.)
fn fixed_record_layout(arg0: u16) -> anyhow::Result<()> {
    use audit_common::offsets::SYS_ENTER_ARG0;
    if arg0 != SYS_ENTER_ARG0 {
        bail!(
            "this kernel's syscall tracepoints put argument 0 at offset {arg0}; audit-agent \
             reads it at {SYS_ENTER_ARG0} (the layout of every kernel since 2.6.33): this kernel \
             is not supported"
        );
    }
    Ok(())
}

/// Where argument 0 of every syscall record is (`args[]` of `struct syscall_trace_enter`: 8
/// bytes each, in order). Checked against the `format` file of every system call attached (most
/// programs read arguments by position), so a kernel with another layout is refused with the
/// tracepoint named.
fn syscall_args_offset(tracefs: &TraceFs) -> anyhow::Result<u16> {
    let first = tracefs
        .format("syscalls", "sys_enter_openat")?
        .offset("dfd")?;
    for &call in SYSCALLS
        .iter()
        .flat_map(|(_, _, calls)| calls.iter().map(|(c, _)| c))
    {
        let name = format!("sys_enter_{call}");
        if !tracefs.has("syscalls", &name) {
            continue;
        }
        let f = tracefs.format("syscalls", &name)?;
        for (i, (field, at)) in f.arguments().into_iter().enumerate() {
            let want = first + 8 * i as u16;
            if at.offset != want || at.size != 8 {
                bail!(
                    "tracepoint syscalls:{name} has argument `{field}` at offset {} (size {}); \
                     audit-agent reads it at offset {want} (size 8): this kernel's syscall \
                     tracepoint layout is not supported",
                    at.offset,
                    at.size
                );
            }
        }
    }
    Ok(first)
}

/// Kernel struct member offsets (from BTF), each checked to fit the programs' u16 fields.
fn struct_offsets(btf: &Btf, o: &mut Offsets) -> anyhow::Result<()> {
    let m = |st: &str, member: &str| member_offset(btf, st, member);
    o.task_real_parent = m("task_struct", "real_parent")?;
    o.task_exit_code = m("task_struct", "exit_code")?;
    o.task_signal = m("task_struct", "signal")?;
    o.signal_flags = m("signal_struct", "flags")?;
    o.signal_group_exit_code = m("signal_struct", "group_exit_code")?;
    o.task_tgid = m("task_struct", "tgid")?;
    o.task_pid = m("task_struct", "pid")?;
    o.task_files = m("task_struct", "files")?;
    o.task_fs = m("task_struct", "fs")?;
    o.task_mm = m("task_struct", "mm")?;
    o.files_fdt = m("files_struct", "fdt")?;
    o.fdt_fd = m("fdtable", "fd")?;
    o.fdt_max_fds = m("fdtable", "max_fds")?;
    o.fdt_open_fds = m("fdtable", "open_fds")?;
    o.fs_root = m("fs_struct", "root")?;
    o.fs_pwd = m("fs_struct", "pwd")?;
    o.path_mnt = m("path", "mnt")?;
    o.path_dentry = m("path", "dentry")?;
    o.file_path = m("file", "f_path")?;
    o.file_inode = m("file", "f_inode")?;
    o.file_flags = m("file", "f_flags")?;
    o.file_private_data = m("file", "private_data")?;
    o.task_thread_pid = m("task_struct", "thread_pid")?;
    o.inode_private = m("inode", "i_private")?;
    o.pid_level = m("pid", "level")?;
    o.pid_numbers = m("pid", "numbers")?;
    o.dentry_parent = m("dentry", "d_parent")?;
    o.dentry_name = m("dentry", "d_name")?;
    o.dentry_inode = m("dentry", "d_inode")?;
    o.qstr_name = m("qstr", "name")?;
    o.inode_ino = m("inode", "i_ino")?;
    o.inode_sb = m("inode", "i_sb")?;
    o.inode_mode = m("inode", "i_mode")?;
    o.inode_nlink = m("inode", "__i_nlink")?;
    o.sb_dev = m("super_block", "s_dev")?;
    o.sb_magic = m("super_block", "s_magic")?;
    o.vfsmount_root = m("vfsmount", "mnt_root")?;
    o.mount_mnt = m("mount", "mnt")?;
    o.mount_parent = m("mount", "mnt_parent")?;
    o.mount_mountpoint = m("mount", "mnt_mountpoint")?;
    o.mount_id = m("mount", "mnt_id")?;
    o.mount_ns = m("mount", "mnt_ns")?;
    o.mnt_ns_inum = m("mnt_namespace", "ns.inum")?;
    o.mm_exe_file = m("mm_struct", "exe_file")?;
    o.mm_arg_start = m("mm_struct", "arg_start")?;
    o.mm_arg_end = m("mm_struct", "arg_end")?;
    o.mm_saved_auxv = m("mm_struct", "saved_auxv")?;
    o.vma_start = m("vm_area_struct", "vm_start")?;
    o.vma_end = m("vm_area_struct", "vm_end")?;
    o.vma_flags = m("vm_area_struct", "vm_flags")?;
    o.vma_file = m("vm_area_struct", "vm_file")?;
    o.bprm_file = m("linux_binprm", "file")?;
    o.bprm_filename = m("linux_binprm", "filename")?;
    o.bprm_interp = m("linux_binprm", "interp")?;
    o.socket_sk = m("socket", "sk")?;
    o.sock_family = m("sock", "__sk_common.skc_family")?;
    o.sock_err = m("sock", "sk_err")?;
    o.unix_path = m("unix_sock", "path")?;
    o.unix_peer = m("unix_sock", "peer")?;
    o.unix_addr = m("unix_sock", "addr")?;
    o.unix_address_len = m("unix_address", "len")?;
    o.unix_address_name = m("unix_address", "name")?;
    Ok(())
}
