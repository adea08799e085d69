//! Checks of snapshots without crashes (rules 6 and 7 of the contract).

use super::data::*;
use super::*;
use crate::storage::{LogView, Storage, StorageError};

/// Snapshot begin/write/finish/read, and its metadata and data survive a restart.
pub fn snapshot_round_trip<H: Harness>(h: &mut H) {
    let what = "snapshot_round_trip";
    let mut s = fresh_log(h, 15, what);
    let meta = install_snapshot(&mut s, (15, 1), 5000, 7, what);
    let mut buf = [0u8; 16];
    assert_eq!(
        s.snapshot_read(meta.size_bytes, &mut buf),
        Ok(0),
        "{}: read at the end returns 0",
        what
    );
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 7, what);
    assert_eq!(s.last_index(), 15, "{}: last_index after reopen", what);
    // An empty snapshot is legal too (a state machine with nothing in it).
    let mut s = s;
    let empty = install_snapshot(&mut s, (15, 1), 0, 8, what);
    let s = h.reopen(s);
    check_snapshot(&s, &empty, 8, what);
}

/// Snapshot calls out of order are `SnapshotState`; reading without a snapshot is `NoSnapshot`.
pub fn snapshot_operations_out_of_order<H: Harness>(h: &mut H) {
    let what = "snapshot_operations_out_of_order";
    let mut s = h.fresh();
    let mut buf = [0u8; 8];
    assert_eq!(
        s.snapshot_read(0, &mut buf),
        Err(StorageError::NoSnapshot),
        "{}: read without a snapshot",
        what
    );
    check_no_snapshot_in_progress(&mut s, 0, format_args!("without begin"), what);
    write_snapshot(&mut s, (3, 1), 64, 2, 10, what);
    assert_eq!(
        s.snapshot_write(20, b"gap"),
        Err(StorageError::SnapshotState),
        "{}: a chunk past a gap",
        what
    );
    // Until finish, the half-written snapshot is not current.
    assert_eq!(
        s.snapshot_meta(),
        None,
        "{}: snapshot_meta before finish",
        what
    );
    assert_eq!(
        s.snapshot_read(0, &mut buf),
        Err(StorageError::NoSnapshot),
        "{}: read before finish",
        what
    );
    assert_eq!(
        s.snapshot_index(),
        0,
        "{}: snapshot_index before finish",
        what
    );
}

/// A second `snapshot_begin` replaces a partly written snapshot; the current one stays readable
/// while a new one is written.
pub fn snapshot_begin_replaces_a_partial_one<H: Harness>(h: &mut H) {
    let what = "snapshot_begin_replaces_a_partial_one";
    let mut s = fresh_log(h, 30, what);
    let old = install_snapshot(&mut s, (5, 1), 1500, 11, what);
    write_snapshot(&mut s, (20, 1), 3000, 12, 1700, what);
    check_snapshot(&s, &old, 11, what);
    let new = install_snapshot(&mut s, (25, 1), 2100, 13, what);
    check_log(&s, 26, 30, |_| 1, Shape::Small, what);
    let s = h.reopen(s);
    check_snapshot(&s, &new, 13, what);
    check_log(&s, 26, 30, |_| 1, Shape::Small, what);
}

/// `snapshot_finish` keeps the entries after the snapshot when the log holds its last entry.
pub fn snapshot_keeps_a_matching_log<H: Harness>(h: &mut H) {
    let what = "snapshot_keeps_a_matching_log";
    let mut s = h.fresh();
    append_range(&mut s, 1, 10, 1, Shape::Small, what);
    append_synced(&mut s, 11, 20, 2, what);
    let meta = install_snapshot(&mut s, (12, 2), 900, 21, what);
    assert_eq!(
        s.last_index(),
        20,
        "{}: entries after the snapshot must be kept",
        what
    );
    check_log(&s, 13, 20, |_| 2, Shape::Small, what);
    check_at_or_below_snapshot(&s, 1, 11, two_terms(10, 1, 2), what);
    append_synced(&mut s, 21, 22, 3, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 21, what);
    check_log(&s, 13, 22, two_terms(20, 2, 3), Shape::Small, what);
}

