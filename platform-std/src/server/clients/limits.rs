//! The client port's bounds ([`ClientLimits`]) and the name of each ([`Limit`]).

use std::time::Duration;

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

    pub(super) fn index(self) -> usize {
        Limit::ALL
            .iter()
            .position(|l| *l == self)
            .expect("every limit is in ALL")
    }
}
