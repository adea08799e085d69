//! Scenario tests for the Raft core, driven through the real node driver on a scripted network.
//! Each test pins one behaviour the design promises; the deterministic simulator in `tests/`
//! then checks them all together under faults.

extern crate std;

use super::*;
use crate::driver::{Event, Node, NodeConfig};
use crate::entry::{encode, EntryRef};
use crate::io::{
    SnapshotError, SnapshotReader, SnapshotWriter, StateMachine, Transport, TransportError,
};
use crate::storage::{LogView, ReadEntries};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::vec;
use std::vec::Vec as StdVec;

// ----- a plain in-memory storage (the simulator has the crash-faithful one) ---------------------

#[derive(Default, Clone)]
struct VecStore {
    hs: HardState,
    entries: StdVec<(LogIndex, Term, EntryKind, StdVec<u8>)>,
    snap: Option<(SnapshotMeta, StdVec<u8>)>,
    pending: Option<(SnapshotMeta, StdVec<u8>)>,
    syncs: u64,
}

impl VecStore {
    fn offset(&self) -> LogIndex {
        self.entries
            .first()
            .map(|e| e.0 - 1)
            .unwrap_or(self.last_index())
    }
}

impl LogView for VecStore {
    fn snapshot_index(&self) -> LogIndex {
        self.snap.as_ref().map(|s| s.0.index).unwrap_or(0)
    }
    fn last_index(&self) -> LogIndex {
        self.entries
            .last()
            .map(|e| e.0)
            .unwrap_or_else(|| self.snapshot_index())
    }
    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if let Some(e) = self.entries.iter().find(|e| e.0 == index) {
            return Ok(e.1);
        }
        if let Some((m, _)) = &self.snap {
            if m.index == index {
                return Ok(m.term);
            }
            if index < m.index {
                return Err(StorageError::Compacted(index));
            }
        }
        if index < self.offset() {
            Err(StorageError::Compacted(index))
        } else {
            Err(StorageError::Unavailable(index))
        }
    }
}

impl Storage for VecStore {
    fn hard_state(&self) -> HardState {
        self.hs
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hs = *hs;
        Ok(())
    }
    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        let expected = self.last_index() + 1;
        if e.index != expected {
            return Err(StorageError::NotContiguous {
                expected,
                given: e.index,
            });
        }
        self.entries
            .push((e.index, e.term, e.kind, e.data.to_vec()));
        Ok(())
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.entries.retain(|e| e.0 < from);
        Ok(())
    }
    fn compact_prefix(&mut self, upto: LogIndex) -> Result<(), StorageError> {
        assert!(
            upto <= self.snapshot_index(),
            "compaction past the snapshot"
        );
        self.entries.retain(|e| e.0 > upto);
        Ok(())
    }
    fn read_entries(
        &self,
        lo: LogIndex,
        hi: LogIndex,
        buf: &mut [u8],
    ) -> Result<ReadEntries, StorageError> {
        let mut at = 0;
        let mut count = 0;
        for i in lo..=hi {
            let Some(e) = self.entries.iter().find(|e| e.0 == i) else {
                if count == 0 {
                    return Err(self.term(i).err().unwrap_or(StorageError::Unavailable(i)));
                }
                break;
            };
            let r = EntryRef {
                index: e.0,
                term: e.1,
                kind: e.2,
                data: &e.3,
            };
            match encode(&r, &mut buf[at..]) {
                Ok(n) => {
                    at += n;
                    count += 1;
                }
                Err(_) if count > 0 => break,
                Err(_) => {
                    return Err(StorageError::BufferTooSmall {
                        needed: r.encoded_len(),
                    })
                }
            }
        }
        Ok(ReadEntries { count, bytes: at })
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.syncs += 1;
        Ok(())
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snap.as_ref().map(|s| s.0.clone())
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.pending = Some((meta.clone(), StdVec::new()));
        Ok(())
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let p = self.pending.as_mut().ok_or(StorageError::SnapshotState)?;
        assert_eq!(offset as usize, p.1.len());
        p.1.extend_from_slice(data);
        Ok(())
    }
    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        let (meta, data) = self.pending.take().ok_or(StorageError::SnapshotState)?;
        let keep = self.term(meta.index).ok() == Some(meta.term);
        if !keep {
            self.entries.clear();
        }
        self.snap = Some((meta, data));
        Ok(())
    }
    fn snapshot_read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, StorageError> {
        let (_, data) = self.snap.as_ref().ok_or(StorageError::NoSnapshot)?;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }
}

// ----- a log state machine: remembers every command in order ------------------------------------

#[derive(Default)]
struct LogSm {
    applied: LogIndex,
    cmds: StdVec<(LogIndex, StdVec<u8>)>,
}

impl StateMachine for LogSm {
    type Output = usize;
    fn apply(&mut self, index: LogIndex, _term: Term, command: &[u8]) -> usize {
        self.applied = index;
        self.cmds.push((index, command.to_vec()));
        self.cmds.len()
    }
    fn skip(&mut self, index: LogIndex) {
        self.applied = index;
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        for (i, c) in &self.cmds {
            out.write(&i.to_le_bytes())?;
            out.write(&(c.len() as u32).to_le_bytes())?;
            out.write(c)?;
        }
        Ok(())
    }
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        self.cmds.clear();
        while src.remaining() > 0 {
            let mut i = [0u8; 8];
            let mut l = [0u8; 4];
            src.read_exact(&mut i)?;
            src.read_exact(&mut l)?;
            let mut c = vec![0u8; u32::from_le_bytes(l) as usize];
            src.read_exact(&mut c)?;
            self.cmds.push((u64::from_le_bytes(i), c));
        }
        self.applied = index;
        Ok(())
    }
}

// ----- a scripted network --------------------------------------------------------------------

type Wire = Rc<RefCell<StdVec<(NodeId, NodeId, StdVec<u8>)>>>;

struct Net {
    from: NodeId,
    wire: Wire,
}

impl Transport for Net {
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        self.wire.borrow_mut().push((self.from, to, frame.to_vec()));
        Ok(())
    }
}

type TNode = Node<VecStore, Net, LogSm, StdVec<u8>>;

struct Cluster {
    nodes: BTreeMap<NodeId, TNode>,
    wire: Wire,
    now: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    applied: BTreeMap<NodeId, StdVec<(LogIndex, Term, usize)>>,
    reads: BTreeMap<NodeId, StdVec<Event<usize>>>,
    cfg: Config,
}

fn test_cfg() -> Config {
    let mut c = Config::server();
    c.election_timeout_ms = 100;
    c.heartbeat_interval_ms = 20;
    c.lease_drift_margin_ms = 10;
    c.snapshot_entries = 0;
    c.snapshot_interval_ms = 0;
    c.snapshot_keep_entries = 0;
    c
}

