//! The sync journal with a storage: what one journal sync covered survives a power cut that
//! takes every unsynced segment byte, through the replay at the next start; a cut puts a
//! barrier there so the replay does not bring back what it removed; bytes a round held in
//! the journal rather than writing them to their segment survive a kill of the process, and a
//! power cut after the journal switched halves, whether its retire wrote them back or not.

use std::sync::Arc;

use shoal_core::storage::{Decorated, StorageHooks};

use super::*;
use crate::storage::fs_sync::FsSync;
use crate::storage::journal::{self, Journal};

/// A power cut that keeps only what was fdatasynced: every unsynced segment byte reads back
/// as zeros (the harshest case of [`apply_power_cut`]).
fn lose_unsynced(image: CrashImage) {
    for (path, durable, written) in &image.segments {
        if written > durable {
            let zeros = vec![0u8; (written - durable) as usize];
            let f = OpenOptions::new().write(true).open(path).expect("open");
            f.write_all_at(&zeros, *durable)
                .expect("zero the lost bytes");
        }
    }
}

/// The data dir's journal, after the replay a start runs, and group 0's storage using it.
fn journaled(dir: &Path, opts: &StorageOptions) -> (Arc<Journal>, FileStorage) {
    std::fs::create_dir_all(dir).expect("make the data dir");
    let replayed = journal::replay(dir).expect("replay");
    let fs = Arc::new(FsSync::open(dir).expect("open the data dir for syncs"));
    let journal = Arc::new(Journal::new(dir, fs, replayed.epoch));
    let mut s = open(dir, opts).expect("open");
    s.attach_journal(journal.clone());
    (journal, s)
}

/// The next start of the data dir `dir`: the journal's replay first when `replay` (what it
/// wrote back), then group 0's storage opened again.
fn restart(
    dir: &Path,
    opts: &StorageOptions,
    replay: bool,
) -> (Option<journal::Replayed>, FileStorage) {
    let done = replay.then(|| journal::replay(dir).expect("replay"));
    (done, open(dir, opts).expect("reopen"))
}

/// What a round of several groups does for `s`: its new bytes into the journal, then one sync
/// of the journal in place of the group's own fdatasync.
fn journal_round(s: &mut FileStorage, journal: &Journal) {
    let sync = s
        .begin_background_sync(true)
        .expect("begin the sync")
        .expect("bytes wait for a sync");
    assert!(sync.journaled(), "the round's bytes went into the journal");
    journal.sync().expect("sync the journal");
}

/// Entries 1 to 10 (40 bytes each) synced by the storage itself, then 11 to `hi` made durable
/// by a journal round.
fn ten_synced_then_journaled(s: &mut FileStorage, journal: &Journal, hi: LogIndex) {
    append_n(s, 1, 10, 1, 40);
    s.sync().expect("sync");
    append_n(s, 11, hi, 1, 40);
    journal_round(s, journal);
}

/// The length of the log's last segment file (its capacity: segments are reserved or spares).
fn last_segment_bytes(s: &FileStorage) -> u64 {
    let last = segments(s).pop().expect("a log has a segment");
    std::fs::metadata(&last.path).expect("stat").len()
}

