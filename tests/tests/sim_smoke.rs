//! A few seeds of the Raft simulator, run by `cargo test` (the CI range runs in `sim_ci`).
use shoal_tests::cluster::{RaftRunner, RegisterWorkload};
use shoal_tests::sim::cli::{RunOpts, SeedRunner};

#[test]
fn register_workload_seeds_pass() {
    let runner = RaftRunner {
        workload: RegisterWorkload,
    };
    let opts = RunOpts {
        steps: 8_000,
        ..RunOpts::default()
    };
    for seed in 0..8 {
        match runner.run(seed, &opts) {
            Ok(r) => println!("seed {seed}: {}", r.summary),
            Err(e) => panic!("seed {seed} failed: {e}\n  replay: cargo run -p shoal-tests --release --bin sim -- --seed {seed}"),
        }
    }
}
