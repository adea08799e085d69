//! Peer frames: the record framing of [`crate::record`] around a header, a message and a tail.
//!
//! ```text
//! record( postcard(FrameHeader) | postcard(Frame body) | tail bytes )
//! ```
//! The header names the cluster, the group and both ends, so a frame that strays into the wrong
//! cluster or group is refused before the core sees it. The tail holds `Append` entries or a
//! `Snapshot` chunk and is handed on borrowed, never copied.

use crate::handshake::Hello;
use crate::message::Message;
use crate::record::{self, RecordError};
use crate::types::{ClusterId, GroupId, NodeId};
use serde::{Deserialize, Serialize};

/// The wire format version written by this build (carried in the record's version byte and here).
pub const WIRE_VERSION: u8 = 1;

/// Who a frame is from and for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameHeader {
    /// Wire format version.
    pub version: u8,
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The group the message belongs to.
    pub group: GroupId,
    /// Sender node id.
    pub from: NodeId,
    /// Intended receiver node id.
    pub to: NodeId,
}

/// What a frame carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Body {
    /// The connection handshake (sent first on every new connection).
    Hello(Hello),
    /// A handshake refusal, with the reason in words.
    HelloRefused(heapless::String<160>),
    /// A Raft message for `header.group`.
    Raft(Message),
}

/// A decoded frame; `tail` borrows from the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Who it is from and for.
    pub header: FrameHeader,
    /// The message.
    pub body: Body,
    /// Entries of an `Append`, or the data of a `Snapshot` chunk.
    pub tail: &'a [u8],
}

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WireError {
    /// The record framing is damaged or incomplete.
    Record(RecordError),
    /// The header or message does not decode.
    Malformed,
    /// The header's version is not one this build speaks.
    UnknownVersion(u8),
    /// The output buffer is too small.
    BufferTooSmall,
}

impl From<RecordError> for WireError {
    fn from(e: RecordError) -> Self {
        WireError::Record(e)
    }
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Record(e) => write!(f, "bad frame: {}", e),
            WireError::Malformed => f.write_str("frame header or message does not decode"),
            WireError::UnknownVersion(v) => {
                write!(
                    f,
                    "wire version {} is not supported (this build speaks {})",
                    v, WIRE_VERSION
                )
            }
            WireError::BufferTooSmall => f.write_str("send buffer too small for the frame"),
        }
    }
}

/// Bytes reserved in front of a tail for framing, header and message. A platform that builds an
/// `Append` reads entries into `buf[FRAME_PREFIX_RESERVE..]` and then calls [`encode_with_tail`].
pub const FRAME_PREFIX_RESERVE: usize = 512;

