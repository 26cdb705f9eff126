//! Kernel-dependent offsets, set by user space at load time (`EbpfLoader::override_global`), and
//! the reads that use them.
//!
//! The globals live in `.rodata`, which the kernel freezes: the verifier then knows each value as a
//! constant, so reading them costs nothing at run time and branches for absent fields are pruned.

use audit_common::offsets::{KernelTypes, Offsets, RDONLY_CAST_MARKER, SYS_ENTER_ARG0};
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};

#[unsafe(no_mangle)]
pub static OFFSETS: Offsets = Offsets::UNSET;

/// The kernel's BTF ids of the structs read through `bpf_rdonly_cast` (see [`KernelTypes`]);
/// all 0 without that kfunc.
#[unsafe(no_mangle)]
pub static KTYPES: KernelTypes = KernelTypes::NONE;

/// The address the agent connects to once, right after loading, to make itself known: a random
/// `127.x.y.z` and port (network byte order, as `bpf_sock_addr` has them). See `AGENT`.
#[unsafe(no_mangle)]
static WHOAMI_IP4: u32 = 0;
#[unsafe(no_mangle)]
static WHOAMI_PORT: u32 = 0;

/// Pending ring-buffer bytes above which a record wakes the reader (set from the ring size).
/// Below it records are submitted without a wakeup and the reader polls on a short timer: a
/// wakeup per record (irq_work + IPI) would cost more than everything else on the watched path.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

/// Bytes at the end of the ring buffer kept for records of protected files: an ordinary record
/// is dropped (and counted) once less than this is free.
#[unsafe(no_mangle)]
static RING_RESERVE: u64 = 0;

/// The ring buffer's size in bytes.
#[unsafe(no_mangle)]
static RING_BYTES: u64 = 0;

/// 1 when watched sockets' packets are read (`[capture] packets`): the cgroup `sock_addr`
/// programs then mark the sockets watched tasks use (`packet.rs`).
#[unsafe(no_mangle)]
static PACKETS: u32 = 0;

/// 1 when 32-bit system calls are recorded (`[capture] compat_syscalls`, and this kernel's
/// `thread_info.status` was found): `sys_exit.rs` then looks at every call's `TS_COMPAT`.
#[unsafe(no_mangle)]
static COMPAT: u32 = 0;

/// Non-zero when the kernel has `bpf_loop` (5.17): path walks then take one `bpf_loop` step per
/// component (`vfs::walk_looped`), which the verifier checks once, instead of an unrolled loop
/// it checks step by step on every path that reaches it.
#[unsafe(no_mangle)]
static LOOPS: u32 = 0;

/// Whether `bpf_loop` may be called.
#[inline(always)]
pub fn loops_enabled() -> bool {
    unsafe { core::ptr::read_volatile(&raw const LOOPS) != 0 }
}

/// Whether 32-bit system calls are recorded.
#[inline(always)]
pub fn compat_enabled() -> bool {
    unsafe { core::ptr::read_volatile(&raw const COMPAT) != 0 }
}

/// Whether watched sockets' packets are read.
#[inline(always)]
pub fn packets_enabled() -> bool {
    unsafe { core::ptr::read_volatile(&raw const PACKETS) != 0 }
}

/// (ring size, reserve) in bytes.
#[inline(always)]
pub fn ring_limits() -> (u64, u64) {
    unsafe {
        (
            core::ptr::read_volatile(&raw const RING_BYTES),
            core::ptr::read_volatile(&raw const RING_RESERVE),
        )
    }
}

#[inline(always)]
pub fn wakeup_bytes() -> u64 {
    unsafe { core::ptr::read_volatile(&raw const WAKEUP_BYTES) }
}

/// Reads one field of [`OFFSETS`]. Volatile, so the compiler does not fold in the `UNSET` value.
macro_rules! off {
    ($field:ident) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::offsets::OFFSETS.$field) };
        v
    }};
}
pub(crate) use off;

/// The "who am I" address (ip, port), network byte order.
#[inline(always)]
pub fn whoami() -> (u32, u32) {
    unsafe {
        (
            core::ptr::read_volatile(&raw const WHOAMI_IP4),
            core::ptr::read_volatile(&raw const WHOAMI_PORT),
        )
    }
}

/// Reads a `T` at byte offset `off` of the tracepoint record.
#[inline(always)]
pub fn tp_read<T>(ctx: &TracePointContext, off: u16) -> Result<T, i64> {
    unsafe { ctx.read_at::<T>(usize::from(off)) }.map_err(i64::from)
}

/// Argument `I` of a `sys_enter_*` record as a plain context load (no helper call; see
/// [`SYS_ENTER_ARG0`]).
#[inline(always)]
pub fn enter_arg<const I: usize>(ctx: &TracePointContext) -> u64 {
    ctx_u64(ctx, usize::from(SYS_ENTER_ARG0) + 8 * I)
}

/// The u64 at a constant offset of the tracepoint record. Volatile: one load at that offset.
#[inline(always)]
fn ctx_u64(ctx: &TracePointContext, at: usize) -> u64 {
    let p = aya_ebpf::EbpfContext::as_ptr(ctx) as *const u8;
    unsafe { core::ptr::read_volatile(p.add(at).cast::<u64>()) }
}

/// Argument `i` of a `sys_enter_*` record (`args[i]` of `struct syscall_trace_enter`).
#[inline(always)]
pub fn sys_arg(ctx: &TracePointContext, i: i8) -> Result<u64, i64> {
    tp_read(ctx, off!(sys_enter_args).wrapping_add(8 * i as u16))
}

