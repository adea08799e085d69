//! One pipelined connection to a node's client port: frames out, frames in, nothing else.
//!
//! This is the layer [`Client`](crate::Client) is built on, and the one to use when a
//! [`Client`](crate::Client) does too much per request: it never retries, never follows the
//! leader, never assigns sessions and spawns no task, so one thread can keep thousands of
//! requests in flight (`shoal-bench` does). The caller picks request ids and matches answers to
//! them; answers may come back in any order.
//!
//! Requests are encoded into the [`FrameWriter`]'s buffer by [`FrameWriter::queue`] and leave
//! together on the next flush. [`FrameReader::recv`] waits for the next answer;
//! [`FrameReader::try_recv`] returns one that an earlier read already brought in, without
//! waiting. A caller that handles every answer one read brought and then flushes the requests
//! they prompted pays one `read` and one `write` for the whole batch.
//!
//! A connection comes in two kinds that share everything but the socket calls:
//! [`Connection::open`] is async (an `async-net` socket on async-io's reactor: `flush`, `recv`),
//! [`Connection::open_blocking`] blocks the calling thread (a std socket: `flush_blocking`,
//! `recv_blocking`). A thread that serves one connection and nothing else is fastest blocking:
//! its reads wait in the kernel instead of going through a reactor.
//!
//! The two halves are independent ([`Connection`] is just the pair): one task or thread may read
//! while another writes.
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_client::connection::Connection;
//! use shoal_client::protocol::{ReadMode, Request, RequestFrame, Response};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! async_io::block_on(async {
//!     let Connection { mut writer, mut reader } =
//!         Connection::open("127.0.0.1:7002", Duration::from_secs(1)).await?;
//!     for id in 0..100 {
//!         let key = format!("k{id}").into_bytes();
//!         let request = Request::Get { key, mode: ReadMode::Lease };
//!         writer.queue(&RequestFrame::new(id, 0, request))?;
//!     }
//!     writer.flush().await?; // one write for all 100
//!     for _ in 0..100 {
//!         let answer = reader.recv().await?;
//!         if let Response::Node { node, .. } = answer.response {
//!             println!("{}: {}", answer.id, node.is_some());
//!         }
//!     }
//!     Ok(())
//! })
//! # }
//! ```

use std::io::{Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{self, FrameError, RequestFrame, ResponseFrame};
use crate::tls::{AsyncSocket, BlockingSocket, TlsConfig};

/// Bytes a [`FrameReader`] asks the socket for at least, per read; a larger frame grows its
/// buffer to the frame's size.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection could not be opened or used. Every variant but `Encode` names the node's
/// address; after any of them but `Encode` and `TimedOut`, the connection is unusable.
#[derive(Debug)]
pub enum ConnectionError {
    /// No TCP connection could be made (refused, unreachable, or not within the timeout).
    Connect {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing requests failed. Whether any queued request reached the node is unknown, except
    /// that a request cut short on the wire is ignored by the node.
    Send {
        /// The node's address.
        addr: String,
        /// The socket's error.
        error: std::io::Error,
    },
    /// Reading answers failed.
    Receive {
        /// The node's address.
        addr: String,
        /// The socket's error.
        error: std::io::Error,
    },
    /// A blocking read waited for the timeout set by [`FrameReader::set_timeout`] and no whole
    /// frame came. Nothing was lost: the connection is still usable.
    TimedOut {
        /// The node's address.
        addr: String,
    },
    /// The node closed the connection.
    Closed {
        /// The node's address.
        addr: String,
    },
    /// A request could not be encoded (it is larger than [`protocol::MAX_FRAME_BYTES`]);
    /// nothing was queued and the connection is still usable.
    Encode(FrameError),
    /// The node sent bytes that are not a valid answer frame.
    BadFrame {
        /// The node's address.
        addr: String,
        /// Why the frame was refused.
        error: FrameError,
    },
}

impl std::fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionError::Connect { addr, reason } => {
                write!(f, "cannot connect to {addr}: {reason}")
            }
            ConnectionError::Send { addr, error } => write!(f, "sending to {addr}: {error}"),
            ConnectionError::Receive { addr, error } => write!(f, "reading from {addr}: {error}"),
            ConnectionError::TimedOut { addr } => {
                write!(f, "{addr} sent nothing within the read timeout")
            }
            ConnectionError::Closed { addr } => write!(f, "{addr} closed the connection"),
            ConnectionError::Encode(e) => write!(f, "cannot encode the request: {e}"),
            ConnectionError::BadFrame { addr, error } => {
                write!(f, "bad frame from {addr}: {error}")
            }
        }
    }
}

