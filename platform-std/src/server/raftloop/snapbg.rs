//! Snapshots written off the raft thread. When a group's snapshot is due, the raft thread
//! only serialises its state into memory (the state must be read at the snapshot's index,
//! between two applies); a thread of its own then syncs the log up to that index, writes the
//! file, fdatasyncs it, renames it into place and fsyncs the dir, and hands the result back.
//! Only then does the driver learn of the snapshot and compact the log behind it
//! (`Node::snapshot_done`), so every group on the node keeps writing meanwhile. One snapshot
//! per group is in flight at a time, and [`MAX_SNAPSHOT_WRITERS`] per node; a refusal (a full
//! disk) is retried after `--snapshot-retry-ms`, as the driver retries one it takes itself.

use shoal_core::io::{SnapshotError, SnapshotWriter, StateMachine};

use super::*;
use crate::storage::{SnapshotJobError, WrittenSnapshot};
use shoal_core::storage::StorageError;

/// A snapshot job's result, on its way back to the raft thread.
pub(super) struct SnapWritten {
    group: GroupId,
    result: Result<WrittenSnapshot, SnapshotJobError>,
}

/// The state machine's snapshot bytes, in memory.
struct InMemory(Vec<u8>);

impl SnapshotWriter for InMemory {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.extend_from_slice(data);
        Ok(())
    }
}

/// Snapshots a node writes at once. Groups written at the same rate fall due in the same
/// round; with a writer each (64 groups: 64 threads, four syncs apiece, all at once) the
/// device's queue filled and every group's log syncs waited behind them. A group due when
/// every writer is busy stays due (and active) and begins once one is free.
pub(super) const MAX_SNAPSHOT_WRITERS: usize = 4;

impl RaftLoop {
    /// Begin the snapshot of every group that is due one (and has none in flight), while
    /// fewer than [`MAX_SNAPSHOT_WRITERS`] are being written.
    pub(super) fn begin_snapshots(&mut self, now: u64, flushed: &[GroupId]) {
        for id in flushed {
            if self.snapshot_writers >= MAX_SNAPSHOT_WRITERS {
                return;
            }
            if let Some(g) = self.groups.get_mut(id) {
                if begin_snapshot(g, now, &self.snap_written_tx) {
                    self.snapshot_writers += 1;
                }
            }
        }
    }

    /// A group's snapshot job finished: make it current in storage, then tell the driver,
    /// which compacts the log behind it (or schedules a retry). A fatal storage fault stops
    /// the node, as everywhere.
    pub(super) fn snapshot_written(&mut self, done: SnapWritten) {
        let now = self.now_ms();
        // A group removed meanwhile: its dir is going, and the snapshot with it.
        self.active.insert(done.group);
        let Some(g) = self.groups.get_mut(&done.group) else {
            return;
        };
        if let Some(frozen) = g.frozen.as_mut() {
            let held = frozen.defer(Deferred::Snapshot(Box::new(done)));
            debug_assert!(held.is_ok(), "a finished snapshot is always held");
            return;
        }
        let meta = g
            .node
            .storage_mut()
            .inner
            .finish_background_snapshot(done.result);
        match g.node.snapshot_done(now, meta.map_err(NodeError::Storage)) {
            Ok(Some(index)) => log::info!("group {}: snapshot taken at index {index}", g.id),
            Ok(None) => log::warn!(
                "group {}: snapshot refused; retrying in {} ms",
                g.id,
                self.cfg.raft.snapshot_retry_ms
            ),
            Err(e) => {
                log::error!("group {}: fatal: snapshot: {e}; stopping", g.id);
                std::process::exit(1);
            }
        }
    }
}

/// Serialise `g`'s state if a snapshot is due, and start the thread that writes it; whether
/// one was started.
fn begin_snapshot(g: &mut Group, now: u64, done_tx: &Sender<SnapWritten>) -> bool {
    let begun = g.node.begin_snapshot(now, false, |sm| {
        let mut out = InMemory(Vec::new());
        sm.snapshot(&mut out)?;
        Ok(out.0)
    });
    let (plan, data) = match begun {
        Ok(Some(b)) => b,
        Ok(None) => return false,
        Err(e) => {
            log::error!("group {}: fatal: snapshot: {e}; stopping", g.id);
            std::process::exit(1);
        }
    };
    let index = plan.index;
    let job = match g.node.storage_mut().inner.begin_background_snapshot(plan) {
        Ok(job) => job,
        Err(e) => {
            refused(g, now, NodeError::Storage(e));
            return false;
        }
    };
    let (group, tx) = (g.id, done_tx.clone());
    let spawned = std::thread::Builder::new()
        .name(format!("shoal-snap-{group}"))
        .spawn(move || {
            crate::affinity::leave_raft_cpu();
            let result = job.run(&data);
            // The raft loop gone (shutting down): the snapshot stays on disk, complete or
            // as a temp file the next start deletes.
            let _ = tx.send_blocking(SnapWritten { group, result });
        });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            log::warn!("group {group}: cannot start the thread for the snapshot at {index}: {e}");
            refused(g, now, NodeError::Storage(StorageError::NoResources));
            false
        }
    }
}

/// The snapshot begun could not be started: the driver schedules the retry.
fn refused(g: &mut Group, now: u64, e: NodeError) {
    if let Err(e) = g.node.snapshot_done(now, Err(e)) {
        log::error!("group {}: fatal: snapshot: {e}; stopping", g.id);
        std::process::exit(1);
    }
}
