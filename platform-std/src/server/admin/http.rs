//! A small HTTP/1.1 server for the admin port, bounded in everything a stranger controls.
//!
//! The admin port answers a handful of GET paths with small bodies, so it needs no general
//! HTTP stack: a request head is parsed by `httparse` from a buffer of at most
//! [`MAX_HEAD_BYTES`], a request that announces a body is refused before any of it is read, every
//! connection gets one answer and is closed, and a connection that has not finished within
//! [`AdminLimits::request_timeout`] is dropped. At most [`AdminLimits::max_connections`] are
//! served at once; one more is answered 503 and closed (over TLS, inside a TLS session: as
//! many such answers are given at once as connections are served, more are closed without
//! one). Nothing here allocates in proportion to
//! what a client *announces*, only to what it sends, and never beyond the head limit.
//!
//! The connection handler is generic over the stream so a TLS stream can take the place of TCP.

use std::cell::Cell;
use std::io;
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::LocalExecutor;

use crate::server::tls::{Port, Tls};

/// Largest request head (request line and headers) read from a client.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 32;
/// How long `accept` waits after running out of descriptors or memory before it tries again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The admin port's limits (flags `--admin-max-connections`, `--admin-request-timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Time a connection has to send its request head and take the answer.
    pub request_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 32,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a request was refused (a label of `shoal_admin_refused_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// More than `max_connections` at once.
    TooManyConnections,
    /// The head did not arrive, or the answer was not taken, in time.
    Timeout,
    /// The head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] headers.
    HeadTooLarge,
    /// The head does not parse as HTTP/1.x.
    Malformed,
    /// A method other than GET or HEAD.
    Method,
    /// The request announces a body.
    Body,
}

impl Refusal {
    /// Every reason, in the order of [`AdminCounters::refused`].
    pub const ALL: [Refusal; 6] = [
        Refusal::TooManyConnections,
        Refusal::Timeout,
        Refusal::HeadTooLarge,
        Refusal::Malformed,
        Refusal::Method,
        Refusal::Body,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::Timeout => "timeout",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::Malformed => "malformed",
            Refusal::Method => "method",
            Refusal::Body => "body",
        }
    }
}

/// Counters of the admin port, shown on `/metrics`.
#[derive(Debug, Default)]
pub struct AdminCounters {
    /// Connections open now.
    pub connections: AtomicUsize,
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Refusals, indexed like [`Refusal::ALL`].
    pub refused: [AtomicU64; 6],
}

impl AdminCounters {
    fn refuse(&self, why: Refusal) {
        let i = Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .expect("every refusal is listed");
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One answer: status, content type, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Answer {
    /// A JSON error body `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "error": message }).to_string(),
        }
    }
}

/// What the server asks of the application: the answer to `GET path` (query string removed).
pub trait Routes {
    /// Answer a GET (or HEAD, whose body is then not sent) of `path`.
    fn get(&self, path: &str) -> Answer;
}

