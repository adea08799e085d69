//! Sealed peer links on the raft port (`--peer-psk-file`): the cluster key that boards hold,
//! so `shoald` and boards (and `shoald`s among themselves) speak over links that only holders
//! of the key can read or write (`shoal-seal`; threat model in docs/SECURITY.md).
//!
//! With a key, every connection on the raft port is sealed, whoever dials: the dialer runs the
//! sealed handshake first, then the usual `Hello` and every frame travel sealed. A plaintext
//! peer, a peer with another key, and a sealed peer when this node has no key are refused with
//! a log line that says which. This module owns only the framing of one connection
//! ([`Channel`]); the sockets and threads stay in `net.rs`.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use shoal_core::wire::{self, Body, FrameHeader};
use shoal_core::{ClusterId, NodeId, NO_NODE};
use shoal_seal::{
    ClusterKey, Link, Nonce, Order, Received, Refusal, HANDSHAKE_FRAME_BYTES, SEAL_OVERHEAD,
};

use super::net::read_record;

/// Largest record read while a sealed link opens (the handshake and the sealed `Hello`, as
/// the plaintext handshake reads its first frame).
const HANDSHAKE_RECORD_BYTES: usize = 64 << 10;

/// This node's cluster key and what it did with it.
pub struct PeerSeal {
    key: ClusterKey,
    cluster_id: ClusterId,
    node_id: NodeId,
    /// Sealed links that opened (both directions of connections).
    pub opened: AtomicU64,
    /// Peers refused at the sealed handshake (plaintext, wrong key, wrong cluster or node).
    pub refused: AtomicU64,
}

