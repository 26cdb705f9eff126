//! Files a watched process has without an open on record, and bytes it moves between files
//! without reading them:
//!
//! - **held**: the regular files in its fd table when the agent first sees it (inherited at fork
//!   or exec from an unwatched parent, opened before it was watched), walked after its first
//!   record (`FIRST_SIGHT`, `emit.rs`) by a program of its own, tail-called (`HELD_TP`,
//!   `HELD_RAW`);
//! - **received**: a regular file that appears in its fd table during `recvmsg`/`recvmmsg` on a
//!   unix socket (`SCM_RIGHTS`): the open-fd bitmap before and after the call, compared;
//! - **copied**: `sendfile`, `splice`, `copy_file_range`: the kernel's files behind both fds.
//!
//! A record per file ([`FdBody`], [`CopyBody`]), each with the kernel's path walk and identity,
//! so protection and the ring buffer's reserve apply as for an open. The fd tables are walked
//! with `bpf_loop` (5.17): its callback is verified once, whatever the number of fds, where an
//! unrolled loop with a path walk in it would be too big for the verifier.

use audit_common::event::{
    CopyBody, EventKind, FD_DIFF_WORDS, FD_HELD, FD_RECEIVED, FdBody, FileFacts, PendingEvent,
    Syscall, WALK_MAX, file_flags, flags,
};
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{emit, emit_raw, exe_facts, finish_raw, first_sight},
    fd_walks::walk_fds_tp,
    filter::is_watched,
    helpers::{copy_of, count, zero},
    maps::{EXE_SEEN, HELD, HELD_RAW, HELD_SUBJECT, PENDING, RECEIVED, RECEIVED_FDS, WalkSubject},
    offsets::{enter_arg, kread, off},
    pending::{begin, common, current_tid, fill_header, fixed, idle_slot, in_flight, set_result},
    sections::Section,
    socket::{AF_UNIX, socket_of},
    vfs,
};

const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;

/// Most fds a walk of a whole table looks at (the kernel's default `nr_open`).
const HELD_MAX: u32 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// One record per file

/// Records fd `fd` when it is a regular file, built in the thread's idle slot. Returns 1 (stop)
/// when the slot is not available.
#[inline(always)]
fn fd_record(fd: i32, s: &WalkSubject) -> i64 {
    let Ok(file) = vfs::fd_file(i64::from(fd)) else {
        return 0;
    };
    let mut facts = FileFacts::default();
    let Ok(path) = vfs::file_facts(file, &mut facts) else {
        return 0;
    };
    if facts.mode & S_IFMT != S_IFREG
        || (i64::from(fd) == s.skip_fd && facts.ino == s.skip.ino && facts.dev == s.skip.dev)
    {
        return 0;
    }
    let Some(ev) = idle_slot(s.pid_tgid as u32, EventKind::Fd) else {
        return 1;
    };
    fill_header(&mut ev.header, EventKind::Fd, s.syscall, s.pid_tgid);
    zero(common(ev));
    let b = fixed::<FdBody>(ev);
    b.fd = fd;
    b.how = s.how;
    b.socket_fd = s.socket_fd;
    b._pad = 0;
    zero(&mut b.open_before);
    common(ev).file = facts;
    kpath_looped(ev, path);
    common(ev).exe = copy_of(&s.exe);
    ev.header.flags |= s.exe_flags;
    emit(ev);
    0
}

/// The kernel path of `common.file` into `kpath`, walked with [`vfs::walk_looped`] (this runs in
/// a `bpf_loop` callback: see there).
#[inline(always)]
fn kpath_looped(ev: &mut PendingEvent, (vfsmnt, dentry): (*const u8, *const u8)) {
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let mut facts = copy_of(&common(ev).file);
    match vfs::walk_looped(dentry, vfsmnt, dst, &mut facts) {
        Ok(len) => {
            if facts.flags & file_flags::CUT != 0 {
                count(|c| c.walk_cut += 1);
            }
            common(ev).file = facts;
            sec.commit(ev, |c| &mut c.sections.kpath, len);
        }
        Err(_) => {
            ev.header.flags |= flags::KPATH_FAULT;
            count(|c| c.walk_fault += 1);
        }
    }
}

