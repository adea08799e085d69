//! Checks of the log and the hard state without crashes (rules 3 and 7 of the contract).

use super::data::*;
use super::*;
use crate::entry::{EntryIter, EntryRef};
use crate::storage::{LogView, Storage, StorageError};
use crate::types::{HardState, LogIndex};

// ---------------------------------------------------------------------------------------------
// Checks without crashes.

/// A new storage is empty: no entries, no snapshot, default hard state, `term(0) == 0`.
pub fn fresh_storage_is_empty<H: Harness>(h: &mut H) {
    let what = "fresh_storage_is_empty";
    let s = h.fresh();
    assert_eq!(s.hard_state(), HardState::default(), "{}: hard_state", what);
    assert_eq!(s.snapshot_meta(), None, "{}: snapshot_meta", what);
    check_empty_after(&s, 0, what);
    assert_eq!(s.term(0), Ok(0), "{}: term(0)", what);
    let mut buf = [0u8; 64];
    check_read_refused(
        &s,
        (1, 1),
        StorageError::Unavailable(1),
        "on an empty log",
        what,
    );
    assert_eq!(
        s.snapshot_read(0, &mut buf),
        Err(StorageError::NoSnapshot),
        "{}: snapshot_read",
        what
    );
    let s = h.reopen(s);
    check_empty_after(&s, 0, what);
    assert_eq!(
        s.hard_state(),
        HardState::default(),
        "{}: hard_state after reopen",
        what
    );
}

/// Rules 1 and 3: a saved hard state is visible at once and survives a restart after `sync`.
pub fn hard_state_round_trip<H: Harness>(h: &mut H) {
    let what = "hard_state_round_trip";
    let mut s = h.fresh();
    let first = hard_state(3, 2, 0);
    s.save_hard_state(&first)
        .expect("hard_state_round_trip: save_hard_state");
    assert_eq!(
        s.hard_state(),
        first,
        "{}: visible before sync (rule 3)",
        what
    );
    sync(&mut s, what);
    let mut s = h.reopen(s);
    assert_eq!(s.hard_state(), first, "{}: after reopen", what);
    // Overwrite many times: only the last synced value may come back.
    let mut last = first;
    for k in 1..=50u64 {
        last = hard_state(3 + k, k % 5, k * 1000);
        s.save_hard_state(&last)
            .expect("hard_state_round_trip: save_hard_state");
    }
    assert_eq!(s.hard_state(), last, "{}: latest save visible", what);
    sync(&mut s, what);
    let s = h.reopen(s);
    assert_eq!(
        s.hard_state(),
        last,
        "{}: latest synced value after reopen",
        what
    );
}

/// `append` only continues the log; anything else is `NotContiguous` and changes nothing.
pub fn append_must_be_contiguous<H: Harness>(h: &mut H) {
    let what = "append_must_be_contiguous";
    let mut s = h.fresh();
    assert_eq!(
        append_entry(&mut s, 2, 1, Shape::Small),
        Err(StorageError::NotContiguous {
            expected: 1,
            given: 2
        }),
        "{}: first append must be index 1",
        what
    );
    append_range(&mut s, 1, 10, 1, Shape::Small, what);
    for given in [0, 5, 10, 12, 1000] {
        assert_eq!(
            append_entry(&mut s, given, 2, Shape::Small),
            Err(StorageError::NotContiguous {
                expected: 11,
                given
            }),
            "{}: append of index {} after 10",
            what,
            given
        );
    }
    assert_eq!(
        s.last_index(),
        10,
        "{}: a refused append must not change the log",
        what
    );
    check_log(&s, 1, 10, |_| 1, Shape::Small, what);
    append_range(&mut s, 11, 12, 2, Shape::Small, what);
    check_log(&s, 1, 12, two_terms(10, 1, 2), Shape::Small, what);
}

/// `term` for 0, inside the log and past its end.
pub fn term_lookups<H: Harness>(h: &mut H) {
    let what = "term_lookups";
    let mut s = h.fresh();
    append_range(&mut s, 1, 4, 1, Shape::Small, what);
    append_range(&mut s, 5, 9, 3, Shape::Small, what);
    assert_eq!(s.term(0), Ok(0), "{}: term(0)", what);
    for i in 1..=9 {
        assert_eq!(
            s.term(i),
            Ok(if i <= 4 { 1 } else { 3 }),
            "{}: term({})",
            what,
            i
        );
    }
    assert_eq!(
        s.term(10),
        Err(StorageError::Unavailable(10)),
        "{}: term one past the end",
        what
    );
    assert_eq!(
        s.term(u64::MAX),
        Err(StorageError::Unavailable(u64::MAX)),
        "{}: term(u64::MAX)",
        what
    );
    sync(&mut s, what);
    let s = h.reopen(s);
    assert_eq!(s.last_index(), 9, "{}: last_index after reopen", what);
    assert_eq!(s.term(5), Ok(3), "{}: term(5) after reopen", what);
}

