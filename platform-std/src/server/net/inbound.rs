//! The accepting side of the raft port: one blocking thread per connection, the handshake (TLS,
//! seal, Hello), the limits on connections per peer, and the frames read into the raft thread's
//! inbox.

use super::*;

/// Accept peer connections on `listener` (a thread of its own; each connection gets a reader
/// thread, started only while fewer than `max_handshakes` are in their handshake).
pub fn raft_listener(net: Arc<Net>, listener: TcpListener) {
    spawn_peer_thread("shoal-raft-accept".into(), move || loop {
        let (stream, peer) = match listener.accept().and_then(|(s, p)| {
            // Serving a connection takes more descriptors than the accepted one: one taken
            // without them to spare would fail in its thread and free its descriptor for the
            // next accept, again and again. It is closed here and counted as a failed accept.
            let spare: Vec<TcpStream> = (0..PEER_SPARE_DESCRIPTORS)
                .map(|_| s.try_clone())
                .collect::<io::Result<_>>()?;
            drop(spare);
            Ok((s, p))
        }) {
            Ok(x) => x,
            Err(e) => {
                std::thread::sleep(net.accept.failed(&e));
                continue;
            }
        };
        net.accept.succeeded();
        if net.stopping.load(Ordering::Relaxed) {
            return;
        }
        if !Net::take_slot(&net.handshakes, net.limits.max_handshakes) {
            // Dropping the socket closes it: a stranger costs no thread.
            net.hit(PeerLimit::Handshakes);
            log::debug!(
                "raft port: {peer} closed, {} handshakes in progress",
                net.limits.max_handshakes
            );
            continue;
        }
        let n = net.clone();
        let started = spawn_peer_thread(format!("shoal-peer-{peer}"), move || {
            if let Err(e) = serve_peer(&n, stream, &peer.to_string()) {
                if e.kind() != io::ErrorKind::UnexpectedEof {
                    log::warn!("peer connection from {peer}: {e}");
                }
            }
        });
        if !started {
            drop(Slot(&net.handshakes));
        }
    });
}

/// A handshake read's error; one that ran out of `--peer-handshake-timeout` is counted and
/// says so.
fn handshake_error(net: &Net, e: io::Error) -> io::Error {
    timed_out(
        net,
        e,
        "no whole handshake (TLS, when the raft port serves it, and Hello)",
    )
}

/// A dialed handshake's error; one that ran out of `--peer-handshake-timeout` is counted as
/// the accepting side counts its own and says so.
pub(super) fn dial_handshake_error(net: &Net, addr: &str, e: io::Error) -> io::Error {
    let what =
        format!("{addr} did not finish the handshake (TLS, when members speak it, and its Hello)");
    timed_out(net, e, &what)
}

/// `e`, or when it is a timeout, a hit of `--peer-handshake-timeout` and an error saying
/// `what` did not happen within it.
fn timed_out(net: &Net, e: io::Error, what: &str) -> io::Error {
    if !matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return e;
    }
    net.hit(PeerLimit::HandshakeTimeout);
    io::Error::new(
        e.kind(),
        format!(
            "{what} within {:?} (--{}); closed",
            net.limits.handshake_timeout,
            PeerLimit::HandshakeTimeout.flag()
        ),
    )
}

/// Gives back a counted slot when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Removes a peer's accepted connection from [`Net::inbound`] when its reader ends.
struct Inbound<'a> {
    net: &'a Net,
    peer: NodeId,
    serial: u64,
}

impl Drop for Inbound<'_> {
    fn drop(&mut self) {
        let mut inbound = self.net.inbound.lock().expect("inbound lock");
        if let Some(conns) = inbound.get_mut(&self.peer) {
            conns.retain(|(s, _)| *s != self.serial);
            if conns.is_empty() {
                inbound.remove(&self.peer);
            }
        }
    }
}

/// Serve one connection a peer dialed: the handshake, the checks of who it is, a connection
/// slot, then its frames until it closes.
fn serve_peer(net: &Arc<Net>, stream: TcpStream, from: &str) -> io::Result<()> {
    let handshake = Slot(&net.handshakes);
    let mut peer = greet(net, stream, from)?;
    if !admit(net, &mut peer, from)? {
        return Ok(());
    }
    drop(handshake);
    let _accepted = connection_slot(net, &mut peer)?;
    let _inbound = register_inbound(net, peer.remote.node_id, &peer.tcp)?;
    let hello = Body::Hello(peer.local.clone());
    peer.send(&hello)?;
    peer.reader.get_mut().end_deadline();
    peer.tcp.set_read_timeout(None)?;
    read_frames(net, peer, from)
}

/// An accepted peer connection whose Hello has been read (and not yet checked).
struct Greeted<'n> {
    reader: std::io::BufReader<tls_stream::PeerHalf>,
    writer: tls_stream::PeerHalf,
    tcp: TcpStream,
    /// The node the peer's certificate names (`None` without TLS).
    member: Option<NodeId>,
    /// The cluster key's seal, on links without TLS.
    seal: Option<&'n PeerSeal>,
    ch: Channel,
    info: HelloInfo,
    /// This node's Hello, as the answer will carry it.
    local: Hello,
    /// The peer's Hello.
    remote: Hello,
}

