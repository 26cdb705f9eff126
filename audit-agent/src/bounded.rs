//! A map with a bound and a memory of what is used: [`Generations`]. Caches that grow with what
//! the host does (process images, cgroups) use it, so the daemon's memory does not grow with the
//! host's history.

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
}

impl<K: Hash + Eq, V> Generations<K, V> {
    pub(crate) fn new(per_generation: usize, stat: TableStat) -> Self {
        Self {
            current: FastMap::default(),
            previous: FastMap::default(),
            per_generation: per_generation.max(1),
            stat,
        }
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
        if self.current.len() < self.per_generation {
            return;
        }
        self.stat.evicted(self.previous.len());
        self.previous = std::mem::take(&mut self.current);
        self.current = FastMap::default();
        self.stat.set_entries(self.len());
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
}
