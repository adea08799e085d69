//! The DtKV workload for the simulator: several clients with exactly-once sessions issue random
//! DtKV operations on a small key set, through leader changes and every injected fault.
//!
//! Values of `k0`..`k2` are checked for linearizability per key (put, get, remove,
//! compare-and-set). `x0` and `x1` are written only by transactions and read together, and are
//! checked as one object, so a replica that applies part of a transaction is caught. Directories, temporary nodes and locks run alongside as extra load; locks
//! are checked for safety on every replica (a lock changes hands only with a larger fencing
//! token), and replicas' digests are compared after convergence.

use crate::cluster::{ClientRequest, Workload};
use crate::linearizability::{KvKey, KvOp, KvRet, TxnCond};
use crate::sim::invariants::hash_bytes;
use shoal_core::io::{SnapshotError, SnapshotReader, StateMachine};
use shoal_core::rng::Rng;
use shoal_core::{LogIndex, NodeId, Term};
use shoal_kv::{
    Applied, Batch, Command, Compare, DtKv, KvError, KvLimits, KvMemory, NodeKind, Op, Txn, TxnOp,
    WriteResult,
};
use shoal_std::kvheap::{HeapKv, KvHeap};
use std::cell::{Cell, RefCell};

/// DtKV limits for the simulator's small key set (TTLs up to a minute).
const SIM_KV_LIMITS: KvLimits = KvLimits {
    max_nodes: 128,
    arena_bytes: 16384,
    max_sessions: 32,
    max_waiters: 32,
    event_slots: 256,
    event_bytes: 8192,
    max_ttl_ms: 60_000,
    ..KvLimits::embedded()
};

/// A DtKV replica that owns its buffers.
pub struct KvSm {
    kv: HeapKv,
    last_expire_ms: Cell<u64>,
    lock_state: RefCell<(u64, u64)>,
    lock_violation: RefCell<Option<String>>,
    watcher: RefCell<Watcher>,
}

/// A watch on the whole tree, polled after every batch: it must see every change, in order.
#[derive(Default)]
struct Watcher {
    /// The next index to ask for.
    next_from: u64,
    /// Index from which `seen` is complete (after the latest "compacted" answer).
    complete_from: u64,
    /// Every event seen since `complete_from`: index and a hash of kind, key and value.
    seen: Vec<(u64, u64)>,
    violation: Option<String>,
}

impl Watcher {
    fn poll(&mut self, kv: &DtKv<impl KvMemory>) {
        let mut batch = Vec::new();
        let res = kv.events_since(self.next_from, b"", |e| {
            let mut bytes = vec![e.kind as u8];
            bytes.extend_from_slice(e.key);
            bytes.push(0xFF);
            bytes.extend_from_slice(e.value);
            batch.push((e.index, hash_bytes(&bytes)));
        });
        if let Err(shoal_kv::WatchError::Compacted { oldest_available }) = res {
            // Told to re-read: the stream restarts complete from the oldest kept event.
            self.seen.clear();
            self.complete_from = oldest_available;
            self.next_from = oldest_available;
            return self.poll(kv);
        }
        for (index, h) in batch {
            if let Some(&(last, _)) = self.seen.last() {
                if index < last {
                    self.violation = Some(format!("watch saw index {index} after index {last}"));
                }
            }
            if index < self.next_from {
                self.violation = Some(format!(
                    "watch from {} returned older index {index}",
                    self.next_from
                ));
            }
            self.seen.push((index, h));
        }
        if let Some(&(last, _)) = self.seen.last() {
            self.next_from = self.next_from.max(last + 1);
        }
    }
}

