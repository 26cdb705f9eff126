//! Writes a synthetic trail for the query benchmark, following the layout in docs/storage.md
//! (written independently of audit-agent's own writer, so it also checks the documented
//! contract):
//!
//! ```text
//! gen-store DIR RECORDS AGENTS HOURS
//! ```
//! Records are spread evenly over AGENTS agents and HOURS hours starting 2026-11-01T00:00Z, one
//! gzip NDJSON object per agent and hour. Deterministic: the same arguments give the same bytes.

use std::{io::Write as _, path::PathBuf};

use flate2::{Compression, write::GzEncoder};

const ACTIONS: [&str; 3] = ["file.open", "process.exec", "network.connect"];

fn record(seq: u64, agent: usize, hour: u32, i: u64, per: u64) -> String {
    // Evenly spaced in the hour.
    let ns_in_hour = i * (3_600_000_000_000 / per.max(1));
    let secs = ns_in_hour / 1_000_000_000;
    let time = format!(
        "2026-11-01T{hour:02}:{:02}:{:02}.{:09}Z",
        secs / 60,
        secs % 60,
        ns_in_hour % 1_000_000_000
    );
    let action = ACTIONS[(seq % 10).min(2) as usize % 3];
    let (decision, rule, protected) = match seq % 200 {
        0 => ("deny", "\"no-secrets\"", "[\"secrets\"]"),
        1..=4 => ("review", "\"customers-reviewed\"", "[\"customer-data\"]"),
        _ => ("allow", "null", "[]"),
    };
    let resource = match action {
        "file.open" => format!("{{\"path\":\"/srv/data/agent-{agent}/file-{}.json\",\"flags\":[\"O_RDONLY\",\"O_CLOEXEC\"]}}", seq % 5000),
        "process.exec" => "{\"path\":\"/usr/bin/python3.11\",\"argv\":[\"python3\",\"-m\",\"tool\",\"--run\"],\"exec_id\":\"b4-1-2\"}".to_string(),
        _ => format!("{{\"family\":\"inet\",\"address\":\"10.0.{}.{}\",\"port\":443}}", seq % 250, agent),
    };
    let outcome = if seq.is_multiple_of(17) {
        "{\"outcome\":\"failure\",\"retval\":-2,\"errno\":\"ENOENT\"}"
    } else {
        "{\"outcome\":\"success\",\"retval\":3,\"errno\":null}"
    };
    format!(
        "{{\"schema\":\"audit-agent/v1\",\"id\":\"9f3a2b1c4d5e6f70-{seq}\",\"seq\":{seq},\"time\":\"{time}\",\
         \"host\":{{\"name\":\"bench-host\",\"boot_id\":\"b473886d-3710-44df-b6ae-f1728d1537d7\"}},\
         \"action\":\"{action}\",\"syscall\":\"openat\",\
         \"agent\":{{\"id\":\"agent-{agent:02}\",\"name\":\"Agent {agent}\",\"workflow\":\"wf-{}\",\"matched_by\":\"cgroup\"}},\
         \"process\":{{\"pid\":{},\"tid\":{},\"ppid\":1,\"comm\":\"python3\",\"exe\":\"/usr/bin/python3.11\",\
         \"exec_id\":\"b473886d-{}-863540000000\",\"parent_exec_id\":\"b473886d-1-1\"}},\
         \"subject\":{{\"uid\":1001,\"gid\":1001,\"cgroup_id\":{},\"cgroup\":\"/agents/agent-{agent:02}/worker\"}},\
         \"resource\":{resource},\"result\":{outcome},\"protected\":{protected},\
         \"policy\":{{\"decision\":\"{decision}\",\"rule\":{rule},\"version\":\"sha256:39cdf0784a1d9dd7\"}}}}",
        agent % 3,
        1000 + agent,
        1000 + agent,
        1000 + agent,
        5000 + agent
    )
}

/// The manifest listing one object (`query` reads only objects a manifest lists). The chain
/// links and hashes are placeholders: `verify` is not run on this trail.
fn write_manifest(
    dir: &std::path::Path,
    k: usize,
    rel: &str,
    ag: usize,
    h: u32,
    first: u64,
    per: u64,
) {
    let stream = "bench-host-b473886d-3710-44df-b6ae-f1728d1537d7";
    let m = dir.join(format!("v1/_manifests/{stream}"));
    std::fs::create_dir_all(&m).expect("mkdir");
    let zero = "0".repeat(64);
    let body = format!(
        "{{\"manifest\":{{\"schema\":\"audit-agent/manifest/v1\",\
         \"stream\":{{\"host\":\"bench-host\",\"boot_id\":\"b473886d-3710-44df-b6ae-f1728d1537d7\"}},\
         \"sequence\":{k},\"created\":\"2026-11-01T{h:02}:59:59Z\",\"prev\":null,\
         \"objects\":[{{\"key\":\"v1/{rel}\",\"format\":\"native\",\"agent_id\":\"agent-{ag:02}\",\
         \"sha256\":\"{zero}\",\"bytes\":0,\"records\":{per},\"first_seq\":{first},\
         \"last_seq\":{},\"time_from\":\"2026-11-01T{h:02}:00:00Z\",\
         \"time_to\":\"2026-11-01T{h:02}:59:59Z\"}}]}},\"signature\":null}}",
        first + per - 1
    );
    std::fs::write(m.join(format!("{k:010}.json")), body).expect("write");
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen-store DIR RECORDS AGENTS HOURS";
    let dir = PathBuf::from(a.first().expect(usage));
    let records: u64 = a.get(1).expect(usage).parse().expect("RECORDS");
    let agents: usize = a.get(2).expect(usage).parse().expect("AGENTS");
    let hours: u32 = a.get(3).expect(usage).parse().expect("HOURS");
    let per = records.div_ceil(agents as u64 * u64::from(hours));
    let jobs: Vec<(usize, u32)> = (0..agents)
        .flat_map(|ag| (0..hours).map(move |h| (ag, h)))
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (jobs, dir) = (&jobs, &dir);
            s.spawn(move || {
                for (k, &(ag, h)) in jobs.iter().enumerate().filter(|(k, _)| k % threads == t) {
                    // Sequence numbers interleave as a real host's would: global order by job.
                    let first = k as u64 * per + 1;
                    let part = dir.join(format!(
                        "v1/agent_id=agent-{ag:02}/dt=2026-11-01/hour={h:02}"
                    ));
                    std::fs::create_dir_all(&part).expect("mkdir");
                    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
                    for i in 0..per {
                        gz.write_all(record(first + i, ag, h, i, per).as_bytes())
                            .expect("gz");
                        gz.write_all(b"\n").expect("gz");
                    }
                    let name = format!(
                        "bench-host-b473886d-3710-44df-b6ae-f1728d1537d7-{first:020}.ndjson.gz"
                    );
                    std::fs::write(part.join(&name), gz.finish().expect("gz")).expect("write");
                    write_manifest(
                        dir,
                        k,
                        &format!("agent_id=agent-{ag:02}/dt=2026-11-01/hour={h:02}/{name}"),
                        ag,
                        h,
                        first,
                        per,
                    );
                }
            });
        }
    });
    println!(
        "{{\"records\":{},\"objects\":{}}}",
        per * jobs.len() as u64,
        jobs.len()
    );
}