impl PeerSeal {
    /// The seal of node `node_id` in `cluster_id`, with the key read from `path`.
    pub fn from_file(path: &Path, cluster_id: ClusterId, node_id: NodeId) -> Result<Self, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("--peer-psk-file {}: {e}", path.display()))?;
        let key = ClusterKey::from_hex(&text)
            .map_err(|e| format!("--peer-psk-file {}: {e}", path.display()))?;
        warn_if_readable_by_others(path);
        Ok(PeerSeal {
            key,
            cluster_id,
            node_id,
            opened: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn link(&self, peer: NodeId) -> Link {
        Link::new(
            self.key.clone(),
            self.cluster_id,
            self.node_id,
            peer,
            Order::Stream,
        )
    }

    fn refuse(&self, peer: &str, why: &dyn std::fmt::Display) -> io::Error {
        self.refused.fetch_add(1, Ordering::Relaxed);
        log::warn!("sealed link with {peer} refused: {why}");
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("sealed link: {why}"),
        )
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            log::warn!(
                "--peer-psk-file {} can be read by other users (mode {:o}); chmod 600 it",
                path.display(),
                m.permissions().mode() & 0o777
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// A fresh handshake nonce from the operating system's generator.
fn os_nonce() -> Nonce {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("the operating system's random generator failed");
    n
}

/// How one peer connection frames what it carries.
pub enum Channel {
    /// Plain wire frames (no `--peer-psk-file`).
    Plain,
    /// Sealed frames over an open link.
    Sealed(Box<Link>),
}

impl Channel {
    /// The dialing side of a new connection to `peer`: with a key, run the sealed handshake
    /// before anything else is written.
    pub fn dial<R: Read, W: Write>(
        seal: Option<&PeerSeal>,
        peer: NodeId,
        reader: &mut R,
        writer: &mut W,
    ) -> io::Result<Channel> {
        let Some(seal) = seal else {
            return Ok(Channel::Plain);
        };
        let mut link = seal.link(peer);
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        let n = link
            .dial(&mut os_nonce, &mut out)
            .expect("the buffer holds a handshake frame");
        writer.write_all(&out[..n])?;
        let mut answer = read_record(reader, HANDSHAKE_RECORD_BYTES).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                let why = format!(
                    "node {peer} closed the connection during the sealed handshake \
                     (has it no --peer-psk-file, or another cluster id?)"
                );
                seal.refuse(&format!("node {peer}"), &why)
            } else {
                e
            }
        })?;
        match link.receive(&mut answer, &mut os_nonce, &mut out) {
            Ok(Received::Opened { reply }) => {
                writer.write_all(&out[..reply])?;
                seal.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Channel::Sealed(Box::new(link)))
            }
            Ok(_) => Err(seal.refuse(&format!("node {peer}"), &Refusal::Unexpected)),
            Err(r) => {
                answer_refusal(writer, &r);
                Err(seal.refuse(&format!("node {peer}"), &r))
            }
        }
    }

    /// The accepting side, given the connection's first record: with a key it must be a
    /// sealed `Hello` (then the handshake completes here and the first sealed frame is
    /// returned); without one, a plain frame. Refusals are logged with the reason and answered.
    pub fn accept<R: Read, W: Write>(
        seal: Option<&PeerSeal>,
        local: (ClusterId, NodeId),
        from: &str,
        first: Vec<u8>,
        reader: &mut R,
        writer: &mut W,
    ) -> io::Result<(Channel, Vec<u8>)> {
        let sealed = shoal_seal::is_sealed(&first);
        let Some(seal) = seal else {
            if sealed {
                log::warn!(
                    "peer connection from {from} refused: it offers a sealed link (a cluster \
                     key) and this node has no --peer-psk-file"
                );
                let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
                let reason = shoal_seal::RefusedReason::Other;
                if let Some(n) = Link::refusal(reason, &mut out) {
                    let _ = writer.write_all(&out[..n]);
                }
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "sealed peer on a plaintext raft port",
                ));
            }
            return Ok((Channel::Plain, first));
        };
        if !sealed {
            let why = "plaintext peer: this node requires sealed links (--peer-psk-file) \
                       and the peer has no cluster key configured";
            // Tell a plaintext peer in words it understands: a plain HelloRefused.
            let header = FrameHeader::new(local.0, 0, local.1, NO_NODE);
            let mut reason = heapless::String::<160>::new();
            let _ = reason.push_str("this node requires sealed links (a cluster key)");
            let mut buf = [0u8; 512];
            if let Ok(n) = wire::encode(&header, &Body::HelloRefused(reason), &[], &mut buf) {
                let _ = writer.write_all(&buf[..n]);
            }
            return Err(seal.refuse(from, &why));
        }
        let mut link = seal.link(0);
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        let mut record = first;
        loop {
            match link.receive(&mut record, &mut os_nonce, &mut out) {
                Ok(Received::Reply(n)) => writer.write_all(&out[..n])?,
                Ok(Received::Opened { .. }) => {
                    seal.opened.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Received::Data { plain, opened }) => {
                    if opened {
                        seal.opened.fetch_add(1, Ordering::Relaxed);
                    }
                    let plain = plain.to_vec();
                    return Ok((Channel::Sealed(Box::new(link)), plain));
                }
                Ok(Received::Ignored) => {}
                Err(r) => {
                    answer_refusal(writer, &r);
                    let who = match link.peer() {
                        0 => from.to_string(),
                        id => format!("node {id} ({from})"),
                    };
                    return Err(seal.refuse(&who, &r));
                }
            }
            record = read_record(reader, HANDSHAKE_RECORD_BYTES)?;
        }
    }

    fn open(&mut self, seal: &PeerSeal, mut record: Vec<u8>, from: &str) -> io::Result<Vec<u8>> {
        let Channel::Sealed(link) = self else {
            return Ok(record);
        };
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        let (at, len) = match link.receive(&mut record, &mut os_nonce, &mut out) {
            Ok(Received::Data { plain, .. }) => (plain.as_ptr() as usize, plain.len()),
            Ok(_) => return Err(seal.refuse(from, &Refusal::Unexpected)),
            Err(r) => return Err(seal.refuse(from, &r)),
        };
        // The frame was opened in place: keep just its contents, without a copy.
        let start = at - record.as_ptr() as usize;
        record.truncate(start + len);
        record.drain(..start);
        Ok(record)
    }

    /// Read the next wire frame.
    pub fn read<R: Read>(
        &mut self,
        seal: Option<&PeerSeal>,
        reader: &mut R,
        max: usize,
        from: &str,
    ) -> io::Result<Vec<u8>> {
        let record = read_record(reader, max + SEAL_OVERHEAD)?;
        match (self, seal) {
            (Channel::Plain, _) => Ok(record),
            (ch, Some(seal)) => ch.open(seal, record, from),
            (Channel::Sealed(_), None) => unreachable!("a sealed channel is made with a key"),
        }
    }

    /// Append `frame`, sealed when the channel is, to `out`.
    pub fn append(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        match self {
            Channel::Plain => out.extend_from_slice(frame),
            Channel::Sealed(link) => {
                let start = out.len();
                out.resize(start + frame.len() + SEAL_OVERHEAD, 0);
                let n = link
                    .seal(frame, &mut out[start..])
                    .expect("the link is open and the room was made");
                out.truncate(start + n);
            }
        }
    }

    /// Write one frame, sealed when the channel is.
    pub fn write<W: Write>(&mut self, writer: &mut W, frame: &[u8]) -> io::Result<()> {
        match self {
            Channel::Plain => writer.write_all(frame),
            Channel::Sealed(_) => {
                let mut out = Vec::with_capacity(frame.len() + SEAL_OVERHEAD);
                self.append(frame, &mut out);
                writer.write_all(&out)
            }
        }
    }
}

/// Tell the peer why its handshake was refused, when the cause is worth telling.
fn answer_refusal<W: Write>(writer: &mut W, r: &Refusal) {
    if let Some(reason) = r.answer() {
        let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
        if let Some(n) = Link::refusal(reason, &mut out) {
            let _ = writer.write_all(&out[..n]);
        }
    }
}
