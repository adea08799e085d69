//! The cluster's own records (`shoal_kv::system`: the reserved DtKV subtree `__shoal` of
//! group 0) as the raft thread writes and applies them.
//!
//! - **Member records** (`__shoal.members.<id>`) say where each node listens. A member add of
//!   group 0 writes the new node's record before its first configuration step; the leader of
//!   group 0 fills in the record of any member that has none (a new cluster's initial members,
//!   a data dir from before the records, whose addresses came in `0xA5` entries) from its
//!   address book, and keeps its own record equal to its flags. Every node copies the records
//!   into its address books and dials from there.
//! - **Group records** (`__shoal.groups.<gid>`) define the groups. `group create` proposes one
//!   through group 0 (`SysCreate`: the first definition of an id wins on every replica); every
//!   node it lists creates the group with exactly those voters when it sees the record, and a
//!   node added to the group later creates it empty (as a joiner) when the group's leader first
//!   sends to it. `group remove` writes a tombstone: every node hosting the group stops it and
//!   moves its dir aside, deleting it after `--group-remove-grace`. Group ids are not reused.
//!
//! The raft thread reacts to the records' state, not to the entries that wrote them: whenever
//! group 0's DtKV says its reserved subtree changed (`DtKv::system_changes`: a system write
//! applied, a snapshot installed, a restart), the records are read again and the node makes
//! itself agree with them. A node that was down, or that catches up from a snapshot, ends up
//! exactly where the others are.

use super::*;
use shoal_kv::system::{
    group_key, member_key, record_id, GroupRecord, GroupState, MemberRecord, GROUPS_DIR,
    MAX_GROUP_RECORD_BYTES, MEMBERS_DIR,
};
use shoal_kv::WriteResult;

/// A removed group's dir while it waits out the grace period:
/// `removed-group-<gid>-<wall-clock ms of the removal>`.
pub(super) const REMOVED_PREFIX: &str = "removed-group-";
/// Shortest time between two rounds of filling in missing member records.
const FILL_EVERY: Duration = Duration::from_millis(500);

/// A removed group's dir, deleted once its grace period ends.
pub(super) struct Removal {
    gid: GroupId,
    dir: PathBuf,
    /// Wall-clock ms after which the dir is deleted.
    due_ms: u64,
}

/// The records as this node last read them, and what it does about them.
#[derive(Default)]
pub(super) struct Records {
    /// Group 0's `system_changes` when the records were last read.
    seen: Option<u64>,
    /// Member records by node id.
    pub(super) members: BTreeMap<NodeId, MemberAddr>,
    /// Group records by group id.
    pub(super) groups: BTreeMap<GroupId, GroupRecord>,
    /// Removed groups' dirs waiting out their grace period.
    removals: Vec<Removal>,
    /// Dirs being deleted now, and dirs deleted since start.
    deleting: Arc<std::sync::atomic::AtomicUsize>,
    freed: Arc<std::sync::atomic::AtomicU64>,
    /// The term this node last led group 0 in, and its last log index when it saw that (its
    /// no-op is at or before it): once that is applied, its DtKV holds every record committed
    /// before its term.
    led: (Term, LogIndex),
    /// The last member record this leader proposed to fill a gap: none again until applied.
    fill_upto: LogIndex,
    last_fill: Option<Instant>,
    /// Group records not acted on yet: creating groups stopped for this round (see
    /// [`RaftLoop::apply_group_records`]).
    more_groups: bool,
    /// Groups this node failed to create, when and why: tried again after
    /// [`CREATE_RETRY`], and logged again only when the reason changes.
    create_failed: BTreeMap<GroupId, (Instant, String)>,
    /// The wrong client address group 0's record of this node named when last logged.
    own_record_warned: Option<String>,
}

/// How long a group this node could not create (no descriptor, no space) waits before it is
/// tried again.
const CREATE_RETRY: Duration = Duration::from_secs(10);
/// New groups whose storage is opened at once ([`RaftLoop::open_stores`]).
const CREATE_BATCH: usize = 8;

impl Records {
    /// Removed groups' dirs on disk: waiting for their grace period or being deleted.
    pub(super) fn dirs_pending_removal(&self) -> usize {
        self.removals.len() + self.deleting.load(Ordering::Relaxed)
    }

    /// Removed groups' dirs deleted since start.
    pub(super) fn dirs_freed(&self) -> u64 {
        self.freed.load(Ordering::Relaxed)
    }

