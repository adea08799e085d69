//! The deterministic cluster simulator's machinery: simulated network, drifting clocks, the
//! seed-drawn fault schedule, the Raft invariant checker, and the command line that runs seeds
//! and prints how to replay a failure.
//!
//! Everything here runs in one thread per seed and draws every random choice from that seed,
//! so a failing seed replays exactly. Nothing here knows how Raft is implemented: the runner
//! that drives real nodes feeds it frames, views and client operations.

pub mod cli;
pub mod clock;
pub mod faults;
pub mod invariants;
pub mod network;
pub mod plant;
