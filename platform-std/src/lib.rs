//! # shoal-std
//!
//! Shoal on a Linux server: the pieces the `shoald` binary is built from.
//!
//! - [`storage`]: the file-backed [`shoal_core::storage::Storage`] (data dir, identity, log
//!   segments, hard state, snapshots, fsync modes) and read-only scanners for `shoal-inspect`.
//! - [`affinity`]: where the raft thread and the node's other threads run (`--raft-cpu`).
//! - [`server`]: `shoald`, the server (raft loop, peer and client ports, admin HTTP). Its client
//!   port speaks the protocol of [`shoal_client::protocol`].
//!
//! The package's other binaries, `shoalctl` and `shoal-bench`, are built on `shoal-client`
//! alone; they live here so that tests and `shoal-bench --local` find `shoald` beside them.
#![warn(missing_docs)]

pub mod affinity;
pub mod kvheap;
#[cfg(unix)]
pub mod server;
pub mod storage;

/// The build version of these binaries (`shoald --version`), which `/status` and
/// `shoalctl status --cluster` report for each node.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
