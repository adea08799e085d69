//! Leases: grant, keep-alive, expiry and revocation with everything tied to them, the
//! `max_leases` limit, and snapshots that carry them.
mod common;

use common::*;
use shoal_core::io::StateMachine;
use shoal_kv::system::lease_key;
use shoal_kv::*;

fn grant(d: &mut Driver, client: u64, ttl_ms: u64) -> u64 {
    match d.ok(client, Op::LeaseGrant { ttl_ms }) {
        WriteResult::Lease { id, ttl_ms: t, .. } => {
            assert_eq!(t, ttl_ms);
            id
        }
        other => panic!("a grant answers Lease, got {other:?}"),
    }
}

fn put_lease<'a>(key: &'a str, value: &'a str, lease: u64) -> Op<'a> {
    Op::PutTempLease {
        key: key.as_bytes(),
        value: value.as_bytes(),
        lease,
    }
}

fn dir_lease(key: &str, lease: u64) -> Op<'_> {
    Op::MakeTempDirLease {
        key: key.as_bytes(),
        lease,
    }
}

fn lock_lease(key: &str, lease: u64) -> Op<'_> {
    Op::TryLockLease {
        key: key.as_bytes(),
        lease,
    }
}

fn exists(d: &Driver, key: &str) -> bool {
    d.kv.get(key.as_bytes()).is_ok()
}

#[test]
fn a_grant_is_named_by_its_index_and_lives_its_ttl() {
    let mut d = Driver::new(small());
    d.ok(1, mkdir("app"));
    let id = grant(&mut d, 1, 500);
    assert_eq!(id, d.index, "the id is the raft index of the grant");
    let lease = d.kv.get(lease_key(id).as_bytes()).unwrap();
    assert_eq!(lease.kind, NodeKind::Lease);
    assert_eq!((lease.deadline_ms, lease.fence), (1000 + 500, 500));
    assert_eq!(d.kv.next_expiry_ms(), Some(1500));
    assert_eq!(d.kv.lease_count(), 1);
    // A TTL out of range and an unknown lease are refused.
    assert_eq!(d.err(1, Op::LeaseGrant { ttl_ms: 0 }), KvError::InvalidTtl);
    assert_eq!(
        d.err(1, Op::LeaseKeepAlive { id: id + 100 }),
        KvError::LeaseNotFound
    );
    assert_eq!(
        d.err(1, put_lease("app.x", "v", id + 100)),
        KvError::LeaseNotFound
    );
    // Clients cannot write the lease's node.
    assert_eq!(
        d.err(
            1,
            Op::Remove {
                key: lease_key(id).as_bytes()
            }
        ),
        KvError::Reserved
    );
}

#[test]
fn keep_alive_pushes_the_deadline_and_expiry_takes_everything_tied() {
    let mut d = Driver::new(small());
    d.ok(1, mkdir("app"));
    let id = grant(&mut d, 1, 100);
    tie_each_kind(&mut d, id);
    d.ok(3, lock_lease("app.m", id));
    // Session 4 waits for app.m; a session node beside them is not tied.
    assert_eq!(
        d.ok(4, try_lock("app.m", 1000, 10_000)),
        WriteResult::Queued { position: 1 }
    );
    d.ok(5, put_temp("app.own", "mine", 10_000));
    let a = d.kv.get(b"app.a").unwrap();
    assert_eq!(
        a.deadline_ms, 1100,
        "a tied node shows its lease's deadline"
    );
    assert_eq!(d.kv.get(lease_key(id).as_bytes()).unwrap().count, 4);

    // Keep-alives at 1080 and 1160 carry the lease past its first deadlines.
    for t in [1080, 1160] {
        d.time_ms = t;
        match d.ok(9, Op::LeaseKeepAlive { id }) {
            WriteResult::Lease { deadline_ms, .. } => assert_eq!(deadline_ms, t + 100),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.expire(t + 50), expired(0, 0));
        assert!(exists(&d, "app.a") && exists(&d, "app.d.x") && exists(&d, "app.l"));
    }
    // Without one it ends at 1260 with every node and lock tied to it, in one entry.
    assert_eq!(d.kv.next_expiry_ms(), Some(1260));
    let from = d.index + 1;
    assert_eq!(d.expire(1260), expired(4, 1));
    for key in ["app.a", "app.d", "app.d.x", "app.l"] {
        assert!(!exists(&d, key), "{key} went with its lease");
    }
    assert!(exists(&d, "app.own"));
    let m = d.kv.get(b"app.m").unwrap();
    assert_eq!((m.owner, m.fence), (4, d.index), "the waiter got the lock");
    assert_eq!(m.deadline_ms, 1260 + 1000);
    assert_eq!(d.kv.lease_count(), 0);
    assert_eq!(d.err(9, Op::LeaseKeepAlive { id }), KvError::LeaseNotFound);
    let evs = events(&d.kv, from, "");
    assert!(evs.iter().all(|e| e.0 == from), "{evs:?}");
    assert!(evs
        .iter()
        .any(|e| e.1 == EventKind::Expired && e.2 == lease_key(id).as_str()));
}