/// Encode a frame with a tail that is already in `buf[tail_at..tail_at + tail_len]`
/// (`tail_at` must be [`FRAME_PREFIX_RESERVE`] + 5 or more). The frame is built in place: the
/// header and message are written just before the tail, so the tail is never moved. Returns
/// the frame's byte range within `buf`.
pub fn encode_with_tail(
    header: &FrameHeader,
    body: &Body,
    buf: &mut [u8],
    tail_at: usize,
    tail_len: usize,
) -> Result<core::ops::Range<usize>, WireError> {
    let mut scratch = [0u8; FRAME_PREFIX_RESERVE];
    let h = postcard::to_slice(header, &mut scratch)
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let b = postcard::to_slice(body, &mut scratch[h..])
        .map_err(|_| WireError::BufferTooSmall)?
        .len();
    let meta = h + b;
    if tail_at < meta + 5 || tail_at + tail_len + 4 > buf.len() {
        return Err(WireError::BufferTooSmall);
    }
    let start = tail_at - meta - 5;
    buf[start + 5..tail_at].copy_from_slice(&scratch[..meta]);
    let body_len = meta + tail_len;
    buf[start..start + 4].copy_from_slice(&((body_len + 1) as u32).to_le_bytes());
    buf[start + 4] = record::RECORD_VERSION;
    let end = start + 5 + body_len;
    let crc = record::CRC32C.checksum(&buf[start..end]);
    buf[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(start..end + 4)
}

/// Encode a frame whose tail is given as a slice (copied once into `buf`).
pub fn encode(
    header: &FrameHeader,
    body: &Body,
    tail: &[u8],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let tail_at = FRAME_PREFIX_RESERVE + 5;
    if buf.len() < tail_at + tail.len() + 4 {
        return Err(WireError::BufferTooSmall);
    }
    buf[tail_at..tail_at + tail.len()].copy_from_slice(tail);
    let range = encode_with_tail(header, body, buf, tail_at, tail.len())?;
    let len = range.len();
    buf.copy_within(range, 0);
    Ok(len)
}

/// Decode and check the frame at the front of `buf`; returns it and the bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Frame<'_>, usize), WireError> {
    let (inner, used) = record::decode(buf)?;
    let (header, rest) =
        postcard::take_from_bytes::<FrameHeader>(inner).map_err(|_| WireError::Malformed)?;
    if header.version != WIRE_VERSION {
        return Err(WireError::UnknownVersion(header.version));
    }
    let (body, tail) = postcard::take_from_bytes::<Body>(rest).map_err(|_| WireError::Malformed)?;
    Ok((Frame { header, body, tail }, used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{self, EntryIter, EntryRef};
    use crate::types::EntryKind;

    fn hdr() -> FrameHeader {
        FrameHeader {
            version: WIRE_VERSION,
            cluster_id: 42,
            group: 3,
            from: 1,
            to: 2,
        }
    }

    #[test]
    fn append_with_entries_round_trips_without_moving_the_tail() {
        let mut buf = [0u8; 2048];
        let tail_at = FRAME_PREFIX_RESERVE + 5;
        let mut at = tail_at;
        for i in 5..8u64 {
            let e = EntryRef {
                index: i,
                term: 2,
                kind: EntryKind::Normal,
                data: b"value",
            };
            at += entry::encode(&e, &mut buf[at..]).unwrap();
        }
        let msg = Message::Append {
            term: 2,
            prev_index: 4,
            prev_term: 1,
            commit: 3,
            count: 3,
            read_seq: 9,
        };
        let range = encode_with_tail(
            &hdr(),
            &Body::Raft(msg.clone()),
            &mut buf,
            tail_at,
            at - tail_at,
        )
        .unwrap();
        let (frame, used) = decode(&buf[range.clone()]).unwrap();
        assert_eq!(used, range.len());
        assert_eq!(frame.header, hdr());
        assert_eq!(frame.body, Body::Raft(msg));
        let idx: heapless::Vec<u64, 4> = EntryIter::new(frame.tail, 3)
            .map(|e| e.unwrap().index)
            .collect();
        assert_eq!(idx.as_slice(), &[5, 6, 7]);
    }

    #[test]
    fn corruption_and_versions_are_refused() {
        let mut buf = [0u8; 1024];
        let n = encode(
            &hdr(),
            &Body::Raft(Message::TimeoutNow { term: 3 }),
            &[],
            &mut buf,
        )
        .unwrap();
        let mut bad = buf;
        bad[n / 2] ^= 0x10;
        assert!(matches!(
            decode(&bad[..n]),
            Err(WireError::Record(RecordError::BadCrc { .. }))
        ));
        let mut h = hdr();
        h.version = 7;
        let n = encode(
            &h,
            &Body::Raft(Message::TimeoutNow { term: 3 }),
            &[],
            &mut buf,
        )
        .unwrap();
        assert_eq!(decode(&buf[..n]).unwrap_err(), WireError::UnknownVersion(7));
        assert_eq!(
            decode(&buf[..3]).unwrap_err(),
            WireError::Record(RecordError::Truncated)
        );
    }
}
