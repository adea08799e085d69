//! The client protocol: what applications, `shoalctl` and `shoal-bench` send to a `shoald`
//! client port, and what comes back.
//!
//! Every message is one record of [`shoal_core::record`] (length, version, body, CRC-32C) whose
//! body is postcard of a [`RequestFrame`] or [`ResponseFrame`]. A connection carries any number
//! of requests in flight (pipelining); each answer echoes its request's `id`. Watch events arrive
//! as extra [`ResponseFrame`]s carrying the id of the `Watch` request that opened them.
//!
//! Writes carry an exactly-once session (`client_id`, `seq`): a client that did not get an
//! answer sends the *same* request again (to any node) and receives the original answer.
//!
//! Id 0 is never a request's: a frame of id 0 is about the connection itself. The server
//! sends one before it closes a connection it will not serve (`Unavailable`: too many
//! connections, nothing read) or can no longer trust (`Error`: a damaged, oversized or
//! unfinished frame).
//!
//! Every answer falls in one of three classes, which `shoalctl` turns into exit codes:
//! definite (it happened, or it certainly did not: [`Response::Error`]),
//! [`Response::NotLeader`] / [`Response::Unavailable`] (it did not happen; try elsewhere or
//! later), and — on the client side only — *indeterminate* (sent, no answer).

use serde::{Deserialize, Serialize};
use shoal_core::record;
use shoal_core::{GroupId, LogIndex, NodeId, Term};
/// DtKV's types that answers carry, so that a client needs no dependency on shoal-kv.
pub use shoal_kv::{Cmp, KvError, NodeKind, TxnEffect, WriteResult};

/// Version of this protocol; a server refuses frames of another major version with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest request or response body accepted (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// A request and its correlation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Protocol version of the sender.
    pub version: u16,
    /// Chosen by the client; echoed in the answer.
    pub id: u64,
    /// The Raft group the request is for (0 is the default group).
    pub group: GroupId,
    /// What is asked.
    pub request: Request,
}

impl RequestFrame {
    /// A request of this protocol version, with id `id`, for group `group`.
    pub fn new(id: u64, group: GroupId, request: Request) -> RequestFrame {
        RequestFrame {
            version: PROTOCOL_VERSION,
            id,
            group,
            request,
        }
    }
}

/// An answer (or a watch event) and the id of the request it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// The answer.
    pub response: Response,
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ReadMode {
    /// Linearizable through ReadIndex (works on any node; followers ask the leader).
    #[default]
    Linearizable,
    /// Linearizable through the leader lease (leader only; cheaper, relies on bounded clock drift).
    Lease,
    /// From this node's applied state, possibly stale.
    Local,
}