    fn removing(&self, gid: GroupId) -> bool {
        self.removals.iter().any(|r| r.gid == gid)
    }

    fn group_removed(&self, gid: GroupId) -> bool {
        self.groups
            .get(&gid)
            .is_some_and(|r| r.state == GroupState::Removed)
    }
}

/// What a client waits for when its request became a system write of group 0.
pub(super) enum SysAnswer {
    /// `group create`: answer once the definition applied (or the same one already had).
    GroupCreate { gid: GroupId, record: Vec<u8> },
    /// `group remove`: answer once the tombstone applied.
    GroupRemove,
    /// A user, role or auth switch change: answer once it applied.
    Auth,
}

/// A system write of group 0 as a log entry (no session: the record's own state makes a
/// repeated write harmless).
pub(super) fn system_command(op: Op<'_>) -> Result<Vec<u8>, String> {
    let cmd = Command {
        client_id: 0,
        seq: 0,
        time_ms: wall_ms(),
        op,
    };
    encode_command(&cmd, 128)
}

/// `SysPut` of `a`'s member record.
pub(super) fn member_record_command(a: &MemberAddr) -> Result<Vec<u8>, String> {
    let mut value = vec![0u8; a.raft_addr.len() + a.client_addr.len() + 16];
    let rec = MemberRecord {
        raft_addr: &a.raft_addr,
        client_addr: &a.client_addr,
    };
    let n = rec
        .encode(&mut value)
        .map_err(|e| format!("member record of node {}: {e:?}", a.id))?;
    let key = member_key(a.id);
    system_command(Op::SysPut {
        key: key.as_bytes(),
        value: &value[..n],
    })
}

fn encode_group_record(rec: &GroupRecord) -> Vec<u8> {
    let mut buf = [0u8; MAX_GROUP_RECORD_BYTES];
    let n = rec
        .encode(&mut buf)
        .expect("a group record fits MAX_GROUP_RECORD_BYTES");
    buf[..n].to_vec()
}

/// Every record of group 0's DtKV. A record that does not decode (a key written under
/// `__shoal` before it was reserved, or by a newer build) is logged and left out.
fn read_records(kv: &HeapKv) -> (BTreeMap<NodeId, MemberAddr>, BTreeMap<GroupId, GroupRecord>) {
    let mut members = BTreeMap::new();
    let _ = kv.list(MEMBERS_DIR, |v| {
        let id = record_id(v.key, MEMBERS_DIR).filter(|&id| id != 0);
        match (id, MemberRecord::decode(v.value)) {
            (Some(id), Ok(r)) => {
                members.insert(
                    id,
                    MemberAddr {
                        id,
                        raft_addr: r.raft_addr.to_string(),
                        client_addr: r.client_addr.to_string(),
                    },
                );
            }
            (_, r) => log::warn!(
                "ignoring {}: not a member record ({:?})",
                String::from_utf8_lossy(v.key),
                r.err()
            ),
        }
    });
    let mut groups = BTreeMap::new();
    let _ = kv.list(GROUPS_DIR, |v| {
        let gid = record_id(v.key, GROUPS_DIR).and_then(|g| GroupId::try_from(g).ok());
        match (gid, GroupRecord::decode(v.value)) {
            (Some(gid), Ok(r)) => {
                groups.insert(gid, r);
            }
            (_, r) => log::warn!(
                "ignoring {}: not a group record ({:?})",
                String::from_utf8_lossy(v.key),
                r.err()
            ),
        }
    });
    (members, groups)
}

/// `removed-group-<gid>-<ms>` → `(gid, ms)`.
fn parse_removed_dir(name: &str) -> Option<(GroupId, u64)> {
    let (gid, ms) = name.strip_prefix(REMOVED_PREFIX)?.split_once('-')?;
    Some((gid.parse().ok()?, ms.parse().ok()?))
}

