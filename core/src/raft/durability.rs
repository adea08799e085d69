//! What is written and what is durable: the hard state the core saves, the index known
//! durable, and the background syncs of a leader's own log.

use super::{Raft, RaftError, SyncPoint};
use crate::plant::Plant;
use crate::storage::Storage;
use crate::types::{LogIndex, Role};

impl<P: Plant> Raft<P> {
    /// Whether writes since the last [`Raft::on_persisted`] need a sync.
    pub fn needs_sync(&self) -> bool {
        self.hs_unsynced || self.persisted_index < self.last_index
    }

    /// Whether the only write waiting for a sync is this leader's own log tail: the hard state
    /// is durable and no answer is held. Then the sync may run in the background while the
    /// leader goes on ([`Raft::sync_point`], [`Raft::on_log_persisted`]); nothing but the
    /// leader's own vote toward commits waits for it.
    pub fn only_own_log_unsynced(&self) -> bool {
        self.role == Role::Leader
            && !self.hs_unsynced
            && self.held.is_empty()
            && self.persisted_index < self.last_index
    }

    /// What a sync of everything written so far will make durable.
    pub fn sync_point(&self) -> SyncPoint {
        SyncPoint {
            index: self.last_index,
            epoch: self.log_epoch,
        }
    }

    /// A background sync that started at `at` finished: the entries up to `at.index` are
    /// durable, unless the log's tail was cut since (then nothing is learned). Unlike
    /// [`Raft::on_persisted`] it neither marks the hard state durable nor releases held answers
    /// (they may depend on writes after `at`). Returns whether it advanced anything.
    pub fn on_log_persisted(&mut self, at: SyncPoint) -> bool {
        if at.epoch != self.log_epoch {
            return false;
        }
        let index = at.index.min(self.last_index);
        if index <= self.persisted_index {
            return false;
        }
        self.persisted_index = index;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.assert_invariants();
        true
    }

    /// Everything written so far up to `index` is durable (the caller synced). Releases held
    /// messages and lets the leader count itself toward commits.
    pub fn on_persisted(&mut self, index: LogIndex) {
        self.persisted_index = index
            .min(self.last_index)
            .max(self.persisted_index.min(self.last_index));
        self.hs_unsynced = false;
        // A term or vote whose save was refused (a full medium) is not durable: what is held
        // waits for a save that succeeds and the sync after it.
        if !self.hard_state_changed() {
            self.release_held();
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.assert_invariants();
    }

    /// Whether the term or vote changed since the hard state was last saved.
    pub(super) fn hard_state_changed(&self) -> bool {
        self.term != self.hs_saved.term || self.vote != self.hs_saved.vote
    }

    /// End of every public call: write the no-op of a new leader and the hard state if changed.
    pub(super) fn finish_call(&mut self, store: &mut impl Storage) -> Result<(), RaftError> {
        let noop = self.write_noop_if_pending(store);
        if self.role == Role::Leader && self.replicate_pending && self.progress.is_empty() {
            // Single-voter group: nothing to send, commit follows persistence.
            self.replicate_pending = false;
        }
        // Saved even when the no-op was refused: a new term or vote must not wait for it.
        let saved = self.save_hard_state(store);
        self.assert_invariants();
        noop.and(saved)
    }

    /// Save the hard state if the term or vote changed since it was last saved, or if the
    /// commit index advanced and its hint is due ([`crate::limits::Config::commit_hint_interval_ms`]).
    pub(super) fn save_hard_state(&mut self, store: &mut impl Storage) -> Result<(), RaftError> {
        // Term and vote are what safety needs, and are saved at once. The commit index rides
        // along as a hint: with them, with snapshots, and on its own at most once per hint
        // interval, so a busy leader does not rewrite its hard state on every batch (that would
        // also wear out a flash hard-state sector in weeks).
        if self.hard_state_changed() || self.commit_hint_due() {
            self.write_hard_state(store)?;
        }
        Ok(())
    }

    fn commit_hint_due(&self) -> bool {
        let every = self.cfg.commit_hint_interval_ms;
        every > 0
            && self.commit > self.hs_saved.commit
            && self.now_ms >= self.hint_saved_ms.saturating_add(every)
    }

    pub(super) fn write_hard_state(&mut self, store: &mut impl Storage) -> Result<(), RaftError> {
        let hs = self.hard_state();
        let mut to_save = hs;
        if self.plant.vote_not_persisted() {
            to_save.vote = self.hs_saved.vote;
            if to_save.term != self.hs_saved.term {
                to_save.vote = crate::types::NO_NODE;
            }
        }
        // Only the commit index moved, and every entry up to it is durable here: the hint may
        // reach the media whenever it is cheapest (storage rule 10), so nothing waits for a
        // sync of it. (A hint past the durable log, a follower's ahead of its sync or a leader's
        // ahead of its own background sync, is saved and synced as before.)
        let hint = !self.hard_state_changed() && hs.commit <= self.persisted_index;
        if hint {
            store.save_commit_hint(&to_save)?;
        } else {
            store.save_hard_state(&to_save)?;
            self.hs_unsynced = true;
        }
        self.hs_saved = hs;
        self.hint_saved_ms = self.now_ms;
        Ok(())
    }

    /// Save the commit index with the hard state now if it advanced since it was last saved
    /// (a node stopping cleanly calls this, so its data dir says how far it committed). Durable
    /// with the next sync; returns whether anything was written.
    pub fn save_commit_hint(&mut self, store: &mut impl Storage) -> Result<bool, RaftError> {
        if self.commit <= self.hs_saved.commit {
            return Ok(false);
        }
        self.write_hard_state(store)?;
        Ok(true)
    }
}
