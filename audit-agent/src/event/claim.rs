//! What an agent runtime said a tool call did, as the trail stores it (`agent.claim`): the
//! claim and the effects it implies, or a refusal. `claims/` makes them from payloads;
//! `reconcile/` sets them against the kernel's records.

use std::sync::Arc;

use super::{ClaimPhase, ClaimSource, Timestamp};

/// What a tool call implies the machine did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// A shell command (`bash -c COMMAND` by the runtime); `background`: it may outlive the call.
    Exec { command: String, background: bool },
    /// A file read.
    Read { path: Vec<u8> },
    /// A file created, written or edited.
    Write { path: Vec<u8> },
    /// Files searched or listed below a directory (a grep, a glob, a listing); `None`: the
    /// call's working directory.
    Scan { path: Option<Vec<u8>> },
    /// A URL fetched: its host and port.
    Fetch {
        url: String,
        host: Arc<str>,
        port: u16,
    },
}

/// One claim: one phase of one tool call, as a runtime reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) source: ClaimSource,
    pub(crate) phase: ClaimPhase,
    /// The conversation or session the call belongs to.
    pub(crate) session: Option<String>,
    /// The runtime's id of the tool call (`tool_use_id`, `gen_ai.tool.call.id`): joins a call's
    /// phases.
    pub(crate) call_id: Option<String>,
    pub(crate) tool: String,
    /// What the call implies; empty for a tool that does nothing locally verifiable.
    pub(crate) effects: Vec<Effect>,
    /// The working directory relative paths are resolved against.
    pub(crate) cwd: Option<Vec<u8>>,
    /// After the call: whether the runtime says it succeeded, and its error.
    pub(crate) success: Option<bool>,
    pub(crate) error: Option<String>,
    /// The call's start and end by the runtime's clock (OTLP spans carry them; hooks do not).
    pub(crate) started: Option<Timestamp>,
    pub(crate) ended: Option<Timestamp>,
    /// sha256 of the payload as received, hex (the payload itself is not stored: a file
    /// write's content can be anything).
    pub(crate) payload_sha256: String,
}

/// An `agent.claim` record's subject: a claim, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimRecord {
    Claim(Claim),
    /// Payloads refused (too large, no JSON, an unknown form, a flood, a wrong content type):
    /// `count` of them for the same reason from the same process since the last such record.
    Rejected {
        source: Option<ClaimSource>,
        reason: Arc<str>,
        message: String,
        count: u64,
    },
}