#[test]
fn nodes_tied_to_a_lease_are_anyones_who_names_it() {
    let mut d = Driver::new(small());
    d.ok(1, mkdir("app"));
    let id = grant(&mut d, 1, 1000);
    let other = grant(&mut d, 1, 1000);
    d.ok(1, put_lease("app.a", "A", id));
    // A later session (a later shoalctl run) changes it through the lease...
    d.ok(7, put_lease("app.a", "B", id));
    assert_eq!(d.value("app.a").unwrap(), b"B");
    // ...but not a node owned by a session.
    d.ok(1, put_temp("app.s", "S", 1000));
    assert_eq!(d.err(7, put_lease("app.s", "X", id)), KvError::NotOwner);
    // A lock held under a lease: the same lease keeps it, another is refused at once, and
    // any session may release it.
    let fence = match d.ok(1, lock_lease("app.l", id)) {
        WriteResult::Locked { fence, .. } => fence,
        other => panic!("{other:?}"),
    };
    match d.ok(8, lock_lease("app.l", id)) {
        WriteResult::Locked { fence: f, .. } => assert_eq!(f, fence),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.err(8, lock_lease("app.l", other)), KvError::LockHeld);
    // No session takes a lease's lock over by renewing it: that would pass it on without a
    // new fencing token.
    assert_eq!(d.err(1, renew_lease("app.l", 500)), KvError::NotLockOwner);
    assert_eq!(
        d.kv.get(b"app.l").unwrap().owner,
        1,
        "renewing under the lease keeps it"
    );
    assert_eq!(
        d.ok(9, unlock("app.l")),
        WriteResult::Unlocked {
            next_owner: 0,
            next_fence: 0
        }
    );
    assert!(!exists(&d, "app.l"));
    // A removed node leaves its lease's list.
    d.ok(9, remove("app.a"));
    assert_eq!(d.kv.get(lease_key(id).as_bytes()).unwrap().count, 0);
    // Moving a node to another lease moves it out of the first one's list.
    d.ok(1, put_lease("app.b", "b", id));
    d.ok(1, put_lease("app.b", "b", other));
    assert_eq!(d.ok(1, Op::LeaseRevoke { id }), expired(0, 0));
    assert!(exists(&d, "app.b"));
    assert_eq!(d.ok(1, Op::LeaseRevoke { id: other }), expired(1, 0));
    assert!(!exists(&d, "app.b"));
}

#[test]
fn revoke_ends_a_lease_at_once() {
    let mut d = Driver::new(small());
    d.ok(1, mkdir("svc"));
    let id = grant(&mut d, 1, 100_000);
    d.ok(2, dir_lease("svc.node1", id));
    d.ok(2, put("svc.node1.addr", "10.0.0.1"));
    d.ok(3, lock_lease("svc.leader", id));
    assert_eq!(d.ok(4, Op::LeaseRevoke { id }), expired(3, 0));
    for key in ["svc.node1", "svc.node1.addr", "svc.leader"] {
        assert!(!exists(&d, key), "{key}");
    }
    assert_eq!(d.kv.next_expiry_ms(), None, "nothing is left to expire");
    assert_eq!(d.err(4, Op::LeaseRevoke { id }), KvError::LeaseNotFound);
}

#[test]
fn max_leases_bounds_the_live_leases() {
    let mut d = Driver::new(small());
    let limit = small().max_leases;
    let ids: Vec<u64> = (0..limit).map(|_| grant(&mut d, 1, 1000)).collect();
    assert_eq!(
        d.err(1, Op::LeaseGrant { ttl_ms: 1000 }),
        KvError::TooManyLeases
    );
    assert_eq!(
        KvError::TooManyLeases.explain(&small()).to_string(),
        "the store holds max_leases leases; revoke some or raise the limit (max_leases is 3 leases)"
    );
    d.ok(1, Op::LeaseRevoke { id: ids[0] });
    grant(&mut d, 1, 1000);
    // Expiry frees them too.
    d.expire(5000);
    assert_eq!(d.kv.lease_count(), 0);
    grant(&mut d, 1, 1000);
}

/// Tie one node of each kind to lease `id` under `app` (which must exist): the value `app.a`,
/// the directory `app.d` with the untied `app.d.x` inside, and the lock `app.l`.
fn tie_each_kind(d: &mut Driver, id: u64) {
    d.ok(1, put_lease("app.a", "A", id));
    d.ok(2, dir_lease("app.d", id));
    d.ok(2, put("app.d.x", "x"));
    d.ok(3, lock_lease("app.l", id));
}

