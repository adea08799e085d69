//! Frames: a request or an answer with its correlation id, as one record (length, version,
//! body, CRC-32C) on the connection, and the codec that writes and reads them.

use serde::{Deserialize, Serialize};
use shoal_core::record;
use shoal_core::{ClusterId, GroupId};

use super::{HealthInfo, NodeStatusInfo, Request, Response};

/// Version of this protocol; a server refuses frames of another major version with
/// [`ErrorCode::UnsupportedVersion`](super::ErrorCode::UnsupportedVersion). Version 2 added
/// the frame's [`RequestFrame::cluster`].
pub const PROTOCOL_VERSION: u16 = 2;

/// [`RequestFrame::cluster`] of a request any cluster may serve.
pub const ANY_CLUSTER: ClusterId = 0;

/// Largest request or response body accepted (16 MiB).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// A request and its correlation id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFrame {
    /// Protocol version of the sender.
    pub version: u16,
    /// Chosen by the client; echoed in the answer.
    pub id: u64,
    /// The Raft group the request is for (0 is the default group).
    pub group: GroupId,
    /// The cluster the request is meant for ([`ANY_CLUSTER`]: whichever the node belongs
    /// to). A node of another cluster refuses it with
    /// [`ErrorCode::WrongCluster`](super::ErrorCode::WrongCluster) and does nothing, so a
    /// client redirected to an address that now belongs to another cluster (a stale member
    /// record, a reused port) cannot write there.
    pub cluster: ClusterId,
    /// What is asked.
    pub request: Request,
}

impl RequestFrame {
    /// A request of this protocol version, with id `id`, for group `group` of any cluster.
    pub fn new(id: u64, group: GroupId, request: Request) -> RequestFrame {
        RequestFrame {
            version: PROTOCOL_VERSION,
            id,
            group,
            cluster: ANY_CLUSTER,
            request,
        }
    }

    /// The same request, meant for cluster `cluster` only.
    pub fn for_cluster(mut self, cluster: ClusterId) -> RequestFrame {
        self.cluster = cluster;
        self
    }
}

/// The protocol version a request frame's body starts with, if it has one: a frame that does
/// not decode may still say which version its sender speaks.
pub fn request_version(buf: &[u8]) -> Option<u16> {
    let (body, _) = record::decode(buf).ok()?;
    postcard::take_from_bytes::<u16>(body).ok().map(|(v, _)| v)
}

/// An answer (or a watch event) and the id of the request it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseFrame {
    /// The request's id.
    pub id: u64,
    /// The answer.
    pub response: Response,
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The record framing is damaged or incomplete.
    Record(record::RecordError),
    /// The body does not decode as the expected message.
    Decode(postcard::Error),
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    TooLarge(usize),
    /// The frame does not decode, and its sender speaks another protocol version than
    /// [`PROTOCOL_VERSION`] (found by [`request_version`]).
    Version(u16),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Record(e) => write!(f, "bad frame: {e}"),
            FrameError::Decode(e) => write!(f, "frame body does not decode: {e}"),
            FrameError::TooLarge(n) => write!(
                f,
                "frame of {n} bytes exceeds the {MAX_FRAME_BYTES}-byte limit"
            ),
            FrameError::Version(v) => write!(
                f,
                "protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Append one framed message to `out`, serialized in place (no buffer of its own).
pub fn encode<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    // Length and version first; postcard appends the body; the CRC goes last.
    out.extend_from_slice(&[0; 5]);
    if let Err(e) = postcard::to_extend(msg, Append(out)) {
        out.truncate(start);
        return Err(FrameError::Decode(e));
    }
    seal(out, start)
}

/// A [`Response`] serialized once ([`EncodedResponse::new`]) to answer many requests: each
/// answer frames the same bytes with its own id ([`encode_encoded`]) instead of serializing
/// the response again. A server answers a request whose answer is large and the same for
/// everyone (the node's health, which names every group) this way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedResponse(Vec<u8>);