/// Argument `i`, or `default` when the call has none (`i < 0`).
#[inline(always)]
pub fn arg_or(ctx: &TracePointContext, i: i8, default: u64) -> Result<u64, i64> {
    if i < 0 { Ok(default) } else { sys_arg(ctx, i) }
}

/// The BTF id of kernel struct `$ty` for [`tread`] (0 without `bpf_rdonly_cast`).
macro_rules! kty {
    ($ty:ident) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(&raw const $crate::offsets::KTYPES.$ty) };
        v
    }};
}
pub(crate) use kty;

/// `bpf_rdonly_cast(addr, ty)`: `addr` as a read-only pointer to the kernel struct of BTF id
/// `ty` (a verifier-known constant). Called as [`RDONLY_CAST_MARKER`], which the loader rewrites
/// into the kfunc call; the verifier then inlines it to a register move.
#[inline(always)]
fn rdonly_cast(addr: *const u8, ty: u32) -> *const u8 {
    let cast: unsafe extern "C" fn(*const u8, u32) -> *const u8 =
        unsafe { core::mem::transmute(RDONLY_CAST_MARKER as usize) };
    unsafe { cast(addr, ty) }
}

/// Reads the `T` at `base + off` of a kernel struct whose BTF id is `ty` ([`kty!`]): a plain load
/// through [`rdonly_cast`] when the kernel has that kfunc (the other branch is pruned by the
/// verifier, `ty` being a constant to it), else [`kread`]. The verifier checks the plain load
/// against the kernel's BTF (a field of that size at that offset), and the JIT turns a faulting
/// one into a 0 — for the objects a walk reads (pinned by the file, the dentry or mount tree it
/// was reached through) that does not happen; a null pointer is an error as with [`kptr`].
#[inline(always)]
pub fn tread<T>(base: *const u8, ty: u32, off: u16) -> Result<T, i64> {
    if ty != 0 {
        let p = rdonly_cast(base, ty).wrapping_add(usize::from(off));
        Ok(unsafe { core::ptr::read_volatile(p.cast::<T>()) })
    } else {
        kread(base, off)
    }
}

/// The non-null pointer at `base + off` of a kernel struct of BTF id `ty` (see [`tread`]).
#[inline(always)]
pub fn tptr(base: *const u8, ty: u32, off: u16) -> Result<*const u8, i64> {
    let p: *const u8 = tread(base, ty, off)?;
    if p.is_null() { Err(-1) } else { Ok(p) }
}

/// Reads a kernel `T` at `base + off`.
#[inline(always)]
pub fn kread<T>(base: *const u8, off: u16) -> Result<T, i64> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(usize::from(off)).cast::<T>()) }
        .map_err(i64::from)
}

/// Reads a kernel pointer at `base + off`; a null one is an error.
#[inline(always)]
pub fn kptr(base: *const u8, off: u16) -> Result<*const u8, i64> {
    let p: *const u8 = kread(base, off)?;
    if p.is_null() { Err(-1) } else { Ok(p) }
}

/// `8 * W` bytes of a kernel object read in one helper call, from which nearby fields are
/// picked: each `bpf_probe_read_kernel` costs tens of nanoseconds, and the fields a walk needs
/// (an inode's superblock, number and links; a dentry's parent and name) sit close together. A
/// field outside the block (another kernel's layout) is read on its own, so no layout is assumed.
/// The offsets are verifier-known constants (`.rodata`), so the range checks cost nothing. Words,
/// read in place: a byte array moved by value is copied byte by byte, which the verifier then
/// walks at every step of a loop.
pub struct Block<const W: usize> {
    base: *const u8,
    start: u16,
    words: [u64; W],
}

impl<const W: usize> Block<W> {
    /// Reads the block at `base + start` (into uninitialised words: zeroing them first would be
    /// a byte loop).
    #[inline(always)]
    pub fn read(base: *const u8, start: u16) -> Result<Self, i64> {
        let mut words = core::mem::MaybeUninit::<[u64; W]>::uninit();
        let r = unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(
                words.as_mut_ptr().cast(),
                (W * 8) as u32,
                base.wrapping_add(usize::from(start)).cast(),
            )
        };
        if r != 0 {
            return Err(r);
        }
        Ok(Self {
            base,
            start,
            words: unsafe { words.assume_init() },
        })
    }

    /// The 8-byte-aligned word at `base + off`, if it lies inside.
    #[inline(always)]
    fn word(&self, off: u16) -> Option<u64> {
        let rel = usize::from(off.wrapping_sub(self.start));
        if off < self.start || rel % 8 != 0 || rel / 8 >= W {
            return None;
        }
        Some(self.words[rel / 8])
    }

    /// The u64 (or pointer-sized value) at `base + off`.
    #[inline(always)]
    pub fn u64(&self, off: u16) -> Result<u64, i64> {
        match self.word(off) {
            Some(w) => Ok(w),
            None => kread(self.base, off),
        }
    }

    /// The u32 at `base + off` (little-endian halves of a word).
    #[inline(always)]
    pub fn u32(&self, off: u16) -> Result<u32, i64> {
        let shift = u32::from(off % 8) * 8;
        match self.word(off - off % 8) {
            Some(w) if off % 4 == 0 => Ok((w >> shift) as u32),
            _ => kread(self.base, off),
        }
    }

    /// The non-null pointer at `base + off`.
    #[inline(always)]
    pub fn ptr(&self, off: u16) -> Result<*const u8, i64> {
        let p = self.u64(off)? as *const u8;
        if p.is_null() { Err(-1) } else { Ok(p) }
    }
}
