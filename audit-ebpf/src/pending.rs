//! The per-thread pending slot: an action record is assembled here at syscall entry (identity,
//! time, what the process passed) and completed at syscall exit (the result, what the kernel
//! acted on), then emitted.
//!
//! Slots are keyed by tid and live as long as the thread (`lifecycle.rs` removes them at exit), so
//! entry/exit of a watched thread costs one hash lookup each and no allocation after its first
//! watched syscall. `header.kind != 0` marks a syscall in flight. A bitmap (`HAS_SLOT`) says
//! which threads have a slot at all, so exits of unwatched threads skip the hash lookup.
//!
//! Variable sections (argv, paths) are appended to the body's variable area at its running end
//! ([`Section`]); every append is bounded so the verifier can prove it stays inside the slot.

use audit_common::{
    event::{
        ActionCommon, EventHeader, EventKind, FileFacts, HEADER_LEN, PENDING_BODY_LEN,
        PendingEvent, Span, Syscall, VAR_OFFSET, VAR_SIZE, WALK_MAX, file_flags, flags,
    },
    filter::{FileKey, ProcessDrops},
};
use aya_ebpf::{
    cty::c_void,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_ktime_get_boot_ns, generated,
    },
    programs::{RawTracePointContext, TracePointContext},
};

pub use crate::helpers::{atomic_add, count, read_kernel_str, verifier_mask};
use crate::{
    maps::{
        DROPS_BY_TGID, EVENTS, EXE_SEEN, FINISH_RAW, FINISH_TP, HAS_SLOT, HELD, HELD_RAW, HELD_TP,
        PENDING, PENDING_INIT, PROTECTED_FILES, SeenExe,
    },
    offsets::{exit_ret, off, ring_limits, wakeup_bytes},
    vfs,
};

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const BPF_RB_AVAIL_DATA: u64 = 0;

/// Bytes in the ring buffer not yet consumed.
#[inline(always)]
pub fn ring_used() -> u64 {
    EVENTS.query(BPF_RB_AVAIL_DATA)
}