impl KvSm {
    fn new() -> KvSm {
        KvSm {
            kv: KvHeap::store(SIM_KV_LIMITS).expect("the simulator's DtKV limits are valid"),
            last_expire_ms: Cell::new(0),
            lock_state: RefCell::new((0, 0)),
            lock_violation: RefCell::new(None),
            watcher: RefCell::new(Watcher::default()),
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &HeapKv {
        &self.kv
    }

    /// Lock safety on this replica: the lock changes hands only with a larger fencing token.
    fn check_lock(&self, index: LogIndex) {
        let (owner, fence) = match self.kv.get(LOCK) {
            Ok(v) if v.kind == NodeKind::Lock => (v.owner, v.fence),
            _ => (0, 0),
        };
        let mut last = self.lock_state.borrow_mut();
        let (last_owner, last_fence) = *last;
        if owner != 0 && fence != 0 {
            if fence < last_fence {
                *self.lock_violation.borrow_mut() = Some(format!(
                    "lock fencing token went back from {last_fence} to {fence} at index {index}"
                ));
            } else if fence == last_fence && owner != last_owner && last_owner != 0 {
                *self.lock_violation.borrow_mut() = Some(format!(
                    "lock passed from client {last_owner} to {owner} under one fencing token {fence} at index {index}"
                ));
            }
        }
        if owner != 0 {
            *last = (owner, fence.max(last_fence));
        } else {
            *last = (0, last_fence);
        }
    }
}

impl StateMachine for KvSm {
    type Output = Applied;
    fn apply(&mut self, index: LogIndex, term: Term, command: &[u8]) -> Applied {
        let out = self.kv.apply(index, term, command);
        self.check_lock(index);
        if let WriteResult::Lease { id, .. } = out.result {
            LEASE_IDS.with(|ids| {
                let mut ids = ids.borrow_mut();
                if !ids.contains(&id) {
                    ids.push(id);
                    if ids.len() > 4 {
                        ids.remove(0);
                    }
                }
            });
        }
        out
    }
    shoal_core::forward_state_machine!(kv: skip, applied_index, snapshot, on_leadership);
    fn restore(
        &mut self,
        index: LogIndex,
        src: &mut dyn SnapshotReader,
    ) -> Result<(), SnapshotError> {
        let r = self.kv.restore(index, src);
        // A restored replica learns the lock's state afresh (tokens still may not go back).
        let last_fence = self.lock_state.borrow().1;
        *self.lock_state.borrow_mut() = (0, last_fence);
        self.check_lock(index);
        r
    }
}

const KEYS: [&[u8]; 3] = [b"k0", b"k1", b"k2"];
/// The keys transactions write together; checked as one object with key number `TXN_OBJECT`.
const TXN_KEYS: [&[u8]; 2] = [b"x0", b"x1"];
const TXN_OBJECT: u8 = KEYS.len() as u8;
const LOCK: &[u8] = b"lk";

thread_local! {
    /// The last lease ids granted in this simulation (a run is one thread, so it replays
    /// alike), for clients to tie nodes and locks to, as a client would from its grant's
    /// answer. Emptied when a run builds its replicas.
    static LEASE_IDS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A lease id some client was granted lately (or one that never was).
fn some_lease(rng: &mut Rng) -> u64 {
    LEASE_IDS.with(|ids| {
        let ids = ids.borrow();
        if ids.is_empty() || rng.chance(1, 8) {
            rng.range(1, 1000)
        } else {
            ids[rng.range(0, ids.len() as u64) as usize]
        }
    })
}

/// A random transaction over `TXN_KEYS`: the operation for the history, and its command as
/// `encode` makes it.
fn txn_request(
    rng: &mut Rng,
    client: u64,
    seq: u64,
    value: &[u8],
    encode: impl FnOnce(Op<'_>) -> Vec<u8>,
) -> (Vec<u8>, KvOp) {
    // The compares expect values recent writers may have left (or existence, or absence).
    let mut compares = Vec::new();
    for _ in 0..rng.range(0, 3) {
        let k = rng.range(0, 2) as usize;
        let cond = match rng.range(0, 4) {
            0 => TxnCond::Exists,
            1 => TxnCond::Absent,
            _ => TxnCond::Value(value_for(
                rng.range(0, 4),
                rng.range(seq.saturating_sub(20), seq + 1),
            )),
        };
        compares.push((k, cond));
    }
    // Mostly puts of both keys, so a half-applied branch shows; sometimes removes, which abort
    // the branch when the key is missing.
    let branch = |rng: &mut Rng, min: u64| {
        (0..rng.range(min, 4))
            .map(|i| {
                let k = ((client + i) % 2) as usize;
                let write = (!rng.chance(1, 5)).then(|| value.to_vec());
                (k, write)
            })
            .collect::<Vec<_>>()
    };
    let success = branch(rng, 2);
    let failure = branch(rng, 0);
    let kv_compares: Vec<Compare<'_>> = compares
        .iter()
        .map(|(k, c)| {
            let key = TXN_KEYS[*k];
            match c {
                TxnCond::Value(v) => Compare::Value { key, value: v },
                TxnCond::Exists => Compare::Exists { key },
                TxnCond::Absent => Compare::Absent { key },
            }
        })
        .collect();
    fn ops(writes: &[(usize, Option<Vec<u8>>)]) -> Vec<TxnOp<'_>> {
        writes
            .iter()
            .map(|(k, w)| match w {
                Some(v) => TxnOp::Put {
                    key: TXN_KEYS[*k],
                    value: v,
                },
                None => TxnOp::Remove { key: TXN_KEYS[*k] },
            })
            .collect()
    }
    let (on_success, on_failure) = (ops(&success), ops(&failure));
    let command = encode(Op::Txn(Txn {
        compares: Batch::new(&kv_compares),
        success: Batch::new(&on_success),
        failure: Batch::new(&on_failure),
    }));
    let op = KvOp::Txn {
        compares,
        success,
        failure,
    };
    (command, op)
}

/// DtKV operations from clients with sessions.
pub struct KvWorkload;

fn encode(cmd: &Command<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let n = cmd.encode(&mut buf).expect("simulator commands fit 1 KiB");
    buf.truncate(n);
    buf
}

fn value_for(client: u64, seq: u64) -> Vec<u8> {
    format!("c{client}s{seq}").into_bytes()
}

impl Workload for KvWorkload {
    type Sm = KvSm;
    type Key = u8;
    type Model = KvKey;

    fn new_sm(&self) -> KvSm {
        LEASE_IDS.with(|ids| ids.borrow_mut().clear());
        KvSm::new()
    }

    fn retries(&self) -> bool {
        true
    }

    fn next_request(
        &self,
        rng: &mut Rng,
        client: u64,
        seq: u64,
        now_ms: u64,
    ) -> (u8, ClientRequest<KvOp>) {
        let k = rng.range(0, KEYS.len() as u64 + 1) as u8;
        let key = KEYS[(k % TXN_OBJECT) as usize];
        let client_id = client + 1;
        let cmd = |op: Op<'_>| {
            encode(&Command {
                client_id,
                seq,
                time_ms: now_ms,
                op,
            })
        };
        let value = value_for(client, seq);
        if k == TXN_OBJECT {
            // The transaction object: transactions and reads of both keys at one index.
            let req = match rng.range(0, 3) {
                0 => ClientRequest::Read {
                    op: KvOp::ReadAll,
                    lease: rng.chance(1, 2),
                },
                _ => {
                    let (command, op) = txn_request(rng, client, seq, &value, cmd);
                    ClientRequest::Write { command, op }
                }
            };
            return (k, req);
        }
        let req = match rng.range(0, 20) {
            0..=4 => ClientRequest::Write {
                command: cmd(Op::Put { key, value: &value }),
                op: KvOp::Put(value.clone()),
            },
            5..=6 => ClientRequest::Write {
                command: cmd(Op::Remove { key }),
                op: KvOp::Remove,
            },
            7..=9 => {
                // Expect a value some client may have written, or absence.
                let expect = if rng.chance(1, 4) {
                    None
                } else {
                    Some(value_for(
                        rng.range(0, 4),
                        rng.range(seq.saturating_sub(40), seq + 1),
                    ))
                };
                let command = cmd(Op::CompareAndSet {
                    key,
                    expect: expect.as_deref(),
                    value: &value,
                });
                ClientRequest::Write {
                    command,
                    op: KvOp::Cas {
                        expect,
                        new: Some(value.clone()),
                    },
                }
            }
            10..=11 => ClientRequest::Read {
                op: KvOp::Get,
                lease: true,
            },
            12..=13 => ClientRequest::Read {
                op: KvOp::Get,
                lease: false,
            },
            14 => ClientRequest::Untracked {
                command: cmd(Op::Mkdir { key: b"d" }),
            },
            15 => {
                let k = format!("d.c{client}");
                ClientRequest::Untracked {
                    command: cmd(Op::Put {
                        key: k.as_bytes(),
                        value: &value,
                    }),
                }
            }
            16 => {
                let k = format!("t{client}");
                let ttl_ms = rng.range(50, 1500);
                let lease = some_lease(rng);
                let op = match rng.range(0, 7) {
                    0 | 1 => Op::PutTemp {
                        key: k.as_bytes(),
                        value: &value,
                        ttl_ms,
                    },
                    2 => Op::LeaseGrant { ttl_ms },
                    3 => Op::PutTempLease {
                        key: k.as_bytes(),
                        value: &value,
                        lease,
                    },
                    4 => Op::TryLockLease { key: LOCK, lease },
                    5 => Op::LeaseKeepAlive { id: lease },
                    _ => Op::LeaseRevoke { id: lease },
                };
                ClientRequest::Untracked { command: cmd(op) }
            }
            17 => {
                let lease_ms = rng.range(100, 1000);
                let wait_ms = if rng.chance(1, 2) {
                    0
                } else {
                    rng.range(50, 800)
                };
                ClientRequest::Untracked {
                    command: cmd(Op::TryLock {
                        key: LOCK,
                        lease_ms,
                        wait_ms,
                    }),
                }
            }
            18 => ClientRequest::Untracked {
                command: cmd(Op::Unlock { key: LOCK }),
            },
            _ => ClientRequest::Untracked {
                command: cmd(Op::UpdateLockLease {
                    key: LOCK,
                    lease_ms: 500,
                }),
            },
        };
        (k, req)
    }

    fn write_result(&self, op: &KvOp, out: &Applied) -> Option<KvRet> {
        match (op, &out.result) {
            (KvOp::Put(_), WriteResult::Done) => Some(KvRet::Done),
            (KvOp::Remove, WriteResult::Done) => Some(KvRet::Removed(true)),
            (KvOp::Remove, WriteResult::Failed(KvError::NotFound)) => Some(KvRet::Removed(false)),
            (KvOp::Cas { .. }, WriteResult::Done) => Some(KvRet::Swapped(true)),
            (KvOp::Cas { .. }, WriteResult::Failed(KvError::CasMismatch)) => {
                Some(KvRet::Swapped(false))
            }
            (KvOp::Txn { .. }, WriteResult::Txn { succeeded, .. }) => Some(KvRet::Txn {
                succeeded: *succeeded,
                aborted: false,
            }),
            (KvOp::Txn { .. }, WriteResult::TxnAborted { succeeded, .. }) => Some(KvRet::Txn {
                succeeded: *succeeded,
                aborted: true,
            }),
            // Anything else is an answer the model cannot explain: report it as such.
            (_, other) => Some(KvRet::Value(Some(
                format!("unexpected answer {other:?}").into_bytes(),
            ))),
        }
    }

    fn read(&self, sm: &KvSm, key: &u8, _op: &KvOp) -> KvRet {
        let value = |k: &[u8]| sm.store().get(k).ok().map(|v| v.value.to_vec());
        if *key == TXN_OBJECT {
            // One replica state: both keys as of the same applied index.
            return KvRet::Values(TXN_KEYS.iter().map(|k| value(k)).collect());
        }
        KvRet::Value(value(KEYS[*key as usize]))
    }

    fn final_read(&self, key: &u8) -> KvOp {
        if *key == TXN_OBJECT {
            KvOp::ReadAll
        } else {
            KvOp::Get
        }
    }

    fn keys(&self) -> Vec<u8> {
        (0..=TXN_OBJECT).collect()
    }

    fn init(&self, key: &u8) -> KvKey {
        if *key == TXN_OBJECT {
            KvKey::object(TXN_KEYS.len())
        } else {
            KvKey::default()
        }
    }

    fn digest(&self, sm: &KvSm) -> u64 {
        sm.store().digest()
    }

    fn housekeeping(&self, sm: &KvSm, now_ms: u64) -> Option<Vec<u8>> {
        // Expiry is decided by the leader and committed; propose it at most every 50 ms.
        if sm.store().expired_at(now_ms) && now_ms >= sm.last_expire_ms.get() + 50 {
            sm.last_expire_ms.set(now_ms);
            return Some(encode(&Command::expire(now_ms)));
        }
        None
    }

    fn check(&self, sm: &KvSm) -> Result<(), String> {
        if let Some(v) = sm.lock_violation.borrow().clone() {
            return Err(v);
        }
        let mut w = sm.watcher.borrow_mut();
        w.poll(sm.store());
        match w.violation.clone() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    fn converged(&self, replicas: &[(NodeId, &KvSm)]) -> Result<(), String> {
        // Watch streams of converged replicas agree event for event wherever both are complete.
        let streams: Vec<(NodeId, std::cell::Ref<'_, Watcher>)> = replicas
            .iter()
            .map(|(id, sm)| (*id, sm.watcher.borrow()))
            .collect();
        let from = streams
            .iter()
            .map(|(_, w)| w.complete_from)
            .max()
            .unwrap_or(0);
        let mut reference: Option<(NodeId, Vec<(u64, u64)>)> = None;
        for (id, w) in &streams {
            let tail: Vec<(u64, u64)> =
                w.seen.iter().copied().filter(|(i, _)| *i >= from).collect();
            match &reference {
                None => reference = Some((*id, tail)),
                Some((rid, r)) if *r != tail => {
                    let first = r.iter().zip(&tail).position(|(a, b)| a != b);
                    let at = first.map(|k| (r[k], tail[k]));
                    return Err(format!(
                        "watch streams of nodes {rid} and {id} differ from index {from} ({} vs {} events; first difference, (index, event digest) of each: {at:?})",
                        r.len(),
                        tail.len()
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
