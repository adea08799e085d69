//! One sealed link: the handshake state on each side and the per-frame counters.
//!
//! A [`Link`] never sends by itself: [`Link::dial`], [`Link::receive`] and [`Link::seal`] write
//! the frames to send into a buffer the caller gives, so the same state machine serves a TCP
//! connection in `shoald`, a socket of a Linux board and a polled UART on a microcontroller.
//!
//! On a line without connections (a UART), both sides may dial at once. The side with the
//! lower node id keeps its dial and ignores the other's `Hello`; the higher one answers it. A
//! side that already has an open session keeps it until a new handshake completes, so a
//! replayed `Hello` cannot close a working link.

use crate::frame::{self, Class, ACCEPT_BODY, CONFIRM_BODY, DATA_HEAD, HELLO_BODY, TAG_BYTES};
use crate::key::ClusterKey;
use crate::schedule::{self, LinkKeys, Nonce, NonceSource, Transcript};
use crate::schedule::{PROOF_INITIATOR, PROOF_RESPONDER};

/// "No node": a responder that accepts whichever node says `Hello` (a listening socket).
const ANY_NODE: u64 = 0;

/// How strictly frame counters must follow each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// A byte stream that loses nothing (TCP): each frame must carry exactly the next counter,
    /// so a dropped, replayed or reordered frame is refused.
    Stream,
    /// A line that may lose frames (a UART under COBS): each frame's counter must be greater
    /// than the last accepted one, so replayed and reordered frames are refused; a gap is a
    /// lost frame, which Raft tolerates.
    Datagram,
}

/// Why a received frame was refused. Nothing of a refused frame is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A plaintext wire frame where only sealed frames are accepted.
    Plaintext,
    /// Not an intact sealed frame (bad length, CRC, or layout).
    Malformed,
    /// The peer is in another cluster.
    WrongCluster {
        /// Our cluster id.
        ours: u64,
        /// The cluster id the frame names.
        theirs: u64,
    },
    /// The frame is not from the node this link belongs to, or not for this node.
    WrongNode {
        /// The node this link expects (sender) or this node (receiver).
        expected: u64,
        /// The node the frame names.
        found: u64,
    },
    /// The peer's handshake proof is wrong: it does not hold this cluster key.
    BadProof,
    /// A handshake frame that does not fit this side's state.
    Unexpected,
    /// A data frame of a session this link does not have: sealed under another link's keys.
    UnknownSession,
    /// A data frame whose counter is not the next one: replayed, reordered or, on a stream, a
    /// frame was removed.
    Replayed {
        /// The counter the frame carries.
        counter: u64,
        /// The lowest counter this link accepts now.
        next: u64,
    },
    /// A data frame whose tag is wrong: altered, cut, or sealed under another key.
    BadTag,
    /// A data frame before the handshake completed.
    NotOpen,
    /// The peer refused our handshake, for the reason it gives.
    PeerRefused(RefusedReason),
}

/// The reason a peer gives in a `Refused` frame (a hint only: such a frame is not
/// authenticated, and an attacker able to forge it can as well cut the line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedReason {
    /// The peer found our proof wrong: the keys differ.
    BadProof,
    /// The peer is in another cluster.
    WrongCluster,
    /// The peer does not expect us, or is not the node we dialed.
    WrongNode,
    /// Any other reason.
    Other,
}

impl RefusedReason {
    fn code(self) -> u8 {
        match self {
            RefusedReason::BadProof => 1,
            RefusedReason::WrongCluster => 2,
            RefusedReason::WrongNode => 3,
            RefusedReason::Other => 0,
        }
    }

    fn from_code(c: u8) -> Self {
        match c {
            1 => RefusedReason::BadProof,
            2 => RefusedReason::WrongCluster,
            3 => RefusedReason::WrongNode,
            _ => RefusedReason::Other,
        }
    }
}

