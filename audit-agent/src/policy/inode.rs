//! Protected files by identity: the device and inode of every file a protected set names, so a
//! hardlink, a bind mount, a chroot or a container view of a protected file is recognised although
//! its path is another one.
//!
//! The index is built from the daemon's view of the files at `root` (`/proc/1/root`: the host's
//! root when the daemon runs with the host PID namespace, as the DaemonSet does) and rebuilt every
//! [`REFRESH`] and whenever the policy changes, so a file replaced by rename is found again. Literal
//! paths are looked up directly; globs are expanded by walking from their literal prefix into the
//! directories the glob can match below, at most [`WALK_BUDGET`] directory entries per build (a
//! warning says when the budget cut a build short). Files inside other mount namespaces (a
//! container's own `/etc`) are matched by path only, and so are globs that could only be expanded
//! by walking the whole tree (`/**/.env`) and paths in the kernel's pseudo filesystems (`/proc`,
//! `/sys`: their inodes are made up per lookup).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use audit_common::filter::FileKey;

use super::{Policy, pattern::PathSet};
use crate::event::{FileId, Timestamp};

/// How often the index is rebuilt.
pub(crate) const REFRESH: Duration = Duration::from_secs(5);
/// Directory entries a build may visit expanding globs.
pub(crate) const WALK_BUDGET: usize = 20_000;

/// Device and inode: what makes a file the same file under any path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Identity {
    dev_major: u32,
    dev_minor: u32,
    ino: u64,
}

impl From<&FileId> for Identity {
    fn from(f: &FileId) -> Self {
        Self {
            dev_major: f.dev_major,
            dev_minor: f.dev_minor,
            ino: f.ino,
        }
    }
}

impl Identity {
    fn of(m: &std::fs::Metadata) -> Self {
        let dev = m.dev();
        Self {
            dev_major: libc::major(dev),
            dev_minor: libc::minor(dev),
            ino: m.ino(),
        }
    }
}

/// The identities of protected files as the kernel keys them, handed from the policy stage to the
/// capture: records naming one of them may use the ring buffer's reserve, so a flood of other
/// records cannot push them out.
#[derive(Clone, Default)]
pub(crate) struct Published(Arc<Mutex<Option<Vec<FileKey>>>>);

impl Published {
    fn publish(&self, keys: Vec<FileKey>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }

    /// The newest identities, once per publication.
    pub(crate) fn take(&self) -> Option<Vec<FileKey>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl Identity {
    /// The kernel's key: `sb->s_dev` encoding (major << 20 | minor).
    fn kernel_key(self) -> FileKey {
        FileKey {
            dev: (self.dev_major << 20) | self.dev_minor,
            _pad: 0,
            ino: self.ino,
        }
    }
}

/// Which protected sets name a file, by its identity.
#[derive(Debug, Default)]
pub(crate) struct InodeIndex {
    /// Files named by a set's `files`: set indexes.
    files: crate::FastMap<Identity, Vec<usize>>,
    /// Executables named by a set's `exec`.
    exec: crate::FastMap<Identity, Vec<usize>>,
    /// The walk budget ran out: some globbed files are missing.
    pub(crate) partial: bool,
}

impl InodeIndex {
    /// Looks up every file the policy's protected sets name, as seen under `root`.
    pub(crate) fn build(policy: &Policy, root: &Path) -> Self {
        let mut index = Self::default();
        let mut budget = WALK_BUDGET;
        for (i, set) in policy.sets.iter().enumerate() {
            for id in identities(&set.files, root, &mut budget) {
                index.files.entry(id).or_default().push(i);
            }
            for id in identities(&set.exec, root, &mut budget) {
                index.exec.entry(id).or_default().push(i);
            }
        }
        index.partial = budget == 0;
        index
    }

    /// Every protected identity, as the kernel keys files (sorted, no duplicates).
    fn kernel_keys(&self) -> Vec<FileKey> {
        let mut keys: Vec<FileKey> = self
            .files
            .keys()
            .chain(self.exec.keys())
            .map(|id| id.kernel_key())
            .collect();
        keys.sort_by_key(|k| (k.dev, k.ino));
        keys.dedup();
        keys
    }