/// Submission flags: wake the reader only when enough data (`used` bytes) is pending.
#[inline(always)]
pub fn submit_flags(used: u64) -> u64 {
    if used >= wakeup_bytes() {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// `BPF_NOEXIST`: insert only if absent.
const NOEXIST: u64 = 1;

/// `real_parent->tgid` of the current task, 0 if unreadable.
#[inline(always)]
fn current_ppid() -> u32 {
    vfs::btf_ptr(vfs::task_btf(), off!(task_real_parent))
        .map(|parent| vfs::btf_read::<u32>(parent, off!(task_tgid)))
        .unwrap_or(0)
}

/// Fills `h` with the identity of the current task and the current time.
#[inline(always)]
pub fn fill_header(h: &mut EventHeader, kind: EventKind, syscall: u16, pid_tgid: u64) {
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind as u16;
    h.syscall = syscall;
    h.flags = 0;
    h.body_len = 0;
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.ppid = current_ppid();
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.ktime_ns = unsafe { bpf_ktime_get_boot_ns() };
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.retval = 0;
    // Straight into the header: the helper writes all 16 bytes (NUL-padded, or zeros when it
    // fails), so nothing is zeroed first and nothing is copied after.
    unsafe { generated::bpf_get_current_comm(h.comm.as_mut_ptr().cast(), h.comm.len() as u32) };
}

/// Sets `*x` to all zero bits, a word at a time. Assigning a zeroed value or copying a struct
/// compiles to a call of the BPF `memset`/`memmove`, which are byte loops (five to eight
/// instructions a byte); volatile word accesses are never merged back into one of those. `x`
/// must lie at an 8-byte aligned address (every slot field it is used on does; a misaligned
/// stack store would be refused by the verifier, not executed).
#[inline(always)]
pub fn zero<T: Copy>(x: &mut T) {
    let p = (x as *mut T).cast::<u64>();
    let (n, mut i) = (const { words::<T>() }, 0);
    while i < n {
        unsafe { p.add(i).write_volatile(0) };
        i += 1;
    }
}

/// A copy of `*x`, a word at a time (see [`zero`]).
#[inline(always)]
pub fn copy_of<T: Copy>(x: &T) -> T {
    let mut out = core::mem::MaybeUninit::<T>::uninit();
    let (src, dst) = (
        (x as *const T).cast::<u64>(),
        out.as_mut_ptr().cast::<u64>(),
    );
    let (n, mut i) = (const { words::<T>() }, 0);
    while i < n {
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        i += 1;
    }
    unsafe { out.assume_init() }
}

/// `size_of::<T>()` in words, for a `T` of whole words (checked at compile time).
const fn words<T>() -> usize {
    assert!(size_of::<T>() % 8 == 0);
    size_of::<T>() / 8
}

/// The word and bit of `tid` in `HAS_SLOT`.
#[inline(always)]
fn slot_bit(tid: u32) -> Option<(*mut u64, u64)> {
    HAS_SLOT
        .get_ptr_mut(tid >> 6)
        .map(|w| (w, 1u64 << (tid & 63)))
}

/// False only when `tid` certainly has no pending slot.
#[inline(always)]
pub fn may_have_slot(tid: u32) -> bool {
    match slot_bit(tid) {
        Some((w, bit)) => (unsafe { core::ptr::read_volatile(w) } & bit) != 0,
        None => true,
    }
}

/// Records that the current thread's slot was created (`true`) or removed (`false`). Only the
/// thread itself creates or removes its slot, and it knows whether its bit is set (it is set
/// exactly while the slot exists), so adding or subtracting the bit flips that bit alone — no
/// carry or borrow reaches a neighbour's. `lock xadd` works on every kernel with ring buffers;
/// atomic or/and would need 5.12.
#[inline(always)]
pub fn mark_slot(tid: u32, created: bool) {
    if let Some((w, bit)) = slot_bit(tid) {
        atomic_add(w, if created { bit } else { bit.wrapping_neg() });
    }
}

/// Removes `tid`'s slot (the current thread's, or the pre-exec tid it just gave up).
#[inline(always)]
pub fn remove_slot(tid: u32) {
    if PENDING.remove(tid).is_ok() {
        mark_slot(tid, false);
    }
}

/// The current thread's slot, created on first use. Fails (and counts the loss) only when the
/// pending map is full.
#[inline(always)]
fn slot(tid: u32, kind: EventKind) -> Result<*mut PendingEvent, i64> {
    if let Some(ev) = PENDING.get_ptr_mut(tid) {
        return Ok(ev);
    }
    let init = PENDING_INIT.get(0).ok_or(-1i64)?;
    if PENDING.insert(tid, init, NOEXIST).is_err() {
        count(|c| c.pending_full[kind as usize] += 1);
        count_drop((bpf_get_current_pid_tgid() >> 32) as u32, true);
        return Err(-1);
    }
    mark_slot(tid, true);
    PENDING.get_ptr_mut(tid).ok_or(-1i64)
}

/// Opens the current thread's pending slot for a new action: fills its header and clears the
/// common part of the body (sections, facts).
#[inline(always)]
pub fn begin(pid_tgid: u64, kind: EventKind, syscall: Syscall) -> Result<*mut PendingEvent, i64> {
    // Watched once, watched for good: moving to another cgroup does not shed it.
    crate::filter::follow((pid_tgid >> 32) as u32);
    let ev = slot(pid_tgid as u32, kind)?;
    let e = unsafe { &mut *ev };
    fill_header(&mut e.header, kind, syscall as u16, pid_tgid);
    zero(common(e));
    Ok(ev)
}

/// The thread's slot when no record is in flight in it (created if it has none): where records
/// that follow an emitted one are built (the files of a process, `fds.rs`).
#[inline(always)]
pub fn idle_slot(tid: u32, kind: EventKind) -> Option<&'static mut PendingEvent> {
    let ev = unsafe { &mut *slot(tid, kind).ok()? };
    (ev.header.kind == 0).then_some(ev)
}

/// Like [`begin`], for a record that is not a syscall of the current thread (an io_uring request
/// or completion): fails rather than overwrite a record the thread has in flight, and does not
/// add the task to the follow set (a completion can run in another context).
#[inline(always)]
pub fn begin_idle(
    pid_tgid: u64,
    kind: EventKind,
    syscall: Syscall,
) -> Result<*mut PendingEvent, i64> {
    let ev = slot(pid_tgid as u32, kind)?;
    let e = unsafe { &mut *ev };
    if e.header.kind != 0 {
        count(|c| c.pending_full[kind as usize] += 1);
        return Err(-1);
    }
    fill_header(&mut e.header, kind, syscall as u16, pid_tgid);
    zero(common(e));
    Ok(ev)
}

/// The common start of a slot's body.
#[inline(always)]
pub fn common(ev: &mut PendingEvent) -> &mut ActionCommon {
    unsafe { &mut *ev.body.as_mut_ptr().cast::<ActionCommon>() }
}

/// The fixed part of a slot's body as `T` (an `OpenBody`, `ExecBody`, ...).
#[inline(always)]
pub fn fixed<T>(ev: &mut PendingEvent) -> &mut T {
    unsafe { &mut *ev.body.as_mut_ptr().cast::<T>() }
}

/// The in-flight slot of the current thread for `kind`, if any (unwatched threads leave after
/// the bitmap check, before anything else is read).
#[inline(always)]
pub fn in_flight(tid: u32, kind: EventKind) -> Option<&'static mut PendingEvent> {
    if !may_have_slot(tid) {
        return None;
    }
    let ev = unsafe { &mut *PENDING.get_ptr_mut(tid)? };
    (ev.header.kind == kind as u16).then_some(ev)
}

