//! A record's variable sections (argv, paths, kernel paths): each appended to the slot body's
//! variable area at its running end ([`Section`]), every append bounded so the verifier can
//! prove it stays inside the slot. Paths as the process passed them (read from its memory, with
//! a retry at exit), the kernel's path of a file (walked from its dentry, with the real file
//! under an overlay), and the directory a failed path was to be resolved from.

use audit_common::event::{
    ActionCommon, FileFacts, PendingEvent, Span, VAR_OFFSET, VAR_SIZE, WALK_MAX, file_flags, flags,
};
use aya_ebpf::helpers::generated;

use crate::{
    helpers::{copy_of, count, read_kernel_str},
    pending::common,
    vfs,
};

/// A section being written: where it starts in the variable area.
pub struct Section {
    off: usize,
}

impl Section {
    /// Starts a section of at most `max` bytes at the end of the variable area. `None` (the
    /// slot cannot hold it) never happens with the sizes in `audit-common`, but the verifier
    /// needs the bound.
    #[inline(always)]
    pub fn start(ev: &mut PendingEvent, max: usize) -> Option<(Section, *mut u8)> {
        let end = usize::from(common(ev).sections.end);
        if end > VAR_SIZE - max {
            return None;
        }
        let p = unsafe { ev.body.as_mut_ptr().add(VAR_OFFSET + end) };
        Some((Section { off: end }, p))
    }

    /// Records `len` bytes written: the section is `span`, the area's end moves past it.
    #[inline(always)]
    pub fn commit(self, ev: &mut PendingEvent, span: fn(&mut ActionCommon) -> &mut Span, len: u32) {
        let c = common(ev);
        let len = (len as usize).min(VAR_SIZE - self.off);
        *span(c) = Span {
            off: self.off as u16,
            len: len as u16,
        };
        c.sections.end = (self.off + len) as u16;
    }
}

/// Walks `(vfsmnt, dentry)` into a new section; flags a failed walk.
#[inline(always)]
pub fn walk_section(
    ev: &mut PendingEvent,
    (vfsmnt, dentry): (*const u8, *const u8),
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) {
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let mut facts = copy_of(facts_of(common(ev)));
    match vfs::walk(dentry, vfsmnt, dst, &mut facts) {
        Ok(len) => {
            if facts.flags & audit_common::event::file_flags::CUT != 0 {
                count(|c| c.walk_cut += 1);
            }
            *facts_of(common(ev)) = facts;
            sec.commit(ev, span, len);
        }
        Err(_) => {
            ev.header.flags |= flags::KPATH_FAULT;
            count(|c| c.walk_fault += 1);
        }
    }
}

/// Copies a NUL-terminated string from user memory to `dst` (at most `max` bytes, NUL included).
/// Returns the number of bytes written including the NUL.
#[inline(always)]
pub fn read_user_str(dst: *mut u8, max: u32, src: *const u8) -> Result<u32, i64> {
    let n = unsafe { generated::bpf_probe_read_user_str(dst.cast(), max, src.cast()) };
    if n < 0 {
        return Err(n);
    }
    Ok((n as u32).min(max))
}

/// Whether the string at `src` goes on past `max - 1` bytes (so a read of `max` bytes cut it).
#[inline(always)]
pub fn user_str_continues(src: *const u8, max: u32) -> bool {
    let mut b = 0u8;
    let r = unsafe {
        generated::bpf_probe_read_user((&raw mut b).cast(), 1, src.add(max as usize - 1).cast())
    };
    r == 0 && b != 0
}

/// Which path of a record: the requested one, or a file change's second one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    First,
    Second,
}

impl Which {
    /// (section of the path as passed, its base section, fault flag, truncation flag, walked flag)
    #[inline(always)]
    fn parts(
        self,
    ) -> (
        fn(&mut ActionCommon) -> &mut Span,
        fn(&mut ActionCommon) -> &mut Span,
        u32,
        u32,
        u32,
    ) {
        match self {
            Which::First => (
                |c| &mut c.sections.requested,
                |c| &mut c.sections.base,
                flags::PATH_FAULT,
                flags::PATH_TRUNCATED,
                flags::BASE_WALKED,
            ),
            Which::Second => (
                |c| &mut c.sections.extra,
                |c| &mut c.sections.base2,
                flags::PATH2_FAULT,
                flags::PATH2_TRUNCATED,
                flags::BASE2_WALKED,
            ),
        }
    }
}

