//! Primitives every hook file uses, below `pending.rs`, `filter.rs` and `vfs.rs`: the kernel-side
//! counters and the per-process loss count, an atomic add, word-wise zeroing and copying, a mask
//! the verifier keeps, a kernel string read.

use audit_common::{counters::Counters, filter::ProcessDrops};
use aya_ebpf::helpers::generated;

use crate::maps::{COUNTERS, DROPS_BY_TGID};

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
