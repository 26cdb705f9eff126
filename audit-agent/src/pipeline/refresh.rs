//! Keeping the kernel's watch set current: cgroup globs are re-resolved against the hierarchy
//! (new containers, new agent cgroups), a reloaded configuration's plan is applied, and the
//! cgroups of selected Kubernetes pods follow the pod watch.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::capture::{WatchSet, cgroup::Cgroup2, plan::WatchPlan};

/// Returns the current generation and globs of a watch set that changes at run time.
pub(crate) type DynamicGlobs = Box<dyn Fn() -> (u64, Vec<String>) + Send>;

pub(crate) struct WatchRefresher {
    plan: WatchPlan,
    cgroup2: Cgroup2,
    interval: Duration,
    last: Instant,
    current: WatchSet,
    /// A new plan from a configuration reload, applied at the next poll.
    updates: watch::Receiver<WatchPlan>,
    /// Extra globs that change at run time (cgroups of selected Kubernetes pods).
    dynamic: Option<DynamicGlobs>,
    dynamic_generation: u64,
    /// The source's count of cgroup hierarchy changes at the last resolve (`None`: not counted,
    /// every due poll resolves).
    resolved_at: Option<u64>,
}

impl WatchRefresher {
    /// Starts from `plan`, already resolved to `current`; `updates` carries reloaded plans.
    pub(crate) fn new(
        plan: WatchPlan,
        current: WatchSet,
        cgroup2: Cgroup2,
        interval: Duration,
        updates: watch::Receiver<WatchPlan>,
    ) -> Self {
        Self {
            plan,
            cgroup2,
            interval,
            last: Instant::now(),
            current,
            updates,
            dynamic: None,
            dynamic_generation: u64::MAX,
            resolved_at: None,
        }
    }

    /// Adds globs that change at run time, re-resolved when their generation changes.
    pub(crate) fn with_dynamic(mut self, d: DynamicGlobs) -> Self {
        self.dynamic = Some(d);
        self
    }

    /// A new kernel watch set when due and changed. `changes`: the source's count of cgroup
    /// hierarchy changes (mkdir, rmdir, rename), when it has one; a due poll resolves the watched
    /// paths again only when it moved since the last resolve (read before resolving, so a change
    /// during a resolve is seen by the next poll).
    pub(crate) fn poll(&mut self, changes: Option<u64>) -> Option<WatchSet> {
        let mut forced = false;
        if self.updates.has_changed().unwrap_or(false) {
            self.plan = self.updates.borrow_and_update().clone();
            forced = true;
        }
        let mut extra = Vec::new();
        if let Some(d) = &self.dynamic {
            let (generation, globs) = d();
            if generation != self.dynamic_generation {
                self.dynamic_generation = generation;
                forced = true;
            }
            extra = globs;
        }
        let dynamic = self.plan.is_dynamic() || !extra.is_empty();
        if !forced && (!dynamic || self.last.elapsed() < self.interval) {
            return None;
        }
        self.last = Instant::now();
        if !forced && changes.is_some() && changes == self.resolved_at {
            return None;
        }
        self.resolved_at = changes;
        let mut plan = self.plan.clone();
        for g in &extra {
            if let Err(e) = plan.add_glob(g) {
                tracing::warn!(glob = %g, error = %e, "ignoring pod cgroup glob");
            }
        }
        let set = plan.resolve(&self.cgroup2);
        (set != self.current).then(|| {
            self.current = set.clone();
            set
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths of a watch set's exact cgroups, sorted.
    fn exact(set: &WatchSet) -> Vec<&str> {
        let mut paths: Vec<&str> = set.exact.iter().map(|d| d.path.as_str()).collect();
        paths.sort_unstable();
        paths
    }

    #[test]
    fn the_watched_paths_are_resolved_again_only_when_the_hierarchy_changed() {
        let root = std::env::temp_dir().join(format!("audit-refresh-{}", std::process::id()));
        std::fs::create_dir_all(root.join("agents/a")).unwrap();
        let cg = Cgroup2::at(root.clone());
        let mut plan = WatchPlan::default();
        plan.add_glob("/agents/a").unwrap();
        plan.add_glob("/agents/b").unwrap();
        let (_tx, rx) = watch::channel(plan.clone());
        let start = plan.resolve(&cg);
        let mut r = WatchRefresher::new(plan, start, cg, Duration::ZERO, rx);

        std::fs::create_dir_all(root.join("agents/b")).unwrap();
        let set = r.poll(Some(1)).expect("b appeared");
        assert_eq!(exact(&set), ["/agents/a", "/agents/b"]);

        std::fs::remove_dir(root.join("agents/b")).unwrap();
        assert!(r.poll(Some(1)).is_none(), "no change counted: not resolved");
        let set = r.poll(Some(2)).expect("a change counted: b is gone");
        assert_eq!(exact(&set), ["/agents/a"]);

        std::fs::create_dir_all(root.join("agents/b")).unwrap();
        let set = r
            .poll(None)
            .expect("without a count, every due poll resolves");
        assert_eq!(exact(&set), ["/agents/a", "/agents/b"]);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
