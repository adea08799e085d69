//! `sim`: run the deterministic cluster simulator over a range of seeds, or replay one.
//! See `shoal_tests::sim::cli` for the options; `--help` lists them.
//!
//! Until Raft nodes are wired into a runner, this drives the stand-in register service
//! ([`shoal_tests::sim::register_runner::RegisterRunner`]) through the same network, clocks,
//! fault schedule and checkers.

fn main() -> std::process::ExitCode {
    shoal_tests::sim::cli::main_with(&shoal_tests::sim::register_runner::RegisterRunner)
}