/// Entries of every kind read back byte for byte, over many sub-ranges.
pub fn read_entries_round_trip<H: Harness>(h: &mut H) {
    let what = "read_entries_round_trip";
    let mut s = h.fresh();
    append_range(&mut s, 1, 60, 2, Shape::Small, what);
    for (lo, hi) in [(1, 60), (1, 1), (60, 60), (7, 23), (30, 59)] {
        check_log(&s, lo, hi, |_| 2, Shape::Small, what);
    }
    sync(&mut s, what);
    let s = h.reopen(s);
    check_log(&s, 1, 60, |_| 2, Shape::Small, what);
}

/// `read_entries` stops at the first entry that does not fit and reports `BufferTooSmall` with
/// the bytes needed when not even one entry fits.
pub fn read_entries_respects_the_buffer<H: Harness>(h: &mut H) {
    let what = "read_entries_respects_the_buffer";
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Large(300), what);
    // Encoded sizes depend only on the header and the payload length, not the payload bytes.
    let len = |i: LogIndex| {
        let data = [0u8; MAX_PAYLOAD_BYTES];
        let n = payload_len(i, 1, Shape::Large(300));
        EntryRef {
            index: i,
            term: 1,
            kind: kind_of(i, 1),
            data: &data[..n],
        }
        .encoded_len()
    };
    let mut buf = [0u8; READ_BUF_BYTES];
    // Room for entries 3, 4, 5 and all but one byte of 6.
    let exact = len(3) + len(4) + len(5);
    for room in [exact, exact + len(6) - 1] {
        let r = s
            .read_entries(3, 20, &mut buf[..room])
            .expect("read_entries_respects_the_buffer: read");
        assert_eq!(
            r.count, 3,
            "{}: {} bytes hold exactly entries 3..=5",
            what, room
        );
        assert_eq!(r.bytes, exact, "{}: bytes used", what);
        let mut it = EntryIter::new(&buf[..r.bytes], r.count);
        for i in 3..=5 {
            match it.next() {
                Some(Ok(e)) => expect_entry(&e, i, 1, Shape::Large(300), what),
                other => panic!("{}: entry {} missing from the read: {:?}", what, i, other),
            }
        }
    }
    let needed = len(7);
    for room in [0, 1, needed - 1] {
        assert_eq!(
            s.read_entries(7, 9, &mut buf[..room]),
            Err(StorageError::BufferTooSmall { needed }),
            "{}: a {}-byte buffer cannot hold entry 7",
            what,
            room
        );
    }
    let r = s
        .read_entries(7, 9, &mut buf[..needed])
        .expect("read_entries_respects_the_buffer: exact fit");
    assert_eq!(
        (r.count, r.bytes),
        (1, needed),
        "{}: a buffer of exactly one entry",
        what
    );
}

/// Reads outside the log fail with the right error, never with made-up entries.
pub fn read_entries_out_of_range<H: Harness>(h: &mut H) {
    let what = "read_entries_out_of_range";
    let mut s = h.fresh();
    append_range(&mut s, 1, 5, 1, Shape::Small, what);
    let mut buf = [0u8; READ_BUF_BYTES];
    check_read_refused(
        &s,
        (6, 8),
        StorageError::Unavailable(6),
        "past the end",
        what,
    );
    // A range running past the end may be refused or cut at the end, but never invents entries.
    match s.read_entries(4, 9, &mut buf) {
        Err(StorageError::Unavailable(_)) => {}
        Ok(r) => {
            assert!(
                r.count <= 2,
                "{}: read_entries(4, 9) returned {} entries of a 5-entry log",
                what,
                r.count
            );
            check_log(&s, 4, 3 + u64::from(r.count), |_| 1, Shape::Small, what);
        }
        Err(e) => panic!("{}: read_entries(4, 9) failed with {:?}", what, e),
    }
}

/// `truncate_suffix` then new entries: visible at once and durable after sync.
pub fn truncate_suffix_then_append<H: Harness>(h: &mut H) {
    let what = "truncate_suffix_then_append";
    let mut s = fresh_log(h, 30, what);
    s.truncate_suffix(21)
        .expect("truncate_suffix_then_append: truncate");
    assert_eq!(
        s.last_index(),
        20,
        "{}: last_index after truncate_suffix(21)",
        what
    );
    assert_eq!(
        s.term(21),
        Err(StorageError::Unavailable(21)),
        "{}: truncated entry still visible",
        what
    );
    append_range(&mut s, 21, 25, 2, Shape::Small, what);
    let terms = two_terms(20, 1, 2);
    check_log(&s, 1, 25, terms, Shape::Small, what);
    // Truncate inside the new entries and again below them.
    s.truncate_suffix(23)
        .expect("truncate_suffix_then_append: second truncate");
    s.truncate_suffix(11)
        .expect("truncate_suffix_then_append: third truncate");
    append_range(&mut s, 11, 40, 3, Shape::Small, what);
    let terms = two_terms(10, 1, 3);
    check_log(&s, 1, 40, terms, Shape::Small, what);
    sync(&mut s, what);
    let s = h.reopen(s);
    assert_eq!(s.last_index(), 40, "{}: last_index after reopen", what);
    check_log(&s, 1, 40, terms, Shape::Small, what);
}

