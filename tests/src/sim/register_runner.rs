//! A stand-in [`SeedRunner`] until Raft nodes are wired in: one in-memory register service
//! (node 1) and clients on the other node ids, talking through the simulated [`Network`], on
//! drifting [`Clocks`], under the seed's [`FaultSchedule`]; the client history is checked for
//! linearizability at the end, and the service's applied log is fed to the invariant checker.
//!
//! It exercises the whole harness for real — frames are encoded, lost, duplicated, reordered and
//! cut by partitions; clients time out, retry and give up — but it is not Raft: the service is
//! a single, trivially correct copy with exactly-once request dedup. Its one planted bug,
//! `kv-dedup-ignored`, turns the dedup off, which duplicated and retried writes then expose.

use super::cli::{FailureCategory, RunOpts, SeedReport, SeedRunner, SimFailure};
use super::clock::Clocks;
use super::faults::{apply_network_event, resolve, FaultEvent, FaultSchedule};
use super::history::{History, OpId};
use super::invariants::{hash_bytes, EntryView, InvariantChecker, NodeView};
use super::network::Network;
use crate::linearizability::{
    check_per_key, Model, Outcome, Register, RegisterOp, RegisterRet, DEFAULT_STEP_BUDGET,
};
use shoal_core::rng::Rng;
use shoal_core::NodeId;
use std::collections::BTreeMap;

/// The node that hosts the register service.
const SERVICE: NodeId = 1;
/// Keys clients use (few, so that operations on one key overlap often).
const KEYS: u64 = 3;
/// How long a client waits for an answer before resending, in its local ms.
const RETRY_AFTER_MS: u64 = 250;
/// Sends per operation before the client gives up (its answer is then "lost").
const MAX_SENDS: u32 = 4;

/// The stand-in runner (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterRunner;

/// A request from a client to the service.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Request {
    client: NodeId,
    seq: u64,
    key: u64,
    op: RegisterOp,
}

fn encode_request(r: &Request) -> Vec<u8> {
    let mut b = vec![0u8];
    for x in [r.client, r.seq, r.key] {
        b.extend_from_slice(&x.to_le_bytes());
    }
    let (kind, a, expect) = match &r.op {
        RegisterOp::Read => (0u8, 0, None),
        RegisterOp::Write(v) => (1, *v, None),
        RegisterOp::Cas { expect, new } => (2, *new, *expect),
    };
    b.push(kind);
    b.extend_from_slice(&a.to_le_bytes());
    b.push(expect.is_some() as u8);
    b.extend_from_slice(&expect.unwrap_or(0).to_le_bytes());
    b
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn decode_request(b: &[u8]) -> Option<Request> {
    if b.len() != 43 || b[0] != 0 {
        return None;
    }
    let (client, seq, key) = (u64_at(b, 1)?, u64_at(b, 9)?, u64_at(b, 17)?);
    let a = u64_at(b, 26)?;
    let expect = if b[34] == 1 {
        Some(u64_at(b, 35)?)
    } else {
        None
    };
    let op = match b[25] {
        0 => RegisterOp::Read,
        1 => RegisterOp::Write(a),
        2 => RegisterOp::Cas { expect, new: a },
        _ => return None,
    };
    Some(Request {
        client,
        seq,
        key,
        op,
    })
}

fn encode_response(seq: u64, ret: &RegisterRet) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&seq.to_le_bytes());
    let (kind, flag, val) = match ret {
        RegisterRet::Value(v) => (0u8, v.is_some() as u8, v.unwrap_or(0)),
        RegisterRet::Written => (1, 0, 0),
        RegisterRet::Swapped(ok) => (2, *ok as u8, 0),
    };
    b.push(kind);
    b.push(flag);
    b.extend_from_slice(&val.to_le_bytes());
    b
}

fn decode_response(b: &[u8]) -> Option<(u64, RegisterRet)> {
    if b.len() != 19 || b[0] != 1 {
        return None;
    }
    let seq = u64_at(b, 1)?;
    let ret = match (b[9], b[10]) {
        (0, 0) => RegisterRet::Value(None),
        (0, 1) => RegisterRet::Value(Some(u64_at(b, 11)?)),
        (1, _) => RegisterRet::Written,
        (2, f) => RegisterRet::Swapped(f == 1),
        _ => return None,
    };
    Some((seq, ret))
}