/// Stores the syscall's return value (from the `sys_exit` record) in the in-flight slot.
#[inline(always)]
pub fn set_result(ctx: &TracePointContext, ev: &mut PendingEvent) {
    ev.header.retval = exit_ret(ctx);
}

/// A section being written: where it starts in the variable area.
pub struct Section {
    off: usize,
}

impl Section {
    /// Starts a section of at most `max` bytes at the end of the variable area. `None` (the
    /// slot cannot hold it) never happens with the sizes in `audit-common`, but the verifier
    /// needs the bound.
    #[inline(always)]
    pub fn start(ev: &mut PendingEvent, max: usize) -> Option<(Section, *mut u8)> {
        let end = usize::from(common(ev).sections.end);
        if end > VAR_SIZE - max {
            return None;
        }
        let p = unsafe { ev.body.as_mut_ptr().add(VAR_OFFSET + end) };
        Some((Section { off: end }, p))
    }

    /// Records `len` bytes written: the section is `span`, the area's end moves past it.
    #[inline(always)]
    pub fn commit(self, ev: &mut PendingEvent, span: fn(&mut ActionCommon) -> &mut Span, len: u32) {
        let c = common(ev);
        let len = (len as usize).min(VAR_SIZE - self.off);
        *span(c) = Span {
            off: self.off as u16,
            len: len as u16,
        };
        c.sections.end = (self.off + len) as u16;
    }
}

/// Walks `(vfsmnt, dentry)` into a new section; flags a failed walk.
#[inline(always)]
pub fn walk_section(
    ev: &mut PendingEvent,
    (vfsmnt, dentry): (*const u8, *const u8),
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) {
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let mut facts = copy_of(facts_of(common(ev)));
    match vfs::walk(dentry, vfsmnt, dst, &mut facts) {
        Ok(len) => {
            if facts.flags & audit_common::event::file_flags::CUT != 0 {
                count(|c| c.walk_cut += 1);
            }
            *facts_of(common(ev)) = facts;
            sec.commit(ev, span, len);
        }
        Err(_) => {
            ev.header.flags |= flags::KPATH_FAULT;
            count(|c| c.walk_fault += 1);
        }
    }
}

/// The acting image's executable: its facts always; its path when this process has not had it
/// announced since its last exec (`EXE_SEEN`). A process without an entry, or with one only
/// `prctl.rs` made, is seen for the first time (`FIRST_SIGHT`: the files it holds follow,
/// `fds.rs`). One whose `mm->exe_file` was replaced (`prctl.rs`) carries the file its exec loaded,
/// flagged `EXE_REPLACED`.
#[inline(always)]
pub fn exe_facts(ev: &mut PendingEvent) {
    let Ok(file) = vfs::exe_file() else {
        ev.header.flags |= flags::EXE_FAULT;
        return;
    };
    let tgid = ev.header.pid;
    let seen = EXE_SEEN.get_ptr_mut(&tgid);
    if let Some(seen) = seen
        && unsafe { (*seen).file } == file as u64
    {
        let seen = unsafe { &mut *seen };
        common(ev).exe = copy_of(&seen.facts);
        if seen.replaced != 0 {
            ev.header.flags |= flags::EXE_REPLACED;
            if seen.seen == 0 {
                seen.seen = 1;
                ev.header.flags |= flags::FIRST_SIGHT;
            }
        }
        return;
    }
    if seen.is_none() {
        ev.header.flags |= flags::FIRST_SIGHT;
    }
    let mut facts = FileFacts::default();
    let Ok(path) = vfs::file_facts(file, &mut facts) else {
        ev.header.flags |= flags::EXE_FAULT;
        return;
    };
    common(ev).exe = facts;
    walk_section(ev, path, |c| &mut c.exe, |c| &mut c.sections.exe);
    ev.header.flags |= flags::EXE_PATH;
    let seen = SeenExe {
        file: file as u64,
        facts: common(ev).exe,
        replaced: 0,
        seen: 1,
    };
    let _ = EXE_SEEN.insert(&tgid, &seen, 0);
}

