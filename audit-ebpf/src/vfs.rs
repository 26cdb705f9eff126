//! What the kernel acted on, read from its own objects: the `struct file` behind an fd, its inode
//! (device, inode number, mode, links), and its path built from the dentry and mount chain.
//!
//! The path walk follows `d_parent` up to the root of each mount and crosses to the mount it is
//! mounted on (`mnt_mountpoint`, `mnt_parent`) until the root of the mount namespace — not the
//! task's root, so a chroot's files are named by their real path. It writes the components leaf
//! first, each NUL-terminated, into a bounded area; user space reverses them. `bpf_d_path` is
//! not allowed in tracepoints, so this is the walk Tetragon and Tracee do, bounded by
//! [`WALK_DEPTH`] steps and [`PATH_MAX`] bytes, with explicit flags when it is cut.
//!
//! A file on overlayfs is an overlay inode; the file the kernel reads and writes lies below it, in
//! the upper layer or a lower one ([`real_dentry`]). Layers are reached through private mounts
//! that no namespace shows, so that file's path is walked up its dentries to the root of its
//! filesystem ([`walk_fs`]); user space places it under the mount point the host mounts it at.

use audit_common::{
    event::{FileFacts, NAME_READ, PATH_MAX, WALK_DEPTH, file_flags},
    offsets::ABSENT,
};

use crate::{
    helpers::{read_kernel_str, verifier_mask},
    maps::{WALK_CURSOR, WalkCursor},
    offsets::{Block, kptr, kread, kty, off, tptr, tread},
};

/// `MNT_NS_INTERNAL` and other error pointers: internal mounts have no namespace.
const MAX_ERRNO: u64 = 4095;

/// `OVERLAYFS_SUPER_MAGIC`.
const OVERLAYFS_MAGIC: u64 = 0x794c_7630;

/// Most overlays a real file is looked for through (an overlay whose layer lies on another
/// overlay: a container's overlay inside a container).
const STACK_DEPTH: usize = 3;

/// The current task as the kernel's BTF types it (`bpf_get_current_task_btf`). A field read
/// through it with [`btf_read`] is a plain load, not a helper call (each `bpf_probe_read_kernel`
/// costs tens of nanoseconds): the verifier checks the load against the kernel's BTF — the
/// offsets are constants to it (`.rodata`) — and the JIT turns a faulting load into a 0. A field
/// that points to a struct comes out typed in turn (`task->mm`, `mm->exe_file`), so chains of
/// such fields stay plain loads; any other field comes out as a number.
#[inline(always)]
pub fn task_btf() -> *const u8 {
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() as *const u8 }
}

/// The `T` at `base + off` of a BTF-typed object (see [`task_btf`]).
#[inline(always)]
pub fn btf_read<T>(base: *const u8, off: u16) -> T {
    unsafe { core::ptr::read_volatile(base.wrapping_add(usize::from(off)).cast::<T>()) }
}

/// The non-null pointer at `base + off` of a BTF-typed object.
#[inline(always)]
pub fn btf_ptr(base: *const u8, off: u16) -> Result<*const u8, i64> {
    let p: *const u8 = btf_read(base, off);
    if p.is_null() { Err(-1) } else { Ok(p) }
}

/// The `struct file *` of `fd` in the current task's file table.
#[inline(always)]
pub fn fd_file(fd: i64) -> Result<*const u8, i64> {
    if fd < 0 {
        return Err(-1);
    }
    let files = btf_ptr(task_btf(), off!(task_files))?;
    let fdt = btf_ptr(files, off!(files_fdt))?;
    if fd >= i64::from(btf_read::<u32>(fdt, off!(fdt_max_fds))) {
        return Err(-1);
    }
    // `fd` is a `struct file **`: BTF types what it points to only for a pointer to a struct,
    // so the array is read with the helper.
    let fds: u64 = btf_read(fdt, off!(fdt_fd));
    kptr((fds as *const u8).wrapping_add((fd as usize) * 8), 0)
}

