//! The process table: what each watched process is running and where it came from, maintained
//! from the kernel's own fork/exec/exit records (not by re-reading /proc, which races with
//! short-lived processes). Executables come from the kernel too: an exec record names the file
//! it loaded, and the first record of an image the agent has not seen announces `mm->exe_file`
//! (`EXE_SEEN` in audit-ebpf); every record carries its executable's device and inode, checked
//! against what was announced. A process that replaced `mm->exe_file` (`prctl(PR_SET_MM)`) keeps
//! the file its exec loaded: the kernel side announces that one, and flags the records. /proc is only read for the start time of processes that existed
//! before the agent saw them (their exec id).

use std::sync::Arc;

use crate::{event::FileId, telemetry::tables::TableStat};

/// An executable's identity: (device major, device minor, inode).
pub(crate) type ExeKey = (u32, u32, u64);

pub(crate) fn exe_key(id: &FileId) -> ExeKey {
    (id.dev_major, id.dev_minor, id.ino)
}

/// Most executable paths remembered by identity.
const MAX_EXES: usize = 16_384;

/// Most processes tracked at once; beyond this, entries of processes that no longer exist are
/// pruned.
const MAX_PROCESSES: usize = 65_536;

/// One process image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// Executable path (the kernel's: the file the exec loaded), if known.
    pub(crate) exe: Option<Arc<[u8]>>,
    /// What `mm->exe_file` names since the image replaced it (`prctl(PR_SET_MM)`), if it did.
    pub(crate) exe_reported: Option<Arc<[u8]>>,
    pub(crate) exec_id: Arc<str>,
    pub(crate) parent_exec_id: Option<Arc<str>>,
    /// Earlier images, nearest first (see `Process::ancestors`).
    pub(crate) ancestors: Arc<[Arc<str>]>,
}

/// Most ancestors an image remembers.
const MAX_ANCESTRY: usize = 16;

/// The ancestry of an image whose parent image is `parent`.
fn ancestry_of(parent: &Image) -> Arc<[Arc<str>]> {
    std::iter::once(Arc::clone(&parent.exec_id))
        .chain(parent.ancestors.iter().cloned())
        .take(MAX_ANCESTRY)
        .collect()
}

/// pid -> current image.
pub(crate) struct ProcessTable {
    boot: String,
    images: crate::FastMap<u32, Image>,
    /// Executable paths by identity, from exec records and announcements.
    exes: crate::FastMap<ExeKey, Arc<[u8]>>,
    clock_ticks: u64,
    images_stat: TableStat,
    exes_stat: TableStat,
}

