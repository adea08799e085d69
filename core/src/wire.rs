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
use crate::raft::MAX_CONFIG_BYTES;
use crate::record::{self, RecordError};
use crate::types::{ClusterId, GroupId, NodeId};
use serde::{Deserialize, Serialize};

/// The wire format version written by this build (carried in the record's version byte and here).
pub const WIRE_VERSION: u8 = 2;

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

impl FrameHeader {
    /// The header of a frame of `group` from `from` to `to` in cluster `cluster_id`, at this
    /// build's [`WIRE_VERSION`].
    pub const fn new(cluster_id: ClusterId, group: GroupId, from: NodeId, to: NodeId) -> Self {
        FrameHeader {
            version: WIRE_VERSION,
            cluster_id,
            group,
            from,
            to,
        }
    }
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
    /// A node's liveness ping (quiescence: a quiet group's members watch its leader's node,
    /// not the group). Carries nothing; `header.group` is 0.
    #[cfg(feature = "quiesce")]
    Ping,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WireError {
    /// The record framing is damaged or incomplete.
    #[error("bad frame: {0}")]
    Record(RecordError),
    /// The header or message does not decode.
    #[error("frame header or message does not decode")]
    Malformed,
    /// The header's version is not one this build speaks.
    #[error("wire version {0} is not supported (this build speaks {WIRE_VERSION})")]
    UnknownVersion(u8),
    /// The output buffer is too small.
    #[error("send buffer too small for the frame")]
    BufferTooSmall,
}

impl From<RecordError> for WireError {
    fn from(e: RecordError) -> Self {
        WireError::Record(e)
    }
}

/// Bytes reserved in front of a tail for framing, header and message. A platform that builds an
/// `Append` reads entries into `buf[FRAME_PREFIX_RESERVE..]` and then calls [`encode_with_tail`].
pub const FRAME_PREFIX_RESERVE: usize = 512;

/// Largest encoded [`FrameHeader`]: the version byte and four varints.
const MAX_FRAME_HEADER_BYTES: usize = 1 + 10 + 5 + 10 + 10;
/// Largest encoded [`Body`]: a snapshot chunk, whose header holds the largest membership
/// (larger than a `Hello` or a refusal of 160 bytes).
const MAX_BODY_BYTES: usize = 1 + 1 + 10 + (10 + 10 + MAX_CONFIG_BYTES + 10 + 5) + 10 + 1;

// Every frame's header and message fit in front of its tail.
const _: () = assert!(MAX_FRAME_HEADER_BYTES + MAX_BODY_BYTES <= FRAME_PREFIX_RESERVE);

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
    use crate::membership::Membership;
    use crate::message::*;

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
            let e = EntryRef::normal(i, 2, b"value");
            at += entry::encode(&e, &mut buf[at..]).unwrap();
        }
        let msg = Message::Append(Append {
            term: 2,
            prev_index: 4,
            prev_term: 1,
            commit: 3,
            count: 3,
            read_seq: 9,
            clock_ms: 0,
        });
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
    fn the_largest_header_and_message_fit_the_reserved_prefix() {
        let membership = crate::membership::largest();
        let header = FrameHeader {
            version: u8::MAX,
            cluster_id: u64::MAX,
            group: u32::MAX,
            from: u64::MAX,
            to: u64::MAX,
        };
        let body = Body::Raft(Message::Snapshot(Snapshot {
            term: u64::MAX,
            meta: SnapshotHeader {
                index: u64::MAX,
                term: u64::MAX,
                membership,
                size_bytes: u64::MAX,
                crc: u32::MAX,
            },
            offset: u64::MAX,
            done: true,
        }));
        let mut buf = [0u8; 1024];
        let n = postcard::to_slice(&header, &mut buf).unwrap().len();
        assert_eq!(n, MAX_FRAME_HEADER_BYTES);
        let n = postcard::to_slice(&body, &mut buf).unwrap().len();
        assert_eq!(n, MAX_BODY_BYTES);
        let refusal =
            Body::HelloRefused(heapless::String::try_from("x".repeat(160).as_str()).unwrap());
        assert!(postcard::to_slice(&refusal, &mut buf).unwrap().len() < MAX_BODY_BYTES);
    }

    #[test]
    fn corruption_and_versions_are_refused() {
        let mut buf = [0u8; 1024];
        let n = encode(
            &hdr(),
            &Body::Raft(Message::TimeoutNow(TimeoutNow { term: 3 })),
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
            &Body::Raft(Message::TimeoutNow(TimeoutNow { term: 3 })),
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

    /// A header with multi-byte varints in it, shared by the golden frames.
    fn golden_hdr() -> FrameHeader {
        FrameHeader {
            version: WIRE_VERSION,
            cluster_id: 0x5348_4F41,
            group: 7,
            from: 300,
            to: 2,
        }
    }

    /// The encoding of version 2 frames, byte for byte. Embedded nodes and peers running an
    /// older build of this version decode exactly these bytes: a change here breaks the wire
    /// format (bump `WIRE_VERSION` instead).
    fn golden_frames() -> [(&'static str, Message, &'static [u8], &'static [u8]); 8] {
        let membership = Membership::new(&[1, 2, 300], &[9]).expect("a valid membership");
        [
            (
                "append",
                Message::Append(Append {
                    term: 5,
                    prev_index: 1000,
                    prev_term: 4,
                    commit: 999,
                    count: 1,
                    read_seq: 77,
                    clock_ms: 123_456,
                }),
                &[1, 2, 3],
                &[
                    0x1b, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x04, 0x05, 0xe8, 0x07, 0x04, 0xe7, 0x07, 0x01, 0x4d, 0xc0,
                    0xc4, 0x07, 0x01, 0x02, 0x03, 0xfc, 0xf2, 0x80, 0xbe,
                ],
            ),
            (
                "append_resp",
                Message::AppendResp(AppendResp {
                    term: 5,
                    success: false,
                    match_index: 0,
                    conflict_term: 3,
                    conflict_index: 870,
                    read_seq: 77,
                    echo_ms: 123_456,
                    clock_ms: 654_321,
                }),
                &[],
                &[
                    0x1a, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x05, 0x05, 0x00, 0x00, 0x03, 0xe6, 0x06, 0x4d, 0xc0, 0xc4,
                    0x07, 0xf1, 0xf7, 0x27, 0x41, 0xe4, 0x4f, 0x78,
                ],
            ),
            (
                "vote",
                Message::Vote(Vote {
                    term: 6,
                    last_index: 1234,
                    last_term: 5,
                    transfer: true,
                }),
                &[],
                &[
                    0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x02, 0x06, 0xd2, 0x09, 0x05, 0x01, 0xe3, 0xd5, 0x44, 0x2f,
                ],
            ),
            (
                "prevote_resp",
                Message::PreVoteResp(VoteResp {
                    term: 6,
                    granted: true,
                }),
                &[],
                &[
                    0x0f, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x01, 0x06, 0x01, 0x85, 0xfb, 0x56, 0x6d,
                ],
            ),
            (
                "snapshot",
                Message::Snapshot(Snapshot {
                    term: 5,
                    meta: SnapshotHeader {
                        index: 4096,
                        term: 4,
                        membership,
                        size_bytes: 65536,
                        crc: 0xDEAD_BEEF,
                    },
                    offset: 1024,
                    done: false,
                }),
                &[0xAA; 4],
                &[
                    0x2a, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x06, 0x05, 0x80, 0x20, 0x04, 0x03, 0x01, 0x02, 0xac, 0x02,
                    0x01, 0x09, 0x00, 0x00, 0x00, 0x80, 0x80, 0x04, 0xef, 0xfd, 0xb6, 0xf5, 0x0d,
                    0x80, 0x08, 0x00, 0xaa, 0xaa, 0xaa, 0xaa, 0x0f, 0x95, 0x16, 0x31,
                ],
            ),
            (
                "snapshot_resp",
                Message::SnapshotResp(SnapshotResp {
                    term: 5,
                    index: 4096,
                    next_offset: 2048,
                    done: false,
                }),
                &[],
                &[
                    0x13, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x07, 0x05, 0x80, 0x20, 0x80, 0x10, 0x00, 0xb0, 0xbf, 0x14,
                    0x86,
                ],
            ),
            (
                "read_index_resp",
                Message::ReadIndexResp(ReadIndexResp {
                    term: 5,
                    id: 42,
                    index: Some(999),
                }),
                &[],
                &[
                    0x12, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x0a, 0x05, 0x2a, 0x01, 0xe7, 0x07, 0xbc, 0x1b, 0x98, 0x74,
                ],
            ),
            (
                "timeout_now",
                Message::TimeoutNow(TimeoutNow { term: 5 }),
                &[],
                &[
                    0x0e, 0x00, 0x00, 0x00, 0x01, 0x02, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac,
                    0x02, 0x02, 0x02, 0x08, 0x05, 0x7e, 0x38, 0x88, 0x6c,
                ],
            ),
        ]
    }

    #[test]
    fn frames_encode_to_the_pinned_bytes_of_wire_version_2() {
        for (name, msg, tail, golden) in golden_frames() {
            let mut buf = [0u8; 1024];
            let n = encode(&golden_hdr(), &Body::Raft(msg), tail, &mut buf).unwrap();
            assert_eq!(
                &buf[..n],
                golden,
                "{name}: the encoding of version 2 changed"
            );
        }
    }

    #[test]
    fn the_pinned_bytes_of_wire_version_2_decode_to_the_same_frames() {
        for (name, msg, tail, golden) in golden_frames() {
            let (frame, used) = decode(golden).unwrap();
            assert_eq!(used, golden.len(), "{name}");
            assert_eq!(frame.header, golden_hdr(), "{name}");
            assert_eq!(frame.body, Body::Raft(msg), "{name}");
            assert_eq!(frame.tail, tail, "{name}");
        }
    }

    /// A version 1 append (before the clock fields), as a peer of an older build sends it.
    const APPEND_V1: &[u8] = &[
        0x18, 0x00, 0x00, 0x00, 0x01, 0x01, 0xc1, 0x9e, 0xa1, 0x9a, 0x05, 0x07, 0xac, 0x02, 0x02,
        0x02, 0x04, 0x05, 0xe8, 0x07, 0x04, 0xe7, 0x07, 0x01, 0x4d, 0x01, 0x02, 0x03, 0xf8, 0x1d,
        0xc6, 0xd6,
    ];

    #[test]
    fn a_version_1_frame_is_refused_naming_both_versions() {
        let err = decode(APPEND_V1).unwrap_err();
        assert_eq!(err, WireError::UnknownVersion(1));
        let mut text = heapless::String::<128>::new();
        core::fmt::write(&mut text, format_args!("{err}")).unwrap();
        assert_eq!(
            text.as_str(),
            "wire version 1 is not supported (this build speaks 2)"
        );
    }
}
