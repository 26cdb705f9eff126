//! io_uring: requests a watched process submits through a ring are recorded as the actions they
//! are — open, connect, send to an address, rename, unlink, mkdir, symlink, link, ftruncate —
//! from the prepared request the kernel holds (`io_kiocb`): its own copy of each path (`struct
//! filename`) and of each destination (the request's async message header). The submitting
//! task is the current one at `io_uring_submit_req`, also with SQPOLL (the kernel thread is a
//! thread of the process). The result follows at `io_uring_complete`, with the file an open
//! returned. Ring creation itself is recorded too.

use audit_common::event::{
    EventKind, FixedEvent, HEADER_LEN, PendingEvent, SOCKADDR_MAX, Syscall, UringBody,
    UringDoneBody, UringSetupBody, flags,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    emit::{emit, finish_tp, ring_used, submit_flags},
    filter::is_watched,
    helpers::{count, zero},
    maps::{EVENTS, URING_REQS},
    offsets::{kptr, kread, off, tp_read},
    pending::{begin_idle, fill_header, fixed},
    sections::{Which, base_of, fd_file_section, fd_section, kernel_path},
    socket::{AF_INET, AF_INET6, AF_UNIX},
};

const OP_SENDMSG: u8 = 9;
const OP_CONNECT: u8 = 16;
const OP_OPENAT: u8 = 18;
const OP_SEND: u8 = 26;
const OP_OPENAT2: u8 = 28;
const OP_RENAMEAT: u8 = 35;
const OP_UNLINKAT: u8 = 36;
const OP_MKDIRAT: u8 = 37;
const OP_SYMLINKAT: u8 = 38;
const OP_LINKAT: u8 = 39;
const OP_SEND_ZC: u8 = 47;
const OP_SENDMSG_ZC: u8 = 48;
const OP_FTRUNCATE: u8 = 55;
/// `REQ_F_FIXED_FILE`: the request's fd indexes the registered files.
const REQ_F_FIXED_FILE: u64 = 1;
/// `io_cqe.fd` (`sqe->fd` until completion).
const CQE_FD: u16 = 12;
/// `RESOLVE_IN_ROOT`.
const RESOLVE_IN_ROOT: u64 = 0x10;

#[tracepoint(category = "io_uring", name = "io_uring_submit_req")]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx);
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_complete")]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let _ = try_complete(&ctx);
    0
}

#[tracepoint(category = "io_uring", name = "io_uring_create")]
pub fn io_uring_create(ctx: TracePointContext) -> u32 {
    let _ = try_create(&ctx);
    0
}

#[inline(always)]
fn is_send(op: u8) -> bool {
    op == OP_SENDMSG || op == OP_SEND || op == OP_SEND_ZC || op == OP_SENDMSG_ZC
}

/// The kernel's copy of a send's destination, if it has one.
#[inline(always)]
fn send_destination(req: *const u8) -> Option<*const u8> {
    let kmsg = kptr(req, off!(kiocb_async_data)).ok()?;
    let name: u64 = kread(kmsg, off!(msghdr_async_name)).ok()?;
    (name != 0).then(|| kmsg.wrapping_add(usize::from(off!(msghdr_async_addr))))
}

/// Copies `len` (at most `SOCKADDR_MAX`) bytes of a kernel socket address into the body.
#[inline(always)]
fn copy_addr(b: &mut UringBody, addr: *const u8, len: u32) {
    let mut n = len & 0xff;
    if n as usize > SOCKADDR_MAX {
        n = SOCKADDR_MAX as u32;
    }
    zero(&mut b.addr);
    let r = unsafe { generated::bpf_probe_read_kernel((&raw mut b.addr).cast(), n, addr.cast()) };
    b.addrlen = if r == 0 { n } else { 0 };
}

/// Where a connect request keeps the kernel's copy of the address. Kernels before the 2026 fix
/// "io_uring/net: use sockaddr_storage for connect" (mainline and stable, e.g. 6.18.4x) keep it in
/// `io_async_msghdr.addr`; later ones make the async data the `sockaddr_storage` itself. Nothing
/// in BTF tells them apart, the first bytes do: in the older layout they are the `iou_vec`
/// pointer (NULL or 8-aligned, so never 1, 2 or 10); in the newer they are the family.
#[inline(always)]
fn connect_copy(data: *const u8) -> *const u8 {
    match kread::<u16>(data, 0) {
        Ok(AF_UNIX | AF_INET | AF_INET6) => data,
        _ => data.wrapping_add(usize::from(off!(msghdr_async_addr))),
    }
}

