//! cgroup v2: finding its mount, turning paths into ids (the directory's inode number, which is
//! what `bpf_get_current_cgroup_id` returns) and ids back into paths.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum CgroupError {
    #[error(
        "no cgroup v2 hierarchy is mounted (none in /proc/self/mountinfo); audit-agent attributes \
         activity by cgroup v2 and needs it mounted (e.g. `mount -t cgroup2 none /sys/fs/cgroup`)"
    )]
    NoCgroup2,
    #[error("cannot read /proc/self/mountinfo: {0}")]
    MountInfo(std::io::Error),
    #[error(
        "cgroup `{path}` does not exist under the cgroup v2 mount {mount}; paths are relative \
         to the cgroup2 mount, e.g. `/agents/support`"
    )]
    NoSuchCgroup {
        path: String,
        mount: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup `{0}` is not a directory under the cgroup v2 mount")]
    NotACgroup(String),
}

/// The cgroup v2 hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct Cgroup2 {
    mount: PathBuf,
}

/// A cgroup directory resolved to its id and level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    /// Path relative to the mount, starting with `/` (`/` is the root).
    pub(crate) path: String,
    pub(crate) id: u64,
    /// Depth below the root (root = 0), as used by `bpf_get_current_ancestor_cgroup_id`.
    pub(crate) level: u32,
}

impl Cgroup2 {
    /// A hierarchy mounted at `mount` (tests: a plain directory tree stands in for it).
    #[cfg(test)]
    pub(crate) fn at(mount: PathBuf) -> Self {
        Self { mount }
    }

    /// Finds the cgroup2 mount from `/proc/self/mountinfo` (never assumed to be `/sys/fs/cgroup`).
    pub(crate) fn find() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::MountInfo)?;
        Self::from_mountinfo(&text).ok_or(CgroupError::NoCgroup2)
    }

    fn from_mountinfo(text: &str) -> Option<Self> {
        let mut found = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            if right.split_whitespace().next() != Some("cgroup2") {
                continue;
            }
            let fields: Vec<&str> = left.split_whitespace().collect();
            let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
                continue;
            };
            let mount = PathBuf::from(unescape_mountinfo(mount));
            // Prefer a mount of the hierarchy's root over a bind mount of a subtree.
            if *root == "/" {
                return Some(Self { mount });
            }
            found.get_or_insert(Self { mount });
        }
        found
    }

    pub(crate) fn mount(&self) -> &std::path::Path {
        &self.mount
    }

    /// Absolute filesystem path of a cgroup path relative to the mount.
    pub(crate) fn fs_path(&self, rel: &str) -> PathBuf {
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() {
            self.mount.clone()
        } else {
            self.mount.join(rel)
        }
    }

    /// Resolves `rel` (e.g. `/agents/support`) to its id and level.
    pub(crate) fn resolve(&self, rel: &str) -> Result<CgroupDir, CgroupError> {
        let fs = self.fs_path(rel);
        let meta = std::fs::metadata(&fs).map_err(|source| CgroupError::NoSuchCgroup {
            path: rel.to_string(),
            mount: self.mount.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(CgroupError::NotACgroup(rel.to_string()));
        }
        let path = normalize(rel);
        Ok(CgroupDir {
            level: level_of(&path),
            path,
            id: meta.ino(),
        })
    }

    /// Every cgroup in the hierarchy (depth-first), with ids: one directory read per cgroup
    /// (ids are the entries' inode numbers, no lookup per cgroup).
    pub(crate) fn walk(&self) -> Vec<CgroupDir> {
        let Ok(root) = self.resolve("/") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let children = self.children(&dir.path);
            out.push(dir);
            stack.extend(children);
        }
        out
    }

    /// The cgroups directly below `rel`, from one read of its directory (kernfs gives each
    /// entry the inode number `stat` would).
    fn children(&self, rel: &str) -> Vec<CgroupDir> {
        let Ok(entries) = std::fs::read_dir(self.fs_path(rel)) else {
            return Vec::new();
        };
        let parent = normalize(rel);
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| {
                let name = e.file_name();
                let path = match parent.as_str() {
                    "/" => format!("/{}", name.to_string_lossy()),
                    p => format!("{p}/{}", name.to_string_lossy()),
                };
                CgroupDir {
                    level: level_of(&path),
                    path,
                    id: std::os::unix::fs::DirEntryExt::ino(&e),
                }
            })
            .collect()
    }

    /// Resolves many paths at once, the existing ones (a rescan): paths are looked up in one
    /// read of each parent directory instead of one path lookup each, so rescanning a thousand
    /// agents' cgroups under one parent is one directory read. Paths with `.` or `..`
    /// components are resolved one by one.
    pub(crate) fn resolve_existing<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
    ) -> Vec<CgroupDir> {
        let mut listed: HashMap<String, HashMap<String, CgroupDir>> = HashMap::new();
        let mut out = Vec::new();
        for rel in paths {
            let path = normalize(rel);
            let (parent, _) = path.rsplit_once('/').unwrap_or_default();
            if path == "/" || path.split('/').any(|c| c == "." || c == "..") {
                out.extend(self.resolve(rel).ok());
                continue;
            }
            let parent = if parent.is_empty() { "/" } else { parent };
            let children = listed.entry(parent.to_string()).or_insert_with(|| {
                let children = self.children(parent).into_iter();
                children.map(|c| (c.path.clone(), c)).collect()
            });
            out.extend(children.get(&path).cloned());
        }
        out
    }
}

