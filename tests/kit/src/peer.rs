//! A stand-in for a cluster member on the raft port, for tests that speak the peer protocol
//! as a node would (or as a misconfigured one would): [`PeerLink`] dials a node and passes the
//! connection's `Hello` as that member, then sends frames; [`PeerInbox`] listens on the
//! member's raft address, answers the `Hello` of every node that dials it and hands over every
//! frame those nodes send, as raw bytes to decode with `shoal_core::wire::decode`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use shoal_core::handshake::Hello;
use shoal_core::membership::NodeSet;
use shoal_core::wire::{self, Body, FrameHeader};
use shoal_core::{GroupId, NodeId, NO_NODE};

/// Largest frame read.
const MAX_FRAME: usize = 64 << 20;

/// Who the stand-in is: the cluster, its own node id and the members it claims.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Cluster id.
    pub cluster_id: u64,
    /// The member it plays.
    pub node_id: NodeId,
    /// The members of group 0 it claims in its connection `Hello`.
    pub members: Vec<NodeId>,
}

impl Identity {
    /// A `Hello` of `group` naming `members`, expecting `expected_peer` (`NO_NODE`: an
    /// accepting `Hello`).
    pub fn hello(&self, group: GroupId, expected_peer: NodeId, members: &[NodeId]) -> Body {
        Body::Hello(Hello {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
            expected_peer,
            group,
            members: NodeSet::from_slice(members).expect("at most MAX_MEMBERS members"),
        })
    }

    /// One frame of `group` from this member to `to`.
    pub fn frame(&self, group: GroupId, to: NodeId, body: &Body) -> Vec<u8> {
        let header = FrameHeader::new(self.cluster_id, group, self.node_id, to);
        let mut buf = vec![0u8; 4096];
        let n = wire::encode(&header, body, &[], &mut buf).expect("a small frame fits 4 KiB");
        buf.truncate(n);
        buf
    }
}

/// Read one frame (length, version, body, CRC) from `r`.
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let total = u32::from_le_bytes(head) as usize + 8;
    if total > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {total} bytes")));
    }
    let mut buf = vec![0u8; total];
    buf[..4].copy_from_slice(&head);
    r.read_exact(&mut buf[4..])?;
    Ok(buf)
}

/// A connection this stand-in dialed: it only sends (peer connections are one-way).
pub struct PeerLink {
    stream: Box<dyn Stream>,
}

/// A connection to write frames to and read answers from: plain TCP or TLS over it.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

impl PeerLink {
    /// Dial node `to` at `addr` as `me` and pass the connection's handshake; the node's
    /// answer (its accepting `Hello`, or a refusal) is returned with the link.
    pub fn dial(me: &Identity, to: NodeId, addr: &str) -> std::io::Result<(PeerLink, Vec<u8>)> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&me.frame(0, to, &me.hello(0, to, &me.members)))?;
        let answer = read_frame(&mut stream)?;
        Ok((
            PeerLink {
                stream: Box::new(stream),
            },
            answer,
        ))
    }

    /// [`PeerLink::dial`] over TLS, presenting `pair` (a member certificate, possibly another
    /// node's) and trusting `ca`. The handshake's or the node's refusal is the error, or the
    /// answer.
    pub fn dial_tls(
        me: &Identity,
        to: NodeId,
        addr: &str,
        pair: &crate::certs::CertPair,
        ca: &std::path::Path,
    ) -> std::io::Result<(PeerLink, Vec<u8>)> {
        let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let config = tls_client_config(ca, Some(pair))?;
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| bad(&e))?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| bad(&e))?;
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.write_all(&me.frame(0, to, &me.hello(0, to, &me.members)))?;
        stream.flush()?;
        let answer = read_frame(&mut stream)?;
        Ok((
            PeerLink {
                stream: Box::new(stream),
            },
            answer,
        ))
    }

    /// Send one frame.
    pub fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(frame)?;
        self.stream.flush()
    }
}

/// A TLS 1.3 client configuration trusting `ca`, presenting `pair` if given.
pub fn tls_client_config(
    ca: &std::path::Path,
    pair: Option<&crate::certs::CertPair>,
) -> std::io::Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))? {
        roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad(&e))?
        .with_root_certificates(roots);
    let config = match pair {
        Some(pair) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(&pair.cert)
                .map_err(|e| bad(&e))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| bad(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(std::sync::Arc::new(config))
}

/// The stand-in's raft port: every node that dials it is greeted, and its frames collected.
pub struct PeerInbox {
    frames: Receiver<Vec<u8>>,
}

impl PeerInbox {
    /// Listen on `addr` as `me` (a thread accepts; one more per connection reads).
    pub fn listen(me: &Identity, addr: &str) -> std::io::Result<PeerInbox> {
        let listener = TcpListener::bind(addr)?;
        let (tx, rx) = channel();
        let me = me.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let (tx, me) = (tx.clone(), me.clone());
                std::thread::spawn(move || {
                    // The dialer's Hello first; answer it as an accepting member.
                    let Ok(first) = read_frame(&mut stream) else {
                        return;
                    };
                    let from = match wire::decode(&first) {
                        Ok((f, _)) => f.header.from,
                        Err(_) => return,
                    };
                    let accept = me.frame(0, from, &me.hello(0, NO_NODE, &me.members));
                    if stream.write_all(&accept).is_err() {
                        return;
                    }
                    while let Ok(frame) = read_frame(&mut stream) {
                        if tx.send(frame).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(PeerInbox { frames: rx })
    }

    /// The next frame any node sent whose decoded form `pick` accepts, within `within`; the
    /// others are dropped.
    pub fn next_matching(
        &self,
        within: Duration,
        mut pick: impl FnMut(&wire::Frame<'_>) -> bool,
    ) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let frame = self.frames.recv_timeout(left).ok()?;
            if wire::decode(&frame).is_ok_and(|(f, _)| pick(&f)) {
                return Some(frame);
            }
        }
    }
}
