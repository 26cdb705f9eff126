//! Values that change at run time (policy, agent registry) while records are in flight: each
//! version is kept with the time it took effect, and a record is judged by the version in force
//! when its action happened — not when the pipeline got to it.

use std::sync::{Arc, RwLock};

/// How many versions are kept (records older than the oldest use the oldest).
const KEEP: usize = 4;

#[derive(Debug)]
pub struct Versioned<T> {
    /// (effective from, ns since the epoch; value), oldest first.
    versions: RwLock<Vec<(i128, Arc<T>)>>,
}

impl<T> Versioned<T> {
    pub fn new(value: T) -> Arc<Self> {
        Arc::new(Self {
            versions: RwLock::new(vec![(i128::MIN, Arc::new(value))]),
        })
    }

    /// Makes `value` the version in force from `since_ns` on.
    pub fn replace(&self, value: T, since_ns: i128) {
        let mut v = self.versions.write().unwrap_or_else(|e| e.into_inner());
        v.push((since_ns, Arc::new(value)));
        if v.len() > KEEP {
            v.remove(0);
        }
    }

    /// The version in force at `ns`.
    pub fn at(&self, ns: i128) -> Arc<T> {
        let v = self.versions.read().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .rev()
            .find(|(since, _)| *since <= ns)
            .or_else(|| v.first())
            .map(|(_, t)| Arc::clone(t))
            .expect("at least one version")
    }

    /// The newest version.
    pub fn current(&self) -> Arc<T> {
        self.at(i128::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_judged_by_the_version_in_force_at_their_time() {
        let v = Versioned::new("a");
        v.replace("b", 100);
        v.replace("c", 200);
        assert_eq!(*v.at(50), "a");
        assert_eq!(*v.at(100), "b");
        assert_eq!(*v.at(199), "b");
        assert_eq!(*v.at(500), "c");
        assert_eq!(*v.current(), "c");
        for t in 300..305 {
            v.replace("d", t);
        }
        assert_eq!(*v.at(0), "d", "older than the oldest kept: the oldest kept");
    }
}
