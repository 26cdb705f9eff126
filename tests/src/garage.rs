//! A real S3 server for the export tests: Garage on loopback, started from the test process.
//! Ports are picked free at start; the server dies with the test process (PR_SET_PDEATHSIG on a
//! thread that lives as long as the process).

use std::{
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, mpsc},
    time::{Duration, Instant},
};

use object_store::{ObjectStore, aws::AmazonS3Builder};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn garage_bin() -> String {
    std::env::var("GARAGE_BIN").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let p = format!("{home}/.cargo/bin/garage");
        if std::path::Path::new(&p).exists() {
            p
        } else {
            "garage".into()
        }
    })
}

/// Spawns on a dedicated, never-ending thread so PR_SET_PDEATHSIG fires only when the whole
/// test process ends.
fn spawn_forever(mut cmd: Command) -> Child {
    /// A command to spawn and where to send the spawned child.
    type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
            loop {
                std::thread::park();
            }
        });
        Mutex::new(tx)
    });
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (rtx, rrx) = mpsc::channel();
    tx.lock()
        .expect("spawner")
        .send((cmd, rtx))
        .expect("spawner alive");
    rrx.recv().expect("spawn reply").expect("spawn garage")
}

static SHARED: OnceLock<Garage> = OnceLock::new();

/// At exit: the shared server is killed and reaped, its directory removed.
extern "C" fn remove_shared() {
    let Some(g) = SHARED.get() else {
        return;
    };
    if let Some(pid) = g.child.as_ref().map(|c| c.id() as libc::pid_t) {
        // SAFETY: kill and waitpid on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let _ = std::fs::remove_dir_all(&g.dir);
}

pub struct Garage {
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    pub s3_port: u16,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    /// A new single-node Garage with its own data directory and ports.
    pub fn start() -> Self {
        let n = std::process::id();
        let dir = std::env::temp_dir().join(format!("audit-garage-{n}-{}", free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("garage dir");
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + n as usize) % 256))
            .collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 root_domain = \".s3.garage.localhost\"\n[admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                d = dir.display()
            ),
        )
        .expect("garage config");
        let mut g = Self {
            dir,
            config,
            child: None,
            s3_port: s3,
            key_id: String::new(),
            secret: String::new(),
        };
        g.launch();
        let status = g.cli(&["status"]);
        let node = status
            .lines()
            .find(|l| l.contains(&format!("127.0.0.1:{rpc}")))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("node id in garage status:\n{status}"))
            .to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(&["layout", "apply", "--version", "1"]);
        (g.key_id, g.secret) = g.key("audit-tests");
        g
    }

    /// Creates an access key; returns its id and secret.
    pub fn key(&self, name: &str) -> (String, String) {
        let key = self.cli(&["key", "create", name]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_else(|| panic!("{name} in garage key create output:\n{key}"))
        };
        (field("Key ID:"), field("Secret key:"))
    }

    /// One Garage shared by the tests of a binary. A static is never dropped, so the server is
    /// stopped and its directory removed when the test process exits.
    pub fn shared() -> &'static Garage {
        SHARED.get_or_init(|| {
            let g = Garage::start();
            // SAFETY: registers a plain function without arguments.
            unsafe { libc::atexit(remove_shared) };
            g
        })
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("log");
        let mut cmd = Command::new(garage_bin());
        cmd.arg("-c")
            .arg(&self.config)
            .arg("server")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.child = Some(spawn_forever(cmd));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_ok()
                && Command::new(garage_bin())
                    .arg("-c")
                    .arg(&self.config)
                    .arg("status")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "garage did not start; see {}",
                self.dir.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the garage CLI; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(garage_bin())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("garage cli");
        assert!(
            out.status.success(),
            "garage {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a bucket the test key can read and write.
    pub fn bucket(&self, name: &str) {
        self.cli(&["bucket", "create", name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            name,
            "--key",
            "audit-tests",
        ]);
    }

    /// Creates a bucket and a key that may read and write its objects and nothing else (not the
    /// owner: it cannot change the bucket's settings, or delete it) — all the agent needs.
    /// Returns the `AWS_*` variables of that key.
    pub fn bucket_for_agent(&self, name: &str) -> Vec<(&'static str, String)> {
        self.cli(&["bucket", "create", name]);
        let key_name = format!("{name}-agent");
        let (id, secret) = self.key(&key_name);
        self.cli(&[
            "bucket", "allow", "--read", "--write", name, "--key", &key_name,
        ]);
        self.env()
            .into_iter()
            .map(|(k, v)| match k {
                "AWS_ACCESS_KEY_ID" => (k, id.clone()),
                "AWS_SECRET_ACCESS_KEY" => (k, secret.clone()),
                _ => (k, v),
            })
            .collect()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Kills the server (an outage); data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// `AWS_*` variables for audit-agent.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", "garage".into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// A client for reading and tampering with a bucket from the test.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self.client_with(bucket, &self.env())
    }

    /// A client with the key of `env` (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`).
    pub fn client_with(
        &self,
        bucket: &str,
        env: &[(&'static str, String)],
    ) -> Arc<dyn ObjectStore> {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_region("garage")
                .with_access_key_id(var("AWS_ACCESS_KEY_ID"))
                .with_secret_access_key(var("AWS_SECRET_ACCESS_KEY"))
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()
                .expect("s3 client"),
        )
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
