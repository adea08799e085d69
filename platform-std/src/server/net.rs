//! `shoald`'s sockets: the raft port (peer connections with the `Hello` handshake) and the
//! client port (the protocol of [`crate::protocol`]). Everything here runs on the network
//! executor; it only moves bytes and hands whole frames to the raft thread through a channel.
//!
//! Peer connections are one-way: a node *dials* every peer it sends to and only *reads* from
//! connections it accepted. Each side of a new connection sends a `Hello` first; a mismatch is
//! answered with `HelloRefused(reason)` and logged with both sides' values.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_io::Timer;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use smol::channel::{Receiver, Sender, TrySendError};
use smol::net::{TcpListener, TcpStream};
use smol::Executor;

use shoal_core::handshake::{self, Hello};
use shoal_core::io::{Transport, TransportError};
use shoal_core::membership::NodeSet;
use shoal_core::wire::{self, Body, FrameHeader, WIRE_VERSION};
use shoal_core::{ClusterId, NodeId, NO_NODE};

use crate::protocol::{self, RequestFrame, ResponseFrame};

/// Largest peer frame accepted (64 MiB).
pub const MAX_PEER_FRAME_BYTES: usize = 64 << 20;
/// Frames queued for one peer before new ones are dropped (Raft retries). 32 times a full
/// append window (`MAX_INFLIGHT`); the queue's slots (32 bytes each) are written when it is
/// created, so they are resident for every peer (8192 slots were 256 KiB each).
pub const PEER_QUEUE_FRAMES: usize = 1024;
/// Read buffer of an accepted peer connection.
const PEER_READ_BUFFER: usize = 64 << 10;

/// What the network hands to the raft thread.
pub enum Input {
    /// A peer frame (already past the handshake).
    Peer(Vec<u8>),
    /// A client request and where its answers go.
    Client {
        /// The connection's answer queue.
        reply: Sender<ResponseFrame>,
        /// The connection's id.
        conn: u64,
        /// The request.
        frame: RequestFrame,
    },
    /// A client connection closed.
    ClientClosed(u64),
}

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

/// State shared by the network tasks.
pub struct Net {
    /// Runs every socket task.
    pub ex: Arc<Executor<'static>>,
    /// Where frames and requests go.
    pub input: Sender<Input>,
    /// Handshake identity.
    pub hello: Mutex<HelloInfo>,
    /// Set once shutdown starts: listeners stop accepting.
    pub stopping: AtomicBool,
    /// Queues to peers, by node id.
    peers: Mutex<HashMap<NodeId, PeerQueue>>,
    next_conn: AtomicU64,
}

impl Net {
    /// Shared network state.
    pub fn new(ex: Arc<Executor<'static>>, input: Sender<Input>, hello: HelloInfo) -> Arc<Net> {
        Arc::new(Net {
            ex,
            input,
            hello: Mutex::new(hello),
            stopping: AtomicBool::new(false),
            peers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        })
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
        self.ex.spawn(dial_loop(net, id, addr, rx)).detach();
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

/// Read one record-framed message (length, version, body, CRC) from `r`.
pub async fn read_record<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).await?;
    let total = u32::from_le_bytes(head) as usize + 8;
    if total > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {total} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; total];
    buf[..4].copy_from_slice(&head);
    r.read_exact(&mut buf[4..]).await?;
    Ok(buf)
}