impl Cluster {
    fn new(ids: &[NodeId]) -> Self {
        Self::with(ids, &[], test_cfg())
    }

    fn with(voters: &[NodeId], observers: &[NodeId], cfg: Config) -> Self {
        let m = Membership::new(voters, observers).unwrap();
        let mut c = Cluster {
            nodes: BTreeMap::new(),
            wire: Rc::new(RefCell::new(StdVec::new())),
            now: 0,
            cut: BTreeSet::new(),
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            cfg,
        };
        for &id in voters.iter().chain(observers) {
            c.start(id, VecStore::default(), Some(&m));
        }
        c
    }

    fn start(&mut self, id: NodeId, store: VecStore, bootstrap: Option<&Membership>) {
        let nc = NodeConfig {
            cluster_id: 7,
            group: 0,
            node_id: id,
            raft: self.cfg.clone(),
            seed: id * 31,
        };
        let net = Net {
            from: id,
            wire: self.wire.clone(),
        };
        let node = Node::new(
            nc,
            store,
            net,
            LogSm::default(),
            vec![0u8; 64 * 1024],
            self.now,
            bootstrap,
        )
        .unwrap();
        self.nodes.insert(id, node);
    }

    fn crash(&mut self, id: NodeId) -> VecStore {
        let node = self.nodes.remove(&id).unwrap();
        node.into_parts().0
    }

    fn flush_all(&mut self) {
        let now = self.now;
        for (id, n) in self.nodes.iter_mut() {
            let applied = self.applied.entry(*id).or_default();
            let reads = self.reads.entry(*id).or_default();
            n.flush(now, &mut |ev| match ev {
                Event::Applied {
                    index,
                    term,
                    output,
                } => applied.push((index, term, output)),
                e @ (Event::ReadReady { .. } | Event::ReadFailed { .. }) => reads.push(e),
                _ => {}
            })
            .unwrap();
        }
    }

    /// Deliver every queued frame (and what it causes) until the network is quiet.
    fn deliver(&mut self) {
        for _ in 0..10_000 {
            self.flush_all();
            let frames: StdVec<_> = self.wire.borrow_mut().drain(..).collect();
            if frames.is_empty() {
                return;
            }
            for (from, to, f) in frames {
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.handle_frame(self.now, &f).unwrap();
                }
            }
        }
        panic!("network never went quiet");
    }

    /// Advance time in heartbeat-sized steps, delivering everything each step.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 5;
            let now = self.now;
            for n in self.nodes.values_mut() {
                n.tick(now).unwrap();
            }
            self.deliver();
        }
    }

    fn isolate(&mut self, id: NodeId) {
        let ids: StdVec<_> = self.nodes.keys().copied().chain(1..10).collect();
        for o in ids {
            if o != id {
                self.cut.insert((id, o));
                self.cut.insert((o, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    fn leaders(&self) -> StdVec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft().role() == Role::Leader)
            .map(|(id, _)| *id)
            .collect()
    }

    fn leader(&self) -> NodeId {
        let l = self.leaders();
        assert_eq!(l.len(), 1, "expected exactly one leader, found {:?}", l);
        l[0]
    }

    fn elect(&mut self) -> NodeId {
        for _ in 0..100 {
            self.run(20);
            let l = self.leaders();
            if l.len() == 1
                && self.nodes[&l[0]].raft().commit() >= self.nodes[&l[0]].raft().term_start_index
            {
                return l[0];
            }
        }
        panic!("no leader elected");
    }

    fn node(&mut self, id: NodeId) -> &mut TNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn propose(&mut self, id: NodeId, cmd: &[u8]) -> (LogIndex, Term) {
        let now = self.now;
        self.node(id).propose(now, cmd).unwrap()
    }

    fn commands(&self, id: NodeId) -> StdVec<StdVec<u8>> {
        self.nodes[&id]
            .state_machine()
            .cmds
            .iter()
            .map(|c| c.1.clone())
            .collect()
    }
}

// ----- 1. elections, PreVote, CheckQuorum, lease ---------------------------------------------

#[test]
fn a_leader_is_elected_and_commits_its_noop() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let term = c.nodes[&l].raft().term();
    for n in c.nodes.values() {
        assert_eq!(n.raft().term(), term);
        assert_eq!(n.raft().leader(), l);
    }
    assert_eq!(c.nodes[&l].raft().stats().became_leader, 1);
}

#[test]
fn a_sole_voter_leads_at_its_first_tick_also_after_a_restart() {
    let mut c = Cluster::new(&[1]);
    let start = c.now;
    c.run(5);
    assert_eq!(
        c.leaders(),
        vec![1],
        "a fresh single-voter group leads at once"
    );
    c.propose(1, b"x");
    c.run(5);
    let store = c.crash(1);
    c.start(1, store, None);
    let restarted = c.now;
    c.run(5);
    assert_eq!(c.leaders(), vec![1], "a restarted sole voter leads at once");
    assert!(c.now - restarted <= 5 && c.now - start < test_cfg().election_timeout_ms);
    // With more voters a restarted node still waits (it may be inside another leader's lease).
    let mut c = Cluster::new(&[1, 2, 3]);
    c.run(5);
    assert!(c.leaders().is_empty());
}

#[test]
fn election_timeouts_are_randomized_per_node() {
    let c = Cluster::new(&[1, 2, 3, 4, 5]);
    let deadlines: BTreeSet<u64> = c
        .nodes
        .values()
        .map(|n| n.raft().election_deadline_ms)
        .collect();
    assert!(
        deadlines.len() > 1,
        "all nodes drew the same election timeout"
    );
    for d in deadlines {
        assert!((100..200).contains(&d));
    }
}

#[test]
fn prevote_keeps_a_partitioned_node_from_raising_the_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let term = c.nodes[&l].raft().term();
    c.isolate(f);
    c.run(1000);
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "pre-votes must not raise the term"
    );
    c.heal();
    c.run(200);
    assert_eq!(
        c.leader(),
        l,
        "the rejoining node must not depose the leader"
    );
    assert_eq!(c.nodes[&l].raft().term(), term);
}

#[test]
fn without_prevote_an_isolated_node_raises_its_term() {
    let mut cfg = test_cfg();
    cfg.pre_vote = false;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let term = c.nodes[&l].raft().term();
    c.isolate(f);
    c.run(1000);
    assert!(c.nodes[&f].raft().term() > term);
}

#[test]
fn check_quorum_steps_down_an_isolated_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.isolate(l);
    c.run(300);
    assert_ne!(
        c.nodes[&l].raft().role(),
        Role::Leader,
        "isolated leader must step down"
    );
    let others: StdVec<_> = c.leaders();
    assert_eq!(others.len(), 1);
    assert_ne!(others[0], l);
}