/// Whether the record in `ev` (emitted or not: `emit` keeps the header) is the first of its
/// process. Read from the slot, not kept in a register across `emit`: a value the verifier
/// tracks would split every path through `emit` in two.
#[inline(always)]
pub fn first_sight(ev: &PendingEvent) -> bool {
    let f = unsafe { core::ptr::read_volatile(&raw const ev.header.flags) };
    f & flags::FIRST_SIGHT != 0
}

/// Emits the record in flight in `ev` (none: `kind` 0), from a tracepoint program — unless it
/// is the first of its process: then the walk of the process's files (`fds.rs`) is tail-called, which emits
/// the record, then the files (it does not return). Without the walk (a kernel before 5.17) the
/// record is emitted here. One `emit` on every path: the verifier walks it once per program.
#[inline(always)]
pub fn emit_tp(ctx: &TracePointContext, ev: &mut PendingEvent) {
    if first_sight(ev) {
        let _ = unsafe { HELD_TP.tail_call(ctx, HELD) };
    }
    if ev.header.kind != 0 {
        emit(ev);
    }
}

/// Completes the record in flight in `ev` (the current thread's slot) with the acting image's
/// executable ([`exe_facts`]) and emits it ([`emit_tp`]), in the program `finish.rs` holds,
/// tail-called: the executable's path walk and the first-sight branches are verified there once,
/// not again on every path of the calling program. The call does not return; should it fail (its
/// program array is filled before any program is attached), the record is emitted with its
/// executable flagged unread.
#[inline(always)]
pub fn finish_tp(ctx: &TracePointContext, ev: &mut PendingEvent) {
    let _ = unsafe { FINISH_TP.tail_call(ctx, 0) };
    ev.header.flags |= flags::EXE_FAULT;
    emit_tp(ctx, ev);
}

/// [`finish_tp`] from a raw tracepoint program.
#[inline(always)]
pub fn finish_raw(ctx: &RawTracePointContext, ev: &mut PendingEvent) {
    let _ = unsafe { FINISH_RAW.tail_call(ctx, 0) };
    ev.header.flags |= flags::EXE_FAULT;
    emit_raw(ctx, ev);
}

/// [`emit_tp`] from a raw tracepoint program.
#[inline(always)]
pub fn emit_raw(ctx: &RawTracePointContext, ev: &mut PendingEvent) {
    if first_sight(ev) {
        let _ = unsafe { HELD_RAW.tail_call(ctx, HELD) };
    }
    if ev.header.kind != 0 {
        emit(ev);
    }
}

/// Writes the slot's header and body to the ring buffer, counts it (or its loss), and marks the
/// slot idle.
#[inline(always)]
pub fn emit(ev: &mut PendingEvent) {
    let kind = usize::from(ev.header.kind) & (EventKind::SLOTS - 1);
    let mut body_len = VAR_OFFSET + usize::from(common(ev).sections.end);
    if body_len > PENDING_BODY_LEN {
        body_len = PENDING_BODY_LEN;
    }
    ev.header.body_len = body_len as u16;
    let len = HEADER_LEN + body_len;
    let tgid = ev.header.pid;
    let used = ring_used();
    let c = common(ev);
    if !fits(used, len as u64, &c.file)
        && !fits(used, len as u64, &c.real)
        && !fits(used, len as u64, &c.origin)
    {
        count(|c| c.ringbuf_full[kind] += 1);
        count_drop(tgid, false);
        ev.header.kind = 0;
        return;
    }
    if !output(ev, len, kind, used) {
        count_drop(tgid, false);
    }
    ev.header.kind = 0;
}

