//! `shoald`'s peer sockets: the raft port (peer connections with the `Hello` handshake).
//!
//! A cluster has a handful of peers, so each peer connection gets a plain blocking thread: one
//! dialer per peer this node sends to, one reader per connection it accepted. They only move
//! bytes: a reader hands whole frames to the raft thread through a channel, a dialer writes what
//! the raft thread queued for its peer, gathering everything queued into one `write`. The raft
//! thread owns the async reactor alone (it serves client connections, [`super::clients`]), so
//! no other thread sits in it and every socket event reaches it without a hand-off. A dialer
//! sends while the raft thread fsyncs: followers write an entry while the leader does.
//!
//! Peer connections are one-way: a node *dials* every peer it sends to and only *reads* from
//! connections it accepted. Each side of a new connection sends a `Hello` first; a mismatch is
//! answered with `HelloRefused(reason)` and logged with both sides' values. With a cluster key
//! (`--peer-psk-file`) each connection is first sealed ([`super::peer_seal::Channel`]) and
//! everything, the `Hello`s included, travels sealed.
//!
//! Strangers cost little ([`PeerLimits`]): at most `max_handshakes` accepted connections are in
//! their handshake at once (one more is closed at once, before a thread is started for it), and
//! each must finish it within `handshake_timeout`; at most `max_connections` are past it, and a
//! node keeps at most [`INBOUND_PER_PEER`] (its oldest is shut down when it dials again). A
//! frame's buffer grows as its bytes arrive, so a length field alone allocates nothing.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender, TrySendError};

use shoal_core::handshake::{self, Hello};
use shoal_core::io::{Transport, TransportError};
use shoal_core::membership::NodeSet;
use shoal_core::wire::{self, Body, FrameHeader};
use shoal_core::{ClusterId, NodeId, NO_NODE};

use super::peer_seal::{Channel, PeerSeal};
use super::tls_stream;

mod inbound;
use inbound::dial_handshake_error;
pub use inbound::raft_listener;

/// Largest peer frame accepted (64 MiB).
pub const MAX_PEER_FRAME_BYTES: usize = 64 << 20;
/// Frames queued for one peer before new ones are dropped (Raft retries). 32 times a full
/// append window (`MAX_INFLIGHT`); the queue's slots (32 bytes each) are written when it is
/// created, so they are resident for every peer (8192 slots were 256 KiB each).
pub const PEER_QUEUE_FRAMES: usize = 1024;
/// Read buffer of an accepted peer connection.
const PEER_READ_BUFFER: usize = 64 << 10;
/// How long a dial may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one write to a peer may block before the connection counts as dead.
const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of a peer thread (they only move bytes; frames live on the heap).
const PEER_THREAD_STACK: usize = 128 << 10;
/// Accepted connections kept per peer node: a node that dials again leaves its older
/// connection dead or dying (it is shut down past this many), while a second connection naming
/// the same node cannot push out the one in use.
const INBOUND_PER_PEER: usize = 2;
/// Descriptors a raft port connection takes beyond its own at most (its reader's, its writer's
/// and the handle that shuts it down, [`tls_stream::accept_peer`]).
const PEER_SPARE_DESCRIPTORS: usize = 3;
/// Largest handshake frame.
const HELLO_MAX_BYTES: usize = 64 << 10;

/// The raft port's bounds, each set by the `shoald` flag of the same name with `--peer-` in
/// front (see docs/OPERATIONS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Accepted connections in their handshake at once; one more is closed at once.
    pub max_handshakes: usize,
    /// Time an accepted connection has to send its whole `Hello`.
    pub handshake_timeout: Duration,
    /// Accepted connections past their handshake; one more is refused.
    pub max_connections: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_handshakes: 16,
            handshake_timeout: Duration::from_secs(2),
            max_connections: 64,
        }
    }
}

