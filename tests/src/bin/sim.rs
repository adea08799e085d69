//! `sim`: run the deterministic cluster simulator over a range of seeds, or replay one.
//! See `shoal_tests::sim::cli` for the options; `--help` lists them.

use shoal_tests::cluster::{RaftRunner, RegisterWorkload};
use shoal_tests::kv_workload::KvWorkload;
use shoal_tests::sim::cli::{FailureCategory, RunOpts, SeedReport, SeedRunner, SimFailure};

/// Runs each seed with the workload the options name.
struct AnyWorkload {
    kv: RaftRunner<KvWorkload>,
    register: RaftRunner<RegisterWorkload>,
}

impl SeedRunner for AnyWorkload {
    fn run(&self, seed: u64, opts: &RunOpts) -> Result<SeedReport, SimFailure> {
        match opts.workload.as_str() {
            "kv" => self.kv.run(seed, opts),
            "register" => self.register.run(seed, opts),
            other => Err(SimFailure::new(
                FailureCategory::Setup,
                format!("unknown workload `{other}` (use kv or register)"),
            )),
        }
    }
}

fn main() -> std::process::ExitCode {
    shoal_tests::sim::cli::main_with(&AnyWorkload {
        kv: RaftRunner {
            workload: KvWorkload,
        },
        register: RaftRunner {
            workload: RegisterWorkload,
        },
    })
}
