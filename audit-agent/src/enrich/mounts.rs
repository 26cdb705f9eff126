//! Where the host shows a file the kernel named from the root of its filesystem. The real file
//! under an overlayfs file is reached through the overlay's private layer mounts, which no mount
//! namespace shows, so the kernel side walks its dentries up to the root of its filesystem. The
//! host's mount table (`/proc/1/mountinfo`, the daemon's own when that cannot be read) says which
//! part of that filesystem each mount shows, and where: the real file is named under that mount
//! point, or stays named from its filesystem's root when the host mounts no part that holds it.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use crate::{
    capture::cgroup::unescape_mountinfo_bytes,
    event::{RealFile, RealRoot, Resource, Stacked},
};

/// Least time between two reads of the mount table when a filesystem is not found in it (a
/// mount made since the last read).
const RELOAD: Duration = Duration::from_secs(1);

/// One mount: the directory of its filesystem it shows (`root`), and where (`point`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    dev: (u32, u32),
    root: Vec<u8>,
    point: Vec<u8>,
}

/// The host's mount table, read when first needed and again when it lacks an answer.
pub(crate) struct HostMounts {
    source: PathBuf,
    mounts: Vec<Mount>,
    read_at: Option<Instant>,
}

impl HostMounts {
    pub(crate) fn new() -> Self {
        let host = PathBuf::from("/proc/1/mountinfo");
        let source = if std::fs::File::open(&host).is_ok() {
            host
        } else {
            PathBuf::from("/proc/self/mountinfo")
        };
        Self {
            source,
            mounts: Vec::new(),
            read_at: None,
        }
    }

    /// Names every real file of `r` (see [`crate::event::RealFile`]) by the host's path.
    pub(crate) fn place(&mut self, r: &mut Resource) {
        for k in r.kernel_files_mut() {
            let Some(Stacked::Real(real)) = &mut k.stacked else {
                continue;
            };
            if let Some(origin) = &mut real.origin {
                self.place_file(origin);
            }
            self.place_file(real);
        }
    }

    fn place_file(&mut self, f: &mut RealFile) {
        if f.root != RealRoot::Filesystem || f.cut {
            return;
        }
        if let Some(p) = self.host_path((f.id.dev_major, f.id.dev_minor), &f.path) {
            f.path = p;
            f.root = RealRoot::Host;
        }
    }

    /// The host's path of `fs_path` on filesystem `dev`, re-reading the table when it has none.
    fn host_path(&mut self, dev: (u32, u32), fs_path: &[u8]) -> Option<Vec<u8>> {
        if let Some(p) = under_mount(&self.mounts, dev, fs_path) {
            return Some(p);
        }
        if self.read_at.is_some_and(|t| t.elapsed() < RELOAD) {
            return None;
        }
        self.read_at = Some(Instant::now());
        match std::fs::read(&self.source) {
            Ok(text) => self.mounts = parse(&text),
            Err(e) => {
                tracing::warn!(file = %self.source.display(), error = %e,
                    "cannot read the mount table: files under overlays are named from their \
                     filesystem's root");
            }
        }
        under_mount(&self.mounts, dev, fs_path)
    }
}

/// The mounts of a `mountinfo` table (`proc_pid_mountinfo(5)`): `major:minor`, root and mount
/// point are its third to fifth fields.
fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ').skip(2);
            let dev = std::str::from_utf8(fields.next()?).ok()?;
            let (major, minor) = dev.split_once(':')?;
            Some(Mount {
                dev: (major.parse().ok()?, minor.parse().ok()?),
                root: unescape_mountinfo_bytes(fields.next()?),
                point: unescape_mountinfo_bytes(fields.next()?),
            })
        })
        .collect()
}

/// `fs_path` under the mount of `dev` that shows it: of the mounts whose root holds it, the one
/// showing the most of the filesystem (the shortest root: the filesystem itself over a bind mount
/// of a part of it), the first in the table among equals.
fn under_mount(mounts: &[Mount], dev: (u32, u32), fs_path: &[u8]) -> Option<Vec<u8>> {
    let (m, rest) = mounts
        .iter()
        .filter(|m| m.dev == dev)
        .filter_map(|m| Some((m, below(&m.root, fs_path)?)))
        .min_by_key(|(m, _)| m.root.len())?;
    let mut out = m.point.clone();
    if out == b"/" && !rest.is_empty() {
        out.clear();
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// The rest of `path` below directory `root` (empty, or starting with `/`), if it is below it.
fn below<'a>(root: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    let rest = if root == b"/" {
        path
    } else {
        path.strip_prefix(root)?
    };
    match rest {
        b"/" => Some(b""),
        _ => (rest.is_empty() || rest.starts_with(b"/")).then_some(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[u8] = b"\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 254:0 /srv/data /mnt/data rw - ext4 /dev/vda rw
41 27 0:45 / /tmp rw - tmpfs tmpfs rw
42 27 0:46 /with\\040space /mnt/sp rw - tmpfs tmpfs rw
";

    #[test]
    fn a_file_is_named_under_the_mount_that_shows_the_whole_filesystem() {
        let m = parse(TABLE);
        assert_eq!(
            under_mount(&m, (254, 0), b"/srv/data/x").as_deref(),
            Some(&b"/srv/data/x"[..]),
            "the filesystem's own mount wins over a bind mount of a part of it"
        );
        assert_eq!(
            under_mount(&m, (0, 45), b"/layer/lower/secret").as_deref(),
            Some(&b"/tmp/layer/lower/secret"[..])
        );
        assert_eq!(
            under_mount(&m, (0, 45), b"/").as_deref(),
            Some(&b"/tmp"[..])
        );
    }

    #[test]
    fn only_a_mount_whose_root_holds_the_file_names_it() {
        let m = parse(TABLE);
        assert_eq!(
            under_mount(&m, (0, 46), b"/with space/f").as_deref(),
            Some(&b"/mnt/sp/f"[..])
        );
        assert_eq!(under_mount(&m, (0, 46), b"/with spaces/f"), None);
        assert_eq!(under_mount(&m, (0, 46), b"/other/f"), None);
        assert_eq!(
            under_mount(&m, (9, 9), b"/x"),
            None,
            "a filesystem the host does not mount"
        );
    }
}