    /// The sets whose `files` name this file.
    pub(crate) fn file_sets(&self, id: &FileId) -> &[usize] {
        self.files.get(&id.into()).map_or(&[], Vec::as_slice)
    }

    /// The sets whose `exec` name this executable.
    pub(crate) fn exec_sets(&self, id: &FileId) -> &[usize] {
        self.exec.get(&id.into()).map_or(&[], Vec::as_slice)
    }
}

/// The identities of the files a path set names under `root`.
fn identities(set: &PathSet, root: &Path, budget: &mut usize) -> Vec<Identity> {
    let mut out = Vec::new();
    for pattern in set.patterns().iter().filter(|p| indexed(p)) {
        if super::pattern::has_glob_meta(pattern) {
            let base = literal_prefix(pattern);
            walk(set, pattern, root, &base, &mut out, budget);
        } else if let Ok(m) = std::fs::metadata(under(root, pattern)) {
            out.push(Identity::of(&m));
        }
    }
    out
}

/// Whether a pattern's files are looked up by identity: not a glob that only a walk of the whole
/// tree could expand, nor a path in a pseudo filesystem (matched by path only).
fn indexed(pattern: &str) -> bool {
    let pseudo = ["/proc", "/sys"]
        .iter()
        .any(|fs| pattern == *fs || pattern.starts_with(&format!("{fs}/")));
    let everywhere = super::pattern::has_glob_meta(pattern) && literal_prefix(pattern) == "/";
    !pseudo && !everywhere
}

/// Whether `pattern` can match `dir` (a path the walk reached) or something below it: its
/// components match the pattern's first ones, up to a `**`. Components with alternates or other
/// syntax this does not follow count as matching.
fn may_match_below(pattern: &str, dir: &str) -> bool {
    let mut wanted = pattern.split('/').filter(|c| !c.is_empty());
    for name in dir.split('/').filter(|c| !c.is_empty()) {
        let Some(want) = wanted.next() else {
            return false;
        };
        if want.contains("**") || want.contains(['{', '\\']) {
            return true;
        }
        let one = globset::GlobBuilder::new(want)
            .literal_separator(true)
            .build()
            .map(|g| g.compile_matcher().is_match(name));
        if !one.unwrap_or(true) {
            return false;
        }
    }
    true
}

/// The directory before a pattern's first component with glob syntax.
fn literal_prefix(pattern: &str) -> String {
    let mut base = String::from("/");
    for c in pattern.split('/').filter(|c| !c.is_empty()) {
        if super::pattern::has_glob_meta(c) {
            break;
        }
        if !base.ends_with('/') {
            base.push('/');
        }
        base.push_str(c);
    }
    base
}

/// `path` (absolute) as seen under `root`.
fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Walks `dir` (a path as policy names it) into the directories `pattern` can match below,
/// adding every entry the set matches. Symlinked directories are not followed (a loop, or a way
/// out of the tree); a matching symlink counts as the file it points to.
fn walk(
    set: &PathSet,
    pattern: &str,
    root: &Path,
    dir: &str,
    out: &mut Vec<Identity>,
    budget: &mut usize,
) {
    use std::os::unix::ffi::OsStrExt as _;
    let mut stack = vec![dir.to_string()];
    if set.matches(dir.as_bytes())
        && let Ok(m) = std::fs::metadata(under(root, dir))
    {
        out.push(Identity::of(&m));
    }
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(under(root, &d)) else {
            continue;
        };
        for e in entries.flatten() {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let Ok(name) = std::str::from_utf8(e.file_name().as_bytes()).map(str::to_owned) else {
                continue;
            };
            let path = format!("{}/{name}", d.trim_end_matches('/'));
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if set.matches(path.as_bytes())
                && let Ok(m) = std::fs::metadata(e.path())
            {
                out.push(Identity::of(&m));
            }
            if is_dir && may_match_below(pattern, &path) {
                stack.push(path);
            }
        }
    }
}