/// Which raft-port bound was hit (the label of `shoal_limit_hits_total` is its flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerLimit {
    /// A connection was closed: `--peer-max-handshakes` were in progress.
    Handshakes,
    /// A connection was closed: its `Hello` did not come within `--peer-handshake-timeout`.
    HandshakeTimeout,
    /// A connection was refused after its handshake: `--peer-max-connections` were open.
    Connections,
}

impl PeerLimit {
    /// Every limit, in the order of the counters.
    pub const ALL: [PeerLimit; 3] = [
        PeerLimit::Handshakes,
        PeerLimit::HandshakeTimeout,
        PeerLimit::Connections,
    ];

    /// The flag that sets it, without `--`.
    pub fn flag(self) -> &'static str {
        match self {
            PeerLimit::Handshakes => "peer-max-handshakes",
            PeerLimit::HandshakeTimeout => "peer-handshake-timeout",
            PeerLimit::Connections => "peer-max-connections",
        }
    }

    /// Its value in `limits` (milliseconds or a count), for `/metrics`.
    pub fn value(self, limits: &PeerLimits) -> u64 {
        match self {
            PeerLimit::Handshakes => limits.max_handshakes as u64,
            PeerLimit::HandshakeTimeout => limits.handshake_timeout.as_millis() as u64,
            PeerLimit::Connections => limits.max_connections as u64,
        }
    }
}

/// A peer frame (past the handshake), as the network hands it to the raft thread.
pub type PeerFrame = Vec<u8>;

/// What the handshake says about this node; refreshed by the raft thread.
#[derive(Clone, Debug)]
pub struct HelloInfo {
    /// Cluster id.
    pub cluster_id: ClusterId,
    /// This node.
    pub node_id: NodeId,
    /// Every member of every hosted group (empty: joining, or too many to list).
    pub members: NodeSet,
}

impl HelloInfo {
    fn hello(&self, expected_peer: NodeId) -> Hello {
        Hello {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            expected_peer,
            group: 0,
            members: self.members.clone(),
        }
    }
}

/// A peer's raft address and the queue of frames its dialer sends.
type PeerQueue = (String, Sender<Vec<u8>>);

/// Bytes of peer frames waiting for the raft thread above which peer readers stop reading
/// (their peers' writes then block, their queues fill, and Raft backs off): a follower whose
/// disk is slower than its leader's must not buffer the difference in memory.
pub const PEER_INPUT_BYTES: usize = 16 << 20;

/// State shared by the peer threads and the raft thread.
pub struct Net {
    /// Where peer frames go (through [`Net::deliver`]).
    input: Sender<PeerFrame>,
    /// Bytes of frames in `input`.
    input_bytes: AtomicUsize,
    /// Notified when `input_bytes` drops to [`PEER_INPUT_BYTES`] or below.
    input_room: event_listener::Event,
    /// Handshake identity.
    pub hello: Mutex<HelloInfo>,
    /// Set once shutdown starts: listeners stop accepting.
    pub stopping: AtomicBool,
    /// Queues to peers, by node id.
    peers: Mutex<HashMap<NodeId, PeerQueue>>,
    /// The cluster key, when peer links are sealed (`--peer-psk-file`, [`super::peer_seal`]).
    pub seal: std::sync::OnceLock<PeerSeal>,
    limits: PeerLimits,
    /// Accepted connections in their handshake.
    handshakes: AtomicUsize,
    /// Accepted connections past their handshake.
    accepted: AtomicUsize,
    /// The accepted connections of each peer, oldest first (a serial number and a handle to
    /// shut it down); at most [`INBOUND_PER_PEER`].
    inbound: Mutex<HashMap<NodeId, VecDeque<(u64, TcpStream)>>>,
    next_inbound: AtomicU64,
    hits: [AtomicU64; 3],
    /// The accept loop's pause after a failed accept, and its counters.
    accept: super::accept::AcceptBackoff,
    /// The node's TLS (client port, admin port, and mutual TLS between members when
    /// `--peer-cert-file` is set; [`super::tls_stream`]).
    pub tls: std::sync::OnceLock<Arc<super::tls::Tls>>,
}

