//! Tests of the file storage: the shared conformance suite (with a faithful power-cut model),
//! recovery from torn tails, refusal of corruption, identity checks, hard-state slots,
//! snapshot retention and the read-only scanners.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_core::conformance::{self, Harness, Limits};
use shoal_core::entry::EntryRef;
use shoal_core::membership::Membership;
use shoal_core::record::{self, CRC32C};
use shoal_core::rng::Rng;
use shoal_core::storage::{LogView, Storage};
use shoal_core::types::{EntryKind, HardState, LogIndex, SnapshotMeta};
use tempfile::TempDir;

use super::hardstate::{self, HS_SLOT_BYTES};
use super::scan;
use super::*;

/// Options for tests: small segments so that rollover, compaction and gaps are exercised.
fn test_options(fsync: FsyncMode) -> StorageOptions {
    StorageOptions {
        fsync,
        segment_bytes: 16 << 10,
        // Every segment full-size, so boundaries are where these tests expect them; the
        // growth from small segments has tests of its own.
        initial_segment_bytes: 16 << 10,
        write_buffer_bytes: 4 << 10,
        async_sync_interval: Duration::from_millis(2),
        keep_snapshots: 2,
        compact_delay: Duration::ZERO,
        // Segment boundaries must not depend on when a filler thread finishes; the spare's own
        // test turns it on.
        prefill_segments: false,
        // Whatever the disk of the machine running the tests has free.
        space: space::SpaceLimits {
            reserve_bytes: 0,
            ..Default::default()
        },
    }
}

/// Runs the conformance suite over fresh temp data dirs.
struct FileHarness {
    root: TempDir,
    dirs: u64,
    opts: StorageOptions,
}

impl FileHarness {
    fn new(fsync: FsyncMode) -> Self {
        FileHarness {
            root: TempDir::new().expect("create a temp dir"),
            dirs: 0,
            opts: test_options(fsync),
        }
    }

    fn data_dir_of(s: &FileStorage) -> PathBuf {
        s.group_dir()
            .parent()
            .expect("a group dir lives in a data dir")
            .to_path_buf()
    }
}

impl Harness for FileHarness {
    type S = FileStorage;

    fn fresh(&mut self) -> FileStorage {
        self.dirs += 1;
        let dir = self.root.path().join(format!("node-{}", self.dirs));
        FileStorage::open(&dir, 0, &self.opts).expect("open a fresh storage")
    }

    fn reopen(&mut self, s: FileStorage) -> FileStorage {
        let dir = Self::data_dir_of(&s);
        drop(s);
        FileStorage::open(&dir, 0, &self.opts)
            .unwrap_or_else(|e| panic!("reopen after a clean shutdown failed: {}", e))
    }

    fn crash(&mut self, s: FileStorage, seed: u64) -> FileStorage {
        let dir = Self::data_dir_of(&s);
        let image = s.power_cut();
        apply_power_cut(&image, seed);
        FileStorage::open(&dir, 0, &self.opts)
            .unwrap_or_else(|e| panic!("recovery after power cut (seed {}) failed: {}", seed, e))
    }

    fn limits(&self) -> Limits {
        Limits {
            crash_seeds: 8,
            ..Limits::DEFAULT
        }
    }
}

/// Decide what survives a power cut: every segment keeps its fdatasynced bytes plus a random
/// prefix of its unsynced ones (often tearing a record), the rest reads back as zeros (the
/// preallocated blocks) or is gone (the size was cut). A pending hard-state save is lost, lands
/// whole, or lands torn. Snapshot temp files stay for recovery to delete.
fn apply_power_cut(image: &CrashImage, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x00C0_FFEE);
    for (path, durable, written) in &image.segments {
        if written <= durable {
            continue;
        }
        let keep = durable + rng.range(0, written - durable + 1);
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open a segment to cut");
        if rng.chance(1, 4) {
            f.set_len(keep).expect("cut the segment");
        } else {
            let zeros = vec![0u8; (written - keep) as usize];
            f.write_all_at(&zeros, keep).expect("zero the lost bytes");
        }
    }
    if let Some((path, slot, bytes)) = &image.hard_state {
        let f = OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open the hard state");
        let at = (slot * HS_SLOT_BYTES) as u64;
        match rng.range(0, 3) {
            0 => {}
            1 => f.write_all_at(bytes, at).expect("write the slot"),
            _ => {
                let cut = rng.range(1, HS_SLOT_BYTES as u64) as usize;
                f.write_all_at(&bytes[..cut], at).expect("tear the slot");
            }
        }
    }
}

/// Every conformance check that needs no power cut.
fn run_without_crashes<H: Harness>(h: &mut H) {
    conformance::fresh_storage_is_empty(h);
    conformance::hard_state_round_trip(h);
    conformance::append_must_be_contiguous(h);
    conformance::term_lookups(h);
    conformance::read_entries_round_trip(h);
    conformance::read_entries_respects_the_buffer(h);
    conformance::read_entries_out_of_range(h);
    conformance::truncate_suffix_then_append(h);
    conformance::truncate_suffix_edges(h);
    conformance::snapshot_round_trip(h);
    conformance::snapshot_operations_out_of_order(h);
    conformance::snapshot_begin_replaces_a_partial_one(h);
    conformance::snapshot_keeps_a_matching_log(h);
    conformance::snapshot_empties_a_log_without_its_last_entry(h);
    conformance::compact_prefix_never_passes_the_snapshot(h);
    conformance::partial_snapshot_is_discarded_on_reopen(h);
    conformance::large_entries(h);
    conformance::many_entries(h);
}

