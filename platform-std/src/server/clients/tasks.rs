//! The tasks of the client port: the accept loop, the sweeper of timeouts, and each
//! connection's reader and writer.

use std::io::{self, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;

use async_io::{Async, Timer};
use shoal_client::protocol::{self, ErrorCode, Response, ResponseFrame};
use smol::LocalExecutor;

use super::super::auth::Principal;
use super::super::tls::{Port, Tls};
use super::super::tls_stream::ClientStream;
use super::conn::encode_response;
use super::{ClientInput, Conn, Hub, Limit, CLOSE_GRACE, SWEEP_EVERY};

/// Accept client connections on `listener` and serve each on `ex` (the raft thread's executor).
/// A failed accept (out of descriptors) pauses the loop as `backoff` says.
pub async fn accept_loop(
    hub: Rc<Hub>,
    ex: Rc<LocalExecutor<'static>>,
    listener: Async<TcpListener>,
    backoff: Rc<super::super::accept::AcceptBackoff>,
) {
    ex.spawn(sweeper(hub.clone())).detach();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                Timer::after(backoff.failed(&e)).await;
                continue;
            }
        };
        backoff.succeeded();
        if hub.stopping.get() {
            return;
        }
        let tls = hub.tls.borrow().clone();
        let config = tls.as_ref().and_then(|t| t.client_port());
        let Some(stream) = admit(&hub, &ex, stream, config.clone()) else {
            continue;
        };
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("client connection from {peer}: set_nodelay: {e}");
        }
        let stream = match ClientStream::new(stream, config) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("client connection from {peer}: {e}");
                continue;
            }
        };
        let id = hub.next_conn.get();
        hub.next_conn.set(id + 1);
        let conn = Conn::new(id, peer, hub.clone(), stream);
        hub.conns.borrow_mut().insert(id, conn.clone());
        ex.spawn(writer(conn.clone())).detach();
        ex.spawn(serve(conn, tls)).detach();
    }
}

/// Serve one accepted connection: finish its TLS handshake, read its requests until it closes,
/// let its queued answers leave, and forget it.
async fn serve(conn: Rc<Conn>, tls: Option<Arc<Tls>>) {
    let (id, peer) = (conn.id, conn.peer);
    let opened = conn.stream.handshake().await;
    conn.handshaking.set(false);
    // A client certificate TLS verified (--client-cert-auth) names the user this
    // connection speaks for, as a login would; a later login on it replaces it.
    if let Some(cn) = conn.client_cn() {
        conn.set_principal(Some(Principal::from_verified_cn(cn)));
    }
    if let (Err(e), Some(tls)) = (&opened, &tls) {
        // One closed by the frame timeout was counted there.
        if !conn.closed.get() {
            tls.refused(Port::Client, &peer.to_string(), e);
        }
    }
    if let Err(e) = match opened {
        Ok(()) => reader(&conn).await,
        Err(e) => Err(e),
    } {
        if e.kind() != io::ErrorKind::UnexpectedEof {
            log::debug!("client connection {id} from {peer}: {e}");
        }
    }
    conn.hub.push(ClientInput::Closed(id));
    // Let queued answers leave (a client may half-close and still read), then close.
    if conn.pending() > 0 && !conn.closed.get() {
        let drained = conn.drained.listen();
        if conn.pending() > 0 && !conn.closed.get() {
            futures_lite::future::or(drained, async {
                Timer::after(CLOSE_GRACE).await;
            })
            .await;
        }
    }
    conn.close();
    conn.hub.conns.borrow_mut().remove(&id);
}

