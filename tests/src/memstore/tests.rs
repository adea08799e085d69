//! The model's promises: torn tails cut and never taken for corruption, damage of every kind
//! found at recovery where it is, reads held to their CRC, power cuts keeping a prefix.

use super::*;

fn append(s: &mut MemStorage, index: LogIndex, term: Term, data: &[u8]) {
    s.append(&EntryRef::normal(index, term, data))
        .expect("append in a test");
}

/// What describes a snapshot of `data` at `index` of term 1.
fn meta_of(index: u64, data: &[u8]) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term: 1,
        size_bytes: data.len() as u64,
        crc: CRC32C.checksum(data),
        ..SnapshotMeta::default()
    }
}

/// Save the hard state (`term`, `vote`, `commit`) and sync it.
fn save_and_sync(s: &mut MemStorage, term: u64, vote: u64, commit: u64) {
    s.save_hard_state(&HardState { term, vote, commit })
        .expect("save");
    s.sync().expect("sync");
}

/// A storage with entries `1..=n` of term 1, all synced.
fn synced_log(n: u64) -> MemStorage {
    let mut s = MemStorage::new();
    for i in 1..=n {
        append(&mut s, i, 1, &[i as u8; 40]);
    }
    s.sync().expect("sync");
    s
}

#[test]
fn torn_tail_cut_short_is_dropped_not_corrupt() {
    let s = synced_log(5);
    let last_at = s.record_offset(5).expect("entry 5 exists");
    let disk = s.shutdown();
    for cut in 0..(disk.durable_log_range().end - last_at) {
        let mut d = disk.clone();
        d.log.truncate((last_at + cut - d.log_start) as usize);
        let r = MemStorage::recover(d).expect("a torn tail is not corruption");
        assert_eq!(r.last_index(), 4, "cut {} bytes into the last record", cut);
        assert_eq!(
            r.disk().durable_log_range().end,
            last_at,
            "recovery cuts the tail off the medium"
        );
    }
    // Unharmed, all five come back.
    assert_eq!(
        MemStorage::recover(disk).expect("clean log").last_index(),
        5
    );
}

#[test]
fn torn_tail_with_zeroed_data_is_dropped_not_corrupt() {
    let s = synced_log(5);
    let last_at = s.record_offset(5).expect("entry 5 exists");
    let disk = s.shutdown();
    let end = disk.durable_log_range().end;
    for from in last_at + 4..end {
        let mut d = disk.clone();
        let k = (from - d.log_start) as usize;
        d.log[k..].fill(0);
        let r = MemStorage::recover(d).expect("a zeroed tail is a torn write");
        assert_eq!(r.last_index(), 4, "zeroed from offset {}", from);
    }
}

#[test]
fn damage_before_the_last_record_is_corrupt_with_its_offset() {
    let s = synced_log(6);
    for index in 1..=5 {
        let at = s.record_offset(index).expect("entry exists");
        for byte in [0, 3, 4, 9, 30] {
            let mut d = s.clone().shutdown();
            d.corrupt_bit(at + byte, (byte % 8) as u8)
                .expect("durable byte");
            assert_eq!(
                MemStorage::recover(d).map(|r| r.last_index()),
                Err(StorageError::Corrupt { location: at }),
                "entry {} byte {}",
                index,
                byte
            );
        }
    }
}

#[test]
fn random_bit_rot_is_always_reported() {
    for seed in 0..200 {
        let mut s = synced_log(8);
        let at = s.corrupt_random_bit(seed).expect("eight records");
        assert_eq!(
            s.try_crash(seed).map(|r| r.last_index()),
            Err(StorageError::Corrupt { location: at }),
            "seed {}",
            seed
        );
    }
}

#[test]
fn corrupt_location_is_a_logical_offset_after_compaction() {
    let mut s = synced_log(30);
    let meta = meta_of(20, &[]);
    s.snapshot_begin(&meta).expect("begin");
    s.snapshot_finish().expect("finish");
    s.compact_prefix(20).expect("compact");
    let at = s.record_offset(25).expect("entry 25 kept");
    assert!(
        s.disk().durable_log_range().start > 0,
        "compaction dropped bytes"
    );
    s.corrupt_bit(at + 7, 2).expect("durable byte");
    assert_eq!(
        s.try_crash(1).map(|r| r.last_index()),
        Err(StorageError::Corrupt { location: at })
    );
}