#[test]
fn conformance_always_mode_with_crashes() {
    conformance::run_all(&mut FileHarness::new(FsyncMode::Always));
}

#[test]
fn conformance_crash_checks_over_more_seeds() {
    let before = seglog::TORN_TAILS_CUT.load(std::sync::atomic::Ordering::Relaxed);
    conformance::run_crash_checks(&mut FileHarness::new(FsyncMode::Always), 100..130);
    let after = seglog::TORN_TAILS_CUT.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before, "the power-cut model never tore a record");
}

#[test]
fn conformance_async_mode() {
    run_without_crashes(&mut FileHarness::new(FsyncMode::Async));
}

#[test]
fn conformance_never_mode() {
    run_without_crashes(&mut FileHarness::new(FsyncMode::Never));
}

#[test]
fn conformance_with_one_byte_write_buffer_and_tiny_segments() {
    let mut h = FileHarness::new(FsyncMode::Always);
    h.opts.write_buffer_bytes = 1;
    h.opts.segment_bytes = MIN_SEGMENT_BYTES;
    run_without_crashes(&mut h);
    conformance::run_crash_checks(&mut h, 0..4);
}

#[test]
fn conformance_with_segments_that_grow_from_small() {
    let mut h = FileHarness::new(FsyncMode::Always);
    h.opts.initial_segment_bytes = MIN_SEGMENT_BYTES;
    h.opts.segment_bytes = 64 << 10;
    run_without_crashes(&mut h);
    conformance::run_crash_checks(&mut h, 0..8);
}

// ---------------------------------------------------------------------------------------------
// Helpers for the specific tests.

fn append_n(s: &mut FileStorage, lo: LogIndex, hi: LogIndex, term: u64, len: usize) {
    append_with(s, lo, hi, term, |index| vec![(index % 251) as u8; len]);
}

/// Append entries `lo..=hi` of `term` whose data is `data(index)`.
fn append_with(
    s: &mut FileStorage,
    lo: LogIndex,
    hi: LogIndex,
    term: u64,
    data: impl Fn(LogIndex) -> Vec<u8>,
) {
    for index in lo..=hi {
        let data = data(index);
        s.append(&EntryRef {
            index,
            term,
            kind: EntryKind::Normal,
            data: &data,
        })
        .expect("append");
    }
}

fn segments(s: &FileStorage) -> Vec<scan::SegmentFile> {
    scan::list_segments(&scan::log_dir(s.group_dir())).expect("list segments")
}

fn open(dir: &Path, opts: &StorageOptions) -> Result<FileStorage, OpenError> {
    FileStorage::open(dir, 0, opts)
}

/// An empty temp dir for a data dir, and [`test_options`] that sync every write.
fn fresh() -> (TempDir, StorageOptions) {
    let root = TempDir::new().expect("temp dir");
    (root, test_options(FsyncMode::Always))
}

/// A storage opened on `dir` holding entries `1..=n` of term 1 and `len` bytes each, synced.
fn synced_log(dir: &Path, opts: &StorageOptions, n: LogIndex, len: usize) -> FileStorage {
    let mut s = open(dir, opts).expect("open");
    append_n(&mut s, 1, n, 1, len);
    s.sync().expect("sync");
    s
}

/// `s` synced, closed and opened again on `dir`, as a restart would.
fn reopen(mut s: FileStorage, dir: &Path, opts: &StorageOptions) -> FileStorage {
    s.sync().expect("sync");
    drop(s);
    open(dir, opts).expect("reopen")
}

/// Writes entries `1..=n` of `len` bytes, synced and closed; returns the newest segment.
fn newest_segment(dir: &Path, opts: &StorageOptions, n: LogIndex, len: usize) -> scan::SegmentFile {
    let s = synced_log(dir, opts, n, len);
    segments(&s).pop().expect("a segment")
}

/// Writes entries 1..=200 of 300 bytes, synced and closed, so that the log spans several
/// segments (with [`test_options`]); returns those segments, oldest first.
fn several_segments(dir: &Path, opts: &StorageOptions) -> Vec<scan::SegmentFile> {
    let s = synced_log(dir, opts, 200, 300);
    let segs = segments(&s);
    assert!(segs.len() >= 3, "need several segments, got {}", segs.len());
    segs
}

/// The record of entry `index` in the segment at `path`, which must scan clean.
fn record_of(path: &Path, index: LogIndex) -> scan::ScannedRecord {
    scan::scan_segment(path)
        .expect("scan")
        .map(|r| r.expect("clean"))
        .find(|r| r.entry.index == index)
        .unwrap_or_else(|| panic!("no record of entry {} in {}", index, path.display()))
}

/// Overwrites the file at `path` with `bytes` at `offset`, as damage on the medium would.
fn damage(path: &Path, bytes: &[u8], offset: u64) {
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(bytes, offset).expect("damage");
}

pub(super) fn snapshot_meta(index: LogIndex, term: u64, data: &[u8]) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        membership: Membership::new(&[1, 2, 3], &[]).expect("membership"),
        size_bytes: data.len() as u64,
        crc: CRC32C.checksum(data),
    }
}

fn install(s: &mut FileStorage, meta: &SnapshotMeta, data: &[u8]) {
    s.snapshot_begin(meta).expect("begin");
    s.snapshot_write(0, data).expect("write");
    s.snapshot_finish().expect("finish");
}

fn identity(cluster_id: u64, node_id: u64, addr: &str) -> Identity {
    Identity {
        cluster_id,
        node_id,
        raft_addr: addr.into(),
    }
}

mod journal;
mod on_disk;
mod recent;
mod recovery;
mod snapbg;
mod snapshots;
