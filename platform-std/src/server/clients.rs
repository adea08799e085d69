//! Client connections, served on the raft thread itself.
//!
//! The raft thread runs a single-threaded executor: each connection has a reader task that
//! decodes whole request frames into the shared inbox, and the raft loop takes them from there,
//! with no channel or thread in between. Answers are encoded straight into the connection's
//! output buffer; after each batch the raft loop writes every buffer that gained bytes with one
//! non-blocking `write`. Only when a socket refuses bytes does the connection's writer task take
//! over and wait for it to drain.
//!
//! Memory is bounded: a connection is read again only once the raft loop took every request
//! of its previous read (at most one read buffer of requests per connection waits), not while
//! its unsent answers pass [`OUT_HIGH_WATER`] (until its client takes them), and no connection
//! is read while the inbox holds [`INBOX_HIGH_WATER`] requests.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use async_io::{Async, Timer};
use event_listener::Event;
use smol::LocalExecutor;

use shoal_client::protocol::{self, ErrorCode, RequestFrame, Response, ResponseFrame};

/// Unsent answer bytes of one connection above which its requests are not read.
pub const OUT_HIGH_WATER: usize = 4 << 20;
/// Requests waiting for the raft loop above which no connection is read.
pub const INBOX_HIGH_WATER: usize = 1 << 16;
/// Read buffer of a connection (grows for a larger frame, shrinks back after it).
const READ_BUFFER: usize = 64 << 10;
/// Output buffer capacity kept between batches; a larger one is released once drained.
const OUT_KEEP: usize = 1 << 20;
/// How long a closing connection's queued answers may take to leave.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// What the connections hand to the raft loop.
pub enum ClientInput {
    /// A request and the connection it came on.
    Request(Rc<Conn>, RequestFrame),
    /// A connection closed: its watches end.
    Closed(u64),
}

/// State shared by the raft loop and every connection task (one thread).
pub struct Hub {
    inbox: RefCell<VecDeque<ClientInput>>,
    /// Notified when the inbox drops below [`INBOX_HIGH_WATER`].
    resume: Event,
    /// Connections whose output gained bytes since the last [`Hub::write_out`].
    dirty: RefCell<Vec<Rc<Conn>>>,
    next_conn: Cell<u64>,
    open: Cell<usize>,
    /// Encoded answers not yet written, over every connection.
    out_bytes: Cell<usize>,
    stopping: Cell<bool>,
}

/// One client connection.
pub struct Conn {
    /// The connection's id (unique for the process's life).
    pub id: u64,
    hub: Rc<Hub>,
    stream: Async<TcpStream>,
    /// Encoded answers; `out[sent..]` is not written yet.
    out: RefCell<Vec<u8>>,
    sent: Cell<usize>,
    /// The socket refused bytes: the writer task owns the rest until it drains.
    blocked: Cell<bool>,
    /// In the hub's dirty list.
    dirty: Cell<bool>,
    /// Closed (by the client, an error, or shutdown): answers are dropped.
    closed: Cell<bool>,
    /// Wakes the writer task (bytes blocked, or the connection closed).
    writer: Event,
    /// Notified when `out` is fully written.
    drained: Event,
    /// Requests of this connection in the inbox.
    queued: Cell<usize>,
    /// Notified when `queued` drops to zero or `out` drains (the reader may read again).
    resume: Event,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Rc<Hub> {
        Rc::new(Hub {
            inbox: RefCell::new(VecDeque::new()),
            resume: Event::new(),
            dirty: RefCell::new(Vec::new()),
            next_conn: Cell::new(1),
            open: Cell::new(0),
            out_bytes: Cell::new(0),
            stopping: Cell::new(false),
        })
    }

