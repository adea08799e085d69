//! The pipelined connection, async and blocking, against a scripted node on a plain
//! `TcpListener`: batches leave in one write, answers are reassembled from any split of the byte
//! stream and matched by id, large frames grow the buffer, a pending `recv` can be abandoned (or
//! a blocking one time out) without losing bytes, and every failure says what went wrong.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use shoal_client::connection::{Connection, ConnectionError};
use shoal_client::protocol::{
    self, ReadMode, Request, RequestFrame, Response, ResponseFrame, MAX_FRAME_BYTES,
};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A node that accepts one connection and hands it to `script`.
fn serve(script: impl FnOnce(TcpStream) + Send + 'static) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        script(stream);
    });
    (addr, handle)
}

/// Read until `n` whole request frames arrived; also returns how many `read` calls it took.
fn read_requests(s: &mut TcpStream, n: usize) -> (Vec<RequestFrame>, usize) {
    let (mut buf, mut frames, mut reads) = (Vec::new(), Vec::new(), 0);
    let mut chunk = [0u8; 65536];
    while frames.len() < n {
        let got = s.read(&mut chunk).unwrap();
        assert!(got > 0, "the client closed after {} requests", frames.len());
        reads += 1;
        buf.extend_from_slice(&chunk[..got]);
        while let Some((f, used)) = protocol::decode::<RequestFrame>(&buf).unwrap() {
            buf.drain(..used);
            frames.push(f);
        }
    }
    (frames, reads)
}

fn answer(id: u64, value: Vec<u8>) -> ResponseFrame {
    let node = shoal_client::NodeInfo {
        key: format!("k{id}").into_bytes(),
        kind: shoal_kv::NodeKind::Value,
        value,
        create_index: id,
        update_index: id,
        owner: 0,
        deadline_ms: 0,
        fence: 0,
        count: 0,
    };
    ResponseFrame {
        id,
        response: Response::Node {
            index: id,
            node: Some(node),
        },
    }
}

fn get(id: u64) -> RequestFrame {
    let key = format!("k{id}").into_bytes();
    let mode = ReadMode::Lease;
    RequestFrame::new(id, 0, Request::Get { key, mode })
}

fn open(addr: &str) -> Connection {
    async_io::block_on(Connection::open(addr, TIMEOUT)).expect("connect")
}

fn open_blocking(addr: &str) -> Connection<TcpStream> {
    Connection::open_blocking(addr, TIMEOUT).expect("connect")
}

/// Queue `requests`, flush once, and collect `n` answers, with an async connection
/// or a blocking one; also checks that `try_recv` hands out what a read already brought.
fn exchange(addr: &str, blocking: bool, requests: &[RequestFrame], n: usize) -> Vec<ResponseFrame> {
    let mut got = Vec::new();
    if blocking {
        let mut c = open_blocking(addr);
        for r in requests {
            c.writer.queue(r).unwrap();
        }
        c.writer.flush_blocking().unwrap();
        assert_eq!(c.writer.queued_bytes(), 0, "a flush empties the queue");
        while got.len() < n {
            got.push(c.reader.recv_blocking().unwrap());
            while let Some(f) = c.reader.try_recv().unwrap() {
                got.push(f);
            }
        }
    } else {
        let mut c = open(addr);
        for r in requests {
            c.writer.queue(r).unwrap();
        }
        async_io::block_on(c.writer.flush()).unwrap();
        assert_eq!(c.writer.queued_bytes(), 0, "a flush empties the queue");
        while got.len() < n {
            got.push(async_io::block_on(c.reader.recv()).unwrap());
            while let Some(f) = c.reader.try_recv().unwrap() {
                got.push(f);
            }
        }
    }
    got
}

