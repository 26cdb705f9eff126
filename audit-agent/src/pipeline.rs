//! The pipeline, top to bottom:
//!
//! ```text
//! capture (kernel ring buffer) -> decode -> enrich -> stages (identity, policy) -> sequence -> sink
//! ```
//!
//! Besides moving records, it turns kernel loss counters into explicit `audit.gap` records, and on
//! shutdown stops new capture, drains the ring buffer and flushes in-flight syscalls so nothing
//! the kernel saw is dropped.

use std::{collections::BTreeMap, future::Future, time::Duration};

use audit_common::{counters::Counters, event::EventKind};

use crate::{
    capture::{Capture, WatchSet, cgroup::Cgroup2, plan::WatchPlan},
    decode::KernelEvent,
    enrich::Enricher,
    record::{self, Gap, Record, action},
    sink::{Accepted, Sink},
    timefmt::{now_unix_ns, rfc3339_nanos},
};

/// A record transform between enrichment and the sink (agent identity, policy verdict, ...).
pub trait Stage: Send {
    fn apply(&mut self, rec: &mut Record);
}

/// Observes every finished record (e.g. to build a summary); cannot change it.
pub trait Observer: Send {
    fn observe(&mut self, rec: &Record);
}

/// Stamps records with the per-host sequence number and a unique id.
#[derive(Debug, Clone)]
pub struct Sequencer {
    stream: String,
    next: u64,
}

impl Sequencer {
    /// `stream`: an id for this writer (host, boot and start), `next`: the first seq to assign.
    pub fn new(stream: String, next: u64) -> Self {
        Self { stream, next }
    }

    pub fn stamp(&mut self, rec: &mut Record) {
        rec.seq = self.next;
        rec.id = format!("{}-{}", self.stream, self.next);
        self.next += 1;
    }

    pub fn next_seq(&self) -> u64 {
        self.next
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }
}

/// Derives a stream id from what makes a writer unique.
pub fn stream_id(parts: &[&str]) -> String {
    // FNV-1a, 64 bit: stable across versions and platforms (unlike std's hasher).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Name of a kernel event kind in gap records.
fn kind_name(kind: usize) -> &'static str {
    match kind {
        k if k == EventKind::Exec as usize => action::EXEC,
        k if k == EventKind::Open as usize => action::OPEN,
        k if k == EventKind::Connect as usize => action::CONNECT,
        _ => "process.lifecycle",
    }
}

/// Turns increases of the kernel's loss counters into gap records.
pub struct LossTracker {
    last: Counters,
    since_ns: i128,
}

impl LossTracker {
    pub fn new(initial: Counters, now_ns: i128) -> Self {
        Self {
            last: initial,
            since_ns: now_ns,
        }
    }

    /// Gap records for the losses since the previous check (at most one per reason).
    pub fn check(&mut self, now: Counters, now_ns: i128) -> Vec<Gap> {
        let mut gaps = Vec::new();
        let reasons: [(&str, &[u64], &[u64]); 2] = [
            ("ringbuf_full", &now.ringbuf_full, &self.last.ringbuf_full),
            ("pending_full", &now.pending_full, &self.last.pending_full),
        ];
        for (reason, cur, prev) in reasons {
            let mut by_action = BTreeMap::new();
            let mut lost = 0;
            for (k, (c, p)) in cur.iter().zip(prev).enumerate() {
                let d = c.saturating_sub(*p);
                if d > 0 {
                    *by_action.entry(kind_name(k).to_string()).or_insert(0) += d;
                    lost += d;
                }
            }
            if lost > 0 {
                gaps.push(gap(lost, reason, by_action, self.since_ns, now_ns));
            }
        }
        self.last = now;
        self.since_ns = now_ns;
        gaps
    }

    /// Totals as last seen.
    pub fn totals(&self) -> &Counters {
        &self.last
    }
}

pub fn gap(
    lost: u64,
    reason: &str,
    by_action: BTreeMap<String, u64>,
    from_ns: i128,
    to_ns: i128,
) -> Gap {
    Gap {
        lost,
        reason: reason.into(),
        by_action,
        from: rfc3339_nanos(from_ns),
        to: rfc3339_nanos(to_ns),
        seq_from: None,
        seq_to: None,
    }
}

