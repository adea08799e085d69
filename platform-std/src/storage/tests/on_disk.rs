//! The storage at work on disk: fsync modes, refused options, the scanners tools read it
//! with, large logs, background syncs, spare and growing segments, and the data dir lock.

use super::*;

#[test]
fn async_mode_syncs_in_the_background() {
    let root = TempDir::new().expect("temp dir");
    let opts = test_options(FsyncMode::Async);
    let mut s = synced_log(root.path(), &opts, 10, 20);
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
    let (root, opts) = fresh();
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
    let (root, opts) = fresh();
    // Reopened: the entries a log has just written are read from its memory, not the file.
    let s = reopen(synced_log(root.path(), &opts, 10, 30), root.path(), &opts);
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
        .begin_background_sync(false)
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
    let fresh = s
        .begin_background_sync(false)
        .expect("begin")
        .expect("unsynced");
    append_n(&mut s, 9, 9, 2, 40);
    fresh.run().expect("fdatasync");
    s.background_synced(&fresh);
    let (_, durable, written) = last(&mut s);
    assert_eq!(durable, refilled);
    assert!(written > durable);
    // Nothing pending: nothing to run; other fsync modes never hand a sync out.
    s.sync().expect("sync");
    assert!(s.begin_background_sync(false).expect("begin").is_none());
    let root2 = TempDir::new().expect("temp dir");
    let mut a = FileStorage::open(root2.path(), 0, &test_options(FsyncMode::Async)).expect("open");
    append_n(&mut a, 1, 2, 1, 40);
    assert!(a.begin_background_sync(false).expect("begin").is_none());
}

#[test]
fn the_next_segment_is_a_zero_filled_spare_prepared_in_the_background() {
    use std::os::unix::fs::MetadataExt;
    let root = TempDir::new().expect("temp dir");
    let opts = StorageOptions {
        prefill_segments: true,
        ..test_options(FsyncMode::Always)
    };
    let mut s = synced_log(root.path(), &opts, 3, 100);
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
    let s = synced_log(root.path(), &opts, 2, 100);
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
