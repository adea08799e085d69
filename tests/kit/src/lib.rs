//! # shoal-testkit
//!
//! The one process harness of Shoal's tests. Every test that runs a real `shoald`, `shoalctl`,
//! `shoal-inspect` or `shoal-embedded-node` does it through this crate, so that each of them
//! finds its binaries, picks its ports, keeps its data and logs, waits and cleans up the same
//! way:
//!
//! - [`bins`]: the workspace's binaries, found next to the test executable; a missing one fails
//!   the test with the cargo command that builds it.
//! - [`proc`]: [`Proc`], a child process that is killed when it is dropped (also when the test
//!   panics) and can be stopped with SIGTERM, killed, paused and resumed.
//! - [`ports`]: free TCP ports on 127.0.0.1.
//! - [`cluster`]: [`Cluster`], `shoald` nodes with flags from a builder, data dirs and logs in
//!   one temporary dir, and waits for a leader or a role.
//! - [`client`]: a small blocking client of the client protocol, and helpers that retry on the
//!   nodes given until one answers.
//! - [`cli`]: `shoalctl` and `shoal-inspect` runs with a deadline and their captured output.
//! - [`disk`]: [`Tmpfs`], a small file system to fill under a node (a full disk).
//! - [`docs`]: the shell examples the Markdown docs mark as runnable, run as written against a
//!   fresh dev node.
//! - [`mock`]: an in-process stand-in for a node's client port, for client tests.
//! - [`peer`]: a stand-in for a member on the raft port, for tests that speak the peer
//!   protocol (handshakes, forged frames).
//! - `netns` (Linux, root): nodes in network namespaces of their own that a test can cut apart,
//!   and a node's clocks at another rate.
//! - [`wait`]: bounded waits that fail with what they waited for.
//!
//! It is a test-support crate: a dev-dependency, never part of a shipped binary. Every wait is
//! bounded and says what it was waiting for when it gives up; nothing is timed as an assertion.
#![cfg(unix)]
#![warn(missing_docs)]

pub mod bins;
pub mod certs;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod docs;
pub mod mock;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod peer;
pub mod ports;
pub mod proc;
pub mod wait;

pub use bins::bin;
pub use certs::{CertPair, Certs, TlsConn};
pub use cli::{inspect, shoalctl, Output};
pub use cluster::{write_key_file, Cluster, ClusterBuilder, Node};
pub use disk::Tmpfs;
pub use ports::{dead_addr, free_addr, free_port};
pub use proc::Proc;
pub use wait::{poll, wait_for, wait_some, WAIT};