impl EncodedResponse {
    /// `response`, serialized.
    pub fn new(response: &Response) -> Result<EncodedResponse, FrameError> {
        serialized(response).map(EncodedResponse)
    }

    /// `Response::Health` of the already serialized `health`.
    pub fn health(health: &EncodedHealth) -> Result<EncodedResponse, FrameError> {
        with_health(&Response::Health(HealthInfo::default()), health)
    }

    /// `Response::NodeStatus(info)` with the already serialized `health` in place of
    /// `info.health` (which is not sent). Only the rest of `info` is serialized: what a node
    /// answers about one group is small, its health names every group it hosts.
    pub fn node_status(
        mut info: NodeStatusInfo,
        health: &EncodedHealth,
    ) -> Result<EncodedResponse, FrameError> {
        info.health = HealthInfo::default();
        with_health(&Response::NodeStatus(Box::new(info)), health)
    }
}

/// A node's [`HealthInfo`], serialized once to go into many answers
/// ([`EncodedResponse::health`], [`EncodedResponse::node_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedHealth(Vec<u8>);

impl EncodedHealth {
    /// `health`, serialized.
    pub fn new(health: &HealthInfo) -> Result<EncodedHealth, FrameError> {
        serialized(health).map(EncodedHealth)
    }
}

fn serialized<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    postcard::to_allocvec(value).map_err(FrameError::Decode)
}

/// `response` (which holds the default [`HealthInfo`] as its last field: postcard writes fields
/// in order, with nothing after the last) serialized, that health's bytes replaced by `health`.
fn with_health(response: &Response, health: &EncodedHealth) -> Result<EncodedResponse, FrameError> {
    let mut bytes = serialized(response)?;
    let placeholder = serialized(&HealthInfo::default())?;
    debug_assert!(
        bytes.ends_with(&placeholder),
        "health is the answer's last field"
    );
    bytes.truncate(bytes.len() - placeholder.len());
    bytes.extend_from_slice(&health.0);
    Ok(EncodedResponse(bytes))
}

/// Append the frame of a [`ResponseFrame`] with `id` and the already serialized `response`:
/// the same bytes [`encode`] makes of that frame.
pub fn encode_encoded(
    id: u64,
    response: &EncodedResponse,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; 5]);
    // A frame's body is its fields in order: the id (a varint), then the response.
    if let Err(e) = postcard::to_extend(&id, Append(out)) {
        out.truncate(start);
        return Err(FrameError::Decode(e));
    }
    out.extend_from_slice(&response.0);
    seal(out, start)
}

/// Fill in the length and version of the frame that starts at `start` of `out` (its body
/// follows them), and append its CRC.
fn seal(out: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
    let body = out.len() - start - 5;
    if body > MAX_FRAME_BYTES {
        out.truncate(start);
        return Err(FrameError::TooLarge(body));
    }
    out[start..start + 4].copy_from_slice(&((body + 1) as u32).to_le_bytes());
    out[start + 4] = record::RECORD_VERSION;
    let crc = record::CRC32C.checksum(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Appends to a borrowed buffer (postcard takes its writer by value; on an error the buffer
/// keeps what it held).
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

/// Total length of the frame at the front of `buf`, once its length field is there.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    record::peek_len(buf)
}

/// Try to take one framed message from the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the message and the bytes it used.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    match record::peek_len(buf) {
        None => return Ok(None),
        Some(total) if total > MAX_FRAME_BYTES + record::RECORD_OVERHEAD => {
            return Err(FrameError::TooLarge(total))
        }
        Some(total) if buf.len() < total => return Ok(None),
        Some(_) => {}
    }
    let (body, used) = record::decode(buf).map_err(FrameError::Record)?;
    let msg = postcard::from_bytes(body).map_err(FrameError::Decode)?;
    Ok(Some((msg, used)))
}