/// A DtKV write, owned (the server turns it into a [`shoal_kv::Command`] and stamps the time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOp {
    /// Set a value.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove a value, temporary node, or empty directory.
    Remove {
        /// Key.
        key: Vec<u8>,
    },
    /// Create a directory.
    Mkdir {
        /// Key.
        key: Vec<u8>,
    },
    /// Several puts in one log entry.
    BatchPut {
        /// Key/value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// Several removes in one log entry.
    BatchRemove {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// Compare-and-set (`expect: None` means "must not exist").
    CompareAndSet {
        /// Key.
        key: Vec<u8>,
        /// Expected current value.
        expect: Option<Vec<u8>>,
        /// New value.
        value: Vec<u8>,
    },
    /// A temporary value owned by the session.
    PutTemp {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// A temporary directory owned by the session.
    MakeTempDir {
        /// Key.
        key: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// A new TTL for a temporary node (owner only).
    UpdateTtl {
        /// Key.
        key: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
    /// Acquire a lock (optionally waiting in its queue).
    TryLock {
        /// Lock key.
        key: Vec<u8>,
        /// Lease once acquired.
        lease_ms: u64,
        /// How long to wait in the queue (0: fail at once if held).
        wait_ms: u64,
    },
    /// Release a lock (or leave its queue).
    Unlock {
        /// Lock key.
        key: Vec<u8>,
    },
    /// Extend a held lock's lease.
    UpdateLockLease {
        /// Lock key.
        key: Vec<u8>,
        /// New lease from now.
        lease_ms: u64,
    },
    /// A transaction: if every compare holds, apply `success`, else `failure`; a branch is
    /// applied whole or not at all, in one log entry. Answered with
    /// [`WriteResult::Txn`] or [`WriteResult::TxnAborted`].
    Txn {
        /// The conditions, read before anything changes.
        compares: Vec<TxnCompare>,
        /// Applied when every compare holds.
        success: Vec<TxnWrite>,
        /// Applied otherwise.
        failure: Vec<TxnWrite>,
    },
    /// An operator's override: remove a value, a temporary node of any session or an empty
    /// directory. The server allows it only to a connection its admin check lets through (see
    /// the server's `admin_allowed`) and logs who asked.
    ForceRemove {
        /// Key.
        key: Vec<u8>,
    },
    /// An operator's override: release a lock whoever holds it (the next waiter gets it). The
    /// server allows it only to a connection its admin check lets through and logs who asked.
    ForceUnlock {
        /// Lock key.
        key: Vec<u8>,
    },
    /// Grant a lease; answered with [`WriteResult::Lease`], whose id is the grant's raft index.
    LeaseGrant {
        /// Time to live, renewed whole by each keep-alive.
        ttl_ms: u64,
    },
    /// Renew a lease for its TTL from now ([`WriteResult::Lease`]).
    LeaseKeepAlive {
        /// The lease.
        id: u64,
    },
    /// End a lease now, with every node and lock tied to it ([`WriteResult::Expired`]).
    LeaseRevoke {
        /// The lease.
        id: u64,
    },
    /// A temporary value that lives as long as a lease (any session naming the lease may
    /// change it).
    PutTempLease {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// The lease.
        lease: u64,
    },
    /// A temporary directory that lives as long as a lease.
    MakeTempDirLease {
        /// Key.
        key: Vec<u8>,
        /// The lease.
        lease: u64,
    },
    /// A lock held as long as a lease lives; `LockHeld` at once if another holds it.
    TryLockLease {
        /// Lock key.
        key: Vec<u8>,
        /// The lease.
        lease: u64,
    },
}

/// One condition of a transaction ([`shoal_kv::Compare`], owned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnCompare {
    /// The key holds a value (plain or temporary) equal to `value`.
    Value {
        /// Key.
        key: Vec<u8>,
        /// Expected value.
        value: Vec<u8>,
    },
    /// A node of any kind has this key.
    Exists {
        /// Key.
        key: Vec<u8>,
    },
    /// No node has this key.
    Absent {
        /// Key.
        key: Vec<u8>,
    },
    /// The node's update index relates to `index` as `cmp` says (a missing key counts as 0).
    UpdateIndex {
        /// Key.
        key: Vec<u8>,
        /// How to compare.
        cmp: Cmp,
        /// The index to compare with.
        index: LogIndex,
    },
}

impl TxnCompare {
    /// The key it compares.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnCompare::Value { key, .. }
            | TxnCompare::Exists { key }
            | TxnCompare::Absent { key }
            | TxnCompare::UpdateIndex { key, .. } => key,
        }
    }

    /// The compare as DtKV takes it, borrowing this one's bytes.
    pub fn as_kv(&self) -> shoal_kv::Compare<'_> {
        match self {
            TxnCompare::Value { key, value } => shoal_kv::Compare::Value { key, value },
            TxnCompare::Exists { key } => shoal_kv::Compare::Exists { key },
            TxnCompare::Absent { key } => shoal_kv::Compare::Absent { key },
            TxnCompare::UpdateIndex { key, cmp, index } => shoal_kv::Compare::UpdateIndex {
                key,
                cmp: *cmp,
                index: *index,
            },
        }
    }
}

/// One operation of a transaction's branch ([`shoal_kv::TxnOp`], owned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnWrite {
    /// Create or replace a value.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove a value, a temporary node or an empty directory.
    Remove {
        /// Key.
        key: Vec<u8>,
    },
    /// Create a directory (unchanged if it already is one).
    Mkdir {
        /// Key.
        key: Vec<u8>,
    },
    /// Create or replace a temporary value owned by the session.
    PutTemp {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Time to live.
        ttl_ms: u64,
    },
}

