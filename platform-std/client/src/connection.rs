//! One pipelined connection to a node's client port: frames out, frames in, nothing else.
//!
//! This is the layer [`Client`](crate::Client) is built on, and the one to use when a
//! [`Client`](crate::Client) does too much per request: it never retries, never follows the
//! leader, never assigns sessions and spawns no task, so one thread can keep thousands of
//! requests in flight (`shoal-bench` does). The caller picks request ids and matches answers to
//! them; answers may come back in any order.
//!
//! Requests are encoded into the [`FrameWriter`]'s buffer by [`FrameWriter::queue`] and leave
//! together on the next [`FrameWriter::flush`]. [`FrameReader::recv`] waits for the next answer;
//! [`FrameReader::try_recv`] returns one that an earlier read already brought in, without
//! waiting. A caller that handles every answer one read brought and then flushes the requests
//! they prompted pays one `read` and one `write` for the whole batch.
//!
//! The two halves are independent ([`Connection`] is just the pair): one task may read while
//! another writes.
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

use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use async_net::TcpStream;

use crate::protocol::{self, FrameError, RequestFrame, ResponseFrame};

/// Bytes a [`FrameReader`] asks the socket for at least, per read; a larger frame grows its
/// buffer to the frame's size.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Why a connection could not be opened or used. Every variant but `Encode` names the node's
/// address; after any of them but `Encode`, the connection is unusable.
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
            ConnectionError::Closed { addr } => write!(f, "{addr} closed the connection"),
            ConnectionError::Encode(e) => write!(f, "cannot encode the request: {e}"),
            ConnectionError::BadFrame { addr, error } => write!(f, "bad frame from {addr}: {error}"),
        }
    }
}

impl std::error::Error for ConnectionError {}

/// An open connection: its write half and its read half.
#[derive(Debug)]
pub struct Connection {
    /// Where requests are queued and flushed.
    pub writer: FrameWriter,
    /// Where answers are read.
    pub reader: FrameReader,
}

impl Connection {
    /// Connect to `addr` (`host:port` of a client port) within `timeout`, with `TCP_NODELAY`
    /// set so a flush leaves at once.
    pub async fn open(addr: &str, timeout: Duration) -> Result<Connection, ConnectionError> {
        let connect = TcpStream::connect(addr.to_string());
        let stream = futures_lite::future::or(
            async { connect.await.map_err(|e| e.to_string()) },
            async {
                async_io::Timer::after(timeout).await;
                Err(format!("connecting timed out after {timeout:?}"))
            },
        )
        .await
        .map_err(|reason| ConnectionError::Connect {
            addr: addr.to_string(),
            reason,
        })?;
        // Without it, a lone request waits for the previous one's acknowledgement (Nagle).
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            writer: FrameWriter {
                stream: stream.clone(),
                addr: addr.to_string(),
                out: Vec::new(),
            },
            reader: FrameReader {
                stream,
                addr: addr.to_string(),
                buf: vec![0; READ_CHUNK_BYTES],
                start: 0,
                end: 0,
                closed: false,
            },
        })
    }
}

/// The write half: requests are encoded into a buffer and sent together by
/// [`FrameWriter::flush`].
#[derive(Debug)]
pub struct FrameWriter {
    stream: TcpStream,
    addr: String,
    out: Vec<u8>,
}

impl FrameWriter {
    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Encode `frame` behind the requests already queued. Nothing is sent until
    /// [`FrameWriter::flush`]. On an error nothing was queued.
    pub fn queue(&mut self, frame: &RequestFrame) -> Result<(), ConnectionError> {
        protocol::encode(frame, &mut self.out).map_err(ConnectionError::Encode)
    }

    /// Bytes queued and not yet flushed.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

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
        self.out.clear();
        result.map_err(|error| ConnectionError::Send {
            addr: self.addr.clone(),
            error,
        })
    }
}

/// The read half: answers (and watch events), one frame at a time.
#[derive(Debug)]
pub struct FrameReader {
    stream: TcpStream,
    addr: String,
    /// Bytes read: `buf[start..end]` are not yet decoded. Kept initialised, so a read never
    /// zeroes memory first.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    closed: bool,
}

impl FrameReader {
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
                self.closed = true;
                Err(ConnectionError::BadFrame {
                    addr: self.addr.clone(),
                    error,
                })
            }
        }
    }

    /// Wait for the next frame. Dropping the future before it finishes loses nothing (bytes are
    /// kept only once a read returned them), so it can race a timer.
    pub async fn recv(&mut self) -> Result<ResponseFrame, ConnectionError> {
        loop {
            if let Some(frame) = self.try_recv()? {
                return Ok(frame);
            }
            if self.closed {
                return Err(ConnectionError::Closed {
                    addr: self.addr.clone(),
                });
            }
            self.make_room();
            match self.stream.read(&mut self.buf[self.end..]).await {
                Ok(0) => {
                    self.closed = true;
                    return Err(ConnectionError::Closed {
                        addr: self.addr.clone(),
                    });
                }
                Ok(n) => self.end += n,
                Err(error) => {
                    self.closed = true;
                    return Err(ConnectionError::Receive {
                        addr: self.addr.clone(),
                        error,
                    });
                }
            }
        }
    }

    /// Shut the connection down both ways: the writer's next flush fails and the node sees the
    /// connection close.
    pub fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Make the free space after `end` at least a read chunk, and large enough for the whole
    /// frame at `start` once its length is known.
    fn make_room(&mut self) {
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
    }
}
