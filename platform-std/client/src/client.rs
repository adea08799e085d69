//! [`Client`]: every DtKV operation, watches, locks and administration, following the leader
//! and retrying until each call's deadline (see the crate docs for the rules). How a call
//! reaches the leader is in `client/retry.rs`; administration in `client/admin.rs`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::LogIndex;
use shoal_kv::{KvError, WriteResult};

use crate::lock::{self, LockGuard};
use crate::mux::Mux;
use crate::protocol::{NodeInfo, ReadMode, Request, Response, WriteOp, ANY_CLUSTER};
use crate::txn::{Transaction, TxnOutcome};
use crate::watch::{self, WatchStream};
use crate::{ClientConfig, ClientError};

mod admin;
mod retry;

/// The outcome of a batch write: the raft index and one result per item, in item order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Raft index of the batch's log entry.
    pub index: LogIndex,
    /// `Ok` or DtKV's refusal for each item.
    pub results: Vec<Result<(), KvError>>,
}

/// The answer to [`Client::try_lock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// The caller holds the lock.
    Held {
        /// Fencing token (the raft index of the grant; strictly increasing per lock).
        fence: u64,
        /// When the lease ends unless renewed (leader clock, ms).
        lease_deadline_ms: u64,
    },
    /// The caller waits in the lock's queue at this 1-based position.
    Queued {
        /// Position in the FIFO queue.
        position: u32,
    },
}

/// The answer to [`Client::unlock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlocked {
    /// Raft index of the release.
    pub index: LogIndex,
    /// The client id that now holds the lock (0: free).
    pub next_owner: u64,
    /// Its fencing token (0: free).
    pub next_fence: u64,
}

struct Inner {
    config: ClientConfig,
    client_id: u64,
    next_seq: AtomicU64,
    next_id: AtomicU64,
    /// Where requests go now (a leader we were sent to, or an endpoint from the list).
    target: Mutex<Target>,
    conn: async_lock::Mutex<Option<Arc<Mux>>>,
    /// The token of the last login (any node takes it until it expires).
    token: Mutex<Option<Vec<u8>>>,
    /// The cluster requests are meant for ([`ANY_CLUSTER`] until a node names its own, unless
    /// the configuration pins one).
    cluster: AtomicU64,
}

/// Why a connection could not be opened and logged in.
pub(crate) enum OpenError {
    /// Worth another attempt (elsewhere or later).
    Retry(String),
    /// The login was refused: retrying cannot help.
    Auth(ClientError),
}

struct Target {
    addr: String,
    /// Index in `endpoints` of the last endpoint tried from the list.
    rotation: usize,
}

/// An async client. Cheap to clone; clones share the connection and the write session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.config.endpoints)
            .field("group", &self.inner.config.group)
            .field("client_id", &self.inner.client_id)
            .finish()
    }
}

