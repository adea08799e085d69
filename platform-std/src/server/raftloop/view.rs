//! The admin view the raft thread publishes every 100 ms (`/status`, `/metrics`, `/health`).

use super::*;

impl RaftLoop {
    pub(super) fn publish_view(&mut self) {
        if self.last_sizes.elapsed() >= Duration::from_secs(1) {
            self.last_sizes = Instant::now();
            // Only groups flushed since: an idle group's files do not change.
            for id in std::mem::take(&mut self.sizes_dirty) {
                let Some(g) = self.groups.get_mut(&id) else {
                    self.sizes.remove(&id);
                    continue;
                };
                g.sizes_dirty = false;
                let log = dir_bytes(&g.dir.join("log"));
                let snap = dir_bytes(&g.dir.join("snap"));
                self.sizes.insert(g.id, (log, snap));
                if !std::mem::replace(&mut g.view_dirty, true) {
                    self.view_dirty.push(id);
                }
            }
            // A raised space alarm clears here once space returns, writes or not.
            if let Some(space) = self.data.space() {
                space.recheck();
            }
        }
        let node_id = self.cfg.node_id;
        // Only the views of groups flushed (or measured) since the last publish are built
        // again: an idle group's view does not change.
        let mut dirty = std::collections::BTreeSet::new();
        for id in std::mem::take(&mut self.view_dirty) {
            if let Some(g) = self.groups.get_mut(&id) {
                g.view_dirty = false;
                dirty.insert(id);
            }
        }
        let view = |g: &Group| -> GroupView {
            let st = status(g, node_id);
            let (log_bytes, snapshot_bytes) = self.sizes.get(&g.id).copied().unwrap_or((0, 0));
            let r = g.node.raft();
            GroupView {
                group: g.id,
                role: st.role.clone(),
                term: st.term,
                leader: st.leader,
                commit: st.commit,
                applied: st.applied,
                last_index: st.last_index,
                snapshot_index: st.snapshot_index,
                log_bytes,
                snapshot_bytes,
                members: st
                    .members
                    .iter()
                    .map(|m| PeerView {
                        id: m.id,
                        raft_addr: m.raft_addr.clone(),
                        role: m.role.clone(),
                        match_index: m.match_index,
                    })
                    .collect(),
                quiet: r.is_quiet(),
                proposals: g.proposals,
                writes_refused: g.writes_refused,
                reads: g.reads,
                max_txn_ops: g.node.state_machine().store().limits().max_txn_ops as u64,
                max_leases: g.node.state_machine().store().limits().max_leases as u64,
                event_bytes: g.node.state_machine().store().event_caps().1 as u64,
                event_slots: g.node.state_machine().store().event_caps().0 as u64,
                leases: g.node.state_machine().store().lease_count() as u64,
                clock_drift_peers: r.clock_drift_peers() as u64,
                node_stats: g.node.stats(),
                raft_stats: r.stats(),
            }
        };
        let fresh: Vec<GroupView> = dirty
            .iter()
            .filter_map(|id| self.groups.get(id).map(|g| view(g)))
            .collect();
        let mut v = self.admin.lock().expect("admin lock");
        v.node_id = node_id;
        v.version = crate::VERSION;
        v.raft_addr.clone_from(&self.cfg.raft_addr);
        v.client_addr.clone_from(&self.cfg.advertise_client_addr);
        v.running = !self.draining;
        if v.groups
            .iter()
            .map(|g| g.group)
            .eq(self.groups.keys().copied())
        {
            for gv in fresh {
                if let Ok(i) = v.groups.binary_search_by_key(&gv.group, |g| g.group) {
                    v.groups[i] = gv;
                }
            }
        } else {
            // Groups came or went: every view again (sorted by group, as `groups` is).
            v.groups = self.groups.values().map(|g| view(g)).collect();
        }
        v.clients = self.hub.view();
        v.records = RecordsView {
            group_dirs_pending_removal: self.sys.dirs_pending_removal(),
            group_dirs_freed: self.sys.dirs_freed(),
            group_handshake_refusals: self.greetings.refusals,
        };
        v.peer_input_bytes = self.net.input_bytes();
        if let Some(seal) = self.net.seal.get() {
            use std::sync::atomic::Ordering::Relaxed;
            v.sealed_links = (seal.opened.load(Relaxed), seal.refused.load(Relaxed));
        }
        if let Some(tls) = self.net.tls.get() {
            v.tls = tls.view();
        }
        self.publish_health(&mut v, &dirty);
        v.space = self.data.space().map(|s| s.stats());
        v.accept = self.accept.view();
        v.auth = self.auth_view();
        v.disk = DiskView {
            segment_bytes: self.cfg.segment_bytes,
            segment_initial_bytes: self.cfg.segment_initial_bytes,
            snapshot_retry_ms: self.cfg.raft.snapshot_retry_ms,
        };
        v.peer_port = self.net.port_view();
        v.flushes = self.flushers.counts();
        v.active_groups = self.active.len() as u64;
        v.health_answers = self.health_counts;
        v.leader_balance_transfers = self.balance.transfers;
        v.leader_balance_load_transfers = self.balance.load_transfers;
        v.follower_background_syncs = self.frozen_syncs;
        v.snapshot_writers = self.snapshot_writers as u64;
        v.frozen_inputs_refused = self.deferred_refused;
        v.raft_cpu = crate::affinity::raft_cpu();
        v.group_series_max = self.cfg.metrics_group_series;
        v.journal_held = self.journal.as_ref().map_or((0, 0), |j| j.held_stats());
        v.journal_ahead_syncs = self.journal.as_ref().map_or(0, |j| j.ahead_syncs());
        v.journal_switch_waits = self.journal.as_ref().map_or(0, |j| j.switch_stats().1);
        v.published += 1;
        drop(v);
        // Outside the view's lock: what the admin port reads first, without it.
        self.fsync_hist.loop_beat.beat(node_id, !self.draining);
    }
}
