//! Client requests on the raft thread: each routed to its handler (the node's own, a group's
//! reads in `requests/reads.rs`, writes in `requests/writes.rs`, watches and member changes),
//! and the answers and errors they turn into. Peer frames and finished background syncs enter
//! here too.

use super::*;
use shoal_client::protocol::ANY_CLUSTER;
use shoal_core::wire::Body;
use shoal_kv::validate_key;

mod reads;
mod writes;

pub(super) use reads::*;
pub(super) use writes::*;

pub(super) fn unavailable(msg: &str) -> Response {
    Response::Unavailable {
        message: msg.to_string(),
    }
}

pub(super) fn error(code: ErrorCode, message: String) -> Response {
    Response::Error {
        code,
        kv: None,
        message,
    }
}

pub(super) fn kv_error(e: KvError) -> Response {
    Response::Error {
        code: ErrorCode::Kv,
        kv: Some(e),
        message: e.to_string(),
    }
}

/// A write refused before it was proposed: DtKV's error, the transaction item it is about, and
/// the limit it passed.
pub(super) fn refused(r: Refusal, limits: &shoal_kv::KvLimits) -> Response {
    let explained = r.error.explain(limits);
    Response::Error {
        code: ErrorCode::Kv,
        kv: Some(r.error),
        message: match r.item {
            Some((part, i)) => format!("transaction {} {i}: {explained}", part.name()),
            None => explained.to_string(),
        },
    }
}

pub(super) fn event_kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Put => "put",
        EventKind::Remove => "remove",
        EventKind::Mkdir => "mkdir",
        EventKind::Expired => "expire",
        EventKind::TtlUpdated => "ttl-updated",
        EventKind::LockAcquired => "lock-acquired",
        EventKind::LockQueued => "lock-queued",
        EventKind::LockReleased => "lock-released",
        EventKind::LockExpired => "lock-expired",
        EventKind::LockWaitDropped => "lock-wait-dropped",
        EventKind::LeaseUpdated => "lease-updated",
    }
}

/// The role name in the raft loop's log: [`Role::name`], the one every platform prints (the
/// loop's module names this function).
pub fn role_name(r: Role) -> &'static str {
    r.name()
}

impl RaftLoop {
    // ----- inputs --------------------------------------------------------------------------------

    /// One sync finished these jobs; how many.
    pub(super) fn syncs_done(&mut self, done: SyncFinished) -> usize {
        match done {
            SyncFinished::Round(done) => {
                let n = done.len();
                done.into_iter().for_each(|d| self.sync_done(d));
                n
            }
            SyncFinished::Followers(f, result) => self.followers_synced(f, result),
        }
    }

    /// The sync frozen followers waited for is done: each runs `Node::synced` in the next
    /// round ([`Frozen`]).
    fn followers_synced(&mut self, f: FollowerSync, result: Result<(), String>) -> usize {
        if let Err(e) = result {
            // As after a failed fdatasync, what the page cache holds is unknown.
            log::error!("fatal: {e}; stopping");
            std::process::exit(1);
        }
        let n = f.groups.len();
        for (id, journaled) in f.groups {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            if let Some(frozen) = g.frozen.as_mut() {
                frozen.ready = true;
                g.node.storage_mut().inner.shared_synced(journaled);
                self.active.insert(id);
            }
        }
        n
    }

    /// A background fdatasync finished: the group's leader may count its own log now.
    pub(super) fn sync_done(&mut self, done: SyncDone) {
        let SyncDone { job, result } = done;
        self.active.insert(job.group);
        let Some(g) = self.groups.get_mut(&job.group) else {
            return;
        };
        g.syncs_inflight -= 1;
        if let Err(e) = result {
            // The page cache's state is unknown after a failed fdatasync; retrying is unsafe.
            log::error!("group {}: fatal: {e}; stopping", g.id);
            std::process::exit(1);
        }
        g.node.storage_mut().inner.background_synced(&job.sync);
        g.node.log_persisted(job.at);
    }

    pub(super) fn handle_client_input(&mut self, input: ClientInput) {
        match input {
            ClientInput::Request(conn, frame) => self.handle_client(conn, frame),
            ClientInput::Hashed(h) => self.hashed(h),
            ClientInput::Closed(conn) => {
                for g in self.groups.values_mut() {
                    g.watches.retain(|w| w.reply.conn.id != conn);
                }
            }
        }
    }

    /// A peer frame the peer threads handed over: make room for more, then handle it.
    pub(super) fn peer_frame(&mut self, frame: PeerFrame) {
        self.net.taken(frame.len());
        self.handle_peer(&frame);
    }

