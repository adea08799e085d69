//! The shared storage conformance suite: one set of checks that every [`Storage`] must pass.
//!
//! The file storage (`shoal-std`), the NOR-flash storage (`shoal-embedded`, run on the host over a
//! flash fake) and the simulator's `MemStorage` all run these same checks, so "durable" means the
//! same thing everywhere. Each numbered rule of the durability contract in [`crate::storage`] has
//! at least one check here; `run_all` runs every check, and each check is public so that a failing
//! one can be run alone.
//!
//! The suite is `no_std` and never allocates: it remembers what it wrote as terms in fixed arrays
//! and regenerates each payload from its `(index, term)`, so a check can verify every byte read
//! back without keeping a copy. A failure panics with the check's name, the index or offset, and
//! the crash seed, which is all that is needed to replay it.
//!
//! How crashes are judged: after a power cut, the log must equal the durable log plus a *prefix*
//! of the log writes (appends and truncations) made since the last `sync` (rules 2, 4 and 5), and
//! the hard state must be the synced one or one saved after it (rule 1). The hard state may live
//! in a separate file from the log, so the suite does not require it to be ordered with the log
//! writes.

use crate::entry::{self, EntryIter, EntryRef};
use crate::membership::Membership;
use crate::record::CRC32C;
use crate::rng::Rng;
use crate::storage::{LogView, Storage, StorageError};
use crate::types::{EntryKind, HardState, LogIndex, SnapshotMeta, Term};

/// Largest entry payload the suite writes. Sizes the suite's stack buffers.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// The read buffer the suite hands to `read_entries`: room for a few of the largest entries.
const READ_BUF_BYTES: usize = 3 * (MAX_PAYLOAD_BYTES + entry::MAX_HEADER_BYTES);
/// Most log indices the crash model tracks (it keeps one term per index).
const MODEL_CAP: usize = 256;
/// Most log writes the crash model remembers between two syncs.
const MAX_OPS: usize = 48;

/// How much a storage can hold, so that a small medium can scale the heavy checks down.
///
/// Lower a value only when the medium physically cannot hold the default (for example a flash
/// fake of a few sectors), and say so where the harness is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Payload size of the "large entry" checks (at most [`MAX_PAYLOAD_BYTES`]).
    pub large_entry_bytes: usize,
    /// Entries written by the "many entries" check.
    pub many_entries: u64,
    /// Crash seeds each crash check runs over in [`run_all`].
    pub crash_seeds: u64,
}

