//! Executable mappings: mmap and mprotect with `PROT_EXEC`.
//!
//! The dynamic loader run as a program (`ld-linux-x86-64.so.2 /usr/bin/cat FILE`) runs `cat` with
//! no exec of it: the kernel exec'd the loader, which maps the program itself. An image the
//! kernel started without an ELF interpreter (`AT_BASE` 0 in the auxiliary vector the kernel
//! keeps, `mm->saved_auxv`: the loader itself, or a static program) therefore has every file it
//! maps executable recorded — the first is the program. Any image's executable mapping of a
//! protected file (`PROTECTED_FILES`, also by the real file under an overlay) is recorded too.
//!
//! The file is the kernel's mapping, not the fd passed: at syscall exit the mapping at the
//! address the call returned (mmap) or changed (mprotect) is found with `bpf_find_vma`, and its
//! `vm_file` is named like an opened file. A call that failed, or left no executable file mapping
//! there, is not recorded; an mmap whose mapping could not be looked up is, with its file unread.

use audit_common::event::{
    EventKind, FileFacts, MapExecBody, PendingEvent, Syscall, file_flags, flags,
};
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    emit::{finish_raw, is_protected},
    filter::is_watched,
    helpers::count,
    offsets::{enter_arg, kread, off},
    pending::{begin, common, current_tid, fixed, in_flight, set_result},
    sections::{real_section, walk_section},
    vfs,
};

const PROT_EXEC: u64 = 0x4;
const MAP_ANONYMOUS: u64 = 0x20;
/// `VM_EXEC` in `vm_flags`.
const VM_EXEC: u64 = 0x4;
/// Auxiliary vector keys: the end, and the interpreter's load address.
const AT_NULL: u64 = 0;
const AT_BASE: u64 = 7;
/// Entries of `saved_auxv` looked at (the kernel writes about twenty; `AT_BASE` is among the
/// first ten on every architecture).
const AUXV_ENTRIES: usize = 32;

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    let _ = try_enter_map(&ctx, Syscall::Mmap);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mprotect")]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    let _ = try_enter_map(&ctx, Syscall::Mprotect);
    0
}

/// `sys_exit_mmap` and `sys_exit_mprotect`: one program attached to both.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_maps(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_map(&ctx);
    0
}

/// mmap(addr, len, prot, flags, fd, off) / mprotect(start, len, prot): only executable file
/// mappings of watched tasks open a slot (most mappings are neither).
#[inline(always)]
fn try_enter_map(ctx: &TracePointContext, syscall: Syscall) -> Result<(), i64> {
    let prot = enter_arg::<2>(ctx);
    if prot & PROT_EXEC == 0 {
        return Ok(());
    }
    let (flags, fd) = match syscall {
        Syscall::Mmap => (enter_arg::<3>(ctx), enter_arg::<4>(ctx) as i32),
        _ => (0, -1),
    };
    if flags & MAP_ANONYMOUS != 0 {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::MapExec, syscall)? };
    let body = fixed::<MapExecBody>(ev);
    body.addr = enter_arg::<0>(ctx);
    body.len = enter_arg::<1>(ctx);
    body.prot = prot as u32;
    body.flags = flags as u32;
    body.fd = fd;
    body.no_interp = 0;
    body.vm_start = 0;
    body.vm_end = 0;
    Ok(())
}

/// What `bpf_find_vma` found: the mapping's file, flags and range.
#[repr(C)]
struct Mapping {
    file: u64,
    flags: u64,
    start: u64,
    end: u64,
}

/// `bpf_find_vma`'s callback: copies the mapping's fields out (`vma` is the kernel's
/// `vm_area_struct`, valid during the call only).
extern "C" fn copy_mapping(_task: *const c_void, vma: *const u8, out: *mut Mapping) -> i64 {
    let out = unsafe { &mut *out };
    out.file = kread(vma, off!(vma_file)).unwrap_or(0);
    out.flags = kread(vma, off!(vma_flags)).unwrap_or(0);
    out.start = kread(vma, off!(vma_start)).unwrap_or(0);
    out.end = kread(vma, off!(vma_end)).unwrap_or(0);
    0
}

