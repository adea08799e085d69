//! The failure policy against a live group: every kind of malformed peer frame is dropped,
//! changes nothing, is counted under its cause, and the node goes on serving; a full medium
//! degrades a node without stopping it; only a local device fault stops it.

use super::*;
use crate::fault::Severity;
use crate::wire::Body;

/// What a refused frame must leave exactly as it was.
#[derive(Debug, PartialEq)]
struct Observed {
    role: Role,
    term: Term,
    vote: NodeId,
    leader: NodeId,
    commit: LogIndex,
    last: (LogIndex, Term),
    snapshot_index: LogIndex,
    membership: Membership,
    stored_hard_state: HardState,
    stored_log: StdVec<(LogIndex, Term)>,
    stored_snapshot: Option<LogIndex>,
    outbox: usize,
}

fn observe(n: &TNode) -> Observed {
    let r = n.raft();
    let s = n.storage();
    Observed {
        role: r.role(),
        term: r.term(),
        vote: r.vote,
        leader: r.leader(),
        commit: r.commit(),
        last: (r.last_index(), r.last_term()),
        snapshot_index: r.snapshot_index(),
        membership: r.membership().clone(),
        stored_hard_state: s.hard_state(),
        stored_log: s.entries.iter().map(|e| (e.0, e.1)).collect(),
        stored_snapshot: s.snap.as_ref().map(|x| x.0.index),
        outbox: r.outbox.len() + r.held.len(),
    }
}

/// A three-node group with a leader and a few committed entries; returns it, the leader and
/// one follower.
fn settled_with(cfg: Config) -> (Cluster, NodeId, NodeId) {
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    for i in 0..3u8 {
        c.propose(l, &[i]);
    }
    c.run(50);
    let f = Cluster::follower_of(l);
    assert_eq!(c.nodes[&f].raft().commit(), c.nodes[&l].raft().commit());
    (c, l, f)
}

fn settled() -> (Cluster, NodeId, NodeId) {
    settled_with(test_cfg())
}

