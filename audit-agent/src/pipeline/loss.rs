//! Loss accounting: increases of the kernel's loss counters, and records the sink refused, become
//! explicit gap records (how many, why, when, which sequence numbers).

use std::collections::{BTreeMap, HashMap};

use audit_common::{counters::Counters, filter::ProcessDrops};

use crate::{
    decode::kind_name,
    event::{Gap, GapReason, Timestamp},
};

/// A gap record's body.
pub(crate) fn gap(
    lost: u64,
    reason: GapReason,
    by_action: BTreeMap<String, u64>,
    from: Timestamp,
    to: Timestamp,
) -> Gap {
    Gap {
        lost,
        reason,
        by_action,
        from,
        to,
        seqs: None,
        by_process: Vec::new(),
    }
}

/// Most processes a gap record names.
const TOP_PROCESSES: usize = 5;

/// Turns increases of the kernel's loss counters into gaps.
pub(crate) struct LossTracker {
    last: Counters,
    since: Timestamp,
    /// Per-process losses at the previous check.
    last_drops: HashMap<u32, ProcessDrops>,
}

impl LossTracker {
    pub(crate) fn new(initial: Counters, now: Timestamp) -> Self {
        Self {
            last: initial,
            since: now,
            last_drops: HashMap::new(),
        }
    }

