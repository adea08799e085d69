//! Proof that the simulator's checks can fail: each planted bug (cargo feature `mutants`) must
//! make some seed of the CI range fail, and the failure must print the command that replays it.
#![cfg(feature = "mutants")]

use shoal_tests::cluster::RaftRunner;
use shoal_tests::kv_workload::KvWorkload;
use shoal_tests::sim::cli::{replay_command, RunOpts, SeedRunner, MUTANTS};
use std::sync::Mutex;

/// Mutants are selected process-wide, so these tests take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn first_failure(mutant: &str) -> (u64, String, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let runner = RaftRunner {
        workload: KvWorkload,
    };
    let opts = RunOpts {
        mutant: Some(mutant.to_string()),
        ..RunOpts::default()
    };
    for seed in 0..1000 {
        if let Err(e) = runner.run(seed, &opts) {
            return (seed, e.to_string(), replay_command(seed, &opts));
        }
    }
    panic!("planted bug `{mutant}` survived seeds 0..1000: the simulator's checks missed it");
}

fn assert_caught(mutant: &str) {
    let (seed, why, replay) = first_failure(mutant);
    println!("{mutant}: seed {seed} failed: {why}\n  replay: {replay}");
    assert!(
        replay.contains("--features mutants") && replay.contains(&format!("--mutant {mutant}")),
        "{replay}"
    );
    assert!(replay.contains(&format!("--seed {seed}")), "{replay}");
}

#[test]
fn the_mutant_list_is_complete() {
    for m in shoal_core::mutants::CORE_MUTANTS {
        assert!(MUTANTS.contains(m), "{m} missing from --list-mutants");
    }
    assert!(MUTANTS.contains(&shoal_kv::KV_DEDUP_IGNORED));
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
