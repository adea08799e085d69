//! Unit tests per operation and per error case.
mod common;

use common::*;
use shoal_core::io::StateMachine;
use shoal_kv::*;

const C1: u64 = 11;
const C2: u64 = 22;
const C3: u64 = 33;

#[test]
fn put_get_and_indices() {
    let mut d = Driver::new(small());
    d.ok(C1, put("a", "1"));
    let v = d.kv.get(b"a").unwrap();
    assert_eq!(
        (v.kind, v.value, v.create_index, v.update_index),
        (NodeKind::Value, &b"1"[..], 1, 1)
    );
    d.ok(C1, put("a", "22"));
    let v = d.kv.get(b"a").unwrap();
    assert_eq!(
        (v.value, v.create_index, v.update_index),
        (&b"22"[..], 1, 2)
    );
    let root = d.kv.get(b"").unwrap();
    assert_eq!((root.kind, root.count), (NodeKind::Dir, 1));
    assert_eq!(d.kv.get(b"b").unwrap_err(), KvError::NotFound);
    // Empty values are fine.
    d.ok(0, put("e", ""));
    assert_eq!(d.kv.get(b"e").unwrap().value, b"");
}

#[test]
fn put_needs_a_directory_parent() {
    let mut d = Driver::new(small());
    assert_eq!(d.err(C1, put("a.b", "x")), KvError::ParentNotFound);
    d.ok(C1, put("a", "x"));
    assert_eq!(d.err(C1, put("a.b", "x")), KvError::ParentNotDir);
    d.ok(C1, mkdir("d"));
    d.ok(C1, put("d.b", "x"));
    assert_eq!(d.err(C1, put("d", "x")), KvError::IsDirectory);
    assert_eq!(d.value("d.b").unwrap(), b"x");
}

#[test]
fn key_and_value_errors() {
    let mut d = Driver::new(small());
    assert_eq!(d.err(C1, put("", "x")), KvError::EmptyKey);
    assert_eq!(d.err(C1, put(".a", "x")), KvError::LeadingDot);
    assert_eq!(d.err(C1, put("a.", "x")), KvError::TrailingDot);
    assert_eq!(d.err(C1, put("a..b", "x")), KvError::EmptySegment);
    assert_eq!(d.err(C1, put(&"k".repeat(33), "x")), KvError::KeyTooLong);
    assert_eq!(d.err(C1, put("a.b.c.d.e", "x")), KvError::TooDeep);
    assert_eq!(d.err(C1, put("a", &"v".repeat(65))), KvError::ValueTooLarge);
    assert_eq!(d.kv.get(b"a..b").unwrap_err(), KvError::EmptySegment);
    assert_eq!(d.kv.node_count(), 1);
}

#[test]
fn remove_rules() {
    let mut d = Driver::new(small());
    assert_eq!(d.err(C1, remove("a")), KvError::NotFound);
    assert_eq!(d.err(C1, remove("")), KvError::EmptyKey);
    d.ok(C1, mkdir("d"));
    d.ok(C1, put("d.x", "1"));
    assert_eq!(d.err(C1, remove("d")), KvError::DirNotEmpty);
    d.ok(C1, remove("d.x"));
    d.ok(C1, remove("d"));
    assert_eq!(d.kv.node_count(), 1);
    assert_eq!(d.kv.arena_live_bytes(), 0);
}

#[test]
fn mkdir_rules() {
    let mut d = Driver::new(small());
    d.ok(C1, mkdir("d"));
    d.ok(C1, mkdir("d")); // idempotent
    d.ok(C1, put("v", "1"));
    assert_eq!(d.err(C1, mkdir("v")), KvError::AlreadyExists);
    assert_eq!(d.err(C1, mkdir("x.y")), KvError::ParentNotFound);
    d.ok(C1, mkdir("d.e"));
    assert_eq!(d.kv.get(b"d.e").unwrap().kind, NodeKind::Dir);
}

