//! Reads on the raft thread: each mode's wait for its point of linearization (`read`), the
//! permission check at the moment of answering, and the answer built from DtKV within
//! `--client-max-answer-mb`.

use super::super::super::auth::{hide_unreadable_lease_keys, AuthState, Need};
use super::*;
use crate::kvheap::HeapKv;
use shoal_client::protocol::Access;

/// Bytes a node adds to an answer beyond its key and value (its indexes, kind, owner, deadline,
/// fence and count as postcard writes them, at most).
const NODE_INFO_BYTES: usize = 64;

/// A node as the protocol carries it.
pub(in crate::server::raftloop) fn node_info(v: &NodeView<'_>) -> NodeInfo {
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

/// Answer a read from the state machine as it is now, once the user's read permissions pass
/// against the auth state of the same moment; a read whose answer would pass
/// `--client-max-answer-mb` is refused (and counted) rather than built.
pub(in crate::server::raftloop) fn answer_read(
    sm: &KvSm,
    req: &ReadReq,
    reply: &Reply,
    gate: Gate<'_>,
) {
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
        Ok(mut answer) => {
            hide_unreadable_lease_keys(&mut answer, gate.auth, who.as_ref(), wall_ms());
            reply.send(answer)
        }
        Err(message) => {
            hub.hit(Limit::AnswerBytes);
            reply.send(over_limit(message))
        }
    };
}

/// What a read is checked against: the auth state, and the refusal counter.
#[derive(Clone, Copy)]
pub(in crate::server::raftloop) struct Gate<'a> {
    pub(in crate::server::raftloop) auth: &'a AuthState,
    pub(in crate::server::raftloop) counts: &'a AuthCounts,
}

