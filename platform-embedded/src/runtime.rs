//! A small runtime for one node on one core, without an allocator: the core's node driver with
//! DtKV as its state machine, one framed link per peer, and the `Hello` handshake that opens
//! each link. The caller owns every buffer (statics on a board) and calls [`Runtime::poll`] in
//! its main loop with the time from a [`crate::clock::TickClock`].
//!
//! ## Handshake on links without connections
//!
//! A serial line has no "connection opened" event, so the handshake is driven by time: while a
//! link is not established, its side sends a *dial* `Hello` (naming the peer it expects at the
//! other end) every [`HELLO_RETRY_MS`]. Whoever receives a dial `Hello` checks it with
//! [`shoal_core::handshake::check`], marks the link established and answers with an *accept*
//! `Hello` (`expected_peer` = `NO_NODE`); an accept `Hello` that passes the check establishes
//! the link without an answer, so two `Hello`s never bounce forever. A board that resets dials
//! again, and its peers answer. On TCP the platform calls [`Runtime::link_reset`] whenever a
//! connection is replaced, which starts the same exchange. Raft frames arriving on a link that
//! is not established are dropped, and no Raft frame is sent on one.
//!
//! ## Sealed links
//!
//! With a cluster key ([`Mesh::seal_links`]), each link first runs `shoal_seal`'s handshake
//! (dialed every [`HELLO_RETRY_MS`] while no sealed session is open, by either side; the lower
//! node id wins a simultaneous dial), and everything above, the `Hello`s included, travels
//! sealed. Whenever a new sealed session opens (the peer reset, or a replayed or lost frame
//! forced a new handshake) the `Hello` exchange starts over on it. Frames that are not sealed
//! under the link's current session are refused and counted ([`RuntimeStats`]); a peer that
//! proves no knowledge of the key never gets a link.

use crate::link::{FrameRx, FrameTx, LinkError};
use core::mem::MaybeUninit;
use embedded_io::{Read, ReadReady, Write, WriteReady};
use shoal_core::driver::{Event, Node, NodeConfig, NodeError, NodeParts};
use shoal_core::handshake::{self, Hello};
use shoal_core::io::{Transport, TransportError};
use shoal_core::membership::Membership;
use shoal_core::storage::Storage;
use shoal_core::types::{NodeId, NO_NODE};
use shoal_core::wire::{self, Body, FrameHeader, FRAME_PREFIX_RESERVE};
use shoal_kv::{Applied, DtKv, KvSlices};
use shoal_seal::{
    ClusterKey, CounterNonces, Link, Order, Received, HANDSHAKE_FRAME_BYTES as SEAL_HANDSHAKE_BYTES,
};

/// How often an unestablished link repeats its dial `Hello`.
pub const HELLO_RETRY_MS: u64 = 300;
/// Frames taken from one link per [`Runtime::poll`], so one busy peer cannot starve the rest.
pub const MAX_FRAMES_PER_POLL: usize = 8;
/// Stack buffer for handshake frames (a `Hello` with the largest member set, or a refusal).
const HANDSHAKE_FRAME_BYTES: usize = FRAME_PREFIX_RESERVE + 5 + 4 + 256;

/// The sealed links of a [`Mesh`]: one per slot, the nonces of this boot, and a buffer each
/// frame is sealed into before it enters its send ring.
pub struct MeshSeal<const P: usize, const TX: usize> {
    links: [Link; P],
    nonces: CounterNonces,
    scratch: [u8; TX],
}

/// The sending halves of every link: the node driver's [`Transport`].
pub struct Mesh<W, const P: usize, const TX: usize> {
    peers: [NodeId; P],
    tx: [FrameTx<W, TX>; P],
    established: [bool; P],
    last_hello_ms: [Option<u64>; P],
    seal: Option<MeshSeal<P, TX>>,
}

impl<W: Write + WriteReady, const P: usize, const TX: usize> Mesh<W, P, TX> {
    /// Links to `peers[i]` through `tx[i]`, none established yet. A slot whose peer is
    /// [`NO_NODE`] is free: nothing is sent on it until [`Runtime::assign_link`] names a peer.
    pub fn new(peers: [NodeId; P], tx: [FrameTx<W, TX>; P]) -> Self {
        Mesh {
            peers,
            tx,
            established: [false; P],
            last_hello_ms: [None; P],
            seal: None,
        }
    }

