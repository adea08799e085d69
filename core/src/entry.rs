//! Encoding of one log entry, shared by storage records and the wire.
//!
//! An entry is a small postcard header (index, term, kind, payload length) followed by the raw
//! payload. Decoding borrows the payload from the input buffer: no copy is made, so a platform can
//! move entry bytes from a socket to its log without the core ever holding them.

use crate::types::{EntryKind, LogIndex, Term};
use serde::{Deserialize, Serialize};

/// A borrowed log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Position in the log.
    pub index: LogIndex,
    /// Term in which a leader created it.
    pub term: Term,
    /// What the payload is.
    pub kind: EntryKind,
    /// The payload.
    pub data: &'a [u8],
}

#[derive(Serialize, Deserialize)]
struct Header {
    index: LogIndex,
    term: Term,
    kind: EntryKind,
    len: u32,
}

/// Largest encoded header: index and term (varints of up to 10 bytes), the one-byte kind and
/// the payload length (a varint of up to 5 bytes).
pub const MAX_HEADER_BYTES: usize = 10 + 10 + 1 + 5;

/// Why bytes could not be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CodecError {
    /// The output buffer is too small.
    BufferTooSmall,
    /// The input ends before the item does.
    Truncated,
    /// The input is not a valid encoding.
    Malformed,
}

impl core::fmt::Display for CodecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CodecError::BufferTooSmall => "output buffer too small",
            CodecError::Truncated => "input ends before the item does",
            CodecError::Malformed => "input is not a valid encoding",
        })
    }
}

impl<'a> EntryRef<'a> {
    /// An application command (kind [`EntryKind::Normal`]) at `index`, created in `term`.
    pub const fn normal(index: LogIndex, term: Term, data: &'a [u8]) -> Self {
        EntryRef {
            index,
            term,
            kind: EntryKind::Normal,
            data,
        }
    }

    /// Bytes [`encode`] will write for this entry.
    pub fn encoded_len(&self) -> usize {
        let h = Header {
            index: self.index,
            term: self.term,
            kind: self.kind,
            len: self.data.len() as u32,
        };
        postcard::experimental::serialized_size(&h).unwrap_or(MAX_HEADER_BYTES) + self.data.len()
    }
}

/// Write `e` into `buf`, returning the bytes used.
pub fn encode(e: &EntryRef<'_>, buf: &mut [u8]) -> Result<usize, CodecError> {
    let len = u32::try_from(e.data.len()).map_err(|_| CodecError::BufferTooSmall)?;
    let h = Header {
        index: e.index,
        term: e.term,
        kind: e.kind,
        len,
    };
    let used = postcard::to_slice(&h, buf)
        .map_err(|_| CodecError::BufferTooSmall)?
        .len();
    let end = used + e.data.len();
    if end > buf.len() {
        return Err(CodecError::BufferTooSmall);
    }
    buf[used..end].copy_from_slice(e.data);
    Ok(end)
}

/// Read one entry from the front of `buf`, returning it and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<(EntryRef<'_>, usize), CodecError> {
    let (h, rest) = postcard::take_from_bytes::<Header>(buf).map_err(|e| match e {
        postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated,
        _ => CodecError::Malformed,
    })?;
    let hlen = buf.len() - rest.len();
    let len = h.len as usize;
    if rest.len() < len {
        return Err(CodecError::Truncated);
    }
    Ok((
        EntryRef {
            index: h.index,
            term: h.term,
            kind: h.kind,
            data: &rest[..len],
        },
        hlen + len,
    ))
}

/// Iterates over entries encoded back to back.
#[derive(Clone, Debug)]
pub struct EntryIter<'a> {
    buf: &'a [u8],
    remaining: u32,
}

impl<'a> EntryIter<'a> {
    /// Iterate `count` entries packed in `buf`.
    pub fn new(buf: &'a [u8], count: u32) -> Self {
        EntryIter {
            buf,
            remaining: count,
        }
    }

    /// An iterator over nothing.
    pub fn empty() -> Self {
        EntryIter {
            buf: &[],
            remaining: 0,
        }
    }

    /// Entries not yet yielded.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<EntryRef<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        match decode(self.buf) {
            Ok((e, used)) => {
                self.buf = &self.buf[used..];
                self.remaining -= 1;
                Some(Ok(e))
            }
            Err(err) => {
                self.remaining = 0;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_borrowing() {
        let mut buf = [0u8; 128];
        let e = EntryRef::normal(300, 7, b"hello");
        let n = encode(&e, &mut buf).unwrap();
        assert_eq!(n, e.encoded_len());
        let (d, used) = decode(&buf[..n]).unwrap();
        assert_eq!(d, e);
        assert_eq!(used, n);
        // The payload is borrowed from the input, not copied.
        assert_eq!(d.data.as_ptr(), buf[n - 5..].as_ptr());
    }

    #[test]
    fn the_largest_header_fits_max_header_bytes() {
        let h = Header {
            index: u64::MAX,
            term: u64::MAX,
            kind: EntryKind::Config,
            len: u32::MAX,
        };
        let mut buf = [0u8; MAX_HEADER_BYTES];
        let n = postcard::to_slice(&h, &mut buf).unwrap().len();
        assert_eq!(n, MAX_HEADER_BYTES, "the bound is exact");
    }

    #[test]
    fn truncated_and_small_buffers_are_reported() {
        let mut buf = [0u8; 64];
        let e = EntryRef {
            index: 1,
            term: 1,
            kind: EntryKind::Config,
            data: &[9; 20],
        };
        let n = encode(&e, &mut buf).unwrap();
        assert_eq!(decode(&buf[..n - 1]), Err(CodecError::Truncated));
        assert_eq!(encode(&e, &mut buf[..10]), Err(CodecError::BufferTooSmall));
    }

    #[test]
    fn iterates_packed_entries() {
        let mut buf = [0u8; 256];
        let mut at = 0;
        for i in 1..=3u64 {
            let data = [i as u8; 3];
            let e = EntryRef::normal(i, 2, &data);
            at += encode(&e, &mut buf[at..]).unwrap();
        }
        let got: heapless::Vec<u64, 4> = EntryIter::new(&buf[..at], 3)
            .map(|e| e.unwrap().index)
            .collect();
        assert_eq!(got.as_slice(), &[1, 2, 3]);
    }
}
