//! Client requests on the raft thread: writes, reads in each mode, status, and the answers
//! and errors they turn into.

use super::super::auth::{AuthState, Need};
use super::*;
use shoal_client::protocol::Access;
use shoal_core::wire::Body;
use shoal_kv::validate_key;

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

pub(super) fn node_info(v: &NodeView<'_>) -> NodeInfo {
    NodeInfo {
        key: v.key.to_vec(),
        kind: v.kind,
        value: v.value.to_vec(),
        create_index: v.create_index,
        update_index: v.update_index,
        owner: v.owner,
        deadline_ms: v.deadline_ms,
        fence: v.fence,
        count: v.count,
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

/// The role name used by status and metrics.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
        Role::Observer => "observer",
    }
}

/// Bytes a node adds to an answer beyond its key and value (its indexes, kind, owner, deadline,
/// fence and count as postcard writes them, at most).
const NODE_INFO_BYTES: usize = 64;

/// Answer a read from the state machine as it is now, once the user's read permissions pass
/// against the auth state of the same moment; a read whose answer would pass
/// `--client-max-answer-mb` is refused (and counted) rather than built.
pub(super) fn answer_read(sm: &KvSm, req: &ReadReq, reply: &Reply, gate: Gate<'_>) {
    let who = reply.conn.principal();
    let need = match req {
        ReadReq::Get(key) => Need::Keys(Access::Read, vec![key.as_slice()]),
        ReadReq::BatchGet(keys) => {
            Need::Keys(Access::Read, keys.iter().map(|k| k.as_slice()).collect())
        }
        ReadReq::List(key) => Need::Subtree(key),
        ReadReq::Leases(_) => Need::User,
    };
    if let Err(r) = gate.auth.check_need(who.as_ref(), wall_ms(), need) {
        bump(&gate.counts.refusals);
        reply.send(refusal(r));
        return;
    }
    let hub = reply.conn.hub();
    match serve_read(sm, req, hub.limits().max_answer_bytes) {
        Ok(answer) => reply.send(answer),
        Err(message) => {
            hub.hit(Limit::AnswerBytes);
            reply.send(over_limit(message))
        }
    };
}

/// What a read is checked against: the auth state, and the refusal counter.
#[derive(Clone, Copy)]
pub(super) struct Gate<'a> {
    pub(super) auth: &'a AuthState,
    pub(super) counts: &'a AuthCounts,
}

/// Answer a read whose point of linearization has passed, unless its connection holds more
/// unsent answers than its share: then it is parked until its client takes them (answered
/// later from a state at least as new, it is still linearizable). A client pipelining reads it
/// never takes costs the node their requests, not their answers.
pub(super) fn answer_or_park(
    sm: &KvSm,
    req: ReadReq,
    reply: Reply,
    parked: &mut Vec<(Reply, ReadReq)>,
    gate: Gate<'_>,
) {
    if reply.conn.must_wait() {
        reply.conn.parked(true);
        parked.push((reply, req));
    } else {
        answer_read(sm, &req, &reply, gate);
    }
}