/// Edge cases: truncating at the end is a no-op, truncating everything empties the log, and
/// truncating into the snapshot is refused without losing anything.
pub fn truncate_suffix_edges<H: Harness>(h: &mut H) {
    let what = "truncate_suffix_edges";
    let mut s = h.fresh();
    append_range(&mut s, 1, 10, 1, Shape::Small, what);
    s.truncate_suffix(11)
        .expect("truncate_suffix_edges: truncate at last + 1");
    check_log(&s, 1, 10, |_| 1, Shape::Small, what);
    s.truncate_suffix(1)
        .expect("truncate_suffix_edges: truncate everything");
    check_empty_after(&s, 0, what);
    append_synced(&mut s, 1, 12, 2, what);
    let meta = install_snapshot(&mut s, (6, 2), 100, 1, what);
    for from in [6, 3] {
        assert!(
            s.truncate_suffix(from).is_err(),
            "{}: truncate_suffix({}) at or below the snapshot must fail",
            what,
            from
        );
        assert_eq!(
            s.last_index(),
            12,
            "{}: a refused truncate_suffix({}) must not change the log",
            what,
            from
        );
    }
    check_log(&s, 7, 12, |_| 2, Shape::Small, what);
    s.truncate_suffix(7)
        .expect("truncate_suffix_edges: truncate right after the snapshot");
    check_empty_after(&s, 6, what);
    append_synced(&mut s, 7, 8, 3, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 1, what);
    check_log(&s, 7, 8, |_| 3, Shape::Small, what);
}

/// Entries of `Limits::large_entry_bytes` (4 KiB by default) round-trip, across restarts.
pub fn large_entries<H: Harness>(h: &mut H) {
    let what = "large_entries";
    let shape = Shape::Large(h.limits().large_entry_bytes);
    let mut s = h.fresh();
    append_range(&mut s, 1, 24, 1, shape, what);
    check_log(&s, 1, 24, |_| 1, shape, what);
    sync(&mut s, what);
    let mut s = h.reopen(s);
    check_log(&s, 1, 24, |_| 1, shape, what);
    s.truncate_suffix(17)
        .expect("large_entries: truncate_suffix");
    append_range(&mut s, 17, 30, 2, shape, what);
    sync(&mut s, what);
    let s = h.reopen(s);
    check_log(&s, 1, 30, two_terms(16, 1, 2), shape, what);
}

/// Thousands of entries: appends, syncs, reads, a restart, a truncation, a snapshot and a
/// compaction behind it.
pub fn many_entries<H: Harness>(h: &mut H) {
    let what = "many_entries";
    let n = h.limits().many_entries;
    assert!(
        n >= 100,
        "{}: Limits::many_entries must be at least 100",
        what
    );
    let mut s = h.fresh();
    for index in 1..=n {
        if let Err(e) = append_entry(&mut s, index, 1 + index / 1000, Shape::Small) {
            panic!("{}: append of index {} failed: {:?}", what, index, e);
        }
        if index % 97 == 0 {
            sync(&mut s, what);
        }
    }
    sync(&mut s, what);
    let term_of = |i: LogIndex| 1 + i / 1000;
    check_log(&s, 1, n, term_of, Shape::Small, what);
    let mut s = h.reopen(s);
    assert_eq!(s.last_index(), n, "{}: last_index after reopen", what);
    check_log(&s, 1, n, term_of, Shape::Small, what);
    let cut = n / 2;
    let new_term = term_of(n) + 1;
    s.truncate_suffix(cut)
        .expect("many_entries: truncate_suffix");
    append_synced(&mut s, cut, n + 10, new_term, what);
    let term_of = |i: LogIndex| if i < cut { 1 + i / 1000 } else { new_term };
    let at = n - n / 5;
    let meta = install_snapshot(&mut s, (at, term_of(at)), 4000, 61, what);
    s.compact_prefix(at - 10)
        .expect("many_entries: compact_prefix");
    check_log(&s, at + 1, n + 10, term_of, Shape::Small, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 61, what);
    check_log(&s, at + 1, n + 10, term_of, Shape::Small, what);
    check_at_or_below_snapshot(&s, at - 9, at, term_of, what);
}
