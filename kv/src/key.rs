//! Key paths: validation, parent, subtree test and hashing. Keys are bytes; `.` separates
//! segments and the empty key is the root directory.

use crate::error::KvError;
use crate::limits::KvLimits;

/// The segment separator.
pub const SEPARATOR: u8 = b'.';

/// Check `key` against the path rules and `limits`. The root (empty key) is accepted only when
/// `allow_root` is set (reads); writes get [`KvError::EmptyKey`].
pub fn validate_key(key: &[u8], limits: &KvLimits, allow_root: bool) -> Result<(), KvError> {
    if key.is_empty() {
        return if allow_root {
            Ok(())
        } else {
            Err(KvError::EmptyKey)
        };
    }
    if key.len() > limits.max_key_bytes {
        return Err(KvError::KeyTooLong);
    }
    if key[0] == SEPARATOR {
        return Err(KvError::LeadingDot);
    }
    if key[key.len() - 1] == SEPARATOR {
        return Err(KvError::TrailingDot);
    }
    let mut depth = 1usize;
    let mut prev_dot = false;
    for &b in key {
        if b == SEPARATOR {
            if prev_dot {
                return Err(KvError::EmptySegment);
            }
            depth += 1;
            prev_dot = true;
        } else {
            prev_dot = false;
        }
    }
    if depth > limits.max_depth {
        return Err(KvError::TooDeep);
    }
    Ok(())
}

/// The parent directory's key (the root's key is empty). `key` must be valid and not the root.
pub fn parent_of(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == SEPARATOR) {
        Some(pos) => &key[..pos],
        None => &[],
    }
}

/// The last segment of `key`.
pub fn name_of(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == SEPARATOR) {
        Some(pos) => &key[pos + 1..],
        None => key,
    }
}

/// Whether `key` is `dir` itself or lies in its subtree. The root (empty `dir`) holds every key.
pub fn in_subtree(key: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return true;
    }
    key.len() >= dir.len()
        && &key[..dir.len()] == dir
        && (key.len() == dir.len() || key[dir.len()] == SEPARATOR)
}

/// FNV-1a over the bytes, folded to 32 bits. Not seeded: equal keys hash equally on every
/// replica, and the hash never influences observable order.
pub fn hash_bytes(bytes: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 32)) as u32
}

/// A 64-bit mix of a client id for the session index.
pub fn hash_u64(x: u64) -> u32 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z ^ (z >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules() {
        let l = KvLimits::embedded();
        assert_eq!(validate_key(b"a.b.c", &l, false), Ok(()));
        assert_eq!(validate_key(b"", &l, false), Err(KvError::EmptyKey));
        assert_eq!(validate_key(b"", &l, true), Ok(()));
        assert_eq!(validate_key(b".a", &l, false), Err(KvError::LeadingDot));
        assert_eq!(validate_key(b"a.", &l, false), Err(KvError::TrailingDot));
        assert_eq!(validate_key(b"a..b", &l, false), Err(KvError::EmptySegment));
        assert_eq!(validate_key(b".", &l, false), Err(KvError::LeadingDot));
        assert_eq!(
            validate_key(&[b'x'; 65], &l, false),
            Err(KvError::KeyTooLong)
        );
        assert_eq!(validate_key(b"a.b.c.d.e.f.g.h", &l, false), Ok(()));
        assert_eq!(
            validate_key(b"a.b.c.d.e.f.g.h.i", &l, false),
            Err(KvError::TooDeep)
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parent_of(b"a.b.c"), b"a.b");
        assert_eq!(parent_of(b"a"), b"");
        assert_eq!(name_of(b"a.b.c"), b"c");
        assert!(in_subtree(b"a.b", b"a"));
        assert!(in_subtree(b"a", b"a"));
        assert!(!in_subtree(b"ab", b"a"));
        assert!(in_subtree(b"ab", b""));
    }
}
