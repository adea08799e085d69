//! The storage's failure paths, with errors injected into its file operations
//! ([`super::fsutil::inject`]): what the file system refuses before anything changed (full,
//! out of descriptors) is refused with nothing changed and works when tried again, and the
//! node is never poisoned by it; a failed fdatasync is fatal. Also the space policy: no spare
//! under the reserve, no segment past the quota.

use std::path::Path;

use shoal_core::entry::EntryRef;
use shoal_core::storage::{LogView, Storage, StorageError};
use shoal_core::types::{EntryKind, HardState, LogIndex};
use tempfile::TempDir;

use super::fsutil::inject::{self, Op};
use super::space::{SpaceAlarm, SpaceLimits};
use super::*;

/// Small segments; no spare unless asked; space re-measured at every check.
fn options() -> StorageOptions {
    StorageOptions {
        fsync: FsyncMode::Always,
        segment_bytes: 16 << 10,
        write_buffer_bytes: 4 << 10,
        prefill_segments: false,
        space: SpaceLimits {
            reserve_bytes: 0,
            quota_bytes: 0,
            recheck: Duration::ZERO,
        },
        ..StorageOptions::default()
    }
}

fn entry(index: LogIndex, data: &[u8]) -> EntryRef<'_> {
    EntryRef {
        index,
        term: 1,
        kind: EntryKind::Normal,
        data,
    }
}

/// Append 1 KiB entries from `lo` until the segment being written has no room for one more;
/// the index of the entry that will need a new segment.
fn up_to_roll_over(s: &mut FileStorage, lo: LogIndex) -> LogIndex {
    let data = [7u8; 1024];
    let segs = s.segment_count();
    let mut i = lo;
    // An entry's record is 1024 bytes of data plus its header and the record's framing.
    let rec = entry(1, &data).encoded_len() as u64 + shoal_core::record::RECORD_OVERHEAD as u64;
    while s.active_segment_room() >= rec {
        s.append(&entry(i, &data)).expect("append");
        assert_eq!(s.segment_count(), segs, "no roll-over yet");
        i += 1;
    }
    i
}

/// A fresh storage in a temp dir of its own.
fn fresh() -> (TempDir, FileStorage) {
    let root = TempDir::new().unwrap();
    let s = FileStorage::open(root.path(), 0, &options()).unwrap();
    (root, s)
}

/// `s` closed and opened again on its dir, as a restart would.
fn reopen(s: FileStorage, root: &TempDir) -> FileStorage {
    drop(s);
    FileStorage::open(root.path(), 0, &options()).unwrap()
}

/// A fresh storage holding entries 1 to 5 of term 1, synced, and its temp dir.
fn five_synced() -> (TempDir, FileStorage) {
    let (root, mut s) = fresh();
    for i in 1..=5 {
        s.append(&entry(i, b"e")).unwrap();
    }
    s.sync().unwrap();
    (root, s)
}

/// The data of the entry a roll-over test appends last.
const ROLL_DATA: [u8; 1024] = [9u8; 1024];

/// Fill the segment being written from `lo`, then have the append that needs a new segment
/// meet `errno` in `op`: it is refused as `refusal` with nothing appended and no half-made
/// segment left. Returns the refused entry's index, to try again.
fn roll_over_refused(
    s: &mut FileStorage,
    lo: LogIndex,
    op: Op,
    errno: i32,
    refusal: StorageError,
) -> LogIndex {
    let next = up_to_roll_over(s, lo);
    let segs = s.segment_count();
    inject::fail(op, errno, 1);
    assert_eq!(s.append(&entry(next, &ROLL_DATA)), Err(refusal));
    assert_eq!(
        (s.last_index(), s.segment_count()),
        (next - 1, segs),
        "nothing appended"
    );
    assert!(
        tmp_files(s.group_dir()).is_empty(),
        "no half-made segment left"
    );
    next
}

/// Save `hs` and have the sync that writes it meet `errno` in `op`: refused as `refusal`,
/// and saved by the sync after it.
fn hard_state_refused_then_saved(
    s: &mut FileStorage,
    hs: &HardState,
    op: Op,
    errno: i32,
    refusal: StorageError,
) {
    s.save_hard_state(hs).unwrap();
    inject::fail(op, errno, 1);
    assert_eq!(s.sync(), Err(refusal));
    s.sync().expect("saved by the retry");
}

/// Entries 1 to 5 of term 1 (synced) and a snapshot of `data` at (`index`, `term`) begun.
fn snapshot_begun(index: LogIndex, term: u64, data: &[u8]) -> (TempDir, FileStorage, SnapshotMeta) {
    let (root, mut s) = five_synced();
    let meta = super::tests::snapshot_meta(index, term, data);
    s.snapshot_begin(&meta).unwrap();
    (root, s, meta)
}

/// Take the snapshot `meta` of `data` whole: begin, one write, finish.
fn take_snapshot(
    s: &mut FileStorage,
    meta: &SnapshotMeta,
    data: &[u8],
) -> Result<(), StorageError> {
    s.snapshot_begin(meta)?;
    s.snapshot_write(0, data)?;
    s.snapshot_finish()
}

