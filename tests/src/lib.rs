//! # shoal-tests
//!
//! Shoal's test harness: the deterministic cluster simulator ([`sim`]) and the linearizability
//! checker for client histories ([`linearizability`]).
#![warn(missing_docs)]

pub mod linearizability;
pub mod sim;
