//! The pipeline, top to bottom:
//!
//! ```text
//! source (kernel ring buffer) -> decode -> enrich -> stages (identity, policy) -> sequence -> sink
//! claims (local socket, OTLP) ---------------/                                        \-> observers
//! ```
//!
//! Besides moving events, it turns kernel loss counters and refused records into explicit gap
//! records, and on shutdown stops new capture, drains the ring buffer and flushes in-flight
//! syscalls so nothing the kernel saw is dropped. Build one with [`Pipeline::builder`].

mod loss;
mod refresh;
mod sequence;
pub(crate) mod source;

use std::{future::Future, sync::Arc, time::Duration};

use audit_common::counters::Counters;

use self::loss::{Dropped, LossTracker};
pub(crate) use self::{
    loss::gap,
    refresh::{DynamicGlobs, WatchRefresher},
    sequence::Sequencer,
    source::Source,
};
use crate::{
    decode::KernelEvent,
    enrich::Enricher,
    event::{Body, Event, Gap, GapReason, Host, Observer, Stage, Timestamp},
    latency::Histogram,
    sink::{Accepted, Sink},
    time,
};

/// What a pipeline run did.
#[derive(Debug, Default, Clone)]
pub(crate) struct RunStats {
    pub(crate) records: u64,
    pub(crate) gaps: u64,
    pub(crate) lost: u64,
    pub(crate) kernel: Counters,
    /// Syscall entry to accepted by the sink (spooled, or written out), per record.
    pub(crate) latency: Histogram,
}

impl RunStats {
    /// One log line with what the run did.
    pub(crate) fn log(&self, message: &str) {
        tracing::info!(
            records = self.records,
            gaps = self.gaps,
            lost = self.lost,
            latency_p50_us = self.latency.quantile(0.5) / 1000,
            latency_p99_us = self.latency.quantile(0.99) / 1000,
            "{message}"
        );
    }
}

/// Assembles a [`Pipeline`].
pub(crate) struct PipelineBuilder<S> {
    source: S,
    enricher: Enricher,
    sink: Box<dyn Sink + Send>,
    seq: Sequencer,
    stages: Vec<Box<dyn Stage>>,
    observers: Vec<Box<dyn Observer>>,
    refresher: Option<WatchRefresher>,
    claims: Option<ClaimsIn>,
}

/// Claims on their way in (`claims::listen`).
type ClaimsIn = crate::claims::listen::Incoming;

impl<S: Source> PipelineBuilder<S> {
    /// Takes claims in: each becomes an `agent.claim` record, attributed like any other.
    pub(crate) fn claims(mut self, rx: ClaimsIn) -> Self {
        self.claims = Some(rx);
        self
    }

    /// Adds a transform, run in the order added.
    pub(crate) fn stage(mut self, s: impl Stage + 'static) -> Self {
        self.stages.push(Box::new(s));
        self
    }

    /// Adds an observer of every event the sink accepted.
    pub(crate) fn observer(mut self, o: Box<dyn Observer>) -> Self {
        self.observers.push(o);
        self
    }

    /// Keeps the kernel's watch set current as cgroups come and go.
    pub(crate) fn refresher(mut self, r: WatchRefresher) -> Self {
        self.refresher = Some(r);
        self
    }

    pub(crate) fn build(mut self) -> anyhow::Result<Pipeline<S>> {
        self.source.stages_built();
        let initial = self.source.counters()?;
        Ok(Pipeline {
            loss: LossTracker::new(initial, time::now()),
            source: self.source,
            enricher: self.enricher,
            sink: self.sink,
            seq: self.seq,
            stages: self.stages,
            observers: self.observers,
            refresher: self.refresher,
            claims: self.claims,
            dropped: Dropped::default(),
            stats: RunStats::default(),
            batch: Vec::with_capacity(BATCH),
            clock: AcceptClock::default(),
        })
    }
}

/// A running pipeline; see the module documentation.
pub(crate) struct Pipeline<S> {
    source: S,
    enricher: Enricher,
    sink: Box<dyn Sink + Send>,
    seq: Sequencer,
    stages: Vec<Box<dyn Stage>>,
    observers: Vec<Box<dyn Observer>>,
    refresher: Option<WatchRefresher>,
    claims: Option<ClaimsIn>,
    loss: LossTracker,
    dropped: Dropped,
    stats: RunStats,
    batch: Vec<KernelEvent>,
    clock: AcceptClock,
}

/// When records are accepted (delivery latency, observers): the clock is read for the first
/// record of every batch and then every [`AcceptClock::EVERY`] records, not for each one — a
/// clock read costs about as much as a stage here, and [`AcceptClock::EVERY`] records take
/// tens of microseconds, far below the milliseconds latency is measured in.
#[derive(Default)]
struct AcceptClock {
    last: Option<Timestamp>,
    left: u32,
}