/// The answer to a read, or why it is over `max_answer_bytes`: collecting stops there, so a
/// large read costs at most the limit in copies.
fn serve_read(sm: &KvSm, req: &ReadReq, max_answer_bytes: usize) -> Result<Response, String> {
    let kv = sm.store();
    let index = kv.applied_index_public();
    let mut bytes = 0usize;
    let mut fits = |v: &NodeView<'_>| {
        bytes += v.key.len() + v.value.len() + NODE_INFO_BYTES;
        bytes <= max_answer_bytes
    };
    let too_large = |what: String| {
        format!(
            "the answer to {what} passes {max_answer_bytes} bytes, the limit of one answer \
             (shoald --{}); ask for less at a time",
            Limit::AnswerBytes.flag()
        )
    };
    Ok(match req {
        ReadReq::Get(key) => match kv.get(key) {
            Ok(v) => Response::Node {
                index,
                node: Some(node_info(&v)),
            },
            Err(KvError::NotFound) => Response::Node { index, node: None },
            Err(e) => kv_error(e),
        },
        ReadReq::BatchGet(keys) => {
            let mut nodes = Vec::with_capacity(keys.len());
            let mut failed = None;
            let mut over = false;
            kv.batch_get(keys.iter().map(|k| k.as_slice()), |_, r| match r {
                _ if over => {}
                Ok(v) if !fits(&v) => {
                    over = true;
                    nodes = Vec::new();
                }
                Ok(v) => nodes.push(Some(node_info(&v))),
                Err(KvError::NotFound) => nodes.push(None),
                Err(e) => {
                    failed.get_or_insert(e);
                    nodes.push(None)
                }
            });
            if over {
                return Err(too_large(format!("a BatchGet of {} keys", keys.len())));
            }
            match failed {
                Some(e) => kv_error(e),
                None => Response::Nodes { index, nodes },
            }
        }
        ReadReq::List(key) => {
            let mut children = Vec::new();
            let mut over = false;
            let listed = kv.list(key, |v| {
                if over {
                } else if !fits(&v) {
                    over = true;
                    children = Vec::new();
                } else {
                    children.push(node_info(&v));
                }
            });
            if over {
                return Err(too_large("this List".into()));
            }
            match listed {
                Ok(_) => Response::Children { index, children },
                Err(e) => kv_error(e),
            }
        }
        ReadReq::Leases(id) => {
            let info = |v: &NodeView<'_>| LeaseInfo {
                id: v.create_index,
                ttl_ms: v.fence,
                deadline_ms: v.deadline_ms,
                remaining_ms: v.deadline_ms.saturating_sub(kv.now_ms()),
                tied: v.count,
                keys: Vec::new(),
            };
            let mut leases = Vec::new();
            if *id == 0 {
                let mut over = false;
                kv.leases(|v| {
                    over = over || !fits(&v);
                    if !over {
                        leases.push(info(&v));
                    }
                });
                if over {
                    return Err(too_large("this lease list".into()));
                }
            } else {
                let key = shoal_kv::system::lease_key(*id);
                let Ok(v) = kv.get(key.as_bytes()) else {
                    return Ok(kv_error(KvError::LeaseNotFound));
                };
                let mut lease = info(&v);
                let mut over = false;
                let listed = kv.lease_keys(*id, |k| {
                    bytes += k.len() + 8;
                    over = over || bytes > max_answer_bytes;
                    if !over {
                        lease.keys.push(k.to_vec());
                    }
                });
                if over {
                    return Err(too_large(format!("lease {id}'s keys")));
                }
                if let Err(e) = listed {
                    return Ok(kv_error(e));
                }
                leases.push(lease);
            }
            Response::Leases { index, leases }
        }
    })
}

/// `applied_index` through the trait, under a name that does not need the trait in scope.
pub(super) trait AppliedIndex {
    fn applied_index_public(&self) -> LogIndex;
}
impl<M: shoal_kv::KvMemory> AppliedIndex for shoal_kv::DtKv<M> {
    fn applied_index_public(&self) -> LogIndex {
        shoal_core::io::StateMachine::applied_index(self)
    }
}

impl RaftLoop {
    // ----- inputs --------------------------------------------------------------------------------

    /// A background fdatasync finished: the group's leader may count its own log now.
    pub(super) fn sync_done(&mut self, done: SyncDone) {
        let SyncDone { job, result } = done;
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
        let g = self.groups.get_mut(&group).expect("hosted or joined above");
        if let Err(e) = g.node.handle_decoded(now, &frame, used) {
            log::error!("group {group}: fatal: {e}; stopping");
            std::process::exit(1);
        }
    }

