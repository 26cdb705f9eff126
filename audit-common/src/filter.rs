//! Which processes the kernel reports: the filter configuration user space writes into the
//! `FILTER` array map, and the values of the `WATCHED_CGROUPS` map.

/// `WATCHED_CGROUPS` value bit: the cgroup itself is watched.
pub const CGROUP_EXACT: u32 = 1;
/// `WATCHED_CGROUPS` value bit: every cgroup below it is watched too (checked with
/// `bpf_get_current_ancestor_cgroup_id` at the levels in [`FilterConfig::subtree_levels`]).
pub const CGROUP_SUBTREE: u32 = 2;

/// Deepest cgroup level a subtree root may have.
pub const MAX_CGROUP_LEVEL: u32 = 31;

/// [`FilterConfig::mode`]: report nothing new (start-up, shutdown). Syscalls already in flight
/// still complete and are emitted.
pub const MODE_PAUSED: u32 = 0;
/// [`FilterConfig::mode`]: report watched cgroups, uids and followed processes.
pub const MODE_FILTERED: u32 = 1;
/// [`FilterConfig::mode`]: report every process (investigation mode), except the agent itself.
pub const MODE_ALL: u32 = 2;

/// The single entry of the `FILTER` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FilterConfig {
    /// `MODE_PAUSED`, `MODE_FILTERED` or `MODE_ALL`.
    pub mode: u32,
    /// `WATCHED_UIDS` has entries.
    pub uids: u32,
    /// `WATCHED_CGROUPS` has entries with [`CGROUP_EXACT`].
    pub exact_cgroups: u32,
    pub _pad: u32,
    /// Bit `n` set: some subtree root sits at cgroup level `n`.
    pub subtree_levels: u32,
    /// Changes whenever the watch set changes: invalidates the kernel's per-CPU verdict cache.
    pub generation: u32,
}

/// A file's identity as the kernel records it (`PROTECTED_FILES` key): `sb->s_dev` (kernel
/// encoding) and inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// Records lost by one process (`DROPS_BY_TGID` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessDrops {
    /// The ring buffer was full (or only its reserve was left).
    pub ringbuf_full: u64,
    /// The pending map was full.
    pub pending_full: u64,
}

/// Per-CPU cache of the last follow-set verdict (`FOLLOW_CACHE` map): valid while the follow
/// set's generation is unchanged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FollowVerdict {
    pub generation: u64,
    pub tgid: u32,
    pub followed: u32,
}

/// Per-CPU cache of the last cgroup verdict (`CGROUP_CACHE` map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CgroupVerdict {
    pub cgroup_id: u64,
    /// `FilterConfig::generation` the verdict was computed under.
    pub generation: u32,
    pub watched: u32,
}
