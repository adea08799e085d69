//! `sim`: run the deterministic cluster simulator over a range of seeds, or replay one.
//! See `shoal_tests::sim::cli` for the options; `--help` lists them.

use shoal_tests::cluster::{RaftRunner, RegisterWorkload};

fn main() -> std::process::ExitCode {
    shoal_tests::sim::cli::main_with(&RaftRunner {
        workload: RegisterWorkload,
    })
}