fn encode_body(hello: &HelloInfo, to: NodeId, body: &Body) -> Vec<u8> {
    let header = FrameHeader {
        version: WIRE_VERSION,
        cluster_id: hello.cluster_id,
        group: 0,
        from: hello.node_id,
        to,
    };
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
async fn dial_loop(net: Arc<Net>, id: NodeId, addr: String, rx: Receiver<Vec<u8>>) {
    let mut backoff_ms = 50u64;
    let mut last_error = String::new();
    loop {
        if net.stopping.load(Ordering::Relaxed) {
            return;
        }
        match dial_once(&net, id, &addr, &rx).await {
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
        Timer::after(Duration::from_millis(backoff_ms)).await;
        backoff_ms = (backoff_ms * 2).min(1000);
    }
}

async fn dial_once(
    net: &Arc<Net>,
    id: NodeId,
    addr: &str,
    rx: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.clone());
    let mut writer = stream;
    let info = net.hello.lock().expect("hello lock").clone();
    let local = info.hello(id);
    writer
        .write_all(&encode_body(&info, id, &Body::Hello(local.clone())))
        .await?;
    let reply = read_record(&mut reader, 64 << 10).await?;
    let (frame, _) = wire::decode(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("handshake: {e}")))?;
    match frame.body {
        Body::Hello(remote) => {
            if let Err(e) = handshake::check(&local, &remote) {
                let reason = e.to_string();
                let _ = writer
                    .write_all(&encode_body(&info, id, &refusal(&reason)))
                    .await;
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
        Body::Raft(_) => {
            return Err(io::Error::other(
                "the peer answered the handshake with a raft message",
            ))
        }
    }
    log::info!("connected to peer {id} at {addr}");
    let mut buf = Vec::with_capacity(256 << 10);
    loop {
        let Ok(first) = rx.recv().await else {
            return Ok(());
        };
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < (4 << 20) {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        writer.write_all(&buf).await?;
    }
}

/// Accept peer connections on `listener`.
pub async fn raft_listener(net: Arc<Net>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("raft port accept failed: {e}");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        if net.stopping.load(Ordering::Relaxed) {
            return;
        }
        let n = net.clone();
        net.ex
            .spawn(async move {
                if let Err(e) = serve_peer(&n, stream).await {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        log::warn!("peer connection from {peer}: {e}");
                    }
                }
            })
            .detach();
    }
}

async fn serve_peer(net: &Arc<Net>, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // Small frames (acks, heartbeats) batch through this buffer; an append larger than it is
    // read straight into its frame. Every byte of it is resident for the connection's life.
    let mut reader = BufReader::with_capacity(PEER_READ_BUFFER, stream.clone());
    let mut writer = stream;
    let first = read_record(&mut reader, 64 << 10).await?;
    let (frame, _) = wire::decode(&first)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("handshake: {e}")))?;
    let Body::Hello(remote) = frame.body else {
        return Err(io::Error::other("the first frame was not a Hello"));
    };
    let info = net.hello.lock().expect("hello lock").clone();
    let local = info.hello(NO_NODE);
    if let Err(e) = handshake::check(&local, &remote) {
        let reason = e.to_string();
        log::warn!(
            "refused peer handshake: {reason} (we are cluster {} node {} with members {:?}; \
             peer says cluster {} node {} expecting node {} with members {:?})",
            local.cluster_id,
            local.node_id,
            local.members.as_slice(),
            remote.cluster_id,
            remote.node_id,
            remote.expected_peer,
            remote.members.as_slice()
        );
        writer
            .write_all(&encode_body(&info, remote.node_id, &refusal(&reason)))
            .await?;
        return Ok(());
    }
    writer
        .write_all(&encode_body(&info, remote.node_id, &Body::Hello(local)))
        .await?;
    loop {
        let frame = read_record(&mut reader, MAX_PEER_FRAME_BYTES).await?;
        if net.input.send(Input::Peer(frame)).await.is_err() {
            return Ok(());
        }
    }
}

/// Accept client connections on `listener`.
pub async fn client_listener(net: Arc<Net>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                log::warn!("client port accept failed: {e}");
                Timer::after(Duration::from_millis(50)).await;
                continue;
            }
        };
        if net.stopping.load(Ordering::Relaxed) {
            return;
        }
        let conn = net.next_conn.fetch_add(1, Ordering::Relaxed);
        let n = net.clone();
        net.ex
            .spawn(async move {
                if let Err(e) = serve_client(&n, conn, stream).await {
                    if e.kind() != io::ErrorKind::UnexpectedEof {
                        log::debug!("client connection {conn} from {peer}: {e}");
                    }
                }
                let _ = n.input.send(Input::ClientClosed(conn)).await;
            })
            .detach();
    }
}

async fn serve_client(net: &Arc<Net>, conn: u64, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let (tx, rx) = smol::channel::unbounded::<ResponseFrame>();
    let writer = net.ex.spawn(client_writer(stream.clone(), rx));
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let result = loop {
        let bytes = match read_record(&mut reader, protocol::MAX_FRAME_BYTES + 16).await {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        match protocol::decode::<RequestFrame>(&bytes) {
            Ok(Some((frame, _))) => {
                let input = Input::Client {
                    reply: tx.clone(),
                    conn,
                    frame,
                };
                if net.input.send(input).await.is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Err(io::Error::other("incomplete frame")),
            Err(e) => {
                // The stream can no longer be trusted to be in step: answer and close.
                let _ = tx
                    .send(ResponseFrame {
                        id: 0,
                        response: crate::protocol::Response::Error {
                            code: crate::protocol::ErrorCode::BadRequest,
                            kv: None,
                            message: format!("request frame refused: {e}; closing the connection"),
                        },
                    })
                    .await;
                break Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
        }
    };
    drop(tx);
    // Let the writer send what is queued (the raft thread may still hold senders for watches).
    let _ = futures_lite::future::or(writer, async {
        Timer::after(Duration::from_millis(200)).await;
        Ok(())
    })
    .await;
    result
}

async fn client_writer(mut stream: TcpStream, rx: Receiver<ResponseFrame>) -> io::Result<()> {
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        let Ok(first) = rx.recv().await else {
            return Ok(());
        };
        buf.clear();
        encode_response(&first, &mut buf);
        while buf.len() < (1 << 20) {
            match rx.try_recv() {
                Ok(r) => encode_response(&r, &mut buf),
                Err(_) => break,
            }
        }
        stream.write_all(&buf).await?;
    }
}

fn encode_response(r: &ResponseFrame, buf: &mut Vec<u8>) {
    if let Err(e) = protocol::encode(r, buf) {
        let fallback = ResponseFrame {
            id: r.id,
            response: crate::protocol::Response::Error {
                code: crate::protocol::ErrorCode::Internal,
                kv: None,
                message: format!("answer could not be encoded: {e}"),
            },
        };
        let _ = protocol::encode(&fallback, buf);
    }
}