/// Device, inode number, mode and link state of an inode.
#[inline(always)]
pub fn inode_facts(inode: *const u8, facts: &mut FileFacts) -> Result<(), i64> {
    let ty = kty!(inode);
    let (sb, nlink) = if ty != 0 {
        facts.ino = tread(inode, ty, off!(inode_ino))?;
        (
            tptr(inode, ty, off!(inode_sb))?,
            tread::<u32>(inode, ty, off!(inode_nlink))?,
        )
    } else {
        // Superblock, number and link count lie within 40 bytes of each other (a block reaching
        // the mode too, at 0, makes the exec and compat programs too complex for the verifier).
        let b = Block::<5>::read(inode, off!(inode_sb))?;
        facts.ino = b.u64(off!(inode_ino))?;
        (b.ptr(off!(inode_sb))?, b.u32(off!(inode_nlink))?)
    };
    facts.mode = tread::<u16>(inode, ty, off!(inode_mode))?;
    let sb_ty = kty!(super_block);
    facts.dev = tread::<u32>(sb, sb_ty, off!(sb_dev))?;
    if nlink == 0 {
        facts.flags |= file_flags::DELETED;
    }
    if off!(ovl_inode_vfs) != ABSENT
        && tread::<u64>(sb, sb_ty, off!(sb_magic)) == Ok(OVERLAYFS_MAGIC)
    {
        facts.flags |= file_flags::STACKED;
    }
    facts.flags |= file_flags::VALID;
    Ok(())
}

/// The file an overlayfs dentry stands for: the upper layer's file when there is one (created or
/// copied up: what a write goes to), else the topmost lower layer's — followed down through
/// overlays stacked on overlays. Returns its dentry, whether it is the upper layer's, and for an
/// upper file over a lower one that lower file (its origin: what it was copied up from), else
/// null.
#[inline(always)]
pub fn real_dentry(dentry: *const u8) -> Result<(*const u8, bool, *const u8), i64> {
    let mut d = dentry;
    let mut level = 0;
    while level < STACK_DEPTH {
        level += 1;
        // The overlay inode is embedded in an `ovl_inode`; its upper dentry and lower stack are
        // 8 bytes apart.
        let inode = kptr(d, off!(dentry_inode))?;
        let oi = inode.wrapping_sub(usize::from(off!(ovl_inode_vfs)));
        let b = Block::<2>::read(oi, off!(ovl_inode_upper))?;
        let upper = b.u64(off!(ovl_inode_upper))? as *const u8;
        let oe = b.ptr(off!(ovl_inode_oe))?;
        let lower = if kread::<u32>(oe, off!(ovl_entry_numlower))? == 0 {
            core::ptr::null()
        } else {
            kptr(
                oe,
                off!(ovl_entry_lowerstack).wrapping_add(off!(ovl_path_dentry)),
            )?
        };
        let (real, origin) = if upper.is_null() {
            (lower, core::ptr::null())
        } else {
            (upper, lower)
        };
        if real.is_null() {
            return Err(-1);
        }
        let inode = kptr(real, off!(dentry_inode))?;
        let sb = kptr(inode, off!(inode_sb))?;
        if kread::<u64>(sb, off!(sb_magic))? != OVERLAYFS_MAGIC {
            return Ok((real, !upper.is_null(), origin));
        }
        d = real;
    }
    Err(-1)
}

/// A `struct path` (mount and dentry) at `base + at`.
#[inline(always)]
pub fn path_at(base: *const u8, at: u16) -> Result<(*const u8, *const u8), i64> {
    let mnt = kptr(base, at.wrapping_add(off!(path_mnt)))?;
    let dentry = kptr(base, at.wrapping_add(off!(path_dentry)))?;
    Ok((mnt, dentry))
}

