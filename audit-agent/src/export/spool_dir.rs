//! The spool directory as it lies on disk (the layout: `spool.rs`): its subdirectories, lock,
//! state and id, the sidecar of a ready segment, and the private, atomic and durable file writes
//! every part of the spool uses. Below the journal, the segments and the writer, which all use it.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::{
    event::Timestamp,
    trail::{
        manifest::{Link, SegmentMeta},
        stream::StreamId,
    },
};

/// Persistent state of a spool.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct State {
    /// The spool's id, part of its streams' names (`StreamId::spool`); empty in spools of
    /// versions before it, until the first start of this one.
    #[serde(default)]
    pub(crate) spool_id: String,
    pub(crate) host: String,
    /// Boot of the current stream.
    pub(crate) boot_id: String,
    /// Next sequence number to assign (records continue it across restarts and reboots).
    pub(crate) next_seq: u64,
    /// Next manifest sequence in the current stream.
    pub(crate) next_manifest: u64,
    /// Last manifest of the current stream.
    pub(crate) head: Option<Link>,
    /// Last manifest of the previous stream (linked from the first manifest of this one).
    pub(crate) previous_stream_head: Option<Link>,
    /// Whether the last run stopped cleanly.
    pub(crate) clean_shutdown: bool,
    /// When the last run stopped, if cleanly.
    #[serde(default, with = "crate::time::wire_opt")]
    pub(crate) stopped_at: Option<Timestamp>,
}

impl State {
    /// The stream the state's chain belongs to.
    pub(crate) fn stream(&self) -> StreamId {
        StreamId {
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            spool: self.spool_id.clone(),
        }
    }
}

/// The directories of a spool.
#[derive(Debug, Clone)]
pub(crate) struct SpoolDirs {
    pub(crate) root: PathBuf,
    pub(crate) journal: PathBuf,
    pub(crate) open: PathBuf,
    pub(crate) ready: PathBuf,
    pub(crate) sealed: PathBuf,
    pub(crate) conflicts: PathBuf,
}

/// Creates the spool's root directory (and its parents), private.
fn create_root(root: &Path) -> anyhow::Result<()> {
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| {
            format!(
                "cannot create {} (set [export] spool_dir to a writable directory; on \
                 Kubernetes a hostPath)",
                parent.display()
            )
        })?;
    }
    private_dir(root)
}

impl SpoolDirs {
    pub(crate) fn create(root: &Path) -> anyhow::Result<Self> {
        let d = Self {
            root: root.to_path_buf(),
            journal: root.join("journal"),
            open: root.join("open"),
            ready: root.join("ready"),
            sealed: root.join("sealed"),
            conflicts: root.join("conflicts"),
        };
        create_root(&d.root)?;
        for p in [&d.journal, &d.open, &d.ready, &d.sealed, &d.conflicts] {
            private_dir(p)?;
        }
        // Probe writability now rather than on the first record.
        let probe = d.root.join(".write-test");
        match write_private(&probe, b"ok") {
            Ok(()) => {}
            // A full disk is not a configuration error: the daemon starts, uploads what the
            // spool holds (freeing it) and counts what it cannot write.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                tracing::error!(spool = %d.root.display(), "the spool's file system is full");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("spool directory {} is not writable", d.root.display())
                });
            }
        }
        let _ = fs::remove_file(probe);
        Ok(d)
    }

    /// A sealed manifest waiting for upload.
    pub(crate) fn manifest_path(&self, sequence: u64) -> PathBuf {
        self.sealed.join(format!("manifest-{sequence:010}.json"))
    }

    /// Sealed manifests waiting for upload, in chain order.
    pub(crate) fn manifests(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.sealed)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("manifest-") && n.ends_with(".json"))
            })
            .collect();
        v.sort();
        Ok(v)
    }

    /// The sealed file of a manifest's object entry, while it waits for upload.
    pub(crate) fn sealed_object(&self, e: &crate::trail::manifest::ObjectEntry) -> Option<PathBuf> {
        crate::trail::layout::spool_file_of(&e.key).map(|f| self.sealed.join(f))
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn alive_path(&self) -> PathBuf {
        self.root.join("alive")
    }

    /// Records that the daemon is alive now (the `alive` file's modification time).
    pub(crate) fn mark_alive(&self) -> std::io::Result<()> {
        private_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.alive_path())?
            .set_modified(std::time::SystemTime::now())
    }

    /// When a previous run was last known alive.
    pub(crate) fn last_alive(&self) -> Option<Timestamp> {
        let t = fs::metadata(self.alive_path()).ok()?.modified().ok()?;
        Timestamp::try_from(t).ok()
    }

    pub(crate) fn load_state(&self) -> anyhow::Result<Option<State>> {
        match fs::read(self.state_path()) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
                format!("spool state {} is corrupt", self.state_path().display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read spool state"),
        }
    }

    pub(crate) fn save_state(&self, s: &State) -> anyhow::Result<()> {
        write_atomic(&self.state_path(), &serde_json::to_vec_pretty(s)?)
    }
}

