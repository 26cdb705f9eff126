//! Offsets the programs need that differ between kernels: tracepoint argument offsets (read from
//! tracefs `format` files) and `task_struct` member offsets (read from kernel BTF). User space fills
//! one [`Offsets`] at load time and sets it as the `OFFSETS` global.

/// Marks a field the running kernel does not have.
pub const ABSENT: u16 = u16::MAX;

/// Argument offsets inside tracepoint records, and `task_struct` member offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Offsets {
    pub execve_filename: u16,
    pub execve_argv: u16,
    pub execveat_fd: u16,
    pub execveat_filename: u16,
    pub execveat_argv: u16,
    pub execveat_flags: u16,
    pub openat_dfd: u16,
    pub openat_filename: u16,
    pub openat_flags: u16,
    pub openat_mode: u16,
    pub openat2_dfd: u16,
    pub openat2_filename: u16,
    pub openat2_how: u16,
    pub open_filename: u16,
    pub open_flags: u16,
    pub open_mode: u16,
    pub creat_pathname: u16,
    pub creat_mode: u16,
    pub connect_fd: u16,
    pub connect_uservaddr: u16,
    pub connect_addrlen: u16,
    /// `ret` in every `sys_exit_*` record (the same layout for all of them).
    pub sys_exit_ret: u16,
    /// `__data_loc char[] filename` in `sched_process_exec`.
    pub sched_exec_filename: u16,
    pub sched_exec_pid: u16,
    pub sched_exec_old_pid: u16,
    pub sched_fork_parent_pid: u16,
    pub sched_fork_child_pid: u16,
    pub sched_exit_pid: u16,
    /// `group_dead` in `sched_process_exit` ([`ABSENT`] before Linux 6.x added it).
    pub sched_exit_group_dead: u16,
    /// `task_struct.real_parent`.
    pub task_real_parent: u16,
    /// `task_struct.tgid`.
    pub task_tgid: u16,
    /// `task_struct.pid`.
    pub task_pid: u16,
}

impl Offsets {
    pub const UNSET: Self = Self {
        execve_filename: ABSENT,
        execve_argv: ABSENT,
        execveat_fd: ABSENT,
        execveat_filename: ABSENT,
        execveat_argv: ABSENT,
        execveat_flags: ABSENT,
        openat_dfd: ABSENT,
        openat_filename: ABSENT,
        openat_flags: ABSENT,
        openat_mode: ABSENT,
        openat2_dfd: ABSENT,
        openat2_filename: ABSENT,
        openat2_how: ABSENT,
        open_filename: ABSENT,
        open_flags: ABSENT,
        open_mode: ABSENT,
        creat_pathname: ABSENT,
        creat_mode: ABSENT,
        connect_fd: ABSENT,
        connect_uservaddr: ABSENT,
        connect_addrlen: ABSENT,
        sys_exit_ret: ABSENT,
        sched_exec_filename: ABSENT,
        sched_exec_pid: ABSENT,
        sched_exec_old_pid: ABSENT,
        sched_fork_parent_pid: ABSENT,
        sched_fork_child_pid: ABSENT,
        sched_exit_pid: ABSENT,
        sched_exit_group_dead: ABSENT,
        task_real_parent: ABSENT,
        task_tgid: ABSENT,
        task_pid: ABSENT,
    };
}