#[test]
fn a_batch_leaves_together_and_answers_reassemble_in_any_order_and_split() {
    const N: u64 = 200;
    for blocking in [false, true] {
        let (addr, node) = serve(|mut s| {
            let (requests, _) = read_requests(&mut s, N as usize);
            let mut out = Vec::new();
            // Answer in reverse order, then dribble the bytes out in pieces of every size from
            // 1 to 97, so frames end everywhere relative to the client's reads.
            for r in requests.iter().rev() {
                protocol::encode(&answer(r.id, vec![b'v'; 10]), &mut out).unwrap();
            }
            let mut pos = 0;
            for step in (1..98).cycle() {
                if pos == out.len() {
                    break;
                }
                let end = (pos + step).min(out.len());
                s.write_all(&out[..end][pos..]).unwrap();
                s.flush().unwrap();
                pos = end;
            }
        });
        let requests: Vec<RequestFrame> = (0..N).map(get).collect();
        let ids: Vec<u64> = exchange(&addr, blocking, &requests, N as usize)
            .iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(
            ids,
            (0..N).rev().collect::<Vec<_>>(),
            "blocking: {blocking}"
        );
        node.join().unwrap();
    }
}

#[test]
fn one_flush_is_one_write_when_the_socket_takes_it() {
    for blocking in [false, true] {
        // 64 small requests (3 KiB) written at once reach the node as one piece; written one
        // by one, the node's first read would find the first alone.
        let (addr, node) = serve(|mut s| {
            let (requests, reads) = read_requests(&mut s, 64);
            assert_eq!(reads, 1, "a batch of 64 arrived in {reads} reads");
            let mut out = Vec::new();
            protocol::encode(&answer(requests[63].id, vec![]), &mut out).unwrap();
            s.write_all(&out).unwrap();
        });
        let requests: Vec<RequestFrame> = (0..64).map(get).collect();
        let last = exchange(&addr, blocking, &requests, 1);
        assert_eq!(last[0].id, 63);
        node.join().unwrap();
    }
}

