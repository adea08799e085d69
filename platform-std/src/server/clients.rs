//! Client connections, served on the raft thread itself.
//!
//! The raft thread runs a single-threaded executor: each connection has a reader task that
//! decodes whole request frames into the shared inbox, and the raft loop takes them from there,
//! with no channel or thread in between. Answers are encoded straight into the connection's
//! output buffer; after each batch the raft loop writes every buffer that gained bytes with one
//! non-blocking `write`. Only when a socket refuses bytes does the connection's writer task take
//! over and wait for it to drain.
//!
//! Memory is bounded whatever a client sends ([`ClientLimits`], one flag each):
//! - every connection reads into the one read buffer of the thread; only the unfinished tail of
//!   a frame is kept per connection, in a buffer that grows as its bytes arrive (an announced
//!   length allocates nothing) up to `max_request_bytes`, and must be finished within
//!   `frame_timeout` (counted while the node reads it). Unfinished frames together may take
//!   half of `buffer_bytes`; past it none grows beyond 4 KiB. An idle connection holds no
//!   buffer at all;
//! - a connection whose unsent answers pass `conn_pending_bytes` (or hold any bytes while all
//!   client buffers of the node pass `buffer_bytes`) is *over its share*: the raft loop sets its
//!   requests aside unanswered ([`Hub::pop`]) and it is not read until its client takes its
//!   answers, so a client that never reads costs one answer beyond the limit, not the answers
//!   to everything it sent. Reads of it already confirmed wait unanswered too, and watches on
//!   it are cut by the raft loop;
//! - at most `max_connections` are open (one more is refused with an `Unavailable` frame of id
//!   0 and closed), and a connection that neither sends nor takes anything for `idle_timeout`
//!   is closed, unless it has watches or requests in progress;
//! - the raft loop takes a connection's next read only once it took every request of the
//!   previous one, and no connection is read while the inbox holds [`INBOX_HIGH_WATER`]
//!   requests.
//!
//! Over TLS (`--cert-file`, [`super::tls_stream::ClientStream`]) the same bounds hold: the
//! decrypted bytes go through the same read buffer and paths, and the TLS handshake counts as
//! a frame: a connection that has not finished it within `frame_timeout` of being accepted is
//! closed. What rustls itself holds per connection is bounded by rustls (one record in, at most
//! one record's worth of answer bytes out).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use event_listener::Event;
use smol::LocalExecutor;

use super::auth::Principal;
use super::tls::{Port, Tls};
use super::tls_stream::ClientStream;
use shoal_client::protocol::{self, ErrorCode, RequestFrame, Response, ResponseFrame};

/// Requests waiting for the raft loop above which no connection is read.
pub const INBOX_HIGH_WATER: usize = 1 << 16;
/// The raft thread's one read buffer: what a single read of a connection may bring.
const READ_CHUNK: usize = 64 << 10;
/// Unfinished request bytes a connection may still hold while the node's unfinished requests
/// are over half of `buffer_bytes` (every ordinary request fits).
const SMALL_PARTIAL: usize = 4 << 10;
/// Output buffer capacity kept between batches; a larger one is released once drained.
const OUT_KEEP: usize = 1 << 20;
/// How long a closing connection's queued answers may take to leave.
const CLOSE_GRACE: Duration = Duration::from_millis(200);
/// How often the timeouts of every connection are looked at (their resolution).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The client port's bounds, each set by the `shoald` flag of the same name with `--client-`
/// in front (see docs/OPERATIONS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Connections open at once; one more is refused.
    pub max_connections: usize,
    /// A connection with nothing in progress that sends nothing and takes no answer for this
    /// long is closed.
    pub idle_timeout: Duration,
    /// A request frame must be complete this long after its first byte arrived.
    pub frame_timeout: Duration,
    /// Largest request frame, header and checksum included.
    pub max_request_bytes: usize,
    /// Largest answer to one read (`BatchGet`, `List`); a larger one is refused.
    pub max_answer_bytes: usize,
    /// Most keys in one `BatchGet` or `Watch`.
    pub max_batch_keys: usize,
    /// Unsent answer bytes of one connection above which its requests wait and its watches
    /// are cut.
    pub conn_pending_bytes: usize,
    /// Bytes of every client buffer of the node (unfinished requests and unsent answers)
    /// above which a connection holding any answers is over its share.
    pub buffer_bytes: usize,
    /// Keys watched on one connection (a watch counts once per key it names, a watch of the
    /// whole tree once).
    pub max_watches_per_conn: usize,
    /// Keys watched on the node, every connection together.
    pub max_watches: usize,
    /// TLS connections over `max_connections` being told why at once (each takes a TLS
    /// handshake and an answer); more are closed without a word.
    pub max_tls_refusals: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(10),
            max_request_bytes: 2 << 20,
            max_answer_bytes: 8 << 20,
            max_batch_keys: 1024,
            conn_pending_bytes: 4 << 20,
            buffer_bytes: 64 << 20,
            max_watches_per_conn: 1024,
            max_watches: 8192,
            max_tls_refusals: 16,
        }
    }
}