/// Reads the requested path at `user` into a new `requested` section. On a fault the flag is
/// set and nothing is written (an unread path is never an empty one).
#[inline(always)]
pub fn requested_path(ev: &mut PendingEvent, user: u64) {
    user_path(ev, user, Which::First);
}

/// Reads a path from the process's memory into its section (see [`Which`]).
#[inline(always)]
pub fn user_path(ev: &mut PendingEvent, user: u64, which: Which) {
    use audit_common::event::PATH_MAX;
    let (span, _, fault, truncated, _) = which.parts();
    let Some((sec, dst)) = Section::start(ev, PATH_MAX) else {
        return;
    };
    let src = user as *const u8;
    match read_user_str(dst, PATH_MAX as u32, src) {
        Ok(n) => {
            if n as usize == PATH_MAX && user_str_continues(src, PATH_MAX as u32) {
                ev.header.flags |= truncated;
                count(|c| c.path_truncated += 1);
            }
            ev.header.flags &= !fault;
            sec.commit(ev, span, n);
        }
        Err(_) => ev.header.flags |= fault,
    }
}

/// Copies a path the kernel already copied (a `struct filename`'s name) into its section; flags
/// it as the kernel's copy.
#[inline(always)]
pub fn kernel_path(ev: &mut PendingEvent, src: *const u8, which: Which) {
    use audit_common::event::PATH_MAX;
    let (span, _, fault, _, _) = which.parts();
    let Some((sec, dst)) = Section::start(ev, PATH_MAX) else {
        return;
    };
    match read_kernel_str(dst, PATH_MAX as u32, src) {
        Ok(n) => sec.commit(ev, span, n),
        Err(_) => ev.header.flags |= fault,
    }
}

/// At exit: when the requested path could not be read at entry, reads it now (the kernel has
/// faulted the page in by then); a second failure is counted.
#[inline(always)]
pub fn retry_requested(ev: &mut PendingEvent, user: u64) {
    if ev.header.flags & flags::PATH_FAULT == 0 {
        return;
    }
    requested_path(ev, user);
    if ev.header.flags & flags::PATH_FAULT == 0 {
        ev.header.flags |= flags::PATH_AT_EXIT;
    } else {
        count(|c| c.path_fault += 1);
    }
}

/// At exit: a file change's second path, when it could not be read at entry.
#[inline(always)]
pub fn retry_second(ev: &mut PendingEvent, user: u64) {
    if ev.header.flags & flags::PATH2_FAULT == 0 {
        return;
    }
    user_path(ev, user, Which::Second);
    if ev.header.flags & flags::PATH2_FAULT != 0 {
        count(|c| c.path_fault += 1);
    }
}

/// The first byte of a path's section (`b'/'` for an absolute path), or 0.
#[inline(always)]
fn first_byte(ev: &mut PendingEvent, which: Which) -> u8 {
    let (span, ..) = which.parts();
    let span = *span(common(ev));
    if span.len == 0 {
        return 0;
    }
    ev.body
        .get(VAR_OFFSET + usize::from(span.off))
        .copied()
        .unwrap_or(0)
}

/// For a failed path-based action: the directory the path was to be resolved from, as the
/// kernel sees it now (cwd or dirfd for a relative path, the task's root for an absolute one,
/// the dirfd for any path when `in_root` — `openat2`'s `RESOLVE_IN_ROOT`).
#[inline(always)]
pub fn base_section(ev: &mut PendingEvent, dirfd: i32, in_root: bool) {
    base_of(ev, dirfd, in_root, Which::First);
}