/// The subject of the records that follow `ev` (just emitted), by the current task.
#[inline(always)]
fn subject_after(ev: &PendingEvent, how: u32, socket_fd: i32) -> WalkSubject {
    let c = unsafe { &*ev.body.as_ptr().cast::<audit_common::event::ActionCommon>() };
    WalkSubject {
        pid_tgid: bpf_get_current_pid_tgid(),
        exe: copy_of(&c.exe),
        exe_flags: ev.header.flags & (flags::EXE_REPLACED | flags::EXE_FAULT),
        how,
        syscall: ev.header.syscall,
        _pad: 0,
        socket_fd,
        skip_fd: -1,
        skip: FileFacts::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Held: the whole table, when a process is first seen

/// A walk of the open-fd bitmap (`fdtable.open_fds`); its records' subject is `HELD_SUBJECT`.
#[repr(C)]
struct HeldScan {
    /// `unsigned long *open_fds`.
    bitmap: u64,
}

#[inline(never)]
extern "C" fn held_one(i: u64, ctx: *mut c_void) -> i64 {
    let s = unsafe { &mut *ctx.cast::<HeldScan>() };
    // The fd's bitmap word is read again for every fd. Kept in `HeldScan` from one call to the
    // next, the word was a value the verifier tracked across iterations: it checked the callback
    // (path walk included) about 80 times before the states converged, 951k instructions for
    // this program alone; a read is cheaper than that at every start.
    let bit = i & 63;
    let at = (s.bitmap as *const u8).wrapping_add(((i >> 6) * 8) as usize);
    let word = kread::<u64>(at, 0).unwrap_or(0);
    if (word >> bit) & 1 == 0 {
        return 0;
    }
    let Some(subject) = HELD_SUBJECT.get(0) else {
        return 1;
    };
    fd_record(i as i32, subject)
}

/// A record per regular file in the current task's fd table, by the process's executable as
/// last announced (`EXE_SEEN`) and the system call of the thread's last record; first, an
/// executable replaced before the agent saw the process (`prctl.rs`).
#[inline(always)]
fn held_files() {
    let pid_tgid = bpf_get_current_pid_tgid();
    crate::prctl::report_before_watch((pid_tgid >> 32) as u32);
    let Ok(files) = vfs::btf_ptr(vfs::task_btf(), off!(task_files)) else {
        return;
    };
    let Ok(fdt) = vfs::btf_ptr(files, off!(files_fdt)) else {
        return;
    };
    let Some(subject) = HELD_SUBJECT.get_ptr_mut(0) else {
        return;
    };
    let subject = unsafe { &mut *subject };
    let max = vfs::btf_read::<u32>(fdt, off!(fdt_max_fds)).min(HELD_MAX);
    let mut scan = HeldScan {
        bitmap: vfs::btf_read::<u64>(fdt, off!(fdt_open_fds)),
    };
    subject.pid_tgid = pid_tgid;
    zero(&mut subject.exe);
    subject.exe_flags = flags::EXE_FAULT;
    subject.how = FD_HELD;
    subject.syscall = 0;
    subject._pad = 0;
    subject.socket_fd = -1;
    subject.skip_fd = -1;
    zero(&mut subject.skip);
    // The record that led here, first.
    if let Some(ev) = PENDING.get_ptr_mut(&(pid_tgid as u32)) {
        let ev = unsafe { &mut *ev };
        subject.syscall = ev.header.syscall;
        let kind = ev.header.kind;
        if (kind == EventKind::Open as u16
            || kind == EventKind::Access as u16
            || kind == EventKind::Compat as u16)
            && ev.header.retval >= 0
        {
            subject.skip_fd = ev.header.retval;
            subject.skip = copy_of(&common(ev).file);
        }
        if kind != 0 {
            emit(ev);
        }
    }
    if scan.bitmap == 0 {
        return;
    }
    if let Some(seen) = unsafe { EXE_SEEN.get(&((pid_tgid >> 32) as u32)) } {
        subject.exe = copy_of(&seen.facts);
        subject.exe_flags = if seen.replaced != 0 {
            flags::EXE_REPLACED
        } else {
            0
        };
    }
    unsafe { generated::bpf_loop(max, held_one as *mut c_void, (&raw mut scan).cast(), 0) };
}

/// The walk, tail-called from tracepoint programs (never attached).
#[tracepoint]
pub fn held_files_tp(_ctx: TracePointContext) -> u32 {
    held_files();
    0
}

/// The walk, tail-called from raw tracepoint programs (never attached).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn held_files_raw(_ctx: RawTracePointContext) -> i32 {
    held_files();
    0
}

// ---------------------------------------------------------------------------------------------
// Received: new fds after recvmsg / recvmmsg on a unix socket

#[tracepoint]
pub fn sys_enter_recvmsg(ctx: TracePointContext) -> u32 {
    let _ = try_enter_recv(&ctx, Syscall::Recvmsg);
    0
}

#[tracepoint]
pub fn sys_enter_recvmmsg(ctx: TracePointContext) -> u32 {
    let _ = try_enter_recv(&ctx, Syscall::Recvmmsg);
    0
}

/// The exit of both receives.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_recvs(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_recv(&ctx);
    0
}