#[test]
fn a_group_synced_through_the_journal_gets_no_zero_filled_spare_while_its_segments_grow() {
    let opts = StorageOptions {
        prefill_segments: true,
        initial_segment_bytes: 8 << 10,
        segment_bytes: 64 << 10,
        ..test_options(FsyncMode::Always)
    };
    // Rounds of several groups, one entry of 1,000 bytes each: every growing segment passes
    // half full (where a group alone prepares its next) and rolls over with no spare made;
    // the first spare is the one a full-size segment gets.
    let root = TempDir::new().expect("temp dir");
    let (journal, mut s) = journaled(root.path(), &opts);
    let mut first_spare = None;
    for i in 1..=120 {
        append_n(&mut s, i, i, 1, 1000);
        if s.log.has_spare() {
            first_spare.get_or_insert((i, last_segment_bytes(&s)));
        }
        journal_round(&mut s, &journal);
    }
    let (at, segment) = first_spare.expect("a full-size segment gets its spare");
    assert!(
        segment * 2 >= opts.segment_bytes,
        "entry {at}: a spare for a growing {segment}-byte segment"
    );
    assert!(
        segments(&s).len() >= 4,
        "the log grew through several segments"
    );
    drop(s);
    assert_eq!(open(root.path(), &opts).expect("reopen").last_index(), 120);

    // Syncs alone now and then (a round in which it was the only busy group) do not make a
    // journaled group's segments prefilled again; a group that goes on syncing alone gets its
    // spares back.
    let opts = StorageOptions {
        segment_bytes: 1 << 20,
        ..opts
    };
    let root = TempDir::new().expect("temp dir");
    let (journal, mut s) = journaled(root.path(), &opts);
    append_n(&mut s, 1, 1, 1, 1000);
    journal_round(&mut s, &journal);
    let lone = |s: &mut FileStorage| {
        let sync = s
            .begin_background_sync(false)
            .expect("begin the sync")
            .expect("bytes wait for a sync");
        assert!(!sync.journaled());
        s.sync().expect("sync");
    };
    // (Half of `JOURNALED_SYNCS`.)
    for i in 2..=33 {
        append_n(&mut s, i, i, 1, 1000);
        assert!(
            !s.log.has_spare(),
            "entry {i}: a spare after a journaled round"
        );
        lone(&mut s);
    }
    assert!(
        segments(&s).len() >= 3,
        "segments filled past half meanwhile"
    );
    let mut spare_at = None;
    for i in 34..=160 {
        append_n(&mut s, i, i, 1, 1000);
        if s.log.has_spare() {
            spare_at.get_or_insert(i);
        }
        lone(&mut s);
    }
    assert!(
        spare_at.is_some(),
        "a group that syncs alone gets its spare back"
    );
}

#[test]
fn what_a_journal_sync_covered_survives_a_power_cut_through_the_replay() {
    for replay in [true, false] {
        let (root, opts) = fresh();
        let (journal, mut s) = journaled(root.path(), &opts);
        // More than the 4 KiB write buffer: part of the piece is read back from the file.
        ten_synced_then_journaled(&mut s, &journal, 150);
        append_n(&mut s, 151, 160, 1, 40);
        journal_round(&mut s, &journal);
        lose_unsynced(s.power_cut());
        drop(journal);
        let (done, s) = restart(root.path(), &opts, replay);
        if let Some(done) = done {
            assert_eq!((done.pieces, done.skipped, done.segments), (2, 0, 1));
        }
        // Without the replay the power cut took every entry the journal held (the model
        // loses them, so the replay is what brings them back).
        let last = if replay { 160 } else { 10 };
        assert_eq!(s.last_index(), last, "replayed: {replay}");
        for index in 1..=last {
            assert_eq!(s.term(index), Ok(1), "entry {index}");
        }
    }
}

#[test]
fn a_replayed_journal_is_not_written_back_again() {
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    append_n(&mut s, 1, 20, 1, 40);
    journal_round(&mut s, &journal);
    drop(s);
    drop(journal);
    assert_eq!(journal::replay(root.path()).expect("replay").pieces, 1);
    let again = journal::replay(root.path()).expect("replay again");
    assert_eq!(
        again.pieces, 0,
        "the first replay moved the journal to a new epoch"
    );
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.last_index(), 20);
}

#[test]
fn a_cut_after_journaled_entries_is_not_undone_by_the_replay() {
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    ten_synced_then_journaled(&mut s, &journal, 20);
    // A new leader's entries replace 15..: the old ones are cut, new ones of term 2 follow,
    // of the same size (so the old pieces, written back, would fit around them exactly).
    s.truncate_suffix(15).expect("cut");
    append_n(&mut s, 15, 18, 2, 40);
    journal_round(&mut s, &journal);
    lose_unsynced(s.power_cut());
    drop(journal);
    let (_, s) = restart(root.path(), &opts, true);
    assert_eq!(s.last_index(), 18, "the cut entries 19 and 20 came back");
    assert_eq!((s.term(14), s.term(15), s.term(18)), (Ok(1), Ok(2), Ok(2)));
}

