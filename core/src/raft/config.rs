//! Membership: changes by joint consensus, and the configurations the log holds (a
//! configuration takes effect when appended, so an uncommitted one may still be cut away).

use super::{ConfigChange, ProposeError, Raft, MAX_CONFIG_BYTES};
use crate::membership::Membership;
use crate::plant::Plant;
use crate::raft::progress::Progress;
use crate::storage::Storage;
use crate::types::{EntryKind, LogIndex, Role, Term};

impl<P: Plant> Raft<P> {
    /// Propose a membership change step. Returns the entry's index and term and the membership
    /// it installs. Changes go one at a time: the previous one must be committed first.
    pub fn propose_config(
        &mut self,
        now_ms: u64,
        change: ConfigChange,
        store: &mut impl Storage,
    ) -> Result<(LogIndex, Term, Membership), ProposeError> {
        self.advance_clock(now_ms);
        #[cfg(feature = "quiesce")]
        self.wake_if_quiet();
        self.check_can_propose()?;
        if self.membership_index > self.commit {
            return Err(ProposeError::ConfigChangeInProgress);
        }
        let next = match change {
            ConfigChange::Prepare(target) => {
                if self.membership.joint {
                    return Err(ProposeError::ConfigChangeInProgress);
                }
                let target = Membership::new(&target.voters, &target.observers)
                    .map_err(ProposeError::BadMembership)?;
                self.membership
                    .to_joint(&target)
                    .map_err(ProposeError::BadMembership)?
            }
            ConfigChange::Commit | ConfigChange::Abort if !self.membership.joint => {
                return Err(ProposeError::ConfigChangeInProgress);
            }
            ConfigChange::Commit => self.membership.committed_target(),
            ConfigChange::Abort => self.membership.aborted_target(),
        };
        let mut buf = [0u8; MAX_CONFIG_BYTES];
        let data = postcard::to_slice(&next, &mut buf).map_err(|_| ProposeError::TooLarge)?;
        let (index, term) = self.append_own(EntryKind::Config, data, store)?;
        Ok((index, term, next))
    }

    /// Feed a configuration entry found in the log during recovery (in index order).
    pub fn recover_config(&mut self, index: LogIndex, membership: Membership) {
        self.add_config(index, membership);
        self.refresh_role();
    }

    /// The membership in force at `index`, if the core still remembers it.
    pub fn membership_at(&self, index: LogIndex) -> Option<Membership> {
        self.configs
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, m)| m.clone())
    }

    /// A configuration entry at `index` was appended: it is in force from now on.
    pub(super) fn add_config(&mut self, index: LogIndex, m: Membership) {
        self.prune_configs();
        if self.configs.is_full() {
            self.configs.remove(0);
        }
        let _ = self.configs.push((index, m.clone()));
        self.membership = m;
        self.membership_index = index;
    }

    /// Forget every configuration but the snapshot's (a snapshot replaced the log).
    pub(super) fn reset_configs(&mut self, index: LogIndex, m: Membership) {
        self.configs.clear();
        let _ = self.configs.push((index, m.clone()));
        self.membership = m;
        self.membership_index = index;
    }

    /// Keep the newest config at or below the commit index and everything after it.
    pub(super) fn prune_configs(&mut self) {
        let commit = self.commit.max(self.snapshot_index);
        while self.configs.len() > 1 && self.configs[1].0 <= commit {
            self.configs.remove(0);
        }
    }

    /// The log was cut from `from` on: configurations there no longer exist.
    pub(super) fn truncate_configs(&mut self, from: LogIndex) {
        while self.configs.len() > 1 && self.configs.last().map(|c| c.0 >= from).unwrap_or(false) {
            self.configs.pop();
        }
        if let Some((i, m)) = self.configs.last() {
            self.membership = m.clone();
            self.membership_index = *i;
        }
    }

    /// Take the role the new membership gives, and, as leader, track exactly its members.
    pub(super) fn on_config_changed(&mut self) {
        self.refresh_role();
        if self.role == Role::Leader {
            // Track every member of the new configuration; drop those no longer named.
            let all = self.membership.all();
            self.progress.retain(|p| all.contains(&p.id));
            for id in all {
                if id != self.id && !self.progress.iter().any(|p| p.id == id) {
                    let mut p = Progress::new(id, self.last_index);
                    p.recent_active = true;
                    let _ = self.progress.push(p);
                }
            }
        }
    }
}
