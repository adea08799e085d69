//! # shoal-core
//!
//! The bottom floor of Shoal: a sans-IO Raft state machine for one group ([`raft::Raft`]), the
//! wire ([`wire`]) and on-disk record ([`record`]) formats, the traits a platform implements
//! ([`storage::Storage`], [`io::Transport`], [`io::Clock`], [`io::StateMachine`]), the node
//! driver that binds them ([`driver::Node`]), multi-raft hosting ([`multi`]) and the peer
//! handshake ([`handshake`]).
//!
//! This crate never allocates, never does IO, never reads a clock and never uses global
//! randomness: time arrives as an argument and randomness from a PRNG seeded by the caller. The
//! same inputs always produce the same outputs, which is what lets the simulator replay a seed.
#![no_std]
#![warn(missing_docs)]
// `unsafe` is denied everywhere except `inplace`, which builds large structs in place, and
// `prefetch`, whose hint is an intrinsic.
#![deny(unsafe_code)]
// Without a heap, large variants cannot be boxed; enums are sized for their largest case on purpose.
#![allow(clippy::large_enum_variant)]

#[cfg(test)]
extern crate std;

#[macro_use]
pub mod fmt;

pub mod driver;
pub mod entry;
pub mod fault;
pub mod handshake;
#[macro_use]
pub mod inplace;
pub mod io;
pub mod limits;
pub mod membership;
pub mod message;
pub mod multi;
pub mod plant;
pub mod prefetch;
pub mod raft;
pub mod record;
pub mod rng;
pub mod storage;
pub mod types;
pub mod wire;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use types::*;
