//! Real network peers for the destination-naming tests, all on loopback: a resolver (dnsmasq,
//! UDP and TCP), a TLS server (`openssl s_server`), an HTTP server (Python's `http.server`),
//! the crafted `dnsd`, and a way to run a client whose glibc resolver asks ours (a private mount
//! namespace where `/etc/resolv.conf` is the test's own).
//!
//! Every test gets its own `127.a.b.0/24` ([`Net::new`]): resolvers listen on port 53, which
//! glibc's `resolv.conf` cannot change, so tests running at once must not share an address.

use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::{Scratch, TestCgroup, Value, parse_lines, wait_until};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A test's own loopback /24 and scratch directory.
pub struct Net {
    prefix: [u8; 3],
    pub dir: Scratch,
}

impl Net {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Self {
            prefix: [127, 100 + (n % 100) as u8, (pid % 251) as u8 + 1],
            dir: Scratch::new(tag),
        }
    }

    /// `127.a.b.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.prefix[0], self.prefix[1], self.prefix[2], host)
    }

    /// A `resolv.conf` naming `nameserver` (over TCP only when `tcp`).
    pub fn resolv_conf(&self, nameserver: Ipv4Addr, tcp: bool) -> PathBuf {
        let file = self.dir.path(if tcp {
            "resolv-tcp.conf"
        } else {
            "resolv.conf"
        });
        let mut text = format!("nameserver {nameserver}\noptions attempts:1 timeout:2\n");
        if tcp {
            text.push_str("options use-vc\n");
        }
        std::fs::write(&file, text).expect("resolv.conf");
        file
    }
}

/// A child process killed on drop.
pub struct Server {
    child: Child,
}

impl Server {
    fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Self { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something answers a DNS query for `name` at `resolver:53` (asked from this,
/// unwatched, process).
pub fn wait_for_resolver(resolver: Ipv4Addr, name: &str) {
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    wait_until(&format!("a resolver at {resolver}:53"), || {
        let _ = s.send_to(&q, (resolver, 53));
        let mut buf = [0u8; 512];
        s.recv(&mut buf).is_ok()
    });
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_for_tcp(addr: SocketAddr) {
    wait_until(&format!("a server at {addr}"), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
}

/// dnsmasq on `ip:53`, UDP and TCP, answering `records` (`--host-record=NAME,IP[,IPv6]`) and
/// `cnames` (`--cname=ALIAS,TARGET`) with TTL `ttl`, nothing else (no upstream, no hosts file).
pub fn dnsmasq(ip: Ipv4Addr, records: &[&str], cnames: &[&str], ttl: u32) -> Server {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--port=53",
        "--user=root",
        "--pid-file=",
    ])
    .arg(format!("--listen-address={ip}"))
    .arg(format!("--local-ttl={ttl}"));
    for r in records {
        cmd.arg(format!("--host-record={r}"));
    }
    for c in cnames {
        cmd.arg(format!("--cname={c}"));
    }
    let server = Server::spawn(&mut cmd);
    let probe = records
        .first()
        .and_then(|r| r.split(',').next())
        .expect("a record");
    wait_for_resolver(ip, probe);
    server
}

/// `openssl s_server` on `addr` with a throwaway certificate for `cn`, answering HTTP (`-www`).
pub fn tls_server(net: &Net, addr: SocketAddr, cn: &str) -> Server {
    let (cert, key) = (net.dir.path("cert.pem"), net.dir.path("key.pem"));
    if !cert.exists() {
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl req");
        assert!(out.status.success(), "openssl req: {out:?}");
    }
    let server = Server::spawn(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(addr.to_string())
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
    );
    wait_for_tcp(addr);
    server
}

/// Python's `http.server` on `addr`, serving `dir`.
pub fn http_server(addr: SocketAddr, dir: &Path) -> Server {
    let server = Server::spawn(
        Command::new("python3")
            .args(["-m", "http.server", "--bind"])
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .arg("--directory")
            .arg(dir),
    );
    wait_for_tcp(addr);
    server
}

/// A plain TCP listener on `addr` that accepts and reads whatever comes (a server for bytes
/// that are no protocol: the test only looks at what the client sent).
pub fn sink_server(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    let l = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while std::io::Read::read(&mut s, &mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    })
}

/// The crafted DNS server of this crate (`dnsd`), on `ip:53`; started inside `cg` when given
/// (a watched process answering DNS).
pub fn dnsd(ip: Ipv4Addr, names: &[&str], cg: Option<&TestCgroup>) -> Server {
    let bin = crate::workload_bin().with_file_name("dnsd");
    let mut cmd = match cg {
        Some(cg) => cg.command(&bin),
        None => Command::new(&bin),
    };
    cmd.arg(format!("{ip}:53")).args(names);
    let server = Server::spawn(&mut cmd);
    let probe = names
        .first()
        .and_then(|n| n.split('=').next())
        .unwrap_or("probe.example");
    wait_for_resolver(ip, probe);
    server
}

/// Runs `program args` inside `cg` with `/etc/resolv.conf` replaced by `resolv` (a private
/// mount namespace), so glibc's resolver asks the test's; returns its stdout.
pub fn run_resolving(cg: &TestCgroup, resolv: &Path, program: &str, args: &[&str]) -> String {
    let out = cg
        .command("unshare")
        .args([
            "-m",
            "--",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\"",
        ])
        .arg(resolv)
        .arg(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the `netclient` of this crate inside `cg`; returns its ground-truth lines.
pub fn netclient(cg: &TestCgroup, args: &[&str]) -> Vec<Value> {
    let out = cg
        .command(crate::workload_bin().with_file_name("netclient"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run netclient");
    assert!(out.status.success(), "netclient {args:?}: {out:?}");
    parse_lines(&out.stdout)
}

/// Records of `action`, in sequence order.
pub fn of<'a>(records: &'a [Value], action: &str) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = records.iter().filter(|r| r["action"] == action).collect();
    v.sort_by_key(|r| r["seq"].as_u64());
    v
}

/// The records of `action` to `ip:port`.
pub fn to<'a>(records: &'a [Value], action: &str, ip: &str, port: u16) -> Vec<&'a Value> {
    of(records, action)
        .into_iter()
        .filter(|r| r["resource"]["address"] == ip && r["resource"]["port"] == port)
        .collect()
}
