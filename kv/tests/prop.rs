//! Property test: random operation sequences against a simple std model, with snapshot
//! round trips and a second replica along the way.
mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use shoal_core::io::StateMachine;
use shoal_kv::*;

const KEYS: [&str; 7] = ["a", "b", "a.x", "a.y", "b.z", "a.x.q", "c"];

#[derive(Clone, Debug, PartialEq)]
enum M {
    Value(Vec<u8>),
    Dir,
    Temp {
        value: Vec<u8>,
        owner: u64,
        deadline: u64,
    },
}

#[derive(Default)]
struct Model {
    nodes: BTreeMap<String, M>,
    now: u64,
}

impl Model {
    fn parent_ok(&self, key: &str) -> Result<(), KvError> {
        let parent = std::str::from_utf8(parent_of(key.as_bytes())).unwrap();
        if parent.is_empty() {
            return Ok(());
        }
        match self.nodes.get(parent) {
            None => Err(KvError::ParentNotFound),
            Some(M::Dir) => Ok(()),
            Some(_) => Err(KvError::ParentNotDir),
        }
    }

    fn has_children(&self, key: &str) -> bool {
        let prefix = format!("{}.", key);
        self.nodes.keys().any(|k| k.starts_with(&prefix))
    }

    fn put(&mut self, client: u64, key: &str, v: &[u8]) -> Result<(), KvError> {
        match self.nodes.get_mut(key) {
            Some(M::Dir) => Err(KvError::IsDirectory),
            Some(M::Temp { owner, .. }) if *owner != client => Err(KvError::NotOwner),
            Some(M::Temp { value, .. }) | Some(M::Value(value)) => {
                *value = v.to_vec();
                Ok(())
            }
            None => {
                self.parent_ok(key)?;
                self.nodes.insert(key.to_string(), M::Value(v.to_vec()));
                Ok(())
            }
        }
    }

    fn remove(&mut self, client: u64, key: &str) -> Result<(), KvError> {
        match self.nodes.get(key) {
            None => return Err(KvError::NotFound),
            Some(M::Dir) if self.has_children(key) => return Err(KvError::DirNotEmpty),
            Some(M::Temp { owner, .. }) if *owner != client => return Err(KvError::NotOwner),
            _ => {}
        }
        self.nodes.remove(key);
        Ok(())
    }

    fn mkdir(&mut self, key: &str) -> Result<(), KvError> {
        match self.nodes.get(key) {
            Some(M::Dir) => Ok(()),
            Some(_) => Err(KvError::AlreadyExists),
            None => {
                self.parent_ok(key)?;
                self.nodes.insert(key.to_string(), M::Dir);
                Ok(())
            }
        }
    }

    fn cas(
        &mut self,
        client: u64,
        key: &str,
        expect: Option<&[u8]>,
        v: &[u8],
    ) -> Result<(), KvError> {
        match (self.nodes.get(key), expect) {
            (None, None) => {}
            (None, Some(_)) | (Some(_), None) => return Err(KvError::CasMismatch),
            (Some(M::Dir), Some(_)) => return Err(KvError::IsDirectory),
            (Some(M::Value(cur)), Some(e)) | (Some(M::Temp { value: cur, .. }), Some(e))
                if cur != e =>
            {
                return Err(KvError::CasMismatch)
            }
            _ => {}
        }
        self.put(client, key, v)
    }

    fn put_temp(&mut self, client: u64, key: &str, v: &[u8], ttl: u64) -> Result<(), KvError> {
        let deadline = self.now + ttl;
        match self.nodes.get_mut(key) {
            Some(M::Temp { owner, .. }) if *owner != client => Err(KvError::NotOwner),
            Some(M::Temp {
                value, deadline: d, ..
            }) => {
                *value = v.to_vec();
                *d = deadline;
                Ok(())
            }
            Some(M::Value(_)) => Err(KvError::NotTemp),
            Some(M::Dir) => Err(KvError::IsDirectory),
            None => {
                self.parent_ok(key)?;
                self.nodes.insert(
                    key.to_string(),
                    M::Temp {
                        value: v.to_vec(),
                        owner: client,
                        deadline,
                    },
                );
                Ok(())
            }
        }
    }

    fn expire(&mut self) -> u32 {
        let now = self.now;
        let before = self.nodes.len();
        self.nodes
            .retain(|_, n| !matches!(n, M::Temp { deadline, .. } if *deadline <= now));
        (before - self.nodes.len()) as u32
    }
}

#[derive(Clone, Debug)]
enum Step {
    Put(usize, Vec<u8>),
    Remove(usize),
    Mkdir(usize),
    Cas(usize, Option<Vec<u8>>, Vec<u8>),
    BatchPut(Vec<(usize, Vec<u8>)>),
    PutTemp(usize, Vec<u8>, u64),
    Expire,
    Retry,
    Snapshot,
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(b'a'..=b'c', 0..3)
}

