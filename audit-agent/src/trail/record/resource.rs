//! `resource` of the native record, both ways: what was acted on, with where each fact came
//! from (`path_source`, `address_source`), the kernel's identity of the file (`file`), what the
//! process passed when it differs (`requested_path`, `requested_address`), and which values were
//! cut or could not be read.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{
    Bytes, ReadError, bytes, family_name, family_number,
    json::Members,
    network::{
        ClaimOut, DestinationOut, DnsOut, HostOut, HttpOut, TlsOut, claim_in, claim_out,
        destination_in, destination_out, dns_in, dns_out, http_in, http_out, tls_in, tls_out,
    },
};
use crate::{
    escape::Escaped,
    event::{
        Access, AccessKind, Action, Change, ChangeFlags, Detail, ExitStatus, Field, FileCopy,
        FileId, FileRef, Ia32Call, Interpreter, KernelFile, MapExec, PassedAddr, PathSource,
        RealFile, RealRoot, Requested, Resource, SetExe, Stacked, Target, UringRef,
    },
    linux,
    time::{from_millis, millis},
};

/// `resource.file`: the kernel's identity of the file acted on, as written (no allocation).
pub(super) struct FileOut<'a> {
    /// `major:minor`.
    dev: Option<Short>,
    ino: Option<u64>,
    mount_id: Option<u32>,
    mount_ns: Option<u32>,
    kind: Option<&'static str>,
    /// Permission bits, octal.
    mode: Option<Short>,
    flags: Vec<&'static str>,
    /// `file.real`: the file under an overlay file.
    real: Option<RealOut<'a>>,
}

/// `resource.file.real`: the real file under an overlayfs file (and `real.origin`, the lower
/// file an upper one was copied up from).
pub(super) struct RealOut<'a> {
    path: Bytes<'a>,
    path_root: &'static str,
    layer: &'static str,
    id: IdOut,
    flags: Vec<&'static str>,
    origin: Option<Box<RealOut<'a>>>,
}

impl<'a> RealOut<'a> {
    fn of(r: &'a RealFile) -> Self {
        Self {
            path: Bytes(&r.path),
            path_root: match r.root {
                RealRoot::Host => "host",
                RealRoot::Filesystem => "filesystem",
            },
            layer: if r.upper { "upper" } else { "lower" },
            id: IdOut::of(&r.id),
            flags: flag_names([(r.deleted, "deleted"), (r.cut, "path_cut")]),
            origin: r.origin.as_deref().map(|o| Box::new(Self::of(o))),
        }
    }

    fn write(&self, o: &mut impl Members) {
        o.bytes("path", self.path.0);
        o.str("path_root", self.path_root);
        o.str("layer", self.layer);
        o.str("dev", self.id.dev.as_str());
        o.u64("ino", self.id.ino);
        if let Some(k) = self.id.kind {
            o.str("type", k);
        }
        o.str("mode", self.id.mode.as_str());
        if !self.flags.is_empty() {
            o.strings("flags", &self.flags);
        }
        if let Some(origin) = &self.origin {
            let mut obj = o.object("origin");
            origin.write(&mut obj);
            obj.close();
        }
    }
}

/// A file's device, inode, type and permission bits.
struct IdOut {
    /// `major:minor`.
    dev: Short,
    ino: u64,
    kind: Option<&'static str>,
    /// Permission bits, octal.
    mode: Short,
}

impl IdOut {
    fn of(id: &FileId) -> Self {
        Self {
            dev: Short::new(format_args!("{}:{}", id.dev_major, id.dev_minor)),
            ino: id.ino,
            kind: FILE_TYPES
                .iter()
                .find(|(t, _)| id.mode & 0o170000 == *t)
                .map(|(_, n)| *n),
            mode: Short::new(format_args!("{:04o}", id.mode & 0o7777)),
        }
    }
}

impl FileOut<'_> {
    fn write(&self, o: &mut impl Members) {
        if let Some(d) = &self.dev {
            o.str("dev", d.as_str());
        }
        if let Some(n) = self.ino {
            o.u64("ino", n);
        }
        if let Some(n) = self.mount_id {
            o.u64("mount_id", n.into());
        }
        if let Some(n) = self.mount_ns {
            o.u64("mount_ns", n.into());
        }
        if let Some(k) = self.kind {
            o.str("type", k);
        }
        if let Some(m) = &self.mode {
            o.str("mode", m.as_str());
        }
        if !self.flags.is_empty() {
            o.strings("flags", &self.flags);
        }
        if let Some(r) = &self.real {
            let mut real = o.object("real");
            r.write(&mut real);
            real.close();
        }
    }
}

/// `resource.file` as read back.
#[derive(Deserialize, Default, Clone)]
pub(super) struct FileIn {
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    ino: Option<u64>,
    #[serde(default)]
    mount_id: Option<u32>,
    #[serde(default)]
    mount_ns: Option<u32>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    real: Option<Box<RealIn>>,
}

/// `resource.file.real` (and its `origin`) as read back.
#[derive(Deserialize, Default, Clone)]
pub(super) struct RealIn {
    path: String,
    #[serde(default)]
    path_root: Option<String>,
    #[serde(default)]
    layer: Option<String>,
    #[serde(default)]
    origin: Option<Box<RealIn>>,
    #[serde(flatten)]
    id: FileIn,
}

impl RealIn {
    fn file(&self) -> RealFile {
        RealFile {
            path: bytes(&self.path),
            root: match self.path_root.as_deref() {
                Some("host") => RealRoot::Host,
                _ => RealRoot::Filesystem,
            },
            id: id_in(&self.id).unwrap_or_default(),
            upper: self.layer.as_deref() == Some("upper"),
            deleted: self.id.flags.iter().any(|x| x == "deleted"),
            cut: self.id.flags.iter().any(|x| x == "path_cut"),
            origin: self.origin.as_deref().map(|o| Box::new(o.file())),
        }
    }
}

/// Short text formatted on the stack (a device number, a mode), serialized as a string.
pub(super) struct Short {
    buf: [u8; 24],
    len: usize,
}

impl Short {
    fn new(args: std::fmt::Arguments<'_>) -> Self {
        let mut s = Self {
            buf: [0; 24],
            len: 0,
        };
        // What this module formats fits: two u32 and a colon, or four octal digits.
        let _ = std::fmt::Write::write_fmt(&mut s, args);
        s
    }
}

