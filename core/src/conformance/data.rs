//! What the suite writes: every entry byte is a function of `(index, term)` and every
//! snapshot byte of `(seed, offset)`, so a check verifies what it reads back without a copy.

use super::*;
use crate::entry::{EntryIter, EntryRef};
use crate::membership::Membership;
use crate::record::CRC32C;
use crate::rng::Rng;
use crate::storage::{Storage, StorageError};
use crate::types::{EntryKind, HardState, LogIndex, NodeId, SnapshotMeta, Term};

// ---------------------------------------------------------------------------------------------
// Entries the suite writes: every byte is a function of (index, term), so nothing is stored.

/// Which payload sizes a check writes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape {
    /// 1..=61 bytes (and empty no-ops).
    Small,
    /// About this many bytes each (and empty no-ops).
    Large(usize),
}

pub(super) fn kind_of(index: LogIndex, term: Term) -> EntryKind {
    match (index ^ term.rotate_left(7)) % 13 {
        0 => EntryKind::Noop,
        5 => EntryKind::Config,
        _ => EntryKind::Normal,
    }
}

pub(super) fn payload_len(index: LogIndex, term: Term, shape: Shape) -> usize {
    if kind_of(index, term) == EntryKind::Noop {
        return 0;
    }
    match shape {
        Shape::Small => ((index.wrapping_mul(7) ^ term.wrapping_mul(13)) % 61) as usize + 1,
        // Vary the size a little so that record boundaries do not line up with any block size.
        Shape::Large(n) => n - (index % 3) as usize,
    }
}

pub(super) fn payload_byte(index: LogIndex, term: Term, pos: usize) -> u8 {
    let x = index.wrapping_mul(0x9E37_79B9)
        ^ term.wrapping_mul(0x85EB_CA6B)
        ^ (pos as u64).wrapping_mul(0x1F);
    (x ^ (x >> 8) ^ (x >> 16)) as u8
}