/// The paths of a request: (first path, its dirfd, second path, its dirfd), as `struct
/// filename *` pointers.
#[inline(always)]
fn paths(req: *const u8, op: u8) -> Result<(u64, i32, u64, i32), i64> {
    Ok(match op {
        OP_OPENAT | OP_OPENAT2 => (
            kread(req, off!(io_open_filename))?,
            kread(req, off!(io_open_dfd))?,
            0,
            -100,
        ),
        OP_UNLINKAT => (
            kread(req, off!(io_unlink_filename))?,
            kread(req, off!(io_unlink_dfd))?,
            0,
            -100,
        ),
        OP_MKDIRAT => (
            kread(req, off!(io_mkdir_filename))?,
            kread(req, off!(io_mkdir_dfd))?,
            0,
            -100,
        ),
        // symlinkat(content, new_dfd, linkpath): the file created is the second path.
        OP_SYMLINKAT => (
            kread(req, off!(io_rename_newpath))?,
            kread(req, off!(io_rename_new_dfd))?,
            kread(req, off!(io_rename_oldpath))?,
            -100,
        ),
        OP_RENAMEAT | OP_LINKAT => (
            kread(req, off!(io_rename_oldpath))?,
            kread(req, off!(io_rename_old_dfd))?,
            kread(req, off!(io_rename_newpath))?,
            kread(req, off!(io_rename_new_dfd))?,
        ),
        _ => (0, -100, 0, -100),
    })
}

