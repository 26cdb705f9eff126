//! Offsets the programs need that differ between kernels: tracepoint argument offsets (read from
//! tracefs `format` files) and kernel struct member offsets (read from kernel BTF). User space
//! fills one [`Offsets`] at load time and sets it as the `OFFSETS` global.

/// Where every `sys_enter_*` record keeps argument 0 (`args[]` of `struct syscall_trace_enter`,
/// 8 bytes each). The programs read it with plain context loads, whose offset the verifier takes
/// only as a constant in the instruction (not from `.rodata`); user space refuses a kernel whose
/// `format` files say otherwise.
pub const SYS_ENTER_ARG0: u16 = 16;

/// Marks a field the running kernel does not have.
pub const ABSENT: u16 = u16::MAX;

/// Declares [`Offsets`] and its all-`ABSENT` value from one list of fields.
macro_rules! offsets {
    ($($(#[$doc:meta])* $field:ident,)*) => {
        /// Argument offsets inside tracepoint records, and kernel struct member offsets.
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct Offsets {
            $($(#[$doc])* pub $field: u16,)*
        }

        impl Offsets {
            pub const UNSET: Self = Self { $($field: ABSENT,)* };
        }
    };
}

offsets! {
    execve_filename,
    execve_argv,
    execveat_fd,
    execveat_filename,
    execveat_argv,
    execveat_flags,
    openat2_dfd,
    openat2_filename,
    openat2_how,
    open_filename,
    open_flags,
    open_mode,
    creat_pathname,
    creat_mode,
    connect_fd,
    connect_uservaddr,
    connect_addrlen,
    /// The first argument of a `sys_enter_*` record; argument `i` is at `sys_enter_args + 8 i`
    /// (the layout of every syscall tracepoint; user space checks each one it attaches).
    sys_enter_args,
    sched_exit_pid,
    /// `group_dead` in `sched_process_exit` ([`ABSENT`] before Linux 6.x added it).
    sched_exit_group_dead,
    /// `io_uring:io_uring_submit_req` (`req`, `user_data`, `opcode`), `io_uring_complete`
    /// (`req`, `user_data`, `res`), `io_uring_create` (`fd`, `sq_entries`, `cq_entries`,
    /// `flags`).
    uring_submit_req,
    uring_submit_user_data,
    uring_submit_opcode,
    uring_complete_req,
    uring_complete_user_data,
    uring_complete_res,
    uring_create_fd,
    uring_create_sq,
    uring_create_cq,
    uring_create_flags,
    /// `io_kiocb`: `flags`, `cqe` (`io_cqe.fd` at 12), `async_data`.
    kiocb_flags,
    kiocb_cqe,
    kiocb_async_data,
    /// The prepared request, at the start of `io_kiocb` (`cmd`): `io_open.{dfd, file_slot,
    /// filename, how}`, `io_rename.{old_dfd, new_dfd, oldpath, newpath, flags}` (`io_link` has
    /// the same layout), `io_unlink.{dfd, flags, filename}`, `io_mkdir.{dfd, mode, filename}`,
    /// `io_ftrunc.len`.
    io_open_dfd,
    io_open_file_slot,
    io_open_filename,
    io_open_how,
    io_rename_old_dfd,
    io_rename_new_dfd,
    io_rename_oldpath,
    io_rename_newpath,
    io_rename_flags,
    io_unlink_dfd,
    io_unlink_flags,
    io_unlink_filename,
    io_mkdir_dfd,
    io_mkdir_mode,
    io_mkdir_filename,
    io_ftrunc_len,
    /// `io_async_msghdr`: `msg.msg_name` (non-null: a destination was given), `addr`.
    msghdr_async_name,
    msghdr_async_addr,
    /// `io_connect.addr_len`.
    io_connect_addr_len,
    /// `task_struct.thread_info.status` (x86: `TS_COMPAT` while a 32-bit system call runs) and
    /// the `pt_regs` of the call's number (`orig_ax`) and of the six ia32 argument registers
    /// (`bx`, `cx`, `dx`, `si`, `di`, `bp`). [`ABSENT`] where compat calls are not watched (no
    /// such fields: other architectures).
    task_ts_status,
    regs_orig_ax,
    regs_bx,
    regs_cx,
    regs_dx,
    regs_si,
    regs_di,
    regs_bp,
    /// `cgroup:cgroup_attach_task`: the hierarchy, the destination, the task, its path.
    cgroup_attach_root,
    cgroup_attach_id,
    cgroup_attach_pid,
    cgroup_attach_path,
    task_real_parent,
    /// `task_struct.exit_code` (set before `sched_process_exit` fires) and `signal`;
    /// `signal_struct.flags` and `group_exit_code`.
    task_exit_code,
    task_signal,
    signal_flags,
    signal_group_exit_code,
    /// `task_struct.thread_pid`; `pid.level`, `pid.numbers` (`upid.nr` at 0).
    task_thread_pid,
    /// `inode.i_private` (a pidfd's `struct pid` on pidfs, Linux >= 6.9).
    inode_private,
    pid_level,
    pid_numbers,
    task_tgid,
    task_pid,
    /// `task_struct.files`, `.fs`, `.mm`.
    task_files,
    task_fs,
    task_mm,
    /// `files_struct.fdt`, `fdtable.fd`, `fdtable.max_fds`, `fdtable.open_fds`.
    files_fdt,
    fdt_fd,
    fdt_max_fds,
    fdt_open_fds,
    /// `fs_struct.root`, `fs_struct.pwd` (each a `struct path`).
    fs_root,
    fs_pwd,
    /// `struct path`: `.mnt`, `.dentry`.
    path_mnt,
    path_dentry,
    /// `file.f_path`, `.f_inode`, `.f_flags`, `.private_data`.
    file_path,
    file_inode,
    file_flags,
    file_private_data,
    /// `dentry.d_parent`, `.d_name` (a `qstr`), `.d_inode`; `qstr.name`.
    dentry_parent,
    dentry_name,
    dentry_inode,
    qstr_name,
    /// `inode.i_ino`, `.i_sb`, `.i_mode`, `.__i_nlink`; `super_block.s_dev`.
    inode_ino,
    inode_sb,
    inode_mode,
    inode_nlink,
    sb_dev,
    /// `super_block.s_magic` (overlayfs' files are told by it).
    sb_magic,
    /// overlayfs: `ovl_inode.vfs_inode` (the inode it embeds), `.__upperdentry`, `.oe`;
    /// `ovl_entry.__numlower`, `.__lowerstack` (an array of `ovl_path`), `ovl_path.dentry`.
    /// [`ABSENT`] when the kernel's BTF has no overlayfs (not built, or a module): files under an
    /// overlay are then named by the overlay alone.
    ovl_inode_vfs,
    ovl_inode_upper,
    ovl_inode_oe,
    ovl_entry_numlower,
    ovl_entry_lowerstack,
    ovl_path_dentry,
    /// `vfsmount.mnt_root`; `mount.mnt` (the embedded vfsmount), `.mnt_parent`,
    /// `.mnt_mountpoint`, `.mnt_id`, `.mnt_ns`; `mnt_namespace.ns` + `ns_common.inum`.
    vfsmount_root,
    mount_mnt,
    mount_parent,
    mount_mountpoint,
    mount_id,
    mount_ns,
    mnt_ns_inum,
    /// `mm_struct.exe_file`, `.arg_start`, `.arg_end`, `.saved_auxv`.
    mm_exe_file,
    mm_arg_start,
    mm_arg_end,
    mm_saved_auxv,
    /// `vm_area_struct.vm_start`, `.vm_end`, `.vm_flags`, `.vm_file`.
    vma_start,
    vma_end,
    vma_flags,
    vma_file,
    /// `linux_binprm.file`, `.filename`, `.interp`.
    bprm_file,
    bprm_filename,
    bprm_interp,
    /// `socket.sk`; `sock.__sk_common.skc_family`, `sock.sk_err`; `unix_sock.path`, `.peer`, `.addr`; `unix_address.len`,
    /// `.name`.
    socket_sk,
    sock_family,
    sock_err,
    unix_path,
    unix_peer,
    unix_addr,
    unix_address_len,
    unix_address_name,
}

/// The call number the programs use for the kernel function `bpf_rdonly_cast` (6.2): aya-ebpf
/// cannot emit a call of a kernel function (a kfunc call names it by its id in the kernel's BTF),
/// so the programs call this number and user space rewrites each such call, before loading, into
/// the kfunc call (`capture/kfunc.rs`). No helper has this number.
pub const RDONLY_CAST_MARKER: u32 = 0x7fff_0001;

/// The running kernel's BTF type ids of the structs path walks read through `bpf_rdonly_cast`:
/// a pointer cast to one of them is read with plain loads, which the JIT turns into single
/// instructions, instead of a `bpf_probe_read_kernel` call each. All 0 when the kernel lacks the
/// kfunc: the walks then read with helper calls, and the cast calls are never reached.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelTypes {
    pub dentry: u32,
    pub mount: u32,
    pub file: u32,
    pub inode: u32,
    pub super_block: u32,
    pub mnt_namespace: u32,
}

impl KernelTypes {
    pub const NONE: Self = Self {
        dentry: 0,
        mount: 0,
        file: 0,
        inode: 0,
        super_block: 0,
        mnt_namespace: 0,
    };
}
