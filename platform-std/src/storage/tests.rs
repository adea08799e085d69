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
    for index in lo..=hi {
        let data = vec![(index % 251) as u8; len];
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

/// Writes entries 1..=200 of 300 bytes, synced and closed, so that the log spans several
/// segments (with [`test_options`]); returns those segments, oldest first.
fn several_segments(dir: &Path, opts: &StorageOptions) -> Vec<scan::SegmentFile> {
    let mut s = open(dir, opts).expect("open");
    append_n(&mut s, 1, 200, 1, 300);
    s.sync().expect("sync");
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

// ---------------------------------------------------------------------------------------------
// Recovery.

#[test]
fn a_last_record_ending_in_zero_bytes_survives_reopening() {
    // Open reads a segment only up to its last non-zero byte first; a record whose CRC ends
    // in a zero byte must not look torn there. Append until the last record ends in 0x00
    // (about one record in 256), then reopen.
    let root = TempDir::new().expect("temp dir");
    let mut opts = test_options(FsyncMode::Always);
    opts.segment_bytes = 4 << 20;
    let mut s = open(root.path(), &opts).expect("open");
    let mut last = 0;
    for index in 1..=20_000u64 {
        let data = index.to_le_bytes();
        s.append(&EntryRef {
            index,
            term: 1,
            kind: EntryKind::Normal,
            data: &data,
        })
        .expect("append");
        s.sync().expect("sync");
        let seg = segments(&s).pop().expect("a segment");
        let end = scan::scan_segment(&seg.path).expect("scan").end;
        let bytes = std::fs::read(&seg.path).expect("read");
        if bytes[end as usize - 1] == 0 {
            last = index;
            break;
        }
    }
    assert!(last > 0, "no record ended in a zero byte");
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(
        s.last_index(),
        last,
        "the last record was cut as a torn tail"
    );
}

#[test]
fn torn_tail_is_cut_at_open() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 10, 1, 40);
    s.sync().expect("sync");
    let seg = segments(&s).pop().expect("a segment");
    drop(s);
    // A torn write: the first half of a valid record for entry 11 after the last record.
    let end = scan::scan_segment(&seg.path).expect("scan").end;
    let data = [7u8; 40];
    let e = EntryRef {
        index: 11,
        term: 1,
        kind: EntryKind::Normal,
        data: &data,
    };
    let mut rec = vec![0u8; 200];
    let n = record::encode_with(&mut rec, e.encoded_len(), |dst| {
        shoal_core::entry::encode(&e, dst).expect("encode");
    })
    .expect("frame");
    damage(&seg.path, &rec[..n / 2], end);
    match scan::scan_segment(&seg.path).expect("scan").last() {
        Some(Err(scan::ScanError::TornTail { offset, .. })) => assert_eq!(offset, end),
        other => panic!("the scanner should see a torn tail, got {:?}", other),
    }
    let mut s = open(root.path(), &opts).expect("a torn tail must not stop the open");
    assert_eq!(s.last_index(), 10);
    // The tail was cut on disk too, and the log continues over it.
    assert!(scan::scan_segment(&seg.path)
        .expect("scan")
        .all(|r| r.is_ok()));
    append_n(&mut s, 11, 12, 2, 40);
    s.sync().expect("sync");
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.last_index(), 12);
    assert_eq!(s.term(12), Ok(2));
}

#[test]
fn flipped_bit_mid_segment_names_file_and_offset() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 20, 1, 30);
    s.sync().expect("sync");
    let seg = segments(&s).pop().expect("a segment");
    drop(s);
    let rec5 = record_of(&seg.path, 5);
    let at = rec5.offset + 12;
    let flipped = std::fs::read(&seg.path).expect("read")[at as usize] ^ 0x10;
    damage(&seg.path, &[flipped], at);
    let err = open(root.path(), &opts).expect_err("a flipped bit must stop the open");
    match &err {
        OpenError::Corrupt { file, offset, .. } => {
            assert_eq!(file, &seg.path);
            assert_eq!(*offset, rec5.offset);
        }
        other => panic!("expected Corrupt, got {:?}", other),
    }
    let msg = err.to_string();
    assert!(msg.contains(&seg.path.display().to_string()), "{}", msg);
    assert!(msg.contains(&format!("offset {}", rec5.offset)), "{}", msg);
    assert!(
        msg.contains(&format!("shoal-inspect verify {}", root.path().display())),
        "{}",
        msg
    );
    // The scanner reports the same place.
    let scanned = scan::scan_segment(&seg.path).expect("scan");
    match scanned.last() {
        Some(Err(scan::ScanError::Corrupt { offset, .. })) => assert_eq!(offset, rec5.offset),
        other => panic!("the scanner should report corruption, got {:?}", other),
    }
}