/// Records the sink refused (spool full), waiting to be reported as one gap record.
#[derive(Debug, Default)]
struct Dropped {
    count: u64,
    seq_from: u64,
    seq_to: u64,
    from_ns: i128,
    to_ns: i128,
    by_action: BTreeMap<String, u64>,
}

/// What a pipeline run did.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub records: u64,
    pub gaps: u64,
    pub lost: u64,
    pub kernel: Counters,
    /// Syscall entry to accepted by the sink (spooled, or written out), per record.
    pub latency: crate::latency::Histogram,
}

impl RunStats {
    /// One log line with what the run did.
    pub fn log(&self, message: &str) {
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

/// Re-resolves cgroup globs against the hierarchy and updates the kernel filter when the result
/// changes (new containers, new agent cgroups).
pub struct WatchRefresher {
    pub plan: WatchPlan,
    pub cgroup2: Cgroup2,
    pub interval: Duration,
    pub last: std::time::Instant,
    pub current: WatchSet,
    /// A new plan from a configuration reload, applied at the next poll.
    pub updates: Option<tokio::sync::watch::Receiver<WatchPlan>>,
    /// Extra globs that change at run time (cgroups of selected Kubernetes pods): returns a
    /// generation and the globs; re-resolved when the generation changes.
    pub dynamic: Option<DynamicGlobs>,
    pub dynamic_generation: u64,
}

/// Returns the current generation and globs of a watch set that changes at run time.
pub type DynamicGlobs = Box<dyn Fn() -> (u64, Vec<String>) + Send>;

impl WatchRefresher {
    /// A new kernel watch set when due and changed.
    fn poll(&mut self) -> Option<WatchSet> {
        let mut forced = false;
        if let Some(rx) = self.updates.as_mut()
            && rx.has_changed().unwrap_or(false)
        {
            self.plan = rx.borrow_and_update().clone();
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
        self.last = std::time::Instant::now();
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

pub struct Pipeline {
    pub capture: Capture,
    pub refresher: Option<WatchRefresher>,
    /// Metrics (None: not collected).
    pub telemetry: Option<std::sync::Arc<crate::telemetry::Telemetry>>,
    /// Per-batch counts of (action, agent, decision), flushed into the metrics after each batch.
    batch_counts: std::collections::HashMap<(String, String, String), u64>,
    pub enricher: Enricher,
    pub stages: Vec<Box<dyn Stage>>,
    pub observers: Vec<Box<dyn Observer>>,
    pub sink: Box<dyn Sink + Send>,
    pub seq: Sequencer,
    loss: LossTracker,
    dropped: Dropped,
    stats: RunStats,
    batch: Vec<KernelEvent>,
}

/// How often kernel counters are checked for loss and the clock offset refreshed.
const TICK: Duration = Duration::from_millis(100);
/// How often the ring buffer is polled: the kernel only wakes the reader when a lot of data is
/// pending (see `WAKEUP_BYTES` in audit-ebpf), so this bounds the delivery latency of a trickle.
const POLL: Duration = Duration::from_millis(10);
/// Records decoded per wake-up before they are processed and flushed.
const BATCH: usize = 4096;

impl Pipeline {
    pub fn new(
        capture: Capture,
        enricher: Enricher,
        sink: Box<dyn Sink + Send>,
        seq: Sequencer,
    ) -> anyhow::Result<Self> {
        let initial = capture.counters()?;
        Ok(Self {
            capture,
            refresher: None,
            telemetry: None,
            batch_counts: std::collections::HashMap::new(),
            enricher,
            stages: Vec::new(),
            observers: Vec::new(),
            sink,
            seq,
            loss: LossTracker::new(initial, now_unix_ns()),
            dropped: Dropped::default(),
            stats: RunStats::default(),
            batch: Vec::with_capacity(BATCH),
        })
    }

    /// Runs until `shutdown` completes, then drains (see module docs).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<RunStats> {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = self.capture.read(&mut self.batch, BATCH) => {
                    let bad = r?;
                    self.note_decode_errors(bad)?;
                    self.process_batch()?;
                }
                _ = poll.tick() => {
                    loop {
                        let (n, bad) = self.capture.read_up_to(&mut self.batch, BATCH);
                        self.note_decode_errors(bad)?;
                        self.process_batch()?;
                        if n < BATCH {
                            break;
                        }
                    }
                }
                _ = tick.tick() => {
                    self.check_loss()?;
                    self.enricher.refresh_clock();
                    self.refresh_watch()?;
                }
            }
        }
        self.drain().await?;
        if let Some(t) = &self.telemetry {
            t.health
                .attached
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(self.stats)
    }

    /// Stop capture, let syscalls in flight finish briefly, drain everything, flush.
    async fn drain(&mut self) -> anyhow::Result<()> {
        self.capture.pause()?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let bad = self.capture.read_now(&mut self.batch);
        self.note_decode_errors(bad)?;
        self.process_batch()?;
        // Syscalls still in flight (blocked connect, slow open): report what is known, marked
        // incomplete. One that completes meanwhile is reported from the ring instead.
        let mut in_flight = self.capture.take_in_flight();
        let bad = self.capture.read_now(&mut self.batch);
        self.note_decode_errors(bad)?;
        in_flight.retain(|p| {
            !self
                .batch
                .iter()
                .any(|e| e.task.tid == p.task.tid && e.task.ktime_ns == p.task.ktime_ns)
        });
        self.batch.extend(in_flight);
        self.process_batch()?;
        self.check_loss()?;
        self.sink.close()
    }

    fn refresh_watch(&mut self) -> anyhow::Result<()> {
        if let Some(set) = self.refresher.as_mut().and_then(WatchRefresher::poll) {
            tracing::info!(
                subtrees = set.subtrees.len(),
                exact = set.exact.len(),
                "cgroup watch set changed; kernel filter updated"
            );
            self.capture.set_watch(&set)?;
        }
        Ok(())
    }

    fn process_batch(&mut self) -> anyhow::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        if let Some(t) = &self.telemetry {
            t.ring_reads.inc_by(batch.len() as u64);
            t.queue_depth.set(batch.len() as i64);
        }
        for ev in batch.iter().cloned() {
            if let Some(mut rec) = self.enricher.enrich(ev) {
                for stage in &mut self.stages {
                    stage.apply(&mut rec);
                }
                self.emit(rec)?;
            }
        }
        self.batch = batch;
        self.batch.clear();
        self.flush_metrics();
        self.sink.flush()
    }

    fn flush_metrics(&mut self) {
        if let Some(t) = &self.telemetry {
            for ((action, agent, decision), n) in self.batch_counts.drain() {
                t.records
                    .get_or_create(&crate::telemetry::RecordLabels {
                        action,
                        agent,
                        decision,
                    })
                    .inc_by(n);
            }
            t.queue_depth.set(0);
        }
    }

    fn emit(&mut self, mut rec: Record) -> anyhow::Result<()> {
        self.seq.stamp(&mut rec);
        if self.sink.write(&rec)? == Accepted::Dropped {
            let d = &mut self.dropped;
            if d.count == 0 {
                d.seq_from = rec.seq;
                d.from_ns = rec.unix_ns;
            }
            d.count += 1;
            d.seq_to = rec.seq;
            d.to_ns = rec.unix_ns;
            *d.by_action.entry(rec.action.clone()).or_insert(0) += 1;
            return Ok(());
        }
        for o in &mut self.observers {
            o.observe(&rec);
        }
        if let Some(g) = &rec.gap {
            self.stats.gaps += 1;
            if let Some(t) = &self.telemetry {
                let l = crate::telemetry::GapLabels {
                    reason: g.reason.clone(),
                };
                t.gap_records.get_or_create(&l).inc();
                t.lost.get_or_create(&l).inc_by(g.lost);
            }
        } else {
            self.stats.records += 1;
            let lag = u64::try_from(now_unix_ns() - rec.unix_ns).unwrap_or(0);
            self.stats.latency.record(lag);
            if let Some(t) = &self.telemetry {
                t.delivery_latency.observe(lag as f64 / 1e9);
                let key = (
                    rec.action.clone(),
                    rec.agent_id().to_string(),
                    rec.policy
                        .as_ref()
                        .map_or_else(String::new, |p| p.decision.to_string()),
                );
                *self.batch_counts.entry(key).or_insert(0) += 1;
            }
        }
        Ok(())
    }

    /// Writes a gap record for records the sink refused since the last check.
    fn report_dropped(&mut self) -> anyhow::Result<()> {
        if self.dropped.count == 0 {
            return Ok(());
        }
        let d = std::mem::take(&mut self.dropped);
        tracing::error!(
            lost = d.count,
            "spool full: records dropped; gap record written"
        );
        self.stats.lost += d.count;
        let mut g = gap(d.count, "spool_full", d.by_action, d.from_ns, d.to_ns);
        g.seq_from = Some(d.seq_from);
        g.seq_to = Some(d.seq_to);
        let rec = self.gap_record(g, now_unix_ns());
        self.emit(rec)
    }

    /// Writes a gap record now (e.g. for the time the agent was not running).
    pub fn emit_gap(&mut self, g: Gap) -> anyhow::Result<()> {
        let rec = self.gap_record(g, now_unix_ns());
        self.emit(rec)?;
        self.sink.flush()
    }

    fn check_loss(&mut self) -> anyhow::Result<()> {
        self.report_dropped()?;
        let now = now_unix_ns();
        let counters = self.capture.counters()?;
        self.stats.kernel = counters;
        if let Some(t) = &self.telemetry {
            t.kernel_counters(&counters);
        }
        for g in self.loss.check(counters, now) {
            tracing::warn!(lost = g.lost, reason = %g.reason, "records lost; gap record written");
            self.stats.lost += g.lost;
            let rec = self.gap_record(g, now);
            self.emit(rec)?;
        }
        self.sink.flush()
    }

    fn note_decode_errors(&mut self, bad: usize) -> anyhow::Result<()> {
        if bad == 0 {
            return Ok(());
        }
        let now = now_unix_ns();
        tracing::error!(
            count = bad,
            "undecodable kernel records; gap record written"
        );
        self.stats.lost += bad as u64;
        let rec = self.gap_record(
            gap(bad as u64, "decode_error", BTreeMap::new(), now, now),
            now,
        );
        self.emit(rec)
    }

    fn gap_record(&self, g: Gap, now: i128) -> Record {
        Record {
            schema: record::SCHEMA.into(),
            id: String::new(),
            seq: 0,
            time: rfc3339_nanos(now),
            host: self.enricher.host().clone(),
            action: action::GAP.into(),
            syscall: None,
            agent: None,
            process: None,
            subject: None,
            resource: None,
            result: None,
            protected: None,
            policy: None,
            gap: Some(g),
            unix_ns: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_become_one_gap_per_reason_with_per_action_counts() {
        let mut t = LossTracker::new(Counters::default(), 0);
        assert!(t.check(Counters::default(), 1).is_empty());
        let mut c = Counters::default();
        c.ringbuf_full[EventKind::Open as usize] = 5;
        c.ringbuf_full[EventKind::Exec as usize] = 2;
        c.pending_full[EventKind::Connect as usize] = 1;
        let gaps = t.check(c, 2_000_000_000);
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps[0].reason, "ringbuf_full");
        assert_eq!(gaps[0].lost, 7);
        assert_eq!(gaps[0].by_action["file.open"], 5);
        assert_eq!(gaps[0].by_action["process.exec"], 2);
        assert_eq!(gaps[0].from, "1970-01-01T00:00:00.000000001Z");
        assert_eq!(gaps[1].reason, "pending_full");
        assert_eq!(gaps[1].by_action["network.connect"], 1);
        // Only the increase is reported next time.
        c.ringbuf_full[EventKind::Open as usize] = 6;
        let gaps = t.check(c, 3);
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].lost, 1);
    }

    #[test]
    fn sequencer_ids_are_stream_and_seq() {
        let mut s = Sequencer::new("abc".into(), 7);
        let mut r: Record = serde_json::from_str(
            r#"{"schema":"audit-agent/v1","id":"","seq":0,"time":"t","host":{"name":"h","boot_id":"b"},"action":"file.open"}"#,
        )
        .unwrap();
        s.stamp(&mut r);
        assert_eq!((r.seq, r.id.as_str()), (7, "abc-7"));
        s.stamp(&mut r);
        assert_eq!(r.seq, 8);
    }

    #[test]
    fn stream_ids_are_stable() {
        assert_eq!(stream_id(&["a", "b"]), stream_id(&["a", "b"]));
        assert_ne!(stream_id(&["a", "b"]), stream_id(&["ab", ""]));
        assert_eq!(stream_id(&[]).len(), 16);
    }
}
