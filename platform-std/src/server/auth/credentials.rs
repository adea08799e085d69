//! Credentials: Argon2id password hashes, the random token key and ids, and the tokens a login
//! returns (claims signed with HMAC-SHA256 under the cluster's token key). Nothing here logs a
//! password, a hash or a token.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{AuthState, Principal, Refusal};

/// The version byte of a token.
const TOKEN_VERSION: u8 = 1;

/// Bytes of the HMAC-SHA256 tag at a token's end.
const TAG_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

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

impl AuthState {
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
