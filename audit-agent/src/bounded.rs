//! A map with a bound and a memory of what is used: [`Generations`]. Caches that grow with what
//! the host does (process images, cgroups) use it, so the daemon's memory does not grow with the
//! host's history. A map whose keys can tell when nothing can look them up any more (an `Arc`
//! only the map holds) also sweeps those out ([`Generations::sweeping`]), so it holds what is
//! live rather than what was recent.

use std::{borrow::Borrow, hash::Hash};

use crate::{FastMap, telemetry::tables::TableStat};

/// A map bounded by two generations of at most `per_generation` entries each. New entries go
/// into the current generation; when it is full, the previous generation is forgotten and the
/// current one becomes the previous. A lookup that finds an entry in the previous generation
/// moves it back into the current one: what is used stays, what was not used for two generations
/// is forgotten (counted as evictions).
pub(crate) struct Generations<K, V> {
    current: FastMap<K, V>,
    previous: FastMap<K, V>,
    per_generation: usize,
    stat: TableStat,
    /// Whether a key can still be looked up (see [`Generations::sweeping`]).
    live: Option<fn(&K) -> bool>,
    /// Entries at which the next sweep runs: twice what the last one kept, so a sweep's cost is
    /// paid for by the insertions since the last one.
    sweep_at: usize,
}

/// Entries before the first sweep (or the generation size, if smaller).
const FIRST_SWEEP: usize = 4096;

/// Room a swept table is made with at once (or the generation size, if smaller). Between sweeps
/// it grows to twice what the last sweep kept, so grown on demand its memory steps up whenever
/// the live set reaches a new high, minutes into a run (measured with 1,000 agents: +1.5 MiB of
/// RSS 230 s in, the lineage table reaching 12,600 entries). Made at this size, it holds what
/// those runs reach without growing; its pages become resident as entries land on them.
const SWEPT_CAPACITY: usize = 16_384;

impl<K: Hash + Eq, V> Generations<K, V> {
    pub(crate) fn new(per_generation: usize, stat: TableStat) -> Self {
        Self {
            current: FastMap::default(),
            previous: FastMap::default(),
            per_generation: per_generation.max(1),
            stat,
            live: None,
            sweep_at: usize::MAX,
        }
    }

    /// Drops entries whose key `live` says nothing can look up any more, before a generation
    /// turns over (which then only happens when more than a generation's worth are live).
    pub(crate) fn sweeping(mut self, live: fn(&K) -> bool) -> Self {
        self.live = Some(live);
        self.sweep_at = self.first_sweep();
        self.current
            .reserve(SWEPT_CAPACITY.min(self.per_generation));
        self
    }

    fn first_sweep(&self) -> usize {
        FIRST_SWEEP.min(self.per_generation)
    }

    /// The value of `k`, kept for two more generations.
    pub(crate) fn get<Q>(&mut self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.current.contains_key(k) {
            return self.current.get(k);
        }
        let (key, value) = self.previous.remove_entry(k)?;
        self.make_room();
        self.current.entry(key).or_insert(value);
        self.current.get(k)
    }

    /// The value of `k` without keeping it longer.
    pub(crate) fn peek<Q>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    pub(crate) fn insert(&mut self, k: K, v: V) {
        self.previous.remove(&k);
        if !self.current.contains_key(&k) {
            self.make_room();
        }
        self.current.insert(k, v);
        self.stat.set_entries(self.len());
    }