impl Refusal {
    /// What to tell the peer, if anything: only a refused handshake is answered (a refused
    /// data frame may be an attacker's, and answering it would only help them).
    pub fn answer(&self) -> Option<RefusedReason> {
        match self {
            Refusal::BadProof => Some(RefusedReason::BadProof),
            Refusal::WrongCluster { .. } => Some(RefusedReason::WrongCluster),
            Refusal::WrongNode { .. } => Some(RefusedReason::WrongNode),
            _ => None,
        }
    }

    /// Whether the peer failed to prove it holds the cluster key (the cause to count as "wrong
    /// key"), as opposed to damage, replay or a misaddressed node.
    pub fn is_key_mismatch(&self) -> bool {
        matches!(
            self,
            Refusal::BadProof | Refusal::PeerRefused(RefusedReason::BadProof)
        )
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Plaintext => f.write_str(
                "plaintext frame on a sealed link: the peer has no cluster key configured",
            ),
            Refusal::Malformed => f.write_str("malformed sealed frame (bad length, CRC or layout)"),
            Refusal::WrongCluster { ours, theirs } => write!(
                f,
                "sealed handshake from cluster {}, this node is in cluster {}",
                theirs, ours
            ),
            Refusal::WrongNode { expected, found } => {
                write!(
                    f,
                    "sealed frame names node {}, expected node {}",
                    found, expected
                )
            }
            Refusal::BadProof => {
                f.write_str("the peer's key proof is wrong: it does not hold this cluster's key")
            }
            Refusal::Unexpected => f.write_str("handshake frame out of turn (stale or replayed)"),
            Refusal::UnknownSession => {
                f.write_str("frame of an unknown session (sealed for another connection)")
            }
            Refusal::Replayed { counter, next } => write!(
                f,
                "frame counter {} where {} or later was due (replayed, reordered or removed)",
                counter, next
            ),
            Refusal::BadTag => f.write_str(
                "frame authentication failed (altered, truncated or sealed under another key)",
            ),
            Refusal::NotOpen => f.write_str("sealed data before the handshake completed"),
            Refusal::PeerRefused(r) => match r {
                RefusedReason::BadProof => f.write_str(
                    "the peer refused our key proof: the two nodes hold different cluster keys",
                ),
                RefusedReason::WrongCluster => {
                    f.write_str("the peer refused us: it is in another cluster")
                }
                RefusedReason::WrongNode => {
                    f.write_str("the peer refused us: it is not the node we dialed")
                }
                RefusedReason::Other => f.write_str("the peer refused our sealed handshake"),
            },
        }
    }
}

/// Why a frame could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// No session is open yet.
    NotOpen,
    /// The output buffer is smaller than the frame plus [`crate::SEAL_OVERHEAD`].
    BufferTooSmall,
}

impl core::fmt::Display for SealError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SealError::NotOpen => f.write_str("the sealed link has no open session"),
            SealError::BufferTooSmall => f.write_str("buffer too small for the sealed frame"),
        }
    }
}

/// What a received frame did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'f> {
    /// Nothing to do (a stale handshake frame, or a `Hello` this side answers by its own dial).
    Ignored,
    /// A handshake frame to send back is in the caller's buffer (`len` bytes).
    Reply(usize),
    /// A session opened; `reply` bytes (possibly zero) in the caller's buffer go back to the
    /// peer. Whatever ran over the link before starts afresh over the new session.
    Opened {
        /// Bytes of the reply frame.
        reply: usize,
    },
    /// A data frame's contents, decrypted in place in the received frame. `opened`: this frame
    /// also completed the handshake (its `Confirm` was lost on the line).
    Data {
        /// The frame the peer sealed.
        plain: &'f [u8],
        /// Whether a session opened with it.
        opened: bool,
    },
}

/// One direction's key and counter.
#[derive(Clone)]
struct Half {
    key: [u8; 32],
    direction: u32,
    counter: u64,
}

#[derive(Clone)]
struct Session {
    id: u32,
    tx: Half,
    rx: Half,
}

