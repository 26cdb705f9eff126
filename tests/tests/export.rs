//! Durable export, end to end: the real daemon captures real kernel activity, spools, seals and
//! uploads to a real S3 server (Garage on loopback) or a directory store, through outages and
//! crashes; `verify` proves the result and catches tampering.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use audit_tests::{garage::Garage, trail::Trail, *};

/// Where a test's trail goes.
struct Target {
    url: String,
    env: Vec<(&'static str, String)>,
    trail: Trail,
    endpoint: Option<String>,
}

fn s3_target(g: &Garage, bucket: &str) -> Target {
    g.bucket(bucket);
    Target {
        url: format!("s3://{bucket}/trail"),
        env: g.env(),
        trail: Trail {
            store: g.client(bucket),
            prefix: "trail".into(),
        },
        endpoint: Some(g.endpoint()),
    }
}

fn file_target(dir: &Path) -> Target {
    Target {
        url: format!("file://{}", dir.display()),
        env: vec![],
        trail: Trail::dir(dir),
        endpoint: None,
    }
}

fn config(t: &Target, cg: &TestCgroup, spool: &Path, extra: &str) -> String {
    let endpoint = t
        .endpoint
        .as_ref()
        .map(|e| format!("endpoint = \"{e}\"\nregion = \"garage\"\nallow_http = true\n"))
        .unwrap_or_default();
    format!(
        r#"
[[agents]]
id = "exporter-test"
workflow = "export"
cgroup = ["{cg}/**"]

[[protected]]
name = "markers"
files = ["/nonexistent-audit-marker/**"]

[[rules]]
id = "markers-reviewed"
protected = ["markers"]
decision = "review"

[export]
store = "{url}"
{endpoint}spool_dir = "{spool}"
segment_max_age_ms = 300
shutdown_grace_ms = 20000
{extra}
"#,
        cg = cg.rel,
        url = t.url,
        spool = spool.display()
    )
}

fn daemon(cfg_text: &str, dir: &Scratch, env: &[(&'static str, String)]) -> Agent {
    let cfg = dir.path("config.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let mut cmd = Command::new(agent_bin());
    cmd.args(["run", "--config", cfg.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Agent::start_with(&mut cmd)
}

fn verify(t: &Target, extra: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(agent_bin());
    cmd.arg("verify").arg(&t.url).args(extra);
    for (k, v) in &t.env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Marker paths seen in the trail: path -> distinct record ids.
fn markers(records: &[Value], prefix: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in records {
        if let Some(p) = r["resource"]["path"]
            .as_str()
            .filter(|p| p.starts_with(prefix))
        {
            m.entry(p.to_string())
                .or_default()
                .insert(r["id"].as_str().unwrap().to_string());
        }
    }
    m
}

fn assert_all_markers_once(records: &[Value], prefix: &str, range: std::ops::Range<u32>) {
    let m = markers(records, prefix);
    for i in range {
        let p = format!("{prefix}-{i}");
        let ids = m
            .get(&p)
            .unwrap_or_else(|| panic!("marker {p} missing from the trail"));
        assert_eq!(ids.len(), 1, "{p} recorded under several ids: {ids:?}");
    }
}

fn marker_prefix(tag: &str) -> String {
    format!("/nonexistent-audit-marker/{tag}-{}", std::process::id())
}

fn delivers_every_record(t: Target, tag: &str) {
    let cg = TestCgroup::new(tag);
    let dir = Scratch::new(tag);
    let spool = dir.path("spool");
    let agent = daemon(&config(&t, &cg, &spool, "ocsf = true"), &dir, &t.env);
    let prefix = marker_prefix(tag);
    let rep = cg.workload([
        "open-many",
        &prefix,
        "50",
        "0",
        "open",
        "/etc/hostname",
        "exec",
        "/bin/true",
        "x",
    ]);
    let _ = agent.stop();

    let records = t.trail.records();
    assert_all_markers_once(&records, &prefix, 0..50);
    let pid = pid_of(&rep);
    let m = records
        .iter()
        .find(|r| r["resource"]["path"] == format!("{prefix}-7").as_str())
        .unwrap();
    assert_eq!(m["process"]["pid"], pid);
    assert_eq!(m["agent"]["id"], "exporter-test");
    assert_eq!(m["result"]["errno"], "ENOENT");
    assert_eq!(m["protected"], json!(["markers"]));
    assert_eq!(m["policy"]["decision"], "review");
    assert!(records.iter().any(|r| r["action"] == "process.exec"
        && r["resource"]["path"] == real_path("/bin/true").as_str()
        && r["process"]["pid"] == pid));
    // Hive layout, one agent and one hour per object, objects sorted by first seq.
    let objects = t.trail.objects("v1");
    for (key, lines) in &objects {
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 5, "{key}");
        assert!(
            parts[1].starts_with("agent_id=")
                && parts[2].starts_with("dt=")
                && parts[3].starts_with("hour="),
            "{key}"
        );
        assert!(parts[4].ends_with(".ndjson.gz"));
        let agent = parts[1].trim_start_matches("agent_id=");
        for l in lines {
            let want = if l["action"] == "audit.gap" {
                "_audit"
            } else {
                l["agent"]["id"].as_str().unwrap()
            };
            assert_eq!(agent, want, "record in the wrong partition: {key}");
            assert_eq!(
                &l["time"].as_str().unwrap()[..10],
                parts[2].trim_start_matches("dt=")
            );
            assert_eq!(
                &l["time"].as_str().unwrap()[11..13],
                parts[3].trim_start_matches("hour=")
            );
        }
        let first = parts[4]
            .trim_end_matches(".ndjson.gz")
            .rsplit('-')
            .next()
            .unwrap();
        assert_eq!(first.len(), 20);
        assert_eq!(
            first.parse::<u64>().unwrap(),
            lines
                .iter()
                .map(|l| l["seq"].as_u64().unwrap())
                .min()
                .unwrap()
        );
    }
    // OCSF copies: same partitions, same record counts.
    let ocsf = t.trail.objects("ocsf");
    assert_eq!(ocsf.len(), objects.len());
    for (key, lines) in &objects {
        let okey = key.replacen("v1/", "ocsf/", 1);
        assert_eq!(ocsf[&okey].len(), lines.len(), "{okey}");
        assert!(
            ocsf[&okey]
                .iter()
                .all(|e| e["metadata"]["version"] == "1.3.0")
        );
    }
    // S3 objects say what they are.
    if t.url.starts_with("s3://") {
        let key = objects.keys().next().unwrap();
        assert_eq!(
            t.trail.content_type(key).as_deref(),
            Some("application/gzip")
        );
        let manifest = &t.trail.manifests()[0];
        assert_eq!(
            t.trail.content_type(manifest).as_deref(),
            Some("application/json")
        );
    }
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("verify: OK"));
}

#[test]
fn daemon_delivers_every_record_to_s3() {
    delivers_every_record(s3_target(Garage::shared(), "deliver"), "deliver-s3");
}

#[test]
fn daemon_delivers_every_record_to_a_directory_store() {
    let d = Scratch::new("deliver-file");
    delivers_every_record(file_target(&d.path("store")), "deliver-file");
}

/// A node of a thousand agents, one `[[agents]]` entry and cgroup each: every agent's records
/// are delivered once, each in objects of its own partition (the layout readers prune by), and
/// the trail verifies. The daemon keeps one journal and no compressor per agent, and seals the
/// agents' segments for their age at a bounded rate; a stop seals them all.
#[test]
fn a_thousand_agents_records_are_all_delivered_each_in_its_own_partition() {
    const AGENTS: usize = 1000;
    let dir = Scratch::new("thousand");
    let store = dir.path("store");
    let t = file_target(&store);
    let root = TestCgroup::new("thousand");
    let cgs: Vec<TestCgroup> = (0..AGENTS)
        .map(|i| root.child(&format!("a{i:04}")))
        .collect();
    let mut cfg = String::new();
    for (i, cg) in cgs.iter().enumerate() {
        cfg.push_str(&format!(
            "[[agents]]\nid = \"agent-{i:04}\"\ncgroup = [\"{}\"]\n\n",
            cg.rel
        ));
    }
    cfg.push_str(&format!(
        "[export]\nstore = \"{}\"\nspool_dir = \"{}\"\nsegment_max_age_ms = 300\n\
         shutdown_grace_ms = 300000\n",
        t.url,
        dir.path("spool").display()
    ));
    let mut agent = daemon(&cfg, &dir, &t.env);
    let prefix = marker_prefix("thousand");
    // Fifty agents at a time, each a process in its own cgroup opening three markers; the next
    // fifty once these are spooled, so the kernel's ring buffer never holds more than fifty
    // agents' records (it would take a gap record, not loss, on a slow machine, but this test
    // is about delivery).
    let spool = dir.path("spool");
    for (b, batch) in cgs.chunks(50).enumerate() {
        let mut running: Vec<std::process::Child> = batch
            .iter()
            .enumerate()
            .map(|(j, cg)| {
                cg.command(workload_bin())
                    .args([
                        "open-many",
                        &format!("{prefix}-a{:04}", b * 50 + j),
                        "3",
                        "0",
                    ])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn workload")
            })
            .collect();
        for c in &mut running {
            assert!(c.wait().unwrap().success());
        }
        // Where they can be: the journal, or the batch's agents' segments, objects to upload
        // and objects in the store (their names carry the agent id).
        let agents: Vec<String> = (0..batch.len())
            .map(|j| format!("agent-{:04}", b * 50 + j))
            .collect();
        let theirs = |p: &Path| {
            let name = p.to_string_lossy();
            agents.iter().any(|a| name.contains(a.as_str()))
        };
        wait_until("the batch's markers spooled", || {
            let spooled = ["journal", "open", "ready", "sealed"]
                .iter()
                .filter_map(|d| std::fs::read_dir(spool.join(d)).ok())
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.starts_with(spool.join("journal")) || theirs(p));
            let stored = agents
                .iter()
                .flat_map(|a| files_under(&store.join(format!("v1/agent_id={a}"))));
            let text: String = spooled.chain(stored).map(|p| spooled_text(&p)).collect();
            (0..batch.len()).all(|j| text.contains(&format!("{prefix}-a{:04}-2", b * 50 + j)))
        });
    }
    agent.signal(libc::SIGINT);
    assert!(agent.wait(Duration::from_secs(120)).success());
    let stderr = agent.stderr();

    let objects = t.trail.objects("v1");
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (key, records) in &objects {
        let partition = key.split('/').nth(1).unwrap();
        for r in records {
            let id = r["agent"]["id"].as_str().unwrap_or("_audit");
            assert_eq!(
                partition,
                format!("agent_id={id}"),
                "{key} holds a record of {id}"
            );
            if let Some(p) = r["resource"]["path"]
                .as_str()
                .filter(|p| p.starts_with(&prefix))
            {
                *seen.entry(p.to_string()).or_default() += 1;
                let agent = &p[prefix.len() + 2..prefix.len() + 6];
                assert_eq!(id, format!("agent-{agent}"), "{p} attributed to {id}");
            }
        }
    }
    let missing: Vec<String> = (0..AGENTS)
        .flat_map(|i| (0..3).map(move |k| (i, k)))
        .map(|(i, k)| format!("{prefix}-a{i:04}-{k}"))
        .filter(|p| seen.get(p) != Some(&1))
        .collect();
    assert!(
        missing.is_empty(),
        "{} markers not delivered once, first {:?}; the daemon said:\n{stderr}",
        missing.len(),
        missing.first()
    );
    assert_eq!(seen.len(), AGENTS * 3);
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

#[test]
fn store_outage_under_load_loses_nothing() {
    let mut g = Garage::start();
    let t = s3_target(&g, "outage");
    let cg = TestCgroup::new("outage");
    let dir = Scratch::new("outage");
    let agent = daemon(&config(&t, &cg, &dir.path("spool"), ""), &dir, &t.env);
    let prefix = marker_prefix("outage");
    let load = {
        let mut c = cg.command(workload_bin());
        c.args(["open-many", &prefix, "400", "10"]);
        c.stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    // Some batches reach the store, then it goes away until the daemon has noticed.
    wait_until("a first manifest uploaded", || {
        !t.trail.manifests().is_empty()
    });
    g.stop();
    let mut agent = agent;
    agent.wait_for_stderr("upload failed; will retry", Duration::from_secs(120));
    g.restart();
    let mut load = load;
    load.wait().unwrap();
    let _ = agent.stop();
    assert_all_markers_once(&t.trail.records(), &prefix, 0..400);
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .flat_map(|p| if p.is_dir() { files_under(&p) } else { vec![p] })
        .collect()
}

/// The records a spool file holds: a gzip stream, read as far as it goes (a segment still being
/// written has no end yet; what it holds up to its last sync decodes), or plain NDJSON. Empty
/// when the file has moved on (cut, closed, sealed or uploaded) since it was listed.
fn spooled_text(p: &Path) -> String {
    use std::io::Read as _;
    let Ok(bytes) = std::fs::read(p) else {
        return String::new();
    };
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        // A journal of several agents is plain NDJSON.
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Record ids found in a spool directory (the journal, open and ready segments, sealed objects).
fn spooled_ids(spool: &Path) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for sub in ["journal", "open", "ready", "sealed"] {
        let Ok(rd) = std::fs::read_dir(spool.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.ends_with(".native.gz")
                || name.ends_with(".ndjson.gz")
                || name.ends_with(".ndjson"))
            {
                continue;
            }
            let text = spooled_text(&p);
            for l in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(l) {
                    ids.insert(v["id"].as_str().unwrap().to_string());
                }
            }
        }
    }
    ids
}

#[test]
fn sigkill_with_sealed_and_unsealed_spool_then_restart_delivers_everything() {
    let mut g = Garage::start();
    let t = s3_target(&g, "crash");
    let cg = TestCgroup::new("crash");
    let dir = Scratch::new("crash");
    let spool = dir.path("spool");
    let cfg = config(&t, &cg, &spool, "");
    let mut agent = daemon(&cfg, &dir, &t.env);
    let prefix = marker_prefix("crash");
    cg.workload(["open-many", &format!("{prefix}-a"), "100", "0"]);
    wait_until("the a markers sealed and uploaded", || {
        markers(&t.trail.records(), &format!("{prefix}-a")).len() == 100
    });
    g.stop();
    cg.workload(["open-many", &format!("{prefix}-b"), "100", "0"]);
    let sealed = |dir: &str| {
        std::fs::read_dir(spool.join(dir))
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            })
            .unwrap_or(false)
    };
    wait_until("the b markers sealed (upload failing)", || sealed("sealed"));
    agent.wait_for_stderr("upload failed; will retry", Duration::from_secs(120));
    cg.workload(["open-many", &format!("{prefix}-c"), "100", "0"]);
    wait_until("the c markers written to an open segment", || {
        std::fs::read_dir(spool.join("open")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                .any(|e| spooled_text(&e.path()).contains(&format!("{prefix}-c")))
        })
    });
    let killed_at = jiff::Timestamp::now();
    agent.signal(libc::SIGKILL);
    agent.wait(Duration::from_secs(10));
    let in_spool = spooled_ids(&spool);
    assert!(
        std::fs::read_dir(spool.join("sealed")).unwrap().count() > 0,
        "sealed data left in the spool"
    );
    assert!(
        std::fs::read_dir(spool.join("open")).unwrap().count() > 0,
        "unsealed data left in the spool"
    );

    g.restart();
    let restarted_at = jiff::Timestamp::now();
    let agent = daemon(&cfg, &dir, &t.env);
    let _ = agent.stop();

    let records = t.trail.records();
    let stored: BTreeSet<String> = records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<&String> = in_spool.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "records that reached the spool but not the store: {lost:?}"
    );
    assert_all_markers_once(&records, &format!("{prefix}-a"), 0..100);
    assert_all_markers_once(&records, &format!("{prefix}-b"), 0..100);
    // Duplicates, if any, carry identical ids: one id per distinct (seq).
    let mut by_seq: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for r in &records {
        by_seq
            .entry(r["seq"].as_u64().unwrap())
            .or_default()
            .insert(r["id"].as_str().unwrap());
    }
    assert!(by_seq.values().all(|ids| ids.len() == 1));
    // The crash gap covers the whole outage: from the last time the dead run was known alive
    // (before the kill) to the restart.
    let crash: Vec<&Value> = records
        .iter()
        .filter(|r| r["gap"]["reason"] == "agent_crash")
        .collect();
    assert_eq!(crash.len(), 1, "the crash is on record once: {crash:#?}");
    let at = |k: &str| -> jiff::Timestamp { crash[0]["gap"][k].as_str().unwrap().parse().unwrap() };
    assert!(
        at("from") <= killed_at,
        "gap starts before the kill: {:#}",
        crash[0]
    );
    assert!(
        at("to") >= restarted_at,
        "gap ends at the restart: {:#}",
        crash[0]
    );
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

/// Spools of versions before segments were compressed hold plain NDJSON (`<name>.ndjson`): an
/// upgraded daemon recovers them (a torn last line cut), seals them and delivers every record.
#[test]
fn a_spool_of_plain_segments_left_by_an_earlier_version_is_delivered_after_the_upgrade() {
    let cg = TestCgroup::new("upgrade");
    let dir = Scratch::new("upgrade");
    let t = file_target(&dir.path("store"));
    let spool = dir.path("spool");
    let cfg = config(&t, &cg, &spool, "");
    let mut agent = daemon(&cfg, &dir, &t.env);
    let prefix = marker_prefix("upgrade");
    cg.workload(["open-many", &prefix, "100", "0"]);
    let open_text = || {
        std::fs::read_dir(spool.join("open"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| spooled_text(&e.path()))
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    wait_until("every marker written to an open segment", || {
        let text = open_text();
        (0..100).all(|i| text.contains(&format!("{prefix}-{i}\"")))
    });
    agent.signal(libc::SIGKILL);
    agent.wait(Duration::from_secs(10));
    // What the earlier version would have left: the same records, plain, with a torn tail.
    for e in std::fs::read_dir(spool.join("open")).unwrap().flatten() {
        let gz = e.path();
        let name = gz.file_name().unwrap().to_string_lossy().into_owned();
        let plain = gz.with_file_name(name.strip_suffix(".gz").unwrap());
        let mut text = spooled_text(&gz);
        text.push_str("{\"schema\":\"audit-agent/v1\",\"id\":\"torn");
        std::fs::write(&plain, text).unwrap();
        std::fs::remove_file(&gz).unwrap();
    }
    let agent = daemon(&cfg, &dir, &t.env);
    let _ = agent.stop();
    assert_all_markers_once(&t.trail.records(), &prefix, 0..100);
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

#[test]
fn a_sigkill_of_the_daemon_by_a_watched_process_is_on_record_after_restart() {
    let cg = TestCgroup::new("sigkill-agent");
    let dir = Scratch::new("sigkill-agent");
    let t = file_target(&dir.path("store"));
    let cfg = config(&t, &cg, &dir.path("spool"), "");
    let mut agent = daemon(&cfg, &dir, &t.env);
    let report = cg.workload(["kill", &agent.pid().to_string(), "9"]);
    assert_eq!(report[0]["ret"], 0, "{report:?}");
    agent.wait(Duration::from_secs(30));
    // The dead daemon never read the record of its own SIGKILL; the kernel kept it.
    let agent = daemon(&cfg, &dir, &t.env);
    let _ = agent.stop();

    let records = t.trail.records();
    let sig: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "process.signal")
        .collect();
    assert_eq!(sig.len(), 1, "{sig:#?}");
    assert_eq!(sig[0]["resource"]["signal"], "SIGKILL");
    assert_eq!(sig[0]["process"]["pid"], report[0]["pid"]);
    assert_eq!(sig[0]["agent"]["id"], "exporter-test");
    let crash = records
        .iter()
        .find(|r| r["gap"]["reason"] == "agent_crash")
        .expect("the crash is on record");
    assert!(
        crash["gap"]["from"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            <= sig[0]["time"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap(),
        "the signal falls in the crash window: {crash:#} {:#}",
        sig[0]
    );
}

#[test]
fn store_errors_name_what_to_fix() {
    let g = Garage::shared();
    let t = s3_target(g, "hints");
    let run = |url: &str, env: &[(&'static str, String)]| {
        let mut cmd = Command::new(agent_bin());
        cmd.args(["verify", url]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Wrong secret key: the server answers 403.
    let forged: Vec<(&'static str, String)> = t
        .env
        .iter()
        .map(|(k, v)| match *k {
            "AWS_SECRET_ACCESS_KEY" => (*k, "0".repeat(64)),
            _ => (*k, v.clone()),
        })
        .collect();
    let err = run(&t.url, &forged);
    assert!(err.contains("check the credentials"), "{err}");
    let err = run("s3://no-such-bucket-here/trail", &t.env);
    assert!(err.contains("the bucket does not exist"), "{err}");
}

/// A small tmpfs, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs at {}", at.display());
        Self(at)
    }

    /// Fills the file system with `filler` until `leave` bytes are free.
    fn fill(&self, leave: u64) -> PathBuf {
        let filler = self.0.join("filler");
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.0)
            .output();
        let avail: u64 = String::from_utf8_lossy(&out.unwrap().stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let f = std::fs::File::create(&filler).unwrap();
        f.set_len(0).unwrap();
        use std::io::Write as _;
        let mut w = std::io::BufWriter::new(f);
        let chunk = vec![0u8; 64 * 1024];
        let mut left = avail.saturating_sub(leave);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            w.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        w.flush().unwrap();
        filler
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_degrades_to_counted_loss_and_recovers_when_space_returns() {
    let cg = TestCgroup::new("diskfull");
    let dir = Scratch::new("diskfull");
    let t = file_target(&dir.path("store"));
    let small = SmallFs::mount(dir.path("small"), "8m");
    let spool = small.0.join("spool");
    let cfg = config(&t, &cg, &spool, "segment_max_bytes = 65536");
    // Full before the daemon starts: it starts anyway.
    std::fs::create_dir_all(&spool).unwrap();
    let filler = small.fill(64 * 1024);
    let mut agent = daemon(&cfg, &dir, &t.env);
    let prefix = marker_prefix("diskfull");
    let flooded = pid_of(&cg.workload(["open-many", &format!("{prefix}-a"), "300", "0"]));
    agent.wait_for_stderr(
        "records dropped; gap record written",
        Duration::from_secs(60),
    );
    // Space returns: writing resumes without a restart.
    std::fs::remove_file(&filler).unwrap();
    agent.wait_for_stderr("can be written again", Duration::from_secs(60));
    let after = pid_of(&cg.workload(["open-many", &format!("{prefix}-b"), "300", "0"]));
    let _ = agent.stop();

    let records = t.trail.records();
    let of = |pid: i64| {
        records
            .iter()
            .filter(|r| r["process"]["pid"] == pid)
            .count() as u64
    };
    let gaps: Vec<&Value> = records
        .iter()
        .filter(|r| r["gap"]["reason"] == "disk_full")
        .collect();
    let lost: u64 = gaps
        .iter()
        .map(|g| g["gap"]["lost"].as_u64().unwrap())
        .sum();
    assert!(lost > 0, "the loss is on record: {gaps:#?}");
    // The same workload after recovery is delivered whole: it says how many records the flooded
    // one made (exec, loader opens, markers); each of those is delivered or counted as lost.
    assert_all_markers_once(&records, &format!("{prefix}-b"), 0..300);
    assert_eq!(
        of(flooded) + lost,
        of(after),
        "delivered {} + lost {lost} = performed {}",
        of(flooded),
        of(after)
    );
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

/// What coreutils' `sha256sum` prints for `bytes`.
fn sha256sum(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The body of manifest `key`.
fn manifest_body(t: &Target, key: &str) -> Value {
    let v: Value = serde_json::from_slice(&t.trail.get(key)).unwrap();
    v["manifest"].clone()
}

#[test]
fn the_chain_tail_cannot_be_cut_unseen() {
    let d = Scratch::new("tail");
    let t = file_target(&d.path("store"));
    let cg = TestCgroup::new("tail");
    let cfg = config(&t, &cg, &d.path("spool"), "heartbeat_ms = 500");
    let agent = daemon(&cfg, &d, &t.env);
    cg.workload(["open-many", &marker_prefix("tail"), "20", "0"]);
    // Idle, the daemon writes heartbeat manifests: a live stream's tail stays recent.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while t
        .trail
        .manifests()
        .iter()
        .filter(|k| manifest_body(&t, k)["kind"] == "heartbeat")
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "no heartbeats");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = agent.stop();
    let manifests = t.trail.manifests();
    let last = manifest_body(&t, manifests.last().unwrap());
    assert_eq!(
        last["kind"], "closing",
        "a clean stop closes the stream: {last:#}"
    );
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "a closed stream verifies: {out}");
    // Anyone can check an object without audit-agent: its manifest names the stored bytes.
    for k in &manifests {
        for o in manifest_body(&t, k)["objects"].as_array().unwrap() {
            let stored = t.trail.get(o["key"].as_str().unwrap());
            assert_eq!(o["bytes"], stored.len(), "{o}");
            assert_eq!(o["sha256"].as_str().unwrap(), sha256sum(&stored), "{o}");
        }
    }

    // Cut the tail: the closing manifest, the newest batch and its objects.
    let batch = manifests
        .iter()
        .rposition(|k| manifest_body(&t, k)["kind"] == "batch")
        .unwrap();
    for k in &manifests[batch..] {
        for o in manifest_body(&t, k)["objects"].as_array().unwrap() {
            t.trail.delete(o["key"].as_str().unwrap());
        }
        t.trail.delete(k);
    }
    // Once the remaining last manifest is older than two heartbeat intervals (plus verify's 5 s
    // allowance for writing and uploading one), nothing explains the silence.
    let remaining = manifest_body(&t, &manifests[batch - 1]);
    let created: jiff::Timestamp = remaining["created"].as_str().unwrap().parse().unwrap();
    while jiff::Timestamp::now() < created + jiff::SignedDuration::from_millis(6100) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out) = verify(&t, &[]);
    assert!(
        !ok && out.contains("the tail was cut, or the agent has been down since"),
        "{out}"
    );
}

/// A trail with several manifests, to tamper with.
fn trail_with_manifests(t: &Target, tag: &str, extra: &str) {
    let cg = TestCgroup::new(tag);
    let dir = Scratch::new(tag);
    let agent = daemon(&config(t, &cg, &dir.path("spool"), extra), &dir, &t.env);
    let prefix = marker_prefix(tag);
    for phase in 0..3 {
        cg.workload(["open-many", &format!("{prefix}-{phase}"), "20", "0"]);
        // One manifest per phase: the next starts after this one's batch is on the store.
        wait_until("a manifest per phase", || t.trail.manifests().len() > phase);
    }
    let _ = agent.stop();
    assert!(t.trail.manifests().len() >= 3, "{:?}", t.trail.manifests());
}

fn tamper_suite(t: &Target, fork: impl Fn(&str) -> Target) {
    let (ok, out) = verify(t, &[]);
    assert!(ok, "untouched trail verifies:\n{out}");
    let objects: Vec<String> = t.trail.objects("v1").into_keys().collect();
    let manifests = t.trail.manifests();

    // Deleting an object.
    let f = fork("deleted-object");
    t.trail.copy_to(&f.trail);
    f.trail.delete(&objects[0]);
    let (ok, out) = verify(&f, &[]);
    assert!(
        !ok && out.contains(&format!("missing object: {}", objects[0])),
        "{out}"
    );

    // Changing one byte.
    let f = fork("changed-byte");
    t.trail.copy_to(&f.trail);
    let mut bytes = f.trail.get(&objects[1]);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    f.trail.put(&objects[1], bytes);
    let (ok, out) = verify(&f, &[]);
    assert!(
        !ok && out.contains(&format!("modified object: {}", objects[1])),
        "{out}"
    );

    // Deleting a manifest.
    let f = fork("deleted-manifest");
    t.trail.copy_to(&f.trail);
    f.trail.delete(&manifests[1]);
    let (ok, out) = verify(&f, &[]);
    assert!(
        !ok && out.contains("broken chain") && out.contains("are missing"),
        "{out}"
    );
    assert!(out.contains("object not in any manifest"), "{out}");

    // Reordering manifests.
    let f = fork("reordered");
    t.trail.copy_to(&f.trail);
    let (m0, m1) = (f.trail.get(&manifests[0]), f.trail.get(&manifests[1]));
    f.trail.put(&manifests[0], m1);
    f.trail.put(&manifests[1], m0);
    let (ok, out) = verify(&f, &[]);
    assert!(
        !ok && out.contains(&format!("{}: holds manifest 1 of the chain", manifests[0])),
        "{out}"
    );
}

#[test]
fn verify_detects_tampering_in_s3() {
    let g = Garage::shared();
    let t = s3_target(g, "tamper");
    trail_with_manifests(&t, "tamper-s3", "");
    tamper_suite(&t, |name| Target {
        url: format!("s3://tamper/{name}"),
        env: g.env(),
        trail: Trail {
            store: g.client("tamper"),
            prefix: name.to_string(),
        },
        endpoint: Some(g.endpoint()),
    });
}

#[test]
fn verify_detects_tampering_in_a_directory_store() {
    let d = Scratch::new("tamper-file");
    let t = file_target(&d.path("store"));
    trail_with_manifests(&t, "tamper-file", "");
    let root = d.0.clone();
    tamper_suite(&t, move |name| file_target(&root.join(name)));
}

#[test]
fn a_full_spool_drops_records_and_says_so_with_a_gap_record() {
    let g = Garage::shared();
    let t = s3_target(g, "spoolfull");
    let cg = TestCgroup::new("spoolfull");
    let dir = Scratch::new("spoolfull");
    let spool = dir.path("spool");
    // First run: the store is unreachable and the spool tiny, so it fills up.
    let unreachable = Target {
        url: t.url.clone(),
        env: t
            .env
            .iter()
            .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
            .cloned()
            .collect(),
        trail: t.trail.clone(),
        endpoint: Some("http://127.0.0.1:1".into()),
    };
    // The spool holds records compressed (~20 bytes each): 1500 of them cannot fit in 8 KiB.
    let small = "spool_max_bytes = 8192\nsegment_max_bytes = 4096\nshutdown_grace_ms = 500";
    let cfg = config(&unreachable, &cg, &spool, small).replace("shutdown_grace_ms = 20000\n", "");
    let mut agent = daemon(&cfg, &dir, &unreachable.env);
    let prefix = marker_prefix("spoolfull");
    let flooded = pid_of(&cg.workload(["open-many", &prefix, "1500", "0"]));
    agent.wait_for_stderr("spool full", Duration::from_secs(60));
    let _ = agent.stop();
    // Second run: the store is back; everything spooled is delivered, with the gap record. The
    // same workload without markers, unconstrained, says how many records the flooded run made
    // besides its markers (exec, the dynamic loader's opens), whichever of them were dropped.
    let agent = daemon(&config(&t, &cg, &spool, ""), &dir, &t.env);
    let baseline = pid_of(&cg.workload(["open-many", &prefix, "0", "0"]));
    let _ = agent.stop();
    let records = t.trail.records();
    let of = |pid: i64| {
        records
            .iter()
            .filter(|r| r["process"]["pid"] == pid)
            .count() as u64
    };
    let gaps: Vec<&Value> = records
        .iter()
        .filter(|r| r["gap"]["reason"] == "spool_full")
        .collect();
    assert!(!gaps.is_empty());
    let lost: u64 = gaps
        .iter()
        .map(|g| g["gap"]["lost"].as_u64().unwrap())
        .sum();
    let seen = markers(&records, &prefix).len() as u64;
    assert!(lost > 0 && seen < 1500, "seen {seen}, lost {lost}");
    assert_eq!(
        of(flooded) + lost,
        1500 + of(baseline),
        "every record of the flooded workload is either delivered or counted as lost \
         (delivered {}, lost {lost}, records of the same workload without markers {})",
        of(flooded),
        of(baseline)
    );
    // The gap records name exactly the sequence numbers that are missing.
    let mut dropped: BTreeSet<u64> = BTreeSet::new();
    for g in &gaps {
        let (from, to) = (
            g["gap"]["seq_from"].as_u64().unwrap(),
            g["gap"]["seq_to"].as_u64().unwrap(),
        );
        dropped.extend(from..=to);
    }
    for r in &records {
        dropped.remove(&r["seq"].as_u64().unwrap());
    }
    assert_eq!(
        dropped.len() as u64,
        lost,
        "lost = seqs in gap ranges not delivered"
    );
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "gaps explained by gap records verify:\n{out}");
    assert!(out.contains("explained by a gap record"), "{out}");
}

#[test]
fn signed_manifests_verify_only_with_the_signing_key() {
    let d = Scratch::new("signed");
    let (key, public) = keygen(&d);
    assert_eq!(public.len(), 64);
    let t = file_target(&d.path("store"));
    trail_with_manifests(
        &t,
        "signed",
        &format!("signing_key = \"{}\"", key.display()),
    );
    let (ok, out) = verify(&t, &["--public-key", &public]);
    assert!(ok && out.contains(&format!("signed by {public}")), "{out}");
    // A signed trail verifies only against a pinned key.
    let (ok, out) = verify(&t, &[]);
    assert!(!ok && out.contains("but no key is pinned"), "{out}");
    let other = "ab".repeat(32);
    let (ok, out) = verify(&t, &["--public-key", &other]);
    assert!(!ok && out.contains("not by the required key"), "{out}");
    // A re-signed (forged) manifest with another key is caught when the key is pinned; an
    // altered signed manifest is caught always.
    let m = t.trail.manifests()[0].clone();
    let forged =
        String::from_utf8(t.trail.get(&m))
            .unwrap()
            .replacen("\"records\":", "\"records\":1", 1);
    t.trail.put(&m, forged.into_bytes());
    let (ok, out) = verify(&t, &["--public-key", &public]);
    assert!(!ok && out.contains("bad signature"), "{out}");
    // A stripped signature fails against the pinned key.
    let m = t.trail.manifests()[1].clone();
    let text = String::from_utf8(t.trail.get(&m)).unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    let stripped = serde_json::json!({ "manifest": body["manifest"] }).to_string();
    t.trail.put(&m, stripped.into_bytes());
    for pinned in [&["--public-key", public.as_str()][..], &[]] {
        let (ok, out) = verify(&t, pinned);
        assert!(
            !ok && out.contains("carries no signature (stripped)"),
            "{out}"
        );
    }
}

#[test]
fn run_without_an_export_section_or_with_a_bad_store_fails_clearly() {
    let d = Scratch::new("badrun");
    let cfg = d.path("c.toml");
    std::fs::write(&cfg, "[watch]\nall = true\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`run` needs an [export] section"));
    std::fs::write(&cfg, "[export]\nstore = \"ftp://x\"\n").unwrap();
    let out = Command::new(agent_bin())
        .args(["check-config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("c.toml:2:9: export.store: `ftp://x`: unsupported scheme (use s3://bucket/prefix or file:///path)"),
        "{err}"
    );
    let out = Command::new(agent_bin())
        .args(["verify", "s3://nobucket/x"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "garage")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store s3://nobucket/x at http://127.0.0.1:1 is not usable"),
        "{err}"
    );
    let _ = PathBuf::new();
}

/// Records per stream: a record id is `<stream>-<seq>`, and each daemon's stream is its own.
fn by_stream(records: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in records {
        let id = r["id"].as_str().unwrap();
        let (stream, _) = id.rsplit_once('-').unwrap();
        m.entry(stream.to_string()).or_default().push(r.clone());
    }
    m
}

/// The manifest directories (one per stream) of a trail.
fn manifest_streams(t: &Target) -> BTreeSet<String> {
    t.trail
        .manifests()
        .iter()
        .map(|k| k.split('/').nth(2).unwrap().to_string())
        .collect()
}

/// The systemd unit left running when the DaemonSet arrives: daemons on one host, each with its
/// own spool, one store. Two watch the same agent, a third another one. Each writes its own
/// stream, delivers every record it saw once, and every stream verifies.
#[test]
fn daemons_on_one_host_write_their_own_streams_that_all_verify() {
    let g = Garage::shared();
    let t = s3_target(g, "twodaemons");
    let (cg, other) = (TestCgroup::new("two-a"), TestCgroup::new("two-b"));
    let dirs = [
        Scratch::new("two-1"),
        Scratch::new("two-2"),
        Scratch::new("two-3"),
    ];
    let mut agents: Vec<Agent> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let cfg = match i {
                2 => config(&t, &other, &d.path("spool"), "").replace("exporter-test", "other"),
                _ => config(&t, &cg, &d.path("spool"), ""),
            };
            daemon(&cfg, d, &t.env)
        })
        .collect();
    // Garage ignores If-None-Match (measured: `garage_ignores_create_only_writes`): said at start.
    agents[0].wait_for_stderr(
        "the store does not honour create-only writes",
        Duration::from_secs(30),
    );
    let (p1, p2) = (marker_prefix("two-a"), marker_prefix("two-b"));
    cg.workload(["open-many", &p1, "100", "0"]);
    other.workload(["open-many", &p2, "100", "0"]);
    for a in agents.drain(..) {
        let _ = a.stop();
    }

    let streams = by_stream(&t.trail.records());
    assert_eq!(streams.len(), 3, "{:?}", streams.keys());
    assert_eq!(manifest_streams(&t).len(), 3, "{:?}", t.trail.manifests());
    let mut watched_a = 0;
    for (stream, records) in &streams {
        let agent = records
            .iter()
            .find_map(|r| r["agent"]["id"].as_str())
            .unwrap();
        let (mine, theirs) = if agent == "other" {
            (&p2, &p1)
        } else {
            (&p1, &p2)
        };
        watched_a += usize::from(agent == "exporter-test");
        assert_all_markers_once(records, mine, 0..100);
        assert!(markers(records, theirs).is_empty(), "{stream}");
    }
    assert_eq!(watched_a, 2, "both daemons of one agent delivered it");
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
    assert_eq!(out.matches(" — OK").count(), 3, "{out}");
    assert!(
        out.contains("sealed while the store did not honour create-only writes"),
        "{out}"
    );
}

#[test]
fn a_second_daemon_on_a_spool_in_use_is_refused_and_a_restart_continues_the_stream() {
    let d = Scratch::new("onespool");
    let t = file_target(&d.path("store"));
    let cg = TestCgroup::new("onespool");
    let spool = d.path("spool");
    let cfg = config(&t, &cg, &spool, "");
    let agent = daemon(&cfg, &d, &t.env);
    let prefix = marker_prefix("onespool");
    cg.workload(["open-many", &format!("{prefix}-a"), "20", "0"]);
    let out = Command::new(agent_bin())
        .args(["run", "--config", d.path("config.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "spool {} is in use by another audit-agent (pid {})",
            spool.display(),
            agent.pid()
        )),
        "{err}"
    );
    let _ = agent.stop();
    // The same spool again: the same stream goes on.
    let agent = daemon(&cfg, &d, &t.env);
    cg.workload(["open-many", &format!("{prefix}-b"), "20", "0"]);
    let _ = agent.stop();
    assert_eq!(manifest_streams(&t).len(), 1, "{:?}", t.trail.manifests());
    let records = t.trail.records();
    assert_eq!(by_stream(&records).len(), 1);
    assert_all_markers_once(&records, &format!("{prefix}-a"), 0..20);
    assert_all_markers_once(&records, &format!("{prefix}-b"), 0..20);
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

/// Another writer already put something at the key the daemon writes next: the daemon says which
/// key, never overwrites it, keeps its own copy in the spool, and goes on.
fn a_conflict_is_reported_and_nothing_is_overwritten(t: Target, tag: &str) {
    let d = Scratch::new(tag);
    let cg = TestCgroup::new(tag);
    let spool = d.path("spool");
    let cfg = config(&t, &cg, &spool, "");
    let prefix = marker_prefix(tag);
    let agent = daemon(&cfg, &d, &t.env);
    cg.workload(["open-many", &format!("{prefix}-a"), "20", "0"]);
    let _ = agent.stop();
    let state: Value =
        serde_json::from_slice(&std::fs::read(spool.join("state.json")).unwrap()).unwrap();
    let stream = manifest_streams(&t).pop_first().unwrap();
    let planted = format!(
        "v1/_manifests/{stream}/{:010}.json",
        state["next_manifest"].as_u64().unwrap()
    );
    t.trail.put(&planted, b"another writer's".to_vec());

    let mut agent = daemon(&cfg, &d, &t.env);
    cg.workload(["open-many", &format!("{prefix}-b"), "20", "0"]);
    agent.wait_for_stderr("upload conflict", Duration::from_secs(60));
    let log = agent.stderr();
    let _ = agent.stop();
    assert!(
        log.contains(&format!("{planted} already exists in store"))
            && log.contains("it was not overwritten"),
        "{log}"
    );
    assert_eq!(t.trail.get(&planted), b"another writer's");
    let kept = spool
        .join("conflicts")
        .join(planted.replace('/', "%2F").replace('=', "%3D"));
    let ours: Value = serde_json::from_slice(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(ours["manifest"]["stream"]["spool"], state["spool_id"]);
    // The objects of that batch and everything after it were delivered.
    assert_all_markers_once(&t.trail.records(), &format!("{prefix}-b"), 0..20);
    let (ok, out) = verify(&t, &[]);
    assert!(
        !ok && out.contains(&format!("{planted}: not a manifest file")),
        "{out}"
    );
}

#[test]
fn a_create_only_conflict_in_s3_is_reported_and_nothing_is_overwritten() {
    let t = s3_target(Garage::shared(), "conflict");
    a_conflict_is_reported_and_nothing_is_overwritten(t, "conflict-s3");
}

#[test]
fn a_create_only_conflict_in_a_directory_store_is_reported_and_nothing_is_overwritten() {
    let d = Scratch::new("conflict-file-store");
    a_conflict_is_reported_and_nothing_is_overwritten(
        file_target(&d.path("store")),
        "conflict-file",
    );
}

/// What Garage 2.5.0 does with a create-only write (`If-None-Match: *`, object_store's
/// `PutMode::Create`): it ignores it and overwrites. The daemon finds that out at start and
/// checks each key before writing instead (not atomic); docs/storage.md says so. Should a Garage
/// version honour it, this fails: update the docs.
#[test]
fn garage_ignores_create_only_writes() {
    use object_store::{PutMode, PutPayload, path::Path as Key};
    let g = Garage::shared();
    g.bucket("ifnonematch");
    let store = g.client("ifnonematch");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let key = Key::from("probe");
    let second = rt.block_on(async {
        for content in ["first", "second"] {
            let put = store
                .put_opts(&key, PutPayload::from(content), PutMode::Create.into())
                .await;
            if content == "second" {
                return put;
            }
            put.unwrap();
        }
        unreachable!()
    });
    assert!(second.is_ok(), "Garage refused the overwrite: {second:?}");
    let now = rt.block_on(async { store.get(&key).await.unwrap().bytes().await.unwrap() });
    assert_eq!(&now[..], b"second", "overwritten");
}

/// The agent's key may read and write objects and nothing else (Garage's closest to the minimal
/// IAM policy of docs/storage.md: no owner permission, so no bucket settings): the daemon
/// delivers under it and the trail verifies.
#[test]
fn the_daemon_works_with_a_key_that_may_only_read_and_write_objects() {
    let g = Garage::shared();
    let env = g.bucket_for_agent("leastpriv");
    let t = Target {
        url: "s3://leastpriv/trail".into(),
        env: env.clone(),
        trail: Trail {
            store: g.client_with("leastpriv", &env),
            prefix: "trail".into(),
        },
        endpoint: Some(g.endpoint()),
    };
    let d = Scratch::new("leastpriv");
    let cg = TestCgroup::new("leastpriv");
    let agent = daemon(&config(&t, &cg, &d.path("spool"), ""), &d, &t.env);
    let prefix = marker_prefix("leastpriv");
    cg.workload(["open-many", &prefix, "50", "0"]);
    let _ = agent.stop();
    assert_all_markers_once(&t.trail.records(), &prefix, 0..50);
    let (ok, out) = verify(&t, &[]);
    assert!(ok, "{out}");
}

/// The policies docs/storage.md gives are JSON as IAM takes it, and the agent's grants exactly
/// what the daemon uses: writing and reading back objects, listing its prefix.
#[test]
fn the_documented_policies_parse_and_grant_the_agent_only_what_it_uses() {
    let text = std::fs::read_to_string(workspace_root().join("docs/storage.md")).unwrap();
    let section = text.split("## Store-side protections").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    let policies: Vec<Value> = section
        .split("```json\n")
        .skip(1)
        .map(|b| serde_json::from_str(b.split("```").next().unwrap()).unwrap())
        .collect();
    assert_eq!(
        policies.len(),
        2,
        "the bucket policy and the agent's policy"
    );
    let actions = |p: &Value, effect: &str| -> BTreeSet<String> {
        p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["Effect"] == effect)
            .flat_map(|s| match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                a => a
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            })
            .collect()
    };
    let (bucket, agent) = (&policies[0], &policies[1]);
    assert!(actions(bucket, "Allow").is_empty());
    let denied = actions(bucket, "Deny");
    for a in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
    ] {
        assert!(denied.contains(a), "{a}");
    }
    assert!(actions(agent, "Deny").is_empty());
    assert_eq!(
        actions(agent, "Allow"),
        BTreeSet::from(["s3:PutObject", "s3:GetObject", "s3:ListBucket"].map(String::from))
    );
}