#[test]
fn flipped_bit_in_the_last_record_of_a_full_segment_is_corruption() {
    // A non-last segment was synced whole: even its last record cannot be a torn tail.
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let segs = several_segments(root.path(), &opts);
    let last = scan::scan_segment(&segs[0].path)
        .expect("scan")
        .map(|r| r.expect("clean"))
        .last()
        .expect("records");
    damage(&segs[0].path, &[0xFF], last.offset + 20);
    match open(root.path(), &opts) {
        Err(OpenError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, segs[0].path);
            assert_eq!(offset, last.offset);
        }
        other => panic!("expected Corrupt, got {:?}", other),
    }
}

#[test]
fn deleted_middle_segment_names_the_gap() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let segs = several_segments(root.path(), &opts);
    std::fs::remove_file(&segs[1].path).expect("delete a middle segment");
    let err = open(root.path(), &opts).expect_err("a missing segment must stop the open");
    match &err {
        OpenError::Corrupt { file, detail, .. } => {
            assert_eq!(file, &segs[2].path);
            assert!(detail.contains("gap"), "{}", detail);
            assert!(
                detail.contains(&format!(
                    "entries {}..={} are missing",
                    segs[1].first_index,
                    segs[2].first_index - 1
                )),
                "{}",
                detail
            );
        }
        other => panic!("expected Corrupt, got {:?}", other),
    }
    assert!(err.to_string().contains("shoal-inspect verify"));
}

#[test]
fn interrupted_truncation_is_completed_at_open() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 120, 1, 300);
    s.sync().expect("sync");
    assert!(segments(&s).len() >= 2);
    let log_dir = scan::log_dir(s.group_dir());
    drop(s);
    // A crash right after the intent became durable, before anything was cut.
    std::fs::write(
        log_dir.join(scan::TRUNCATE_INTENT_FILE),
        seglog::encode_intent(11),
    )
    .expect("write intent");
    let mut s = open(root.path(), &opts).expect("open completes the truncation");
    assert_eq!(s.last_index(), 10);
    assert_eq!(segments(&s).len(), 1);
    assert!(!log_dir.join(scan::TRUNCATE_INTENT_FILE).exists());
    append_n(&mut s, 11, 15, 2, 300);
    s.sync().expect("sync");
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.last_index(), 15);
    assert_eq!(s.term(11), Ok(2));
}

#[test]
fn interrupted_snapshot_install_is_completed_at_open() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 20, 1, 30);
    s.sync().expect("sync");
    let gdir = s.group_dir().to_path_buf();
    drop(s);
    // The snapshot was renamed into place but the log (of another history) not yet emptied.
    let meta = snapshot_meta(12, 2, b"state");
    let space = space::Space::new(root.path(), opts.space);
    let mut snaps =
        snapshot::Snapshots::open(&scan::snap_dir(&gdir), 2, true, space).expect("snaps");
    snaps.begin(&meta).expect("begin");
    snaps.write(0, b"state").expect("write");
    snaps.finish().expect("finish");
    drop(snaps);
    let s = open(root.path(), &opts).expect("open completes the install");
    assert_eq!(s.snapshot_index(), 12);
    assert_eq!(s.last_index(), 12);
    assert_eq!(s.term(12), Ok(2));
}

// ---------------------------------------------------------------------------------------------
// Identity.

fn identity(cluster_id: u64, node_id: u64, addr: &str) -> Identity {
    Identity {
        cluster_id,
        node_id,
        raft_addr: addr.into(),
    }
}