#[test]
fn lease_is_granted_by_a_quorum_and_expires_without_one() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.run(40);
    let now = c.now;
    let idx = c.nodes[&l]
        .read_lease(now)
        .expect("a fresh leader with quorum contact holds the lease");
    assert!(idx >= c.nodes[&l].raft().term_start_index);
    let f = if l == 1 { 2 } else { 1 };
    assert_eq!(
        c.nodes[&f].read_lease(now),
        Err(ReadError::NotLeader { leader: l })
    );
    c.isolate(l);
    c.now += 95; // lease = election timeout (100) minus drift margin (10) since the last ack
    assert_eq!(c.nodes[&l].read_lease(c.now), Err(ReadError::LeaseExpired));
}

#[test]
fn followers_in_a_lease_ignore_disruptive_vote_requests() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let term = c.nodes[&l].raft().term();
    let now = c.now;
    let vote = Message::Vote {
        term: term + 5,
        last_index: 1000,
        last_term: term + 4,
        transfer: false,
    };
    c.node(f).receive(now, 3, &vote, &[]).unwrap();
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "vote request inside the lease must be ignored"
    );
}

// ----- 2. replication ----------------------------------------------------------------------------

#[test]
fn proposals_replicate_and_apply_in_order_everywhere() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    for i in 0..50u32 {
        c.propose(l, &i.to_le_bytes());
    }
    c.run(50);
    let want: StdVec<StdVec<u8>> = (0..50u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for id in [1, 2, 3] {
        assert_eq!(c.commands(id), want, "node {}", id);
    }
    // The leader reported each of its proposals applied with the index it was given.
    assert_eq!(c.applied[&l].len(), 50);
}

#[test]
fn pipelining_respects_the_inflight_window_and_message_limits() {
    let mut cfg = test_cfg();
    cfg.max_inflight = 2;
    cfg.max_entries_per_message = 3;
    let mut c = Cluster::with(&[1, 2], &[], cfg);
    let l = c.elect();
    let f = 3 - l;
    c.flush_all();
    c.wire.borrow_mut().clear();
    let now = c.now;
    for i in 0..20u8 {
        c.node(l).propose(now, &[i]).unwrap();
    }
    c.flush_all();
    let frames: StdVec<_> = c
        .wire
        .borrow()
        .iter()
        .filter(|(_, to, _)| *to == f)
        .map(|x| x.2.clone())
        .collect();
    let mut appends = 0;
    for fr in &frames {
        let (frame, _) = crate::wire::decode(fr).unwrap();
        if let crate::wire::Body::Raft(Message::Append { count, .. }) = frame.body {
            if count > 0 {
                appends += 1;
                assert!(count <= 3, "max_entries_per_message exceeded: {}", count);
            }
        }
    }
    assert_eq!(
        appends, 2,
        "exactly the window of 2 messages goes out before any ack"
    );
    c.deliver();
    c.run(20);
    assert_eq!(c.commands(f).len(), 20);
}

#[test]
fn a_byte_budget_smaller_than_the_batch_sends_fewer_entries() {
    let mut cfg = test_cfg();
    cfg.max_bytes_per_message = 300;
    let mut c = Cluster::with(&[1, 2], &[], cfg);
    let l = c.elect();
    for i in 0..10u8 {
        c.propose(l, &[i; 100]);
    }
    c.run(100);
    assert_eq!(
        c.commands(3 - l).len(),
        10,
        "all entries still arrive, a few per message"
    );
}

#[test]
fn a_lagging_follower_is_repaired_by_fast_backtracking() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.isolate(f);
    for i in 0..30u8 {
        c.propose(l, &[i]);
        c.run(5);
    }
    c.heal();
    c.run(100);
    assert_eq!(c.commands(f), c.commands(l));
}

/// Isolate the leader and let it append `stale` entries nobody else gets; the majority elects a
/// new leader that takes `fresh` entries; `before_heal` sees the cluster while the old leader
/// still holds its stale tail; then heal and let the old leader's log be cut and refilled.
/// Returns the old leader.
fn diverge(
    c: &mut Cluster,
    stale: u8,
    fresh: u8,
    before_heal: impl FnOnce(&Cluster, NodeId),
) -> NodeId {
    let old = c.elect();
    c.isolate(old);
    for i in 0..stale {
        c.propose(old, &[100 + i]);
    }
    c.run(400);
    let new = c
        .leaders()
        .into_iter()
        .find(|&x| x != old)
        .expect("majority elects a new leader");
    for i in 0..fresh {
        c.propose(new, &[i]);
    }
    c.run(50);
    before_heal(c, old);
    c.heal();
    c.run(300);
    old
}

#[test]
fn conflicting_uncommitted_suffix_is_truncated() {
    let mut c = Cluster::new(&[1, 2, 3]);
    diverge(&mut c, 5, 3, |_, _| {});
    for id in [1, 2, 3] {
        assert_eq!(
            c.commands(id),
            vec![vec![0], vec![1], vec![2]],
            "node {}",
            id
        );
    }
}

#[test]
fn an_old_term_entry_is_not_committed_by_counting_replicas() {
    // Raft §5.4.2 (Figure 8): a new leader must not commit an entry of an earlier term just
    // because a majority holds it; only an entry of its own term commits it.
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let now = c.now;
    let (idx, _) = c.node(l).propose(now, b"old").unwrap();
    let term = c.nodes[&l].raft().term();
    // Hand-craft the state: a leader of a later term whose log has the old entry replicated
    // to a quorum, but whose own no-op is not yet replicated.
    let r = &mut c.node(l).raft;
    r.term = term + 1;
    r.term_start_index = idx + 1;
    r.last_index = idx;
    r.persisted_index = idx;
    for p in r.progress.iter_mut() {
        p.match_index = idx;
    }
    let before = r.commit;
    r.maybe_commit();
    assert_eq!(
        r.commit, before,
        "an earlier-term entry must not commit by counting"
    );
    r.term_start_index = idx;
    r.maybe_commit();
    assert_eq!(
        r.commit, idx,
        "an entry of the current term commits by counting"
    );
}

#[test]
fn leader_replicates_before_its_own_sync() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.flush_all();
    c.wire.borrow_mut().clear();
    let syncs = c.nodes[&l].storage().syncs;
    let now = c.now;
    c.node(l).propose(now, b"x").unwrap();
    // Raft alone (before the driver syncs) already queued the appends.
    let n = c.node(l);
    let r = &mut n.raft;
    r.flush(now, &mut n.store).unwrap();
    let mut queued = 0;
    while let Some(env) = r.pop_message() {
        if matches!(env.msg, Message::Append { count: 1, .. }) {
            queued += 1;
        }
    }
    assert_eq!(
        queued, 2,
        "appends leave before the leader's own write is durable"
    );
    assert_eq!(c.nodes[&l].storage().syncs, syncs);
}

