//! Logins and user/role administration on the raft thread ([`super::super::auth`] holds the
//! model and the checks).
//!
//! Argon2id is slow on purpose, so the raft thread never runs it: a login's password check runs
//! on the blocking pool and answers from there; a new password is hashed there and comes back
//! as [`ClientInput::Hashed`] to be proposed. At most `--auth-max-hashing` run at once.
//!
//! Changes are read-modify-write of one record (grant a role: read the user, add the role,
//! write the user back), done by group 0's leader from its applied state. One change is in
//! flight at a time, so two grants cannot overwrite each other; the next waits (`Unavailable`,
//! which clients retry) until the first applied.

use std::cell::Cell;

use super::super::auth::{
    check_name, encode_record, hash_password, random_key, random_u64, role_key, user_key,
    verify_password, AuthConfig, AuthState, Principal, Refusal, RoleRecord, UserRecord, CONFIG_KEY,
    ROOT,
};
use super::*;
use shoal_client::protocol::{AuthOp, Credentials, SecretBytes};

/// A password hashed off the raft thread, on its way to the log.
pub struct HashedPassword {
    reply: Reply,
    name: String,
    hash: String,
    /// A new user (else a new password of an existing one).
    add: bool,
}

/// Counters of logins and refusals, for `/metrics` (shared with the tasks that check
/// passwords).
#[derive(Debug, Default)]
pub(super) struct AuthCounts {
    /// Logins that succeeded (password or token).
    pub(super) logins: Cell<u64>,
    /// Logins refused (wrong password, unknown user, bad or expired token).
    pub(super) login_failures: Cell<u64>,
    /// Requests refused with `AuthFailed` or `PermissionDenied`.
    pub(super) refusals: Cell<u64>,
    /// Password checks refused because `--auth-max-hashing` were running.
    pub(super) hashing_busy: Cell<u64>,
}

pub(super) fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

pub(super) fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::AuthFailed(m) => error(ErrorCode::AuthFailed, m),
        Refusal::Denied(m) => error(ErrorCode::PermissionDenied, m),
    }
}

/// Holds one of the `--auth-max-hashing` slots until dropped.
struct HashSlot(Rc<Cell<usize>>);

impl Drop for HashSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl RaftLoop {
    fn hash_slot(&mut self) -> Option<HashSlot> {
        if self.hashing.get() >= self.cfg.auth_max_hashing {
            bump(&self.auth_counts.hashing_busy);
            return None;
        }
        self.hashing.set(self.hashing.get() + 1);
        Some(HashSlot(self.hashing.clone()))
    }