impl std::error::Error for ConnectionError {}

/// An open connection: its write half and its read half, over an async socket (the default)
/// or a blocking one (`S` = [`std::net::TcpStream`]).
#[derive(Debug)]
pub struct Connection<S = async_net::TcpStream> {
    /// Where requests are queued and flushed.
    pub writer: FrameWriter<S>,
    /// Where answers are read.
    pub reader: FrameReader<S>,
}

impl Connection {
    /// Connect to `addr` (`host:port` of a client port) within `timeout`, with `TCP_NODELAY`
    /// set so a flush leaves at once.
    pub async fn open(addr: &str, timeout: Duration) -> Result<Connection, ConnectionError> {
        let connect = async_net::TcpStream::connect(addr.to_string());
        let stream =
            futures_lite::future::or(async { connect.await.map_err(|e| e.to_string()) }, async {
                async_io::Timer::after(timeout).await;
                Err(format!("connecting timed out after {timeout:?}"))
            })
            .await
            .map_err(|reason| ConnectionError::Connect {
                addr: addr.to_string(),
                reason,
            })?;
        // Without it, a lone request waits for the previous one's acknowledgement (Nagle).
        let _ = stream.set_nodelay(true);
        Ok(Connection::new(addr, stream.clone(), stream))
    }
}

impl Connection<AsyncSocket> {
    /// [`Connection::open`] to an endpoint that may carry a scheme (`https://host:port`),
    /// over TLS when `tls` is given (checked against its CA, presenting its certificate).
    pub async fn open_with(
        endpoint: &str,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Connection<AsyncSocket>, ConnectionError> {
        let addr = crate::tls::strip_scheme(endpoint);
        let Connection { writer, .. } = Connection::open(addr, timeout).await?;
        let fail = |e: std::io::Error| ConnectionError::Connect {
            addr: addr.to_string(),
            reason: format!("TLS: {e}"),
        };
        let opened = AsyncSocket::open(writer.stream, addr, tls);
        let (w, r) = futures_lite::future::or(opened, async {
            async_io::Timer::after(timeout).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the TLS handshake took longer than {timeout:?}"),
            ))
        })
        .await
        .map_err(fail)?;
        Ok(Connection::new(addr, w, r))
    }
}

