//! What a [`Conn`] does: encode and write its answers, count its share of the node's buffers,
//! and cut what it reads into request frames; [`Reply`]: where a request's answers go.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

use event_listener::Event;
use shoal_client::protocol::{
    self, EncodedResponse, ErrorCode, RequestFrame, Response, ResponseFrame,
};

use super::super::auth::Principal;
use super::super::tls_stream::ClientStream;
use super::{over_limit, ClientInput, Conn, Hub, Limit, OUT_KEEP, READ_CHUNK, SMALL_PARTIAL};

impl Conn {
    /// Connection `id` from `peer` over `stream`, with nothing read or written yet; its clocks
    /// start at the hub's current sweep.
    pub(super) fn new(id: u64, peer: SocketAddr, hub: Rc<Hub>, stream: ClientStream) -> Rc<Conn> {
        let now = hub.tick.get();
        Rc::new(Conn {
            id,
            peer,
            hub,
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
            hold_counted: Cell::new(false),
            parked: Cell::new(0),
            in_progress: Cell::new(0),
            watches: Cell::new(0),
            partial: RefCell::new(Vec::new()),
            partial_since: Cell::new(now),
            active_at: Cell::new(now),
            resume: Event::new(),
            principal: RefCell::new(None),
        })
    }

    /// The common name (CN) of the client's verified certificate, when the client port
    /// requires one (`--client-cert-auth`): who the client is, for users and roles. `None`
    /// without TLS or without a client certificate.
    pub fn client_cn(&self) -> Option<&str> {
        self.stream.client_cn()
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
        let frame = ResponseFrame {
            id: self.id,
            response,
        };
        self.conn.answer(&frame)
    }

    /// [`Reply::send`] of a response serialized once for many requests.
    pub fn send_encoded(&self, response: &EncodedResponse) -> bool {
        self.answered_now();
        let id = self.id;
        self.conn.answer_with(|out| {
            let start = out.len();
            if let Err(e) = protocol::encode_encoded(id, response, out) {
                out.truncate(start);
                encode_response(&unencodable(id, &e), out);
            }
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

    pub(super) fn answer(self: &Rc<Self>, frame: &ResponseFrame) -> bool {
        self.answer_with(|out| encode_response(frame, out))
    }

    /// Queue the answer `encode` appends to the connection's buffer.
    fn answer_with(self: &Rc<Self>, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.closed.get() {
            return false;
        }
        let mut out = self.out.borrow_mut();
        let before = out.len();
        encode(&mut out);
        let added = out.len() - before;
        drop(out);
        self.hub.out_bytes.set(self.hub.out_bytes.get() + added);
        if !self.dirty.replace(true) {
            self.hub.dirty.borrow_mut().push(self.clone());
        }
        if self.held.get() {
            self.count_hold();
        }
        true
    }

    /// Count the limits that hold this held connection, once per hold: its own share, and the
    /// node's client buffers when they are over too (a read round's answers can take a
    /// connection past its share at once while the node is already over its budget: both
    /// limits hold it). When it was set aside behind its own parked reads (no limit), a limit
    /// is met once their answers pile up.
    pub(super) fn count_hold(&self) {
        if self.hold_counted.get() || self.limit_over().is_none() {
            return;
        }
        let pending = self.pending();
        if pending > self.hub.limits.conn_pending_bytes {
            self.hub.hit(Limit::ConnPending);
        }
        if pending > 0 && self.hub.over_budget() {
            self.hub.hit(Limit::Buffers);
        }
        self.hold_counted.set(true);
    }

    pub(super) fn pending(&self) -> usize {
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
        self.limit_over().is_some()
    }

    /// The limit it is over: its own share of answer bytes, or (holding some) the node's
    /// client buffers.
    pub(super) fn limit_over(&self) -> Option<Limit> {
        let pending = self.pending();
        if pending > self.hub.limits.conn_pending_bytes {
            Some(Limit::ConnPending)
        } else if pending > 0 && self.hub.over_budget() {
            Some(Limit::Buffers)
        } else {
            None
        }
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
    pub(super) fn took_one(&self) {
        let left = self.queued.get() - 1;
        self.queued.set(left);
        if left == 0 {
            self.resume.notify(1);
        }
    }

    /// Write what the socket takes now. Returns true once everything is written.
    pub(super) fn flush_now(&self) -> bool {
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
    pub(super) fn refuse(self: &Rc<Self>, message: String) {
        self.answer(&ResponseFrame {
            id: 0,
            response: over_limit(message),
        });
        self.flush_now();
        self.close();
    }

    pub(super) fn close(&self) {
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
    pub(super) fn read_held(&self) -> bool {
        let hub = &self.hub;
        !self.closed.get()
            && (self.queued.get() > 0
                || self.over_share()
                || hub.inbox_full()
                || (hub.requests_over_budget() && self.partial.borrow().len() >= SMALL_PARTIAL))
    }

    /// Bytes the next read may bring.
    pub(super) fn read_room(&self) -> usize {
        if self.hub.requests_over_budget() {
            SMALL_PARTIAL.saturating_sub(self.partial.borrow().len())
        } else {
            READ_CHUNK
        }
    }

    /// Decode the frames of the `n` bytes just read into the hub's buffer (after the
    /// connection's unfinished frame, if any) and keep the unfinished tail.
    pub(super) fn take_read(self: &Rc<Self>, n: usize) -> Result<(), protocol::FrameError> {
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
            let decoded = protocol::decode::<RequestFrame>(rest).map_err(|e| {
                match (&e, protocol::request_version(rest)) {
                    (protocol::FrameError::Decode(_), Some(v))
                        if v != protocol::PROTOCOL_VERSION =>
                    {
                        protocol::FrameError::Version(v)
                    }
                    _ => e,
                }
            })?;
            match decoded {
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

pub(super) fn encode_response(r: &ResponseFrame, buf: &mut Vec<u8>) {
    let start = buf.len();
    if let Err(e) = protocol::encode(r, buf) {
        buf.truncate(start);
        let _ = protocol::encode(&unencodable(r.id, &e), buf);
    }
}

/// What request `id` is answered when its answer does not encode.
fn unencodable(id: u64, e: &protocol::FrameError) -> ResponseFrame {
    ResponseFrame {
        id,
        response: Response::Error {
            code: ErrorCode::Internal,
            kv: None,
            message: format!("answer could not be encoded: {e}"),
        },
    }
}