impl TxnWrite {
    /// The key it writes.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnWrite::Put { key, .. }
            | TxnWrite::Remove { key }
            | TxnWrite::Mkdir { key }
            | TxnWrite::PutTemp { key, .. } => key,
        }
    }

    /// The operation as DtKV takes it, borrowing this one's bytes.
    pub fn as_kv(&self) -> shoal_kv::TxnOp<'_> {
        match self {
            TxnWrite::Put { key, value } => shoal_kv::TxnOp::Put { key, value },
            TxnWrite::Remove { key } => shoal_kv::TxnOp::Remove { key },
            TxnWrite::Mkdir { key } => shoal_kv::TxnOp::Mkdir { key },
            TxnWrite::PutTemp { key, value, ttl_ms } => shoal_kv::TxnOp::PutTemp {
                key,
                value,
                ttl_ms: *ttl_ms,
            },
        }
    }

    /// Bytes of keys and values it carries.
    pub fn payload_len(&self) -> usize {
        match self {
            TxnWrite::Put { key, value } | TxnWrite::PutTemp { key, value, .. } => {
                key.len() + value.len()
            }
            TxnWrite::Remove { key } | TxnWrite::Mkdir { key } => key.len(),
        }
    }
}

/// A membership change request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Add a node (as observer, or as voter through an observer phase).
    Add {
        /// The new node's id.
        id: NodeId,
        /// Its raft address (`host:port`).
        raft_addr: String,
        /// Keep it an observer (never promote).
        observer: bool,
    },
    /// Make an observer a voter.
    Promote {
        /// The observer's id.
        id: NodeId,
    },
    /// Remove a node.
    Remove {
        /// The node's id.
        id: NodeId,
    },
}

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A write with its exactly-once session (`client_id` 0: no session).
    Write {
        /// Session id (a random u64 the client picks once).
        client_id: u64,
        /// Sequence number, increasing per new write of the session.
        seq: u64,
        /// The write.
        op: WriteOp,
    },
    /// Read one key.
    Get {
        /// Key.
        key: Vec<u8>,
        /// How to serve it.
        mode: ReadMode,
    },
    /// Read several keys at one index.
    BatchGet {
        /// Keys.
        keys: Vec<Vec<u8>>,
        /// How to serve it.
        mode: ReadMode,
    },
    /// List a directory's children.
    List {
        /// Directory key ("" for the root).
        key: Vec<u8>,
        /// How to serve it.
        mode: ReadMode,
    },
    /// Watch keys or directories (a directory watch sees its subtree) from `from_index`
    /// (0: from now). Events stream back under this request's id until `Unwatch`.
    Watch {
        /// Keys or directories.
        keys: Vec<Vec<u8>>,
        /// First raft index wanted.
        from_index: LogIndex,
    },
    /// Stop the watch opened by request `watch_id`.
    Unwatch {
        /// The id of the `Watch` request.
        watch_id: u64,
    },
    /// This node's status for the group.
    Status,
    /// The group's members.
    MemberList,
    /// Change membership (leader only; the server runs the joint-consensus steps).
    ChangeMembers(MemberChange),
    /// Move leadership to another voter.
    TransferLeader {
        /// The target node.
        to: NodeId,
    },
    /// Take a snapshot now on this node.
    Snapshot,
    /// The groups this node hosts.
    GroupList,
    /// The per-node group creation of earlier servers, which named each member's address.
    /// Kept in its place so that the variants after it keep their wire codes; a server answers
    /// it with [`ErrorCode::BadRequest`] (groups are defined for the whole cluster by
    /// [`Request::GroupCreate`]).
    GroupCreatePerNode {
        /// Members as (id, raft address).
        members: Vec<(NodeId, String)>,
    },
    /// Remove the request's group from the cluster: its tombstone goes through group 0's log
    /// (sent to group 0's leader; others answer `NotLeader`), and every member stops the group
    /// and deletes its data after a grace period. Group 0 cannot be removed.
    GroupRemove,
    /// Define the request's group for the whole cluster with these voters (node ids of group
    /// 0's members): the definition goes through group 0's log (sent to group 0's leader;
    /// others answer `NotLeader`) and every listed node creates the group with exactly these
    /// voters. Repeating an existing definition succeeds; another one for the same id is a
    /// `Conflict`, and so is an id of a removed group.
    GroupCreate {
        /// The voters, by node id.
        members: Vec<NodeId>,
    },
    /// Whether this node can vouch for every group it hosts, and why not ([`HealthInfo`]).
    Health,
    /// This node's whole view of the group for `shoalctl status --cluster`
    /// ([`Response::NodeStatus`]): status, addresses, version, disk use and health.
    NodeStatus,
    /// Leave a joint configuration the group is stuck in back to the configuration before it
    /// (leader only): the membership change in progress, if any, is abandoned.
    AbortMemberChange,
    /// One chunk of a snapshot of this node, for `shoalctl snapshot save`. With `index` 0 the
    /// node first takes a snapshot and answers with the first chunk of it; the client then
    /// asks for the chunks after it by that snapshot's index and a byte offset into its data.
    /// Each answer holds at most `max_bytes` (and at most the server's
    /// `--client-max-answer-mb`), so both sides hold one chunk at a time.
    SnapshotSave {
        /// The snapshot's index (0: take one now and start at offset 0).
        index: LogIndex,
        /// Byte offset into the snapshot's DtKV data.
        offset: u64,
        /// Most data bytes wanted in this answer.
        max_bytes: u64,
    },
    /// The live leases (`id` 0), or lease `id` with the keys tied to it: answered with
    /// [`Response::Leases`] (a lease that is not live is a `Kv` error, `LeaseNotFound`).
    Leases {
        /// The lease, or 0 for all of them.
        id: u64,
        /// How to serve it.
        mode: ReadMode,
    },
    /// Prove who this connection speaks for; every later request on it is checked against
    /// that user's roles (while auth is enabled). Answered with [`Response::Token`] or
    /// [`ErrorCode::AuthFailed`]. Any node takes it.
    Authenticate(Credentials),
    /// Manage users, roles and the auth switch ([`AuthOp`]). Changes go through group 0's
    /// log (sent to group 0's leader; others answer `NotLeader`); once auth is enabled they
    /// need the `root` role.
    Auth(AuthOp),
}

