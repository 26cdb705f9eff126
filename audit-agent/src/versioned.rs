//! Values that change at run time (policy, agent registry) while records are in flight: each
//! version is kept with the time it took effect, and a record is judged by the version in force
//! when its action happened — not when the pipeline got to it.

use std::sync::{Arc, RwLock};

use crate::event::Timestamp;

/// How many versions are kept (records older than the oldest use the oldest).
const KEEP: usize = 4;

#[derive(Debug)]
pub(crate) struct Versioned<T> {
    /// (effective from, value), oldest first.
    versions: RwLock<Vec<(Timestamp, Arc<T>)>>,
}

impl<T> Versioned<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Self {
            versions: RwLock::new(vec![(Timestamp::MIN, Arc::new(value))]),
        })
    }

    /// Makes `value` the version in force from `since` on.
    pub(crate) fn replace(&self, value: T, since: Timestamp) {
        let mut v = self.versions.write().unwrap_or_else(|e| e.into_inner());
        v.push((since, Arc::new(value)));
        if v.len() > KEEP {
            v.remove(0);
        }
    }

    /// The version in force at `t`.
    pub(crate) fn at(&self, t: Timestamp) -> Arc<T> {
        let v = self.versions.read().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .rev()
            .find(|(since, _)| *since <= t)
            .or_else(|| v.first())
            .map(|(_, t)| Arc::clone(t))
            .expect("at least one version")
    }

    /// The newest version.
    pub(crate) fn current(&self) -> Arc<T> {
        self.at(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::time::from_nanos as t;

    #[test]
    fn records_are_judged_by_the_version_in_force_at_their_time() {
        let v = Versioned::new("a");
        v.replace("b", t(100));
        v.replace("c", t(200));
        assert_eq!(*v.at(t(50)), "a");
        assert_eq!(*v.at(t(100)), "b");
        assert_eq!(*v.at(t(199)), "b");
        assert_eq!(*v.at(t(500)), "c");
        assert_eq!(*v.current(), "c");
        for n in 300..305 {
            v.replace("d", t(n));
        }
        assert_eq!(
            *v.at(t(0)),
            "d",
            "older than the oldest kept: the oldest kept"
        );
    }
}
