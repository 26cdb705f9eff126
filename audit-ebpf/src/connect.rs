//! connect: what the process passed at entry (the socket address, read from its memory); what
//! the kernel acted on — the kernel's own copy of an IP destination (cgroup `connect4/6`
//! programs, which run on the copy the kernel connects to), a unix socket's peer (its bound
//! path, from the peer `unix_sock`); the result at exit; and for a non-blocking TCP connect, its
//! final state (`sock.rs`).
//!
//! The cgroup programs are attached to the root of the cgroup v2 hierarchy and always allow;
//! their one decision point ([`decide`]) is where a later enforce mode can refuse a connect.

use audit_common::event::{
    CompatBody, ConnectBody, EventHeader, EventKind, FileFacts, KernelAddr, PATH_MAX, SOCKADDR_MAX,
    Syscall, flags,
};
use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::{cgroup_sock_addr, raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, SockAddrContext, TracePointContext},
};

use crate::{
    emit::finish_raw,
    filter::is_watched,
    helpers::{atomic_add, count, zero},
    maps::{AGENT, CONNECTING, CONNECTING_COUNT},
    offsets::{kptr, kread, off, tp_read, whoami},
    packet::mark_socket,
    pending::{begin, common, current_tid, fixed, in_flight, set_result},
    sections::{Section, base_section, read_user_str, walk_section},
    socket::{AF_INET, AF_INET6, AF_UNIX, socket_of},
    vfs,
};

const O_NONBLOCK: u32 = 0o4000;
const EINPROGRESS: i64 = 115;

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    let _ = try_enter_connect(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_connect(ctx: RawTracePointContext) -> i32 {
    let _ = try_exit_connect(&ctx);
    0
}

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    if is_whoami(&ctx) {
        return 0;
    }
    let cookie = mark_socket(&ctx);
    let _ = kernel_address(&ctx, AF_INET, cookie);
    decide(&ctx)
}

/// The agent's "who am I" connect (see `AGENT`): records its tgid once and refuses the connect
/// (it goes nowhere). The address is random per start and only the first caller counts, so no
/// other process can pass itself off as the agent.
#[inline(always)]
fn is_whoami(ctx: &SockAddrContext) -> bool {
    let (ip, port) = whoami();
    let sa = unsafe { &*ctx.sock_addr };
    if ip == 0 || sa.user_ip4 != ip || sa.user_port != port {
        return false;
    }
    if let Some(slot) = AGENT.get_ptr_mut(0)
        && unsafe { *slot } == 0
    {
        unsafe { *slot = (bpf_get_current_pid_tgid() >> 32) as u32 };
    }
    true
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    let cookie = mark_socket(&ctx);
    let _ = kernel_address(&ctx, AF_INET6, cookie);
    decide(&ctx)
}

/// The verdict of a cgroup `sock_addr` program: 1 lets the connect proceed. audit-agent only
/// observes; an enforce mode would look up the destination's verdict here and return 0.
#[inline(always)]
fn decide(_ctx: &SockAddrContext) -> i32 {
    1
}

/// Registers a non-blocking socket (by its cookie) so its final state is reported (`sock.rs`).
#[inline(always)]
fn follow_async(cookie: u64, h: &EventHeader) {
    if CONNECTING.insert(&cookie, h, 0).is_ok() {
        if let Some(n) = CONNECTING_COUNT.get_ptr_mut(0) {
            atomic_add(n, 1);
        }
    } else {
        count(|c| c.connecting_full += 1);
    }
}

/// Stops following a socket (by its cookie) whose connect finished within the syscall.
#[inline(always)]
pub fn unfollow_async(cookie: u64) {
    if CONNECTING.remove(&cookie).is_ok()
        && let Some(n) = CONNECTING_COUNT.get_ptr_mut(0)
    {
        atomic_add(n, 1u64.wrapping_neg());
    }
}

