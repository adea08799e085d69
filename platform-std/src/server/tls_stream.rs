//! The stream types that put TLS under a port's connections, so the connection code reads and
//! writes the same way with or without it:
//!
//! - [`PeerLink`]: a raft port connection (blocking, one thread): the TLS handshake, the
//!   member the certificate names, and a read half and a write half over one TLS session.
//! - [`ClientStream`]: a client port connection on the raft thread's reactor: rustls driven
//!   over the non-blocking socket, so the raft loop can still write answers without waiting
//!   (an async adapter such as futures-rustls only offers awaited writes).
//!
//! What is trusted and the log lines of refusals live in [`super::tls`].

use std::cell::{OnceCell, RefCell};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_io::Async;
use rustls::{ClientConnection, ServerConfig, ServerConnection, StreamOwned};
use shoal_core::{ClusterId, NodeId};

use super::tls::{self, Port, Tls};

/// A socket whose reads give up at a deadline (an accepted connection's handshake, TLS
/// included), then read as usual once [`DeadlineStream::deadline`] is cleared.
pub struct DeadlineStream {
    stream: TcpStream,
    /// When reads give up (`None`: never).
    pub deadline: Option<Instant>,
}

impl DeadlineStream {
    fn new(stream: TcpStream, deadline: Option<Instant>) -> DeadlineStream {
        DeadlineStream { stream, deadline }
    }

    /// Set the socket's read timeout to what is left of the deadline; `TimedOut` once it
    /// passed.
    fn arm(&self) -> io::Result<()> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        Ok(())
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// One direction of a raft port connection: the socket itself, or a share of its TLS session
/// (both halves are used by the connection's one thread).
pub enum PeerHalf {
    /// No TLS.
    Plain(DeadlineStream),
    /// The dialing side's TLS session.
    Dialed(Rc<RefCell<StreamOwned<ClientConnection, DeadlineStream>>>),
    /// The accepting side's TLS session.
    Accepted(Rc<RefCell<StreamOwned<ServerConnection, DeadlineStream>>>),
}

impl PeerHalf {
    /// The handshake is over: reads wait as long as it takes (the caller clears the socket's
    /// read timeout).
    pub fn end_deadline(&mut self) {
        match self {
            PeerHalf::Plain(s) => s.deadline = None,
            PeerHalf::Dialed(s) => s.borrow_mut().sock.deadline = None,
            PeerHalf::Accepted(s) => s.borrow_mut().sock.deadline = None,
        }
    }
}

impl Read for PeerHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            PeerHalf::Plain(s) => s.read(buf),
            PeerHalf::Dialed(s) => s.borrow_mut().read(buf),
            PeerHalf::Accepted(s) => s.borrow_mut().read(buf),
        }
    }
}

impl Write for PeerHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PeerHalf::Plain(s) => s.write(buf),
            PeerHalf::Dialed(s) => s.borrow_mut().write(buf),
            PeerHalf::Accepted(s) => s.borrow_mut().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            PeerHalf::Plain(s) => s.flush(),
            PeerHalf::Dialed(s) => s.borrow_mut().flush(),
            PeerHalf::Accepted(s) => s.borrow_mut().flush(),
        }
    }
}

/// An open raft port connection: its halves, its socket (for timeouts) and, over TLS, the
/// member its certificate names.
pub struct PeerLink {
    /// What the connection reads from.
    pub reader: BufReader<PeerHalf>,
    /// What it writes to.
    pub writer: PeerHalf,
    /// The socket underneath (timeouts apply to both halves).
    pub tcp: TcpStream,
    /// The node the peer's verified certificate names (`None` without TLS).
    pub member: Option<NodeId>,
    /// True when the link runs over TLS (sealing is then not applied on top).
    pub tls: bool,
}

/// True when `head` opens a TLS record carrying a handshake (a ClientHello): content type 22
/// and a legacy version 3.x. A Shoal frame's first three bytes are its length, and a first
/// frame (at most 64 KiB) has a zero third byte, so the two never look alike.
fn looks_like_tls(head: &[u8]) -> bool {
    head.len() >= 3 && head[0] == 0x16 && head[1] == 0x03 && head[2] != 0
}

