//! The spool directory as it lies on disk (the layout: `spool.rs`): its subdirectories, lock,
//! state and id, the sidecar of a ready segment, and the private, atomic and durable file writes
//! every part of the spool uses. Below the journal, the segments and the writer, which all use it.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
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
    /// Emptied files, made into new spool files by a rename ([`SpoolDirs::create_file`]).
    spare: PathBuf,
    spares: Arc<Spares>,
}

/// Files of uploaded objects, emptied and kept to become new segment files, manifests and
/// state: creating a file costs ext4 an inode allocation, which on a file system that has seen
/// many deletions (a spool deletes every object it uploads) searches the inode bitmaps for one
/// not recently deleted. With 1,000 agents that search was the sealer's largest cost
/// (`recently_deleted`, `find_inode_bit`); a rename costs none of it.
#[derive(Debug)]
struct Spares {
    files: Mutex<Vec<PathBuf>>,
    named: AtomicU64,
    table: crate::telemetry::tables::TableStat,
}

impl Default for Spares {
    fn default() -> Self {
        Self {
            files: Mutex::default(),
            named: AtomicU64::default(),
            table: crate::telemetry::tables::TableStat::named("spare_files"),
        }
    }
}

/// Spare files kept at most; beyond, uploaded files are deleted.
const MAX_SPARES: usize = 256;

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
            spare: root.join("spare"),
            spares: Arc::default(),
        };
        create_root(&d.root)?;
        for p in [
            &d.journal,
            &d.open,
            &d.ready,
            &d.sealed,
            &d.conflicts,
            &d.spare,
        ] {
            private_dir(p)?;
        }
        // A crash may have left a spare not emptied yet: a previous run's spares are deleted.
        for e in fs::read_dir(&d.spare)?.flatten() {
            fs::remove_file(e.path())?;
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

    /// Writes the state atomically and durably without a new file each time: the new state is
    /// written into `state.tmp` and exchanged with `state.json` (`RENAME_EXCHANGE`), so the
    /// previous state's file becomes the next `state.tmp` (see [`Spares`] for why inodes are
    /// worth keeping). Where the file system cannot exchange, the temp file is renamed over.
    pub(crate) fn save_state(&self, s: &State) -> anyhow::Result<()> {
        let path = self.state_path();
        let tmp = path.with_extension("tmp");
        {
            // The previous state's file, truncated; anything else found there (a planted symlink
            // or fifo) is replaced, never written through.
            let previous =
                fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_file() && m.nlink() == 1);
            let mut f = if previous {
                private_options().write(true).truncate(true).open(&tmp)
            } else {
                create_private(&tmp)
            }
            .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec_pretty(s)?)?;
            f.sync_all()?;
        }
        if !exchange(&tmp, &path)? {
            fs::rename(&tmp, &path)
                .with_context(|| format!("cannot rename to {}", path.display()))?;
        }
        sync_dir(&self.root)
    }

    /// Creates `path` afresh, empty and private, from a spare file when there is one (see
    /// [`Spares`]); whatever had the name is replaced.
    pub(crate) fn create_file(&self, path: &Path) -> std::io::Result<File> {
        let spare = {
            let mut files = self.spares.files.lock().unwrap_or_else(|e| e.into_inner());
            let spare = files.pop();
            self.spares.table.set_entries(files.len());
            spare
        };
        if let Some(spare) = spare
            && fs::rename(&spare, path).is_ok()
        {
            return private_options().write(true).open(path);
        }
        create_private(path)
    }

    /// Done with the file at `path` (uploaded): it becomes a spare, emptied, while there are
    /// fewer than [`MAX_SPARES`] and nothing else links to it; else it is deleted.
    pub(crate) fn discard(&self, path: &Path) -> std::io::Result<()> {
        let mut spares = self.spares.files.lock().unwrap_or_else(|e| e.into_inner());
        if spares.len() >= MAX_SPARES || fs::symlink_metadata(path)?.nlink() != 1 {
            self.spares.table.evicted(1);
            return fs::remove_file(path);
        }
        let n = self.spares.named.fetch_add(1, Ordering::Relaxed);
        let spare = self.spare.join(n.to_string());
        fs::rename(path, &spare)?;
        // Emptied after the rename: a crash in between leaves a spare with bytes (deleted at
        // the next start), never an emptied object still waiting in `sealed/`.
        let f = private_options().write(true).open(&spare)?;
        f.set_len(0)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        spares.push(spare);
        self.spares.table.set_entries(spares.len());
        Ok(())
    }

    /// [`write_atomic`], its temp file from a spare.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        write_atomic_with(path, bytes, |tmp| self.create_file(tmp))
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
    write_atomic_with(path, bytes, create_private)
}

/// [`write_atomic`] with the temp file made by `create`.
fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    create: impl FnOnce(&Path) -> std::io::Result<File>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Exchanges the files at `a` and `b` atomically; `false` when `b` does not exist yet or the file
/// system cannot exchange.
fn exchange(a: &Path, b: &Path) -> anyhow::Result<bool> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOENT | libc::EINVAL | libc::ENOSYS) => Ok(false),
        _ => Err(std::io::Error::last_os_error()).context("cannot exchange the spool state"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> (PathBuf, SpoolDirs) {
        let root = std::env::temp_dir().join(format!("audit-spool-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let dirs = SpoolDirs::create(&root).unwrap();
        (root, dirs)
    }

    #[test]
    fn an_uploaded_file_becomes_the_next_new_file_emptied() {
        let (root, dirs) = scratch("spare");
        let uploaded = dirs.sealed.join("object.gz");
        fs::write(&uploaded, b"records").unwrap();
        let inode = fs::metadata(&uploaded).unwrap().ino();
        dirs.discard(&uploaded).unwrap();
        assert!(!uploaded.exists());

        let segment = dirs.open.join("segment.ndjson.gz");
        dirs.create_file(&segment)
            .unwrap()
            .write_all(b"new")
            .unwrap();
        let meta = fs::metadata(&segment).unwrap();
        assert_eq!(meta.ino(), inode, "made from the spare, not a new inode");
        assert_eq!(fs::read(&segment).unwrap(), b"new");
        assert_eq!(meta.mode() & 0o777, 0o600);
        // No spare left: the next file is created.
        dirs.create_file(&dirs.open.join("other")).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_file_with_another_name_is_deleted_not_reused() {
        let (root, dirs) = scratch("linked");
        let uploaded = dirs.sealed.join("object.gz");
        fs::write(&uploaded, b"records").unwrap();
        let other = dirs.ready.join("segment.ndjson.gz");
        fs::hard_link(&uploaded, &other).unwrap();
        dirs.discard(&uploaded).unwrap();
        assert_eq!(fs::read(&other).unwrap(), b"records");
        assert_eq!(fs::read_dir(&dirs.spare).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_state_is_rewritten_in_the_same_two_files() {
        let (root, dirs) = scratch("state");
        let mut state = State::default();
        let mut inodes = std::collections::BTreeSet::new();
        for seq in 1..5 {
            state.next_seq = seq;
            dirs.save_state(&state).unwrap();
            assert_eq!(dirs.load_state().unwrap().unwrap().next_seq, seq);
            inodes.insert(fs::metadata(dirs.state_path()).unwrap().ino());
        }
        assert_eq!(inodes.len(), 2, "state.json and state.tmp take turns");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn spares_a_crash_left_are_deleted_at_start() {
        let (root, dirs) = scratch("crash");
        fs::write(dirs.spare.join("7"), b"not emptied").unwrap();
        let dirs = SpoolDirs::create(&root).unwrap();
        assert_eq!(fs::read_dir(&dirs.spare).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }
}
