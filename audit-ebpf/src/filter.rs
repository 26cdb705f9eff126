//! Is the current task watched? Called first by every entry program, so an unwatched task leaves
//! after a handful of instructions: self check, the filter configuration (an inlined array
//! lookup), the cgroup verdict (from a per-CPU cache keyed by cgroup id and filter generation;
//! on a miss one hash lookup per cgroup level holding a subtree root), the uid lookup only when
//! uids are watched, and the follow-set lookup only while the follow set is not empty.

use audit_common::filter::{
    CGROUP_EXACT, CGROUP_SUBTREE, MAX_CGROUP_LEVEL, MODE_ALL, MODE_FILTERED,
};
use aya_ebpf::helpers::{
    bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_uid_gid,
};

use audit_common::filter::{FilterConfig, FollowVerdict};

use crate::{
    helpers::{atomic_add, count},
    maps::{
        AGENT, CGROUP_CACHE, FILTER, FOLLOW_CACHE, FOLLOWED, FOLLOWED_COUNT, WATCHED_CGROUPS,
        WATCHED_UIDS,
    },
};

/// Whether cgroup `id` (the current task's) is watched: itself, or below a subtree root.
#[inline(always)]
fn cgroup_watched(cfg: &FilterConfig, id: u64) -> bool {
    if cfg.exact_cgroups != 0 {
        if let Some(v) = unsafe { WATCHED_CGROUPS.get(id) } {
            if *v & CGROUP_EXACT != 0 {
                return true;
            }
        }
    }
    let mut levels = cfg.subtree_levels;
    let mut level = 0u32;
    // Bounded loop: at most one iteration per possible level, and it stops as soon as no higher
    // level has a subtree root (usually after one or two iterations).
    while levels != 0 && level <= MAX_CGROUP_LEVEL {
        if levels & 1 != 0 {
            let a = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if a != 0 {
                if let Some(v) = unsafe { WATCHED_CGROUPS.get(a) } {
                    if *v & CGROUP_SUBTREE != 0 {
                        return true;
                    }
                }
            }
        }
        levels >>= 1;
        level += 1;
    }
    false
}

/// The agent's own tgid (0 until it made itself known).
#[inline(always)]
pub fn agent_tgid() -> u32 {
    AGENT.get(0).copied().unwrap_or(0)
}

/// Whether the task identified by `pid_tgid` (from `bpf_get_current_pid_tgid`) is watched.
#[inline(always)]
pub fn is_watched(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == agent_tgid() {
        return false;
    }
    let Some(cfg) = FILTER.get(0) else {
        return false;
    };
    if cfg.mode != MODE_FILTERED {
        return cfg.mode == MODE_ALL;
    }
    if cfg.exact_cgroups != 0 || cfg.subtree_levels != 0 {
        let id = unsafe { bpf_get_current_cgroup_id() };
        let watched = match CGROUP_CACHE.get_ptr_mut(0) {
            Some(c) => {
                let c = unsafe { &mut *c };
                if c.cgroup_id == id && c.generation == cfg.generation {
                    c.watched != 0
                } else {
                    let w = cgroup_watched(cfg, id);
                    c.cgroup_id = id;
                    c.generation = cfg.generation;
                    c.watched = u32::from(w);
                    w
                }
            }
            None => cgroup_watched(cfg, id),
        };
        if watched {
            return true;
        }
    }
    if cfg.uids != 0 {
        let uid = bpf_get_current_uid_gid() as u32;
        if unsafe { WATCHED_UIDS.get(uid) }.is_some() {
            return true;
        }
    }
    let followed = FOLLOWED_COUNT.get(0).is_some_and(|n| *n != 0);
    followed && is_followed(tgid)
}

/// The follow set's generation.
#[inline(always)]
fn follow_generation() -> u64 {
    FOLLOWED_COUNT
        .get_ptr(1)
        .map_or(0, |g| unsafe { core::ptr::read_volatile(g) })
}

/// Whether `tgid` is in the follow set, through the per-CPU cache.
#[inline(always)]
pub fn is_followed(tgid: u32) -> bool {
    let generation = follow_generation();
    let Some(c) = FOLLOW_CACHE.get_ptr_mut(0) else {
        return unsafe { FOLLOWED.get(tgid) }.is_some();
    };
    let c = unsafe { &mut *c };
    if c.tgid == tgid && c.generation == generation {
        return c.followed != 0;
    }
    let f = unsafe { FOLLOWED.get(tgid) }.is_some();
    *c = FollowVerdict {
        generation,
        tgid,
        followed: u32::from(f),
    };
    f
}

/// Adds `tgid` to the follow set (a watched process acted, or a watched parent forked it), so it
/// stays watched wherever it moves. Not in investigation mode (everything is watched there).
#[inline(always)]
pub fn follow(tgid: u32) {
    if FILTER.get(0).is_some_and(|c| c.mode == MODE_ALL) || is_followed(tgid) {
        return;
    }
    // BPF_NOEXIST: count each new entry once.
    if FOLLOWED.insert(tgid, 1, 1).is_ok() {
        follow_count_add(1);
    } else if unsafe { FOLLOWED.get(tgid) }.is_none() {
        count(|c| c.follow_full += 1);
    }
}

/// Removes an exited process from the follow set.
#[inline(always)]
pub fn unfollow(tgid: u32) {
    if FOLLOWED.remove(tgid).is_ok() {
        follow_count_add(-1);
    }
}

/// Adjusts the follow set's size and bumps its generation.
#[inline(always)]
fn follow_count_add(delta: i64) {
    if let Some(n) = FOLLOWED_COUNT.get_ptr_mut(0) {
        atomic_add(n, delta as u64);
    }
    if let Some(g) = FOLLOWED_COUNT.get_ptr_mut(1) {
        atomic_add(g, 1);
    }
}
