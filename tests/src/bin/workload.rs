//! A test workload: performs exactly the system calls named on its command line, in order, and
//! prints one JSON line per action with its result, so tests can compare the audit trail with
//! what really happened.
//!
//! ```text
//! workload open PATH                             openat(AT_FDCWD, PATH, O_RDONLY)
//! workload open-flags PATH FLAGS MODE             openat(AT_FDCWD, PATH, FLAGS, MODE) (octal)
//! workload openat DIR REL                         openat(open(DIR), REL, O_RDONLY)
//! workload openat2 PATH                           openat2(AT_FDCWD, PATH, {O_RDONLY})
//! workload sys-open PATH                          open(PATH, O_RDONLY)      (raw syscall)
//! workload sys-creat PATH MODE_OCTAL              creat(PATH, MODE)         (raw syscall)
//! workload connect4 IP PORT | connect6 IP PORT | connect-unix PATH
//! workload connect4-nonblock IP PORT
//! workload connect-abstract NAME | connect-abstract-dgram NAME   connect a stream (datagram) unix
//!                                                 socket to the abstract name NAME (`@NAME`);
//!                                                 reports the peer's name `getpeername` gives
//!                                                 (`peer_hex`: its `sun_path` bytes after the
//!                                                 leading NUL, hex)
//! workload setuid UID                             setgid+setuid
//! workload move-cgroup CGROUP_DIR                 write own pid to CGROUP_DIR/cgroup.procs
//! workload fork ...                               the child runs the remaining actions; the
//!                                                 parent waits for it and reports its wait
//!                                                 status (`status`)
//! workload exit CODE                              exit_group(CODE)
//! workload raise SIG                              kill(getpid(), SIG)
//! workload exit-threads LEADER OTHER FIRST        threads end one by one (SYS_exit): the
//!                                                 main thread with LEADER, a second thread
//!                                                 with OTHER; FIRST (`leader` or `other`)
//!                                                 ends first
//! workload open-many PREFIX N MS                  open PREFIX-0..PREFIX-(N-1), MS apart
//! workload hold-fds N                             open /dev/null N times and keep them open
//! workload sleep MS
//! workload block-open FIFO                        open a FIFO for reading (blocks)
//! workload exec PATH [ARGS...]                    execve(PATH, [PATH, ARGS...]) (last action)
//! workload report-maps                            report this process's executable file
//!                                                 mappings as the kernel lists them
//!                                                 (`/proc/self/maps`: start, dev, ino, path)
//! workload mmap-exec PATH | mprotect-exec PATH    map PATH's first page PROT_READ|PROT_EXEC
//!                                                 (mprotect-exec: PROT_READ, then mprotect to
//!                                                 add PROT_EXEC); reports the address (`addr`)
//!
//! Actions that try to make the record lie; each reports its own ground truth (`truth`: what
//! `/proc/self/fd/N` names, `ino`/`dev` from `fstat`, `so_error` from `getsockopt`):
//! workload open-mapped PATH                       openat with PATH in a file-backed page never
//!                                                 touched before (not resident at entry)
//! workload race-open A B N                        N opens of a buffer a second thread keeps
//!                                                 flipping between A and B
//! workload openat2-in-root DIR PATH               openat2(open(DIR), PATH, RESOLVE_IN_ROOT)
//! workload chdir DIR | chroot DIR                 chdir; chroot + chdir("/")
//! workload dup2-over PATH FD                      open PATH, dup2 it over FD
//! workload unshare-mount                          private mount namespace
//! workload bind SRC DST                           bind-mount SRC on DST
//! workload mount-overlay LOWER UPPER WORK DIR      mount an overlay of UPPER on LOWER on DIR
//! workload mount-tmpfs DIR                        mount a new tmpfs on DIR
//! workload fexecve PATH [ARGS...]                 execveat(open(PATH), "", AT_EMPTY_PATH)
//! workload memfd-exec PATH [ARGS...]              copy PATH into a memfd, execute the memfd
//! workload netns-blackhole                        own network namespace: lo up, 10.0.0.0/8
//!                                                 routed into lo (SYNs vanish)
//! workload unlink P | rmdir P | mkdir P         the file changes, by path (AT_FDCWD)
//! workload chmod P MODE | chown P UID GID | truncate P LEN | link A B | symlink CONTENT L
//! workload rename-exchange A B                    renameat2(A, B, RENAME_EXCHANGE)
//! workload renameat DIR A B                       renameat(open(DIR), A, same dirfd, B)
//! workload fchmod P MODE | ftruncate P LEN        by fd (opened first; reports its truth)
//! workload kill PID SIG                          kill(PID, SIG)
//! workload uring-open PATH | uring-unlink PATH | uring-mkdir PATH | uring-rename A B
//! workload ia32-open PATH | ia32-unlink PATH | ia32-mkdir PATH   through `int 0x80`, the path
//!                                                 in memory below 4 GiB
//! workload ia32-connect IP PORT | ia32-socketcall-connect IP PORT   the same, connect(362) and
//!                                                 socketcall(SYS_CONNECT)
//! workload ia32-call NR                           ia32 system call NR without arguments
//! workload uring-connect IP PORT | uring-sendto IP PORT     each through a new io_uring
//! workload uring-sqpoll-open PATH                 the open submitted by an SQPOLL kernel thread
//! workload udp-sendto IP PORT | udp-sendmsg IP PORT   one datagram, address in a fresh page
//! workload tfo IP PORT                            sendto(MSG_FASTOPEN) on a TCP socket
//! workload unix-sendto PATH                       a unix datagram to PATH
//! workload ptrace-peek PID                        PTRACE_ATTACH, PTRACE_PEEKDATA, PTRACE_DETACH
//! workload vm-read PID                            process_vm_readv of PID's first mapping
//! workload open-by-handle PATH                   name_to_handle_at then open_by_handle_at
//! workload getfd PID FD                           pidfd_getfd(pidfd_open(PID), FD); reports the truth
//! workload connect4-mapped IP PORT               connect with the address in a page never
//!                                                 touched before
//! workload connect4-nb-wait IP PORT SYNCNT        non-blocking connect, wait for the final
//!                                                 state; report SO_ERROR (SYNCNT 0: default)
//! workload set-exe-map PATH | set-exe-file PATH   make /proc/self/exe name PATH: replace the own
//!                                                 executable's mappings with anonymous copies,
//!                                                 then prctl(PR_SET_MM, PR_SET_MM_MAP with
//!                                                 exe_fd | PR_SET_MM_EXE_FILE); reports the exe
//!                                                 before (`was`, `was_ino`, `was_dev`) and
//!                                                 after (`truth`), and PATH's identity
//! workload fd-truth FD                            what FD names (`truth`, `ino`, `dev`)
//! workload sendfile FD OUT | copy-range FD OUT   FD's bytes into OUT (created) by sendfile,
//!                                                 copy_file_range; reports FD's truth and OUT's
//!                                                 (`to`, `to_ino`, `to_dev`)
//! workload splice FD OUT                          FD -> pipe -> OUT by two splices; reports the
//!                                                 first (into the pipe `pipe`)
//! workload mmap-write FD OUT                      mmap FD, write the mapping to OUT
//! workload recv-fd SOCK                           recvmsg one fd over unix socket SOCK
//!                                                 (SCM_RIGHTS); reports the new fd and its truth
//! ```
//! Every argument is taken as raw bytes, so non-UTF-8 paths work.

