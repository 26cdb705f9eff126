//! Where the cgroup programs are attached: the `sock_addr` ones (the kernel's copy of every IP
//! destination a watched process connects or sends to), the `sock_ops` one (how watched
//! non-blocking connects ended) and, with `[capture] packets`, the `skb` ones (DNS and the first
//! bytes of watched connections). A cgroup program runs for every socket
//! operation of every process below the cgroup it is attached to, watched or not — on the root,
//! an unwatched `connect` paid ~200 ns and every unwatched packet a program run. So they are
//! attached to the **cover**: the deepest cgroup that holds every cgroup watched so far.
//!
//! - Everything watched (`--all`), or uids watched (a uid can act from any cgroup): the root.
//! - Otherwise the common ancestor of the watched cgroups, and of every cgroup watched earlier in
//!   this run: the cover only grows, so a process watched once (and followed since, see
//!   `audit-ebpf/src/filter.rs`) stays below it when its cgroup leaves the watch set.
//! - A watched process that moves to a cgroup outside the cover (the kernel reports the move,
//!   `process.cgroup_move`) widens it to include that cgroup. Until user space has read that
//!   record, its connects and sends are recorded with the address as the process passed it (no
//!   kernel copy: the record says so), and its packets are not read.
//! - At start, before any watch set: the root (the agent's own "who am I" connect needs the
//!   `connect4` program, `Whoami`).
//!
//! Moving the programs attaches them at the new cover before detaching them from the old, so no
//! watched socket is ever without them (for that instant some run twice).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SockOps},
};

use super::{WatchSet, program};

/// cgroup `sock_addr` programs: they see the kernel's copy of every IP destination.
pub(super) const SOCK_ADDR: &[&str] = &["connect4", "connect6", "sendmsg4", "sendmsg6"];

/// The cgroup `sock_ops` program: the final state of watched non-blocking connects.
pub(super) const SOCK_OPS: &str = "connect_states";

/// cgroup `skb` programs: they read the packets of watched sockets (DNS, the first bytes of TCP
/// connections).
pub(super) const PACKET_PROGRAMS: &[(&str, CgroupSkbAttachType)] = &[
    ("packet_egress", CgroupSkbAttachType::Egress),
    ("packet_ingress", CgroupSkbAttachType::Ingress),
];

/// The cgroup programs' attachment and what it covers.
pub(super) struct CgroupPrograms {
    /// The cgroup v2 mount.
    mount: PathBuf,
    /// Whether the packet programs are attached too.
    packets: bool,
    /// Where they are attached now (a path below the mount, `/` for the root).
    at: String,
    /// The cover of everything watched so far in this run (`None` before the first watch set).
    grown: Option<String>,
    /// Dropped to detach.
    links: Vec<Box<dyn Send>>,
}

impl CgroupPrograms {
    /// Attaches the programs to the root of the hierarchy mounted at `mount`.
    pub(super) fn attach_at_root(
        ebpf: &mut Ebpf,
        mount: &Path,
        packets: bool,
    ) -> anyhow::Result<Self> {
        let links = attach(ebpf, mount, "/", packets)?;
        Ok(Self {
            mount: mount.to_path_buf(),
            packets,
            at: "/".into(),
            grown: None,
            links,
        })
    }

    /// Moves the programs to the cover of `set` and of everything watched before.
    pub(super) fn cover_watch_set(
        &mut self,
        ebpf: &mut Ebpf,
        set: &WatchSet,
    ) -> anyhow::Result<()> {
        let target = if set.all || !set.uids.is_empty() {
            Some("/".to_string())
        } else {
            let dirs = set
                .subtrees
                .iter()
                .chain(&set.exact)
                .map(|d| d.path.as_str());
            let earlier = self.grown.iter().map(String::as_str);
            earlier
                .chain(dirs)
                .reduce(common_ancestor)
                .map(str::to_string)
        };
        // Nothing watched by cgroup yet (a node whose agents have not started): they stay.
        let Some(target) = target else {
            return Ok(());
        };
        self.move_to(ebpf, &target)?;
        self.grown = Some(target);
        Ok(())
    }

    /// Widens the cover to cgroup `path` (below the mount), where a watched process moved.
    pub(super) fn cover_move(&mut self, ebpf: &mut Ebpf, path: &str) -> anyhow::Result<()> {
        if self.grown.is_none() || is_below(path, &self.at) {
            return Ok(());
        }
        let target = common_ancestor(&self.at, path).to_string();
        self.move_to(ebpf, &target)?;
        self.grown = Some(target);
        Ok(())
    }

