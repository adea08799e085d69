//! The auth records in group 0's `__shoal.auth` subtree: their keys, their encoding (a version
//! byte and postcard, like the other records) and the names they may have.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_client::protocol::Permission;

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
pub(super) const AUTH_RECORD_VERSION: u8 = 1;

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

/// Every record of `dir` by name; a `what` record that does not decode is logged and left out.
pub(super) fn read_dir<T: for<'de> Deserialize<'de>>(
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

pub(super) fn record_name(key: &[u8], dir: &str) -> Option<String> {
    let name = key.strip_prefix(dir.as_bytes())?.strip_prefix(b".")?;
    let name = std::str::from_utf8(name).ok()?;
    check_name("", name).ok()?;
    Some(name.to_string())
}