impl Limits {
    /// The defaults: 4 KiB entries, 4000 entries, 12 crash seeds.
    pub const DEFAULT: Limits = Limits {
        large_entry_bytes: 4096,
        many_entries: 4000,
        crash_seeds: 12,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the suite creates, restarts and power-cuts one implementation's storage.
pub trait Harness {
    /// The storage under test.
    type S: Storage;

    /// A new, empty storage: no entries, no snapshot, a default hard state.
    fn fresh(&mut self) -> Self::S;

    /// A clean shutdown and restart: close `s` and open it again from its medium, running the
    /// same recovery as after a crash. Everything synced must survive; writes made since the last
    /// sync may survive, as a prefix (a clean shutdown is never worse than a crash).
    fn reopen(&mut self, s: Self::S) -> Self::S;

    /// A power cut, then recovery. Everything synced survives; of the writes since the last sync
    /// a prefix survives (rule 4) and the last kept one may be torn; a partly written snapshot is
    /// lost. `seed` chooses which of these outcomes happens, so a failure replays exactly.
    fn crash(&mut self, s: Self::S, seed: u64) -> Self::S;

    /// Rule 8 hook: flip one bit of a durable log record that is not the last one (chosen by
    /// `seed`), then reopen. Returns the location recovery must name (the damaged record's start,
    /// in the implementation's own terms) and the result of that recovery. `None` means this
    /// medium cannot inject damage, and the rule-8 check is skipped.
    fn rot_and_reopen(
        &mut self,
        s: Self::S,
        seed: u64,
    ) -> Option<(u64, Result<Self::S, StorageError>)> {
        let _ = (s, seed);
        None
    }

    /// What this medium can hold; see [`Limits`].
    fn limits(&self) -> Limits {
        Limits::DEFAULT
    }
}

/// Run every check, the crash checks over `limits().crash_seeds` seeds each.
pub fn run_all<H: Harness>(h: &mut H) {
    let limits = h.limits();
    assert!(
        limits.large_entry_bytes <= MAX_PAYLOAD_BYTES,
        "Limits::large_entry_bytes {} exceeds the suite's MAX_PAYLOAD_BYTES {}",
        limits.large_entry_bytes,
        MAX_PAYLOAD_BYTES
    );
    fresh_storage_is_empty(h);
    hard_state_round_trip(h);
    append_must_be_contiguous(h);
    term_lookups(h);
    read_entries_round_trip(h);
    read_entries_respects_the_buffer(h);
    read_entries_out_of_range(h);
    truncate_suffix_then_append(h);
    truncate_suffix_edges(h);
    snapshot_round_trip(h);
    snapshot_operations_out_of_order(h);
    snapshot_begin_replaces_a_partial_one(h);
    snapshot_keeps_a_matching_log(h);
    snapshot_empties_a_log_without_its_last_entry(h);
    compact_prefix_never_passes_the_snapshot(h);
    partial_snapshot_is_discarded_on_reopen(h);
    large_entries(h);
    many_entries(h);
    run_crash_checks(h, 0..limits.crash_seeds);
}

/// Run every crash check once per seed in `seeds`.
pub fn run_crash_checks<H: Harness>(h: &mut H, seeds: core::ops::Range<u64>) {
    for seed in seeds {
        crash_keeps_synced_entries_and_a_prefix(h, seed);
        crash_orders_truncation_before_replacement(h, seed);
        crash_never_rolls_hard_state_back(h, seed);
        crash_discards_a_partial_snapshot(h, seed);
        crash_after_snapshot_finish_keeps_it(h, seed);
        crash_with_large_entries(h, seed);
        crash_workload(h, seed);
        corruption_is_reported(h, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// Entries the suite writes: every byte is a function of (index, term), so nothing is stored.

/// Which payload sizes a check writes.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// 1..=61 bytes (and empty no-ops).
    Small,
    /// About this many bytes each (and empty no-ops).
    Large(usize),
}

fn kind_of(index: LogIndex, term: Term) -> EntryKind {
    match (index ^ term.rotate_left(7)) % 13 {
        0 => EntryKind::Noop,
        5 => EntryKind::Config,
        _ => EntryKind::Normal,
    }
}

fn payload_len(index: LogIndex, term: Term, shape: Shape) -> usize {
    if kind_of(index, term) == EntryKind::Noop {
        return 0;
    }
    match shape {
        Shape::Small => ((index.wrapping_mul(7) ^ term.wrapping_mul(13)) % 61) as usize + 1,
        // Vary the size a little so that record boundaries do not line up with any block size.
        Shape::Large(n) => n - (index % 3) as usize,
    }
}

fn payload_byte(index: LogIndex, term: Term, pos: usize) -> u8 {
    let x = index.wrapping_mul(0x9E37_79B9)
        ^ term.wrapping_mul(0x85EB_CA6B)
        ^ (pos as u64).wrapping_mul(0x1F);
    (x ^ (x >> 8) ^ (x >> 16)) as u8
}

fn append_entry<S: Storage>(
    s: &mut S,
    index: LogIndex,
    term: Term,
    shape: Shape,
) -> Result<(), StorageError> {
    let mut data = [0u8; MAX_PAYLOAD_BYTES];
    let len = payload_len(index, term, shape);
    for (pos, b) in data[..len].iter_mut().enumerate() {
        *b = payload_byte(index, term, pos);
    }
    s.append(&EntryRef {
        index,
        term,
        kind: kind_of(index, term),
        data: &data[..len],
    })
}

fn append_range<S: Storage>(
    s: &mut S,
    lo: LogIndex,
    hi: LogIndex,
    term: Term,
    shape: Shape,
    what: &str,
) {
    for index in lo..=hi {
        if let Err(e) = append_entry(s, index, term, shape) {
            panic!(
                "{}: append of index {} (term {}) failed: {:?}",
                what, index, term, e
            );
        }
    }
}

fn expect_entry(e: &EntryRef<'_>, index: LogIndex, term: Term, shape: Shape, what: &str) {
    assert_eq!(
        e.index, index,
        "{}: read_entries returned the wrong index",
        what
    );
    assert_eq!(e.term, term, "{}: entry {} has the wrong term", what, index);
    assert_eq!(
        e.kind,
        kind_of(index, term),
        "{}: entry {} has the wrong kind",
        what,
        index
    );
    assert_eq!(
        e.data.len(),
        payload_len(index, term, shape),
        "{}: entry {} has the wrong payload length",
        what,
        index
    );
    for (pos, &b) in e.data.iter().enumerate() {
        if b != payload_byte(index, term, pos) {
            panic!("{}: entry {} payload differs at byte {}", what, index, pos);
        }
    }
}

fn sync<S: Storage>(s: &mut S, what: &str) {
    if let Err(e) = s.sync() {
        panic!("{}: sync failed: {:?}", what, e);
    }
}

/// Check that `lo..=hi` reads back exactly as written, both by `term` and by `read_entries`.
fn check_log<S: Storage>(
    s: &S,
    lo: LogIndex,
    hi: LogIndex,
    term_of: impl Fn(LogIndex) -> Term,
    shape: Shape,
    what: &str,
) {
    for index in lo..=hi {
        assert_eq!(
            s.term(index),
            Ok(term_of(index)),
            "{}: term({})",
            what,
            index
        );
    }
    let mut buf = [0u8; READ_BUF_BYTES];
    let mut next = lo;
    while next <= hi {
        let r = match s.read_entries(next, hi, &mut buf) {
            Ok(r) => r,
            Err(e) => panic!("{}: read_entries({}, {}) failed: {:?}", what, next, hi, e),
        };
        assert!(
            r.count >= 1,
            "{}: read_entries({}, {}) returned Ok with no entry",
            what,
            next,
            hi
        );
        assert!(
            next + u64::from(r.count) - 1 <= hi,
            "{}: read_entries({}, {}) returned {} entries",
            what,
            next,
            hi,
            r.count
        );
        assert!(
            r.bytes <= buf.len(),
            "{}: read_entries claims {} bytes of a {}-byte buffer",
            what,
            r.bytes,
            buf.len()
        );
        let mut used = 0;
        let mut seen = 0;
        for (k, e) in EntryIter::new(&buf[..r.bytes], r.count).enumerate() {
            let index = next + k as u64;
            match e {
                Ok(e) => {
                    expect_entry(&e, index, term_of(index), shape, what);
                    used += e.encoded_len();
                    seen += 1;
                }
                Err(err) => panic!(
                    "{}: entry {} read back does not decode: {:?}",
                    what, index, err
                ),
            }
        }
        assert_eq!(
            seen, r.count,
            "{}: fewer entries decoded than read_entries counted",
            what
        );
        assert_eq!(
            used, r.bytes,
            "{}: read_entries byte count does not match the entries",
            what
        );
        next += u64::from(r.count);
    }
}

/// Assert the log is empty and starts right after `snapshot_index`.
fn check_empty_after<S: Storage>(s: &S, snapshot_index: LogIndex, what: &str) {
    assert_eq!(
        s.snapshot_index(),
        snapshot_index,
        "{}: snapshot_index",
        what
    );
    assert_eq!(
        s.last_index(),
        snapshot_index,
        "{}: last_index of an empty log",
        what
    );
    assert_eq!(
        s.term(snapshot_index + 1),
        Err(StorageError::Unavailable(snapshot_index + 1)),
        "{}: term past the end",
        what
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshot data: bytes are a function of (seed, offset).

fn snap_byte(seed: u64, pos: u64) -> u8 {
    let x = (pos ^ seed.rotate_left(17)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 29) as u8
}

fn fill_snap(seed: u64, offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = snap_byte(seed, offset + k as u64);
    }
}

fn snap_meta(index: LogIndex, term: Term, size_bytes: u64, seed: u64) -> SnapshotMeta {
    let mut digest = CRC32C.digest();
    let mut chunk = [0u8; 256];
    let mut at = 0;
    while at < size_bytes {
        let n = core::cmp::min(chunk.len() as u64, size_bytes - at) as usize;
        fill_snap(seed, at, &mut chunk[..n]);
        digest.update(&chunk[..n]);
        at += n as u64;
    }
    let membership = Membership::new(&[1, 2, 3], &[4]).expect("a fixed, valid membership");
    SnapshotMeta {
        index,
        term,
        membership,
        size_bytes,
        crc: digest.finalize(),
    }
}

/// Begin a snapshot and write its first `upto` bytes in chunks of varying size.
fn write_snapshot<S: Storage>(s: &mut S, meta: &SnapshotMeta, seed: u64, upto: u64, what: &str) {
    if let Err(e) = s.snapshot_begin(meta) {
        panic!("{}: snapshot_begin failed: {:?}", what, e);
    }
    let mut chunk = [0u8; 700];
    let mut at = 0;
    let mut rng = Rng::new(seed);
    while at < upto {
        let n = core::cmp::min(rng.range(1, chunk.len() as u64 + 1), upto - at) as usize;
        fill_snap(seed, at, &mut chunk[..n]);
        if let Err(e) = s.snapshot_write(at, &chunk[..n]) {
            panic!("{}: snapshot_write at offset {} failed: {:?}", what, at, e);
        }
        at += n as u64;
    }
}

fn install_snapshot<S: Storage>(s: &mut S, meta: &SnapshotMeta, seed: u64, what: &str) {
    write_snapshot(s, meta, seed, meta.size_bytes, what);
    if let Err(e) = s.snapshot_finish() {
        panic!("{}: snapshot_finish failed: {:?}", what, e);
    }
}

/// Assert that the current snapshot is `meta` with the data of `seed`, read in odd-sized pieces.
fn check_snapshot<S: Storage>(s: &S, meta: &SnapshotMeta, seed: u64, what: &str) {
    assert_eq!(
        s.snapshot_meta().as_ref(),
        Some(meta),
        "{}: snapshot_meta",
        what
    );
    assert_eq!(s.snapshot_index(), meta.index, "{}: snapshot_index", what);
    assert_eq!(
        s.term(meta.index),
        Ok(meta.term),
        "{}: term at the snapshot index",
        what
    );
    let mut buf = [0u8; 333];
    let mut at = 0u64;
    loop {
        let n = match s.snapshot_read(at, &mut buf) {
            Ok(n) => n,
            Err(e) => panic!("{}: snapshot_read at offset {} failed: {:?}", what, at, e),
        };
        if n == 0 {
            break;
        }
        assert!(
            n <= buf.len(),
            "{}: snapshot_read returned more bytes than the buffer holds",
            what
        );
        for (k, &b) in buf[..n].iter().enumerate() {
            if b != snap_byte(seed, at + k as u64) {
                panic!(
                    "{}: snapshot data differs at offset {}",
                    what,
                    at + k as u64
                );
            }
        }
        at += n as u64;
        assert!(
            at <= meta.size_bytes,
            "{}: snapshot_read returned more than size_bytes {}",
            what,
            meta.size_bytes
        );
    }
    assert_eq!(at, meta.size_bytes, "{}: snapshot_read ended early", what);
}

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
    assert!(
        matches!(
            s.read_entries(1, 1, &mut buf),
            Err(StorageError::Unavailable(_))
        ),
        "{}: read_entries on an empty log must be Unavailable",
        what
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
    let first = HardState {
        term: 3,
        vote: 2,
        commit: 0,
    };
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
        last = HardState {
            term: 3 + k,
            vote: k % 5,
            commit: k * 1000,
        };
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
    check_log(
        &s,
        1,
        12,
        |i| if i <= 10 { 1 } else { 2 },
        Shape::Small,
        what,
    );
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
    assert!(
        matches!(
            s.read_entries(6, 8, &mut buf),
            Err(StorageError::Unavailable(_))
        ),
        "{}: a read starting past the end must be Unavailable",
        what
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
    let mut s = h.fresh();
    append_range(&mut s, 1, 30, 1, Shape::Small, what);
    sync(&mut s, what);
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
    let terms = |i: LogIndex| if i <= 20 { 1 } else { 2 };
    check_log(&s, 1, 25, terms, Shape::Small, what);
    // Truncate inside the new entries and again below them.
    s.truncate_suffix(23)
        .expect("truncate_suffix_then_append: second truncate");
    s.truncate_suffix(11)
        .expect("truncate_suffix_then_append: third truncate");
    append_range(&mut s, 11, 40, 3, Shape::Small, what);
    let terms = |i: LogIndex| if i <= 10 { 1 } else { 3 };
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
    append_range(&mut s, 1, 12, 2, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(6, 2, 100, 1);
    install_snapshot(&mut s, &meta, 1, what);
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
    append_range(&mut s, 7, 8, 3, Shape::Small, what);
    sync(&mut s, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 1, what);
    check_log(&s, 7, 8, |_| 3, Shape::Small, what);
}

/// Snapshot begin/write/finish/read, and its metadata and data survive a restart.
pub fn snapshot_round_trip<H: Harness>(h: &mut H) {
    let what = "snapshot_round_trip";
    let mut s = h.fresh();
    append_range(&mut s, 1, 15, 1, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(15, 1, 5000, 7);
    install_snapshot(&mut s, &meta, 7, what);
    check_snapshot(&s, &meta, 7, what);
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
    let empty = snap_meta(15, 1, 0, 8);
    install_snapshot(&mut s, &empty, 8, what);
    check_snapshot(&s, &empty, 8, what);
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
    assert_eq!(
        s.snapshot_write(0, b"x"),
        Err(StorageError::SnapshotState),
        "{}: write without begin",
        what
    );
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::SnapshotState),
        "{}: finish without begin",
        what
    );
    let meta = snap_meta(3, 1, 64, 2);
    write_snapshot(&mut s, &meta, 2, 10, what);
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
    let mut s = h.fresh();
    append_range(&mut s, 1, 30, 1, Shape::Small, what);
    sync(&mut s, what);
    let old = snap_meta(5, 1, 1500, 11);
    install_snapshot(&mut s, &old, 11, what);
    let abandoned = snap_meta(20, 1, 3000, 12);
    write_snapshot(&mut s, &abandoned, 12, 1700, what);
    check_snapshot(&s, &old, 11, what);
    let new = snap_meta(25, 1, 2100, 13);
    install_snapshot(&mut s, &new, 13, what);
    check_snapshot(&s, &new, 13, what);
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
    append_range(&mut s, 11, 20, 2, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(12, 2, 900, 21);
    install_snapshot(&mut s, &meta, 21, what);
    check_snapshot(&s, &meta, 21, what);
    assert_eq!(
        s.last_index(),
        20,
        "{}: entries after the snapshot must be kept",
        what
    );
    check_log(&s, 13, 20, |_| 2, Shape::Small, what);
    check_at_or_below_snapshot(&s, 1, 11, |i| if i <= 10 { 1 } else { 2 }, what);
    append_range(&mut s, 21, 22, 3, Shape::Small, what);
    sync(&mut s, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 21, what);
    check_log(
        &s,
        13,
        22,
        |i| if i <= 20 { 2 } else { 3 },
        Shape::Small,
        what,
    );
}

/// Entries at or below the snapshot may be kept (until compaction) or reported `Compacted`, but
/// never returned with a wrong term.
fn check_at_or_below_snapshot<S: Storage>(
    s: &S,
    lo: LogIndex,
    hi: LogIndex,
    term_of: impl Fn(LogIndex) -> Term,
    what: &str,
) {
    for i in lo..=hi {
        match s.term(i) {
            Ok(t) => assert_eq!(
                t,
                term_of(i),
                "{}: term({}) behind the snapshot is wrong",
                what,
                i
            ),
            Err(StorageError::Compacted(at)) => {
                assert_eq!(at, i, "{}: Compacted names the wrong index", what)
            }
            Err(e) => panic!(
                "{}: term({}) behind the snapshot failed with {:?}",
                what, i, e
            ),
        }
    }
}

/// `snapshot_finish` empties a log that lacks the snapshot's last entry: a shorter log, or one
/// whose entry at that index has another term. The log then continues at the snapshot.
pub fn snapshot_empties_a_log_without_its_last_entry<H: Harness>(h: &mut H) {
    let what = "snapshot_empties_a_log_without_its_last_entry";
    // The log ends before the snapshot.
    let mut s = h.fresh();
    append_range(&mut s, 1, 5, 1, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(10, 2, 700, 31);
    install_snapshot(&mut s, &meta, 31, what);
    check_snapshot(&s, &meta, 31, what);
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
    let mut buf = [0u8; READ_BUF_BYTES];
    assert!(
        matches!(
            s.read_entries(5, 10, &mut buf),
            Err(StorageError::Compacted(_))
        ),
        "{}: reading below the snapshot must be Compacted",
        what
    );
    assert_eq!(
        append_entry(&mut s, 6, 2, Shape::Small),
        Err(StorageError::NotContiguous {
            expected: 11,
            given: 6
        }),
        "{}: the log continues after the snapshot",
        what
    );
    append_range(&mut s, 11, 13, 2, Shape::Small, what);
    sync(&mut s, what);
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
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(10, 2, 300, 32);
    install_snapshot(&mut s, &meta, 32, what);
    check_snapshot(&s, &meta, 32, what);
    check_empty_after(&s, 10, what);
    append_range(&mut s, 11, 11, 3, Shape::Small, what);
    sync(&mut s, what);
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
    append_range(&mut s, 1, 40, 1, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(25, 1, 400, 41);
    install_snapshot(&mut s, &meta, 41, what);
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
    append_range(&mut s, 41, 45, 2, Shape::Small, what);
    sync(&mut s, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 41, what);
    check_log(
        &s,
        26,
        45,
        |i| if i <= 40 { 1 } else { 2 },
        Shape::Small,
        what,
    );
    check_at_or_below_snapshot(&s, 1, 24, |_| 1, what);
}

/// Rule 6 on a clean restart: a partly written snapshot is discarded and the old one stays.
pub fn partial_snapshot_is_discarded_on_reopen<H: Harness>(h: &mut H) {
    let what = "partial_snapshot_is_discarded_on_reopen";
    let mut s = h.fresh();
    append_range(&mut s, 1, 12, 1, Shape::Small, what);
    sync(&mut s, what);
    let old = snap_meta(4, 1, 800, 51);
    install_snapshot(&mut s, &old, 51, what);
    let partial = snap_meta(10, 1, 2000, 52);
    write_snapshot(&mut s, &partial, 52, 1200, what);
    let mut s = h.reopen(s);
    check_snapshot(&s, &old, 51, what);
    check_log(&s, 5, 12, |_| 1, Shape::Small, what);
    assert_eq!(
        s.snapshot_write(1200, b"late"),
        Err(StorageError::SnapshotState),
        "{}: the partial snapshot survived reopen",
        what
    );
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::SnapshotState),
        "{}: finish of a discarded snapshot",
        what
    );
    // A storage with no snapshot at all also comes back without one.
    let mut s = h.fresh();
    write_snapshot(&mut s, &partial, 52, 100, what);
    let s = h.reopen(s);
    assert_eq!(
        s.snapshot_meta(),
        None,
        "{}: a never-finished first snapshot came back",
        what
    );
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
    check_log(&s, 1, 30, |i| if i <= 16 { 1 } else { 2 }, shape, what);
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
    append_range(&mut s, cut, n + 10, new_term, Shape::Small, what);
    sync(&mut s, what);
    let term_of = |i: LogIndex| if i < cut { 1 + i / 1000 } else { new_term };
    let at = n - n / 5;
    let meta = snap_meta(at, term_of(at), 4000, 61);
    install_snapshot(&mut s, &meta, 61, what);
    s.compact_prefix(at - 10)
        .expect("many_entries: compact_prefix");
    check_log(&s, at + 1, n + 10, term_of, Shape::Small, what);
    let s = h.reopen(s);
    check_snapshot(&s, &meta, 61, what);
    check_log(&s, at + 1, n + 10, term_of, Shape::Small, what);
    check_at_or_below_snapshot(&s, at - 9, at, term_of, what);
}

// ---------------------------------------------------------------------------------------------
// Crash checks.

/// Rules 2 and 4: synced entries survive a power cut; of the unsynced ones, only a prefix.
pub fn crash_keeps_synced_entries_and_a_prefix<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_keeps_synced_entries_and_a_prefix";
    let mut s = h.fresh();
    append_range(&mut s, 1, 40, 1, Shape::Small, what);
    sync(&mut s, what);
    append_range(&mut s, 41, 70, 1, Shape::Small, what);
    let mut s = h.crash(s, seed);
    let last = s.last_index();
    assert!(
        (40..=70).contains(&last),
        "{} seed {}: last_index {} after crash (synced 40, written 70)",
        what,
        seed,
        last
    );
    check_log(&s, 1, last, |_| 1, Shape::Small, what);
    // The recovered log continues cleanly and the next sync holds.
    append_range(&mut s, last + 1, last + 5, 2, Shape::Small, what);
    sync(&mut s, what);
    let s = h.crash(s, seed.wrapping_add(1));
    assert_eq!(
        s.last_index(),
        last + 5,
        "{} seed {}: synced entries lost by a second crash",
        what,
        seed
    );
    check_log(
        &s,
        1,
        last + 5,
        |i| if i <= last { 1 } else { 2 },
        Shape::Small,
        what,
    );
}

/// Rule 5: after `truncate_suffix(i)` and new entries, a crash never shows the old entry `i`
/// together with newer entries after it.
pub fn crash_orders_truncation_before_replacement<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_orders_truncation_before_replacement";
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Small, what);
    sync(&mut s, what);
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
        Ok(2) => check_log(
            &s,
            1,
            last,
            |i| if i <= 10 { 1 } else { 2 },
            Shape::Small,
            what,
        ),
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
    append_range(&mut s, 11, 15, 3, Shape::Small, what);
    sync(&mut s, what);
    let s = h.crash(s, seed.wrapping_add(7));
    assert_eq!(
        s.last_index(),
        15,
        "{} seed {}: last_index after a synced truncation",
        what,
        seed
    );
    check_log(
        &s,
        1,
        15,
        |i| if i <= 10 { 1 } else { 3 },
        Shape::Small,
        what,
    );
}

/// Rule 1: the hard state after a crash is the synced one or a later save, never older.
pub fn crash_never_rolls_hard_state_back<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_never_rolls_hard_state_back";
    let mut s = h.fresh();
    let synced = HardState {
        term: 5,
        vote: 3,
        commit: 0,
    };
    s.save_hard_state(&synced)
        .expect("crash_never_rolls_hard_state_back: save");
    sync(&mut s, what);
    let unsynced = HardState {
        term: 6,
        vote: 1,
        commit: 0,
    };
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
    let newest = HardState {
        term: 7,
        vote: 2,
        commit: 4,
    };
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

/// Rule 6 under a power cut: a partly written snapshot is lost, the previous one stays whole.
pub fn crash_discards_a_partial_snapshot<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_discards_a_partial_snapshot";
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Small, what);
    sync(&mut s, what);
    let old = snap_meta(8, 1, 1000, 71);
    install_snapshot(&mut s, &old, 71, what);
    let partial = snap_meta(18, 1, 3000, 72);
    write_snapshot(&mut s, &partial, 72, 2999, what);
    let mut s = h.crash(s, seed);
    check_snapshot(&s, &old, 71, what);
    check_log(&s, 9, 20, |_| 1, Shape::Small, what);
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::SnapshotState),
        "{} seed {}: a partial snapshot survived",
        what,
        seed
    );
}