    pub(super) fn handle_peer(&mut self, bytes: &[u8]) {
        // Decoded (and checksummed) once: the header routes it, the group's driver takes it.
        // A frame that is refused is counted and dropped (the core's failure policy); only a
        // local durability fault stops the node.
        let now = self.now_ms();
        let (frame, used) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(_) => return self.peer_faults.refuse(now, Fault::BadFrame),
        };
        let (group, from) = (frame.header.group, frame.header.from);
        self.heard_from(from, now);
        if frame.body == Body::Ping {
            return;
        }
        if !matches!(frame.body, Body::Raft(_)) {
            // Group 0's handshake is the connection's own, done before any frame comes here.
            if group == 0 {
                return self.peer_faults.refuse(now, Fault::NotRaft);
            }
            return self.handle_greeting(&frame);
        }
        if !self.groups.contains_key(&group) && !self.join_group_for_peer(group) {
            return self.peer_faults.refuse(now, Fault::WrongGroup);
        }
        if !self.greetings.passed(group, from) {
            return self.greet(group, from);
        }
        self.active.insert(group);
        let g = self.groups.get_mut(&group).expect("hosted or joined above");
        if let Some(frozen) = g.frozen.as_mut() {
            if frozen.defer(Deferred::Peer(bytes.to_vec())).is_err() {
                self.deferred_refused += 1;
            }
            return;
        }
        if let Err(e) = g.node.handle_decoded(now, &frame, used) {
            log::error!("group {group}: fatal: {e}; stopping");
            std::process::exit(1);
        }
    }

    /// Route a client's request: refused at arrival (an unknown protocol version, a node
    /// shutting down, a user without the permission), answered by the node, or handed to its
    /// group.
    pub(super) fn handle_client(&mut self, conn: Rc<clients::Conn>, frame: RequestFrame) {
        let reply = Reply::new(conn, frame.id);
        if let Some(refusal) = self.refused_at_arrival(&frame, &reply) {
            reply.send(refusal);
            return;
        }
        let gid = frame.group;
        match frame.request {
            Request::Authenticate(creds) => self.authenticate(creds, reply),
            Request::Auth(op) => self.auth_op(op, reply),
            Request::GroupList => {
                reply.send(Response::Groups(self.groups.keys().copied().collect()));
            }
            Request::GroupCreate { members } => self.group_create(gid, members, reply),
            Request::GroupCreatePerNode { .. } => {
                reply.send(error(
                    ErrorCode::BadRequest,
                    "groups are no longer created node by node: define the group for the whole cluster with its members' node ids (shoalctl group create 1,2,3)".into(),
                ));
            }
            Request::GroupRemove => self.group_remove(gid, reply),
            Request::Health => {
                reply.send_encoded(self.health_answer());
            }
            Request::NodeStatus => match self.node_status(gid) {
                Ok(encoded) => {
                    reply.send_encoded(&encoded);
                }
                Err(refused) => {
                    reply.send(refused);
                }
            },
            Request::SnapshotSave {
                index,
                offset,
                max_bytes,
            } => {
                reply.send(self.snapshot_save(gid, index, offset, max_bytes));
            }
            request => self.group_request(gid, request, reply),
        }
    }

    /// Why `frame` is refused before it is routed, if it is. A request only a leader takes is
    /// checked by that leader: a follower answers `NotLeader` as it would anyway, even if it
    /// has not yet applied the latest auth change.
    fn refused_at_arrival(&self, frame: &RequestFrame, reply: &Reply) -> Option<Response> {
        if frame.version != PROTOCOL_VERSION {
            return Some(Response::Error {
                code: ErrorCode::UnsupportedVersion,
                kv: None,
                message: format!(
                    "protocol version {} is not supported; this server speaks {}",
                    frame.version, PROTOCOL_VERSION
                ),
            });
        }
        if frame.cluster != ANY_CLUSTER && frame.cluster != self.cfg.cluster_id {
            return Some(error(
                ErrorCode::WrongCluster,
                format!(
                    "this node (node {}) belongs to cluster {}, not to cluster {}: nothing was \
                     done; the address is a stale endpoint or member record of cluster {}",
                    self.cfg.node_id, self.cfg.cluster_id, frame.cluster, frame.cluster
                ),
            ));
        }
        if self.draining {
            return Some(unavailable("shutting down"));
        }
        let leader_of = |g: GroupId| {
            self.groups
                .get(&g)
                .is_some_and(|g| g.node.raft().role() == Role::Leader)
        };
        let redirected = match &frame.request {
            Request::Write { .. } | Request::ChangeMembers(_) => !leader_of(frame.group),
            Request::Auth(op) => !op.is_read() && !leader_of(0),
            Request::GroupCreate { .. } | Request::GroupRemove => !leader_of(0),
            _ => false,
        };
        if redirected {
            return None; // checked by the leader
        }
        let who = reply.conn.principal();
        let Err(r) = self
            .auth
            .check_arrival(who.as_ref(), wall_ms(), &frame.request)
        else {
            return None;
        };
        bump(&self.auth_counts.refusals);
        Some(refusal(r))
    }

    /// A request of group `gid`: a write, a read, a watch, or a change of its members,
    /// leadership or snapshots.
    pub(super) fn group_request(&mut self, gid: GroupId, request: Request, reply: Reply) {
        let now = self.now_ms();
        let node_id = self.cfg.node_id;
        let gate = Gate {
            auth: &self.auth,
            counts: &self.auth_counts,
        };
        self.active.insert(gid);
        let Some(g) = self.groups.get_mut(&gid) else {
            reply.send(unknown_group(gid, node_id));
            return;
        };
        if let Some(frozen) = g.frozen.as_mut() {
            if let Err(Deferred::Client(_, reply)) = frozen.defer(Deferred::Client(request, reply))
            {
                self.deferred_refused += 1;
                reply.send(unavailable(
                    "the group waits for a sync that has not returned (see /health); retry",
                ));
            }
            return;
        }
        match request {
            Request::Write { client_id, seq, op } => write(g, now, client_id, seq, op, reply),
            Request::Get { key, mode } => read(g, now, mode, ReadReq::Get(key), reply, gate),
            Request::BatchGet { keys, mode } => {
                if batch_fits(&reply, "BatchGet", keys.len()) {
                    read(g, now, mode, ReadReq::BatchGet(keys), reply, gate)
                }
            }
            Request::List { key, mode } => read(g, now, mode, ReadReq::List(key), reply, gate),
            Request::Leases { id, mode } => read(g, now, mode, ReadReq::Leases(id), reply, gate),
            Request::Watch { keys, from_index } => start_watch(g, keys, from_index, reply),
            Request::Unwatch { watch_id } => {
                g.watches
                    .retain(|w| !(w.reply.conn.id == reply.conn.id && w.reply.id == watch_id));
                reply.send(Response::Done { index: 0 });
            }
            Request::Status => {
                reply.send(Response::Status(status(g, node_id)));
            }
            Request::MemberList => {
                reply.send(Response::Members(status(g, node_id).members));
            }
            Request::ChangeMembers(change) => {
                // A group other than 0 takes only members of the cluster: their addresses
                // come from group 0's records.
                if let MemberChange::Add { id, .. } = &change {
                    if gid != 0 && !self.sys.members.contains_key(id) {
                        reply.send(error(
                            ErrorCode::Conflict,
                            format!("node {id} is not a member of the cluster (it has no record in group 0); add it to group 0 first"),
                        ));
                        return;
                    }
                }
                member_change(g, now, change, reply)
            }
            Request::TransferLeader { to } => {
                match g.node.transfer_leader(now, to) {
                    Ok(()) => reply.send(Response::Done { index: 0 }),
                    Err(shoal_core::raft::TransferError::NotLeader) => reply.send(not_leader(g)),
                    Err(e) => reply.send(error(ErrorCode::Conflict, e.to_string())),
                };
            }
            Request::Snapshot => {
                reply.send(match take_snapshot(g, now, node_id) {
                    Ok(index) => Response::Done { index },
                    Err(refusal) => refusal,
                });
            }
            Request::AbortMemberChange => member_abort(g, now, reply),
            Request::GroupList
            | Request::GroupCreate { .. }
            | Request::GroupCreatePerNode { .. }
            | Request::GroupRemove
            | Request::Health
            | Request::NodeStatus
            | Request::SnapshotSave { .. }
            | Request::Authenticate(_)
            | Request::Auth(_) => {
                unreachable!("handled by handle_client")
            }
        }
    }
}