impl ProcessTable {
    /// `boot_short`: a short boot id that makes exec ids unique per host across boots.
    pub(crate) fn new(boot_short: String) -> Self {
        // SAFETY: sysconf has no memory-safety preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Self {
            boot: boot_short,
            images: crate::FastMap::default(),
            exes: crate::FastMap::default(),
            clock_ticks: u64::try_from(ticks).unwrap_or(100).max(1),
            images_stat: TableStat::named("process_images"),
            exes_stat: TableStat::named("executables"),
        }
    }

    /// `<boot>-<pid>-<start ns>`: unique per host, stable for the life of the image.
    pub(crate) fn exec_id(&self, pid: u32, start_ns: u64) -> Arc<str> {
        format!("{}-{pid}-{start_ns}", self.boot).into()
    }

    /// The image `pid` is running now (bootstrapped from /proc the first time it is seen).
    pub(crate) fn get(&mut self, pid: u32) -> &Image {
        if !self.images.contains_key(&pid) {
            let img = self.read_proc(pid);
            self.insert(pid, img);
        }
        &self.images[&pid]
    }

    /// A fork: the child runs a copy of the parent's image, as a new process.
    pub(crate) fn on_fork(&mut self, parent: u32, child: u32, ktime_ns: u64) {
        let p = self.get(parent).clone();
        let img = Image {
            exe: p.exe.clone(),
            exe_reported: p.exe_reported.clone(),
            exec_id: self.exec_id(child, ktime_ns),
            parent_exec_id: Some(Arc::clone(&p.exec_id)),
            ancestors: ancestry_of(&p),
        };
        self.insert(child, img);
    }

    /// A successful exec: `pid` now runs `exe`. Returns the new image's exec id.
    pub(crate) fn on_exec(&mut self, pid: u32, exe: Option<Arc<[u8]>>, ktime_ns: u64) -> Arc<str> {
        let old = self.get(pid).clone();
        let exec_id = self.exec_id(pid, ktime_ns);
        self.insert(
            pid,
            Image {
                exe,
                exe_reported: None,
                exec_id: exec_id.clone(),
                parent_exec_id: Some(Arc::clone(&old.exec_id)),
                ancestors: ancestry_of(&old),
            },
        );
        exec_id
    }

    /// The kernel named the executable with identity `key`: remember it, and for `pid`.
    pub(crate) fn announce(&mut self, pid: u32, key: ExeKey, path: Arc<[u8]>) {
        if self.exes.len() >= MAX_EXES {
            self.exes_stat.evicted(self.exes.len());
            self.exes = crate::FastMap::default();
        }
        self.exes.insert(key, Arc::clone(&path));
        self.exes_stat.set_entries(self.exes.len());
        let _ = self.get(pid);
        if let Some(img) = self.images.get_mut(&pid) {
            img.exe = Some(path);
        }
    }

    /// `pid` replaced what `mm->exe_file` names with `path` (its executable stays the file its
    /// exec loaded).
    pub(crate) fn exe_replaced(&mut self, pid: u32, path: Arc<[u8]>) {
        let _ = self.get(pid);
        if let Some(img) = self.images.get_mut(&pid) {
            img.exe_reported = Some(path);
        }
    }

    /// The path of the executable with identity `key`, as the kernel last named it.
    pub(crate) fn exe(&self, key: ExeKey) -> Option<Arc<[u8]>> {
        self.exes.get(&key).cloned()
    }

    pub(crate) fn on_exit(&mut self, pid: u32) {
        self.images.remove(&pid);
        // A burst of processes leaves its capacity behind: give most of it back once gone.
        if self.images.capacity() > 4096 && self.images.len() < self.images.capacity() / 8 {
            self.images.shrink_to(self.images.len() * 2);
        }
        self.images_stat.set_entries(self.images.len());
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.images.len()
    }

    fn insert(&mut self, pid: u32, img: Image) {
        if self.images.len() >= MAX_PROCESSES && !self.images.contains_key(&pid) {
            let before = self.images.len();
            self.images
                .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
            self.images_stat.evicted(before - self.images.len());
        }
        self.images.insert(pid, img);
        self.images_stat.set_entries(self.images.len());
    }

    fn read_proc(&self, pid: u32) -> Image {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let (start_ns, ppid) = stat.as_deref().map_or((0, None), |s| {
            // Fields after the parenthesised comm: state ppid ... starttime is field 22.
            let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ppid = f.get(1).and_then(|v| v.parse::<u32>().ok());
            let ticks = f.get(19).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            (ticks * (1_000_000_000 / self.clock_ticks), ppid)
        });
        let parent = ppid.and_then(|pp| self.images.get(&pp));
        Image {
            exe: None,
            exe_reported: None,
            exec_id: self.exec_id(pid, start_ns),
            parent_exec_id: parent.map(|p| p.exec_id.clone()),
            ancestors: parent.map(ancestry_of).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_then_exec_chains_exec_ids() {
        let mut t = ProcessTable::new("b00t".into());
        let me = std::process::id();
        t.announce(me, (8, 1, 42), Arc::from(&b"/usr/bin/test"[..]));
        let parent = t.get(me).clone();
        assert_eq!(parent.exe.as_deref(), Some(&b"/usr/bin/test"[..]));
        assert_eq!(t.exe((8, 1, 42)).as_deref(), Some(&b"/usr/bin/test"[..]));
        t.on_fork(me, 4_000_000, 100);
        let child = t.get(4_000_000).clone();
        assert_eq!(&*child.exec_id, "b00t-4000000-100");
        assert_eq!(child.parent_exec_id.as_deref(), Some(&*parent.exec_id));
        assert_eq!(child.exe, parent.exe);
        let new = t.on_exec(4_000_000, Some(Arc::from(&b"/bin/true"[..])), 200);
        assert_eq!(&*new, "b00t-4000000-200");
        let img = t.get(4_000_000);
        assert_eq!(img.exe.as_deref(), Some(&b"/bin/true"[..]));
        assert_eq!(img.parent_exec_id.as_deref(), Some("b00t-4000000-100"));
        t.on_exit(4_000_000);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn unknown_vanished_process_gets_an_id_without_exe() {
        let mut t = ProcessTable::new("b".into());
        let img = t.get(u32::MAX - 1).clone();
        assert_eq!(img.exe, None);
        assert_eq!(&*img.exec_id, format!("b-{}-0", u32::MAX - 1));
    }
}
