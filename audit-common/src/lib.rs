//! Types shared by the eBPF programs (`audit-ebpf`) and the user-space collector (`audit-agent`).
//!
//! Everything here is `#[repr(C)]` plain data: the kernel writes it into maps and the ring buffer,
//! user space reads it back byte for byte. Change a layout here and both sides change together.
//!
//! User-space-only parts (aya `Pod` impls, decoding helpers) live behind the `user` feature.
#![no_std]

pub mod counters;
pub mod event;
pub mod filter;
pub mod net;
pub mod offsets;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, contain only integers and integer arrays, and
    // have explicit padding fields, so every bit pattern is valid.
    unsafe impl aya::Pod for crate::filter::FilterConfig {}
    unsafe impl aya::Pod for crate::filter::CgroupVerdict {}
    unsafe impl aya::Pod for crate::filter::FileKey {}
    unsafe impl aya::Pod for crate::filter::ProcessDrops {}
    unsafe impl aya::Pod for crate::offsets::Offsets {}
    unsafe impl aya::Pod for crate::offsets::KernelTypes {}
    unsafe impl aya::Pod for crate::counters::Counters {}
    unsafe impl aya::Pod for crate::event::PendingEvent {}
    unsafe impl aya::Pod for crate::event::FixedEvent<crate::event::SignalBody> {}
}