impl std::fmt::Write for Short {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        self.buf
            .get_mut(self.len..end)
            .ok_or(std::fmt::Error)?
            .copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Short {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

const FILE_TYPES: [(u16, &str); 7] = [
    (0o100000, "file"),
    (0o040000, "directory"),
    (0o120000, "symlink"),
    (0o140000, "socket"),
    (0o010000, "fifo"),
    (0o020000, "char_device"),
    (0o060000, "block_device"),
];

/// The names of the flags that are set.
fn flag_names<const N: usize>(flags: [(bool, &'static str); N]) -> Vec<&'static str> {
    flags
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
}

fn file_out(k: &KernelFile) -> FileOut<'_> {
    let flags = flag_names([
        (k.deleted, "deleted"),
        (k.detached, "detached"),
        (k.cut, "path_cut"),
        (k.stacked.is_some(), "stacked"),
    ]);
    let real = k.real().map(RealOut::of);
    let Some(id) = k.id else {
        return FileOut {
            dev: None,
            ino: None,
            mount_id: None,
            mount_ns: None,
            kind: None,
            mode: None,
            flags,
            real,
        };
    };
    let IdOut {
        dev,
        ino,
        kind,
        mode,
    } = IdOut::of(&id);
    FileOut {
        dev: Some(dev),
        ino: Some(ino),
        mount_id: Some(id.mount_id),
        mount_ns: id.mount_ns,
        kind,
        mode: Some(mode),
        flags,
        real,
    }
}

/// A file's identity as stored (`dev`, `ino`, `type`, `mode`; mount when given).
fn id_in(f: &FileIn) -> Option<FileId> {
    f.ino.map(|ino| {
        let (major, minor) = f
            .dev
            .as_deref()
            .and_then(|d| d.split_once(':'))
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .unwrap_or((0, 0));
        let kind = f
            .kind
            .as_deref()
            .and_then(|k| FILE_TYPES.iter().find(|(_, n)| *n == k))
            .map_or(0, |(t, _)| *t);
        let perms = f
            .mode
            .as_deref()
            .and_then(|m| u16::from_str_radix(m, 8).ok())
            .unwrap_or(0);
        FileId {
            dev_major: major,
            dev_minor: minor,
            ino,
            mount_id: f.mount_id.unwrap_or(0),
            mount_ns: f.mount_ns,
            mode: kind | perms,
        }
    })
}

fn file_in(path: Vec<u8>, f: &FileIn) -> KernelFile {
    let has = |n: &str| f.flags.iter().any(|x| x == n);
    KernelFile {
        path,
        id: id_in(f),
        deleted: has("deleted"),
        detached: has("detached"),
        cut: has("path_cut"),
        stacked: has("stacked").then(|| match &f.real {
            Some(r) => Stacked::Real(Box::new(r.file())),
            None => Stacked::Unreadable,
        }),
    }
}

pub(super) struct InterpreterOut<'a> {
    shebang: Bytes<'a>,
    path: Option<Bytes<'a>>,
    file: Option<FileOut<'a>>,
}

#[derive(Serialize)]
pub(super) struct CompletionOut {
    syscall_retval: i64,
    /// Attempt to final state, when it was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    after_ms: Option<f64>,
    waited_ms: f64,
}

/// `resource`, as written by [`ResourceOut::write`] (field order is the wire order).
#[derive(Default)]
pub(super) struct ResourceOut<'a> {
    path: Option<Option<Bytes<'a>>>,
    path_source: Option<&'static str>,
    requested_path: Option<Bytes<'a>>,
    /// Where the requested path was read, when not the process's memory at entry.
    requested_path_read: Option<&'static str>,
    file: Option<FileOut<'a>>,
    interpreter: Option<Box<InterpreterOut<'a>>>,
    argv: Option<Option<Vec<Bytes<'a>>>>,
    argv_source: Option<&'static str>,
    flags: Option<Vec<Cow<'static, str>>>,
    mode: Option<String>,
    resolve: Option<Vec<Cow<'static, str>>>,
    prot: Option<Vec<Cow<'static, str>>>,
    loader: Option<bool>,
    dirfd: Option<i32>,
    family: Option<Cow<'static, str>>,
    address: Option<Option<String>>,
    port: Option<u16>,
    address_source: Option<&'static str>,
    requested_address: Option<String>,
    destination: Option<Box<DestinationOut>>,
    exec_id: Option<&'a str>,
    new_path: Option<Option<Bytes<'a>>>,
    new_path_source: Option<&'static str>,
    requested_new_path: Option<Bytes<'a>>,
    symlink_content: Option<Bytes<'a>>,
    owner: Option<OwnerOut>,
    length: Option<u64>,
    fd: Option<i32>,
    cgroup: Option<Bytes<'a>>,
    cgroup_id: Option<u64>,
    pid: Option<u32>,
    signal: Option<Cow<'static, str>>,
    exit_code: Option<u8>,
    core_dumped: Option<bool>,
    access: Option<&'static str>,
    io_uring: Option<UringOut<'static>>,
    ia32: Option<Ia32Out>,
    sq_entries: Option<u32>,
    cq_entries: Option<u32>,
    setup_flags: Option<Vec<Cow<'static, str>>>,
    ptrace_request: Option<Cow<'static, str>>,
    addr: Option<String>,
    pid_source: Option<&'static str>,
    pid_namespace: Option<&'static str>,
    target_exec_id: Option<&'a str>,
    target_agent: Option<&'a str>,
    delivery: Option<Cow<'static, str>>,
    origin: Option<&'static str>,
    dns: Option<Box<DnsOut>>,
    tls: Option<Box<TlsOut>>,
    http: Option<Box<HttpOut>>,
    claim: Option<Box<ClaimOut>>,
    prctl: Option<&'static str>,
    previous_path: Option<Bytes<'a>>,
    previous_file: Option<Box<FileOut<'a>>>,
    replacements: Option<u32>,
    before_watch: bool,
    socket_fd: Option<i32>,
    to_fd: Option<i32>,
    to_path: Option<Option<Bytes<'a>>>,
    to_file: Option<Box<FileOut<'a>>>,
    truncated: Vec<&'static str>,
    unreadable: Vec<&'static str>,
}

/// Writes `name` when present.
fn put_text(o: &mut impl Members, name: &'static str, v: Option<&str>) {
    if let Some(t) = v {
        o.str(name, t);
    }
}

/// Writes `name` when present.
fn put_bytes(o: &mut impl Members, name: &'static str, v: &Option<Bytes<'_>>) {
    if let Some(b) = v {
        o.bytes(name, b.0);
    }
}

/// Writes `name` when present, as null when `Some(None)`.
fn put_nullable_bytes(o: &mut impl Members, name: &'static str, v: &Option<Option<Bytes<'_>>>) {
    if let Some(v) = v {
        o.opt_bytes(name, v.as_ref().map(|b| b.0));
    }
}

/// Writes `name` when present.
fn put_strings(o: &mut impl Members, name: &'static str, v: &Option<Vec<Cow<'static, str>>>) {
    if let Some(list) = v {
        o.strings(name, list);
    }
}

/// Writes `name` when present.
fn put_int(o: &mut impl Members, name: &'static str, v: Option<i64>) {
    if let Some(n) = v {
        o.i64(name, n);
    }
}

impl ResourceOut<'_> {
    /// Writes the members that are present, in field order (`None`: absent; `Some(None)`: null).
    pub(super) fn write(&self, o: &mut impl Members) -> serde_json::Result<()> {
        self.write_file(o)?;
        self.write_destination(o)?;
        self.write_change(o)?;
        self.write_process(o)?;
        self.write_wire(o)
    }

    /// The file or executable acted on: path, kernel file, interpreter, arguments, flags.
    fn write_file(&self, o: &mut impl Members) -> serde_json::Result<()> {
        put_nullable_bytes(o, "path", &self.path);
        put_text(o, "path_source", self.path_source);
        put_bytes(o, "requested_path", &self.requested_path);
        put_text(o, "requested_path_read", self.requested_path_read);
        if let Some(f) = &self.file {
            let mut file = o.object("file");
            f.write(&mut file);
            file.close();
        }
        if let Some(i) = &self.interpreter {
            let mut int = o.object("interpreter");
            int.bytes("shebang", i.shebang.0);
            if let Some(p) = &i.path {
                int.bytes("path", p.0);
            }
            if let Some(f) = &i.file {
                let mut file = int.object("file");
                f.write(&mut file);
                file.close();
            }
            int.close();
        }
        if let Some(argv) = &self.argv {
            match argv {
                Some(args) => o.bytes_list("argv", args.iter().map(|a| a.0)),
                None => o.null("argv"),
            }
        }
        put_text(o, "argv_source", self.argv_source);
        put_strings(o, "flags", &self.flags);
        put_text(o, "mode", self.mode.as_deref());
        put_strings(o, "resolve", &self.resolve);
        put_strings(o, "prot", &self.prot);
        if let Some(l) = self.loader {
            o.bool("loader", l);
        }
        Ok(())
    }

    /// Where a socket went: address, port and the hosts it was asked for.
    fn write_destination(&self, o: &mut impl Members) -> serde_json::Result<()> {
        put_int(o, "dirfd", self.dirfd.map(i64::from));
        put_text(o, "family", self.family.as_deref());
        if let Some(a) = &self.address {
            o.opt_str("address", a.as_deref());
        }
        put_int(o, "port", self.port.map(i64::from));
        put_text(o, "address_source", self.address_source);
        put_text(o, "requested_address", self.requested_address.as_deref());
        if let Some(d) = &self.destination {
            if let Some(h) = &d.host {
                o.opt_str("host", h.as_deref());
            }
            put_text(o, "host_source", d.host_source);
            if !d.hosts.is_empty() {
                o.serde("hosts", &d.hosts)?;
            }
            if !d.other_hosts.is_empty() {
                o.serde("other_hosts", &d.other_hosts)?;
            }
            if d.host_conflict {
                o.bool("host_conflict", true);
            }
            put_text(o, "opaque", d.opaque);
            if let Some(c) = d.connection_id {
                o.u64("connection_id", c);
            }
        }
        Ok(())
    }

    /// An exec's id and a file change's new name, owner and length, up to the cgroup.
    fn write_change(&self, o: &mut impl Members) -> serde_json::Result<()> {
        put_text(o, "exec_id", self.exec_id);
        put_nullable_bytes(o, "new_path", &self.new_path);
        put_text(o, "new_path_source", self.new_path_source);
        put_bytes(o, "requested_new_path", &self.requested_new_path);
        put_bytes(o, "symlink_content", &self.symlink_content);
        if let Some(owner) = &self.owner {
            o.serde("owner", owner)?;
        }
        if let Some(n) = self.length {
            o.u64("length", n);
        }
        put_int(o, "fd", self.fd.map(i64::from));
        put_bytes(o, "cgroup", &self.cgroup);
        if let Some(n) = self.cgroup_id {
            o.u64("cgroup_id", n);
        }
        Ok(())
    }

    /// A process acted on, io_uring and 32-bit calls, ptrace and signals.
    fn write_process(&self, o: &mut impl Members) -> serde_json::Result<()> {
        put_int(o, "pid", self.pid.map(i64::from));
        put_text(o, "signal", self.signal.as_deref());
        put_int(o, "exit_code", self.exit_code.map(i64::from));
        if let Some(core) = self.core_dumped {
            o.bool("core_dumped", core);
        }
        put_text(o, "access", self.access);
        if let Some(u) = &self.io_uring {
            o.serde("io_uring", u)?;
        }
        if let Some(c) = &self.ia32 {
            o.serde("ia32", c)?;
        }
        put_int(o, "sq_entries", self.sq_entries.map(i64::from));
        put_int(o, "cq_entries", self.cq_entries.map(i64::from));
        put_strings(o, "setup_flags", &self.setup_flags);
        put_text(o, "ptrace_request", self.ptrace_request.as_deref());
        put_text(o, "addr", self.addr.as_deref());
        put_text(o, "pid_source", self.pid_source);
        put_text(o, "pid_namespace", self.pid_namespace);
        put_text(o, "target_exec_id", self.target_exec_id);
        put_text(o, "target_agent", self.target_agent);
        put_text(o, "delivery", self.delivery.as_deref());
        put_text(o, "origin", self.origin);
        if let Some(d) = &self.dns {
            o.serde("dns", d)?;
        }
        if let Some(t) = &self.tls {
            o.serde("tls", t)?;
        }
        if let Some(h) = &self.http {
            o.serde("http", h)?;
        }
        if let Some(c) = &self.claim {
            o.serde("claim", c)?;
        }
        Ok(())
    }

    /// What a socket carried (DNS, TLS, HTTP), claims, and the members of every kind.
    fn write_wire(&self, o: &mut impl Members) -> serde_json::Result<()> {
        put_text(o, "prctl", self.prctl);
        put_bytes(o, "previous_path", &self.previous_path);
        if let Some(f) = &self.previous_file {
            let mut file = o.object("previous_file");
            f.write(&mut file);
            file.close();
        }
        put_int(o, "replacements", self.replacements.map(i64::from));
        if self.before_watch {
            o.bool("before_watch", true);
        }
        put_int(o, "socket_fd", self.socket_fd.map(i64::from));
        put_int(o, "to_fd", self.to_fd.map(i64::from));
        put_nullable_bytes(o, "to_path", &self.to_path);
        if let Some(f) = &self.to_file {
            let mut file = o.object("to_file");
            f.write(&mut file);
            file.close();
        }
        if !self.truncated.is_empty() {
            o.strings("truncated", &self.truncated);
        }
        if !self.unreadable.is_empty() {
            o.strings("unreadable", &self.unreadable);
        }
        Ok(())
    }
}

/// `resource.io_uring`: the request an action was submitted as.
#[derive(Serialize, Deserialize)]
pub(super) struct UringOut<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    user_data: u64,
}

