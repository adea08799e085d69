//! The reserved subtree `__shoal`: clients read it and never write it; system writes create
//! their directories all or nothing, `SysCreate` lets the first of two definitions win, and
//! snapshots carry the records.

mod common;
use common::*;
use shoal_core::io::StateMachine;
use shoal_core::membership::NodeSet;
use shoal_kv::system::{
    group_key, member_key, GroupRecord, GroupState, MemberRecord, GROUPS_DIR, MEMBERS_DIR,
};
use shoal_kv::*;

fn sys_put<'a>(key: &'a [u8], value: &'a [u8]) -> Op<'a> {
    Op::SysPut { key, value }
}

fn member(raft: &str) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = MemberRecord {
        raft_addr: raft,
        client_addr: "",
    }
    .encode(&mut buf)
    .unwrap();
    buf[..n].to_vec()
}

/// A store holding one member record, for `id` at `raft`, and the record's bytes.
fn with_member(id: u64, raft: &str) -> (Driver, Vec<u8>) {
    let mut d = Driver::new(small());
    let rec = member(raft);
    d.ok(0, sys_put(member_key(id).as_bytes(), &rec));
    (d, rec)
}

#[test]
fn client_writes_to_the_reserved_subtree_are_refused_and_reads_allowed() {
    let (mut d, rec) = with_member(4, "10.0.0.4:7001");
    let refused: Vec<Op<'_>> = vec![
        put("__shoal.members.4", "x"),
        put("__shoal.new", "x"),
        remove("__shoal.members.4"),
        remove("__shoal"),
        mkdir("__shoal"),
        mkdir("__shoal.mine"),
        Op::CompareAndSet {
            key: b"__shoal.members.4",
            expect: None,
            value: b"x",
        },
        put_temp("__shoal.t", "x", 1000),
        temp_dir("__shoal.td", 1000),
        update_ttl("__shoal.members.4", 1000),
        try_lock("__shoal.lock", 1000, 0),
        unlock("__shoal.lock"),
        renew_lease("__shoal.lock", 1000),
    ];
    for op in refused {
        assert_eq!(d.err(7, op), KvError::Reserved, "{op:?}");
    }
    // Batches refuse the reserved items and apply the rest.
    d.ok(0, mkdir("app"));
    let pairs = [
        (&b"app.a"[..], &b"1"[..]),
        (&b"__shoal.members.5"[..], &b"x"[..]),
    ];
    match d.ok(7, Op::BatchPut(Pairs::new(&pairs))) {
        WriteResult::Batch(r) => assert_eq!(r.as_slice(), &[Ok(()), Err(KvError::Reserved)]),
        other => panic!("{other:?}"),
    }
    let keys = [&b"app.a"[..], &b"__shoal.members.4"[..]];
    match d.ok(7, Op::BatchRemove(Keys::new(&keys))) {
        WriteResult::Batch(r) => assert_eq!(r.as_slice(), &[Ok(()), Err(KvError::Reserved)]),
        other => panic!("{other:?}"),
    }
    // The record is unchanged and readable; names that only look alike are ordinary keys.
    assert_eq!(d.value("__shoal.members.4"), Some(rec));
    d.ok(7, put("__shoalx", "fine"));
    let mut children = Vec::new();
    d.kv.list(MEMBERS_DIR, |v| children.push(v.key.to_vec()))
        .unwrap();
    assert_eq!(children, vec![b"__shoal.members.4".to_vec()]);
}

#[test]
fn system_writes_stay_inside_the_subtree_and_make_their_directories() {
    let mut d = Driver::new(small());
    assert_eq!(d.err(0, sys_put(b"app.x", b"1")), KvError::NotSystemKey);
    assert_eq!(d.err(0, sys_put(b"__shoal", b"1")), KvError::NotSystemKey);
    let before = d.kv.system_changes();
    let key = group_key(8);
    let g = GroupRecord {
        state: GroupState::Active,
        members: NodeSet::from_slice(&[1, 2, 3]).unwrap(),
    };
    let mut buf = [0u8; 128];
    let n = g.encode(&mut buf).unwrap();
    let from = d.index + 1;
    d.ok(
        0,
        Op::SysCreate {
            key: key.as_bytes(),
            value: &buf[..n],
        },
    );
    assert_ne!(d.kv.system_changes(), before);
    assert_eq!(d.kv.get(GROUPS_DIR).unwrap().kind, NodeKind::Dir);
    let got = d.kv.get(key.as_bytes()).unwrap();
    assert_eq!(GroupRecord::decode(got.value), Ok(g.clone()));
    // Watchers see the directories made and the record, in order.
    let seen: Vec<_> = events(&d.kv, from, "__shoal")
        .into_iter()
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(
        seen,
        vec![
            (EventKind::Mkdir, "__shoal".to_string()),
            (EventKind::Mkdir, "__shoal.groups".to_string()),
            (EventKind::Put, "__shoal.groups.8".to_string()),
        ]
    );
    // The second definition of one key loses, whatever it says.
    let other = GroupRecord {
        state: GroupState::Active,
        members: NodeSet::from_slice(&[3]).unwrap(),
    };
    let m = other.encode(&mut buf).unwrap();
    assert_eq!(
        d.err(
            0,
            Op::SysCreate {
                key: key.as_bytes(),
                value: &buf[..m],
            }
        ),
        KvError::AlreadyExists
    );
    assert_eq!(
        GroupRecord::decode(d.kv.get(key.as_bytes()).unwrap().value),
        Ok(g)
    );
    d.ok(
        0,
        Op::SysRemove {
            key: key.as_bytes(),
        },
    );
    assert_eq!(d.kv.get(key.as_bytes()).err(), Some(KvError::NotFound));
    assert_eq!(
        d.err(
            0,
            Op::SysRemove {
                key: key.as_bytes()
            }
        ),
        KvError::NotFound
    );
}

#[test]
fn a_system_write_that_does_not_fit_changes_nothing() {
    // Room for the root and two nodes: the record needs two directories and itself.
    let mut d = Driver::new(KvLimits {
        max_nodes: 3,
        ..small()
    });
    let key = member_key(1);
    let rec = member("h:1");
    let arena = d.kv.arena_live_bytes();
    assert_eq!(
        d.err(0, sys_put(key.as_bytes(), &rec)),
        KvError::TooManyNodes
    );
    assert_eq!(d.kv.node_count(), 1, "no directory was left behind");
    assert_eq!(d.kv.get(b"__shoal").err(), Some(KvError::NotFound));
    assert_eq!(d.kv.arena_live_bytes(), arena);
    // A value where a directory belongs is refused before anything is made.
    let mut d = Driver::new(small());
    d.ok(0, sys_put(b"__shoal.members", b"not a dir"));
    assert_eq!(
        d.err(0, sys_put(key.as_bytes(), &rec)),
        KvError::ParentNotDir
    );
}

#[test]
fn snapshots_carry_the_records_and_a_restore_is_noticed() {
    let (d, _) = with_member(2, "10.0.0.2:7001");
    let snap = snapshot(&d.kv);
    let mut other = store(small());
    let seen = other.system_changes();
    other
        .restore(d.index, &mut SliceReader(&snap))
        .expect("restore");
    assert_ne!(other.system_changes(), seen);
    let v = other.get(member_key(2).as_bytes()).unwrap();
    assert_eq!(
        MemberRecord::decode(v.value).unwrap().raft_addr,
        "10.0.0.2:7001"
    );
    assert_eq!(other.digest(), d.kv.digest());
}
