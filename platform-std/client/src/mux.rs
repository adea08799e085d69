//! The [`Client`](crate::Client)'s shared connection: concurrent calls pipelined on one
//! [`Connection`], answers matched to callers by request id.
//!
//! A background task reads frames and hands each to the waiter registered under its id. When
//! the connection breaks, every waiter learns it at once. This module never retries: it only
//! says whether a request certainly did not leave ([`CallError::NotSent`]) or may have
//! ([`CallError::Lost`], [`CallError::TimedOut`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_channel::{Receiver, Sender};

use crate::connection::{Connection, FrameReader, FrameWriter};
use crate::protocol::{RequestFrame, Response};
use crate::tls::{AsyncSocket, TlsConfig};

/// How long a call whose write failed waits for the reason the server gave before closing.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

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
    /// The server refused the connection before reading anything from it (an `Unavailable`
    /// frame of id 0): no request sent on it was acted on.
    refused: bool,
}

/// A live connection shared by concurrent calls.
pub(crate) struct Mux {
    /// The address it was opened to.
    pub(crate) addr: String,
    writer: async_lock::Mutex<FrameWriter<AsyncSocket>>,
    waiters: Arc<Mutex<Waiters>>,
    _reader: async_executor::Task<()>,
}

impl Mux {
    /// Connect to `addr` within `timeout`.
    pub(crate) async fn open(
        addr: &str,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<Mux, String> {
        let Connection { writer, reader } = Connection::open_with(addr, timeout, tls)
            .await
            .map_err(|e| e.to_string())?;
        let waiters = Arc::new(Mutex::new(Waiters {
            map: HashMap::new(),
            closed: None,
            refused: false,
        }));
        let reader = crate::runtime::spawn(read_loop(reader, waiters.clone()));
        Ok(Mux {
            addr: addr.to_string(),
            writer: async_lock::Mutex::new(writer),
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
        let (tx, rx) = async_channel::bounded(capacity.max(1));
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
        writer
            .queue(frame)
            .map_err(|e| CallError::NotSent(e.to_string()))?;
        // One frame per flush: a flush that fails left it incomplete on the wire, and the
        // server ignores an incomplete frame.
        writer
            .flush()
            .await
            .map_err(|e| CallError::NotSent(e.to_string()))
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
            // A server that refused the connection (over its limit) said why and closed it,
            // which can fail this write: the reader's copy of that refusal says more than the
            // broken pipe. It is waited for briefly; the connection is broken either way.
            let refusal = futures_lite::future::or(
                async {
                    let _ = rx.recv().await;
                    let w = self.waiters.lock().expect("waiters lock poisoned");
                    w.closed.clone().filter(|_| w.refused)
                },
                async {
                    async_io::Timer::after(timeout.min(REFUSAL_WAIT)).await;
                    None
                },
            )
            .await;
            self.unsubscribe(id);
            return Err(refusal.map_or(e, CallError::NotSent));
        }
        let answer = futures_lite::future::or(
            async {
                rx.recv().await.map_err(|_| {
                    let w = self.waiters.lock().expect("waiters lock poisoned");
                    let why = w
                        .closed
                        .clone()
                        .unwrap_or_else(|| "connection closed".into());
                    if w.refused {
                        CallError::NotSent(why)
                    } else {
                        CallError::Lost(why)
                    }
                })
            },
            async {
                async_io::Timer::after(timeout).await;
                Err(CallError::TimedOut)
            },
        )
        .await;
        self.unsubscribe(id);
        answer
    }
}

async fn read_loop(mut reader: FrameReader<AsyncSocket>, waiters: Arc<Mutex<Waiters>>) {
    // What the server said about the connection itself (a frame of id 0) before closing it.
    let mut about_connection: Option<(String, bool)> = None;
    let why = loop {
        match reader.recv().await {
            Ok(frame) if frame.id == 0 => {
                about_connection = Some(match frame.response {
                    Response::Unavailable { message } => (
                        format!("the server refused the connection: {message}"),
                        true,
                    ),
                    Response::Error { message, .. } => (
                        format!("the server closed the connection: {message}"),
                        false,
                    ),
                    other => (
                        format!("the server said {other:?} and closed the connection"),
                        false,
                    ),
                });
            }
            Ok(frame) => {
                let tx = waiters
                    .lock()
                    .expect("waiters lock poisoned")
                    .map
                    .get(&frame.id)
                    .cloned();
                if let Some(tx) = tx {
                    // A full watch queue means the consumer stopped reading; dropping the event
                    // would hide a change, so wait for room.
                    let _ = tx.send(frame.response).await;
                }
            }
            Err(e) => break e.to_string(),
        }
    };
    reader.close();
    let mut w = waiters.lock().expect("waiters lock poisoned");
    let (why, refused) = about_connection.unwrap_or((why, false));
    w.closed = Some(why);
    w.refused = refused;
    w.map.clear();
}