/// Whether a request changes state (and so must be retried with its session and reported
/// indeterminate when its answer is lost).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl Client {
    /// A client for `config`. No connection is made until the first call; a malformed
    /// endpoint is refused here (see [`parse_endpoint`](crate::parse_endpoint)), and so is a
    /// system that gives no randomness for the session id ([`ClientError::Unavailable`]).
    pub fn new(mut config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::bad_request(
                "no endpoints given; name at least one node's client address (host:port)",
            ));
        }
        if let Some(e) = config.endpoints.iter().find(|e| crate::tls::wants_tls(e)) {
            if config.tls.is_none() {
                return Err(ClientError::bad_request(format!(
                    "endpoint `{}` asks for TLS, but no TLS configuration is given (a CA to \
                     check the node against: shoalctl --cacert, or --insecure-skip-tls-verify; \
                     ClientConfig::with_tls in the library)",
                    e.trim()
                )));
            }
        }
        config.endpoints = config
            .endpoints
            .iter()
            .map(|e| crate::config::parse_endpoint(e))
            .collect::<Result<_, _>>()
            .map_err(ClientError::bad_request)?;
        let client_id = new_session_id()?;
        let first = config.endpoints[0].clone();
        Ok(Client {
            inner: Arc::new(Inner {
                cluster: AtomicU64::new(config.cluster.unwrap_or(ANY_CLUSTER)),
                config,
                client_id,
                next_seq: AtomicU64::new(1),
                next_id: AtomicU64::new(1),
                target: Mutex::new(Target {
                    addr: first,
                    rotation: 0,
                }),
                conn: async_lock::Mutex::new(None),
                token: Mutex::new(None),
            }),
        })
    }

    /// A client for these endpoints with the default configuration.
    pub fn connect<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
    ) -> Result<Client, ClientError> {
        Client::new(ClientConfig::new(endpoints))
    }

    /// This client's session id (owner of its temporary nodes and locks).
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    // ---- reads ----

    /// Read one key (`None`: no node has it).
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        mode: ReadMode,
    ) -> Result<Option<NodeInfo>, ClientError> {
        let key = key.as_ref().to_vec();
        match self.read(Request::Get { key, mode }).await? {
            Response::Node { node, .. } => Ok(node),
            other => Err(unexpected("Get", &other)),
        }
    }

    /// Read several keys at one index; one entry per key, in order.
    pub async fn batch_get<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
        mode: ReadMode,
    ) -> Result<Vec<Option<NodeInfo>>, ClientError> {
        let keys = keys.iter().map(|k| k.as_ref().to_vec()).collect();
        match self.read(Request::BatchGet { keys, mode }).await? {
            Response::Nodes { nodes, .. } => Ok(nodes),
            other => Err(unexpected("BatchGet", &other)),
        }
    }

    /// List a directory's children ("" lists the root).
    pub async fn list(
        &self,
        dir: impl AsRef<[u8]>,
        mode: ReadMode,
    ) -> Result<Vec<NodeInfo>, ClientError> {
        let key = dir.as_ref().to_vec();
        match self.read(Request::List { key, mode }).await? {
            Response::Children { children, .. } => Ok(children),
            other => Err(unexpected("List", &other)),
        }
    }

    // ---- writes ----

    /// Create or replace a value; returns the raft index of the write.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<LogIndex, ClientError> {
        let op = WriteOp::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        };
        self.write_done(op).await
    }

    /// Remove a value, a temporary node or an empty directory.
    pub async fn remove(&self, key: impl AsRef<[u8]>) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::Remove {
            key: key.as_ref().to_vec(),
        })
        .await
    }

    /// An operator's override of [`Client::remove`]: a temporary node is removed whichever
    /// session owns it. The server logs who asked and may refuse it to a client without the
    /// right.
    pub async fn force_remove(&self, key: impl AsRef<[u8]>) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::ForceRemove {
            key: key.as_ref().to_vec(),
        })
        .await
    }

    /// Create a directory (succeeds if it already is one).
    pub async fn mkdir(&self, key: impl AsRef<[u8]>) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::Mkdir {
            key: key.as_ref().to_vec(),
        })
        .await
    }

    /// Several puts in one log entry.
    pub async fn batch_put<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<BatchOutcome, ClientError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()))
            .collect();
        self.write_batch(WriteOp::BatchPut { pairs }).await
    }

    /// Several removes in one log entry.
    pub async fn batch_remove<K: AsRef<[u8]>>(
        &self,
        keys: &[K],
    ) -> Result<BatchOutcome, ClientError> {
        let keys = keys.iter().map(|k| k.as_ref().to_vec()).collect();
        self.write_batch(WriteOp::BatchRemove { keys }).await
    }

    /// Set `value` if the current value equals `expect` (`None`: if the key does not exist);
    /// otherwise fails with `KvError::CasMismatch`.
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expect: Option<&[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::CompareAndSet {
            key: key.as_ref().to_vec(),
            expect: expect.map(<[u8]>::to_vec),
            value: value.as_ref().to_vec(),
        })
        .await
    }

    /// Apply a transaction: its success branch if every compare holds, else its failure
    /// branch, whole or not at all. An operation of the chosen branch that DtKV refuses
    /// aborts it with nothing applied ([`ClientError::TxnAborted`]).
    pub async fn txn(&self, txn: Transaction) -> Result<TxnOutcome, ClientError> {
        match self.write(txn.into_op()).await? {
            (index, WriteResult::Txn { succeeded, results }) => Ok(TxnOutcome {
                index,
                succeeded,
                results: results.into_iter().collect(),
            }),
            (
                _,
                WriteResult::TxnAborted {
                    succeeded,
                    op,
                    error,
                },
            ) => Err(ClientError::TxnAborted {
                succeeded,
                op: op as usize,
                error,
            }),
            (_, other) => Err(unexpected_write("Txn", &other)),
        }
    }

    /// Create or refresh a temporary value owned by this client, removed `ttl` after its last
    /// refresh.
    pub async fn put_temp(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::PutTemp {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            ttl_ms: millis(ttl)?,
        })
        .await
    }

    /// Create a temporary directory owned by this client (removed whole when it expires).
    pub async fn make_temp_dir(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::MakeTempDir {
            key: key.as_ref().to_vec(),
            ttl_ms: millis(ttl)?,
        })
        .await
    }

    /// Give a temporary node this client owns a new deadline of now + `ttl`.
    pub async fn update_ttl(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::UpdateTtl {
            key: key.as_ref().to_vec(),
            ttl_ms: millis(ttl)?,
        })
        .await
    }

    /// Ask for a lock once: held, queued (when `wait` is non-zero and someone holds it), or
    /// `KvError::LockHeld`. See [`Client::lock`] for a helper that waits and renews.
    pub async fn try_lock(
        &self,
        key: impl AsRef<[u8]>,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockState, ClientError> {
        let op = WriteOp::TryLock {
            key: key.as_ref().to_vec(),
            lease_ms: millis(lease)?,
            wait_ms: wait.as_millis().min(u64::MAX as u128) as u64,
        };
        lock_state("TryLock", self.write(op).await?.1)
    }

    /// Release a lock this client holds, or leave its queue.
    pub async fn unlock(&self, key: impl AsRef<[u8]>) -> Result<Unlocked, ClientError> {
        self.release(WriteOp::Unlock {
            key: key.as_ref().to_vec(),
        })
        .await
    }

    /// An operator's override of [`Client::unlock`]: the lock is released whoever holds it
    /// and handed to its next waiter. The server logs who asked and may refuse it to a client
    /// without the right.
    pub async fn force_unlock(&self, key: impl AsRef<[u8]>) -> Result<Unlocked, ClientError> {
        self.release(WriteOp::ForceUnlock {
            key: key.as_ref().to_vec(),
        })
        .await
    }

    async fn release(&self, op: WriteOp) -> Result<Unlocked, ClientError> {
        match self.write(op).await? {
            (
                index,
                WriteResult::Unlocked {
                    next_owner,
                    next_fence,
                },
            ) => Ok(Unlocked {
                index,
                next_owner,
                next_fence,
            }),
            (index, WriteResult::Done) => Ok(Unlocked {
                index,
                next_owner: 0,
                next_fence: 0,
            }),
            (_, other) => Err(unexpected_write("Unlock", &other)),
        }
    }

    /// Extend a held lock's lease to now + `lease`; returns the raft index of the renewal.
    pub async fn update_lock_lease(
        &self,
        key: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<LogIndex, ClientError> {
        let op = WriteOp::UpdateLockLease {
            key: key.as_ref().to_vec(),
            lease_ms: millis(lease)?,
        };
        self.write(op).await.map(|(index, _)| index)
    }

    /// Acquire a lock, waiting up to `wait` in its queue, and keep its lease renewed in the
    /// background until the guard is released or dropped.
    pub async fn lock(
        &self,
        key: impl AsRef<[u8]>,
        lease: Duration,
        wait: Duration,
    ) -> Result<LockGuard, ClientError> {
        lock::acquire(self.clone(), key.as_ref().to_vec(), lease, wait).await
    }

    /// Watch keys or directories (a directory watch sees its subtree; "" sees everything) from
    /// raft index `from_index` (0: from now). The stream reconnects and resumes after the last
    /// event it delivered.
    pub fn watch<K: AsRef<[u8]>>(&self, keys: &[K], from_index: LogIndex) -> WatchStream {
        let keys = keys.iter().map(|k| k.as_ref().to_vec()).collect();
        watch::start(self.clone(), keys, from_index)
    }

    // ---- machinery ----

    pub(crate) async fn read(&self, request: Request) -> Result<Response, ClientError> {
        self.execute(self.inner.config.group, request, Kind::Read)
            .await
    }

    pub(crate) async fn write_done(&self, op: WriteOp) -> Result<LogIndex, ClientError> {
        let name = op_name(&op);
        match self.write(op).await? {
            (index, WriteResult::Done) => Ok(index),
            (_, other) => Err(unexpected_write(name, &other)),
        }
    }

    async fn write_batch(&self, op: WriteOp) -> Result<BatchOutcome, ClientError> {
        match self.write(op).await? {
            (index, WriteResult::Batch(results)) => Ok(BatchOutcome {
                index,
                results: results.into_iter().collect(),
            }),
            (_, other) => Err(unexpected_write("batch", &other)),
        }
    }

    /// A write with a fresh session sequence; DtKV refusals become [`ClientError::Kv`].
    pub(crate) async fn write(&self, op: WriteOp) -> Result<(LogIndex, WriteResult), ClientError> {
        let request = Request::Write {
            client_id: self.inner.client_id,
            seq: 0, // assigned in wire order by `execute`
            op,
        };
        match self
            .execute(self.inner.config.group, request, Kind::Write)
            .await?
        {
            Response::Written {
                result: WriteResult::Failed(e),
                ..
            } => Err(ClientError::Kv(e)),
            Response::Written { index, result } => Ok((index, result)),
            other => Err(unexpected("Write", &other)),
        }
    }
}

/// A fresh session id: a non-zero u64 from the operating system's random source. It must
/// differ between every client ever built against a cluster, in any process: a second client
/// with the same id would have its first writes taken for retries of the other's and answered
/// with their results, never applied. (A generator seeded from the clock is not enough: two
/// processes can read the same time, on a coarse clock easily.)
fn new_session_id() -> Result<u64, ClientError> {
    loop {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| ClientError::Unavailable {
            attempts: 0,
            last: format!("no randomness from the operating system for the session id: {e}"),
        })?;
        let id = u64::from_le_bytes(b);
        if id != 0 {
            return Ok(id);
        }
    }
}