/// The facts and the (vfsmount, dentry) of an open file.
#[inline(always)]
pub fn file_facts(file: *const u8, facts: &mut FileFacts) -> Result<(*const u8, *const u8), i64> {
    let (mnt_at, dentry_at) = (
        off!(file_path).wrapping_add(off!(path_mnt)),
        off!(file_path).wrapping_add(off!(path_dentry)),
    );
    let ty = kty!(file);
    let (inode, mnt, dentry) = if ty != 0 {
        (
            tptr(file, ty, off!(file_inode))?,
            tptr(file, ty, mnt_at)?,
            tptr(file, ty, dentry_at)?,
        )
    } else {
        // `f_inode` and `f_path` lie within 48 bytes: one read.
        let b = Block::<6>::read(file, off!(file_inode))?;
        (b.ptr(off!(file_inode))?, b.ptr(mnt_at)?, b.ptr(dentry_at)?)
    };
    inode_facts(inode, facts)?;
    Ok((mnt, dentry))
}

/// The facts of the inode behind a dentry (for paths that are not open files: a cwd, a
/// socket's bound path).
#[inline(always)]
pub fn dentry_facts(dentry: *const u8, facts: &mut FileFacts) -> Result<(), i64> {
    let inode = tptr(dentry, kty!(dentry), off!(dentry_inode))?;
    inode_facts(inode, facts)
}

/// The parent and the name of a dentry (`d_parent`, `d_name.name`), for a step of
/// [`walk_looped`].
#[inline(always)]
fn parent_and_name(d: *const u8) -> Result<(*const u8, *const u8), i64> {
    let name_at = off!(dentry_name).wrapping_add(off!(qstr_name));
    let ty = kty!(dentry);
    if ty != 0 {
        return Ok((tptr(d, ty, off!(dentry_parent))?, tptr(d, ty, name_at)?));
    }
    // 16 bytes apart: one read.
    let b = Block::<3>::read(d, off!(dentry_parent))?;
    Ok((b.ptr(off!(dentry_parent))?, b.ptr(name_at)?))
}

/// Walks from `dentry` (reached through `vfsmnt`) to the root of its mount namespace, writing
/// components leaf first into `dst` (which has room for [`audit_common::event::WALK_MAX`]
/// bytes). Sets `mnt_id`, `mnt_ns` and the cut/detached flags of `facts`. Returns the bytes
/// written. With `bpf_loop` (`offsets::loops_enabled`) it is [`walk_looped`]: the unrolled walk,
/// checked by the verifier step by step on every path that reaches it, was most of the
/// verification of the programs that walk two or three paths (2.7M of the 6.9M instructions all
/// programs took at start).
#[inline(always)]
pub fn walk(
    dentry: *const u8,
    vfsmnt: *const u8,
    dst: *mut u8,
    facts: &mut FileFacts,
) -> Result<u32, i64> {
    if crate::offsets::loops_enabled() {
        return walk_looped(dentry, vfsmnt, dst, facts);
    }
    walk_up(dentry, vfsmnt, dst, facts)
}

/// Walks from `dentry` up its dentries to the root of its filesystem, crossing no mount; sets
/// [`file_flags::FS_ROOT`] (and the cut flag) of `facts`. Otherwise as [`walk`].
#[inline(always)]
pub fn walk_fs(dentry: *const u8, dst: *mut u8, facts: &mut FileFacts) -> Result<u32, i64> {
    walk_up(dentry, core::ptr::null(), dst, facts)
}

