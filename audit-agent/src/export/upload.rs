//! Uploading sealed batches: objects first, then their manifest, each retried with exponential
//! backoff and jitter and no limit on attempts. A local file is deleted only after the store
//! confirmed it, so a crash at any point re-uploads the same key with the same bytes.
//!
//! Every write is create-only (`Store::put_new`): a key that already holds the same bytes is
//! delivered (that re-upload), one that holds other bytes is a conflict — another writer used the
//! key. A conflict is never overwritten and never retried: it is logged with the key, counted
//! (`audit_upload_conflicts_total`), and the local file moves to `spool_dir/conflicts/` (named by its
//! key, percent-encoded), where it stays for the operator. The rest of the batch, its manifest
//! included, is uploaded, so the chain goes on and `verify` names the key.

use std::{
    fs,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::{StreamExt as _, stream};
use tokio::sync::{Notify, watch};

use super::{ExportStats, spool_dir::SpoolDirs};
use crate::time;
use crate::trail::{
    layout::{self, manifest_key},
    manifest,
    store::{PutError, Store},
};

/// Concurrent object uploads within one batch.
const CONCURRENCY: usize = 4;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// While backing off, the store is probed this often: uploads resume within about this long
/// after it answers again, not at the next (up to 30 s) backoff step.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// `base * 2^attempt`, capped, times a random factor in [0.5, 1.5).
pub(crate) fn backoff(attempt: u32, rand01: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    exp.min(BACKOFF_MAX).mul_f64(0.5 + rand01)
}

fn rand01() -> f64 {
    // Jitter only needs to decorrelate agents: the clock's low bits are enough.
    let ns = time::now().subsec_nanosecond() as u32;
    f64::from((ns ^ (ns >> 7)) % 10_000) / 10_000.0
}

fn now_s() -> i64 {
    time::now().as_second()
}

/// When to stop uploading: `None` = keep going; `Some(deadline)` = finish what is there, give
/// up at the deadline (leftovers stay in the spool for the next start).
pub(crate) type StopSignal = watch::Receiver<Option<Instant>>;

pub(crate) struct Uploader {
    pub(crate) store: Store,
    pub(crate) dirs: SpoolDirs,
    pub(crate) stats: Arc<ExportStats>,
    pub(crate) wake: Arc<Notify>,
}

impl Uploader {
    /// Runs until stopped; returns whether everything was uploaded.
    pub(crate) async fn run(self, mut stop: StopSignal) -> bool {
        let mut attempt = 0u32;
        loop {
            let manifests = self.dirs.manifests().unwrap_or_default();
            self.update_oldest(&manifests);
            self.stats.pending_batches.set(manifests.len() as i64);
            let deadline = *stop.borrow();
            if manifests.is_empty() {
                if deadline.is_some() {
                    return true;
                }
                self.idle_checks().await;
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = stop.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut failed = false;
            for m in &manifests {
                match self.upload_batch(m).await {
                    Ok(()) => attempt = 0,
                    Err(e) => {
                        self.stats.uploads_failed.inc();
                        self.stats.store_failed(&e);
                        tracing::warn!(error = %format!("{e:#}"), attempt, "upload failed; will retry");
                        failed = true;
                        break;
                    }
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
            }
            if failed {
                let wait = backoff(attempt, rand01());
                attempt = attempt.saturating_add(1);
                let until = deadline.map_or(wait, |d| {
                    wait.min(d.saturating_duration_since(Instant::now()))
                });
                self.back_off(until, &mut stop).await;
                if stop.borrow().is_some_and(|d| Instant::now() >= d) {
                    return false;
                }
            }
        }
    }

    /// Waits up to `until` before the next attempt, probing the store every [`PROBE_EVERY`]:
    /// returns early when it answers again (or on a stop signal).
    async fn back_off(&self, until: Duration, stop: &mut StopSignal) {
        let end = Instant::now() + until;
        loop {
            let step = end
                .saturating_duration_since(Instant::now())
                .min(PROBE_EVERY);
            if step.is_zero() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(step) => {}
                _ = stop.changed() => return,
            }
            if Instant::now() < end {
                match self.store.check().await {
                    Ok(()) => {
                        self.stats.store_answered(now_s());
                        tracing::info!("the store answers again; uploading now");
                        return;
                    }
                    Err(e) => self.stats.store_failed(&e),
                }
            }
        }
    }

    /// While idle, at most every 15 s: is the store answering, is the spool writable? (For
    /// readiness: an idle agent must not look healthy with a dead store, nor unready with a
    /// healthy one.)
    async fn idle_checks(&self) {
        let now = now_s();
        if now - self.stats.store_ok_unix.load(Ordering::Relaxed) < 15 {
            return;
        }
        match self.store.check().await {
            Ok(()) => self.stats.store_answered(now),
            Err(e) => self.stats.store_failed(&e),
        }
        let probe = self.dirs.root.join(".write-test");
        let ok = super::spool_dir::write_private(&probe, b"ok").is_ok()
            && fs::remove_file(&probe).is_ok();
        self.stats.spool_writable.store(ok, Ordering::Relaxed);
    }

    fn update_oldest(&self, manifests: &[std::path::PathBuf]) {
        let age = manifests
            .first()
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| manifest::decode(&b).ok())
            .map_or(0, |m| (now_s() - m.body.created.as_second()).max(0));
        self.stats.oldest_unsent_age.set(age);
    }

    /// Uploads the local file `local` to `key`, create-only, and removes it once the store has
    /// it; a conflict moves it to `conflicts/`.
    async fn upload_file(&self, key: &str, local: &Path, bytes: Vec<u8>) -> anyhow::Result<()> {
        let started = Instant::now();
        let len = bytes.len() as u64;
        match self.store.put_new(key, bytes).await {
            Ok(_) => {
                let st = &self.stats;
                st.uploads_ok.inc();
                st.upload_latency.observe(started.elapsed().as_secs_f64());
                st.last_upload_unix.set(now_s());
                // A confirmed upload is contact with the store (readiness).
                st.store_answered(now_s());
                self.dirs.discard(local)?;
            }
            Err(PutError::Conflict(why)) => {
                // The store answered (it refused to overwrite).
                self.stats.store_answered(now_s());
                let kept = self.dirs.conflicts.join(layout::encode(key));
                fs::rename(local, &kept)?;
                super::spool_dir::sync_dir(&self.dirs.conflicts)?;
                let e = anyhow::anyhow!("{why}; ours is kept in {}", kept.display());
                tracing::error!(error = %format!("{e:#}"), "upload conflict");
                self.stats.upload_conflicts.inc();
                // Shown as the last error; the store itself is healthy (readiness holds).
                *self
                    .stats
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
            }
            Err(PutError::Store(e)) => return Err(e),
        }
        self.stats.sub_spool_bytes(len);
        Ok(())
    }

    async fn upload_object(&self, o: manifest::ObjectEntry) -> anyhow::Result<()> {
        let Some(local) = self.dirs.sealed_object(&o) else {
            return Ok(());
        };
        let Ok(gz) = fs::read(&local) else {
            return Ok(()); // uploaded (and deleted) by an earlier attempt
        };
        self.upload_file(&o.key, &local, gz).await
    }

    async fn upload_batch(&self, manifest_path: &Path) -> anyhow::Result<()> {
        let bytes = fs::read(manifest_path)?;
        let parsed = manifest::decode(&bytes)?;
        let body = parsed.body;
        let results: Vec<anyhow::Result<()>> = stream::iter(body.objects.clone())
            .map(|o| self.upload_object(o))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let key = manifest_key(&body.stream, body.sequence);
        self.upload_file(&key, manifest_path, bytes).await?;
        self.stats.batches_uploaded.inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_a_cap() {
        assert_eq!(backoff(0, 0.5), Duration::from_millis(200));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(1600));
        assert_eq!(backoff(30, 0.5), BACKOFF_MAX);
        assert_eq!(backoff(0, 0.0), Duration::from_millis(100));
        assert!(backoff(0, 0.999) < Duration::from_millis(300));
    }
}
