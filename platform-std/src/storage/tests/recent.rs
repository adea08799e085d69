//! The recent writes a log keeps for reads: entries read right after they reached the OS come
//! from memory, and never stale bytes after a cut, a reset or a roll-over.

use super::*;

/// Entries `lo..=hi` as `read_entries` returns them (one buffer's worth), as (index, data).
fn read_back(s: &FileStorage, lo: LogIndex, hi: LogIndex) -> Vec<(LogIndex, Vec<u8>)> {
    let mut buf = vec![0u8; 64 << 10];
    let got = s.read_entries(lo, hi, &mut buf).expect("read entries");
    let mut out = Vec::new();
    let mut rest = &buf[..got.bytes];
    for _ in 0..got.count {
        let (e, n) = shoal_core::entry::decode(rest).expect("an entry");
        out.push((e.index, e.data.to_vec()));
        rest = &rest[n..];
    }
    out
}

fn expect(
    lo: LogIndex,
    hi: LogIndex,
    len: usize,
    fill: impl Fn(LogIndex) -> u8,
) -> Vec<(LogIndex, Vec<u8>)> {
    (lo..=hi).map(|i| (i, vec![fill(i); len])).collect()
}

fn append_filled(s: &mut FileStorage, lo: LogIndex, hi: LogIndex, term: u64, fill: u8) {
    append_with(s, lo, hi, term, |_| vec![fill; 40]);
}

/// A fresh log whose segments hold everything these tests write (no roll-over).
fn one_segment_log() -> (TempDir, StorageOptions, FileStorage) {
    let (root, mut opts) = fresh();
    opts.segment_bytes = 1 << 20;
    opts.initial_segment_bytes = 1 << 20;
    let s = open(root.path(), &opts).expect("open");
    (root, opts, s)
}

fn file_reads(s: &FileStorage) -> u64 {
    s.log.file_reads.get()
}

#[test]
fn entries_read_right_after_their_write_come_from_memory() {
    let (_root, _opts, mut s) = one_segment_log();
    append_n(&mut s, 1, 20, 1, 40);
    s.sync().expect("sync");
    let before = file_reads(&s);
    assert_eq!(read_back(&s, 1, 20), expect(1, 20, 40, |i| (i % 251) as u8));
    // Partly written, partly still buffered.
    append_n(&mut s, 21, 25, 1, 40);
    assert_eq!(
        read_back(&s, 18, 25),
        expect(18, 25, 40, |i| (i % 251) as u8)
    );
    assert_eq!(
        file_reads(&s),
        before,
        "reads of just-written entries went to the file"
    );
    // A group falling idle frees them: reads go to the file again, and agree.
    s.sync().expect("sync");
    s.release_idle_memory();
    assert_eq!(read_back(&s, 1, 25), expect(1, 25, 40, |i| (i % 251) as u8));
    assert!(file_reads(&s) > before);
}

#[test]
fn a_cut_and_rewrite_is_read_as_rewritten() {
    let (root, opts, mut s) = one_segment_log();
    append_filled(&mut s, 1, 30, 1, 0xAA);
    s.sync().expect("sync");
    assert_eq!(read_back(&s, 1, 30), expect(1, 30, 40, |_| 0xAA));
    // A new leader's entries replace 11..: written, cut, written again at the same offsets.
    s.truncate_suffix(11).expect("truncate");
    append_filled(&mut s, 11, 30, 2, 0xBB);
    s.sync().expect("sync");
    let want: Vec<_> = expect(1, 10, 40, |_| 0xAA)
        .into_iter()
        .chain(expect(11, 30, 40, |_| 0xBB))
        .collect();
    assert_eq!(read_back(&s, 1, 30), want);
    // And a cut of buffered bytes only.
    append_filled(&mut s, 31, 35, 2, 0xCC);
    s.truncate_suffix(33).expect("truncate");
    append_filled(&mut s, 33, 36, 3, 0xDD);
    let tail: Vec<_> = expect(29, 30, 40, |_| 0xBB)
        .into_iter()
        .chain(expect(31, 32, 40, |_| 0xCC))
        .chain(expect(33, 36, 40, |_| 0xDD))
        .collect();
    assert_eq!(read_back(&s, 29, 36), tail);
    let s = reopen(s, root.path(), &opts);
    assert_eq!(read_back(&s, 29, 36), tail);
}

#[test]
fn a_small_write_buffer_and_roll_overs_keep_reads_right() {
    let (root, mut opts) = fresh();
    // Segments hold a few dozen records; the buffer is written out every few entries, so the
    // kept bytes are dropped (no room, new segment) again and again.
    opts.segment_bytes = MIN_SEGMENT_BYTES;
    opts.initial_segment_bytes = MIN_SEGMENT_BYTES;
    opts.write_buffer_bytes = 200;
    let mut s = open(root.path(), &opts).expect("open");
    let mut next = 1;
    for round in 0..40u64 {
        let hi = next + round % 7;
        append_n(&mut s, next, hi, 1, 40 + (round as usize % 3) * 30);
        if round % 2 == 0 {
            s.sync().expect("sync");
        }
        let lo = next.saturating_sub(5).max(1);
        for (i, data) in read_back(&s, lo, hi) {
            assert!(
                data.iter().all(|&b| b == (i % 251) as u8),
                "entry {i} read wrong"
            );
        }
        next = hi + 1;
    }
}