impl Connection<BlockingSocket> {
    /// [`Connection::open_blocking`] to an endpoint that may carry a scheme, over TLS when
    /// `tls` is given. Over TLS both halves share one session: use them from one thread.
    pub fn open_blocking_with(
        endpoint: &str,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Connection<BlockingSocket>, ConnectionError> {
        let addr = crate::tls::strip_scheme(endpoint);
        let Connection { writer, .. } = Connection::open_blocking(addr, timeout)?;
        let fail = |e: std::io::Error| ConnectionError::Connect {
            addr: addr.to_string(),
            reason: format!("TLS: {e}"),
        };
        let tcp = writer.stream;
        tcp.set_read_timeout(Some(timeout)).map_err(fail)?;
        let (w, r) = BlockingSocket::open(tcp, addr, tls).map_err(fail)?;
        r.tcp().set_read_timeout(None).map_err(fail)?;
        Ok(Connection::new(addr, w, r))
    }
}

impl Connection<std::net::TcpStream> {
    /// [`Connection::open`] for a thread that blocks: connect to `addr` within `timeout` (per
    /// address it resolves to), with `TCP_NODELAY` set.
    pub fn open_blocking(
        addr: &str,
        timeout: Duration,
    ) -> Result<Connection<std::net::TcpStream>, ConnectionError> {
        let fail = |reason: String| ConnectionError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let mut last = String::from("the address resolves to nothing");
        for a in addr.to_socket_addrs().map_err(|e| fail(e.to_string()))? {
            match std::net::TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let reader = stream.try_clone().map_err(|e| fail(e.to_string()))?;
                    return Ok(Connection::new(addr, stream, reader));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(fail(last))
    }
}

impl<S> Connection<S> {
    fn new(addr: &str, write: S, read: S) -> Connection<S> {
        Connection {
            writer: FrameWriter {
                stream: write,
                addr: addr.to_string(),
                out: Vec::new(),
            },
            reader: FrameReader {
                stream: read,
                addr: addr.to_string(),
                buf: vec![0; READ_CHUNK_BYTES],
                start: 0,
                end: 0,
                closed: false,
            },
        }
    }
}

/// The write half: requests are encoded into a buffer and sent together by a flush.
#[derive(Debug)]
pub struct FrameWriter<S = async_net::TcpStream> {
    stream: S,
    addr: String,
    out: Vec<u8>,
}

impl<S> FrameWriter<S> {
    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Encode `frame` behind the requests already queued. Nothing is sent until the next
    /// flush. On an error nothing was queued.
    pub fn queue(&mut self, frame: &RequestFrame) -> Result<(), ConnectionError> {
        protocol::encode(frame, &mut self.out).map_err(ConnectionError::Encode)
    }

    /// Bytes queued and not yet flushed.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Empty the queue, turning a write's result into this module's error.
    fn sent(&mut self, result: std::io::Result<()>) -> Result<(), ConnectionError> {
        self.out.clear();
        result.map_err(|error| ConnectionError::Send {
            addr: self.addr.clone(),
            error,
        })
    }
}

impl<S: AsyncWrite + Unpin> FrameWriter<S> {
    /// Send every queued request in one write (or as few as the socket takes).
    ///
    /// On an error the queue is dropped and the connection should be closed: the requests may
    /// have reached the node whole, in part (a request cut short is ignored) or not at all. A
    /// flush dropped before it finished leaves the same uncertainty.
    pub async fn flush(&mut self) -> Result<(), ConnectionError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out).await;
        self.sent(result)
    }
}

impl<S: Write> FrameWriter<S> {
    /// [`FrameWriter::flush`] on a blocking socket.
    pub fn flush_blocking(&mut self) -> Result<(), ConnectionError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.stream.write_all(&self.out);
        self.sent(result)
    }
}

/// The read half: answers (and watch events), one frame at a time.
#[derive(Debug)]
pub struct FrameReader<S = async_net::TcpStream> {
    stream: S,
    addr: String,
    /// Bytes read: `buf[start..end]` are not yet decoded. Kept initialised, so a read never
    /// zeroes memory first.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    closed: bool,
}

