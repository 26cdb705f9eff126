//! The network side of the workload: DNS queries and the first bytes of TCP connections, sent
//! exactly as a test asks, each reported as one JSON line of ground truth (what was sent, from
//! which local port, what came back) that tests compare records with.
//!
//! - `dns RESOLVER NAME TYPE udp|tcp|uring`: one query (id from the pid), its answer read;
//!   `{"id", "local_port", "bytes", "answer_ips"}`. `uring` sends the query with an io_uring
//!   `SENDMSG`, so no send system call of the process carries it.
//! - `hello ADDR PORT SNI PIECES [ech]`: a TLS ClientHello padded to about 2 KiB (what
//!   post-quantum key shares make of it), written in `PIECES` writes with pauses between them
//!   (TCP_NODELAY: one segment each); `ech` adds an `encrypted_client_hello` extension.
//! - `raw ADDR PORT TEXT`: `TEXT` as bytes (`\r`, `\n` and `\xHH` escapes understood).
//! - `long-get ADDR PORT N`: `GET /` followed by `N` bytes of target, then ` HTTP/1.1`.
//!
//! TCP commands report `{"local_port", "remote"}`. Addresses may be IPv4 or IPv6.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    time::Duration,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args[0].as_str() {
        "dns" => dns(&args[1], &args[2], &args[3], &args[4]),
        "hello" => {
            let bytes = records(&hello(&args[3], args.get(5).is_some_and(|a| a == "ech")));
            tcp(&args[1], &args[2], &bytes, args[4].parse().expect("pieces"));
        }
        "raw" => tcp(&args[1], &args[2], &unescape(&args[3]), 1),
        "long-get" => {
            let mut b = b"GET /".to_vec();
            b.extend(std::iter::repeat_n(b'a', args[3].parse().expect("N")));
            b.extend_from_slice(b" HTTP/1.1\r\nHost: long.example\r\n\r\n");
            tcp(&args[1], &args[2], &b, 1);
        }
        other => panic!("unknown command {other}"),
    }
}

/// `\r`, `\n` and `\xHH` escapes of a command-line argument.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let (byte, len) = match (b[i], b.get(i + 1)) {
            (b'\\', Some(b'r')) => (b'\r', 2),
            (b'\\', Some(b'n')) => (b'\n', 2),
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                (u8::from_str_radix(hex, 16).expect("hex"), 4)
            }
            (c, _) => (c, 1),
        };
        out.push(byte);
        i += len;
    }
    out
}

fn addr(ip: &str, port: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port.parse().expect("port"))
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0]);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

fn dns(resolver: &str, name: &str, qtype: &str, how: &str) {
    let id = std::process::id() as u16;
    let qtype: u16 = match qtype {
        "AAAA" => 28,
        _ => 1,
    };
    let q = query(id, name, qtype);
    let server = addr(resolver, "53");
    let (local_port, answer) = match how {
        "tcp" => {
            let mut s = TcpStream::connect(server).expect("connect");
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend(q);
            s.write_all(&framed).expect("send");
            let mut len = [0u8; 2];
            s.read_exact(&mut len).expect("length");
            let mut a = vec![0; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut a).expect("answer");
            (s.local_addr().expect("local").port(), a)
        }
        _ => {
            let bind = if server.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = UdpSocket::bind(bind).expect("bind");
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            if how == "uring" {
                uring_send(&s, &q, server);
            } else {
                s.send_to(&q, server).expect("send");
            }
            let mut buf = vec![0u8; 65536];
            let n = s.recv(&mut buf).expect("answer");
            buf.truncate(n);
            (s.local_addr().expect("local").port(), buf)
        }
    };
    println!(
        "{{\"id\":{id},\"local_port\":{local_port},\"bytes\":{},\"answer_ips\":{:?}}}",
        answer.len(),
        a_records(&answer)
    );
}

/// The A records at the end of a simple answer (16 bytes each: pointer, type, class, ttl, len,
/// address), as the client saw them.
fn a_records(answer: &[u8]) -> Vec<String> {
    let count = answer
        .get(6..8)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let n = usize::from(count);
    if n == 0 || answer.len() < 16 * n {
        return Vec::new();
    }
    answer[answer.len() - 16 * n..]
        .chunks(16)
        .filter(|r| r[2..4] == [0, 1] && r[10..12] == [0, 4])
        .map(|r| format!("{}.{}.{}.{}", r[12], r[13], r[14], r[15]))
        .collect()
}

/// Sends `q` to `to` through an io_uring `SENDMSG` request.
fn uring_send(s: &UdpSocket, q: &[u8], to: SocketAddr) {
    use io_uring::{IoUring, opcode, types};
    let SocketAddr::V4(v4) = to else {
        panic!("io_uring send: IPv4 only")
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(v4.ip().octets()),
        },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec {
        iov_base: q.as_ptr() as *mut libc::c_void,
        iov_len: q.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer in it outlives the request.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw const sa).cast_mut().cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    let mut ring = IoUring::new(4).expect("io_uring");
    let e = opcode::SendMsg::new(types::Fd(s.as_raw_fd()), &raw const msg).build();
    // SAFETY: the message and what it points to live until the completion is read.
    unsafe { ring.submission().push(&e).expect("queue") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let res = ring.completion().next().expect("completion").result();
    assert!(res > 0, "io_uring sendmsg: {res}");
}

fn tcp(ip: &str, port: &str, bytes: &[u8], pieces: usize) {
    let mut s = TcpStream::connect(addr(ip, port)).expect("connect");
    s.set_nodelay(true).ok();
    let size = bytes.len().div_ceil(pieces.max(1));
    for (i, chunk) in bytes.chunks(size).enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        s.write_all(chunk).expect("write");
    }
    println!(
        "{{\"local_port\":{},\"remote\":\"{}\"}}",
        s.local_addr().expect("local").port(),
        s.peer_addr().expect("peer")
    );
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let _ = s.read(&mut sink);
}

fn vec16(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

fn ext(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut v = ty.to_be_bytes().to_vec();
    v.extend(vec16(data));
    v
}

/// A ClientHello handshake message naming `sni`, about 2 KiB long.
fn hello(sni: &str, ech: bool) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend(vec16(&[0x13, 0x01, 0x13, 0x02]));
    body.extend([1, 0]);
    let mut exts = Vec::new();
    let mut sn = vec![0];
    sn.extend(vec16(sni.as_bytes()));
    exts.extend(ext(0, &vec16(&sn)));
    exts.extend(ext(16, &vec16(b"\x02h2\x08http/1.1")));
    exts.extend(ext(43, &[2, 3, 4]));
    if ech {
        exts.extend(ext(0xfe0d, &[0; 64]));
    }
    // A key share the size of X25519MLKEM768's (1216 bytes) and padding.
    exts.extend(ext(51, &vec![0x11; 1220]));
    exts.extend(ext(21, &vec![0; 600]));
    body.extend(vec16(&exts));
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    hs
}

fn records(hs: &[u8]) -> Vec<u8> {
    let mut out = vec![22, 3, 1];
    out.extend(vec16(hs));
    out
}