    /// Seal every link with the cluster key (see the module docs): this node is `me` in
    /// `cluster_id`, and `nonces` must be this boot's (a boot count made durable first, see
    /// [`crate::flash::boot`]). `order` is [`Order::Datagram`] on lines that may lose frames.
    pub fn seal_links(
        &mut self,
        key: &ClusterKey,
        cluster_id: u64,
        me: NodeId,
        nonces: CounterNonces,
        order: Order,
    ) {
        let peers = self.peers;
        self.seal = Some(MeshSeal {
            links: core::array::from_fn(|i| {
                Link::new(key.clone(), cluster_id, me, peers[i], order)
            }),
            nonces,
            scratch: [0; TX],
        });
        for i in 0..P {
            self.established[i] = false;
            self.last_hello_ms[i] = None;
        }
    }

    /// Whether links are sealed.
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }

    /// Queue one wire frame on link `i`, sealed when links are.
    fn queue_frame(&mut self, i: usize, frame: &[u8]) -> Result<(), TransportError> {
        match &mut self.seal {
            None => self.tx[i].queue(frame),
            Some(s) => {
                let n = s.links[i]
                    .seal(frame, &mut s.scratch)
                    .map_err(|_| TransportError::Unreachable)?;
                self.tx[i].queue(&s.scratch[..n])
            }
        }
    }

    /// Whether the link to `peers[i]` passed its handshake.
    pub fn established(&self, i: usize) -> bool {
        self.established[i]
    }

    /// The peer of link `i` ([`NO_NODE`]: a free slot).
    pub fn peer(&self, i: usize) -> NodeId {
        self.peers[i]
    }

    /// The sending half of link `i`.
    pub fn tx_mut(&mut self, i: usize) -> &mut FrameTx<W, TX> {
        &mut self.tx[i]
    }

    /// Move queued bytes to every device as far as they take them.
    pub fn drain(&mut self) -> [Result<(), LinkError>; P] {
        core::array::from_fn(|i| self.tx[i].drain())
    }
}

impl<W: Write + WriteReady, const P: usize, const TX: usize> Transport for Mesh<W, P, TX> {
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        let i = self
            .peers
            .iter()
            .position(|&p| p == to)
            .ok_or(TransportError::Unreachable)?;
        if !self.established[i] {
            return Err(TransportError::Unreachable);
        }
        self.queue_frame(i, frame)
    }
}

/// Counters kept by the runtime (the driver keeps its own in `NodeStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Handshakes that established a link.
    pub handshakes: u32,
    /// `Hello`s refused by [`handshake::check`] (either side).
    pub refusals: u32,
    /// Raft frames dropped because their link was not established.
    pub unestablished_drops: u32,
    /// Link errors (plain links: the caller should reconnect).
    pub link_errors: u32,
    /// Sealed sessions opened (each handshake that completed, either side).
    pub sealed_sessions: u32,
    /// Frames refused by the sealed link: plaintext, damaged, replayed, reordered, forged, or
    /// of another session.
    pub seal_refusals: u32,
    /// Sealed handshakes refused because the peer does not hold the cluster key.
    pub key_mismatches: u32,
}

/// The node driver type the runtime runs.
pub type RuntimeNode<'a, S, W, const P: usize, const TX: usize> =
    Node<S, &'a mut Mesh<W, P, TX>, DtKv<KvSlices<'a>>, &'a mut [u8]>;

/// One node: driver, DtKV, and `P` links with `TX`-byte send rings and `RX`-byte receive
/// buffers. The links (and, on a board, the storage: `S` may be a `&mut` to it) are borrowed
/// from where the caller keeps them, so building the runtime never moves them.
pub struct Runtime<'a, S, W, R, const P: usize, const TX: usize, const RX: usize> {
    node: RuntimeNode<'a, S, W, P, TX>,
    rx: &'a mut [FrameRx<R, RX>; P],
    stats: RuntimeStats,
}