#[test]
fn identity_mismatch_is_refused_naming_both_values() {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join("data");
    let mine = identity(7001, 11, "127.0.0.1:7000");
    DataDir::bootstrap(&dir, &mine).expect("bootstrap");
    DataDir::open(&dir, &mine, IdentityCheck::default()).expect("same identity opens");
    // Bootstrapping again with the same identity is harmless.
    DataDir::bootstrap(&dir, &mine).expect("bootstrap twice");

    let err = DataDir::open(
        &dir,
        &identity(7001, 22, "127.0.0.1:7000"),
        IdentityCheck::default(),
    )
    .expect_err("another node id must be refused");
    assert!(matches!(
        err,
        OpenError::NodeMismatch {
            on_disk: 11,
            configured: 22,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("node 11") && msg.contains("node 22"),
        "{}",
        msg
    );

    let err = DataDir::open(
        &dir,
        &identity(7002, 11, "127.0.0.1:7000"),
        IdentityCheck::default(),
    )
    .expect_err("another cluster id must be refused");
    let msg = err.to_string();
    assert!(msg.contains("7001") && msg.contains("7002"), "{}", msg);

    let err = DataDir::bootstrap(&dir, &identity(7002, 11, "127.0.0.1:7000"))
        .expect_err("bootstrap over another cluster's dir must be refused");
    assert!(matches!(err, OpenError::ClusterMismatch { .. }));

    let moved = identity(7001, 11, "127.0.0.1:7100");
    let err = DataDir::open(&dir, &moved, IdentityCheck::default())
        .expect_err("an address change must be refused by default");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:7000") && msg.contains("127.0.0.1:7100"),
        "{}",
        msg
    );
    DataDir::open(
        &dir,
        &moved,
        IdentityCheck {
            allow_addr_change: true,
        },
    )
    .expect("an allowed address change");
    assert_eq!(scan::read_identity(&dir).expect("read"), moved);
}

#[test]
fn missing_or_damaged_identity_is_refused() {
    let root = TempDir::new().expect("temp dir");
    let dir = root.path().join("data");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let id = identity(1, 2, "a:1");
    assert!(matches!(
        DataDir::open(&dir, &id, IdentityCheck::default()),
        Err(OpenError::NotInitialized { .. })
    ));
    DataDir::bootstrap(&dir, &id).expect("bootstrap");
    let path = dir.join(scan::IDENTITY_FILE);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[10] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(
        DataDir::open(&dir, &id, IdentityCheck::default()),
        Err(OpenError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Hard state.

#[test]
fn hard_state_survives_a_crash_mid_update() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let hs = |term: u64| HardState {
        term,
        vote: term % 3,
        commit: term * 10,
    };
    let mut s = open(root.path(), &opts).expect("open");
    s.save_hard_state(&hs(1)).expect("save");
    s.sync().expect("sync");
    s.save_hard_state(&hs(2)).expect("save");
    s.sync().expect("sync");
    let path = s.group_dir().join(scan::HARD_STATE_FILE);
    // The next save goes to the slot holding hs(1); tear it at every length.
    s.save_hard_state(&hs(3)).expect("save");
    let image = s.power_cut();
    let (_, slot, bytes) = image.hard_state.expect("a pending save");
    let original = std::fs::read(&path).expect("read");
    for cut in 0..=HS_SLOT_BYTES {
        let mut torn = original.clone();
        torn[slot * HS_SLOT_BYTES..slot * HS_SLOT_BYTES + cut].copy_from_slice(&bytes[..cut]);
        std::fs::write(&path, &torn).expect("write");
        let s = open(root.path(), &opts).expect("a torn slot must not stop the open");
        // The record is 42 bytes; the rest of the slot is zero padding.
        let expected = if cut >= 42 { hs(3) } else { hs(2) };
        assert_eq!(s.hard_state(), expected, "slot torn after {} bytes", cut);
        std::mem::forget(s); // keep the file exactly as torn for the next round
    }
    // Both slots damaged: refused, naming the file.
    let mut both = original.clone();
    both[3] ^= 0xFF;
    both[HS_SLOT_BYTES + 3] ^= 0xFF;
    std::fs::write(&path, &both).expect("write");
    match open(root.path(), &opts) {
        Err(OpenError::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Corrupt, got {:?}", other),
    }
    let st = hardstate::decode_file(&original).expect("decode");
    assert_eq!(st.state, hs(2));
}

// ---------------------------------------------------------------------------------------------
// Snapshots and compaction.

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

#[test]
fn snapshot_retention_keeps_n() {
    let root = TempDir::new().expect("temp dir");
    let mut opts = test_options(FsyncMode::Always);
    opts.keep_snapshots = 3;
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 50, 1, 20);
    s.sync().expect("sync");
    for k in 1..=6u64 {
        let data = vec![k as u8; 100 * k as usize];
        install(&mut s, &snapshot_meta(k * 5, 1, &data), &data);
    }
    let snap_dir = scan::snap_dir(s.group_dir());
    let infos = scan::list_snapshots(&snap_dir).expect("list");
    let kept: Vec<LogIndex> = infos.iter().map(|i| i.meta.index).collect();
    assert_eq!(kept, vec![20, 25, 30]);
    assert_eq!(s.snaps.files().len(), 3);
    for info in &infos {
        scan::verify_snapshot_data(info).expect("every kept snapshot is whole");
    }
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.snapshot_index(), 30);
    let mut buf = [0u8; 1000];
    assert_eq!(s.snapshot_read(0, &mut buf), Ok(600));
    assert!(buf[..600].iter().all(|&b| b == 6));
}

#[test]
fn damaged_snapshot_is_refused() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 10, 1, 20);
    let data = vec![9u8; 3000];
    install(&mut s, &snapshot_meta(10, 1, &data), &data);
    let info = scan::list_snapshots(&scan::snap_dir(s.group_dir()))
        .expect("list")
        .pop()
        .expect("a snapshot");
    drop(s);
    damage(&info.path, &[1], info.data_offset + 1234);
    match open(root.path(), &opts) {
        Err(OpenError::Corrupt { file, .. }) => assert_eq!(file, info.path),
        other => panic!("expected Corrupt, got {:?}", other),
    }
}

