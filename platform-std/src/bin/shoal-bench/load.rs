//! The measured load: closed-loop client connections (put, get, mixed, and the writers of the
//! watch workload) and watcher connections. Each runs on a thread of its own over one blocking
//! `shoal-client` [`Connection`] (a read waits in the kernel, with no reactor between the socket
//! and the thread): the answers one read brings in are handled together and the requests they
//! prompt leave in one write.

use shoal_client::tls::BlockingSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use shoal_client::connection::{Connection, FrameWriter};
use shoal_client::protocol::{ReadMode, Request, RequestFrame, Response, WriteOp, WriteResult};

use crate::calls::{connect, group_leaders, recv_batch};
use crate::cli::{key_of, shard_key_count, Workload};
use crate::stats::OpStats;

/// Longest a load connection waits for an answer before it gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a load connection sends: a leader's client port and the groups it leads.
#[derive(Clone, Debug)]
pub struct Route {
    /// The client port.
    pub addr: String,
    /// The groups the connection's clients write to (client `k` to `groups[k % len]`).
    pub groups: Vec<u32>,
}

impl Route {
    /// One route per leader, with the groups it leads (`leaders`: each group's leader's
    /// client port).
    pub fn by_leader(leaders: std::collections::BTreeMap<u32, String>) -> Vec<Route> {
        let mut routes: Vec<Route> = Vec::new();
        for (g, addr) in leaders {
            match routes.iter_mut().find(|r| r.addr == addr) {
                Some(r) => r.groups.push(g),
                None => routes.push(Route {
                    addr,
                    groups: vec![g],
                }),
            }
        }
        routes
    }

    /// Group 0 at `addr` (its leader's client port).
    pub fn group0(addr: &str) -> Route {
        Route {
            addr: addr.to_string(),
            groups: vec![0],
        }
    }
}

/// What every load connection of a run shares.
pub struct Shared {
    /// Where the connections send (connection `c` takes route `c % len`): group 0's leader,
    /// or with `--groups` each group's leader and the groups it leads.
    pub routes: Vec<Route>,
    /// Answers to requests sent before this are not recorded (warmup).
    pub start_measure: Instant,
    /// No request is sent after this, and answers after it are not recorded.
    pub end: Instant,
    /// Set on Ctrl-C or SIGTERM: stop sending.
    pub stop: Arc<AtomicBool>,
    /// The workload.
    pub workload: Workload,
    /// How reads are served.
    pub read_mode: ReadMode,
    /// Fraction of reads in `mixed`.
    pub read_ratio: f64,
    /// Bytes per key.
    pub key_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// Every group the run writes, in order: with more than one, key `i` lives in group
    /// `shards[i % len]` only (each group holds its share of the keyspace, as a sharded
    /// keyspace would), so `--groups N` does not multiply the live data by N.
    pub shards: Vec<u32>,
    /// The value every write carries.
    pub value: Vec<u8>,
    /// Prepended to every key (`w.` for the watch workload).
    pub key_prefix: Vec<u8>,
    /// The cluster's client ports, to find a group's leader again once it moved (leader
    /// balance, a failure); empty: a connection never moves.
    pub endpoints: Vec<String>,
    /// Writes carry `micros since epoch` in their first 8 value bytes (watch workload).
    pub stamp: bool,
    /// Time zero of the stamps.
    pub epoch: Instant,
}

/// One request in flight: the client session it belongs to, when it left, and its kind.
struct Slot {
    client: usize,
    sent: Instant,
    read: bool,
}

/// The logical clients of one connection: their sessions and their request slots (a slot's
/// index is its request id).
struct Clients<'a> {
    sh: &'a Shared,
    groups: &'a [u32],
    /// Each group's position in `sh.shards` (its shard of the keyspace), as `groups`.
    shard_of: Vec<u64>,
    rng: fastrand::Rng,
    ids: Vec<u64>,
    seqs: Vec<u64>,
    slots: Vec<Slot>,
}

