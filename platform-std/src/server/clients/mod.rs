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
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;
use shoal_client::protocol::{ErrorCode, RequestFrame, Response};

use super::auth::Principal;
use super::tls::Tls;
use super::tls_stream::ClientStream;

mod conn;
mod hub;
mod limits;
mod tasks;

pub use conn::Reply;
pub use limits::{ClientLimits, Limit};
pub use tasks::accept_loop;

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
    /// The limit that held it was counted (a connection may first wait only behind its own
    /// parked reads, which is no limit, and pass one while it waits).
    hold_counted: Cell<bool>,
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

/// An answer saying the request passed one of the server's limits.
pub fn over_limit(message: String) -> Response {
    Response::Error {
        code: ErrorCode::LimitExceeded,
        kv: None,
        message,
    }
}
