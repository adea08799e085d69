//! # shoal-embedded
//!
//! Shoal's platform layer for microcontrollers and small boards: `no_std`, no heap, no `alloc`.
//!
//! - [`flash`]: a [`shoal_core::storage::Storage`] over NOR flash (any
//!   `embedded_storage::nor_flash::NorFlash`), with a flash fake ([`flash::sim::SimFlash`])
//!   that enforces NOR rules and cuts power on demand, and [`flash::ram::RamFlash`] over a
//!   memory region that survives a reset.
//! - [`link`]: CRC-framed links over `embedded-io` byte streams (plain frames for TCP, COBS
//!   for serial lines), one per peer.
//! - [`clock`]: a 64-bit millisecond clock from a wrapping tick counter.
//! - [`runtime`]: the node driver with DtKV, the links and the `Hello` handshake, on one core
//!   with caller-owned static buffers.
//!
//! Limits and the on-flash layout are documented in `docs/EMBEDDED.md`.
#![no_std]
#![warn(missing_docs)]
// No `unsafe` here; `deny` rather than `forbid` only so that the core's in-place constructor
// macro (`shoal_core::write_fields!`, which allows it inside its expansion) can build the
// runtime where it lives.
#![deny(unsafe_code)]

#[macro_use]
mod fmt;

pub mod clock;
pub mod flash;
pub mod link;
pub mod runtime;
