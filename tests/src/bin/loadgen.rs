//! Load generator for `cargo xtask bench`: tight, timed loops of one operation, or a paced
//! stream at a target rate.
//!
//! ```text
//! loadgen loop open FILE ITERS        openat(FILE, O_RDONLY) + close, ITERS times
//! loadgen loop connect PORT ITERS     socket + connect(127.0.0.1:PORT) (closed port) + close
//! loadgen loop forkexec ITERS         fork + execve(/bin/true) + waitpid
//! loadgen time OP ARG MS               like `loop`, for MS milliseconds instead of a count; OP
//!                                      also `tcp` (a 64 KiB write on a loopback TCP connection a
//!                                      thread of this process drains) or `udp_rr` (a 64-byte UDP
//!                                      request and its echo from a thread of this process),
//!                                      or `open_paced` (openat+close at PACE a second in bursts
//!                                      of BURST, timed inside the bursts only: what each call
//!                                      costs while a tracer's reader keeps up)
//! loadgen rate FILE EVENTS_PER_S SECS  openat+close paced to EVENTS_PER_S (0 = as fast as possible)
//! loadgen agents CGROUPS N EVENTS_PER_S SECS FILE EXEC_EVERY_MS
//!                                      N processes, the i-th in cgroup CGROUPS/a<i, 4 digits>, each
//!                                      opening FILE at EVENTS_PER_S and fork+exec'ing /bin/true
//!                                      every EXEC_EVERY_MS (0: never)
//! ```
//! Prints one JSON line: `{"op":..,"iters":..,"ns_per_op":..,"events":..,"secs":..}`.

use std::{
    ffi::CString,
    time::{Duration, Instant},
};

fn open_close(path: &CString) {
    // SAFETY: valid NUL-terminated path.
    unsafe {
        let fd = libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

fn connect_closed(port: u16) {
    // SAFETY: plain socket calls with a properly sized sockaddr_in.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        libc::connect(
            s,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        libc::close(s);
    }
}

/// One system call no tracer records (getppid): what every call of every process on the host pays.
fn other_syscall() {
    // SAFETY: getppid has no arguments and cannot fail; called directly (no libc caching).
    unsafe {
        libc::syscall(libc::SYS_getppid);
    }
}

fn fork_exec() {
    let path = c"/bin/true";
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: the child only calls execv and _exit.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::execv(path.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

/// How often a process of `agents` wakes up to catch up with its schedule.
const AGENT_TICK: Duration = Duration::from_millis(100);

/// One agent of `agents`: moves itself into its cgroup, then opens `path` at `rate` per second
/// and fork+execs every `exec_every` (if any) until `end`. Returns (opens, execs).
fn agent(
    procs: &std::path::Path,
    path: &CString,
    rate: f64,
    end: Instant,
    exec_every: Option<Duration>,
    phase: Duration,
) -> (u64, u64) {
    std::fs::write(procs, b"0").expect("join the agent's cgroup");
    let start = Instant::now();
    std::thread::sleep(phase);
    let (mut opens, mut execs) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= end {
            return (opens, execs);
        }
        let el = (now - start).as_secs_f64();
        while (opens as f64) < el * rate {
            open_close(path);
            opens += 1;
        }
        if let Some(every) = exec_every
            && (execs as f64) < el / every.as_secs_f64()
        {
            fork_exec();
            execs += 1;
        }
        std::thread::sleep(AGENT_TICK);
    }
}

/// `agents`: one process per agent cgroup, each paced; their totals summed.
fn agents(args: &[String]) {
    let dir = std::path::PathBuf::from(&args[0]);
    let n: usize = args[1].parse().expect("agents");
    let rate: f64 = args[2].parse().expect("rate");
    let secs: f64 = args[3].parse().expect("secs");
    let path = CString::new(args[4].as_str()).expect("path");
    let exec_ms: u64 = args[5].parse().expect("exec every ms");
    let exec_every = (exec_ms > 0).then(|| Duration::from_millis(exec_ms));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let mut fds = [0i32; 2];
        // SAFETY: pipe into a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
        // Spread the agents' wake-ups over the tick.
        let phase = AGENT_TICK.mul_f64(i as f64 / n as f64);
        let procs = dir.join(format!("a{i:04}")).join("cgroup.procs");
        // SAFETY: this process is single-threaded; the child only runs `agent` and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let (o, e) = agent(&procs, &path, rate, end, exec_every, phase);
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&o.to_le_bytes());
            b[8..].copy_from_slice(&e.to_le_bytes());
            // SAFETY: writing our own buffer to our pipe, then exiting without unwinding.
            unsafe {
                libc::write(fds[1], b.as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        // SAFETY: closing the parent's copy of the write end.
        unsafe { libc::close(fds[1]) };
        children.push((pid, fds[0]));
    }
    let (mut opens, mut execs) = (0u64, 0u64);
    for (pid, fd) in children {
        let mut b = [0u8; 16];
        // SAFETY: reading into our buffer from our pipe; waiting for our child.
        unsafe {
            if libc::read(fd, b.as_mut_ptr().cast(), 16) == 16 {
                opens += u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                execs += u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
            }
            libc::close(fd);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "{{\"op\":\"agents\",\"agents\":{n},\"events\":{opens},\"execs\":{execs},\"secs\":{el:.3},\"events_per_s\":{:.0}}}",
        opens as f64 / el
    );
}

/// A loopback TCP connection to a thread that reads and discards; each call writes 64 KiB.
fn tcp_stream() -> Box<dyn Fn()> {
    use std::io::{Read as _, Write as _};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 16];
        while s.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    let s = std::net::TcpStream::connect(addr).expect("connect");
    let chunk = vec![0x5au8; 1 << 16];
    Box::new(move || (&s).write_all(&chunk).expect("write"))
}

/// A connected UDP socket and a thread that echoes; each call is one 64-byte round trip.
fn udp_rr() -> Box<dyn Fn()> {
    let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], peer);
        }
    });
    let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.connect(addr).expect("connect");
    let msg = [0x5au8; 64];
    Box::new(move || {
        let mut buf = [0u8; 2048];
        c.send(&msg).expect("send");
        c.recv(&mut buf).expect("recv");
    })
}