/// A lease as [`Response::Leases`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Its id (the raft index of its grant).
    pub id: LogIndex,
    /// Its time to live.
    pub ttl_ms: u64,
    /// When it ends unless kept alive (leader clock ms).
    pub deadline_ms: u64,
    /// What is left of it at the read: `deadline_ms` minus the replicated clock (the time of
    /// the last write applied).
    pub remaining_ms: u64,
    /// Nodes and locks tied to it.
    pub tied: u32,
    /// Their keys (asked for one lease only; empty in a list of all).
    pub keys: Vec<Vec<u8>>,
}

/// How a connection proves its user ([`Request::Authenticate`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credentials {
    /// A user's name and password: answered with a fresh token.
    Password {
        /// The user.
        user: String,
        /// The password (never logged).
        password: String,
    },
    /// A token an earlier login returned (by any node of the cluster).
    Token(Vec<u8>),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs and error messages: never the secret.
        match self {
            Credentials::Password { user, .. } => write!(f, "Password {{ user: {user:?} }}"),
            Credentials::Token(_) => write!(f, "Token(..)"),
        }
    }
}

/// Bytes that prove who a client is (a login token): encoded as the bytes themselves, never
/// shown by `Debug`, so an answer printed in a log or an error does not leak it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretBytes(pub Vec<u8>);

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

/// What a permission allows on its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// Get, BatchGet, List and watch events.
    Read,
    /// Every write, temporary nodes and locks.
    Write,
    /// Both.
    ReadWrite,
}

impl Access {
    /// Whether a permission of this kind allows `need` (`Read` or `Write`).
    pub fn allows(self, need: Access) -> bool {
        self == Access::ReadWrite || self == need
    }

    /// `read`, `write` or `readwrite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "readwrite",
        }
    }
}

impl std::str::FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Access, String> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            "readwrite" => Ok(Access::ReadWrite),
            _ => Err(format!(
                "permission {s:?} is not one of read, write, readwrite"
            )),
        }
    }
}

/// One permission of a role: `access` on `key`, or on its whole DtKV subtree with `prefix`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What it allows.
    pub access: Access,
    /// The key (a directory's key with `prefix`; "" with `prefix` is every key).
    pub key: Vec<u8>,
    /// The key's subtree (the key and everything below it), not the key alone.
    pub prefix: bool,
}

/// A user as `user get` shows it (never its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// Its roles, in name order.
    pub roles: Vec<String>,
}