impl Net {
    /// Shared network state.
    /// A failed accept pauses the raft port's accept loop up to `accept_backoff_max`
    /// (`--accept-backoff-max`).
    pub fn new(
        input: Sender<PeerFrame>,
        hello: HelloInfo,
        limits: PeerLimits,
        accept_backoff_max: Duration,
    ) -> Arc<Net> {
        Arc::new(Net {
            input,
            input_bytes: AtomicUsize::new(0),
            input_room: event_listener::Event::new(),
            hello: Mutex::new(hello),
            stopping: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            seal: std::sync::OnceLock::new(),
            limits,
            handshakes: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
            inbound: Mutex::new(HashMap::new()),
            next_inbound: AtomicU64::new(1),
            hits: Default::default(),
            accept: super::accept::AcceptBackoff::new(
                accept_backoff_max,
                "raft port",
                "shoal_raft_accept_failures_total",
            ),
            tls: std::sync::OnceLock::new(),
        })
    }

    /// The raft port's connections, limits and their hits, for the admin port.
    pub fn port_view(&self) -> super::admin::PeerPortView {
        super::admin::PeerPortView {
            handshakes_pending: self.handshakes.load(Ordering::Relaxed),
            connections: self.accepted.load(Ordering::Relaxed),
            limits: PeerLimit::ALL.map(|l| (l.flag(), l.value(&self.limits))),
            hits: PeerLimit::ALL.map(|l| (l.flag(), self.hits[l as usize].load(Ordering::Relaxed))),
            accept: self.accept.view(),
        }
    }

    fn hit(&self, limit: PeerLimit) {
        self.hits[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Take one of `max` slots counted by `count`; false when all are taken.
    fn take_slot(count: &AtomicUsize, max: usize) -> bool {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Hand a frame to the raft thread, first waiting (this is a peer reader thread) while the
    /// frames it has not taken pass [`PEER_INPUT_BYTES`]. False once the raft thread is gone.
    fn deliver(&self, frame: PeerFrame) -> bool {
        loop {
            if self.input_bytes.load(Ordering::Acquire) <= PEER_INPUT_BYTES {
                break;
            }
            let room = self.input_room.listen();
            if self.input_bytes.load(Ordering::Acquire) <= PEER_INPUT_BYTES {
                break;
            }
            event_listener::Listener::wait(room);
        }
        self.input_bytes.fetch_add(frame.len(), Ordering::AcqRel);
        self.input.send_blocking(frame).is_ok()
    }

    /// The raft thread took a frame of `len` bytes.
    pub fn taken(&self, len: usize) {
        let before = self.input_bytes.fetch_sub(len, Ordering::AcqRel);
        if before > PEER_INPUT_BYTES && before - len <= PEER_INPUT_BYTES {
            self.input_room.notify(usize::MAX);
        }
    }

    /// Bytes of peer frames the raft thread has not taken yet.
    pub fn input_bytes(&self) -> usize {
        self.input_bytes.load(Ordering::Relaxed)
    }

    /// Make sure frames for `id` go to `raft_addr` (starts a dialer the first time; a changed
    /// address replaces the dialer).
    pub fn ensure_peer(self: &Arc<Self>, id: NodeId, raft_addr: &str) {
        let me = self.hello.lock().expect("hello lock").node_id;
        if id == me {
            return;
        }
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some((addr, _)) = peers.get(&id) {
            if addr == raft_addr {
                return;
            }
            log::info!("peer {id} moved to {raft_addr} (was {addr})");
        }
        let (tx, rx) = smol::channel::bounded(PEER_QUEUE_FRAMES);
        peers.insert(id, (raft_addr.to_string(), tx));
        let net = self.clone();
        let addr = raft_addr.to_string();
        spawn_peer_thread(format!("shoal-dial-{id}"), move || {
            dial_loop(net, id, addr, rx)
        });
    }

    /// A transport for a group's driver.
    pub fn transport(self: &Arc<Self>) -> PeerTransport {
        PeerTransport { net: self.clone() }
    }

    /// Bytes queued to peers now.
    pub fn queued_frames(&self) -> usize {
        self.peers
            .lock()
            .expect("peers lock")
            .values()
            .map(|(_, tx)| tx.len())
            .sum()
    }
}

/// [`Transport`] over the dialer queues.
pub struct PeerTransport {
    net: Arc<Net>,
}

impl Transport for PeerTransport {
    fn send(&mut self, to: NodeId, frame: &[u8]) -> Result<(), TransportError> {
        let peers = self.net.peers.lock().expect("peers lock");
        let Some((_, tx)) = peers.get(&to) else {
            return Err(TransportError::Unreachable);
        };
        match tx.try_send(frame.to_vec()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(TransportError::Busy),
            Err(TrySendError::Closed(_)) => Err(TransportError::Unreachable),
        }
    }
}

/// Start a peer thread; false (logged) if it could not be started.
fn spawn_peer_thread(name: String, f: impl FnOnce() + Send + 'static) -> bool {
    match std::thread::Builder::new()
        .name(name.clone())
        .stack_size(PEER_THREAD_STACK)
        .spawn(move || {
            crate::affinity::leave_raft_cpu();
            f()
        }) {
        Ok(_) => true,
        Err(e) => {
            log::error!("cannot start thread {name}: {e}");
            false
        }
    }
}

/// Read one record-framed message (length, version, body, CRC) from `r`. The buffer grows as
/// the bytes arrive: a length field alone allocates nothing.
pub fn read_record<R: Read>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let total = u32::from_le_bytes(head) as usize + 8;
    if total > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {total} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut buf = Vec::with_capacity(total.min(PEER_READ_BUFFER));
    buf.extend_from_slice(&head);
    r.take((total - head.len()) as u64).read_to_end(&mut buf)?;
    if buf.len() < total {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside a frame",
        ));
    }
    Ok(buf)
}