/// `resource.ia32`: a 32-bit system call's number and arguments (registers, as passed).
#[derive(Serialize, Deserialize, Clone, Copy)]
pub(super) struct Ia32Out {
    nr: u32,
    /// `null`: not read (see [`Ia32Call`]).
    args: Option<[u64; 6]>,
}

/// `resource.owner` of a chown: `null` for an id left unchanged (-1).
#[derive(Serialize, Deserialize, Clone, Copy)]
pub(super) struct OwnerOut {
    uid: Option<u32>,
    gid: Option<u32>,
}

fn source_name(s: PathSource) -> &'static str {
    match s {
        PathSource::Kernel => "kernel",
        PathSource::Resolved => "resolved",
        PathSource::Requested => "requested",
    }
}

/// `@name` for abstract unix sockets, the path otherwise (escaped).
pub(super) fn unix_address(path: &[u8]) -> String {
    match path.split_first() {
        Some((0, name)) => format!("@{}", Escaped(name)),
        _ => Escaped(path).to_string(),
    }
}

fn passed_text(p: &PassedAddr) -> String {
    match p {
        PassedAddr::Inet(ip, port) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        PassedAddr::Inet(ip, port) => format!("{ip}:{port}"),
        PassedAddr::Unix(path) => unix_address(path),
        PassedAddr::Other { family } => family_name(*family).into_owned(),
    }
}

/// The path fields of a file the action named.
fn file_fields<'a>(out: &mut ResourceOut<'a>, f: &'a FileRef) {
    let path = f.path();
    out.path = Some(path.map(Bytes));
    out.path_source = f.path_source().map(source_name);
    if f.requested.as_deref() != path {
        out.requested_path = f.requested.as_deref().map(Bytes);
    }
    out.requested_path_read = match f.requested_from {
        Requested::AtEntry => None,
        Requested::AtExit => Some("exit"),
        Requested::KernelCopy => Some("kernel_copy"),
    };
    out.file = f.object.as_ref().map(file_out);
}