/// Copies the address as passed; for a unix path, also its path as the requested section.
#[inline(always)]
pub fn address_as_passed(ev: &mut audit_common::event::PendingEvent, addr: u64, addrlen: u32) {
    let body = fixed::<ConnectBody>(ev);
    // Verifier: the read size must be provably bounded by the destination.
    let mut n = addrlen & 0xff;
    if n as usize > SOCKADDR_MAX {
        n = SOCKADDR_MAX as u32;
    }
    zero(&mut body.addr);
    let r =
        unsafe { generated::bpf_probe_read_user((&raw mut body.addr).cast(), n, addr as *const _) };
    if r != 0 {
        ev.header.flags |= flags::ADDR_FAULT;
        return;
    }
    let family = u16::from_ne_bytes([body.addr[0], body.addr[1]]);
    if family == AF_UNIX && n > 2 && body.addr[2] != 0 {
        if let Some((sec, dst)) = Section::start(ev, PATH_MAX) {
            if let Ok(len) = read_user_str(dst, (n - 2).min(109), (addr + 2) as *const u8) {
                sec.commit(ev, |c| &mut c.sections.requested, len);
            }
        }
    }
}

#[inline(always)]
fn try_enter_connect(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_watched(pid_tgid) {
        return Ok(());
    }
    let fd: u64 = tp_read(ctx, off!(connect_fd))?;
    let addr: u64 = tp_read(ctx, off!(connect_uservaddr))?;
    let addrlen: u64 = tp_read(ctx, off!(connect_addrlen))?;
    let ev = unsafe { &mut *begin(pid_tgid, EventKind::Connect, Syscall::Connect)? };
    let body = fixed::<ConnectBody>(ev);
    body.fd = fd as i32;
    body.addrlen = addrlen as u32;
    body.user_addr = addr;
    zero(&mut body.kaddr);
    body.sk = 0;
    body.cookie = 0;
    address_as_passed(ev, addr, addrlen as u32);
    if let Ok((sk, f_flags)) = socket_of(fd as i64) {
        fixed::<ConnectBody>(ev).sk = sk as u64;
        // Followed from `connect4/6` (`kernel_address`), which has the socket's cookie.
        if f_flags & O_NONBLOCK != 0
            && kread::<u16>(sk, off!(sock_family)).is_ok_and(|f| f != AF_UNIX)
        {
            ev.header.flags |= flags::CONNECT_ASYNC;
        }
    }
    Ok(())
}

