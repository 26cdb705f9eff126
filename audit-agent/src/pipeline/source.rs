//! Where kernel events come from: the loaded programs ([`Capture`]) in production, recorded
//! events in tests of the pipeline's drain, gap and loss logic.

use std::{future::Future, io};

use audit_common::{counters::Counters, filter::ProcessDrops};

use crate::{
    capture::{Capture, WatchSet},
    decode::KernelEvent,
};

/// A source of decoded kernel events and the kernel's loss counters.
pub(crate) trait Source: Send {
    /// Waits until records are available, then decodes up to `max` of them into `out`. Returns
    /// how many records could not be decoded (counted, never silently skipped).
    fn read(
        &mut self,
        out: &mut Vec<KernelEvent>,
        max: usize,
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Decodes up to `max` records available now. Returns (decoded, undecodable).
    fn read_up_to(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> (usize, usize);

    /// The kernel's cumulative counters.
    fn counters(&self) -> anyhow::Result<Counters>;

    /// Records lost so far per process (tgid), cumulative: gap records name the processes that
    /// flooded.
    fn drops_by_process(&self) -> Vec<(u32, ProcessDrops)> {
        Vec::new()
    }

    /// The stages are built (before the daemon says it is ready): what they published for the
    /// kernel when they were made — the protected files that get the ring buffer's reserve —
    /// is taken up now, not at the first read, which a flood right after the start could
    /// outrun.
    fn stages_built(&mut self) {}

    /// Stops reporting new syscalls; those in flight still complete and are emitted.
    fn pause(&mut self) -> anyhow::Result<()>;

    /// Syscalls still in flight after [`Source::pause`] and a drain, marked incomplete.
    fn take_in_flight(&mut self) -> Vec<KernelEvent>;

    /// Makes the kernel report exactly `set`.
    fn set_watch(&mut self, set: &WatchSet) -> anyhow::Result<()>;

    /// How many times the cgroup hierarchies changed so far, when the source counts them: the
    /// watched paths are resolved again only when this moved.
    fn cgroup_changes(&self) -> Option<u64> {
        None
    }

    /// The records of these signals to the agent (by `ktime_ns`) reached the sink.
    fn signals_delivered(&mut self, _ktimes: &[u64]) {}

    /// After a clean stop and a full drain: release what was kept to outlive a crash.
    fn release(&mut self) {}
}

impl Source for Capture {
    async fn read(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> io::Result<usize> {
        Capture::read(self, out, max).await
    }

    fn read_up_to(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> (usize, usize) {
        Capture::read_up_to(self, out, max)
    }

    fn counters(&self) -> anyhow::Result<Counters> {
        Capture::counters(self)
    }

    fn drops_by_process(&self) -> Vec<(u32, ProcessDrops)> {
        Capture::drops_by_process(self)
    }

    fn stages_built(&mut self) {
        Capture::sync_protected(self);
    }

    fn pause(&mut self) -> anyhow::Result<()> {
        Capture::pause(self)
    }

    fn take_in_flight(&mut self) -> Vec<KernelEvent> {
        Capture::take_in_flight(self)
    }

    fn set_watch(&mut self, set: &WatchSet) -> anyhow::Result<()> {
        Capture::set_watch(self, set)
    }

    fn cgroup_changes(&self) -> Option<u64> {
        Capture::cgroup_changes(self)
    }

    fn signals_delivered(&mut self, ktimes: &[u64]) {
        Capture::signals_delivered(self, ktimes);
    }

    fn release(&mut self) {
        Capture::release(self);
    }
}

/// Replays prepared events and counters (tests of the pipeline without a kernel).
#[cfg(test)]
pub(crate) mod recorded {
    use std::{
        collections::VecDeque,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// What the test feeds in and sees.
    #[derive(Default)]
    pub(crate) struct Script {
        /// Batches returned by successive reads (`Err(n)`: `n` undecodable records).
        pub(crate) batches: VecDeque<Result<Vec<KernelEvent>, usize>>,
        /// Counters returned from now on.
        pub(crate) counters: Counters,
        /// Returned by `drops_by_process`.
        pub(crate) drops: Vec<(u32, ProcessDrops)>,
        /// Returned by `take_in_flight`.
        pub(crate) in_flight: Vec<KernelEvent>,
        /// Reach the ring right after `take_in_flight` (syscalls that completed meanwhile).
        pub(crate) completed_meanwhile: Vec<KernelEvent>,
        pub(crate) paused: bool,
        pub(crate) watch_sets: Vec<WatchSet>,
    }

    /// A source driven by a shared [`Script`].
    #[derive(Clone, Default)]
    pub(crate) struct Recorded(pub(crate) Arc<Mutex<Script>>);

    impl Recorded {
        pub(crate) fn script(&self) -> std::sync::MutexGuard<'_, Script> {
            self.0.lock().expect("script")
        }
    }

    impl Source for Recorded {
        async fn read(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> io::Result<usize> {
            loop {
                let (n, bad) = self.read_up_to(out, max);
                if n > 0 || bad > 0 {
                    return Ok(bad);
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }

        fn read_up_to(&mut self, out: &mut Vec<KernelEvent>, _max: usize) -> (usize, usize) {
            match self.script().batches.pop_front() {
                Some(Ok(b)) => {
                    let n = b.len();
                    out.extend(b);
                    (n, 0)
                }
                Some(Err(bad)) => (0, bad),
                None => (0, 0),
            }
        }

        fn counters(&self) -> anyhow::Result<Counters> {
            Ok(self.script().counters)
        }

        fn drops_by_process(&self) -> Vec<(u32, ProcessDrops)> {
            self.script().drops.clone()
        }

        fn pause(&mut self) -> anyhow::Result<()> {
            self.script().paused = true;
            Ok(())
        }

        fn take_in_flight(&mut self) -> Vec<KernelEvent> {
            let mut s = self.script();
            let done = std::mem::take(&mut s.completed_meanwhile);
            if !done.is_empty() {
                s.batches.push_back(Ok(done));
            }
            std::mem::take(&mut s.in_flight)
        }

        fn set_watch(&mut self, set: &WatchSet) -> anyhow::Result<()> {
            self.script().watch_sets.push(set.clone());
            Ok(())
        }
    }
}
