//! A small blocking client of the client protocol, for tests that need to see single frames
//! (a redirect, a refused frame, a burst of pipelined requests), and helpers that send a request
//! to the nodes given until one answers it. Applications and `shoalctl` use the real client
//! library; this one adds nothing between the test and the wire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shoal_client::protocol::{
    self, Credentials, HealthInfo, ReadMode, Request, RequestFrame, Response, ResponseFrame,
    StatusInfo, WriteOp,
};
use shoal_kv::WriteResult;

use crate::wait::{wait_some, WAIT};

/// How long a connection waits for an answer before the call fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection to a node's client port.
pub struct Conn {
    stream: TcpStream,
    next_id: u64,
    buf: Vec<u8>,
}

/// Append the frame of request `id` to `out`.
pub fn encode_request(id: u64, group: u32, request: Request, out: &mut Vec<u8>) {
    let frame = RequestFrame::new(id, group, request);
    protocol::encode(&frame, out).expect("a test's request fits in a frame");
}

impl Conn {
    /// Connect to `addr` (one second at most).
    pub fn open(addr: &str) -> std::io::Result<Conn> {
        Conn::open_within(addr, Duration::from_secs(1))
    }

    /// Connect to `addr`, waiting `within` at most (long enough for the kernel to send its
    /// SYN again when the node's accept queue is full).
    pub fn open_within(addr: &str, within: Duration) -> std::io::Result<Conn> {
        let addr = addr
            .parse()
            .map_err(|e| std::io::Error::other(format!("address {addr}: {e}")))?;
        let stream = TcpStream::connect_timeout(&addr, within)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            next_id: 1,
            buf: Vec::new(),
        })
    }

    /// Send one request and wait for its answer (answers to other ids are skipped).
    pub fn call(&mut self, group: u32, request: Request) -> std::io::Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        encode_request(id, group, request, &mut out);
        self.stream.write_all(&out)?;
        loop {
            let f = self.next_frame()?;
            if f.id == id {
                return Ok(f.response);
            }
        }
    }

    /// Give up on an answer after `timeout` instead of the default 30 s (a call then fails
    /// with a timeout and the request's outcome is unknown).
    pub fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))
    }

    /// Log in on this connection (clusters with auth enabled): the node's answer, a
    /// `Response::Token` or an `AuthFailed` error.
    pub fn login(&mut self, user: &str, password: &str) -> std::io::Result<Response> {
        let creds = Credentials::Password {
            user: user.into(),
            password: password.into(),
        };
        self.call(0, Request::Authenticate(creds))
    }

    /// Present a token on this connection: the node's answer.
    pub fn login_token(&mut self, token: &[u8]) -> std::io::Result<Response> {
        self.call(0, Request::Authenticate(Credentials::Token(token.to_vec())))
    }

    /// Write `value` to `n` keys `{prefix}{i}` in one go (pipelined: every request sent
    /// before the first answer is read), in session `client_id` from sequence `first_seq`:
    /// a long log quickly, for tests that need one.
    ///
    /// # Panics
    /// Unless every write is applied and succeeds.
    pub fn pipelined_puts(
        &mut self,
        group: u32,
        (client_id, first_seq): (u64, u64),
        prefix: &str,
        value: &[u8],
        n: u64,
    ) {
        let mut out = Vec::new();
        let first_id = self.next_id;
        for i in 0..n {
            let request = put_request(client_id, first_seq + i, &format!("{prefix}{i}"), value);
            encode_request(self.next_id, group, request, &mut out);
            self.next_id += 1;
        }
        self.stream.write_all(&out).expect("send the writes");
        let mut done = 0;
        while done < n {
            let f = self.next_frame().expect("the answers to the writes");
            if f.id < first_id {
                continue;
            }
            match f.response {
                Response::Written {
                    result: WriteResult::Done,
                    ..
                } => done += 1,
                other => panic!("pipelined write {} answered {other:?}", f.id - first_id),
            }
        }
    }

    /// Send bytes as they are (frames built by the test, damaged ones included).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The socket, for a test that writes from another thread.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Wait up to `within` for the node to close the connection; panics if it sends a frame
    /// or keeps the connection open longer.
    pub fn assert_closed_within(&mut self, within: Duration) {
        self.set_timeout(within).expect("a read timeout");
        let end = self.next_frame().map(|f| f.id).map_err(|e| e.kind());
        assert!(
            matches!(
                end,
                Err(std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset)
            ),
            "the node did not close the connection within {within:?}: {end:?}"
        );
    }

    /// The next answer frame; `UnexpectedEof` when the node closed the connection.
    pub fn next_frame(&mut self) -> std::io::Result<ResponseFrame> {
        next_frame(&mut self.stream, &mut self.buf)
    }
}

