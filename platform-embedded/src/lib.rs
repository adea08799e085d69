//! # shoal-embedded
//!
//! Shoal's platform layer for microcontrollers and small boards: `no_std`, no heap, no `alloc`.
//!
//! - [`flash`]: a [`shoal_core::storage::Storage`] over NOR flash (any
//!   `embedded_storage::nor_flash::NorFlash`), with a flash fake ([`flash::sim::SimFlash`])
//!   that enforces NOR rules and cuts power on demand.
//!
//! Limits and the on-flash layout are documented in `docs/EMBEDDED.md`.
#![no_std]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[macro_use]
mod fmt;

pub mod flash;
