//! One TCP connection to a node's client port: pipelined requests matched to answers by id.
//!
//! A background task reads frames and hands each to the waiter registered under its id. When
//! the connection breaks, every waiter learns it at once. This module never retries: it only
//! says whether a request certainly did not leave ([`CallError::NotSent`]) or may have
//! ([`CallError::Lost`], [`CallError::TimedOut`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use smol::channel::{Receiver, Sender};
use smol::net::TcpStream;

use crate::protocol::{self, RequestFrame, Response, ResponseFrame};

/// Why a call on a connection did not produce an answer.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The request never fully left: the server cannot have acted on it.
    NotSent(String),
    /// The request was sent; the connection broke before its answer arrived.
    Lost(String),
    /// The request was sent; no answer arrived in time.
    TimedOut,
}

struct Waiters {
    map: HashMap<u64, Sender<Response>>,
    closed: Option<String>,
}

/// A live connection.
pub(crate) struct Conn {
    /// The address it was opened to.
    pub(crate) addr: String,
    writer: smol::lock::Mutex<TcpStream>,
    waiters: Arc<Mutex<Waiters>>,
    _reader: smol::Task<()>,
}

impl Conn {
    /// Connect to `addr` within `timeout`.
    pub(crate) async fn open(addr: &str, timeout: Duration) -> Result<Conn, String> {
        let connect = TcpStream::connect(addr.to_string());
        let stream =
            futures_lite::future::or(async { connect.await.map_err(|e| e.to_string()) }, async {
                smol::Timer::after(timeout).await;
                Err(format!("connecting timed out after {timeout:?}"))
            })
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let waiters = Arc::new(Mutex::new(Waiters {
            map: HashMap::new(),
            closed: None,
        }));
        let reader = smol::spawn(read_loop(stream.clone(), waiters.clone(), addr.to_string()));
        Ok(Conn {
            addr: addr.to_string(),
            writer: smol::lock::Mutex::new(stream),
            waiters,
            _reader: reader,
        })
    }

    /// Whether the connection has broken.
    pub(crate) fn is_closed(&self) -> bool {
        self.waiters
            .lock()
            .expect("waiters lock poisoned")
            .closed
            .is_some()
    }

    /// Register for every frame carrying `id` (answers and watch events).
    pub(crate) fn subscribe(&self, id: u64, capacity: usize) -> Result<Receiver<Response>, String> {
        let (tx, rx) = smol::channel::bounded(capacity.max(1));
        let mut w = self.waiters.lock().expect("waiters lock poisoned");
        if let Some(why) = &w.closed {
            return Err(why.clone());
        }
        w.map.insert(id, tx);
        Ok(rx)
    }

    /// Stop routing frames of `id`.
    pub(crate) fn unsubscribe(&self, id: u64) {
        self.waiters
            .lock()
            .expect("waiters lock poisoned")
            .map
            .remove(&id);
    }

    /// Send one frame. `fill` runs under the write lock just before encoding, so values it
    /// assigns (a write's session sequence) follow the order frames go on the wire.
    pub(crate) async fn send(
        &self,
        frame: &mut RequestFrame,
        fill: impl FnOnce(&mut RequestFrame),
    ) -> Result<(), CallError> {
        let mut writer = self.writer.lock().await;
        fill(frame);
        let mut buf = Vec::new();
        protocol::encode(&*frame, &mut buf)
            .map_err(|e| CallError::NotSent(format!("cannot encode the request: {e}")))?;
        // `write_all` succeeding means every byte reached the kernel; failing means the frame is
        // incomplete on the wire, and the server ignores an incomplete frame.
        writer
            .write_all(&buf)
            .await
            .map_err(|e| CallError::NotSent(format!("sending to {}: {e}", self.addr)))?;
        writer
            .flush()
            .await
            .map_err(|e| CallError::Lost(format!("sending to {}: {e}", self.addr)))
    }

    /// Send `frame` and wait up to `timeout` for its first answer.
    pub(crate) async fn call(
        &self,
        frame: &mut RequestFrame,
        fill: impl FnOnce(&mut RequestFrame),
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let id = frame.id;
        let rx = self.subscribe(id, 1).map_err(CallError::NotSent)?;
        if let Err(e) = self.send(frame, fill).await {
            self.unsubscribe(id);
            return Err(e);
        }
        let answer = futures_lite::future::or(
            async {
                rx.recv().await.map_err(|_| {
                    let why = self
                        .waiters
                        .lock()
                        .expect("waiters lock poisoned")
                        .closed
                        .clone()
                        .unwrap_or_else(|| "connection closed".into());
                    CallError::Lost(why)
                })
            },
            async {
                smol::Timer::after(timeout).await;
                Err(CallError::TimedOut)
            },
        )
        .await;
        self.unsubscribe(id);
        answer
    }
}

async fn read_loop(mut stream: TcpStream, waiters: Arc<Mutex<Waiters>>, addr: String) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let why = 'outer: loop {
        loop {
            match protocol::decode::<ResponseFrame>(&buf) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    let tx = waiters
                        .lock()
                        .expect("waiters lock poisoned")
                        .map
                        .get(&frame.id)
                        .cloned();
                    if let Some(tx) = tx {
                        // A full watch queue means the consumer stopped reading; dropping
                        // the event would hide a change, so wait for room.
                        let _ = tx.send(frame.response).await;
                    }
                }
                Ok(None) => break,
                Err(e) => break 'outer format!("bad frame from {addr}: {e}"),
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) => break format!("{addr} closed the connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break format!("reading from {addr}: {e}"),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let mut w = waiters.lock().expect("waiters lock poisoned");
    w.closed = Some(why);
    w.map.clear();
}