/// A role as `role get` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The name.
    pub name: String,
    /// Its permissions, in the order they were granted.
    pub permissions: Vec<Permission>,
}

/// User, role and auth administration ([`Request::Auth`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    /// Turn auth on (the user `root` must exist).
    Enable,
    /// Turn auth off.
    Disable,
    /// Whether auth is on ([`Response::AuthStatus`]).
    Status,
    /// Add a user.
    UserAdd {
        /// The name: 1 to 64 of `A-Z a-z 0-9 _ -`.
        name: String,
        /// The password (hashed by the server before it is proposed; never stored).
        password: String,
    },
    /// Delete a user.
    UserDelete {
        /// The name.
        name: String,
    },
    /// Every user's name ([`Response::Names`]).
    UserList,
    /// One user ([`Response::User`]).
    UserGet {
        /// The name.
        name: String,
    },
    /// Change a user's password (its tokens stop working).
    UserPasswd {
        /// The name.
        name: String,
        /// The new password.
        password: String,
    },
    /// Grant a role to a user.
    UserGrantRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
    /// Revoke a role from a user.
    UserRevokeRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
    /// Add a role (without permissions).
    RoleAdd {
        /// The name: 1 to 64 of `A-Z a-z 0-9 _ -`.
        name: String,
    },
    /// Delete a role that no user holds.
    RoleDelete {
        /// The name.
        name: String,
    },
    /// Every role's name ([`Response::Names`]).
    RoleList,
    /// One role ([`Response::Role`]).
    RoleGet {
        /// The name.
        name: String,
    },
    /// Add a permission to a role.
    RoleGrantPermission {
        /// The role.
        name: String,
        /// The permission.
        permission: Permission,
    },
    /// Remove a role's permission on `key` (with `prefix`: its subtree permission).
    RoleRevokePermission {
        /// The role.
        name: String,
        /// The key.
        key: Vec<u8>,
        /// Whether the subtree permission is meant.
        prefix: bool,
    },
}

impl std::fmt::Debug for AuthOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs and error messages: never a password.
        match self {
            AuthOp::UserAdd { name, .. } => write!(f, "UserAdd {{ name: {name:?} }}"),
            AuthOp::UserPasswd { name, .. } => write!(f, "UserPasswd {{ name: {name:?} }}"),
            AuthOp::Enable => write!(f, "Enable"),
            AuthOp::Disable => write!(f, "Disable"),
            AuthOp::Status => write!(f, "Status"),
            AuthOp::UserDelete { name } => write!(f, "UserDelete({name:?})"),
            AuthOp::UserList => write!(f, "UserList"),
            AuthOp::UserGet { name } => write!(f, "UserGet({name:?})"),
            AuthOp::UserGrantRole { name, role } => write!(f, "UserGrantRole({name:?}, {role:?})"),
            AuthOp::UserRevokeRole { name, role } => {
                write!(f, "UserRevokeRole({name:?}, {role:?})")
            }
            AuthOp::RoleAdd { name } => write!(f, "RoleAdd({name:?})"),
            AuthOp::RoleDelete { name } => write!(f, "RoleDelete({name:?})"),
            AuthOp::RoleList => write!(f, "RoleList"),
            AuthOp::RoleGet { name } => write!(f, "RoleGet({name:?})"),
            AuthOp::RoleGrantPermission { name, permission } => {
                write!(f, "RoleGrantPermission({name:?}, {permission:?})")
            }
            AuthOp::RoleRevokePermission { name, key, prefix } => write!(
                f,
                "RoleRevokePermission({name:?}, {:?}, prefix {prefix})",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

impl AuthOp {
    /// Whether the operation only reads the auth state (any node answers it from its own).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            AuthOp::Status
                | AuthOp::UserList
                | AuthOp::UserGet { .. }
                | AuthOp::RoleList
                | AuthOp::RoleGet { .. }
        )
    }
}

/// A node as reads return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Full key.
    pub key: Vec<u8>,
    /// Kind.
    pub kind: NodeKind,
    /// Value (empty for directories and locks).
    pub value: Vec<u8>,
    /// Raft index that created it.
    pub create_index: LogIndex,
    /// Raft index of its last change.
    pub update_index: LogIndex,
    /// Owner session of a temporary node or holder of a lock.
    pub owner: u64,
    /// TTL or lease deadline (leader clock ms).
    pub deadline_ms: u64,
    /// Fencing token of a lock's grant.
    pub fence: u64,
    /// Children of a directory or waiters of a lock.
    pub count: u32,
}

