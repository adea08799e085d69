//! Snapshots written off the raft thread (`begin_background_snapshot`, `SnapshotJob::run`,
//! `finish_background_snapshot`): a crash at any point before the raft thread learned of one
//! leaves the old snapshot or the new one, complete, and always the whole log.

use shoal_core::driver::SnapshotPlan;

use super::*;
use crate::storage::snapshot::snapshot_name;

fn plan(index: LogIndex) -> SnapshotPlan {
    SnapshotPlan {
        index,
        term: 1,
        membership: Membership::new(&[1], &[]).expect("valid"),
    }
}

/// A data dir in a temp dir, with the test options.
struct Dir {
    _root: TempDir,
    dir: PathBuf,
    opts: StorageOptions,
}

impl Dir {
    /// A storage holding entries 1..=40 and a snapshot at 10, synced.
    fn with_old_snapshot() -> (Dir, FileStorage) {
        let root = TempDir::new().expect("temp dir");
        let at = Dir {
            dir: root.path().join("n"),
            _root: root,
            opts: test_options(FsyncMode::Always),
        };
        let mut s = open(&at.dir, &at.opts).expect("open");
        append_n(&mut s, 1, 40, 1, 100);
        s.sync().expect("sync");
        let data = b"old state";
        install(&mut s, &plan(10).meta(9, CRC32C.checksum(data)), data);
        (at, s)
    }

    /// Cut the power and open the storage again.
    fn crash(&self, s: FileStorage) -> FileStorage {
        let image = s.power_cut();
        apply_power_cut(&image, 7);
        open(&self.dir, &self.opts).expect("recovery")
    }
}

fn assert_log_whole(s: &FileStorage) {
    assert_eq!(s.last_index(), 40);
    assert!(
        s.first_log_index() <= 11,
        "nothing compacted past the old snapshot"
    );
    for i in 11..=40 {
        assert_eq!(s.term(i), Ok(1), "entry {i}");
    }
}

#[test]
fn a_crash_before_the_background_snapshot_finished_leaves_the_old_one_and_the_log() {
    let (at, mut s) = Dir::with_old_snapshot();
    // Begun, and its thread died half-way through writing the temp file.
    let _job = s.begin_background_snapshot(plan(30)).expect("begin");
    let mut tmp = scan::snap_dir(s.group_dir())
        .join(snapshot_name(30, 1))
        .into_os_string();
    tmp.push(".bg.tmp");
    std::fs::write(&tmp, b"half a snapsh").expect("partial temp file");
    let s = at.crash(s);
    assert_eq!(s.snapshot_meta().map(|m| m.index), Some(10));
    assert!(!Path::new(&tmp).exists(), "the partial snapshot is deleted");
    assert_log_whole(&s);
}

#[test]
fn a_crash_after_the_rename_but_before_the_raft_thread_learned_keeps_the_log_whole() {
    let (at, mut s) = Dir::with_old_snapshot();
    let job = s.begin_background_snapshot(plan(30)).expect("begin");
    let data = vec![5u8; 3000];
    let written = job.run(&data).expect("written");
    assert_eq!(written.meta().size_bytes, 3000);
    // Not adopted yet: the old snapshot is still the one served.
    assert_eq!(s.snapshot_meta().map(|m| m.index), Some(10));
    let mut buf = [0u8; 16];
    assert_eq!(s.snapshot_read(0, &mut buf), Ok(9));
    drop(written);
    let s = at.crash(s);
    // In place and durable: it is the current one, complete (open checks its CRC).
    assert_eq!(s.snapshot_meta().map(|m| m.index), Some(30));
    assert_log_whole(&s);
}

#[test]
fn a_refused_background_snapshot_is_discarded_and_the_next_one_becomes_current() {
    let (at, mut s) = Dir::with_old_snapshot();
    let job = s.begin_background_snapshot(plan(30)).expect("begin");
    fsutil::inject::fail(fsutil::inject::Op::Write, libc::ENOSPC, 1);
    let failed = job.run(&[1u8; 100]);
    fsutil::inject::clear();
    assert!(matches!(&failed, Err(e) if !e.fatal));
    assert_eq!(
        s.finish_background_snapshot(failed),
        Err(StorageError::Full)
    );
    let snap_dir = scan::snap_dir(s.group_dir());
    let names: Vec<_> = std::fs::read_dir(&snap_dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "only the old snapshot: {names:?}");
    assert_eq!(s.snapshot_meta().map(|m| m.index), Some(10));
    // Retried: now it is current, served and kept across a reopen.
    let job = s.begin_background_snapshot(plan(35)).expect("begin");
    let meta = s
        .finish_background_snapshot(job.run(b"new state"))
        .expect("adopted");
    assert_eq!(meta.index, 35);
    assert_eq!(s.snapshot_meta(), Some(meta.clone()));
    let mut buf = [0u8; 16];
    assert_eq!(s.snapshot_read(0, &mut buf), Ok(9));
    assert_eq!(&buf[..9], b"new state");
    let s = at.crash(s);
    assert_eq!(s.snapshot_meta(), Some(meta));
}