impl Clients<'_> {
    fn new<'a>(sh: &'a Shared, groups: &'a [u32], clients: usize, pipeline: usize) -> Clients<'a> {
        // Session ids must differ from every other client's, in any process (two benches on
        // one cluster): seeded from the OS, not from the clock as `Rng::new` is.
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).expect("the operating system's random generator failed");
        let mut rng = fastrand::Rng::with_seed(u64::from_le_bytes(seed));
        let ids = (0..clients).map(|_| rng.u64(1..)).collect();
        let now = Instant::now();
        let slots = (0..clients * pipeline)
            .map(|i| Slot {
                client: i / pipeline,
                sent: now,
                read: false,
            })
            .collect();
        let shard_of = groups
            .iter()
            .map(|g| sh.shards.iter().position(|s| s == g).unwrap_or(0) as u64)
            .collect();
        Clients {
            sh,
            groups,
            shard_of,
            rng,
            ids,
            seqs: vec![0; clients],
            slots,
        }
    }

    /// Queue slot `i`'s next request on `writer`.
    fn issue(&mut self, i: usize, writer: &mut FrameWriter<BlockingSocket>, now: Instant) {
        let sh = self.sh;
        let read = match sh.workload {
            Workload::Put
            | Workload::Watch
            | Workload::Sweep
            | Workload::Recovery
            | Workload::Groups => false,
            Workload::Get => true,
            Workload::Mixed | Workload::Hostile => self.rng.f64() < sh.read_ratio,
        };
        let client = self.slots[i].client;
        let (group, shard) = (
            self.groups[client % self.groups.len()],
            self.shard_of[client % self.groups.len()],
        );
        let shards = sh.shards.len().max(1) as u64;
        let j = self.rng.u64(0..shard_key_count(sh.keyspace, shard, shards));
        let mut key = sh.key_prefix.clone();
        key.extend_from_slice(&key_of(shard + j * shards, sh.key_size));
        let slot = &mut self.slots[i];
        let request = if read {
            let mode = sh.read_mode;
            Request::Get { key, mode }
        } else {
            self.seqs[slot.client] += 1;
            let mut value = sh.value.clone();
            if sh.stamp {
                let us = now.duration_since(sh.epoch).as_micros() as u64;
                value[..8].copy_from_slice(&us.to_le_bytes());
            }
            Request::Write {
                client_id: self.ids[slot.client],
                seq: self.seqs[slot.client],
                op: WriteOp::Put { key, value },
            }
        };
        slot.sent = now;
        slot.read = read;
        writer
            .queue(&RequestFrame::new(i as u64, group, request))
            .expect("a request of the bench's sizes encodes");
    }
}

/// A load answer as the report counts it: `Ok(miss)` for a success (`miss`: a read found no
/// key), else what went wrong.
fn outcome(response: Response) -> Result<bool, String> {
    match response {
        Response::Written {
            result: WriteResult::Failed(e),
            ..
        } => Err(format!("kv: {e:?}")),
        Response::Written { .. } => Ok(false),
        Response::Node { node, .. } => Ok(node.is_none()),
        Response::NotLeader { .. } => Err("not_leader".to_string()),
        Response::Unavailable { message } => Err(format!("unavailable: {message}")),
        Response::Error { code, message, .. } => Err(format!("{code:?}: {message}")),
        other => Err(format!("unexpected: {other:?}")),
    }
}

/// One connection on `route`: `clients` sessions × `pipeline` slots, closed loop until `end`.
/// Returns the writes' and the reads' results. With [`Shared::endpoints`], a group that moved
/// to another leader is followed: the connection drains, its groups' leaders are found again,
/// and it goes on from there (on one connection per leader, should they now be several).
pub fn run_conn(
    sh: &Shared,
    route: &Route,
    clients: usize,
    pipeline: usize,
) -> Result<[OpStats; 2], String> {
    let mut stats = [OpStats::new(), OpStats::new()];
    let mut route = route.clone();
    loop {
        let (st, moved) = run_route(sh, &route, clients, pipeline)?;
        stats[0].merge(&st[0]);
        stats[1].merge(&st[1]);
        if !moved || Instant::now() >= sh.end || sh.stop.load(Ordering::Relaxed) {
            return Ok(stats);
        }
        let left = sh.end.saturating_duration_since(Instant::now());
        let leaders = match group_leaders(&sh.endpoints, &route.groups, left, &sh.stop) {
            Ok(l) => l,
            // The run ended while the leaders were being found.
            Err(_) if Instant::now() >= sh.end || sh.stop.load(Ordering::Relaxed) => {
                return Ok(stats)
            }
            Err(e) => return Err(e),
        };
        let mut routes = Route::by_leader(leaders);
        if routes.len() == 1 {
            route = routes.pop().expect("one route");
            continue;
        }
        // The groups now have several leaders: a connection to each, the sessions shared out
        // by groups (all of them, each connection at least one).
        let total = route.groups.len();
        let mut shares: Vec<usize> = routes
            .iter()
            .map(|r| clients * r.groups.len() / total)
            .collect();
        let mut left = clients.saturating_sub(shares.iter().sum());
        for n in shares.iter_mut() {
            if left > 0 {
                *n += 1;
                left -= 1;
            }
            *n = (*n).max(1);
        }
        let parts = std::thread::scope(|s| {
            let handles: Vec<_> = routes
                .iter()
                .zip(shares)
                .map(|(r, n)| s.spawn(move || run_conn(sh, r, n, pipeline)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("load thread panicked".into())))
                .collect::<Vec<_>>()
        });
        for part in parts {
            let st = part?;
            stats[0].merge(&st[0]);
            stats[1].merge(&st[1]);
        }
        return Ok(stats);
    }
}