#[test]
fn frames_larger_than_a_read_arrive_whole() {
    let big = (0..3 * 65536 + 17)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>();
    for blocking in [false, true] {
        let sent = big.clone();
        let (addr, node) = serve(move |mut s| {
            let (requests, _) = read_requests(&mut s, 2);
            let mut out = Vec::new();
            protocol::encode(&answer(requests[0].id, vec![1; 5]), &mut out).unwrap();
            protocol::encode(&answer(requests[1].id, sent), &mut out).unwrap();
            protocol::encode(&answer(99, vec![2; 5]), &mut out).unwrap();
            s.write_all(&out).unwrap();
        });
        let values: Vec<(u64, Vec<u8>)> = exchange(&addr, blocking, &[get(1), get(2)], 3)
            .into_iter()
            .map(|f| match f.response {
                Response::Node { node: Some(n), .. } => (f.id, n.value),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(values[0], (1, vec![1; 5]));
        assert_eq!(values[1], (2, big.clone()));
        assert_eq!(values[2], (99, vec![2; 5]));
        node.join().unwrap();
    }
}

#[test]
fn an_abandoned_recv_loses_no_bytes() {
    const N: u64 = 50;
    let (addr, node) = serve(|mut s| {
        let (requests, _) = read_requests(&mut s, N as usize);
        for r in &requests {
            let mut out = Vec::new();
            protocol::encode(&answer(r.id, vec![b'x'; 300]), &mut out).unwrap();
            // Half a frame, a pause longer than the client's patience, the rest.
            let half = out.len() / 2;
            s.write_all(&out[..half]).unwrap();
            std::thread::sleep(Duration::from_millis(3));
            s.write_all(&out[half..]).unwrap();
        }
    });
    let mut c = open(&addr);
    for id in 0..N {
        c.writer.queue(&get(id)).unwrap();
    }
    async_io::block_on(c.writer.flush()).unwrap();
    let (mut got, mut gave_up) = (Vec::new(), 0);
    while got.len() < N as usize {
        let recv = async { Some(c.reader.recv().await) };
        let timer = async {
            async_io::Timer::after(Duration::from_millis(1)).await;
            None
        };
        match async_io::block_on(futures_lite::future::or(recv, timer)) {
            Some(f) => got.push(f.unwrap().id),
            None => gave_up += 1,
        }
    }
    assert_eq!(got, (0..N).collect::<Vec<_>>());
    assert!(gave_up > 0, "the test never abandoned a pending recv");
    node.join().unwrap();
}

#[test]
fn a_blocking_read_times_out_and_loses_nothing() {
    let (go_on, wait) = mpsc::channel::<()>();
    let (addr, node) = serve(move |mut s| {
        let (requests, _) = read_requests(&mut s, 1);
        let mut out = Vec::new();
        protocol::encode(&answer(requests[0].id, vec![b'x'; 300]), &mut out).unwrap();
        let half = out.len() / 2;
        s.write_all(&out[..half]).unwrap();
        // The rest only once the client has timed out.
        wait.recv().unwrap();
        s.write_all(&out[half..]).unwrap();
    });
    let mut c = open_blocking(&addr);
    c.reader
        .set_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    c.writer.queue(&get(7)).unwrap();
    c.writer.flush_blocking().unwrap();
    let e = c.reader.recv_blocking().unwrap_err();
    assert!(matches!(e, ConnectionError::TimedOut { .. }), "{e}");
    go_on.send(()).unwrap();
    c.reader.set_timeout(None).unwrap();
    let f = c.reader.recv_blocking().unwrap();
    assert_eq!(f.id, 7);
    node.join().unwrap();
}

#[test]
fn failures_say_what_went_wrong() {
    // Nobody listens.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    match async_io::block_on(Connection::open(&dead_addr, TIMEOUT)) {
        Err(e @ ConnectionError::Connect { .. }) => {
            assert!(e.to_string().contains(&dead_addr), "{e}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    match Connection::open_blocking(&dead_addr, TIMEOUT) {
        Err(e @ ConnectionError::Connect { .. }) => {
            assert!(e.to_string().contains(&dead_addr), "{e}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }

    // A frame too large to send is refused and queues nothing.
    let (addr, node) = serve(|mut s| {
        let (requests, _) = read_requests(&mut s, 1);
        let mut out = Vec::new();
        protocol::encode(&answer(requests[0].id, vec![7; 10]), &mut out).unwrap();
        let last = out.len() - 1;
        out[last] ^= 0xff; // a broken CRC
        s.write_all(&out).unwrap();
        // Keep the socket open until the client has looked at the frame.
        let _ = s.read(&mut [0u8; 1]);
    });
    let mut c = open(&addr);
    let huge = Request::Write {
        client_id: 0,
        seq: 0,
        op: protocol::WriteOp::Put {
            key: b"k".to_vec(),
            value: vec![0; MAX_FRAME_BYTES + 1],
        },
    };
    assert!(matches!(
        c.writer.queue(&RequestFrame::new(1, 0, huge)),
        Err(ConnectionError::Encode(_))
    ));
    assert_eq!(c.writer.queued_bytes(), 0);
    c.writer.queue(&get(1)).unwrap();
    async_io::block_on(c.writer.flush()).unwrap();
    // A damaged answer is refused, and the connection stays unusable.
    let e = async_io::block_on(c.reader.recv()).unwrap_err();
    assert!(matches!(e, ConnectionError::BadFrame { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
    let again = async_io::block_on(c.reader.recv()).unwrap_err();
    assert!(matches!(again, ConnectionError::Closed { .. }), "{again}");
    c.reader.close();
    node.join().unwrap();

    // The node hangs up.
    let (addr, node) = serve(drop);
    let mut c = open(&addr);
    let e = async_io::block_on(c.reader.recv()).unwrap_err();
    assert!(matches!(e, ConnectionError::Closed { .. }), "{e}");
    assert_eq!(e.to_string(), format!("{addr} closed the connection"));
    node.join().unwrap();
    let (addr, node) = serve(drop);
    let mut c = open_blocking(&addr);
    let e = c.reader.recv_blocking().unwrap_err();
    assert!(matches!(e, ConnectionError::Closed { .. }), "{e}");
    node.join().unwrap();
}
