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
    c.propose_each(l, 0..3);
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
    let mut buf = vec![0u8; 64 * 1024];
    let refs = list.iter().map(|&(index, term, kind, data)| EntryRef {
        index,
        term,
        kind,
        data,
    });
    let packed = pack_entries(&mut buf, refs).unwrap();
    assert_eq!(
        packed.count as usize,
        list.len(),
        "the buffer holds them all"
    );
    buf.truncate(packed.bytes);
    buf
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
        clock_ms: 0,
    }))
}

/// The leader's last entry, which an honest append would continue from.
fn tip(c: &Cluster, l: NodeId) -> (LogIndex, Term) {
    let r = c.nodes[&l].raft();
    (r.last_index(), r.last_term())
}

/// Deliver `bytes`, a frame that `what` describes, to `to`: it must be refused under `fault`
/// with nothing changed, and the group, `to` included, must go on committing.
fn assert_refused(c: &mut Cluster, to: NodeId, bytes: &[u8], fault: Fault, what: &str) {
    let cause = fault.name();
    let before = observe(&c.nodes[&to]);
    let now = c.now;
    assert_eq!(
        c.node(to).handle_frame(now, bytes),
        Ok(()),
        "{what} ({cause})"
    );
    assert_eq!(
        observe(&c.nodes[&to]),
        before,
        "{what} ({cause}) changed the node"
    );
    let faults = c.nodes[&to].stats().faults;
    assert_eq!(faults.get(fault), 1, "{what}: counted under {cause}");
    assert_eq!(faults.total(), 1, "{what}: counted once: {faults:?}");
    let l = c.leader();
    let (index, _) = c.propose(l, b"after");
    c.run(100);
    assert!(
        c.nodes[&to].raft().commit() >= index,
        "{what} ({cause}): stopped"
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
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::BadFrame,
        "a frame that does not decode",
    );
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
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::NotRaft,
        "a handshake where a raft message belongs",
    );
}

/// Entries of a forged `Append`, each `(index, term, kind, data)` with its index and term
/// counted from the leader's last entry (`(1, 0, ..)` is the next entry of the current term).
type Forged<'a> = &'a [(LogIndex, Term, EntryKind, &'a [u8])];

#[test]
fn appends_whose_entries_do_not_match_their_header_are_dropped() {
    use EntryKind::{Config, Normal};
    // (what the frame does, the entry count it declares, its entries, bytes after them, cause)
    let cases: [(&str, u32, Forged, &[u8], Fault); 6] = [
        // The attacker's frame of issue 13: one entry declared, none sent.
        ("claims an entry it lacks", 1, &[], &[], Fault::EntryCount),
        (
            "has bytes after its entries",
            1,
            &[(1, 0, Normal, b"x")],
            &[0],
            Fault::EntryCount,
        ),
        // A good entry first: nothing of a frame is written unless all of it checks out.
        (
            "has entries that do not decode",
            2,
            &[(1, 0, Normal, b"ok")],
            &[0xFF; 3],
            Fault::MalformedEntries,
        ),
        (
            "has indexes that skip",
            2,
            &[(1, 0, Normal, b"a"), (3, 0, Normal, b"b")],
            &[],
            Fault::NotContiguous,
        ),
        (
            "has an entry newer than its leader",
            1,
            &[(1, 1, Normal, b"a")],
            &[],
            Fault::ImpossibleTerm,
        ),
        (
            "has a configuration that does not decode",
            1,
            &[(1, 0, Config, &[0xFF])],
            &[],
            Fault::BadConfigEntry,
        ),
    ];
    for (what, count, forged, after, fault) in cases {
        let (mut c, l, f) = settled();
        let (last, term) = tip(&c, l);
        let list: StdVec<_> = forged
            .iter()
            .map(|&(i, t, kind, data)| (last + i, term + t, kind, data))
            .collect();
        let mut tail = entries(&list);
        tail.extend_from_slice(after);
        let bytes = frame(l, f, append(&c, l, (last, term), count), &tail);
        assert_refused(&mut c, f, &bytes, fault, what);
    }
}

#[test]
fn an_append_larger_than_any_message_is_dropped() {
    let mut cfg = test_cfg();
    cfg.max_bytes_per_message = 1024;
    let (mut c, l, f) = settled_with(cfg);
    let (last, term) = tip(&c, l);
    let tail = entries(&[(last + 1, term, EntryKind::Normal, &[7u8; 2000])]);
    let bytes = frame(l, f, append(&c, l, (last, term), 1), &tail);
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::EntryTooLarge,
        "an append larger than any message",
    );
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
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::CommittedTruncation,
        "an append that would cut a committed entry",
    );
}

#[test]
fn an_append_of_the_leaders_own_term_from_another_node_is_dropped() {
    let (mut c, l, f) = settled();
    let body = append(&c, l, tip(&c, l), 0);
    let bytes = frame(f, l, body, &[]);
    assert_refused(
        &mut c,
        l,
        &bytes,
        Fault::RivalLeader,
        "an append of the leader's own term from another node",
    );
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
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::SnapshotSize,
        "a snapshot chunk past its size",
    );
}

#[test]
fn a_snapshot_that_does_not_match_its_checksum_is_refused_not_installed() {
    let (mut c, l, f) = settled();
    let data = [5u8; 10];
    let wrong = crate::record::CRC32C.checksum(&data) ^ 1;
    let bytes = frame(l, f, chunk(&c, l, &data, 10, wrong), &data);
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::SnapshotChecksum,
        "a snapshot that does not match its checksum",
    );
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
    assert_refused(
        &mut c,
        f,
        &bytes,
        Fault::ImpossibleSnapshot,
        "a snapshot that cannot exist",
    );
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