impl Session {
    fn new(keys: &LinkKeys, initiator: bool) -> Session {
        let i2r = Half {
            key: keys.initiator_to_responder,
            direction: 0,
            counter: 0,
        };
        let r2i = Half {
            key: keys.responder_to_initiator,
            direction: 1,
            counter: 0,
        };
        let (tx, rx) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Session {
            id: keys.session,
            tx,
            rx,
        }
    }
}

/// A responder's handshake waiting for the initiator's proof.
#[derive(Clone)]
struct Pending {
    peer: u64,
    session: Session,
    expected_proof: [u8; TAG_BYTES],
}

/// One sealed link (see the module docs).
pub struct Link {
    key: ClusterKey,
    cluster_id: u64,
    me: u64,
    peer: u64,
    order: Order,
    dialing: Option<Nonce>,
    pending: Option<Pending>,
    open: Option<Session>,
}

impl Link {
    /// A link of node `me` in `cluster_id` to `peer` (0: any node, learned from its `Hello`),
    /// with no session yet.
    pub fn new(key: ClusterKey, cluster_id: u64, me: u64, peer: u64, order: Order) -> Link {
        Link {
            key,
            cluster_id,
            me,
            peer,
            order,
            dialing: None,
            pending: None,
            open: None,
        }
    }

    /// The peer: the one given, or the one whose handshake this link answered.
    pub fn peer(&self) -> u64 {
        self.peer
    }

    /// Give the link to another peer (0: any) and forget every session.
    pub fn reset(&mut self, peer: u64) {
        self.peer = peer;
        self.dialing = None;
        self.pending = None;
        self.open = None;
    }

    /// Whether a session is open (data can be sealed).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Start a handshake as initiator with a fresh nonce: the `Hello` goes into `out`
    /// (at least [`crate::HANDSHAKE_FRAME_BYTES`]); returns its length. An open session stays
    /// usable until the new one opens.
    pub fn dial(&mut self, nonces: &mut dyn NonceSource, out: &mut [u8]) -> Option<usize> {
        let nonce = nonces.next_nonce();
        let n = frame::encode(out, HELLO_BODY, |b| {
            b[0] = frame::KIND_HELLO;
            b[1..9].copy_from_slice(&self.cluster_id.to_le_bytes());
            b[9..17].copy_from_slice(&self.me.to_le_bytes());
            b[17..25].copy_from_slice(&self.peer.to_le_bytes());
            b[25..41].copy_from_slice(&nonce);
        })?;
        self.dialing = Some(nonce);
        Some(n)
    }

    /// A `Refused` frame telling the peer why (see [`Refusal::answer`]) into `out`.
    pub fn refusal(reason: RefusedReason, out: &mut [u8]) -> Option<usize> {
        frame::encode(out, 2, |b| {
            b[0] = frame::KIND_REFUSED;
            b[1] = reason.code();
        })
    }

