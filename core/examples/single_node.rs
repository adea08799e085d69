//! Drive one in-memory Shoal node by hand: start it, let it elect itself, propose commands,
//! flush, and see them applied; then read linearizably.
//!
//! This is the whole IO contract of `shoal_core::driver::Node` in one place: a platform feeds
//! inputs (`tick`, `handle_frame`, `propose`, `read_index`, ...) and calls `flush` once per
//! batch, which sends, syncs, applies and reports. Here the storage is a `Vec`, there are no
//! peers, and the state machine is a counter.
//!
//! Run it with `cargo run -p shoal-core --example single_node`.

use shoal_core::driver::{Event, Node, NodeConfig, NodeError, NodeParts};
use shoal_core::entry::EntryRef;
use shoal_core::io::{
    SnapshotError, SnapshotReader, SnapshotWriter, StateMachine, Transport, TransportError,
};
use shoal_core::limits::Config;
use shoal_core::membership::Membership;
use shoal_core::storage::{pack_entries, LogView, ReadEntries, Result, Storage, StorageError};
use shoal_core::{EntryKind, HardState, LogIndex, NodeId, Role, SnapshotMeta, Term};

fn main() -> Result<(), NodeError> {
    // A group of one voter, node 1. Snapshots are off: this storage keeps none.
    let mut raft = Config::server();
    raft.snapshot_entries = 0;
    raft.snapshot_interval_ms = 0;
    let cfg = NodeConfig {
        cluster_id: 1,
        group: 0,
        node_id: 1,
        raft,
        seed: 7,
    };
    let parts = NodeParts::new(
        VecLog::default(),
        NoPeers,
        Counter::default(),
        vec![0u8; 64 * 1024],
    );
    let members = Membership::new(&[1], &[]).expect("one voter is a valid membership");
    let mut node = Node::new(cfg, parts, 0, Some(&members))?;

    // Time is an argument: the node elects itself at its first tick after recovery.
    let mut now_ms = 0;
    while node.raft().role() != Role::Leader {
        now_ms += 10;
        node.tick(now_ms)?;
        node.flush(now_ms, &mut |_| {})?;
    }
    println!("node 1 leads term {}", node.raft().term());

    // Proposals are batched: both go to storage, one flush syncs once and applies both.
    let first = node
        .propose(now_ms, b"5")
        .expect("the leader takes proposals");
    let second = node
        .propose(now_ms, b"37")
        .expect("the leader takes proposals");
    let mut applied = Vec::new();
    node.flush(now_ms, &mut |event| {
        if let Event::Applied {
            index,
            term,
            output,
        } = event
        {
            applied.push(((index, term), output));
        }
    })?;
    // A proposal took effect if an entry of its (index, term) was applied.
    assert_eq!(applied, vec![(first, 5), (second, 42)]);
    println!("applied {first:?} -> 5 and {second:?} -> 42");

    // A linearizable read: a ticket now, served once the read index is applied.
    let ticket = node.read_index(now_ms).expect("the leader serves reads");
    let mut ready = None;
    node.flush(now_ms, &mut |event| {
        if let Event::ReadReady { upto, index } = event {
            ready = Some((upto, index));
        }
    })?;
    let (upto, index) = ready.expect("a single voter confirms its own reads");
    assert!(upto >= ticket && index <= node.applied());
    println!("read {} at index {index}", node.state_machine().total);
    assert_eq!(node.state_machine().total, 42);
    Ok(())
}

/// The state machine: adds each command (a decimal number) to a total.
#[derive(Default)]
struct Counter {
    total: u64,
    applied: LogIndex,
}

impl StateMachine for Counter {
    type Output = u64;
    fn apply(&mut self, index: LogIndex, _term: Term, command: &[u8]) -> u64 {
        let n: u64 = std::str::from_utf8(command)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        self.total += n;
        self.applied = index;
        self.total
    }
    fn skip(&mut self, index: LogIndex) {
        self.applied = index;
    }
    fn applied_index(&self) -> LogIndex {
        self.applied
    }
    fn snapshot(&self, out: &mut dyn SnapshotWriter) -> Result<(), SnapshotError> {
        out.write(&self.total.to_le_bytes())
    }
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let mut total = [0u8; 8];
        src.read_exact(&mut total)?;
        self.total = u64::from_le_bytes(total);
        self.applied = index;
        Ok(())
    }
}

/// A group of one has no one to send to.
struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _to: NodeId, _frame: &[u8]) -> Result<(), TransportError> {
        Err(TransportError::Unreachable)
    }
}

/// The log in a `Vec`: every write is durable at once, so `sync` has nothing to do. It keeps
/// no snapshots (the example turns them off).
#[derive(Default)]
struct VecLog {
    hard_state: HardState,
    entries: Vec<(LogIndex, Term, EntryKind, Vec<u8>)>,
}

impl LogView for VecLog {
    fn snapshot_index(&self) -> LogIndex {
        0
    }
    fn last_index(&self) -> LogIndex {
        self.entries.len() as LogIndex
    }
    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        match index {
            0 => Ok(0),
            i => self
                .entries
                .get(i as usize - 1)
                .map(|e| e.1)
                .ok_or(StorageError::Unavailable(i)),
        }
    }
}

impl Storage for VecLog {
    fn hard_state(&self) -> HardState {
        self.hard_state
    }
    fn save_hard_state(&mut self, hs: &HardState) -> Result<(), StorageError> {
        self.hard_state = *hs;
        Ok(())
    }
    fn append(&mut self, e: &EntryRef<'_>) -> Result<(), StorageError> {
        StorageError::check_continues(self.last_index(), e.index)?;
        self.entries
            .push((e.index, e.term, e.kind, e.data.to_vec()));
        Ok(())
    }
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.entries.truncate(from as usize - 1);
        Ok(())
    }
    fn compact_prefix(&mut self, _upto: LogIndex) -> Result<(), StorageError> {
        Ok(())
    }
    fn read_entries(&self, lo: LogIndex, hi: LogIndex, buf: &mut [u8]) -> Result<ReadEntries> {
        let hi = hi.min(self.last_index());
        let entries = self
            .entries
            .get(lo as usize - 1..hi as usize)
            .unwrap_or(&[]);
        let got = pack_entries(
            buf,
            entries.iter().map(|(index, term, kind, data)| EntryRef {
                index: *index,
                term: *term,
                kind: *kind,
                data,
            }),
        )?;
        match got.count {
            0 => Err(StorageError::Unavailable(lo)),
            _ => Ok(got),
        }
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }
    fn snapshot_meta(&self) -> Option<SnapshotMeta> {
        None
    }
    fn snapshot_begin(&mut self, _meta: &SnapshotMeta) -> Result<(), StorageError> {
        Err(StorageError::SnapshotState)
    }
    fn snapshot_write(&mut self, _offset: u64, _data: &[u8]) -> Result<(), StorageError> {
        Err(StorageError::SnapshotState)
    }
    fn snapshot_finish(&mut self) -> Result<(), StorageError> {
        Err(StorageError::SnapshotState)
    }
    fn snapshot_read(&self, _offset: u64, _buf: &mut [u8]) -> Result<usize, StorageError> {
        Err(StorageError::NoSnapshot)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_runs() {
        super::main().expect("the example runs to its end");
    }
}