#[inline(always)]
fn try_submit(ctx: &TracePointContext) -> Result<(), i64> {
    let op: u8 = tp_read(ctx, off!(uring_submit_opcode))?;
    let tracked = matches!(
        op,
        OP_OPENAT
            | OP_OPENAT2
            | OP_CONNECT
            | OP_RENAMEAT
            | OP_UNLINKAT
            | OP_MKDIRAT
            | OP_SYMLINKAT
            | OP_LINKAT
            | OP_FTRUNCATE
    ) || is_send(op);
    if !tracked {
        return Ok(());
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let req: *const u8 = tp_read::<u64>(ctx, off!(uring_submit_req))? as *const u8;
    let dest = if is_send(op) {
        match send_destination(req) {
            Some(d) => Some(d),
            // A send to the connected peer: recorded by its connect.
            None => return Ok(()),
        }
    } else {
        None
    };
    let ev = unsafe { &mut *begin_idle(pid_tgid, EventKind::Uring, Syscall::IoUring)? };
    let req_flags: u64 = kread(req, off!(kiocb_flags)).unwrap_or(0);
    let fd: i32 = kread(req, off!(kiocb_cqe).wrapping_add(CQE_FD)).unwrap_or(-1);
    let b = fixed::<UringBody>(ev);
    b.req = req as u64;
    b.user_data = tp_read(ctx, off!(uring_submit_user_data))?;
    b.opcode = u32::from(op);
    b.fd = fd;
    b.dfd2 = -100;
    b.flags = 0;
    b.open_flags = 0;
    b.mode = 0;
    b.resolve = 0;
    b.length = 0;
    b.addrlen = 0;
    b.fixed = u32::from(req_flags & REQ_F_FIXED_FILE != 0);
    op_fields(b, req, op, dest)?;
    request_paths(ev, req, op, fd)?;
    ev.header.flags |= flags::PATH_FROM_KERNEL | flags::ADDR_FROM_KERNEL;
    // The completion is recorded only for requests recorded here: (opcode, fixed, tgid).
    let fixed_slot = fixed::<UringBody>(ev).fixed;
    let tag = u64::from(op) | (u64::from(fixed_slot) << 8) | ((pid_tgid >> 32) << 32);
    if URING_REQS.insert(&(req as u64), &tag, 0).is_err() {
        count(|c| c.connecting_full += 1);
    }
    finish_tp(ctx, ev);
    Ok(())
}

/// The fields of the prepared request an opcode has: open flags, rename/unlink flags, a mode, a
/// length, a destination (the kernel's copies).
#[inline(always)]
fn op_fields(
    b: &mut UringBody,
    req: *const u8,
    op: u8,
    dest: Option<*const u8>,
) -> Result<(), i64> {
    match op {
        OP_OPENAT | OP_OPENAT2 => {
            let how = off!(io_open_how);
            b.open_flags = kread(req, how)?;
            b.mode = kread(req, how.wrapping_add(8))?;
            b.resolve = kread(req, how.wrapping_add(16))?;
            let slot: u32 = kread(req, off!(io_open_file_slot))?;
            b.fixed = u32::from(slot != 0);
        }
        OP_RENAMEAT | OP_LINKAT => b.flags = kread(req, off!(io_rename_flags))?,
        OP_UNLINKAT => b.flags = kread(req, off!(io_unlink_flags))?,
        OP_MKDIRAT => b.mode = u64::from(kread::<u16>(req, off!(io_mkdir_mode))?),
        OP_FTRUNCATE => b.length = kread(req, off!(io_ftrunc_len))?,
        OP_CONNECT => {
            let len: u32 = kread(req, off!(io_connect_addr_len))?;
            if let Ok(data) = kptr(req, off!(kiocb_async_data)) {
                copy_addr(b, connect_copy(data), len);
            }
        }
        _ => {
            if let Some(d) = dest {
                copy_addr(b, d, SOCKADDR_MAX as u32);
            }
        }
    }
    Ok(())
}

/// The request's paths (the kernel's copies) with the directories they resolve from; for an
/// ftruncate of a plain fd, the file behind it.
#[inline(always)]
fn request_paths(ev: &mut PendingEvent, req: *const u8, op: u8, fd: i32) -> Result<(), i64> {
    let (p1, dfd1, p2, dfd2) = paths(req, op)?;
    let in_root = fixed::<UringBody>(ev).resolve & RESOLVE_IN_ROOT != 0;
    if p1 != 0 {
        fixed::<UringBody>(ev).fd = dfd1;
        if let Ok(name) = kptr(p1 as *const u8, 0) {
            kernel_path(ev, name, Which::First);
            base_of(ev, dfd1, in_root, Which::First);
        }
    }
    if p2 != 0
        && let Ok(name) = kptr(p2 as *const u8, 0)
    {
        fixed::<UringBody>(ev).dfd2 = dfd2;
        kernel_path(ev, name, Which::Second);
        if op != OP_SYMLINKAT {
            base_of(ev, dfd2, false, Which::Second);
        }
    }
    if op == OP_FTRUNCATE && fixed::<UringBody>(ev).fixed == 0 {
        let _ = fd_file_section(ev, i64::from(fd));
    }
    Ok(())
}

#[inline(always)]
fn try_complete(ctx: &TracePointContext) -> Result<(), i64> {
    let req: u64 = tp_read(ctx, off!(uring_complete_req))?;
    let Some(tag) = (unsafe { URING_REQS.get(&req) }).copied() else {
        return Ok(());
    };
    let _ = URING_REQS.remove(&req);
    let pid_tgid = bpf_get_current_pid_tgid();
    let ev = unsafe { &mut *begin_idle(pid_tgid, EventKind::UringDone, Syscall::IoUring)? };
    let res = i64::from(tp_read::<i32>(ctx, off!(uring_complete_res))?);
    let b = fixed::<UringDoneBody>(ev);
    b.req = req;
    b.user_data = tp_read(ctx, off!(uring_complete_user_data))?;
    b.res = res;
    ev.header.retval = res;
    let op = (tag & 0xff) as u8;
    let fixed_slot = (tag >> 8) & 1 != 0;
    let same_process = (tag >> 32) == (pid_tgid >> 32);
    if (op == OP_OPENAT || op == OP_OPENAT2) && res >= 0 && !fixed_slot && same_process {
        // The returned fd, in the submitting process's table (completions run in its context).
        fd_section(ev, res);
    }
    emit(ev);
    Ok(())
}

#[inline(always)]
fn try_create(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<FixedEvent<UringSetupBody>>(0) else {
        count(|c| c.ringbuf_full[EventKind::UringSetup as usize] += 1);
        return Ok(());
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(
        &mut ev.header,
        EventKind::UringSetup,
        Syscall::IoUring as u16,
        pid_tgid,
    );
    ev.header.body_len = (core::mem::size_of::<FixedEvent<UringSetupBody>>() - HEADER_LEN) as u16;
    let fd: i32 = tp_read(ctx, off!(uring_create_fd)).unwrap_or(-1);
    ev.header.retval = i64::from(fd);
    ev.body = UringSetupBody {
        sq_entries: tp_read(ctx, off!(uring_create_sq)).unwrap_or(0),
        cq_entries: tp_read(ctx, off!(uring_create_cq)).unwrap_or(0),
        flags: tp_read(ctx, off!(uring_create_flags)).unwrap_or(0),
        fd,
    };
    entry.submit(submit_flags(ring_used()));
    count(|c| c.emitted[EventKind::UringSetup as usize] += 1);
    Ok(())
}
