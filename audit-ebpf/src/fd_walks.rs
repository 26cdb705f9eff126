//! The files behind the fds a system call names, walked at its entry by a program of its own
//! ([`fd_walks_tp`], tail-called through `FD_WALKS_TP`) for the calls that name files only by fd:
//! the copies (`sendfile`, `splice`, `copy_file_range`: the source, and the destination as the
//! copy's `to`) and the file changes by fd (`ftruncate`, `fchmod`, `fchown`). Inlined, the walks
//! were verified again in each of those six programs (about 100k instructions each).

use audit_common::event::{CopyBody, EventKind, FileBody, PendingEvent, flags};
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};

use crate::{
    helpers::count,
    maps::FD_WALKS_TP,
    pending::{current_tid, fixed, in_flight},
    sections::{fd_section, file_section},
    vfs,
};

/// Tail-called from the enters above (never attached), with their record in the current
/// thread's slot.
#[tracepoint]
pub fn fd_walks_tp(_ctx: TracePointContext) -> u32 {
    let tid = current_tid();
    let (ev, copy) = match in_flight(tid, EventKind::Copy) {
        Some(ev) => (ev, true),
        None => match in_flight(tid, EventKind::File) {
            Some(ev) => (ev, false),
            None => return 0,
        },
    };
    // One walk of the first fd on both paths, so the verifier checks it once.
    let (fd, out_fd) = if copy {
        let b = fixed::<CopyBody>(ev);
        (b.in_fd, Some(b.out_fd))
    } else {
        (fixed::<FileBody>(ev).fd, None)
    };
    fd_section(ev, i64::from(fd));
    if let Some(out_fd) = out_fd {
        copy_destination(ev, out_fd);
    }
    0
}

/// Walks the files of the record in flight in `ev` in [`fd_walks_tp`]. The call does not return;
/// should it fail (its program array is filled before any program is attached), the files are
/// flagged unread.
#[inline(always)]
pub fn walk_fds_tp(ctx: &TracePointContext, ev: &mut PendingEvent) {
    let _ = unsafe { FD_WALKS_TP.tail_call(ctx, 0) };
    ev.header.flags |= flags::KPATH_FAULT;
    if ev.header.kind == EventKind::Copy as u16 {
        ev.header.flags |= flags::PATH2_FAULT;
    }
    count(|c| c.walk_fault += 1);
}

/// A copy's destination as the kernel will use it: what `out_fd` holds now, as the copy's `to`.
#[inline(always)]
fn copy_destination(ev: &mut PendingEvent, out_fd: i32) {
    let to = vfs::fd_file(i64::from(out_fd)).is_ok_and(|f| {
        file_section(
            ev,
            f,
            |c| unsafe { &mut (*(c as *mut _ as *mut CopyBody)).to },
            |c| &mut c.sections.extra,
        )
        .is_some()
    });
    if !to {
        ev.header.flags |= flags::PATH2_FAULT;
    }
}