/// The directory a path (see [`Which`]) was resolved from, walked into its base section.
#[inline(always)]
pub fn base_of(ev: &mut PendingEvent, dirfd: i32, in_root: bool, which: Which) {
    const AT_FDCWD: i32 = -100;
    let (_, base, fault, _, walked) = which.parts();
    if ev.header.flags & fault != 0 {
        return;
    }
    let first = first_byte(ev, which);
    let dir = if first == b'/' && !in_root {
        vfs::task_dir(true)
    } else if dirfd == AT_FDCWD {
        vfs::task_dir(false)
    } else {
        vfs::fd_file(i64::from(dirfd)).and_then(|f| {
            let mut facts = FileFacts::default();
            vfs::file_facts(f, &mut facts)
        })
    };
    let Ok(dir) = dir else {
        ev.header.flags |= flags::KPATH_FAULT;
        return;
    };
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let mut facts = FileFacts::default();
    match vfs::walk(dir.1, dir.0, dst, &mut facts) {
        Ok(len) => {
            sec.commit(ev, base, len);
            ev.header.flags |= walked;
        }
        Err(_) => {
            ev.header.flags |= flags::KPATH_FAULT;
            count(|c| c.walk_fault += 1);
        }
    }
}

/// For a returned fd: the facts and kernel path of the file behind it (and of the real file
/// under it, on an overlay).
#[inline(always)]
pub fn fd_section(ev: &mut PendingEvent, fd: i64) {
    if let Some(dentry) = fd_file_section(ev, fd) {
        real_section(ev, dentry);
    }
}

/// [`fd_section`] without the real file under an overlay: for programs the verifier could not
/// take with two more walks (io_uring's submission of a request on an fd). Returns the dentry.
#[inline(always)]
pub fn fd_file_section(ev: &mut PendingEvent, fd: i64) -> Option<*const u8> {
    let dentry = vfs::fd_file(fd)
        .ok()
        .and_then(|f| file_section(ev, f, |c| &mut c.file, |c| &mut c.sections.kpath));
    if dentry.is_none() {
        ev.header.flags |= flags::KPATH_FAULT;
        count(|c| c.walk_fault += 1);
    }
    dentry
}

/// The facts of `file` into `facts_of` (the record's file, or a second one in its fixed part)
/// and its kernel path into a new section `span`; its dentry (for [`real_section`]), or None when
/// the file could not be read.
#[inline(always)]
pub fn file_section(
    ev: &mut PendingEvent,
    file: *const u8,
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) -> Option<*const u8> {
    let mut facts = FileFacts::default();
    let Ok(path) = vfs::file_facts(file, &mut facts) else {
        return None;
    };
    *facts_of(common(ev)) = facts;
    walk_section(ev, path, facts_of, span);
    Some(path.1)
}

/// When `common.file` (reached through `dentry`) is on overlayfs: the file under it
/// (`common.real`; [`file_flags::UPPER`] when in the upper layer) and the lower file an upper one
/// was copied up from (`common.origin`), each with its path from the root of its filesystem.
/// Left unset when it cannot be read: user space then says the real file is unreadable.
#[inline(always)]
pub fn real_section(ev: &mut PendingEvent, dentry: *const u8) {
    if common(ev).file.flags & file_flags::STACKED == 0 {
        return;
    }
    let Ok((real, upper, origin)) = vfs::real_dentry(dentry) else {
        count(|c| c.walk_fault += 1);
        return;
    };
    let mut extra = if upper { file_flags::UPPER } else { 0 };
    if !origin.is_null() {
        extra |= file_flags::ORIGIN;
    }
    fs_walk_section(ev, real, extra, |c| &mut c.real, |c| &mut c.sections.real);
    if !origin.is_null() {
        fs_walk_section(ev, origin, 0, |c| &mut c.origin, |c| &mut c.sections.origin);
    }
}

/// The facts of the file at `dentry` (with `extra` flags) and its path from the root of its
/// filesystem, into `facts_of` and a new section `span`; nothing when either cannot be read.
#[inline(always)]
fn fs_walk_section(
    ev: &mut PendingEvent,
    dentry: *const u8,
    extra: u16,
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) {
    let mut facts = FileFacts::default();
    if vfs::dentry_facts(dentry, &mut facts).is_err() {
        count(|c| c.walk_fault += 1);
        return;
    }
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    match vfs::walk_fs(dentry, dst, &mut facts) {
        Ok(len) => {
            facts.flags |= extra;
            *facts_of(common(ev)) = facts;
            sec.commit(ev, span, len);
        }
        Err(_) => count(|c| c.walk_fault += 1),
    }
}