/// Which bound a refusal, a closed connection or a cut watch came from; the label of
/// `shoal_client_limit_hits_total` is its flag's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A connection was refused: `--client-max-connections` were open.
    Connections,
    /// A connection was closed after `--client-idle-timeout` without activity.
    IdleTimeout,
    /// A connection was closed: a frame was not finished within `--client-frame-timeout`.
    FrameTimeout,
    /// A connection was closed: a frame announced more than `--client-max-request-mb`.
    RequestBytes,
    /// A read was refused: its answer would pass `--client-max-answer-mb`.
    AnswerBytes,
    /// A `BatchGet` or `Watch` was refused: more keys than `--client-max-batch-keys`.
    BatchKeys,
    /// A connection's requests were set aside: it held more than `--client-conn-pending-mb`
    /// of unsent answers.
    ConnPending,
    /// A connection's requests were set aside: it held answers while the node's client
    /// buffers passed `--client-buffers-mb`.
    Buffers,
    /// A watch was refused: its connection watched `--client-max-watches-per-conn` keys.
    WatchesPerConn,
    /// A watch was refused: the node watched `--client-max-watches` keys.
    Watches,
    /// A TLS connection over `--client-max-connections` was closed without being told why:
    /// `--client-max-tls-refusals` were being told.
    TlsRefusals,
}

impl Limit {
    /// Every limit, in the order of the counters.
    pub const ALL: [Limit; 11] = [
        Limit::Connections,
        Limit::IdleTimeout,
        Limit::FrameTimeout,
        Limit::RequestBytes,
        Limit::AnswerBytes,
        Limit::BatchKeys,
        Limit::ConnPending,
        Limit::Buffers,
        Limit::WatchesPerConn,
        Limit::Watches,
        Limit::TlsRefusals,
    ];

    /// The flag that sets it, without `--`.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Connections => "client-max-connections",
            Limit::IdleTimeout => "client-idle-timeout",
            Limit::FrameTimeout => "client-frame-timeout",
            Limit::RequestBytes => "client-max-request-mb",
            Limit::AnswerBytes => "client-max-answer-mb",
            Limit::BatchKeys => "client-max-batch-keys",
            Limit::ConnPending => "client-conn-pending-mb",
            Limit::Buffers => "client-buffers-mb",
            Limit::WatchesPerConn => "client-max-watches-per-conn",
            Limit::Watches => "client-max-watches",
            Limit::TlsRefusals => "client-max-tls-refusals",
        }
    }

    /// Its value in `limits` (bytes, milliseconds or a count), for `/metrics`.
    pub fn value(self, limits: &ClientLimits) -> u64 {
        let v = match self {
            Limit::Connections => limits.max_connections,
            Limit::IdleTimeout => limits.idle_timeout.as_millis() as usize,
            Limit::FrameTimeout => limits.frame_timeout.as_millis() as usize,
            Limit::RequestBytes => limits.max_request_bytes,
            Limit::AnswerBytes => limits.max_answer_bytes,
            Limit::BatchKeys => limits.max_batch_keys,
            Limit::ConnPending => limits.conn_pending_bytes,
            Limit::Buffers => limits.buffer_bytes,
            Limit::WatchesPerConn => limits.max_watches_per_conn,
            Limit::Watches => limits.max_watches,
            Limit::TlsRefusals => limits.max_tls_refusals,
        };
        v as u64
    }

    fn index(self) -> usize {
        Limit::ALL
            .iter()
            .position(|l| *l == self)
            .expect("every limit is in ALL")
    }
}