/// Start a watch of `keys` from `from_index` (0: from the next index applied), unless its keys
/// pass the limits, no node could have one of them, or its history is gone.
fn start_watch(g: &mut Group, keys: Vec<Vec<u8>>, from_index: LogIndex, reply: Reply) {
    if !batch_fits(&reply, "Watch", keys.len()) {
        return;
    }
    let counted = keys.len().max(1);
    if let Err(refusal) = reply.conn.hub().watch_room(&reply.conn, counted) {
        reply.send(refusal);
        return;
    }
    let kv = g.node.state_machine().store();
    // A key no node can have would make a watch that never fires: refuse it.
    let bad = keys
        .iter()
        .find_map(|k| validate_key(k, kv.limits(), true).err());
    if let Some(e) = bad {
        reply.send(kv_error(e));
        return;
    }
    let applied = g.node.applied();
    let next = if from_index == 0 {
        applied + 1
    } else {
        from_index
    };
    if from_index != 0 && from_index < kv.oldest_event_index() && from_index <= applied {
        reply.send(Response::WatchCompacted {
            oldest: kv.oldest_event_index(),
        });
        return;
    }
    reply.send(Response::WatchStarted);
    g.watches.push(Watch::new(reply, keys, next));
}

/// Whether a request of `keys` keys fits `--client-max-batch-keys`; if not, it is refused.
fn batch_fits(reply: &Reply, what: &str, keys: usize) -> bool {
    let hub = reply.conn.hub();
    let max = hub.limits().max_batch_keys;
    if keys <= max {
        return true;
    }
    hub.hit(Limit::BatchKeys);
    reply.send(over_limit(format!(
        "a {what} of {keys} keys passes the limit of {max} keys per request (shoald --{}); \
         split it",
        Limit::BatchKeys.flag()
    )));
    false
}

