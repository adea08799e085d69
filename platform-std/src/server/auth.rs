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
//!
//! The records and their encoding are in `auth/records.rs`, who asks and what each request
//! needs in `auth/needs.rs`, password hashes and tokens in `auth/credentials.rs`; this file is
//! the [`AuthState`] every check asks.

use std::collections::BTreeMap;

use shoal_client::protocol::{Access, Permission, Request, RoleInfo, UserInfo};
use shoal_kv::in_subtree;

use crate::kvheap::HeapKv;

mod credentials;
mod needs;
mod records;
#[cfg(test)]
mod tests;

pub use credentials::{hash_password, random_key, random_u64, verify_password};
pub use needs::{
    event_visible, hide_unreadable_lease_keys, need, reads_auth_records, Need, Principal, Refusal,
};
use records::read_dir;
pub use records::{
    check_name, decode_record, encode_record, role_key, user_key, AuthConfig, RoleRecord,
    UserRecord, AUTH_DIR, CONFIG_KEY, MAX_NAME_BYTES, ROLES_DIR, ROOT, USERS_DIR,
};

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
}