/// Entries `(index, term, kind, data)` encoded back to back, as an `Append` carries them.
fn entries(list: &[(LogIndex, Term, EntryKind, &[u8])]) -> StdVec<u8> {
    let mut out = StdVec::new();
    for &(index, term, kind, data) in list {
        let e = EntryRef {
            index,
            term,
            kind,
            data,
        };
        let mut buf = vec![0u8; e.encoded_len()];
        encode(&e, &mut buf).unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

/// An `Append` from the leader `l` to `to` at the leader's term, after `prev`.
fn append(c: &Cluster, l: NodeId, prev: (LogIndex, Term), count: u32) -> Body {
    let r = c.nodes[&l].raft();
    Body::Raft(Message::Append(Append {
        term: r.term(),
        prev_index: prev.0,
        prev_term: prev.1,
        commit: r.commit(),
        count,
        read_seq: 0,
    }))
}

/// The leader's last entry, which an honest append would continue from.
fn tip(c: &Cluster, l: NodeId) -> (LogIndex, Term) {
    let r = c.nodes[&l].raft();
    (r.last_index(), r.last_term())
}

/// Deliver `bytes` to `to`: it must be refused under `fault` with nothing changed, and the
/// group, `to` included, must go on committing.
fn assert_refused(c: &mut Cluster, to: NodeId, bytes: &[u8], fault: Fault) {
    let before = observe(&c.nodes[&to]);
    let now = c.now;
    assert_eq!(
        c.node(to).handle_frame(now, bytes),
        Ok(()),
        "{}",
        fault.name()
    );
    assert_eq!(
        observe(&c.nodes[&to]),
        before,
        "{} changed the node",
        fault.name()
    );
    let faults = c.nodes[&to].stats().faults;
    assert_eq!(faults.get(fault), 1, "counted under {}", fault.name());
    assert_eq!(faults.total(), 1, "counted once: {faults:?}");
    let l = c.leader();
    let (index, _) = c.propose(l, b"after");
    c.run(100);
    assert!(
        c.nodes[&to].raft().commit() >= index,
        "{}: stopped",
        fault.name()
    );
    for id in [1, 2, 3] {
        assert_eq!(
            c.commands(id).last().map(|v| v.as_slice()),
            Some(&b"after"[..])
        );
    }
}

#[test]
fn a_frame_that_does_not_decode_is_dropped() {
    let (mut c, l, f) = settled();
    let mut bytes = frame(l, f, append(&c, l, tip(&c, l), 0), &[]);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    assert_refused(&mut c, f, &bytes, Fault::BadFrame);
}

#[test]
fn a_handshake_where_a_raft_message_belongs_is_dropped() {
    let (mut c, l, f) = settled();
    let hello = crate::handshake::Hello {
        cluster_id: 7,
        node_id: l,
        expected_peer: f,
        group: 0,
        members: Default::default(),
    };
    let bytes = frame(l, f, Body::Hello(hello), &[]);
    assert_refused(&mut c, f, &bytes, Fault::NotRaft);
}

#[test]
fn an_append_claiming_an_entry_it_does_not_carry_is_dropped() {
    // The attacker's frame of issue 13: one entry declared, none sent.
    let (mut c, l, f) = settled();
    let bytes = frame(l, f, append(&c, l, tip(&c, l), 1), &[]);
    assert_refused(&mut c, f, &bytes, Fault::EntryCount);
}

#[test]
fn an_append_with_bytes_after_its_entries_is_dropped() {
    let (mut c, l, f) = settled();
    let (last, term) = tip(&c, l);
    let mut tail = entries(&[(last + 1, term, EntryKind::Normal, b"x")]);
    tail.push(0);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    assert_refused(&mut c, f, &bytes, Fault::EntryCount);
}

#[test]
fn an_append_whose_entries_do_not_decode_is_dropped() {
    let (mut c, l, f) = settled();
    let (last, term) = tip(&c, l);
    // A good entry first: nothing of a frame is written unless all of it checks out.
    let mut tail = entries(&[(last + 1, term, EntryKind::Normal, b"ok")]);
    tail.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    let bytes = frame(l, f, append(&c, l, (last, term), 2), &tail);
    assert_refused(&mut c, f, &bytes, Fault::MalformedEntries);
}

#[test]
fn an_append_whose_indexes_skip_is_dropped() {
    let (mut c, l, f) = settled();
    let (last, term) = tip(&c, l);
    let tail = entries(&[
        (last + 1, term, EntryKind::Normal, b"a"),
        (last + 3, term, EntryKind::Normal, b"b"),
    ]);
    let bytes = frame(l, f, append(&c, l, (last, term), 2), &tail);
    assert_refused(&mut c, f, &bytes, Fault::NotContiguous);
}

#[test]
fn an_append_with_an_entry_newer_than_its_leader_is_dropped() {
    let (mut c, l, f) = settled();
    let (last, term) = tip(&c, l);
    let tail = entries(&[(last + 1, term + 1, EntryKind::Normal, b"a")]);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    assert_refused(&mut c, f, &bytes, Fault::ImpossibleTerm);
}

#[test]
fn an_append_with_a_configuration_that_does_not_decode_is_dropped() {
    let (mut c, l, f) = settled();
    let (last, term) = tip(&c, l);
    let tail = entries(&[(last + 1, term, EntryKind::Config, &[0xFF])]);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    assert_refused(&mut c, f, &bytes, Fault::BadConfigEntry);
}

#[test]
fn an_append_larger_than_any_message_is_dropped() {
    let mut cfg = test_cfg();
    cfg.max_bytes_per_message = 1024;
    let (mut c, l, f) = settled_with(cfg);
    let (last, term) = tip(&c, l);
    let tail = entries(&[(last + 1, term, EntryKind::Normal, &[7u8; 2000])]);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    assert_refused(&mut c, f, &bytes, Fault::EntryTooLarge);
}

#[test]
fn an_append_that_would_cut_a_committed_entry_is_dropped() {
    let (mut c, l, f) = settled();
    // Entry 1 is the bootstrap configuration of term 1; everything after it is this leader's
    // and committed. A forged frame replaces entry 2 with one of term 1.
    assert!(c.nodes[&f].raft().commit() >= 2);
    assert!(c.nodes[&f].raft().term() > 1);
    let tail = entries(&[(2, 1, EntryKind::Normal, b"forged")]);
    let bytes = frame(l, f, append(&c, l, (1, 1), 1), &tail);
    assert_refused(&mut c, f, &bytes, Fault::CommittedTruncation);
}

#[test]
fn an_append_of_the_leaders_own_term_from_another_node_is_dropped() {
    let (mut c, l, f) = settled();
    let body = append(&c, l, tip(&c, l), 0);
    let bytes = frame(f, l, body, &[]);
    assert_refused(&mut c, l, &bytes, Fault::RivalLeader);
}

/// A snapshot chunk from the leader `l` at its term, for a snapshot past the commit index.
fn chunk(c: &Cluster, l: NodeId, data: &[u8], size_bytes: u64, crc: u32) -> Body {
    let r = c.nodes[&l].raft();
    Body::Raft(Message::Snapshot(Snapshot {
        term: r.term(),
        meta: SnapshotHeader {
            index: r.last_index() + 10,
            term: r.term(),
            membership: r.membership().clone(),
            size_bytes,
            crc,
        },
        offset: 0,
        done: data.len() as u64 == size_bytes,
    }))
}

#[test]
fn a_snapshot_chunk_past_its_size_is_dropped() {
    let (mut c, l, f) = settled();
    let data = [5u8; 10];
    let bytes = frame(l, f, chunk(&c, l, &data, 4, 0), &data);
    assert_refused(&mut c, f, &bytes, Fault::SnapshotSize);
}

#[test]
fn a_snapshot_that_does_not_match_its_checksum_is_refused_not_installed() {
    let (mut c, l, f) = settled();
    let data = [5u8; 10];
    let wrong = crate::record::CRC32C.checksum(&data) ^ 1;
    let bytes = frame(l, f, chunk(&c, l, &data, 10, wrong), &data);
    assert_refused(&mut c, f, &bytes, Fault::SnapshotChecksum);
    assert_eq!(c.nodes[&f].raft().snapshot_index(), 0);
}

#[test]
fn a_snapshot_that_cannot_exist_is_dropped() {
    let (mut c, l, f) = settled();
    let data = [5u8; 10];
    let crc = crate::record::CRC32C.checksum(&data);
    let mut body = chunk(&c, l, &data, 10, crc);
    if let Body::Raft(Message::Snapshot(s)) = &mut body {
        s.meta.term = s.term + 1;
    }
    let bytes = frame(l, f, body, &data);
    assert_refused(&mut c, f, &bytes, Fault::ImpossibleSnapshot);
}

#[test]
fn a_full_medium_degrades_a_follower_which_catches_up_when_space_returns() {
    let (mut c, l, f) = settled();
    c.node(f).storage_mut().fail_writes = Some(StorageError::Full);
    let (index, _) = c.propose(l, b"while full");
    c.run(100);
    assert!(c.nodes[&l].raft().commit() >= index, "the others commit");
    assert!(
        c.nodes[&f].raft().last_index() < index,
        "the full node took nothing"
    );
    let refused = c.nodes[&f].stats().faults.get(Fault::StorageFull);
    assert!(refused > 0, "and counted what it refused");
    c.node(f).storage_mut().fail_writes = None;
    c.run(200);
    assert!(c.nodes[&f].raft().commit() >= index, "it catches up");
    assert_eq!(c.commands(f), c.commands(l));
}

#[test]
fn a_device_error_stops_the_node() {
    let (mut c, l, f) = settled();
    c.node(f).storage_mut().fail_writes = Some(StorageError::Io);
    let (last, term) = tip(&c, l);
    let tail = entries(&[(last + 1, term, EntryKind::Normal, b"x")]);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    let now = c.now;
    let err = c.node(f).handle_frame(now, &bytes).unwrap_err();
    assert_eq!(
        err,
        crate::driver::NodeError::Raft(RaftError::Storage(StorageError::Io))
    );
    assert_eq!(err.severity(), Severity::Fatal);
    assert_eq!(
        c.nodes[&f].stats().faults.total(),
        0,
        "a fatal error is not absorbed"
    );
}
