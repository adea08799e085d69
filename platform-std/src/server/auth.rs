//! Users, roles and permissions on DtKV paths: the records, the checks every client request
//! passes, and the tokens a login returns.
//!
//! The auth state lives in group 0's reserved subtree, next to the member and group records,
//! so the log replicates it, snapshots carry it and every member holds the same bytes:
//!
//! ```text
//! __shoal.auth.config          AuthConfig: enabled, and the key tokens are signed with
//! __shoal.auth.users.<name>    UserRecord: Argon2id hash (PHC string), roles, token epoch
//! __shoal.auth.roles.<name>    RoleRecord: permissions
//! ```
//!
//! Every value is a version byte and postcard, like the other records. The raft thread reads
//! the subtree again whenever group 0's DtKV says its system records changed, into an
//! [`AuthState`] that answers every check without touching DtKV. No client reads this subtree
//! through Get, List or watches, auth on or off: it holds the token key and the password hashes.
//!
//! Passwords are hashed by the node that takes the request, before it proposes the record,
//! so the state machine never hashes and every replica stores the same hash. This module never
//! logs a password, a hash or a token.

use std::collections::BTreeMap;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shoal_client::protocol::{Access, Permission, Request, RoleInfo, UserInfo, WriteOp};
use shoal_kv::in_subtree;

use crate::kvheap::HeapKv;

/// The auth subtree; no client request may read or watch into it.
pub const AUTH_DIR: &str = "__shoal.auth";
/// The switch and the token key.
pub const CONFIG_KEY: &str = "__shoal.auth.config";
/// One record per user.
pub const USERS_DIR: &str = "__shoal.auth.users";
/// One record per role.
pub const ROLES_DIR: &str = "__shoal.auth.roles";
/// The user `auth enable` needs, and the role every admin operation needs. The role is
/// built in (it allows everything and cannot be changed); the user `root` always holds it.
pub const ROOT: &str = "root";
/// Longest user or role name.
pub const MAX_NAME_BYTES: usize = 64;
/// The version byte every auth record starts with.
const AUTH_RECORD_VERSION: u8 = 1;
/// The version byte of a token.
const TOKEN_VERSION: u8 = 1;
/// Bytes of the HMAC-SHA256 tag at a token's end.
const TAG_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// `__shoal.auth.config`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// Whether requests are checked.
    pub enabled: bool,
    /// The HMAC-SHA256 key of tokens, drawn afresh by the node that proposes `auth enable`
    /// (so disabling and enabling again voids every token issued before).
    pub token_key: [u8; 32],
}

/// `__shoal.auth.users.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The Argon2id hash in PHC string form (salt and parameters included).
    pub hash: String,
    /// Role names, sorted, without duplicates.
    pub roles: Vec<String>,
    /// Drawn afresh at every password change: a token names the epoch it was issued in, so a
    /// new password (or a deleted and re-added user) voids the old tokens.
    pub epoch: u64,
}

/// `__shoal.auth.roles.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRecord {
    /// Permissions in the order they were granted (a repeated grant replaces the earlier one).
    pub permissions: Vec<Permission>,
}

/// Encode an auth record: the version byte and postcard.
pub fn encode_record<T: Serialize>(record: &T) -> Vec<u8> {
    let mut out = vec![AUTH_RECORD_VERSION];
    out.extend(postcard::to_stdvec(record).expect("auth records serialize"));
    out
}

/// Decode an auth record; `None` for another version or bytes that do not decode.
pub fn decode_record<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    let (&v, rest) = bytes.split_first()?;
    if v != AUTH_RECORD_VERSION {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

/// `__shoal.auth.users.<name>`.
pub fn user_key(name: &str) -> String {
    format!("{USERS_DIR}.{name}")
}

/// `__shoal.auth.roles.<name>`.
pub fn role_key(name: &str) -> String {
    format!("{ROLES_DIR}.{name}")
}

/// A user or role name: 1 to [`MAX_NAME_BYTES`] of `A-Z a-z 0-9 _ -` (it is a DtKV key
/// segment, so no `.`).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} is not 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 _ -"
        ))
    }
}