/// What the connections hand to the raft loop.
pub enum ClientInput {
    /// A request and the connection it came on.
    Request(Rc<Conn>, RequestFrame),
    /// A connection closed: its watches end.
    Closed(u64),
    /// A password hashed off the raft thread, ready to be proposed for a user.
    Hashed(super::raftloop::HashedPassword),
}

/// State shared by the raft loop and every connection task (one thread).
pub struct Hub {
    limits: ClientLimits,
    inbox: RefCell<VecDeque<ClientInput>>,
    /// Notified when the inbox drops below [`INBOX_HIGH_WATER`], the node's client buffers
    /// drop to `buffer_bytes` or its unfinished requests to half of it.
    resume: Event,
    /// Connections whose output gained bytes since the last [`Hub::write_out`].
    dirty: RefCell<Vec<Rc<Conn>>>,
    next_conn: Cell<u64>,
    /// Every open connection, for the timeouts.
    conns: RefCell<HashMap<u64, Rc<Conn>>>,
    /// The thread's one read buffer.
    scratch: RefCell<Vec<u8>>,
    /// Encoded answers not yet written, over every connection.
    out_bytes: Cell<usize>,
    /// Unfinished request frames held, over every connection.
    in_bytes: Cell<usize>,
    /// Connections with requests set aside.
    held: RefCell<Vec<Rc<Conn>>>,
    /// Some buffer shrank since `held` was looked at.
    freed: Cell<bool>,
    /// Keys watched on the node.
    watches: Cell<usize>,
    /// Sweeps so far (the clock of the timeouts).
    tick: Cell<u64>,
    hits: [Cell<u64>; Limit::ALL.len()],
    /// Watches cut because their connection was over its share.
    watches_cut: Cell<u64>,
    stopping: Cell<bool>,
    /// TLS connections over `max_connections` being told so.
    refusing: Cell<usize>,
    /// The client port's TLS, when it serves it (`--cert-file`).
    tls: RefCell<Option<Arc<Tls>>>,
}

/// One client connection.
pub struct Conn {
    /// The connection's id (unique for the process's life).
    pub id: u64,
    /// The client's address, as the server logs who asked for an operator override.
    pub peer: SocketAddr,
    hub: Rc<Hub>,
    stream: ClientStream,
    /// Its TLS handshake is not finished yet (the frame timeout runs from its accept).
    handshaking: Cell<bool>,
    /// Encoded answers; `out[sent..]` is not written yet.
    out: RefCell<Vec<u8>>,
    sent: Cell<usize>,
    /// The socket refused bytes: the writer task owns the rest until it drains.
    blocked: Cell<bool>,
    /// In the hub's dirty list.
    dirty: Cell<bool>,
    /// Closed (by the client, an error, a limit, or shutdown): answers are dropped.
    closed: Cell<bool>,
    /// Wakes the writer task (bytes blocked, or the connection closed).
    writer: Event,
    /// Notified when `out` is fully written.
    drained: Event,
    /// Requests of this connection in the inbox or set aside.
    queued: Cell<usize>,
    /// Requests set aside while the connection is over its share, oldest first.
    deferred: RefCell<VecDeque<RequestFrame>>,
    /// In the hub's held list.
    held: Cell<bool>,
    /// Confirmed reads of this connection waiting for it to take its answers (the raft loop
    /// keeps them); its later requests wait behind them, so answers keep their order.
    parked: Cell<usize>,
    /// Requests taken by the raft loop and not answered yet.
    in_progress: Cell<usize>,
    /// Keys watched on this connection.
    watches: Cell<usize>,
    /// The unfinished frame at the end of what was read.
    partial: RefCell<Vec<u8>>,
    /// The sweep at which `partial` was started.
    partial_since: Cell<u64>,
    /// The sweep at which the client last sent bytes or took answer bytes.
    active_at: Cell<u64>,
    /// Notified when `queued` drops to zero or `out` drains (the reader may read again).
    resume: Event,
    /// The user this connection speaks for (a login, or a verified client certificate).
    principal: RefCell<Option<Principal>>,
}

impl Conn {
    /// The common name (CN) of the client's verified certificate, when the client port
    /// requires one (`--client-cert-auth`): who the client is, for users and roles. `None`
    /// without TLS or without a client certificate.
    pub fn client_cn(&self) -> Option<&str> {
        self.stream.client_cn()
    }
}