impl<S> FrameReader<S> {
    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The next frame that earlier reads already brought in, if a whole one is there; never
    /// waits.
    pub fn try_recv(&mut self) -> Result<Option<ResponseFrame>, ConnectionError> {
        if self.start == self.end {
            return Ok(None);
        }
        match protocol::decode::<ResponseFrame>(&self.buf[self.start..self.end]) {
            Ok(Some((frame, used))) => {
                self.start += used;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(error) => {
                // Nothing after a damaged frame can be trusted to start a frame.
                self.closed = true;
                self.start = 0;
                self.end = 0;
                Err(ConnectionError::BadFrame {
                    addr: self.addr.clone(),
                    error,
                })
            }
        }
    }

    /// Before a read: refuse if the connection is done, else make the free space after `end`
    /// at least a read chunk, and large enough for the whole frame at `start` once its length
    /// is known.
    fn make_room(&mut self) -> Result<(), ConnectionError> {
        if self.closed {
            return Err(ConnectionError::Closed {
                addr: self.addr.clone(),
            });
        }
        let pending = self.end - self.start;
        let frame = protocol::frame_len(&self.buf[self.start..self.end]).unwrap_or(0);
        let need = pending.max(frame) + READ_CHUNK_BYTES;
        if self.start > 0 && self.buf.len() - self.end < READ_CHUNK_BYTES {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if self.buf.len() - self.start < need {
            self.buf.resize(self.start + need, 0);
        }
        Ok(())
    }

    /// After a read into `buf[end..]`: keep what it brought, or say why there was nothing.
    fn took(&mut self, read: std::io::Result<usize>) -> Result<(), ConnectionError> {
        let addr = || self.addr.clone();
        match read {
            Ok(0) => {
                self.closed = true;
                Err(ConnectionError::Closed { addr: addr() })
            }
            Ok(n) => {
                self.end += n;
                Ok(())
            }
            // A blocking socket's read timeout (the kind depends on the OS); nothing was read.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ConnectionError::TimedOut { addr: addr() })
            }
            Err(error) => {
                self.closed = true;
                Err(ConnectionError::Receive {
                    addr: addr(),
                    error,
                })
            }
        }
    }
}

impl<S: AsyncRead + Unpin> FrameReader<S> {
    /// Wait for the next frame. Dropping the future before it finishes loses nothing (bytes are
    /// kept only once a read returned them), so it can race a timer.
    pub async fn recv(&mut self) -> Result<ResponseFrame, ConnectionError> {
        loop {
            if let Some(frame) = self.try_recv()? {
                return Ok(frame);
            }
            self.make_room()?;
            let read = self.stream.read(&mut self.buf[self.end..]).await;
            self.took(read)?;
        }
    }
}

impl<S: Read> FrameReader<S> {
    /// [`FrameReader::recv`] on a blocking socket. With a timeout set
    /// ([`FrameReader::set_timeout`]), a read that waits that long without a whole frame
    /// returns [`ConnectionError::TimedOut`] and the connection stays usable.
    pub fn recv_blocking(&mut self) -> Result<ResponseFrame, ConnectionError> {
        loop {
            if let Some(frame) = self.try_recv()? {
                return Ok(frame);
            }
            self.make_room()?;
            let read = self.stream.read(&mut self.buf[self.end..]);
            self.took(read)?;
        }
    }
}

impl FrameReader {
    /// Shut the connection down both ways: the writer's next flush fails and the node sees the
    /// connection close.
    pub fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl FrameReader<AsyncSocket> {
    /// Shut the connection down both ways: the writer's next flush fails and the node sees the
    /// connection close.
    pub fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.shutdown();
    }
}

impl FrameReader<BlockingSocket> {
    /// Shut the connection down both ways.
    pub fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.tcp().shutdown(std::net::Shutdown::Both);
    }

    /// How long one read may wait (`None`: for ever), as for a plain socket.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ConnectionError> {
        self.stream
            .tcp()
            .set_read_timeout(timeout)
            .map_err(|error| ConnectionError::Receive {
                addr: self.addr.clone(),
                error,
            })
    }
}

impl FrameReader<std::net::TcpStream> {
    /// Shut the connection down both ways: the writer's next flush fails and the node sees the
    /// connection close.
    pub fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// How long one read may wait (`None`: for ever, the default). The timeout applies to each
    /// read of the socket, not to a whole frame.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ConnectionError> {
        self.stream
            .set_read_timeout(timeout)
            .map_err(|error| ConnectionError::Receive {
                addr: self.addr.clone(),
                error,
            })
    }
}
