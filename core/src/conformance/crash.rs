//! Crash checks: power cuts at every point of a write sequence, and bit rot (rules 1, 2, 4,
//! 5, 6 and 8 of the contract).

use super::data::*;
use super::*;
use crate::rng::Rng;
use crate::storage::{LogView, Storage, StorageError};
use crate::types::{HardState, LogIndex, Term};

// ---------------------------------------------------------------------------------------------
// Crash checks.

/// Rules 2 and 4: synced entries survive a power cut; of the unsynced ones, only a prefix.
pub fn crash_keeps_synced_entries_and_a_prefix<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_keeps_synced_entries_and_a_prefix";
    let mut s = fresh_log(h, 40, what);
    append_range(&mut s, 41, 70, 1, Shape::Small, what);
    let mut s = h.crash(s, seed);
    let last = check_crash_kept_a_prefix(&s, 1, (40, 70), Shape::Small, seed, what);
    // The recovered log continues cleanly and the next sync holds.
    append_synced(&mut s, last + 1, last + 5, 2, what);
    let s = h.crash(s, seed.wrapping_add(1));
    assert_eq!(
        s.last_index(),
        last + 5,
        "{} seed {}: synced entries lost by a second crash",
        what,
        seed
    );
    check_log(&s, 1, last + 5, two_terms(last, 1, 2), Shape::Small, what);
}

/// Rule 5: after `truncate_suffix(i)` and new entries, a crash never shows the old entry `i`
/// together with newer entries after it.
pub fn crash_orders_truncation_before_replacement<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_orders_truncation_before_replacement";
    let mut s = fresh_log(h, 20, what);
    s.truncate_suffix(11)
        .expect("crash_orders_truncation_before_replacement: truncate");
    // Replace with more entries than were cut, so a lost truncation would be visible.
    append_range(&mut s, 11, 26, 2, Shape::Small, what);
    let s = h.crash(s, seed);
    let last = s.last_index();
    match s.term(11) {
        Ok(1) => {
            assert_eq!(
                last, 20,
                "{} seed {}: old entry 11 survived next to a changed log",
                what, seed
            );
            check_log(&s, 1, 20, |_| 1, Shape::Small, what);
        }
        Ok(2) => check_log(&s, 1, last, two_terms(10, 1, 2), Shape::Small, what),
        Err(StorageError::Unavailable(11)) => {
            assert_eq!(last, 10, "{} seed {}: last_index", what, seed);
            check_log(&s, 1, 10, |_| 1, Shape::Small, what);
        }
        other => panic!(
            "{} seed {}: term(11) after crash is {:?}",
            what, seed, other
        ),
    }
    // Once synced, the replacement is all that can come back.
    let mut s = s;
    s.truncate_suffix(11)
        .expect("crash_orders_truncation_before_replacement: second truncate");
    append_synced(&mut s, 11, 15, 3, what);
    let s = h.crash(s, seed.wrapping_add(7));
    assert_eq!(
        s.last_index(),
        15,
        "{} seed {}: last_index after a synced truncation",
        what,
        seed
    );
    check_log(&s, 1, 15, two_terms(10, 1, 3), Shape::Small, what);
}

/// Rule 1: the hard state after a crash is the synced one or a later save, never older.
pub fn crash_never_rolls_hard_state_back<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_never_rolls_hard_state_back";
    let mut s = h.fresh();
    let synced = hard_state(5, 3, 0);
    s.save_hard_state(&synced)
        .expect("crash_never_rolls_hard_state_back: save");
    sync(&mut s, what);
    let unsynced = hard_state(6, 1, 0);
    s.save_hard_state(&unsynced)
        .expect("crash_never_rolls_hard_state_back: save");
    let mut s = h.crash(s, seed);
    let got = s.hard_state();
    assert!(
        got == synced || got == unsynced,
        "{} seed {}: hard state {:?} after crash",
        what,
        seed,
        got
    );
    let newest = hard_state(7, 2, 4);
    s.save_hard_state(&newest)
        .expect("crash_never_rolls_hard_state_back: save");
    sync(&mut s, what);
    let s = h.crash(s, seed.wrapping_add(3));
    assert_eq!(
        s.hard_state(),
        newest,
        "{} seed {}: a synced hard state rolled back",
        what,
        seed
    );
}