impl AcceptClock {
    const EVERY: u32 = 16;

    fn now(&mut self) -> Timestamp {
        match self.last {
            Some(t) if self.left > 0 => {
                self.left -= 1;
                t
            }
            _ => {
                let t = time::now();
                self.last = Some(t);
                self.left = Self::EVERY - 1;
                t
            }
        }
    }

    /// The next record reads the clock.
    fn expire(&mut self) {
        self.last = None;
    }
}

/// How often kernel counters are checked for loss and the clock offset refreshed.
const TICK: Duration = Duration::from_millis(100);
/// How often the ring buffer is polled: the kernel only wakes the reader when a lot of data is
/// pending (see `WAKEUP_BYTES` in audit-ebpf), so this bounds the delivery latency of a trickle.
const POLL: Duration = Duration::from_millis(10);
/// Records decoded per wake-up before they are processed and flushed.
const BATCH: usize = 4096;

impl<S: Source> Pipeline<S> {
    pub(crate) fn builder(
        source: S,
        enricher: Enricher,
        sink: Box<dyn Sink + Send>,
        seq: Sequencer,
    ) -> PipelineBuilder<S> {
        PipelineBuilder {
            source,
            enricher,
            sink,
            seq,
            stages: Vec::new(),
            observers: Vec::new(),
            refresher: None,
            claims: None,
        }
    }

