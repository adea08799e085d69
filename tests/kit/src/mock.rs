//! An in-process mock of a `shoald` client port for the client library's and `shoalctl`'s
//! tests: a thread with a TcpListener speaking the client protocol, answering from a small
//! in-memory DtKV model (with an exactly-once session table) or from a test's own script, so
//! that a test can make a node lose an answer, redirect, stall or close at the exact request
//! it wants.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use shoal_client::protocol::{
    self, NodeInfo, Request, RequestFrame, Response, ResponseFrame, StatusInfo, WriteOp,
};
use shoal_kv::{KvError, NodeKind, WriteResult};

/// What the mock does with one request.
pub enum Action {
    /// Answer it.
    Reply(Response),
    /// Send an extra frame under the request's id (a watch event).
    Push(Response),
    /// Send a frame under another id (0: about the connection itself).
    Frame(u64, Response),
    /// Close the connection without answering.
    Close,
    /// Never answer.
    Ignore,
}

/// A mock node's state, shared with the test.
#[derive(Default)]
pub struct State {
    /// The model store: key → node.
    pub nodes: BTreeMap<Vec<u8>, NodeInfo>,
    /// Last raft index used.
    pub index: u64,
    /// Session table: client id → (seq, index, result).
    pub sessions: HashMap<u64, (u64, u64, WriteResult)>,
    /// Writes actually applied (not deduplicated).
    pub applied: usize,
    /// Every request received, in order.
    pub requests: Vec<RequestFrame>,
}

type Handler = dyn Fn(&Mock, &RequestFrame, usize) -> Vec<Action> + Send + Sync;

/// A running mock node.
#[derive(Clone)]
pub struct Mock {
    /// Its client address.
    pub addr: String,
    /// Its state.
    pub state: Arc<Mutex<State>>,
    /// Requests received so far (all connections).
    pub count: Arc<AtomicUsize>,
}

