//! Snapshots the platform writes outside the driver (`Node::begin_snapshot`, `snapshot_done`):
//! nothing about them is known, sent or compacted before they are reported done, and only one
//! is in flight at a time.

use super::*;
use crate::driver::{NodeError, SnapshotPlan};
use crate::record::CRC32C;

/// The state machine's snapshot bytes, taken by `begin_snapshot`'s view.
struct Bytes(StdVec<u8>);

impl SnapshotWriter for Bytes {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

fn begin(c: &mut Cluster, id: NodeId, force: bool) -> Option<(SnapshotPlan, StdVec<u8>)> {
    let now = c.now;
    c.node(id)
        .begin_snapshot(now, force, |sm| {
            let mut b = Bytes(StdVec::new());
            sm.snapshot(&mut b)?;
            Ok(b.0)
        })
        .expect("nothing fatal")
}

/// What the platform does off the driver: write the data into storage and make it current.
fn write(store: &mut VecStore, plan: &SnapshotPlan, data: &[u8]) -> SnapshotMeta {
    let meta = plan.meta(data.len() as u64, CRC32C.checksum(data));
    store.snapshot_begin(&meta).unwrap();
    store.snapshot_write(0, data).unwrap();
    store.snapshot_finish().unwrap();
    meta
}

fn first_entry(c: &Cluster, id: NodeId) -> LogIndex {
    c.nodes[&id].storage().entries[0].0
}

#[test]
fn a_snapshot_in_flight_is_not_sent_compacted_or_doubled_until_done() {
    let mut c = Cluster::tuned(&[1, 2, 3], |c| c.snapshot_entries = 4);
    for id in [1, 2, 3] {
        c.node(id).set_background_snapshots(true);
    }
    let l = c.elect();
    let f = Cluster::follower_of(l);
    let lagging = c.crash(f);
    c.propose_each(l, 0..10);
    c.run(50);
    // Due many times over, but `flush` leaves it to the platform.
    assert_eq!(c.nodes[&l].raft().snapshot_index(), 0);
    let (plan, data) = begin(&mut c, l, false).expect("a snapshot is due");
    assert_eq!(plan.index, c.nodes[&l].applied());
    assert_eq!(c.nodes[&l].snapshot_in_flight(), Some(plan.index));
    assert!(begin(&mut c, l, true).is_none(), "one at a time");
    c.propose_each(l, 10..12);
    c.run(50);
    assert!(begin(&mut c, l, true).is_none(), "still one at a time");
    // Not known to Raft, not in storage, the log whole.
    assert_eq!(c.nodes[&l].raft().snapshot_index(), 0);
    assert!(c.nodes[&l].storage().snapshot_meta().is_none());
    assert_eq!(first_entry(&c, l), 1);
    // A follower that missed everything catches up from the log: no snapshot is sent.
    c.start(f, lagging, None);
    c.node(f).set_background_snapshots(true);
    c.run(200);
    assert_eq!(c.commands(f), c.commands(l));
    assert!(c.nodes[&f].storage().snapshot_meta().is_none());
    assert_eq!(c.nodes[&f].raft().snapshot_index(), 0);
    // Written and reported: now Raft knows it and the log behind it goes.
    let now = c.now;
    let meta = write(c.node(l).storage_mut(), &plan, &data);
    assert_eq!(c.node(l).snapshot_done(now, Ok(meta)), Ok(Some(plan.index)));
    assert_eq!(c.nodes[&l].raft().snapshot_index(), plan.index);
    assert_eq!(c.nodes[&l].snapshot_in_flight(), None);
    assert_eq!(first_entry(&c, l), plan.index + 1);
    assert_eq!(c.nodes[&l].stats().snapshots_taken, 1);
    // The next one may begin, and a restart recovers through the one written.
    assert!(begin(&mut c, l, true).is_some());
    let store = c.crash(l);
    c.start(l, store, None);
    assert_eq!(c.nodes[&l].raft().snapshot_index(), plan.index);
    assert_eq!(c.nodes[&l].applied(), plan.index);
}

#[test]
fn a_refused_background_snapshot_is_retried_later_and_never_compacts() {
    let mut c = Cluster::tuned(&[1], |c| c.snapshot_entries = 4);
    c.node(1).set_background_snapshots(true);
    let l = c.elect();
    c.propose_each(l, 0..6);
    c.run(20);
    let retry = c.cfg.snapshot_retry_ms;
    let (plan, _) = begin(&mut c, l, false).expect("due");
    let now = c.now;
    let full = Err(NodeError::Storage(StorageError::Full));
    assert_eq!(c.node(l).snapshot_done(now, full), Ok(None));
    assert_eq!(c.nodes[&l].stats().snapshot_failures, 1);
    assert_eq!(c.nodes[&l].snapshot_in_flight(), None);
    assert!(
        begin(&mut c, l, false).is_none(),
        "not before the retry time"
    );
    c.now += retry;
    let (again, _) = begin(&mut c, l, false).expect("retried");
    assert!(again.index >= plan.index);
    // Reported done while storage does not hold it: refused, nothing compacted.
    let now = c.now;
    let meta = again.meta(0, 0);
    assert_eq!(
        c.node(l).snapshot_done(now, Ok(meta.clone())),
        Err(NodeError::Storage(StorageError::SnapshotState))
    );
    assert_eq!(c.nodes[&l].raft().snapshot_index(), 0);
    assert_eq!(first_entry(&c, l), 1);
    // Done without a snapshot in flight: out of order.
    assert_eq!(
        c.node(l).snapshot_done(now, Ok(meta)),
        Err(NodeError::Storage(StorageError::SnapshotState))
    );
}