/// The connection if it may be served; one over `--client-max-connections` is told why (an
/// `Unavailable` frame of id 0: nothing it sent was read) and closed. A plaintext one is told
/// at once. A TLS one can only be told inside a TLS session: a task of its own runs the
/// handshake, sends the frame and closes, all within `--client-frame-timeout` (the bound of
/// every handshake); at most `--client-max-tls-refusals` are told at once and more are closed
/// without a word, so connections over the limit cannot make handshakes without bound.
fn admit(
    hub: &Rc<Hub>,
    ex: &LocalExecutor<'static>,
    stream: Async<TcpStream>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Option<Async<TcpStream>> {
    let open = hub.conns.borrow().len();
    let max = hub.limits.max_connections;
    if open < max {
        return Some(stream);
    }
    hub.hit(Limit::Connections);
    let mut frame = Vec::new();
    encode_response(
        &ResponseFrame {
            id: 0,
            response: Response::Unavailable {
                message: format!(
                    "this node serves {open} client connections, its limit (shoald --{}={max}); \
                     the connection was refused before anything was read, retry later or on \
                     another node",
                    Limit::Connections.flag()
                ),
            },
        },
        &mut frame,
    );
    let Some(config) = tls else {
        // A fresh socket takes a small frame at once; if it does not, the client learns
        // nothing more than a closed connection.
        let mut s: &TcpStream = stream.get_ref();
        let _ = s.write(&frame);
        let _ = s.shutdown(Shutdown::Both);
        return None;
    };
    if hub.refusing.get() >= hub.limits.max_tls_refusals {
        hub.hit(Limit::TlsRefusals);
        let _ = stream.get_ref().shutdown(Shutdown::Both);
        return None;
    }
    let stream = match ClientStream::new(stream, Some(config)) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("client connection over the limit: {e}");
            return None;
        }
    };
    hub.refusing.set(hub.refusing.get() + 1);
    let hub = hub.clone();
    ex.spawn(async move {
        let told = stream.tell_and_close(&frame, CLOSE_GRACE);
        let timeout = async {
            Timer::after(hub.limits.frame_timeout).await;
            Err(io::ErrorKind::TimedOut.into())
        };
        if let Err(e) = futures_lite::future::or(told, timeout).await {
            log::debug!("client connection over the limit, not told why: {e}");
        }
        stream.shutdown();
        hub.refusing.set(hub.refusing.get() - 1);
    })
    .detach();
    None
}

/// Run [`Hub::sweep`] every [`SWEEP_EVERY`].
async fn sweeper(hub: Rc<Hub>) {
    loop {
        Timer::after(SWEEP_EVERY).await;
        hub.sweep();
    }
}

/// Read request frames into the hub until the client closes or sends something undecodable.
async fn reader(conn: &Rc<Conn>) -> io::Result<()> {
    let hub = &conn.hub;
    loop {
        // Back-pressure: the raft loop must have taken this connection's previous requests,
        // the client its answers, and the inbox must have room.
        while conn.read_held() {
            let mine = conn.resume.listen();
            let all = hub.resume.listen();
            if conn.read_held() {
                futures_lite::future::or(mine, all).await;
            }
        }
        if conn.closed.get() {
            return Ok(());
        }
        let room = conn.read_room().max(1);
        let n = conn.stream.read(&hub.scratch, room).await?;
        if n == 0 {
            return if conn.partial.borrow().is_empty() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame",
                ))
            };
        }
        conn.active_at.set(hub.tick.get());
        // No await from the read to here: the hub's buffer still holds this read.
        if let Err(e) = conn.take_read(n) {
            // The stream can no longer be trusted to be in step: answer and close.
            let code = match e {
                protocol::FrameError::TooLarge(_) => ErrorCode::LimitExceeded,
                protocol::FrameError::Version(_) => ErrorCode::UnsupportedVersion,
                _ => ErrorCode::BadRequest,
            };
            let message = match &e {
                protocol::FrameError::TooLarge(len) => {
                    hub.hit(Limit::RequestBytes);
                    format!(
                        "request frame of {len} bytes refused: the limit is {} bytes (shoald \
                         --{}); closing the connection",
                        hub.limits.max_request_bytes,
                        Limit::RequestBytes.flag()
                    )
                }
                e => format!("request frame refused: {e}; closing the connection"),
            };
            conn.answer(&ResponseFrame {
                id: 0,
                response: Response::Error {
                    code,
                    kv: None,
                    message,
                },
            });
            hub.write_out();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
        }
    }
}

/// Write what the raft loop could not, waiting for the socket to take it.
async fn writer(conn: Rc<Conn>) {
    loop {
        while !conn.blocked.get() && !conn.closed.get() {
            let listener = conn.writer.listen();
            if !conn.blocked.get() && !conn.closed.get() {
                listener.await;
            }
        }
        if conn.closed.get() {
            return;
        }
        if conn.stream.writable().await.is_err() {
            conn.close();
            return;
        }
        conn.flush_now();
    }
}