/// A store whose tied nodes come before `__shoal` in the snapshot's pre-order.
fn leased_store() -> (Driver, u64) {
    let mut d = Driver::new(small());
    d.ok(1, mkdir("app"));
    d.ok(1, put("app.plain", "p"));
    d.ok(1, mkdir("z"));
    let id = grant(&mut d, 1, 300);
    tie_each_kind(&mut d, id);
    d.ok(4, try_lock("app.l", 50, 5000));
    d.ok(5, put_temp("z.t", "t", 200));
    (d, id)
}

#[test]
fn snapshots_carry_leases_and_their_ties() {
    let (mut d, id) = leased_store();
    let bytes = snapshot(&d.kv);
    assert_eq!(bytes[4], SNAPSHOT_VERSION, "a live lease needs version 2");
    let mut other = Driver::new(small());
    other.kv.restore(d.index, &mut SliceReader(&bytes)).unwrap();
    other.index = d.index;
    other.seqs = d.seqs.clone();
    assert_eq!(snapshot(&other.kv), bytes);
    assert_eq!(other.kv.digest(), d.kv.digest());
    assert_eq!(other.kv.next_expiry_ms(), d.kv.next_expiry_ms());
    assert_eq!(
        other.kv.get(b"app.a").unwrap().deadline_ms,
        d.kv.get(b"app.a").unwrap().deadline_ms
    );
    // Both replicas end the lease alike: the tied nodes go, the waiter gets the lock.
    for r in [&mut d, &mut other] {
        r.time_ms = 1250;
        assert_eq!(
            r.ok(6, Op::LeaseKeepAlive { id }),
            WriteResult::Lease {
                id,
                ttl_ms: 300,
                deadline_ms: 1550
            }
        );
        assert_eq!(r.expire(1550), expired(4, 1));
        assert_eq!(r.kv.get(b"app.l").unwrap().owner, 4);
    }
    assert_eq!(other.kv.digest(), d.kv.digest());
    // Without a live lease the snapshot is version 1 again, as before leases.
    d.expire(10_000);
    let plain = snapshot(&d.kv);
    assert_eq!(plain[4], 1);
    let mut third = Driver::new(small());
    third.kv.restore(d.index, &mut SliceReader(&plain)).unwrap();
    assert_eq!(third.kv.digest(), d.kv.digest());
}

#[test]
fn a_snapshot_naming_a_missing_lease_is_refused() {
    let (d, id) = leased_store();
    let mut bytes = snapshot(&d.kv);
    // Point the first tied node at a lease that does not exist, then fix the CRC.
    let at = bytes
        .windows(8)
        .position(|w| w == id.to_le_bytes())
        .expect("the tie is in the snapshot");
    bytes[at] ^= 0x40;
    let n = bytes.len() - 4;
    let crc = shoal_core::record::CRC32C.checksum(&bytes[..n]);
    bytes[n..].copy_from_slice(&crc.to_le_bytes());
    let mut other = Driver::new(small());
    assert!(other.kv.restore(d.index, &mut SliceReader(&bytes)).is_err());
    assert_eq!(other.kv.applied_index(), 0, "nothing half-restored serves");
}

/// The keys tied to lease `id`, in its list's order.
fn tied_keys(d: &Driver, id: u64) -> Vec<String> {
    let mut keys = Vec::new();
    d.kv.lease_keys(id, |k| keys.push(String::from_utf8_lossy(k).into_owned()))
        .unwrap();
    keys
}

/// A replica restored from `d`'s snapshot.
fn restored(d: &Driver, limits: KvLimits) -> Driver {
    let mut other = Driver::new(limits);
    other
        .kv
        .restore(d.index, &mut SliceReader(&snapshot(&d.kv)))
        .unwrap();
    other.index = d.index;
    other.seqs = d.seqs.clone();
    other.time_ms = d.time_ms;
    other
}

/// A lease whose nodes were tied in another order than the snapshot's pre-order (where `a.*`
/// comes before `b.*` before `c.*`): one renewed to the front, two written by one transaction.
fn scrambled_lease() -> (Driver, u64) {
    let mut d = Driver::new(small());
    for dir in ["a", "b", "c"] {
        d.ok(1, mkdir(dir));
    }
    let id = grant(&mut d, 1, 300);
    d.ok(1, put_lease("c.x", "x", id));
    d.ok(1, put_lease("b.y", "y", id));
    d.ok(2, dir_lease("a.d", id));
    d.ok(2, put("a.d.in", "untied, inside a tied directory"));
    d.ok(3, lock_lease("b.l", id));
    d.ok(1, put_lease("a.z", "z", id));
    // A renewal moves c.x to the front; a transaction writes b.y and a.z at one index.
    d.ok(7, put_lease("c.x", "x2", id));
    d.ok(8, txn(&[], &[tput("b.y", "y2"), tput("a.z", "z2")], &[]));
    (d, id)
}