/// The register service: registers per key, a dedup table per client, and an applied log.
struct Service {
    registers: BTreeMap<u64, Register>,
    /// Last sequence number and answer per client: a retry or a duplicate gets the cached
    /// answer instead of being applied again (exactly-once).
    sessions: BTreeMap<NodeId, (u64, RegisterRet)>,
    dedup: bool,
    /// Hashes of applied commands, index = position + 1.
    log: Vec<u64>,
    incarnation: u64,
    reported_upto: usize,
    fresh_view: bool,
}

impl Service {
    fn handle(&mut self, req: &Request) -> Option<RegisterRet> {
        if self.dedup {
            if let Some((seq, ret)) = self.sessions.get(&req.client) {
                if req.seq == *seq {
                    return Some(ret.clone());
                }
                if req.seq < *seq {
                    return None; // older than the session: the client has moved on
                }
            }
        }
        let reg = self.registers.entry(req.key).or_default();
        // The service applies the checker's own sequential model: correct by construction.
        let (next, ret) = reg.step(&req.op);
        *reg = next;
        self.sessions.insert(req.client, (req.seq, ret.clone()));
        self.log.push(hash_bytes(&encode_request(req)));
        Some(ret)
    }

    fn view(&mut self) -> NodeView {
        let from = if self.fresh_view {
            0
        } else {
            self.reported_upto
        };
        self.fresh_view = false;
        self.reported_upto = self.log.len();
        let last = self.log.len() as u64;
        NodeView {
            id: SERVICE,
            incarnation: self.incarnation,
            term: 1,
            is_leader: true,
            commit: last,
            applied: last,
            snapshot_index: 0,
            last_index: last,
            entries: self.log[from..]
                .iter()
                .enumerate()
                .map(|(k, &hash)| EntryView {
                    index: (from + k) as u64 + 1,
                    term: 1,
                    hash,
                })
                .collect(),
        }
    }
}

/// A client's operation in flight.
struct Outstanding {
    id: OpId,
    req: Request,
    resend_at_local_ms: u64,
    sends: u32,
}

struct Client {
    id: NodeId,
    next_seq: u64,
    outstanding: Option<Outstanding>,
    completed: u64,
    completed_in_quiet: u64,
    /// The value this client last saw per key, so its CAS operations often expect the current
    /// value and sometimes succeed.
    last_seen: BTreeMap<u64, Option<u64>>,
}