    pub(super) fn handle_client(&mut self, conn: Rc<clients::Conn>, frame: RequestFrame) {
        let reply = Reply::new(conn, frame.id);
        if frame.version != PROTOCOL_VERSION {
            reply.send(Response::Error {
                code: ErrorCode::UnsupportedVersion,
                kv: None,
                message: format!(
                    "protocol version {} is not supported; this server speaks {}",
                    frame.version, PROTOCOL_VERSION
                ),
            });
            return;
        }
        if self.draining {
            reply.send(unavailable("shutting down"));
            return;
        }
        // A request only a leader takes is checked by that leader: a follower answers
        // `NotLeader` as it would anyway, even if it has not yet applied the latest auth change.
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
        let who = reply.conn.principal();
        if redirected {
            // Checked by the leader.
        } else if let Err(r) = self
            .auth
            .check_arrival(who.as_ref(), wall_ms(), &frame.request)
        {
            bump(&self.auth_counts.refusals);
            reply.send(refusal(r));
            return;
        }
        let gid = frame.group;
        match frame.request {
            Request::Authenticate(creds) => {
                self.authenticate(creds, reply);
                return;
            }
            Request::Auth(op) => {
                self.auth_op(op, reply);
                return;
            }
            Request::GroupList => {
                reply.send(Response::Groups(self.groups.keys().copied().collect()));
                return;
            }
            Request::GroupCreate { members } => {
                self.group_create(gid, members, reply);
                return;
            }
            Request::GroupCreatePerNode { .. } => {
                reply.send(error(
                    ErrorCode::BadRequest,
                    "groups are no longer created node by node: define the group for the whole cluster with its members' node ids (shoalctl group create 1,2,3)".into(),
                ));
                return;
            }
            Request::GroupRemove => {
                self.group_remove(gid, reply);
                return;
            }
            Request::Health => {
                reply.send(Response::Health(self.health()));
                return;
            }
            Request::NodeStatus => {
                reply.send(self.node_status(gid));
                return;
            }
            Request::SnapshotSave {
                index,
                offset,
                max_bytes,
            } => {
                reply.send(self.snapshot_save(gid, index, offset, max_bytes));
                return;
            }
            _ => {}
        }
        let now = self.now_ms();
        let node_id = self.cfg.node_id;
        let gate = Gate {
            auth: &self.auth,
            counts: &self.auth_counts,
        };
        let Some(g) = self.groups.get_mut(&gid) else {
            reply.send(unknown_group(gid, node_id));
            return;
        };
        match frame.request {
            Request::Write { client_id, seq, op } => write(g, now, client_id, seq, op, reply),
            Request::Get { key, mode } => read(g, now, mode, ReadReq::Get(key), reply, gate),
            Request::BatchGet { keys, mode } => {
                if batch_fits(&reply, "BatchGet", keys.len()) {
                    read(g, now, mode, ReadReq::BatchGet(keys), reply, gate)
                }
            }
            Request::List { key, mode } => read(g, now, mode, ReadReq::List(key), reply, gate),
            Request::Leases { id, mode } => read(g, now, mode, ReadReq::Leases(id), reply, gate),
            Request::Watch { keys, from_index } => {
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
                if from_index != 0 && from_index < kv.oldest_event_index() && from_index <= applied
                {
                    reply.send(Response::WatchCompacted {
                        oldest: kv.oldest_event_index(),
                    });
                    return;
                }
                reply.send(Response::WatchStarted);
                g.watches.push(Watch::new(reply, keys, next));
            }
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
                unreachable!("handled above")
            }
        }
    }
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