impl Mock {
    /// Start a mock whose `handler` decides each request's fate; it gets the request and how
    /// many requests came before it.
    pub fn start(
        handler: impl Fn(&Mock, &RequestFrame, usize) -> Vec<Action> + Send + Sync + 'static,
    ) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a mock port");
        let mock = Mock {
            addr: listener.local_addr().unwrap().to_string(),
            state: Arc::new(Mutex::new(State::default())),
            count: Arc::new(AtomicUsize::new(0)),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let m = mock.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let m = m.clone();
                let h = handler.clone();
                std::thread::spawn(move || serve(m, h, stream));
            }
        });
        mock
    }

    /// A mock that answers everything from the in-memory model.
    pub fn kv() -> Mock {
        Mock::start(|m, f, _| vec![Action::Reply(m.apply(f))])
    }

    /// Answer `frame` from the in-memory model.
    pub fn apply(&self, frame: &RequestFrame) -> Response {
        let mut s = self.state.lock().unwrap();
        s.handle(&frame.request)
    }

    /// How many writes were really applied.
    pub fn applied(&self) -> usize {
        self.state.lock().unwrap().applied
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RequestFrame> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(mock: Mock, handler: Arc<Handler>, mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        while let Ok(Some((frame, used))) = protocol::decode::<RequestFrame>(&buf) {
            buf.drain(..used);
            let n = mock.count.fetch_add(1, Ordering::SeqCst);
            mock.state.lock().unwrap().requests.push(frame.clone());
            for action in handler(&mock, &frame, n) {
                let (id, response) = match action {
                    Action::Reply(response) | Action::Push(response) => (frame.id, response),
                    Action::Frame(id, response) => (id, response),
                    Action::Close => {
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                    Action::Ignore => continue,
                };
                let mut out = Vec::new();
                protocol::encode(&ResponseFrame { id, response }, &mut out).unwrap();
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parent(key: &[u8]) -> &[u8] {
    match key.iter().rposition(|&b| b == b'.') {
        Some(i) => &key[..i],
        None => b"",
    }
}

impl State {
    fn handle(&mut self, request: &Request) -> Response {
        match request {
            Request::Write { client_id, seq, op } => {
                if *client_id != 0 {
                    if let Some((last, index, result)) = self.sessions.get(client_id) {
                        if seq == last {
                            return Response::Written {
                                index: *index,
                                result: result.clone(),
                            };
                        }
                        if seq < last {
                            return Response::Written {
                                index: *index,
                                result: WriteResult::Failed(KvError::StaleSequence),
                            };
                        }
                    }
                }
                self.index += 1;
                let index = self.index;
                let result = match self.write(*client_id, op, index) {
                    Ok(r) => {
                        self.applied += 1;
                        r
                    }
                    Err(e) => WriteResult::Failed(e),
                };
                self.sessions
                    .insert(*client_id, (*seq, index, result.clone()));
                Response::Written { index, result }
            }
            Request::Get { key, .. } => Response::Node {
                index: self.index,
                node: self.nodes.get(key).cloned(),
            },
            Request::BatchGet { keys, .. } => Response::Nodes {
                index: self.index,
                nodes: keys.iter().map(|k| self.nodes.get(k).cloned()).collect(),
            },
            Request::List { key, .. } => Response::Children {
                index: self.index,
                children: self
                    .nodes
                    .values()
                    .filter(|n| parent(&n.key) == key.as_slice())
                    .cloned()
                    .collect(),
            },
            Request::Status => Response::Status(StatusInfo {
                node_id: 1,
                group: 0,
                role: "leader".into(),
                term: 1,
                leader: 1,
                commit: self.index,
                applied: self.index,
                last_index: self.index,
                snapshot_index: 0,
                members: vec![],
            }),
            _ => Response::Done { index: self.index },
        }
    }

    fn node(&self, key: &[u8], kind: NodeKind, value: &[u8], index: u64) -> NodeInfo {
        let create_index = self.nodes.get(key).map_or(index, |n| n.create_index);
        NodeInfo {
            key: key.to_vec(),
            kind,
            value: value.to_vec(),
            create_index,
            update_index: index,
            owner: 0,
            deadline_ms: 0,
            fence: 0,
            count: 0,
        }
    }

    fn check_parent(&self, key: &[u8]) -> Result<(), KvError> {
        let p = parent(key);
        if p.is_empty() {
            return Ok(());
        }
        match self.nodes.get(p) {
            None => Err(KvError::ParentNotFound),
            Some(n) if !n.kind.is_dir() => Err(KvError::ParentNotDir),
            Some(_) => Ok(()),
        }
    }

    fn write(&mut self, client: u64, op: &WriteOp, index: u64) -> Result<WriteResult, KvError> {
        match op {
            WriteOp::Put { key, value } => {
                self.check_parent(key)?;
                let n = self.node(key, NodeKind::Value, value, index);
                self.nodes.insert(key.clone(), n);
                Ok(WriteResult::Done)
            }
            WriteOp::Remove { key } => {
                self.nodes.remove(key).ok_or(KvError::NotFound)?;
                Ok(WriteResult::Done)
            }
            WriteOp::Mkdir { key } => {
                self.check_parent(key)?;
                let n = self.node(key, NodeKind::Dir, b"", index);
                self.nodes.insert(key.clone(), n);
                Ok(WriteResult::Done)
            }
            WriteOp::CompareAndSet { key, expect, value } => {
                let current = self.nodes.get(key).map(|n| n.value.clone());
                if current != *expect {
                    return Err(KvError::CasMismatch);
                }
                self.check_parent(key)?;
                let n = self.node(key, NodeKind::Value, value, index);
                self.nodes.insert(key.clone(), n);
                Ok(WriteResult::Done)
            }
            WriteOp::BatchPut { pairs } => {
                let mut results = shoal_kv::BatchResults::new();
                for (k, v) in pairs {
                    let n = self.node(k, NodeKind::Value, v, index);
                    self.nodes.insert(k.clone(), n);
                    let _ = results.push(Ok(()));
                }
                Ok(WriteResult::Batch(results))
            }
            WriteOp::TryLock { key, lease_ms, .. } => match self.nodes.get(key) {
                Some(n) if n.kind == NodeKind::Lock && n.owner != client => Err(KvError::LockHeld),
                Some(n) if n.kind == NodeKind::Lock => Ok(WriteResult::Locked {
                    fence: n.fence,
                    lease_deadline_ms: *lease_ms,
                }),
                Some(_) => Err(KvError::NotALock),
                None => {
                    let mut n = self.node(key, NodeKind::Lock, b"", index);
                    n.owner = client;
                    n.fence = index;
                    self.nodes.insert(key.clone(), n);
                    Ok(WriteResult::Locked {
                        fence: index,
                        lease_deadline_ms: *lease_ms,
                    })
                }
            },
            WriteOp::UpdateLockLease { key, lease_ms } => match self.nodes.get(key) {
                Some(n) if n.kind == NodeKind::Lock && n.owner == client => {
                    Ok(WriteResult::Locked {
                        fence: n.fence,
                        lease_deadline_ms: *lease_ms,
                    })
                }
                _ => Err(KvError::NotLockOwner),
            },
            WriteOp::Unlock { key } => match self.nodes.get(key) {
                Some(n) if n.kind == NodeKind::Lock && n.owner == client => {
                    self.nodes.remove(key);
                    Ok(WriteResult::Unlocked {
                        next_owner: 0,
                        next_fence: 0,
                    })
                }
                _ => Err(KvError::NotLockOwner),
            },
            _ => Ok(WriteResult::Done),
        }
    }
}