use std::{
    ffi::{CString, OsString},
    os::unix::ffi::OsStrExt as _,
};

fn c(s: &OsString) -> CString {
    CString::new(s.as_bytes()).expect("no NUL in argument")
}

fn errno() -> i64 {
    i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

fn report(action: &str, ret: i64, extra: &str) {
    let ret = if ret < 0 { -errno() } else { ret };
    // SAFETY: getpid/gettid cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    println!("{{\"action\":\"{action}\",\"ret\":{ret},\"pid\":{pid},\"tid\":{tid}{extra}}}");
}

/// The ground truth of an open fd: what `/proc/self/fd/N` names, and `fstat`'s device and inode.
fn fd_truth(fd: i64) -> String {
    if fd < 0 {
        return String::new();
    }
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    // SAFETY: fstat on an fd this process owns, into a zeroed stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    unsafe { libc::fstat(fd as i32, &mut st) };
    let truth = serde_json::to_string(&link.to_string_lossy()).expect("json");
    format!(
        ",\"truth\":{truth},\"ino\":{},\"dev\":\"{}:{}\"",
        st.st_ino,
        libc::major(st.st_dev),
        libc::minor(st.st_dev)
    )
}

/// `bytes` in a private file-backed page that nothing has touched: no page table entry exists
/// until the kernel's own copy faults it in.
unsafe fn untouched_page(bytes: &[u8]) -> *const u8 {
    // SAFETY: plain file and mapping calls; the mapping is leaked on purpose.
    unsafe {
        let backing = format!("/tmp/workload-mapped-{}-{}", libc::getpid(), libc::gettid());
        std::fs::write(&backing, bytes).expect("backing file");
        let path = CString::new(backing.clone()).expect("path");
        let f = libc::open(path.as_ptr(), libc::O_RDONLY);
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f,
            0,
        );
        libc::close(f);
        let _ = std::fs::remove_file(&backing);
        // No mapping of the page exists yet; make sure of it.
        libc::madvise(p, 4096, libc::MADV_DONTNEED);
        p.cast()
    }
}

/// `struct rtentry` of `<net/route.h>` (not in the libc crate for glibc).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

fn sockaddr_v4(ip: [u8; 4]) -> libc::sockaddr {
    let sin = sockaddr_in(&std::net::Ipv4Addr::from(ip).to_string(), 0);
    // SAFETY: sockaddr_in and sockaddr have the same size.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// A network namespace of our own whose 10.0.0.0/8 goes into `lo`, where nothing answers.
unsafe fn netns_blackhole() -> i64 {
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            return -1;
        }
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, b) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *d = *b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as i16;
        if libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) != 0 {
            return -1;
        }
        let mut dev = *b"lo\0";
        let mut rt: RtEntry = std::mem::zeroed();
        rt.rt_dst = sockaddr_v4([10, 0, 0, 0]);
        rt.rt_genmask = sockaddr_v4([255, 0, 0, 0]);
        rt.rt_flags = libc::RTF_UP;
        rt.rt_dev = dev.as_mut_ptr().cast();
        let r = libc::ioctl(s, libc::SIOCADDRT, &rt);
        libc::close(s);
        r.into()
    }
}

/// execveat(fd, "", argv, environ, AT_EMPTY_PATH).
unsafe fn exec_fd(fd: i32, argv: &[CString]) -> i64 {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    report("exec-start", 0, "");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    unsafe extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: valid NUL-terminated argv and the process's environment.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            c"".as_ptr(),
            ptrs.as_ptr(),
            environ,
            libc::AT_EMPTY_PATH,
        )
    }
}

/// [`fd_truth`] of `fd` under other names (`"to"`: `to`, `to_ino`, `to_dev`).
fn fd_truth_as(fd: i64, name: &str) -> String {
    fd_truth(fd)
        .replacen("\"truth\"", &format!("\"{name}\""), 1)
        .replacen("\"ino\"", &format!("\"{name}_ino\""), 1)
        .replacen("\"dev\"", &format!("\"{name}_dev\""), 1)
}

/// Replaces every mapping of the process's own executable with an anonymous copy at the same
/// address (the kernel refuses to replace `mm->exe_file` while the file is mapped). Each copy is
/// moved over its original by one `mremap`, so the code running it is never missing.
unsafe fn hollow_own_exe() {
    let exe = std::fs::read_link("/proc/self/exe").expect("own exe");
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let regions: Vec<(usize, usize, i32)> = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(5).map(std::path::Path::new) == Some(&exe))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (a, b) = f[0].split_once('-').expect("range");
            let perms = f[1].as_bytes();
            let prot = [
                (b'r', libc::PROT_READ),
                (b'w', libc::PROT_WRITE),
                (b'x', libc::PROT_EXEC),
            ]
            .iter()
            .zip(perms)
            .filter(|((c, _), p)| *c == **p)
            .fold(0, |acc, ((_, bit), _)| acc | bit);
            let start = usize::from_str_radix(a, 16).expect("start");
            (
                start,
                usize::from_str_radix(b, 16).expect("end") - start,
                prot,
            )
        })
        .collect();
    for (start, len, prot) in regions {
        // SAFETY: a fresh anonymous mapping, filled with the bytes of a mapping of our own, then
        // moved over it: the same bytes at the same address, no longer backed by the file.
        unsafe {
            let copy = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(copy, libc::MAP_FAILED, "mmap");
            std::ptr::copy_nonoverlapping(start as *const u8, copy.cast::<u8>(), len);
            assert_eq!(libc::mprotect(copy, len, prot), 0, "mprotect");
            let moved = libc::mremap(
                copy,
                len,
                len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                start as *mut libc::c_void,
            );
            assert_eq!(moved as usize, start, "mremap");
        }
    }
}

