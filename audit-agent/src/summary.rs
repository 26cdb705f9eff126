//! The summary `trace` prints at the end: what a command touched, whether any of it was
//! protected or denied, what failed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    pipeline::Observer,
    record::{Record, action, decision, outcome},
};

/// Most individual records listed per section (the counts stay exact).
const SHOW: usize = 50;

#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// action -> outcome -> count
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    pub protected: Vec<String>,
    pub verdicts: Vec<String>,
    /// Distinct failures (action, resource, errno) in first-seen order, with counts.
    pub failed: Vec<(String, u64)>,
    failed_index: BTreeMap<String, usize>,
    pub failed_by_errno: BTreeMap<String, u64>,
    pub executables: BTreeSet<String>,
    pub files: BTreeSet<String>,
    pub destinations: BTreeSet<String>,
    pub lost: u64,
    pub denies: u64,
    pub reviews: u64,
    pub protected_count: u64,
    pub failed_count: u64,
}

fn resource_text(r: &Record) -> String {
    let Some(res) = &r.resource else {
        return String::new();
    };
    match r.action.as_str() {
        action::CONNECT => match (&res.address, res.port) {
            (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
            (Some(a), Some(p)) => format!("{a}:{p}"),
            (Some(a), None) => a.clone(),
            _ => res.family.clone().unwrap_or_default(),
        },
        _ => res
            .resolved_path
            .clone()
            .or_else(|| res.path.clone())
            .unwrap_or_default(),
    }
}

fn short_time(t: &str) -> &str {
    t.get(11..23).unwrap_or(t)
}

impl Summary {
    pub fn add(&mut self, r: &Record) {
        if let Some(g) = &r.gap {
            self.lost += g.lost;
            return;
        }
        let out = r.result.as_ref().map_or("unknown", |o| &*o.outcome);
        *self
            .counts
            .entry(r.action.clone())
            .or_default()
            .entry(out.to_string())
            .or_insert(0) += 1;
        let res = resource_text(r);
        let line =
            |extra: String| format!("{}  {:<15} {res}{extra}", short_time(&r.time), r.action);
        if let Some(p) = r.protected.as_ref().filter(|p| !p.is_empty()) {
            self.protected_count += 1;
            if self.protected.len() < SHOW {
                self.protected.push(line(format!("  [{}]", p.join(","))));
            }
        }
        if let Some(pol) = &r.policy
            && (pol.decision == decision::DENY || pol.decision == decision::REVIEW)
        {
            if pol.decision == decision::DENY {
                self.denies += 1;
            } else {
                self.reviews += 1;
            }
            if self.verdicts.len() < SHOW {
                let rule = pol.rule.as_deref().unwrap_or("default_decision");
                self.verdicts
                    .push(line(format!("  {} by {rule}", pol.decision.to_uppercase())));
            }
        }
        if out == outcome::FAILURE {
            self.failed_count += 1;
            let errno = r
                .result
                .as_ref()
                .and_then(|o| o.errno.as_deref())
                .unwrap_or_default()
                .to_string();
            *self.failed_by_errno.entry(errno.clone()).or_insert(0) += 1;
            let key = format!("{:<15} {res}  {errno}", r.action);
            match self.failed_index.get(&key) {
                Some(&i) => self.failed[i].1 += 1,
                None => {
                    self.failed_index.insert(key.clone(), self.failed.len());
                    self.failed.push((key, 1));
                }
            }
        }
        let success = out == outcome::SUCCESS || out == outcome::IN_PROGRESS;
        match r.action.as_str() {
            action::EXEC if success => {
                self.executables.insert(res);
            }
            action::OPEN if success => {
                self.files.insert(res);
            }
            action::CONNECT => {
                self.destinations.insert(res);
            }
            _ => {}
        }
    }

    pub fn render(&self, duration: Duration, exit: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n== audit-agent trace summary ==");
        let _ = writeln!(
            s,
            "duration: {:.3}s, command {exit}",
            duration.as_secs_f64()
        );
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
        let section = |s: &mut String, title: String, items: &[String], total: u64| {
            let _ = writeln!(s, "{title}");
            for i in items {
                let _ = writeln!(s, "  {i}");
            }
            if total as usize > items.len() {
                let _ = writeln!(s, "  ... and {} more", total as usize - items.len());
            }
        };
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
        for (title, set) in [
            ("executables", &self.executables),
            ("files", &self.files),
            ("network destinations", &self.destinations),
        ] {
            let _ = writeln!(s, "{title}: {}", set.len());
            for x in set.iter().take(SHOW) {
                let _ = writeln!(s, "  {x}");
            }
            if set.len() > SHOW {
                let _ = writeln!(s, "  ... and {} more", set.len() - SHOW);
            }
        }
        s
    }
}

/// The pipeline observer feeding a shared summary.
pub struct SummaryObserver(pub Arc<Mutex<Summary>>);

impl Observer for SummaryObserver {
    fn observe(&mut self, rec: &Record) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(rec);
    }
}