    /// Handle one whole received record. Handshake replies go into `out` (at least
    /// [`crate::HANDSHAKE_FRAME_BYTES`]); a data frame is opened in place and its contents
    /// returned. A refusal changes nothing of an open session.
    pub fn receive<'f>(
        &mut self,
        frame: &'f mut [u8],
        nonces: &mut dyn NonceSource,
        out: &mut [u8],
    ) -> Result<Received<'f>, Refusal> {
        match frame::classify(frame) {
            Class::Sealed => {}
            Class::Plain => return Err(Refusal::Plaintext),
            Class::Damaged => return Err(Refusal::Malformed),
        }
        let body = frame::body_mut(frame);
        match (body[0], body.len()) {
            (frame::KIND_HELLO, HELLO_BODY) => self.on_hello(body, nonces, out),
            (frame::KIND_ACCEPT, ACCEPT_BODY) => self.on_accept(body, out),
            (frame::KIND_CONFIRM, CONFIRM_BODY) => self.on_confirm(body),
            (frame::KIND_DATA, n) if n >= DATA_HEAD + TAG_BYTES => self.on_data(body),
            (frame::KIND_REFUSED, 2) => {
                Err(Refusal::PeerRefused(RefusedReason::from_code(body[1])))
            }
            _ => Err(Refusal::Malformed),
        }
    }

    /// Check the addressing of a handshake frame: cluster, sender, and this node as receiver.
    fn check_names(&self, cluster: u64, from: u64, to: u64) -> Result<(), Refusal> {
        if cluster != self.cluster_id {
            return Err(Refusal::WrongCluster {
                ours: self.cluster_id,
                theirs: cluster,
            });
        }
        if to != self.me {
            return Err(Refusal::WrongNode {
                expected: self.me,
                found: to,
            });
        }
        if from == self.me || (self.peer != ANY_NODE && from != self.peer) {
            return Err(Refusal::WrongNode {
                expected: self.peer,
                found: from,
            });
        }
        Ok(())
    }

    fn on_hello<'f>(
        &mut self,
        b: &[u8],
        nonces: &mut dyn NonceSource,
        out: &mut [u8],
    ) -> Result<Received<'f>, Refusal> {
        let (cluster, from, to) = (
            frame::u64_at(b, 1),
            frame::u64_at(b, 9),
            frame::u64_at(b, 17),
        );
        self.check_names(cluster, from, to)?;
        if self.dialing.is_some() && self.me < from {
            // Both sides dialed: the lower id's dial wins, the peer answers it.
            return Ok(Received::Ignored);
        }
        self.dialing = None;
        let t = Transcript {
            cluster_id: cluster,
            initiator: from,
            responder: self.me,
            nonce_i: frame::arr16(b, 25),
            nonce_r: nonces.next_nonce(),
        };
        let keys = t.derive(&self.key);
        let proof = t.proof(&keys, PROOF_RESPONDER);
        let n = frame::encode(out, ACCEPT_BODY, |o| {
            o[0] = frame::KIND_ACCEPT;
            o[1..9].copy_from_slice(&cluster.to_le_bytes());
            o[9..17].copy_from_slice(&self.me.to_le_bytes());
            o[17..25].copy_from_slice(&from.to_le_bytes());
            o[25..41].copy_from_slice(&t.nonce_i);
            o[41..57].copy_from_slice(&t.nonce_r);
            o[57..73].copy_from_slice(&proof);
        })
        .ok_or(Refusal::Unexpected)?;
        self.pending = Some(Pending {
            peer: from,
            session: Session::new(&keys, false),
            expected_proof: t.proof(&keys, PROOF_INITIATOR),
        });
        Ok(Received::Reply(n))
    }

    fn on_accept<'f>(&mut self, b: &[u8], out: &mut [u8]) -> Result<Received<'f>, Refusal> {
        let (cluster, from, to) = (
            frame::u64_at(b, 1),
            frame::u64_at(b, 9),
            frame::u64_at(b, 17),
        );
        self.check_names(cluster, from, to)?;
        let Some(nonce_i) = self.dialing else {
            return Err(Refusal::Unexpected);
        };
        if frame::arr16(b, 25) != nonce_i {
            // The answer to an earlier dial of ours: a later answer will come.
            return Ok(Received::Ignored);
        }
        let t = Transcript {
            cluster_id: cluster,
            initiator: self.me,
            responder: from,
            nonce_i,
            nonce_r: frame::arr16(b, 41),
        };
        let keys = t.derive(&self.key);
        if !t.verify(&keys, PROOF_RESPONDER, &b[57..73]) {
            self.dialing = None;
            return Err(Refusal::BadProof);
        }
        let proof = t.proof(&keys, PROOF_INITIATOR);
        let n = frame::encode(out, CONFIRM_BODY, |o| {
            o[0] = frame::KIND_CONFIRM;
            o[1..5].copy_from_slice(&keys.session.to_le_bytes());
            o[5..21].copy_from_slice(&proof);
        })
        .ok_or(Refusal::Unexpected)?;
        self.dialing = None;
        self.pending = None;
        self.peer = from;
        self.open = Some(Session::new(&keys, true));
        Ok(Received::Opened { reply: n })
    }

    fn on_confirm<'f>(&mut self, b: &[u8]) -> Result<Received<'f>, Refusal> {
        let Some(p) = &self.pending else {
            return Err(Refusal::Unexpected);
        };
        if frame::u32_at(b, 1) != p.session.id {
            return Err(Refusal::Unexpected);
        }
        // Constant time: the same comparison HMAC verification uses.
        let diff = p
            .expected_proof
            .iter()
            .zip(&b[5..21])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            self.pending = None;
            return Err(Refusal::BadProof);
        }
        self.promote();
        Ok(Received::Opened { reply: 0 })
    }

    fn promote(&mut self) {
        if let Some(p) = self.pending.take() {
            self.peer = p.peer;
            self.open = Some(p.session);
        }
    }

    fn on_data<'f>(&mut self, body: &'f mut [u8]) -> Result<Received<'f>, Refusal> {
        let session = frame::u32_at(body, 1);
        let counter = frame::u64_at(body, 5);
        let (rx, pending) = match (&mut self.open, &mut self.pending) {
            (Some(s), _) if s.id == session => (&mut s.rx, false),
            (_, Some(p)) if p.session.id == session => (&mut p.session.rx, true),
            (None, None) => return Err(Refusal::NotOpen),
            _ => return Err(Refusal::UnknownSession),
        };
        let in_order = match self.order {
            Order::Stream => counter == rx.counter,
            Order::Datagram => counter >= rx.counter,
        };
        if !in_order {
            return Err(Refusal::Replayed {
                counter,
                next: rx.counter,
            });
        }
        let mut ad = [0u8; 2 + 8 + DATA_HEAD - 1];
        data_ad(&mut ad, self.cluster_id, session, counter);
        let (head, rest) = body.split_at_mut(DATA_HEAD);
        let _ = head;
        let split = rest.len() - TAG_BYTES;
        let (text, tag) = rest.split_at_mut(split);
        if !schedule::open(&rx.key, rx.direction, counter, &ad, text, tag) {
            return Err(Refusal::BadTag);
        }
        rx.counter = counter + 1;
        if pending {
            // A proven data frame proves the key as its Confirm would have.
            self.promote();
        }
        Ok(Received::Data {
            plain: text,
            opened: pending,
        })
    }

    /// Seal `plain` (one wire frame) into `out`, which needs `plain.len()` +
    /// [`crate::SEAL_OVERHEAD`] bytes; returns the sealed frame's length.
    pub fn seal(&mut self, plain: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        let s = self.open.as_mut().ok_or(SealError::NotOpen)?;
        let counter = s.tx.counter;
        let mut ad = [0u8; 2 + 8 + DATA_HEAD - 1];
        data_ad(&mut ad, self.cluster_id, s.id, counter);
        let body_len = DATA_HEAD + plain.len() + TAG_BYTES;
        let tx = &s.tx;
        let id = s.id;
        let n = frame::encode(out, body_len, |b| {
            b[0] = frame::KIND_DATA;
            b[1..5].copy_from_slice(&id.to_le_bytes());
            b[5..13].copy_from_slice(&counter.to_le_bytes());
            let (text, tag) = b[DATA_HEAD..].split_at_mut(plain.len());
            text.copy_from_slice(plain);
            let t = schedule::seal(&tx.key, tx.direction, counter, &ad, text);
            tag.copy_from_slice(&t);
        })
        .ok_or(SealError::BufferTooSmall)?;
        s.tx.counter = counter + 1;
        Ok(n)
    }
}

/// The associated data of a data frame: version, kind, cluster id, session id, counter.
fn data_ad(ad: &mut [u8; 2 + 8 + DATA_HEAD - 1], cluster_id: u64, session: u32, counter: u64) {
    ad[0] = frame::SEAL_VERSION;
    ad[1] = frame::KIND_DATA;
    ad[2..10].copy_from_slice(&cluster_id.to_le_bytes());
    ad[10..14].copy_from_slice(&session.to_le_bytes());
    ad[14..22].copy_from_slice(&counter.to_le_bytes());
}

#[cfg(test)]
mod tests;