/// Writes the first `len` bytes of `ev` (header and body) to the ring buffer, `used` bytes of
/// it taken, and counts the record under `kind` as emitted or lost. Returns whether it was
/// written.
#[inline(always)]
pub fn output(ev: &mut PendingEvent, len: usize, kind: usize, used: u64) -> bool {
    let ret = unsafe {
        generated::bpf_ringbuf_output(
            (&raw const EVENTS).cast_mut().cast::<c_void>(),
            (ev as *mut PendingEvent).cast::<c_void>(),
            len as u64,
            submit_flags(used + len as u64),
        )
    };
    if ret == 0 {
        count(|c| c.emitted[kind] += 1);
    } else {
        count(|c| c.ringbuf_full[kind] += 1);
    }
    ret == 0
}

/// Whether an ordinary record of `len` bytes may go into the ring buffer: only while more than
/// the reserve is free.
#[inline(always)]
pub fn ring_has_room(used: u64, len: u64) -> bool {
    let (size, reserve) = ring_limits();
    used.saturating_add(len).saturating_add(reserve) <= size || reserve == 0
}

/// Whether a record of `len` bytes may go into the ring buffer: always while more than the
/// reserve is free; into the reserve only when it names a protected file (`PROTECTED_FILES`),
/// so a flood of ordinary records cannot push those out.
#[inline(always)]
fn fits(used: u64, len: u64, file: &FileFacts) -> bool {
    ring_has_room(used, len) || is_protected(file)
}

/// Whether `file` is one a protected set names (`PROTECTED_FILES`, by device and inode).
#[inline(always)]
pub fn is_protected(file: &FileFacts) -> bool {
    let key = FileKey {
        dev: file.dev,
        _pad: 0,
        ino: file.ino,
    };
    file.flags & file_flags::VALID != 0 && unsafe { PROTECTED_FILES.get(&key) }.is_some()
}

/// Counts a lost record against its process (the gap record names the processes that flooded).
#[inline(always)]
pub fn count_drop(tgid: u32, pending: bool) {
    if let Some(d) = DROPS_BY_TGID.get_ptr_mut(&tgid) {
        let d = unsafe { &mut *d };
        if pending {
            atomic_add(&raw mut d.pending_full, 1);
        } else {
            atomic_add(&raw mut d.ringbuf_full, 1);
        }
        return;
    }
    let d = ProcessDrops {
        ringbuf_full: u64::from(!pending),
        pending_full: u64::from(pending),
    };
    let _ = DROPS_BY_TGID.insert(&tgid, &d, 0);
}

/// Copies a NUL-terminated string from user memory to `dst` (at most `max` bytes, NUL included).
/// Returns the number of bytes written including the NUL.
#[inline(always)]
pub fn read_user_str(dst: *mut u8, max: u32, src: *const u8) -> Result<u32, i64> {
    let n = unsafe { generated::bpf_probe_read_user_str(dst.cast(), max, src.cast()) };
    if n < 0 {
        return Err(n);
    }
    Ok((n as u32).min(max))
}

/// Whether the string at `src` goes on past `max - 1` bytes (so a read of `max` bytes cut it).
#[inline(always)]
pub fn user_str_continues(src: *const u8, max: u32) -> bool {
    let mut b = 0u8;
    let r = unsafe {
        generated::bpf_probe_read_user((&raw mut b).cast(), 1, src.add(max as usize - 1).cast())
    };
    r == 0 && b != 0
}

/// Which path of a record: the requested one, or a file change's second one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Which {
    First,
    Second,
}

impl Which {
    /// (section of the path as passed, its base section, fault flag, truncation flag, walked flag)
    #[inline(always)]
    fn parts(
        self,
    ) -> (
        fn(&mut ActionCommon) -> &mut Span,
        fn(&mut ActionCommon) -> &mut Span,
        u32,
        u32,
        u32,
    ) {
        match self {
            Which::First => (
                |c| &mut c.sections.requested,
                |c| &mut c.sections.base,
                flags::PATH_FAULT,
                flags::PATH_TRUNCATED,
                flags::BASE_WALKED,
            ),
            Which::Second => (
                |c| &mut c.sections.extra,
                |c| &mut c.sections.base2,
                flags::PATH2_FAULT,
                flags::PATH2_TRUNCATED,
                flags::BASE2_WALKED,
            ),
        }
    }
}