/// One change a watch reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Raft index of the change.
    pub index: LogIndex,
    /// What happened (DtKV's event kind, as text: `put`, `remove`, `expire`, ...).
    pub kind: String,
    /// The key.
    pub key: Vec<u8>,
    /// The new value (empty for removals).
    pub value: Vec<u8>,
}

/// A member of a group as status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Node id.
    pub id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// `voter` or `observer`.
    pub role: String,
    /// Match index as the leader sees it (leader only).
    pub match_index: Option<LogIndex>,
    /// Client address, empty when the member's record does not give one.
    pub client_addr: String,
}

/// A node's view of one group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This node.
    pub node_id: NodeId,
    /// The group.
    pub group: GroupId,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `observer`.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// Known leader (0: none).
    pub leader: NodeId,
    /// Commit index.
    pub commit: LogIndex,
    /// Applied index.
    pub applied: LogIndex,
    /// Last log index.
    pub last_index: LogIndex,
    /// Snapshot index.
    pub snapshot_index: LogIndex,
    /// Members with their roles (and match index on the leader).
    pub members: Vec<MemberInfo>,
}

/// A node's health, as `/health` and `shoalctl health` report it: healthy when it is running,
/// every group it hosts has a leader it heard from within an election timeout (a leader: one a
/// quorum acknowledged within the lease window), and no alarm is raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// This node.
    pub node_id: NodeId,
    /// Whether it is healthy (see above).
    pub healthy: bool,
    /// False once it is shutting down.
    pub running: bool,
    /// Each group it hosts.
    pub groups: Vec<GroupHealth>,
    /// Alarms raised (each makes the node unhealthy).
    pub alarms: Vec<AlarmInfo>,
}

impl HealthInfo {
    /// One line per reason the node is unhealthy, naming the group or alarm (empty when it is
    /// healthy).
    pub fn reasons(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.running {
            out.push("shutting down".to_string());
        }
        if self.groups.is_empty() {
            out.push("hosts no group".to_string());
        }
        for g in self.groups.iter().filter(|g| !g.healthy) {
            out.push(format!("group {}: {} ({})", g.group, g.reason, g.detail));
        }
        for a in &self.alarms {
            out.push(format!("alarm {}: {}", a.name, a.detail));
        }
        out
    }
}

/// One group in [`HealthInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHealth {
    /// The group.
    pub group: GroupId,
    /// Whether this node can vouch for it.
    pub healthy: bool,
    /// This node's role in it.
    pub role: String,
    /// The leader it knows (0: none).
    pub leader: NodeId,
    /// `ok`, or why not: `not_member` (removed, or not yet added), `no_leader`,
    /// `leader_silent` (not heard from within an election timeout), `no_quorum` (a leader no
    /// quorum acknowledged within the lease window).
    pub reason: String,
    /// The same in words, with the times involved.
    pub detail: String,
}

/// A raised alarm in [`HealthInfo`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmInfo {
    /// `no_space` (the disk is full, or under the reserve) or `quota` (the data dir reached
    /// its quota).
    pub name: String,
    /// What it means, in words.
    pub detail: String,
}