pub(super) fn not_leader(g: &Group) -> Response {
    let leader = g.node.raft().leader();
    Response::NotLeader {
        leader,
        leader_addr: if leader == NO_NODE {
            None
        } else {
            g.book.client_addr(leader)
        },
        cluster: g.node.config().cluster_id,
    }
}

/// Propose a client's command `encoded` (its encoding's error answered as `code`): the index,
/// term and reply to keep until it applies, or `None` once the client has its refusal.
pub(super) fn propose_for(
    g: &mut Group,
    now: u64,
    encoded: Result<Vec<u8>, String>,
    code: ErrorCode,
    reply: Reply,
) -> Option<(LogIndex, Term, Reply)> {
    let bytes = match encoded {
        Ok(b) => b,
        Err(e) => {
            reply.send(error(code, e));
            return None;
        }
    };
    match g.node.propose(now, &bytes) {
        Ok((index, term)) => Some((index, term, reply)),
        Err(e) => {
            reply.send(propose_error(g, e));
            None
        }
    }
}

pub(super) fn propose_error(g: &Group, e: ProposeError) -> Response {
    stop_on_fatal(g.id, &e);
    match e {
        ProposeError::NotLeader { .. } => not_leader(g),
        ProposeError::TransferInProgress | ProposeError::Busy => unavailable(&e.to_string()),
        ProposeError::TooLarge => error(ErrorCode::BadRequest, e.to_string()),
        ProposeError::ConfigChangeInProgress | ProposeError::BadMembership(_) => {
            error(ErrorCode::Conflict, e.to_string())
        }
        ProposeError::Storage(s) => storage_refusal(g.node.config().node_id, s)
            .unwrap_or_else(|| error(ErrorCode::Internal, e.to_string())),
    }
}

pub(super) fn status(g: &Group, node_id: NodeId) -> StatusInfo {
    let r = g.node.raft();
    let m = r.membership();
    let leader = r.role() == Role::Leader;
    let mut members = Vec::new();
    let mut push = |id: NodeId, role: &str| {
        if members.iter().any(|x: &MemberInfo| x.id == id) {
            return;
        }
        let match_index = if !leader {
            None
        } else if id == node_id {
            Some(r.last_index())
        } else {
            r.progress()
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.match_index)
        };
        let addr = g.book.map.get(&id);
        members.push(MemberInfo {
            id,
            raft_addr: addr.map(|a| a.raft_addr.clone()).unwrap_or_default(),
            role: role.to_string(),
            match_index,
            client_addr: addr.map(|a| a.client_addr.clone()).unwrap_or_default(),
        });
    };
    let (voters, observers) = if m.joint {
        (&m.next_voters, &m.next_observers)
    } else {
        (&m.voters, &m.observers)
    };
    for &v in voters {
        push(v, "voter");
    }
    for &o in observers {
        push(o, "observer");
    }
    if m.joint {
        for &v in &m.voters {
            push(v, "leaving-voter");
        }
        for &o in &m.observers {
            push(o, "leaving-observer");
        }
    }
    StatusInfo {
        node_id,
        group: g.id,
        role: r.role().name().to_string(),
        term: r.term(),
        leader: r.leader(),
        commit: r.commit(),
        applied: r.applied(),
        last_index: r.last_index(),
        snapshot_index: r.snapshot_index(),
        members,
    }
}
