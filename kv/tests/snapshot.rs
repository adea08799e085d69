//! Snapshot round trips, digests and determinism across replicas.
mod common;

use common::*;
use shoal_core::io::{SnapshotError, StateMachine};
use shoal_kv::*;

/// A workload touching every node kind, sessions, waiters and expiry.
fn workload(d: &mut Driver, round: u64) {
    let k = |s: &str| format!("{}{}", s, round % 3);
    d.run(1, mkdir("app"));
    d.run(1, put(&k("app.v"), &format!("value-{}", round)));
    d.run(
        2,
        Op::PutTemp {
            key: k("app.t").as_bytes(),
            value: b"tmp",
            ttl_ms: 50 + round * 7 % 40,
        },
    );
    d.run(
        3,
        Op::MakeTempDir {
            key: k("td").as_bytes(),
            ttl_ms: 120,
        },
    );
    d.run(3, put(&format!("{}.x", k("td")), "inside"));
    d.run(4, try_lock("app.lock", 40, 0));
    d.run(5, try_lock("app.lock", 30, 100));
    d.run(6, try_lock("app.lock", 30, 10));
    if round & 3 == 0 {
        d.run(4, unlock("app.lock"));
    }
    d.run(1, remove(&k("app.v")));
    d.time_ms += 25;
    d.expire(d.time_ms);
}

/// The digest is CRC-64/XZ of the snapshot encoding, whichever way it is computed: a
/// microcontroller computes it bit by bit (no table, to save flash), a server with a table, and
/// both must agree for a mixed cluster's replicas to compare.
#[test]
fn the_digest_is_crc64_of_the_snapshot_computed_with_or_without_a_table() {
    let mut d = Driver::new(small());
    for round in 0..6 {
        workload(&mut d, round);
    }
    let bytes = snapshot(&d.kv);
    let bitwise = crc::Crc::<u64, crc::NoTable>::new(&crc::CRC_64_XZ).checksum(&bytes);
    let table = crc::Crc::<u64, crc::Table<1>>::new(&crc::CRC_64_XZ).checksum(&bytes);
    assert_eq!(bitwise, table);
    assert_eq!(d.kv.digest(), bitwise);
    // And it covers the contents: one more write changes it.
    d.run(1, put("app.extra", "x"));
    assert_ne!(d.kv.digest(), bitwise);
}

#[test]
fn snapshot_round_trip_keeps_the_digest() {
    let mut d = Driver::new(small());
    for round in 0..12 {
        workload(&mut d, round);
    }
    assert!(d.kv.node_count() > 3);
    let bytes = snapshot(&d.kv);
    assert_eq!(&bytes[..4], b"DTKV");
    let mut w = VecWriter::default();
    d.kv.snapshot(&mut w).unwrap();
    assert_eq!(w.0, bytes, "snapshots are deterministic");
    let mut other = Driver::new(small());
    other.kv.restore(d.index, &mut SliceReader(&bytes)).unwrap();
    assert_eq!(other.kv.digest(), d.kv.digest());
    assert_eq!(snapshot(&other.kv), bytes);
    assert_eq!(other.kv.applied_index(), d.index);
    assert_eq!(other.kv.now_ms(), d.kv.now_ms());
    assert_eq!(other.kv.next_expiry_ms(), d.kv.next_expiry_ms());
    // The watch history restarts at the snapshot.
    assert_eq!(
        other.kv.events_since(d.index, b"", |_| {}),
        Err(WatchError::Compacted {
            oldest_available: d.index + 1
        })
    );
    assert!(other.kv.events_since(d.index + 1, b"", |_| {}).is_ok());
}