    /// Forgets everything (counted as evictions).
    pub(crate) fn clear(&mut self) {
        self.stat.evicted(self.len());
        self.current = FastMap::default();
        self.previous = FastMap::default();
        self.stat.set_entries(0);
    }

    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Before adding to a full current generation: the previous one is forgotten (its memory
    /// returned, not kept as capacity), the current one takes its place.
    fn make_room(&mut self) {
        if let Some(live) = self.live
            && self.len() >= self.sweep_at
        {
            self.sweep(live);
        }
        if self.current.len() < self.per_generation {
            return;
        }
        self.stat.evicted(self.previous.len());
        self.previous = std::mem::take(&mut self.current);
        self.current = FastMap::default();
        self.stat.set_entries(self.len());
    }

    /// Drops the entries nothing can look up any more (counted as evictions).
    fn sweep(&mut self, live: fn(&K) -> bool) {
        let before = self.len();
        self.current.retain(|k, _| live(k));
        self.previous.retain(|k, _| live(k));
        self.stat.evicted(before - self.len());
        self.stat.set_entries(self.len());
        self.sweep_at = (2 * self.len()).max(self.first_sweep());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_used_stays_and_what_is_not_is_forgotten_within_two_generations() {
        let stat = TableStat::named("test-generations");
        let before = stat.evictions();
        let mut g = Generations::new(2, stat.clone());
        g.insert("a", 1);
        g.insert("b", 2);
        g.insert("c", 3); // a, b become the previous generation
        assert_eq!(g.len(), 3);
        assert_eq!(g.get("a"), Some(&1), "used: back in the current generation");
        g.insert("d", 4); // current (c, a) full: b is forgotten
        assert_eq!(g.peek("b"), None);
        assert_eq!(stat.evictions() - before, 1);
        assert_eq!(g.peek("a"), Some(&1));
        assert_eq!(g.peek("c"), Some(&3));
        assert_eq!(g.peek("d"), Some(&4));
        assert!(g.len() <= 4, "never more than two generations");
        g.clear();
        assert_eq!(g.len(), 0);
    }

    /// A key is live while someone besides the map holds it.
    fn held_elsewhere(k: &std::sync::Arc<str>) -> bool {
        std::sync::Arc::strong_count(k) > 1
    }

    #[test]
    fn a_sweeping_map_keeps_what_is_held_elsewhere_however_much_comes_and_goes() {
        let stat = TableStat::named("test-sweeping");
        let before = stat.evictions();
        let mut g = Generations::new(8, stat.clone()).sweeping(held_elsewhere);
        let silent: std::sync::Arc<str> = "held, never looked up".into();
        g.insert(std::sync::Arc::clone(&silent), 0);
        for i in 1..1000 {
            let passing: std::sync::Arc<str> = format!("gone once inserted {i}").into();
            g.insert(passing, i);
        }
        assert_eq!(g.peek(&silent), Some(&0), "live: never turned over");
        assert!(
            g.len() <= 8,
            "what nothing holds is swept: {} entries",
            g.len()
        );
        assert!(stat.evictions() - before >= 990);
        drop(silent);
        for i in 0..16 {
            g.insert(format!("more {i}").into(), i);
        }
        assert_eq!(g.peek("held, never looked up"), None, "swept once let go");
    }

    #[test]
    fn a_sweeping_map_turns_over_when_more_than_a_generation_is_live() {
        let mut g =
            Generations::new(4, TableStat::named("test-sweeping-full")).sweeping(held_elsewhere);
        let held: Vec<std::sync::Arc<str>> = (0..12).map(|i| format!("k{i}").into()).collect();
        for (i, k) in held.iter().enumerate() {
            g.insert(std::sync::Arc::clone(k), i);
        }
        assert!(g.len() <= 8, "still bounded by two generations");
        assert_eq!(g.peek(&held[11]), Some(&11));
        assert_eq!(g.peek(&held[0]), None, "the oldest generation went");
    }

    #[test]
    fn a_sweeping_map_is_made_at_its_working_size_and_does_not_grow_as_it_refills() {
        let mut g = Generations::new(LARGE, TableStat::named("test-sweeping-presized"))
            .sweeping(held_elsewhere);
        let made = g.current.capacity();
        assert!(made >= SWEPT_CAPACITY, "{made}");
        // Comes and goes a few times over: swept each time, never grown.
        for i in 0..4 * SWEPT_CAPACITY {
            g.insert(format!("passing {i}").into(), i);
        }
        assert_eq!(g.current.capacity(), made);
    }

    const LARGE: usize = 1 << 20;
}
