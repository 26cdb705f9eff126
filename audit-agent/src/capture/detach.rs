//! Detaching the programs without making the agent wait for it.
//!
//! The last detach from a tracepoint waits for the kernel's RCU grace periods while holding a
//! kernel-wide lock (`event_mutex`, in `perf_trace_destroy`): 40–80 ms per tracepoint on these
//! machines, one after the other however many threads ask, so the ~80 syscall tracepoints took
//! ~6 s — the time `trace`, `watch` and `run` took to stop. The kernel can do that work itself
//! after the agent is gone: a BPF link whose last reference is a bpffs pin is released by a
//! kernel worker when the pin is removed (the pinned inode's release defers the put). So when
//! capture ends, each tracepoint link is pinned, the agent's own descriptor closed (cheap while
//! the pin holds the link), and the pin removed: the kernel detaches the programs in the next
//! seconds, paused (they record nothing), and the agent exits at once.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::programs::{links::FdLink, trace_point::TracePointLink};

use super::pin::{BPFFS, ensure_bpffs};

/// The programs' attachments, owned here rather than by their programs so they can be released
/// as described above when dropped.
#[derive(Default)]
pub(crate) struct Links {
    /// Tracepoint links: released by the kernel in the background.
    tracepoints: Vec<FdLink>,
    /// Tracepoint links of a kernel without BPF perf links (before 5.15): detached here.
    perf_events: Vec<TracePointLink>,
    /// Raw tracepoint and cgroup links: their detach does not wait; detached here.
    other: Vec<Box<dyn Send>>,
}

impl Links {
    pub(super) fn keep(&mut self, link: impl Send + 'static) {
        self.other.push(Box::new(link));
    }

    pub(super) fn keep_tracepoint(&mut self, link: TracePointLink) {
        // aya attaches through a BPF link exactly when the kernel has perf links, and then every
        // tracepoint link converts (a failed conversion would detach it).
        if !aya::features().bpf_perf_link() {
            self.perf_events.push(link);
            return;
        }
        if let Ok(fd) = FdLink::try_from(link) {
            self.tracepoints.push(fd);
        }
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        let tracepoints = std::mem::take(&mut self.tracepoints);
        let n = tracepoints.len();
        if let Err(e) = release_in_background(tracepoints) {
            tracing::debug!(
                error = %format!("{e:#}"),
                links = n,
                "tracepoints detached here (slowly): their release cannot be left to the kernel"
            );
        }
    }
}

/// Name prefix of the bpffs directories links pass through.
const DIR_PREFIX: &str = "audit-agent-detach-";

/// Removes what an agent killed between pinning and unpinning left in bpffs (its links would
/// stay attached for good): directories of processes that no longer exist.
pub(super) fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(BPFFS) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        let pid = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next());
        let Some(pid) = pid else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        for pin in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(pin.path());
        }
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "released the links a killed agent left pinned");
        }
    }
}

/// Pins each link under a fresh bpffs directory, closes the agent's descriptor, removes the
/// pins. Links not pinned are detached when dropped here.
fn release_in_background(links: Vec<FdLink>) -> anyhow::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    ensure_bpffs()?;
    let dir = Path::new(BPFFS).join(format!(
        "{DIR_PREFIX}{}-{}",
        std::process::id(),
        crate::time::now().as_nanosecond()
    ));
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pins: Vec<PathBuf> = Vec::new();
    let mut pinned = Ok(());
    for (i, link) in links.into_iter().enumerate() {
        let pin = dir.join(i.to_string());
        match link.pin(&pin) {
            // Our descriptor goes; the pin keeps the link attached.
            Ok(p) => {
                drop(FdLink::from(p));
                pins.push(pin);
            }
            Err(e) if pinned.is_ok() => pinned = Err(e),
            Err(_) => {}
        }
    }
    for pin in &pins {
        let _ = std::fs::remove_file(pin);
    }
    let _ = std::fs::remove_dir(&dir);
    pinned.with_context(|| format!("cannot pin a link under {}", dir.display()))
}
