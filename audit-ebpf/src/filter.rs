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

use audit_common::filter::FilterConfig;

use crate::{
    maps::{CGROUP_CACHE, FILTER, FOLLOWED, FOLLOWED_COUNT, WATCHED_CGROUPS, WATCHED_UIDS},
    offsets::self_tgid,
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

/// Whether the task identified by `pid_tgid` (from `bpf_get_current_pid_tgid`) is watched.
#[inline(always)]
pub fn is_watched(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == self_tgid() {
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
    followed && unsafe { FOLLOWED.get(tgid) }.is_some()
}