#[test]
fn list_children_in_creation_order() {
    let mut d = Driver::new(small());
    d.ok(C1, mkdir("d"));
    d.ok(C1, put("d.b", "1"));
    d.ok(C1, mkdir("d.a"));
    d.ok(C1, put_temp("d.t", "t", 100));
    d.ok(C1, try_lock("d.l", 100, 0));
    let mut seen = Vec::new();
    let n =
        d.kv.list(b"d", |v| seen.push((v.key.to_vec(), v.kind)))
            .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        seen,
        vec![
            (b"d.b".to_vec(), NodeKind::Value),
            (b"d.a".to_vec(), NodeKind::Dir),
            (b"d.t".to_vec(), NodeKind::TempValue),
            (b"d.l".to_vec(), NodeKind::Lock),
        ]
    );
    assert_eq!(d.kv.list(b"d.b", |_| {}), Err(KvError::NotDirectory));
    assert_eq!(d.kv.list(b"zz", |_| {}), Err(KvError::NotFound));
    assert_eq!(d.kv.list(b"", |_| {}), Ok(1));
}

#[test]
fn batch_put_and_remove_report_each_item() {
    let mut d = Driver::new(small());
    d.ok(C1, mkdir("d"));
    let items: [(&[u8], &[u8]); 3] = [(b"d.a", b"1"), (b"x.y", b"2"), (b"d.b", b"3")];
    let r = d.ok(C1, Op::BatchPut(Pairs::new(&items)));
    let WriteResult::Batch(results) = r else {
        panic!("{:?}", r)
    };
    assert_eq!(
        results.as_slice(),
        &[Ok(()), Err(KvError::ParentNotFound), Ok(())]
    );
    assert_eq!(d.value("d.b").unwrap(), b"3");
    let keys: [&[u8]; 3] = [b"d.a", b"d.a", b"d"];
    let r = d.ok(C1, Op::BatchRemove(Keys::new(&keys)));
    let WriteResult::Batch(results) = r else {
        panic!("{:?}", r)
    };
    assert_eq!(
        results.as_slice(),
        &[Ok(()), Err(KvError::NotFound), Err(KvError::DirNotEmpty)]
    );
    let many: Vec<(&[u8], &[u8])> = (0..9).map(|_| (&b"d.z"[..], &b"1"[..])).collect();
    assert_eq!(
        d.err(C1, Op::BatchPut(Pairs::new(&many))),
        KvError::BatchTooLarge
    );
    let keys: [&[u8]; 2] = [b"d.z", b"d.b"];
    let mut got = Vec::new();
    d.kv.batch_get(keys, |k, r| {
        got.push((k.to_vec(), r.map(|v| v.value.to_vec())))
    });
    assert_eq!(
        got,
        vec![
            (b"d.z".to_vec(), Err(KvError::NotFound)),
            (b"d.b".to_vec(), Ok(b"3".to_vec()))
        ]
    );
}

#[test]
fn compare_and_set() {
    let mut d = Driver::new(small());
    let cas = |expect: Option<&'static str>, value: &'static str| Op::CompareAndSet {
        key: b"k",
        expect: expect.map(str::as_bytes),
        value: value.as_bytes(),
    };
    d.ok(C1, cas(None, "1"));
    assert_eq!(d.err(C1, cas(None, "2")), KvError::CasMismatch);
    assert_eq!(d.err(C1, cas(Some("x"), "2")), KvError::CasMismatch);
    d.ok(C1, cas(Some("1"), "2"));
    assert_eq!(d.value("k").unwrap(), b"2");
    d.ok(C1, mkdir("dir"));
    let op = Op::CompareAndSet {
        key: b"dir",
        expect: Some(b""),
        value: b"x",
    };
    assert_eq!(d.err(C1, op), KvError::IsDirectory);
    let op = Op::CompareAndSet {
        key: b"nope",
        expect: Some(b"x"),
        value: b"x",
    };
    assert_eq!(d.err(C1, op), KvError::CasMismatch);
}

