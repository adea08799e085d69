//! What a client asks ([`Request`]) and what the server answers ([`Response`]), with the
//! read modes, membership changes, nodes, watch events and snapshot chunks they carry.

use serde::{Deserialize, Serialize};
use shoal_core::{ClusterId, GroupId, LogIndex, NodeId, Term};

use super::{
    AuthOp, Credentials, HealthInfo, KvError, LeaseInfo, MemberInfo, NodeKind, NodeStatusInfo,
    RoleInfo, SecretBytes, StatusInfo, UserInfo, WriteOp, WriteResult,
};

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
    /// The request named another cluster than the node's own
    /// ([`RequestFrame::cluster`](super::RequestFrame)): nothing was done. The client reached
    /// the wrong address (a stale endpoint or member record); ask another node.
    WrongCluster,
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
        /// The cluster of the node that answered: a client following the redirect sends its
        /// requests for this cluster only ([`RequestFrame::cluster`](super::RequestFrame)).
        cluster: ClusterId,
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
