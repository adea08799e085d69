//! Scenario tests for the Raft core, driven through the real node driver on a scripted network.
//! Each test pins one behaviour the design promises; the deterministic simulator in `tests/`
//! then checks them all together under faults.

extern crate std;

use super::*;
use crate::driver::{Event, Node, NodeConfig, NodeParts};
use crate::entry::EntryRef;
use crate::fault::Fault;
use crate::io::{
    SnapshotError, SnapshotReader, SnapshotWriter, StateMachine, Transport, TransportError,
};
use crate::limits::ConfigError;
use crate::message::{
    Append, AppendResp, Message, Snapshot, SnapshotHeader, SnapshotRef, TimeoutNow, Vote, VoteResp,
};
use crate::storage::{pack_entries, LogView, ReadEntries, Result, Storage, StorageError};
use crate::types::EntryKind;
use crate::types::GroupId;
use crate::wire::{Body, FrameHeader, WIRE_VERSION};
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
    /// Saves through [`Storage::save_commit_hint`] (rule 10: no sync waits for them).
    hints: u64,
    /// Every write fails with this error while set (a full medium, a broken device).
    fail_writes: Option<StorageError>,
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
        self.fail_writes.map_or(Ok(()), Err)?;
        self.hs = *hs;
        Ok(())
    }
    fn save_commit_hint(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.save_hard_state(hs)?;
        self.hints += 1;
        Ok(())
    }
    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        self.fail_writes.map_or(Ok(()), Err)?;
        StorageError::check_continues(self.last_index(), e.index)?;
        self.entries
            .push((e.index, e.term, e.kind, e.data.to_vec()));
        Ok(())
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.fail_writes.map_or(Ok(()), Err)?;
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
    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        // Entries are kept in order and without gaps: the range is a run of them.
        let run = self
            .entries
            .iter()
            .skip_while(|e| e.0 < lo)
            .take_while(|e| e.0 <= hi);
        let got = pack_entries(
            buf,
            run.map(|e| EntryRef {
                index: e.0,
                term: e.1,
                kind: e.2,
                data: &e.3,
            }),
        )?;
        match got.count {
            0 => Err(self.term(lo).err().unwrap_or(StorageError::Unavailable(lo))),
            _ => Ok(got),
        }
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        self.syncs += 1;
        Ok(())
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        self.snap.as_ref().map(|s| s.0.clone())
    }
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.fail_writes.map_or(Ok(()), Err)?;
        self.pending = Some((meta.clone(), StdVec::new()));
        Ok(())
    }
    fn snapshot_write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        if let Some(e) = self.fail_writes {
            // A snapshot refused half-way is discarded whole (storage rule 9).
            self.pending = None;
            return Err(e);
        }
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

/// The parts of a test node with a 4 KiB buffer and an empty log state machine.
fn parts(store: VecStore, net: Net) -> NodeParts<VecStore, Net, LogSm, StdVec<u8>> {
    NodeParts::new(store, net, LogSm::default(), vec![0u8; 4096])
}

struct Cluster {
    nodes: BTreeMap<NodeId, TNode>,
    wire: Wire,
    now: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    applied: BTreeMap<NodeId, StdVec<(LogIndex, Term, usize)>>,
    reads: BTreeMap<NodeId, StdVec<Event<usize>>>,
    cfg: Config,
    /// Nodes whose clocks run at another rate: (global ms, their ms, then, and their ms per
    /// 1000 global ms since). Every other node's clock reads the global `now`.
    clocks: BTreeMap<NodeId, (u64, u64, u64)>,
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

    /// `voters` with the test configuration changed by `tune`.
    fn tuned(voters: &[NodeId], tune: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = test_cfg();
        tune(&mut cfg);
        Self::with(voters, &[], cfg)
    }

    /// `voters` once they have elected a leader; returns them and the leader.
    fn elected(voters: &[NodeId]) -> (Self, NodeId) {
        let mut c = Self::new(voters);
        let l = c.elect();
        (c, l)
    }