fn encode_body(hello: &HelloInfo, to: NodeId, body: &Body) -> Vec<u8> {
    let header = FrameHeader::new(hello.cluster_id, 0, hello.node_id, to);
    let mut buf = vec![0u8; 2048];
    let n = wire::encode(&header, body, &[], &mut buf).expect("a handshake frame fits 2 KiB");
    buf.truncate(n);
    buf
}

fn refusal(reason: &str) -> Body {
    let mut s = heapless::String::<160>::new();
    for c in reason.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    Body::HelloRefused(s)
}

/// Dial `id` at `addr` and forward its queue, reconnecting with backoff.
fn dial_loop(net: Arc<Net>, id: NodeId, addr: String, rx: Receiver<Vec<u8>>) {
    let mut backoff_ms = 50u64;
    let mut last_error = String::new();
    loop {
        if net.stopping.load(Ordering::Relaxed) {
            return;
        }
        match dial_once(&net, id, &addr, &rx) {
            Ok(()) => return, // the queue closed: the peer was replaced or we shut down
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    log::warn!("peer {id} at {addr}: {msg}");
                    last_error = msg;
                }
            }
        }
        // Frames queued while disconnected are stale; Raft resends what matters.
        while rx.try_recv().is_ok() {}
        if rx.is_closed() {
            return;
        }
        std::thread::sleep(Duration::from_millis(backoff_ms));
        backoff_ms = (backoff_ms * 2).min(1000);
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other(format!("{addr} resolves to no address"))))
}