/// `/a//b/` -> `/a/b`; `` -> `/`.
pub(crate) fn normalize(rel: &str) -> String {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

fn level_of(path: &str) -> u32 {
    path.split('/').filter(|p| !p.is_empty()).count() as u32
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    String::from_utf8_lossy(&unescape_mountinfo_bytes(s.as_bytes())).into_owned()
}

/// [`unescape_mountinfo`] for paths that need not be UTF-8.
pub(crate) fn unescape_mountinfo_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Resolves cgroup ids to paths, caching the answers. The first sighting of an unknown id always
/// rescans the hierarchy (a new cgroup's first record must name it: its path is what container
/// and pod identity are read from); an id that was looked up and not found is tried again at most
/// once per `rescan_interval`, so a burst of records from a vanished cgroup costs one walk.
pub(crate) struct CgroupPaths {
    cgroup2: Cgroup2,
    cache: crate::FastMap<u64, std::sync::Arc<str>>,
    /// Ids a walk did not find, and when.
    misses: crate::FastMap<u64, Instant>,
    rescan_interval: Duration,
    stat: crate::telemetry::tables::TableStat,
}

/// Misses remembered (beyond: forgotten, so each costs one more walk).
const MAX_MISSES: usize = 4096;
/// Paths remembered; beyond, those of cgroups gone from the hierarchy are forgotten at the next
/// walk (a cgroup removed while its records are in flight keeps its path until then).
const MAX_PATHS: usize = 16_384;

impl CgroupPaths {
    pub(crate) fn new(cgroup2: Cgroup2) -> Self {
        Self {
            cgroup2,
            cache: crate::FastMap::default(),
            misses: crate::FastMap::default(),
            rescan_interval: Duration::from_millis(100),
            stat: crate::telemetry::tables::TableStat::named("cgroup_paths"),
        }
    }

    pub(crate) fn path(&mut self, id: u64) -> Option<std::sync::Arc<str>> {
        if let Some(p) = self.cache.get(&id) {
            return Some(p.clone());
        }
        let due = self
            .misses
            .get(&id)
            .is_none_or(|t| t.elapsed() >= self.rescan_interval);
        if due {
            let dirs = self.cgroup2.walk();
            if self.cache.len() + dirs.len() > MAX_PATHS {
                let live: crate::FastMap<u64, ()> = dirs.iter().map(|d| (d.id, ())).collect();
                let before = self.cache.len();
                self.cache.retain(|id, _| live.contains_key(id));
                self.stat.evicted(before - self.cache.len());
            }
            for dir in dirs {
                self.cache.insert(dir.id, dir.path.into());
            }
            self.stat.set_entries(self.cache.len());
            if self.misses.len() >= MAX_MISSES {
                self.misses.clear();
            }
            match self.cache.get(&id) {
                Some(_) => self.misses.remove(&id),
                None => self.misses.insert(id, Instant::now()),
            };
        }
        self.cache.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_rescan_resolves_many_paths_as_one_lookup_each_would() {
        let root = std::env::temp_dir().join(format!("audit-cg-{}", std::process::id()));
        for d in ["agents/a", "agents/b", "agents/b/inner", "other"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("agents/cgroup.procs"), "").unwrap();
        let cg = Cgroup2 {
            mount: root.clone(),
        };
        let paths = [
            "/agents/a",
            "/agents//b/",
            "/agents/b/inner",
            "/agents/missing",
            "/agents/cgroup.procs",
            "/other/../agents/a",
            "/",
        ];
        let one_by_one: Vec<CgroupDir> = paths.iter().filter_map(|p| cg.resolve(p).ok()).collect();
        assert_eq!(cg.resolve_existing(paths), one_by_one);
        assert_eq!(one_by_one.len(), 5, "{one_by_one:?}");
        let walked = cg.walk();
        for d in &walked {
            assert_eq!(cg.resolve(&d.path).unwrap(), *d);
        }
        let mut walked: Vec<String> = walked.into_iter().map(|d| d.path).collect();
        walked.sort();
        assert_eq!(
            walked,
            [
                "/",
                "/agents",
                "/agents/a",
                "/agents/b",
                "/agents/b/inner",
                "/other"
            ]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn cgroup2_mount_is_found_in_hybrid_layouts() {
        let mi = "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                  31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                  32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(
            Cgroup2::from_mountinfo(mi).unwrap().mount(),
            Path::new("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn root_mount_is_preferred_over_a_bind_mounted_subtree() {
        let mi = "40 24 0:26 /kubepods/pod1 /host/cg rw - cgroup2 cgroup2 rw\n\
                  41 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            Cgroup2::from_mountinfo(mi).unwrap().mount(),
            Path::new("/sys/fs/cgroup")
        );
    }

    #[test]
    fn no_cgroup2_is_none() {
        assert!(Cgroup2::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n").is_none());
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b"), "/mnt/a b");
    }

    #[test]
    fn paths_are_normalized_and_levels_counted() {
        assert_eq!(normalize("agents//support/"), "/agents/support");
        assert_eq!(normalize(""), "/");
        assert_eq!(level_of("/"), 0);
        assert_eq!(level_of("/agents/support"), 2);
    }
}