/// `struct prctl_mm_map` (uapi).
#[repr(C)]
struct PrctlMmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// prctl(PR_SET_MM, PR_SET_MM_MAP) with the process's own layout (as /proc/self/stat has it)
/// and `exe_fd`: only the executable changes.
unsafe fn set_exe_map(exe_fd: i32) -> i64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let rest = stat.rsplit_once(')').expect("comm").1;
    // Fields after the comm, from `state` (field 3): field n is at index n - 3.
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| f[n - 3];
    let map = PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        // SAFETY: sbrk(0) only reads the current break.
        brk: unsafe { libc::sbrk(0) } as u64,
        start_stack: field(28),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        auxv: 0,
        auxv_size: 0,
        exe_fd: exe_fd as u32,
    };
    // SAFETY: a complete prctl_mm_map of the documented size.
    unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP,
            &raw const map,
            std::mem::size_of::<PrctlMmMap>(),
            0,
        )
        .into()
    }
}

/// recvmsg of one fd (SCM_RIGHTS) on `sock`: the fd received, or -1.
unsafe fn recv_fd(sock: i32) -> i64 {
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        if libc::recvmsg(sock, &mut msg, 0) < 0 {
            return -1;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return -1;
        }
        i64::from(std::ptr::read_unaligned(
            libc::CMSG_DATA(cmsg).cast::<i32>(),
        ))
    }
}

/// OUT opened for writing (created, truncated).
fn out_file(path: &OsString) -> i32 {
    // SAFETY: a NUL-terminated path.
    unsafe {
        libc::open(
            c(path).as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )
    }
}

fn parse_octal(s: Option<&OsString>, default: u32) -> u32 {
    s.map(|v| u32::from_str_radix(&v.to_string_lossy(), 8).expect("octal"))
        .unwrap_or(default)
}

fn sockaddr_in(ip: &str, port: u16) -> libc::sockaddr_in {
    let ip: std::net::Ipv4Addr = ip.parse().expect("ipv4");
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// `bytes` copied into fresh memory below 4 GiB, where a 32-bit system call can point.
fn low_copy(bytes: &[u8]) -> u32 {
    // SAFETY: an anonymous private mapping, leaked on purpose; the copy fits in it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "mmap(MAP_32BIT)");
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.cast::<u8>(), bytes.len().min(4096));
        p as usize as u32
    }
}

