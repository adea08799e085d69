//! # shoal-tests
//!
//! Shoal's test harness: the deterministic cluster simulator ([`sim`]), the linearizability
//! checker for client histories ([`linearizability`]) and the simulated storage that can lose
//! power ([`memstore`]).
#![warn(missing_docs)]

pub mod cluster;
pub mod kv_workload;
pub mod linearizability;
pub mod memstore;
pub mod sim;
