//! Sequence numbers and record ids.

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

/// Derives a stream id from what makes a writer unique.
pub(crate) fn stream_id(parts: &[&str]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_stable() {
        assert_eq!(stream_id(&["a", "b"]), stream_id(&["a", "b"]));
        assert_ne!(stream_id(&["a", "b"]), stream_id(&["ab", ""]));
        assert_eq!(stream_id(&[]).len(), 16);
    }
}
