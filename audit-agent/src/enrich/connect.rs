//! Non-blocking connects: the syscall returns `EINPROGRESS`, the kernel later reports the
//! socket's final state (established, refused, timed out, reset, closed). The record of such a
//! connect is held until its outcome arrives, so the same record says what happened; after a
//! bounded wait it is released as `in_progress`, saying how long it waited.
//!
//! Outcomes can reach user space before their record (a loopback refusal happens inside the
//! syscall), so early outcomes are kept briefly too.

use std::time::{Duration, Instant};

use audit_common::event::ConnectOutcome;

use crate::event::{Completion, Detail, Event, Outcome};

const TCP_ESTABLISHED: u32 = 1;
/// Most connects held at once; beyond it the oldest are released early (with what is known).
const MAX_HELD: usize = 65_536;

/// A record's identity in the kernel: (tid, entry time).
type Key = (u32, u64);

struct Held {
    event: Event,
    since: Instant,
    attempt_ns: u64,
}

/// Holds in-progress connects until their outcome or the wait runs out.
pub(crate) struct ConnectTracker {
    wait: Duration,
    held: crate::FastMap<Key, Held>,
    early: crate::FastMap<Key, (ConnectOutcome, Instant)>,
    ready: Vec<Event>,
}

impl ConnectTracker {
    pub(crate) fn new(wait: Duration) -> Self {
        Self {
            wait,
            held: crate::FastMap::default(),
            early: crate::FastMap::default(),
            ready: Vec::new(),
        }
    }

    /// Holds an in-progress connect; completes it at once if its outcome already arrived.
    pub(crate) fn hold(&mut self, key: Key, event: Event, attempt_ns: u64) {
        let held = Held {
            event,
            since: Instant::now(),
            attempt_ns,
        };
        match self.early.remove(&key) {
            Some((o, _)) => self.ready.push(complete(held, &o)),
            None => {
                if self.held.len() >= MAX_HELD {
                    self.release_oldest();
                }
                self.held.insert(key, held);
            }
        }
    }

    /// An outcome from the kernel: completes its held record, or waits for it.
    pub(crate) fn outcome(&mut self, key: Key, o: ConnectOutcome) {
        match self.held.remove(&key) {
            Some(h) => self.ready.push(complete(h, &o)),
            None => {
                if self.early.len() >= MAX_HELD {
                    self.early.clear();
                }
                self.early.insert(key, (o, Instant::now()));
            }
        }
    }

    /// Completed records, and held ones whose wait ran out (all of them when `flush`).
    pub(crate) fn ready(&mut self, flush: bool) -> Vec<Event> {
        let now = Instant::now();
        let wait = self.wait;
        let expired: Vec<Held> = self
            .held
            .extract_if(|_, h| flush || now.duration_since(h.since) >= wait)
            .map(|(_, h)| h)
            .collect();
        for h in expired {
            self.ready.push(timed_out(h, now));
        }
        self.early
            .retain(|_, (_, at)| now.duration_since(*at) < wait);
        let mut out = std::mem::take(&mut self.ready);
        out.sort_by_key(|e| e.time);
        out
    }

    fn release_oldest(&mut self) {
        if let Some(k) = self
            .held
            .iter()
            .min_by_key(|(_, h)| h.since)
            .map(|(k, _)| *k)
            && let Some(h) = self.held.remove(&k)
        {
            self.ready.push(timed_out(h, Instant::now()));
        }
    }
}

fn set_completion(e: &mut Event, outcome: Outcome, after: Option<Duration>, waited: Duration) {
    if let Some(a) = e.activity_mut() {
        a.outcome = outcome;
        if let Detail::Connect { completion, .. } = &mut a.resource.detail {
            *completion = Some(Completion {
                syscall_retval: -115,
                after,
                waited,
            });
        }
    }
}

fn complete(mut h: Held, o: &ConnectOutcome) -> Event {
    let outcome = if o.new_state == TCP_ESTABLISHED {
        Outcome::Success(0)
    } else if o.error != 0 {
        Outcome::Failure(o.error as i32)
    } else {
        // Closed by the process before it completed (no socket error).
        Outcome::Failure(125) // ECANCELED
    };
    let after = Duration::from_nanos(o.at_ns.saturating_sub(h.attempt_ns));
    set_completion(&mut h.event, outcome, Some(after), h.since.elapsed());
    h.event
}

fn timed_out(mut h: Held, now: Instant) -> Event {
    set_completion(
        &mut h.event,
        Outcome::InProgress,
        None,
        now.duration_since(h.since),
    );
    h.event
}