#[test]
fn fault_requests_outside_the_durable_log_are_refused() {
    let mut s = synced_log(2);
    let end = s.disk().durable_log_range().end;
    assert_eq!(
        s.corrupt_bit(end, 0),
        Err(FaultError::OutOfRange {
            offset: end,
            durable: 0..end
        })
    );
    assert_eq!(s.corrupt_bit(0, 8), Err(FaultError::BadBit(8)));
    let mut one = synced_log(1);
    assert_eq!(
        one.corrupt_random_bit(3),
        None,
        "the only record cannot be told from a torn one"
    );
}

#[test]
fn a_flipped_read_fails_its_check_and_the_medium_keeps_the_good_bytes() {
    let mut buf = vec![0u8; 4096];
    for seed in 0..100 {
        let mut s = synced_log(6);
        let index = s.flip_on_read(3, seed).expect("a log to flip");
        assert!((3..=6).contains(&index), "seed {seed}: {index}");
        let at = s.record_offset(index).expect("entry exists");
        assert_eq!(
            s.read_entries(1, 6, &mut buf),
            Err(StorageError::Corrupt { location: at }),
            "seed {seed}"
        );
        if index > 1 {
            let before = s
                .read_entries(1, index - 1, &mut buf)
                .expect("intact entries");
            assert_eq!(before.count as u64, index - 1);
        }
        let written = s
            .read_entries_as_written(1, 6, &mut buf)
            .expect("as written");
        assert_eq!(written.count, 6);
        // A restart reads the medium afresh: the flip is gone.
        let r = s.crash(seed);
        assert_eq!(r.read_flips(), 0);
        assert_eq!(r.read_entries(1, 6, &mut buf).map(|g| g.count), Ok(6));
    }
}

#[test]
fn unchecked_reads_hand_back_damaged_payloads() {
    let mut buf = vec![0u8; 4096];
    let mut damaged = 0;
    for seed in 0..100 {
        let mut s = synced_log(4);
        s.set_unchecked_reads(true);
        s.flip_on_read(1, seed).expect("a log to flip");
        let got = s.read_entries(1, 4, &mut buf).expect("no check, no error");
        let mut good = vec![0u8; 4096];
        let want = s
            .read_entries_as_written(1, 4, &mut good)
            .expect("as written");
        if buf[..got.bytes] != good[..want.bytes] {
            damaged += 1;
        }
    }
    assert!(damaged > 50, "most flips land in the body: {damaged}");
}

#[test]
fn flips_go_with_the_records_they_damage() {
    let mut buf = vec![0u8; 4096];
    let mut s = synced_log(6);
    // Entries 5 and 6 only, then cut them off: reads are clean again.
    s.flip_on_read(5, 1).expect("flip");
    s.truncate_suffix(5).expect("cut");
    assert_eq!(s.read_flips(), 0);
    assert_eq!(s.read_entries(1, 4, &mut buf).map(|g| g.count), Ok(4));
}

#[test]
fn every_kind_of_damage_to_a_stopped_disk_is_found_at_recovery() {
    for kind in Damage::ALL {
        for seed in 0..50 {
            let mut s = synced_log(8);
            let data = b"the state";
            let meta = meta_of(2, data);
            s.snapshot_begin(&meta).expect("begin");
            s.snapshot_write(0, data).expect("write");
            s.snapshot_finish().expect("finish");
            save_and_sync(&mut s, 1, 1, 8);
            let mut disk = s.shutdown();
            let at = disk.damage(kind, seed).expect("something to damage");
            let found = MemStorage::recover(disk);
            match kind {
                Damage::Snapshot => {
                    // The log is fine; the data no longer matches its checksum, which the
                    // driver checks when it restores the state machine from it.
                    let r = found.expect("the log recovers");
                    let mut data = vec![0u8; 64];
                    let n = r.snapshot_read(0, &mut data).expect("read");
                    assert_ne!(
                        CRC32C.checksum(&data[..n]),
                        r.snapshot_meta().expect("snapshot").crc
                    );
                }
                _ => assert_eq!(
                    found.map(|r| r.last_index()),
                    Err(StorageError::Corrupt { location: at }),
                    "{kind:?} seed {seed}"
                ),
            }
        }
    }
}