fn plain(tcp: TcpStream, read_buffer: usize, deadline: Option<Instant>) -> io::Result<PeerLink> {
    let reads = DeadlineStream::new(tcp.try_clone()?, deadline);
    Ok(PeerLink {
        reader: BufReader::with_capacity(read_buffer, PeerHalf::Plain(reads)),
        writer: PeerHalf::Plain(DeadlineStream::new(tcp.try_clone()?, None)),
        tcp,
        member: None,
        tls: false,
    })
}

fn refused(tls: &Tls, who: &str, why: String) -> io::Error {
    tls.identity_refused(who, &why);
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

/// The member a finished handshake's peer certificate names, checked against our cluster.
fn certified_member(
    tls: &Tls,
    certs: Option<&[rustls_pki_types::CertificateDer<'static>]>,
    who: &str,
) -> io::Result<(ClusterId, NodeId)> {
    let Some(cert) = certs.and_then(|c| c.first()) else {
        return Err(refused(tls, who, "it presented no certificate".into()));
    };
    let (cluster, node) =
        tls::member_of(cert).map_err(|e| refused(tls, who, format!("its certificate: {e}")))?;
    if cluster != tls.cluster_id() {
        return Err(refused(
            tls,
            who,
            format!(
                "its certificate names cluster {cluster} node {node}; this is cluster {}",
                tls.cluster_id()
            ),
        ));
    }
    Ok((cluster, node))
}

/// Open the dialing side of a raft port connection to node `peer` at `addr`. With peer TLS
/// the handshake runs here and the certificate must name `peer`. Every read until
/// [`PeerHalf::end_deadline`], the TLS handshake's and the answering `Hello`'s, gives up at
/// `deadline` (`--peer-handshake-timeout`, the bound of the accepting side too) with
/// `TimedOut` or `WouldBlock`.
pub fn dial_peer(
    tls: Option<&Arc<Tls>>,
    tcp: TcpStream,
    addr: &str,
    peer: NodeId,
    deadline: Instant,
) -> io::Result<PeerLink> {
    let Some((tls, (_, config))) = tls.and_then(|t| Some((t, t.peer()?))) else {
        return plain(tcp, 8 << 10, Some(deadline));
    };
    let name = shoal_client::tls::server_name(addr)?;
    let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut sock = DeadlineStream::new(tcp.try_clone()?, Some(deadline));
    peer_handshake(&mut conn, &mut sock, tls, &format!("node {peer} at {addr}"))?;
    let (_, node) = certified_member(tls, conn.peer_certificates(), &format!("at {addr}"))?;
    if node != peer {
        return Err(refused(
            tls,
            &format!("at {addr}"),
            format!("we dialed node {peer}, but its certificate names node {node}"),
        ));
    }
    let shared = Rc::new(RefCell::new(StreamOwned::new(conn, sock)));
    Ok(PeerLink {
        reader: BufReader::with_capacity(8 << 10, PeerHalf::Dialed(shared.clone())),
        writer: PeerHalf::Dialed(shared),
        tcp,
        member: Some(node),
        tls: true,
    })
}

/// Open the accepting side of a raft port connection from `from`. With peer TLS a TLS peer
/// must present a member certificate; a peer that does not speak TLS is let through only to
/// the sealed handshake (`sealed`: this node has a cluster key, for boards) and refused
/// otherwise. Every read until [`PeerHalf::end_deadline`], the TLS handshake's and the
/// `Hello`'s, gives up at `deadline` with `TimedOut` or `WouldBlock`.
pub fn accept_peer(
    tls: Option<&Arc<Tls>>,
    sealed: bool,
    tcp: TcpStream,
    from: &str,
    read_buffer: usize,
    deadline: Instant,
) -> io::Result<PeerLink> {
    let mut head = [0u8; 3];
    let mut seen = 0;
    let waits = DeadlineStream::new(tcp.try_clone()?, Some(deadline));
    // A ClientHello's first bytes come in one segment; a peer that sends fewer waits here,
    // within the deadline.
    for _ in 0..100 {
        waits.arm()?;
        seen = tcp.peek(&mut head)?;
        if seen >= head.len() || seen == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let is_tls = looks_like_tls(&head[..seen]);
    let Some((tls, (config, _))) = tls.and_then(|t| Some((t, t.peer()?))) else {
        if is_tls {
            log::warn!(
                "raft port: peer {from} refused: it speaks TLS and this node has no \
                 --peer-cert-file"
            );
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a TLS peer on a plaintext raft port",
            ));
        }
        return plain(tcp, read_buffer, Some(deadline));
    };
    if !is_tls {
        if sealed {
            return plain(tcp, read_buffer, Some(deadline));
        }
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        tls.refused(Port::Raft, from, &e);
        return Err(e);
    }
    let mut conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut sock = waits;
    peer_handshake(&mut conn, &mut sock, tls, from)?;
    let (_, node) = certified_member(tls, conn.peer_certificates(), from)?;
    let shared = Rc::new(RefCell::new(StreamOwned::new(conn, sock)));
    Ok(PeerLink {
        reader: BufReader::with_capacity(read_buffer, PeerHalf::Accepted(shared.clone())),
        writer: PeerHalf::Accepted(shared),
        tcp,
        member: Some(node),
        tls: true,
    })
}

/// Run a raft port TLS handshake (either side) on `sock` to its end. Running out of time
/// (`TimedOut` or `WouldBlock`) is returned as it is: the caller counts it against the
/// handshake deadline. Any other failure tells the other side why (the alert) and is logged
/// and counted as a refusal of `who`.
fn peer_handshake<D: rustls::SideData>(
    conn: &mut rustls::ConnectionCommon<D>,
    sock: &mut DeadlineStream,
    tls: &Tls,
    who: &str,
) -> io::Result<()> {
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(sock) {
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) {
                return Err(e);
            }
            let _ = conn.write_tls(sock);
            tls.refused(Port::Raft, who, &e);
            return Err(e);
        }
    }
    Ok(())
}