fn target_fields<'a>(out: &mut ResourceOut<'a>, t: &'a Target) {
    match t {
        Target::File(f) => file_fields(out, f),
        Target::Inet(ip, port) => {
            out.family = Some(family_name(if ip.is_ipv4() { 2 } else { 10 }));
            out.address = Some(Some(ip.to_string()));
            out.port = Some(*port);
        }
        Target::Unix(f) => {
            out.family = Some(family_name(1));
            out.address = Some(f.path().map(unix_address));
            out.address_source = f.path_source().map(source_name);
            if f.requested.as_deref() != f.path() {
                out.requested_address = f.requested.as_deref().map(unix_address);
            }
            out.file = f.object.as_ref().filter(|o| o.id.is_some()).map(file_out);
        }
        Target::OtherAddress { family } => out.family = Some(family_name(*family)),
        Target::Cgroup { id, path } => {
            out.cgroup = Some(Bytes(path));
            out.cgroup_id = Some(*id);
        }
        Target::Process { pid } => out.pid = Some(*pid),
        Target::Ring { fd } => out.fd = Some(*fd),
        Target::Call => {}
    }
}

fn detail_fields<'a>(out: &mut ResourceOut<'a>, d: &'a Detail) {
    match d {
        Detail::Exec {
            argv,
            argv_from_image,
            dirfd,
            new_exec_id,
            interpreter,
        } => {
            out.argv = Some(argv.as_ref().map(|a| a.iter().map(|x| Bytes(x)).collect()));
            out.argv_source = argv
                .as_ref()
                .map(|_| if *argv_from_image { "image" } else { "entry" });
            out.dirfd = *dirfd;
            out.exec_id = new_exec_id.as_deref();
            out.interpreter = interpreter.as_ref().map(|i| {
                Box::new(InterpreterOut {
                    shebang: Bytes(&i.shebang),
                    path: i.loaded.as_ref().map(|k| Bytes(&k.path)),
                    file: i.loaded.as_ref().map(file_out),
                })
            });
        }
        Detail::Open {
            flags,
            mode,
            dirfd,
            resolve,
        } => {
            out.flags = Some(linux::open_flag_names(*flags));
            out.mode = linux::open_creates(*flags).then(|| format!("{mode:04o}"));
            out.dirfd = *dirfd;
            out.resolve = (*resolve != 0).then(|| linux::bit_names(*resolve, linux::RESOLVE_FLAGS));
        }
        Detail::Change(c) => change_fields(out, c),
        Detail::Move { pid } => out.pid = Some(*pid),
        Detail::Access(a) => access_fields(out, a),
        Detail::Ring {
            sq_entries,
            cq_entries,
            flags,
        } => {
            out.sq_entries = Some(*sq_entries);
            out.cq_entries = Some(*cq_entries);
            out.setup_flags = Some(linux::bit_names(
                u64::from(*flags),
                linux::URING_SETUP_FLAGS,
            ));
        }
        Detail::Signal {
            sig,
            delivery,
            by_kernel,
        } => {
            out.signal = Some(linux::signal_name(*sig));
            out.delivery = Some(linux::signal_delivery_name(*delivery));
            out.origin = by_kernel.then_some("kernel");
        }
        Detail::Exit(Some(ExitStatus::Code(code))) => out.exit_code = Some(*code),
        Detail::Exit(Some(ExitStatus::Signal { sig, core_dumped })) => {
            out.signal = Some(linux::signal_name(u32::from(*sig)));
            out.core_dumped = Some(*core_dumped);
        }
        Detail::Exit(None) => {}
        Detail::Compat => {}
        Detail::MapExec(m) => map_exec_fields(out, m),
        Detail::Dns(d) => out.dns = Some(Box::new(dns_out(d))),
        Detail::Tls(h) => out.tls = Some(Box::new(tls_out(h))),
        Detail::Http(r) => out.http = Some(Box::new(http_out(r))),
        Detail::Claim(c) => out.claim = Some(Box::new(claim_out(c))),
        Detail::SetExe(x) => set_exe_fields(out, x),
        Detail::Fd { fd, socket_fd } => {
            out.fd = Some(*fd);
            out.socket_fd = *socket_fd;
        }
        Detail::Copy(c) => copy_fields(out, c),
        Detail::Connect {
            passed,
            from_kernel,
            ..
        } => {
            if out.address_source.is_none() && out.address.is_some() {
                out.address_source = Some(if *from_kernel { "kernel" } else { "requested" });
            }
            if let Some(p) = passed {
                out.requested_address = Some(passed_text(p));
            }
        }
    }
}

fn map_exec_fields(out: &mut ResourceOut<'_>, m: &MapExec) {
    out.prot = Some(linux::bit_names(u64::from(m.prot), linux::PROT_FLAGS));
    if let Some((flags, fd)) = m.mmap {
        out.flags = Some(linux::bit_names(u64::from(flags), linux::MAP_FLAGS));
        out.fd = Some(fd);
    }
    out.addr = Some(format!("{:#x}", m.start));
    out.length = Some(m.len);
    out.loader = Some(m.loader);
}

fn set_exe_fields<'a>(out: &mut ResourceOut<'a>, x: &'a SetExe) {
    out.fd = Some(x.fd);
    out.prctl = Some(if x.map {
        "PR_SET_MM_MAP"
    } else {
        "PR_SET_MM_EXE_FILE"
    });
    out.previous_path = x.previous.as_ref().map(|k| Bytes(&k.path));
    out.previous_file = x.previous.as_ref().map(|f| Box::new(file_out(f)));
    out.replacements = Some(x.replacements);
    out.before_watch = x.before_watch;
}

fn copy_fields<'a>(out: &mut ResourceOut<'a>, c: &'a FileCopy) {
    out.fd = Some(c.in_fd);
    out.to_fd = Some(c.out_fd);
    out.to_path = Some(c.to.as_ref().map(|k| Bytes(&k.path)));
    out.to_file = c.to.as_ref().map(|f| Box::new(file_out(f)));
    out.length = Some(c.len);
    out.flags = (c.flags != 0).then(|| linux::bit_names(u64::from(c.flags), linux::SPLICE_FLAGS));
}

fn change_fields<'a>(out: &mut ResourceOut<'a>, c: &'a Change) {
    if let Some(to) = &c.to {
        let p = to.path();
        out.new_path = Some(p.map(Bytes));
        out.new_path_source = to.path_source().map(source_name);
        if to.requested.as_deref() != p {
            out.requested_new_path = to.requested.as_deref().map(Bytes);
        }
    }
    out.symlink_content = c.content.as_deref().map(Bytes);
    out.mode = c.mode.map(|m| format!("{m:04o}"));
    out.owner = c.owner.map(|(uid, gid)| OwnerOut { uid, gid });
    out.length = c.length;
    let (bits, names) = match c.flags {
        ChangeFlags::At(b) => (b, linux::AT_FLAGS),
        ChangeFlags::Rename(b) => (b, linux::RENAME_FLAGS),
    };
    out.flags = (bits != 0).then(|| linux::bit_names(u64::from(bits), names));
    out.dirfd = c.dirfd;
    out.fd = c.fd;
}