#[test]
fn a_heartbeat_answered_in_the_same_batch_does_not_hide_an_append_ack() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.flush_all();
    c.wire.borrow_mut().clear();
    let now = c.now;
    let (index, _) = c.node(l).propose(now, b"x").unwrap();
    c.node(l).flush(now, &mut |_| {}).unwrap();
    // A heartbeat leaves before the follower has answered the append.
    let later = now + test_cfg().heartbeat_interval_ms;
    c.node(l).tick(later).unwrap();
    c.node(l).flush(later, &mut |_| {}).unwrap();
    let to_f: StdVec<StdVec<u8>> = c
        .wire
        .borrow_mut()
        .drain(..)
        .filter(|(_, to, _)| *to == f)
        .map(|(_, _, fr)| fr)
        .collect();
    let kinds: StdVec<(LogIndex, u32)> = to_f
        .iter()
        .filter_map(|fr| match crate::wire::decode(fr).unwrap().0.body {
            crate::wire::Body::Raft(Message::Append {
                prev_index, count, ..
            }) => Some((prev_index, count)),
            _ => None,
        })
        .collect();
    assert!(
        kinds
            .iter()
            .any(|&(p, n)| n > 0 && p + u64::from(n) == index)
            && kinds.last().map(|&(p, n)| n == 0 && p < index) == Some(true),
        "an append carrying {index}, then a heartbeat behind it: {kinds:?}"
    );
    // The follower steps both in one batch (its log unsynced in between), then flushes once.
    for fr in &to_f {
        c.node(f).handle_frame(later, fr).unwrap();
    }
    c.node(f).flush(later, &mut |_| {}).unwrap();
    let acks: StdVec<LogIndex> = c
        .wire
        .borrow_mut()
        .drain(..)
        .filter_map(
            |(_, to, fr)| match crate::wire::decode(&fr).unwrap().0.body {
                crate::wire::Body::Raft(Message::AppendResp {
                    success: true,
                    match_index,
                    ..
                }) if to == l => Some(match_index),
                _ => None,
            },
        )
        .collect();
    assert_eq!(
        acks.iter().max(),
        Some(&index),
        "the follower's released answer must acknowledge the appended entry: {acks:?}"
    );
}

#[test]
fn acknowledgements_wait_for_sync() {
    let mut c = Cluster::new(&[1, 2]);
    let l = c.elect();
    let f = 3 - l;
    let now = c.now;
    c.node(l).propose(now, b"x").unwrap();
    c.flush_all();
    let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
    for (_, to, fr) in frames {
        if to == f {
            c.node(f).handle_frame(now, &fr).unwrap();
        }
    }
    // Before the follower's flush (its sync), its ack is held back.
    let r = &mut c.node(f).raft;
    assert!(r.needs_sync());
    let mut acks = 0;
    while let Some(env) = r.pop_message() {
        if matches!(env.msg, Message::AppendResp { success: true, .. }) {
            acks += 1;
        }
    }
    assert_eq!(acks, 0, "no ack may leave before the entries are durable");
    r.on_persisted(r.last_index());
    let mut released = 0;
    while let Some(env) = r.pop_message() {
        if matches!(env.msg, Message::AppendResp { success: true, .. }) {
            released += 1;
        }
    }
    assert_eq!(released, 1);
}

// ----- 3. storage obligations: votes are durable before they are granted -------------------------

#[test]
fn a_vote_is_durable_before_the_grant_leaves_and_survives_restart() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let now = c.now + 1000;
    let vote = Message::Vote {
        term: 5,
        last_index: 10,
        last_term: 4,
        transfer: true,
    };
    let n = c.node(2);
    n.receive(now, 1, &vote, &[]).unwrap();
    // Raft wrote the hard state but holds the grant until a sync.
    assert_eq!(n.storage().hard_state().vote, 1);
    assert!(
        n.raft.pop_message().is_none(),
        "grant must wait for the sync"
    );
    let store = c.crash(2);
    c.start(2, store, None);
    // After a restart the node remembers its vote and refuses another candidate in term 5.
    let other = Message::Vote {
        term: 5,
        last_index: 10,
        last_term: 4,
        transfer: true,
    };
    let n = c.node(2);
    n.receive(now, 3, &other, &[]).unwrap();
    n.flush(now, &mut |_| {}).unwrap();
    let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
    let granted = frames.iter().any(|(_, _, f)| {
        matches!(
            crate::wire::decode(f).unwrap().0.body,
            crate::wire::Body::Raft(Message::VoteResp { granted: true, .. })
        )
    });
    assert!(
        !granted,
        "a second vote in the same term was granted after restart"
    );
}

// ----- 4. snapshots ------------------------------------------------------------------------------

#[test]
fn snapshots_trigger_by_entry_count_and_compact_the_log() {
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 10;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    for i in 0..25u8 {
        c.propose(l, &[i]);
    }
    c.run(50);
    for id in [1, 2, 3] {
        let n = &c.nodes[&id];
        assert!(
            n.storage().snapshot_index() >= 20,
            "node {} snapshot at {}",
            id,
            n.storage().snapshot_index()
        );
        assert!(
            n.storage().entries.first().map(|e| e.0).unwrap_or(u64::MAX) > 10,
            "log compacted behind the snapshot"
        );
    }
}

#[test]
fn snapshots_trigger_by_interval() {
    let mut cfg = test_cfg();
    cfg.snapshot_interval_ms = 200;
    let mut c = Cluster::with(&[1], &[], cfg);
    let l = c.elect();
    c.propose(l, b"a");
    let mut waited = 0;
    while c.nodes[&l].storage().snapshot_index() == 0 {
        c.run(5);
        waited += 5;
        assert!(waited <= 250, "no snapshot within the interval");
    }
    let first = c.nodes[&l].storage().snapshot_index();
    c.propose(l, b"b");
    c.run(150);
    assert_eq!(
        c.nodes[&l].storage().snapshot_index(),
        first,
        "no snapshot before the interval passes"
    );
    c.run(100);
    assert!(c.nodes[&l].storage().snapshot_index() > first);
}

