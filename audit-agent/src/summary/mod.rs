//! What a record counts as in a summary, asked here by the text `audit-agent trace` prints at
//! the end ([`trace`]). In the order a responder asks:
//!
//! - **protected**: its resource belongs to a protected set ([`in_protected_set`]);
//! - **denied or flagged**: a verdict other than allow ([`flagged`]);
//! - **left the machine**: a connect or send ([`Effect::Network`]);
//! - **changed, ran, read**: what a successful action did to the machine ([`effect`]);
//! - **failed**: [`failure`] names the failure (`ENOENT`, `NXDOMAIN`, `HTTP 403`, `exit 7`).
//!
//! What a summary does with the answers is its own: the trace folds what the tracer itself
//! caused and counts per action and outcome. This module depends on the event and its
//! renderings, never on the readers.

pub(crate) mod trace;

use crate::{
    event::{Action, Activity, Decision, Detail, Outcome, Verdict},
    format::failure_text,
};

/// Whether the record's resource belongs to a protected set.
pub(crate) fn in_protected_set(a: &Activity) -> bool {
    !a.protected.is_empty()
}

/// The verdict, when the policy denied the action or flagged it for review.
pub(crate) fn flagged(a: &Activity) -> Option<&Verdict> {
    a.verdict.as_ref().filter(|v| v.decision != Decision::Allow)
}

/// The failure of a failed action, as every reader names it: the DNS response code of a lookup,
/// the status of an HTTP request, the status of an exit, else the errno. `None` unless it
/// failed.
pub(crate) fn failure(a: &Activity) -> Option<String> {
    match a.outcome {
        Outcome::Failure(code) => Some(failure_text(a, code)),
        _ => None,
    }
}

/// What an action did to the machine, as a summary lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// An exec that succeeded: a program ran.
    Ran,
    /// An open for reading only that succeeded.
    Read,
    /// An open for writing (or creating, truncating, appending) that succeeded.
    OpenedForWriting,
    /// A change of the file system other than an open (rename, delete, mkdir, ...) that
    /// succeeded.
    Changed,
    /// A connect or send, whatever its outcome: the process reached for a destination.
    Network,
}

/// What `a` did to the machine; `None` when it failed or did nothing a summary lists. An action
/// still in progress counts as under way, like a success (only a connect can be, and a connect
/// counts whatever its outcome).
pub(crate) fn effect(a: &Activity) -> Option<Effect> {
    let under_way = matches!(a.outcome, Outcome::Success(_) | Outcome::InProgress);
    match a.action {
        Action::Exec if under_way => Some(Effect::Ran),
        Action::Open if under_way && opens_for_writing(a) => Some(Effect::OpenedForWriting),
        Action::Open if under_way => Some(Effect::Read),
        Action::Connect | Action::Send => Some(Effect::Network),
        action if under_way && action.is_file_change() => Some(Effect::Changed),
        _ => None,
    }
}

/// Whether an open asked for writing (or creating, truncating, appending).
fn opens_for_writing(a: &Activity) -> bool {
    const WRITE: u64 = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64;
    matches!(&a.resource.detail, Detail::Open { flags, .. } if flags & WRITE != 0)
}
