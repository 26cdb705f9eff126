//! Test harness for audit-agent's integration tests: real kernel, real processes, real cgroups.
//!
//! - [`TestCgroup`] creates a cgroup v2 directory per test and starts processes inside it (moved
//!   in between fork and exec, so they are watched from their first instruction).
//! - [`Agent`] runs the real `audit-agent` binary and collects its JSON output.
//! - `workload` (a binary of this crate) performs exactly the syscalls a test asks for.
//!
//! These tests need root. They fail (never skip) without it: run them with `cargo xtask test`.

pub mod claims_eval;
pub mod fake_k8s;
pub mod garage;
pub mod helm;
pub mod net;
pub mod trail;
pub mod validators;

use std::{
    ffi::OsStr,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::{fs::MetadataExt as _, io::RawFd, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use serde_json::{Value, json};

/// Panics unless running as root.
/// Waits until `cond` holds (polling; tests wait for what they need, never for a fixed time),
/// failing after two minutes with `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the kernel tests load eBPF programs and create cgroups: run them as root with `cargo xtask test`"
    );
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The audit-agent binary under test (`AUDIT_AGENT_BIN`, set by `cargo xtask test`).
pub fn agent_bin() -> PathBuf {
    let p = std::env::var_os("AUDIT_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/audit-agent"));
    assert!(
        p.exists(),
        "{} does not exist: build it first (`cargo xtask test` does)",
        p.display()
    );
    p
}

/// The `workload` helper binary of this crate.
pub fn workload_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_BIN_EXE_workload") {
        return p.into();
    }
    // target/debug/deps/<test> -> target/debug/workload
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("workload"))
        .filter(|p| p.exists())
        .expect("workload binary next to the test binary (cargo builds it for integration tests)")
}

/// Where cgroup v2 is mounted (from /proc/self/mountinfo).
pub fn cgroup2_mount() -> PathBuf {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mi.lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(_, b)| b.starts_with("cgroup2 "))
        .and_then(|(a, _)| a.split_whitespace().nth(4).map(PathBuf::from))
        .expect("a cgroup2 mount")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 directory owned by one test; removed (with its processes killed) on drop.
pub struct TestCgroup {
    /// Path relative to the cgroup2 mount, e.g. `/audit-tests/open-123-0`.
    pub rel: String,
    /// Absolute filesystem path.
    pub fs: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let rel = format!("/audit-tests/{tag}-{}-{n}", std::process::id());
        Self::at(rel)
    }

    pub fn at(rel: String) -> Self {
        let fs = cgroup2_mount().join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&fs).unwrap_or_else(|e| panic!("mkdir {}: {e}", fs.display()));
        Self { rel, fs }
    }

    /// A cgroup below this one (`name` may have several components: `a/b`). Keep the returned
    /// value alive while it is used: dropping it removes the directory.
    pub fn child(&self, name: &str) -> Self {
        Self::at(format!("{}/{name}", self.rel))
    }

    /// The cgroup id (inode number of the directory).
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.fs).expect("cgroup dir").ino()
    }

    /// A command that starts inside this cgroup (moved in after fork, before exec).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        let procs = self.fs.join("cgroup.procs");
        // SAFETY: the closure only performs an async-signal-safe write to a file.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
        cmd
    }

    /// Runs the workload with `args` inside this cgroup; returns its report lines.
    pub fn workload<I, S>(&self, args: I) -> Vec<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.workload_with_fds(&[], args)
    }

    /// [`TestCgroup::workload`], the workload starting with descriptors of ours: each `(fd, at)`
    /// duplicated to fd number `at` (inherited across its exec, as a parent passes files).
    pub fn workload_with_fds<I, S>(&self, fds: &[(RawFd, RawFd)], args: I) -> Vec<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(workload_bin());
        let fds = fds.to_vec();
        // SAFETY: the closure only calls fcntl, dup2 and close, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                // Each first to a copy above every fd number asked for, then to its number: a
                // `dup2` of an fd onto its own number is a no-op that leaves it close-on-exec
                // (ours are), and one onto another's number would close that one before its turn.
                let mut copies = [0; 16];
                if fds.len() > copies.len() {
                    return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
                }
                for (copy, &(fd, _)) in copies.iter_mut().zip(&fds) {
                    *copy = libc::fcntl(fd, libc::F_DUPFD, 1000);
                    if *copy < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (&copy, &(_, at)) in copies.iter().zip(&fds) {
                    if libc::dup2(copy, at) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(copy);
                }
                Ok(())
            });
        }
        let out = cmd
            .args(args)
            .stderr(Stdio::inherit())
            .output()
            .expect("run workload");
        // Only the workload's own report lines: programs it execs may print too.
        let own: Vec<u8> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("{\"action\""))
            .flat_map(|l| l.bytes().chain([b'\n']))
            .collect();
        parse_lines(&own)
    }

    fn kill_all(dir: &Path) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }

    fn remove(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    Self::remove(&e.path());
                }
            }
        }
        Self::kill_all(dir);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
            Self::kill_all(dir);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        Self::remove(&self.fs);
    }
}

