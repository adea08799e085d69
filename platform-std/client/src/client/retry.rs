//! How a call reaches the group: a connection to the node at hand (logged in with the last
//! token or the configured password), redirects to the leader, rotation through the endpoints,
//! and retries with backoff until the call's deadline. A write keeps the session sequence it
//! was first sent with, so a retry the node already applied is answered, not applied again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_core::{ClusterId, GroupId};
use shoal_kv::{KvError, WriteResult};

use super::{unexpected, Client, Kind, OpenError};
use crate::mux::{CallError, Mux};
use crate::protocol::{
    Credentials, ErrorCode, Request, RequestFrame, Response, SecretBytes, ANY_CLUSTER,
};
use crate::ClientError;

impl Client {
    /// Open a connection to `addr` and log in on it: with the last token if there is one (any
    /// node takes it), else (or when it is refused) with the configured user's password.
    pub(crate) async fn open_mux(&self, addr: &str) -> Result<Mux, OpenError> {
        let cfg = &self.inner.config;
        let mux = Mux::open(addr, cfg.connect_timeout, cfg.tls.as_ref())
            .await
            .map_err(OpenError::Retry)?;
        let token = self
            .inner
            .token
            .lock()
            .expect("token lock poisoned")
            .clone();
        if let Some(token) = token {
            if self.login(&mux, Credentials::Token(token)).await? {
                return Ok(mux);
            }
        }
        let Some((user, password)) = &cfg.user else {
            return Ok(mux);
        };
        let creds = Credentials::Password {
            user: user.clone(),
            password: password.clone(),
        };
        if self.login(&mux, creds).await? {
            Ok(mux)
        } else {
            Err(OpenError::Auth(ClientError::AuthFailed {
                message: "the password login was refused".into(),
            }))
        }
    }

    /// One login on `mux`: true when it succeeded, false when a token was refused (log in
    /// with the password instead).
    async fn login(&self, mux: &Mux, creds: Credentials) -> Result<bool, OpenError> {
        let with_token = matches!(creds, Credentials::Token(_));
        let mut frame = RequestFrame::new(self.next_request_id(), 0, Request::Authenticate(creds))
            .for_cluster(self.cluster());
        let timeout = self.inner.config.attempt_timeout;
        match mux.call(&mut frame, |_| {}, timeout).await {
            Ok(Response::Token {
                token: SecretBytes(token),
                ..
            }) => {
                // An empty token: auth is off on the cluster, nothing to keep.
                if !token.is_empty() {
                    *self.inner.token.lock().expect("token lock poisoned") = Some(token);
                }
                Ok(true)
            }
            Ok(Response::Error {
                code: ErrorCode::AuthFailed,
                ..
            }) if with_token => {
                *self.inner.token.lock().expect("token lock poisoned") = None;
                Ok(false)
            }
            Ok(Response::Error { code, kv, message }) => {
                Err(OpenError::Auth(ClientError::from_answer(code, kv, message)))
            }
            Ok(Response::Unavailable { message }) => Err(OpenError::Retry(format!(
                "{} could not log in now: {message}",
                mux.addr
            ))),
            Ok(other) => Err(OpenError::Auth(unexpected("Authenticate", &other))),
            Err(e) => Err(OpenError::Retry(format!("login on {}: {e:?}", mux.addr))),
        }
    }