    /// Run `work` on the blocking pool, then `then` with its result on the raft thread.
    fn off_thread<T: Send + 'static>(
        &self,
        slot: HashSlot,
        work: impl FnOnce() -> T + Send + 'static,
        then: impl FnOnce(T) + 'static,
    ) {
        let ex = self
            .ex
            .clone()
            .expect("the executor is set before requests come");
        ex.spawn(async move {
            let out = smol::unblock(work).await;
            drop(slot);
            then(out);
        })
        .detach();
    }

    /// `Authenticate`: bind the connection to a user, answer with a token.
    pub(super) fn authenticate(&mut self, creds: Credentials, reply: Reply) {
        let now = wall_ms();
        if !self.auth.enabled() {
            // Nothing to prove while auth is off; a client that logs in anyway keeps working
            // when it is turned on (its next request is refused and it logs in again).
            let user = match &creds {
                Credentials::Password { user, .. } => user.clone(),
                Credentials::Token(_) => String::new(),
            };
            reply.send(Response::Token {
                user,
                token: SecretBytes::default(),
                expires_ms: 0,
            });
            return;
        }
        match creds {
            Credentials::Token(token) => match self.auth.check_token(&token, now) {
                Ok(who) => {
                    bump(&self.auth_counts.logins);
                    let (user, expires_ms) = match &who {
                        Principal::Token {
                            user, expires_ms, ..
                        } => (user.clone(), *expires_ms),
                        Principal::Certificate { user } => (user.clone(), 0),
                    };
                    reply.conn.set_principal(Some(who));
                    reply.send(Response::Token {
                        user,
                        token: SecretBytes(token),
                        expires_ms,
                    });
                }
                Err(r) => {
                    bump(&self.auth_counts.login_failures);
                    reply.send(refusal(r));
                }
            },
            Credentials::Password { user, password } => {
                let Some(slot) = self.hash_slot() else {
                    reply.send(unavailable("too many password checks running; retry"));
                    return;
                };
                // An unknown user is checked against a hash of nothing, so the answer takes
                // as long as for a wrong password.
                let hash = self.auth.users.get(&user).map(|u| u.hash.clone());
                let known = hash.is_some();
                let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
                let expires_ms = now + self.cfg.auth_token_ttl.as_millis() as u64;
                let token = self.auth.issue_token(&user, expires_ms);
                let epoch = self.auth.users.get(&user).map_or(0, |u| u.epoch);
                let counts = self.auth_counts.clone();
                self.off_thread(
                    slot,
                    move || verify_password(&hash, &password),
                    move |ok| match token {
                        Some(token) if ok && known => {
                            bump(&counts.logins);
                            reply.conn.set_principal(Some(Principal::Token {
                                user: user.clone(),
                                epoch,
                                expires_ms,
                            }));
                            reply.send(Response::Token {
                                user,
                                token: SecretBytes(token),
                                expires_ms,
                            });
                        }
                        _ => {
                            bump(&counts.login_failures);
                            log::info!("login of user {user:?} refused: wrong name or password");
                            reply.send(error(
                                ErrorCode::AuthFailed,
                                "wrong user name or password".into(),
                            ));
                        }
                    },
                );
            }
        }
    }

    /// `Auth(op)`: answer a read from this node's state; propose a change through group 0.
    pub(super) fn auth_op(&mut self, op: AuthOp, reply: Reply) {
        let s = &self.auth;
        let answer = match &op {
            AuthOp::Status => Some(Response::AuthStatus {
                enabled: s.enabled(),
            }),
            AuthOp::UserList => Some(Response::Names(s.users.keys().cloned().collect())),
            AuthOp::RoleList => {
                let mut names: Vec<String> = s.roles.keys().cloned().collect();
                names.push(ROOT.into());
                names.sort();
                Some(Response::Names(names))
            }
            AuthOp::UserGet { name } => Some(match s.user_info(name) {
                Some(u) => Response::User(u),
                None => error(ErrorCode::Conflict, format!("user {name:?} does not exist")),
            }),
            AuthOp::RoleGet { name } => Some(match s.role_info(name) {
                Some(r) => Response::Role(r),
                None => error(ErrorCode::Conflict, format!("role {name:?} does not exist")),
            }),
            _ => None,
        };
        if let Some(a) = answer {
            reply.send(a);
            return;
        }
        if let Err(response) = self.ready_to_change() {
            reply.send(response);
            return;
        }
        match op {
            AuthOp::UserAdd { name, password } | AuthOp::UserPasswd { name, password } => {
                let add = !self.auth.users.contains_key(&name);
                if let Err(e) = check_name("user", &name) {
                    reply.send(error(ErrorCode::BadRequest, e));
                    return;
                }
                if password.is_empty() {
                    reply.send(error(
                        ErrorCode::BadRequest,
                        "an empty password is not allowed".into(),
                    ));
                    return;
                }
                let Some(slot) = self.hash_slot() else {
                    reply.send(unavailable("too many password checks running; retry"));
                    return;
                };
                let hub = self.hub.clone();
                self.off_thread(
                    slot,
                    move || hash_password(&password),
                    move |hash| match hash {
                        Ok(hash) => hub.push_internal(ClientInput::Hashed(HashedPassword {
                            reply,
                            name,
                            hash,
                            add,
                        })),
                        Err(e) => {
                            reply.send(error(ErrorCode::Internal, e));
                        }
                    },
                );
            }
            other => {
                let change = self.auth_change(other);
                match change {
                    Ok((key, value)) => self.propose_auth(key, value, reply),
                    Err(response) => {
                        reply.send(response);
                    }
                }
            }
        }
    }

    /// A password came back hashed: propose the user's record.
    pub(super) fn hashed(&mut self, h: HashedPassword) {
        let HashedPassword {
            reply,
            name,
            hash,
            add,
        } = h;
        if let Err(response) = self.ready_to_change() {
            reply.send(response);
            return;
        }
        let current = self.auth.users.get(&name);
        let roles = match (add, current) {
            (true, Some(_)) => {
                reply.send(error(
                    ErrorCode::Conflict,
                    format!("user {name:?} already exists"),
                ));
                return;
            }
            (false, None) => {
                reply.send(error(
                    ErrorCode::Conflict,
                    format!("user {name:?} does not exist"),
                ));
                return;
            }
            // The user root always holds the root role.
            (true, None) if name == ROOT => vec![ROOT.to_string()],
            (true, None) => Vec::new(),
            (false, Some(u)) => u.roles.clone(),
        };
        let epoch = match random_u64() {
            Ok(e) => e,
            Err(e) => {
                reply.send(error(ErrorCode::Internal, e));
                return;
            }
        };
        let value = encode_record(&UserRecord { hash, roles, epoch });
        self.propose_auth(user_key(&name), Some(value), reply);
    }

    /// Only group 0's leader changes the auth state, from an applied state that holds every
    /// change it committed, one change at a time.
    fn ready_to_change(&self) -> Result<(), Response> {
        let Some(g) = self.groups.get(&0) else {
            return Err(error(ErrorCode::Internal, "group 0 is not open".into()));
        };
        if g.node.raft().role() != Role::Leader {
            return Err(not_leader(g));
        }
        if g.node.applied() < g.node.raft().commit()
            || g.pending_sys
                .values()
                .any(|p| matches!(p.2, SysAnswer::Auth))
        {
            return Err(unavailable("another auth change is being applied; retry"));
        }
        Ok(())
    }

    /// The record an auth change writes (`None`: removed), or why it cannot be made.
    fn auth_change(&self, op: AuthOp) -> Result<Change, Response> {
        let s = &self.auth;
        match op {
            AuthOp::Enable => auth_switch(s, true),
            AuthOp::Disable => auth_switch(s, false),
            AuthOp::UserDelete { name } => user_delete(s, name),
            AuthOp::UserGrantRole { name, role } => user_grant_role(s, name, role),
            AuthOp::UserRevokeRole { name, role } => user_revoke_role(s, name, role),
            AuthOp::RoleAdd { name } => role_add(s, name),
            AuthOp::RoleDelete { name } => role_delete(s, name),
            AuthOp::RoleGrantPermission { name, permission } => {
                let mut r = changeable_role(s, &name)?;
                r.permissions
                    .retain(|p| !(p.key == permission.key && p.prefix == permission.prefix));
                r.permissions.push(permission);
                Ok((role_key(&name), Some(encode_record(&r))))
            }
            AuthOp::RoleRevokePermission { name, key, prefix } => {
                role_revoke_permission(s, name, &key, prefix)
            }
            AuthOp::Status
            | AuthOp::UserList
            | AuthOp::UserGet { .. }
            | AuthOp::RoleList
            | AuthOp::RoleGet { .. }
            | AuthOp::UserAdd { .. }
            | AuthOp::UserPasswd { .. } => unreachable!("answered by auth_op"),
        }
    }

    fn propose_auth(&mut self, key: String, value: Option<Vec<u8>>, reply: Reply) {
        let now = self.now_ms();
        let g = self.groups.get_mut(&0).expect("checked by ready_to_change");
        let op = match &value {
            Some(v) => Op::SysPut {
                key: key.as_bytes(),
                value: v,
            },
            None => Op::SysRemove {
                key: key.as_bytes(),
            },
        };
        propose_system(g, now, op, reply, SysAnswer::Auth);
    }
}