pub(super) fn append_entry<S: Storage>(
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

pub(super) fn append_range<S: Storage>(
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

pub(super) fn expect_entry(
    e: &EntryRef<'_>,
    index: LogIndex,
    term: Term,
    shape: Shape,
    what: &str,
) {
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

pub(super) fn sync<S: Storage>(s: &mut S, what: &str) {
    if let Err(e) = s.sync() {
        panic!("{}: sync failed: {:?}", what, e);
    }
}

/// Append `lo..=hi` of `term` with small payloads, then sync.
pub(super) fn append_synced<S: Storage>(
    s: &mut S,
    lo: LogIndex,
    hi: LogIndex,
    term: Term,
    what: &str,
) {
    append_range(s, lo, hi, term, Shape::Small, what);
    sync(s, what);
}

/// A fresh storage holding the synced entries `1..=last` of term 1, with small payloads.
pub(super) fn fresh_log<H: Harness>(h: &mut H, last: LogIndex, what: &str) -> H::S {
    let mut s = h.fresh();
    append_synced(&mut s, 1, last, 1, what);
    s
}

/// The terms of a log written in two runs: `before` up to `split`, `after` past it.
pub(super) fn two_terms(
    split: LogIndex,
    before: Term,
    after: Term,
) -> impl Fn(LogIndex) -> Term + Copy {
    move |i| if i <= split { before } else { after }
}

/// The hard state `(term, vote, commit)`.
pub(super) fn hard_state(term: Term, vote: NodeId, commit: LogIndex) -> HardState {
    HardState { term, vote, commit }
}

/// Check that `lo..=hi` reads back exactly as written, both by `term` and by `read_entries`.
pub(super) fn check_log<S: Storage>(
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

/// Assert that `read_entries(lo, hi)` is refused with an error of the same kind as `want`
/// (whatever index it names); `why` says when it must be.
pub(super) fn check_read_refused<S: Storage>(
    s: &S,
    (lo, hi): (LogIndex, LogIndex),
    want: StorageError,
    why: &str,
    what: &str,
) {
    let mut buf = [0u8; READ_BUF_BYTES];
    let got = s.read_entries(lo, hi, &mut buf);
    assert!(
        matches!(&got, Err(e) if core::mem::discriminant(e) == core::mem::discriminant(&want)),
        "{}: read_entries({}, {}) {} must be {:?}, not {:?}",
        what,
        lo,
        hi,
        why,
        want,
        got
    );
}

/// Rule 4 after a power cut: the log ends between the `synced` and the `written` last index
/// and reads back from `lo` as entries of term 1. Returns where it ends.
pub(super) fn check_crash_kept_a_prefix<S: Storage>(
    s: &S,
    lo: LogIndex,
    (synced, written): (LogIndex, LogIndex),
    shape: Shape,
    seed: u64,
    what: &str,
) -> LogIndex {
    let last = s.last_index();
    assert!(
        (synced..=written).contains(&last),
        "{} seed {}: last_index {} after crash (synced {}, written {})",
        what,
        seed,
        last,
        synced,
        written
    );
    check_log(s, lo, last, |_| 1, shape, what);
    last
}

/// Assert the log is empty and starts right after `snapshot_index`.
pub(super) fn check_empty_after<S: Storage>(s: &S, snapshot_index: LogIndex, what: &str) {
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

pub(super) fn snap_byte(seed: u64, pos: u64) -> u8 {
    let x = (pos ^ seed.rotate_left(17)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 29) as u8
}

pub(super) fn fill_snap(seed: u64, offset: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = snap_byte(seed, offset + k as u64);
    }
}

pub(super) fn snap_meta(index: LogIndex, term: Term, size_bytes: u64, seed: u64) -> SnapshotMeta {
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

/// Begin the snapshot `snap_meta(index, term, size_bytes, seed)` and write its first `upto`
/// bytes in chunks of varying size, without finishing it. Returns its metadata.
pub(super) fn write_snapshot<S: Storage>(
    s: &mut S,
    (index, term): (LogIndex, Term),
    size_bytes: u64,
    seed: u64,
    upto: u64,
    what: &str,
) -> SnapshotMeta {
    let meta = snap_meta(index, term, size_bytes, seed);
    if let Err(e) = s.snapshot_begin(&meta) {
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
    meta
}

/// Write and finish the snapshot `snap_meta(index, term, size_bytes, seed)`, check that it is
/// current and reads back whole, and return its metadata.
pub(super) fn install_snapshot<S: Storage>(
    s: &mut S,
    last: (LogIndex, Term),
    size_bytes: u64,
    seed: u64,
    what: &str,
) -> SnapshotMeta {
    let meta = write_snapshot(s, last, size_bytes, seed, size_bytes, what);
    if let Err(e) = s.snapshot_finish() {
        panic!("{}: snapshot_finish failed: {:?}", what, e);
    }
    check_snapshot(s, &meta, seed, what);
    meta
}

/// Assert that no snapshot is being written: a chunk at `offset` and a finish are both refused
/// with `SnapshotState`. `why` says why none may be.
pub(super) fn check_no_snapshot_in_progress<S: Storage>(
    s: &mut S,
    offset: u64,
    why: core::fmt::Arguments<'_>,
    what: &str,
) {
    assert_eq!(
        s.snapshot_write(offset, b"late"),
        Err(StorageError::SnapshotState),
        "{}: snapshot_write {}",
        what,
        why
    );
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::SnapshotState),
        "{}: snapshot_finish {}",
        what,
        why
    );
}

/// Assert that the current snapshot is `meta` with the data of `seed`, read in odd-sized pieces.
pub(super) fn check_snapshot<S: Storage>(s: &S, meta: &SnapshotMeta, seed: u64, what: &str) {
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

/// Entries at or below the snapshot may be kept (until compaction) or reported `Compacted`, but
/// never returned with a wrong term.
pub(super) fn check_at_or_below_snapshot<S: Storage>(
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