/// Accept and serve connections on `listener` until the process exits. Runs its own executor:
/// call it on a thread of its own.
pub fn serve<R: Routes + 'static>(
    listener: TcpListener,
    routes: R,
    limits: AdminLimits,
    counters: Arc<AdminCounters>,
    tls: Option<Arc<Tls>>,
) -> io::Result<()> {
    let listener = Async::new(listener)?;
    let ex = Rc::new(LocalExecutor::new());
    let routes = Rc::new(routes);
    let live = Rc::new(Cell::new(0usize));
    let refusing = Rc::new(Cell::new(0usize));
    // `async_io::block_on`: this thread drives the I/O reactor itself while it waits. With
    // `futures_lite`'s, its sockets' readiness came only from a thread that drove it, the raft
    // thread among them: with that one stuck on a frozen disk, `/health` went unanswered for
    // seconds (seen in the network fault test).
    async_io::block_on(ex.run(async {
        loop {
            let mut stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors or memory: wait a little instead of spinning.
                    log::debug!("admin accept failed: {e}");
                    Timer::after(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let busy = live.get() >= limits.max_connections;
            if busy {
                counters.refuse(Refusal::TooManyConnections);
                if tls.as_ref().is_none_or(|t| t.admin_port().is_none()) {
                    // Best effort, never waiting (the socket is non-blocking): the socket
                    // buffer takes a short answer at once.
                    let _ = io::Write::write(&mut stream.get_ref(), &encode(&busy_answer(), false));
                    continue;
                }
                // Over TLS the 503 needs a handshake: as many are told at once as are served,
                // more are closed without a word.
                if refusing.get() >= limits.max_connections {
                    continue;
                }
            }
            let count = if busy { &refusing } else { &live };
            count.set(count.get() + 1);
            counters.connections.store(live.get(), Ordering::Relaxed);
            let count = count.clone();
            let (routes, live, counters) = (routes.clone(), live.clone(), counters.clone());
            let tls = tls.clone();
            ex.spawn(async move {
                let timeout = async {
                    Timer::after(limits.request_timeout).await;
                    Err(Refusal::Timeout)
                };
                let serve = async {
                    if busy {
                        answer_conn(&mut stream, &Busy, tls.as_ref(), &counters).await
                    } else {
                        answer_conn(&mut stream, &*routes, tls.as_ref(), &counters).await
                    }
                };
                let outcome = futures_lite::future::or(serve, timeout).await;
                if let Err(why) = outcome {
                    counters.refuse(why);
                }
                count.set(count.get() - 1);
                counters.connections.store(live.get(), Ordering::Relaxed);
            })
            .detach();
        }
    }))
}

/// The answer to a connection over `max_connections`.
fn busy_answer() -> Answer {
    Answer::error(503, "too many admin connections; retry shortly")
}

/// What a connection over `max_connections` is answered, whatever it asks.
struct Busy;

impl Routes for Busy {
    fn get(&self, _path: &str) -> Answer {
        busy_answer()
    }
}

/// Serve one connection: over TLS when the admin port serves it (the routes behind
/// [`CertGate`]), else plain.
async fn answer_conn<R: Routes + ?Sized>(
    stream: &mut Async<std::net::TcpStream>,
    routes: &R,
    tls: Option<&Arc<Tls>>,
    counters: &AdminCounters,
) -> Result<(), Refusal> {
    let Some((tls, config)) = tls.and_then(|t| Some((t, t.admin_port()?))) else {
        return serve_conn(stream, routes, counters).await;
    };
    let who = stream
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    let mut s = match futures_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tls.refused(Port::Admin, &who, &e);
            return Ok(());
        }
    };
    let gate = CertGate {
        routes,
        has_cert: s.get_ref().1.peer_certificates().is_some(),
        needs_cert: tls.admin_needs_cert(),
    };
    serve_conn(&mut s, &gate, counters).await
}

/// Paths any TLS client may read without a client certificate (unless
/// `--admin-cert-auth-all`, which the handshake enforces).
pub const OPEN_PATHS: [&str; 2] = ["/health", "/metrics"];

/// The admin routes behind `--client-cert-auth`: without a verified client certificate only
/// [`OPEN_PATHS`] are answered.
struct CertGate<'a, R: ?Sized> {
    routes: &'a R,
    has_cert: bool,
    needs_cert: bool,
}

impl<R: Routes + ?Sized> Routes for CertGate<'_, R> {
    fn get(&self, path: &str) -> Answer {
        if self.needs_cert && !self.has_cert && !OPEN_PATHS.contains(&path) {
            return Answer::error(
                403,
                "this path needs a client certificate signed by --trusted-ca-file \
                 (only /health and /metrics are open)",
            );
        }
        self.routes.get(path)
    }
}

