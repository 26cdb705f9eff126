//! The pipeline without a kernel: recorded kernel events in, events out; loss, refusal, decode
//! errors and shutdown drain each become what the trail promises.

use std::sync::{Arc, Mutex};

use audit_common::event::{EventKind, flags};

use super::{source::recorded::Recorded, *};
use crate::{
    capture::cgroup::Cgroup2,
    decode::sample::open,
    enrich::host::HostInfo,
    event::{Action, Outcome},
};

/// A sink that keeps what it accepts, refusing activities while `refuse` is set.
#[derive(Clone, Default)]
struct Collect {
    events: Arc<Mutex<Vec<Event>>>,
    refuse: Arc<Mutex<bool>>,
}

impl Sink for Collect {
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted> {
        if *self.refuse.lock().unwrap() && e.gap().is_none() {
            return Ok(Accepted::Dropped(GapReason::SpoolFull));
        }
        self.events.lock().unwrap().push(e.clone());
        Ok(Accepted::Yes)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn pipeline(src: &Recorded, sink: &Collect) -> Pipeline<Recorded> {
    let host = HostInfo {
        name: "h".into(),
        boot_id: "b".into(),
    };
    let enricher = Enricher::new(
        &host,
        Cgroup2::find().expect("cgroup2 mounted"),
        Duration::from_secs(1),
    );
    Pipeline::builder(
        src.clone(),
        enricher,
        Box::new(sink.clone()),
        Sequencer::new("s".into(), 1),
    )
    .build()
    .unwrap()
}

/// Runs until the script's batches are consumed, then stops (drains).
async fn run(p: Pipeline<Recorded>, src: &Recorded) -> RunStats {
    let src = src.clone();
    p.run(async move {
        while !src.script().batches.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap()
}

fn paths(sink: &Collect) -> Vec<String> {
    sink.events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.activity())
        .map(crate::format::resource_text)
        .collect()
}

#[tokio::test]
async fn events_are_sequenced_in_order_with_their_results() {
    let (src, sink) = (Recorded::default(), Collect::default());
    src.script()
        .batches
        .push_back(Ok(vec![open(1, "/a", 3), open(2, "/b", -2)]));
    let stats = run(pipeline(&src, &sink), &src).await;
    let events = sink.events.lock().unwrap().clone();
    assert_eq!(stats.records, 2);
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    let outcomes: Vec<Outcome> = events
        .iter()
        .map(|e| e.activity().unwrap().outcome)
        .collect();
    assert_eq!(outcomes, [Outcome::Success(3), Outcome::Failure(2)]);
    assert!(events.iter().all(|e| &*e.stream == "s"));
}

#[tokio::test]
async fn kernel_losses_and_decode_errors_become_gap_records() {
    let (src, sink) = (Recorded::default(), Collect::default());
    let p = pipeline(&src, &sink);
    src.script().batches.push_back(Err(2));
    src.script().counters.ringbuf_full[EventKind::Open as usize] = 5;
    let stats = run(p, &src).await;
    let gaps: Vec<Gap> = sink
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.gap().cloned())
        .collect();
    let reasons: Vec<(GapReason, u64)> = gaps.iter().map(|g| (g.reason, g.lost)).collect();
    assert!(
        reasons.contains(&(GapReason::DecodeError, 2)),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(GapReason::RingbufFull, 5)),
        "{reasons:?}"
    );
    assert_eq!(stats.lost, 7);
}

#[tokio::test]
async fn refused_records_are_counted_in_a_spool_full_gap_with_their_seqs() {
    let (src, sink) = (Recorded::default(), Collect::default());
    *sink.refuse.lock().unwrap() = true;
    src.script()
        .batches
        .push_back(Ok(vec![open(1, "/a", 3), open(2, "/b", 3)]));
    let stats = run(pipeline(&src, &sink), &src).await;
    let events = sink.events.lock().unwrap().clone();
    let g = events.iter().find_map(|e| e.gap()).expect("a gap record");
    assert_eq!(
        (g.reason, g.lost, g.seqs),
        (GapReason::SpoolFull, 2, Some((1, 2)))
    );
    assert_eq!(g.by_action[Action::Open.name()], 2);
    assert_eq!(events.len(), 1, "only the gap was accepted");
    assert_eq!(events[0].seq, 3, "the gap follows the refused seqs");
    assert_eq!(stats.lost, 2);
}

#[tokio::test]
async fn syscalls_in_flight_at_shutdown_are_flushed_as_unknown_unless_they_completed() {
    let (src, sink) = (Recorded::default(), Collect::default());
    let mut blocked = open(7, "/fifo", 0);
    blocked.flags = flags::INCOMPLETE;
    let mut completed = open(8, "/done", 0);
    completed.flags = flags::INCOMPLETE;
    src.script().in_flight = vec![blocked, completed];
    // /done completed between reading the slots and the last read: it comes from the ring too.
    src.script().completed_meanwhile = vec![open(8, "/done", 4)];
    src.script().batches.push_back(Ok(vec![open(1, "/a", 3)]));
    let stats = run(pipeline(&src, &sink), &src).await;
    assert!(src.script().paused, "capture is paused before draining");
    assert_eq!(paths(&sink), ["/a", "/done", "/fifo"]);
    let events = sink.events.lock().unwrap().clone();
    let outcome = |p: &str| {
        events
            .iter()
            .filter_map(|e| e.activity())
            .find(|a| crate::format::resource_text(a) == p)
            .unwrap()
            .outcome
    };
    assert_eq!(outcome("/done"), Outcome::Success(4));
    assert_eq!(outcome("/fifo"), Outcome::Unknown);
    assert_eq!(stats.records, 3);
}

#[test]
fn the_accept_clock_is_read_for_a_batch_s_first_record_and_every_sixteenth() {
    let mut clock = super::AcceptClock::default();
    let first = clock.now();
    for _ in 1..super::AcceptClock::EVERY {
        assert_eq!(clock.now(), first, "the same reading for the next fifteen");
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    let seventeenth = clock.now();
    assert!(seventeenth > first, "read again");
    std::thread::sleep(std::time::Duration::from_millis(2));
    clock.expire();
    assert!(clock.now() > seventeenth, "a new batch reads the clock");
}