impl SeedRunner for RegisterRunner {
    fn run(&self, seed: u64, opts: &RunOpts) -> Result<SeedReport, SimFailure> {
        let schedule = FaultSchedule::generate(seed, opts.steps);
        let nodes = schedule.all_nodes.clone();
        let clocks = Clocks::random(seed, &nodes);
        let mut net = Network::new(seed);
        let mut rng = Rng::new(seed ^ 0x636C_6965_6E74_0000);
        let mut checker = InvariantChecker::new();
        let mut history: History<u64, RegisterOp, RegisterRet> = History::new();
        let mut service = Service {
            registers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            dedup: opts.mutant.as_deref() != Some("kv-dedup-ignored"),
            log: Vec::new(),
            incarnation: 0,
            reported_upto: 0,
            fresh_view: true,
        };
        let mut clients: Vec<Client> = nodes
            .iter()
            .filter(|&&id| id != SERVICE)
            .map(|&id| Client {
                id,
                next_seq: 1,
                outstanding: None,
                completed: 0,
                completed_in_quiet: 0,
                last_seen: BTreeMap::new(),
            })
            .collect();
        // Down nodes in crash order, to resolve "restart the longest down".
        let mut down: Vec<NodeId> = Vec::new();
        let trace = |now: u64, what: String| {
            if opts.verbose {
                println!("[{now:>6} ms] {what}");
            }
        };
        trace(
            0,
            format!(
                "nodes {nodes:?}: service {SERVICE}, clients the rest; {} events",
                schedule.events.len()
            ),
        );

        for now in 0..=schedule.end_ms {
            for e in schedule.events_at(now) {
                trace(now, format!("event: {}", e.event));
                let leader = (!down.contains(&SERVICE)).then_some(SERVICE);
                let handled =
                    apply_network_event(&e.event, &mut net, &nodes, leader, down.first().copied());
                // Quiesce is half network (done above), half nodes (restart all, below).
                if handled && e.event != FaultEvent::Quiesce {
                    continue;
                }
                match &e.event {
                    FaultEvent::Crash(t) => {
                        if let Some(id) = resolve(*t, leader, None).filter(|id| !down.contains(id))
                        {
                            down.push(id);
                            net.set_node_up(id, false);
                            if id == SERVICE {
                                service.incarnation += 1;
                                service.fresh_view = true;
                            } else if let Some(c) = clients.iter_mut().find(|c| c.id == id) {
                                // The client dies with its operation unanswered: a lost answer.
                                if let Some(o) = c.outstanding.take() {
                                    trace(
                                        now,
                                        format!(
                                            "client {id} crashed with op {:?} unanswered",
                                            o.req.op
                                        ),
                                    );
                                }
                            }
                        }
                    }
                    FaultEvent::Restart(t) => {
                        if let Some(id) = resolve(*t, leader, down.first().copied()) {
                            down.retain(|&d| d != id);
                            net.set_node_up(id, true);
                        }
                    }
                    FaultEvent::Quiesce => {
                        for id in down.drain(..) {
                            net.set_node_up(id, true);
                        }
                    }
                    // Membership changes and leader transfers mean nothing to a single copy.
                    _ => {}
                }
            }

            while let Some(d) = net.pop_due(now) {
                if d.to == SERVICE {
                    let Some(req) = decode_request(&d.frame) else {
                        return Err(SimFailure::new(
                            FailureCategory::Setup,
                            "service got a frame it cannot decode",
                        ));
                    };
                    let applied_before = service.log.len();
                    if let Some(ret) = service.handle(&req) {
                        if service.log.len() > applied_before {
                            let idx = service.log.len() as u64;
                            checker.record_applied(
                                SERVICE,
                                service.incarnation,
                                idx,
                                service.log[idx as usize - 1],
                            )?;
                        }
                        net.send(SERVICE, d.from, encode_response(req.seq, &ret), now);
                    }
                } else if let Some(c) = clients.iter_mut().find(|c| c.id == d.to) {
                    let Some((seq, ret)) = decode_response(&d.frame) else {
                        return Err(SimFailure::new(
                            FailureCategory::Setup,
                            "client got a frame it cannot decode",
                        ));
                    };
                    if c.outstanding.as_ref().is_some_and(|o| o.req.seq == seq) {
                        let o = c.outstanding.take().expect("checked above");
                        trace(
                            now,
                            format!(
                                "client {} {:?} on key {} -> {:?}",
                                c.id, o.req.op, o.req.key, ret
                            ),
                        );
                        match (&o.req.op, &ret) {
                            (_, RegisterRet::Value(v)) => {
                                c.last_seen.insert(o.req.key, *v);
                            }
                            (
                                RegisterOp::Write(v) | RegisterOp::Cas { new: v, .. },
                                RegisterRet::Written | RegisterRet::Swapped(true),
                            ) => {
                                c.last_seen.insert(o.req.key, Some(*v));
                            }
                            _ => {}
                        }
                        history.complete(o.id, ret, now);
                        c.completed += 1;
                        if now >= schedule.quiet_from_ms {
                            c.completed_in_quiet += 1;
                        }
                    }
                }
            }

            for c in clients.iter_mut() {
                if !net.is_up(c.id) {
                    continue;
                }
                let local = clocks.local_ms(c.id, now);
                match &mut c.outstanding {
                    Some(o) if local >= o.resend_at_local_ms => {
                        if o.sends >= MAX_SENDS {
                            trace(
                                now,
                                format!("client {} gives up on {:?} (answer lost)", c.id, o.req.op),
                            );
                            c.outstanding = None;
                        } else {
                            o.sends += 1;
                            o.resend_at_local_ms = local + RETRY_AFTER_MS;
                            net.send(c.id, SERVICE, encode_request(&o.req), now);
                        }
                    }
                    Some(_) => {}
                    None if rng.chance(1, 20) => {
                        let seq = c.next_seq;
                        c.next_seq += 1;
                        let unique = (c.id << 32) | seq;
                        let key = rng.range(0, KEYS);
                        let op = match rng.range(0, 3) {
                            0 => RegisterOp::Read,
                            1 => RegisterOp::Write(unique),
                            _ => RegisterOp::Cas {
                                expect: c.last_seen.get(&key).copied().flatten(),
                                new: unique,
                            },
                        };
                        let req = Request {
                            client: c.id,
                            seq,
                            key,
                            op: op.clone(),
                        };
                        let id = history.invoke(c.id, req.key, op, now);
                        net.send(c.id, SERVICE, encode_request(&req), now);
                        c.outstanding = Some(Outstanding {
                            id,
                            req,
                            resend_at_local_ms: local + RETRY_AFTER_MS,
                            sends: 1,
                        });
                    }
                    None => {}
                }
            }

            if net.is_up(SERVICE)
                && (service.fresh_view || service.reported_upto < service.log.len())
            {
                checker.observe(&service.view())?;
            }
        }

        if let Some(c) = clients.iter().find(|c| c.completed_in_quiet == 0) {
            return Err(SimFailure::new(
                FailureCategory::Liveness,
                format!(
                    "client {} completed no operation in the quiet phase from {} ms",
                    c.id, schedule.quiet_from_ms
                ),
            ));
        }
        let outcome = check_per_key(history.ops(), |_| Register::default(), DEFAULT_STEP_BUDGET);
        let stats = net.stats();
        let summary = format!(
            "{} nodes, {} ops ({} unanswered), {} applied, {} events; frames sent {} lost {} duplicated {} blocked {}",
            nodes.len(),
            history.len(),
            history.unanswered(),
            service.log.len(),
            schedule.events.len(),
            stats.sent,
            stats.lost,
            stats.duplicated,
            stats.blocked
        );
        match outcome {
            Outcome::NotLinearizable(v) => Err(SimFailure::new(
                FailureCategory::Linearizability,
                v.to_string(),
            )),
            o => Ok(SeedReport {
                steps: schedule.end_ms + 1,
                ops: history.len(),
                linearizability_unknown: matches!(o, Outcome::Unknown { .. }),
                summary,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        for op in [
            RegisterOp::Read,
            RegisterOp::Write(7),
            RegisterOp::Cas {
                expect: None,
                new: 3,
            },
            RegisterOp::Cas {
                expect: Some(9),
                new: 4,
            },
        ] {
            let r = Request {
                client: 3,
                seq: 11,
                key: 2,
                op,
            };
            assert_eq!(decode_request(&encode_request(&r)), Some(r));
        }
        for ret in [
            RegisterRet::Value(None),
            RegisterRet::Value(Some(5)),
            RegisterRet::Written,
            RegisterRet::Swapped(true),
        ] {
            assert_eq!(decode_response(&encode_response(8, &ret)), Some((8, ret)));
        }
        assert_eq!(decode_request(&[0; 5]), None);
        assert_eq!(decode_response(&[9; 19]), None);
    }

    #[test]
    fn correct_service_passes_and_is_deterministic() {
        let opts = RunOpts {
            steps: 6_000,
            ..RunOpts::default()
        };
        for seed in 0..6 {
            let a = RegisterRunner.run(seed, &opts);
            assert!(a.is_ok(), "seed {seed}: {a:?}");
            assert_eq!(
                a,
                RegisterRunner.run(seed, &opts),
                "seed {seed} replays exactly"
            );
            assert!(a.expect("ok").ops > 50);
        }
    }

    #[test]
    fn ignoring_dedup_is_caught_on_some_seed() {
        let opts = RunOpts {
            steps: 8_000,
            mutant: Some("kv-dedup-ignored".into()),
            ..RunOpts::default()
        };
        let caught = (0..40).find(|&seed| {
            matches!(
                RegisterRunner.run(seed, &opts),
                Err(SimFailure {
                    category: FailureCategory::Linearizability,
                    ..
                })
            )
        });
        assert!(
            caught.is_some(),
            "retried and duplicated writes applied twice must show up"
        );
    }
}
