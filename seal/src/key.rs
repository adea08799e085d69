//! The cluster key: 32 secret bytes every node of the cluster holds, written in a key file as 64
//! hexadecimal digits. It never leaves a node and is never logged.

/// Bytes of a cluster key.
pub const KEY_BYTES: usize = 32;

/// The pre-shared cluster key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; KEY_BYTES]);

/// Why a key file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not 64 hexadecimal digits (surrounding white space is allowed).
    #[error("a cluster key is 64 hexadecimal digits (32 bytes), found {found} characters")]
    Length {
        /// Non-space characters found.
        found: usize,
    },
    /// A character that is not a hexadecimal digit.
    #[error("character {at} of the cluster key is not a hexadecimal digit")]
    NotHex {
        /// Its position among the non-space characters.
        at: usize,
    },
    /// All bytes are equal (an unset or placeholder key).
    #[error("the cluster key has all bytes equal: make one with `openssl rand -hex 32`")]
    Weak,
}

impl ClusterKey {
    /// A key from its bytes.
    pub const fn new(bytes: [u8; KEY_BYTES]) -> Self {
        ClusterKey(bytes)
    }

    /// A key from the text of a key file: 64 hexadecimal digits, white space around them
    /// ignored. A key whose bytes are all equal (zeros, erased flash) is refused as unset.
    pub fn from_hex(text: &[u8]) -> Result<Self, KeyError> {
        let digits = text.trim_ascii();
        if digits.len() != 2 * KEY_BYTES {
            return Err(KeyError::Length {
                found: digits.len(),
            });
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex(pair[0]).ok_or(KeyError::NotHex { at: 2 * i })?;
            let lo = hex(pair[1]).ok_or(KeyError::NotHex { at: 2 * i + 1 })?;
            key[i] = hi << 4 | lo;
        }
        Self::checked(key)
    }

    /// A key from raw bytes (a board's provisioned key), refusing an unset one (all bytes
    /// equal, as erased or zeroed memory reads).
    pub fn checked(bytes: [u8; KEY_BYTES]) -> Result<Self, KeyError> {
        if bytes.iter().all(|&b| b == bytes[0]) {
            return Err(KeyError::Weak);
        }
        Ok(ClusterKey(bytes))
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The key itself must never reach a log.
        f.write_str("ClusterKey(..)")
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_64_hex_digits() {
        let text = b"  000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F\n";
        let key = ClusterKey::from_hex(text).unwrap();
        assert_eq!(key.bytes()[31], 0x1f);
        assert_eq!(key.bytes()[10], 0x0a);
        assert_eq!(
            ClusterKey::from_hex(b"0011"),
            Err(KeyError::Length { found: 4 })
        );
        let mut bad = *b"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
        bad[7] = b'g';
        assert_eq!(ClusterKey::from_hex(&bad), Err(KeyError::NotHex { at: 7 }));
        assert_eq!(ClusterKey::from_hex(&[b'0'; 64]), Err(KeyError::Weak));
        assert_eq!(ClusterKey::checked([0xFF; 32]), Err(KeyError::Weak));
    }

    #[test]
    fn debug_never_shows_the_key() {
        struct W(usize, [u8; 64]);
        impl core::fmt::Write for W {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.1[self.0..self.0 + s.len()].copy_from_slice(s.as_bytes());
                self.0 += s.len();
                Ok(())
            }
        }
        let mut w = W(0, [0; 64]);
        core::fmt::write(&mut w, format_args!("{:?}", ClusterKey::new([0xAB; 32]))).unwrap();
        assert_eq!(&w.1[..w.0], b"ClusterKey(..)");
    }
}