/// Read group 0's auth records into `auth` again if its reserved subtree changed since
/// `seen` (a system write applied, a snapshot installed).
pub(super) fn reload_auth(auth: &mut AuthState, seen: &mut Option<u64>, kv: &HeapKv) {
    let changes = kv.system_changes();
    if *seen == Some(changes) {
        return;
    }
    *seen = Some(changes);
    let new = AuthState::read(kv);
    if new.enabled() != auth.enabled() {
        log::info!(
            "auth is {} ({} users, {} roles)",
            if new.enabled() { "enabled" } else { "disabled" },
            new.users.len(),
            new.roles.len()
        );
    }
    *auth = new;
}

/// A valid Argon2id hash of a random password nobody knows: logins of unknown users are
/// checked against it, so they take as long as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2hvYWxkdW1teXNhbHQ$0e2Nv1sC0CEvx1HVXqLTOp3Yx8rdaqZ7tTr6TKAdoRk";

impl RaftLoop {
    /// Read the auth records of group 0 (at start).
    pub(super) fn reload_auth(&mut self) {
        if let Some(g0) = self.groups.get(&0) {
            reload_auth(
                &mut self.auth,
                &mut self.auth_seen,
                g0.node.state_machine().store(),
            );
        }
    }

    /// Counters and state for `/metrics`.
    pub(super) fn auth_view(&self) -> AuthView {
        let c = &self.auth_counts;
        AuthView {
            enabled: self.auth.enabled(),
            users: self.auth.users.len(),
            logins: c.logins.get(),
            login_failures: c.login_failures.get(),
            refusals: c.refusals.get(),
            hashing: self.hashing.get(),
            hashing_busy: c.hashing_busy.get(),
        }
    }
}

/// An auth change: the record's key and its new value (`None`: removed).
type Change = (String, Option<Vec<u8>>);

/// A refusal that depends on the state (a missing user or role): a definite `Conflict` (exit 1),
/// not a usage error.
fn conflict(message: String) -> Response {
    error(ErrorCode::Conflict, message)
}

