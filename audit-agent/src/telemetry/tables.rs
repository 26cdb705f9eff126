//! The daemon's bounded tables, measured: every map or cache that grows with agents, processes,
//! cgroups or partitions reports its entries (`audit_table_entries{table}`) and the entries it
//! forgot or closed early at its bound (`audit_table_evictions_total{table}`). The tables keep a
//! [`TableStat`] (two atomics) whether or not metrics are served; [`register`] exposes them.

use std::sync::LazyLock;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

#[derive(Default)]
struct Tables {
    entries: Family<TableLabels, Gauge>,
    evictions: Family<TableLabels, Counter>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(Tables::default);

/// One table's entries and evictions (shared with the metric; cheap to update).
#[derive(Debug, Clone, Default)]
pub(crate) struct TableStat {
    entries: Gauge,
    evictions: Counter,
}

impl TableStat {
    /// The stat of table `name` (one per name: tables of the same name share it).
    pub(crate) fn named(name: &'static str) -> Self {
        let labels = TableLabels { table: name };
        Self {
            entries: TABLES.entries.get_or_create(&labels).clone(),
            evictions: TABLES.evictions.get_or_create(&labels).clone(),
        }
    }

    pub(crate) fn set_entries(&self, n: usize) {
        self.entries.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub(crate) fn evicted(&self, n: usize) {
        self.evictions.inc_by(n as u64);
    }

    #[cfg(test)]
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.get()
    }
}

/// Registers the tables' metrics.
pub(crate) fn register(r: &mut Registry) {
    r.register(
        "table_entries",
        "Entries in a bounded table of the daemon (process images, lineage, cgroup paths, open \
         spool partitions, ...), by table",
        TABLES.entries.clone(),
    );
    r.register(
        "table_evictions",
        "Entries a bounded table forgot (or, for open spool partitions, sealed early) at its \
         bound, by table",
        TABLES.evictions.clone(),
    );
}