/// Hash `password` with Argon2id (RustCrypto's `argon2`, its default parameters) and a fresh
/// salt. Slow on purpose: call it off the raft thread.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// Whether `password` matches the PHC string `hash`. Slow on purpose: off the raft thread.
pub fn verify_password(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A random u64 (a user's token epoch).
pub fn random_u64() -> Result<u64, String> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(u64::from_le_bytes(b))
}

/// A fresh token key.
pub fn random_key() -> Result<[u8; 32], String> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| format!("no randomness for the token key: {e}"))?;
    Ok(k)
}

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

/// Auth state as the raft thread holds it: read from group 0's DtKV after every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthState {
    /// The switch and the token key (`None`: auth was never enabled).
    pub config: Option<AuthConfig>,
    /// Users by name.
    pub users: BTreeMap<String, UserRecord>,
    /// Roles by name (the built-in `root` is not among them).
    pub roles: BTreeMap<String, RoleRecord>,
}

impl AuthState {
    /// Read the auth subtree of `kv`. A record that does not decode is logged and left out
    /// (a user without a record cannot log in; a role without one allows nothing).
    pub fn read(kv: &HeapKv) -> AuthState {
        let mut state = AuthState::default();
        if let Ok(v) = kv.get(CONFIG_KEY.as_bytes()) {
            state.config = decode_record(v.value);
            if state.config.is_none() {
                log::warn!("ignoring {CONFIG_KEY}: not an auth config record");
            }
        }
        state.users = read_dir(kv, USERS_DIR, "user");
        state.roles = read_dir(kv, ROLES_DIR, "role");
        state
    }