#[test]
fn compaction_deletes_whole_segments_below_the_snapshot_only() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 300, 1, 300);
    s.sync().expect("sync");
    let before = segments(&s);
    assert!(before.len() >= 5);
    // Nothing goes before a snapshot covers it.
    s.compact_prefix(250).expect("compact");
    assert_eq!(segments(&s).len(), before.len());
    let data = b"snap".to_vec();
    install(&mut s, &snapshot_meta(150, 1, &data), &data);
    s.compact_prefix(1000).expect("compact");
    let after = segments(&s);
    assert!(after.len() < before.len());
    assert!(
        after[0].first_index <= 151,
        "an entry after the snapshot was dropped"
    );
    assert_eq!(s.first_log_index(), after[0].first_index);
    assert_eq!(s.last_index(), 300);
    // Retired segments are unlinked in the background; nothing but live segments remains
    // (and the next segment's spare file, being prepared).
    seglog::wait_for_removals();
    let log_dir = scan::log_dir(s.group_dir());
    let names: Vec<String> = std::fs::read_dir(&log_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().filter(|n| n.starts_with("spare-")).count() <= 1);
    let files = names.iter().filter(|n| !n.starts_with("spare-")).count();
    assert_eq!(
        files,
        after.len(),
        "a retired segment was left in {log_dir:?}"
    );
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.last_index(), 300);
    assert_eq!(s.term(151), Ok(1));
}

#[test]
fn a_retired_segment_left_by_a_crash_is_removed_at_open() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 300, 1, 300);
    s.sync().expect("sync");
    let log_dir = scan::log_dir(s.group_dir());
    let live = segments(&s);
    drop(s);
    // As if compaction had renamed the first segment and the process died before the
    // background removal (a copy: the log itself stays whole).
    let retired = log_dir.join(format!(
        "00000000000000000000.log{}",
        seglog::RETIRED_SUFFIX
    ));
    std::fs::copy(&live[0].path, &retired).expect("copy");
    let s = open(root.path(), &opts).expect("reopen");
    assert!(!retired.exists(), "the retired file survived the open");
    assert_eq!(segments(&s), live);
    assert_eq!(s.last_index(), 300);
}

#[test]
fn compact_delay_keeps_segments_until_it_passes() {
    let root = TempDir::new().expect("temp dir");
    let mut opts = test_options(FsyncMode::Always);
    opts.compact_delay = Duration::from_millis(50);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 200, 1, 300);
    s.sync().expect("sync");
    let data = b"snap".to_vec();
    install(&mut s, &snapshot_meta(150, 1, &data), &data);
    let n = segments(&s).len();
    s.compact_prefix(150).expect("compact");
    assert_eq!(segments(&s).len(), n, "deleted before the delay");
    std::thread::sleep(Duration::from_millis(60));
    s.compact_prefix(150).expect("compact");
    assert!(segments(&s).len() < n, "not deleted after the delay");
}

