//! The simulator's CI seed range, run by `cargo test`: every seed must pass every check.
//! A failure names the seed and the one command that replays it.

use shoal_tests::cluster::{RaftRunner, RegisterWorkload};
use shoal_tests::kv_workload::KvWorkload;
use shoal_tests::sim::cli::{replay_command, RunOpts, SeedRunner};
use shoal_tests::sim::faults::{RESTORED_LEASE_ORDER_KV, STALE_APPEND_KV, STALE_APPEND_REGISTER};

/// Seeds of the DtKV workload (the default) CI runs.
const KV_SEEDS: std::ops::Range<u64> = 0..1000;
/// Seeds of the plain register workload CI runs.
const REGISTER_SEEDS: std::ops::Range<u64> = 0..200;
/// Seeds ≡ 3 or 38 (mod 64) of both ranges (a thirty-second, half of them with deferred
/// syncs) run with this many groups on every node; the others with one, as before groups
/// existed. A run with four groups costs about 3.4 single-group runs, so this adds under a
/// tenth to the range's time (`sim --groups 4` runs more).
const MULTI_GROUPS: usize = 4;

/// How many groups every node of `seed`'s run hosts.
fn groups_of(seed: u64) -> usize {
    if matches!(seed % 64, 3 | 38) {
        MULTI_GROUPS
    } else {
        1
    }
}

fn run_range<R: SeedRunner>(runner: &R, seeds: std::ops::Range<u64>, workload: &str) {
    let opts = RunOpts {
        workload: workload.to_string(),
        ..RunOpts::default()
    };
    let opts_of = |seed: u64| RunOpts {
        groups: groups_of(seed),
        ..opts.clone()
    };
    // Two threads, each taking every other seed; each seed is deterministic on its own.
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let seeds = seeds.clone();
                let opts_of = &opts_of;
                s.spawn(move || {
                    seeds
                        .filter(|seed| seed % 2 == t)
                        .filter_map(|seed| {
                            let opts = opts_of(seed);
                            match runner.run(seed, &opts) {
                                Ok(_) => None,
                                Err(e) => Some(format!(
                                    "seed {seed}: {e}\n  replay: {}",
                                    replay_command(seed, &opts)
                                )),
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("seed thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn dtkv_workload_ci_range_passes() {
    run_range(
        &RaftRunner {
            workload: KvWorkload,
        },
        KV_SEEDS,
        "kv",
    );
}

#[test]
fn register_workload_ci_range_passes() {
    run_range(
        &RaftRunner {
            workload: RegisterWorkload,
        },
        REGISTER_SEEDS,
        "register",
    );
}

#[test]
fn a_deposed_leader_resuming_from_a_pause_keeps_serving() {
    // These seeds stopped a deposed leader on its stale append before the driver dropped
    // appends queued in a term it no longer leads; they are also in the ranges above, named
    // here so that a regression says what broke.
    let kv = RaftRunner {
        workload: KvWorkload,
    };
    let register = RaftRunner {
        workload: RegisterWorkload,
    };
    for (workload, seeds) in [("kv", STALE_APPEND_KV), ("register", STALE_APPEND_REGISTER)] {
        for &seed in seeds {
            let opts = RunOpts {
                workload: workload.to_string(),
                groups: groups_of(seed),
                ..RunOpts::default()
            };
            let run = if workload == "kv" {
                kv.run(seed, &opts)
            } else {
                register.run(seed, &opts)
            };
            if let Err(e) = run {
                panic!(
                    "{workload} seed {seed} (a paused leader deposed, then resumed): {e}\n  \
                     replay: {}",
                    replay_command(seed, &opts)
                );
            }
        }
    }
}

#[test]
fn a_restored_replica_ends_a_lease_in_the_same_order() {
    // Outside the CI range: a late node installed a snapshot, then a lease ended with two
    // nodes tied to it, whose events it emitted in another order than the other nodes.
    let kv = RaftRunner {
        workload: KvWorkload,
    };
    for &seed in RESTORED_LEASE_ORDER_KV {
        let opts = RunOpts {
            workload: "kv".to_string(),
            groups: groups_of(seed),
            ..RunOpts::default()
        };
        if let Err(e) = kv.run(seed, &opts) {
            panic!(
                "kv seed {seed} (a lease ended on a replica restored from a snapshot): {e}\n  \
                 replay: {}",
                replay_command(seed, &opts)
            );
        }
    }
}
