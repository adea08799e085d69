//! Watches as a [`Stream`]: one background task per watch with its own connection, which
//! reconnects after a failure and resumes exactly after the last event it delivered.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_lite::Stream;
use shoal_core::LogIndex;

use crate::client::OpenError;
use crate::protocol::{ErrorCode, ReadMode, Request, RequestFrame, Response, WatchEvent};
use crate::{Client, ClientError};

/// One item of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A change.
    Event(WatchEvent),
    /// The node no longer keeps history back to where the watch stood: changes before
    /// `oldest` were missed. Re-read the keys; the watch goes on from `oldest`.
    Compacted {
        /// The oldest index still available.
        oldest: LogIndex,
    },
}

/// A stream of [`WatchItem`]s. An `Err` item reports that no node could serve the watch for
/// the client's whole timeout (the stream keeps trying after it) or that the watch was
/// refused (the stream ends after it). Dropping the stream stops the watch.
pub struct WatchStream {
    rx: Pin<Box<async_channel::Receiver<Result<WatchItem, ClientError>>>>,
    _task: async_executor::Task<()>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    /// Wait for the next item on the calling thread (`None`: the watch ended).
    pub fn next_blocking(&mut self) -> Option<Result<WatchItem, ClientError>> {
        async_io::block_on(self.rx.recv()).ok()
    }

    /// Wait for the next item (`None`: the watch ended).
    pub async fn next_item(&mut self) -> Option<Result<WatchItem, ClientError>> {
        self.rx.recv().await.ok()
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchItem, ClientError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.as_mut().poll_next(cx)
    }
}

pub(crate) fn start(client: Client, keys: Vec<Vec<u8>>, from_index: LogIndex) -> WatchStream {
    let (tx, rx) = async_channel::bounded(1024);
    let task = crate::runtime::spawn(run(client, keys, from_index, tx));
    WatchStream {
        rx: Box::pin(rx),
        _task: task,
    }
}

/// Where the watch task hands its items to the stream.
type Items = async_channel::Sender<Result<WatchItem, ClientError>>;

/// Where the watch stands: the index to ask from and how many events of that index were
/// already delivered (a batch write yields several events at one index).
struct Position {
    index: LogIndex,
    delivered_at_index: usize,
}