/// The first [`FD_DIFF_WORDS`] words of the current task's open-fd bitmap (zeros when
/// unreadable).
#[inline(always)]
fn open_fds(out: &mut [u64; FD_DIFF_WORDS]) {
    let bitmap = vfs::btf_ptr(vfs::task_btf(), off!(task_files))
        .and_then(|files| vfs::btf_ptr(files, off!(files_fdt)))
        .map_or(0, |fdt| vfs::btf_read::<u64>(fdt, off!(fdt_open_fds)));
    // Past `max_fds` the words are other memory; fds there are refused by `fd_file`.
    let r = unsafe {
        generated::bpf_probe_read_kernel(
            out.as_mut_ptr().cast(),
            (FD_DIFF_WORDS * 8) as u32,
            bitmap as *const c_void,
        )
    };
    if r != 0 {
        zero(out);
    }
}

#[inline(always)]
fn try_enter_recv(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    // Only a unix socket carries files (`SCM_RIGHTS`).
    let fd = enter_arg::<0>(ctx) as i32;
    let (sk, _) = socket_of(i64::from(fd))?;
    if kread::<u16>(sk, off!(sock_family))? != AF_UNIX {
        return Ok(());
    }
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Fd, syscall)? };
    let b = fixed::<FdBody>(ev);
    b.fd = -1;
    b.how = FD_RECEIVED;
    b.socket_fd = fd;
    b._pad = 0;
    open_fds(&mut b.open_before);
    Ok(())
}

/// Whether an fd appeared in the table since the receive's entry (most receives bring none).
#[inline(always)]
fn any_new_fd(ev: &PendingEvent) -> bool {
    let mut now = [0u64; FD_DIFF_WORDS];
    open_fds(&mut now);
    let before = &fixed_ref::<FdBody>(ev).open_before;
    let mut any = 0u64;
    let mut i = 0;
    while i < FD_DIFF_WORDS {
        any |= now[i] & !before[i];
        i += 1;
    }
    any != 0
}

/// A record per fd that appeared during a receive (`RECEIVED_FDS`).
#[inline(never)]
extern "C" fn received_one(i: u64, ctx: *mut c_void) -> i64 {
    let s = unsafe { &*ctx.cast::<WalkSubject>() };
    let w = (i >> 6) as usize;
    let Some(word) = RECEIVED_FDS.get(0).and_then(|new| new.get(w)).copied() else {
        return 1;
    };
    if (word >> (i & 63)) & 1 == 0 {
        return 0;
    }
    fd_record(i as i32, s)
}

#[inline(always)]
fn try_exit_recv(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Fd) else {
        return Ok(());
    };
    set_result(ctx, ev);
    // The receive itself is no record: the files it brought are, written by a program of their
    // own (the walk is too big to verify beside the rest).
    exe_facts(ev);
    ev.header.kind = 0;
    if ev.header.retval >= 0 && any_new_fd(ev) {
        let _ = unsafe { HELD_RAW.tail_call(ctx, RECEIVED) };
    }
    emit_raw(ctx, ev);
    Ok(())
}