fn access_fields<'a>(out: &mut ResourceOut<'a>, a: &'a Access) {
    out.access = Some(match a.kind {
        AccessKind::Ptrace { request, addr } => {
            out.ptrace_request = Some(linux::ptrace_request_name(request));
            out.addr = Some(format!("{addr:#x}"));
            "ptrace"
        }
        AccessKind::VmRead => "vm_read",
        AccessKind::VmWrite => "vm_write",
        AccessKind::GetFd { fd } => {
            out.fd = Some(fd);
            "getfd"
        }
    });
    out.pid_source = Some(if a.pid_from_kernel {
        "kernel"
    } else {
        "requested"
    });
    out.pid_namespace = a.caller_namespaced.then_some("caller");
    if let Some(f) = &a.file {
        out.path = Some(Some(Bytes(&f.path)));
        out.path_source = Some("kernel");
        out.file = Some(file_out(f));
    }
    out.target_exec_id = a.target_exec_id.as_deref();
    out.target_agent = a.target_agent.as_deref();
}

/// The record's `resource` object of `r`, written into `out` (a default one): filled in place,
/// its rare members boxed, because the whole of it (3 KB before) was copied two or three times
/// a record, a third of serialising it.
pub(super) fn resource_out<'a>(r: &'a Resource, out: &mut ResourceOut<'a>) {
    out.io_uring = r.uring.map(|u| UringOut {
        op: Cow::Borrowed(u.op),
        user_data: u.user_data,
    });
    out.ia32 = r.ia32.map(|c| Ia32Out {
        nr: c.nr,
        args: c.args,
    });
    out.truncated = r.truncated.iter().map(|f| f.name()).collect();
    out.unreadable = r.unreadable.iter().map(|f| f.name()).collect();
    out.destination = r
        .destination
        .as_deref()
        .map(|d| Box::new(destination_out(d)));
    target_fields(out, &r.target);
    detail_fields(out, &r.detail);
    if out.address_source.is_none()
        && matches!(r.detail, Detail::Dns(_) | Detail::Tls(_) | Detail::Http(_))
    {
        // The peer's address comes from the packet's IP header.
        out.address_source = Some("kernel");
    }
}

pub(super) fn completion_out(d: &Detail) -> Option<CompletionOut> {
    let Detail::Connect {
        completion: Some(c),
        ..
    } = d
    else {
        return None;
    };
    Some(CompletionOut {
        syscall_retval: c.syscall_retval,
        after_ms: c.after.map(millis),
        waited_ms: millis(c.waited),
    })
}

// ---------------------------------------------------------------------------------------------
// Reading

/// `resource` of a stored record (borrowed where the JSON allows).
#[derive(Deserialize, Default)]
pub(crate) struct ResourceIn<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    path_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    requested_path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    requested_path_read: Option<Cow<'a, str>>,
    #[serde(default)]
    file: Option<FileIn>,
    #[serde(default)]
    interpreter: Option<InterpreterIn>,
    #[serde(default)]
    argv: Option<Vec<String>>,
    #[serde(borrow, default)]
    argv_source: Option<Cow<'a, str>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    resolve: Option<Vec<String>>,
    #[serde(default)]
    prot: Option<Vec<String>>,
    #[serde(default)]
    loader: Option<bool>,
    #[serde(default)]
    dirfd: Option<i32>,
    #[serde(borrow, default)]
    family: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(borrow, default)]
    address_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    requested_address: Option<Cow<'a, str>>,
    #[serde(default)]
    exec_id: Option<String>,
    #[serde(borrow, default)]
    new_path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    new_path_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    requested_new_path: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    symlink_content: Option<Cow<'a, str>>,
    #[serde(default)]
    owner: Option<OwnerOut>,
    #[serde(default)]
    length: Option<u64>,
    #[serde(default)]
    fd: Option<i32>,
    #[serde(borrow, default)]
    cgroup: Option<Cow<'a, str>>,
    #[serde(default)]
    cgroup_id: Option<u64>,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(borrow, default)]
    signal: Option<Cow<'a, str>>,
    #[serde(default)]
    exit_code: Option<u8>,
    #[serde(default)]
    core_dumped: Option<bool>,
    #[serde(borrow, default)]
    access: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    io_uring: Option<UringOut<'a>>,
    #[serde(default)]
    ia32: Option<Ia32Out>,
    #[serde(default)]
    sq_entries: Option<u32>,
    #[serde(default)]
    cq_entries: Option<u32>,
    #[serde(default)]
    setup_flags: Option<Vec<String>>,
    #[serde(borrow, default)]
    ptrace_request: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    addr: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pid_source: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pid_namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target_exec_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delivery: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    origin: Option<Cow<'a, str>>,
    #[serde(default)]
    hosts: Option<Vec<HostOut>>,
    #[serde(default)]
    other_hosts: Option<Vec<HostOut>>,
    #[serde(default)]
    host_conflict: bool,
    #[serde(borrow, default)]
    opaque: Option<Cow<'a, str>>,
    #[serde(default)]
    connection_id: Option<u64>,
    #[serde(default)]
    dns: Option<DnsOut>,
    #[serde(default)]
    tls: Option<TlsOut>,
    #[serde(default)]
    http: Option<HttpOut>,
    #[serde(default)]
    claim: Option<ClaimOut>,
    #[serde(borrow, default)]
    prctl: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    previous_path: Option<Cow<'a, str>>,
    #[serde(default)]
    previous_file: Option<FileIn>,
    #[serde(default)]
    replacements: Option<u32>,
    #[serde(default)]
    before_watch: bool,
    #[serde(default)]
    socket_fd: Option<i32>,
    #[serde(default)]
    to_fd: Option<i32>,
    #[serde(borrow, default)]
    to_path: Option<Cow<'a, str>>,
    #[serde(default)]
    to_file: Option<FileIn>,
    #[serde(default)]
    truncated: Vec<String>,
    #[serde(default)]
    unreadable: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct InterpreterIn {
    shebang: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    file: Option<FileIn>,
}

/// The `completion` of a stored connect result.
#[derive(Deserialize)]
pub(super) struct CompletionIn {
    syscall_retval: i64,
    #[serde(default)]
    after_ms: Option<f64>,
    waited_ms: f64,
}

fn unreadable(r: &ResourceIn<'_>, f: Field) -> bool {
    r.unreadable.iter().any(|u| u == f.name())
}

fn file_ref_in(
    r: &ResourceIn<'_>,
    path: Option<&str>,
    source: Option<&str>,
    requested: Option<&str>,
) -> FileRef {
    let path = path.map(bytes);
    let requested = match requested {
        Some(p) => Some(bytes(p)),
        None if unreadable(r, Field::RequestedPath) => None,
        None => path.clone(),
    };
    let requested_from = match r.requested_path_read.as_deref() {
        Some("exit") => Requested::AtExit,
        Some("kernel_copy") => Requested::KernelCopy,
        _ => Requested::AtEntry,
    };
    let (resolved, object) = match (source, path) {
        (Some("kernel"), Some(p)) => {
            let facts = r.file.clone().unwrap_or_default();
            (None, Some(file_in(p, &facts)))
        }
        (Some("resolved"), Some(p)) => (Some(p), None),
        _ => (None, None),
    };
    FileRef {
        requested,
        requested_from,
        resolved,
        object,
    }
}

