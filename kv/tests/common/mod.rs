//! Test helpers: heap-owned store memory, command application, snapshot sinks.
#![allow(dead_code)]

use shoal_core::io::{SnapshotError, SnapshotReader, SnapshotWriter, StateMachine};
use shoal_kv::*;

/// Owned heap memory for tests: every buffer a `Vec` of empty elements.
pub struct VecMemory;

impl KvMemory for VecMemory {
    type Buf<T: Element> = Vec<T>;
    fn take<T: Element>(&mut self, len: usize) -> Option<Vec<T>> {
        Some(vec![T::EMPTY; len])
    }
}

/// A store that owns its memory.
pub type TestKv = DtKv<VecMemory>;

/// A store with `limits` in memory of its own.
pub fn store(limits: KvLimits) -> TestKv {
    DtKv::new(VecMemory, limits).expect("test limits are valid")
}

/// Borrowed memory the test keeps, to look into after the store wrote it: pools of the
/// lengths `l` needs, plus `extra` spare elements each.
pub struct Pools {
    pub nodes: Vec<NodeSlot>,
    pub words: Vec<u32>,
    pub bytes: Vec<u8>,
    pub sessions: Vec<SessionSlot>,
    pub waiters: Vec<WaiterSlot>,
    pub events: Vec<EventSlot>,
}

impl Pools {
    pub fn new(l: &KvLimits, extra: usize) -> Pools {
        Pools {
            nodes: vec![NodeSlot::EMPTY; l.nodes_len() + extra],
            words: vec![0; l.words_len() + extra],
            bytes: vec![0; l.bytes_len() + extra],
            sessions: vec![SessionSlot::EMPTY; l.sessions_len() + extra],
            waiters: vec![WaiterSlot::EMPTY; l.waiters_len() + extra],
            events: vec![EventSlot::EMPTY; l.events_len() + extra],
        }
    }
    pub fn slices(&mut self) -> KvSlices<'_> {
        KvSlices {
            nodes: &mut self.nodes,
            words: &mut self.words,
            bytes: &mut self.bytes,
            sessions: &mut self.sessions,
            waiters: &mut self.waiters,
            events: &mut self.events,
        }
    }
}

/// Small limits for tests.
pub fn small() -> KvLimits {
    KvLimits {
        max_key_bytes: 32,
        max_value_bytes: 64,
        max_depth: 4,
        max_nodes: 64,
        arena_bytes: 2048,
        max_sessions: 8,
        max_waiters_per_lock: 3,
        max_waiters: 8,
        event_slots: 64,
        event_bytes: 1024,
        max_batch_items: 8,
        max_ttl_ms: 1_000_000,
        max_txn_ops: 4,
        max_leases: 3,
    }
}

pub fn encode(cmd: &Command<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 8192];
    let n = cmd.encode(&mut buf).expect("fits");
    buf.truncate(n);
    buf
}

/// Drives a store with an increasing index and a session.
pub struct Driver<M: KvMemory = VecMemory> {
    pub kv: DtKv<M>,
    pub index: u64,
    pub time_ms: u64,
    pub seqs: std::collections::BTreeMap<u64, u64>,
}

impl Driver {
    /// A driver of a new store with `limits` in memory of its own.
    pub fn new(limits: KvLimits) -> Self {
        Driver::on(store(limits))
    }
}

impl<M: KvMemory> Driver<M> {
    /// A driver of `kv`, which has applied nothing yet.
    pub fn on(kv: DtKv<M>) -> Self {
        Driver {
            kv,
            index: 0,
            time_ms: 1000,
            seqs: Default::default(),
        }
    }

    /// Apply `op` as client `client` (0: no session) with the next sequence number.
    pub fn run(&mut self, client: u64, op: Op<'_>) -> Applied {
        let seq = if client == 0 {
            0
        } else {
            let s = self.seqs.entry(client).or_insert(0);
            *s += 1;
            *s
        };
        self.raw(Command {
            client_id: client,
            seq,
            time_ms: self.time_ms,
            op,
        })
    }

    pub fn raw(&mut self, cmd: Command<'_>) -> Applied {
        let bytes = encode(&cmd);
        self.bytes(&bytes)
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Applied {
        self.index += 1;
        let out = self.kv.apply(self.index, 1, bytes);
        assert_eq!(out.index, self.index);
        assert_eq!(self.kv.applied_index(), self.index);
        out
    }

    pub fn ok(&mut self, client: u64, op: Op<'_>) -> WriteResult {
        let r = self.run(client, op).result;
        assert!(r.error().is_none(), "expected success, got {:?}", r);
        r
    }

    pub fn err(&mut self, client: u64, op: Op<'_>) -> KvError {
        match self.run(client, op).result {
            WriteResult::Failed(e) => e,
            other => panic!("expected an error, got {:?}", other),
        }
    }

    pub fn expire(&mut self, time_ms: u64) -> WriteResult {
        self.time_ms = self.time_ms.max(time_ms);
        self.raw(Command::expire(time_ms)).result
    }

    pub fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.kv.get(key.as_bytes()).ok().map(|v| v.value.to_vec())
    }
}