impl<'a, S, W, R, const P: usize, const TX: usize, const RX: usize> Runtime<'a, S, W, R, P, TX, RX>
where
    S: Storage,
    W: Write + WriteReady,
    R: Read + ReadReady,
{
    /// Start the node from `store` (see [`Node::new`] for `bootstrap`) and build it directly in
    /// `slot` (a `static` on a board), returning it there. Nothing large is assembled on the
    /// stack: the driver and its `Raft` are written field by field ([`Node::init`]). `frame_buf`
    /// frames outgoing messages and reads entries: it must hold the largest entry plus
    /// [`FRAME_PREFIX_RESERVE`] + 16 bytes. On error the parts are not dropped.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub fn init(
        slot: &'a mut MaybeUninit<Self>,
        cfg: NodeConfig,
        store: S,
        kv: DtKv<KvSlices<'a>>,
        frame_buf: &'a mut [u8],
        mesh: &'a mut Mesh<W, P, TX>,
        rx: &'a mut [FrameRx<R, RX>; P],
        now_ms: u64,
        bootstrap: Option<&Membership>,
    ) -> Result<&'a mut Self, NodeError> {
        Ok(shoal_core::write_fields!(slot, Self {
            node in |s| {
                let parts = NodeParts::new(store, mesh, kv, frame_buf);
                Node::init(s, cfg, parts, now_ms, bootstrap)
            },
            rx: rx,
            stats: RuntimeStats::default(),
        }))
    }

    /// The node driver (to propose, read, or look at Raft's state).
    pub fn node(&self) -> &RuntimeNode<'a, S, W, P, TX> {
        &self.node
    }

    /// The node driver, mutably.
    pub fn node_mut(&mut self) -> &mut RuntimeNode<'a, S, W, P, TX> {
        &mut self.node
    }

    /// Counters.
    pub fn stats(&self) -> RuntimeStats {
        self.stats
    }

    /// Whether link `i` passed its handshake.
    pub fn link_established(&mut self, i: usize) -> bool {
        self.node.transport_mut().established(i)
    }

    /// The receiving half of link `i`.
    pub fn rx_mut(&mut self, i: usize) -> &mut FrameRx<R, RX> {
        &mut self.rx[i]
    }

    /// Give link `i` to `peer` ([`NO_NODE`] frees it), as a platform that learns where members
    /// listen (from the cluster's member records) does when one is added or removed; the link
    /// starts over with a handshake.
    pub fn assign_link(&mut self, i: usize, peer: NodeId) {
        self.node.transport_mut().peers[i] = peer;
        self.link_reset(i);
    }

    /// Link `i` was replaced (a new TCP connection): forget partial frames and queued bytes and
    /// handshake again before any Raft frame passes.
    pub fn link_reset(&mut self, i: usize) {
        self.rx[i].clear();
        let mesh = self.node.transport_mut();
        mesh.tx[i].clear();
        mesh.established[i] = false;
        mesh.last_hello_ms[i] = None;
        let peer = mesh.peers[i];
        if let Some(s) = &mut mesh.seal {
            s.links[i].reset(peer);
        }
    }

    fn local_hello(&self, expected_peer: NodeId) -> Hello {
        let cfg = self.node.config();
        Hello {
            cluster_id: cfg.cluster_id,
            node_id: cfg.node_id,
            expected_peer,
            group: cfg.group,
            members: self.node.raft().membership().all(),
        }
    }

    fn send_handshake(&mut self, i: usize, body: &Body) {
        let to = self.node.transport_mut().peers[i];
        let cfg = self.node.config();
        let header = FrameHeader::new(cfg.cluster_id, cfg.group, cfg.node_id, to);
        let mut buf = [0u8; HANDSHAKE_FRAME_BYTES];
        if let Ok(n) = wire::encode(&header, body, &[], &mut buf) {
            // A full ring drops it; the dial is repeated.
            let _ = self.node.transport_mut().queue_frame(i, &buf[..n]);
        }
    }

    /// Dial a sealed handshake on link `i` (raw: it is what opens the seal).
    fn dial_sealed(&mut self, i: usize) {
        let mesh = self.node.transport_mut();
        let Some(s) = &mut mesh.seal else { return };
        let mut out = [0u8; SEAL_HANDSHAKE_BYTES];
        if let Some(n) = s.links[i].dial(&mut s.nonces, &mut out) {
            let _ = mesh.tx[i].queue(&out[..n]);
        }
    }

    /// A sealed session opened on link `i`: run the `Hello` exchange again, over it.
    fn sealed_session_opened(stats: &mut RuntimeStats, mesh: &mut Mesh<W, P, TX>, i: usize) {
        stats.sealed_sessions += 1;
        mesh.established[i] = false;
        mesh.last_hello_ms[i] = None;
        info!("sealed link to node {} open", mesh.peers[i]);
    }

    /// One round of the main loop: handshakes, every frame waiting on every link, a tick, the
    /// driver's batch boundary (`flush`, which reports events to `on_event`), and sending.
    /// Returns an error only when the node must stop: the driver applies the core's failure
    /// policy ([`shoal_core::fault`]), counting refused frames in its `NodeStats::faults`.
    // Kept out of the caller: inlined into the firmware's `main`, its frame (the core's
    // frame handling and flush) would sit under the start-up stack too.
    #[inline(never)]
    pub fn poll(
        &mut self,
        now_ms: u64,
        on_event: &mut dyn FnMut(Event<Applied>),
    ) -> Result<(), NodeError> {
        for i in 0..P {
            let mesh = self.node.transport_mut();
            let due = mesh.last_hello_ms[i].is_none_or_due(now_ms);
            let unsealed = mesh.seal.as_ref().is_some_and(|s| !s.links[i].is_open());
            if unsealed && due && mesh.peers[i] != NO_NODE {
                mesh.last_hello_ms[i] = Some(now_ms);
                self.dial_sealed(i);
                continue;
            }
            if !mesh.established[i] && due && mesh.peers[i] != NO_NODE {
                mesh.last_hello_ms[i] = Some(now_ms);
                let peer = mesh.peers[i];
                let hello = self.local_hello(peer);
                self.send_handshake(i, &Body::Hello(hello));
            }
        }
        for i in 0..P {
            for _ in 0..MAX_FRAMES_PER_POLL {
                let frame = match self.rx[i].poll_mut() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        warn!("link error on peer index {}", i as u32);
                        let _ = e;
                        self.stats.link_errors += 1;
                        break;
                    }
                };
                let frame: &[u8] = match &mut self.node.transport_mut().seal {
                    None => frame,
                    Some(s) => {
                        let mut out = [0u8; SEAL_HANDSHAKE_BYTES];
                        let received = s.links[i].receive(frame, &mut s.nonces, &mut out);
                        let reply = match &received {
                            Ok(Received::Reply(n)) | Ok(Received::Opened { reply: n }) => *n,
                            Err(r) => r
                                .answer()
                                .and_then(|why| Link::refusal(why, &mut out))
                                .unwrap_or(0),
                            _ => 0,
                        };
                        if reply > 0 {
                            let _ = self.node.transport_mut().tx[i].queue(&out[..reply]);
                        }
                        match received {
                            Ok(Received::Data { plain, opened }) => {
                                if opened {
                                    Self::sealed_session_opened(
                                        &mut self.stats,
                                        self.node.transport_mut(),
                                        i,
                                    );
                                }
                                plain
                            }
                            Ok(Received::Opened { .. }) => {
                                Self::sealed_session_opened(
                                    &mut self.stats,
                                    self.node.transport_mut(),
                                    i,
                                );
                                continue;
                            }
                            Ok(_) => continue,
                            Err(r) => {
                                self.stats.seal_refusals += 1;
                                if r.is_key_mismatch() {
                                    self.stats.key_mismatches += 1;
                                }
                                warn!("sealed frame on peer index {} refused", i as u32);
                                continue;
                            }
                        }
                    }
                };
                let (decoded, used) = match wire::decode(frame) {
                    Ok(d) => d,
                    Err(e) => {
                        self.node.apply_policy(now_ms, Err(NodeError::Wire(e)))?;
                        continue;
                    }
                };
                let peer = self.node.transport_mut().peers[i];
                match decoded.body {
                    Body::Hello(remote) => {
                        let local = self.local_hello(peer);
                        match handshake::check(&local, &remote) {
                            Ok(()) => {
                                let mesh = self.node.transport_mut();
                                if !mesh.established[i] {
                                    self.stats.handshakes += 1;
                                    info!("link to node {} established", peer);
                                }
                                mesh.established[i] = true;
                                if remote.expected_peer != NO_NODE {
                                    let accept = self.local_hello(NO_NODE);
                                    self.send_handshake(i, &Body::Hello(accept));
                                }
                            }
                            Err(e) => {
                                self.stats.refusals += 1;
                                self.node.transport_mut().established[i] = false;
                                let mut reason = heapless::String::<160>::new();
                                let _ = core::fmt::write(&mut reason, format_args!("{}", e));
                                warn!("handshake with node {} refused", peer);
                                self.send_handshake(i, &Body::HelloRefused(reason));
                            }
                        }
                    }
                    Body::HelloRefused(_) => {
                        self.stats.refusals += 1;
                        self.node.transport_mut().established[i] = false;
                        warn!("node {} refused our handshake", peer);
                    }
                    Body::Raft(_) => {
                        if !self.node.transport_mut().established[i] || decoded.header.from != peer
                        {
                            self.stats.unestablished_drops += 1;
                            continue;
                        }
                        self.node.handle_decoded(now_ms, &decoded, used)?;
                    }
                    // A liveness ping of a host that quiesces its groups (shoal-core's
                    // `quiesce` feature, which boards do not build): nothing to act on here.
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
        }
        self.node.tick(now_ms)?;
        self.node.flush(now_ms, on_event)?;
        for r in self.node.transport_mut().drain() {
            if r.is_err() {
                self.stats.link_errors += 1;
            }
        }
        Ok(())
    }
}

trait DueExt {
    fn is_none_or_due(&self, now_ms: u64) -> bool;
}

impl DueExt for Option<u64> {
    fn is_none_or_due(&self, now_ms: u64) -> bool {
        match self {
            None => true,
            Some(at) => now_ms.saturating_sub(*at) >= HELLO_RETRY_MS,
        }
    }
}