#[test]
fn temp_values_expire_through_the_log() {
    let mut d = Driver::new(small());
    d.time_ms = 1000;
    d.ok(C1, put_temp("t", "v", 500));
    let v = d.kv.get(b"t").unwrap();
    assert_eq!(
        (v.kind, v.owner, v.deadline_ms),
        (NodeKind::TempValue, C1, 1500)
    );
    assert_eq!(d.kv.next_expiry_ms(), Some(1500));
    assert!(!d.kv.expired_at(1499));
    assert!(d.kv.expired_at(1500));
    assert_eq!(d.err(C2, put("t", "x")), KvError::NotOwner);
    assert_eq!(d.err(C2, remove("t")), KvError::NotOwner);
    assert_eq!(d.err(C2, update_ttl("t", 10)), KvError::NotOwner);
    assert_eq!(d.err(0, put_temp("u", "v", 5)), KvError::SessionRequired);
    assert_eq!(d.err(C1, put_temp("u", "v", 0)), KvError::InvalidTtl);
    assert_eq!(
        d.err(C1, put_temp("u", "v", 2_000_000)),
        KvError::InvalidTtl
    );
    d.ok(C1, put("plain", "p"));
    assert_eq!(d.err(C1, put_temp("plain", "v", 5)), KvError::NotTemp);
    assert_eq!(d.err(C1, update_ttl("plain", 5)), KvError::NotTemp);
    // The owner extends the TTL; an early expiry removes nothing.
    d.ok(C1, update_ttl("t", 1000));
    assert_eq!(d.kv.next_expiry_ms(), Some(2000));
    assert_eq!(d.expire(1600), expired(0, 0));
    assert!(d.kv.get(b"t").is_ok());
    assert_eq!(d.expire(2000), expired(1, 0));
    assert_eq!(d.kv.get(b"t").unwrap_err(), KvError::NotFound);
    assert_eq!(d.kv.next_expiry_ms(), None);
    // The owner may overwrite and remove its own temp value.
    d.ok(C1, put_temp("t", "v", 500));
    d.ok(C1, put("t", "w"));
    assert_eq!(d.kv.get(b"t").unwrap().kind, NodeKind::TempValue);
    d.ok(C1, remove("t"));
    assert_eq!(d.kv.next_expiry_ms(), None);
}

#[test]
fn temp_dir_expires_with_its_subtree() {
    let mut d = Driver::new(small());
    d.time_ms = 0;
    d.ok(C1, temp_dir("s", 100));
    d.ok(C2, mkdir("s.a"));
    d.ok(C2, put("s.a.x", "1"));
    d.ok(C2, put_temp("s.t", "v", 1000));
    d.ok(C3, try_lock("s.l", 1000, 0));
    d.ok(C1, try_lock("s.l", 1000, 1000));
    d.ok(C1, put("keep", "1"));
    assert_eq!(d.err(C1, temp_dir("s", 100)), KvError::AlreadyExists);
    let before = d.index;
    assert_eq!(d.expire(100), expired(5, 0));
    assert_eq!(d.kv.node_count(), 2);
    assert_eq!(d.kv.get(b"keep").unwrap().value, b"1");
    assert_eq!(d.kv.next_expiry_ms(), None);
    let ev = events(&d.kv, before + 1, "s");
    let expired: Vec<&str> = ev
        .iter()
        .filter(|e| e.1 == EventKind::Expired)
        .map(|e| e.2.as_str())
        .collect();
    assert_eq!(expired, vec!["s.a.x", "s.a", "s.t", "s.l", "s"]);
    assert!(ev
        .iter()
        .any(|e| e.1 == EventKind::LockWaitDropped && e.4 == C1));
}

