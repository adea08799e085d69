//! Users, roles and permissions from the shell (`auth`, `user`, `role`), and how a password
//! is found for `--user` and `user add|passwd`.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use shoal_client::{Access, Client, ClientError, Permission};

use super::answer::{names_answer, text, written, Answer};

/// `auth`: whether requests are checked against users and roles.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Check every request against its user's roles from now on (the user root must exist).
    Enable,
    /// Stop checking (needs the root role).
    Disable,
    /// Whether auth is enabled.
    Status,
}

/// `user`: who may log in.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user: NAME:PASSWORD, or NAME to be asked for the password. The user root holds
    /// the root role from the start.
    Add {
        /// NAME or NAME:PASSWORD.
        #[arg(value_name = "NAME[:PASSWORD]")]
        account: String,
    },
    /// Delete a user.
    Delete {
        /// The user.
        name: String,
    },
    /// List the users.
    List,
    /// Show a user's roles.
    Get {
        /// The user.
        name: String,
    },
    /// Change a user's password (NAME:PASSWORD, or NAME to be asked); its logins end.
    Passwd {
        /// NAME or NAME:PASSWORD.
        #[arg(value_name = "NAME[:PASSWORD]")]
        account: String,
    },
    /// Grant a role to a user.
    GrantRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
    /// Revoke a role from a user.
    RevokeRole {
        /// The user.
        name: String,
        /// The role.
        role: String,
    },
}

/// `role`: what a role's holders may do.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Add a role without permissions.
    Add {
        /// The role.
        name: String,
    },
    /// Delete a role that no user holds.
    Delete {
        /// The role.
        name: String,
    },
    /// List the roles (the built-in root among them).
    List,
    /// Show a role's permissions.
    Get {
        /// The role.
        name: String,
    },
    /// Let the role read, write or both on KEY (with --prefix: KEY's whole subtree; "" with
    /// --prefix is every key).
    GrantPermission {
        /// The role.
        name: String,
        /// What it allows.
        #[arg(value_enum)]
        access: AccessArg,
        /// The key, or the directory with --prefix.
        key: String,
        /// KEY's DtKV subtree, not KEY alone.
        #[arg(long)]
        prefix: bool,
    },
    /// Take the role's permission on KEY (with --prefix: its subtree permission).
    RevokePermission {
        /// The role.
        name: String,
        /// The key.
        key: String,
        /// The subtree permission.
        #[arg(long)]
        prefix: bool,
    },
}

/// What a permission allows, as the command line names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessArg {
    /// Get, list and watch.
    Read,
    /// Every write, temporary nodes and locks.
    Write,
    /// Both.
    Readwrite,
}

impl From<AccessArg> for Access {
    fn from(a: AccessArg) -> Access {
        match a {
            AccessArg::Read => Access::Read,
            AccessArg::Write => Access::Write,
            AccessArg::Readwrite => Access::ReadWrite,
        }
    }
}

/// `NAME:PASSWORD` split, or `NAME` and the password from `SHOAL_PASSWORD` (when `env`) or a
/// prompt on the terminal.
pub fn name_and_password(spec: &str, env: bool, prompt: &str) -> Result<(String, String), String> {
    if let Some((name, password)) = spec.split_once(':') {
        return Ok((name.to_string(), password.to_string()));
    }
    if env {
        if let Ok(p) = std::env::var("SHOAL_PASSWORD") {
            return Ok((spec.to_string(), p));
        }
    }
    let password = rpassword::prompt_password(format!("{prompt} {spec}: "))
        .map_err(|e| format!("no password given for {spec} and none could be asked for: {e}"))?;
    Ok((spec.to_string(), password))
}

fn usage(message: String) -> ClientError {
    ClientError::BadRequest { message }
}

/// Run one `auth` command.
pub async fn auth(client: &Client, command: &AuthCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        AuthCommand::Enable => {
            let index = client.auth_enable().await?;
            Answer::new(
                json!({"ok": true, "index": index, "enabled": true}),
                format!("auth enabled (index {index})"),
            )
        }
        AuthCommand::Disable => {
            let index = client.auth_disable().await?;
            Answer::new(
                json!({"ok": true, "index": index, "enabled": false}),
                format!("auth disabled (index {index})"),
            )
        }
        AuthCommand::Status => {
            let on = client.auth_status().await?;
            Answer::new(
                json!({"ok": true, "enabled": on}),
                format!("auth {}", if on { "enabled" } else { "disabled" }),
            )
        }
    })
}

/// Run one `user` command.
pub async fn user(client: &Client, command: &UserCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        UserCommand::Add { account } => {
            let (name, password) =
                name_and_password(account, false, "Password of new user").map_err(usage)?;
            written(client.user_add(&name, &password).await?)
        }
        UserCommand::Passwd { account } => {
            let (name, password) =
                name_and_password(account, false, "New password of").map_err(usage)?;
            written(client.user_passwd(&name, &password).await?)
        }
        UserCommand::Delete { name } => written(client.user_delete(name).await?),
        UserCommand::GrantRole { name, role } => written(client.user_grant_role(name, role).await?),
        UserCommand::RevokeRole { name, role } => {
            written(client.user_revoke_role(name, role).await?)
        }
        UserCommand::List => names_answer("users", client.user_list().await?),
        UserCommand::Get { name } => {
            let u = client.user_get(name).await?;
            Answer::new(
                json!({"ok": true, "name": u.name, "roles": u.roles}),
                format!("user {}\nroles: {}", u.name, u.roles.join(" ")),
            )
        }
    })
}

/// Run one `role` command.
pub async fn role(client: &Client, command: &RoleCommand) -> Result<Answer, ClientError> {
    Ok(match command {
        RoleCommand::Add { name } => written(client.role_add(name).await?),
        RoleCommand::Delete { name } => written(client.role_delete(name).await?),
        RoleCommand::List => names_answer("roles", client.role_list().await?),
        RoleCommand::Get { name } => {
            let r = client.role_get(name).await?;
            let perms: Vec<Value> = r
                .permissions
                .iter()
                .map(|p| json!({"access": p.access.as_str(), "key": text(&p.key), "prefix": p.prefix}))
                .collect();
            let mut t = format!("role {}", r.name);
            for p in &r.permissions {
                let what = if p.prefix { "prefix" } else { "key" };
                t.push_str(&format!(
                    "\n  {}\t{what}\t{:?}",
                    p.access.as_str(),
                    text(&p.key)
                ));
            }
            Answer::new(json!({"ok": true, "name": r.name, "permissions": perms}), t)
        }
        RoleCommand::GrantPermission {
            name,
            access,
            key,
            prefix,
        } => {
            let permission = Permission {
                access: (*access).into(),
                key: key.as_bytes().to_vec(),
                prefix: *prefix,
            };
            written(client.role_grant_permission(name, permission).await?)
        }
        RoleCommand::RevokePermission { name, key, prefix } => written(
            client
                .role_revoke_permission(name, key.as_bytes(), *prefix)
                .await?,
        ),
    })
}