#[test]
fn a_follower_round_syncs_through_the_journal_unless_a_hard_state_save_waits() {
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    append_n(&mut s, 1, 10, 1, 40);
    // A new term waits for its save: the journal cannot stand in for that sync.
    s.save_hard_state(&HardState {
        term: 2,
        vote: 1,
        commit: 0,
    })
    .expect("save");
    assert_eq!(s.write_for_shared_sync(true), Ok((true, false)));
    s.sync().expect("sync by itself");
    // Only entries: the journal's sync covers them.
    append_n(&mut s, 11, 20, 2, 40);
    assert_eq!(s.write_for_shared_sync(true), Ok((true, true)));
    journal.sync().expect("sync the journal");
    s.shared_synced(true);
    lose_unsynced(s.power_cut());
    drop(journal);
    let (done, s) = restart(root.path(), &opts, true);
    assert_eq!(done.map(|d| d.pieces), Some(1));
    assert_eq!((s.last_index(), s.term(20)), (20, Ok(2)));
    assert_eq!(s.hard_state().term, 2);
}

#[test]
fn a_commit_hint_keeps_a_round_in_the_journal_and_is_written_with_no_sync_of_its_own() {
    let hs = |commit| HardState {
        term: 1,
        vote: 1,
        commit,
    };
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    append_n(&mut s, 1, 10, 1, 40);
    s.save_hard_state(&hs(0)).expect("save");
    s.sync().expect("sync");
    // A follower's round with a hint of what it committed: the journal's sync covers it.
    append_n(&mut s, 11, 20, 1, 40);
    s.save_commit_hint(&hs(10)).expect("hint");
    assert_eq!(s.write_for_shared_sync(true), Ok((true, true)));
    assert!(!s.hs.unsynced(), "no sync waits for the hint");
    assert!(
        s.hs.hinted() && !s.hs.is_open(),
        "written, and the file closed"
    );
    journal.sync().expect("sync the journal");
    s.shared_synced(true);
    // A leader's round: the background sync's write takes the hint along.
    s.save_commit_hint(&hs(20)).expect("hint");
    append_n(&mut s, 21, 22, 1, 40);
    journal_round(&mut s, &journal);
    assert!(s.hs.hinted() && !s.hs.is_open());
    // A kill of the process (the page cache stays): the hint was in the file.
    s.power_cut();
    drop(journal);
    let (_, mut s) = restart(root.path(), &opts, true);
    assert_eq!((s.last_index(), s.hard_state()), (22, hs(20)));
    // A later sync of its own covers a hint written before it.
    s.save_commit_hint(&hs(22)).expect("hint");
    s.sync().expect("sync");
    assert!(!s.hs.hinted());
    lose_unsynced(s.power_cut());
    let (_, s) = restart(root.path(), &opts, false);
    assert_eq!(s.hard_state(), hs(22));
}

#[test]
fn a_snapshot_that_resets_the_log_is_not_undone_by_the_replay() {
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    // 1.5 KiB entries: the 16 KiB segments roll over after about ten.
    append_n(&mut s, 1, 14, 1, 1500);
    s.sync().expect("sync");
    let rolled = segments(&s).last().expect("a segment").first_index;
    assert!(rolled > 1, "the log rolled over");
    append_n(&mut s, 15, rolled + 8, 1, 1500);
    journal_round(&mut s, &journal);
    // A snapshot whose last entry has another term: the log restarts after it, in a new
    // segment of the same name as the one the pieces above went to.
    let data = vec![3u8; 64];
    install(&mut s, &snapshot_meta(rolled - 1, 5, &data), &data);
    assert_eq!(segments(&s).last().expect("a segment").first_index, rolled);
    append_n(&mut s, rolled, rolled + 1, 5, 1500);
    journal_round(&mut s, &journal);
    lose_unsynced(s.power_cut());
    drop(journal);
    let (_, s) = restart(root.path(), &opts, true);
    assert_eq!(
        s.last_index(),
        rolled + 1,
        "entries of the old log came back"
    );
    assert_eq!(s.term(rolled + 1), Ok(5));
}

/// Syncs as a round of several busy groups does in shoald: the log's new bytes into the
/// journal and one sync of it, or a sync of the storage itself when a hard-state save waits.
struct ThroughJournal(Arc<Journal>);