#[test]
fn locks_hand_over_in_fifo_order_with_increasing_fences() {
    let mut d = Driver::new(small());
    d.time_ms = 0;
    let lock = |lease, wait| try_lock("l", lease, wait);
    let r = d.ok(C1, lock(100, 0));
    let WriteResult::Locked {
        fence: f1,
        lease_deadline_ms,
    } = r
    else {
        panic!("{:?}", r)
    };
    assert_eq!((f1, lease_deadline_ms), (1, 100));
    assert_eq!(d.err(C2, lock(100, 0)), KvError::LockHeld);
    assert_eq!(
        d.ok(C2, lock(50, 1000)),
        WriteResult::Queued { position: 1 }
    );
    assert_eq!(
        d.ok(C3, lock(70, 1000)),
        WriteResult::Queued { position: 2 }
    );
    assert_eq!(
        d.ok(C3, lock(70, 1000)),
        WriteResult::Queued { position: 2 }
    );
    let v = d.kv.get(b"l").unwrap();
    assert_eq!(
        (v.kind, v.owner, v.fence, v.count),
        (NodeKind::Lock, C1, 1, 2)
    );
    assert_eq!(d.err(C2, renew_lease("l", 10)), KvError::NotLockOwner);
    assert_eq!(d.err(C2, put("l", "x")), KvError::IsLock);
    assert_eq!(d.err(C1, remove("l")), KvError::IsLock);
    assert_eq!(d.err(99, unlock("l")), KvError::NotLockOwner);
    // C1 unlocks: C2 takes over with a larger fence.
    let r = d.ok(C1, unlock("l"));
    let WriteResult::Unlocked {
        next_owner,
        next_fence: f2,
    } = r
    else {
        panic!("{:?}", r)
    };
    assert_eq!(next_owner, C2);
    assert!(f2 > f1);
    assert_eq!(d.kv.get(b"l").unwrap().fence, f2);
    assert_eq!(d.kv.get(b"l").unwrap().deadline_ms, 50);
    // C2's lease runs out: C3 takes over through the Expire command.
    let before = d.index;
    assert_eq!(d.kv.next_expiry_ms(), Some(50));
    assert_eq!(d.expire(50), expired(0, 1));
    let v = d.kv.get(b"l").unwrap();
    let f3 = v.fence;
    assert_eq!((v.owner, v.deadline_ms), (C3, 120));
    assert!(f3 > f2);
    let ev = events(&d.kv, before + 1, "l");
    assert_eq!(ev[0].1, EventKind::LockExpired);
    assert_eq!(
        (ev[1].1, ev[1].4, ev[1].5),
        (EventKind::LockAcquired, C3, f3)
    );
    // C3 renews, then releases; nobody waits, so the lock disappears.
    let r = d.ok(C3, renew_lease("l", 500));
    assert_eq!(
        r,
        WriteResult::Locked {
            fence: f3,
            lease_deadline_ms: 550
        }
    );
    assert_eq!(
        d.ok(C3, unlock("l")),
        WriteResult::Unlocked {
            next_owner: 0,
            next_fence: 0
        }
    );
    assert_eq!(d.kv.get(b"l").unwrap_err(), KvError::NotFound);
    assert_eq!(d.err(C3, unlock("l")), KvError::NotFound);
    d.ok(C1, put("v", "1"));
    assert_eq!(
        d.err(C1, lock(10, 0).clone_with_key(b"v")),
        KvError::NotALock
    );
}

trait WithKey<'a> {
    fn clone_with_key(self, key: &'a [u8]) -> Op<'a>;
}
impl<'a> WithKey<'a> for Op<'a> {
    fn clone_with_key(self, key: &'a [u8]) -> Op<'a> {
        match self {
            Op::TryLock {
                lease_ms, wait_ms, ..
            } => Op::TryLock {
                key,
                lease_ms,
                wait_ms,
            },
            other => other,
        }
    }
}

#[test]
fn lock_waiters_time_out_and_limits_hold() {
    let mut d = Driver::new(small());
    d.time_ms = 0;
    let lock = |lease, wait| try_lock("l", lease, wait);
    d.ok(C1, lock(1000, 0));
    d.ok(C2, lock(10, 100));
    d.ok(C3, lock(10, 500));
    d.ok(44, lock(10, 500));
    assert_eq!(d.err(55, lock(10, 500)), KvError::TooManyWaiters);
    assert_eq!(d.kv.next_expiry_ms(), Some(100));
    assert_eq!(d.expire(100), expired(0, 0));
    assert_eq!(d.kv.get(b"l").unwrap().count, 2);
    // A waiter may give up.
    assert_eq!(d.ok(44, unlock("l")), WriteResult::Done);
    assert_eq!(d.kv.get(b"l").unwrap().count, 1);
    // At 600 C3's wait ran out too; at 1000 the lease ends and nobody waits: the lock goes.
    assert_eq!(d.expire(1000), expired(1, 0));
    assert_eq!(d.kv.get(b"l").unwrap_err(), KvError::NotFound);
    assert_eq!(d.err(0, lock(10, 0)), KvError::SessionRequired);
    assert_eq!(d.err(C1, lock(0, 0)), KvError::InvalidTtl);
}