    /// Take the oldest queued input.
    pub fn pop(&self) -> Option<ClientInput> {
        let mut inbox = self.inbox.borrow_mut();
        let input = inbox.pop_front();
        let was_full = input.is_some() && inbox.len() + 1 == INBOX_HIGH_WATER;
        drop(inbox);
        if was_full {
            self.resume.notify(usize::MAX);
        }
        if let Some(ClientInput::Request(conn, _)) = &input {
            let left = conn.queued.get() - 1;
            conn.queued.set(left);
            if left == 0 {
                conn.resume.notify(1);
            }
        }
        input
    }

    /// Connections open now, answer bytes not yet written, requests queued.
    pub fn view(&self) -> super::admin::ClientsView {
        super::admin::ClientsView {
            connections: self.open.get(),
            answer_bytes_pending: self.out_bytes.get(),
            requests_queued: self.inbox.borrow().len(),
        }
    }

    /// Stop accepting connections (shutdown).
    pub fn stop_accepting(&self) {
        self.stopping.set(true);
    }

    fn push(&self, input: ClientInput) {
        self.inbox.borrow_mut().push_back(input);
    }

    fn inbox_full(&self) -> bool {
        self.inbox.borrow().len() >= INBOX_HIGH_WATER
    }

    /// Write every output buffer that gained bytes, without blocking: one `write` per
    /// connection; what the socket refuses is left to the connection's writer task.
    pub fn write_out(&self) {
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        for conn in &dirty {
            conn.dirty.set(false);
            if !conn.blocked.get() {
                conn.flush_now();
            }
        }
        // Keep the list's capacity for the next batch.
        let mut list = self.dirty.borrow_mut();
        if list.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            *list = dirty;
        }
    }
}

/// Where a request's answers go.
pub struct Reply {
    /// The connection.
    pub conn: Rc<Conn>,
    /// The request's id, echoed in each answer.
    pub id: u64,
}

impl Reply {
    /// Queue an answer; false if the connection is closed (the answer is dropped).
    pub fn send(&self, response: Response) -> bool {
        self.conn.answer(&ResponseFrame {
            id: self.id,
            response,
        })
    }
}

impl Conn {
    fn answer(self: &Rc<Self>, frame: &ResponseFrame) -> bool {
        if self.closed.get() {
            return false;
        }
        let mut out = self.out.borrow_mut();
        let before = out.len();
        encode_response(frame, &mut out);
        let added = out.len() - before;
        drop(out);
        self.hub.out_bytes.set(self.hub.out_bytes.get() + added);
        if !self.dirty.replace(true) {
            self.hub.dirty.borrow_mut().push(self.clone());
        }
        true
    }

    fn pending(&self) -> usize {
        self.out.borrow().len() - self.sent.get()
    }

    /// Write what the socket takes now. Returns true once everything is written.
    fn flush_now(&self) -> bool {
        loop {
            let result = {
                let out = self.out.borrow();
                let sent = self.sent.get();
                if sent == out.len() {
                    break;
                }
                self.stream.get_ref().write(&out[sent..])
            };
            match result {
                Ok(0) => {
                    self.close();
                    return false;
                }
                Ok(n) => {
                    self.sent.set(self.sent.get() + n);
                    self.hub.out_bytes.set(self.hub.out_bytes.get() - n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.blocked.set(true);
                    self.writer.notify(1);
                    return false;
                }
                Err(e) => {
                    log::debug!("client connection {}: write failed: {e}", self.id);
                    self.close();
                    return false;
                }
            }
        }
        let mut out = self.out.borrow_mut();
        out.clear();
        if out.capacity() > OUT_KEEP {
            out.shrink_to(OUT_KEEP);
        }
        self.sent.set(0);
        self.blocked.set(false);
        drop(out);
        self.drained.notify(usize::MAX);
        self.resume.notify(1);
        true
    }

    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.hub
            .out_bytes
            .set(self.hub.out_bytes.get() - self.pending());
        self.out.borrow_mut().clear();
        self.sent.set(0);
        let _ = self.stream.get_ref().shutdown(Shutdown::Both);
        self.writer.notify(1);
        self.drained.notify(usize::MAX);
        self.resume.notify(1);
    }
}

