//! The sealed-link frames on the wire: records (`shoal_core::record`'s layout: length, version,
//! body, CRC-32C) with the version byte [`SEAL_VERSION`], so any record reader carries them.
//!
//! ```text
//! Hello    kind=1 | cluster u64 | from u64 | to u64 | nonce_i [16]
//! Accept   kind=2 | cluster u64 | from u64 | to u64 | nonce_i [16] | nonce_r [16] | proof [16]
//! Confirm  kind=3 | session u32 | proof [16]
//! Data     kind=4 | session u32 | counter u64 | ciphertext | tag [16]
//! Refused  kind=5 | reason u8
//! ```
//! Integers are little-endian. The CRC only catches line damage early (a serial line); the
//! handshake proofs and the AEAD tag are what authenticate.

use shoal_core::record::{CRC32C, RECORD_OVERHEAD, RECORD_VERSION};

/// The record version byte of a sealed-link frame ("S"); plaintext wire frames carry
/// [`RECORD_VERSION`].
pub const SEAL_VERSION: u8 = 0x53;

pub(crate) const KIND_HELLO: u8 = 1;
pub(crate) const KIND_ACCEPT: u8 = 2;
pub(crate) const KIND_CONFIRM: u8 = 3;
pub(crate) const KIND_DATA: u8 = 4;
pub(crate) const KIND_REFUSED: u8 = 5;

/// Bytes of a proof and of an AEAD tag.
pub(crate) const TAG_BYTES: usize = 16;
/// Body bytes in front of a data frame's ciphertext: kind, session id, counter.
pub(crate) const DATA_HEAD: usize = 1 + 4 + 8;
/// Bytes a sealed data frame adds to the frame it carries: the record around it (length,
/// version, CRC), kind, session id, counter and tag.
pub const SEAL_OVERHEAD: usize = RECORD_OVERHEAD + DATA_HEAD + TAG_BYTES;
pub(crate) const HELLO_BODY: usize = 1 + 8 + 8 + 8 + 16;
pub(crate) const ACCEPT_BODY: usize = HELLO_BODY + 16 + TAG_BYTES;
pub(crate) const CONFIRM_BODY: usize = 1 + 4 + TAG_BYTES;
/// The largest handshake frame (an `Accept`).
pub(crate) const HANDSHAKE_FRAME_BYTES: usize = RECORD_OVERHEAD + ACCEPT_BODY;

/// What a received record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// A sealed-link frame.
    Sealed,
    /// A plaintext wire frame (or any other intact record that is not sealed).
    Plain,
    /// Not an intact record: bad length or CRC.
    Damaged,
}

/// Whether `frame` (a whole record) is a sealed-link frame. A listener uses it to tell a
/// sealed peer from a plaintext one by the first frame.
pub fn is_sealed(frame: &[u8]) -> bool {
    classify(frame) == Class::Sealed
}

pub(crate) fn classify(frame: &[u8]) -> Class {
    let Some(total) = shoal_core::record::peek_len(frame) else {
        return Class::Damaged;
    };
    if total != frame.len() || total < RECORD_OVERHEAD + 1 {
        return Class::Damaged;
    }
    let stored = u32::from_le_bytes([
        frame[total - 4],
        frame[total - 3],
        frame[total - 2],
        frame[total - 1],
    ]);
    if CRC32C.checksum(&frame[..total - 4]) != stored {
        return Class::Damaged;
    }
    match frame[4] {
        SEAL_VERSION => Class::Sealed,
        RECORD_VERSION => Class::Plain,
        _ => Class::Damaged,
    }
}

/// The body (kind onwards) of an intact sealed frame, mutably (data frames are opened in place).
pub(crate) fn body_mut(frame: &mut [u8]) -> &mut [u8] {
    let total = frame.len();
    &mut frame[5..total - 4]
}

/// Frame a body of `body_len` bytes, written by `fill`, into `out`; `None` if `out` is short.
pub(crate) fn encode(
    out: &mut [u8],
    body_len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Option<usize> {
    let total = body_len + RECORD_OVERHEAD;
    if out.len() < total || body_len > shoal_core::record::MAX_RECORD_BODY {
        return None;
    }
    out[..4].copy_from_slice(&((body_len + 1) as u32).to_le_bytes());
    out[4] = SEAL_VERSION;
    fill(&mut out[5..5 + body_len]);
    let crc = CRC32C.checksum(&out[..5 + body_len]);
    out[5 + body_len..total].copy_from_slice(&crc.to_le_bytes());
    Some(total)
}

/// Little-endian reads from a body whose length the caller checked.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(
        b[at..at + 8]
            .try_into()
            .expect("8 bytes checked by the caller"),
    )
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(
        b[at..at + 4]
            .try_into()
            .expect("4 bytes checked by the caller"),
    )
}

pub(crate) fn arr16(b: &[u8], at: usize) -> [u8; 16] {
    b[at..at + 16]
        .try_into()
        .expect("16 bytes checked by the caller")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_plain_and_damaged_records_are_told_apart() {
        let mut buf = [0u8; 64];
        let n = encode(&mut buf, 3, |b| b.copy_from_slice(&[KIND_REFUSED, 1, 2])).unwrap();
        assert_eq!(classify(&buf[..n]), Class::Sealed);
        assert!(is_sealed(&buf[..n]));
        assert_eq!(body_mut(&mut buf[..n]), &[KIND_REFUSED, 1, 2]);
        let mut plain = [0u8; 64];
        let m = shoal_core::record::encode(b"wire", &mut plain).unwrap();
        assert_eq!(classify(&plain[..m]), Class::Plain);
        buf[6] ^= 1;
        assert_eq!(classify(&buf[..n]), Class::Damaged);
        assert_eq!(classify(&buf[..n - 1]), Class::Damaged);
        assert_eq!(classify(&[1, 0]), Class::Damaged);
        assert_eq!(encode(&mut buf[..10], 3, |_| {}), None);
    }
}