    fn move_to(&mut self, ebpf: &mut Ebpf, target: &str) -> anyhow::Result<()> {
        if target == self.at {
            return Ok(());
        }
        let links = attach(ebpf, &self.mount, target, self.packets)?;
        // The old attachment is dropped (detached) only now that the new one runs.
        self.links = links;
        tracing::info!(
            cgroup = target,
            was = self.at.as_str(),
            "cgroup programs moved to the cgroup that holds everything watched"
        );
        self.at = target.to_string();
        Ok(())
    }
}

/// Attaches the `sock_addr` programs (and the packet programs when `packets`) to cgroup `at`.
/// Through BPF links (every kernel with ring buffers): they coexist with other programs on the
/// cgroup whatever the mode, and the kernel rejects mode flags on link creation (`Single`).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    mount: &Path,
    at: &str,
    packets: bool,
) -> anyhow::Result<Vec<Box<dyn Send>>> {
    let dir = mount.join(at.trim_start_matches('/'));
    let cgroup = std::fs::File::open(&dir)
        .with_context(|| format!("cannot open cgroup {}", dir.display()))?;
    let mut links: Vec<Box<dyn Send>> = Vec::new();
    for &name in SOCK_ADDR {
        let p: &mut CgroupSockAddr = program(ebpf, name)?.try_into()?;
        load_once!(p, name);
        let id = p
            .attach(&cgroup, CgroupAttachMode::Single)
            .with_context(|| {
                format!(
                    "attaching {name} to cgroup {} failed (needs CONFIG_CGROUP_BPF)",
                    dir.display()
                )
            })?;
        links.push(Box::new(p.take_link(id)?));
    }
    let p: &mut SockOps = program(ebpf, SOCK_OPS)?.try_into()?;
    load_once!(p, SOCK_OPS);
    let id = p
        .attach(&cgroup, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {SOCK_OPS} to cgroup {} failed", dir.display()))?;
    links.push(Box::new(p.take_link(id)?));
    if !packets {
        return Ok(links);
    }
    for &(name, direction) in PACKET_PROGRAMS {
        let p: &mut CgroupSkb = program(ebpf, name)?.try_into()?;
        load_once!(p, name);
        let id = p
            .attach(&cgroup, direction, CgroupAttachMode::Single)
            .with_context(|| {
                format!(
                    "attaching {name} to cgroup {} failed (needs CONFIG_CGROUP_BPF); set \
                     [capture] packets = false to run without naming destinations",
                    dir.display()
                )
            })?;
        links.push(Box::new(p.take_link(id)?));
    }
    Ok(links)
}

/// The deepest cgroup holding both `a` and `b` (paths below the mount, starting with `/`).
fn common_ancestor<'a>(a: &'a str, b: &str) -> &'a str {
    let mut end = 0;
    let (mut x, mut y) = (a.split('/'), b.split('/'));
    let mut first = true;
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p == q => {
                if !first {
                    end += 1;
                }
                end += p.len();
                first = false;
            }
            _ => break,
        }
    }
    if end == 0 { "/" } else { &a[..end] }
}

/// Whether cgroup `path` is `cover` or below it.
fn is_below(path: &str, cover: &str) -> bool {
    common_ancestor(path, cover) == cover
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_ancestor_is_whole_path_components() {
        assert_eq!(common_ancestor("/a/b/c", "/a/b/d"), "/a/b");
        assert_eq!(common_ancestor("/a/b", "/a/b/c"), "/a/b");
        assert_eq!(common_ancestor("/a/bc", "/a/bd"), "/a");
        assert_eq!(common_ancestor("/a", "/b"), "/");
        assert_eq!(common_ancestor("/", "/a"), "/");
        assert_eq!(common_ancestor("/a/b", "/a/b"), "/a/b");
    }

    #[test]
    fn below_means_the_cover_or_a_descendant() {
        assert!(is_below("/a/b/c", "/a/b"));
        assert!(is_below("/a/b", "/a/b"));
        assert!(is_below("/x", "/"));
        assert!(!is_below("/a/bc", "/a/b"));
        assert!(!is_below("/a", "/a/b"));
    }
}