    /// The current connection, opening one to the current target if needed.
    async fn connection(&self) -> Result<Arc<Mux>, OpenError> {
        let mut slot = self.inner.conn.lock().await;
        let target = self.target_addr();
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() && c.addr == target {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let conn = Arc::new(self.open_mux(&target).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    pub(crate) fn target_addr(&self) -> String {
        self.inner
            .target
            .lock()
            .expect("target lock poisoned")
            .addr
            .clone()
    }

    /// The cluster requests are meant for ([`ANY_CLUSTER`] while unknown).
    pub(crate) fn cluster(&self) -> ClusterId {
        self.inner.cluster.load(Ordering::Relaxed)
    }

    /// Keep `cluster`, named by a node in a redirect, as the cluster of every later request
    /// (unless one is known already): the leader it names must belong to the same cluster.
    pub(crate) fn learn_cluster(&self, cluster: ClusterId) {
        if cluster != ANY_CLUSTER {
            let _ = self.inner.cluster.compare_exchange(
                ANY_CLUSTER,
                cluster,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Point at `addr` (a leader we were told about).
    pub(crate) fn redirect(&self, addr: &str) {
        self.inner.target.lock().expect("target lock poisoned").addr = addr.to_string();
    }

    /// Point at the next endpoint of the list (unless another call already moved on from
    /// `failed`).
    pub(crate) fn rotate(&self, failed: &str) {
        let mut t = self.inner.target.lock().expect("target lock poisoned");
        if t.addr != failed {
            return;
        }
        let eps = &self.inner.config.endpoints;
        t.rotation = (t.rotation + 1) % eps.len();
        t.addr = eps[t.rotation].clone();
    }

    /// Send `request` to the leader (or the node at hand for node-local requests), retrying
    /// through redirects, lost connections, `Unavailable` and timeouts until the deadline.
    pub(super) async fn execute(
        &self,
        group: GroupId,
        mut request: Request,
        kind: Kind,
    ) -> Result<Response, ClientError> {
        let mut call = Call::new(Instant::now() + self.inner.config.timeout);
        loop {
            let now = Instant::now();
            if now >= call.deadline {
                return Err(call.gave_up(kind));
            }
            let remaining = call.deadline - now;
            call.attempts += 1;
            let conn = match self.connection().await {
                Ok(c) => c,
                Err(OpenError::Auth(e)) => return Err(e),
                Err(OpenError::Retry(e)) => {
                    call.last = e;
                    let failed = self.target_addr();
                    self.rotate(&failed);
                    call.back_off().await;
                    continue;
                }
            };
            let attempt_timeout = self.inner.config.attempt_timeout.min(remaining);
            match self
                .send(
                    &conn,
                    group,
                    &mut request,
                    call.seq_assigned,
                    attempt_timeout,
                )
                .await
            {
                Err(e) => {
                    self.not_answered(&conn, e, attempt_timeout, &mut call)
                        .await
                }
                Ok(response) => {
                    call.seq_assigned = true;
                    if let Some(outcome) = self.answered(&conn, response, &mut call).await {
                        return outcome;
                    }
                }
            }
        }
    }

    /// One attempt of `request` on `conn`. A write takes its session sequence when it first
    /// leaves, in wire order, and `request` keeps it for every retry.
    async fn send(
        &self,
        conn: &Mux,
        group: GroupId,
        request: &mut Request,
        seq_assigned: bool,
        attempt_timeout: Duration,
    ) -> Result<Response, CallError> {
        let mut frame = RequestFrame::new(self.next_request_id(), group, request.clone())
            .for_cluster(self.cluster());
        let next_seq = &self.inner.next_seq;
        let fill = |f: &mut RequestFrame| {
            if let Request::Write { seq, .. } = &mut f.request {
                if !seq_assigned {
                    *seq = next_seq.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let result = conn.call(&mut frame, fill, attempt_timeout).await;
        if let Request::Write { seq, .. } = &frame.request {
            // Keep the sequence the frame carried (if it left) for every retry.
            if let Request::Write { seq: s, .. } = request {
                *s = *seq;
            }
        }
        result
    }

    /// After an attempt without an answer: leave the connection and look elsewhere.
    async fn not_answered(
        &self,
        conn: &Arc<Mux>,
        e: CallError,
        attempt_timeout: Duration,
        call: &mut Call,
    ) {
        let wait = match e {
            CallError::NotSent(e) => {
                call.last = e;
                true
            }
            CallError::Lost(e) => {
                call.sent();
                call.last = format!("answer lost: {e}");
                true
            }
            CallError::TimedOut => {
                call.sent();
                call.last = format!("{} did not answer within {attempt_timeout:?}", conn.addr);
                // The node may be stuck; the connection may be fine for others, but a retry
                // should look elsewhere.
                false
            }
        };
        self.drop_conn(conn).await;
        self.rotate(&conn.addr);
        if wait {
            call.back_off().await;
        }
    }

    /// After an answer: the call's outcome, or `None` to try again (a redirect, a node that is
    /// unavailable, a login that ended).
    async fn answered(
        &self,
        conn: &Arc<Mux>,
        response: Response,
        call: &mut Call,
    ) -> Option<Result<Response, ClientError>> {
        match response {
            Response::NotLeader {
                leader,
                leader_addr: Some(addr),
                cluster,
            } if addr != conn.addr => {
                self.learn_cluster(cluster);
                call.last = format!(
                    "{} is not the leader; redirected to node {leader} at {addr}",
                    conn.addr
                );
                self.redirect(&addr);
                // A known leader: try it at once (bounded by the deadline).
                sleep_until_deadline(Duration::from_millis(1), call.deadline).await;
            }
            Response::NotLeader { cluster, .. } => {
                self.learn_cluster(cluster);
                call.last = format!("{} is not the leader and does not know who is", conn.addr);
                self.rotate(&conn.addr);
                call.back_off().await;
            }
            Response::Unavailable { message } => {
                call.last = format!("{} is unavailable: {message}", conn.addr);
                call.back_off().await;
                // A node that stays unavailable may be cut off: after three answers in a row,
                // ask another.
                call.unavailable_in_row += 1;
                if call.unavailable_in_row >= 3 {
                    call.unavailable_in_row = 0;
                    self.rotate(&conn.addr);
                }
            }
            // A login that ended (token expired, password changed elsewhere, auth turned on)
            // is renewed once per call; the refused request changed nothing, so it is sent
            // again.
            Response::Error {
                code: ErrorCode::AuthFailed,
                ..
            } if self.inner.config.user.is_some() && !call.logged_in_again => {
                call.logged_in_again = true;
                *self.inner.token.lock().expect("token lock poisoned") = None;
                self.drop_conn(conn).await;
            }
            // A stale endpoint or member record led to a node of another cluster: nothing
            // happened there; ask the next endpoint.
            Response::Error {
                code: ErrorCode::WrongCluster,
                message,
                ..
            } => {
                call.last = format!("{} refused the request: {message}", conn.addr);
                self.rotate(&conn.addr);
                call.back_off().await;
            }
            Response::Error { code, kv, message } => {
                return Some(Err(match (code, kv) {
                    (ErrorCode::Kv, Some(KvError::StaleSequence)) if call.maybe_sent => {
                        call.indeterminate(format!("retry answered StaleSequence ({message})"))
                    }
                    (code, kv) => ClientError::from_answer(code, kv, message),
                }));
            }
            Response::Written {
                result: WriteResult::Failed(KvError::StaleSequence),
                ..
            } if call.maybe_sent => {
                return Some(Err(
                    call.indeterminate("retry answered StaleSequence".into())
                ));
            }
            other => return Some(Ok(other)),
        }
        None
    }

    async fn drop_conn(&self, conn: &Arc<Mux>) {
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// One call's progress through its attempts.
struct Call {
    deadline: Instant,
    attempts: u32,
    /// Whether an attempt may have reached a node (a write's outcome is then unknown).
    maybe_sent: bool,
    /// Why the last attempt failed, for the error the call ends with.
    last: String,
    backoff: Duration,
    /// A write's sequence is assigned at its first send and kept for every retry.
    seq_assigned: bool,
    unavailable_in_row: u32,
    logged_in_again: bool,
}

impl Call {
    fn new(deadline: Instant) -> Call {
        Call {
            deadline,
            attempts: 0,
            maybe_sent: false,
            last: String::from("no attempt made (timeout too short)"),
            backoff: Duration::from_millis(20),
            seq_assigned: false,
            unavailable_in_row: 0,
            logged_in_again: false,
        }
    }

    /// The request left: its sequence is fixed, and it may have been applied.
    fn sent(&mut self) {
        self.seq_assigned = true;
        self.maybe_sent = true;
    }

    /// Wait before the next attempt (at most until the deadline), waiting longer next time.
    async fn back_off(&mut self) {
        sleep_until_deadline(self.backoff, self.deadline).await;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(500));
    }

    /// The error at the deadline: a write that may have been applied is indeterminate.
    fn gave_up(&mut self, kind: Kind) -> ClientError {
        let (attempts, last) = (self.attempts, std::mem::take(&mut self.last));
        if self.maybe_sent && kind == Kind::Write {
            ClientError::Indeterminate { attempts, last }
        } else {
            ClientError::Unavailable { attempts, last }
        }
    }

    /// A retry's answer says the write was applied before, by an attempt whose answer was
    /// lost: what it did is unknown.
    fn indeterminate(&self, why: String) -> ClientError {
        ClientError::Indeterminate {
            attempts: self.attempts,
            last: format!("{why}; {}", self.last),
        }
    }
}

async fn sleep_until_deadline(d: Duration, deadline: Instant) {
    let wake = (Instant::now() + d).min(deadline);
    async_io::Timer::at(wake).await;
}
