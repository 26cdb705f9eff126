//! Who descends from whom, from the records themselves: every record names its process image
//! and the image that created it (`exec_id`, `parent_exec_id`), every successful exec the image
//! it started (`resource.exec_id`). Reconciliation asks whether a record's process descends
//! from an agent's runtime, or from the command a tool call ran.

use std::sync::Arc;

use crate::event::{Detail, Event};

/// Images (exec ids) and what is known of them.
#[derive(Default)]
pub(crate) struct Lineage {
    parent: crate::FastMap<Arc<str>, Arc<str>>,
    /// The arguments each image was started with (from its exec record).
    argv: crate::FastMap<Arc<str>, Vec<u8>>,
    /// Images that exec'd another program (a fork's copy of its parent before its exec).
    replaced: std::collections::HashSet<Arc<str>>,
}

impl Lineage {
    pub(crate) fn of(events: &[Event]) -> Self {
        let mut l = Self::default();
        for e in events {
            let Some(a) = e.activity() else { continue };
            let p = &a.process;
            if let (Some(id), Some(parent)) = (&p.exec_id, &p.parent_exec_id) {
                l.parent
                    .entry(Arc::clone(id))
                    .or_insert_with(|| Arc::clone(parent));
            }
            if let (
                Detail::Exec {
                    new_exec_id: Some(child),
                    argv,
                    ..
                },
                Some(id),
            ) = (&a.resource.detail, &p.exec_id)
            {
                l.parent.insert(Arc::clone(child), Arc::clone(id));
                l.replaced.insert(Arc::clone(id));
                let joined = argv
                    .iter()
                    .flatten()
                    .flat_map(|x| x.iter().copied().chain([b' ']));
                l.argv.insert(Arc::clone(child), joined.collect());
            }
        }
        l
    }

    /// Whether `image` is `ancestor` or descends from it.
    pub(crate) fn descends(&self, image: &str, ancestor: &str) -> bool {
        let mut cur = image;
        for _ in 0..256 {
            if cur == ancestor {
                return true;
            }
            match self.parent.get(cur) {
                Some(p) => cur = p,
                None => return false,
            }
        }
        false
    }

    /// The arguments `image` was started with, space-joined (empty when its exec is not on
    /// record).
    pub(crate) fn argv(&self, image: &str) -> &[u8] {
        self.argv.get(image).map_or(&[], Vec::as_slice)
    }

    /// The image a hook submitter's claims speak for: the first ancestor that is a program of
    /// its own, above images that only led to the hook: a fork's copy of its parent that then
    /// exec'd, and any process that wraps the hook (`sh -c 'audit-agent claim'`: started with
    /// arguments naming the claim command).
    pub(crate) fn runtime_of(&self, submitter: &str) -> Option<Arc<str>> {
        let mut cur = self.parent.get(submitter)?;
        for _ in 0..16 {
            let argv = self.argv(cur);
            let passes = self.replaced.contains(cur) || contains(argv, b"audit-agent claim");
            match (passes, self.parent.get(cur)) {
                (true, Some(p)) => cur = p,
                _ => break,
            }
        }
        Some(Arc::clone(cur))
    }
}

/// Whether `needle` occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