    /// Whether requests are checked.
    pub fn enabled(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.enabled)
    }

    /// Whether `user` holds the `root` role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// Every permission `user` holds through its roles.
    fn permissions<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Permission> + 'a {
        let roles = self
            .users
            .get(user)
            .map(|u| u.roles.as_slice())
            .unwrap_or(&[]);
        roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.permissions.iter())
    }

    /// Whether `user` may `need` (`Read` or `Write`) on `key`.
    pub fn may(&self, user: &str, need: Access, key: &[u8]) -> bool {
        self.is_root(user)
            || self.permissions(user).any(|p| {
                p.access.allows(need)
                    && if p.prefix {
                        in_subtree(key, &p.key)
                    } else {
                        p.key == key
                    }
            })
    }

    /// Whether `user` may read everything below (and at) `dir`: a subtree permission at or
    /// above it.
    pub fn may_read_subtree(&self, user: &str, dir: &[u8]) -> bool {
        self.is_root(user)
            || self
                .permissions(user)
                .any(|p| p.access.allows(Access::Read) && p.prefix && in_subtree(dir, &p.key))
    }

    /// The user `who` speaks for, if it is still valid: the user exists, and a login is not
    /// over and is of the user's current password.
    pub fn valid_user<'a>(&self, who: &'a Principal, now_wall_ms: u64) -> Result<&'a str, Refusal> {
        let user = who.user();
        let Some(rec) = self.users.get(user) else {
            return Err(Refusal::AuthFailed(format!(
                "user {user:?} does not exist (any more)"
            )));
        };
        if let Principal::Token {
            epoch, expires_ms, ..
        } = who
        {
            if now_wall_ms >= *expires_ms {
                return Err(Refusal::AuthFailed(format!(
                    "the login of user {user:?} expired; log in again"
                )));
            }
            if *epoch != rec.epoch {
                return Err(Refusal::AuthFailed(format!(
                    "the password of user {user:?} changed since this login; log in again"
                )));
            }
        }
        Ok(user)
    }

    /// Whether a watch of a connection speaking for `who` may go on: while auth is enabled,
    /// only with a valid user.
    pub fn watch_allowed(&self, who: Option<&Principal>, now_wall_ms: u64) -> Result<(), Refusal> {
        if !self.enabled() {
            return Ok(());
        }
        match who {
            None => Err(Refusal::AuthFailed(
                "auth was enabled: log in to go on watching".into(),
            )),
            Some(p) => self.valid_user(p, now_wall_ms).map(|_| ()),
        }
    }

    /// Check `request` from a connection speaking for `who` (`None`: nobody logged in): every
    /// permission it needs.
    pub fn check(
        &self,
        who: Option<&Principal>,
        now_wall_ms: u64,
        request: &Request,
    ) -> Result<(), Refusal> {
        self.check_at(who, now_wall_ms, request, true)
    }

    /// [`AuthState::check`] as a request arrives: a read's permissions are left for
    /// [`AuthState::check_need`] when it is served, against the state it is served from (a
    /// linearizable read then sees every grant and revoke committed before it).
    pub fn check_arrival(
        &self,
        who: Option<&Principal>,
        now_wall_ms: u64,
        request: &Request,
    ) -> Result<(), Refusal> {
        self.check_at(who, now_wall_ms, request, false)
    }

    fn check_at(
        &self,
        who: Option<&Principal>,
        now_wall_ms: u64,
        request: &Request,
        reads: bool,
    ) -> Result<(), Refusal> {
        if reads_auth_records(request) {
            return Err(Refusal::Denied(format!(
                "{AUTH_DIR} holds password hashes and the token key: no client reads it; use shoalctl user get / role get"
            )));
        }
        match need(request) {
            Need::Keys(Access::Read, _) | Need::Subtree(_) if !reads => {
                self.check_need(who, now_wall_ms, Need::User)
            }
            need => self.check_need(who, now_wall_ms, need),
        }
    }

    /// Whether `who` has what `need` names (always, while auth is off).
    pub fn check_need(
        &self,
        who: Option<&Principal>,
        now_wall_ms: u64,
        need: Need<'_>,
    ) -> Result<(), Refusal> {
        if !self.enabled() || need == Need::Nothing {
            return Ok(());
        }
        let Some(who) = who else {
            return Err(Refusal::AuthFailed(
                "auth is enabled: log in first (shoalctl --user NAME)".into(),
            ));
        };
        let user = self.valid_user(who, now_wall_ms)?;
        match need {
            Need::Nothing | Need::User => Ok(()),
            Need::Root if self.is_root(user) => Ok(()),
            Need::Root => Err(Refusal::Denied(format!(
                "user {user:?} may not do this: it needs the root role"
            ))),
            Need::Keys(access, keys) => match keys.iter().find(|k| !self.may(user, access, k)) {
                None => Ok(()),
                Some(k) => Err(Refusal::Denied(format!(
                    "user {user:?} has no {} permission on {:?}",
                    access.as_str(),
                    String::from_utf8_lossy(k)
                ))),
            },
            Need::Txn { reads, writes } => {
                self.check_need(Some(who), now_wall_ms, Need::Keys(Access::Read, reads))?;
                self.check_need(Some(who), now_wall_ms, Need::Keys(Access::Write, writes))
            }
            Need::Subtree(dir) if self.may_read_subtree(user, dir) => Ok(()),
            Need::Subtree(dir) => Err(Refusal::Denied(format!(
                "user {user:?} may not list {:?}: it needs read on that directory's subtree (--prefix)",
                String::from_utf8_lossy(dir)
            ))),
        }
    }

    /// A user as `user get` shows it.
    pub fn user_info(&self, name: &str) -> Option<UserInfo> {
        self.users.get(name).map(|u| UserInfo {
            name: name.to_string(),
            roles: u.roles.clone(),
        })
    }

    /// A role as `role get` shows it (the built-in `root` has one subtree permission on
    /// everything).
    pub fn role_info(&self, name: &str) -> Option<RoleInfo> {
        if name == ROOT {
            return Some(RoleInfo {
                name: ROOT.into(),
                permissions: vec![Permission {
                    access: Access::ReadWrite,
                    key: Vec::new(),
                    prefix: true,
                }],
            });
        }
        self.roles.get(name).map(|r| RoleInfo {
            name: name.to_string(),
            permissions: r.permissions.clone(),
        })
    }

    /// A token for `user` that expires at `expires_ms`: `None` while auth was never enabled
    /// (there is no key) or the user does not exist.
    pub fn issue_token(&self, user: &str, expires_ms: u64) -> Option<Vec<u8>> {
        let config = self.config.as_ref()?;
        let rec = self.users.get(user)?;
        let claims = Claims {
            user: user.to_string(),
            epoch: rec.epoch,
            expires_ms,
        };
        let mut out = vec![TOKEN_VERSION];
        out.extend(postcard::to_stdvec(&claims).expect("claims serialize"));
        let mut mac = HmacSha256::new_from_slice(&config.token_key).expect("any key length");
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Some(out)
    }

    /// The principal a token proves, if its tag verifies under the current key, it has not
    /// expired and its user's password did not change since.
    pub fn check_token(&self, token: &[u8], now_wall_ms: u64) -> Result<Principal, Refusal> {
        let bad = |why: &str| Refusal::AuthFailed(format!("token refused: {why}"));
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| bad("auth was never enabled"))?;
        if token.len() < 1 + TAG_BYTES || token[0] != TOKEN_VERSION {
            return Err(bad("not a token of this version"));
        }
        let (body, tag) = token.split_at(token.len() - TAG_BYTES);
        let mut mac = HmacSha256::new_from_slice(&config.token_key).expect("any key length");
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| {
            bad("its signature does not verify (forged, or issued before auth was last enabled)")
        })?;
        let claims: Claims = postcard::from_bytes(&body[1..]).map_err(|_| bad("malformed"))?;
        let who = Principal::Token {
            user: claims.user,
            epoch: claims.epoch,
            expires_ms: claims.expires_ms,
        };
        self.valid_user(&who, now_wall_ms)?;
        Ok(who)
    }
}

