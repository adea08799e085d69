//! Writes on the raft thread: a client's write turned into DtKV's log command, refused early
//! when DtKV would refuse it whatever the state, and proposed; its answer waits for the apply.

use super::*;

/// A DtKV command in log bytes, in a buffer of `hint` bytes plus room for the framing.
pub(in crate::server::raftloop) fn encode_command(
    cmd: &Command<'_>,
    hint: usize,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; hint + 256];
    let n = cmd
        .encode(&mut buf)
        .map_err(|e| format!("the write does not encode: {e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

/// Propose a client's write on its group's leader; the answer is sent when it applies (or at
/// once, when it is refused).
pub(in crate::server::raftloop) fn write(
    g: &mut Group,
    now: u64,
    client_id: u64,
    seq: u64,
    op: WriteOp,
    reply: Reply,
) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    if let Err(refusal) = forced_allowed(g.id, client_id, &op, &reply) {
        reply.send(refusal);
        return;
    }
    let time_ms = wall_ms();
    let hint = encoded_size_hint(&op);
    let mut lists = Lists::default();
    let op = kv_op(&op, &mut lists);
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
    let encoded = encode_command(&cmd, hint);
    if let Some((index, term, reply)) = propose_for(g, now, encoded, ErrorCode::BadRequest, reply) {
        g.proposals += 1;
        g.pending_writes
            .push(index, term, reply, answer_overwritten);
    }
}

/// A removal or unlock whoever owns the node is an operator's override: only an admin may.
fn forced_allowed(
    group: GroupId,
    client_id: u64,
    op: &WriteOp,
    reply: &Reply,
) -> Result<(), Response> {
    let (what, key) = match op {
        WriteOp::ForceRemove { key } => ("remove", key),
        WriteOp::ForceUnlock { key } => ("release the lock", key),
        _ => return Ok(()),
    };
    let what = format!(
        "group {group}: {what} `{}` whoever owns it (session {client_id})",
        String::from_utf8_lossy(key)
    );
    admin_allowed(&reply.conn, &what)
}

/// Bytes the encoded command of `op` is expected to take beyond the framing.
fn encoded_size_hint(op: &WriteOp) -> usize {
    64 + match op {
        WriteOp::Put { key, value }
        | WriteOp::PutTemp { key, value, .. }
        | WriteOp::PutTempLease { key, value, .. } => key.len() + value.len(),
        WriteOp::BatchPut { pairs } => pairs.iter().map(|(k, v)| k.len() + v.len() + 12).sum(),
        WriteOp::BatchRemove { keys } => keys.iter().map(|k| k.len() + 6).sum(),
        WriteOp::CompareAndSet { key, expect, value } => {
            key.len() + value.len() + expect.as_ref().map_or(0, |e| e.len())
        }
        WriteOp::Txn {
            compares,
            success,
            failure,
        } => {
            let compares: usize = compares
                .iter()
                .map(|c| match c {
                    TxnCompare::Value { key, value } => key.len() + value.len() + 8,
                    _ => 24,
                })
                .sum();
            let writes: usize = success
                .iter()
                .chain(failure)
                .map(|w| w.payload_len() + 24)
                .sum();
            compares + writes
        }
        _ => 0,
    }
}

/// The borrowed lists a batch or transaction's DtKV operation points into.
#[derive(Default)]
struct Lists<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
    keys: Vec<&'a [u8]>,
    compares: Vec<Compare<'a>>,
    success: Vec<TxnOp<'a>>,
    failure: Vec<TxnOp<'a>>,
}

/// The DtKV operation of a client's write, borrowing its bytes (and, for batches and
/// transactions, `lists` built from them).
fn kv_op<'a>(op: &'a WriteOp, lists: &'a mut Lists<'a>) -> Op<'a> {
    match op {
        WriteOp::Put { key, value } => Op::Put { key, value },
        WriteOp::Remove { key } => Op::Remove { key },
        WriteOp::Mkdir { key } => Op::Mkdir { key },
        WriteOp::BatchPut { pairs } => {
            lists.pairs = pairs
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            Op::BatchPut(Pairs::new(&lists.pairs))
        }
        WriteOp::BatchRemove { keys } => {
            lists.keys = keys.iter().map(|k| k.as_slice()).collect();
            Op::BatchRemove(Keys::new(&lists.keys))
        }
        WriteOp::CompareAndSet { key, expect, value } => Op::CompareAndSet {
            key,
            expect: expect.as_deref(),
            value,
        },
        WriteOp::PutTemp { key, value, ttl_ms } => Op::PutTemp {
            key,
            value,
            ttl_ms: *ttl_ms,
        },
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
        WriteOp::PutTempLease { key, value, lease } => Op::PutTempLease {
            key,
            value,
            lease: *lease,
        },
        WriteOp::MakeTempDirLease { key, lease } => Op::MakeTempDirLease { key, lease: *lease },
        WriteOp::TryLockLease { key, lease } => Op::TryLockLease { key, lease: *lease },
        WriteOp::Txn {
            compares,
            success,
            failure,
        } => {
            lists.compares = compares.iter().map(TxnCompare::as_kv).collect();
            lists.success = success.iter().map(TxnWrite::as_kv).collect();
            lists.failure = failure.iter().map(TxnWrite::as_kv).collect();
            Op::Txn(Txn {
                compares: Batch::new(&lists.compares),
                success: Batch::new(&lists.success),
                failure: Batch::new(&lists.failure),
            })
        }
    }
}