/// Rule 6: once `snapshot_finish` returns, the new snapshot and the log it implies survive a
/// crash with no further sync: a log it emptied stays empty.
pub fn crash_after_snapshot_finish_keeps_it<H: Harness>(h: &mut H, seed: u64) {
    let what = "crash_after_snapshot_finish_keeps_it";
    // A snapshot that empties a conflicting log.
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Small, what);
    sync(&mut s, what);
    let meta = snap_meta(12, 2, 1234, 81);
    install_snapshot(&mut s, &meta, 81, what);
    let s = h.crash(s, seed);
    check_snapshot(&s, &meta, 81, what);
    check_empty_after(&s, 12, what);
    // A snapshot that keeps the log; unsynced entries after it follow the prefix rule.
    let mut s = h.fresh();
    append_range(&mut s, 1, 20, 1, Shape::Small, what);
    sync(&mut s, what);
    append_range(&mut s, 21, 25, 1, Shape::Small, what);
    let old = snap_meta(10, 1, 100, 82);
    install_snapshot(&mut s, &old, 82, what);
    let new = snap_meta(15, 1, 2000, 83);
    install_snapshot(&mut s, &new, 83, what);
    let s = h.crash(s, seed.wrapping_add(11));
    check_snapshot(&s, &new, 83, what);
    let last = s.last_index();
    assert!(
        (20..=25).contains(&last),
        "{} seed {}: last_index {} (synced 20, written 25)",
        what,
        seed,
        last
    );
    check_log(&s, 16, last, |_| 1, Shape::Small, what);
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
    let last = s.last_index();
    assert!(
        (6..=12).contains(&last),
        "{} seed {}: last_index {} (synced 6, written 12)",
        what,
        seed,
        last
    );
    check_log(&s, 1, last, |_| 1, shape, what);
}

/// Rule 8: a damaged record before the end of the log fails recovery with `Corrupt`, naming
/// the damaged record, instead of being dropped like a torn tail (which would lose synced
/// entries silently). Skipped when the harness cannot inject damage.
pub fn corruption_is_reported<H: Harness>(h: &mut H, seed: u64) {
    let what = "corruption_is_reported";
    let mut s = h.fresh();
    append_range(&mut s, 1, 30, 1, Shape::Small, what);
    sync(&mut s, what);
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
        let mut candidate = durable;
        let mut found = candidate.matches(&s);
        for op in ops.iter() {
            if found {
                break;
            }
            candidate.apply(*op);
            found = candidate.matches(&s);
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
                &s,
                1,
                candidate.last,
                |i| candidate.term(i),
                Shape::Small,
                what,
            );
        }
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