/// `snapshot_finish` empties a log that lacks the snapshot's last entry: a shorter log, or one
/// whose entry at that index has another term. The log then continues at the snapshot.
pub fn snapshot_empties_a_log_without_its_last_entry<H: Harness>(h: &mut H) {
    let what = "snapshot_empties_a_log_without_its_last_entry";
    // The log ends before the snapshot.
    let mut s = fresh_log(h, 5, what);
    let meta = install_snapshot(&mut s, (10, 2), 700, 31, what);
    check_empty_after(&s, 10, what);
    assert_eq!(s.term(0), Ok(0), "{}: term(0) after a snapshot", what);
    for i in [1, 5, 9] {
        assert_eq!(
            s.term(i),
            Err(StorageError::Compacted(i)),
            "{}: old entry {} must be gone",
            what,
            i
        );
    }
    let below = "below the snapshot";
    check_read_refused(&s, (5, 10), StorageError::Compacted(5), below, what);
    assert_eq!(
        append_entry(&mut s, 6, 2, Shape::Small),
        Err(StorageError::NotContiguous {
            expected: 11,
            given: 6
        }),
        "{}: the log continues after the snapshot",
        what
    );
    append_synced(&mut s, 11, 13, 2, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 31, what);
    check_log(&s, 11, 13, |_| 2, Shape::Small, what);
    assert_eq!(
        s.term(5),
        Err(StorageError::Compacted(5)),
        "{}: old entry 5 after reopen",
        what
    );

    // The log is longer, but its entry at the snapshot index has another term: entries after it
    // belong to another history and must go too.
    let mut s = fresh_log(h, 20, what);
    let meta = install_snapshot(&mut s, (10, 2), 300, 32, what);
    check_empty_after(&s, 10, what);
    append_synced(&mut s, 11, 11, 3, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 32, what);
    check_log(&s, 11, 11, |_| 3, Shape::Small, what);
    assert_eq!(
        s.last_index(),
        11,
        "{}: conflicting entries came back after reopen",
        what
    );
}

/// Rule 7: `compact_prefix` drops only entries at or below the snapshot, even when asked for
/// more, and entries after the snapshot stay readable.
pub fn compact_prefix_never_passes_the_snapshot<H: Harness>(h: &mut H) {
    let what = "compact_prefix_never_passes_the_snapshot";
    let mut s = h.fresh();
    s.compact_prefix(0)
        .expect("compact_prefix_never_passes_the_snapshot: compact_prefix(0)");
    append_synced(&mut s, 1, 40, 1, what);
    let meta = install_snapshot(&mut s, (25, 1), 400, 41, what);
    s.compact_prefix(20)
        .expect("compact_prefix_never_passes_the_snapshot: compact_prefix(20)");
    check_log(&s, 26, 40, |_| 1, Shape::Small, what);
    check_at_or_below_snapshot(&s, 1, 24, |_| 1, what);
    s.compact_prefix(25)
        .expect("compact_prefix_never_passes_the_snapshot: compact_prefix(25)");
    check_log(&s, 26, 40, |_| 1, Shape::Small, what);
    // Asking for more than the snapshot covers may be refused or clamped; nothing after it goes.
    let _ = s.compact_prefix(35);
    assert_eq!(
        s.snapshot_index(),
        25,
        "{}: compact_prefix moved the snapshot",
        what
    );
    assert_eq!(
        s.last_index(),
        40,
        "{}: compact_prefix past the snapshot dropped entries",
        what
    );
    check_log(&s, 26, 40, |_| 1, Shape::Small, what);
    check_snapshot(&s, &meta, 41, what);
    append_synced(&mut s, 41, 45, 2, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 41, what);
    check_log(&s, 26, 45, two_terms(40, 1, 2), Shape::Small, what);
    check_at_or_below_snapshot(&s, 1, 24, |_| 1, what);
}

/// Rule 6 on a clean restart: a partly written snapshot is discarded and the old one stays.
pub fn partial_snapshot_is_discarded_on_reopen<H: Harness>(h: &mut H) {
    let what = "partial_snapshot_is_discarded_on_reopen";
    let mut s = fresh_log(h, 12, what);
    let old = install_snapshot(&mut s, (4, 1), 800, 51, what);
    // The same partial snapshot for both storages: (last index and term, size, seed).
    let (at, size, seed) = ((10, 1), 2000, 52);
    write_snapshot(&mut s, at, size, seed, 1200, what);
    let mut s = h.reopen(s);
    check_snapshot(&s, &old, 51, what);
    check_log(&s, 5, 12, |_| 1, Shape::Small, what);
    check_no_snapshot_in_progress(
        &mut s,
        1200,
        format_args!("of a snapshot reopen discarded"),
        what,
    );
    // A storage with no snapshot at all also comes back without one.
    let mut s = h.fresh();
    write_snapshot(&mut s, at, size, seed, 100, what);
    let s = h.reopen(s);
    assert_eq!(
        s.snapshot_meta(),
        None,
        "{}: a never-finished first snapshot came back",
        what
    );
}
