//! A storage that refuses for a while (a full medium, no descriptor to spare) degrades a node
//! but never stops it: what was refused waits and is retried, and nothing is reported durable
//! that is not. Errors are injected with a [`Decorated`] storage.

use super::*;
use crate::storage::{Decorated, StorageHooks};
use std::cell::Cell;

/// Refusals to inject, shared with the test (the node owns the storage).
#[derive(Clone, Default)]
struct Refuse {
    sync: Rc<Cell<Option<StorageError>>>,
    snapshot: Rc<Cell<Option<StorageError>>>,
    snapshot_tries: Rc<Cell<u32>>,
}

impl StorageHooks<VecStore> for Refuse {
    fn sync(&mut self, inner: &mut VecStore) -> Result<(), StorageError> {
        self.sync.get().map_or(Ok(()), Err)?;
        inner.sync()
    }
    fn snapshot_begin(
        &mut self,
        inner: &mut VecStore,
        meta: &SnapshotMeta,
    ) -> Result<(), StorageError> {
        self.snapshot_tries.set(self.snapshot_tries.get() + 1);
        self.snapshot.get().map_or(Ok(()), Err)?;
        inner.snapshot_begin(meta)
    }
}

type Refusing = Node<Decorated<VecStore, Refuse>, Net, LogSm, StdVec<u8>>;

/// A one-voter group (it leads itself) on a refusing storage.
fn single(cfg: Config, refuse: &Refuse) -> Refusing {
    let nc = NodeConfig {
        cluster_id: 7,
        group: 0,
        node_id: 1,
        raft: cfg,
        seed: 1,
    };
    let net = Net {
        from: 1,
        wire: Rc::new(RefCell::new(StdVec::new())),
    };
    let store = Decorated::new(VecStore::default(), refuse.clone());
    let m = Membership::new(&[1], &[]).unwrap();
    let parts = NodeParts::new(store, net, LogSm::default(), vec![0u8; 4096]);
    let mut n = Node::new(nc, parts, 0, Some(&m)).unwrap();
    for t in 1..40 {
        n.tick(t * 5).unwrap();
        n.flush(t * 5, &mut |_| {}).unwrap();
    }
    assert_eq!(n.raft().role(), Role::Leader);
    n
}

/// Flush at `now`; the indexes applied.
fn flush(n: &mut Refusing, now: u64) -> Result<StdVec<LogIndex>, crate::driver::NodeError> {
    let mut applied = StdVec::new();
    n.flush(now, &mut |e| {
        if let Event::Applied { index, .. } = e {
            applied.push(index);
        }
    })?;
    Ok(applied)
}

#[test]
fn a_sync_refused_for_space_holds_the_write_until_a_later_sync_succeeds() {
    let refuse = Refuse::default();
    let mut n = single(test_cfg(), &refuse);
    refuse.sync.set(Some(StorageError::Full));
    let (index, _) = n.propose(500, b"while full").unwrap();
    for t in 0..10 {
        let applied = flush(&mut n, 500 + t).expect("a refused sync does not stop the node");
        assert!(
            applied.is_empty(),
            "nothing commits on a log that is not durable"
        );
    }
    assert!(n.raft().persisted_index() < index);
    assert_eq!(n.stats().faults.get(Fault::StorageFull), 10);
    refuse.sync.set(None);
    assert_eq!(
        flush(&mut n, 600).unwrap(),
        vec![index],
        "the retry makes it durable"
    );
    assert_eq!(n.state_machine().cmds.last().unwrap().1, b"while full");
}

#[test]
fn a_failed_device_sync_still_stops_the_node() {
    let refuse = Refuse::default();
    let mut n = single(test_cfg(), &refuse);
    refuse.sync.set(Some(StorageError::Io));
    n.propose(500, b"x").unwrap();
    let err = flush(&mut n, 500).unwrap_err();
    assert_eq!(err, crate::driver::NodeError::Sync(StorageError::Io));
    assert_eq!(err.severity(), crate::fault::Severity::Fatal);
}

#[test]
fn a_refused_snapshot_is_retried_after_the_backoff_not_at_every_flush() {
    let refuse = Refuse::default();
    let mut cfg = test_cfg();
    cfg.snapshot_entries = 3;
    cfg.snapshot_retry_ms = 1000;
    let mut n = single(cfg, &refuse);
    refuse.snapshot.set(Some(StorageError::NoResources));
    for i in 0..5u8 {
        n.propose(500, &[i]).unwrap();
    }
    for t in 0..50 {
        flush(&mut n, 500 + t * 10).expect("a refused snapshot does not stop the node");
    }
    assert_eq!(refuse.snapshot_tries.get(), 1, "one try per backoff");
    assert_eq!(n.stats().snapshot_failures, 1);
    assert_eq!(n.stats().faults.get(Fault::NoResources), 1);
    assert_eq!(n.raft().snapshot_index(), 0);
    refuse.snapshot.set(None);
    flush(&mut n, 1400).unwrap();
    assert_eq!(refuse.snapshot_tries.get(), 1, "still inside the backoff");
    flush(&mut n, 1510).unwrap();
    assert_eq!(refuse.snapshot_tries.get(), 2);
    assert!(n.raft().snapshot_index() >= 5, "taken once allowed again");
}