/// Reads the requested path at `user` into a new `requested` section. On a fault the flag is
/// set and nothing is written (an unread path is never an empty one).
#[inline(always)]
pub fn requested_path(ev: &mut PendingEvent, user: u64) {
    user_path(ev, user, Which::First);
}

/// Reads a path from the process's memory into its section (see [`Which`]).
#[inline(always)]
pub fn user_path(ev: &mut PendingEvent, user: u64, which: Which) {
    use audit_common::event::PATH_MAX;
    let (span, _, fault, truncated, _) = which.parts();
    let Some((sec, dst)) = Section::start(ev, PATH_MAX) else {
        return;
    };
    let src = user as *const u8;
    match read_user_str(dst, PATH_MAX as u32, src) {
        Ok(n) => {
            if n as usize == PATH_MAX && user_str_continues(src, PATH_MAX as u32) {
                ev.header.flags |= truncated;
                count(|c| c.path_truncated += 1);
            }
            ev.header.flags &= !fault;
            sec.commit(ev, span, n);
        }
        Err(_) => ev.header.flags |= fault,
    }
}

/// Copies a path the kernel already copied (a `struct filename`'s name) into its section; flags
/// it as the kernel's copy.
#[inline(always)]
pub fn kernel_path(ev: &mut PendingEvent, src: *const u8, which: Which) {
    use audit_common::event::PATH_MAX;
    let (span, _, fault, _, _) = which.parts();
    let Some((sec, dst)) = Section::start(ev, PATH_MAX) else {
        return;
    };
    match read_kernel_str(dst, PATH_MAX as u32, src) {
        Ok(n) => sec.commit(ev, span, n),
        Err(_) => ev.header.flags |= fault,
    }
}

/// At exit: when the requested path could not be read at entry, reads it now (the kernel has
/// faulted the page in by then); a second failure is counted.
#[inline(always)]
pub fn retry_requested(ev: &mut PendingEvent, user: u64) {
    if ev.header.flags & flags::PATH_FAULT == 0 {
        return;
    }
    requested_path(ev, user);
    if ev.header.flags & flags::PATH_FAULT == 0 {
        ev.header.flags |= flags::PATH_AT_EXIT;
    } else {
        count(|c| c.path_fault += 1);
    }
}

/// At exit: a file change's second path, when it could not be read at entry.
#[inline(always)]
pub fn retry_second(ev: &mut PendingEvent, user: u64) {
    if ev.header.flags & flags::PATH2_FAULT == 0 {
        return;
    }
    user_path(ev, user, Which::Second);
    if ev.header.flags & flags::PATH2_FAULT != 0 {
        count(|c| c.path_fault += 1);
    }
}

/// The first byte of a path's section (`b'/'` for an absolute path), or 0.
#[inline(always)]
fn first_byte(ev: &mut PendingEvent, which: Which) -> u8 {
    let (span, ..) = which.parts();
    let span = *span(common(ev));
    if span.len == 0 {
        return 0;
    }
    ev.body
        .get(VAR_OFFSET + usize::from(span.off))
        .copied()
        .unwrap_or(0)
}

/// For a failed path-based action: the directory the path was to be resolved from, as the
/// kernel sees it now (cwd or dirfd for a relative path, the task's root for an absolute one,
/// the dirfd for any path when `in_root` — `openat2`'s `RESOLVE_IN_ROOT`).
#[inline(always)]
pub fn base_section(ev: &mut PendingEvent, dirfd: i32, in_root: bool) {
    base_of(ev, dirfd, in_root, Which::First);
}

