//! Kernel state that outlives the daemon: the signals watched processes sent to it
//! (`SIGNALS_TO_AGENT`, audit-ebpf/src/maps.rs). The daemon pins that map in bpffs, one pin per
//! spool, so when a SIGKILL ends a run before it read the record of that SIGKILL, the map — and
//! the record — stay in the kernel, and the next start delivers it. A clean stop removes the pin.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use audit_common::event::{FixedEvent, SignalBody};
use aya::maps::{HashMap, Map, MapData};
use sha2::{Digest as _, Sha256};

use crate::decode::{KernelEvent, decode};

/// Where bpffs is mounted (mounted by the agent when it is not).
pub(super) const BPFFS: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` (statfs `f_type` of bpffs).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

type SignalMap = HashMap<MapData, u64, FixedEvent<SignalBody>>;

/// The signal map, pinned (daemon) or not (watch, trace).
pub(crate) struct SignalPin {
    map: SignalMap,
    pin: Option<PathBuf>,
}

/// Where a daemon with spool `spool` pins its signal map: one pin per spool, so daemons (and
/// tests) with different spools never share one.
pub(crate) fn signal_pin_path(spool: &Path) -> PathBuf {
    let canon = spool.canonicalize().unwrap_or_else(|_| spool.to_path_buf());
    let digest = Sha256::digest(canon.as_os_str().as_encoded_bytes());
    Path::new(BPFFS).join(format!("audit-agent-{}-signals", hex::encode(&digest[..8])))
}

impl SignalPin {
    /// Takes over from a previous run: returns the records it left unread at `pin` (and removes
    /// that pin), then pins `map` there. Without `pin`, or when bpffs cannot be used (said in a
    /// warning), the map lives as long as the agent.
    pub(crate) fn take_over(
        map: Map,
        pin: Option<&Path>,
    ) -> anyhow::Result<(Self, Vec<KernelEvent>)> {
        let (pinned, left) = match pin.map(|p| pin_over(&map, p)).transpose() {
            Ok(found) => found.map_or((None, Vec::new()), |left| (pin, left)),
            Err(e) => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    "a signal that kills the agent will not be on record after its restart"
                );
                (None, Vec::new())
            }
        };
        let map = SignalMap::try_from(map)?;
        let pin = pinned.map(Path::to_path_buf);
        Ok((Self { map, pin }, left))
    }

    /// The records of these signals (by `ktime_ns`) reached the trail: forget them.
    pub(crate) fn delivered(&mut self, ktimes: &[u64]) {
        for k in ktimes {
            let _ = self.map.remove(k);
        }
    }

    /// A clean stop: nothing is left unread, so nothing needs to outlive the agent.
    pub(crate) fn release(&mut self) {
        if let Some(pin) = self.pin.take()
            && let Err(e) = std::fs::remove_file(&pin)
        {
            tracing::warn!(pin = %pin.display(), error = %e, "cannot remove the signal map's pin");
        }
    }
}

/// Reads and removes what a previous run left at `pin`, and pins `map` there.
fn pin_over(map: &Map, pin: &Path) -> anyhow::Result<Vec<KernelEvent>> {
    ensure_bpffs()?;
    let left = left_by_previous_run(pin)?;
    map.pin(pin)
        .with_context(|| format!("cannot pin the signal map at {}", pin.display()))?;
    Ok(left)
}

/// The records a previous run left in its pinned map, oldest first; the pin is removed.
fn left_by_previous_run(pin: &Path) -> anyhow::Result<Vec<KernelEvent>> {
    if !pin.exists() {
        return Ok(Vec::new());
    }
    let data = MapData::from_pin(pin)
        .with_context(|| format!("cannot open the pinned signal map {}", pin.display()))?;
    let old = SignalMap::try_from(Map::from_map_data(data)?)?;
    let mut left: Vec<KernelEvent> = old
        .iter()
        .filter_map(Result::ok)
        .filter_map(|(_, rec)| {
            // SAFETY: a plain-data `repr(C)` record, viewed as its own bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    (&raw const rec).cast::<u8>(),
                    size_of::<FixedEvent<SignalBody>>(),
                )
            };
            decode(bytes).ok()
        })
        .collect();
    left.sort_by_key(|e| e.task.ktime_ns);
    std::fs::remove_file(pin)
        .with_context(|| format!("cannot remove the previous run's pin {}", pin.display()))?;
    if !left.is_empty() {
        tracing::info!(
            records = left.len(),
            "delivering signals to the agent that the previous run did not read"
        );
    }
    Ok(left)
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there.
pub(super) fn ensure_bpffs() -> anyhow::Result<()> {
    let path = std::ffi::CString::new(BPFFS)?;
    let mounted = || {
        // SAFETY: statfs into a zeroed struct, with a valid NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::statfs(path.as_ptr(), &mut st) };
        r == 0 && st.f_type as i64 == BPF_FS_MAGIC
    };
    if mounted() {
        return Ok(());
    }
    let mount = super::tracefs::mount_pseudo_fs("bpf", Path::new(BPFFS));
    // Another process starting beside this one may have mounted it since we looked.
    if mount.is_err() && mounted() {
        return Ok(());
    }
    mount.with_context(|| {
        format!(
            "bpffs is not mounted at {BPFFS} and mounting it failed; mount it (`mount -t bpf bpf \
             {BPFFS}`) or, on Kubernetes, mount the host's {BPFFS} into the pod"
        )
    })
}