/// A unix address as stored (`@name` for an abstract socket).
fn unix_bytes(a: &str) -> Vec<u8> {
    match a.strip_prefix('@') {
        Some(name) => [&[0u8][..], &bytes(name)].concat(),
        None => bytes(a),
    }
}

fn passed_in(s: &str) -> PassedAddr {
    if let Some((ip, port)) = s.rsplit_once(':')
        && let (Ok(ip), Ok(port)) = (ip.trim_matches(['[', ']']).parse::<IpAddr>(), port.parse())
    {
        return PassedAddr::Inet(ip, port);
    }
    match family_number(s) {
        Some(family) => PassedAddr::Other { family },
        None => PassedAddr::Unix(unix_bytes(s)),
    }
}

/// The target of a stored record's resource, as the policy matches it.
fn target(action: Action, r: &ResourceIn<'_>) -> Result<Target, ReadError> {
    if action == Action::UringSetup {
        return Ok(Target::Ring {
            fd: r.fd.ok_or(ReadError::Field("resource.fd"))?,
        });
    }
    if matches!(action, Action::Signal | Action::Access | Action::Exit) {
        return Ok(Target::Process {
            pid: r.pid.ok_or(ReadError::Field("resource.pid"))?,
        });
    }
    if action == Action::CgroupMove {
        return Ok(Target::Cgroup {
            id: r.cgroup_id.ok_or(ReadError::Field("resource.cgroup_id"))?,
            path: r.cgroup.as_deref().map(bytes).unwrap_or_default(),
        });
    }
    if action == Action::CompatSyscall && r.path.is_none() && r.requested_path.is_none()
        || action == Action::Claim
    {
        return Ok(Target::Call);
    }
    if action.is_file_without_open() || action == Action::SetExe {
        // Files only the kernel names: no path was passed.
        return Ok(Target::File(FileRef {
            object: r
                .path
                .as_deref()
                .map(|p| file_in(bytes(p), r.file.as_ref().unwrap_or(&FileIn::default()))),
            ..FileRef::default()
        }));
    }
    if !action.is_network() {
        let mut f = file_ref_in(
            r,
            r.path.as_deref(),
            r.path_source.as_deref(),
            r.requested_path.as_deref(),
        );
        if action == Action::MapExec {
            // A mapping is named by the kernel only: the call passed no path.
            f.requested = None;
        }
        return Ok(Target::File(f));
    }
    let family = r
        .family
        .as_deref()
        .and_then(family_number)
        .ok_or(ReadError::Field("resource.family"))?;
    Ok(match (family, r.address.as_deref()) {
        (2 | 10, Some(a)) => Target::Inet(
            a.parse::<IpAddr>()
                .map_err(|_| ReadError::Field("resource.address"))?,
            r.port.unwrap_or(0),
        ),
        (1, address) => {
            let mut f = file_ref_in(r, None, None, None);
            let path = address.map(unix_bytes);
            f.requested = match r.requested_address.as_deref() {
                Some(p) => Some(unix_bytes(p)),
                None if unreadable(r, Field::RequestedPath) => None,
                None => path.clone(),
            };
            match (r.address_source.as_deref(), path) {
                (Some("kernel"), Some(p)) => {
                    f.object = Some(file_in(p, r.file.as_ref().unwrap_or(&FileIn::default())))
                }
                (Some("resolved"), Some(p)) => f.resolved = Some(p),
                _ => {}
            }
            Target::Unix(f)
        }
        (family, _) => Target::OtherAddress { family },
    })
}

pub(super) fn detail_in(action: Action, r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(match action {
        Action::Exec => exec_in(r)?,
        Action::Open => open_in(r)?,
        Action::Delete
        | Action::Rename
        | Action::Truncate
        | Action::Chmod
        | Action::Chown
        | Action::Link
        | Action::Symlink
        | Action::Mkdir
        | Action::Rmdir => Detail::Change(change_in(action, r)?),
        Action::Access => Detail::Access(access_in(r)?),
        Action::UringSetup => Detail::Ring {
            sq_entries: r.sq_entries.unwrap_or(0),
            cq_entries: r.cq_entries.unwrap_or(0),
            flags: linux::bits_from_names(
                r.setup_flags.as_deref().unwrap_or_default(),
                linux::URING_SETUP_FLAGS,
            )
            .ok_or(ReadError::Field("resource.setup_flags"))? as u32,
        },
        Action::CompatSyscall => Detail::Compat,
        Action::MapExec => Detail::MapExec(map_exec_in(r)?),
        Action::Signal => Detail::Signal {
            sig: r
                .signal
                .as_deref()
                .and_then(linux::signal_number)
                .ok_or(ReadError::Field("resource.signal"))?,
            delivery: r
                .delivery
                .as_deref()
                .and_then(linux::signal_delivery_number)
                .ok_or(ReadError::Field("resource.delivery"))?,
            by_kernel: r.origin.as_deref() == Some("kernel"),
        },
        Action::CgroupMove => Detail::Move {
            pid: r.pid.ok_or(ReadError::Field("resource.pid"))?,
        },
        Action::Exit => exit_in(r)?,
        Action::Dns => dns_in(r.dns.as_ref().ok_or(ReadError::Field("resource.dns"))?)?,
        Action::Tls => tls_in(r.tls.as_ref().ok_or(ReadError::Field("resource.tls"))?)?,
        Action::Http => http_in(r.http.as_ref().ok_or(ReadError::Field("resource.http"))?)?,
        Action::Claim => claim_in(r.claim.as_ref().ok_or(ReadError::Field("resource.claim"))?)?,
        Action::SetExe => set_exe_in(r)?,
        Action::Held | Action::Receive => Detail::Fd {
            fd: r.fd.ok_or(ReadError::Field("resource.fd"))?,
            socket_fd: r.socket_fd,
        },
        Action::Copy => copy_in(r)?,
        Action::Connect | Action::Send => Detail::Connect {
            passed: r
                .requested_address
                .as_deref()
                .filter(|_| r.family.as_deref() != Some("unix"))
                .map(passed_in),
            from_kernel: r.address_source.as_deref() == Some("kernel")
                && r.family.as_deref() != Some("unix"),
            completion: None,
        },
    })
}

/// A stored exec's arguments, directory fd, new exec id and interpreter.
fn exec_in(r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(Detail::Exec {
        argv: r
            .argv
            .as_ref()
            .map(|a| a.iter().map(|x| bytes(x)).collect()),
        argv_from_image: r.argv_source.as_deref() == Some("image"),
        dirfd: r.dirfd,
        new_exec_id: r.exec_id.as_deref().map(Arc::from),
        interpreter: r.interpreter.as_ref().map(|i| Interpreter {
            shebang: bytes(&i.shebang),
            loaded: i
                .path
                .as_deref()
                .map(|p| file_in(bytes(p), i.file.as_ref().unwrap_or(&FileIn::default()))),
        }),
    })
}

/// A stored open's flags, mode, directory fd and resolve flags.
fn open_in(r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(Detail::Open {
        flags: linux::open_flags_from_names(r.flags.as_deref().unwrap_or_default())
            .ok_or(ReadError::Field("resource.flags"))?,
        mode: match &r.mode {
            Some(m) => u32::from_str_radix(m, 8).map_err(|_| ReadError::Field("resource.mode"))?,
            None => 0,
        },
        dirfd: r.dirfd,
        resolve: linux::bits_from_names(
            r.resolve.as_deref().unwrap_or_default(),
            linux::RESOLVE_FLAGS,
        )
        .ok_or(ReadError::Field("resource.resolve"))?,
    })
}