#[test]
fn waiter_pool_is_bounded() {
    let mut d = Driver::new(small());
    for l in ["a", "b", "c"] {
        d.ok(
            C1,
            Op::TryLock {
                key: l.as_bytes(),
                lease_ms: 1000,
                wait_ms: 0,
            },
        );
        for c in 0..3 {
            let op = Op::TryLock {
                key: l.as_bytes(),
                lease_ms: 1000,
                wait_ms: 1000,
            };
            let r = d.run(100 + c, op).result;
            if l == "c" && c == 2 {
                assert_eq!(r, WriteResult::Failed(KvError::WaiterPoolFull));
            } else {
                assert!(matches!(r, WriteResult::Queued { .. }), "{:?}", r);
            }
        }
    }
}

#[test]
fn a_sessions_last_sequence_with_another_write_is_refused_not_answered_as_done() {
    let limits = KvLimits {
        max_value_bytes: 512,
        arena_bytes: 8192,
        ..small()
    };
    let mut d = Driver::new(limits);
    let at = |op, time_ms| Command {
        client_id: C1,
        seq: 1,
        time_ms,
        op,
    };
    assert_eq!(d.raw(at(put("k", "1"), 5)).result, WriteResult::Done);
    let reused = WriteResult::Failed(KvError::SessionReused);
    // Two clients sharing the session: the other's first write is not the first one's retry.
    for (op, what) in [
        (put("k", "2"), "another value"),
        (put("j", "1"), "another key"),
        (remove("k"), "another operation"),
    ] {
        let r = d.raw(at(op, 6));
        assert_eq!(
            (r.result, r.deduplicated),
            (reused.clone(), false),
            "{what}"
        );
    }
    assert_eq!(d.value("k").unwrap(), b"1");
    assert_eq!(d.kv.get(b"k").unwrap().update_index, 1);
    assert_eq!(d.kv.get(b"j").unwrap_err(), KvError::NotFound);
    // The retry itself (a later clock) still gets the first answer, and the session goes on.
    let retry = d.raw(at(put("k", "1"), 9));
    assert_eq!(
        (retry.result, retry.deduplicated),
        (WriteResult::Done, true)
    );
    assert_eq!(d.kv.session(C1).map(|s| s.0), Some(1));
    // Values longer than the fingerprint's windows: a change at either end tells them apart.
    let (long, end, start) = (
        "v".repeat(300),
        format!("{}w", "v".repeat(299)),
        format!("w{}", "v".repeat(299)),
    );
    let with = |value: &str, seq| {
        let cmd = Command {
            client_id: C2,
            seq,
            time_ms: 10,
            op: put("big", value),
        };
        encode(&cmd)
    };
    assert_eq!(d.bytes(&with(&long, 1)).result, WriteResult::Done);
    assert_eq!(d.bytes(&with(&end, 1)).result, reused);
    assert_eq!(d.bytes(&with(&start, 1)).result, reused);
    assert!(d.bytes(&with(&long, 1)).deduplicated);
    // Batches: one item's value differs.
    let (one, two) = (
        [(&b"a"[..], &b"1"[..]), (b"b", b"2")],
        [(&b"a"[..], &b"1"[..]), (b"b", b"3")],
    );
    let batch = |items| Command {
        client_id: C3,
        seq: 4,
        time_ms: 11,
        op: Op::BatchPut(Pairs::new(items)),
    };
    assert!(d.raw(batch(&one)).result.error().is_none());
    assert_eq!(d.raw(batch(&two)).result, reused);
    assert!(d.raw(batch(&one)).deduplicated);
    assert_eq!(d.value("b").unwrap(), b"2");
}