impl Hub {
    /// An empty hub enforcing `limits`.
    pub fn new(limits: ClientLimits) -> Rc<Hub> {
        Rc::new(Hub {
            limits,
            inbox: RefCell::new(VecDeque::new()),
            resume: Event::new(),
            dirty: RefCell::new(Vec::new()),
            next_conn: Cell::new(1),
            conns: RefCell::new(HashMap::new()),
            scratch: RefCell::new(vec![0; READ_CHUNK]),
            out_bytes: Cell::new(0),
            in_bytes: Cell::new(0),
            held: RefCell::new(Vec::new()),
            freed: Cell::new(false),
            watches: Cell::new(0),
            tick: Cell::new(0),
            hits: Default::default(),
            watches_cut: Cell::new(0),
            stopping: Cell::new(false),
            refusing: Cell::new(0),
            tls: RefCell::new(None),
        })
    }

    /// Serve new connections over TLS as `tls` says (set before the accept loop starts).
    pub fn set_tls(&self, tls: Option<Arc<Tls>>) {
        *self.tls.borrow_mut() = tls;
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    /// Count one hit of `limit`.
    pub fn hit(&self, limit: Limit) {
        let c = &self.hits[limit.index()];
        c.set(c.get() + 1);
    }

    /// Take the oldest request that may be answered now. A request of a connection that is
    /// over its share (or has older requests set aside) is set aside on the connection until
    /// its client takes its answers: answers are not computed for a client that does not read
    /// them.
    pub fn pop(&self) -> Option<ClientInput> {
        if self.freed.replace(false) {
            self.release_held();
        }
        loop {
            let mut inbox = self.inbox.borrow_mut();
            let input = inbox.pop_front();
            let was_full = input.is_some() && inbox.len() + 1 == INBOX_HIGH_WATER;
            drop(inbox);
            if was_full {
                self.resume.notify(usize::MAX);
            }
            let Some(ClientInput::Request(conn, frame)) = input else {
                return input;
            };
            if !conn.deferred.borrow().is_empty() || conn.must_wait() {
                conn.deferred.borrow_mut().push_back(frame);
                if !conn.held.replace(true) {
                    self.hit(if conn.pending() > self.limits.conn_pending_bytes {
                        Limit::ConnPending
                    } else {
                        Limit::Buffers
                    });
                    self.held.borrow_mut().push(conn);
                }
                continue;
            }
            conn.took_one();
            conn.in_progress.set(conn.in_progress.get() + 1);
            return Some(ClientInput::Request(conn, frame));
        }
    }

    /// Put the set-aside requests of connections that are no longer over their share back in
    /// front of the inbox (they are older than any request of theirs still in it).
    fn release_held(&self) {
        let mut held = self.held.borrow_mut();
        if held.is_empty() {
            return;
        }
        let mut inbox = self.inbox.borrow_mut();
        // A closed connection is never over its share: its requests are handled as before it
        // closed (writes are applied, answers dropped).
        held.retain(|conn| {
            if conn.must_wait() {
                return true;
            }
            for frame in conn.deferred.take().into_iter().rev() {
                inbox.push_front(ClientInput::Request(conn.clone(), frame));
            }
            conn.held.set(false);
            false
        });
    }

    /// Connections open now, buffer bytes, requests queued, watches, limits and their hits.
    pub fn view(&self) -> super::admin::ClientsView {
        let conns = self.conns.borrow();
        super::admin::ClientsView {
            connections: conns.len(),
            answer_bytes_pending: self.out_bytes.get(),
            request_bytes_buffered: self.in_bytes.get(),
            requests_queued: self.inbox.borrow().len(),
            connections_held: conns.values().filter(|c| c.over_share()).count(),
            requests_set_aside: self
                .held
                .borrow()
                .iter()
                .map(|c| c.deferred.borrow().len())
                .sum(),
            watches: self.watches.get(),
            watches_cut: self.watches_cut.get(),
            limits: Limit::ALL.map(|l| (l.flag(), l.value(&self.limits))),
            hits: Limit::ALL.map(|l| (l.flag(), self.hits[l.index()].get())),
        }
    }

    /// Stop accepting connections (shutdown).
    pub fn stop_accepting(&self) {
        self.stopping.set(true);
    }

    /// Whether a watch of `keys` more keys on `conn` fits both watch limits; the refusal to
    /// answer with if not.
    pub fn watch_room(&self, conn: &Conn, keys: usize) -> Result<(), Response> {
        let l = &self.limits;
        if conn.watches.get() + keys > l.max_watches_per_conn {
            self.hit(Limit::WatchesPerConn);
            return Err(over_limit(format!(
                "this connection watches {} keys; {} more would pass the limit of {} per \
                 connection (shoald --{}); open another connection",
                conn.watches.get(),
                keys,
                l.max_watches_per_conn,
                Limit::WatchesPerConn.flag()
            )));
        }
        if self.watches.get() + keys > l.max_watches {
            self.hit(Limit::Watches);
            return Err(Response::Unavailable {
                message: format!(
                    "this node watches {} keys for its clients; {} more would pass its limit of \
                     {} (shoald --{}); watch on another node or later",
                    self.watches.get(),
                    keys,
                    l.max_watches,
                    Limit::Watches.flag()
                ),
            });
        }
        Ok(())
    }

    fn push(&self, input: ClientInput) {
        self.inbox.borrow_mut().push_back(input);
    }

    /// Queue an input the raft thread made itself (work finished off the thread).
    pub fn push_internal(&self, input: ClientInput) {
        self.push(input);
    }

    fn inbox_full(&self) -> bool {
        self.inbox.borrow().len() >= INBOX_HIGH_WATER
    }

    fn buffered(&self) -> usize {
        self.out_bytes.get() + self.in_bytes.get()
    }

    fn over_budget(&self) -> bool {
        self.buffered() > self.limits.buffer_bytes
    }

    /// Unfinished requests take more than half of `buffer_bytes`: no large frame may grow.
    /// They have a share of their own, so that clients which never take their answers (and keep
    /// the node over its budget) cannot keep a large request of another client unread.
    fn requests_over_budget(&self) -> bool {
        self.in_bytes.get() > self.limits.buffer_bytes / 2
    }

    /// Client buffers shrank by `n` bytes, of answers (`out`) or unfinished requests.
    fn shrank(&self, n: usize, out: bool) {
        if n == 0 {
            return;
        }
        let was_over = (self.over_budget(), self.requests_over_budget());
        let cell = if out { &self.out_bytes } else { &self.in_bytes };
        cell.set(cell.get() - n);
        self.freed.set(true);
        if (was_over.0 && !self.over_budget()) || (was_over.1 && !self.requests_over_budget()) {
            self.resume.notify(usize::MAX);
        }
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

    /// Close the connections whose time is up: an unfinished frame past `frame_timeout` (counted
    /// while the node reads the connection), or
    /// nothing sent or taken for `idle_timeout` by a connection with nothing in progress (or
    /// with answers its client does not take).
    fn sweep(&self) {
        let now = self.tick.get() + 1;
        self.tick.set(now);
        let ticks = |d: Duration| d.as_millis().div_ceil(SWEEP_EVERY.as_millis()).max(1) as u64;
        let (frame_ticks, idle_ticks) = (
            ticks(self.limits.frame_timeout),
            ticks(self.limits.idle_timeout),
        );
        let expired: Vec<(Rc<Conn>, Limit)> = self
            .conns
            .borrow()
            .values()
            .filter(|c| !c.closed.get())
            .filter_map(|c| {
                if c.handshaking.get() {
                    // Its handshake is its first frame, read whatever the inbox holds.
                    let late = now - c.partial_since.get() >= frame_ticks;
                    return late.then(|| (c.clone(), Limit::FrameTimeout));
                }
                if !c.partial.borrow().is_empty() {
                    if c.read_held() {
                        // The node is not reading it: its client cannot finish the frame now.
                        c.partial_since.set(now);
                    } else {
                        let late = now - c.partial_since.get() >= frame_ticks;
                        return late.then(|| (c.clone(), Limit::FrameTimeout));
                    }
                }
                let waiting_on_client = c.pending() > 0;
                let nothing_in_progress =
                    c.watches.get() == 0 && c.in_progress.get() == 0 && c.queued.get() == 0;
                let idle = now - c.active_at.get() >= idle_ticks;
                (idle && (waiting_on_client || nothing_in_progress))
                    .then(|| (c.clone(), Limit::IdleTimeout))
            })
            .collect();
        for (conn, limit) in expired {
            self.hit(limit);
            if conn.handshaking.get() {
                // No TLS session to tell it in: close.
                log::debug!(
                    "client connection {}: no TLS handshake within {:?} (shoald --{}); \
                     closing it",
                    conn.id,
                    self.limits.frame_timeout,
                    limit.flag()
                );
                conn.close();
            } else if limit == Limit::FrameTimeout {
                conn.refuse(format!(
                    "the request frame was not finished within {:?} of its first byte \
                     (shoald --{}); closing the connection",
                    self.limits.frame_timeout,
                    limit.flag()
                ));
            } else {
                log::debug!("client connection {}: idle; closing it", conn.id);
                conn.close();
            }
        }
    }
}

/// An answer saying the request passed one of the server's limits.
pub fn over_limit(message: String) -> Response {
    Response::Error {
        code: ErrorCode::LimitExceeded,
        kv: None,
        message,
    }
}

/// Where a request's answers go.
pub struct Reply {
    /// The connection.
    pub conn: Rc<Conn>,
    /// The request's id, echoed in each answer.
    pub id: u64,
    /// An answer was queued (the request is no longer in progress).
    answered: Cell<bool>,
}

impl Reply {
    /// The reply to request `id` taken from `conn`.
    pub fn new(conn: Rc<Conn>, id: u64) -> Reply {
        Reply {
            conn,
            id,
            answered: Cell::new(false),
        }
    }

    /// Queue an answer; false if the connection is closed (the answer is dropped).
    pub fn send(&self, response: Response) -> bool {
        self.answered_now();
        self.conn.answer(&ResponseFrame {
            id: self.id,
            response,
        })
    }

    fn answered_now(&self) {
        if !self.answered.replace(true) {
            let c = &self.conn.in_progress;
            c.set(c.get() - 1);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.answered_now();
    }
}

impl Conn {
    /// The user this connection speaks for, if any.
    pub fn principal(&self) -> Option<Principal> {
        self.principal.borrow().clone()
    }

    /// From now on the connection speaks for `who` (a login, or [`Principal::from_verified_cn`]
    /// once TLS verified a client certificate).
    pub fn set_principal(&self, who: Option<Principal>) {
        *self.principal.borrow_mut() = who;
    }

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

    /// The hub it belongs to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Its unsent answers passed its own limit, or it holds some while the node's client
    /// buffers are over theirs: no more answers are computed for it until its client takes
    /// them, and its watches are cut.
    pub fn over_share(&self) -> bool {
        let pending = self.pending();
        pending > self.hub.limits.conn_pending_bytes || (pending > 0 && self.hub.over_budget())
    }

    /// Over its share, or reads of it are parked: its next request, and a confirmed read of
    /// it, wait.
    pub fn must_wait(&self) -> bool {
        self.over_share() || self.parked.get() > 0
    }

    /// A confirmed read of this connection is kept unanswered, or (`false`) was answered.
    pub fn parked(&self, more: bool) {
        let n = if more {
            self.parked.get() + 1
        } else {
            self.parked.get() - 1
        };
        self.parked.set(n);
        if n == 0 {
            // Its requests set aside may go on.
            self.hub.freed.set(true);
        }
    }

    /// A watch on this connection was cut: it was over its share.
    pub fn watch_cut(&self) {
        let c = &self.hub.watches_cut;
        c.set(c.get() + 1);
    }

    /// `keys` more keys are watched on this connection (negative: fewer).
    pub fn watching(&self, keys: isize) {
        let add = |c: &Cell<usize>| c.set(c.get().wrapping_add_signed(keys));
        add(&self.watches);
        add(&self.hub.watches);
    }

    /// The raft loop took one of its requests (or dropped it).
    fn took_one(&self) {
        let left = self.queued.get() - 1;
        self.queued.set(left);
        if left == 0 {
            self.resume.notify(1);
        }
    }

    /// Write what the socket takes now. Returns true once everything is written.
    fn flush_now(&self) -> bool {
        loop {
            let result = {
                let out = self.out.borrow();
                let sent = self.sent.get();
                if sent == out.len() {
                    // Over TLS the session may still hold encrypted bytes.
                    match self.stream.finish() {
                        Ok(()) => break,
                        Err(e) => Err(e),
                    }
                } else {
                    self.stream.write(&out[sent..])
                }
            };
            match result {
                Ok(0) => {
                    self.close();
                    return false;
                }
                Ok(n) => {
                    self.sent.set(self.sent.get() + n);
                    self.active_at.set(self.hub.tick.get());
                    self.hub.shrank(n, true);
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

    /// Answer `message` (id 0: about the connection, not a request), try to send it, close.
    fn refuse(self: &Rc<Self>, message: String) {
        self.answer(&ResponseFrame {
            id: 0,
            response: over_limit(message),
        });
        self.flush_now();
        self.close();
    }

    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.hub.shrank(self.pending(), true);
        self.out.replace(Vec::new());
        self.sent.set(0);
        let partial = self.partial.take().len();
        self.hub.shrank(partial, false);
        self.hub.freed.set(true);
        self.stream.shutdown();
        self.writer.notify(1);
        self.drained.notify(usize::MAX);
        self.resume.notify(1);
    }

    /// Not read now: the raft loop has not taken its previous requests, it is over its share,
    /// the inbox is full, or it holds an unfinished frame that may not grow while the node's
    /// unfinished requests are over their half of `buffer_bytes`.
    fn read_held(&self) -> bool {
        let hub = &self.hub;
        !self.closed.get()
            && (self.queued.get() > 0
                || self.over_share()
                || hub.inbox_full()
                || (hub.requests_over_budget() && self.partial.borrow().len() >= SMALL_PARTIAL))
    }

    /// Bytes the next read may bring.
    fn read_room(&self) -> usize {
        if self.hub.requests_over_budget() {
            SMALL_PARTIAL.saturating_sub(self.partial.borrow().len())
        } else {
            READ_CHUNK
        }
    }

    /// Decode the frames of the `n` bytes just read into the hub's buffer (after the
    /// connection's unfinished frame, if any) and keep the unfinished tail.
    fn take_read(self: &Rc<Self>, n: usize) -> Result<(), protocol::FrameError> {
        let hub = &self.hub;
        let scratch = hub.scratch.borrow();
        let data = &scratch[..n];
        let mut partial = self.partial.borrow_mut();
        let before = partial.len();
        if partial.is_empty() {
            let used = self.decode_frames(data)?;
            if used < n {
                partial.extend_from_slice(&data[used..]);
                self.partial_since.set(hub.tick.get());
            }
        } else {
            partial.extend_from_slice(data);
            let used = self.decode_frames(&partial)?;
            if used == partial.len() {
                // An idle connection keeps no buffer.
                *partial = Vec::new();
            } else if used > 0 {
                partial.drain(..used);
                self.partial_since.set(hub.tick.get());
            }
        }
        let after = partial.len();
        if after >= before {
            hub.in_bytes.set(hub.in_bytes.get() + (after - before));
        } else {
            hub.shrank(before - after, false);
        }
        Ok(())
    }

    /// Queue every whole frame at the front of `data`; the bytes they took.
    fn decode_frames(self: &Rc<Self>, data: &[u8]) -> Result<usize, protocol::FrameError> {
        let max = self.hub.limits.max_request_bytes;
        let mut pos = 0;
        loop {
            let rest = &data[pos..];
            if let Some(total) = protocol::frame_len(rest) {
                if total > max {
                    return Err(protocol::FrameError::TooLarge(total));
                }
            }
            match protocol::decode::<RequestFrame>(rest)? {
                Some((frame, used)) => {
                    pos += used;
                    self.queued.set(self.queued.get() + 1);
                    self.hub.push(ClientInput::Request(self.clone(), frame));
                }
                None => return Ok(pos),
            }
        }
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
        let conn = Rc::new(Conn {
            id,
            peer,
            hub: hub.clone(),
            handshaking: Cell::new(stream.is_tls()),
            stream,
            out: RefCell::new(Vec::new()),
            sent: Cell::new(0),
            blocked: Cell::new(false),
            dirty: Cell::new(false),
            closed: Cell::new(false),
            writer: Event::new(),
            drained: Event::new(),
            queued: Cell::new(0),
            deferred: RefCell::new(VecDeque::new()),
            held: Cell::new(false),
            parked: Cell::new(0),
            in_progress: Cell::new(0),
            watches: Cell::new(0),
            partial: RefCell::new(Vec::new()),
            partial_since: Cell::new(hub.tick.get()),
            active_at: Cell::new(hub.tick.get()),
            resume: Event::new(),
            principal: RefCell::new(None),
        });
        hub.conns.borrow_mut().insert(id, conn.clone());
        ex.spawn(writer(conn.clone())).detach();
        ex.spawn(async move {
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
        })
        .detach();
    }
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
