//! Administration through [`Client`]: status and health, membership, leadership, snapshots,
//! groups, and users, roles and permissions.

use shoal_core::{GroupId, LogIndex, NodeId};

use super::{unexpected, Client, Kind};
use crate::protocol::{
    AuthOp, Credentials, HealthInfo, MemberChange, MemberInfo, NodeStatusInfo, Permission, Request,
    Response, RoleInfo, SecretBytes, SnapshotChunk, StatusInfo, UserInfo,
};
use crate::ClientError;

impl Client {
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
        self.names(AuthOp::UserList, "user list").await
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
        self.names(AuthOp::RoleList, "role list").await
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

    /// The names a list of users or roles answers with.
    async fn names(&self, op: AuthOp, what: &str) -> Result<Vec<String>, ClientError> {
        match self.auth(op).await? {
            Response::Names(n) => Ok(n),
            other => Err(unexpected(what, &other)),
        }
    }

    /// A request whose answer is only the index it committed at.
    async fn admin(&self, request: Request) -> Result<LogIndex, ClientError> {
        match self
            .execute(self.inner.config.group, request, Kind::Write)
            .await?
        {
            Response::Done { index } => Ok(index),
            other => Err(unexpected("admin request", &other)),
        }
    }
}