#[test]
fn replicas_fed_the_same_commands_agree_and_restore_then_continue_matches() {
    let mut a = Driver::new(small());
    let mut b = Driver::new(small());
    let mut c = Driver::new(small());
    for round in 0..30 {
        workload(&mut a, round);
        workload(&mut b, round);
        if round == 10 || round == 20 {
            // c catches up from a snapshot of a, then continues from the log.
            let bytes = snapshot(&a.kv);
            c.kv.restore(a.index, &mut SliceReader(&bytes)).unwrap();
            c.index = a.index;
            c.time_ms = a.time_ms;
            c.seqs = a.seqs.clone();
        } else if round > 10 {
            workload(&mut c, round);
        }
        assert_eq!(a.kv.digest(), b.kv.digest());
        if round >= 10 {
            assert_eq!(a.kv.digest(), c.kv.digest(), "round {}", round);
        }
    }
    // A session's write after the restore, and its retry (at a later clock), deduplicated on
    // both; another write with that sequence number is refused on both.
    let seq = *a.seqs.get(&1).unwrap() + 1;
    let cmd = |op, time_ms| Command {
        client_id: 1,
        seq,
        time_ms,
        op,
    };
    let t = a.time_ms;
    for d in [&mut a, &mut c] {
        assert!(!d.raw(cmd(put("zz", "z"), t)).deduplicated);
        let retry = d.raw(cmd(put("zz", "z"), t + 5));
        assert!(retry.deduplicated, "{:?}", retry.result);
        assert_eq!(retry.result, WriteResult::Done);
        let other = d.raw(cmd(put("zz", "y"), t + 6));
        assert_eq!(
            (other.result, other.deduplicated),
            (WriteResult::Failed(KvError::SessionReused), false)
        );
        assert_eq!(d.value("zz").unwrap(), b"z");
    }
    assert_eq!(a.kv.digest(), c.kv.digest());
    // Fingerprints are not in snapshots: a replica restored since the session's last write
    // answers another write with its sequence number from the table, as a retry; neither
    // applies it, so the states stay equal.
    let bytes = snapshot(&a.kv);
    let mut r = Driver::new(small());
    r.kv.restore(a.index, &mut SliceReader(&bytes)).unwrap();
    r.index = a.index;
    let other = r.raw(cmd(put("zz", "x"), t + 7));
    assert!(other.deduplicated);
    let other = a.raw(cmd(put("zz", "x"), t + 7));
    assert_eq!(other.result, WriteResult::Failed(KvError::SessionReused));
    assert_eq!(r.value("zz").unwrap(), b"z");
    assert_eq!(a.kv.digest(), r.kv.digest());
}

#[test]
fn damaged_snapshots_are_refused() {
    let mut d = Driver::new(small());
    for round in 0..5 {
        workload(&mut d, round);
    }
    let bytes = snapshot(&d.kv);
    let mut other = Driver::new(small());
    for i in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x40;
        let r = other.kv.restore(d.index, &mut SliceReader(&bad));
        assert!(r.is_err(), "flip at {} accepted", i);
        assert_eq!(other.kv.node_count(), 1);
        assert_eq!(other.kv.applied_index(), 0);
    }
    let r = other
        .kv
        .restore(d.index, &mut SliceReader(&bytes[..bytes.len() - 3]));
    assert_eq!(r, Err(SnapshotError::Malformed));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        other.kv.restore(d.index, &mut SliceReader(&longer)),
        Err(SnapshotError::Malformed)
    );
    assert_eq!(
        other.kv.restore(d.index + 1, &mut SliceReader(&bytes)),
        Err(SnapshotError::Malformed)
    );
    // A store too small for the snapshot says so.
    let mut tiny = small();
    tiny.max_nodes = 3;
    let mut tiny = Driver::new(tiny);
    assert_eq!(
        tiny.kv.restore(d.index, &mut SliceReader(&bytes)),
        Err(SnapshotError::Capacity)
    );
    other.kv.restore(d.index, &mut SliceReader(&bytes)).unwrap();
    assert_eq!(other.kv.digest(), d.kv.digest());
}

#[test]
fn large_snapshots_stream_in_chunks() {
    let mut limits = small();
    limits.max_nodes = 300;
    limits.arena_bytes = 64 * 1024;
    let mut d = Driver::new(limits);
    for i in 0..250 {
        d.ok(0, put(&format!("k{}", i), &"v".repeat(60)));
    }
    let mut w = VecWriter::default();
    d.kv.snapshot(&mut w).unwrap();
    assert!(w.1 > 10, "written in {} chunks", w.1);
    let mut other = Driver::new(limits);
    other.kv.restore(d.index, &mut SliceReader(&w.0)).unwrap();
    assert_eq!(other.kv.digest(), d.kv.digest());
    assert_eq!(
        other.kv.get(b"k249").unwrap().value,
        "v".repeat(60).as_bytes()
    );
}