impl StorageHooks<FileStorage> for ThroughJournal {
    fn sync(&mut self, inner: &mut FileStorage) -> Result<(), StorageError> {
        match inner.write_for_shared_sync(true)? {
            (true, true) => {
                self.0.sync().map_err(|_| StorageError::Io)?;
                inner.shared_synced(true);
                Ok(())
            }
            (true, false) => inner.sync(),
            (false, _) => Ok(()),
        }
    }
}

type JournaledStorage = Decorated<FileStorage, ThroughJournal>;

/// The conformance suite over storages whose syncs go through the journal, and whose power
/// cuts are followed by the replay a start runs.
struct JournalHarness {
    root: TempDir,
    dirs: u64,
    opts: StorageOptions,
}

impl JournalHarness {
    fn open(&self, dir: &Path) -> JournaledStorage {
        let (journal, s) = journaled(dir, &self.opts);
        Decorated::new(s, ThroughJournal(journal))
    }
}

impl Harness for JournalHarness {
    type S = JournaledStorage;

    fn fresh(&mut self) -> JournaledStorage {
        self.dirs += 1;
        let dir = self.root.path().join(format!("node-{}", self.dirs));
        self.open(&dir)
    }

    fn reopen(&mut self, s: JournaledStorage) -> JournaledStorage {
        let dir = FileHarness::data_dir_of(&s.inner);
        drop(s);
        self.open(&dir)
    }

    fn crash(&mut self, s: JournaledStorage, seed: u64) -> JournaledStorage {
        let dir = FileHarness::data_dir_of(&s.inner);
        apply_power_cut(&s.inner.power_cut(), seed);
        self.open(&dir)
    }

    fn limits(&self) -> Limits {
        Limits {
            crash_seeds: 8,
            ..Limits::DEFAULT
        }
    }
}

#[test]
fn conformance_with_syncs_through_the_journal_and_crashes() {
    let mut h = JournalHarness {
        root: TempDir::new().expect("create a temp dir"),
        dirs: 0,
        opts: test_options(FsyncMode::Always),
    };
    run_without_crashes(&mut h);
    conformance::run_crash_checks(&mut h, 0..8);
}

#[test]
fn a_round_holds_its_bytes_in_the_journal_and_a_kill_loses_none_of_them() {
    for replay in [true, false] {
        let (root, opts) = fresh();
        let (journal, mut s) = journaled(root.path(), &opts);
        // The first round makes the journal file: its bytes are written to the segment.
        ten_synced_then_journaled(&mut s, &journal, 20);
        assert_eq!(s.held_bytes(), 0, "no journal file yet: written out");
        // Later rounds hold theirs: in the write buffer and the journal only.
        append_n(&mut s, 21, 40, 1, 40);
        journal_round(&mut s, &journal);
        let held = s.held_bytes();
        assert!(held > 0, "the round held its bytes");
        assert_eq!(journal.held_bytes() as u64, held);
        // They read back while held.
        assert_eq!((s.last_index(), s.term(40)), (40, Ok(1)));
        s.kill();
        drop(journal);
        let (done, s) = restart(root.path(), &opts, replay);
        assert_eq!(done.map(|d| d.pieces), replay.then_some(2));
        // The kill took the held bytes from memory; the journal brings them back.
        let last = if replay { 40 } else { 20 };
        assert_eq!(s.last_index(), last, "replayed: {replay}");
    }
}