/// Rule 10: a commit hint saved without a sync of its own comes back after a crash whole or
/// not at all, with the synced term and vote either way; a sync after it makes it durable, and
/// a hard-state save after it still follows rule 1.
pub fn crash_keeps_a_commit_hint_whole_or_not_at_all<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_keeps_a_commit_hint_whole_or_not_at_all";
    let mut s = fresh_log(h, 10, what);
    let synced = hard_state(3, 2, 4);
    s.save_hard_state(&synced).expect("save");
    sync(&mut s, what);
    let hint = hard_state(3, 2, 9);
    s.save_commit_hint(&hint).expect("save a hint");
    assert_eq!(s.hard_state(), hint, "{what}: a hint is visible at once");
    // Written along with the log's next entries, which are never synced here.
    append_range(&mut s, 11, 12, 1, Shape::Small, what);
    let mut s = h.crash(s, seed);
    let got = s.hard_state();
    assert!(
        got == synced || got == hint,
        "{what} seed {seed}: hard state {got:?} after a crash (synced {synced:?}, hint {hint:?})"
    );
    s.save_commit_hint(&hint).expect("save a hint");
    sync(&mut s, what);
    let mut s = h.crash(s, seed.wrapping_add(5));
    assert_eq!(
        s.hard_state(),
        hint,
        "{what} seed {seed}: a synced hint was lost"
    );
    // A new term after a hint: the term's save is synced, whatever the hint did.
    s.save_commit_hint(&hard_state(3, 2, 10))
        .expect("save a hint");
    let newest = hard_state(4, 1, 10);
    s.save_hard_state(&newest).expect("save");
    sync(&mut s, what);
    let s = h.crash(s, seed.wrapping_add(6));
    assert_eq!(
        s.hard_state(),
        newest,
        "{what} seed {seed}: a synced term rolled back"
    );
}

/// Rule 6 under a power cut: a partly written snapshot is lost, the previous one stays whole.
pub fn crash_discards_a_partial_snapshot<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_discards_a_partial_snapshot";
    let mut s = fresh_log(h, 20, what);
    let old = install_snapshot(&mut s, (8, 1), 1000, 71, what);
    write_snapshot(&mut s, (18, 1), 3000, 72, 2999, what);
    let mut s = h.crash(s, seed);
    check_snapshot(&s, &old, 71, what);
    check_log(&s, 9, 20, |_| 1, Shape::Small, what);
    check_no_snapshot_in_progress(
        &mut s,
        2999,
        format_args!("of a partial snapshot the crash (seed {}) lost", seed),
        what,
    );
}

/// Rule 6: once `snapshot_finish` returns, the new snapshot and the log it implies survive a
/// crash with no further sync: a log it emptied stays empty.
pub fn crash_after_snapshot_finish_keeps_it<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_after_snapshot_finish_keeps_it";
    // A snapshot that empties a conflicting log.
    let mut s = fresh_log(h, 20, what);
    let meta = install_snapshot(&mut s, (12, 2), 1234, 81, what);
    let s = h.crash(s, seed);
    check_snapshot(&s, &meta, 81, what);
    check_empty_after(&s, 12, what);
    // A snapshot that keeps the log; unsynced entries after it follow the prefix rule.
    let mut s = fresh_log(h, 20, what);
    append_range(&mut s, 21, 25, 1, Shape::Small, what);
    install_snapshot(&mut s, (10, 1), 100, 82, what);
    let new = install_snapshot(&mut s, (15, 1), 2000, 83, what);
    let s = h.crash(s, seed.wrapping_add(11));
    check_snapshot(&s, &new, 83, what);
    check_crash_kept_a_prefix(&s, 16, (20, 25), Shape::Small, seed, what);
}

/// Large entries and a power cut: a torn 4 KiB record is dropped whole, never returned in part.
pub fn crash_with_large_entries<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_with_large_entries";
    let shape = Shape::Large(h.limits().large_entry_bytes);
    let mut s = h.fresh();
    append_range(&mut s, 1, 6, 1, shape, what);
    sync(&mut s, what);
    append_range(&mut s, 7, 12, 1, shape, what);
    let s = h.crash(s, seed);
    check_crash_kept_a_prefix(&s, 1, (6, 12), shape, seed, what);
}

/// Rule 8: a damaged record before the end of the log fails recovery with `Corrupt`, naming
/// the damaged record, instead of being dropped like a torn tail (which would lose synced
/// entries silently). Skipped when the harness cannot inject damage.
pub fn corruption_is_reported<H: Harness>(h: &mut H, seed: u64) {
    let what = "corruption_is_reported";
    let s = fresh_log(h, 30, what);
    let Some((location, recovered)) = h.rot_and_reopen(s, seed) else {
        return;
    };
    match recovered {
        Err(StorageError::Corrupt { location: reported }) => assert_eq!(
            reported, location,
            "{} seed {}: Corrupt names the wrong location",
            what, seed
        ),
        Err(e) => panic!("{} seed {}: recovery of a damaged log failed with {:?}, not Corrupt", what, seed, e),
        Ok(s) => panic!(
            "{} seed {}: recovery accepted a damaged log (last_index {}) instead of reporting Corrupt",
            what,
            seed,
            s.last_index()
        ),
    }
}

/// One log write the crash model replays.
#[derive(Clone, Copy, Debug)]
enum Op {
    Append { index: LogIndex, term: Term },
    Truncate { from: LogIndex },
}

/// The log the suite expects: one term per index, `1..=last`.
#[derive(Clone, Copy)]
struct Model {
    terms: [Term; MODEL_CAP + 1],
    last: LogIndex,
}

impl Model {
    fn new() -> Self {
        Model {
            terms: [0; MODEL_CAP + 1],
            last: 0,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append { index, term } => {
                debug_assert_eq!(index, self.last + 1);
                self.terms[index as usize] = term;
                self.last = index;
            }
            Op::Truncate { from } => self.last = core::cmp::min(self.last, from - 1),
        }
    }

