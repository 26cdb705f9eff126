//! Sequence numbers and record ids (the stream part comes from `trail::stream`).

use std::sync::Arc;

use crate::event::Event;

/// Stamps events with the writer's sequence number and stream (the record id is
/// `<stream>-<seq>`).
#[derive(Debug, Clone)]
pub(crate) struct Sequencer {
    stream: Arc<str>,
    next: u64,
}

impl Sequencer {
    /// `stream`: an id for this writer (host, boot and start), `next`: the first seq to assign.
    pub(crate) fn new(stream: String, next: u64) -> Self {
        Self {
            stream: Arc::from(stream),
            next,
        }
    }

    pub(crate) fn stamp(&mut self, e: &mut Event) {
        e.seq = self.next;
        e.stream = Arc::clone(&self.stream);
        self.next += 1;
    }
}