#[test]
fn a_follower_too_far_behind_gets_a_chunked_snapshot_and_resumes_after_a_lost_chunk() {
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 5;
    cfg.snapshot_chunk_bytes = 16; // many chunks
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.isolate(f);
    for i in 0..30u8 {
        c.propose(l, &[i; 8]);
        c.run(5);
    }
    assert!(c.nodes[&l].storage().snapshot_index() > 0);
    c.heal();
    // Drop exactly one snapshot chunk on the way to the follower.
    let mut dropped = false;
    let mut chunks = 0;
    for _ in 0..200 {
        c.now += 5;
        let now = c.now;
        for n in c.nodes.values_mut() {
            n.tick(now).unwrap();
        }
        c.flush_all();
        let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
        for (from, to, fr) in frames {
            let body = crate::wire::decode(&fr).unwrap().0.body;
            // The outbox queues chunks by snapshot index only: the frame must carry the whole
            // stored header (membership, size, checksum), filled in by the driver.
            if let crate::wire::Body::Raft(Message::Snapshot { meta, .. }) = &body {
                let stored = c.nodes[&from].storage().snapshot_meta().unwrap();
                assert_eq!(meta.index, stored.index);
                assert_eq!(meta.term, stored.term);
                assert_eq!(meta.membership, stored.membership);
                assert_eq!(meta.membership.voters.as_slice(), &[1, 2, 3]);
                assert_eq!((meta.size_bytes, meta.crc), (stored.size_bytes, stored.crc));
                chunks += 1;
            }
            if !dropped && to == f {
                if let crate::wire::Body::Raft(Message::Snapshot { offset, .. }) = body {
                    if offset > 0 {
                        dropped = true;
                        continue;
                    }
                }
            }
            let _ = from;
            c.node(to).handle_frame(now, &fr).unwrap();
        }
    }
    assert!(dropped, "the test must have dropped a chunk");
    assert!(chunks > 2, "the snapshot went in several chunks");
    assert_eq!(c.nodes[&f].raft().stats().snapshots_installed, 1);
    assert_eq!(
        c.nodes[&f].storage().snapshot_meta().unwrap().membership,
        c.nodes[&l].raft().membership().clone()
    );
    assert_eq!(c.commands(f), c.commands(l));
}

// ----- 5. membership -----------------------------------------------------------------------------

fn change(c: &mut Cluster, l: NodeId, ch: ConfigChange) -> LogIndex {
    let now = c.now;
    let (idx, _, _) = c.node(l).change_membership(now, ch).unwrap();
    for _ in 0..100 {
        c.run(10);
        if c.nodes
            .get(&l)
            .map(|n| n.raft().commit() >= idx)
            .unwrap_or(true)
        {
            break;
        }
    }
    idx
}

#[test]
fn joint_consensus_adds_a_node_through_prepare_and_commit() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.propose(l, b"before");
    c.run(30);
    c.start(4, VecStore::default(), None);
    assert_eq!(
        c.nodes[&4].raft().role(),
        Role::Observer,
        "a joining node waits as observer"
    );
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[1, 2, 3, 4], &[]).unwrap()),
    );
    assert!(c.nodes[&l].raft().membership().joint);
    change(&mut c, l, ConfigChange::Commit);
    for id in [1, 2, 3, 4] {
        let m = c.nodes[&id].raft().membership();
        assert!(
            !m.joint && m.voters.as_slice() == [1, 2, 3, 4],
            "node {} has {:?}",
            id,
            m
        );
    }
    assert_eq!(c.commands(4), vec![b"before".to_vec()]);
    assert_eq!(c.nodes[&4].raft().role(), Role::Follower);
}

#[test]
fn joint_decisions_need_both_majorities() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.start(4, VecStore::default(), None);
    c.start(5, VecStore::default(), None);
    let others: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[l, 4, 5], &[]).unwrap()),
    );
    // Cut the new half's other members: the old majority alone cannot commit.
    c.isolate(4);
    c.isolate(5);
    let before = c.nodes[&l].raft().commit();
    c.propose(l, b"needs both halves");
    c.run(60);
    assert_eq!(
        c.nodes[&l].raft().commit(),
        before,
        "old majority {:?} alone must not commit",
        others
    );
    c.heal();
    c.run(60);
    assert!(c.nodes[&l].raft().commit() > before);
}

#[test]
fn abort_returns_to_the_old_configuration() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.start(4, VecStore::default(), None);
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[1, 2, 3, 4], &[]).unwrap()),
    );
    let now = c.now;
    assert_eq!(
        c.node(l)
            .change_membership(
                now,
                ConfigChange::Prepare(Membership::new(&[1], &[]).unwrap())
            )
            .unwrap_err(),
        ProposeError::ConfigChangeInProgress
    );
    change(&mut c, l, ConfigChange::Abort);
    for id in [1, 2, 3] {
        assert_eq!(
            c.nodes[&id].raft().membership(),
            &Membership::new(&[1, 2, 3], &[]).unwrap()
        );
    }
}

#[test]
fn observers_receive_the_log_but_never_vote_and_can_be_promoted() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], test_cfg());
    let l = c.elect();
    assert_eq!(c.nodes[&4].raft().role(), Role::Observer);
    c.propose(l, b"x");
    c.run(30);
    assert_eq!(c.commands(4), vec![b"x".to_vec()]);
    // The observer never campaigns, even when cut off for long.
    c.isolate(4);
    c.run(1000);
    assert_eq!(c.nodes[&4].raft().role(), Role::Observer);
    assert_eq!(c.nodes[&4].raft().stats().elections, 0);
    c.heal();
    c.run(100);
    let l = c.leader();
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[1, 2, 3, 4], &[]).unwrap()),
    );
    change(&mut c, l, ConfigChange::Commit);
    assert_eq!(
        c.nodes[&4].raft().role(),
        Role::Follower,
        "promoted observer votes"
    );
}

#[test]
fn a_removed_leader_steps_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let rest: StdVec<NodeId> = [1, 2, 3].into_iter().filter(|&x| x != l).collect();
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&rest, &[]).unwrap()),
    );
    change(&mut c, l, ConfigChange::Commit);
    assert_ne!(c.nodes[&l].raft().role(), Role::Leader);
    c.run(500);
    let nl = c.leaders().into_iter().find(|x| rest.contains(x));
    assert!(nl.is_some(), "the remaining members elect a leader");
}

// ----- 6. leader transfer ------------------------------------------------------------------------

#[test]
fn leader_transfer_catches_the_target_up_then_hands_over() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let t = if l == 3 { 2 } else { 3 };
    c.isolate(t);
    for i in 0..10u8 {
        c.propose(l, &[i]);
    }
    c.run(20);
    c.heal();
    let now = c.now;
    c.node(l).transfer_leader(now, t).unwrap();
    assert_eq!(
        c.node(l).propose(now, b"no"),
        Err(ProposeError::TransferInProgress)
    );
    c.run(100);
    assert_eq!(c.leader(), t);
    assert_eq!(c.commands(t).len(), 10);
    let now = c.now;
    assert_eq!(
        c.node(t).transfer_leader(now, t),
        Err(TransferError::BadTarget)
    );
}

// ----- 7. reads ----------------------------------------------------------------------------------

#[test]
fn read_index_on_the_leader_waits_for_a_quorum_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.propose(l, b"w");
    c.run(20);
    let now = c.now;
    let t1 = c.node(l).read_index(now).unwrap();
    let t2 = c.node(l).read_index(now).unwrap();
    c.flush_all();
    assert!(
        c.reads[&l].is_empty(),
        "no read is ready before a quorum confirms leadership"
    );
    c.deliver();
    let ready = c.reads[&l].iter().find_map(|e| match e {
        Event::ReadReady { upto, index } => Some((*upto, *index)),
        _ => None,
    });
    let (upto, index) = ready.expect("read became ready");
    assert!(upto >= t2 && t2 > t1, "both reads share one round");
    assert!(index >= 2);
}