    /// Runs until `shutdown` completes, then drains (see module docs).
    pub(crate) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<RunStats> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = self.source.read(&mut self.batch, BATCH) => {
                    let bad = r?;
                    self.note_decode_errors(bad)?;
                    self.process_batch()?;
                }
                Some(claim) = next_claim(&mut self.claims) => {
                    // The kernel's records of what led up to it first (the hook's exec).
                    self.poll_ring()?;
                    self.take_claim(claim)?;
                }
                _ = poll.tick() => self.poll_ring()?,
                _ = tick.tick() => {
                    self.check_loss()?;
                    self.enricher.refresh_clock();
                    self.refresh_watch()?;
                    self.release_held(false)?;
                    self.sink.flush()?;
                }
            }
        }
        self.drain().await?;
        Ok(self.stats)
    }

    /// Reads whatever the ring holds now, batch by batch.
    fn poll_ring(&mut self) -> anyhow::Result<()> {
        loop {
            let (n, bad) = self.source.read_up_to(&mut self.batch, BATCH);
            self.note_decode_errors(bad)?;
            self.process_batch()?;
            if n < BATCH {
                return Ok(());
            }
        }
    }

    /// Stop capture, let syscalls in flight finish briefly, drain everything, flush.
    async fn drain(&mut self) -> anyhow::Result<()> {
        self.source.pause()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.poll_ring()?;
        // Syscalls still in flight (blocked connect, slow open): report what is known, marked
        // incomplete. One that completes meanwhile is reported from the ring instead.
        let mut in_flight = self.source.take_in_flight();
        let (_, bad) = self.source.read_up_to(&mut self.batch, usize::MAX);
        self.note_decode_errors(bad)?;
        in_flight.retain(|p| {
            !self
                .batch
                .iter()
                .any(|e| e.task.tid == p.task.tid && e.task.ktime_ns == p.task.ktime_ns)
        });
        self.batch.extend(in_flight);
        self.process_batch()?;
        // Claims already taken in are on record before the end.
        for claim in self
            .claims
            .as_mut()
            .map(ClaimsIn::drain)
            .unwrap_or_default()
        {
            self.take_claim(claim)?;
        }
        self.release_held(true)?;
        self.check_loss()?;
        self.sink.close()?;
        self.source.release();
        Ok(())
    }

    fn refresh_watch(&mut self) -> anyhow::Result<()> {
        let changes = self.source.cgroup_changes();
        if let Some(set) = self.refresher.as_mut().and_then(|r| r.poll(changes)) {
            // Said once the kernel has it: whoever waits for this line (an operator, a test)
            // may start a workload in the new cgroups right away.
            self.source.set_watch(&set)?;
            tracing::info!(
                subtrees = set.subtrees.len(),
                exact = set.exact.len(),
                "cgroup watch set changed; kernel filter updated"
            );
        }
        Ok(())
    }

    fn process_batch(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.batch);
        let n = batch.len();
        self.clock.expire();
        let signals: Vec<u64> = batch
            .iter()
            .filter(|e| matches!(e.body, crate::decode::Body::Signal { .. }))
            .map(|e| e.task.ktime_ns)
            .collect();
        for ev in batch.drain(..) {
            if let Some(event) = self.enricher.enrich(ev) {
                self.stage_and_emit(event)?;
                for more in self.enricher.take_more() {
                    self.stage_and_emit(more)?;
                }
            }
        }
        self.batch = batch;
        self.release_held(false)?;
        for o in &mut self.observers {
            o.batch(n);
        }
        self.sink.flush()?;
        if !signals.is_empty() {
            self.source.signals_delivered(&signals);
        }
        Ok(())
    }

    fn stage_and_emit(&mut self, mut event: Event) -> anyhow::Result<()> {
        for stage in &mut self.stages {
            stage.apply(&mut event);
        }
        self.emit(event).map(|_| ())
    }

    /// Events the enricher held (in-progress connects) that are complete or waited long enough;
    /// all of them when `flush` (shutdown).
    fn release_held(&mut self, flush: bool) -> anyhow::Result<()> {
        self.clock.expire();
        for event in self.enricher.ready(flush) {
            self.stage_and_emit(event)?;
        }
        Ok(())
    }

    /// An `agent.claim` record through the stages into the sink; its id back to the sender.
    fn take_claim(&mut self, c: crate::claims::listen::Submitted) -> anyhow::Result<()> {
        let mut event = self.enricher.claim_event(&c.peer, c.at, c.record);
        for stage in &mut self.stages {
            stage.apply(&mut event);
        }
        let id = self.emit(event)?;
        self.sink.flush()?;
        if let (Some(ack), Some(id)) = (c.ack, id) {
            let _ = ack.send(id);
        }
        Ok(())
    }

    /// Sequences and writes an event; its record id, unless the sink dropped it.
    fn emit(&mut self, mut event: Event) -> anyhow::Result<Option<String>> {
        self.seq.stamp(&mut event);
        if let Accepted::Dropped(reason) = self.sink.write(&event)? {
            self.dropped
                .add(reason, event.seq, event.time, event.action_name());
            return Ok(None);
        }
        let accepted = self.clock.now();
        match &event.body {
            Body::Gap(_) => self.stats.gaps += 1,
            Body::Activity(_) => {
                self.stats.records += 1;
                let lag = accepted.duration_since(event.time).as_nanos();
                self.stats.latency.record(u64::try_from(lag).unwrap_or(0));
            }
        }
        for o in &mut self.observers {
            o.observe(&event, accepted);
        }
        Ok(Some(crate::trail::record::record_id(&event)))
    }

    /// Writes a gap record for records the sink refused since the last check.
    fn report_dropped(&mut self) -> anyhow::Result<()> {
        for g in self.dropped.take() {
            tracing::error!(
                lost = g.lost,
                reason = %g.reason,
                "spool full: records dropped; gap record written"
            );
            self.emit_gap_now(g)?;
        }
        Ok(())
    }

    /// Writes a gap record now (e.g. for the time the agent was not running).
    pub(crate) fn emit_gap(&mut self, g: Gap) -> anyhow::Result<()> {
        self.emit_gap_now(g)?;
        self.sink.flush()
    }

    fn emit_gap_now(&mut self, g: Gap) -> anyhow::Result<()> {
        self.clock.expire();
        self.stats.lost += g.lost;
        let event = gap_event(Arc::clone(self.enricher.host()), g, time::now());
        self.emit(event).map(|_| ())
    }

    fn check_loss(&mut self) -> anyhow::Result<()> {
        self.report_dropped()?;
        let counters = self.source.counters()?;
        self.stats.kernel = counters;
        for o in &mut self.observers {
            o.kernel(&counters);
        }
        let source = &self.source;
        let drops = || source.drops_by_process();
        for g in self.loss.check(counters, drops, time::now()) {
            tracing::warn!(lost = g.lost, reason = %g.reason, "records lost; gap record written");
            self.emit_gap_now(g)?;
        }
        self.sink.flush()
    }

    fn note_decode_errors(&mut self, bad: usize) -> anyhow::Result<()> {
        if bad == 0 {
            return Ok(());
        }
        tracing::error!(
            count = bad,
            "undecodable kernel records; gap record written"
        );
        let now = time::now();
        self.emit_gap_now(gap(
            bad as u64,
            GapReason::DecodeError,
            Default::default(),
            now,
            now,
        ))
    }
}

/// The next claim, when claims are taken in (never, otherwise).
async fn next_claim(rx: &mut Option<ClaimsIn>) -> Option<crate::claims::listen::Submitted> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A gap event written at `now`.
fn gap_event(host: Arc<Host>, g: Gap, now: Timestamp) -> Event {
    Event {
        time: now,
        host,
        seq: 0,
        stream: Arc::from(""),
        body: Body::Gap(g),
    }
}

#[cfg(test)]
mod tests;
