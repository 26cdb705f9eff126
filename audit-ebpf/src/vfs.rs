//! What the kernel acted on, read from its own objects: the `struct file` behind an fd, its inode
//! (device, inode number, mode, links), and its path built from the dentry and mount chain.
//!
//! The path walk follows `d_parent` up to the root of each mount and crosses to the mount it is
//! mounted on (`mnt_mountpoint`, `mnt_parent`) until the root of the mount namespace — not the
//! task's root, so a chroot's files are named by their real path. It writes the components leaf
//! first, each NUL-terminated, into a bounded area; user space reverses them. `bpf_d_path` is
//! not allowed in tracepoints, so this is the walk Tetragon and Tracee do, bounded by
//! [`WALK_DEPTH`] steps and [`PATH_MAX`] bytes, with explicit flags when it is cut.

use audit_common::event::{FileFacts, NAME_READ, PATH_MAX, WALK_DEPTH, file_flags};
use aya_ebpf::helpers::bpf_get_current_task;

use crate::{
    offsets::{Block, kptr, kread, off},
    pending::{read_kernel_str, verifier_mask},
};

/// `MNT_NS_INTERNAL` and other error pointers: internal mounts have no namespace.
const MAX_ERRNO: u64 = 4095;

/// The current task.
#[inline(always)]
pub fn current_task() -> *const u8 {
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The `struct file *` of `fd` in the current task's file table.
#[inline(always)]
pub fn fd_file(fd: i64) -> Result<*const u8, i64> {
    if fd < 0 {
        return Err(-1);
    }
    let files = kptr(current_task(), off!(task_files))?;
    let fdt = kptr(files, off!(files_fdt))?;
    // `max_fds` and `fd` are the first two fields of `struct fdtable`.
    let b = Block::<2>::read(fdt, off!(fdt_max_fds))?;
    let max = b.u32(off!(fdt_max_fds))?;
    if fd >= i64::from(max) {
        return Err(-1);
    }
    let fds = b.ptr(off!(fdt_fd))?;
    kptr(fds.wrapping_add((fd as usize) * 8), 0)
}

/// Device, inode number, mode and link state of an inode.
#[inline(always)]
pub fn inode_facts(inode: *const u8, facts: &mut FileFacts) -> Result<(), i64> {
    // Superblock, number and link count lie within 40 bytes of each other (a bigger block would
    // not fit the stack of the exec program, which walks three files).
    let b = Block::<5>::read(inode, off!(inode_sb))?;
    facts.ino = b.u64(off!(inode_ino))?;
    facts.mode = kread::<u16>(inode, off!(inode_mode))?;
    let sb = b.ptr(off!(inode_sb))?;
    facts.dev = kread::<u32>(sb, off!(sb_dev))?;
    if b.u32(off!(inode_nlink))? == 0 {
        facts.flags |= file_flags::DELETED;
    }
    facts.flags |= file_flags::VALID;
    Ok(())
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
    let inode = kptr(file, off!(file_inode))?;
    inode_facts(inode, facts)?;
    path_at(file, off!(file_path))
}

/// The facts of the inode behind a dentry (for paths that are not open files: a cwd, a
/// socket's bound path).
#[inline(always)]
pub fn dentry_facts(dentry: *const u8, facts: &mut FileFacts) -> Result<(), i64> {
    let inode = kptr(dentry, off!(dentry_inode))?;
    inode_facts(inode, facts)
}

/// Walks from `dentry` (reached through `vfsmnt`) to the root of its mount namespace, writing
/// components leaf first into `dst` (which has room for [`audit_common::event::WALK_MAX`]
/// bytes). Sets `mnt_id`, `mnt_ns` and the cut/detached flags of `facts`. Returns the bytes
/// written.
#[inline(always)]
pub fn walk(
    dentry: *const u8,
    vfsmnt: *const u8,
    dst: *mut u8,
    facts: &mut FileFacts,
) -> Result<u32, i64> {
    let mount_off = usize::from(off!(mount_mnt));
    let mut mnt = vfsmnt.wrapping_sub(mount_off);
    facts.mnt_id = kread::<u32>(mnt, off!(mount_id))?;
    let mut root = kptr(vfsmnt, off!(vfsmount_root))?;
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
            // The top of a filesystem that is not mounted where the walk came from: an
            // internal mount (pipe, socket, memfd's shmem, anonymous inode).
            facts.flags |= file_flags::DETACHED;
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
    let fs = kptr(current_task(), off!(task_fs))?;
    path_at(fs, if root { off!(fs_root) } else { off!(fs_pwd) })
}

/// The current task's executable (`mm->exe_file`); `None` for kernel threads.
#[inline(always)]
pub fn exe_file() -> Result<*const u8, i64> {
    let mm = kptr(current_task(), off!(task_mm))?;
    kptr(mm, off!(mm_exe_file))
}