/// Accept client connections on `listener` and serve each on `ex` (the raft thread's executor).
/// A failed accept (out of descriptors) pauses the loop as `backoff` says.
pub async fn accept_loop(
    hub: Rc<Hub>,
    ex: Rc<LocalExecutor<'static>>,
    listener: Async<TcpListener>,
    backoff: Rc<super::accept::AcceptBackoff>,
) {
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
        if let Err(e) = stream.get_ref().set_nodelay(true) {
            log::debug!("client connection from {peer}: set_nodelay: {e}");
        }
        let id = hub.next_conn.get();
        hub.next_conn.set(id + 1);
        hub.open.set(hub.open.get() + 1);
        let conn = Rc::new(Conn {
            id,
            hub: hub.clone(),
            stream,
            out: RefCell::new(Vec::new()),
            sent: Cell::new(0),
            blocked: Cell::new(false),
            dirty: Cell::new(false),
            closed: Cell::new(false),
            writer: Event::new(),
            drained: Event::new(),
            queued: Cell::new(0),
            resume: Event::new(),
        });
        ex.spawn(writer(conn.clone())).detach();
        ex.spawn(async move {
            if let Err(e) = reader(&conn).await {
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
            conn.hub.open.set(conn.hub.open.get() - 1);
        })
        .detach();
    }
}

/// Read request frames into the hub until the client closes or sends something undecodable.
async fn reader(conn: &Rc<Conn>) -> io::Result<()> {
    let hub = &conn.hub;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut filled = 0;
    loop {
        // Back-pressure: the raft loop must have taken this connection's previous requests,
        // the client its answers, and the inbox must have room.
        let held = |c: &Conn| {
            !c.closed.get()
                && (c.queued.get() > 0 || c.pending() > OUT_HIGH_WATER || hub.inbox_full())
        };
        while held(conn) {
            let mine = conn.resume.listen();
            let all = hub.resume.listen();
            if held(conn) {
                futures_lite::future::or(mine, all).await;
            }
        }
        if conn.closed.get() {
            return Ok(());
        }
        let n = conn
            .stream
            .read_with(|s| (&*s).read(&mut buf[filled..]))
            .await?;
        if n == 0 {
            return if filled == 0 {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a frame",
                ))
            };
        }
        filled += n;
        let mut pos = 0;
        loop {
            match protocol::decode::<RequestFrame>(&buf[pos..filled]) {
                Ok(Some((frame, used))) => {
                    pos += used;
                    conn.queued.set(conn.queued.get() + 1);
                    hub.push(ClientInput::Request(conn.clone(), frame));
                }
                Ok(None) => break,
                Err(e) => {
                    // The stream can no longer be trusted to be in step: answer and close.
                    conn.answer(&ResponseFrame {
                        id: 0,
                        response: Response::Error {
                            code: ErrorCode::BadRequest,
                            kv: None,
                            message: format!("request frame refused: {e}; closing the connection"),
                        },
                    });
                    hub.write_out();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
                }
            }
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        // Make room for the whole of a frame larger than the buffer (decode has checked it
        // against the limit); go back to the usual size once it is gone.
        let need = protocol::frame_len(&buf[..filled])
            .unwrap_or(0)
            .max(READ_BUFFER);
        if buf.len() != need && (need > buf.len() || filled <= READ_BUFFER) {
            buf.resize(need, 0);
            buf.shrink_to_fit();
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

fn encode_response(r: &ResponseFrame, buf: &mut Vec<u8>) {
    let start = buf.len();
    if let Err(e) = protocol::encode(r, buf) {
        buf.truncate(start);
        let fallback = ResponseFrame {
            id: r.id,
            response: Response::Error {
                code: ErrorCode::Internal,
                kv: None,
                message: format!("answer could not be encoded: {e}"),
            },
        };
        let _ = protocol::encode(&fallback, buf);
    }
}
