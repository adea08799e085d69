//! Opening after a crash or damage: torn tails cut, corruption refused with its file and
//! offset, interrupted truncations and installs completed; the data dir's identity; the
//! hard-state slots.

use super::*;

/// After a recovery that left entries 1 to 10, entries 11 to `hi` of term 2 (`len` bytes
/// each) are appended and survive a restart: the log goes on over what recovery cut.
fn goes_on(mut s: FileStorage, hi: LogIndex, len: usize, dir: &Path, opts: &StorageOptions) {
    append_n(&mut s, 11, hi, 2, len);
    let s = reopen(s, dir, opts);
    assert_eq!(s.last_index(), hi);
    assert_eq!((s.term(11), s.term(hi)), (Ok(2), Ok(2)));
}

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
    let (root, opts) = fresh();
    let seg = newest_segment(root.path(), &opts, 10, 40);
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
    let s = open(root.path(), &opts).expect("a torn tail must not stop the open");
    assert_eq!(s.last_index(), 10);
    // The tail was cut on disk too, and the log continues over it.
    assert!(scan::scan_segment(&seg.path)
        .expect("scan")
        .all(|r| r.is_ok()));
    goes_on(s, 12, 40, root.path(), &opts);
}

#[test]
fn flipped_bit_mid_segment_names_file_and_offset() {
    let (root, opts) = fresh();
    let seg = newest_segment(root.path(), &opts, 20, 30);
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
    let (root, opts) = fresh();
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
    let (root, opts) = fresh();
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
    let (root, opts) = fresh();
    let s = synced_log(root.path(), &opts, 120, 300);
    assert!(segments(&s).len() >= 2);
    let log_dir = scan::log_dir(s.group_dir());
    drop(s);
    // A crash right after the intent became durable, before anything was cut.
    std::fs::write(
        log_dir.join(scan::TRUNCATE_INTENT_FILE),
        seglog::encode_intent(11),
    )
    .expect("write intent");
    let s = open(root.path(), &opts).expect("open completes the truncation");
    assert_eq!(s.last_index(), 10);
    assert_eq!(segments(&s).len(), 1);
    assert!(!log_dir.join(scan::TRUNCATE_INTENT_FILE).exists());
    goes_on(s, 15, 300, root.path(), &opts);
}

#[test]
fn interrupted_snapshot_install_is_completed_at_open() {
    let (root, opts) = fresh();
    let s = synced_log(root.path(), &opts, 20, 30);
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
    let (root, opts) = fresh();
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
