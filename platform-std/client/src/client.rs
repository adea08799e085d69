//! [`Client`]: every DtKV operation, watches, locks and administration, following the leader
//! and retrying until each call's deadline (see the crate docs for the rules).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_core::{GroupId, LogIndex, NodeId};
use shoal_kv::{KvError, WriteResult};

use crate::lock::{self, LockGuard};
use crate::mux::{CallError, Mux};
use crate::protocol::{
    AuthOp, Credentials, ErrorCode, HealthInfo, MemberChange, MemberInfo, NodeInfo, NodeStatusInfo,
    Permission, ReadMode, Request, RequestFrame, Response, RoleInfo, SecretBytes, SnapshotChunk,
    StatusInfo, UserInfo, WriteOp,
};
use crate::txn::{Transaction, TxnOutcome};
use crate::watch::{self, WatchStream};
use crate::{ClientConfig, ClientError};

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
    /// endpoint is refused here (see [`parse_endpoint`](crate::parse_endpoint)).
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
        let client_id = loop {
            let id = fastrand::Rng::new().u64(..);
            if id != 0 {
                break id;
            }
        };
        let first = config.endpoints[0].clone();
        Ok(Client {
            inner: Arc::new(Inner {
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

    // ---- administration ----

    /// The status of the group on the node this client talks to.
    pub async fn status(&self) -> Result<StatusInfo, ClientError> {
        match self.read(Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected("Status", &other)),
        }
    }

    /// The health of the node this client talks to: whether it can vouch for every group it
    /// hosts, and why not (an unhealthy node answers too; see [`HealthInfo::healthy`]).
    pub async fn health(&self) -> Result<HealthInfo, ClientError> {
        match self.read(Request::Health).await? {
            Response::Health(h) => Ok(h),
            other => Err(unexpected("Health", &other)),
        }
    }

    /// The group's members.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ClientError> {
        match self.read(Request::MemberList).await? {
            Response::Members(m) => Ok(m),
            other => Err(unexpected("MemberList", &other)),
        }
    }

    /// Add a node by its raft address; it stays an observer if `observer`, else it is promoted
    /// to voter once it has caught up.
    pub async fn add_member(
        &self,
        id: NodeId,
        raft_addr: impl Into<String>,
        observer: bool,
    ) -> Result<LogIndex, ClientError> {
        self.admin(Request::ChangeMembers(MemberChange::Add {
            id,
            raft_addr: raft_addr.into(),
            observer,
        }))
        .await
    }

    /// Make an observer a voter.
    pub async fn promote_member(&self, id: NodeId) -> Result<LogIndex, ClientError> {
        self.admin(Request::ChangeMembers(MemberChange::Promote { id }))
            .await
    }

    /// Remove a node from the group.
    pub async fn remove_member(&self, id: NodeId) -> Result<LogIndex, ClientError> {
        self.admin(Request::ChangeMembers(MemberChange::Remove { id }))
            .await
    }

    /// Leave a joint configuration the group is stuck in (a membership change between its
    /// prepare and commit steps) back to the configuration before it; a change in progress
    /// is abandoned. Returns the index of the entry that did it.
    pub async fn abort_member_change(&self) -> Result<LogIndex, ClientError> {
        self.admin(Request::AbortMemberChange).await
    }

    /// The node this client talks to: its view of the group, addresses, version, disk use and
    /// health (one row of `shoalctl status --cluster`).
    pub async fn node_status(&self) -> Result<NodeStatusInfo, ClientError> {
        match self.read(Request::NodeStatus).await? {
            Response::NodeStatus(s) => Ok(*s),
            other => Err(unexpected("NodeStatus", &other)),
        }
    }

    /// One chunk of a snapshot of the node this client talks to (see
    /// [`Request::SnapshotSave`]): `index` 0 takes a snapshot first.
    pub async fn snapshot_chunk(
        &self,
        index: LogIndex,
        offset: u64,
        max_bytes: u64,
    ) -> Result<SnapshotChunk, ClientError> {
        let request = Request::SnapshotSave {
            index,
            offset,
            max_bytes,
        };
        match self.read(request).await? {
            Response::SnapshotChunk(c) => Ok(*c),
            other => Err(unexpected("SnapshotSave", &other)),
        }
    }

    /// Move leadership to voter `to`.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<LogIndex, ClientError> {
        self.admin(Request::TransferLeader { to }).await
    }

    /// Take a snapshot now on the node this client talks to; returns its index.
    pub async fn snapshot(&self) -> Result<LogIndex, ClientError> {
        self.admin(Request::Snapshot).await
    }

    /// The groups hosted by the node this client talks to.
    pub async fn groups(&self) -> Result<Vec<GroupId>, ClientError> {
        match self
            .execute(self.inner.config.group, Request::GroupList, Kind::Read)
            .await?
        {
            Response::Groups(g) => Ok(g),
            other => Err(unexpected("GroupList", &other)),
        }
    }

    /// Define group `group` for the whole cluster with these voters (node ids of group 0's
    /// members); every listed node creates it. Returns the index of group 0's log that holds
    /// the definition.
    pub async fn create_group(
        &self,
        group: GroupId,
        members: Vec<NodeId>,
    ) -> Result<LogIndex, ClientError> {
        match self
            .execute(group, Request::GroupCreate { members }, Kind::Write)
            .await?
        {
            Response::Done { index } => Ok(index),
            other => Err(unexpected("GroupCreate", &other)),
        }
    }

    /// Remove group `group` from the cluster: every member stops it and deletes its data after
    /// the servers' grace period. Group 0 cannot be removed.
    pub async fn remove_group(&self, group: GroupId) -> Result<LogIndex, ClientError> {
        match self
            .execute(group, Request::GroupRemove, Kind::Write)
            .await?
        {
            Response::Done { index } => Ok(index),
            other => Err(unexpected("GroupRemove", &other)),
        }
    }

    // ---- users, roles and auth ----

    /// Log in now (the client also logs in by itself before its first request): returns the
    /// user the cluster knows this client as, and when the token expires (wall-clock ms; 0
    /// while auth is off).
    pub async fn authenticate(&self) -> Result<(String, u64), ClientError> {
        let Some((user, password)) = self.inner.config.user.clone() else {
            return Err(ClientError::bad_request(
                "no user configured (ClientConfig::with_user)",
            ));
        };
        let creds = Credentials::Password { user, password };
        match self.read(Request::Authenticate(creds)).await? {
            Response::Token {
                user,
                token: SecretBytes(token),
                expires_ms,
            } => {
                if !token.is_empty() {
                    *self.inner.token.lock().expect("token lock poisoned") = Some(token);
                }
                Ok((user, expires_ms))
            }
            other => Err(unexpected("Authenticate", &other)),
        }
    }

    /// The token of the last login, if any (any node of the cluster takes it until it
    /// expires).
    pub fn token(&self) -> Option<Vec<u8>> {
        self.inner
            .token
            .lock()
            .expect("token lock poisoned")
            .clone()
    }

    /// Use `token` (from another client's login) for the next connections: a client with a
    /// token and no user speaks for the token's user until it expires.
    pub fn set_token(&self, token: Vec<u8>) {
        *self.inner.token.lock().expect("token lock poisoned") = Some(token);
    }

    async fn auth(&self, op: AuthOp) -> Result<Response, ClientError> {
        let kind = if op.is_read() {
            Kind::Read
        } else {
            Kind::Write
        };
        self.execute(0, Request::Auth(op), kind).await
    }

    async fn auth_done(&self, op: AuthOp) -> Result<LogIndex, ClientError> {
        match self.auth(op).await? {
            Response::Done { index } => Ok(index),
            other => Err(unexpected("auth change", &other)),
        }
    }

    /// Turn auth on (the user `root` must exist); returns the index of the change.
    pub async fn auth_enable(&self) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::Enable).await
    }

    /// Turn auth off (needs the root role).
    pub async fn auth_disable(&self) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::Disable).await
    }

    /// Whether auth is on.
    pub async fn auth_status(&self) -> Result<bool, ClientError> {
        match self.auth(AuthOp::Status).await? {
            Response::AuthStatus { enabled } => Ok(enabled),
            other => Err(unexpected("auth status", &other)),
        }
    }

    /// Add a user (the user `root` holds the root role from the start).
    pub async fn user_add(&self, name: &str, password: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::UserAdd {
            name: name.into(),
            password: password.into(),
        })
        .await
    }

    /// Delete a user.
    pub async fn user_delete(&self, name: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::UserDelete { name: name.into() })
            .await
    }

    /// Change a user's password (its tokens stop working).
    pub async fn user_passwd(&self, name: &str, password: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::UserPasswd {
            name: name.into(),
            password: password.into(),
        })
        .await
    }

    /// Grant `role` to user `name`.
    pub async fn user_grant_role(&self, name: &str, role: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::UserGrantRole {
            name: name.into(),
            role: role.into(),
        })
        .await
    }

    /// Revoke `role` from user `name`.
    pub async fn user_revoke_role(&self, name: &str, role: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::UserRevokeRole {
            name: name.into(),
            role: role.into(),
        })
        .await
    }

    /// Every user's name.
    pub async fn user_list(&self) -> Result<Vec<String>, ClientError> {
        match self.auth(AuthOp::UserList).await? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected("user list", &other)),
        }
    }

    /// One user and its roles.
    pub async fn user_get(&self, name: &str) -> Result<UserInfo, ClientError> {
        match self.auth(AuthOp::UserGet { name: name.into() }).await? {
            Response::User(u) => Ok(u),
            other => Err(unexpected("user get", &other)),
        }
    }

    /// Add a role without permissions.
    pub async fn role_add(&self, name: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::RoleAdd { name: name.into() }).await
    }

    /// Delete a role no user holds.
    pub async fn role_delete(&self, name: &str) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::RoleDelete { name: name.into() })
            .await
    }

    /// Every role's name (the built-in `root` among them).
    pub async fn role_list(&self) -> Result<Vec<String>, ClientError> {
        match self.auth(AuthOp::RoleList).await? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected("role list", &other)),
        }
    }

    /// One role and its permissions.
    pub async fn role_get(&self, name: &str) -> Result<RoleInfo, ClientError> {
        match self.auth(AuthOp::RoleGet { name: name.into() }).await? {
            Response::Role(r) => Ok(r),
            other => Err(unexpected("role get", &other)),
        }
    }

    /// Give role `name` a permission (replacing one on the same key and prefix).
    pub async fn role_grant_permission(
        &self,
        name: &str,
        permission: Permission,
    ) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::RoleGrantPermission {
            name: name.into(),
            permission,
        })
        .await
    }

    /// Take role `name`'s permission on `key` (with `prefix`: its subtree permission).
    pub async fn role_revoke_permission(
        &self,
        name: &str,
        key: &[u8],
        prefix: bool,
    ) -> Result<LogIndex, ClientError> {
        self.auth_done(AuthOp::RoleRevokePermission {
            name: name.into(),
            key: key.to_vec(),
            prefix,
        })
        .await
    }

    // ---- machinery ----

    async fn admin(&self, request: Request) -> Result<LogIndex, ClientError> {
        match self
            .execute(self.inner.config.group, request, Kind::Write)
            .await?
        {
            Response::Done { index } => Ok(index),
            other => Err(unexpected("admin request", &other)),
        }
    }

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

    /// Open a connection to `addr` and log in on it: with the last token if there is one (any
    /// node takes it), else (or when it is refused) with the configured user's password.
    pub(crate) async fn open_mux(&self, addr: &str) -> Result<Mux, OpenError> {
        let cfg = &self.inner.config;
        let mux = Mux::open(addr, cfg.connect_timeout, cfg.tls.as_ref())
            .await
            .map_err(OpenError::Retry)?;
        let token = self
            .inner
            .token
            .lock()
            .expect("token lock poisoned")
            .clone();
        if let Some(token) = token {
            if self.login(&mux, Credentials::Token(token)).await? {
                return Ok(mux);
            }
        }
        let Some((user, password)) = &cfg.user else {
            return Ok(mux);
        };
        let creds = Credentials::Password {
            user: user.clone(),
            password: password.clone(),
        };
        if self.login(&mux, creds).await? {
            Ok(mux)
        } else {
            Err(OpenError::Auth(ClientError::AuthFailed {
                message: "the password login was refused".into(),
            }))
        }
    }

    /// One login on `mux`: true when it succeeded, false when a token was refused (log in
    /// with the password instead).
    async fn login(&self, mux: &Mux, creds: Credentials) -> Result<bool, OpenError> {
        let with_token = matches!(creds, Credentials::Token(_));
        let mut frame = RequestFrame::new(self.next_request_id(), 0, Request::Authenticate(creds));
        let timeout = self.inner.config.attempt_timeout;
        match mux.call(&mut frame, |_| {}, timeout).await {
            Ok(Response::Token {
                token: SecretBytes(token),
                ..
            }) => {
                // An empty token: auth is off on the cluster, nothing to keep.
                if !token.is_empty() {
                    *self.inner.token.lock().expect("token lock poisoned") = Some(token);
                }
                Ok(true)
            }
            Ok(Response::Error {
                code: ErrorCode::AuthFailed,
                ..
            }) if with_token => {
                *self.inner.token.lock().expect("token lock poisoned") = None;
                Ok(false)
            }
            Ok(Response::Error { code, kv, message }) => {
                Err(OpenError::Auth(ClientError::from_answer(code, kv, message)))
            }
            Ok(Response::Unavailable { message }) => Err(OpenError::Retry(format!(
                "{} could not log in now: {message}",
                mux.addr
            ))),
            Ok(other) => Err(OpenError::Auth(unexpected("Authenticate", &other))),
            Err(e) => Err(OpenError::Retry(format!("login on {}: {e:?}", mux.addr))),
        }
    }

    /// The current connection, opening one to the current target if needed.
    async fn connection(&self) -> Result<Arc<Mux>, OpenError> {
        let mut slot = self.inner.conn.lock().await;
        let target = self.target_addr();
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() && c.addr == target {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let conn = Arc::new(self.open_mux(&target).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    pub(crate) fn target_addr(&self) -> String {
        self.inner
            .target
            .lock()
            .expect("target lock poisoned")
            .addr
            .clone()
    }

    /// Point at `addr` (a leader we were told about).
    pub(crate) fn redirect(&self, addr: &str) {
        self.inner.target.lock().expect("target lock poisoned").addr = addr.to_string();
    }

    /// Point at the next endpoint of the list (unless another call already moved on from
    /// `failed`).
    pub(crate) fn rotate(&self, failed: &str) {
        let mut t = self.inner.target.lock().expect("target lock poisoned");
        if t.addr != failed {
            return;
        }
        let eps = &self.inner.config.endpoints;
        t.rotation = (t.rotation + 1) % eps.len();
        t.addr = eps[t.rotation].clone();
    }

    /// Send `request` to the leader (or the node at hand for node-local requests), retrying
    /// through redirects, lost connections, `Unavailable` and timeouts until the deadline.
    async fn execute(
        &self,
        group: GroupId,
        mut request: Request,
        kind: Kind,
    ) -> Result<Response, ClientError> {
        let cfg = &self.inner.config;
        let deadline = Instant::now() + cfg.timeout;
        let mut attempts = 0u32;
        let mut maybe_sent = false;
        let mut last = String::from("no attempt made (timeout too short)");
        let mut backoff = Duration::from_millis(20);
        // A write's sequence is assigned at its first send and kept for every retry.
        let mut seq_assigned = false;
        let mut unavailable_in_row = 0u32;
        // A login that ended (token expired, password changed elsewhere, auth turned on) is
        // renewed once per call; the refused request changed nothing, so it is sent again.
        let mut logged_in_again = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(if maybe_sent && kind == Kind::Write {
                    ClientError::Indeterminate { attempts, last }
                } else {
                    ClientError::Unavailable { attempts, last }
                });
            }
            let remaining = deadline - now;
            attempts += 1;
            let conn = match self.connection().await {
                Ok(c) => c,
                Err(OpenError::Auth(e)) => return Err(e),
                Err(OpenError::Retry(e)) => {
                    last = e;
                    let failed = self.target_addr();
                    self.rotate(&failed);
                    sleep_until_deadline(backoff, deadline).await;
                    backoff = next_backoff(backoff);
                    continue;
                }
            };
            let mut frame = RequestFrame::new(self.next_request_id(), group, request.clone());
            let next_seq = &self.inner.next_seq;
            let fill = |f: &mut RequestFrame| {
                if let Request::Write { seq, .. } = &mut f.request {
                    if !seq_assigned {
                        *seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            let result = conn
                .call(&mut frame, fill, cfg.attempt_timeout.min(remaining))
                .await;
            if let Request::Write { seq, .. } = &frame.request {
                // Keep the sequence the frame carried (if it left) for every retry.
                if let Request::Write { seq: s, .. } = &mut request {
                    *s = *seq;
                }
            }
            match result {
                Err(CallError::NotSent(e)) => {
                    last = e;
                    self.drop_conn(&conn).await;
                    self.rotate(&conn.addr);
                    sleep_until_deadline(backoff, deadline).await;
                    backoff = next_backoff(backoff);
                }
                Err(CallError::Lost(e)) => {
                    seq_assigned = true;
                    maybe_sent = true;
                    last = format!("answer lost: {e}");
                    self.drop_conn(&conn).await;
                    self.rotate(&conn.addr);
                    sleep_until_deadline(backoff, deadline).await;
                    backoff = next_backoff(backoff);
                }
                Err(CallError::TimedOut) => {
                    seq_assigned = true;
                    maybe_sent = true;
                    last = format!(
                        "{} did not answer within {:?}",
                        conn.addr,
                        cfg.attempt_timeout.min(remaining)
                    );
                    // The node may be stuck; the connection may be fine for others, but a
                    // retry should look elsewhere.
                    self.drop_conn(&conn).await;
                    self.rotate(&conn.addr);
                }
                Ok(response) => {
                    seq_assigned = true;
                    match response {
                        Response::NotLeader {
                            leader,
                            leader_addr,
                        } => {
                            match leader_addr {
                                Some(addr) if addr != conn.addr => {
                                    last = format!(
                                        "{} is not the leader; redirected to node {leader} at {addr}",
                                        conn.addr
                                    );
                                    self.redirect(&addr);
                                    // A known leader: try it at once (bounded by the deadline).
                                    sleep_until_deadline(Duration::from_millis(1), deadline).await;
                                }
                                _ => {
                                    last = format!(
                                        "{} is not the leader and does not know who is",
                                        conn.addr
                                    );
                                    self.rotate(&conn.addr);
                                    sleep_until_deadline(backoff, deadline).await;
                                    backoff = next_backoff(backoff);
                                }
                            }
                        }
                        Response::Unavailable { message } => {
                            last = format!("{} is unavailable: {message}", conn.addr);
                            sleep_until_deadline(backoff, deadline).await;
                            backoff = next_backoff(backoff);
                            // A node that stays unavailable may be cut off: after three
                            // answers in a row, ask another.
                            unavailable_in_row += 1;
                            if unavailable_in_row >= 3 {
                                unavailable_in_row = 0;
                                self.rotate(&conn.addr);
                            }
                        }
                        Response::Error {
                            code: ErrorCode::AuthFailed,
                            ..
                        } if cfg.user.is_some() && !logged_in_again => {
                            logged_in_again = true;
                            *self.inner.token.lock().expect("token lock poisoned") = None;
                            self.drop_conn(&conn).await;
                        }
                        Response::Error { code, kv, message } => {
                            return Err(match (code, kv) {
                                (ErrorCode::Kv, Some(KvError::StaleSequence)) if maybe_sent => {
                                    ClientError::Indeterminate {
                                        attempts,
                                        last: format!(
                                            "retry answered StaleSequence ({message}); {last}"
                                        ),
                                    }
                                }
                                (code, kv) => ClientError::from_answer(code, kv, message),
                            });
                        }
                        Response::Written {
                            result: WriteResult::Failed(KvError::StaleSequence),
                            ..
                        } if maybe_sent => {
                            return Err(ClientError::Indeterminate {
                                attempts,
                                last: format!("retry answered StaleSequence; {last}"),
                            })
                        }
                        other => return Ok(other),
                    }
                }
            }
        }
    }

    async fn drop_conn(&self, conn: &Arc<Mux>) {
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// The client error of a definite refusal.
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(Duration::from_millis(500))
}

async fn sleep_until_deadline(d: Duration, deadline: Instant) {
    let wake = (Instant::now() + d).min(deadline);
    async_io::Timer::at(wake).await;
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
