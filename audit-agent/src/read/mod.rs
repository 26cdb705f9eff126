//! The readers of the stored trail: `verify` (the chain, signatures and every object against
//! its manifest), `query` (records by agent, resource, action and time window), `report` (the
//! evidence report of one workflow, with its HTML) and `table` (aligned terminal output). They
//! read through `trail/` only: nothing here depends on the writer (`export/`), and nothing in
//! `trail/` or `format/` depends on a reader.

pub(crate) mod query;
pub(crate) mod report;
pub(crate) mod table;
pub(crate) mod verify;
