//! The record framing every storage (file, flash, simulated) and the tools share.
//!
//! ```text
//! +----------------+---------+----------------------+-----------------+
//! | len: u32 LE    | version | body (len - 1 bytes) | crc32c: u32 LE  |
//! +----------------+---------+----------------------+-----------------+
//! ```
//! `len` counts the version byte and the body. The CRC-32C covers the length, version and body,
//! so a damaged length is caught too. A record whose bytes end early is [`RecordError::Truncated`]
//! (a torn tail); any other mismatch is corruption and must never be applied.

/// The lookup table of the portable CRC-32C: slice-by-16 (16 KiB, several times faster) where
/// pointers are 64-bit — servers and Raspberry Pi class boards — and the 1 KiB byte table on
/// microcontrollers, where flash is the scarcer resource.
#[cfg(all(target_pointer_width = "64", not(feature = "hw-crc")))]
type CrcTable = crc::Table<16>;
/// The lookup table of the portable CRC-32C (see the 64-bit variant).
#[cfg(all(not(target_pointer_width = "64"), not(feature = "hw-crc")))]
type CrcTable = crc::Table<1>;

#[cfg(not(feature = "hw-crc"))]
const TABLE: crc::Crc<u32, CrcTable> = crc::Crc::<u32, CrcTable>::new(&crc::CRC_32_ISCSI);

/// The CRC-32C (Castagnoli) algorithm used for every record and frame.
///
/// Portable table-driven code by default; with the `hw-crc` feature (std platforms), the CPU's
/// CRC32C instructions where it has them (SSE 4.2, ARMv8 CRC), chosen at run time, several times
/// faster again. Both compute the same function.
#[derive(Clone, Copy, Debug)]
pub struct Crc32c;

/// The CRC-32C of every record and frame (see [`Crc32c`]).
pub const CRC32C: Crc32c = Crc32c;

impl Crc32c {
    /// The CRC-32C of `data`.
    #[inline]
    pub fn checksum(&self, data: &[u8]) -> u32 {
        #[cfg(feature = "hw-crc")]
        {
            crc32c::crc32c(data)
        }
        #[cfg(not(feature = "hw-crc"))]
        {
            TABLE.checksum(data)
        }
    }

    /// A running CRC-32C over data that arrives in pieces.
    #[inline]
    pub fn digest(&self) -> Crc32cDigest {
        #[cfg(feature = "hw-crc")]
        {
            Crc32cDigest { crc: 0 }
        }
        #[cfg(not(feature = "hw-crc"))]
        {
            Crc32cDigest {
                inner: TABLE.digest(),
            }
        }
    }
}

/// A running CRC-32C over data that arrives in pieces.
#[derive(Clone)]
pub struct Crc32cDigest {
    #[cfg(feature = "hw-crc")]
    crc: u32,
    #[cfg(not(feature = "hw-crc"))]
    inner: crc::Digest<'static, u32, CrcTable>,
}

impl Crc32cDigest {
    /// Add `data`.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        #[cfg(feature = "hw-crc")]
        {
            self.crc = crc32c::crc32c_append(self.crc, data);
        }
        #[cfg(not(feature = "hw-crc"))]
        {
            self.inner.update(data);
        }
    }

    /// The CRC-32C of everything added.
    #[inline]
    pub fn finalize(self) -> u32 {
        #[cfg(feature = "hw-crc")]
        {
            self.crc
        }
        #[cfg(not(feature = "hw-crc"))]
        {
            self.inner.finalize()
        }
    }
}

/// The record format version written by this build.
pub const RECORD_VERSION: u8 = 1;
/// Bytes of framing around a body: length, version and CRC.
pub const RECORD_OVERHEAD: usize = 4 + 1 + 4;
/// Largest body a record may carry (64 MiB); a larger length field means corruption.
pub const MAX_RECORD_BODY: usize = 64 << 20;

/// What is wrong with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RecordError {
    /// The bytes end before the record does (a torn or unsynced tail).
    Truncated,
    /// The length field is zero or larger than [`MAX_RECORD_BODY`].
    BadLength(u32),
    /// The version byte is not one this build reads.
    UnknownVersion(u8),
    /// The stored CRC does not match the bytes.
    BadCrc {
        /// The CRC the record carries.
        expected: u32,
        /// The CRC of the bytes as read.
        found: u32,
    },
    /// The output buffer is too small.
    BufferTooSmall,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::Truncated => f.write_str("record ends early (torn or unsynced tail)"),
            RecordError::BadLength(n) => write!(f, "impossible record length {}", n),
            RecordError::UnknownVersion(v) => {
                write!(
                    f,
                    "record format version {} is not supported (this build reads {})",
                    v, RECORD_VERSION
                )
            }
            RecordError::BadCrc { expected, found } => {
                write!(
                    f,
                    "CRC mismatch: record says {:#010x}, bytes give {:#010x}",
                    expected, found
                )
            }
            RecordError::BufferTooSmall => f.write_str("output buffer too small for the record"),
        }
    }
}