/// The mapping of the current task at `addr`, if any.
#[inline(always)]
fn mapping_at(addr: u64) -> Option<Mapping> {
    let mut m = Mapping {
        file: 0,
        flags: 0,
        start: 0,
        end: 0,
    };
    let callback = copy_mapping as extern "C" fn(*const c_void, *const u8, *mut Mapping) -> i64;
    let r = unsafe {
        generated::bpf_find_vma(
            vfs::task_btf() as *mut _,
            addr,
            callback as *mut c_void,
            (&raw mut m).cast(),
            0,
        )
    };
    (r == 0).then_some(m)
}

/// Whether the current image was started without an ELF interpreter: `AT_BASE` (the
/// interpreter's load address) is 0 or absent in the auxiliary vector the kernel saved.
#[inline(always)]
fn without_interpreter() -> bool {
    let Ok(mm) = vfs::btf_ptr(vfs::task_btf(), off!(task_mm)) else {
        return false;
    };
    let mut i = 0;
    while i < AUXV_ENTRIES {
        let at = off!(mm_saved_auxv).wrapping_add((16 * i) as u16);
        let Ok(entry) = kread::<[u64; 2]>(mm, at) else {
            return false;
        };
        match entry[0] {
            AT_BASE => return entry[1] == 0,
            AT_NULL => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether the record names a protected file: the file mapped, or the real file under it and
/// its origin on an overlay.
#[inline(always)]
fn names_protected(ev: &mut PendingEvent) -> bool {
    let c = common(ev);
    is_protected(&c.file) || is_protected(&c.real) || is_protected(&c.origin)
}

#[inline(always)]
fn try_exit_map(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::MapExec) else {
        return Ok(());
    };
    set_result(ctx, ev);
    if record_mapping(ev).is_some() {
        finish_raw(ctx, ev);
    } else {
        // Nothing to record: the slot is idle again.
        ev.header.kind = 0;
    }
    Ok(())
}

/// Fills the record of the executable file mapping the call made; `None` when there is nothing
/// to record.
#[inline(always)]
fn record_mapping(ev: &mut PendingEvent) -> Option<()> {
    let ret = ev.header.retval;
    if ret < 0 {
        return None;
    }
    let mmap = ev.header.syscall == Syscall::Mmap as u16;
    let addr = if mmap {
        ret as u64
    } else {
        fixed::<MapExecBody>(ev).addr
    };
    let no_interp = without_interpreter();
    let Some(m) = mapping_at(addr) else {
        // Not looked up: `bpf_find_vma` only try-locks the address space, which another thread
        // may hold (or the mapping is already gone). A successful mmap of a file with
        // `PROT_EXEC` made an executable file mapping: on record, its file unread, at the
        // call's address and length. An mprotect's region may be anonymous (a JIT's): left.
        if !mmap {
            return None;
        }
        ev.header.flags |= flags::KPATH_FAULT;
        count(|c| c.walk_fault += 1);
        let body = fixed::<MapExecBody>(ev);
        body.no_interp = u32::from(no_interp);
        body.vm_start = addr;
        body.vm_end = addr.wrapping_add(body.len);
        return Some(());
    };
    if m.file == 0 || m.flags & VM_EXEC == 0 {
        return None;
    }
    let mut facts = FileFacts::default();
    match vfs::file_facts(m.file as *const u8, &mut facts) {
        // Most executable mappings are libraries of ordinary programs: left before any walk.
        Ok(_) if !no_interp && facts.flags & file_flags::STACKED == 0 && !is_protected(&facts) => {
            return None;
        }
        Ok(path) => {
            common(ev).file = facts;
            walk_section(ev, path, |c| &mut c.file, |c| &mut c.sections.kpath);
            real_section(ev, path.1);
            if !no_interp && !names_protected(ev) {
                return None;
            }
        }
        // A loader's mapping whose file cannot be read is recorded as such.
        Err(_) if no_interp => ev.header.flags |= flags::KPATH_FAULT,
        Err(_) => return None,
    }
    let body = fixed::<MapExecBody>(ev);
    body.no_interp = u32::from(no_interp);
    body.vm_start = m.start;
    body.vm_end = m.end;
    Some(())
}
