//! Runs the labelled claims scenarios under the real daemon (`audit_tests::claims_eval`) and
//! prints the measured accuracy as one JSON object, for `cargo xtask bench` (as root; the agent
//! binary from `AUDIT_AGENT_BIN`).

use audit_tests::claims_eval::{self, Score};

fn score(s: Score) -> serde_json::Value {
    serde_json::json!({
        "precision": s.precision(), "recall": s.recall(),
        "true_pos": s.true_pos, "false_pos": s.false_pos, "false_neg": s.false_neg,
    })
}

fn main() {
    let (eval, _played) = claims_eval::run();
    let scenarios: std::collections::BTreeSet<&str> =
        eval.calls.iter().map(|c| c.scenario.as_str()).collect();
    let out = serde_json::json!({
        "scenarios": scenarios.len(),
        "calls": eval.calls.len(),
        "records": eval.records.len(),
        "exact_calls": eval.calls.iter().filter(|c| c.expected == c.got).count(),
        "unexplained": score(eval.unexplained()),
        "flagged": score(eval.flagged()),
        "failures": eval.failures(),
        "unlabelled": eval.unlabelled,
    });
    println!("{out}");
}