impl RaftLoop {
    /// At start, after group 0 opened: the groups whose dirs exist, minus those group 0's
    /// state already says were removed (moved aside for deletion instead), and the dirs of
    /// groups removed before the restart, due at their original time.
    pub(super) fn groups_to_open(&mut self, dirs: Vec<GroupId>) -> Result<Vec<GroupId>, String> {
        let (members, groups) = read_records(self.groups[&0].node.state_machine().store());
        self.sys.members = members;
        self.sys.groups = groups;
        self.reload_auth();
        let grace = self.cfg.group_remove_grace.as_millis() as u64;
        let entries = std::fs::read_dir(self.data.path())
            .map_err(|e| format!("cannot list {}: {e}", self.data.path().display()))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if let Some((gid, ms)) = parse_removed_dir(&name) {
                self.sys.removals.push(Removal {
                    gid,
                    dir: e.path(),
                    due_ms: ms.saturating_add(grace),
                });
            }
        }
        let mut open = Vec::new();
        for gid in dirs {
            if self.sys.group_removed(gid) {
                let from = group_dir(self.data.path(), gid);
                self.set_aside(gid, from)?;
            } else {
                open.push(gid);
            }
        }
        Ok(open)
    }

    /// After each batch: read the records again if group 0 says they changed and act on
    /// them, fill in missing member records (group 0's leader), and delete removed groups'
    /// dirs whose grace period ended.
    pub(super) fn after_records(&mut self, now: u64) {
        let Some(g0) = self.groups.get(&0) else {
            return;
        };
        let changes = g0.node.state_machine().store().system_changes();
        if self.sys.seen != Some(changes) {
            self.sys.seen = Some(changes);
            let (members, groups) = read_records(g0.node.state_machine().store());
            self.sys.members = members;
            self.sys.groups = groups;
            self.apply_member_records();
            self.apply_group_records();
            self.refresh_hello();
        } else if self.sys.more_groups || self.retry_due() {
            self.apply_group_records();
            self.refresh_hello();
        }
        self.fill_member_records(now);
        self.free_removed();
    }

    /// Say so (once per wrong value) when group 0's record of this node names another client
    /// address than the one it advertises: a leader wrote it from its member list (an implied
    /// raft port + 1), and followers redirect clients there until this node leads group 0 and
    /// writes its own.
    fn check_own_record(&mut self) {
        let own = &self.cfg.advertise_client_addr;
        let recorded = self
            .sys
            .members
            .get(&self.cfg.node_id)
            .map(|a| &a.client_addr)
            .filter(|c| *c != own);
        if recorded == self.sys.own_record_warned.as_ref() {
            return;
        }
        if let Some(c) = recorded {
            log::warn!(
                "group 0's record of this node names client address {c}, but this node serves \
                 clients at {own}: followers send clients there until this node leads group 0; \
                 name the client address when adding a member (ID=RAFT/CLIENT) or set \
                 --advertise-client-addr"
            );
        }
        self.sys.own_record_warned = recorded.cloned();
    }

    /// Whether a group this node failed to create is due to be tried again.
    fn retry_due(&self) -> bool {
        self.sys
            .create_failed
            .values()
            .any(|(at, _)| at.elapsed() >= CREATE_RETRY)
    }

    /// Every hosted group's address book learns the records; dialers follow.
    fn apply_member_records(&mut self) {
        self.check_own_record();
        for a in self.sys.members.values() {
            self.net.ensure_peer(a.id, &a.raft_addr);
            for g in self.groups.values_mut() {
                if let Err(e) = g.book.upsert(a.clone()) {
                    log::error!("group {}: {e}", g.id);
                }
            }
        }
    }

    /// Create the live groups that list this node; stop and set aside the removed ones.
    ///
    /// Creating a group makes and syncs its dirs (tens of milliseconds); a batch that defined
    /// many groups is acted on over several rounds, at most a heartbeat interval of creating
    /// per round, so this node's groups keep heartbeating meanwhile (a node that stops for an
    /// election timeout loses its leaderships, group 0's included).
    fn apply_group_records(&mut self) {
        let me = self.cfg.node_id;
        let started = Instant::now();
        let budget = Duration::from_millis(self.cfg.raft.heartbeat_interval_ms);
        self.sys.more_groups = false;
        let groups = &self.sys.groups;
        self.sys
            .create_failed
            .retain(|g, _| groups.get(g).is_some_and(|r| r.state == GroupState::Active));
        let records: Vec<(GroupId, GroupRecord)> = self
            .sys
            .groups
            .iter()
            .filter(|(&gid, _)| gid != 0)
            .map(|(&gid, r)| (gid, r.clone()))
            .collect();
        let mut create = Vec::new();
        for (gid, rec) in records {
            let hosted = self.groups.contains_key(&gid);
            match rec.state {
                GroupState::Active if !hosted && rec.members.contains(&me) => {
                    if self.sys.removing(gid) {
                        continue;
                    }
                    if let Some((at, _)) = self.sys.create_failed.get(&gid) {
                        if at.elapsed() < CREATE_RETRY {
                            continue;
                        }
                    }
                    create.push((gid, rec));
                }
                GroupState::Removed if hosted => self.retire_group(gid),
                _ => {}
            }
        }
        'batches: for batch in create.chunks(CREATE_BATCH) {
            if started.elapsed() >= budget {
                self.sys.more_groups = true;
                break;
            }
            let mut stores = self
                .open_stores(batch.iter().map(|(gid, _)| *gid))
                .into_iter();
            for (gid, rec) in batch {
                let gid = *gid;
                if started.elapsed() >= budget {
                    // The stores opened for the rest close; they open again next round.
                    self.sys.more_groups = true;
                    break 'batches;
                }
                let addrs = self.known_addrs();
                let store = stores.next().flatten();
                match self.open_group_with(gid, store, &addrs, Some(&rec.members)) {
                    Ok(()) => {
                        self.sys.create_failed.remove(&gid);
                        log::info!(
                            "group {gid} created from its record: voters {:?}",
                            rec.members.as_slice()
                        )
                    }
                    Err(e) => {
                        let again = self
                            .sys
                            .create_failed
                            .get(&gid)
                            .is_some_and(|(_, w)| *w == e);
                        if !again {
                            log::error!(
                                "group {gid}: cannot create it: {e} (tried again every {}s)",
                                CREATE_RETRY.as_secs()
                            );
                        }
                        self.sys.create_failed.insert(gid, (Instant::now(), e));
                    }
                }
            }
        }
    }

    /// Open the storage of new groups `gids` on threads of their own, at once: creating a
    /// group's dirs and files takes several syncs (5-25 ms here), which overlap on the device
    /// instead of queueing on the raft thread. Only as many as the open-file budget allows;
    /// `None` for the rest and for a store that failed to open (opened again, one by one, by
    /// [`RaftLoop::open_group_with`], which reports why).
    fn open_stores(
        &self,
        gids: impl Iterator<Item = GroupId>,
    ) -> Vec<Option<crate::storage::FileStorage>> {
        let gids: Vec<GroupId> = gids.collect();
        let fits = (0..=gids.len())
            .rev()
            .find(|&n| self.fds.check(self.groups.len() + n).is_ok())
            .unwrap_or(0);
        if fits < 2 {
            return Vec::new();
        }
        let opts = self.storage_options();
        let (data, opts) = (&self.data, &opts);
        let mut stores: Vec<Option<crate::storage::FileStorage>> = std::thread::scope(|s| {
            let opening: Vec<_> = gids[..fits]
                .iter()
                .map(|&g| {
                    std::thread::Builder::new()
                        .name("shoal-create".into())
                        .spawn_scoped(s, move || {
                            crate::affinity::leave_raft_cpu();
                            data.open_group(g, opts).ok()
                        })
                })
                .collect();
            opening
                .into_iter()
                .map(|t| t.ok().and_then(|t| t.join().ok().flatten()))
                .collect()
        });
        stores.resize_with(gids.len(), || None);
        stores
    }

    /// The addresses every new group's book starts with: the member records.
    fn known_addrs(&self) -> Vec<MemberAddr> {
        self.sys.members.values().cloned().collect()
    }

    /// A peer sent a frame for group `gid`, which this node does not host: join it (empty,
    /// waiting for the leader's log to name it) if group 0 says the group is live. The
    /// leader sends only to the members of its configuration, so this is how a node added to
    /// a group after its creation comes to host it.
    pub(super) fn join_group_for_peer(&mut self, gid: GroupId) -> bool {
        let live = self
            .sys
            .groups
            .get(&gid)
            .is_some_and(|r| r.state == GroupState::Active);
        // While group records wait to be acted on, their groups are created from the records
        // (a few each round); a frame that comes first is dropped, and sent again.
        if gid == 0 || !live || self.sys.removing(gid) || self.sys.more_groups {
            return false;
        }
        let addrs = self.known_addrs();
        match self.open_group(gid, &addrs, None) {
            Ok(()) => {
                log::info!("group {gid}: joining; its leader sent to this node");
                self.refresh_hello();
                true
            }
            Err(e) => {
                log::error!("group {gid}: cannot join it: {e}");
                false
            }
        }
    }

    /// Stop group `gid` on this node and set its dir aside for deletion after the grace
    /// period.
    fn retire_group(&mut self, gid: GroupId) {
        let Some(mut g) = self.groups.remove(&gid) else {
            return;
        };
        fail_all(&mut g, "the group was removed");
        let dir = g.dir.clone();
        // The storage's files close here, before the dir moves.
        drop(g);
        self.share_event_history(None);
        self.greetings.forget_group(gid);
        if let Err(e) = self.set_aside(gid, dir) {
            log::error!("group {gid}: stopped, but {e}");
        }
        self.refresh_hello();
    }

    fn set_aside(&mut self, gid: GroupId, dir: PathBuf) -> Result<(), String> {
        let at = wall_ms();
        let to = self.data.path().join(format!("{REMOVED_PREFIX}{gid}-{at}"));
        std::fs::rename(&dir, &to)
            .map_err(|e| format!("{} could not be moved aside: {e}", dir.display()))?;
        let grace = self.cfg.group_remove_grace;
        log::info!(
            "group {gid} removed; its data moved to {} and deleted in {grace:?}",
            to.display()
        );
        self.sys.removals.push(Removal {
            gid,
            dir: to,
            due_ms: at.saturating_add(grace.as_millis() as u64),
        });
        Ok(())
    }

    /// Delete the removed groups' dirs whose grace period ended, each on a thread of its own
    /// (a log's preallocated segments take a while to unlink).
    fn free_removed(&mut self) {
        if self.sys.removals.is_empty() {
            return;
        }
        let now = wall_ms();
        let (due, wait): (Vec<Removal>, Vec<Removal>) = std::mem::take(&mut self.sys.removals)
            .into_iter()
            .partition(|r| r.due_ms <= now);
        self.sys.removals = wait;
        for r in due {
            let (deleting, freed) = (self.sys.deleting.clone(), self.sys.freed.clone());
            deleting.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name(format!("shoal-free-group-{}", r.gid))
                .spawn(move || {
                    crate::affinity::leave_raft_cpu();
                    match std::fs::remove_dir_all(&r.dir) {
                        Ok(()) => {
                            freed.fetch_add(1, Ordering::Relaxed);
                            log::info!("group {}: {} deleted", r.gid, r.dir.display());
                        }
                        Err(e) => log::error!(
                            "group {}: cannot delete {}: {e}; delete it by hand",
                            r.gid,
                            r.dir.display()
                        ),
                    }
                    deleting.fetch_sub(1, Ordering::Relaxed);
                });
            if let Err(e) = spawned {
                self.sys.deleting.fetch_sub(1, Ordering::Relaxed);
                log::error!("cannot start a thread to delete a removed group's dir: {e}");
            }
        }
    }

    /// Group 0's leader writes the member record of every member that has none, from its
    /// address book (the initial members of a new cluster; the members of a data dir from
    /// before the records), and its own when its addresses changed; and removes the record of
    /// a node that is no member (a removal whose leader stepped down before it removed the
    /// record), while no membership change runs. Only once its DtKV holds every record
    /// committed before its term, and one round at a time.
    fn fill_member_records(&mut self, now: u64) {
        let me = self.cfg.node_id;
        let own = MemberAddr {
            id: me,
            raft_addr: self.cfg.raft_addr.clone(),
            client_addr: self.cfg.advertise_client_addr.clone(),
        };
        let Some(g) = self.groups.get_mut(&0) else {
            return;
        };
        let r = g.node.raft();
        if r.role() != Role::Leader {
            return;
        }
        if self.sys.led.0 != r.term() {
            self.sys.led = (r.term(), r.last_index());
        }
        let applied = g.node.applied();
        if applied < self.sys.led.1 || applied < self.sys.fill_upto {
            return;
        }
        if self.sys.last_fill.is_some_and(|t| t.elapsed() < FILL_EVERY) {
            return;
        }
        let mut missing = Vec::new();
        let mut stale = Vec::new();
        let members = r.membership().all();
        if !r.membership().joint && g.member_op.is_none() {
            stale.extend(self.sys.members.keys().filter(|id| !members.contains(id)));
        }
        for id in members {
            let known = self.sys.members.get(&id);
            if id == me {
                if known != Some(&own) {
                    missing.push(own.clone());
                }
            } else if known.is_none() {
                if let Some(a) = g.book.map.get(&id) {
                    missing.push(a.clone());
                }
            }
        }
        if missing.is_empty() && stale.is_empty() {
            return;
        }
        self.sys.last_fill = Some(Instant::now());
        for id in stale {
            let key = member_key(id);
            let proposed = system_command(Op::SysRemove {
                key: key.as_bytes(),
            })
            .and_then(|bytes| {
                g.node
                    .propose(now, &bytes)
                    .map_err(|e| format!("not proposed: {e}"))
            });
            match proposed {
                Ok((index, _)) => {
                    log::info!("group 0: removing the record of node {id}, not a member");
                    self.sys.fill_upto = index;
                }
                Err(e) => {
                    log::debug!("record of node {id}: {e}");
                    return;
                }
            }
        }
        for a in missing {
            let proposed = member_record_command(&a).and_then(|bytes| {
                g.node
                    .propose(now, &bytes)
                    .map_err(|e| format!("not proposed: {e}"))
            });
            match proposed {
                Ok((index, _)) => {
                    log::info!(
                        "group 0: writing the member record of node {} (raft {}, client {})",
                        a.id,
                        a.raft_addr,
                        a.client_addr
                    );
                    self.sys.fill_upto = index;
                }
                Err(e) => {
                    log::debug!("member record of node {}: {e}", a.id);
                    return;
                }
            }
        }
    }

    // ----- requests ------------------------------------------------------------------------

    /// `group create`: define group `gid` with `members` through group 0's log.
    pub(super) fn group_create(&mut self, gid: GroupId, members: Vec<NodeId>, reply: Reply) {
        if refused_for_group_zero(
            gid,
            &reply,
            "group 0 always exists: it is the cluster's own group and holds its records",
        ) {
            return;
        }
        let now = self.now_ms();
        let mut ids = members;
        ids.sort_unstable();
        ids.dedup();
        // This node's room for one more group (the other members check theirs when they open it).
        let hosted = self.groups.contains_key(&gid);
        let fits = self.fds.check(self.groups.len() + 1);
        let Some(g) = group_zero_led_here(&mut self.groups, &reply) else {
            return;
        };
        let cluster = g.node.raft().membership().all();
        if let Some(id) = ids.iter().find(|id| !cluster.contains(id)) {
            reply.send(error(
                ErrorCode::BadRequest,
                format!(
                    "node {id} is not a member of the cluster (group 0: {:?}); add it to group 0 first",
                    cluster.as_slice()
                ),
            ));
            return;
        }
        let members = match NodeSet::from_slice(&ids) {
            Ok(m) if !m.is_empty() => m,
            Ok(_) => {
                reply.send(error(
                    ErrorCode::BadRequest,
                    "a group needs at least one member".into(),
                ));
                return;
            }
            Err(()) => {
                reply.send(error(
                    ErrorCode::BadRequest,
                    format!(
                        "a group has at most {} members, not {}",
                        shoal_core::limits::MAX_MEMBERS,
                        ids.len()
                    ),
                ));
                return;
            }
        };
        if members.contains(&self.cfg.node_id) && !hosted {
            if let Err(e) = fits {
                reply.send(error(ErrorCode::LimitExceeded, format!("group {gid}: {e}")));
                return;
            }
        }
        let rec = GroupRecord {
            state: GroupState::Active,
            members,
        };
        let record = encode_group_record(&rec);
        if let Some(answer) = group_exists(g, gid, &record) {
            reply.send(answer);
            return;
        }
        let key = group_key(gid);
        let op = Op::SysCreate {
            key: key.as_bytes(),
            value: &record,
        };
        let answer = SysAnswer::GroupCreate {
            gid,
            record: record.clone(),
        };
        propose_system(g, now, op, reply, answer);
    }

    /// `group remove`: write group `gid`'s tombstone through group 0's log.
    pub(super) fn group_remove(&mut self, gid: GroupId, reply: Reply) {
        if refused_for_group_zero(
            gid,
            &reply,
            "group 0 cannot be removed: it is the cluster's own group (members, groups and their records live in it)",
        ) {
            return;
        }
        let now = self.now_ms();
        let hosted = self
            .groups
            .get(&gid)
            .map(|g| g.node.raft().membership().all());
        let Some(g) = group_zero_led_here(&mut self.groups, &reply) else {
            return;
        };
        let key = group_key(gid);
        let kv = g.node.state_machine().store();
        let current = kv
            .get(key.as_bytes())
            .ok()
            .and_then(|v| GroupRecord::decode(v.value).ok());
        let members = match (current, hosted) {
            (Some(r), _) if r.state == GroupState::Removed => {
                reply.send(Response::Done {
                    index: g.node.applied(),
                });
                return;
            }
            (Some(r), _) => r.members,
            // A group created on each node before the records: its tombstone names the
            // members this node knows.
            (None, Some(m)) => m,
            (None, None) => {
                reply.send(error(
                    ErrorCode::UnknownGroup,
                    format!("group {gid} does not exist"),
                ));
                return;
            }
        };
        let record = encode_group_record(&GroupRecord {
            state: GroupState::Removed,
            members,
        });
        let op = Op::SysPut {
            key: key.as_bytes(),
            value: &record,
        };
        propose_system(g, now, op, reply, SysAnswer::GroupRemove);
    }
}