/// [`walk`], or with a null `vfsmnt` [`walk_fs`].
#[inline(always)]
fn walk_up(
    dentry: *const u8,
    vfsmnt: *const u8,
    dst: *mut u8,
    facts: &mut FileFacts,
) -> Result<u32, i64> {
    let mount_off = usize::from(off!(mount_mnt));
    let mut mnt = vfsmnt.wrapping_sub(mount_off);
    // No mount: no mount root to stop at (a dentry is never null).
    let mut root = core::ptr::null();
    if !vfsmnt.is_null() {
        facts.mnt_id = kread::<u32>(mnt, off!(mount_id))?;
        root = kptr(vfsmnt, off!(vfsmount_root))?;
    }
    let mut d = dentry;
    let mut len: u32 = 0;
    let mut step = 0usize;
    while step < WALK_DEPTH {
        step += 1;
        if d == root {
            let parent = kptr(mnt, off!(mount_parent))?;
            if parent == mnt {
                end_of_walk(mnt, facts)?;
                return Ok(len);
            }
            d = kptr(mnt, off!(mount_mountpoint))?;
            mnt = parent;
            root = kptr(mnt.wrapping_add(mount_off), off!(vfsmount_root))?;
            continue;
        }
        // A component may start at any offset up to PATH_MAX (a whole path of PATH_MAX bytes
        // fits); the area has room for it (WALK_MAX). The bound is checked on the masked value
        // the read then uses: checked on `len`, LLVM may leave the verifier a copy it never saw
        // bounded.
        let at = verifier_mask(len as usize, 2 * PATH_MAX - 1);
        if at > PATH_MAX {
            facts.flags |= file_flags::CUT;
            return Ok(len);
        }
        // Helper reads here: unrolled, the walk's steps with typed pointers (`tread`) are more
        // distinct states than the verifier's limit allows (this walk runs without `bpf_loop`,
        // where `bpf_rdonly_cast` is missing too, and for the rare real file of an overlay).
        // The parent and the name pointer are 16 bytes apart (`d_parent`, `d_name`).
        let b = Block::<3>::read(d, off!(dentry_parent))?;
        let parent = b.ptr(off!(dentry_parent))?;
        let name = b.ptr(off!(dentry_name).wrapping_add(off!(qstr_name)))?;
        let n = read_kernel_str(unsafe { dst.add(at) }, NAME_READ as u32, name)?;
        // Masked (a no-op: len stays below 2 * PATH_MAX) so every iteration's `len` has the same
        // range for the verifier; otherwise each mount crossing (which keeps `len`) and each
        // component (which grows it) is a distinct state and the paths multiply past its limit.
        len = verifier_mask(len as usize + n as usize, 2 * PATH_MAX - 1) as u32;
        if parent == d {
            // The top of the filesystem: where a walk without a mount ends; for one through a
            // mount, a filesystem not mounted where the walk came from — an internal mount
            // (pipe, socket, memfd's shmem, anonymous inode).
            facts.flags |= if vfsmnt.is_null() {
                file_flags::FS_ROOT
            } else {
                file_flags::DETACHED
            };
            return Ok(len);
        }
        d = parent;
    }
    facts.flags |= file_flags::CUT;
    Ok(len)
}

/// At the top mount: its namespace, or the detached flag for internal mounts.
#[inline(always)]
fn end_of_walk(mnt: *const u8, facts: &mut FileFacts) -> Result<(), i64> {
    let ns: u64 = kread(mnt, off!(mount_ns))?;
    if ns == 0 || ns >= 0u64.wrapping_sub(MAX_ERRNO) {
        facts.flags |= file_flags::DETACHED;
        return Ok(());
    }
    facts.mnt_ns = kread::<u32>(ns as *const u8, off!(mnt_ns_inum))?;
    Ok(())
}

/// The current task's cwd (`fs->pwd`) or root (`fs->root`) as (vfsmount, dentry).
#[inline(always)]
pub fn task_dir(root: bool) -> Result<(*const u8, *const u8), i64> {
    let fs = btf_ptr(task_btf(), off!(task_fs))?;
    path_at(fs, if root { off!(fs_root) } else { off!(fs_pwd) })
}

/// The current task's executable (`mm->exe_file`); `None` for kernel threads.
#[inline(always)]
pub fn exe_file() -> Result<*const u8, i64> {
    let mm = btf_ptr(task_btf(), off!(task_mm))?;
    btf_ptr(mm, off!(mm_exe_file))
}

/// Where in a `struct mount` its mount's root dentry is (`mnt.mnt_root`).
#[inline(always)]
fn mount_root_at() -> u16 {
    off!(mount_mnt).wrapping_add(off!(vfsmount_root))
}

/// What [`walk_looped`]'s callback gets on the stack: where the components go
/// ([`audit_common::event::WALK_MAX`] bytes). The rest of the walk's state is `WALK_CURSOR`.
#[repr(C)]
struct WalkDst {
    dst: *mut u8,
}

const WALKING: u16 = 0;
const DONE: u16 = 1;
const FAULT: u16 = 2;

