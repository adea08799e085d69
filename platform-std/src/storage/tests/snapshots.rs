//! Snapshots kept and refused, and the compaction of the log below them.

use super::*;

#[test]
fn snapshot_retention_keeps_n() {
    let root = TempDir::new().expect("temp dir");
    let mut opts = test_options(FsyncMode::Always);
    opts.keep_snapshots = 3;
    let mut s = synced_log(root.path(), &opts, 50, 20);
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
    let (root, opts) = fresh();
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
    let (root, opts) = fresh();
    let mut s = synced_log(root.path(), &opts, 300, 300);
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
    let (root, opts) = fresh();
    let s = synced_log(root.path(), &opts, 300, 300);
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
    let mut s = synced_log(root.path(), &opts, 200, 300);
    let data = b"snap".to_vec();
    install(&mut s, &snapshot_meta(150, 1, &data), &data);
    let n = segments(&s).len();
    s.compact_prefix(150).expect("compact");
    assert_eq!(segments(&s).len(), n, "deleted before the delay");
    std::thread::sleep(Duration::from_millis(60));
    s.compact_prefix(150).expect("compact");
    assert!(segments(&s).len() < n, "not deleted after the delay");
}
