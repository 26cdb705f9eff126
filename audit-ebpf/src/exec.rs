//! execve / execveat, and `sched_process_exec` for what the kernel actually executed.
//!
//! Entry copies what the process passed (the path, argv) and the calling image's executable into
//! the thread's pending slot. On success the kernel fires `sched_process_exec` in the new image,
//! before it returns to user space; its raw form hands us the `linux_binprm`: the file loaded
//! (`bprm->file`: its kernel path, device, inode — the interpreter for a `#!` script), the
//! interpreter string, the kernel's copy of the filename, and the new image's argument area
//! (always resident: the kernel just wrote it). The record is emitted there, with result 0. On
//! failure, `sys_exit_*` emits it with the errno and the directory the path was relative to.
//!
//! An exec this program did not see enter (e.g. a 32-bit `execve`) is still recorded at
//! `sched_process_exec`, from the kernel's objects alone.

use audit_common::event::{
    ARG_MAX_BYTES, ARGV_MAX_ARGS, ARGV_MAX_BYTES, EventKind, ExecBody, FileFacts, INTERP_MAX,
    PATH_MAX, Syscall, flags,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, generated},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{emit, emit_raw, exe_facts},
    filter::is_watched,
    helpers::{count, read_kernel_str},
    maps::{EXE_SEEN, SeenExe},
    offsets::{kptr, kread, off, tp_read},
    pending::{begin, common, current_tid, fixed, in_flight, remove_slot, set_result},
    sections::{
        Section, base_section, read_user_str, real_section, requested_path, retry_requested,
        user_str_continues, walk_section,
    },
    vfs,
};

const AT_FDCWD: i32 = -100;

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let _ = try_enter_exec(&ctx, Syscall::Execve);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let _ = try_enter_exec(&ctx, Syscall::Execveat);
    0
}

/// `sys_exit_execve` and `sys_exit_execveat`: one program attached to both (exits read
/// everything from the slot, so one program serves a family and is verified once).
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_execs(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_exec(&ctx);
    0
}

/// Raw tracepoint: `(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let _ = try_sched_process_exec(&ctx);
    0
}

/// Copies argv as passed (at most [`ARGV_MAX_ARGS`] / [`ARGV_MAX_BYTES`]) into a new section.
#[inline(always)]
fn argv_at_entry(ev: &mut audit_common::event::PendingEvent, argv: u64) {
    let Some((sec, var)) = Section::start(ev, ARGV_MAX_BYTES + ARG_MAX_BYTES) else {
        return;
    };
    let argv = argv as *const *const u8;
    let (mut len, mut argc, mut i) = (0usize, 0u16, 0usize);
    while i < ARGV_MAX_ARGS {
        let Ok(arg) = (unsafe { bpf_probe_read_user(argv.wrapping_add(i)) }) else {
            ev.header.flags |= flags::ARGV_FAULT;
            break;
        };
        if arg.is_null() {
            break;
        }
        if len >= ARGV_MAX_BYTES {
            ev.header.flags |= flags::ARGV_TRUNCATED;
            break;
        }
        // Verifier: the mask keeps the write offset provably below ARGV_MAX_BYTES, and the
        // section has room for ARG_MAX_BYTES more after it.
        let at = len & (ARGV_MAX_BYTES - 1);
        match read_user_str(unsafe { var.add(at) }, ARG_MAX_BYTES as u32, arg) {
            Ok(n) => {
                if n as usize == ARG_MAX_BYTES && user_str_continues(arg, ARG_MAX_BYTES as u32) {
                    ev.header.flags |= flags::ARGV_TRUNCATED;
                }
                len += n as usize;
                argc += 1;
            }
            Err(_) => {
                ev.header.flags |= flags::ARGV_FAULT;
                break;
            }
        }
        i += 1;
    }
    if i == ARGV_MAX_ARGS
        && unsafe { bpf_probe_read_user(argv.wrapping_add(ARGV_MAX_ARGS)) }
            .is_ok_and(|p| !p.is_null())
    {
        ev.header.flags |= flags::ARGV_TRUNCATED;
    }
    if ev.header.flags & flags::ARGV_TRUNCATED != 0 {
        count(|c| c.argv_truncated += 1);
    }
    if ev.header.flags & flags::ARGV_FAULT != 0 && argc == 0 {
        return; // nothing read: no section (an unread argv is never an empty one)
    }
    sec.commit(ev, |c| &mut c.sections.argv, len.min(ARGV_MAX_BYTES) as u32);
    common(ev).sections.argc = argc;
}