/// The sender a raft frame names in its header (without checking its CRC: the raft thread
/// does), or `None` if the header does not decode.
pub fn frame_sender(frame: &[u8]) -> Option<NodeId> {
    let inner = frame.get(5..)?;
    let (header, _) = postcard::take_from_bytes::<shoal_core::wire::FrameHeader>(inner).ok()?;
    Some(header.from)
}

/// A client port connection: the socket, and rustls over it when the port serves TLS.
pub struct ClientStream {
    tcp: Async<TcpStream>,
    tls: Option<RefCell<ServerConnection>>,
    /// The verified client certificate's common name, once the handshake is done.
    cn: OnceCell<Option<String>>,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl ClientStream {
    /// A connection on `tcp`; with `config` it must open with a TLS handshake
    /// ([`ClientStream::handshake`]) before anything else.
    pub fn new(tcp: Async<TcpStream>, config: Option<Arc<ServerConfig>>) -> io::Result<Self> {
        let tls = match config {
            Some(c) => Some(RefCell::new(
                ServerConnection::new(c).map_err(io::Error::other)?,
            )),
            None => None,
        };
        Ok(ClientStream {
            tcp,
            tls,
            cn: OnceCell::new(),
        })
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        self.tcp.get_ref()
    }

    /// Run the TLS handshake (nothing to do without TLS).
    pub async fn handshake(&self) -> io::Result<()> {
        let Some(tls) = &self.tls else {
            let _ = self.cn.set(None);
            return Ok(());
        };
        loop {
            if tls.borrow().wants_write() {
                self.tcp
                    .write_with(|s| tls.borrow_mut().write_tls(&mut &*s))
                    .await?;
                continue;
            }
            if !tls.borrow().is_handshaking() {
                break;
            }
            let n = self
                .tcp
                .read_with(|s| tls.borrow_mut().read_tls(&mut &*s))
                .await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the TLS handshake",
                ));
            }
            let processed = tls.borrow_mut().process_new_packets().map(drop);
            if let Err(e) = processed {
                // Send the alert that says why, best effort.
                let _ = tls.borrow_mut().write_tls(&mut self.tcp.get_ref());
                return Err(tls_error(e));
            }
        }
        let cn = tls
            .borrow()
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(tls::common_name);
        let _ = self.cn.set(cn);
        Ok(())
    }

    /// The common name of the client's verified certificate (`--client-cert-auth`); `None`
    /// without TLS, without a certificate, or before the handshake.
    pub fn client_cn(&self) -> Option<&str> {
        self.cn.get().and_then(|c| c.as_deref())
    }

    /// True when the port serves TLS on this connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Read what the client sent into the first `room` bytes of `buf` (the raft thread's one
    /// read buffer, borrowed only while bytes are copied, never across a wait); 0 at its end.
    /// Over TLS the socket's bytes go to the session first and the plaintext to `buf`.
    pub async fn read(&self, buf: &RefCell<Vec<u8>>, room: usize) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self
                .tcp
                .read_with(|s| (&*s).read(&mut buf.borrow_mut()[..room]))
                .await;
        };
        loop {
            match tls
                .borrow_mut()
                .reader()
                .read(&mut buf.borrow_mut()[..room])
            {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = self
                .tcp
                .read_with(|s| tls.borrow_mut().read_tls(&mut &*s))
                .await?;
            if n == 0 {
                return Ok(0);
            }
            tls.borrow_mut().process_new_packets().map_err(tls_error)?;
        }
    }

    /// Write without waiting: the bytes taken (over TLS, taken into the session and sent as
    /// far as the socket takes them), or `WouldBlock`.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.get_ref().write(buf);
        };
        self.flush_tls(tls)?;
        // Take no more than a record's worth at a time, so the session holds little.
        let n = tls
            .borrow_mut()
            .writer()
            .write(&buf[..buf.len().min(16 << 10)])?;
        match self.flush_tls(tls) {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    /// Send what the TLS session still holds; `WouldBlock` while the socket is full. Without
    /// TLS nothing is held.
    pub fn finish(&self) -> io::Result<()> {
        match &self.tls {
            Some(tls) => self.flush_tls(tls),
            None => Ok(()),
        }
    }

    fn flush_tls(&self, tls: &RefCell<ServerConnection>) -> io::Result<()> {
        while tls.borrow().wants_write() {
            tls.borrow_mut().write_tls(&mut self.tcp.get_ref())?;
        }
        Ok(())
    }

    /// Wait until the socket takes bytes.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Run the handshake, send `frame`, end the session (TLS's close_notify) and the
    /// sending side, then read and drop what the client still sends for up to `grace`, so
    /// that closing with its unread bytes does not reset the connection before it read the
    /// frame.
    pub async fn tell_and_close(&self, frame: &[u8], grace: Duration) -> io::Result<()> {
        self.handshake().await?;
        let mut sent = 0;
        while sent < frame.len() {
            match self.write(&frame[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        if let Some(tls) = &self.tls {
            tls.borrow_mut().send_close_notify();
        }
        loop {
            match self.finish() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
        self.tcp.get_ref().shutdown(Shutdown::Write)?;
        let drain = async {
            let mut sink = [0u8; 4096];
            while self.tcp.read_with(|s| (&*s).read(&mut sink)).await? > 0 {}
            Ok::<(), io::Error>(())
        };
        let grace = async {
            async_io::Timer::after(grace).await;
            Ok(())
        };
        futures_lite::future::or(drain, grace).await
    }

    /// Close both ways.
    pub fn shutdown(&self) {
        let _ = self.tcp.get_ref().shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_and_a_first_frame_do_not_look_alike() {
        assert!(looks_like_tls(&[0x16, 0x03, 0x01]));
        // A 0x0316-byte first frame.
        assert!(!looks_like_tls(&[0x16, 0x03, 0x00]));
        assert!(!looks_like_tls(&[0x16, 0x03]));
    }
}