/// Parses JSON lines, panicking with the line on malformed input.
pub fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A running audit-agent.
pub struct Agent {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Starts `audit-agent ARGS` and waits until it reports ready.
    pub fn start<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::start_with(Command::new(agent_bin()).args(args))
    }

    /// Starts a prepared command (for extra environment) and waits until it reports ready.
    pub fn start_with(cmd: &mut Command) -> Self {
        require_root();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn audit-agent");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut out = child.stdout.take().expect("stdout");
        let so = stdout.clone();
        let r1 = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                so.lock().expect("lock").extend_from_slice(&buf[..n]);
            }
        });
        let err = child.stderr.take().expect("stderr");
        let se = stderr.clone();
        let r2 = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = se.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut agent = Self {
            child,
            stdout,
            stderr,
            readers: vec![r1, r2],
        };
        // `ready:` exactly (not any word containing "ready", such as "already").
        agent.wait_for_stderr("ready:", Duration::from_secs(60));
        agent
    }

    /// `audit-agent watch --format json --cgroup <cg>`.
    pub fn watch_cgroup(cg: &TestCgroup) -> Self {
        Self::start(["watch", "--format", "json", "--cgroup", &cg.rel])
    }

    /// `watch` of `cg` with the configuration `config` (written to `dir/config.toml`).
    pub fn watch_config(cg: &TestCgroup, dir: &Scratch, config: &str) -> Self {
        let file = dir.path("config.toml");
        std::fs::write(&file, config).expect("write config");
        Self::start([
            "watch",
            "--format",
            "json",
            "--cgroup",
            &cg.rel,
            "--config",
            file.to_str().expect("utf-8 path"),
        ])
    }

    /// Waits until stderr contains `needle`; panics with the log on timeout or early exit.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_stderr_count(needle, 1, timeout);
    }

    /// Waits until stderr contains `needle` at least `n` times (an event the agent logs, such as
    /// a watch-set change): tests wait for what they need, never for a fixed time.
    pub fn wait_for_stderr_count(&mut self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().matches(needle).count() >= n {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "audit-agent exited ({status}) before `{needle}`; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "audit-agent did not log `{needle}` within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// Output so far (complete lines only).
    pub fn records_so_far(&self) -> Vec<Value> {
        let out = self.stdout.lock().expect("lock").clone();
        let end = out.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        parse_lines(&out[..end])
    }

    /// Sends `signal` to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the agent with SIGINT and returns everything it wrote (stdout JSON lines).
    pub fn stop(self) -> Vec<Value> {
        self.signal(libc::SIGINT);
        self.finish()
    }

    /// Waits for the agent to exit on its own and returns everything it wrote.
    pub fn finish(mut self) -> Vec<Value> {
        let status = self.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "audit-agent exited with {status}; stderr:\n{}",
            self.stderr()
        );
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        parse_lines(&self.stdout.lock().expect("lock"))
    }

    /// Waits for exit (SIGKILL after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "audit-agent did not exit in {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Field access by dotted path: `get(rec, "resource.path")`.
pub fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// Records of `action` by process `pid`.
pub fn by_pid<'a>(records: &'a [Value], pid: i64, action: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["action"] == action && r["process"]["pid"] == pid)
        .collect()
}