// ---------------------------------------------------------------------------------------------
// Fsync modes.

#[test]
fn async_mode_syncs_in_the_background() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Async);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 10, 1, 20);
    s.sync().expect("sync");
    let syncer = s.syncer.as_ref().expect("async mode has a syncer");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while syncer.batches() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background fdatasync"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // A vote is durable when sync returns even in async mode.
    s.save_hard_state(&HardState {
        term: 4,
        vote: 2,
        commit: 0,
    })
    .expect("save");
    s.sync().expect("sync");
    assert!(s.hs.unsynced.is_none(), "a vote waited for the background");
}

#[test]
fn bad_options_are_refused() {
    let root = TempDir::new().expect("temp dir");
    let mut opts = StorageOptions {
        segment_bytes: 100,
        ..StorageOptions::default()
    };
    assert!(matches!(
        open(root.path(), &opts),
        Err(OpenError::BadOption {
            name: "segment_bytes",
            ..
        })
    ));
    opts = StorageOptions {
        keep_snapshots: 0,
        ..StorageOptions::default()
    };
    assert!(open(root.path(), &opts).is_err());
}

// ---------------------------------------------------------------------------------------------
// Scanners for tools.

#[test]
fn scanners_show_what_is_on_disk() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let dd = DataDir::bootstrap(&root.path().join("d"), &identity(5, 6, "x:1")).expect("boot");
    let mut s = dd.open_group(3, &opts).expect("open group");
    append_n(&mut s, 1, 100, 2, 200);
    s.save_hard_state(&HardState {
        term: 2,
        vote: 6,
        commit: 90,
    })
    .expect("save");
    s.sync().expect("sync");
    let data = vec![3u8; 500];
    install(&mut s, &snapshot_meta(40, 2, &data), &data);
    let gdir = s.group_dir().to_path_buf();
    drop(s);
    assert_eq!(scan::list_groups(dd.path()).expect("groups"), vec![3]);
    let mut next = 1;
    for seg in scan::list_segments(&scan::log_dir(&gdir)).expect("segments") {
        let sc = scan::scan_segment(&seg.path).expect("scan");
        assert_eq!(sc.header.group, 3);
        assert_eq!(sc.header.first_index, seg.first_index);
        let mut at = scan::HEADER_BYTES as u64;
        for r in sc {
            let r = r.expect("clean records");
            assert_eq!(r.offset, at);
            assert_eq!(r.entry.index, next);
            assert_eq!(r.entry.term, 2);
            assert_eq!(r.entry.data.len(), 200);
            at += r.len;
            next += 1;
        }
    }
    assert_eq!(next, 101);
    let hs = scan::read_hard_state(&gdir).expect("hard state");
    assert_eq!(hs.state.commit, 90);
    let snaps = scan::list_snapshots(&scan::snap_dir(&gdir)).expect("snapshots");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].meta.index, 40);
    assert_eq!(
        snaps[0].path.file_name().and_then(|n| n.to_str()),
        Some(scan::snapshot_name(40, 2).as_str())
    );
}

/// Recovery time of a long log: `cargo test -p shoal-std --release -- --ignored --nocapture
/// recovery_of_a_million_entries`.
#[test]
#[ignore]
fn recovery_of_a_million_entries() {
    let root = TempDir::new().expect("temp dir");
    let opts = StorageOptions::default();
    let n = 1_000_000u64;
    let mut s = open(root.path(), &opts).expect("open");
    let t = std::time::Instant::now();
    for index in 1..=n {
        let data = index.to_le_bytes();
        s.append(&EntryRef {
            index,
            term: 1 + index / 100_000,
            kind: EntryKind::Normal,
            data: &data[..],
        })
        .expect("append");
        if index % 1000 == 0 {
            s.sync().expect("sync");
        }
    }
    s.sync().expect("sync");
    let wrote = t.elapsed();
    let segs = s.segment_count();
    drop(s);
    let t = std::time::Instant::now();
    let s = open(root.path(), &opts).expect("reopen");
    let opened = t.elapsed();
    assert_eq!(s.last_index(), n);
    println!(
        "1M entries: wrote in {:?} ({} segments); open (recovery) took {:?}",
        wrote, segs, opened
    );
}