/// Machine-readable error classes of [`Response::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// DtKV refused the operation (not found, CAS mismatch, lock held...): see `kv`.
    Kv,
    /// The request is malformed or names something that cannot exist.
    BadRequest,
    /// The protocol version is not supported.
    UnsupportedVersion,
    /// The group does not exist on this node.
    UnknownGroup,
    /// The operation is not allowed in the current state (e.g. a membership change in progress).
    Conflict,
    /// An internal error (the node logs the detail).
    Internal,
    /// The node's disk is full (or its data dir at its quota): the write was refused and
    /// nothing of it was applied. The node raised its space alarm; it keeps serving reads and
    /// takes writes again by itself once space returns.
    NoSpace,
    /// The request passed one of the server's limits (keys in a batch, bytes of an answer or
    /// a request, watches on a connection); the message names the limit and its flag. Split
    /// the request: sent again as it is, it is refused again.
    LimitExceeded,
    /// Auth is enabled and the connection's user may not do this (a missing role or
    /// permission, or an auth record no client may read).
    PermissionDenied,
    /// Auth is enabled and the connection has no valid user: no login, a wrong name or
    /// password, or a token that expired or no longer matches its user (log in again).
    AuthFailed,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A write was applied at `index`; `result` is DtKV's answer (which may be a refusal such as
    /// a CAS mismatch: definite either way).
    Written {
        /// Raft index of the write.
        index: LogIndex,
        /// DtKV's answer.
        result: WriteResult,
    },
    /// A read of one key (`None`: not found), at `index`.
    Node {
        /// Applied index the read was served at.
        index: LogIndex,
        /// The node.
        node: Option<NodeInfo>,
    },
    /// A read of several keys, in request order.
    Nodes {
        /// Applied index the read was served at.
        index: LogIndex,
        /// One entry per requested key.
        nodes: Vec<Option<NodeInfo>>,
    },
    /// A directory listing.
    Children {
        /// Applied index the read was served at.
        index: LogIndex,
        /// The children.
        children: Vec<NodeInfo>,
    },
    /// A watch was opened; events follow under the same id.
    WatchStarted,
    /// A change seen by a watch.
    Event(WatchEvent),
    /// The watch asked for history the node no longer keeps: re-read and watch from `oldest`.
    WatchCompacted {
        /// The oldest index still available.
        oldest: LogIndex,
    },
    /// Status of the group on this node.
    Status(StatusInfo),
    /// Members of the group.
    Members(Vec<MemberInfo>),
    /// Groups hosted on this node.
    Groups(Vec<GroupId>),
    /// The request was done (membership change, transfer, snapshot, group op, unwatch).
    Done {
        /// An index that reflects it, if any (e.g. the snapshot index).
        index: LogIndex,
    },
    /// This node cannot serve the request; the leader is named if known. Nothing happened.
    NotLeader {
        /// The leader's id (0: unknown).
        leader: NodeId,
        /// The leader's client address, if known.
        leader_addr: Option<String>,
    },
    /// The node is busy, shutting down, or cannot reach a quorum. Nothing happened; retry.
    Unavailable {
        /// Why, in words.
        message: String,
    },
    /// A definite failure.
    Error {
        /// The class.
        code: ErrorCode,
        /// DtKV's error when `code` is `Kv`.
        kv: Option<KvError>,
        /// What was wrong, in words.
        message: String,
    },
    /// This node's health (the answer to [`Request::Health`]).
    Health(HealthInfo),
    /// The watch fell behind — its connection held more unsent answers than the server
    /// allows — and was ended. Every event before `next` was sent; open the watch again with
    /// `from_index: next` to go on without a gap (while the node still keeps that history).
    WatchLagged {
        /// The first index not sent.
        next: LogIndex,
    },
    /// The answer to [`Request::NodeStatus`] (boxed: it is far larger than other answers; the
    /// box is not on the wire).
    NodeStatus(Box<NodeStatusInfo>),
    /// The answer to [`Request::SnapshotSave`] (boxed, as `NodeStatus`).
    SnapshotChunk(Box<SnapshotChunk>),
    /// Leases ([`Request::Leases`]), at applied index `index`.
    Leases {
        /// Applied index the read was served at.
        index: LogIndex,
        /// The leases, in grant order.
        leases: Vec<LeaseInfo>,
    },
    /// A login succeeded: the connection speaks for `user` from now on, and `token` proves it
    /// to any node of the cluster until `expires_ms`.
    Token {
        /// The user.
        user: String,
        /// Opaque; present it in [`Credentials::Token`].
        token: SecretBytes,
        /// Wall-clock ms (Unix epoch) after which no node takes it.
        expires_ms: u64,
    },
    /// Whether auth is enabled ([`AuthOp::Status`]).
    AuthStatus {
        /// On or off.
        enabled: bool,
    },
    /// User or role names, sorted.
    Names(Vec<String>),
    /// One user.
    User(UserInfo),
    /// One role.
    Role(RoleInfo),
}