pub(crate) fn millis(d: Duration) -> Result<u64, ClientError> {
    let ms = d.as_millis();
    if ms == 0 {
        return Err(ClientError::bad_request(format!(
            "a TTL or lease must be at least 1 ms, got {d:?}"
        )));
    }
    Ok(ms.min(u64::MAX as u128) as u64)
}

fn op_name(op: &WriteOp) -> &'static str {
    match op {
        WriteOp::Put { .. } => "Put",
        WriteOp::Remove { .. } => "Remove",
        WriteOp::Mkdir { .. } => "Mkdir",
        WriteOp::BatchPut { .. } => "BatchPut",
        WriteOp::BatchRemove { .. } => "BatchRemove",
        WriteOp::CompareAndSet { .. } => "CompareAndSet",
        WriteOp::PutTemp { .. } => "PutTemp",
        WriteOp::MakeTempDir { .. } => "MakeTempDir",
        WriteOp::UpdateTtl { .. } => "UpdateTtl",
        WriteOp::TryLock { .. } => "TryLock",
        WriteOp::Unlock { .. } => "Unlock",
        WriteOp::UpdateLockLease { .. } => "UpdateLockLease",
        WriteOp::Txn { .. } => "Txn",
        WriteOp::ForceRemove { .. } => "ForceRemove",
        WriteOp::ForceUnlock { .. } => "ForceUnlock",
        WriteOp::LeaseGrant { .. } => "LeaseGrant",
        WriteOp::LeaseKeepAlive { .. } => "LeaseKeepAlive",
        WriteOp::LeaseRevoke { .. } => "LeaseRevoke",
        WriteOp::PutTempLease { .. } => "PutTempLease",
        WriteOp::MakeTempDirLease { .. } => "MakeTempDirLease",
        WriteOp::TryLockLease { .. } => "TryLockLease",
    }
}

/// A try-lock's answer as a [`LockState`].
pub(crate) fn lock_state(what: &str, result: WriteResult) -> Result<LockState, ClientError> {
    match result {
        WriteResult::Locked {
            fence,
            lease_deadline_ms,
        } => Ok(LockState::Held {
            fence,
            lease_deadline_ms,
        }),
        WriteResult::Queued { position } => Ok(LockState::Queued { position }),
        other => Err(unexpected_write(what, &other)),
    }
}

pub(crate) fn unexpected(what: &str, got: &Response) -> ClientError {
    ClientError::Protocol {
        message: format!("{what} was answered with {got:?}"),
    }
}

pub(crate) fn unexpected_write(what: &str, got: &WriteResult) -> ClientError {
    ClientError::Protocol {
        message: format!("{what} was answered with write result {got:?}"),
    }
}