/// A 32-bit system call through `int 0x80` from this 64-bit process: `nr` with three arguments.
fn int80(nr: u32, a: u32, b: u32, c: u32) -> i64 {
    let ret: i32;
    // SAFETY: the kernel reads only what the arguments point to (low memory this process owns);
    // rbx is saved around the call (LLVM reserves it), r8-r11 are clobbered by the 32-bit entry.
    unsafe {
        std::arch::asm!(
            "push rbx",
            "mov ebx, {a:e}",
            "int 0x80",
            "pop rbx",
            a = in(reg) a,
            inlateout("eax") nr as i32 => ret,
            in("ecx") b,
            in("edx") c,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    i64::from(ret)
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let cmd = args[i].to_string_lossy().into_owned();
        let arg = |k: usize| args.get(i + k).expect("missing argument");
        let text = |k: usize| arg(k).to_string_lossy().into_owned();
        // SAFETY (whole match): raw syscalls with valid, NUL-terminated paths and properly sized
        // socket addresses; results are only reported.
        unsafe {
            match cmd.as_str() {
                "open" => {
                    let fd = libc::openat(libc::AT_FDCWD, c(arg(1)).as_ptr(), libc::O_RDONLY);
                    report("open", fd.into(), &fd_truth(fd.into()));
                    i += 1;
                }
                "open-flags" => {
                    let flags = parse_octal(Some(arg(2)), 0);
                    let mode = parse_octal(Some(arg(3)), 0);
                    let fd = libc::openat(libc::AT_FDCWD, c(arg(1)).as_ptr(), flags as i32, mode);
                    report("open-flags", fd.into(), &fd_truth(fd.into()));
                    i += 3;
                }
                "openat" => {
                    let dir = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    let fd = libc::openat(dir, c(arg(2)).as_ptr(), libc::O_RDONLY);
                    report(
                        "openat",
                        fd.into(),
                        &format!(",\"dirfd\":{dir}{}", fd_truth(fd.into())),
                    );
                    i += 2;
                }
                "openat2" => {
                    let mut how: libc::open_how = std::mem::zeroed();
                    how.flags = libc::O_RDONLY as u64;
                    let fd = libc::syscall(
                        libc::SYS_openat2,
                        libc::AT_FDCWD,
                        c(arg(1)).as_ptr(),
                        &how as *const libc::open_how,
                        std::mem::size_of::<libc::open_how>(),
                    );
                    report("openat2", fd, &fd_truth(fd));
                    i += 1;
                }
                "sys-open" => {
                    let fd = libc::syscall(libc::SYS_open, c(arg(1)).as_ptr(), libc::O_RDONLY, 0);
                    report("sys-open", fd, "");
                    i += 1;
                }
                "sys-creat" => {
                    let mode = parse_octal(Some(arg(2)), 0o600);
                    let fd = libc::syscall(libc::SYS_creat, c(arg(1)).as_ptr(), mode);
                    report("sys-creat", fd, "");
                    i += 2;
                }
                "connect4" | "connect4-nonblock" => {
                    let mut ty = libc::SOCK_STREAM;
                    if cmd.ends_with("nonblock") {
                        ty |= libc::SOCK_NONBLOCK;
                    }
                    let s = libc::socket(libc::AF_INET, ty, 0);
                    let sa = sockaddr_in(&text(1), text(2).parse().expect("port"));
                    let r = libc::connect(
                        s,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    );
                    report(&cmd, r.into(), &format!(",\"fd\":{s}"));
                    i += 2;
                }
                "connect6" => {
                    let ip: std::net::Ipv6Addr = text(1).parse().expect("ipv6");
                    let s = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
                    let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                    sa.sin6_family = libc::AF_INET6 as u16;
                    sa.sin6_port = text(2).parse::<u16>().expect("port").to_be();
                    sa.sin6_addr.s6_addr = ip.octets();
                    let r = libc::connect(
                        s,
                        (&sa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as u32,
                    );
                    report("connect6", r.into(), &format!(",\"fd\":{s}"));
                    i += 2;
                }
                "connect-unix" => {
                    let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                    let mut sa: libc::sockaddr_un = std::mem::zeroed();
                    sa.sun_family = libc::AF_UNIX as u16;
                    let p = arg(1).as_bytes();
                    for (d, s) in sa.sun_path.iter_mut().zip(p) {
                        *d = *s as libc::c_char;
                    }
                    let len = (std::mem::size_of::<libc::sa_family_t>() + p.len() + 1) as u32;
                    let r = libc::connect(s, (&sa as *const libc::sockaddr_un).cast(), len);
                    report("connect-unix", r.into(), &format!(",\"fd\":{s}"));
                    i += 1;
                }
                "connect-abstract" | "connect-abstract-dgram" => {
                    let ty = if cmd.ends_with("dgram") {
                        libc::SOCK_DGRAM
                    } else {
                        libc::SOCK_STREAM
                    };
                    let s = libc::socket(libc::AF_UNIX, ty, 0);
                    let mut sa: libc::sockaddr_un = std::mem::zeroed();
                    sa.sun_family = libc::AF_UNIX as u16;
                    let p = arg(1).as_bytes();
                    for (d, s) in sa.sun_path[1..].iter_mut().zip(p) {
                        *d = *s as libc::c_char;
                    }
                    // No trailing NUL: an abstract name is exactly `addrlen` bytes.
                    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + p.len()) as u32;
                    let r = libc::connect(s, (&sa as *const libc::sockaddr_un).cast(), len);
                    let mut peer: libc::sockaddr_un = std::mem::zeroed();
                    let mut plen = std::mem::size_of::<libc::sockaddr_un>() as u32;
                    libc::getpeername(s, (&mut peer as *mut libc::sockaddr_un).cast(), &mut plen);
                    let name = plen.saturating_sub(3) as usize;
                    let hex: String = peer.sun_path[1..1 + name.min(107)]
                        .iter()
                        .map(|b| format!("{:02x}", *b as u8))
                        .collect();
                    report(
                        &cmd,
                        r.into(),
                        &format!(",\"fd\":{s},\"peer_hex\":\"{hex}\""),
                    );
                    i += 1;
                }
                "setuid" => {
                    let uid: u32 = text(1).parse().expect("uid");
                    let r = libc::setgid(uid);
                    let r2 = libc::setuid(uid);
                    report("setuid", i64::from(r.min(r2)), "");
                    i += 1;
                }
                "move-cgroup" => {
                    let procs = std::path::Path::new(arg(1)).join("cgroup.procs");
                    let r = std::fs::write(&procs, libc::getpid().to_string());
                    report("move-cgroup", if r.is_ok() { 0 } else { -1 }, "");
                    i += 1;
                }
                "fork" => {
                    let pid = libc::fork();
                    if pid == 0 {
                        i += 1;
                        continue; // the child runs the rest
                    }
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, 0);
                    report("fork", pid.into(), &format!(",\"status\":{status}"));
                    return;
                }
                "open-many" => {
                    // open PREFIX-0 .. PREFIX-(N-1), sleeping MS between opens
                    let prefix = text(1);
                    let n: u32 = text(2).parse().expect("count");
                    let ms: u64 = text(3).parse().expect("ms");
                    for k in 0..n {
                        let p = CString::new(format!("{prefix}-{k}")).expect("path");
                        let fd = libc::openat(libc::AT_FDCWD, p.as_ptr(), libc::O_RDONLY);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        if ms > 0 {
                            std::thread::sleep(std::time::Duration::from_millis(ms));
                        }
                    }
                    report("open-many", i64::from(n), "");
                    i += 3;
                }
                "hold-fds" => {
                    // Past the first 64 descriptors the kernel moves the fd table to a new
                    // allocation (`files->fdt` no longer points at the embedded one).
                    let n: u32 = text(1).parse().expect("count");
                    let held = (0..n)
                        .filter(|_| libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) >= 0)
                        .count();
                    report("hold-fds", held as i64, "");
                    i += 1;
                }
                "threads-open" => {
                    // T threads at once, each opening PREFIX-<thread>-0 .. -(N-1), in R rounds of
                    // fresh threads (so thread ids are reused and neighbours run concurrently).
                    let prefix = text(1);
                    let threads: u32 = text(2).parse().expect("threads");
                    let n: u32 = text(3).parse().expect("count");
                    let rounds: u32 = text(4).parse().expect("rounds");
                    let mut tids = Vec::new();
                    for r in 0..rounds {
                        let barrier =
                            std::sync::Arc::new(std::sync::Barrier::new(threads as usize));
                        let handles: Vec<_> = (0..threads)
                            .map(|t| {
                                let (prefix, barrier) = (prefix.clone(), barrier.clone());
                                std::thread::spawn(move || {
                                    barrier.wait();
                                    for k in 0..n {
                                        let p = CString::new(format!("{prefix}-{r}-{t}-{k}"))
                                            .expect("path");
                                        let fd = libc::openat(
                                            libc::AT_FDCWD,
                                            p.as_ptr(),
                                            libc::O_RDONLY,
                                        );
                                        if fd >= 0 {
                                            libc::close(fd);
                                        }
                                    }
                                    libc::gettid()
                                })
                            })
                            .collect();
                        tids.extend(handles.into_iter().map(|h| h.join().expect("thread")));
                    }
                    let tids: Vec<String> = tids.iter().map(|t| t.to_string()).collect();
                    report(
                        "threads-open",
                        i64::from(threads * n * rounds),
                        &format!(",\"tids\":[{}]", tids.join(",")),
                    );
                    i += 4;
                }
                "open-mapped" => {
                    // The path lives in a file-backed page nothing has touched: no page table
                    // entry exists until the kernel's own copy faults it in.
                    let mut bytes = arg(1).as_bytes().to_vec();
                    bytes.push(0);
                    let p = untouched_page(&bytes);
                    let fd = libc::openat(libc::AT_FDCWD, p.cast(), libc::O_RDONLY);
                    report("open-mapped", fd.into(), &fd_truth(fd.into()));
                    i += 1;
                }
                "race-open" => {
                    let (a, b) = (c(arg(1)), c(arg(2)));
                    let n: usize = text(3).parse().expect("count");
                    let len = a.as_bytes_with_nul().len().max(b.as_bytes_with_nul().len());
                    let buf: &'static mut [u8] = Box::leak(vec![0u8; len].into_boxed_slice());
                    buf[..a.as_bytes_with_nul().len()].copy_from_slice(a.as_bytes_with_nul());
                    let addr = buf.as_mut_ptr() as usize;
                    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let flipper = {
                        let (a, b, stop) = (a.clone(), b.clone(), stop.clone());
                        std::thread::spawn(move || {
                            let mut k = 0u64;
                            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                                let src = if k.is_multiple_of(2) { &b } else { &a };
                                let bytes = src.as_bytes_with_nul();
                                // SAFETY: the buffer is leaked and large enough; the race on
                                // its contents is the point of the test.
                                std::ptr::copy_nonoverlapping(
                                    bytes.as_ptr(),
                                    addr as *mut u8,
                                    bytes.len(),
                                );
                                k += 1;
                            }
                        })
                    };
                    let mut opens = Vec::new();
                    for _ in 0..n {
                        let fd = libc::openat(
                            libc::AT_FDCWD,
                            addr as *const libc::c_char,
                            libc::O_RDONLY,
                        );
                        let truth = fd_truth(fd.into());
                        opens.push(format!("{{\"fd\":{fd}{truth}}}"));
                        if fd >= 0 {
                            libc::close(fd);
                        }
                    }
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    flipper.join().expect("flipper");
                    report(
                        "race-open",
                        n as i64,
                        &format!(",\"opens\":[{}]", opens.join(",")),
                    );
                    i += 3;
                }
                "openat2-in-root" => {
                    let dir = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    let mut how: libc::open_how = std::mem::zeroed();
                    how.flags = libc::O_RDONLY as u64;
                    how.resolve = libc::RESOLVE_IN_ROOT;
                    let fd = libc::syscall(
                        libc::SYS_openat2,
                        dir,
                        c(arg(2)).as_ptr(),
                        &how as *const libc::open_how,
                        std::mem::size_of::<libc::open_how>(),
                    );
                    report(
                        "openat2-in-root",
                        fd,
                        &format!(",\"dirfd\":{dir}{}", fd_truth(fd)),
                    );
                    i += 2;
                }
                "chdir" => {
                    report("chdir", libc::chdir(c(arg(1)).as_ptr()).into(), "");
                    i += 1;
                }
                "chroot" => {
                    let r = libc::chroot(c(arg(1)).as_ptr());
                    let r2 = libc::chdir(c"/".as_ptr());
                    report("chroot", r.min(r2).into(), "");
                    i += 1;
                }
                "dup2-over" => {
                    let fd = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY);
                    let to: i32 = text(2).parse().expect("fd");
                    let r = libc::dup2(fd, to);
                    report("dup2-over", r.into(), &fd_truth(r.into()));
                    i += 2;
                }
                "unshare-mount" => {
                    let r = libc::unshare(libc::CLONE_NEWNS);
                    let r2 = libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    );
                    report("unshare-mount", r.min(r2).into(), "");
                }
                "bind" => {
                    let r = libc::mount(
                        c(arg(1)).as_ptr(),
                        c(arg(2)).as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    );
                    report("bind", r.into(), "");
                    i += 2;
                }
                "mount-overlay" => {
                    let opts = format!(
                        "lowerdir={},upperdir={},workdir={}",
                        text(1),
                        text(2),
                        text(3)
                    );
                    let opts = CString::new(opts).expect("options");
                    let r = libc::mount(
                        c"overlay".as_ptr(),
                        c(arg(4)).as_ptr(),
                        c"overlay".as_ptr(),
                        0,
                        opts.as_ptr().cast(),
                    );
                    report("mount-overlay", r.into(), "");
                    i += 4;
                }
                "mount-tmpfs" => {
                    let r = libc::mount(
                        c"tmpfs".as_ptr(),
                        c(arg(1)).as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    );
                    report("mount-tmpfs", r.into(), "");
                    i += 1;
                }
                "fexecve" | "memfd-exec" => {
                    let src = c(arg(1));
                    let argv: Vec<CString> = args[i + 1..].iter().map(c).collect();
                    let fd = if cmd == "fexecve" {
                        libc::open(src.as_ptr(), libc::O_RDONLY)
                    } else {
                        let m = libc::memfd_create(c"payload".as_ptr(), 0);
                        let bytes = std::fs::read(arg(1)).expect("read executable");
                        libc::write(m, bytes.as_ptr().cast(), bytes.len());
                        m
                    };
                    report(&format!("{cmd}-fd"), fd.into(), &fd_truth(fd.into()));
                    let r = exec_fd(fd, &argv);
                    report(&cmd, r, "");
                    return;
                }
                "unlink" | "rmdir" | "mkdir" => {
                    let p = c(arg(1));
                    let r = match cmd.as_str() {
                        "unlink" => libc::unlink(p.as_ptr()),
                        "rmdir" => libc::rmdir(p.as_ptr()),
                        _ => libc::mkdir(p.as_ptr(), 0o750),
                    };
                    report(&cmd, r.into(), "");
                    i += 1;
                }
                "chmod" => {
                    let r = libc::chmod(c(arg(1)).as_ptr(), parse_octal(Some(arg(2)), 0));
                    report("chmod", r.into(), "");
                    i += 2;
                }
                "chown" => {
                    // -1 leaves an id unchanged.
                    let id = |v: String| v.parse::<i64>().expect("id") as u32;
                    let (u, g) = (id(text(2)), id(text(3)));
                    let r = libc::chown(c(arg(1)).as_ptr(), u, g);
                    report("chown", r.into(), "");
                    i += 3;
                }
                "truncate" => {
                    let r = libc::truncate(c(arg(1)).as_ptr(), text(2).parse().expect("length"));
                    report("truncate", r.into(), "");
                    i += 2;
                }
                "link" | "symlink" => {
                    let (a, b) = (c(arg(1)), c(arg(2)));
                    let r = if cmd == "link" {
                        libc::link(a.as_ptr(), b.as_ptr())
                    } else {
                        libc::symlink(a.as_ptr(), b.as_ptr())
                    };
                    report(&cmd, r.into(), "");
                    i += 2;
                }
                "rename-exchange" => {
                    let r = libc::syscall(
                        libc::SYS_renameat2,
                        libc::AT_FDCWD,
                        c(arg(1)).as_ptr(),
                        libc::AT_FDCWD,
                        c(arg(2)).as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                    report("rename-exchange", r, "");
                    i += 2;
                }
                "renameat" => {
                    let dir = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    let r = libc::renameat(dir, c(arg(2)).as_ptr(), dir, c(arg(3)).as_ptr());
                    report("renameat", r.into(), &format!(",\"dirfd\":{dir}"));
                    i += 3;
                }
                "fchmod" | "ftruncate" => {
                    let fd = libc::open(c(arg(1)).as_ptr(), libc::O_RDWR);
                    let r = if cmd == "fchmod" {
                        libc::fchmod(fd, parse_octal(Some(arg(2)), 0))
                    } else {
                        libc::ftruncate(fd, text(2).parse().expect("length"))
                    };
                    report(
                        &cmd,
                        r.into(),
                        &format!(",\"fd\":{fd}{}", fd_truth(fd.into())),
                    );
                    i += 2;
                }
                "ptrace-peek" => {
                    let pid: i32 = text(1).parse().expect("pid");
                    let r = libc::ptrace(libc::PTRACE_ATTACH, pid, 0, 0);
                    report("ptrace-attach", r, "");
                    let mut status = 0;
                    libc::waitpid(pid, &mut status, libc::__WALL);
                    let r = libc::ptrace(libc::PTRACE_PEEKDATA, pid, 0, 0);
                    report("ptrace-peek", if r == -1 { -1 } else { 0 }, "");
                    let r = libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                    report("ptrace-detach", r, "");
                    i += 1;
                }
                "vm-read" => {
                    let pid: i32 = text(1).parse().expect("pid");
                    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
                    let start = maps
                        .split('-')
                        .next()
                        .and_then(|a| usize::from_str_radix(a, 16).ok())
                        .expect("a mapping");
                    let mut buf = [0u8; 8];
                    let local = libc::iovec {
                        iov_base: buf.as_mut_ptr().cast(),
                        iov_len: 8,
                    };
                    let remote = libc::iovec {
                        iov_base: start as *mut libc::c_void,
                        iov_len: 8,
                    };
                    let r = libc::process_vm_readv(pid, &local, 1, &remote, 1, 0);
                    report("vm-read", r as i64, "");
                    i += 1;
                }
                "open-by-handle" => {
                    let path = c(arg(1));
                    // struct file_handle { u32 handle_bytes; int handle_type; u8 f_handle[]; }
                    let mut h = [0u8; 8 + 128];
                    h[..4].copy_from_slice(&128u32.to_ne_bytes());
                    let mut mount_id = 0i32;
                    let r = libc::syscall(
                        libc::SYS_name_to_handle_at,
                        libc::AT_FDCWD,
                        path.as_ptr(),
                        h.as_mut_ptr(),
                        &mut mount_id as *mut i32,
                        0,
                    );
                    assert_eq!(r, 0, "name_to_handle_at");
                    let mount_fd = libc::open(c"/".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    let fd = libc::syscall(
                        libc::SYS_open_by_handle_at,
                        mount_fd,
                        h.as_ptr(),
                        libc::O_RDONLY,
                    );
                    report("open-by-handle", fd, &fd_truth(fd));
                    i += 1;
                }
                "getfd" => {
                    let pid: i64 = text(1).parse().expect("pid");
                    let fd: i64 = text(2).parse().expect("fd");
                    let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
                    let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0);
                    report("getfd", got, &fd_truth(got));
                    i += 2;
                }
                "udp-sendto" | "udp-sendmsg" | "tfo" => {
                    let sa = sockaddr_in(&text(1), text(2).parse().expect("port"));
                    let bytes = std::slice::from_raw_parts(
                        (&raw const sa).cast::<u8>(),
                        std::mem::size_of::<libc::sockaddr_in>(),
                    );
                    let p = untouched_page(bytes);
                    let ty = if cmd == "tfo" {
                        libc::SOCK_STREAM
                    } else {
                        libc::SOCK_DGRAM
                    };
                    let s = libc::socket(libc::AF_INET, ty, 0);
                    let data = b"x";
                    let r = if cmd == "udp-sendmsg" {
                        let mut iov = libc::iovec {
                            iov_base: data.as_ptr() as *mut _,
                            iov_len: 1,
                        };
                        let mut msg: libc::msghdr = std::mem::zeroed();
                        msg.msg_name = p as *mut libc::c_void;
                        msg.msg_namelen = bytes.len() as u32;
                        msg.msg_iov = &mut iov;
                        msg.msg_iovlen = 1;
                        libc::sendmsg(s, &msg, 0)
                    } else {
                        let flags = if cmd == "tfo" { libc::MSG_FASTOPEN } else { 0 };
                        libc::sendto(
                            s,
                            data.as_ptr().cast(),
                            1,
                            flags,
                            p.cast(),
                            bytes.len() as u32,
                        )
                    };
                    report(&cmd, r as i64, "");
                    i += 2;
                }
                "ia32-open" | "ia32-unlink" | "ia32-mkdir" => {
                    let mut path = arg(1).as_bytes().to_vec();
                    path.push(0);
                    let p = low_copy(&path);
                    // open(path, O_RDONLY), unlink(path), mkdir(path, 0750): ia32 5, 10, 39.
                    let r = match cmd.as_str() {
                        "ia32-open" => int80(5, p, 0, 0),
                        "ia32-unlink" => int80(10, p, 0, 0),
                        _ => int80(39, p, 0o750, 0),
                    };
                    let extra = if cmd == "ia32-open" {
                        fd_truth(r)
                    } else {
                        String::new()
                    };
                    println!(
                        "{{\"action\":\"{cmd}\",\"ret\":{r},\"pid\":{},\"tid\":{}{extra}}}",
                        libc::getpid(),
                        libc::gettid()
                    );
                    i += 1;
                }
                "ia32-execve" => {
                    // execve(path, [path, NULL], NULL): on success this process is gone.
                    let mut path = arg(1).as_bytes().to_vec();
                    path.push(0);
                    let p = low_copy(&path);
                    let argv: Vec<u8> = [p, 0].iter().flat_map(|w| w.to_ne_bytes()).collect();
                    let r = int80(11, p, low_copy(&argv), 0);
                    // The raw result (-errno): not the libc convention `report` expects.
                    println!(
                        "{{\"action\":\"ia32-execve\",\"ret\":{r},\"pid\":{},\"tid\":{}}}",
                        libc::getpid(),
                        libc::gettid()
                    );
                    i += 1;
                }
                "ia32-call" => {
                    let r = int80(text(1).parse().expect("ia32 number"), 0, 0, 0);
                    report("ia32-call", r, "");
                    i += 1;
                }
                "ia32-connect" | "ia32-socketcall-connect" => {
                    let sa = sockaddr_in(&text(1), text(2).parse().expect("port"));
                    let len = std::mem::size_of::<libc::sockaddr_in>();
                    let bytes = std::slice::from_raw_parts((&raw const sa).cast::<u8>(), len);
                    let addr = low_copy(bytes);
                    let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    let r = if cmd == "ia32-connect" {
                        int80(362, s as u32, addr, len as u32)
                    } else {
                        // socketcall(SYS_CONNECT, [fd, addr, len])
                        let args: Vec<u8> = [s as u32, addr, len as u32]
                            .iter()
                            .flat_map(|w| w.to_ne_bytes())
                            .collect();
                        int80(102, 3, low_copy(&args), 0)
                    };
                    println!(
                        "{{\"action\":\"{cmd}\",\"ret\":{r},\"pid\":{},\"tid\":{},\"fd\":{s}}}",
                        libc::getpid(),
                        libc::gettid()
                    );
                    i += 2;
                }
                "unix-sendto" => {
                    let s = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0);
                    let mut sa: libc::sockaddr_un = std::mem::zeroed();
                    sa.sun_family = libc::AF_UNIX as u16;
                    let p = arg(1).as_bytes();
                    for (d, s) in sa.sun_path.iter_mut().zip(p) {
                        *d = *s as libc::c_char;
                    }
                    let len = (std::mem::size_of::<libc::sa_family_t>() + p.len() + 1) as u32;
                    let r =
                        libc::sendto(s, b"x".as_ptr().cast(), 1, 0, (&raw const sa).cast(), len);
                    report("unix-sendto", r as i64, "");
                    i += 1;
                }
                c if c.starts_with("uring-") => {
                    let (ret, extra, used) = uring_action(c, &args[i + 1..]);
                    report(c, ret, &extra);
                    i += used;
                }
                "exit" => {
                    libc::syscall(libc::SYS_exit_group, text(1).parse::<i64>().expect("code"));
                }
                "raise" => {
                    let sig: i32 = text(1).parse().expect("signal");
                    libc::kill(libc::getpid(), sig);
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    report("raise", -1, "");
                    i += 1;
                }
                "exit-threads" => {
                    let leader: i64 = text(1).parse().expect("code");
                    let other: i64 = text(2).parse().expect("code");
                    let leader_first = text(3) == "leader";
                    let status =
                        || std::fs::read_to_string("/proc/self/status").unwrap_or_default();
                    std::thread::spawn(move || {
                        // Until the main thread is a zombie, when it goes first.
                        while leader_first && !status().contains("State:\tZ") {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                        libc::syscall(libc::SYS_exit, other);
                    });
                    // Until the second thread is gone, when it goes first.
                    while !leader_first && !status().contains("Threads:\t1\n") {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    libc::syscall(libc::SYS_exit, leader);
                }
                "kill" => {
                    let pid: i32 = text(1).parse().expect("pid");
                    let sig: i32 = text(2).parse().expect("signal");
                    report("kill", libc::kill(pid, sig).into(), "");
                    i += 2;
                }
                "connect4-mapped" => {
                    let sa = sockaddr_in(&text(1), text(2).parse().expect("port"));
                    let bytes = std::slice::from_raw_parts(
                        (&raw const sa).cast::<u8>(),
                        std::mem::size_of::<libc::sockaddr_in>(),
                    );
                    let p = untouched_page(bytes);
                    let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                    let r = libc::connect(s, p.cast(), bytes.len() as u32);
                    report("connect4-mapped", r.into(), &format!(",\"fd\":{s}"));
                    i += 2;
                }
                "netns-blackhole" => {
                    report("netns-blackhole", netns_blackhole(), "");
                }
                "connect4-nb-wait" => {
                    let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
                    let syncnt: i32 = text(3).parse().expect("syncnt");
                    if syncnt > 0 {
                        libc::setsockopt(
                            s,
                            libc::IPPROTO_TCP,
                            libc::TCP_SYNCNT,
                            (&raw const syncnt).cast(),
                            4,
                        );
                    }
                    let sa = sockaddr_in(&text(1), text(2).parse().expect("port"));
                    let r = libc::connect(
                        s,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    );
                    let ret = if r < 0 { -errno() } else { 0 };
                    let mut pfd = libc::pollfd {
                        fd: s,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    libc::poll(&mut pfd, 1, 120_000);
                    let mut err = 0i32;
                    let mut len = 4u32;
                    libc::getsockopt(
                        s,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&raw mut err).cast(),
                        &mut len,
                    );
                    println!(
                        "{{\"action\":\"connect4-nb-wait\",\"ret\":{ret},\"pid\":{},\"tid\":{},\"fd\":{s},\"so_error\":{err}}}",
                        libc::getpid(),
                        libc::gettid()
                    );
                    i += 3;
                }
                "set-exe-map" | "set-exe-file" => {
                    let own = libc::open(c"/proc/self/exe".as_ptr(), libc::O_RDONLY);
                    let was = fd_truth_as(own.into(), "was");
                    libc::close(own);
                    let new = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY);
                    let new_truth = fd_truth_as(new.into(), "new");
                    hollow_own_exe();
                    let r = if cmd == "set-exe-map" {
                        set_exe_map(new)
                    } else {
                        libc::prctl(libc::PR_SET_MM, libc::PR_SET_MM_EXE_FILE, new, 0, 0).into()
                    };
                    libc::close(new);
                    let now = std::fs::read_link("/proc/self/exe").unwrap_or_default();
                    let now = serde_json::to_string(&now.to_string_lossy()).expect("json");
                    report(
                        &cmd,
                        r,
                        &format!(",\"fd\":{new},\"truth\":{now}{was}{new_truth}"),
                    );
                    i += 1;
                }
                "fd-truth" => {
                    let fd: i64 = text(1).parse().expect("fd");
                    report("fd-truth", fd, &fd_truth(fd));
                    i += 1;
                }
                "sendfile" | "copy-range" | "splice" | "mmap-write" => {
                    let fd: i32 = text(1).parse().expect("fd");
                    let out = out_file(arg(2));
                    let mut st: libc::stat = std::mem::zeroed();
                    libc::fstat(fd, &mut st);
                    let len = st.st_size as usize;
                    let mut off: libc::off64_t = 0;
                    let mut extra = String::new();
                    let r: i64 = match cmd.as_str() {
                        "sendfile" => libc::sendfile64(out, fd, &mut off, len) as i64,
                        "copy-range" => {
                            libc::copy_file_range(fd, &mut off, out, std::ptr::null_mut(), len, 0)
                                as i64
                        }
                        "splice" => {
                            let mut p = [0i32; 2];
                            libc::pipe(p.as_mut_ptr());
                            let n = libc::splice(fd, &mut off, p[1], std::ptr::null_mut(), len, 0);
                            if n > 0 {
                                libc::splice(
                                    p[0],
                                    std::ptr::null_mut(),
                                    out,
                                    std::ptr::null_mut(),
                                    n as usize,
                                    0,
                                );
                            }
                            extra = fd_truth_as(p[1].into(), "pipe");
                            n as i64
                        }
                        _ => {
                            let map = libc::mmap(
                                std::ptr::null_mut(),
                                len,
                                libc::PROT_READ,
                                libc::MAP_PRIVATE,
                                fd,
                                0,
                            );
                            libc::write(out, map, len) as i64
                        }
                    };
                    let truth = fd_truth(fd.into());
                    let to = fd_truth_as(out.into(), "to");
                    report(
                        &cmd,
                        r,
                        &format!(",\"fd\":{fd},\"out_fd\":{out}{truth}{to}{extra}"),
                    );
                    i += 2;
                }
                "recv-fd" => {
                    let sock: i32 = text(1).parse().expect("socket fd");
                    let got = recv_fd(sock);
                    report("recv-fd", got, &fd_truth(got));
                    i += 1;
                }
                "report-maps" => {
                    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
                    let exec: Vec<String> = maps
                        .lines()
                        .filter_map(|l| {
                            let f: Vec<&str> = l.split_whitespace().collect();
                            let (range, perms, dev, ino) = (f[0], f[1], f[3], f[4]);
                            (perms.contains('x') && ino != "0").then(|| {
                                let start = range.split('-').next().unwrap_or("");
                                let path = serde_json::to_string(f.get(5).unwrap_or(&""))
                                    .expect("json");
                                format!(
                                    "{{\"start\":\"0x{start}\",\"dev\":\"{dev}\",\"ino\":{ino},\"path\":{path}}}"
                                )
                            })
                        })
                        .collect();
                    report("report-maps", 0, &format!(",\"maps\":[{}]", exec.join(",")));
                }
                "mmap-exec" | "mprotect-exec" => {
                    let fd = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY);
                    let first = if cmd == "mmap-exec" {
                        libc::PROT_READ | libc::PROT_EXEC
                    } else {
                        libc::PROT_READ
                    };
                    let p = libc::mmap(std::ptr::null_mut(), 4096, first, libc::MAP_PRIVATE, fd, 0);
                    let mut r = if p == libc::MAP_FAILED { -1 } else { 0 };
                    if r == 0 && cmd == "mprotect-exec" {
                        r = libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC);
                    }
                    report(
                        &cmd,
                        r.into(),
                        &format!(",\"addr\":\"{:#x}\"{}", p as usize, fd_truth(fd.into())),
                    );
                    i += 1;
                }
                "sleep" => {
                    std::thread::sleep(std::time::Duration::from_millis(
                        text(1).parse().expect("ms"),
                    ));
                    i += 1;
                }
                "block-open" => {
                    report("block-open-start", 0, "");
                    let fd = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY);
                    report("block-open", fd.into(), "");
                    i += 1;
                }
                "exec" => {
                    let path = c(arg(1));
                    let argv: Vec<CString> = args[i + 1..].iter().map(c).collect();
                    let mut ptrs: Vec<*const libc::c_char> =
                        argv.iter().map(|a| a.as_ptr()).collect();
                    ptrs.push(std::ptr::null());
                    report("exec-start", 0, "");
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                    let r = libc::execv(path.as_ptr(), ptrs.as_ptr());
                    report("exec", r.into(), "");
                    return;
                }
                other => panic!("unknown action {other}"),
            }
        }
        i += 1;
    }
}