/// After a receive (its slot idle, as `try_exit_recv` left it): a record per regular file that
/// appeared in the fd table, then, for the process's first record, the files it holds.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn received_files_raw(ctx: RawTracePointContext) -> i32 {
    let _ = received_files(&ctx);
    0
}

#[inline(always)]
fn received_files(ctx: &RawTracePointContext) -> Result<(), i64> {
    let ev = unsafe { PENDING.get(&current_tid()) }.ok_or(-1i64)?;
    let mut subject = subject_after(ev, FD_RECEIVED, fixed_ref::<FdBody>(ev).socket_fd);
    let first = first_sight(ev);
    let new = unsafe { &mut *RECEIVED_FDS.get_ptr_mut(0).ok_or(-1i64)? };
    open_fds(new);
    let before = &fixed_ref::<FdBody>(ev).open_before;
    let mut any = 0u64;
    let mut i = 0;
    while i < FD_DIFF_WORDS {
        new[i] &= !before[i];
        any |= new[i];
        i += 1;
    }
    if any != 0 {
        unsafe {
            generated::bpf_loop(
                (FD_DIFF_WORDS * 64) as u32,
                received_one as *mut c_void,
                (&raw mut subject).cast(),
                0,
            )
        };
    }
    if first {
        let _ = unsafe { HELD_RAW.tail_call(ctx, HELD) };
    }
    Ok(())
}

/// The fixed part of an emitted record still in its slot.
#[inline(always)]
fn fixed_ref<T>(ev: &PendingEvent) -> &T {
    unsafe { &*ev.body.as_ptr().cast::<T>() }
}

// ---------------------------------------------------------------------------------------------
// Copied: sendfile, splice, copy_file_range

#[tracepoint]
pub fn sys_enter_sendfile64(ctx: TracePointContext) -> u32 {
    // sendfile(out_fd, in_fd, offset, count)
    let _ = try_enter_copy(&ctx, Syscall::Sendfile, 1, 0, 3, None);
    0
}

#[tracepoint]
pub fn sys_enter_splice(ctx: TracePointContext) -> u32 {
    // splice(fd_in, off_in, fd_out, off_out, len, flags)
    let _ = try_enter_copy(&ctx, Syscall::Splice, 0, 2, 4, Some(5));
    0
}

#[tracepoint]
pub fn sys_enter_copy_file_range(ctx: TracePointContext) -> u32 {
    // copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)
    let _ = try_enter_copy(&ctx, Syscall::CopyFileRange, 0, 2, 4, Some(5));
    0
}

/// The exit of every copy.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_copies(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_copy(&ctx);
    0
}

/// The argument at position `i` (0..6) of a `sys_enter_*` record.
#[inline(always)]
fn arg(ctx: &TracePointContext, i: usize) -> u64 {
    match i {
        0 => enter_arg::<0>(ctx),
        1 => enter_arg::<1>(ctx),
        2 => enter_arg::<2>(ctx),
        3 => enter_arg::<3>(ctx),
        4 => enter_arg::<4>(ctx),
        _ => enter_arg::<5>(ctx),
    }
}

#[inline(always)]
fn try_enter_copy(
    ctx: &TracePointContext,
    syscall: Syscall,
    in_at: usize,
    out_at: usize,
    len_at: usize,
    flags_at: Option<usize>,
) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Copy, syscall)? };
    let b = fixed::<CopyBody>(ev);
    b.in_fd = arg(ctx, in_at) as i32;
    b.out_fd = arg(ctx, out_at) as i32;
    b.len = arg(ctx, len_at);
    b.flags = flags_at.map_or(0, |i| arg(ctx, i) as u32);
    b._pad = 0;
    zero(&mut b.to);
    // The files the kernel will use: what the fds hold now (`fd_walks.rs`).
    walk_fds_tp(ctx, ev);
    Ok(())
}

#[inline(always)]
fn try_exit_copy(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Copy) else {
        return Ok(());
    };
    set_result(ctx, ev);
    finish_raw(ctx, ev);
    Ok(())
}