#[test]
fn retried_write_returns_the_original_answer() {
    let mut d = Driver::new(small());
    let cas = Op::CompareAndSet {
        key: b"k",
        expect: None,
        value: b"1",
    };
    let first = d.raw(Command {
        client_id: C1,
        seq: 1,
        time_ms: 5,
        op: cas,
    });
    assert_eq!(
        (first.result.clone(), first.deduplicated),
        (WriteResult::Done, false)
    );
    let retry = d.raw(Command {
        client_id: C1,
        seq: 1,
        time_ms: 6,
        op: cas,
    });
    assert_eq!(
        (retry.result, retry.deduplicated),
        (WriteResult::Done, true)
    );
    assert_eq!(d.kv.get(b"k").unwrap().update_index, 1);
    // Lock grant answers are replayed too.
    let lock = try_lock("l", 10, 0);
    let a = d
        .raw(Command {
            client_id: C2,
            seq: 7,
            time_ms: 6,
            op: lock,
        })
        .result;
    let b = d
        .raw(Command {
            client_id: C2,
            seq: 7,
            time_ms: 7,
            op: lock,
        })
        .result;
    assert_eq!(a, b);
    // Older sequence numbers are refused; newer ones apply.
    let stale = d.raw(Command {
        client_id: C1,
        seq: 0,
        time_ms: 7,
        op: put("k", "2"),
    });
    assert_eq!(stale.result, WriteResult::Failed(KvError::StaleSequence));
    let next = d.raw(Command {
        client_id: C1,
        seq: 2,
        time_ms: 7,
        op: cas,
    });
    assert_eq!(next.result, WriteResult::Failed(KvError::CasMismatch));
    assert_eq!(d.kv.session(C1), Some((2, 6)));
}

#[test]
fn sessions_evict_the_least_recently_written() {
    let mut d = Driver::new(small()); // 8 sessions
    for c in 1..=8 {
        d.ok(c, put("k", "v"));
    }
    d.ok(1, put("k", "v")); // client 1 is now the most recent
    d.ok(9, put("k", "v")); // evicts client 2
    assert_eq!(d.kv.session_count(), 8);
    assert!(d.kv.session(2).is_none());
    assert!(d.kv.session(1).is_some());
    assert!(d.kv.session(9).is_some());
}

#[test]
fn undecodable_commands_fail_and_advance_the_index() {
    let mut d = Driver::new(small());
    let out = d.bytes(&[]);
    assert_eq!(out.result, WriteResult::Failed(KvError::Malformed));
    let out = d.bytes(&[9, 1, 2, 3]);
    assert_eq!(out.result, WriteResult::Failed(KvError::UnsupportedVersion));
    let mut good = encode(&Command {
        client_id: 1,
        seq: 1,
        time_ms: 1,
        op: put("a", "b"),
    });
    good.push(0); // trailing garbage
    assert_eq!(
        d.bytes(&good).result,
        WriteResult::Failed(KvError::Malformed)
    );
    good.truncate(good.len() - 3); // truncated
    assert_eq!(
        d.bytes(&good).result,
        WriteResult::Failed(KvError::Malformed)
    );
    d.kv.skip(d.index + 1);
    d.index += 1;
    assert_eq!(d.kv.applied_index(), 5);
    assert_eq!(d.kv.node_count(), 1);
}

#[test]
fn node_and_arena_limits_are_reported() {
    let mut limits = small();
    limits.max_nodes = 4;
    let mut d = Driver::new(limits);
    d.ok(0, put("a", "1"));
    d.ok(0, put("b", "1"));
    d.ok(0, put("c", "1"));
    assert_eq!(d.err(0, put("d", "1")), KvError::TooManyNodes);
    let mut limits = small();
    limits.arena_bytes = 200;
    let mut d = Driver::new(limits);
    let big = "x".repeat(64);
    d.ok(0, put("a", &big)); // 9 + 72 = 81
    d.ok(0, put("b", &big)); // 162
    assert_eq!(d.err(0, put("c", &big)), KvError::ArenaFull);
    // Churn forces compaction; live data stays intact.
    for i in 0..50 {
        let v = format!("{:0>60}", i);
        d.ok(0, put(if i & 1 == 0 { "a" } else { "b" }, &v));
    }
    assert_eq!(d.value("a").unwrap(), format!("{:0>60}", 48).as_bytes());
    assert_eq!(d.value("b").unwrap(), format!("{:0>60}", 49).as_bytes());
    assert_eq!(d.kv.arena_live_bytes(), 2 * (9 + 68));
}

