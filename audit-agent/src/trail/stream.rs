//! Stream identity: who wrote a part of the trail. A stream is one writer's host, boot and spool;
//! its manifests form one hash chain, its records one sequence, and its record ids share one
//! prefix.

use serde::{Deserialize, Serialize};

/// Identifies a writer's stream: host, boot and spool. One daemon writes one spool (it locks it),
/// so two daemons on one host and boot write two streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamId {
    pub(crate) host: String,
    pub(crate) boot_id: String,
    /// The spool's id: random, made when the spool is first used and kept in its state, so a
    /// restarted daemon continues its stream. Empty in manifests of versions before it (their
    /// stream was host and boot).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) spool: String,
}

/// (How a stream appears in keys, [`StreamId::key_part`], is the layout's: `layout.rs`.)
impl StreamId {
    /// The stream part of the ids of the records this stream holds: one daemon's spool is part
    /// of them, so record ids are unique per daemon.
    pub(crate) fn record_stream(&self) -> String {
        record_stream(&[&self.host, &self.boot_id, &self.spool])
    }
}

/// The stream part of record ids (`<stream>-<seq>`), from what makes a writer unique: a
/// daemon's [`StreamId`] ([`StreamId::record_stream`]), or a trace's or watch's host, boot and
/// start.
pub(crate) fn record_stream(parts: &[&str]) -> String {
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
    fn record_streams_are_stable() {
        assert_eq!(record_stream(&["a", "b"]), record_stream(&["a", "b"]));
        assert_ne!(record_stream(&["a", "b"]), record_stream(&["ab", ""]));
        assert_eq!(record_stream(&[]).len(), 16);
    }
}