fn existing_user<'a>(s: &'a AuthState, name: &str) -> Result<&'a UserRecord, Response> {
    s.users
        .get(name)
        .ok_or_else(|| conflict(format!("user {name:?} does not exist")))
}

/// A role that exists and is not the built-in root.
fn changeable_role(s: &AuthState, name: &str) -> Result<RoleRecord, Response> {
    if name == ROOT {
        return Err(conflict(
            "the root role is built in: it allows everything and cannot be changed".into(),
        ));
    }
    s.roles
        .get(name)
        .cloned()
        .ok_or_else(|| conflict(format!("role {name:?} does not exist")))
}

/// `auth enable` (it needs the user root) or `auth disable`. The token key is new whenever
/// auth is turned on, so tokens of an earlier time are dead.
fn auth_switch(s: &AuthState, enabled: bool) -> Result<Change, Response> {
    if enabled && !s.is_root(ROOT) {
        return Err(conflict(
            "auth enable needs the user root first: shoalctl user add root".into(),
        ));
    }
    let token_key = match (&s.config, enabled) {
        (Some(c), false) => c.token_key,
        (Some(c), true) if c.enabled => c.token_key,
        _ => random_key().map_err(|e| error(ErrorCode::Internal, e))?,
    };
    let value = encode_record(&AuthConfig { enabled, token_key });
    Ok((CONFIG_KEY.to_string(), Some(value)))
}

fn user_delete(s: &AuthState, name: String) -> Result<Change, Response> {
    existing_user(s, &name)?;
    if name == ROOT && s.enabled() {
        return Err(conflict(
            "the user root cannot be deleted while auth is enabled".into(),
        ));
    }
    Ok((user_key(&name), None))
}

fn user_grant_role(s: &AuthState, name: String, role: String) -> Result<Change, Response> {
    let mut u = existing_user(s, &name)?.clone();
    if role != ROOT && !s.roles.contains_key(&role) {
        return Err(conflict(format!("role {role:?} does not exist")));
    }
    if !u.roles.contains(&role) {
        u.roles.push(role);
        u.roles.sort();
    }
    Ok((user_key(&name), Some(encode_record(&u))))
}

fn user_revoke_role(s: &AuthState, name: String, role: String) -> Result<Change, Response> {
    let mut u = existing_user(s, &name)?.clone();
    if name == ROOT && role == ROOT {
        return Err(conflict("the user root always holds the root role".into()));
    }
    if !u.roles.contains(&role) {
        return Err(conflict(format!(
            "user {name:?} does not hold role {role:?}"
        )));
    }
    u.roles.retain(|x| *x != role);
    Ok((user_key(&name), Some(encode_record(&u))))
}

fn role_add(s: &AuthState, name: String) -> Result<Change, Response> {
    check_name("role", &name).map_err(conflict)?;
    if name == ROOT || s.roles.contains_key(&name) {
        return Err(conflict(format!("role {name:?} already exists")));
    }
    let value = encode_record(&RoleRecord {
        permissions: Vec::new(),
    });
    Ok((role_key(&name), Some(value)))
}

/// Delete a role no user holds.
fn role_delete(s: &AuthState, name: String) -> Result<Change, Response> {
    changeable_role(s, &name)?;
    let holders: Vec<&String> = s
        .users
        .iter()
        .filter(|(_, u)| u.roles.contains(&name))
        .map(|(n, _)| n)
        .collect();
    if !holders.is_empty() {
        return Err(conflict(format!(
            "role {name:?} is held by {holders:?}; revoke it from them first"
        )));
    }
    Ok((role_key(&name), None))
}

fn role_revoke_permission(
    s: &AuthState,
    name: String,
    key: &[u8],
    prefix: bool,
) -> Result<Change, Response> {
    let mut r = changeable_role(s, &name)?;
    let before = r.permissions.len();
    r.permissions
        .retain(|p| !(p.key == key && p.prefix == prefix));
    if r.permissions.len() == before {
        return Err(conflict(format!(
            "role {name:?} has no permission on {:?}{}",
            String::from_utf8_lossy(key),
            if prefix { " (prefix)" } else { "" }
        )));
    }
    Ok((role_key(&name), Some(encode_record(&r))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordHash;

    #[test]
    fn unknown_users_are_checked_against_a_real_hash() {
        // Were it not to parse, an unknown user's login would answer at once, telling names
        // that exist from names that do not.
        let h = PasswordHash::new(DUMMY_HASH).expect("a PHC string");
        assert_eq!(h.algorithm.as_str(), "argon2id");
        assert!(!verify_password(DUMMY_HASH, ""));
        assert!(!verify_password(DUMMY_HASH, "root"));
    }
}