/// Calls a second of `open_paced` (see the module docs): far below what the daemon reads in a
/// second (section 2 of docs/benchmarks.md), so its ring buffer stays nearly empty.
const PACE: u64 = 100_000;
/// Calls per timed burst of `open_paced`.
const BURST: u64 = 50;

/// Runs `f` for `budget` at [`PACE`] calls a second, [`BURST`] at a time (after a tenth of the
/// budget of warm-up at the same pace); returns the calls timed and the time spent in them.
fn paced(f: impl Fn(), budget: Duration) -> (u64, Duration) {
    let run = |budget: Duration| {
        let start = Instant::now();
        let (mut n, mut busy) = (0u64, Duration::ZERO);
        while start.elapsed() < budget {
            let t = Instant::now();
            for _ in 0..BURST {
                f();
            }
            busy += t.elapsed();
            n += BURST;
            let due = start + Duration::from_nanos(n * 1_000_000_000 / PACE);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        (n, busy)
    };
    run(budget / 10);
    run(budget)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| panic!("missing argument {i}: see --help in the source"))
    };
    match arg(0).as_str() {
        "loop" => {
            let op = arg(1);
            let (iters, f): (u64, Box<dyn Fn()>) = match op.as_str() {
                "open" => {
                    let p = CString::new(arg(2)).expect("path");
                    (
                        arg(3).parse().expect("iters"),
                        Box::new(move || open_close(&p)),
                    )
                }
                "connect" => {
                    let port: u16 = arg(2).parse().expect("port");
                    (
                        arg(3).parse().expect("iters"),
                        Box::new(move || connect_closed(port)),
                    )
                }
                "forkexec" => (arg(2).parse().expect("iters"), Box::new(fork_exec)),
                "syscall" => (arg(2).parse().expect("iters"), Box::new(other_syscall)),
                other => panic!("unknown op {other}"),
            };
            // Warm up caches and page tables first.
            for _ in 0..(iters / 20).max(1) {
                f();
            }
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let ns = t.elapsed().as_nanos() as f64 / iters as f64;
            println!("{{\"op\":\"{op}\",\"iters\":{iters},\"ns_per_op\":{ns:.1}}}");
        }
        "time" if arg(1) == "open_paced" => {
            let p = CString::new(arg(2)).expect("path");
            let budget = Duration::from_millis(arg(3).parse().expect("ms"));
            let (n, busy) = paced(|| open_close(&p), budget);
            let ns = busy.as_nanos() as f64 / n as f64;
            println!("{{\"op\":\"open_paced\",\"iters\":{n},\"ns_per_op\":{ns:.1}}}");
        }
        "time" => {
            let op = arg(1);
            let f: Box<dyn Fn()> = match op.as_str() {
                "open" => {
                    let p = CString::new(arg(2)).expect("path");
                    Box::new(move || open_close(&p))
                }
                "connect" => {
                    let port: u16 = arg(2).parse().expect("port");
                    Box::new(move || connect_closed(port))
                }
                "forkexec" => Box::new(fork_exec),
                "syscall" => Box::new(other_syscall),
                "tcp" => tcp_stream(),
                "udp_rr" => udp_rr(),
                other => panic!("unknown op {other}"),
            };
            let budget = Duration::from_millis(arg(3).parse().expect("ms"));
            let warm = Instant::now();
            while warm.elapsed() < budget / 10 {
                f();
            }
            let t = Instant::now();
            let mut n: u64 = 0;
            while t.elapsed() < budget {
                for _ in 0..16 {
                    f();
                }
                n += 16;
            }
            let ns = t.elapsed().as_nanos() as f64 / n as f64;
            println!("{{\"op\":\"{op}\",\"iters\":{n},\"ns_per_op\":{ns:.1}}}");
        }
        "rate" => {
            let p = CString::new(arg(1)).expect("path");
            let rate: f64 = arg(2).parse().expect("rate");
            let secs: f64 = arg(3).parse().expect("secs");
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(secs);
            let mut n: u64 = 0;
            if rate <= 0.0 {
                while Instant::now() < end {
                    for _ in 0..256 {
                        open_close(&p);
                    }
                    n += 256;
                }
            } else {
                // Paced in small bursts: every 1 ms, catch up to where the schedule says.
                let per_ns = rate / 1e9;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    let due = ((now - start).as_nanos() as f64 * per_ns) as u64;
                    while n < due {
                        open_close(&p);
                        n += 1;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            let el = start.elapsed().as_secs_f64();
            println!(
                "{{\"op\":\"rate\",\"events\":{n},\"secs\":{el:.3},\"events_per_s\":{:.0}}}",
                n as f64 / el
            );
        }
        "agents" => agents(&args[1..]),
        other => panic!("unknown mode {other}"),
    }
}