#[test]
fn an_isolated_leader_cannot_serve_read_index() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    c.isolate(l);
    let now = c.now;
    c.node(l).read_index(now).unwrap();
    c.run(300);
    let ready = c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadReady { .. }));
    let failed = c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadFailed { .. }));
    assert!(!ready, "a deposed leader must not confirm a read");
    assert!(failed, "the read fails once the leader steps down");
}

#[test]
fn a_follower_serves_reads_through_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.propose(l, b"w");
    c.run(20);
    let now = c.now;
    let t = c.node(f).read_index(now).unwrap();
    c.run(30);
    let got = c.reads[&f].iter().find_map(|e| match e {
        Event::ReadReady { upto, index } if *upto >= t => Some(*index),
        _ => None,
    });
    let index = got.expect("the follower's read became ready");
    assert!(c.nodes[&f].applied() >= index);
    assert!(index >= 3, "the read index covers the committed write");
}

#[test]
fn reads_without_a_leader_are_refused() {
    let mut c = Cluster::new(&[1, 2, 3]);
    assert_eq!(c.node(1).read_index(0), Err(ReadError::NoLeader));
}

#[test]
fn single_node_reads_are_immediate() {
    let mut c = Cluster::new(&[1]);
    let l = c.elect();
    let now = c.now;
    c.node(l).read_index(now).unwrap();
    c.flush_all();
    assert!(c.reads[&l]
        .iter()
        .any(|e| matches!(e, Event::ReadReady { .. })));
}

// ----- 8. multi-raft -------------------------------------------------------------------------------

#[test]
fn one_host_runs_several_groups_added_and_removed_at_runtime() {
    use crate::multi::{MultiError, MultiNode};
    let wire: Wire = Rc::new(RefCell::new(StdVec::new()));
    let m = Membership::new(&[1], &[]).unwrap();
    let mut host: MultiNode<VecStore, Net, LogSm, StdVec<u8>, 2> = MultiNode::new();
    for g in [10, 20] {
        let nc = NodeConfig {
            cluster_id: 7,
            group: g,
            node_id: 1,
            raft: test_cfg(),
            seed: 1,
        };
        let node = Node::new(
            nc,
            VecStore::default(),
            Net {
                from: 1,
                wire: wire.clone(),
            },
            LogSm::default(),
            vec![0u8; 4096],
            0,
            Some(&m),
        )
        .unwrap();
        host.add_group(g, node).unwrap();
    }
    let nc = NodeConfig {
        cluster_id: 7,
        group: 30,
        node_id: 1,
        raft: test_cfg(),
        seed: 1,
    };
    let extra = Node::new(
        nc,
        VecStore::default(),
        Net {
            from: 1,
            wire: wire.clone(),
        },
        LogSm::default(),
        vec![0u8; 4096],
        0,
        Some(&m),
    )
    .unwrap();
    assert_eq!(
        host.add_group(30, extra).err(),
        Some(MultiError::Full { max_groups: 2 })
    );
    for t in 1..100 {
        host.tick(t * 5).unwrap();
        host.flush(t * 5, &mut |_, _| {}).unwrap();
    }
    host.group_mut(10).unwrap().propose(500, b"ten").unwrap();
    host.group_mut(20).unwrap().propose(500, b"twenty").unwrap();
    let mut seen = StdVec::new();
    host.flush(500, &mut |g, e| {
        if let Event::Applied { .. } = e {
            seen.push(g)
        }
    })
    .unwrap();
    seen.sort();
    assert_eq!(seen, vec![10, 20]);
    assert_eq!(host.group(10).unwrap().state_machine().cmds[0].1, b"ten");
    // A frame for a group this host does not run is refused by name.
    let mut buf = [0u8; 1024];
    let h = crate::wire::FrameHeader {
        version: 1,
        cluster_id: 7,
        group: 99,
        from: 2,
        to: 1,
    };
    let n = crate::wire::encode(
        &h,
        &crate::wire::Body::Raft(Message::TimeoutNow { term: 1 }),
        &[],
        &mut buf,
    )
    .unwrap();
    assert_eq!(
        host.handle_frame(500, &buf[..n]),
        Err(MultiError::UnknownGroup(99))
    );
    host.remove_group(10).unwrap();
    assert!(host.group(10).is_none());
    assert_eq!(host.group_ids().collect::<StdVec<_>>(), vec![20]);
}

#[test]
fn frames_for_another_cluster_group_or_node_are_refused() {
    use crate::driver::NodeError;
    let mut c = Cluster::new(&[1, 2]);
    let mut buf = [0u8; 1024];
    let mut send = |cluster, group, to| {
        let h = crate::wire::FrameHeader {
            version: 1,
            cluster_id: cluster,
            group,
            from: 2,
            to,
        };
        let n = crate::wire::encode(
            &h,
            &crate::wire::Body::Raft(Message::TimeoutNow { term: 1 }),
            &[],
            &mut buf,
        )
        .unwrap();
        c.node(1).handle_frame(0, &buf[..n])
    };
    assert_eq!(
        send(8, 0, 1),
        Err(NodeError::WrongCluster {
            local: 7,
            remote: 8
        })
    );
    assert_eq!(
        send(7, 3, 1),
        Err(NodeError::WrongGroup {
            local: 0,
            remote: 3
        })
    );
    assert_eq!(
        send(7, 0, 5),
        Err(NodeError::WrongNode {
            local: 1,
            remote: 5
        })
    );
}

// ----- 10. capacities -----------------------------------------------------------------------------

#[test]
fn pending_proposal_limit_returns_busy() {
    let mut cfg = test_cfg();
    cfg.max_pending_proposals = 4;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    c.isolate(l);
    let now = c.now;
    let mut ok = 0;
    let err = loop {
        match c.node(l).propose(now, b"p") {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err, ProposeError::Busy);
    assert_eq!(ok, 4);
}

#[test]
fn reads_beyond_the_round_limit_wait_in_one_round_then_busy() {
    let mut cfg = test_cfg();
    cfg.max_read_rounds = 2;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    c.isolate(l);
    let mut tickets = StdVec::new();
    for _ in 0..4 {
        let now = c.now;
        // Two rounds go out (one per flush); the third round waits and the fourth read joins it.
        tickets.push(c.node(l).read_index(now).expect("the read is queued"));
        c.flush_all();
    }
    // The periodic heartbeat sends the waiting round too: now nothing can take another read.
    c.run(test_cfg().heartbeat_interval_ms + 5);
    let now = c.now;
    assert_eq!(c.node(l).read_index(now), Err(ReadError::Busy));
    // Once the peers answer, every queued read is served.
    c.heal();
    c.run(50);
    let served = c.reads[&l]
        .iter()
        .filter_map(|e| match e {
            Event::ReadReady { upto, .. } => Some(*upto),
            _ => None,
        })
        .max();
    assert_eq!(served, tickets.last().copied());
}

#[test]
fn oversize_commands_are_refused() {
    let mut cfg = test_cfg();
    cfg.max_bytes_per_message = 128;
    let mut c = Cluster::with(&[1], &[], cfg);
    let l = c.elect();
    let now = c.now;
    assert_eq!(
        c.node(l).propose(now, &[0u8; 200]),
        Err(ProposeError::TooLarge)
    );
}

#[test]
fn proposals_on_a_follower_name_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let now = c.now;
    assert_eq!(
        c.node(f).propose(now, b"x"),
        Err(ProposeError::NotLeader { leader: l })
    );
}

