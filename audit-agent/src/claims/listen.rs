//! Where claims come in while the daemon (or `trace`) runs, and who the kernel says sent them:
//! - a unix socket (`[claims] socket`) that `audit-agent claim` hands hook payloads to: the
//!   sender is the socket's peer (`SO_PEERCRED`: pid, uid, gid, read by the kernel at connect);
//! - an OTLP/HTTP receiver (`[claims] otlp_listen`, `POST /v1/traces`): the sender is the
//!   process that owns the other end of the TCP connection (its socket found in
//!   `/proc/net/tcp*`, its owner by the socket's inode in `/proc/*/fd`).
//!
//! Either way the payload never says who it is from: a process cannot file claims as another.
//! Each sender is held to [`Limits::per_second`] claims a second (twice that in a burst); the
//! rest are refused as a flood, counted in one rejection record per second. Every refusal gets
//! a clear error back and an `agent.claim` record of its reason.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{Request, Response, StatusCode, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    sync::{mpsc, oneshot},
};

use super::{Claim, MAX_PAYLOAD, Rejected, generic, hook, otlp};
use crate::{
    event::{ClaimRecord, ClaimSource, Timestamp},
    time,
};

/// The process the kernel says sent a claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peer {
    /// `None`: a remote sender (OTLP from another host) or one that could not be found.
    pub(crate) pid: Option<u32>,
    pub(crate) ppid: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) cgroup_id: u64,
    pub(crate) comm: Vec<u8>,
}

/// A claim (or a refusal) on its way into the trail; `ack` gets the record id once it is in.
pub(crate) struct Submitted {
    pub(crate) peer: Peer,
    pub(crate) at: Timestamp,
    pub(crate) record: ClaimRecord,
    pub(crate) ack: Option<oneshot::Sender<String>>,
}

/// How much a sender may submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) per_second: u32,
}

/// The listening side, configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimsSettings {
    pub(crate) socket: Option<PathBuf>,
    pub(crate) otlp_listen: Option<SocketAddr>,
    pub(crate) limits: Limits,
}

/// Parses a hook or generic payload.
pub(crate) fn parse(payload: &[u8]) -> Result<Claim, Rejected> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Rejected::TooLarge(payload.len()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Rejected::NotJson(e.to_string()))?;
    let digest = crate::digest::sha256_hex(payload);
    if hook::is_hook(&v) {
        hook::claim(&v, digest)
    } else if generic::is_generic(&v) {
        generic::claim(&v, digest)
    } else {
        Err(Rejected::UnknownForm(
            "a hook payload has `hook_event_name` and `tool_name`; the generic form \
             `\"claim\": \"audit-agent/v1\"`"
                .into(),
        ))
    }
}

/// Per-sender token buckets, and the floods not yet on record.
#[derive(Default)]
struct Gate {
    buckets: HashMap<Option<u32>, Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    /// Refusals not yet on record, and who they were refused to.
    flooded: u64,
    refused: Option<(Peer, Option<ClaimSource>)>,
    reported: Option<Instant>,
}

/// Refusals of a flood to put on record: the sender, the form, how many.
type Floods = Vec<(Peer, Option<ClaimSource>, u64)>;