#[test]
fn watch_events_in_order_with_directory_filters() {
    let mut d = Driver::new(small());
    d.ok(C1, mkdir("app"));
    d.ok(C1, put("app.x", "1"));
    d.ok(C1, put("other", "2"));
    d.ok(C1, put("app.x", "3"));
    d.ok(C1, remove("app.x"));
    let all = events(&d.kv, 0, "");
    assert_eq!(all.len(), 5);
    let kinds: Vec<_> = all.iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        kinds,
        vec![
            (1, EventKind::Mkdir),
            (2, EventKind::Put),
            (3, EventKind::Put),
            (4, EventKind::Put),
            (5, EventKind::Remove)
        ]
    );
    let app = events(&d.kv, 3, "app");
    assert_eq!(
        app.iter().map(|e| (e.0, e.3.as_str())).collect::<Vec<_>>(),
        vec![(4, "3"), (5, "")]
    );
    assert_eq!(events(&d.kv, 0, "app.x").len(), 3);
    assert_eq!(events(&d.kv, 0, "ap").len(), 0);
}

#[test]
fn watch_history_is_bounded_and_reports_compaction() {
    let mut limits = small();
    limits.event_slots = 4;
    let mut d = Driver::new(limits);
    for i in 0..10 {
        d.ok(0, put("k", &i.to_string()));
    }
    assert_eq!(d.kv.oldest_event_index(), 7);
    let compacted = d.kv.events_since(3, b"", |_| {});
    assert_eq!(
        compacted,
        Err(WatchError::Compacted {
            oldest_available: 7
        })
    );
    assert_eq!(
        compacted.unwrap_err().to_string(),
        "watch history starts at index 7; re-read the keys and watch from there"
    );
    let ev = events(&d.kv, 7, "k");
    assert_eq!(
        ev.iter().map(|e| e.3.clone()).collect::<Vec<_>>(),
        vec!["6", "7", "8", "9"]
    );
    // Byte pressure evicts too (each event holds 1 + 60 bytes here).
    let mut limits = small();
    limits.event_bytes = 200;
    limits.max_value_bytes = 100;
    let mut d = Driver::new(limits);
    for i in 0..10 {
        d.ok(0, put("k", &format!("{:0>60}", i)));
        let ev = events(&d.kv, d.kv.oldest_event_index(), "");
        assert_eq!(ev.last().unwrap().3, format!("{:0>60}", i));
        assert!(ev.len() <= 3);
    }
}

#[test]
fn codec_round_trips() {
    let items: [(&[u8], &[u8]); 2] = [(b"a", b"1"), (b"b.c", b"")];
    let keys: [&[u8]; 2] = [b"a", b"b"];
    let ops = [
        put("a.b", "v"),
        Op::CompareAndSet {
            key: b"k",
            expect: Some(b"e"),
            value: b"v",
        },
        Op::CompareAndSet {
            key: b"k",
            expect: None,
            value: b"v",
        },
        Op::BatchPut(Pairs::new(&items)),
        Op::BatchRemove(Keys::new(&keys)),
        try_lock("l", 5, 6),
        Op::Expire,
    ];
    for op in ops {
        let cmd = Command {
            client_id: 3,
            seq: 4,
            time_ms: 5,
            op,
        };
        let bytes = encode(&cmd);
        assert_eq!(bytes[0], COMMAND_VERSION);
        let back = Command::decode(&bytes).unwrap();
        assert_eq!((back.client_id, back.seq, back.time_ms), (3, 4, 5));
        match (back.op, op) {
            (Op::BatchPut(a), Op::BatchPut(b)) => assert!(a.iter().eq(b.iter())),
            (Op::BatchRemove(a), Op::BatchRemove(b)) => assert!(a.iter().eq(b.iter())),
            (a, b) => assert_eq!(a, b),
        }
    }
    let mut small_buf = [0u8; 4];
    assert_eq!(
        Command {
            client_id: 1,
            seq: 1,
            time_ms: 1,
            op: put("abc", "def")
        }
        .encode(&mut small_buf),
        Err(CodecError::BufferTooSmall)
    );
    let mut d = Driver::new(small());
    d.ok(C1, put("a", "1"));
    let mut buf = [0u8; 256];
    for resp in [
        Response::Node(d.kv.get(b"a").unwrap()),
        Response::Error(KvError::NotFound),
        Response::Write(WriteResult::Locked {
            fence: 9,
            lease_deadline_ms: 10,
        }),
    ] {
        let n = resp.encode(&mut buf).unwrap();
        assert_eq!(Response::decode(&buf[..n]).unwrap(), resp);
    }
    assert_eq!(
        Response::decode(&[2, 0]),
        Err(CodecError::UnsupportedVersion(2))
    );
}