    /// The processes that lost the most records since the previous check, for one reason.
    fn top(&self, drops: &[(u32, ProcessDrops)], reason: GapReason) -> Vec<(u32, u64)> {
        let pick = |d: &ProcessDrops| match reason {
            GapReason::PendingFull => d.pending_full,
            _ => d.ringbuf_full,
        };
        let mut v: Vec<(u32, u64)> = drops
            .iter()
            .map(|(pid, d)| {
                let before = self.last_drops.get(pid).map_or(0, pick);
                (*pid, pick(d).saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(TOP_PROCESSES);
        v
    }

    /// Gaps for the losses since the previous check (at most one per reason), naming the
    /// processes that lost the most (`drops`: reads the cumulative losses per process — a walk
    /// of a kernel map, a system call per entry — only called when there were losses: the walk
    /// would otherwise cost most when the daemon is already behind).
    pub(crate) fn check(
        &mut self,
        now: Counters,
        drops: impl FnOnce() -> Vec<(u32, ProcessDrops)>,
        at: Timestamp,
    ) -> Vec<Gap> {
        let lost_any = |cur: &[u64], prev: &[u64]| cur.iter().zip(prev).any(|(c, p)| c > p);
        let drops = if lost_any(&now.ringbuf_full, &self.last.ringbuf_full)
            || lost_any(&now.pending_full, &self.last.pending_full)
        {
            Some(drops())
        } else {
            None
        };
        let drops = drops.as_deref();
        let mut gaps = Vec::new();
        let reasons: [(GapReason, &[u64], &[u64]); 2] = [
            (
                GapReason::RingbufFull,
                &now.ringbuf_full,
                &self.last.ringbuf_full,
            ),
            (
                GapReason::PendingFull,
                &now.pending_full,
                &self.last.pending_full,
            ),
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
                let mut g = gap(lost, reason, by_action, self.since, at);
                g.by_process = self.top(drops.unwrap_or_default(), reason);
                gaps.push(g);
            }
        }
        self.last = now;
        self.since = at;
        // Unread, the kernel's per-process counts have not changed since the last read.
        if let Some(drops) = drops {
            self.last_drops = drops.iter().copied().collect();
        }
        gaps
    }
}

/// Records the sink refused (spool full, disk full), waiting to be reported as one gap per
/// reason.
#[derive(Debug, Default)]
pub(crate) struct Dropped(BTreeMap<GapReason, Refused>);

#[derive(Debug)]
struct Refused {
    count: u64,
    seqs: (u64, u64),
    window: (Timestamp, Timestamp),
    by_action: BTreeMap<String, u64>,
}

impl Dropped {
    /// Counts one refused record.
    pub(crate) fn add(&mut self, reason: GapReason, seq: u64, time: Timestamp, action: &str) {
        let r = self.0.entry(reason).or_insert_with(|| Refused {
            count: 0,
            seqs: (seq, seq),
            window: (time, time),
            by_action: BTreeMap::new(),
        });
        r.count += 1;
        r.seqs.1 = seq;
        r.window = (r.window.0.min(time), r.window.1.max(time));
        *r.by_action.entry(action.to_string()).or_insert(0) += 1;
    }

    /// The gaps for everything counted since the last call.
    pub(crate) fn take(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.0)
            .into_iter()
            .map(|(reason, r)| {
                let mut g = gap(r.count, reason, r.by_action, r.window.0, r.window.1);
                g.seqs = Some(r.seqs);
                g
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use audit_common::event::EventKind;

    use super::*;
    use crate::time::from_nanos;

    #[test]
    fn losses_become_one_gap_per_reason_with_per_action_counts() {
        let mut t = LossTracker::new(Counters::default(), from_nanos(0));
        assert!(
            t.check(Counters::default(), Vec::new, from_nanos(1))
                .is_empty()
        );
        let mut c = Counters::default();
        c.ringbuf_full[EventKind::Open as usize] = 5;
        c.ringbuf_full[EventKind::Exec as usize] = 2;
        c.pending_full[EventKind::Connect as usize] = 1;
        let gaps = t.check(c, Vec::new, from_nanos(2_000_000_000));
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps[0].reason, GapReason::RingbufFull);
        assert_eq!(gaps[0].lost, 7);
        assert_eq!(gaps[0].by_action["file.open"], 5);
        assert_eq!(gaps[0].by_action["process.exec"], 2);
        assert_eq!(gaps[0].from, from_nanos(1));
        assert_eq!(gaps[1].reason, GapReason::PendingFull);
        assert_eq!(gaps[1].by_action["network.connect"], 1);
        // Only the increase is reported next time.
        c.ringbuf_full[EventKind::Open as usize] = 6;
        let gaps = t.check(c, Vec::new, from_nanos(3_000_000_000));
        assert_eq!(gaps.len(), 1);
        assert_eq!(gaps[0].lost, 1);
    }

    #[test]
    fn refused_records_become_one_gap_per_reason_with_their_seq_range() {
        let mut d = Dropped::default();
        assert!(d.take().is_empty());
        d.add(GapReason::SpoolFull, 7, from_nanos(20), "file.open");
        d.add(GapReason::SpoolFull, 9, from_nanos(10), "process.exec");
        d.add(GapReason::DiskFull, 10, from_nanos(30), "file.open");
        let gaps = d.take();
        assert_eq!(gaps.len(), 2);
        let g = &gaps[0];
        assert_eq!((g.lost, g.seqs), (2, Some((7, 9))));
        assert_eq!((g.from, g.to), (from_nanos(10), from_nanos(20)));
        assert_eq!(g.reason, GapReason::SpoolFull);
        assert_eq!((gaps[1].reason, gaps[1].lost), (GapReason::DiskFull, 1));
        assert!(d.take().is_empty(), "taken once");
    }

    #[test]
    fn a_gap_names_the_processes_that_lost_the_most_since_the_last_check() {
        let drops = |flooder: u64, other: u64| {
            vec![
                (
                    7,
                    ProcessDrops {
                        ringbuf_full: flooder,
                        pending_full: 0,
                    },
                ),
                (
                    9,
                    ProcessDrops {
                        ringbuf_full: other,
                        pending_full: 0,
                    },
                ),
            ]
        };
        let mut t = LossTracker::new(Counters::default(), from_nanos(0));
        let mut c = Counters::default();
        c.ringbuf_full[EventKind::Open as usize] = 100;
        let gaps = t.check(c, || drops(90, 10), from_nanos(1));
        assert_eq!(gaps[0].by_process, [(7, 90), (9, 10)]);
        c.ringbuf_full[EventKind::Open as usize] = 105;
        let gaps = t.check(c, || drops(90, 15), from_nanos(2));
        assert_eq!(
            gaps[0].by_process,
            [(9, 5)],
            "only what was lost since the last gap"
        );
        let gaps = t.check(
            c,
            || unreachable!("no loss: per-process counts not read"),
            from_nanos(3),
        );
        assert!(gaps.is_empty());
        c.ringbuf_full[EventKind::Open as usize] = 108;
        let gaps = t.check(c, || drops(93, 15), from_nanos(4));
        assert_eq!(
            gaps[0].by_process,
            [(7, 3)],
            "against the counts read at the last loss"
        );
    }
}