fn tmp_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["log", "snap"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") {
                    out.push(name);
                }
            }
        }
    }
    out
}

#[test]
fn a_new_segment_the_file_system_refuses_is_refused_with_nothing_appended() {
    let (root, mut s) = fresh();
    let next = roll_over_refused(&mut s, 1, Op::Allocate, libc::ENOSPC, StorageError::Full);
    assert_eq!(s.space().alarm(), Some(SpaceAlarm::NoSpace));
    // Space is back: the same append goes through, and the alarm clears by itself.
    s.append(&entry(next, &ROLL_DATA)).expect("taken again");
    assert_eq!(s.space().alarm(), None);
    s.sync().expect("sync");
    let s = reopen(s, &root);
    assert_eq!(s.last_index(), next);
    inject::clear();
}

#[test]
fn no_descriptor_for_a_new_segment_is_a_refusal_not_a_fatal_error() {
    let (_root, mut s) = fresh();
    let next = roll_over_refused(
        &mut s,
        1,
        Op::Create,
        libc::EMFILE,
        StorageError::NoResources,
    );
    assert_eq!(s.space().alarm(), None, "no descriptor is not a full disk");
    s.append(&entry(next, &ROLL_DATA)).expect("the retry works");
    s.sync().expect("and the storage was not poisoned");
    inject::clear();
}

#[test]
fn a_write_the_file_system_refuses_stays_buffered_and_is_written_again() {
    let (root, mut s) = fresh();
    s.append(&entry(1, b"one")).unwrap();
    s.append(&entry(2, b"two")).unwrap();
    inject::fail(Op::Write, libc::ENOSPC, 1);
    assert_eq!(
        s.sync(),
        Err(StorageError::Full),
        "nothing was made durable"
    );
    let mut buf = [0u8; 256];
    assert_eq!(
        s.read_entries(1, 2, &mut buf).unwrap().count,
        2,
        "still readable"
    );
    s.sync().expect("the retry writes it");
    let s = reopen(s, &root);
    assert_eq!(s.last_index(), 2);
    inject::clear();
}

#[test]
fn a_full_write_buffer_refused_refuses_the_entry_that_needed_it_written() {
    let (_root, mut s) = fresh();
    let data = [3u8; 1024];
    // Four 1 KiB entries fill the 4 KiB buffer; the fifth must write it out first.
    for i in 1..=4 {
        s.append(&entry(i, &data)).unwrap();
    }
    inject::fail(Op::Write, libc::ENOSPC, 1);
    assert_eq!(s.append(&entry(5, &data)), Err(StorageError::Full));
    assert_eq!(s.last_index(), 4);
    s.append(&entry(5, &data)).unwrap();
    s.sync().unwrap();
    inject::clear();
}

#[test]
fn a_failed_fdatasync_is_fatal_and_poisons_the_storage() {
    let (_root, mut s) = fresh();
    s.append(&entry(1, b"one")).unwrap();
    inject::fail(Op::Sync, libc::ENOSPC, 1);
    // Even an fdatasync that says ENOSPC: what the device holds is unknown.
    assert_eq!(s.sync(), Err(StorageError::Io));
    assert_eq!(s.append(&entry(2, b"two")), Err(StorageError::Io));
    inject::clear();
}

#[test]
fn a_hard_state_save_refused_is_saved_by_the_next_sync() {
    let (root, mut s) = fresh();
    let hs = HardState {
        term: 3,
        vote: 2,
        commit: 0,
    };
    hard_state_refused_then_saved(&mut s, &hs, Op::Write, libc::ENOSPC, StorageError::Full);
    let s = reopen(s, &root);
    assert_eq!(s.hard_state(), hs);
    inject::clear();
}

#[test]
fn a_snapshot_refused_half_way_is_discarded_whole_and_the_next_one_works() {
    let data = b"the state";
    let (_root, mut s, meta) = snapshot_begun(5, 1, data);
    inject::fail(Op::Write, libc::ENOSPC, 1);
    assert_eq!(s.snapshot_write(0, data), Err(StorageError::Full));
    assert!(
        tmp_files(s.group_dir()).is_empty(),
        "its space is given back"
    );
    assert_eq!(
        s.snapshot_write(0, data),
        Err(StorageError::SnapshotState),
        "discarded: the next one starts with a begin"
    );
    assert_eq!(s.snapshot_meta(), None);
    take_snapshot(&mut s, &meta, data).unwrap();
    assert_eq!(s.snapshot_index(), 5);
    inject::clear();
}