pub fn put<'a>(key: &'a str, value: &'a str) -> Op<'a> {
    Op::Put {
        key: key.as_bytes(),
        value: value.as_bytes(),
    }
}
pub fn mkdir(key: &str) -> Op<'_> {
    Op::Mkdir {
        key: key.as_bytes(),
    }
}
pub fn put_temp<'a>(key: &'a str, value: &'a str, ttl_ms: u64) -> Op<'a> {
    Op::PutTemp {
        key: key.as_bytes(),
        value: value.as_bytes(),
        ttl_ms,
    }
}
pub fn temp_dir(key: &str, ttl_ms: u64) -> Op<'_> {
    Op::MakeTempDir {
        key: key.as_bytes(),
        ttl_ms,
    }
}
pub fn update_ttl(key: &str, ttl_ms: u64) -> Op<'_> {
    Op::UpdateTtl {
        key: key.as_bytes(),
        ttl_ms,
    }
}
pub fn try_lock(key: &str, lease_ms: u64, wait_ms: u64) -> Op<'_> {
    Op::TryLock {
        key: key.as_bytes(),
        lease_ms,
        wait_ms,
    }
}
pub fn renew_lease(key: &str, lease_ms: u64) -> Op<'_> {
    Op::UpdateLockLease {
        key: key.as_bytes(),
        lease_ms,
    }
}
pub fn unlock(key: &str) -> Op<'_> {
    Op::Unlock {
        key: key.as_bytes(),
    }
}
pub fn expired(removed: u32, granted: u32) -> WriteResult {
    WriteResult::Expired { removed, granted }
}
/// A transaction over slices the caller keeps.
pub fn txn<'a>(
    compares: &'a [Compare<'a>],
    success: &'a [TxnOp<'a>],
    failure: &'a [TxnOp<'a>],
) -> Op<'a> {
    Op::Txn(Txn {
        compares: Batch::new(compares),
        success: Batch::new(success),
        failure: Batch::new(failure),
    })
}
pub fn remove(key: &str) -> Op<'_> {
    Op::Remove {
        key: key.as_bytes(),
    }
}

/// The transaction operation that does what `op` (a put, remove, mkdir or temporary put) does.
pub fn in_txn(op: Op<'_>) -> TxnOp<'_> {
    match op {
        Op::Put { key, value } => TxnOp::Put { key, value },
        Op::Remove { key } => TxnOp::Remove { key },
        Op::Mkdir { key } => TxnOp::Mkdir { key },
        Op::PutTemp { key, value, ttl_ms } => TxnOp::PutTemp { key, value, ttl_ms },
        other => panic!("{other:?} has no transaction form"),
    }
}
pub fn tput<'a>(key: &'a str, value: &'a str) -> TxnOp<'a> {
    in_txn(put(key, value))
}
pub fn tremove(key: &str) -> TxnOp<'_> {
    in_txn(remove(key))
}
pub fn tmkdir(key: &str) -> TxnOp<'_> {
    in_txn(mkdir(key))
}
pub fn ttemp<'a>(key: &'a str, value: &'a str, ttl_ms: u64) -> TxnOp<'a> {
    in_txn(put_temp(key, value, ttl_ms))
}

#[derive(Default)]
pub struct VecWriter(pub Vec<u8>, pub usize);

impl SnapshotWriter for VecWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.0.extend_from_slice(data);
        self.1 += 1;
        Ok(())
    }
}

pub struct SliceReader<'a>(pub &'a [u8]);

impl SnapshotReader for SliceReader<'_> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        if buf.len() > self.0.len() {
            return Err(SnapshotError::Malformed);
        }
        buf.copy_from_slice(&self.0[..buf.len()]);
        self.0 = &self.0[buf.len()..];
        Ok(())
    }
    fn remaining(&self) -> u64 {
        self.0.len() as u64
    }
}

pub fn snapshot(kv: &DtKv<impl KvMemory>) -> Vec<u8> {
    let mut w = VecWriter::default();
    kv.snapshot(&mut w).expect("snapshot");
    w.0
}

/// All events since `from` under `filter` as (index, kind, key, value, owner, fence).
pub fn events(
    kv: &DtKv<impl KvMemory>,
    from: u64,
    filter: &str,
) -> Vec<(u64, EventKind, String, String, u64, u64)> {
    let mut out = Vec::new();
    kv.events_since(from, filter.as_bytes(), |e| {
        out.push((
            e.index,
            e.kind,
            String::from_utf8_lossy(e.key).into_owned(),
            String::from_utf8_lossy(e.value).into_owned(),
            e.owner,
            e.fence,
        ))
    })
    .expect("history available");
    out
}
