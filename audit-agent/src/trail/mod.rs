//! The stored trail: what a reader of the store may rely on, in one place. The writer
//! (`export/`) and every reader (`verify`, `query`, `report`) go through it; it depends on
//! neither.
//!
//! In brief (the full account is `docs/storage.md`):
//!
//! - **Keys** ([`layout`]): records objects under
//!   `<format>/agent_id=<agent>/dt=YYYY-MM-DD/hour=HH/<stream>-<first seq>.ndjson.gz`, one per
//!   sealed segment of one agent and hour, in every rendering (`v1` native, `ocsf`, `ecs`; `ext/`
//!   Security Lake Parquet); manifests under `v1/_manifests/<stream>/<sequence>.json`.
//! - **Streams** ([`stream`]): one writer's host, boot and spool; its manifests form
//!   one hash chain and its records carry one sequence.
//! - **Manifests** ([`manifest`]): per sealed batch, every object's SHA-256 of the stored bytes,
//!   seq and time range and record count, the previous manifest's hash, optionally an Ed25519
//!   signature over the exact body bytes.
//! - **Objects** ([`object`]): gzip NDJSON, one native record per line, read with bounds on the
//!   stored size, the inflated size and the line length, so a hostile object cannot exhaust memory.
//! - **Stores** ([`store`]): S3-compatible or a directory, behind one client.
//! - **Records** ([`record`]): the native record (`audit-agent/v1`), one JSON line per event, with
//!   its one writer and its one reader (back into the typed `Event`); `record/golden/` pins its
//!   bytes and every rendering's for a fixed corpus.

pub(crate) mod layout;
pub(crate) mod manifest;
pub(crate) mod object;
pub(crate) mod record;
pub(crate) mod store;
pub(crate) mod stream;