impl Greeted<'_> {
    /// Send one frame of `body` to the peer.
    fn send(&mut self, body: &Body) -> io::Result<()> {
        let frame = encode_body(&self.info, self.remote.node_id, body);
        self.ch.write(&mut self.writer, &frame)
    }
}

/// Accept the link (TLS with --peer-cert-file) and read the peer's Hello, both within the
/// handshake timeout.
fn greet<'n>(net: &'n Net, stream: TcpStream, from: &str) -> io::Result<Greeted<'n>> {
    stream.set_nodelay(true)?;
    // Small frames (acks, heartbeats) batch through this buffer; an append larger than it is
    // read straight into its frame. Every byte of it is resident for the connection's life.
    // The TLS handshake (with --peer-cert-file) and the Hello share one deadline.
    let sealed = net.seal.get().is_some();
    let deadline = Instant::now() + net.limits.handshake_timeout;
    let link = tls_stream::accept_peer(
        net.tls.get(),
        sealed,
        stream,
        from,
        PEER_READ_BUFFER,
        deadline,
    )
    .map_err(|e| handshake_error(net, e))?;
    let (mut reader, mut writer) = (link.reader, link.writer);
    let first = read_record(&mut reader, HELLO_MAX_BYTES).map_err(|e| handshake_error(net, e))?;
    let info = net.hello.lock().expect("hello lock").clone();
    let local_ids = (info.cluster_id, info.node_id);
    // TLS already authenticates and encrypts: the cluster key seals only links without it.
    let seal = net.seal.get().filter(|_| !link.tls);
    let (ch, first) = Channel::accept(seal, local_ids, from, first, &mut reader, &mut writer)
        .map_err(|e| handshake_error(net, e))?;
    let (frame, _) = wire::decode(&first)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("handshake: {e}")))?;
    let Body::Hello(remote) = frame.body else {
        return Err(io::Error::other("the first frame was not a Hello"));
    };
    Ok(Greeted {
        reader,
        writer,
        tcp: link.tcp,
        member: link.member,
        seal,
        ch,
        local: info.hello(NO_NODE),
        info,
        remote,
    })
}

/// Whether the peer is one this node talks to: its Hello agrees with ours (else it is told
/// why and the connection ends quietly) and names the node its certificate names (else it is
/// told why and refused as an impostor).
fn admit(net: &Net, peer: &mut Greeted<'_>, from: &str) -> io::Result<bool> {
    let (local, remote) = (&peer.local, &peer.remote);
    if let Err(e) = handshake::check(local, remote) {
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
        peer.send(&refusal(&reason))?;
        return Ok(false);
    }
    if let Some(member) = peer.member.filter(|m| *m != remote.node_id) {
        let why = format!(
            "its Hello says node {}, but its certificate names node {member}",
            remote.node_id
        );
        let tls = net.tls.get().expect("a certified member implies TLS");
        tls.identity_refused(from, &why);
        peer.send(&refusal(&why))?;
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    }
    Ok(true)
}

/// One of the --peer-max-connections slots for an admitted peer, or its refusal.
fn connection_slot<'n>(net: &'n Net, peer: &mut Greeted<'_>) -> io::Result<Slot<'n>> {
    if !Net::take_slot(&net.accepted, net.limits.max_connections) {
        net.hit(PeerLimit::Connections);
        let reason = format!(
            "node {} already has {} peer connections (--{})",
            peer.local.node_id,
            net.limits.max_connections,
            PeerLimit::Connections.flag()
        );
        peer.send(&refusal(&reason))?;
        return Err(io::Error::other(reason));
    }
    Ok(Slot(&net.accepted))
}

/// Record the connection among `peer`'s inbound ones, closing its oldest beyond
/// `INBOUND_PER_PEER`; the record goes when the returned guard drops.
fn register_inbound<'n>(net: &'n Net, peer: NodeId, tcp: &TcpStream) -> io::Result<Inbound<'n>> {
    let serial = net.next_inbound.fetch_add(1, Ordering::Relaxed);
    let handle = tcp.try_clone()?;
    let mut inbound = net.inbound.lock().expect("inbound lock");
    let conns = inbound.entry(peer).or_default();
    conns.push_back((serial, handle));
    while conns.len() > INBOUND_PER_PEER {
        // The peer dialed again: its oldest connection is dead or dying; its reader ends.
        let (_, old) = conns.pop_front().expect("more than the limit");
        let _ = old.shutdown(std::net::Shutdown::Both);
    }
    Ok(Inbound { net, peer, serial })
}

/// Hand the peer's frames to the raft thread until the connection or the node ends; with TLS,
/// a frame naming a sender other than the certified member closes the connection.
fn read_frames(net: &Net, mut peer: Greeted<'_>, from: &str) -> io::Result<()> {
    loop {
        let frame = peer
            .ch
            .read(peer.seal, &mut peer.reader, MAX_PEER_FRAME_BYTES, from)?;
        if let Some(member) = peer.member {
            let sender = tls_stream::frame_sender(&frame);
            if sender != Some(member) {
                let why = format!(
                    "a frame on the connection of node {member} names sender {sender:?}; \
                     closing it"
                );
                let tls = net.tls.get().expect("a certified member implies TLS");
                tls.identity_refused(from, &why);
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
            }
        }
        if !net.deliver(frame) {
            return Ok(());
        }
    }
}
