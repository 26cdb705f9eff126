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
//! workload setuid UID                             setgid+setuid
//! workload move-cgroup CGROUP_DIR                 write own pid to CGROUP_DIR/cgroup.procs
//! workload fork ...                               the child runs the remaining actions; the
//!                                                 parent waits for it
//! workload open-many PREFIX N MS                  open PREFIX-0..PREFIX-(N-1), MS apart
//! workload sleep MS
//! workload block-open FIFO                        open a FIFO for reading (blocks)
//! workload exec PATH [ARGS...]                    execve(PATH, [PATH, ARGS...]) (last action)
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
                    report("open", fd.into(), "");
                    i += 1;
                }
                "open-flags" => {
                    let flags = parse_octal(Some(arg(2)), 0);
                    let mode = parse_octal(Some(arg(3)), 0);
                    let fd = libc::openat(libc::AT_FDCWD, c(arg(1)).as_ptr(), flags as i32, mode);
                    report("open-flags", fd.into(), "");
                    i += 3;
                }
                "openat" => {
                    let dir = libc::open(c(arg(1)).as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
                    let fd = libc::openat(dir, c(arg(2)).as_ptr(), libc::O_RDONLY);
                    report("openat", fd.into(), &format!(",\"dirfd\":{dir}"));
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
                    report("openat2", fd, "");
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
                    report("fork", pid.into(), "");
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