/// Serve one request on `stream` and close. Returns why it was refused, if it was.
pub async fn serve_conn<S, R>(
    stream: &mut S,
    routes: &R,
    counters: &AdminCounters,
) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Routes + ?Sized,
{
    let (answer, head_only, refused) = match read_request(stream).await {
        Ok(Request::Get { path, head_only }) => (routes.get(&path), head_only, None),
        Ok(Request::Closed) => return Ok(()),
        Err(why) => (refusal_answer(why), false, Some(why)),
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    // A write error means the client went away; nothing to tell it.
    let _ = stream.write_all(&encode(&answer, head_only)).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
    match refused {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

enum Request {
    Get {
        path: String,
        head_only: bool,
    },
    /// The client closed before sending a whole head.
    Closed,
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Request, Refusal> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| Refusal::Malformed)?;
        if n == 0 {
            return Ok(Request::Closed);
        }
        let room = MAX_HEAD_BYTES - buf.len();
        buf.extend_from_slice(&chunk[..n.min(room)]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => return check_request(&req),
            Ok(httparse::Status::Partial) if n > room || buf.len() >= MAX_HEAD_BYTES => {
                return Err(Refusal::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeadTooLarge),
            Err(_) => return Err(Refusal::Malformed),
        }
    }
}

fn check_request(req: &httparse::Request<'_, '_>) -> Result<Request, Refusal> {
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Err(Refusal::Method),
    };
    for h in req.headers.iter() {
        let announces_body = (h.name.eq_ignore_ascii_case("content-length")
            && h.value
                .iter()
                .any(|&b| b != b'0' && !b.is_ascii_whitespace()))
            || h.name.eq_ignore_ascii_case("transfer-encoding");
        if announces_body {
            return Err(Refusal::Body);
        }
    }
    let target = req.path.unwrap_or("/");
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(Request::Get { path, head_only })
}

fn refusal_answer(why: Refusal) -> Answer {
    match why {
        Refusal::Method => Answer::error(405, "only GET and HEAD are served here"),
        Refusal::Body => Answer::error(413, "admin requests carry no body"),
        Refusal::HeadTooLarge => Answer::error(
            431,
            &format!("request head over {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} headers"),
        ),
        Refusal::Malformed => Answer::error(400, "not an HTTP/1.x request"),
        Refusal::Timeout => Answer::error(408, "request not received in time"),
        Refusal::TooManyConnections => busy_answer(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// The bytes of an answer; `head_only` leaves out the body (HEAD).
fn encode(a: &Answer, head_only: bool) -> Vec<u8> {
    let allow = if a.status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(a.body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    struct Echo;
    impl Routes for Echo {
        fn get(&self, path: &str) -> Answer {
            Answer {
                status: 200,
                content_type: "text/plain",
                body: format!("path={path}"),
            }
        }
    }

    /// A served admin port on 127.0.0.1 with `limits`; returns its address and counters.
    fn start(limits: AdminLimits) -> (String, Arc<AdminCounters>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let counters = Arc::new(AdminCounters::default());
        let c = counters.clone();
        std::thread::spawn(move || serve(l, Echo, limits, c, None));
        (addr, counters)
    }

    fn exchange(addr: &str, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    fn refused(c: &AdminCounters, why: Refusal) -> u64 {
        let i = Refusal::ALL.iter().position(|r| *r == why).unwrap();
        c.refused[i].load(Ordering::Relaxed)
    }

    #[test]
    fn get_and_head_are_answered_and_closed() {
        let (addr, c) = start(AdminLimits::default());
        let r = exchange(&addr, b"GET /status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("Connection: close") && r.ends_with("path=/status"),
            "{r}"
        );
        let r = exchange(&addr, b"HEAD /health HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        assert!(r.contains("Content-Length: 12"), "{r}");
        assert_eq!(c.requests.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_huge_announced_body_is_refused_without_reading_it() {
        let (addr, c) = start(AdminLimits::default());
        let r = exchange(
            &addr,
            b"GET /health HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        let r = exchange(
            &addr,
            b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        assert_eq!(refused(&c, Refusal::Body), 2);
        // An explicit empty body is fine.
        let r = exchange(&addr, b"GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    #[test]
    fn other_methods_get_405_with_allow() {
        let (addr, c) = start(AdminLimits::default());
        for m in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let r = exchange(&addr, format!("{m} /health HTTP/1.1\r\n\r\n").as_bytes());
            assert!(r.starts_with("HTTP/1.1 405"), "{m}: {r}");
            assert!(r.contains("Allow: GET, HEAD"), "{r}");
        }
        assert_eq!(refused(&c, Refusal::Method), 4);
    }

    #[test]
    fn oversize_heads_and_garbage_are_refused() {
        let (addr, c) = start(AdminLimits::default());
        let mut big = b"GET /health HTTP/1.1\r\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES * 4));
        big.extend_from_slice(b"\r\n\r\n");
        let r = exchange(&addr, &big);
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let r = exchange(&addr, &many);
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        let r = exchange(&addr, b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        assert_eq!(refused(&c, Refusal::HeadTooLarge), 2);
        assert_eq!(refused(&c, Refusal::Malformed), 1);
    }

    #[test]
    fn slow_and_excess_connections_are_bounded() {
        let limits = AdminLimits {
            max_connections: 2,
            request_timeout: Duration::from_millis(300),
        };
        let (addr, c) = start(limits);
        // Two silent connections take every slot ...
        let silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        while c.connections.load(Ordering::Relaxed) < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        // ... so a third is told to come back ...
        let r = exchange(&addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert_eq!(refused(&c, Refusal::TooManyConnections), 1);
        // ... until the silent ones time out and are closed.
        for mut s in silent {
            let mut out = String::new();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.read_to_string(&mut out);
            assert!(out.is_empty() || out.starts_with("HTTP/1.1 408"), "{out}");
        }
        while c.connections.load(Ordering::Relaxed) != 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(refused(&c, Refusal::Timeout), 2);
        let r = exchange(&addr, b"GET /x HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
}
