//! Requests outside the measurement: one-off calls, finding the leader, and the bulk writes that
//! prepare a run (prefill) or a long log (recovery), over `shoal-client` connections.

use shoal_client::tls::BlockingSocket;
use shoal_client::TlsConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_client::connection::{Connection, ConnectionError, FrameReader};
use shoal_client::protocol::{
    Request, RequestFrame, Response, ResponseFrame, WriteOp, WriteResult,
};

use crate::cli::{key_of, shard_keys, Args};

/// A blocking connection to `addr` whose reads give up after `read_timeout`.
/// TLS to the client ports (`--cacert` and the rest), set once at start.
pub static TLS: std::sync::OnceLock<TlsConfig> = std::sync::OnceLock::new();

pub fn connect(addr: &str, read_timeout: Duration) -> Result<Connection<BlockingSocket>, String> {
    let mut c = Connection::open_blocking_with(addr, Duration::from_secs(2), TLS.get())
        .map_err(|e| e.to_string())?;
    c.reader
        .set_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// Wait (up to the connection's read timeout) for answers: the first to arrive and every one
/// already read behind it go to `batch` (emptied first), so the caller can answer them all with
/// one flush. `Ok(false)`: none came in time.
pub fn recv_batch(
    reader: &mut FrameReader<BlockingSocket>,
    batch: &mut Vec<ResponseFrame>,
) -> Result<bool, String> {
    batch.clear();
    match reader.recv_blocking() {
        Ok(frame) => batch.push(frame),
        Err(ConnectionError::TimedOut { .. }) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    }
    while let Some(frame) = reader.try_recv().map_err(|e| e.to_string())? {
        batch.push(frame);
    }
    Ok(true)
}

/// One request on a fresh connection, answered within 5 s.
pub fn call_once(addr: &str, request: Request) -> Result<Response, String> {
    let Connection {
        mut writer,
        mut reader,
    } = connect(addr, Duration::from_secs(5))?;
    writer
        .queue(&RequestFrame::new(1, 0, request))
        .map_err(|e| e.to_string())?;
    writer.flush_blocking().map_err(|e| e.to_string())?;
    let mut batch = Vec::new();
    if !recv_batch(&mut reader, &mut batch)? {
        return Err(format!("{addr} did not answer within 5s"));
    }
    Ok(batch.swap_remove(0).response)
}

/// The endpoint that reports itself leader of group 0, waiting up to `timeout`.
pub fn find_leader(
    endpoints: &[String],
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    loop {
        for e in endpoints {
            match call_once(e, Request::Status) {
                Ok(Response::Status(s)) if s.role == "leader" => return Ok(e.clone()),
                Ok(Response::Status(s)) => last = format!("{e}: {} (leader {})", s.role, s.leader),
                Ok(r) => last = format!("{e}: {r:?}"),
                Err(err) => last = err,
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("no leader within {timeout:?}; last: {last}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Write every key of shard `shard.0` of `shard.1` of the keyspace (all of it for `(0, 1)`)
/// once into `group` (batches of 64, pipelined), so reads find them.
pub fn prefill(addr: &str, group: u32, shard: (u64, u64), a: &Args) -> Result<(), String> {
    let value = vec![b'v'; a.value_size];
    let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = shard_keys(a.keyspace, shard.0, shard.1)
        .collect::<Vec<_>>()
        .chunks(64)
        .map(|c| {
            c.iter()
                .map(|&i| (key_of(i, a.key_size), value.clone()))
                .collect()
        })
        .collect();
    let (count, window) = (batches.len() as u64, 32);
    pipelined_writes(
        addr,
        group,
        "prefill",
        count,
        window,
        Duration::from_secs(10),
        |i| WriteOp::BatchPut {
            pairs: batches[i as usize].clone(),
        },
    )?;
    Ok(())
}

/// Write `count` puts through one connection (no session, `window` in flight, keys cycling
/// through the keyspace). Returns the raft index of the last write.
pub fn fill(addr: &str, a: &Args, count: u64, window: u64) -> Result<u64, String> {
    let value = vec![b'v'; a.value_size];
    pipelined_writes(
        addr,
        0,
        "fill",
        count,
        window,
        Duration::from_secs(30),
        |i| WriteOp::Put {
            key: key_of(i % a.keyspace, a.key_size),
            value: value.clone(),
        },
    )
}

/// Send `count` session-less writes `make(0..count)` to `group` through one connection with
/// `window` in flight, and wait for every answer (each within `timeout`); a refused write is an
/// error naming `what`. Returns the raft index of the last write.
fn pipelined_writes(
    addr: &str,
    group: u32,
    what: &str,
    count: u64,
    window: u64,
    timeout: Duration,
    make: impl Fn(u64) -> WriteOp,
) -> Result<u64, String> {
    let mut last = 0;
    let write = |i| {
        let op = make(i);
        (
            group,
            Request::Write {
                client_id: 0,
                seq: 0,
                op,
            },
        )
    };
    pipelined(addr, what, count, window, timeout, write, |_, r| match r {
        Response::Written {
            result: WriteResult::Failed(e),
            ..
        } => Err(format!("{what} write refused: {e:?}")),
        Response::Written { index, .. } => {
            last = last.max(index);
            Ok(())
        }
        r => Err(format!("{what} write refused: {r:?}")),
    })?;
    Ok(last)
}

/// Send `count` requests `make(0..count)` (each a group and a request) through one connection
/// with `window` in flight, and hand every answer to `answer` with its request's number (each
/// within `timeout`); an error of either names `what`.
pub fn pipelined(
    addr: &str,
    what: &str,
    count: u64,
    window: u64,
    timeout: Duration,
    make: impl Fn(u64) -> (u32, Request),
    mut answer: impl FnMut(u64, Response) -> Result<(), String>,
) -> Result<(), String> {
    let Connection {
        mut writer,
        mut reader,
    } = connect(addr, timeout).map_err(|e| format!("{what}: {e}"))?;
    let (mut sent, mut done) = (0u64, 0u64);
    let mut batch = Vec::new();
    while done < count {
        while sent < count && sent - done < window {
            let (group, request) = make(sent);
            writer
                .queue(&RequestFrame::new(sent, group, request))
                .map_err(|e| format!("{what}: {e}"))?;
            sent += 1;
        }
        writer
            .flush_blocking()
            .map_err(|e| format!("{what}: {e}"))?;
        if !recv_batch(&mut reader, &mut batch).map_err(|e| format!("{what}: {e}"))? {
            return Err(format!("{what}: {addr} did not answer within {timeout:?}"));
        }
        for f in batch.drain(..) {
            done += 1;
            answer(f.id, f.response)?;
        }
    }
    Ok(())
}

/// Define groups `groups` for the whole cluster with `members` as voters, through group 0's
/// leader at `addr` (pipelined; an existing identical definition is accepted).
pub fn create_groups(addr: &str, groups: &[u32], members: &[u64]) -> Result<(), String> {
    let make = |i: u64| {
        let members = members.to_vec();
        (groups[i as usize], Request::GroupCreate { members })
    };
    pipelined(
        addr,
        "group create",
        groups.len() as u64,
        64,
        Duration::from_secs(30),
        make,
        |i, r| match r {
            Response::Done { .. } => Ok(()),
            r => Err(format!("group {} not created: {r:?}", groups[i as usize])),
        },
    )
}

/// The client address of each group's leader, asking every endpoint about every group still
/// without one (pipelined), until each has one or `timeout` passes.
pub fn group_leaders(
    endpoints: &[String],
    groups: &[u32],
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<std::collections::BTreeMap<u32, String>, String> {
    let deadline = Instant::now() + timeout;
    let mut found = std::collections::BTreeMap::new();
    loop {
        let pending: Vec<u32> = groups
            .iter()
            .copied()
            .filter(|g| !found.contains_key(g))
            .collect();
        if pending.is_empty() {
            return Ok(found);
        }
        for e in endpoints {
            let ask = |i: u64| (pending[i as usize], Request::Status);
            // A node that does not host the group yet answers with an error: asked again.
            let _ = pipelined(
                e,
                "status",
                pending.len() as u64,
                256,
                Duration::from_secs(5),
                ask,
                |i, r| {
                    if let Response::Status(s) = r {
                        if s.role == "leader" {
                            found.insert(pending[i as usize], e.clone());
                        }
                    }
                    Ok(())
                },
            );
        }
        if stop.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} of {} groups have no leader after {timeout:?}",
                groups.len() - found.len(),
                groups.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