/// Whether `gid` is group 0, which a group request may not name: then `reply` is answered
/// with a conflict saying `why`.
fn refused_for_group_zero(gid: GroupId, reply: &Reply, why: &str) -> bool {
    if gid == 0 {
        reply.send(error(ErrorCode::Conflict, why.into()));
    }
    gid == 0
}

/// Group 0 when this node leads it, as group records are written only through group 0's
/// leader; otherwise `reply` is answered with why not (group 0 not open here, or who leads it).
fn group_zero_led_here<'a>(
    groups: &'a mut BTreeMap<GroupId, Box<Group>>,
    reply: &Reply,
) -> Option<&'a mut Group> {
    let Some(g) = groups.get_mut(&0) else {
        reply.send(error(ErrorCode::Internal, "group 0 is not open".into()));
        return None;
    };
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return None;
    }
    Some(g)
}

/// The answer when group `gid` already has a record: done if it is `record`, else why not.
fn group_exists(g: &Group, gid: GroupId, record: &[u8]) -> Option<Response> {
    let kv = g.node.state_machine().store();
    let v = kv.get(group_key(gid).as_bytes()).ok()?;
    if v.value == record {
        return Some(Response::Done {
            index: v.update_index,
        });
    }
    let message = match GroupRecord::decode(v.value) {
        Ok(r) if r.state == GroupState::Removed => format!(
            "group {gid} was removed (at index {}); group ids are never reused, choose another",
            v.update_index
        ),
        Ok(r) => format!(
            "group {gid} already exists with members {:?}; a group has one definition for the whole cluster",
            r.members.as_slice()
        ),
        Err(e) => format!("group {gid} has a record this node cannot read ({e:?})"),
    };
    Some(error(ErrorCode::Conflict, message))
}

