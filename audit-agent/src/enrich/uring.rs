//! io_uring requests: the submission record carries what was asked (the kernel's copies of the
//! paths and destination), the completion record the result — and, for an open, the file the
//! kernel opened. The submission's event is held until its completion arrives, so one record
//! says what happened; after the same bounded wait as a non-blocking connect it is released with
//! an unknown outcome.

use std::time::{Duration, Instant};

use crate::event::{Event, KernelFile, Outcome, Target};

/// Most requests held at once; beyond it the oldest are released early.
const MAX_HELD: usize = 65_536;

struct Held {
    event: Event,
    since: Instant,
}

/// Holds io_uring submissions until their completion (keyed by the request's address).
pub(crate) struct UringTracker {
    wait: Duration,
    held: crate::FastMap<u64, Held>,
    ready: Vec<Event>,
}

impl UringTracker {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            wait,
            held: crate::FastMap::default(),
            ready: Vec::new(),
        }
    }

    /// A submission: held until its completion.
    pub(crate) fn hold(&mut self, req: u64, event: Event) {
        if self.held.len() >= MAX_HELD
            && let Some(k) = self
                .held
                .iter()
                .min_by_key(|(_, h)| h.since)
                .map(|(k, _)| *k)
            && let Some(h) = self.held.remove(&k)
        {
            self.ready.push(h.event);
        }
        // A request address reused before its completion was seen: release the old one.
        if let Some(old) = self.held.insert(
            req,
            Held {
                event,
                since: Instant::now(),
            },
        ) {
            self.ready.push(old.event);
        }
    }

    /// A completion: the result, and for an open the file the kernel opened.
    pub(crate) fn done(&mut self, req: u64, res: i64, opened: Option<KernelFile>) {
        let Some(mut h) = self.held.remove(&req) else {
            return;
        };
        if let Some(a) = h.event.activity_mut() {
            a.outcome = Outcome::from_retval(res, false);
            if let (Target::File(f), Some(k)) = (&mut a.resource.target, opened) {
                f.object = Some(k);
                f.resolved = None;
            }
        }
        self.ready.push(h.event);
    }

    /// Completed requests, and held ones whose wait ran out (all of them when `flush`).
    pub(crate) fn ready(&mut self, flush: bool) -> Vec<Event> {
        let now = Instant::now();
        let wait = self.wait;
        let expired = self
            .held
            .extract_if(|_, h| flush || now.duration_since(h.since) >= wait);
        self.ready.extend(expired.map(|(_, h)| h.event));
        std::mem::take(&mut self.ready)
    }
}
