//! What the [`Hub`] does: hand requests to the raft loop, hold back connections over their
//! share, write the answers of a batch, and close connections whose time is up.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use event_listener::Event;
use shoal_client::protocol::Response;

use super::super::tls::Tls;
use super::{
    over_limit, ClientInput, ClientLimits, Conn, Hub, Limit, INBOX_HIGH_WATER, READ_CHUNK,
    SWEEP_EVERY,
};

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
                conn.count_hold();
                if !conn.held.replace(true) {
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
            conn.hold_counted.set(false);
            false
        });
    }

    /// Connections open now, buffer bytes, requests queued, watches, limits and their hits.
    pub fn view(&self) -> super::super::admin::ClientsView {
        let conns = self.conns.borrow();
        super::super::admin::ClientsView {
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

    pub(super) fn push(&self, input: ClientInput) {
        self.inbox.borrow_mut().push_back(input);
    }

    /// Queue an input the raft thread made itself (work finished off the thread).
    pub fn push_internal(&self, input: ClientInput) {
        self.push(input);
    }

    pub(super) fn inbox_full(&self) -> bool {
        self.inbox.borrow().len() >= INBOX_HIGH_WATER
    }

    fn buffered(&self) -> usize {
        self.out_bytes.get() + self.in_bytes.get()
    }

    pub(super) fn over_budget(&self) -> bool {
        self.buffered() > self.limits.buffer_bytes
    }

    /// Unfinished requests take more than half of `buffer_bytes`: no large frame may grow.
    /// They have a share of their own, so that clients which never take their answers (and keep
    /// the node over its budget) cannot keep a large request of another client unread.
    pub(super) fn requests_over_budget(&self) -> bool {
        self.in_bytes.get() > self.limits.buffer_bytes / 2
    }

    /// Client buffers shrank by `n` bytes, of answers (`out`) or unfinished requests.
    pub(super) fn shrank(&self, n: usize, out: bool) {
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
    pub(super) fn sweep(&self) {
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