/// Runs one request through a new io_uring (SQPOLL for `uring-sqpoll-*`); returns (result, report
/// extra, arguments used).
fn uring_action(cmd: &str, rest: &[OsString]) -> (i64, String, usize) {
    use io_uring::{IoUring, opcode, types};
    let text = |k: usize| rest[k].to_string_lossy().into_owned();
    let mut ring = if cmd.starts_with("uring-sqpoll") {
        IoUring::builder().setup_sqpoll(1000).build(8)
    } else {
        IoUring::new(8)
    }
    .expect("io_uring");
    let cwd = types::Fd(libc::AT_FDCWD);
    // Keep whatever a request points to alive until it completes.
    let (path, path2) = (c(&rest[0]), rest.get(1).map(c));
    let (entry, used, sock) = match cmd {
        "uring-open" | "uring-sqpoll-open" => (
            opcode::OpenAt::new(cwd, path.as_ptr())
                .flags(libc::O_RDONLY)
                .build(),
            1,
            -1,
        ),
        "uring-unlink" => (opcode::UnlinkAt::new(cwd, path.as_ptr()).build(), 1, -1),
        "uring-mkdir" => (
            opcode::MkDirAt::new(cwd, path.as_ptr()).mode(0o750).build(),
            1,
            -1,
        ),
        "uring-rename" => (
            opcode::RenameAt::new(cwd, path.as_ptr(), cwd, path2.as_ref().expect("B").as_ptr())
                .build(),
            2,
            -1,
        ),
        "uring-connect" | "uring-sendto" => {
            let sa = Box::leak(Box::new(sockaddr_in(
                &text(0),
                text(1).parse().expect("port"),
            )));
            let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
            if cmd == "uring-connect" {
                // SAFETY: a plain socket.
                let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
                let e = opcode::Connect::new(
                    types::Fd(s),
                    (sa as *const libc::sockaddr_in).cast(),
                    len,
                )
                .build();
                (e, 2, s)
            } else {
                // SAFETY: a plain socket.
                let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
                let iov = Box::leak(Box::new(libc::iovec {
                    iov_base: b"x".as_ptr() as *mut libc::c_void,
                    iov_len: 1,
                }));
                // SAFETY: an all-zero msghdr is valid.
                let msg: &mut libc::msghdr = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
                msg.msg_name = (sa as *mut libc::sockaddr_in).cast();
                msg.msg_namelen = len;
                msg.msg_iov = iov;
                msg.msg_iovlen = 1;
                (opcode::SendMsg::new(types::Fd(s), msg).build(), 2, s)
            }
        }
        other => panic!("unknown io_uring action {other}"),
    };
    // SAFETY: everything the request points to outlives its completion (waited for below).
    unsafe {
        ring.submission()
            .push(&entry.user_data(42))
            .expect("submission queue")
    };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let cqe = ring.completion().next().expect("a completion");
    let res = i64::from(cqe.result());
    let extra = if cmd.ends_with("open") {
        fd_truth(res)
    } else {
        format!(",\"fd\":{sock}")
    };
    (res, extra, used)
}
