//! Per-CPU counters the kernel keeps so that loss is never silent. User space sums them across
//! CPUs and turns increases of the loss counters into gap records.

use crate::event::EventKind;

const K: usize = EventKind::SLOTS;

/// The single entry of the `COUNTERS` per-CPU array. Indexed by [`EventKind`] value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Records written to the ring buffer.
    pub emitted: [u64; K],
    /// Records lost because the ring buffer was full.
    pub ringbuf_full: [u64; K],
    /// Actions of watched threads not tracked because the pending map was full.
    pub pending_full: [u64; K],
    /// Paths cut at `PATH_MAX`.
    pub path_truncated: u64,
    /// Exec argument vectors cut.
    pub argv_truncated: u64,
    /// Children not added to the follow set because it was full.
    pub follow_full: u64,
    /// Requested paths that could not be read from the process's memory (at entry and exit).
    pub path_fault: u64,
    /// Argument vectors that could not be read.
    pub argv_fault: u64,
    /// Socket addresses that could not be read from the process's memory.
    pub addr_fault: u64,
    /// Kernel path walks that failed (a kernel pointer could not be read).
    pub walk_fault: u64,
    /// Kernel path walks cut (deeper than `WALK_DEPTH` or longer than `PATH_MAX`).
    pub walk_cut: u64,
    /// Non-blocking connects whose outcome cannot be followed (the table was full).
    pub connecting_full: u64,
    /// Sockets of watched processes whose packets cannot be inspected (socket storage could not
    /// be allocated).
    pub socket_storage_full: u64,
}

impl Counters {
    /// Total records lost, all reasons.
    pub fn lost(&self) -> u64 {
        let mut n = 0;
        let mut i = 0;
        while i < K {
            n += self.ringbuf_full[i] + self.pending_full[i];
            i += 1;
        }
        n
    }

    /// Adds `other` into `self` (summing per-CPU values).
    pub fn accumulate(&mut self, other: &Self) {
        for i in 0..K {
            self.emitted[i] += other.emitted[i];
            self.ringbuf_full[i] += other.ringbuf_full[i];
            self.pending_full[i] += other.pending_full[i];
        }
        self.path_truncated += other.path_truncated;
        self.argv_truncated += other.argv_truncated;
        self.follow_full += other.follow_full;
        self.path_fault += other.path_fault;
        self.argv_fault += other.argv_fault;
        self.addr_fault += other.addr_fault;
        self.walk_fault += other.walk_fault;
        self.walk_cut += other.walk_cut;
        self.connecting_full += other.connecting_full;
        self.socket_storage_full += other.socket_storage_full;
    }
}
