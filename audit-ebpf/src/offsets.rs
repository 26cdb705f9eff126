//! Kernel-dependent offsets, set by user space at load time (`EbpfLoader::override_global`), and
//! the reads that use them.
//!
//! The globals live in `.rodata`, which the kernel freezes: the verifier then knows each value as a
//! constant, so reading them costs nothing at run time and branches for absent fields are pruned.

use audit_common::offsets::Offsets;
use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::TracePointContext};

#[unsafe(no_mangle)]
pub static OFFSETS: Offsets = Offsets::UNSET;

/// The agent's own process id (tgid in the initial pid namespace): never reported.
#[unsafe(no_mangle)]
static SELF_TGID: u32 = 0;

/// Pending ring-buffer bytes above which a record wakes the reader (set from the ring size).
/// Below it records are submitted without a wakeup and the reader polls on a short timer: a
/// wakeup per record (irq_work + IPI) would cost more than everything else on the watched path.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

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

#[inline(always)]
pub fn self_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&raw const SELF_TGID) }
}

/// Reads a `T` at byte offset `off` of the tracepoint record.
#[inline(always)]
pub fn tp_read<T>(ctx: &TracePointContext, off: u16) -> Result<T, i64> {
    unsafe { ctx.read_at::<T>(usize::from(off)) }.map_err(i64::from)
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