#[test]
fn a_snapshot_that_replaces_the_log_refused_leaves_log_and_snapshots_as_they_were() {
    // A snapshot of another history (term 9 at index 8): the log will be replaced.
    let data = b"theirs";
    let (_root, mut s, meta) = snapshot_begun(8, 9, data);
    s.snapshot_write(0, data).unwrap();
    inject::fail(Op::Create, libc::EMFILE, 1);
    assert_eq!(s.snapshot_finish(), Err(StorageError::NoResources));
    assert_eq!((s.snapshot_index(), s.last_index()), (0, 5), "as it was");
    assert!(tmp_files(s.group_dir()).is_empty());
    take_snapshot(&mut s, &meta, data).expect("taken when a descriptor is free");
    assert_eq!((s.snapshot_index(), s.last_index()), (8, 8));
    inject::clear();
}

#[test]
fn a_truncation_refused_before_its_intent_changes_nothing() {
    let (_root, mut s) = fresh();
    for i in 1..=20 {
        s.append(&entry(i, b"e")).unwrap();
    }
    s.sync().unwrap();
    inject::fail(Op::Create, libc::EMFILE, 1);
    assert_eq!(s.truncate_suffix(10), Err(StorageError::NoResources));
    assert_eq!(s.last_index(), 20);
    s.truncate_suffix(10).expect("the retry cuts");
    assert_eq!(s.last_index(), 9);
    s.append(&entry(10, b"new")).unwrap();
    s.sync().unwrap();
    inject::clear();
}

#[test]
fn no_spare_segment_is_made_that_would_eat_into_the_reserve() {
    let root = TempDir::new().unwrap();
    let free = space::free_bytes(root.path()).unwrap();
    let mut opts = options();
    opts.prefill_segments = true;
    opts.space.reserve_bytes = free + (1 << 30);
    let mut s = FileStorage::open(root.path(), 0, &opts);
    // With the whole disk under the reserve even the first segment does not fit.
    assert!(
        s.is_err(),
        "a fresh group that cannot have a segment is refused"
    );
    opts.space.reserve_bytes = 0;
    s = FileStorage::open(root.path(), 0, &opts);
    let mut s = s.unwrap();
    // Only a busy log (its segment half full or more) gets a spare when it is opened.
    up_to_roll_over(&mut s, 1);
    drop(s);
    // Reopened on a "full" disk: it starts, and makes no spare.
    opts.space.reserve_bytes = free + (1 << 30);
    let s = FileStorage::open(root.path(), 0, &opts).expect("an existing log opens");
    assert!(!s.log.has_spare(), "no spare under the reserve");
    assert!(s.space().stats().spares_skipped >= 1);
    drop(s);
    opts.space.reserve_bytes = 0;
    let s = FileStorage::open(root.path(), 0, &opts).unwrap();
    assert!(s.log.has_spare(), "room for one: it is made");
}

#[test]
fn a_segment_past_the_quota_is_refused_and_the_alarm_names_the_quota() {
    let root = TempDir::new().unwrap();
    let mut opts = options();
    // Room for the first segment and its hard state, not for a second segment.
    opts.space.quota_bytes = (opts.segment_bytes * 3) / 2;
    let mut s = FileStorage::open(root.path(), 0, &opts).unwrap();
    let next = up_to_roll_over(&mut s, 1);
    assert_eq!(
        s.append(&entry(next, &[9u8; 1024])),
        Err(StorageError::Full)
    );
    assert_eq!(s.space().alarm(), Some(SpaceAlarm::Quota));
    assert_eq!(s.last_index(), next - 1);
}

/// An idle group holds only its segment open; every other file is opened for a moment, and
/// an open that finds no descriptor (EMFILE) is a refusal, never fatal.
#[test]
fn no_descriptor_for_a_moment_refuses_that_step_only() {
    let (root, mut s) = five_synced();
    assert!(
        !s.hs.is_open(),
        "the hard-state file is closed once its save is synced"
    );

    // A save of the commit hint alone waits for the next one; the writes go on.
    s.save_hard_state(&HardState {
        term: 0,
        vote: 0,
        commit: 5,
    })
    .unwrap();
    inject::fail(Op::Open, libc::EMFILE, 1);
    s.append(&entry(6, b"e")).unwrap();
    s.sync()
        .expect("a commit hint's save does not stop the log");
    assert_eq!(s.last_index(), 6);
    s.sync().expect("saved by the next sync");
    assert!(!s.hs.is_open());
    let mut s = reopen(s, &root);
    assert_eq!(s.hard_state().commit, 5);

    // A vote is refused (not granted), not fatal, and saved when tried again.
    let vote = HardState {
        term: 2,
        vote: 3,
        commit: 5,
    };
    let (op, errno) = (Op::Open, libc::EMFILE);
    hard_state_refused_then_saved(&mut s, &vote, op, errno, StorageError::NoResources);

    // A roll-over that cannot open the log dir refuses the entry; nothing is left behind.
    let next = roll_over_refused(&mut s, 7, op, errno, StorageError::NoResources);
    s.append(&entry(next, &ROLL_DATA)).expect("taken again");
    s.sync().unwrap();
    let s = reopen(s, &root);
    assert_eq!((s.last_index(), s.hard_state()), (next, vote));
    inject::clear();
}
