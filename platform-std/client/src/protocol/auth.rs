//! Users, roles and permissions: how a connection proves its user, and the administration
//! requests and records of [`Request::Auth`](super::Request::Auth).

use serde::{Deserialize, Serialize};

/// How a connection proves its user ([`Request::Authenticate`](super::Request::Authenticate)).
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

/// User, role and auth administration ([`Request::Auth`](super::Request::Auth)).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    /// Turn auth on (the user `root` must exist).
    Enable,
    /// Turn auth off.
    Disable,
    /// Whether auth is on ([`Response::AuthStatus`](super::Response::AuthStatus)).
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
    /// Every user's name ([`Response::Names`](super::Response::Names)).
    UserList,
    /// One user ([`Response::User`](super::Response::User)).
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
    /// Every role's name ([`Response::Names`](super::Response::Names)).
    RoleList,
    /// One role ([`Response::Role`](super::Response::Role)).
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
