//! From cgroup globs to kernel watch entries.
//!
//! - `/a/b` (no wildcard): watch exactly that cgroup.
//! - `/a/b/**`: watch `/a/b` as a subtree root; the kernel covers cgroups created below it later
//!   with no delay (`bpf_get_current_ancestor_cgroup_id`).
//! - anything else (`/kubepods/**/cri-containerd-*.scope`): matched against the existing
//!   hierarchy under its literal prefix, re-scanned periodically so new cgroups are picked up
//!   without restart (after at most one rescan interval).

use std::collections::BTreeSet;

use super::{
    WatchSet,
    cgroup::{Cgroup2, CgroupDir, normalize},
};
use crate::{
    config::{Config, Problems},
    policy::pattern::{PathSet, path_glob},
};

#[derive(Debug, Clone)]
enum Entry {
    Exact(String),
    Subtree(String),
    Scan {
        glob: PathSet,
        prefix: String,
        subtree: bool,
    },
}

/// What to watch, before resolution against the hierarchy.
#[derive(Debug, Clone, Default)]
pub(crate) struct WatchPlan {
    entries: Vec<Entry>,
    uids: BTreeSet<u32>,
    all: bool,
}

fn has_meta(component: &str) -> bool {
    component.contains(['*', '?', '[', '{', '\\'])
}

impl WatchPlan {
    pub(crate) fn new(all: bool) -> Self {
        Self {
            all,
            ..Default::default()
        }
    }

    /// What a configuration watches: its agents' cgroups and uids, and `[watch]`. Agent globs
    /// were checked by the registry; `[watch]` globs are checked here.
    pub(crate) fn compile(cfg: &Config, p: &mut Problems) -> Self {
        let mut plan = Self::new(cfg.watch.all);
        for a in &cfg.agents {
            for g in &a.cgroup {
                let _ = plan.add_glob(g.get_ref());
            }
            for u in &a.uid {
                plan.add_uid(*u.get_ref());
            }
        }
        for (i, g) in cfg.watch.cgroups.iter().enumerate() {
            if let Err(e) = path_glob(g.get_ref()).and_then(|_| plan.add_glob(g.get_ref())) {
                p.at(g.span(), format!("watch.cgroups[{i}]: {e}"));
            }
        }
        for u in &cfg.watch.uids {
            plan.add_uid(*u);
        }
        plan
    }

    /// The same plan, watching every process.
    pub(crate) fn with_all(mut self) -> Self {
        self.all = true;
        self
    }

    /// `--cgroup PATH`: a literal subtree.
    pub(crate) fn add_subtree(&mut self, path: &str) {
        self.entries.push(Entry::Subtree(normalize(path)));
    }

    /// A cgroup glob.
    pub(crate) fn add_glob(&mut self, glob: &str) -> Result<(), String> {
        let (base, subtree) = match glob.strip_suffix("/**") {
            Some(b) => (b, true),
            None => (glob, false),
        };
        let comps: Vec<&str> = base.split('/').filter(|c| !c.is_empty()).collect();
        let literal = comps.iter().take_while(|c| !has_meta(c)).count();
        let prefix = format!("/{}", comps[..literal].join("/"));
        let entry = if literal == comps.len() {
            if subtree {
                Entry::Subtree(prefix)
            } else {
                Entry::Exact(prefix)
            }
        } else {
            Entry::Scan {
                glob: PathSet::new([base])?,
                prefix,
                subtree,
            }
        };
        self.entries.push(entry);
        Ok(())
    }

    pub(crate) fn add_uid(&mut self, uid: u32) {
        self.uids.insert(uid);
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty() && self.uids.is_empty()
    }

    /// Whether the result can change as cgroups come and go (so rescans are needed).
    pub(crate) fn is_dynamic(&self) -> bool {
        !self.entries.is_empty()
    }

    /// Resolves the plan against the current hierarchy. Literal paths that do not exist (yet)
    /// are skipped; they are picked up by a later rescan.
    pub(crate) fn resolve(&self, cg: &Cgroup2) -> WatchSet {
        let mut set = WatchSet {
            all: self.all,
            uids: self.uids.clone(),
            ..Default::default()
        };
        let literal = |subtree: bool| {
            self.entries.iter().filter_map(move |e| match e {
                Entry::Exact(p) if !subtree => Some(p.as_str()),
                Entry::Subtree(p) if subtree => Some(p.as_str()),
                _ => None,
            })
        };
        set.exact = cg.resolve_existing(literal(false));
        set.subtrees = cg.resolve_existing(literal(true));
        let mut tree: Option<Vec<CgroupDir>> = None;
        for e in &self.entries {
            let Entry::Scan {
                glob,
                prefix,
                subtree,
            } = e
            else {
                continue;
            };
            let dirs = tree.get_or_insert_with(|| cg.walk());
            let under = format!("{}/", prefix.trim_end_matches('/'));
            for d in dirs.iter() {
                if (d.path.starts_with(&under) || d.path == *prefix)
                    && glob.matches(d.path.as_bytes())
                {
                    if *subtree {
                        set.subtrees.push(d.clone());
                    } else {
                        set.exact.push(d.clone());
                    }
                }
            }
        }
        set.subtrees.sort_by_key(|d| d.id);
        set.subtrees.dedup_by_key(|d| d.id);
        set.exact.sort_by_key(|d| d.id);
        set.exact.dedup_by_key(|d| d.id);
        set
    }
}