pub(super) fn propose_system(g: &mut Group, now: u64, op: Op<'_>, reply: Reply, answer: SysAnswer) {
    let encoded = system_command(op);
    if let Some((index, term, reply)) = propose_for(g, now, encoded, ErrorCode::Internal, reply) {
        g.pending_sys.insert(index, (term, reply, answer));
    }
}

/// Answer the client whose system write applied at `index` in `term` with `applied`.
pub(super) fn answer_system(
    g: &Group,
    index: LogIndex,
    term: Term,
    applied: &shoal_kv::Applied,
    pending: (Term, Reply, SysAnswer),
) {
    let (t, reply, answer) = pending;
    if t != term {
        reply.send(unavailable(
            "the request was overwritten by a new leader of group 0; check and retry",
        ));
        return;
    }
    let response = match (answer, &applied.result) {
        (_, WriteResult::Done) => Response::Done { index },
        (SysAnswer::GroupCreate { gid, record }, WriteResult::Failed(KvError::AlreadyExists)) => {
            group_exists(g, gid, &record).unwrap_or(Response::Done { index })
        }
        (_, WriteResult::Failed(e)) => kv_error(*e),
        (_, other) => error(
            ErrorCode::Internal,
            format!("a system write answered {other:?}"),
        ),
    };
    reply.send(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_dirs_name_their_group_and_time() {
        assert_eq!(
            parse_removed_dir("removed-group-8-1700000000000"),
            Some((8, 1_700_000_000_000))
        );
        assert_eq!(parse_removed_dir("removed-group-x-1"), None);
        assert_eq!(parse_removed_dir("group-8"), None);
    }
}
