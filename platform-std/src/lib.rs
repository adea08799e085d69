//! # shoal-std
//!
//! Shoal on a Linux server: the pieces the `shoald` binary is built from.
//!
//! - [`storage`]: the file-backed [`shoal_core::storage::Storage`] (data dir, identity, log
//!   segments, hard state, snapshots, fsync modes) and read-only scanners for `shoal-inspect`.
//! - [`protocol`]: the client protocol spoken on a node's client port.
//! - [`client`]: the Rust client library (async and blocking) used by applications and
//!   `shoalctl`.
//! - [`server`]: `shoald`, the server (raft loop, peer and client ports, admin HTTP).
#![warn(missing_docs)]

#[cfg(unix)]
pub mod client;
pub mod kvheap;
pub mod protocol;
#[cfg(unix)]
pub mod server;
pub mod storage;
