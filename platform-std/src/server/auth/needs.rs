//! Who asks and what a request needs: the [`Principal`] a connection proved, the permission
//! each request needs ([`need`]), why one is refused, and which requests and watch events
//! would show the auth records themselves.

use shoal_client::protocol::{Access, Request, Response, WriteOp};
use shoal_kv::in_subtree;

use super::{AuthState, AUTH_DIR};

/// Who a connection speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// A user who logged in (with a password or a token) until `expires_ms`, in password
    /// epoch `epoch`.
    Token {
        /// The user.
        user: String,
        /// The user's epoch when the token was issued.
        epoch: u64,
        /// Wall-clock ms after which the login is over.
        expires_ms: u64,
    },
    /// The user a verified client certificate names by its CN: it stays valid as long as the
    /// user exists (the certificate's own validity was checked by TLS).
    Certificate {
        /// The user.
        user: String,
    },
}

impl Principal {
    /// Client-certificate authentication: the connection whose TLS handshake verified a
    /// client certificate against `--trusted-ca-file` (`--client-cert-auth`) speaks for the
    /// user its CN names (set by the client port once the handshake is done). Call it only
    /// with a CN that TLS verified.
    pub fn from_verified_cn(cn: &str) -> Principal {
        Principal::Certificate {
            user: cn.to_string(),
        }
    }

    /// The user's name.
    pub fn user(&self) -> &str {
        match self {
            Principal::Token { user, .. } | Principal::Certificate { user } => user,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No valid user (answered with `AuthFailed`).
    AuthFailed(String),
    /// The user lacks the permission (answered with `PermissionDenied`).
    Denied(String),
}

/// What a request needs before it runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Nothing (health, a node's status: node-local facts that monitoring reads, no data;
    /// login).
    Nothing,
    /// Any user who logged in (member and group lists, watches: their events are filtered
    /// one by one).
    User,
    /// The `root` role.
    Root,
    /// `Read` or `Write` on each key.
    Keys(Access, Vec<&'a [u8]>),
    /// `Read` on a directory's whole subtree (List).
    Subtree(&'a [u8]),
    /// A transaction: `Read` on every key it compares (a compare tells what the key holds),
    /// `Write` on every key of either branch.
    Txn {
        /// The compared keys.
        reads: Vec<&'a [u8]>,
        /// The keys of both branches.
        writes: Vec<&'a [u8]>,
    },
}

/// What a write needs: `Write` on every key it touches (every key of a batch).
fn write_need(op: &WriteOp) -> Need<'_> {
    let keys = match op {
        WriteOp::Txn {
            compares,
            success,
            failure,
        } => {
            return Need::Txn {
                reads: compares.iter().map(|c| c.key()).collect(),
                writes: success.iter().chain(failure).map(|w| w.key()).collect(),
            }
        }
        WriteOp::Put { key, .. }
        | WriteOp::Remove { key }
        | WriteOp::Mkdir { key }
        | WriteOp::CompareAndSet { key, .. }
        | WriteOp::PutTemp { key, .. }
        | WriteOp::MakeTempDir { key, .. }
        | WriteOp::UpdateTtl { key, .. }
        | WriteOp::TryLock { key, .. }
        | WriteOp::Unlock { key }
        | WriteOp::UpdateLockLease { key, .. }
        | WriteOp::PutTempLease { key, .. }
        | WriteOp::MakeTempDirLease { key, .. }
        | WriteOp::TryLockLease { key, .. } => vec![key.as_slice()],
        // Operator overrides act on another session's node or lock (issue: root only).
        WriteOp::ForceRemove { .. } | WriteOp::ForceUnlock { .. } => return Need::Root,
        // A lease names no key: any user may take one and keep it alive (each is bounded by
        // --kv-max-leases). Revoking one removes every node tied to it, keys the user may not
        // be allowed to write, so it needs root; a user's own lease ends when it stops
        // keeping it alive.
        WriteOp::LeaseGrant { .. } | WriteOp::LeaseKeepAlive { .. } => return Need::User,
        WriteOp::LeaseRevoke { .. } => return Need::Root,
        WriteOp::BatchPut { pairs } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
        WriteOp::BatchRemove { keys } => keys.iter().map(|k| k.as_slice()).collect(),
    };
    Need::Keys(Access::Write, keys)
}

/// What `request` needs while auth is enabled.
pub fn need(request: &Request) -> Need<'_> {
    match request {
        Request::Health | Request::Status | Request::NodeStatus | Request::Authenticate(_) => {
            Need::Nothing
        }
        // The leases and the names of the keys tied to one (not their values).
        Request::Leases { .. } => Need::User,
        // A snapshot holds every key; an abort changes the membership.
        Request::SnapshotSave { .. } | Request::AbortMemberChange => Need::Root,
        Request::MemberList
        | Request::GroupList
        | Request::Unwatch { .. }
        | Request::Watch { .. } => Need::User,
        Request::Auth(op) if op.is_read() => Need::User,
        Request::Auth(_)
        | Request::ChangeMembers(_)
        | Request::TransferLeader { .. }
        | Request::Snapshot
        | Request::GroupCreate { .. }
        | Request::GroupCreatePerNode { .. }
        | Request::GroupRemove => Need::Root,
        Request::Write { op, .. } => write_need(op),
        Request::Get { key, .. } => Need::Keys(Access::Read, vec![key.as_slice()]),
        Request::BatchGet { keys, .. } => {
            Need::Keys(Access::Read, keys.iter().map(|k| k.as_slice()).collect())
        }
        Request::List { key, .. } => Need::Subtree(key),
    }
}

/// Whether `key` lies in the auth subtree. Listing `__shoal` shows that `auth` exists, nothing
/// of what it holds.
fn auth_secret(key: &[u8]) -> bool {
    in_subtree(key, AUTH_DIR.as_bytes())
}

/// A read of the auth subtree, which no client may make (auth on or off).
pub fn reads_auth_records(request: &Request) -> bool {
    match request {
        Request::Get { key, .. } | Request::List { key, .. } => auth_secret(key),
        Request::BatchGet { keys, .. } => keys.iter().any(|k| auth_secret(k)),
        _ => false,
    }
}

/// Whether a watch may deliver an event of `key` to a connection with `who`.
pub fn event_visible(
    state: &AuthState,
    who: Option<&Principal>,
    now_wall_ms: u64,
    key: &[u8],
) -> bool {
    if auth_secret(key) {
        return false;
    }
    if !state.enabled() {
        return true;
    }
    match who.map(|p| state.valid_user(p, now_wall_ms)) {
        Some(Ok(user)) => state.may(user, Access::Read, key),
        _ => false,
    }
}

/// A lease answer names only the keys tied to a lease that `who` may read (all of them while
/// auth is off, for root, or none of the auth records): a lease is anyone's to look at, the
/// names under it are not. `tied` still counts them all.
pub fn hide_unreadable_lease_keys(
    answer: &mut Response,
    state: &AuthState,
    who: Option<&Principal>,
    now_wall_ms: u64,
) {
    if let Response::Leases { leases, .. } = answer {
        for lease in leases {
            lease
                .keys
                .retain(|k| event_visible(state, who, now_wall_ms, k));
        }
    }
}