/// Frame `body` into `buf`; returns the record's total length.
pub fn encode(body: &[u8], buf: &mut [u8]) -> Result<usize, RecordError> {
    encode_with(buf, body.len(), |dst| dst.copy_from_slice(body))
}

/// Frame a body of `body_len` bytes that `fill` writes in place (avoids a second buffer).
pub fn encode_with(
    buf: &mut [u8],
    body_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Result<usize, RecordError> {
    let total = body_len + RECORD_OVERHEAD;
    if body_len > MAX_RECORD_BODY {
        return Err(RecordError::BadLength(body_len as u32));
    }
    if buf.len() < total {
        return Err(RecordError::BufferTooSmall);
    }
    let len = (body_len + 1) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4] = RECORD_VERSION;
    fill(&mut buf[5..5 + body_len]);
    let crc = CRC32C.checksum(&buf[..5 + body_len]);
    buf[5 + body_len..total].copy_from_slice(&crc.to_le_bytes());
    Ok(total)
}

/// Total record length announced by the first four bytes, if they are there.
pub fn peek_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    Some(len + 8)
}

/// Check and unframe the record at the front of `buf`: returns the body and the bytes used.
pub fn decode(buf: &[u8]) -> Result<(&[u8], usize), RecordError> {
    if buf.len() < 4 {
        return Err(RecordError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len == 0 || len as usize > MAX_RECORD_BODY + 1 {
        return Err(RecordError::BadLength(len));
    }
    let total = len as usize + 8;
    if buf.len() < total {
        return Err(RecordError::Truncated);
    }
    let stored = u32::from_le_bytes([
        buf[total - 4],
        buf[total - 3],
        buf[total - 2],
        buf[total - 1],
    ]);
    let found = CRC32C.checksum(&buf[..total - 4]);
    if stored != found {
        return Err(RecordError::BadCrc {
            expected: stored,
            found,
        });
    }
    if buf[4] != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(buf[4]));
    }
    Ok((&buf[5..total - 4], total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_the_castagnoli_crc_whole_and_in_pieces() {
        // The check value of CRC-32C, and agreement with a plain table implementation for every
        // length up to 300 and every split point (the hardware path works in 8-byte words).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xE306_9283);
        let reference = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
        let mut data = [0u8; 300];
        let mut x = 0x9E37_79B9u32;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        for len in 0..data.len() {
            let want = reference.checksum(&data[..len]);
            assert_eq!(CRC32C.checksum(&data[..len]), want, "length {}", len);
            let cut = len / 3;
            let mut d = CRC32C.digest();
            d.update(&data[..cut]);
            d.update(&data[cut..len]);
            assert_eq!(d.finalize(), want, "length {} split at {}", len, cut);
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 64];
        let n = encode(b"shoal", &mut buf).unwrap();
        assert_eq!(n, 5 + RECORD_OVERHEAD);
        assert_eq!(peek_len(&buf), Some(n));
        assert_eq!(decode(&buf[..n]), Ok((&b"shoal"[..], n)));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = [0u8; 32];
        let n = encode(b"durable bytes", &mut buf).unwrap();
        for bit in 0..n * 8 {
            let mut copy = buf;
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&copy[..n]).is_err(),
                "flip of bit {} went unnoticed",
                bit
            );
        }
    }

    #[test]
    fn torn_tail_is_truncated_not_corrupt() {
        let mut buf = [0u8; 32];
        let n = encode(b"abc", &mut buf).unwrap();
        for cut in 0..n {
            assert_eq!(
                decode(&buf[..cut]),
                Err(RecordError::Truncated),
                "cut at {}",
                cut
            );
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut buf = [0u8; 32];
        let n = encode_with(&mut buf, 2, |d| d.copy_from_slice(b"hi")).unwrap();
        buf[4] = 9;
        let crc = CRC32C.checksum(&buf[..n - 4]);
        buf[n - 4..n].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&buf[..n]), Err(RecordError::UnknownVersion(9)));
    }
}