impl Gate {
    /// Whether `peer` may submit now; when not, how many refusals to put on record now (the
    /// first of a second, with those since the last one).
    fn admit(&mut self, peer: Option<u32>, limits: Limits) -> Result<(), Option<u64>> {
        if self.buckets.len() > 65_536 {
            self.buckets.clear();
        }
        let rate = f64::from(limits.per_second.max(1));
        let now = Instant::now();
        let b = self.buckets.entry(peer).or_insert(Bucket {
            tokens: 2.0 * rate,
            last: now,
            flooded: 0,
            refused: None,
            reported: None,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(2.0 * rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        b.flooded += 1;
        if b.reported
            .is_some_and(|r| now.duration_since(r) < Duration::from_secs(1))
        {
            return Err(None);
        }
        b.reported = Some(now);
        Err(Some(std::mem::take(&mut b.flooded)))
    }

    /// Notes who a flood's latest refusal went to (the record of its count names them).
    fn refused(&mut self, peer: &Peer, source: Option<ClaimSource>) {
        if let Some(b) = self.buckets.get_mut(&peer.pid) {
            b.refused = Some((peer.clone(), source));
        }
    }

    /// Refusals to put on record now: those of senders last reported a second ago or more, or
    /// (`all`, at the end) every one.
    fn due(&mut self, all: bool) -> Floods {
        let now = Instant::now();
        let mut out = Vec::new();
        for b in self.buckets.values_mut() {
            let waited = b
                .reported
                .is_none_or(|r| now.duration_since(r) >= Duration::from_secs(1));
            if b.flooded == 0 || !(all || waited) {
                continue;
            }
            if let Some((peer, source)) = b.refused.clone() {
                b.reported = Some(now);
                out.push((peer, source, std::mem::take(&mut b.flooded)));
            }
        }
        out
    }
}

/// Claims on their way into the trail, and the counts of refused floods not yet on it.
pub(crate) struct Incoming {
    rx: mpsc::Receiver<Submitted>,
    gate: Arc<Mutex<Gate>>,
    limits: Limits,
}

impl Incoming {
    pub(crate) async fn recv(&mut self) -> Option<Submitted> {
        self.rx.recv().await
    }

    /// What is in already, and (the end) every flood refused since its last record.
    pub(crate) fn drain(&mut self) -> Vec<Submitted> {
        let mut out = Vec::new();
        while let Ok(s) = self.rx.try_recv() {
            out.push(s);
        }
        let floods = self
            .gate
            .lock()
            .map(|mut g| g.due(true))
            .unwrap_or_default();
        out.extend(floods.into_iter().map(|(peer, source, count)| Submitted {
            peer,
            at: time::now(),
            record: refusal(source, &Rejected::Flood(self.limits.per_second), count),
            ack: None,
        }));
        out
    }
}

/// Puts the counts of floods on record once a second while they last.
async fn report_floods(tx: mpsc::Sender<Submitted>, gate: Arc<Mutex<Gate>>, limits: Limits) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let due = gate.lock().map(|mut g| g.due(false)).unwrap_or_default();
        for (peer, source, count) in due {
            let record = refusal(source, &Rejected::Flood(limits.per_second), count);
            if submit(&tx, peer, record).await.is_none() {
                return;
            }
        }
    }
}

/// Starts the configured listeners; claims arrive on the returned channel.
pub(crate) async fn start(
    s: &ClaimsSettings,
    cgroup2: &crate::capture::cgroup::Cgroup2,
) -> anyhow::Result<Incoming> {
    let (tx, rx) = mpsc::channel(1024);
    let gate = Arc::new(Mutex::new(Gate::default()));
    tokio::spawn(report_floods(tx.clone(), gate.clone(), s.limits));
    let mount = cgroup2.mount().to_path_buf();
    if let Some(path) = &s.socket {
        let listener = bind_socket(path)?;
        tracing::info!(socket = %path.display(), "taking claims on a unix socket");
        tokio::spawn(serve_socket(
            listener,
            tx.clone(),
            gate.clone(),
            s.limits,
            mount.clone(),
        ));
    }
    if let Some(addr) = s.otlp_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("[claims] otlp_listen = \"{addr}\": cannot bind"))?;
        tracing::info!(%addr, "taking OTLP/HTTP tool spans on /v1/traces");
        tokio::spawn(serve_otlp(listener, tx, gate.clone(), s.limits, mount));
    }
    Ok(Incoming {
        rx,
        gate,
        limits: s.limits,
    })
}