/// A stored exit's status: its code, or the signal that ended it.
fn exit_in(r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(Detail::Exit(match (r.exit_code, r.signal.as_deref()) {
        (Some(code), _) => Some(ExitStatus::Code(code)),
        (None, Some(name)) => Some(ExitStatus::Signal {
            sig: linux::signal_number(name)
                .and_then(|n| u8::try_from(n).ok())
                .ok_or(ReadError::Field("resource.signal"))?,
            core_dumped: r.core_dumped.unwrap_or(false),
        }),
        // Unread (`unreadable` says `exit_status`).
        (None, None) => None,
    }))
}

/// A stored executable replacement (prctl).
fn set_exe_in(r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(Detail::SetExe(SetExe {
        previous: r.previous_path.as_deref().map(|p| {
            file_in(
                bytes(p),
                r.previous_file.as_ref().unwrap_or(&FileIn::default()),
            )
        }),
        fd: r.fd.ok_or(ReadError::Field("resource.fd"))?,
        map: r.prctl.as_deref() == Some("PR_SET_MM_MAP"),
        replacements: r.replacements.unwrap_or(0),
        before_watch: r.before_watch,
    }))
}

/// A stored in-kernel copy: its fds, length, flags and destination file.
fn copy_in(r: &ResourceIn<'_>) -> Result<Detail, ReadError> {
    Ok(Detail::Copy(Box::new(FileCopy {
        to: r
            .to_path
            .as_deref()
            .map(|p| file_in(bytes(p), r.to_file.as_ref().unwrap_or(&FileIn::default()))),
        in_fd: r.fd.ok_or(ReadError::Field("resource.fd"))?,
        out_fd: r.to_fd.ok_or(ReadError::Field("resource.to_fd"))?,
        len: r.length.unwrap_or(0),
        flags: linux::bits_from_names(r.flags.as_deref().unwrap_or_default(), linux::SPLICE_FLAGS)
            .ok_or(ReadError::Field("resource.flags"))? as u32,
    })))
}

/// A stored executable mapping's details (an mmap has its fd; an mprotect none).
fn map_exec_in(r: &ResourceIn<'_>) -> Result<MapExec, ReadError> {
    let bits = |names: Option<&[String]>, table, field| {
        linux::bits_from_names(names.unwrap_or_default(), table)
            .map(|b| b as u32)
            .ok_or(ReadError::Field(field))
    };
    Ok(MapExec {
        prot: bits(r.prot.as_deref(), linux::PROT_FLAGS, "resource.prot")?,
        mmap: match r.fd {
            Some(fd) => Some((
                bits(r.flags.as_deref(), linux::MAP_FLAGS, "resource.flags")?,
                fd,
            )),
            None => None,
        },
        start: hex_in(r.addr.as_deref()).ok_or(ReadError::Field("resource.addr"))?,
        len: r.length.unwrap_or(0),
        loader: r.loader.unwrap_or(false),
    })
}

/// A `0x`-prefixed hexadecimal number as stored.
fn hex_in(a: Option<&str>) -> Option<u64> {
    u64::from_str_radix(a?.strip_prefix("0x")?, 16).ok()
}

/// A stored access record's details.
fn access_in(r: &ResourceIn<'_>) -> Result<Access, ReadError> {
    let kind = match r.access.as_deref() {
        Some("ptrace") => AccessKind::Ptrace {
            request: r
                .ptrace_request
                .as_deref()
                .and_then(linux::ptrace_request_number)
                .ok_or(ReadError::Field("resource.ptrace_request"))?,
            addr: hex_in(r.addr.as_deref()).ok_or(ReadError::Field("resource.addr"))?,
        },
        Some("vm_read") => AccessKind::VmRead,
        Some("vm_write") => AccessKind::VmWrite,
        Some("getfd") => AccessKind::GetFd {
            fd: r.fd.ok_or(ReadError::Field("resource.fd"))?,
        },
        _ => return Err(ReadError::Field("resource.access")),
    };
    let file = match (r.path.as_deref(), r.file.as_ref()) {
        (Some(p), Some(f)) => Some(file_in(bytes(p), f)),
        _ => None,
    };
    Ok(Access {
        kind,
        pid_from_kernel: r.pid_source.as_deref() == Some("kernel"),
        caller_namespaced: r.pid_namespace.as_deref() == Some("caller"),
        file,
        target_exec_id: r.target_exec_id.as_deref().map(Arc::from),
        target_agent: r.target_agent.as_deref().map(Arc::from),
    })
}

/// A stored file change's details.
fn change_in(action: Action, r: &ResourceIn<'_>) -> Result<Change, ReadError> {
    let to = match action {
        Action::Rename | Action::Link => Some(file_ref_in(
            r,
            r.new_path.as_deref(),
            r.new_path_source.as_deref(),
            r.requested_new_path.as_deref(),
        ))
        .map(|mut f| {
            f.requested_from = Requested::AtEntry;
            if f.requested.is_none() && !unreadable(r, Field::NewPath) {
                f.requested = f.path().map(<[u8]>::to_vec);
            }
            f
        }),
        _ => None,
    };
    let names = r.flags.as_deref().unwrap_or_default();
    let bad = || ReadError::Field("resource.flags");
    let flags = if action == Action::Rename {
        ChangeFlags::Rename(
            linux::bits_from_names(names, linux::RENAME_FLAGS).ok_or_else(bad)? as u32,
        )
    } else {
        ChangeFlags::At(linux::bits_from_names(names, linux::AT_FLAGS).ok_or_else(bad)? as u32)
    };
    Ok(Change {
        to,
        content: r.symlink_content.as_deref().map(bytes),
        mode: match &r.mode {
            Some(m) => {
                Some(u32::from_str_radix(m, 8).map_err(|_| ReadError::Field("resource.mode"))?)
            }
            None => None,
        },
        owner: r.owner.map(|o| (o.uid, o.gid)),
        length: r.length,
        flags,
        dirfd: r.dirfd,
        fd: r.fd,
    })
}

/// A stored connect's completion.
pub(super) fn completion_in(c: &CompletionIn) -> crate::event::Completion {
    crate::event::Completion {
        syscall_retval: c.syscall_retval,
        after: c.after_ms.map(from_millis),
        waited: from_millis(c.waited_ms),
    }
}

pub(crate) fn resource_in(action: Action, r: &ResourceIn<'_>) -> Result<Resource, ReadError> {
    Ok(Resource {
        target: target(action, r)?,
        detail: detail_in(action, r)?,
        truncated: r.truncated.iter().filter_map(|t| Field::parse(t)).collect(),
        unreadable: r
            .unreadable
            .iter()
            .filter_map(|t| Field::parse(t))
            .collect(),
        uring: r.io_uring.as_ref().map(|u| UringRef {
            op: uring_op(&u.op),
            user_data: u.user_data,
        }),
        ia32: r.ia32.map(|c| Ia32Call {
            nr: c.nr,
            args: c.args,
        }),
        destination: destination_of(action, r)?,
    })
}