#[test]
fn error_codes_are_stable_and_described() {
    for code in 0..=255u8 {
        if let Some(e) = KvError::from_code(code) {
            assert_eq!(e.code(), code);
            assert!(!e.message().is_empty());
        }
    }
    assert_eq!(KvError::from_code(26), Some(KvError::StaleSequence));
    assert_eq!(KvError::from_code(0), None);
}

#[test]
fn embedded_profile_fits_in_static_buffers() {
    let limits = KvLimits::embedded();
    assert!(
        limits.memory_bytes() < 40 * 1024,
        "embedded footprint {} bytes",
        limits.memory_bytes()
    );
    assert_eq!(size_of::<EmbeddedKvBuffers>(), limits.memory_bytes());
    let mut bufs = Box::new(EmbeddedKvBuffers::new());
    let mut kv = DtKv::new(bufs.slices(), limits).unwrap();
    let cmd = encode(&Command {
        client_id: 1,
        seq: 1,
        time_ms: 1,
        op: put("a", "b"),
    });
    assert_eq!(kv.apply(1, 1, &cmd).result, WriteResult::Done);
    assert!(KvLimits::server().validate().is_ok());
    let mut bad = small();
    bad.max_batch_items = 0;
    assert_eq!(bad.validate(), Err(LimitsError::MaxBatchItems));
}

#[test]
fn an_operator_removes_another_sessions_temp_node_and_releases_its_lock() {
    let mut d = Driver::new(small());
    d.time_ms = 0;
    d.ok(C1, put_temp("t", "v", 500));
    assert_eq!(d.err(C2, remove("t")), KvError::NotOwner);
    d.ok(C2, Op::ForceRemove { key: b"t" });
    assert_eq!(d.kv.get(b"t").unwrap_err(), KvError::NotFound);
    assert_eq!(d.kv.next_expiry_ms(), None);
    assert_eq!(d.err(C2, Op::ForceRemove { key: b"t" }), KvError::NotFound);
    // A plain value and a lock are what they are for a forced remove too.
    d.ok(C1, put("p", "1"));
    d.ok(C2, Op::ForceRemove { key: b"p" });
    d.ok(C1, try_lock("l", 100, 0));
    assert_eq!(d.err(C2, Op::ForceRemove { key: b"l" }), KvError::IsLock);
    // C3 waits; C2 forces C1's lock open and C3 takes it over.
    assert_eq!(
        d.ok(C3, try_lock("l", 100, 1000)),
        WriteResult::Queued { position: 1 }
    );
    assert_eq!(d.err(C2, unlock("l")), KvError::NotLockOwner);
    let r = d.ok(C2, Op::ForceUnlock { key: b"l" });
    let WriteResult::Unlocked { next_owner, .. } = r else {
        panic!("{r:?}")
    };
    assert_eq!(next_owner, C3);
    assert_eq!(d.kv.get(b"l").unwrap().owner, C3);
    d.ok(C2, Op::ForceUnlock { key: b"l" });
    assert_eq!(
        d.err(C2, Op::ForceUnlock { key: b"l" }),
        KvError::NotFound,
        "a lock released with no waiter is gone"
    );
    assert_eq!(d.err(C2, Op::ForceUnlock { key: b"p2" }), KvError::NotFound);
}