pub(super) fn encode_command(cmd: &Command<'_>, hint: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; hint + 256];
    let n = cmd
        .encode(&mut buf)
        .map_err(|e| format!("the write does not encode: {e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

pub(super) fn write(g: &mut Group, now: u64, client_id: u64, seq: u64, op: WriteOp, reply: Reply) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    let forced = match &op {
        WriteOp::ForceRemove { key } => Some(("remove", key)),
        WriteOp::ForceUnlock { key } => Some(("release the lock", key)),
        _ => None,
    };
    if let Some((what, key)) = forced {
        let what = format!(
            "group {}: {what} `{}` whoever owns it (session {client_id})",
            g.id,
            String::from_utf8_lossy(key)
        );
        if let Err(refusal) = admin_allowed(&reply.conn, &what) {
            reply.send(refusal);
            return;
        }
    }
    let time_ms = wall_ms();
    let pairs_owned: Vec<(&[u8], &[u8])>;
    let keys_owned: Vec<&[u8]>;
    let txn_owned: (Vec<Compare<'_>>, Vec<TxnOp<'_>>, Vec<TxnOp<'_>>);
    let mut hint = 64;
    let op = match &op {
        WriteOp::Put { key, value } => {
            hint += key.len() + value.len();
            Op::Put { key, value }
        }
        WriteOp::Remove { key } => Op::Remove { key },
        WriteOp::Mkdir { key } => Op::Mkdir { key },
        WriteOp::BatchPut { pairs } => {
            pairs_owned = pairs
                .iter()
                .map(|(k, v)| {
                    hint += k.len() + v.len() + 12;
                    (k.as_slice(), v.as_slice())
                })
                .collect();
            Op::BatchPut(Pairs::new(&pairs_owned))
        }
        WriteOp::BatchRemove { keys } => {
            keys_owned = keys
                .iter()
                .map(|k| {
                    hint += k.len() + 6;
                    k.as_slice()
                })
                .collect();
            Op::BatchRemove(Keys::new(&keys_owned))
        }
        WriteOp::CompareAndSet { key, expect, value } => {
            hint += key.len() + value.len() + expect.as_ref().map_or(0, |e| e.len());
            Op::CompareAndSet {
                key,
                expect: expect.as_deref(),
                value,
            }
        }
        WriteOp::PutTemp { key, value, ttl_ms } => {
            hint += key.len() + value.len();
            Op::PutTemp {
                key,
                value,
                ttl_ms: *ttl_ms,
            }
        }
        WriteOp::MakeTempDir { key, ttl_ms } => Op::MakeTempDir {
            key,
            ttl_ms: *ttl_ms,
        },
        WriteOp::UpdateTtl { key, ttl_ms } => Op::UpdateTtl {
            key,
            ttl_ms: *ttl_ms,
        },
        WriteOp::TryLock {
            key,
            lease_ms,
            wait_ms,
        } => Op::TryLock {
            key,
            lease_ms: *lease_ms,
            wait_ms: *wait_ms,
        },
        WriteOp::Unlock { key } => Op::Unlock { key },
        WriteOp::ForceRemove { key } => Op::ForceRemove { key },
        WriteOp::ForceUnlock { key } => Op::ForceUnlock { key },
        WriteOp::UpdateLockLease { key, lease_ms } => Op::UpdateLockLease {
            key,
            lease_ms: *lease_ms,
        },
        WriteOp::LeaseGrant { ttl_ms } => Op::LeaseGrant { ttl_ms: *ttl_ms },
        WriteOp::LeaseKeepAlive { id } => Op::LeaseKeepAlive { id: *id },
        WriteOp::LeaseRevoke { id } => Op::LeaseRevoke { id: *id },
        WriteOp::PutTempLease { key, value, lease } => {
            hint += key.len() + value.len();
            Op::PutTempLease {
                key,
                value,
                lease: *lease,
            }
        }
        WriteOp::MakeTempDirLease { key, lease } => Op::MakeTempDirLease { key, lease: *lease },
        WriteOp::TryLockLease { key, lease } => Op::TryLockLease { key, lease: *lease },
        WriteOp::Txn {
            compares,
            success,
            failure,
        } => {
            hint += compares
                .iter()
                .map(|c| match c {
                    TxnCompare::Value { key, value } => key.len() + value.len() + 8,
                    _ => 24,
                })
                .sum::<usize>();
            hint += success
                .iter()
                .chain(failure)
                .map(|w| w.payload_len() + 24)
                .sum::<usize>();
            txn_owned = (
                compares.iter().map(TxnCompare::as_kv).collect(),
                success.iter().map(TxnWrite::as_kv).collect(),
                failure.iter().map(TxnWrite::as_kv).collect(),
            );
            Op::Txn(Txn {
                compares: Batch::new(&txn_owned.0),
                success: Batch::new(&txn_owned.1),
                failure: Batch::new(&txn_owned.2),
            })
        }
    };
    // A write DtKV would refuse whatever the state is refused here, before it takes a log
    // entry, with the error applying it would give.
    let limits = g.node.state_machine().store().limits();
    if let Err(refusal) = check_write(&op, client_id, limits) {
        g.writes_refused += 1;
        reply.send(refused(refusal, limits));
        return;
    }
    let cmd = Command {
        client_id,
        seq,
        time_ms,
        op,
    };
    let bytes = match encode_command(&cmd, hint) {
        Ok(b) => b,
        Err(e) => {
            reply.send(error(ErrorCode::BadRequest, e));
            return;
        }
    };
    match g.node.propose(now, &bytes) {
        Ok((index, term)) => {
            g.proposals += 1;
            g.pending_writes.insert(index, (term, reply));
        }
        Err(e) => {
            reply.send(propose_error(g, e));
        }
    }
}

pub(super) fn read(
    g: &mut Group,
    now: u64,
    mode: ReadMode,
    req: ReadReq,
    reply: Reply,
    gate: Gate<'_>,
) {
    match mode {
        ReadMode::Local => answer_read(g.node.state_machine(), &req, &reply, gate),
        ReadMode::Lease => match g.node.read_lease(now) {
            Ok(index) if index <= g.node.applied() => {
                answer_read(g.node.state_machine(), &req, &reply, gate)
            }
            Ok(index) => g.lease_reads.push((index, reply, req)),
            Err(ReadError::NotLeader { .. }) => {
                reply.send(not_leader(g));
            }
            Err(_) => read(g, now, ReadMode::Linearizable, req, reply, gate),
        },
        ReadMode::Linearizable => match g.node.read_index(now) {
            Ok(ticket) => g.index_reads.push_back((ticket, reply, req)),
            Err(ReadError::NoLeader) => {
                reply.send(not_leader(g));
            }
            Err(e) => {
                reply.send(unavailable(&e.to_string()));
            }
        },
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
        role: role_name(r.role()).to_string(),
        term: r.term(),
        leader: r.leader(),
        commit: r.commit(),
        applied: r.applied(),
        last_index: r.last_index(),
        snapshot_index: r.snapshot_index(),
        members,
    }
}