fn step() -> impl Strategy<Value = (u64, u64, Step)> {
    let key = 0..KEYS.len();
    let s = prop_oneof![
        4 => (key.clone(), value()).prop_map(|(k, v)| Step::Put(k, v)),
        2 => key.clone().prop_map(Step::Remove),
        3 => key.clone().prop_map(Step::Mkdir),
        2 => (key.clone(), prop::option::of(value()), value()).prop_map(|(k, e, v)| Step::Cas(k, e, v)),
        1 => prop::collection::vec((key.clone(), value()), 1..4).prop_map(Step::BatchPut),
        2 => (key, value(), 1..50u64).prop_map(|(k, v, t)| Step::PutTemp(k, v, t)),
        1 => Just(Step::Expire),
        1 => Just(Step::Retry),
        1 => Just(Step::Snapshot),
    ];
    (1..=2u64, 0..20u64, s)
}

fn check_tree(kv: &DtKv<impl KvMemory>, model: &Model) {
    let mut seen = BTreeMap::new();
    let mut stack = vec![Vec::new()];
    while let Some(dir) = stack.pop() {
        kv.list(&dir, |v| {
            let key = String::from_utf8(v.key.to_vec()).unwrap();
            let m = match v.kind {
                NodeKind::Value => M::Value(v.value.to_vec()),
                NodeKind::Dir => {
                    stack.push(v.key.to_vec());
                    M::Dir
                }
                NodeKind::TempValue => M::Temp {
                    value: v.value.to_vec(),
                    owner: v.owner,
                    deadline: v.deadline_ms,
                },
                other => panic!("unexpected kind {:?}", other),
            };
            seen.insert(key, m);
        })
        .unwrap();
    }
    assert_eq!(seen, model.nodes);
    assert_eq!(kv.node_count(), model.nodes.len() + 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_operations_match_the_model(steps in prop::collection::vec(step(), 1..60)) {
        let mut limits = small();
        limits.max_sessions = 4;
        let mut d = Driver::new(limits);
        let mut replica = Driver::new(limits);
        let mut model = Model::default();
        let mut last: Option<(Vec<u8>, WriteResult)> = None;
        for (client, advance, s) in steps {
            d.time_ms += advance;
            let time = d.time_ms;
            model.now = model.now.max(time);
            let seq = { let e = d.seqs.entry(client).or_insert(0); *e += 1; *e };
            let k = |i: usize| KEYS[i];
            let (op_bytes, expected): (Vec<u8>, WriteResult) = {
                let cmd = |op: Op<'_>| encode(&Command { client_id: client, seq, time_ms: time, op });
                let done = |r: Result<(), KvError>| r.map(|_| WriteResult::Done).unwrap_or_else(WriteResult::Failed);
                match &s {
                    Step::Put(i, v) => (cmd(Op::Put { key: k(*i).as_bytes(), value: v }), done(model.put(client, k(*i), v))),
                    Step::Remove(i) => (cmd(Op::Remove { key: k(*i).as_bytes() }), done(model.remove(client, k(*i)))),
                    Step::Mkdir(i) => (cmd(Op::Mkdir { key: k(*i).as_bytes() }), done(model.mkdir(k(*i)))),
                    Step::Cas(i, e, v) => (
                        cmd(Op::CompareAndSet { key: k(*i).as_bytes(), expect: e.as_deref(), value: v }),
                        done(model.cas(client, k(*i), e.as_deref(), v)),
                    ),
                    Step::BatchPut(items) => {
                        let pairs: Vec<(&[u8], &[u8])> = items.iter().map(|(i, v)| (k(*i).as_bytes(), &v[..])).collect();
                        let mut results = BatchResults::new();
                        for (i, v) in items {
                            results.push(model.put(client, k(*i), v)).unwrap();
                        }
                        (cmd(Op::BatchPut(Pairs::new(&pairs))), WriteResult::Batch(results))
                    }
                    Step::PutTemp(i, v, ttl) => (
                        cmd(Op::PutTemp { key: k(*i).as_bytes(), value: v, ttl_ms: *ttl }),
                        done(model.put_temp(client, k(*i), v, *ttl)),
                    ),
                    Step::Expire => {
                        let removed = model.expire();
                        (encode(&Command::expire(time)), WriteResult::Expired { removed, granted: 0 })
                    }
                    Step::Retry => match &last {
                        Some((bytes, result)) => (bytes.clone(), result.clone()),
                        None => continue,
                    },
                    Step::Snapshot => {
                        let bytes = snapshot(&d.kv);
                        replica.kv.restore(d.index, &mut SliceReader(&bytes)).unwrap();
                        replica.index = d.index;
                        prop_assert_eq!(replica.kv.digest(), d.kv.digest());
                        continue;
                    }
                }
            };
            let out = d.bytes(&op_bytes);
            let again = replica.bytes(&op_bytes);
            prop_assert_eq!(&out.result, &expected, "step {:?}", s);
            prop_assert_eq!(&again.result, &expected);
            if !matches!(s, Step::Expire | Step::Retry) {
                last = Some((op_bytes, out.result.clone()));
            } else if matches!(s, Step::Retry) {
                prop_assert!(out.deduplicated);
            }
            check_tree(&d.kv, &model);
            prop_assert_eq!(d.kv.digest(), replica.kv.digest());
        }
    }
}