// ----- 12. the driver: restart recovers state and replays the log ---------------------------------

#[test]
fn restart_recovers_membership_and_replays_committed_entries() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    for i in 0..5u8 {
        c.propose(l, &[i]);
    }
    c.run(40);
    let f = if l == 1 { 2 } else { 1 };
    let store = c.crash(f);
    c.start(f, store, None);
    assert_eq!(
        c.nodes[&f].raft().membership().voters.as_slice(),
        &[1, 2, 3]
    );
    c.run(60);
    assert_eq!(c.commands(f).len(), 5);
    assert_eq!(c.commands(f), c.commands(l));
}

#[test]
fn restart_from_a_snapshot_restores_the_state_machine() {
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 4;
    let mut c = Cluster::with(&[1], &[], cfg);
    let l = c.elect();
    for i in 0..9u8 {
        c.propose(l, &[i]);
    }
    c.run(20);
    let store = c.crash(l);
    assert!(store.snapshot_index() > 0);
    c.start(l, store, None);
    c.run(300);
    assert_eq!(c.commands(l).len(), 9);
}

#[test]
fn a_node_built_in_place_recovers_exactly_like_one_built_by_value() {
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 4;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg.clone());
    let l = c.elect();
    for i in 0..10u8 {
        c.propose(l, &[i; 4]);
        c.run(5);
    }
    let f = if l == 1 { 2 } else { 1 };
    let store = c.crash(f);
    assert!(
        store.snapshot_index() > 0,
        "recovery must go through a snapshot"
    );
    let nc = NodeConfig {
        cluster_id: 7,
        group: 0,
        node_id: f,
        raft: cfg,
        seed: 5,
    };
    let net = || Net {
        from: f,
        wire: c.wire.clone(),
    };
    let by_value = Node::new(
        nc.clone(),
        store.clone(),
        net(),
        LogSm::default(),
        vec![0u8; 4096],
        c.now,
        None,
    )
    .unwrap();
    // A slot that already held a node (as a reused static would) is simply overwritten.
    let mut slot = std::boxed::Box::new(core::mem::MaybeUninit::<TNode>::uninit());
    let first = Node::init(
        &mut slot,
        nc.clone(),
        VecStore::default(),
        net(),
        LogSm::default(),
        vec![0u8; 4096],
        c.now,
        Some(&Membership::new(&[f], &[]).unwrap()),
    )
    .unwrap();
    assert_eq!(first.raft().membership().voters.as_slice(), &[f]);
    let in_place = Node::init(
        &mut slot,
        nc,
        store,
        net(),
        LogSm::default(),
        vec![0u8; 4096],
        c.now,
        None,
    )
    .unwrap();
    let (a, b) = (by_value.raft(), in_place.raft());
    assert_eq!(
        (
            a.term(),
            a.commit(),
            a.applied(),
            a.last_index(),
            a.last_term()
        ),
        (
            b.term(),
            b.commit(),
            b.applied(),
            b.last_index(),
            b.last_term()
        )
    );
    assert_eq!(a.snapshot_index(), b.snapshot_index());
    assert_eq!(a.membership(), b.membership());
    assert_eq!(a.membership().voters.as_slice(), &[1, 2, 3]);
    assert_eq!(a.role(), b.role());
    assert_eq!(
        by_value.state_machine().cmds,
        in_place.state_machine().cmds,
        "both restored the state machine from the snapshot"
    );
    assert!(!in_place.state_machine().cmds.is_empty());
    // A configuration that does not validate is refused before anything is built.
    let mut bad = test_cfg();
    bad.max_inflight = 0;
    let mut slot2 = core::mem::MaybeUninit::<TNode>::uninit();
    let err = Node::init(
        &mut slot2,
        NodeConfig {
            cluster_id: 7,
            group: 0,
            node_id: 9,
            raft: bad,
            seed: 1,
        },
        VecStore::default(),
        net(),
        LogSm::default(),
        vec![0u8; 4096],
        0,
        None,
    )
    .err();
    assert_eq!(
        err,
        Some(crate::driver::NodeError::Config(ConfigError::MaxInflight))
    );
}

#[test]
fn a_node_joining_after_compaction_gets_the_snapshot() {
    // Found by the simulator: the probe of an empty node uses prev_index 0, whose term is always
    // known, so the leader must also check that the first entry it would send still exists.
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 5;
    let mut c = Cluster::with(&[1, 2, 3], &[], cfg);
    let l = c.elect();
    for i in 0..20u8 {
        c.propose(l, &[i]);
    }
    c.run(50);
    assert_eq!(
        c.nodes[&l].storage().term(1),
        Err(StorageError::Compacted(1)),
        "entry 1 was compacted"
    );
    c.start(4, VecStore::default(), None);
    change(
        &mut c,
        l,
        ConfigChange::Prepare(Membership::new(&[1, 2, 3, 4], &[]).unwrap()),
    );
    change(&mut c, l, ConfigChange::Commit);
    c.run(100);
    assert_eq!(c.nodes[&4].raft().stats().snapshots_installed, 1);
    assert_eq!(c.commands(4), c.commands(l));
}

