//! The summary `trace` prints at the end, in the order a responder asks: what was protected, what
//! was denied or flagged, what went to the network, what was changed; then what ran, what was
//! read, what failed, and the counts.
//!
//! It describes what the command did, so two kinds of records are folded (the records themselves
//! keep every one): the kernel's `SIGCHLD` to the tracer when the command ends (the tracer's, not
//! the command's), and the probes of a PATH search (`execvp` trying each directory: one attempt,
//! shown with the exec that followed).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::{Effect, effect, failure, flagged, in_protected_set};
use crate::{
    event::{
        Action, Activity, Decision, Detail, Event, Observer, Outcome, OutcomeKind, Target,
        Timestamp,
    },
    format::{resource_text, short_time},
};

/// Most individual records listed per section (the counts stay exact).
const SHOW: usize = 50;

/// Errors after which `execvp` and shells try the next PATH directory.
const PATH_PROBE_ERRNOS: [i32; 3] = [libc::ENOENT, libc::ENOTDIR, libc::EACCES];

/// Lines of one section: the first [`SHOW`] of them, and how many there were.
#[derive(Debug, Default, Clone)]
struct Listed {
    lines: Vec<String>,
    total: u64,
}

impl Listed {
    fn push(&mut self, line: impl FnOnce() -> String) {
        self.total += 1;
        if self.lines.len() < SHOW {
            self.lines.push(line());
        }
    }
}

/// Distinct lines with how often each was seen, in first-seen order.
#[derive(Debug, Default, Clone)]
struct Tally {
    lines: Vec<(String, u64)>,
    index: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, line: String, n: u64) {
        match self.index.get(&line) {
            Some(&i) => self.lines[i].1 += n,
            None => {
                self.index.insert(line.clone(), self.lines.len());
                self.lines.push((line, n));
            }
        }
    }
}

/// Failed execs of one thread that may be the probes of a PATH search: same program name, each
/// failing with an errno after which the search goes on.
#[derive(Debug, Clone)]
struct Probes {
    name: String,
    first: String,
    /// The first probe's failure (`ENOENT`).
    why: String,
    count: u64,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// The tracer's process: signals records name it as their target.
    tracer: u32,
    /// action -> outcome -> count (a PATH search counts once).
    counts: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    records: u64,
    folded_probes: u64,
    folded_sigchld: u64,
    /// The trace's claims socket: hooks connecting to it are no destination of the command.
    claims_socket: Option<String>,
    folded_claim_connects: u64,
    protected: Listed,
    verdicts: Listed,
    denies: u64,
    reviews: u64,
    /// Network destinations: "action resource" -> outcome -> count.
    network: BTreeMap<String, BTreeMap<String, u64>>,
    changes: Tally,
    /// Executables run, with the PATH probes that preceded them.
    executables: BTreeMap<String, u64>,
    files_read: BTreeSet<String>,
    failed: Tally,
    failed_by_errno: BTreeMap<String, u64>,
    failed_count: u64,
    /// Failed execs per thread not yet known to be a PATH search's probes.
    probing: BTreeMap<u32, Probes>,
    lost: u64,
}

impl Summary {
    /// A summary of what a command traced by process `tracer` did.
    pub(crate) fn new(tracer: u32) -> Self {
        Self {
            tracer,
            ..Self::default()
        }
    }

    /// The socket the trace takes claims on: connects to it are the command's hooks reporting
    /// to the trace, folded out of the destinations (the records keep them).
    pub(crate) fn with_claims_socket(mut self, path: &std::path::Path) -> Self {
        self.claims_socket = Some(path.display().to_string());
        self
    }