/// The one record of `action` on `path` by `pid`; panics listing the candidates otherwise.
pub fn one<'a>(records: &'a [Value], pid: i64, action: &str, path: &str) -> &'a Value {
    let found: Vec<&Value> = by_pid(records, pid, action)
        .into_iter()
        .filter(|r| r["resource"]["path"] == path)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {action} of {path:?} by pid {pid}, found {}: {:#?}\nall records of pid: {:#?}",
        found.len(),
        found,
        by_pid(records, pid, action)
    );
    found[0]
}

/// Records of `action` by thread `tid`, in sequence order.
pub fn by_tid<'a>(records: &'a [Value], tid: &Value, action: &str) -> Vec<&'a Value> {
    let mut v: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == action && r["process"]["tid"] == *tid)
        .collect();
    v.sort_by_key(|r| r["seq"].as_u64());
    v
}

/// A configuration whose protected set `secrets` (`files` and `exec` globs) every agent is denied
/// (rule `no-secrets`), everything else allowed; `extra` is prepended (e.g. a `[capture]` table).
pub fn deny_policy(files: &[String], exec: &[String], extra: &str) -> String {
    let list = |v: &[String]| {
        v.iter()
            .map(|x| format!("{x:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!("default_decision = \"allow\"\n{extra}\n");
    if !(files.is_empty() && exec.is_empty()) {
        text += &format!(
            "[[protected]]\nname = \"secrets\"\nfiles = [{}]\nexec = [{}]\n\
             [[rules]]\nid = \"no-secrets\"\nagents = [\"*\"]\nprotected = [\"secrets\"]\n\
             decision = \"deny\"\n",
            list(files),
            list(exec),
        );
    }
    text
}

/// A connected pair of unix stream sockets.
pub fn unix_pair() -> (
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixStream,
) {
    std::os::unix::net::UnixStream::pair().expect("socketpair")
}

/// Sends `fd` over `sock` with `SCM_RIGHTS` (and one byte of data): the receiver gets its own
/// descriptor of the same file.
pub fn send_fd(sock: &std::os::unix::net::UnixStream, fd: RawFd) {
    use std::os::unix::io::AsRawFd as _;
    let mut byte = b'x';
    let mut iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr pointing at live buffers, one SCM_RIGHTS header with one fd.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), fd);
        assert_eq!(
            libc::sendmsg(sock.as_raw_fd(), &msg, 0),
            1,
            "sendmsg SCM_RIGHTS"
        );
    }
}

/// The pid a workload reported for its first action.
pub fn pid_of(report: &[Value]) -> i64 {
    report
        .first()
        .and_then(|r| r["pid"].as_i64())
        .expect("workload report with a pid")
}

/// The path the kernel names a file by: every symlink resolved (`/bin/true` is
/// `/usr/bin/true` on merged-/usr systems). Records name what the kernel opened or loaded.
pub fn real_path(p: &str) -> String {
    std::fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .to_str()
        .expect("utf-8 path")
        .to_string()
}

/// `audit-agent keygen DIR/signing.key`: the private key's path and the public key (hex).
pub fn keygen(dir: &Scratch) -> (PathBuf, String) {
    let key = dir.path("signing.key");
    let out = Command::new(agent_bin())
        .arg("keygen")
        .arg(&key)
        .output()
        .expect("run audit-agent keygen");
    assert!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (key, public)
}

/// A unique scratch directory under /tmp, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("audit-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Self(p)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