    /// Three voters once they have elected a leader; returns them, the leader and a follower.
    fn elected_three() -> (Self, NodeId, NodeId) {
        let (c, l) = Self::elected(&[1, 2, 3]);
        (c, l, Self::follower_of(l))
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
            clocks: BTreeMap::new(),
        };
        for &id in voters.iter().chain(observers) {
            c.start(id, VecStore::default(), Some(&m));
        }
        c
    }

    fn start(&mut self, id: NodeId, store: VecStore, bootstrap: Option<&Membership>) {
        let node = self.build(id, store, bootstrap).unwrap();
        self.nodes.insert(id, node);
    }

    /// Node `id` on `store`, built (or refused) as a start would, but not added.
    fn build(
        &self,
        id: NodeId,
        store: VecStore,
        bootstrap: Option<&Membership>,
    ) -> Result<TNode, crate::driver::NodeError> {
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
        let parts = NodeParts::new(store, net, LogSm::default(), vec![0u8; 64 * 1024]);
        Node::new(nc, parts, self.now, bootstrap)
    }

    fn crash(&mut self, id: NodeId) -> VecStore {
        let node = self.nodes.remove(&id).unwrap();
        node.into_parts().store
    }

    /// Crash `id` and start it again on what its storage kept.
    fn restart(&mut self, id: NodeId) {
        let store = self.crash(id);
        self.start(id, store, None);
    }

    /// Node `id`'s clock at the global `now`.
    fn local(&self, id: NodeId) -> u64 {
        match self.clocks.get(&id) {
            Some(&(at, local, permille)) => local + (self.now - at) * permille / 1000,
            None => self.now,
        }
    }

    /// From now on node `id`'s clock runs at `permille` of the global rate (continuing from
    /// where it stands).
    fn set_clock_rate(&mut self, id: NodeId, permille: u64) {
        let local = self.local(id);
        self.clocks.insert(id, (self.now, local, permille));
    }

    fn flush_all(&mut self) {
        let locals: BTreeMap<NodeId, u64> =
            self.nodes.keys().map(|&id| (id, self.local(id))).collect();
        for (id, n) in self.nodes.iter_mut() {
            let now = locals[id];
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
                let now = self.local(to);
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.handle_frame(now, &f).unwrap();
                }
            }
        }
        panic!("network never went quiet");
    }

    /// Hand `to` the queued frames addressed to it, without a flush; all others are dropped.
    fn deliver_only_to(&mut self, to: NodeId) {
        let now = self.now;
        let frames: StdVec<_> = self.wire.borrow_mut().drain(..).collect();
        for (_, dest, f) in frames {
            if dest == to {
                self.node(to).handle_frame(now, &f).unwrap();
            }
        }
    }

    /// Advance time in heartbeat-sized steps, delivering everything each step.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.tick_all();
            self.deliver();
        }
    }

    /// 5 ms on: every node ticks; the frames they send stay on the wire (a test
    /// that delivers by hand takes them). The new time.
    /// Advance 5 ms and tick every node at its own clock; the global time.
    fn tick_all(&mut self) -> u64 {
        self.now += 5;
        let locals: BTreeMap<NodeId, u64> =
            self.nodes.keys().map(|&id| (id, self.local(id))).collect();
        for (id, n) in self.nodes.iter_mut() {
            n.tick(locals[id]).unwrap();
        }
        self.now
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

    /// A voter other than `l` (1 or 2).
    fn follower_of(l: NodeId) -> NodeId {
        if l == 1 {
            2
        } else {
            1
        }
    }

    fn node(&mut self, id: NodeId) -> &mut TNode {
        self.nodes.get_mut(&id).unwrap()
    }

    fn propose(&mut self, id: NodeId, cmd: &[u8]) -> (LogIndex, Term) {
        let now = self.now;
        self.node(id).propose(now, cmd).unwrap()
    }

    /// Propose the one-byte commands `cmds` on `id`, in order.
    fn propose_each(&mut self, id: NodeId, cmds: impl IntoIterator<Item = u8>) {
        for cmd in cmds {
            self.propose(id, &[cmd]);
        }
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

/// `voters` taking a snapshot every `every` entries, once their leader has proposed the
/// one-byte commands `0..n` and 50 ms have passed; returns them and the leader.
fn snapshotting(voters: &[NodeId], every: u64, n: u8) -> (Cluster, NodeId) {
    let mut c = Cluster::tuned(voters, |c| c.snapshot_entries = every);
    let l = c.elect();
    c.propose_each(l, 0..n);
    c.run(50);
    (c, l)
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
    c.propose_each(old, 100..100 + stale);
    c.run(400);
    let new = c
        .leaders()
        .into_iter()
        .find(|&x| x != old)
        .expect("majority elects a new leader");
    c.propose_each(new, 0..fresh);
    c.run(50);
    before_heal(c, old);
    c.heal();
    c.run(300);
    old
}

/// Propose a joint configuration moving the group led by `l` to `voters`, and wait until it
/// commits.
fn prepare(c: &mut Cluster, l: NodeId, voters: &[NodeId]) -> LogIndex {
    change(
        c,
        l,
        ConfigChange::Prepare(Membership::new(voters, &[]).unwrap()),
    )
}

/// Move the group led by `l` to `voters` by joint consensus: prepare, then commit.
fn reconfigure(c: &mut Cluster, l: NodeId, voters: &[NodeId]) {
    prepare(c, l, voters);
    change(c, l, ConfigChange::Commit);
}

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

mod degraded;
mod driver;
mod durability;
mod election;
mod faults;
mod health;
mod membership;
#[cfg(feature = "quiesce")]
mod quiesce;
mod reads;
mod replication;
mod snapbg;
mod snapshot;

/// A vote request in `term` from a candidate whose log ends at `last`.
fn vote_request(term: Term, last: (LogIndex, Term), transfer: bool) -> Message {
    Message::Vote(Vote {
        term,
        last_index: last.0,
        last_term: last.1,
        transfer,
    })
}

/// A frame of cluster 7 for `group` from `from` to `to`.
fn frame_in(group: GroupId, from: NodeId, to: NodeId, body: Body, tail: &[u8]) -> StdVec<u8> {
    frame_of(7, group, (from, to), body, tail)
}

/// A frame of the test cluster's group 0 from `from` to `to`.
fn frame(from: NodeId, to: NodeId, body: Body, tail: &[u8]) -> StdVec<u8> {
    frame_in(0, from, to, body, tail)
}

/// A frame of any cluster and group, `(from, to)`.
fn frame_of(
    cluster_id: u64,
    group: GroupId,
    (from, to): (NodeId, NodeId),
    body: Body,
    tail: &[u8],
) -> StdVec<u8> {
    let h = FrameHeader {
        version: WIRE_VERSION,
        cluster_id,
        group,
        from,
        to,
    };
    let mut buf = vec![0u8; tail.len() + 1024];
    let n = crate::wire::encode(&h, &body, tail, &mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// The Raft message a frame carries, if it carries one.
fn raft_message(frame: &[u8]) -> Option<Message> {
    match crate::wire::decode(frame).unwrap().0.body {
        Body::Raft(m) => Some(m),
        _ => None,
    }
}

/// Pop every message Raft has released; returns how many of them `pick` selects.
fn count_released(r: &mut Raft, pick: impl Fn(&Message<SnapshotRef>) -> bool) -> usize {
    let mut n = 0;
    while let Some(env) = r.pop_message() {
        if pick(&env.msg) {
            n += 1;
        }
    }
    n
}

/// The frame every node ignores unless it names a live leader: a `TimeoutNow` of term 1.
fn timeout_now_body() -> Body {
    Body::Raft(Message::TimeoutNow(TimeoutNow { term: 1 }))
}