#[inline(always)]
fn try_enter_exec(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let (dirfd, filename, argv, at_flags): (i32, u64, u64, u32) = match syscall {
        Syscall::Execveat => (
            tp_read::<u64>(ctx, off!(execveat_fd))? as i32,
            tp_read(ctx, off!(execveat_filename))?,
            tp_read(ctx, off!(execveat_argv))?,
            tp_read::<u64>(ctx, off!(execveat_flags))? as u32,
        ),
        _ => (
            AT_FDCWD,
            tp_read(ctx, off!(execve_filename))?,
            tp_read(ctx, off!(execve_argv))?,
            0,
        ),
    };
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Exec, syscall)? };
    let body = fixed::<ExecBody>(ev);
    body.dirfd = dirfd;
    body.at_flags = at_flags;
    body.user_path = filename;
    argv_at_entry(ev, argv);
    requested_path(ev, filename);
    // The calling image: after the exec only the new one can be read.
    exe_facts(ev);
    Ok(())
}

#[inline(always)]
fn try_exit_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    // Success was already reported by sched_process_exec (the slot is idle then).
    let Some(ev) = in_flight(current_tid(), EventKind::Exec) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let (user, dirfd) = {
        let b = fixed::<ExecBody>(ev);
        (b.user_path, b.dirfd)
    };
    retry_requested(ev, user);
    if ev.header.flags & flags::ARGV_FAULT != 0 {
        count(|c| c.argv_fault += 1);
    }
    base_section(ev, dirfd, false);
    // A first record: the caller's image goes on with the files it holds.
    emit_raw(ctx, ev);
    Ok(())
}

/// The new image's argument area (`mm->arg_start..arg_end`) into a new argv section.
#[inline(always)]
fn argv_of_image(ev: &mut audit_common::event::PendingEvent) -> Result<(), i64> {
    let mm = vfs::btf_ptr(vfs::task_btf(), off!(task_mm))?;
    let start: u64 = kread(mm, off!(mm_arg_start))?;
    let end: u64 = kread(mm, off!(mm_arg_end))?;
    let Some((sec, dst)) = Section::start(ev, ARGV_MAX_BYTES) else {
        return Ok(());
    };
    let total = end.saturating_sub(start);
    let mut n = (total as u32) & (2 * ARGV_MAX_BYTES as u32 - 1);
    if total > ARGV_MAX_BYTES as u64 || n > ARGV_MAX_BYTES as u32 {
        n = ARGV_MAX_BYTES as u32;
        ev.header.flags |= flags::ARGV_TRUNCATED;
    }
    let r = unsafe { generated::bpf_probe_read_user(dst.cast(), n, start as *const _) };
    if r != 0 {
        ev.header.flags |= flags::ARGV_FAULT;
        count(|c| c.argv_fault += 1);
        return Ok(());
    }
    ev.header.flags &= !flags::ARGV_FAULT;
    ev.header.flags |= flags::ARGV_FROM_IMAGE;
    sec.commit(ev, |c| &mut c.sections.argv, n);
    common(ev).sections.argc = 0; // counted from the bytes by user space
    Ok(())
}