/// One step of [`walk_looped`]: what one iteration of [`walk`] does. Returns 1 (stop) when done.
#[inline(never)]
extern "C" fn walk_step(_i: u64, ctx: *mut aya_ebpf::cty::c_void) -> i64 {
    let dst = unsafe { (*ctx.cast::<WalkDst>()).dst };
    let Some(w) = WALK_CURSOR.get_ptr_mut(0) else {
        return 1;
    };
    let w = unsafe { &mut *w };
    w.end = match step(w, dst) {
        Ok(true) => DONE,
        Ok(false) => WALKING,
        Err(_) => FAULT,
    };
    i64::from(w.end != WALKING)
}

#[inline(always)]
fn step(w: &mut WalkCursor, dst: *mut u8) -> Result<bool, i64> {
    let mnt = w.mnt as *const u8;
    if w.d == w.root {
        let ty = kty!(mount);
        let parent = tptr(mnt, ty, off!(mount_parent))?;
        if parent as u64 == w.mnt {
            w.ns = tread(mnt, ty, off!(mount_ns))?;
            return Ok(true);
        }
        w.d = tptr(mnt, ty, off!(mount_mountpoint))? as u64;
        w.mnt = parent as u64;
        w.root = tptr(parent, ty, mount_root_at())? as u64;
        return Ok(false);
    }
    let at = verifier_mask(w.len as usize, 2 * PATH_MAX - 1);
    if at > PATH_MAX {
        w.flags |= file_flags::CUT;
        return Ok(true);
    }
    let (parent, name) = parent_and_name(w.d as *const u8)?;
    let n = read_kernel_str(unsafe { dst.add(at) }, NAME_READ as u32, name)?;
    w.len = verifier_mask(w.len as usize + n as usize, 2 * PATH_MAX - 1) as u64;
    if parent as u64 == w.d {
        w.flags |= file_flags::DETACHED;
        return Ok(true);
    }
    w.d = parent as u64;
    Ok(false)
}

/// [`walk`], one step per `bpf_loop` iteration (5.17): the verifier checks the step until its
/// states converge instead of every unrolled step on every path (and, inside a `bpf_loop`
/// callback such as the files of an fd table, `fds.rs`, again for every state the outer callback
/// is checked in). The same result, flags and limits.
#[inline(always)]
pub fn walk_looped(
    dentry: *const u8,
    vfsmnt: *const u8,
    dst: *mut u8,
    facts: &mut FileFacts,
) -> Result<u32, i64> {
    let mnt = vfsmnt.wrapping_sub(usize::from(off!(mount_mnt)));
    facts.mnt_id = tread::<u32>(mnt, kty!(mount), off!(mount_id))?;
    let root = tptr(mnt, kty!(mount), mount_root_at())?;
    let w = unsafe { &mut *WALK_CURSOR.get_ptr_mut(0).ok_or(-1i64)? };
    *w = WalkCursor {
        mnt: mnt as u64,
        root: root as u64,
        d: dentry as u64,
        len: 0,
        ns: 0,
        flags: 0,
        end: WALKING,
        _pad: 0,
    };
    let mut at = WalkDst { dst };
    unsafe {
        aya_ebpf::helpers::generated::bpf_loop(
            WALK_DEPTH as u32,
            walk_step as *mut aya_ebpf::cty::c_void,
            (&raw mut at).cast(),
            0,
        )
    };
    match w.end {
        FAULT => return Err(-1),
        WALKING => facts.flags |= file_flags::CUT,
        _ if w.flags == 0 => {
            if w.ns == 0 || w.ns >= 0u64.wrapping_sub(MAX_ERRNO) {
                facts.flags |= file_flags::DETACHED;
            } else {
                facts.mnt_ns =
                    tread::<u32>(w.ns as *const u8, kty!(mnt_namespace), off!(mnt_ns_inum))?;
            }
        }
        _ => {}
    }
    facts.flags |= w.flags;
    Ok(verifier_mask(w.len as usize, 2 * PATH_MAX - 1) as u32)
}
