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
        }
    }

    /// Adds globs that change at run time, re-resolved when their generation changes.
    pub(crate) fn with_dynamic(mut self, d: DynamicGlobs) -> Self {
        self.dynamic = Some(d);
        self
    }

    /// A new kernel watch set when due and changed.
    pub(crate) fn poll(&mut self) -> Option<WatchSet> {
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