fn dial_once(net: &Arc<Net>, id: NodeId, addr: &str, rx: &Receiver<Vec<u8>>) -> io::Result<()> {
    let stream = connect(addr)?;
    stream.set_nodelay(true)?;
    // The handshake (TLS, when members speak it, and the answering Hello) must be over within
    // --peer-handshake-timeout, the bound the accepting side holds it to; afterwards this
    // side only writes.
    let deadline = Instant::now() + net.limits.handshake_timeout;
    stream.set_write_timeout(Some(net.limits.handshake_timeout))?;
    let timed_out = |e| dial_handshake_error(net, addr, e);
    let link =
        tls_stream::dial_peer(net.tls.get(), stream, addr, id, deadline).map_err(timed_out)?;
    let (mut reader, mut writer, tcp) = (link.reader, link.writer, link.tcp);
    let info = net.hello.lock().expect("hello lock").clone();
    let local = info.hello(id);
    // TLS already authenticates and encrypts: the cluster key seals only links without it.
    let seal = net.seal.get().filter(|_| !link.tls);
    let mut ch = Channel::dial(seal, id, &mut reader, &mut writer).map_err(timed_out)?;
    ch.write(
        &mut writer,
        &encode_body(&info, id, &Body::Hello(local.clone())),
    )?;
    let reply = ch
        .read(seal, &mut reader, HELLO_MAX_BYTES, addr)
        .map_err(timed_out)?;
    reader.get_mut().end_deadline();
    let (frame, _) = wire::decode(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("handshake: {e}")))?;
    match frame.body {
        Body::Hello(remote) => {
            if let Err(e) = handshake::check(&local, &remote) {
                let reason = e.to_string();
                let _ = ch.write(&mut writer, &encode_body(&info, id, &refusal(&reason)));
                return Err(io::Error::other(format!(
                    "handshake refused here: {reason} (we are cluster {} node {} with members {:?}; \
                     peer is cluster {} node {} with members {:?})",
                    local.cluster_id,
                    local.node_id,
                    local.members.as_slice(),
                    remote.cluster_id,
                    remote.node_id,
                    remote.members.as_slice()
                )));
            }
        }
        Body::HelloRefused(reason) => {
            return Err(io::Error::other(format!(
            "the peer refused our handshake: {reason} (we sent cluster {} node {} members {:?})",
            local.cluster_id,
            local.node_id,
            local.members.as_slice()
        )))
        }
        Body::Raft(_) | Body::Ping => {
            return Err(io::Error::other(
                "the peer answered the handshake with a raft message or a ping",
            ))
        }
    }
    log::info!("connected to peer {id} at {addr}");
    // A peer that stops reading must not hold this thread forever: the write fails and the
    // connection is dialed again.
    tcp.set_write_timeout(Some(PEER_WRITE_TIMEOUT))?;
    let mut buf = Vec::with_capacity(256 << 10);
    loop {
        let Ok(first) = rx.recv_blocking() else {
            return Ok(());
        };
        buf.clear();
        ch.append(&first, &mut buf);
        while buf.len() < (4 << 20) {
            match rx.try_recv() {
                Ok(f) => ch.append(&f, &mut buf),
                Err(_) => break,
            }
        }
        writer.write_all(&buf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_peer_reader_waits_while_the_raft_thread_holds_too_many_bytes() {
        let (tx, rx) = smol::channel::unbounded();
        let net = Net::new(
            tx,
            HelloInfo {
                cluster_id: 1,
                node_id: 1,
                members: NodeSet::new(),
            },
            PeerLimits::default(),
            Duration::from_secs(1),
        );
        let frame = 1 << 20;
        let n = PEER_INPUT_BYTES / frame + 4;
        let reader = {
            let net = net.clone();
            std::thread::spawn(move || (0..n).all(|_| net.deliver(vec![0u8; frame])))
        };
        // The reader delivers up to the limit (plus the frame that crosses it), then waits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while rx.len() < PEER_INPUT_BYTES / frame + 1 {
            assert!(
                Instant::now() < deadline,
                "only {} frames arrived",
                rx.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            rx.len(),
            PEER_INPUT_BYTES / frame + 1,
            "the reader did not wait"
        );
        assert!(!reader.is_finished());
        assert_eq!(net.input_bytes(), rx.len() * frame);
        // Taking frames makes room; the reader finishes once everything is taken.
        let mut taken = 0;
        while taken < n {
            let f = rx.recv_blocking().expect("a frame");
            net.taken(f.len());
            taken += 1;
        }
        assert!(reader.join().expect("reader"));
        assert_eq!(net.input_bytes(), 0);
    }
}
