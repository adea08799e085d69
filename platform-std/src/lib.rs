//! # shoal-std
//!
//! Shoal on a Linux server: the pieces the `shoald` binary is built from.
//!
//! - [`storage`]: the file-backed [`shoal_core::storage::Storage`] (data dir, identity, log
//!   segments, hard state, snapshots, fsync modes) and read-only scanners for `shoal-inspect`.
#![warn(missing_docs)]

pub mod storage;