#[test]
fn damaged_hard_state_file_is_corrupt() {
    let mut s = MemStorage::new();
    save_and_sync(&mut s, 4, 2, 1);
    let mut disk = s.shutdown();
    disk.hard_state[7] ^= 0x10;
    assert_eq!(
        MemStorage::recover(disk).map(|r| r.hard_state()),
        Err(StorageError::Corrupt { location: 0 })
    );
}

#[test]
fn power_cuts_keep_a_prefix_and_sometimes_tear() {
    let mut torn = 0;
    let mut lengths = std::collections::BTreeSet::new();
    for seed in 0..300 {
        let mut s = synced_log(10);
        for i in 11..=20 {
            append(&mut s, i, 2, &[7; 100]);
        }
        let r = s.crash(seed);
        let last = r.last_index();
        assert!((10..=20).contains(&last), "seed {}: last {}", seed, last);
        assert_eq!(r.term(last), Ok(if last > 10 { 2 } else { 1 }));
        torn += r.stats().torn_writes;
        lengths.insert(last);
        assert_eq!(r.stats().crashes, 1);
    }
    assert!(torn > 50, "tearing must actually happen ({} of 300)", torn);
    assert_eq!(lengths.len(), 11, "every prefix length should occur");
}

#[test]
fn counters_count() {
    let mut s = MemStorage::new();
    append(&mut s, 1, 1, b"abc");
    save_and_sync(&mut s, 1, 1, 0);
    let st = s.stats();
    assert_eq!(st.syncs, 1);
    assert_eq!(st.hard_state_writes, 1);
    assert_eq!(st.log_bytes_written, s.disk().durable_log_range().end);
    assert_eq!(s.unsynced_writes(), 0);
    append(&mut s, 2, 1, b"d");
    assert_eq!(s.unsynced_writes(), 1);
}

#[test]
fn snapshot_with_wrong_size_or_crc_is_refused() {
    let mut s = MemStorage::new();
    let data = b"state machine bytes";
    let meta = meta_of(3, data);
    s.snapshot_begin(&meta).expect("begin");
    s.snapshot_write(0, &data[..5]).expect("write");
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::SnapshotState),
        "finish before every byte arrived"
    );
    s.snapshot_write(5, &data[5..]).expect("write");
    assert_eq!(
        s.snapshot_write(data.len() as u64, b"x"),
        Err(StorageError::SnapshotState),
        "past size_bytes"
    );
    s.snapshot_finish().expect("complete snapshot");
    let bad = SnapshotMeta {
        crc: meta.crc ^ 1,
        index: 4,
        ..meta.clone()
    };
    s.snapshot_begin(&bad).expect("begin");
    s.snapshot_write(0, data).expect("write");
    assert_eq!(
        s.snapshot_finish(),
        Err(StorageError::Corrupt { location: 0 })
    );
    assert_eq!(
        s.snapshot_meta(),
        Some(meta),
        "the bad snapshot must not become current"
    );
}

#[test]
fn long_logs_stay_linear() {
    // 50k appends with periodic syncs, crashes and compactions: quadratic code would crawl.
    let mut s = MemStorage::new();
    let mut last = 0;
    for round in 0..10u64 {
        for _ in 0..5000 {
            last += 1;
            append(&mut s, last, 1, &[3; 64]);
            if last % 64 == 0 {
                s.sync().expect("sync");
            }
        }
        s = s.crash(round);
        last = s.last_index();
        if round % 3 == 2 {
            let meta = meta_of(last, &[]);
            s.snapshot_begin(&meta).expect("begin");
            s.snapshot_finish().expect("finish");
            s.compact_prefix(last - 100).expect("compact");
        }
    }
    assert!(s.disk().durable_log_range().start > 0);
}