#[test]
fn a_restored_replica_ends_a_lease_with_the_same_events() {
    for revoke in [false, true] {
        let (mut d, id) = scrambled_lease();
        let mut other = restored(&d, small());
        let lists = (tied_keys(&d, id), tied_keys(&other, id));
        let from = d.index + 1;
        for r in [&mut d, &mut other] {
            let ended = if revoke {
                r.ok(9, Op::LeaseRevoke { id })
            } else {
                r.expire(1000 + 300)
            };
            assert_eq!(ended, expired(6, 0));
        }
        let seen = |r: &Driver| -> Vec<(EventKind, String)> {
            events(&r.kv, from, "")
                .into_iter()
                .map(|e| (e.1, e.2))
                .collect()
        };
        let want: Vec<(EventKind, String)> = [
            (EventKind::Expired, "a.z"),
            (EventKind::Expired, "b.y"),
            (EventKind::Expired, "c.x"),
            (EventKind::Expired, "a.d.in"),
            (EventKind::Expired, "a.d"),
            (EventKind::LockExpired, "b.l"),
            (EventKind::Expired, lease_key(id).as_str()),
        ]
        .into_iter()
        .map(|(k, key)| (k, key.to_string()))
        .collect();
        assert_eq!(seen(&other), seen(&d), "revoke: {revoke}");
        assert_eq!(
            lists.1, lists.0,
            "both replicas list the lease's keys alike"
        );
        // Most recently written first (one index's writes in key order); temporary nodes
        // before locks.
        assert_eq!(seen(&d), want, "revoke: {revoke}");
        assert_eq!(other.kv.digest(), d.kv.digest());
    }
}

#[test]
fn a_long_lease_list_is_restored_in_its_order() {
    let limits = KvLimits {
        max_nodes: 512,
        arena_bytes: 32 * 1024,
        event_slots: 1024,
        event_bytes: 32 * 1024,
        ..small()
    };
    let mut d = Driver::new(limits);
    d.ok(1, mkdir("k"));
    let id = grant(&mut d, 1, 300);
    // 200 nodes tied in a scrambled order; every seventh tied again, every eleventh written.
    let keys: Vec<String> = (0..200u32)
        .map(|i| format!("k.n{:03}", (i * 73) % 200))
        .collect();
    for k in &keys {
        d.ok(1, put_lease(k, "v", id));
    }
    for k in keys.iter().step_by(7) {
        d.ok(1, put_lease(k, "w", id));
    }
    for k in keys.iter().step_by(11) {
        d.ok(1, put(k, "x"));
    }
    let mut other = restored(&d, limits);
    let lists = (tied_keys(&d, id), tied_keys(&other, id));
    assert_eq!(lists.0.len(), 200);
    let from = d.index + 1;
    for r in [&mut d, &mut other] {
        assert_eq!(r.ok(2, Op::LeaseRevoke { id }), expired(200, 0));
    }
    assert_eq!(events(&other.kv, from, ""), events(&d.kv, from, ""));
    assert_eq!(lists.1, lists.0);
}

#[test]
fn locks_before_temporary_nodes_in_the_list_end_in_order() {
    let mut d = Driver::new(small());
    for dir in ["a", "b", "c"] {
        d.ok(1, mkdir(dir));
    }
    let id = grant(&mut d, 1, 300);
    d.ok(1, put_lease("c.t", "t", id));
    d.ok(2, dir_lease("a.d", id));
    d.ok(3, lock_lease("a.d.k", id));
    d.ok(4, lock_lease("b.l", id));
    // The locks come first in the list; one of them is inside a tied directory.
    assert_eq!(tied_keys(&d, id), ["b.l", "a.d.k", "a.d", "c.t"]);
    let mut other = restored(&d, small());
    let from = d.index + 1;
    for r in [&mut d, &mut other] {
        assert_eq!(r.ok(9, Op::LeaseRevoke { id }), expired(4, 0));
        let seen: Vec<(EventKind, String)> = events(&r.kv, from, "")
            .into_iter()
            .map(|e| (e.1, e.2))
            .collect();
        let want = [
            (EventKind::Expired, "a.d.k"),
            (EventKind::Expired, "a.d"),
            (EventKind::Expired, "c.t"),
            (EventKind::LockExpired, "b.l"),
            (EventKind::Expired, lease_key(id).as_str()),
        ]
        .map(|(k, key)| (k, key.to_string()));
        assert_eq!(seen, want);
    }
}