/// What a token says; the HMAC-SHA256 tag that follows it in the token proves a member
/// issued it.
#[derive(Serialize, Deserialize)]
struct Claims {
    user: String,
    epoch: u64,
    expires_ms: u64,
}

/// Every record of `dir` by name; a `what` record that does not decode is logged and left out.
fn read_dir<T: for<'de> Deserialize<'de>>(
    kv: &HeapKv,
    dir: &str,
    what: &str,
) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    let _ = kv.list(dir.as_bytes(), |v| {
        match (record_name(v.key, dir), decode_record::<T>(v.value)) {
            (Some(n), Some(r)) => {
                out.insert(n, r);
            }
            _ => log::warn!(
                "ignoring {}: not a {what} record",
                String::from_utf8_lossy(v.key)
            ),
        }
    });
    out
}

fn record_name(key: &[u8], dir: &str) -> Option<String> {
    let name = key.strip_prefix(dir.as_bytes())?.strip_prefix(b".")?;
    let name = std::str::from_utf8(name).ok()?;
    check_name("", name).ok()?;
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_client::protocol::{AuthOp, Credentials, ReadMode, TxnCompare, TxnWrite};

    #[test]
    fn the_auth_subtree_is_the_one_the_tools_hide() {
        assert_eq!(AUTH_DIR.as_bytes(), shoal_kv::system::AUTH_DIR);
    }

    fn perm(access: Access, key: &str, prefix: bool) -> Permission {
        Permission {
            access,
            key: key.as_bytes().to_vec(),
            prefix,
        }
    }

    fn state() -> AuthState {
        let mut s = AuthState {
            config: Some(AuthConfig {
                enabled: true,
                token_key: [7; 32],
            }),
            ..AuthState::default()
        };
        let user = |roles: &[&str], epoch| UserRecord {
            hash: String::new(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            epoch,
        };
        s.users.insert("root".into(), user(&["root"], 1));
        s.users.insert("alice".into(), user(&["app", "logs"], 2));
        s.users.insert("bob".into(), user(&["gone"], 3));
        s.roles.insert(
            "app".into(),
            RoleRecord {
                permissions: vec![
                    perm(Access::ReadWrite, "app", true),
                    perm(Access::Read, "cfg.url", false),
                ],
            },
        );
        s.roles.insert(
            "logs".into(),
            RoleRecord {
                permissions: vec![perm(Access::Write, "logs", true)],
            },
        );
        s
    }

    fn get(key: &str) -> Request {
        Request::Get {
            key: key.as_bytes().to_vec(),
            mode: ReadMode::Linearizable,
        }
    }

    fn put(key: &str) -> Request {
        Request::Write {
            client_id: 1,
            seq: 1,
            op: WriteOp::Put {
                key: key.as_bytes().to_vec(),
                value: vec![],
            },
        }
    }

    fn cert(user: &str) -> Principal {
        Principal::from_verified_cn(user)
    }

    #[test]
    fn prefixes_are_subtrees_and_exact_keys_are_exact() {
        let s = state();
        assert!(s.may("alice", Access::Read, b"app"));
        assert!(s.may("alice", Access::Write, b"app.db.url"));
        assert!(
            !s.may("alice", Access::Read, b"apple"),
            "a prefix is a subtree, not bytes"
        );
        assert!(s.may("alice", Access::Read, b"cfg.url"));
        assert!(!s.may("alice", Access::Write, b"cfg.url"), "read only");
        assert!(
            !s.may("alice", Access::Read, b"cfg.url.x"),
            "an exact key has no subtree"
        );
        assert!(s.may("alice", Access::Write, b"logs.1"));
        assert!(!s.may("alice", Access::Read, b"logs.1"), "write only");
        assert!(
            !s.may("bob", Access::Read, b"app"),
            "a missing role allows nothing"
        );
        assert!(!s.may("nobody", Access::Read, b"app"));
        assert!(s.may("root", Access::Write, b"anything.at.all"));
        assert!(s.may_read_subtree("alice", b"app.db"));
        assert!(!s.may_read_subtree("alice", b"cfg"));
        assert!(!s.may_read_subtree("alice", b""));
        assert!(s.may_read_subtree("root", b""));
    }

    #[test]
    fn requests_need_their_permissions_once_enabled() {
        let mut s = state();
        let alice = cert("alice");
        let now = 1000;
        assert_eq!(s.check(Some(&alice), now, &get("app.x")), Ok(()));
        assert!(matches!(
            s.check(Some(&alice), now, &get("other")),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(
            s.check(Some(&alice), now, &put("cfg.url")),
            Err(Refusal::Denied(_))
        ));
        let batch = Request::Write {
            client_id: 1,
            seq: 1,
            op: WriteOp::BatchPut {
                pairs: vec![(b"app.a".to_vec(), vec![]), (b"x".to_vec(), vec![])],
            },
        };
        assert!(
            matches!(s.check(Some(&alice), now, &batch), Err(Refusal::Denied(m)) if m.contains("\"x\"")),
            "every key of a batch is checked"
        );
        let lock = Request::Write {
            client_id: 1,
            seq: 1,
            op: WriteOp::TryLock {
                key: b"cfg.url".to_vec(),
                lease_ms: 1,
                wait_ms: 0,
            },
        };
        assert!(
            matches!(s.check(Some(&alice), now, &lock), Err(Refusal::Denied(_))),
            "locks need write"
        );
        let txn = |compare: &str, write: &str, other: &str| Request::Write {
            client_id: 1,
            seq: 1,
            op: WriteOp::Txn {
                compares: vec![TxnCompare::Exists {
                    key: compare.as_bytes().to_vec(),
                }],
                success: vec![TxnWrite::Put {
                    key: write.as_bytes().to_vec(),
                    value: vec![],
                }],
                failure: vec![TxnWrite::Remove {
                    key: other.as_bytes().to_vec(),
                }],
            },
        };
        assert_eq!(
            s.check(Some(&alice), now, &txn("cfg.url", "app.a", "app.b")),
            Ok(())
        );
        for (c, w, o) in [
            ("secret", "app.a", "app.b"),
            ("app.x", "cfg.url", "app.b"),
            ("app.x", "app.a", "x"),
        ] {
            assert!(
                matches!(s.check(Some(&alice), now, &txn(c, w, o)), Err(Refusal::Denied(_))),
                "a transaction needs read on what it compares and write on both branches: {c} {w} {o}"
            );
        }
        assert!(matches!(
            s.check(Some(&alice), now, &Request::Snapshot),
            Err(Refusal::Denied(_))
        ));
        assert!(matches!(
            s.check(Some(&alice), now, &Request::Auth(AuthOp::Disable)),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(
            s.check(Some(&alice), now, &Request::Auth(AuthOp::UserList)),
            Ok(())
        );
        assert_eq!(
            s.check(Some(&cert("root")), now, &Request::Auth(AuthOp::Disable)),
            Ok(())
        );
        assert!(matches!(
            s.check(None, now, &get("app.x")),
            Err(Refusal::AuthFailed(_))
        ));
        // Reads are checked when served; on arrival only the login is.
        assert_eq!(s.check_arrival(Some(&alice), now, &get("other")), Ok(()));
        assert!(s.check_arrival(None, now, &get("app.x")).is_err());
        assert!(s.check_arrival(Some(&alice), now, &put("other")).is_err());
        assert_eq!(s.check(None, now, &Request::Health), Ok(()));
        let login = Request::Authenticate(Credentials::Token(vec![]));
        assert_eq!(s.check(None, now, &login), Ok(()));
        assert!(matches!(
            s.check(Some(&cert("mallory")), now, &get("app.x")),
            Err(Refusal::AuthFailed(_))
        ));
        // Off: everything goes, except reading the auth records.
        s.config.as_mut().unwrap().enabled = false;
        assert_eq!(s.check(None, now, &put("x")), Ok(()));
        assert_eq!(s.check(None, now, &Request::Snapshot), Ok(()));
        assert!(matches!(
            s.check(None, now, &get("__shoal.auth.users.root")),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(s.check(None, now, &get("__shoal.members.1")), Ok(()));
    }

    #[test]
    fn watch_events_are_filtered_by_read_permission() {
        let s = state();
        let alice = cert("alice");
        assert!(event_visible(&s, Some(&alice), 0, b"app.x"));
        assert!(!event_visible(&s, Some(&alice), 0, b"logs.x"), "write-only");
        assert!(!event_visible(&s, None, 0, b"app.x"));
        assert!(!event_visible(
            &s,
            Some(&cert("root")),
            0,
            b"__shoal.auth.config"
        ));
        assert!(event_visible(
            &s,
            Some(&cert("root")),
            0,
            b"__shoal.members.1"
        ));
    }

    #[test]
    fn tokens_verify_expire_and_die_with_the_password_or_key() {
        let mut s = state();
        let t = s.issue_token("alice", 5000).unwrap();
        let who = s.check_token(&t, 4999).unwrap();
        assert_eq!(who.user(), "alice");
        assert!(
            matches!(s.check_token(&t, 5000), Err(Refusal::AuthFailed(m)) if m.contains("expired"))
        );
        // A changed byte anywhere breaks the tag.
        for i in 0..t.len() {
            let mut bad = t.clone();
            bad[i] ^= 1;
            assert!(s.check_token(&bad, 0).is_err(), "byte {i}");
        }
        // A new password epoch voids the token, and so does a new key.
        s.users.get_mut("alice").unwrap().epoch = 9;
        assert!(s.check_token(&t, 0).is_err());
        assert!(matches!(s.valid_user(&who, 0), Err(Refusal::AuthFailed(_))));
        s.users.get_mut("alice").unwrap().epoch = 2;
        assert!(s.check_token(&t, 0).is_ok());
        s.config.as_mut().unwrap().token_key = [8; 32];
        assert!(s.check_token(&t, 0).is_err());
        assert!(s.issue_token("nobody", 1).is_none());
    }

    #[test]
    fn passwords_hash_and_verify_and_records_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cret!"));
        assert!(!verify_password("garbage", "s3cret"));
        let rec = UserRecord {
            hash: h,
            roles: vec!["root".into()],
            epoch: 4,
        };
        let bytes = encode_record(&rec);
        assert_eq!(decode_record::<UserRecord>(&bytes), Some(rec));
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(decode_record::<UserRecord>(&other), None);
        assert_eq!(
            record_name(b"__shoal.auth.users.alice", USERS_DIR).as_deref(),
            Some("alice")
        );
        assert_eq!(record_name(b"__shoal.auth.users.a.b", USERS_DIR), None);
        assert!(check_name("user", "a-b_C9").is_ok());
        assert!(check_name("user", "a.b").is_err());
        assert!(check_name("user", "").is_err());
    }
}