#[test]
fn damage_after_open_is_reported_by_reads() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Always);
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 10, 1, 30);
    s.sync().expect("sync");
    let seg = segments(&s).pop().expect("a segment");
    let rec3 = record_of(&seg.path, 3);
    damage(&seg.path, &[0xAA], rec3.offset + 10);
    let mut buf = [0u8; 4096];
    assert_eq!(
        s.read_entries(2, 5, &mut buf),
        Err(shoal_core::storage::StorageError::Corrupt {
            location: rec3.offset
        })
    );
    assert!(s.read_entries(4, 5, &mut buf).is_ok());
}

#[test]
fn a_background_sync_marks_durable_only_what_it_covered() {
    let root = TempDir::new().expect("temp dir");
    let mut s = FileStorage::open(root.path(), 0, &test_options(FsyncMode::Always)).expect("open");
    append_n(&mut s, 1, 6, 1, 40);
    let last = |s: &mut FileStorage| s.log.crash_image().pop().expect("a segment");
    let stale = s
        .begin_background_sync()
        .expect("begin")
        .expect("six unsynced entries");
    // The log is cut (synced) and refilled while that sync runs.
    s.truncate_suffix(3).expect("truncate");
    let (_, cut_at, _) = last(&mut s);
    append_n(&mut s, 3, 8, 2, 40);
    let (_, _, refilled) = last(&mut s);
    assert!(refilled > cut_at);
    stale.run().expect("fdatasync");
    s.background_synced(&stale);
    assert_eq!(
        last(&mut s).1,
        cut_at,
        "a sync begun before the cut vouches for none of the bytes written after it"
    );
    // A sync covers what was written when it began, not what came after.
    let fresh = s.begin_background_sync().expect("begin").expect("unsynced");
    append_n(&mut s, 9, 9, 2, 40);
    fresh.run().expect("fdatasync");
    s.background_synced(&fresh);
    let (_, durable, written) = last(&mut s);
    assert_eq!(durable, refilled);
    assert!(written > durable);
    // Nothing pending: nothing to run; other fsync modes never hand a sync out.
    s.sync().expect("sync");
    assert!(s.begin_background_sync().expect("begin").is_none());
    let root2 = TempDir::new().expect("temp dir");
    let mut a = FileStorage::open(root2.path(), 0, &test_options(FsyncMode::Async)).expect("open");
    append_n(&mut a, 1, 2, 1, 40);
    assert!(a.begin_background_sync().expect("begin").is_none());
}

#[test]
fn the_next_segment_is_a_zero_filled_spare_prepared_in_the_background() {
    use std::os::unix::fs::MetadataExt;
    let root = TempDir::new().expect("temp dir");
    let opts = StorageOptions {
        prefill_segments: true,
        ..test_options(FsyncMode::Always)
    };
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 3, 1, 100);
    s.sync().expect("sync");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spare = loop {
        if let Some(p) = s.log.spare_ready() {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no spare segment was prepared"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let bytes = std::fs::read(&spare).expect("read the spare");
    assert_eq!(bytes.len() as u64, opts.segment_bytes);
    assert!(
        bytes.iter().all(|&b| b == 0),
        "a spare is all written zeros"
    );
    let ino = std::fs::metadata(&spare).expect("stat").ino();
    // The first segment was reserved (no spare existed yet): the next append leaves it for the
    // spare at once, renamed, with its header.
    let first = segments(&s).len();
    append_n(&mut s, 4, 4, 1, 100);
    let next = 5;
    assert_eq!(
        segments(&s).len(),
        first + 1,
        "the reserved segment was left"
    );
    s.sync().expect("sync");
    let newest = segments(&s).pop().expect("a segment");
    assert_eq!(
        std::fs::metadata(&newest.path).expect("stat").ino(),
        ino,
        "the new segment is the prepared spare"
    );
    assert!(!spare.exists());
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert_eq!(s.last_index(), next - 1);
    for i in 1..next {
        assert_eq!(s.term(i), Ok(1));
    }
    // A spare is a `.tmp` file: one left by a crash is removed at the next open.
    let log_dir = scan::log_dir(s.group_dir());
    drop(s);
    let stray = log_dir.join("spare-1-1.tmp");
    std::fs::write(&stray, [0u8; 64]).expect("write a stray spare");
    let s = open(root.path(), &opts).expect("reopen");
    assert!(!stray.exists());
    assert_eq!(s.last_index(), next - 1);
}

/// Bytes of every file under `dir` (their lengths; preallocated space counts whole).
fn dir_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| {
            let md = e.metadata().expect("stat");
            if md.is_dir() {
                dir_file_bytes(&e.path())
            } else {
                md.len()
            }
        })
        .sum()
}