/// cgroup `connect4/6`, `sendmsg4/6`: the kernel's copy of the destination and the socket's
/// cookie (0 when not watched, see [`mark_socket`]), written into the in-flight connect or send
/// of the current thread (a TCP Fast Open `sendto` connects too).
#[inline(always)]
pub fn kernel_address(ctx: &SockAddrContext, family: u16, cookie: u64) -> Result<(), i64> {
    let tid = current_tid();
    let compat = in_flight(tid, EventKind::Compat).or_else(compat_call);
    let is_compat = compat.is_some();
    let Some(ev) = compat
        .or_else(|| in_flight(tid, EventKind::Connect))
        .or_else(|| in_flight(tid, EventKind::Send))
    else {
        return Ok(());
    };
    let a: &bpf_sock_addr = unsafe { &*ctx.sock_addr };
    let mut k = KernelAddr {
        family,
        port: u16::from_be(a.user_port as u16),
        _pad: 0,
        ip: [0; 16],
    };
    if family == AF_INET {
        k.ip[..4].copy_from_slice(&a.user_ip4.to_ne_bytes());
    } else {
        let words = [a.user_ip6[0], a.user_ip6[1], a.user_ip6[2], a.user_ip6[3]];
        for (i, w) in words.iter().enumerate() {
            k.ip[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    if is_compat {
        let body = fixed::<CompatBody>(ev);
        body.kaddr = k;
        body.cookie = cookie;
    } else if ev.header.flags & flags::CONNECT_ASYNC != 0 {
        // A watched non-blocking connect: its final state is followed by the socket's cookie
        // (`sock.rs`), so the record names the socket even when packets are not read.
        let cookie = if cookie != 0 {
            cookie
        } else {
            unsafe { generated::bpf_get_socket_cookie(ctx.sock_addr.cast()) }
        };
        let body = fixed::<ConnectBody>(ev);
        body.kaddr = k;
        body.cookie = cookie;
        follow_async(cookie, &ev.header);
    } else {
        let body = fixed::<ConnectBody>(ev);
        body.kaddr = k;
        body.cookie = cookie;
    }
    ev.header.flags |= flags::ADDR_FROM_KERNEL;
    Ok(())
}

/// A watched task's 32-bit connect or send: its record begins here (`compat.rs` has no entry
/// program; the call's arguments are read when it returns).
#[inline(always)]
fn compat_call() -> Option<&'static mut audit_common::event::PendingEvent> {
    if !crate::compat::in_compat_call() {
        return None;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !crate::filter::is_watched(pid_tgid) {
        return None;
    }
    crate::compat::begin_compat(pid_tgid).ok()
}

/// A connected unix socket's peer: the path it is bound to (walked), or its abstract name (the
/// `extra` section; an abstract socket has no inode to name, so `common.file` stays unset). A
/// name that could not be read is an error: the record says so instead of naming nothing.
#[inline(always)]
fn unix_peer(ev: &mut audit_common::event::PendingEvent, sk: *const u8) -> Result<(), i64> {
    let peer = kptr(sk, off!(unix_peer))?;
    let dentry: u64 = kread(peer, off!(unix_path).wrapping_add(off!(path_dentry)))?;
    if dentry != 0 {
        let path = vfs::path_at(peer, off!(unix_path))?;
        let mut facts = FileFacts::default();
        vfs::dentry_facts(path.1, &mut facts)?;
        common(ev).file = facts;
        walk_section(ev, path, |c| &mut c.file, |c| &mut c.sections.kpath);
        return Ok(());
    }
    // Abstract (or unnamed): the bound name, `sun_path` bytes after the family.
    let ua = kptr(peer, off!(unix_addr))?;
    let len: i32 = kread(ua, off!(unix_address_len))?;
    let Some((sec, dst)) = Section::start(ev, SOCKADDR_MAX) else {
        return Ok(());
    };
    let mut n = (len as u32).saturating_sub(2) & 0x7f;
    if n > 108 {
        n = 108;
    }
    let name = ua.wrapping_add(usize::from(off!(unix_address_name)) + 2);
    if n == 0 || unsafe { generated::bpf_probe_read_kernel(dst.cast(), n, name.cast()) } != 0 {
        return Err(-1);
    }
    sec.commit(ev, |c| &mut c.sections.extra, n);
    Ok(())
}

#[inline(always)]
fn try_exit_connect(ctx: &RawTracePointContext) -> Result<(), i64> {
    let Some(ev) = in_flight(current_tid(), EventKind::Connect) else {
        return Ok(());
    };
    set_result(ctx, ev);
    let (user, addrlen, sk, cookie) = {
        let b = fixed::<ConnectBody>(ev);
        (b.user_addr, b.addrlen, b.sk, b.cookie)
    };
    if ev.header.flags & flags::ADDR_FAULT != 0 {
        ev.header.flags &= !flags::ADDR_FAULT;
        address_as_passed(ev, user, addrlen);
        if ev.header.flags & flags::ADDR_FAULT != 0 {
            count(|c| c.addr_fault += 1);
        }
    }
    let retval = ev.header.retval;
    if ev.header.flags & flags::CONNECT_ASYNC != 0 && retval != -EINPROGRESS {
        // Finished (or failed) within the syscall: the result is final, nothing follows.
        ev.header.flags &= !flags::CONNECT_ASYNC;
        unfollow_async(cookie);
    }
    let family = kread::<u16>(sk as *const u8, off!(sock_family)).unwrap_or(0);
    if sk != 0 && family == AF_UNIX {
        if retval == 0 {
            if unix_peer(ev, sk as *const u8).is_err() {
                ev.header.flags |= flags::KPATH_FAULT;
            }
        } else if common(ev).sections.requested.len != 0 {
            base_section(ev, -100, false);
        }
    }
    finish_raw(ctx, ev);
    Ok(())
}