/// What the kernel loaded and why: `bprm->file`, the interpreter string of a script, and the
/// kernel's copy of the filename when the process's own could not be read.
#[inline(always)]
fn loaded(ev: &mut audit_common::event::PendingEvent, bprm: *const u8) -> Result<(), i64> {
    let file = kptr(bprm, off!(bprm_file))?;
    let mut facts = FileFacts::default();
    let path = vfs::file_facts(file, &mut facts)?;
    common(ev).file = facts;
    walk_section(ev, path, |c| &mut c.file, |c| &mut c.sections.kpath);
    real_section(ev, path.1);
    // The new image's executable is this file: records from now on need no announcement.
    let seen = SeenExe {
        file: file as u64,
        facts: common(ev).file,
        replaced: 0,
        seen: 1,
    };
    let _ = EXE_SEEN.insert(&ev.header.pid, &seen, 0);
    let filename = kptr(bprm, off!(bprm_filename))?;
    if common(ev).sections.requested.len == 0 {
        if let Some((sec, dst)) = Section::start(ev, PATH_MAX) {
            if let Ok(n) = read_kernel_str(dst, PATH_MAX as u32, filename) {
                sec.commit(ev, |c| &mut c.sections.requested, n);
                ev.header.flags &= !flags::PATH_FAULT;
                ev.header.flags |= flags::PATH_FROM_KERNEL;
            }
        }
    }
    let interp = kptr(bprm, off!(bprm_interp))?;
    if interp != filename {
        // binfmt_script (or binfmt_misc) replaced the interpreter name.
        if let Some((sec, dst)) = Section::start(ev, INTERP_MAX) {
            if let Ok(n) = read_kernel_str(dst, INTERP_MAX as u32, interp) {
                sec.commit(ev, |c| &mut c.sections.extra, n);
            }
        }
        ev.header.flags |= flags::SCRIPT;
        // The kernel keeps no handle on the script itself: name the directory its path was
        // resolved from (the root, the cwd, or the dirfd — for `fexecve` the script itself), so
        // the script's path can be made absolute.
        let dirfd = fixed::<ExecBody>(ev).dirfd;
        base_section(ev, dirfd, false);
    }
    Ok(())
}

#[inline(always)]
fn try_sched_process_exec(ctx: &RawTracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let old_tid = ctx.arg::<u64>(1) as u32;
    let bprm = ctx.arg::<*const u8>(2);
    // The new image's executable is the file loaded, whatever the old one claimed.
    if crate::prctl::forget((pid_tgid >> 32) as u32) {
        let _ = EXE_SEEN.remove(&((pid_tgid >> 32) as u32));
    }
    let ev = match in_flight(old_tid, EventKind::Exec) {
        Some(ev) => ev,
        None => {
            if !is_watched(pid_tgid) {
                return Ok(());
            }
            // An exec whose entry was not seen: recorded from the kernel's objects alone.
            let first = unsafe { EXE_SEEN.get(&((pid_tgid >> 32) as u32)) }.is_none();
            let ev = unsafe { &mut *begin(pid_tgid, EventKind::Exec, Syscall::Unknown)? };
            fixed::<ExecBody>(ev).dirfd = AT_FDCWD;
            if first {
                ev.header.flags |= flags::FIRST_SIGHT;
            }
            ev
        }
    };
    ev.header.retval = 0;
    if loaded(ev, bprm).is_err() {
        ev.header.flags |= flags::KPATH_FAULT;
        count(|c| c.walk_fault += 1);
    }
    let _ = argv_of_image(ev);
    if old_tid != tid {
        // A non-leader thread called exec and took over the leader's pid: its old tid is gone
        // without an exit event of its own, so drop its slot here (the walk of the files, which
        // finds a record by the thread's id, is left out).
        emit(ev);
        remove_slot(old_tid);
    } else {
        // A first record: the files the new image starts with (close-on-exec ones are closed by
        // now) follow it.
        emit_raw(ctx, ev);
    }
    Ok(())
}