#[test]
fn segments_start_small_and_double_while_the_group_writes() {
    let root = TempDir::new().expect("temp dir");
    let opts = StorageOptions {
        initial_segment_bytes: 4 << 10,
        segment_bytes: 64 << 10,
        ..test_options(FsyncMode::Always)
    };
    let s = open(root.path(), &opts).expect("open");
    // A new group: one small segment, nothing else of size.
    let gdir = s.group_dir().to_path_buf();
    assert!(
        dir_file_bytes(&gdir) <= (4 << 10) + 1024,
        "a new group holds {} bytes",
        dir_file_bytes(&gdir)
    );
    drop(s);
    let mut s = open(root.path(), &opts).expect("reopen");
    append_n(&mut s, 1, 200, 1, 1000);
    s.sync().expect("sync");
    let sizes = |s: &FileStorage| -> Vec<u64> {
        segments(s)
            .iter()
            .map(|f| std::fs::metadata(&f.path).expect("stat").len())
            .collect()
    };
    let grown = sizes(&s);
    assert_eq!(
        &grown[..5],
        &[4 << 10, 8 << 10, 16 << 10, 32 << 10, 64 << 10],
        "each segment twice the last"
    );
    assert!(grown[5..].iter().all(|&b| b == 64 << 10), "{grown:?}");
    // Reopened, the log goes on at the size it had reached.
    drop(s);
    let mut s = open(root.path(), &opts).expect("reopen");
    append_n(&mut s, 201, 400, 1, 1000);
    s.sync().expect("sync");
    let after = sizes(&s);
    assert!(
        after[grown.len()..].iter().all(|&b| b == 64 << 10),
        "{after:?}"
    );
    for i in 1..=400 {
        assert_eq!(s.term(i), Ok(1));
    }
}

#[test]
fn only_a_busy_log_gets_a_spare_segment() {
    let root = TempDir::new().expect("temp dir");
    let opts = StorageOptions {
        prefill_segments: true,
        initial_segment_bytes: 8 << 10,
        segment_bytes: 64 << 10,
        ..test_options(FsyncMode::Always)
    };
    let mut s = open(root.path(), &opts).expect("open");
    append_n(&mut s, 1, 2, 1, 100);
    s.sync().expect("sync");
    assert!(!s.log.has_spare(), "an idle group has no spare");
    drop(s);
    let mut s = open(root.path(), &opts).expect("reopen");
    assert!(!s.log.has_spare(), "nor when it is opened again");
    // Half the first segment written: the group is busy, its next segment is prepared.
    append_n(&mut s, 3, 6, 1, 1000);
    assert!(s.log.has_spare(), "a busy group has a spare");
    drop(s);
    let s = open(root.path(), &opts).expect("reopen");
    assert!(s.log.has_spare(), "a busy log reopened gets one too");
}

#[test]
fn a_data_dir_is_used_by_one_process_at_a_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("d");
    let me = identity(1, 1, "127.0.0.1:7001");
    let first = DataDir::start(&dir, &me, IdentityCheck::default()).expect("first start");
    let holder = crate::storage::DirLock::holder(&dir).expect("held");
    assert!(
        holder.contains(&format!("pid {}", std::process::id())),
        "{holder}"
    );
    let err = DataDir::start(&dir, &me, IdentityCheck::default()).expect_err("second start");
    let text = err.to_string();
    assert!(matches!(err, OpenError::Locked { .. }), "{text}");
    assert!(
        text.contains("in use by another process") && text.contains("pid"),
        "{text}"
    );
    let err = DataDir::open(&dir, &me, IdentityCheck::default()).expect_err("open while held");
    assert!(matches!(err, OpenError::Locked { .. }), "{err}");
    drop(first);
    assert!(crate::storage::DirLock::holder(&dir).is_none());
    DataDir::start(&dir, &me, IdentityCheck::default()).expect("free again");
}

mod snapbg;