/// The reproduction of a corrupted segment after kill -9 in the multi-group network fault
/// test: a follower's round held its new entries in the journal (in its write buffer, not in
/// its segment), then a new leader's entries replaced some of them. The cut took only
/// buffered bytes, so it skipped the journal's barrier, and the stale held pieces were written
/// back over the new entries by the replay at the next start (or by a wrap, from the held
/// runs in memory, which the barrier's write-out now clears); the new
/// entries' bytes were not journaled either (the journaled mark stayed past them).
#[test]
fn a_cut_of_held_bytes_is_not_undone_by_the_replay() {
    for replay in [true, false] {
        let (root, opts) = fresh();
        let (journal, mut s) = journaled(root.path(), &opts);
        ten_synced_then_journaled(&mut s, &journal, 20);
        append_n(&mut s, 21, 40, 1, 40);
        journal_round(&mut s, &journal);
        assert!(s.held_bytes() > 0, "the round held its bytes");
        // Entries 31.. replaced by a new leader's, of another size (so stale pieces written
        // back would break the records apart).
        s.truncate_suffix(31).expect("cut");
        append_n(&mut s, 31, 36, 2, 57);
        journal_round(&mut s, &journal);
        assert_eq!((s.last_index(), s.term(31), s.term(36)), (36, Ok(2), Ok(2)));
        s.kill();
        drop(journal);
        let (_, s) = restart(root.path(), &opts, replay);
        if replay {
            assert_eq!(s.last_index(), 36);
            assert_eq!((s.term(30), s.term(31), s.term(36)), (Ok(1), Ok(2), Ok(2)));
        } else {
            // The new entries were held, and the kill took them from memory; nothing of
            // the cut ones is back.
            assert_eq!((s.last_index(), s.term(30)), (30, Ok(1)));
        }
    }
}

#[test]
fn held_bytes_are_written_when_the_group_falls_idle_or_past_the_bound() {
    let (root, opts) = fresh();
    let (journal, mut s) = journaled(root.path(), &opts);
    ten_synced_then_journaled(&mut s, &journal, 20);
    append_n(&mut s, 21, 30, 1, 40);
    journal_round(&mut s, &journal);
    assert!(s.held_bytes() > 0);
    s.release_idle_memory();
    assert_eq!(
        (s.held_bytes(), journal.held_bytes()),
        (0, 0),
        "idle: written"
    );
    // More than the bound in one round: written out, not held.
    let entries = crate::storage::seglog::HOLD_BYTES / 40 + 10;
    append_n(&mut s, 31, 30 + entries, 1, 40);
    journal_round(&mut s, &journal);
    assert_eq!(s.held_bytes(), 0, "past the bound: written");
    s.kill();
    drop(journal);
    let s = open(root.path(), &opts).expect("reopen without a replay");
    assert_eq!(s.last_index(), 30 + entries, "everything was written");
}

#[test]
fn held_bytes_survive_a_power_cut_after_the_journal_switched_halves_whether_retired_or_not() {
    for retired in [true, false] {
        let (root, opts) = fresh();
        std::fs::create_dir_all(root.path()).expect("data dir");
        let fs = Arc::new(FsSync::open(root.path()).expect("open the data dir for syncs"));
        // Small enough to switch quickly, large enough for the rounds below.
        let journal = Arc::new(Journal::with_capacity(root.path(), fs, 1, 64 << 10));
        let mut s = open(root.path(), &opts).expect("open");
        s.attach_journal(journal.clone());
        ten_synced_then_journaled(&mut s, &journal, 20);
        append_n(&mut s, 21, 40, 1, 40);
        journal_round(&mut s, &journal);
        assert!(s.held_bytes() > 0, "the round held its bytes");
        let retire = journal.gate_next_retire();
        // Other groups' rounds fill the half until the journal switches to the other.
        let filler = vec![7u8; 4000];
        let mut switched = false;
        for k in 0..32 {
            assert!(journal.add(99, 1, 4096 * k, &filler));
            if journal.sync().expect("sync") == journal::JournalSync::Wrapped {
                switched = true;
                break;
            }
        }
        assert!(switched, "the journal switched halves");
        assert_eq!(journal.held_bytes(), 0, "the retire took the held pieces");
        // The retire writes them back and syncs, or the process dies before it can.
        retire.send(retired).expect("the retire");
        if retired {
            journal.wait_retired().expect("the retire");
        }
        // A power cut: every segment byte the storage did not sync itself is lost (the
        // retire's filesystem sync too: the model is harsher than a disk). The half left
        // is still valid (not reused), and its replay brings the held entries back.
        lose_unsynced(s.power_cut());
        drop(journal);
        let (done, s) = restart(root.path(), &opts, true);
        assert!(done.is_some_and(|d| d.pieces > 0), "retired: {retired}");
        assert_eq!(s.last_index(), 40, "retired: {retired}");
        for index in 1..=40 {
            assert_eq!(s.term(index), Ok(1), "entry {index}, retired: {retired}");
        }
    }
}