/// Binds the claims socket (replacing a stale one) so any local process can connect: who sent
/// a claim is the kernel's to say, not the payload's.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("[claims] socket: cannot create {}", dir.display()))?;
    }
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path).with_context(|| {
        format!(
            "[claims] socket = \"{}\": cannot listen (is another audit-agent using it?)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// The kernel's view of process `pid`: its parent, cgroup and name (it is alive: it waits for
/// our answer).
fn peer_of(pid: u32, uid: u32, gid: u32, mount: &Path) -> Peer {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let cgroup_id = std::fs::read_to_string(proc.join("cgroup"))
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .and_then(|rel| std::fs::metadata(mount.join(rel.trim_start_matches('/'))).ok())
        .map_or(0, |m| m.ino());
    let stat = std::fs::read_to_string(proc.join("stat")).unwrap_or_default();
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let mut comm = std::fs::read(proc.join("comm")).unwrap_or_default();
    if comm.last() == Some(&b'\n') {
        comm.pop();
    }
    Peer {
        pid: Some(pid),
        ppid,
        uid,
        gid,
        cgroup_id,
        comm,
    }
}

/// Hands a claim or refusal to the pipeline; the record id once it is in the trail.
async fn submit(tx: &mpsc::Sender<Submitted>, peer: Peer, record: ClaimRecord) -> Option<String> {
    let (ack, done) = oneshot::channel();
    let s = Submitted {
        peer,
        at: time::now(),
        record,
        ack: Some(ack),
    };
    tx.send(s).await.ok()?;
    done.await.ok()
}

fn refusal(source: Option<ClaimSource>, e: &Rejected, count: u64) -> ClaimRecord {
    ClaimRecord::Rejected {
        source,
        reason: Arc::from(e.reason()),
        message: e.to_string(),
        count,
    }
}

/// Decides one payload: a claim in, or a refusal on record; the answer for the sender.
async fn take(
    tx: &mpsc::Sender<Submitted>,
    gate: &Mutex<Gate>,
    limits: Limits,
    peer: Peer,
    claims: Result<Vec<Claim>, Rejected>,
    source: Option<ClaimSource>,
) -> Result<Vec<String>, Rejected> {
    let admitted = gate.lock().map_or(Ok(()), |mut g| {
        let a = g.admit(peer.pid, limits);
        if a.is_err() {
            g.refused(&peer, source);
        }
        a
    });
    if let Err(report) = admitted {
        let e = Rejected::Flood(limits.per_second);
        if let Some(count) = report {
            submit(tx, peer, refusal(source, &e, count)).await;
        }
        return Err(e);
    }
    match claims {
        Ok(claims) => {
            let mut ids = Vec::new();
            for c in claims {
                ids.extend(submit(tx, peer.clone(), ClaimRecord::Claim(c)).await);
            }
            Ok(ids)
        }
        Err(e) => {
            submit(tx, peer, refusal(source, &e, 1)).await;
            Err(e)
        }
    }
}

async fn serve_socket(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<Submitted>,
    gate: Arc<Mutex<Gate>>,
    limits: Limits,
    mount: PathBuf,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (tx, gate, mount) = (tx.clone(), gate.clone(), mount.clone());
        tokio::spawn(async move {
            let Ok(cred) = stream.peer_cred() else {
                return;
            };
            let peer = match cred.pid() {
                Some(pid) => peer_of(pid as u32, cred.uid(), cred.gid(), &mount),
                None => Peer {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    ..Peer::default()
                },
            };
            let mut payload = Vec::new();
            let read = (&mut stream)
                .take(MAX_PAYLOAD as u64 + 1)
                .read_to_end(&mut payload)
                .await;
            let claims = match read {
                Err(e) => Err(Rejected::NotJson(e.to_string())),
                Ok(_) => parse(&payload).map(|c| vec![c]),
            };
            let answer = match take(&tx, &gate, limits, peer, claims, None).await {
                Ok(ids) => format!("ok {}\n", ids.join(" ")),
                Err(e) => format!("error: {e}\n"),
            };
            let _ = stream.write_all(answer.as_bytes()).await;
        });
    }
}

async fn serve_otlp(
    listener: tokio::net::TcpListener,
    tx: mpsc::Sender<Submitted>,
    gate: Arc<Mutex<Gate>>,
    limits: Limits,
    mount: PathBuf,
) {
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let local = stream.local_addr().ok();
        let (tx, gate, mount) = (tx.clone(), gate.clone(), mount.clone());
        tokio::spawn(async move {
            let peer = local
                .and_then(|l| tcp_peer(remote, l, &mount))
                .unwrap_or_default();
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (tx, gate, peer) = (tx.clone(), gate.clone(), peer.clone());
                async move { Ok::<_, Infallible>(otlp_request(req, &tx, &gate, limits, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn otlp_request(
    req: Request<hyper::body::Incoming>,
    tx: &mpsc::Sender<Submitted>,
    gate: &Mutex<Gate>,
    limits: Limits,
    peer: Peer,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/v1/traces" || req.method() != hyper::Method::POST {
        return reply(
            StatusCode::NOT_FOUND,
            "only POST /v1/traces is served here\n",
        );
    }
    let ctype = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match Limited::new(req.into_body(), MAX_PAYLOAD).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let e = Rejected::TooLarge(MAX_PAYLOAD + 1);
            let _ = take(
                tx,
                gate,
                limits,
                peer,
                Err(e.clone()),
                Some(ClaimSource::Otlp),
            )
            .await;
            return reply(StatusCode::PAYLOAD_TOO_LARGE, &format!("{e}\n"));
        }
    };
    let claims = otlp::claims(&ctype, &body);
    match take(tx, gate, limits, peer, claims, Some(ClaimSource::Otlp)).await {
        // An empty ExportTraceServiceResponse, in the encoding asked in.
        Ok(_) if ctype.starts_with("application/json") => reply(StatusCode::OK, "{}"),
        Ok(_) => reply(StatusCode::OK, ""),
        Err(e @ Rejected::Flood(_)) => reply(StatusCode::TOO_MANY_REQUESTS, &format!("{e}\n")),
        Err(e @ Rejected::ContentType(_)) => {
            reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, &format!("{e}\n"))
        }
        Err(e) => reply(StatusCode::BAD_REQUEST, &format!("{e}\n")),
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

/// The local process owning the other end of a TCP connection to us (`remote` connected to our
/// `local`): its socket's inode from `/proc/net/tcp*`, then the process holding that inode.
fn tcp_peer(remote: SocketAddr, local: SocketAddr, mount: &Path) -> Option<Peer> {
    let inode = socket_inode(remote, local)?;
    let link = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()));
        if owns {
            let meta = std::fs::metadata(entry.path()).ok()?;
            return Some(peer_of(pid, meta.uid(), meta.gid(), mount));
        }
    }
    None
}

/// The inode of the socket whose local address is `ours_remote` and remote is `ours_local` (the
/// sender's end), from `/proc/net/tcp` or `tcp6`.
fn socket_inode(sender: SocketAddr, receiver: SocketAddr) -> Option<u64> {
    let file = if sender.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let table = std::fs::read_to_string(file).ok()?;
    let (want_local, want_remote) = (proc_addr(sender), proc_addr(receiver));
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1)? == &want_local && f.get(2)? == &want_remote)
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

/// An address as `/proc/net/tcp*` writes it: the address's 32-bit words in host order, hex,
/// then `:PORT` in hex.
fn proc_addr(a: SocketAddr) -> String {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        std::net::IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_told_apart_and_bad_ones_refused_with_a_reason() {
        let hook = br#"{"hook_event_name":"PreToolUse","tool_name":"Read","tool_input":{"file_path":"/a"}}"#;
        assert_eq!(parse(hook).unwrap().source, ClaimSource::ClaudeCode);
        let generic = br#"{"claim":"audit-agent/v1","tool":"x"}"#;
        assert_eq!(parse(generic).unwrap().source, ClaimSource::Generic);
        assert_eq!(parse(b"{").unwrap_err().reason(), "not_json");
        assert_eq!(parse(br#"{"a":1}"#).unwrap_err().reason(), "unknown_form");
        let big = vec![b' '; MAX_PAYLOAD + 1];
        assert_eq!(parse(&big).unwrap_err().reason(), "too_large");
    }

    #[test]
    fn a_flood_is_refused_and_reported_once_a_second_with_its_count() {
        let mut g = Gate::default();
        let limits = Limits { per_second: 2 };
        for _ in 0..4 {
            assert_eq!(
                g.admit(Some(7), limits),
                Ok(()),
                "a burst of twice the rate"
            );
        }
        assert_eq!(
            g.admit(Some(7), limits),
            Err(Some(1)),
            "the first refusal is reported"
        );
        assert_eq!(
            g.admit(Some(7), limits),
            Err(None),
            "the next ones are counted"
        );
        assert_eq!(
            g.admit(Some(8), limits),
            Ok(()),
            "other senders are not held back"
        );
        // The counted ones go on record a second after the last report, or at the end.
        let peer = Peer {
            pid: Some(7),
            ..Peer::default()
        };
        g.refused(&peer, Some(ClaimSource::Generic));
        assert!(g.due(false).is_empty(), "not a second yet");
        assert_eq!(g.due(true), vec![(peer, Some(ClaimSource::Generic), 1)]);
        assert!(g.due(true).is_empty(), "each refusal on record once");
    }

    #[test]
    fn proc_net_tcp_addresses_are_written_as_the_kernel_writes_them() {
        assert_eq!(
            proc_addr("127.0.0.1:4318".parse().unwrap()),
            "0100007F:10DE"
        );
    }
}