/// One daemon per spool: the lock on `<spool>/lock` (flock), held while the daemon runs and
/// released by the kernel however it ends. A second daemon on the spool would interleave its
/// records and manifests with the first's under one stream name.
#[derive(Debug)]
pub(crate) struct SpoolLock {
    _file: File,
}

impl SpoolLock {
    /// Creates the spool's root if needed and locks it; refuses a spool another process holds,
    /// naming it and the pid it wrote.
    pub(crate) fn acquire(root: &Path) -> anyhow::Result<Self> {
        create_root(root)?;
        let path = root.join("lock");
        let mut file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the spool lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(String::new, |p| format!(" (pid {p})"));
                anyhow::bail!(
                    "spool {} is in use by another audit-agent{pid}: one daemon per spool (two \
                     would write one stream over each other); stop the other one, or give this \
                     one its own [export] spool_dir",
                    root.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(Self { _file: file })
    }
}

/// A new random id (16 hex digits) for a spool.
pub(crate) fn new_spool_id() -> anyhow::Result<String> {
    let mut b = [0u8; 8];
    crate::trail::manifest::getrandom(&mut b)?;
    Ok(hex::encode(b))
}

/// The spool is private: directories 0700 and files 0600 whatever the umask, and no symlink is
/// ever followed in it. Its directories are checked (real directories, owned by the daemon's
/// user) when the spool opens; after that only that user can add entries, and every file is
/// opened with `O_NOFOLLOW` — new ones with `O_EXCL` after removing whatever had the name, so a
/// planted symlink is replaced, never written through.
fn private_dir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
    match fs::DirBuilder::new().mode(0o700).create(p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot create spool directory {} (set [export] spool_dir to a writable \
                     directory; on Kubernetes a hostPath)",
                    p.display()
                )
            });
        }
    }
    let m = fs::symlink_metadata(p)
        .with_context(|| format!("cannot inspect spool directory {}", p.display()))?;
    if !m.file_type().is_dir() {
        anyhow::bail!(
            "spool directory {} is not a directory (a symlink or file); refusing to use it: \
             remove it or set [export] spool_dir elsewhere",
            p.display()
        );
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me {
        anyhow::bail!(
            "spool directory {} is owned by uid {}, not by this daemon's uid {me}; refusing to \
             use it (another user could read or replace records): chown it or choose another \
             [export] spool_dir",
            p.display(),
            m.uid()
        );
    }
    if m.mode() & 0o777 != 0o700 {
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make spool directory {} private", p.display()))?;
    }
    Ok(())
}

/// Options for every file in the spool: mode 0600, symlinks not followed.
pub(crate) fn private_options() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut o = OpenOptions::new();
    o.mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Creates `path` afresh (whatever had the name, a planted symlink included, is removed first).
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    private_options().write(true).create_new(true).open(path)
}

/// Writes `bytes` to a new private file at `path`.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private(path)?.write_all(bytes)
}

/// Writes `path` atomically and durably: temp file, fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            create_private(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

pub(crate) fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The sidecar of the ready segment at `segment`, if it has a usable one.
pub(crate) fn read_meta(segment: &Path) -> Option<SegmentMeta> {
    let bytes = fs::read(meta_path(segment)).ok()?;
    serde_json::from_slice::<SegmentMeta>(&bytes)
        .ok()
        .filter(|m| m.records > 0)
}

/// The sidecar file of a ready segment.
pub(crate) fn meta_path(segment: &Path) -> PathBuf {
    segment.with_extension("meta")
}