/// The next answer frame read from `stream`, keeping bytes past it in `buf` for the next call;
/// `UnexpectedEof` when the node closed the connection.
pub fn next_frame(stream: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<ResponseFrame> {
    loop {
        match protocol::decode::<ResponseFrame>(buf) {
            Ok(Some((f, used))) => {
                buf.drain(..used);
                return Ok(f);
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let mut chunk = [0u8; 65536];
        let n = match stream.read(&mut chunk) {
            // A signal to the test process is not the node's doing: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The first bytes of a frame of `total` bytes (its length field and version): what a client
/// sends before the body, or all that a hostile one sends.
pub fn frame_prefix(total: usize) -> Vec<u8> {
    let len = u32::try_from(total - 8).expect("a frame length fits its 32-bit field");
    // The version byte is whatever a real frame carries.
    let mut real = Vec::new();
    encode_request(0, 0, Request::Status, &mut real);
    let mut prefix = len.to_le_bytes().to_vec();
    prefix.push(real[4]);
    prefix
}

/// `n` connections to `addr` that send nothing (each with the read timeout of [`Conn`]).
/// Opened one after another, faster than a busy node accepts them: each may wait for the
/// kernel to send its SYN again.
///
/// # Panics
/// When one cannot be opened.
pub fn open_idle(addr: &str, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|i| {
            Conn::open_within(addr, Duration::from_secs(15))
                .unwrap_or_else(|e| panic!("connection {i} of {n} to {addr}: {e}"))
        })
        .collect()
}

/// One request on a fresh connection; `None` if the node could not be reached or hung up.
pub fn call(addr: &str, group: u32, request: Request) -> Option<Response> {
    Conn::open(addr).ok()?.call(group, request).ok()
}

/// Send `request` to each of `addrs` in turn, again and again, until one answers it
/// definitely (not `NotLeader`, not `Unavailable`, not "group not hosted here" — a node that
/// is no member of the group cannot serve it while its leader moves between the others —
/// and reachable); that answer.
///
/// # Panics
/// When none does within [`WAIT`]; `what` names the request.
pub fn call_any(addrs: &[impl AsRef<str>], group: u32, request: Request, what: &str) -> Response {
    let mut last = String::from("no answer");
    let answer = crate::wait::poll(WAIT, || {
        addrs.iter().find_map(|a| {
            let a = a.as_ref();
            match call(a, group, request.clone()) {
                None => {
                    last = format!("{a} unreachable");
                    None
                }
                Some(
                    r @ (Response::NotLeader { .. }
                    | Response::Unavailable { .. }
                    | Response::Error {
                        code: protocol::ErrorCode::UnknownGroup,
                        ..
                    }),
                ) => {
                    last = format!("{a}: {r:?}");
                    None
                }
                Some(r) => Some(r),
            }
        })
    });
    answer.unwrap_or_else(|| panic!("{what}: no node answered within {WAIT:?} (last: {last})"))
}

/// Write `op` in session `(client_id, seq)` through any of `addrs`; the index it was applied
/// at.
///
/// # Panics
/// Unless it is applied and succeeds (`Done`, or a batch whose items all succeeded).
pub fn write(addrs: &[impl AsRef<str>], group: u32, client_id: u64, seq: u64, op: WriteOp) -> u64 {
    let what = format!("write seq {seq} of client {client_id}");
    let request = Request::Write { client_id, seq, op };
    match call_any(addrs, group, request, &what) {
        Response::Written {
            index,
            result: WriteResult::Done,
        } => index,
        Response::Written {
            index,
            result: WriteResult::Batch(items),
        } if items.iter().all(|r| r.is_ok()) => index,
        other => panic!("{what}: {other:?}"),
    }
}

/// The request that puts `key = value` in session `(client_id, seq)`, for a test that wants
/// to see the answer whatever it is (a refusal included).
pub fn put_request(client_id: u64, seq: u64, key: &str, value: &[u8]) -> Request {
    Request::Write {
        client_id,
        seq,
        op: WriteOp::Put {
            key: key.into(),
            value: value.to_vec(),
        },
    }
}

/// Put `key = value` in session `(client_id, seq)` through any of `addrs`.
pub fn put(
    addrs: &[impl AsRef<str>],
    group: u32,
    client_id: u64,
    seq: u64,
    key: &str,
    value: &str,
) -> u64 {
    let op = WriteOp::Put {
        key: key.into(),
        value: value.into(),
    };
    write(addrs, group, client_id, seq, op)
}

/// Read `key` with `mode` from the first of `addrs` that serves the read; its value, `None`
/// when the key does not exist.
pub fn get(addrs: &[impl AsRef<str>], group: u32, key: &str, mode: ReadMode) -> Option<Vec<u8>> {
    let mut last = String::from("no answer");
    let what = format!("a read of {key}");
    let node = crate::wait::poll(WAIT, || {
        addrs.iter().find_map(|a| {
            let request = Request::Get {
                key: key.into(),
                mode,
            };
            match call(a.as_ref(), group, request) {
                Some(Response::Node { node, .. }) => Some(node),
                other => {
                    last = format!("{}: {other:?}", a.as_ref());
                    None
                }
            }
        })
    });
    node.unwrap_or_else(|| panic!("{what}: no node served it within {WAIT:?} (last: {last})"))
        .map(|n| n.value)
}

/// The node's view of `group`, if it answers.
pub fn status(addr: &str, group: u32) -> Option<StatusInfo> {
    match call(addr, group, Request::Status)? {
        Response::Status(s) => Some(s),
        _ => None,
    }
}

/// The node's health (`Request::Health`), if it answers.
pub fn health(addr: &str) -> Option<HealthInfo> {
    match call(addr, 0, Request::Health)? {
        Response::Health(h) => Some(h),
        _ => None,
    }
}

/// Wait until one of `nodes` (id, client address) reports itself leader of `group`; its id.
///
/// # Panics
/// After [`WAIT`], with what each node last said.
pub fn wait_leader(nodes: &[(u64, &str)], group: u32) -> u64 {
    let mut seen = vec![String::new(); nodes.len()];
    let leader = crate::wait::poll(WAIT, || {
        nodes.iter().zip(&mut seen).find_map(|((id, addr), seen)| {
            let s = status(addr, group);
            *seen = match &s {
                Some(s) => format!(
                    "node {id}: {} in term {}, leader {}",
                    s.role, s.term, s.leader
                ),
                None => format!("node {id}: no status"),
            };
            s.filter(|s| s.role == "leader").map(|_| *id)
        })
    });
    leader.unwrap_or_else(|| {
        panic!(
            "no leader of group {group} within {WAIT:?}; last seen: {}",
            seen.join("; ")
        )
    })
}

/// Wait until node `id` (client address `addr`) reports `role` in `group`.
pub fn wait_role(id: u64, addr: &str, group: u32, role: &str) {
    let mut last = None;
    let what = format!("node {id} to be {role} of group {group}");
    crate::wait::poll(WAIT, || {
        last = status(addr, group);
        last.as_ref().filter(|s| s.role == role).map(|_| ())
    })
    .unwrap_or_else(|| panic!("gave up waiting for {what} after {WAIT:?}; last: {last:?}"));
}

/// `GET path` on an admin port: (status code, body); `None` if it cannot be reached.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((code, body))
}

/// The value of the unlabelled metric `name` on an admin port's `/metrics`.
pub fn gauge(admin: &str, name: &str) -> usize {
    let (_, body) = wait_some("the admin port's /metrics", WAIT, || {
        http_get(admin, "/metrics")
    });
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics: {body}"))
}

/// The value of the metric series `series` (its name and labels as `/metrics` writes them,
/// e.g. `shoal_limit_hits_total{limit="client-max-connections"}`) on an admin port.
pub fn metric(admin: &str, series: &str) -> u64 {
    let (_, body) = wait_some("the admin port's /metrics", WAIT, || {
        http_get(admin, "/metrics")
    });
    series_value(&body, series).unwrap_or_else(|| panic!("no {series} in /metrics: {body}"))
}

/// The value of `series` in the text of a `/metrics` answer.
pub fn series_value(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The series of `shoal_limit_hits_total` that counts the hits of the limit set by `--FLAG`.
pub fn limit_series(flag: &str) -> String {
    format!("shoal_limit_hits_total{{limit=\"{flag}\"}}")
}

/// How often the client-port or raft-port limit set by `--FLAG` was hit, on an admin port.
pub fn limit_hits(admin: &str, flag: &str) -> u64 {
    metric(admin, &limit_series(flag))
}
