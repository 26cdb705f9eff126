//! The end of every recorded action: the acting image's executable (`emit::exe_facts`: its
//! facts, its path when not yet announced, whether the process is seen for the first time) and
//! the emission (`emit::emit_tp`, which tail-calls the walk of a new process's files).
//!
//! Programs of their own, never attached: the programs that record actions tail-call them
//! (`emit::finish_tp`, `finish_raw`; `FINISH_TP`, `FINISH_RAW` in `maps.rs`) with the record
//! in the current thread's slot. Inlined, this walk and its branches were verified again on every
//! path of every recording program, and made up most of the verifier's work at start.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{emit_raw, emit_tp, exe_facts},
    maps::PENDING,
};

/// The current thread's record in flight, if any.
#[inline(always)]
fn record_in_flight() -> Option<&'static mut audit_common::event::PendingEvent> {
    let tid = bpf_get_current_pid_tgid() as u32;
    let ev = unsafe { &mut *PENDING.get_ptr_mut(&tid)? };
    (ev.header.kind != 0).then_some(ev)
}

/// Tail-called from tracepoint programs (never attached).
#[tracepoint]
pub fn exe_and_emit_tp(ctx: TracePointContext) -> u32 {
    if let Some(ev) = record_in_flight() {
        exe_facts(ev);
        emit_tp(&ctx, ev);
    }
    0
}

/// Tail-called from raw tracepoint programs (never attached).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn exe_and_emit_raw(ctx: RawTracePointContext) -> i32 {
    if let Some(ev) = record_in_flight() {
        exe_facts(ev);
        emit_raw(&ctx, ev);
    }
    0
}
