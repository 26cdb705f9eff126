//! Claimed vs observed, measured: labelled scenarios played by a scripted agent runtime under the
//! real daemon (tests/src/claims_eval.rs), reconciled by `audit-agent reconcile`, and held to the
//! goal of 0.95 precision and recall for both findings.

use audit_tests::claims_eval;

#[test]
fn reconciliation_of_the_labelled_scenarios_meets_its_accuracy_goal() {
    let eval = claims_eval::run();
    println!("{}", eval.table());
    assert!(eval.unlabelled.is_empty(), "{:#?}", eval.unlabelled);
    let (unexplained, flagged) = (eval.unexplained(), eval.flagged());
    for (what, s) in [("unexplained", unexplained), ("flagged", flagged)] {
        assert!(
            s.precision() >= 0.95 && s.recall() >= 0.95,
            "{what}: precision {:.2}, recall {:.2}\n{}",
            s.precision(),
            s.recall(),
            eval.table()
        );
    }
    // The labelled outcomes that matter most, each by name.
    let outcome = |call: &str| {
        eval.calls
            .iter()
            .find(|c| c.call == call)
            .map(|c| c.got.as_str())
            .unwrap_or("absent")
    };
    assert_eq!(
        outcome("li-read"),
        "unsubstantiated",
        "a read that never happened"
    );
    assert_eq!(
        outcome("li-cmd"),
        "contradicted",
        "a command that could not run"
    );
    assert_eq!(
        outcome("li-other"),
        "contradicted",
        "another file than claimed"
    );
    assert_eq!(outcome("in-search"), "not_locally_verifiable");
    assert_eq!(outcome("pb-bg"), "substantiated", "a background command");
}
