//! The summary `trace` prints at the end: what a command touched, whether any of it was
//! protected or denied, what failed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    event::{Action, Decision, Event, Observer, Outcome, Timestamp},
    format::{native::errno_name, resource_text, short_time},
};

/// Most individual records listed per section (the counts stay exact).
const SHOW: usize = 50;

#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// action -> outcome -> count
    pub(crate) counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub(crate) protected: Vec<String>,
    pub(crate) verdicts: Vec<String>,
    /// Distinct failures (action, resource, errno) in first-seen order, with counts.
    pub(crate) failed: Vec<(String, u64)>,
    failed_index: BTreeMap<String, usize>,
    pub(crate) failed_by_errno: BTreeMap<String, u64>,
    pub(crate) executables: BTreeSet<String>,
    pub(crate) files: BTreeSet<String>,
    pub(crate) destinations: BTreeSet<String>,
    pub(crate) lost: u64,
    pub(crate) denies: u64,
    pub(crate) reviews: u64,
    pub(crate) protected_count: u64,
    pub(crate) failed_count: u64,
}

impl Summary {
    pub(crate) fn add(&mut self, e: &Event) {
        let Some(a) = e.activity() else {
            self.lost += e.gap().map_or(0, |g| g.lost);
            return;
        };
        let out = a.outcome.kind().name();
        *self
            .counts
            .entry(a.action.name().to_string())
            .or_default()
            .entry(out.to_string())
            .or_insert(0) += 1;
        let res = resource_text(a);
        let line = |extra: String| format!("{}  {:<15} {res}{extra}", short_time(e), a.action);
        if !a.protected.is_empty() {
            self.protected_count += 1;
            if self.protected.len() < SHOW {
                self.protected
                    .push(line(format!("  [{}]", a.protected.join(","))));
            }
        }
        if let Some(v) = a.verdict.as_ref().filter(|v| v.decision != Decision::Allow) {
            if v.decision == Decision::Deny {
                self.denies += 1;
            } else {
                self.reviews += 1;
            }
            if self.verdicts.len() < SHOW {
                let rule = v.rule.as_deref().unwrap_or("default_decision");
                self.verdicts.push(line(format!(
                    "  {} by {rule}",
                    v.decision.name().to_uppercase()
                )));
            }
        }
        if let Outcome::Failure(errno) = a.outcome {
            self.add_failure(a.action, &res, &errno_name(errno));
        }
        let success = matches!(a.outcome, Outcome::Success(_) | Outcome::InProgress);
        match a.action {
            Action::Exec if success => {
                self.executables.insert(res);
            }
            // Files it opened, and files it had without an open (held, received).
            Action::Open | Action::Held | Action::Receive if success => {
                self.files.insert(res);
            }
            Action::Connect | Action::Send => {
                self.destinations.insert(res);
            }
            _ => {}
        }
    }

    fn add_failure(&mut self, action: Action, res: &str, errno: &str) {
        self.failed_count += 1;
        *self.failed_by_errno.entry(errno.to_string()).or_insert(0) += 1;
        let key = format!("{action:<15} {res}  {errno}");
        match self.failed_index.get(&key) {
            Some(&i) => self.failed[i].1 += 1,
            None => {
                self.failed_index.insert(key.clone(), self.failed.len());
                self.failed.push((key, 1));
            }
        }
    }

    pub(crate) fn render(&self, duration: Duration, exit: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n== audit-agent trace summary ==");
        let _ = writeln!(
            s,
            "duration: {:.3}s, command {exit}",
            duration.as_secs_f64()
        );
        self.render_counts(&mut s);
        section(
            &mut s,
            format!("protected actions: {}", self.protected_count),
            &self.protected,
            self.protected_count,
        );
        section(
            &mut s,
            format!(
                "deny verdicts: {}, review verdicts: {}",
                self.denies, self.reviews
            ),
            &self.verdicts,
            self.denies + self.reviews,
        );
        self.render_failures(&mut s);
        for (title, set) in [
            ("executables", &self.executables),
            ("files", &self.files),
            ("network destinations", &self.destinations),
        ] {
            let items: Vec<String> = set.iter().take(SHOW).cloned().collect();
            section(
                &mut s,
                format!("{title}: {}", set.len()),
                &items,
                set.len() as u64,
            );
        }
        s
    }

    fn render_counts(&self, s: &mut String) {
        let total: u64 = self.counts.values().flat_map(|m| m.values()).sum();
        let _ = writeln!(s, "actions: {total}");
        for (act, by) in &self.counts {
            let n: u64 = by.values().sum();
            let parts: Vec<String> = by.iter().map(|(o, c)| format!("{o} {c}")).collect();
            let _ = writeln!(s, "  {act:<16} {n:>6}  ({})", parts.join(", "));
        }
        if self.lost > 0 {
            let _ = writeln!(
                s,
                "LOST: {} record(s) could not be captured (see audit.gap records)",
                self.lost
            );
        }
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
            self.failed.len()
        );
        for (f, n) in self.failed.iter().take(2 * SHOW) {
            let times = if *n > 1 {
                format!("  (x{n})")
            } else {
                String::new()
            };
            let _ = writeln!(s, "  {f}{times}");
        }
        if self.failed.len() > 2 * SHOW {
            let _ = writeln!(
                s,
                "  ... and {} more distinct",
                self.failed.len() - 2 * SHOW
            );
        }
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

/// The pipeline observer feeding a shared summary.
pub(crate) struct SummaryObserver(pub(crate) Arc<Mutex<Summary>>);

impl Observer for SummaryObserver {
    fn observe(&mut self, e: &Event, _accepted: Timestamp) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(e);
    }
}