#[test]
fn installing_a_snapshot_past_a_conflicting_log_forgets_that_log() {
    // Found by the simulator: whether to keep the log must be decided before the snapshot is
    // finished, or the snapshot's own term makes every log look like it matches.
    let mut c = Cluster::new(&[1, 2]);
    let now = c.now;
    let n = c.node(2);
    // Node 2 holds entries 2..=4 of term 1 that the snapshot (index 3, term 2) contradicts.
    for i in 2..=4u64 {
        let e = EntryRef {
            index: i,
            term: 1,
            kind: EntryKind::Normal,
            data: b"old",
        };
        n.store.append(&e).unwrap();
    }
    let n = c.nodes.remove(&2).unwrap();
    let store = n.into_parts().0;
    c.start(2, store, None);
    let mut sm = LogSm::default();
    sm.cmds.push((3, b"new".to_vec()));
    let mut data = StdVec::new();
    struct W<'a>(&'a mut StdVec<u8>);
    impl SnapshotWriter for W<'_> {
        fn write(&mut self, d: &[u8]) -> Result<(), SnapshotError> {
            self.0.extend_from_slice(d);
            Ok(())
        }
    }
    sm.snapshot(&mut W(&mut data)).unwrap();
    let meta = SnapshotHeader {
        index: 3,
        term: 2,
        membership: Membership::new(&[1, 2], &[]).unwrap(),
        size_bytes: data.len() as u64,
        crc: crate::record::CRC32C.checksum(&data),
    };
    let msg = Message::Snapshot {
        term: 2,
        meta,
        offset: 0,
        done: true,
    };
    c.node(2).receive(now, 1, &msg, &data).unwrap();
    let n = &c.nodes[&2];
    assert_eq!(
        n.raft().last_index(),
        3,
        "the contradicted suffix is gone from Raft's view"
    );
    assert_eq!(n.storage().last_index(), 3, "and from storage");
    assert_eq!(n.state_machine().cmds, vec![(3, b"new".to_vec())]);
}

#[test]
fn a_restarted_node_honours_a_lease_it_may_have_granted() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    let term = c.nodes[&l].raft().term();
    let store = c.crash(f);
    c.start(f, store, None);
    assert_eq!(
        c.nodes[&f].raft().leader(),
        NO_NODE,
        "a restarted node knows no leader"
    );
    // Straight after the restart, a disruptive candidate is ignored...
    let now = c.now;
    let vote = Message::Vote {
        term: term + 1,
        last_index: 100,
        last_term: term,
        transfer: false,
    };
    c.node(f).receive(now, 3, &vote, &[]).unwrap();
    assert_eq!(
        c.nodes[&f].raft().term(),
        term,
        "vote inside a possible lease must be ignored"
    );
    // ...and heard once an election timeout has passed.
    let later = now + 200;
    c.node(f).receive(later, 3, &vote, &[]).unwrap();
    assert_eq!(c.nodes[&f].raft().term(), term + 1);
}

#[test]
fn a_pipelined_burst_larger_than_the_outbox_is_sent_in_rounds_not_dropped() {
    let mut cfg = test_cfg();
    cfg.max_entries_per_message = 1;
    cfg.max_inflight = 32;
    let mut c = Cluster::with(&[1, 2, 3, 4, 5], &[], cfg);
    let l = c.elect();
    let lagging: StdVec<NodeId> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|&x| x != l)
        .take(2)
        .collect();
    for &f in &lagging {
        c.isolate(f);
    }
    for i in 0..100u8 {
        c.propose(l, &[i]);
    }
    c.run(30);
    c.heal();
    // Two lagging peers with a window of 32 one-entry messages each: 64 appends, more than the
    // outbox holds. They must go out in rounds, never be dropped.
    c.run(200);
    assert_eq!(c.nodes[&l].raft().stats().dropped_messages, 0);
    for f in lagging {
        assert_eq!(c.commands(f).len(), 100, "node {}", f);
    }
}

// ----- background syncs (Node::flush_deferred) ---------------------------------------------------

fn deferred_flush(c: &mut Cluster, id: NodeId) -> Option<SyncPoint> {
    let now = c.now;
    c.node(id).flush_deferred(now, &mut |_| {}).unwrap()
}

#[test]
fn a_deferred_sync_holds_only_the_leaders_own_vote_until_it_is_reported() {
    let mut c = Cluster::new(&[1]);
    c.run(5);
    assert_eq!(c.leaders(), vec![1]);
    let syncs = c.nodes[&1].storage().syncs;
    let (a, _) = c.propose(1, b"a");
    let at = deferred_flush(&mut c, 1).expect("a sole leader's new entry is left to the caller");
    assert_eq!(at.index, a);
    assert_eq!(
        deferred_flush(&mut c, 1),
        Some(at),
        "asked again until reported"
    );
    assert!(
        c.nodes[&1].raft().commit() < a,
        "not durable here: not committed"
    );
    assert!(c.commands(1).is_empty());
    assert_eq!(c.nodes[&1].storage().syncs, syncs, "the flush did not sync");
    // A write after the sync started is not covered by it.
    let (b, _) = c.propose(1, b"b");
    c.node(1).log_persisted(at);
    assert_eq!(c.nodes[&1].raft().commit(), a);
    let next = deferred_flush(&mut c, 1).expect("b still waits");
    assert_eq!(next.index, b);
    assert_eq!(c.commands(1), vec![b"a".to_vec()], "a applies, b waits");
    c.node(1).log_persisted(next);
    assert_eq!(deferred_flush(&mut c, 1), None);
    assert_eq!(c.commands(1), vec![b"a".to_vec(), b"b".to_vec()]);
    // A stale report changes nothing.
    c.node(1).log_persisted(at);
    assert_eq!(c.nodes[&1].raft().persisted_index(), b);
}

#[test]
fn a_follower_never_defers_its_sync() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let l = c.elect();
    let f = if l == 1 { 2 } else { 1 };
    c.propose(l, b"x");
    let now = c.now;
    c.node(l).flush(now, &mut |_| {}).unwrap();
    let frames: StdVec<_> = c.wire.borrow_mut().drain(..).collect();
    for (_, to, frame) in frames {
        if to == f {
            c.node(f).handle_frame(now, &frame).unwrap();
        }
    }
    let syncs = c.nodes[&f].storage().syncs;
    assert!(c.nodes[&f].raft().needs_sync());
    assert_eq!(
        deferred_flush(&mut c, f),
        None,
        "an acknowledgement waits for the follower's own sync"
    );
    assert_eq!(c.nodes[&f].storage().syncs, syncs + 1);
    assert!(!c.nodes[&f].raft().needs_sync());
}

#[test]
fn a_sync_started_before_the_log_was_cut_vouches_for_nothing() {
    let mut c = Cluster::new(&[1, 2, 3]);
    let mut before_cut = None;
    let old = diverge(&mut c, 5, 8, |c, old| {
        before_cut = Some(c.nodes[&old].raft().sync_point());
    });
    let before_cut = before_cut.expect("seen before the heal");
    let r = &mut c.node(old).raft;
    assert!(r.last_index() >= before_cut.index, "the cut was refilled");
    assert_ne!(r.sync_point().epoch, before_cut.epoch);
    let durable = r.persisted_index();
    assert!(durable >= before_cut.index);
    // Pretend the tail since the cut is not durable yet: the old sync must not vouch for it.
    let low = before_cut.index - 3;
    r.persisted_index = low;
    assert!(
        !r.on_log_persisted(before_cut),
        "entries at those indexes are not the ones that sync covered"
    );
    assert_eq!(r.persisted_index(), low);
    let now_point = SyncPoint {
        index: durable,
        epoch: r.sync_point().epoch,
    };
    assert!(r.on_log_persisted(now_point));
    assert_eq!(r.persisted_index(), durable);
}