/// [`run_conn`] on one route until `end`, or until a group of it answers that another node
/// leads it (then whether it did, once the requests in flight are answered).
fn run_route(
    sh: &Shared,
    route: &Route,
    clients: usize,
    pipeline: usize,
) -> Result<([OpStats; 2], bool), String> {
    let Connection {
        mut writer,
        mut reader,
    } = connect(&route.addr, ANSWER_TIMEOUT)?;
    let mut clients = Clients::new(sh, &route.groups, clients, pipeline);
    let now = Instant::now();
    for i in 0..clients.slots.len() {
        clients.issue(i, &mut writer, now);
    }
    let mut in_flight = clients.slots.len();
    let mut stats = [OpStats::new(), OpStats::new()]; // [writes, reads]
    let mut batch = Vec::new();
    let mut moved = false;
    while in_flight > 0 {
        writer.flush_blocking().map_err(|e| e.to_string())?;
        if !recv_batch(&mut reader, &mut batch)? {
            return Err(format!(
                "{} sent no answer for {ANSWER_TIMEOUT:?}",
                route.addr
            ));
        }
        let now = Instant::now();
        for f in batch.drain(..) {
            let i = f.id as usize;
            let Some(slot) = clients.slots.get(i) else {
                return Err(format!("answer to unknown request id {}", f.id));
            };
            moved |= !sh.endpoints.is_empty()
                && matches!(
                    &f.response,
                    Response::NotLeader { leader_addr: Some(a), .. } if *a != route.addr
                );
            if slot.sent >= sh.start_measure && now <= sh.end {
                let st = &mut stats[slot.read as usize];
                match outcome(f.response) {
                    Ok(miss) => {
                        st.record(now.duration_since(slot.sent).as_micros() as u64);
                        st.misses += u64::from(miss);
                    }
                    Err(e) => st.fail(e),
                }
            }
            if now < sh.end && !sh.stop.load(Ordering::Relaxed) && !moved {
                clients.issue(i, &mut writer, now);
            } else {
                in_flight -= 1;
            }
        }
    }
    Ok((stats, moved))
}

/// The measurement window `(start, end)`, set once every watch has started.
pub type Window = Arc<OnceLock<(Instant, Instant)>>;

/// How often a watcher with nothing to read looks at the window and the stop flag.
const WATCH_POLL: Duration = Duration::from_millis(200);

/// One connection carrying `n` watches of directory `w`: counts `WatchStarted` into
/// `started`, then records the delivery latency of every event whose write was stamped
/// inside the window, until 2 s after the window ends.
pub fn run_watcher(
    addr: String,
    n: usize,
    epoch: Instant,
    window: Window,
    started: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Result<OpStats, String> {
    let Connection {
        mut writer,
        mut reader,
    } = connect(&addr, WATCH_POLL)?;
    for id in 0..n {
        let watch = Request::Watch {
            keys: vec![b"w".to_vec()],
            from_index: 0,
        };
        writer
            .queue(&RequestFrame::new(id as u64, 0, watch))
            .map_err(|e| e.to_string())?;
    }
    writer.flush_blocking().map_err(|e| e.to_string())?;
    let opened = Instant::now();
    let mut st = OpStats::new();
    let mut batch = Vec::new();
    loop {
        let now = Instant::now();
        match window.get() {
            Some(&(_, end)) if now > end + Duration::from_secs(2) => break,
            None if now > opened + Duration::from_secs(30) => {
                return Err("the measurement never started".into())
            }
            _ => {}
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if !recv_batch(&mut reader, &mut batch)? {
            continue;
        }
        let now = Instant::now();
        for f in batch.drain(..) {
            match f.response {
                Response::WatchStarted => {
                    started.fetch_add(1, Ordering::Relaxed);
                }
                Response::Event(ev) if ev.value.len() >= 8 => {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&ev.value[..8]);
                    let sent = epoch + Duration::from_micros(u64::from_le_bytes(ts));
                    if let Some(&(start, end)) = window.get() {
                        if sent >= start && sent <= end {
                            st.record(now.saturating_duration_since(sent).as_micros() as u64);
                        }
                    }
                }
                Response::Event(_) => {}
                Response::WatchCompacted { oldest } => {
                    st.fail(format!("watch compacted (oldest {oldest})"))
                }
                other => st.fail(format!("{other:?}")),
            }
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_as_the_report_needs() {
        assert_eq!(
            outcome(Response::Written {
                index: 3,
                result: WriteResult::Done
            }),
            Ok(false)
        );
        assert_eq!(
            outcome(Response::Node {
                index: 3,
                node: None
            }),
            Ok(true),
            "a read of a missing key is a miss, not an error"
        );
        assert_eq!(
            outcome(Response::Written {
                index: 3,
                result: WriteResult::Failed(shoal_client::KvError::StaleSequence)
            }),
            Err("kv: StaleSequence".into())
        );
        let not_leader = Response::NotLeader {
            leader: 2,
            leader_addr: None,
            cluster: 1,
        };
        assert_eq!(outcome(not_leader), Err("not_leader".into()));
    }
}
