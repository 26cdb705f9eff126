//! Primitives every hook file uses, below `pending.rs`, `filter.rs` and `vfs.rs`: the kernel-side
//! counters, an atomic add, a mask the verifier keeps, a kernel string read.

use audit_common::counters::Counters;
use aya_ebpf::helpers::generated;

use crate::maps::COUNTERS;

/// Adds one to a counter of the current CPU.
#[inline(always)]
pub fn count(f: impl FnOnce(&mut Counters)) {
    if let Some(c) = COUNTERS.get_ptr_mut(0) {
        f(unsafe { &mut *c });
    }
}

/// Atomically adds `delta` (two's complement for a subtraction) to `*p`. The bpf target has no
/// Rust atomics, so this is the BPF `lock xadd` instruction written out (what C's
/// `__sync_fetch_and_add` emits when the result is unused).
#[inline(always)]
pub fn atomic_add(p: *mut u64, delta: u64) {
    #[cfg(target_arch = "bpf")]
    unsafe {
        core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) p, v = in(reg) delta);
    }
    #[cfg(not(target_arch = "bpf"))]
    let _ = (p, delta);
}

/// `x & mask`, kept as an instruction the verifier sees. LLVM drops a mask it can prove
/// redundant from the loop's own bounds, which the verifier cannot follow (it loses precision
/// across loop iterations); a bounded offset into a map value must then come from this.
#[inline(always)]
pub fn verifier_mask(x: usize, mask: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    {
        let mut v = x as u64;
        unsafe {
            core::arch::asm!("{v} &= {m}", v = inout(reg) v, m = in(reg) mask as u64);
        }
        v as usize
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        x & mask
    }
}

/// Copies a NUL-terminated string from kernel memory to `dst` (at most `max` bytes, NUL included).
#[inline(always)]
pub fn read_kernel_str(dst: *mut u8, max: u32, src: *const u8) -> Result<u32, i64> {
    let n = unsafe { generated::bpf_probe_read_kernel_str(dst.cast(), max, src.cast()) };
    if n < 0 {
        return Err(n);
    }
    Ok((n as u32).min(max))
}
