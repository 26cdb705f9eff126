//! The benchmark floor: programs that return immediately, attached to the same hooks as the
//! real ones (`cargo xtask bench` measures what merely enabling these tracepoints costs).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

use aya_ebpf::{
    macros::{cgroup_skb, cgroup_sock_addr, raw_tracepoint, sock_ops, tracepoint},
    programs::{
        RawTracePointContext, SkBuffContext, SockAddrContext, SockOpsContext, TracePointContext,
    },
};

macro_rules! empty {
    ($($name:ident),* $(,)?) => {$(
        #[tracepoint]
        pub fn $name(_ctx: TracePointContext) -> u32 {
            0
        }
    )*};
}

empty!(
    sys_enter_execve,
    sys_enter_execveat,
    sys_enter_openat,
    sys_enter_openat2,
    sys_enter_open,
    sys_enter_creat,
    sys_enter_open_by_handle_at,
    sys_enter_ptrace,
    sys_enter_process_vm_readv,
    sys_enter_process_vm_writev,
    sys_enter_pidfd_getfd,
    sys_enter_sendto,
    sys_enter_sendmsg,
    sys_enter_sendmmsg,
    sys_enter_connect,
    sched_process_exit,
    cgroup_attach_task,
    cgroup_changed,
    io_uring_submit_req,
    io_uring_complete,
    io_uring_create,
    sys_enter_unlink,
    sys_enter_unlinkat,
    sys_enter_rmdir,
    sys_enter_rename,
    sys_enter_renameat,
    sys_enter_renameat2,
    sys_enter_truncate,
    sys_enter_ftruncate,
    sys_enter_chmod,
    sys_enter_fchmod,
    sys_enter_fchmodat,
    sys_enter_fchmodat2,
    sys_enter_chown,
    sys_enter_lchown,
    sys_enter_fchown,
    sys_enter_fchownat,
    sys_enter_link,
    sys_enter_linkat,
    sys_enter_symlink,
    sys_enter_symlinkat,
    sys_enter_mkdir,
    sys_enter_mkdirat,
    sys_enter_prctl,
    sys_enter_recvmsg,
    sys_enter_recvmmsg,
    sys_enter_sendfile64,
    sys_enter_splice,
    sys_enter_copy_file_range,
    sys_enter_mmap,
    sys_enter_mprotect,
);

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(_ctx: RawTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(_ctx: RawTracePointContext) -> i32 {
    0
}

#[sock_ops]
pub fn connect_states(_ctx: SockOpsContext) -> u32 {
    1
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(_ctx: RawTracePointContext) -> i32 {
    0
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(_ctx: SockAddrContext) -> i32 {
    1
}

#[cgroup_skb(egress)]
pub fn packet_egress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cgroup_skb(ingress)]
pub fn packet_ingress(_ctx: SkBuffContext) -> i32 {
    1
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
