//! Proof that the simulator's checks can fail: each planted bug must make some seed of the CI
//! range fail, and the failure must print the command that replays it. The bug is chosen per
//! run (every node of it is built with it), so these tests run side by side.

use shoal_tests::cluster::RaftRunner;
use shoal_tests::kv_workload::KvWorkload;
use shoal_tests::sim::cli::{replay_command, RunOpts, SeedRunner};

fn first_failure(mutant: &str) -> (u64, String, String) {
    first_failure_in(mutant, 1, 0..1000)
}

/// The first seed of `seeds` whose run with `groups` groups per node fails with `mutant`.
fn first_failure_in(
    mutant: &str,
    groups: usize,
    seeds: std::ops::Range<u64>,
) -> (u64, String, String) {
    let runner = RaftRunner {
        workload: KvWorkload,
    };
    let opts = RunOpts {
        mutant: Some(mutant.to_string()),
        groups,
        ..RunOpts::default()
    };
    for seed in seeds.clone() {
        if let Err(e) = runner.run(seed, &opts) {
            return (seed, e.to_string(), replay_command(seed, &opts));
        }
    }
    panic!(
        "planted bug `{mutant}` survived seeds {seeds:?} with {groups} groups per node: the \
         simulator's checks missed it"
    );
}

fn assert_caught(mutant: &str) {
    let (seed, why, replay) = first_failure(mutant);
    println!("{mutant}: seed {seed} failed: {why}\n  replay: {replay}");
    assert!(replay.contains(&format!("--mutant {mutant}")), "{replay}");
    assert!(replay.contains(&format!("--seed {seed}")), "{replay}");
}

#[test]
fn vote_not_persisted_is_caught() {
    assert_caught("vote-not-persisted");
}

#[test]
fn commit_by_counting_is_caught() {
    assert_caught("commit-by-counting");
}

#[test]
fn skip_truncate_is_caught() {
    assert_caught("skip-truncate");
}

#[test]
fn read_without_quorum_is_caught() {
    assert_caught("read-without-quorum");
}

#[test]
fn kv_dedup_ignored_is_caught() {
    assert_caught("kv-dedup-ignored");
}

#[test]
fn kv_txn_half_is_caught() {
    assert_caught("kv-txn-half");
}

#[test]
fn read_unchecked_is_caught() {
    // Without the storage's read-back CRC check, the bytes a flipped read returns reach the
    // node's state machine or its peers.
    assert_caught("read-unchecked");
}

#[test]
fn a_run_without_a_planted_bug_passes_where_one_with_it_fails() {
    // The choice is the run's alone: the seed that catches a bug passes without it, even
    // while other runs with other bugs go on in this process.
    let (seed, _, _) = first_failure("skip-truncate");
    let runner = RaftRunner {
        workload: KvWorkload,
    };
    assert!(runner.run(seed, &RunOpts::default()).is_ok());
}

#[test]
fn planted_bugs_are_caught_with_four_groups_per_node() {
    // Every node of the run hosts four groups with the bug planted; the checks of each group
    // find it, and the failure names the group and replays with `--groups 4`.
    for mutant in [
        "vote-not-persisted",
        "skip-truncate",
        "read-without-quorum",
        "kv-dedup-ignored",
        "kv-txn-half",
        "read-unchecked",
    ] {
        let (seed, why, replay) = first_failure_in(mutant, 4, 0..200);
        println!("{mutant} with 4 groups: seed {seed} failed: {why}\n  replay: {replay}");
        assert!(replay.contains("--groups 4"), "{replay}");
        assert!(why.contains("group "), "{why}");
        // The same seed and groups without the bug pass: the bug made the failure.
        let opts = RunOpts {
            groups: 4,
            ..RunOpts::default()
        };
        let runner = RaftRunner {
            workload: KvWorkload,
        };
        assert!(
            runner.run(seed, &opts).is_ok(),
            "seed {seed} fails without {mutant}"
        );
    }
}