/// Answer a read whose point of linearization has passed, unless its connection holds more
/// unsent answers than its share: then it is parked until its client takes them (answered
/// later from a state at least as new, it is still linearizable). A client pipelining reads it
/// never takes costs the node their requests, not their answers.
pub(in crate::server::raftloop) fn answer_or_park(
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

/// The bytes an answer has collected against `max_answer_bytes`: collecting stops there, so a
/// large read costs at most the limit in copies.
struct AnswerBytes {
    bytes: usize,
    max: usize,
}

impl AnswerBytes {
    /// Count `v`; whether the answer still fits.
    fn fits(&mut self, v: &NodeView<'_>) -> bool {
        self.bytes += v.key.len() + v.value.len() + NODE_INFO_BYTES;
        self.bytes <= self.max
    }

    /// Count one key of a lease's list; whether the answer still fits.
    fn fits_key(&mut self, key: &[u8]) -> bool {
        self.bytes += key.len() + 8;
        self.bytes <= self.max
    }

    /// Why the answer to `what` is refused.
    fn too_large(&self, what: &str) -> String {
        format!(
            "the answer to {what} passes {} bytes, the limit of one answer \
             (shoald --{}); ask for less at a time",
            self.max,
            Limit::AnswerBytes.flag()
        )
    }
}

/// The answer to a read, or why it is over `max_answer_bytes`.
fn serve_read(sm: &KvSm, req: &ReadReq, max_answer_bytes: usize) -> Result<Response, String> {
    let kv = sm.store();
    let index = kv.applied_index_public();
    let mut budget = AnswerBytes {
        bytes: 0,
        max: max_answer_bytes,
    };
    match req {
        ReadReq::Get(key) => Ok(match kv.get(key) {
            Ok(v) => Response::Node {
                index,
                node: Some(node_info(&v)),
            },
            Err(KvError::NotFound) => Response::Node { index, node: None },
            Err(e) => kv_error(e),
        }),
        ReadReq::BatchGet(keys) => batch_get(kv, index, keys, &mut budget),
        ReadReq::List(key) => list(kv, index, key, &mut budget),
        ReadReq::Leases(0) => all_leases(kv, index, &mut budget),
        ReadReq::Leases(id) => one_lease(kv, index, *id, &mut budget),
    }
}

fn batch_get(
    kv: &HeapKv,
    index: LogIndex,
    keys: &[Vec<u8>],
    budget: &mut AnswerBytes,
) -> Result<Response, String> {
    let mut nodes = Vec::with_capacity(keys.len());
    let mut failed = None;
    let mut over = false;
    kv.batch_get(keys.iter().map(|k| k.as_slice()), |_, r| match r {
        _ if over => {}
        Ok(v) if !budget.fits(&v) => {
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
        return Err(budget.too_large(&format!("a BatchGet of {} keys", keys.len())));
    }
    Ok(match failed {
        Some(e) => kv_error(e),
        None => Response::Nodes { index, nodes },
    })
}

fn list(
    kv: &HeapKv,
    index: LogIndex,
    key: &[u8],
    budget: &mut AnswerBytes,
) -> Result<Response, String> {
    let mut children = Vec::new();
    let mut over = false;
    let listed = kv.list(key, |v| {
        if over {
        } else if !budget.fits(&v) {
            over = true;
            children = Vec::new();
        } else {
            children.push(node_info(&v));
        }
    });
    if over {
        return Err(budget.too_large("this List"));
    }
    Ok(match listed {
        Ok(_) => Response::Children { index, children },
        Err(e) => kv_error(e),
    })
}

/// A lease as the protocol carries it, without its keys.
fn lease_info(kv: &HeapKv, v: &NodeView<'_>) -> LeaseInfo {
    LeaseInfo {
        id: v.create_index,
        ttl_ms: v.fence,
        deadline_ms: v.deadline_ms,
        remaining_ms: v.deadline_ms.saturating_sub(kv.now_ms()),
        tied: v.count,
        keys: Vec::new(),
    }
}

fn all_leases(kv: &HeapKv, index: LogIndex, budget: &mut AnswerBytes) -> Result<Response, String> {
    let mut leases = Vec::new();
    let mut over = false;
    kv.leases(|v| {
        over = over || !budget.fits(&v);
        if !over {
            leases.push(lease_info(kv, &v));
        }
    });
    if over {
        return Err(budget.too_large("this lease list"));
    }
    Ok(Response::Leases { index, leases })
}

fn one_lease(
    kv: &HeapKv,
    index: LogIndex,
    id: u64,
    budget: &mut AnswerBytes,
) -> Result<Response, String> {
    let key = shoal_kv::system::lease_key(id);
    let Ok(v) = kv.get(key.as_bytes()) else {
        return Ok(kv_error(KvError::LeaseNotFound));
    };
    let mut lease = lease_info(kv, &v);
    let mut over = false;
    let listed = kv.lease_keys(id, |k| {
        over = over || !budget.fits_key(k);
        if !over {
            lease.keys.push(k.to_vec());
        }
    });
    if over {
        return Err(budget.too_large(&format!("lease {id}'s keys")));
    }
    if let Err(e) = listed {
        return Ok(kv_error(e));
    }
    Ok(Response::Leases {
        index,
        leases: vec![lease],
    })
}

/// `applied_index` through the trait, under a name that does not need the trait in scope.
pub(in crate::server::raftloop) trait AppliedIndex {
    fn applied_index_public(&self) -> LogIndex;
}
impl<M: shoal_kv::KvMemory> AppliedIndex for shoal_kv::DtKv<M> {
    fn applied_index_public(&self) -> LogIndex {
        shoal_core::io::StateMachine::applied_index(self)
    }
}

/// Serve a read in `mode`: at once from the local state, after the leader's lease confirms
/// the applied index, or after a ReadIndex round; a lease read the leader cannot vouch for
/// falls back to ReadIndex.
pub(in crate::server::raftloop) fn read(
    g: &mut Group,
    now: u64,
    mode: ReadMode,
    req: ReadReq,
    reply: Reply,
    gate: Gate<'_>,
) {
    match mode {
        ReadMode::Local => {
            g.reads.local += 1;
            answer_read(g.node.state_machine(), &req, &reply, gate)
        }
        // Behind reads still waiting for a ReadIndex round (a lease read on a quiet leader
        // takes one, and wakes it), a lease read waits too: a connection's answers keep their
        // order.
        ReadMode::Lease if !g.index_reads.is_empty() => {
            read(g, now, ReadMode::Linearizable, req, reply, gate)
        }
        ReadMode::Lease => match g.node.read_lease(now) {
            Ok(index) => {
                g.reads.lease += 1;
                if index <= g.node.applied() {
                    answer_read(g.node.state_machine(), &req, &reply, gate)
                } else {
                    g.lease_reads.push((index, reply, req))
                }
            }
            Err(ReadError::NotLeader { .. }) => {
                reply.send(not_leader(g));
            }
            Err(_) => read(g, now, ReadMode::Linearizable, req, reply, gate),
        },
        ReadMode::Linearizable => match g.node.read_index(now) {
            Ok(ticket) => {
                g.reads.linearizable += 1;
                g.index_reads.push_back((ticket, reply, req))
            }
            Err(ReadError::NoLeader) => {
                reply.send(not_leader(g));
            }
            Err(e) => {
                reply.send(unavailable(&e.to_string()));
            }
        },
    }
}