/// The index, rebuilt when stale or when the policy changed.
pub(crate) struct Refreshing {
    root: PathBuf,
    index: Arc<InodeIndex>,
    built_for: Option<Arc<str>>,
    /// Event time the index was built at (event time, not a clock read per record: this is
    /// asked for every record).
    built_at: Option<Timestamp>,
    warned: bool,
    /// Where the identities go for the kernel, and what was published last.
    published: Option<(Published, Vec<FileKey>)>,
}

impl Refreshing {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            index: Arc::default(),
            built_for: None,
            built_at: None,
            warned: false,
            published: None,
        }
    }

    /// Publishes every rebuilt index's identities to `to` (when they changed).
    pub(crate) fn publishing(mut self, to: Published) -> Self {
        self.published = Some((to, Vec::new()));
        self
    }

    /// The daemon's view of the host root: `/proc/1/root` when readable, else `/`.
    pub(crate) fn host_root() -> PathBuf {
        let proc1 = PathBuf::from("/proc/1/root");
        if std::fs::read_dir(&proc1).is_ok() {
            proc1
        } else {
            PathBuf::from("/")
        }
    }

    /// The index for `policy` (the newest) at event time `now`, rebuilt if it is [`REFRESH`]
    /// older or newer (the clock was set back), or was built for another version.
    pub(crate) fn get(&mut self, policy: &Policy, now: Timestamp) -> Arc<InodeIndex> {
        let fresh = self.built_for.as_deref() == Some(policy.version().as_ref())
            && self
                .built_at
                .is_some_and(|t| now.duration_since(t).unsigned_abs() < REFRESH);
        if !fresh {
            self.index = Arc::new(InodeIndex::build(policy, &self.root));
            self.built_for = Some(Arc::clone(policy.version()));
            self.built_at = Some(now);
            if let Some((to, last)) = &mut self.published {
                let keys = self.index.kernel_keys();
                if keys != *last {
                    to.publish(keys.clone());
                    *last = keys;
                }
            }
            if self.index.partial && !self.warned {
                self.warned = true;
                tracing::warn!(
                    budget = WALK_BUDGET,
                    "protected-set globs name more files than the inode index visits: files \
                     beyond the budget are matched by path only; narrow the globs"
                );
            }
        }
        Arc::clone(&self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_go_only_where_the_glob_can_match() {
        assert!(may_match_below("/home/*/.ssh/**", "/home/ann"));
        assert!(may_match_below("/home/*/.ssh/**", "/home/ann/.ssh"));
        assert!(may_match_below(
            "/home/*/.ssh/**",
            "/home/ann/.ssh/keys/old"
        ));
        assert!(!may_match_below("/home/*/.ssh/**", "/home/ann/src"));
        assert!(!may_match_below(
            "/home/*/.kube/config",
            "/home/ann/.kube/config/x"
        ));
        assert!(
            may_match_below("/srv/{a,b}/*", "/srv/c"),
            "alternates: walked"
        );
        assert!(may_match_below("/etc/ssh/ssh_host_*_key", "/etc/ssh"));
    }

    #[test]
    fn whole_tree_globs_and_pseudo_filesystems_are_matched_by_path_only() {
        assert!(!indexed("/**/.env"));
        assert!(!indexed("/proc/*/environ"));
        assert!(!indexed("/sys/kernel/**"));
        assert!(indexed("/home/*/.ssh/**"));
        assert!(indexed("/etc/shadow"));
        assert!(indexed("/process/x"));
    }

    #[test]
    fn the_literal_prefix_stops_at_the_first_glob_component() {
        assert_eq!(literal_prefix("/etc/ssh/*_key"), "/etc/ssh");
        assert_eq!(literal_prefix("/home/*/.ssh/**"), "/home");
        assert_eq!(literal_prefix("/**"), "/");
        assert_eq!(literal_prefix("/srv/data/**"), "/srv/data");
    }
}
