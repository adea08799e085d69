//! The simulator's CI seed range, run by `cargo test`: every seed must pass every check.
//! A failure names the seed and the one command that replays it.

use shoal_tests::cluster::{RaftRunner, RegisterWorkload};
use shoal_tests::kv_workload::KvWorkload;
use shoal_tests::sim::cli::{replay_command, RunOpts, SeedReport, SeedRunner};
use shoal_tests::sim::faults::{
    add_group_replacements, FaultEvent, FaultSchedule, RESTORED_LEASE_ORDER_KV, STALE_APPEND_KV,
    STALE_APPEND_REGISTER,
};

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

/// Run CI seed `seed` of `workload` (`kv` or `register`) as the ranges above run it; a
/// failure names `what` the seed checks and the command that replays it.
fn run_named(workload: &str, seed: u64, what: &str) -> SeedReport {
    run_with_groups(workload, seed, groups_of(seed), what)
}

/// [`run_named`] with `groups` groups on every node.
fn run_with_groups(workload: &str, seed: u64, groups: usize, what: &str) -> SeedReport {
    let opts = RunOpts {
        workload: workload.to_string(),
        groups,
        ..RunOpts::default()
    };
    let run = if workload == "kv" {
        RaftRunner {
            workload: KvWorkload,
        }
        .run(seed, &opts)
    } else {
        RaftRunner {
            workload: RegisterWorkload,
        }
        .run(seed, &opts)
    };
    run.unwrap_or_else(|e| {
        panic!(
            "{workload} seed {seed} ({what}): {e}\n  replay: {}",
            replay_command(seed, &opts)
        )
    })
}

#[test]
fn a_deposed_leader_resuming_from_a_pause_keeps_serving() {
    // These seeds stopped a deposed leader on its stale append before the driver dropped
    // appends queued in a term it no longer leads; they are also in the ranges above, named
    // here so that a regression says what broke.
    for (workload, seeds) in [("kv", STALE_APPEND_KV), ("register", STALE_APPEND_REGISTER)] {
        for &seed in seeds {
            run_named(workload, seed, "a paused leader deposed, then resumed");
        }
    }
}

#[test]
fn a_restored_replica_ends_a_lease_in_the_same_order() {
    // Outside the CI range: a late node installed a snapshot, then a lease ended with two
    // nodes tied to it, whose events it emitted in another order than the others.
    for &seed in RESTORED_LEASE_ORDER_KV {
        run_named(
            "kv",
            seed,
            "a lease ended on a replica restored from a snapshot",
        );
    }
}

#[test]
fn a_node_whose_log_outran_its_hard_state_comes_back_in_the_log_s_term() {
    // Outside the CI range, with eight groups a node: a paused node resumed, took up a new
    // leader's term and entries in several groups, and crashed on damaged data in another
    // group before they were synced; one group's entries reached the medium and its hard state
    // did not, and it came back in the old term holding entries of the newer one.
    for seed in [80189, 80968] {
        run_with_groups(
            "kv",
            seed,
            8,
            "a crash kept a group's new entries and lost its new term",
        );
    }
}

/// The count the seed report's summary gives for `what` ("groups retired"), 0 when absent.
fn reported(summary: &str, what: &str) -> u64 {
    summary
        .split(", ")
        .find_map(|part| part.strip_suffix(what)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn multi_group_seeds_retire_groups_and_create_new_ones_and_pass() {
    // The first multi-group seeds of the CI ranges whose schedule replaces a group: the
    // group is retired on every node and a new one with a fresh id takes its place. They are
    // also in the ranges above, named here so that a regression says what broke.
    let steps = RunOpts::default().steps;
    let seeds: Vec<u64> = REGISTER_SEEDS
        .filter(|&seed| groups_of(seed) > 1)
        .filter(|&seed| {
            let mut s = FaultSchedule::generate(seed, steps);
            add_group_replacements(&mut s, groups_of(seed));
            s.events
                .iter()
                .any(|e| matches!(e.event, FaultEvent::ReplaceGroup(_)))
        })
        .take(3)
        .collect();
    assert_eq!(
        seeds.len(),
        3,
        "multi-group seeds that replace a group: {seeds:?}"
    );
    let (mut retired, mut created) = (0, 0);
    for (workload, seed) in [("kv", seeds[0]), ("kv", seeds[1]), ("register", seeds[2])] {
        let report = run_named(workload, seed, "groups retired and created");
        retired += reported(&report.summary, "groups retired");
        created += reported(&report.summary, "groups created");
    }
    assert!(
        retired >= 1 && created == retired,
        "{retired} groups retired, {created} created in seeds {seeds:?}"
    );
}