/// The directory a path (see [`Which`]) was resolved from, walked into its base section.
#[inline(always)]
pub fn base_of(ev: &mut PendingEvent, dirfd: i32, in_root: bool, which: Which) {
    const AT_FDCWD: i32 = -100;
    let (_, base, fault, _, walked) = which.parts();
    if ev.header.flags & fault != 0 {
        return;
    }
    let first = first_byte(ev, which);
    let dir = if first == b'/' && !in_root {
        vfs::task_dir(true)
    } else if dirfd == AT_FDCWD {
        vfs::task_dir(false)
    } else {
        vfs::fd_file(i64::from(dirfd)).and_then(|f| {
            let mut facts = FileFacts::default();
            vfs::file_facts(f, &mut facts)
        })
    };
    let Ok(dir) = dir else {
        ev.header.flags |= flags::KPATH_FAULT;
        return;
    };
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    let mut facts = FileFacts::default();
    match vfs::walk(dir.1, dir.0, dst, &mut facts) {
        Ok(len) => {
            sec.commit(ev, base, len);
            ev.header.flags |= walked;
        }
        Err(_) => {
            ev.header.flags |= flags::KPATH_FAULT;
            count(|c| c.walk_fault += 1);
        }
    }
}

/// For a returned fd: the facts and kernel path of the file behind it (and of the real file
/// under it, on an overlay).
#[inline(always)]
pub fn fd_section(ev: &mut PendingEvent, fd: i64) {
    if let Some(dentry) = fd_file_section(ev, fd) {
        real_section(ev, dentry);
    }
}

/// [`fd_section`] without the real file under an overlay: for programs the verifier could not
/// take with two more walks (io_uring's submission of a request on an fd). Returns the dentry.
#[inline(always)]
pub fn fd_file_section(ev: &mut PendingEvent, fd: i64) -> Option<*const u8> {
    let dentry = vfs::fd_file(fd)
        .ok()
        .and_then(|f| file_section(ev, f, |c| &mut c.file, |c| &mut c.sections.kpath));
    if dentry.is_none() {
        ev.header.flags |= flags::KPATH_FAULT;
        count(|c| c.walk_fault += 1);
    }
    dentry
}

/// The facts of `file` into `facts_of` (the record's file, or a second one in its fixed part)
/// and its kernel path into a new section `span`; its dentry (for [`real_section`]), or None when
/// the file could not be read.
#[inline(always)]
pub fn file_section(
    ev: &mut PendingEvent,
    file: *const u8,
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) -> Option<*const u8> {
    let mut facts = FileFacts::default();
    let Ok(path) = vfs::file_facts(file, &mut facts) else {
        return None;
    };
    *facts_of(common(ev)) = facts;
    walk_section(ev, path, facts_of, span);
    Some(path.1)
}

/// When `common.file` (reached through `dentry`) is on overlayfs: the file under it
/// (`common.real`; [`file_flags::UPPER`] when in the upper layer) and the lower file an upper one
/// was copied up from (`common.origin`), each with its path from the root of its filesystem.
/// Left unset when it cannot be read: user space then says the real file is unreadable.
#[inline(always)]
pub fn real_section(ev: &mut PendingEvent, dentry: *const u8) {
    if common(ev).file.flags & file_flags::STACKED == 0 {
        return;
    }
    let Ok((real, upper, origin)) = vfs::real_dentry(dentry) else {
        count(|c| c.walk_fault += 1);
        return;
    };
    let mut extra = if upper { file_flags::UPPER } else { 0 };
    if !origin.is_null() {
        extra |= file_flags::ORIGIN;
    }
    fs_walk_section(ev, real, extra, |c| &mut c.real, |c| &mut c.sections.real);
    if !origin.is_null() {
        fs_walk_section(ev, origin, 0, |c| &mut c.origin, |c| &mut c.sections.origin);
    }
}

/// The facts of the file at `dentry` (with `extra` flags) and its path from the root of its
/// filesystem, into `facts_of` and a new section `span`; nothing when either cannot be read.
#[inline(always)]
fn fs_walk_section(
    ev: &mut PendingEvent,
    dentry: *const u8,
    extra: u16,
    facts_of: fn(&mut ActionCommon) -> &mut FileFacts,
    span: fn(&mut ActionCommon) -> &mut Span,
) {
    let mut facts = FileFacts::default();
    if vfs::dentry_facts(dentry, &mut facts).is_err() {
        count(|c| c.walk_fault += 1);
        return;
    }
    let Some((sec, dst)) = Section::start(ev, WALK_MAX) else {
        return;
    };
    match vfs::walk_fs(dentry, dst, &mut facts) {
        Ok(len) => {
            facts.flags |= extra;
            *facts_of(common(ev)) = facts;
            sec.commit(ev, span, len);
        }
        Err(_) => count(|c| c.walk_fault += 1),
    }
}

/// The current thread's id.
#[inline(always)]
pub fn current_tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}