/// One node's row of `shoalctl status --cluster`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusInfo {
    /// The node's view of the group.
    pub status: StatusInfo,
    /// Its raft address.
    pub raft_addr: String,
    /// Its client address.
    pub client_addr: String,
    /// Its build version (`shoald --version`).
    pub version: String,
    /// Bytes of the group's log segments on its disk.
    pub log_bytes: u64,
    /// Bytes of the group's snapshot files on its disk.
    pub snapshot_bytes: u64,
    /// Whether the group is in a joint configuration (a membership change between its
    /// prepare and commit steps).
    pub joint: bool,
    /// Its health.
    pub health: HealthInfo,
}

/// A chunk of a snapshot ([`Request::SnapshotSave`]), with what describes the whole snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// The cluster.
    pub cluster_id: u64,
    /// The node that serves it.
    pub node_id: NodeId,
    /// The group.
    pub group: GroupId,
    /// The last index the snapshot covers.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The membership in force at `index`.
    pub membership: shoal_core::membership::Membership,
    /// DtKV's digest of the state (0 when the node could not compute it).
    pub digest: u64,
    /// Bytes of DtKV data in the whole snapshot.
    pub data_bytes: u64,
    /// CRC-32C of the whole data.
    pub data_crc: u32,
    /// Where this chunk starts in the data.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The record framing is damaged or incomplete.
    Record(record::RecordError),
    /// The body does not decode as the expected message.
    Decode(postcard::Error),
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    TooLarge(usize),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Record(e) => write!(f, "bad frame: {e}"),
            FrameError::Decode(e) => write!(f, "frame body does not decode: {e}"),
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Append one framed message to `out`, serialized in place (no buffer of its own).
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    // Length and version first; postcard appends the body; the CRC goes last.
    out.extend_from_slice(&[0; 5]);
    if let Err(e) = postcard::to_extend(msg, Append(out)) {
        out.truncate(start);
        return Err(FrameError::Decode(e));
    }
    let body = out.len() - start - 5;
    if body > MAX_FRAME_BYTES {
        out.truncate(start);
        return Err(FrameError::TooLarge(body));
    }
    out[start..start + 4].copy_from_slice(&((body + 1) as u32).to_le_bytes());
    out[start + 4] = record::RECORD_VERSION;
    let crc = record::CRC32C.checksum(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends to a borrowed buffer (postcard takes its writer by value; on an error the buffer
/// keeps what it held).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// Total length of the frame at the front of `buf`, once its length field is there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    record::peek_len(buf)
}

/// Try to take one framed message from the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the message and the bytes it used.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    match record::peek_len(buf) {
        None => return Ok(None),
        Some(total) if total > MAX_FRAME_BYTES + record::RECORD_OVERHEAD => {
            return Err(FrameError::TooLarge(total))
        }
        Some(total) if buf.len() < total => return Ok(None),
        Some(_) => {}
    }
    let (body, used) = record::decode(buf).map_err(FrameError::Record)?;
    let msg = postcard::from_bytes(body).map_err(FrameError::Decode)?;
    Ok(Some((msg, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_stream() {
        let a = RequestFrame {
            version: PROTOCOL_VERSION,
            id: 7,
            group: 0,
            request: Request::Write {
                client_id: 9,
                seq: 1,
                op: WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
            },
        };
        let b = RequestFrame {
            version: PROTOCOL_VERSION,
            id: 8,
            group: 2,
            request: Request::Status,
        };
        let mut buf = Vec::new();
        encode(&a, &mut buf).unwrap();
        encode(&b, &mut buf).unwrap();
        // A partial frame asks for more bytes.
        assert!(decode::<RequestFrame>(&buf[..3]).unwrap().is_none());
        let (got_a, used) = decode::<RequestFrame>(&buf).unwrap().unwrap();
        assert_eq!(got_a, a);
        let (got_b, used_b) = decode::<RequestFrame>(&buf[used..]).unwrap().unwrap();
        assert_eq!(got_b, b);
        assert_eq!(used + used_b, buf.len());
    }

    #[test]
    fn corruption_is_reported_not_decoded() {
        let mut buf = Vec::new();
        encode(
            &ResponseFrame {
                id: 1,
                response: Response::Done { index: 3 },
            },
            &mut buf,
        )
        .unwrap();
        let mid = buf.len() / 2;
        buf[mid] ^= 0x40;
        assert!(matches!(
            decode::<ResponseFrame>(&buf),
            Err(FrameError::Record(_))
        ));
    }
}