    pub(crate) fn add(&mut self, e: &Event) {
        let Some(a) = e.activity() else {
            self.lost += e.gap().map_or(0, |g| g.lost);
            return;
        };
        self.records += 1;
        if self.is_tracers_sigchld(a) {
            self.folded_sigchld += 1;
            return;
        }
        let res = resource_text(a);
        if a.action == Action::Exec && self.path_search(e, a, &res) {
            return;
        }
        if a.action == Action::Connect && self.claims_socket.as_deref() == Some(res.as_str()) {
            self.folded_claim_connects += 1;
            return;
        }
        self.count(a.action, a.outcome.kind().name());
        self.add_verdicts(e, a, &res);
        match effect(a) {
            Some(Effect::Ran) => {
                self.executables.entry(res.clone()).or_insert(0);
            }
            Some(Effect::OpenedForWriting) => {
                self.changes
                    .add(format!("{:<15} {res}  (for writing)", a.action), 1);
            }
            Some(Effect::Read) => {
                self.files_read.insert(res.clone());
            }
            Some(Effect::Network) => {
                *self
                    .network
                    .entry(format!("{:<15} {res}", a.action))
                    .or_default()
                    .entry(outcome_text(a))
                    .or_insert(0) += 1;
            }
            Some(Effect::Changed) => {
                self.changes.add(format!("{:<15} {res}", a.action), 1);
            }
            None => {}
        }
        if let Some(why) = failure(a) {
            self.add_failure(format!("{:<15} {res}  {why}", a.action), why, 1);
        }
    }

    /// The kernel's `SIGCHLD` to the tracer: its child (the command) ended or stopped.
    fn is_tracers_sigchld(&self, a: &Activity) -> bool {
        matches!(
            (&a.resource.detail, &a.resource.target),
            (Detail::Signal { sig, by_kernel: true, .. }, Target::Process { pid })
                if *sig == libc::SIGCHLD as u32 && *pid == self.tracer
        )
    }

    /// Folds PATH search probes: a failed exec that the search goes on after is held until the
    /// thread's next exec shows whether it was a probe (same program name) or an attempt of its
    /// own. Returns whether `a` was held.
    fn path_search(&mut self, e: &Event, a: &Activity, res: &str) -> bool {
        let tid = a.process.tid;
        let name = requested_name(a);
        let same = self.probing.get(&tid).is_some_and(|p| p.name == name);
        if !same && let Some(p) = self.probing.remove(&tid) {
            self.add_probes(p);
        }
        if let Outcome::Failure(errno) = a.outcome
            && PATH_PROBE_ERRNOS.contains(&errno)
            && let Some(why) = failure(a)
        {
            let p = self.probing.entry(tid).or_insert_with(|| Probes {
                name,
                first: format!("{}  {:<15} {res}", short_time(e), a.action),
                why,
                count: 0,
            });
            p.count += 1;
            return true;
        }
        if let Some(p) = self.probing.remove(&tid) {
            // The exec the search found (or failed at for another reason).
            self.folded_probes += p.count;
            if matches!(a.outcome, Outcome::Success(_)) {
                *self.executables.entry(res.to_string()).or_insert(0) += p.count;
            }
        }
        false
    }

    /// Failed execs that no exec of the same name followed: a search that found nothing is one
    /// failed attempt; a single failure is itself.
    fn add_probes(&mut self, p: Probes) {
        self.count(Action::Exec, OutcomeKind::Failure.name());
        let why = p.why;
        if p.count == 1 {
            let line = p.first.split_once("  ").map_or(p.first.as_str(), |x| x.1);
            self.add_failure(format!("{line}  {why}"), why, 1);
        } else {
            self.folded_probes += p.count - 1;
            let line = format!(
                "{:<15} {}  {why}  (PATH search: {} places tried)",
                Action::Exec,
                p.name,
                p.count
            );
            self.add_failure(line, why, 1);
        }
    }

    fn count(&mut self, action: Action, outcome: &'static str) {
        *self
            .counts
            .entry(action.name())
            .or_default()
            .entry(outcome)
            .or_insert(0) += 1;
    }

    fn add_verdicts(&mut self, e: &Event, a: &Activity, res: &str) {
        let line = |extra: String| format!("{}  {:<15} {res}{extra}", short_time(e), a.action);
        if in_protected_set(a) {
            self.protected
                .push(|| line(format!("  [{}]", a.protected.join(","))));
        }
        if let Some(v) = flagged(a) {
            if v.decision == Decision::Deny {
                self.denies += 1;
            } else {
                self.reviews += 1;
            }
            let rule = v.rule.as_deref().unwrap_or("default_decision");
            self.verdicts
                .push(|| line(format!("  {} by {rule}", v.decision.name().to_uppercase())));
        }
    }

    fn add_failure(&mut self, line: String, why: String, n: u64) {
        self.failed_count += n;
        *self.failed_by_errno.entry(why).or_insert(0) += n;
        self.failed.add(line, n);
    }

