//! Kernel programs of audit-agent.
//!
//! One file per hook family: `exec.rs` (execve, execveat, sched_process_exec), `open.rs` (openat,
//! openat2, open, creat), `connect.rs` (connect, and the cgroup `connect4/6` programs that see
//! the kernel's copy of the address), `sock.rs` (the final state of non-blocking connects),
//! `files.rs` (file changes without an open: unlink, rename, truncate, chmod, chown, link,
//! symlink, mkdir, rmdir), `fds.rs` (files held when a process is first seen, received over unix
//! sockets, copied by sendfile/splice/copy_file_range), `prctl.rs` (executables replaced with
//! `PR_SET_MM`), `mmap.rs` (files mapped executable: what the dynamic loader run as a program
//! maps) and `lifecycle.rs` (fork, exit). Entries are per-call tracepoints; every return passes
//! one raw `sys_exit` program (`sys_exit.rs`) that tail-calls the family's exit program for the
//! record the thread has in flight, or `compat.rs`'s for a 32-bit call. Each entry point is a thin `#[tracepoint]` (or raw tracepoint,
//! cgroup program) that calls a `try_*` function returning `Result`.
//!
//! Shared pieces: `maps.rs` (every map), `filter.rs` (is this task watched?), `pending.rs` (the
//! per-thread slot where a record is assembled between syscall entry and exit), `sections.rs`
//! (what it carries beyond its fixed part: paths, argv, kernel paths), `emit.rs` (its end: the
//! acting executable and the way into the ring buffer), `vfs.rs` (files, inodes and the kernel path walk), `offsets.rs` (tracepoint
//! and kernel struct offsets set by user space at load time).
// The programs only exist for the bpf target; on the host (e.g. `cargo test --workspace`) this
// crate is an empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Inline BPF assembly (one atomic add in lifecycle.rs).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code, unused_imports))]

mod access;
mod compat;
mod connect;
mod emit;
mod exec;
mod fd_walks;
mod fds;
mod files;
mod filter;
mod finish;
mod helpers;
mod lifecycle;
mod maps;
mod mmap;
mod offsets;
mod open;
mod packet;
mod pending;
mod prctl;
mod sections;
mod send;
mod sock;
mod socket;
mod sys_exit;
mod uring;
mod vfs;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it is never executed.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