/// The destination of a stored network record (inet destinations only).
fn destination_of(
    action: Action,
    r: &ResourceIn<'_>,
) -> Result<Option<Box<crate::event::Destination>>, ReadError> {
    let inet = matches!(r.family.as_deref(), Some("inet" | "inet6"));
    if !action.is_network() || !inet {
        return Ok(None);
    }
    destination_in(
        r.hosts.as_deref(),
        r.other_hosts.as_deref(),
        r.host_conflict,
        r.opaque.as_deref(),
        r.connection_id,
    )
    .map(|d| Some(Box::new(d)))
}

/// The static name of a stored io_uring opcode.
fn uring_op(s: &str) -> &'static str {
    const OPS: [&str; 13] = [
        "sendmsg",
        "connect",
        "openat",
        "send",
        "openat2",
        "renameat",
        "unlinkat",
        "mkdirat",
        "symlinkat",
        "linkat",
        "send_zc",
        "sendmsg_zc",
        "ftruncate",
    ];
    OPS.iter().find(|o| **o == s).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trail::record::json::Object;

    /// Every member present, each with a value of its kind.
    fn every_member() -> ResourceOut<'static> {
        let file = || FileOut {
            dev: Some(Short::new(format_args!("254:{}", 1))),
            ino: Some(7),
            mount_id: Some(27),
            mount_ns: Some(4026531832),
            kind: Some("file"),
            mode: Some(Short::new(format_args!("{:04o}", 0o644))),
            flags: vec!["deleted"],
            real: None,
        };
        ResourceOut {
            path: Some(None),
            path_source: Some("kernel"),
            requested_path: Some(Bytes(b"a\"b")),
            requested_path_read: Some("exit"),
            file: Some(file()),
            interpreter: Some(Box::new(InterpreterOut {
                shebang: Bytes(b"#!/bin/sh"),
                path: Some(Bytes(b"/bin/sh")),
                file: Some(file()),
            })),
            argv: Some(Some(vec![Bytes(b"sh"), Bytes(b"-\xff")])),
            argv_source: Some("kernel"),
            flags: Some(vec!["O_RDONLY".into()]),
            mode: Some("0644".into()),
            resolve: Some(vec!["RESOLVE_NO_SYMLINKS".into()]),
            prot: Some(vec!["PROT_READ".into(), "PROT_EXEC".into()]),
            loader: Some(true),
            dirfd: Some(-100),
            family: Some("inet".into()),
            address: Some(None),
            port: Some(443),
            address_source: Some("kernel"),
            requested_address: Some("10.0.0.1".into()),
            exec_id: Some("b4-1-2"),
            new_path: Some(Some(Bytes(b"/new"))),
            new_path_source: Some("resolved"),
            requested_new_path: Some(Bytes(b"new")),
            symlink_content: Some(Bytes(b"target")),
            owner: Some(OwnerOut {
                uid: Some(0),
                gid: None,
            }),
            length: Some(u64::MAX),
            fd: Some(3),
            cgroup: Some(Bytes(b"/a")),
            cgroup_id: Some(9),
            pid: Some(42),
            signal: Some("SIGKILL".into()),
            exit_code: Some(1),
            core_dumped: Some(true),
            access: Some("ptrace"),
            io_uring: Some(UringOut {
                op: "openat".into(),
                user_data: 5,
            }),
            ia32: Some(Ia32Out {
                nr: 5,
                args: Some([1, 2, 3, 4, 5, 6]),
            }),
            sq_entries: Some(8),
            cq_entries: Some(16),
            setup_flags: Some(vec!["IORING_SETUP_SQPOLL".into()]),
            ptrace_request: Some("PTRACE_ATTACH".into()),
            addr: Some("0x10".into()),
            pid_source: Some("kernel"),
            pid_namespace: Some("host"),
            target_exec_id: Some("b4-9-9"),
            target_agent: Some("bot"),
            delivery: Some("delivered".into()),
            origin: Some("kernel"),
            destination: None,
            dns: None,
            tls: None,
            http: None,
            claim: None,
            prctl: Some("PR_SET_MM_MAP"),
            previous_path: Some(Bytes(b"/tmp/agent")),
            previous_file: Some(Box::new(file())),
            replacements: Some(1),
            before_watch: true,
            socket_fd: Some(8),
            to_fd: Some(4),
            to_path: Some(Some(Bytes(b"/tmp/out"))),
            to_file: Some(Box::new(file())),
            truncated: vec!["argv"],
            unreadable: vec!["exe"],
        }
    }

    #[test]
    fn every_resource_member_is_written_in_the_documented_order() {
        let mut buf = Vec::new();
        let mut o = Object::open(&mut buf);
        every_member().write(&mut o).unwrap();
        o.close();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"path":null,"path_source":"kernel","requested_path":"a\"b","requested_path_read":"exit","#,
                r#""file":{"dev":"254:1","ino":7,"mount_id":27,"mount_ns":4026531832,"type":"file","mode":"0644","flags":["deleted"]},"#,
                r##""interpreter":{"shebang":"#!/bin/sh","path":"/bin/sh","file":{"dev":"254:1","ino":7,"mount_id":27,"mount_ns":4026531832,"type":"file","mode":"0644","flags":["deleted"]}},"##,
                r#""argv":["sh","-\\xff"],"argv_source":"kernel","flags":["O_RDONLY"],"mode":"0644","#,
                r#""resolve":["RESOLVE_NO_SYMLINKS"],"prot":["PROT_READ","PROT_EXEC"],"loader":true,"#,
                r#""dirfd":-100,"family":"inet","address":null,"port":443,"#,
                r#""address_source":"kernel","requested_address":"10.0.0.1","exec_id":"b4-1-2","#,
                r#""new_path":"/new","new_path_source":"resolved","requested_new_path":"new","#,
                r#""symlink_content":"target","owner":{"uid":0,"gid":null},"length":18446744073709551615,"#,
                r#""fd":3,"cgroup":"/a","cgroup_id":9,"pid":42,"signal":"SIGKILL","exit_code":1,"core_dumped":true,"#,
                r#""access":"ptrace","#,
                r#""io_uring":{"op":"openat","user_data":5},"ia32":{"nr":5,"args":[1,2,3,4,5,6]},"#,
                r#""sq_entries":8,"cq_entries":16,"setup_flags":["IORING_SETUP_SQPOLL"],"#,
                r#""ptrace_request":"PTRACE_ATTACH","addr":"0x10","pid_source":"kernel","#,
                r#""pid_namespace":"host","target_exec_id":"b4-9-9","target_agent":"bot","#,
                r#""delivery":"delivered","origin":"kernel","prctl":"PR_SET_MM_MAP","previous_path":"/tmp/agent","#,
                r#""previous_file":{"dev":"254:1","ino":7,"mount_id":27,"mount_ns":4026531832,"type":"file","mode":"0644","flags":["deleted"]},"#,
                r#""replacements":1,"before_watch":true,"socket_fd":8,"to_fd":4,"to_path":"/tmp/out","#,
                r#""to_file":{"dev":"254:1","ino":7,"mount_id":27,"mount_ns":4026531832,"type":"file","mode":"0644","flags":["deleted"]},"#,
                r#""truncated":["argv"],"unreadable":["exe"]}"#
            )
        );
        // And what is written reads back as the resource it came from.
        let r: ResourceIn<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(r.file.unwrap().dev.as_deref(), Some("254:1"));
    }
}
