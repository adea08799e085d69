//! Requests outside the measurement: one-off calls, finding the leader, and the bulk writes that
//! prepare a run (prefill) or a long log (recovery), over `shoal-client` connections.

use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_client::connection::{Connection, ConnectionError, FrameReader};
use shoal_client::protocol::{
    Request, RequestFrame, Response, ResponseFrame, WriteOp, WriteResult,
};

use crate::cli::{key_of, Args};

/// A blocking connection to `addr` whose reads give up after `read_timeout`.
pub fn connect(addr: &str, read_timeout: Duration) -> Result<Connection<TcpStream>, String> {
    let mut c =
        Connection::open_blocking(addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    c.reader
        .set_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// Wait (up to the connection's read timeout) for answers: the first to arrive and every one
/// already read behind it go to `batch` (emptied first), so the caller can answer them all with
/// one flush. `Ok(false)`: none came in time.
pub fn recv_batch(
    reader: &mut FrameReader<TcpStream>,
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

/// Write every key of the keyspace once (batches of 64, pipelined), so reads find them.
pub fn prefill(addr: &str, a: &Args) -> Result<(), String> {
    let value = vec![b'v'; a.value_size];
    let batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = (0..a.keyspace)
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
    pipelined_writes(addr, "fill", count, window, Duration::from_secs(30), |i| {
        WriteOp::Put {
            key: key_of(i % a.keyspace, a.key_size),
            value: value.clone(),
        }
    })
}

/// Send `count` session-less writes `make(0..count)` through one connection with `window` in
/// flight, and wait for every answer (each within `timeout`); a refused write is an error
/// naming `what`. Returns the raft index of the last write.
fn pipelined_writes(
    addr: &str,
    what: &str,
    count: u64,
    window: u64,
    timeout: Duration,
    make: impl Fn(u64) -> WriteOp,
) -> Result<u64, String> {
    let Connection {
        mut writer,
        mut reader,
    } = connect(addr, timeout).map_err(|e| format!("{what}: {e}"))?;
    let (mut sent, mut done, mut last) = (0u64, 0u64, 0u64);
    let mut batch = Vec::new();
    while done < count {
        while sent < count && sent - done < window {
            let write = Request::Write {
                client_id: 0,
                seq: 0,
                op: make(sent),
            };
            writer
                .queue(&RequestFrame::new(sent, 0, write))
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
            match f.response {
                Response::Written {
                    result: WriteResult::Failed(e),
                    ..
                } => return Err(format!("{what} write refused: {e:?}")),
                Response::Written { index, .. } => {
                    done += 1;
                    last = last.max(index);
                }
                r => return Err(format!("{what} write refused: {r:?}")),
            }
        }
    }
    Ok(last)
}