    fn term(&self, index: LogIndex) -> Term {
        self.terms[index as usize]
    }

    /// Whether `s` shows this log (by index and term; payloads are checked separately).
    fn matches<S: Storage>(&self, s: &S) -> bool {
        s.last_index() == self.last && (1..=self.last).all(|i| s.term(i) == Ok(self.term(i)))
    }
}

/// A random mix of appends, truncations, hard-state saves and syncs, cut by power failures and
/// restarts. After each one the log must be the durable log plus a prefix of the later writes,
/// and the hard state the synced one or a later save.
pub fn crash_workload<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_workload";
    let mut rng = Rng::new(seed ^ 0x5348_4F41_4C5F_5354);
    let mut s = h.fresh();
    let mut durable = Model::new();
    let mut hs_durable = HardState::default();
    let mut term: Term = 1;
    for round in 0..6 {
        let mut live = durable;
        let mut ops: heapless::Vec<Op, MAX_OPS> = heapless::Vec::new();
        let mut hs_saved: heapless::Vec<HardState, MAX_OPS> = heapless::Vec::new();
        let steps = rng.range(1, 24);
        for _ in 0..steps {
            let step = rng.range(0, 10);
            if step <= 5 && ops.len() + 8 <= MAX_OPS && (live.last as usize) + 8 <= MODEL_CAP {
                for _ in 0..rng.range(1, 9) {
                    let op = Op::Append {
                        index: live.last + 1,
                        term,
                    };
                    if let Err(e) = append_entry(&mut s, live.last + 1, term, Shape::Small) {
                        panic!(
                            "{} seed {} round {}: append of {} failed: {:?}",
                            what,
                            seed,
                            round,
                            live.last + 1,
                            e
                        );
                    }
                    live.apply(op);
                    ops.push(op).expect("room was checked before the batch");
                }
            } else if step <= 6 && live.last > 0 && !ops.is_full() {
                let from = rng.range(1, live.last + 1);
                if let Err(e) = s.truncate_suffix(from) {
                    panic!(
                        "{} seed {} round {}: truncate_suffix({}) failed: {:?}",
                        what, seed, round, from, e
                    );
                }
                // A follower truncates only to take entries of a newer leader.
                term += 1;
                let op = Op::Truncate { from };
                live.apply(op);
                ops.push(op).expect("room was checked");
            } else if step == 7 && !hs_saved.is_full() {
                let hs = HardState {
                    term,
                    vote: rng.range(0, 4),
                    commit: rng.range(0, live.last + 1),
                };
                if let Err(e) = s.save_hard_state(&hs) {
                    panic!(
                        "{} seed {} round {}: save_hard_state failed: {:?}",
                        what, seed, round, e
                    );
                }
                hs_saved.push(hs).expect("room was checked");
            } else if step == 8 || ops.len() + 8 > MAX_OPS {
                sync(&mut s, what);
                durable = live;
                ops.clear();
                if let Some(hs) = hs_saved.last() {
                    hs_durable = *hs;
                }
                hs_saved.clear();
            }
            // Rule 3: every write is visible at once.
            assert!(
                live.matches(&s),
                "{} seed {} round {}: a write is not visible at once",
                what,
                seed,
                round
            );
        }
        let hs_before = s.hard_state();
        assert_eq!(
            hs_before,
            *hs_saved.last().unwrap_or(&hs_durable),
            "{} seed {}: hard_state() is not the last save",
            what,
            seed
        );
        s = if rng.range(0, 4) == 0 {
            h.reopen(s)
        } else {
            h.crash(s, rng.next_u64())
        };
        let candidate = prefix_after_crash(&s, durable, &ops, (what, seed, round));
        let hs = s.hard_state();
        assert!(
            hs == hs_durable || hs_saved.contains(&hs),
            "{} seed {} round {}: hard state {:?} is neither the synced {:?} nor a later save",
            what,
            seed,
            round,
            hs,
            hs_durable
        );
        durable = candidate;
        hs_durable = hs;
        term += 1;
    }
}

/// The log after a crash: the durable one plus some prefix of `ops`, which it returns (and
/// every payload in it checked).
fn prefix_after_crash<S: Storage>(
    s: &S,
    durable: Model,
    ops: &[Op],
    (what, seed, round): (&str, u64, u64),
) -> Model {
    let mut candidate = durable;
    let mut found = candidate.matches(s);
    for op in ops.iter() {
        if found {
            break;
        }
        candidate.apply(*op);
        found = candidate.matches(s);
    }
    if !found {
        panic!(
            "{} seed {} round {}: after the crash the log (last_index {}) is not the durable log \
             (last_index {}) plus a prefix of the {} writes since the last sync",
            what,
            seed,
            round,
            s.last_index(),
            durable.last,
            ops.len()
        );
    }
    if candidate.last > 0 {
        check_log(
            s,
            1,
            candidate.last,
            |i| candidate.term(i),
            Shape::Small,
            what,
        );
    }
    candidate
}
