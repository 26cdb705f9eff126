//! What a record counts as in a summary. Both summaries of records ask it here and nowhere else:
//! the text `audit-agent trace` prints at the end ([`trace`]) and the evidence report's counts
//! over a stored trail (`read/report/summary.rs`). In the order a responder asks:
//!
//! - **protected**: its resource belongs to a protected set ([`in_protected_set`]); a
//!   *protected action* is that, or an action the policy denied or flagged for review
//!   ([`is_protected_action`]: the report's rows; the trace lists the two apart);
//! - **denied or flagged**: a verdict other than allow ([`flagged`]), and the decision a record
//!   is counted under ([`decision`]; `None`: no verdict);
//! - **left the machine**: a connect or send ([`Effect::Network`], the trace's destinations); a
//!   record whose resource is an address ([`is_address`], the report's destinations); the host a
//!   connection went to ([`destination_host`]);
//! - **changed, ran, read**: what a successful action did to the machine ([`effect`]);
//! - **failed**: [`failure`] names the failure (`ENOENT`, `NXDOMAIN`, `HTTP 403`, `exit 7`),
//!   [`error_text`] the error a call returned (a failure's, or a connect's `EINPROGRESS`), and
//!   [`succeeded`] whether the kernel reports success (the report's "denied, yet succeeded").
//!
//! What each summary does with the answers is its own: the trace folds what the tracer itself
//! caused and counts per action and outcome; the report counts per agent, host, policy version
//! and time. This module depends on the event and its renderings, never on the readers.

pub(crate) mod trace;

use crate::{
    event::{Action, Activity, Decision, Detail, Outcome, Target, Verdict},
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

/// The decision a record is counted under; `None` when it has no verdict.
pub(crate) fn decision(a: &Activity) -> Option<Decision> {
    a.verdict.as_ref().map(|v| v.decision)
}

/// A protected action: on a protected resource, or denied or flagged by the policy.
pub(crate) fn is_protected_action(a: &Activity) -> bool {
    in_protected_set(a) || flagged(a).is_some()
}

/// Whether the kernel reports the action succeeded (a connect still connecting has not).
pub(crate) fn succeeded(a: &Activity) -> bool {
    matches!(a.outcome, Outcome::Success(_))
}

/// The failure of a failed action, named as every rendering names it (`format::failure_text`):
/// the DNS response code of a lookup, the status of an HTTP request, the status of an exit, else
/// the errno. `None` unless it failed.
pub(crate) fn failure(a: &Activity) -> Option<String> {
    match a.outcome {
        Outcome::Failure(code) => Some(failure_text(a, code)),
        _ => None,
    }
}

/// The error a call returned, named as [`failure`] names it: a failure's, or the `EINPROGRESS`
/// of a connect still connecting.
pub(crate) fn error_text(a: &Activity) -> Option<String> {
    a.outcome.errno().map(|code| failure_text(a, code))
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

/// Whether the record's resource is an address (an IP address and port, a unix socket, another
/// family's): whatever the action, it names where the process reached, not a file or process.
pub(crate) fn is_address(a: &Activity) -> bool {
    matches!(
        a.resource.target,
        Target::Inet(..) | Target::Unix(_) | Target::OtherAddress { .. }
    )
}

/// The host a network action went to: its first name, or `(no name) ADDRESS` when no name is
/// known. `None` for other actions, for addresses other than IP, and for lookups (they name
/// what was asked, not where a connection went).
pub(crate) fn destination_host(a: &Activity) -> Option<String> {
    if !a.action.is_network() || a.action == Action::Dns {
        return None;
    }
    let Target::Inet(ip, _) = a.resource.target else {
        return None;
    };
    Some(match a.resource.host_names().next() {
        Some(h) => h.to_string(),
        None => format!("(no name) {ip}"),
    })
}