    pub(crate) fn render(&mut self, duration: Duration, exit: &str) -> String {
        for p in std::mem::take(&mut self.probing).into_values() {
            self.add_probes(p);
        }
        let mut s = String::new();
        let _ = writeln!(s, "\n== audit-agent trace summary ==");
        let _ = writeln!(
            s,
            "duration: {:.3}s, command {exit}",
            duration.as_secs_f64()
        );
        self.render_folded(&mut s);
        if self.lost > 0 {
            let _ = writeln!(
                s,
                "LOST: {} record(s) could not be captured (see audit.gap records)",
                self.lost
            );
        }
        section(
            &mut s,
            format!("protected actions: {}", self.protected.total),
            &self.protected.lines,
            self.protected.total,
        );
        section(
            &mut s,
            format!(
                "deny verdicts: {}, review verdicts: {}",
                self.denies, self.reviews
            ),
            &self.verdicts.lines,
            self.denies + self.reviews,
        );
        let network: Vec<String> = self
            .network
            .iter()
            .map(|(dest, outcomes)| format!("{dest}  {}", joined(outcomes)))
            .collect();
        list(&mut s, "network destinations", &network);
        tally(&mut s, "changes", &self.changes);
        let executables: Vec<String> = self
            .executables
            .iter()
            .map(|(exe, probes)| match probes {
                0 => exe.clone(),
                n => format!("{exe}  (found by a PATH search after {n} places)"),
            })
            .collect();
        list(&mut s, "executables", &executables);
        let files: Vec<String> = self.files_read.iter().cloned().collect();
        list(&mut s, "files read", &files);
        self.render_failures(&mut s);
        self.render_counts(&mut s);
        s
    }

    /// What the counts leave out, so they add up to the records.
    fn render_folded(&self, s: &mut String) {
        let mut folded = Vec::new();
        if self.folded_probes > 0 {
            folded.push(format!(
                "{} PATH search probe(s) folded into their search",
                self.folded_probes
            ));
        }
        if self.folded_sigchld > 0 {
            folded.push(format!(
                "{} SIGCHLD of the command's end to the tracer left out",
                self.folded_sigchld
            ));
        }
        if self.folded_claim_connects > 0 {
            folded.push(format!(
                "{} connect(s) of the command's hooks to the trace's claims socket left out",
                self.folded_claim_connects
            ));
        }
        let _ = write!(s, "records: {}", self.records);
        if !folded.is_empty() {
            let _ = write!(s, " ({})", folded.join("; "));
        }
        s.push('\n');
    }

    fn render_failures(&self, s: &mut String) {
        let by_errno: Vec<String> = self
            .failed_by_errno
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "failed actions: {} ({}), {} distinct",
            self.failed_count,
            by_errno.join(", "),
            self.failed.lines.len()
        );
        for (f, n) in self.failed.lines.iter().take(2 * SHOW) {
            let _ = writeln!(s, "  {f}{}", times(*n));
        }
        if self.failed.lines.len() > 2 * SHOW {
            let _ = writeln!(
                s,
                "  ... and {} more distinct",
                self.failed.lines.len() - 2 * SHOW
            );
        }
    }

    fn render_counts(&self, s: &mut String) {
        let total: u64 = self.counts.values().flat_map(|m| m.values()).sum();
        let _ = writeln!(s, "actions: {total}");
        for (act, by) in &self.counts {
            let n: u64 = by.values().sum();
            let parts: Vec<String> = by.iter().map(|(o, c)| format!("{o} {c}")).collect();
            let _ = writeln!(s, "  {act:<16} {n:>6}  ({})", parts.join(", "));
        }
    }
}

/// The file name an exec asked for (`sh` of `/usr/bin/sh`, whatever file that turned out to be).
fn requested_name(a: &Activity) -> String {
    let path = match &a.resource.target {
        Target::File(f) => f.requested.as_deref().or(f.path()),
        _ => None,
    }
    .unwrap_or_default();
    let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
    String::from_utf8_lossy(name).into_owned()
}

/// An outcome in a destination's counts: the failure (`ECONNREFUSED`), else its kind.
fn outcome_text(a: &Activity) -> String {
    failure(a).unwrap_or_else(|| a.outcome.kind().name().to_string())
}