async fn run(client: Client, keys: Vec<Vec<u8>>, from_index: LogIndex, tx: Items) {
    let cfg = client.config().clone();
    let mut pos = Position {
        index: from_index,
        delivered_at_index: 0,
    };
    if pos.index == 0 {
        // "From now": pin "now" to an index so a reconnect cannot skip changes.
        let first = keys.first().cloned().unwrap_or_default();
        if let Ok(Response::Node { index, .. }) = client
            .read(Request::Get {
                key: first,
                mode: ReadMode::Linearizable,
            })
            .await
        {
            pos.index = index + 1;
        }
    }
    let mut backoff = Duration::from_millis(20);
    let mut failing_since: Option<Instant> = None;
    let mut last: String;
    loop {
        let addr = client.target_addr();
        match watch_once(&client, &addr, &keys, &mut pos, &tx).await {
            Outcome::ReceiverGone => return,
            Outcome::Refused(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Outcome::Redirect(to, cluster) => {
                client.learn_cluster(cluster);
                client.redirect(&to);
                continue;
            }
            Outcome::Retry { why, delivered } => {
                if delivered {
                    failing_since = None;
                    backoff = Duration::from_millis(20);
                }
                last = why;
                client.rotate(&addr);
            }
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= cfg.timeout {
            let err = ClientError::Unavailable {
                attempts: 0,
                last: format!(
                    "the watch could not be served for {:?}: {last}",
                    cfg.timeout
                ),
            };
            if tx.send(Err(err)).await.is_err() {
                return;
            }
            failing_since = Some(Instant::now());
        }
        async_io::Timer::after(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

enum Outcome {
    ReceiverGone,
    Refused(ClientError),
    /// To the leader at this address, of this cluster.
    Redirect(String, shoal_core::ClusterId),
    Retry {
        why: String,
        delivered: bool,
    },
}

/// One connection's watch: open it, ask from `pos`, and deliver its events until it ends.
async fn watch_once(
    client: &Client,
    addr: &str,
    keys: &[Vec<u8>],
    pos: &mut Position,
    tx: &Items,
) -> Outcome {
    let retry = |why: String| Outcome::Retry {
        why,
        delivered: false,
    };
    let conn = match client.open_mux(addr).await {
        Ok(c) => c,
        Err(OpenError::Retry(why)) => return retry(why),
        Err(OpenError::Auth(e)) => return Outcome::Refused(e),
    };
    let id = client.next_request_id();
    let rx = match conn.subscribe(id, 1024) {
        Ok(rx) => rx,
        Err(why) => return retry(why),
    };
    let watch = Request::Watch {
        keys: keys.to_vec(),
        from_index: pos.index,
    };
    let mut frame =
        RequestFrame::new(id, client.config().group, watch).for_cluster(client.cluster());
    if let Err(e) = conn.send(&mut frame, |_| {}).await {
        return retry(format!("{e:?}"));
    }
    let mut follow = Follow {
        addr,
        relogin: client.config().user.is_some(),
        // Events of `pos.index` already delivered before a reconnect are skipped.
        skip: pos.delivered_at_index,
        delivered: false,
    };
    loop {
        let Ok(response) = rx.recv().await else {
            return Outcome::Retry {
                why: format!("the watch connection to {addr} broke"),
                delivered: follow.delivered,
            };
        };
        if let Some(outcome) = follow.answer(response, pos, tx).await {
            return outcome;
        }
    }
}

/// A watch connection's answers as they arrive.
struct Follow<'a> {
    addr: &'a str,
    /// Whether a login that ended is renewed (a user is configured).
    relogin: bool,
    /// Events at the position's index still to skip (delivered before a reconnect).
    skip: usize,
    /// Whether this connection delivered anything (a failure after that starts a new wait).
    delivered: bool,
}

impl Follow<'_> {
    /// Deliver an event unless it was delivered before.
    async fn event(&mut self, ev: WatchEvent, pos: &mut Position, tx: &Items) -> Option<Outcome> {
        if ev.index < pos.index {
            return None;
        }
        if ev.index == pos.index && self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        if ev.index > pos.index {
            pos.index = ev.index;
            pos.delivered_at_index = 0;
            self.skip = 0;
        }
        pos.delivered_at_index += 1;
        self.delivered = true;
        if tx.send(Ok(WatchItem::Event(ev))).await.is_err() {
            return Some(Outcome::ReceiverGone);
        }
        None
    }

    /// What one answer means for the watch: `None` to go on reading.
    async fn answer(
        &mut self,
        response: Response,
        pos: &mut Position,
        tx: &Items,
    ) -> Option<Outcome> {
        let (addr, delivered) = (self.addr, self.delivered);
        let retry = |why: String, delivered: bool| Some(Outcome::Retry { why, delivered });
        match response {
            Response::WatchStarted => None,
            Response::Event(ev) => self.event(ev, pos, tx).await,
            Response::WatchCompacted { oldest } => {
                pos.index = oldest;
                pos.delivered_at_index = 0;
                if tx.send(Ok(WatchItem::Compacted { oldest })).await.is_err() {
                    return Some(Outcome::ReceiverGone);
                }
                // Open the watch again from the oldest kept index.
                retry("history compacted".into(), true)
            }
            Response::NotLeader {
                leader_addr: Some(to),
                cluster,
                ..
            } if to != addr => Some(Outcome::Redirect(to, cluster)),
            Response::NotLeader { .. } => retry(
                format!("{addr} cannot serve the watch and names no leader"),
                delivered,
            ),
            Response::Unavailable { message } => {
                retry(format!("{addr} is unavailable: {message}"), delivered)
            }
            Response::WatchLagged { next } => {
                // Everything before `next` arrived on this connection; go on from there (the
                // position already says so unless the last events were not ours to deliver).
                if next > pos.index {
                    pos.index = next;
                    pos.delivered_at_index = 0;
                }
                retry(format!("{addr} cut the watch: it fell behind"), true)
            }
            // The login ended (its token expired, or auth was turned on): log in again and go
            // on from the last event delivered.
            Response::Error {
                code: ErrorCode::AuthFailed,
                message,
                ..
            } if self.relogin => retry(format!("{addr} ended the login: {message}"), delivered),
            Response::Error {
                code: ErrorCode::WrongCluster,
                message,
                ..
            } => retry(format!("{addr} refused the watch: {message}"), delivered),
            Response::Error { code, kv, message } => Some(Outcome::Refused(
                ClientError::from_answer(code, kv, message),
            )),
            other => Some(Outcome::Refused(ClientError::Protocol {
                message: format!("a watch was answered with {other:?}"),
            })),
        }
    }
}