/// `ok 2, ECONNREFUSED 1`.
fn joined(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

fn times(n: u64) -> String {
    if n > 1 {
        format!("  (x{n})")
    } else {
        String::new()
    }
}

/// A titled list, with how many more there are than shown.
fn section(s: &mut String, title: String, items: &[String], total: u64) {
    let _ = writeln!(s, "{title}");
    for i in items {
        let _ = writeln!(s, "  {i}");
    }
    if total as usize > items.len() {
        let _ = writeln!(s, "  ... and {} more", total as usize - items.len());
    }
}

/// `title: N` and the first [`SHOW`] items.
fn list(s: &mut String, title: &str, items: &[String]) {
    let shown: Vec<String> = items.iter().take(SHOW).cloned().collect();
    section(
        s,
        format!("{title}: {}", items.len()),
        &shown,
        items.len() as u64,
    );
}

/// `title: N` distinct lines, each with how often.
fn tally(s: &mut String, title: &str, t: &Tally) {
    let items: Vec<String> = t
        .lines
        .iter()
        .map(|(l, n)| format!("{l}{}", times(*n)))
        .collect();
    list(s, title, &items);
}

/// The pipeline observer feeding a shared summary.
pub(crate) struct SummaryObserver(pub(crate) Arc<Mutex<Summary>>);

impl Observer for SummaryObserver {
    fn observe(&mut self, e: &Event, _accepted: Timestamp) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(e);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::trail::record;

    /// A stored record of thread 10 opening /etc/hostname, with `patch`'s top-level keys
    /// replaced (`tid` sets the acting thread, which is its process).
    fn rec(patch: Value) -> Event {
        let mut r = json!({"schema":"audit-agent/v1","id":"9f3a2b1c4d5e6f70-1","seq":1,
            "time":"2026-11-26T19:42:01.123456789Z","host":{"name":"node-7","boot_id":"b4"},
            "action":"file.open","syscall":"x","agent":null,
            "process":{"pid":10,"tid":10,"ppid":1,"comm":"sh","exe":"/bin/sh",
                       "exec_id":null,"parent_exec_id":null},
            "subject":{"uid":1001,"gid":1001,"cgroup_id":8812,"cgroup":"/t"},
            "resource":{"path":"/etc/hostname","path_source":"kernel","flags":["O_RDONLY"]},
            "result":{"outcome":"success","retval":0,"errno":null},
            "protected":[],"policy":null});
        for (k, v) in patch.as_object().unwrap() {
            if k == "tid" {
                r["process"]["pid"] = v.clone();
                r["process"]["tid"] = v.clone();
            } else {
                r[k] = v.clone();
            }
        }
        record::read(&serde_json::to_vec(&r).unwrap()).unwrap()
    }

    fn failed(errno: &str, retval: i64) -> Value {
        json!({"outcome":"failure","retval":retval,"errno":errno})
    }

    /// An exec of `path` by thread `tid`, failing with `errno` unless it is `None`.
    fn exec(tid: u32, path: &str, errno: Option<(&str, i64)>) -> Event {
        let result = errno.map_or(json!({"outcome":"success","retval":0,"errno":null}), |e| {
            failed(e.0, e.1)
        });
        rec(json!({"action":"process.exec","tid":tid,"result":result,
                   "resource":{"path":path,"path_source":"kernel"}}))
    }

    fn open(path: &str, flags: &[&str], patch: Value) -> Event {
        let mut e = json!({"resource":{"path":path,"path_source":"kernel","flags":flags}});
        for (k, v) in patch.as_object().unwrap() {
            e[k] = v.clone();
        }
        rec(e)
    }

    /// An action on an IPv4 address, with `patch`'s top-level keys replaced.
    fn inet(action: &str, address: &str, port: u16, patch: Value) -> Event {
        let mut e = json!({"action":action,"resource":{"family":"inet","address":address,
            "port":port,"address_source":"kernel","host":null}});
        for (k, v) in patch.as_object().unwrap() {
            e[k] = v.clone();
        }
        rec(e)
    }

    fn verdict(decision: &str, rule: Option<&str>) -> Value {
        json!({"decision":decision,"rule":rule,"version":"sha256:39cdf0784a1d9dd7"})
    }

    /// What a traced command did, in every kind the summary sorts, folds or counts.
    fn records() -> Vec<Event> {
        let mut records = programs_and_files();
        records.extend(network_and_the_rest());
        records
    }

    /// Execs (PATH searches among them) and opens.
    fn programs_and_files() -> Vec<Event> {
        let enoent = Some(("ENOENT", -2));
        let rdonly = ["O_RDONLY", "O_CLOEXEC"];
        vec![
            // A PATH search that found sh in the third place.
            exec(10, "/usr/local/bin/sh", enoent),
            exec(10, "/usr/bin/sh", enoent),
            exec(10, "/bin/sh", None),
            // A failed exec of its own, then another program.
            exec(11, "/opt/x/tool", enoent),
            exec(11, "/usr/bin/env", None),
            // A search that found nothing, and a failure the search would not go on after.
            exec(12, "/usr/local/bin/gone", enoent),
            exec(12, "/usr/bin/gone", enoent),
            exec(13, "/usr/bin/locked", Some(("EPERM", -1))),
            open("/etc/hostname", &rdonly, json!({})),
            open("/etc/hostname", &rdonly, json!({})),
            open("/tmp/out", &["O_WRONLY", "O_CREAT"], json!({})),
            open(
                "/nonexistent",
                &rdonly,
                json!({"result":failed("ENOENT", -2)}),
            ),
            open(
                "/nonexistent",
                &rdonly,
                json!({"result":failed("ENOENT", -2)}),
            ),
            open(
                "/etc/shadow",
                &rdonly,
                json!({"protected":["secrets"],
                "policy":verdict("deny", Some("no-secrets"))}),
            ),
            open(
                "/srv/keys",
                &rdonly,
                json!({"protected":["keys","secrets"],
                "result":failed("EACCES", -13)}),
            ),
        ]
    }

    /// Connects, sends, a lookup, a request, file changes, signals, an exit and a gap.
    fn network_and_the_rest() -> Vec<Event> {
        let refused = json!({"result":failed("ECONNREFUSED", -111)});
        let gap = json!({"schema":"audit-agent/v1","id":"9f3a2b1c4d5e6f70-2","seq":2,
            "time":"2026-11-26T19:42:01.123456789Z","host":{"name":"node-7","boot_id":"b4"},
            "action":"audit.gap","gap":{"lost":3,"reason":"spool_full","by_action":{"file.open":3},
            "from":"2026-11-26T19:42:00Z","to":"2026-11-26T19:42:01Z","seq_from":7,"seq_to":9,
            "by_process":[{"pid":10,"lost":3}]}});
        vec![
            inet(
                "network.connect",
                "192.0.2.7",
                443,
                json!({"policy":verdict("review", None)}),
            ),
            inet(
                "network.connect",
                "192.0.2.7",
                443,
                json!({"policy":verdict("allow", Some("web"))}),
            ),
            inet("network.connect", "10.0.0.1", 22, refused.clone()),
            inet("network.connect", "10.0.0.1", 22, refused),
            inet(
                "network.connect",
                "10.0.0.2",
                80,
                json!({"result":{"outcome":"in_progress","retval":-115,"errno":"EINPROGRESS"}}),
            ),
            // The command's hook reporting to the trace.
            rec(
                json!({"action":"network.connect","resource":{"family":"unix",
                "address":"/tmp/claims.sock","address_source":"requested"}}),
            ),
            inet("network.send", "192.0.2.9", 53, json!({})),
            rec(
                json!({"action":"network.dns","resource":{"family":"inet","address":"10.0.0.53",
                "port":53,"address_source":"kernel","host":null,"dns":{"transport":"udp","id":1,
                "query":{"name":"nx.example","type":"A"},"answered":true,
                "response":{"rcode":"NXDOMAIN","after_ms":2.5,"answers":[]}}},
                "result":{"outcome":"failure","retval":-3,"errno":null}}),
            ),
            rec(
                json!({"action":"network.http","resource":{"family":"inet","address":"192.0.2.7",
                "port":80,"address_source":"kernel","host":null,"http":{"method":"GET","target":"/",
                "version":"HTTP/1.1","answered":true,"response":{"status":403,"version":"HTTP/1.1"}}},
                "result":{"outcome":"failure","retval":-403,"errno":null}}),
            ),
            rec(json!({"action":"file.delete","resource":{"path":"/w/a","path_source":"kernel"}})),
            rec(json!({"action":"file.delete","resource":{"path":"/w/a","path_source":"kernel"}})),
            rec(
                json!({"action":"file.delete","resource":{"path":"/w/ro","path_source":"kernel"},
                "result":failed("EACCES", -13)}),
            ),
            rec(
                json!({"action":"file.mkdir","resource":{"path":"/w/d","path_source":"kernel",
                "mode":"0750"}}),
            ),
            // The command's end, signalled to the tracer (pid 1), and a signal of its own.
            rec(
                json!({"action":"process.signal","resource":{"pid":1,"signal":"SIGCHLD",
                "delivery":"delivered","origin":"kernel"}}),
            ),
            rec(
                json!({"action":"process.signal","resource":{"pid":77,"signal":"SIGTERM",
                "delivery":"delivered"}}),
            ),
            rec(
                json!({"action":"process.exit","resource":{"pid":10,"exit_code":7},
                "result":{"outcome":"failure","errno":null}}),
            ),
            record::read(&serde_json::to_vec(&gap).unwrap()).unwrap(),
        ]
    }

    #[test]
    fn the_summary_leads_with_what_a_responder_asks_and_folds_what_the_tracer_caused() {
        let mut s = Summary::new(1).with_claims_socket(std::path::Path::new("/tmp/claims.sock"));
        for e in records() {
            s.add(&e);
        }
        let text = s.render(Duration::from_millis(1500), "exited with status 7");
        assert_eq!(text, EXPECTED);
    }

    /// The summary of [`records`], as `trace` prints it.
    const EXPECTED: &str = r#"
== audit-agent trace summary ==
duration: 1.500s, command exited with status 7
records: 31 (3 PATH search probe(s) folded into their search; 1 SIGCHLD of the command's end to the tracer left out; 1 connect(s) of the command's hooks to the trace's claims socket left out)
LOST: 3 record(s) could not be captured (see audit.gap records)
protected actions: 2
  19:42:01.123  file.open       /etc/shadow  [secrets]
  19:42:01.123  file.open       /srv/keys  [keys,secrets]
deny verdicts: 1, review verdicts: 1
  19:42:01.123  file.open       /etc/shadow  DENY by no-secrets
  19:42:01.123  network.connect 192.0.2.7:443  REVIEW by default_decision
network destinations: 4
  network.connect 10.0.0.1:22  ECONNREFUSED 2
  network.connect 10.0.0.2:80  in_progress 1
  network.connect 192.0.2.7:443  success 2
  network.send    192.0.2.9:53  success 1
changes: 3
  file.open       /tmp/out  (for writing)
  file.delete     /w/a  (x2)
  file.mkdir      /w/d
executables: 2
  /bin/sh  (found by a PATH search after 2 places)
  /usr/bin/env
files read: 2
  /etc/hostname
  /etc/shadow
failed actions: 12 (EACCES 2, ECONNREFUSED 2, ENOENT 4, EPERM 1, HTTP 403 1, NXDOMAIN 1, exit 7 1), 10 distinct
  process.exec    /opt/x/tool  ENOENT
  process.exec    /usr/bin/locked  EPERM
  file.open       /nonexistent  ENOENT  (x2)
  file.open       /srv/keys  EACCES
  network.connect 10.0.0.1:22  ECONNREFUSED  (x2)
  network.dns     nx.example A @10.0.0.53:53  NXDOMAIN
  network.http    192.0.2.7:80  HTTP 403
  file.delete     /w/ro  EACCES
  process.exit    /bin/sh (pid 10)  exit 7
  process.exec    gone  ENOENT  (PATH search: 2 places tried)
actions: 26
  file.delete           3  (failure 1, success 2)
  file.mkdir            1  (success 1)
  file.open             7  (failure 3, success 4)
  network.connect       5  (failure 2, in_progress 1, success 2)
  network.dns           1  (failure 1)
  network.http          1  (failure 1)
  network.send          1  (success 1)
  process.exec          5  (failure 3, success 2)
  process.exit          1  (failure 1)
  process.signal        1  (success 1)
"#;
}
