//! Membership changes of a group, one step at a time. A change of group 0 keeps the member
//! records with it: an added node's record is written before its first step, a removed node's
//! is removed after its last.

use super::*;

pub(super) fn member_change(g: &mut Group, now: u64, change: MemberChange, reply: Reply) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    if g.member_op.is_some() {
        reply.send(error(
            ErrorCode::Conflict,
            "another membership change is in progress on this group".into(),
        ));
        return;
    }
    let steps: VecDeque<Step> = match change {
        MemberChange::Add {
            id,
            raft_addr,
            observer,
        } => {
            let spec = match parse_addr_pair(id, &raft_addr) {
                Ok(s) => s,
                Err(e) => {
                    reply.send(error(ErrorCode::BadRequest, e));
                    return;
                }
            };
            if g.node.raft().membership().contains(id) {
                reply.send(error(
                    ErrorCode::Conflict,
                    format!("node {id} is already a member"),
                ));
                return;
            }
            let a = MemberAddr {
                id,
                raft_addr: spec.raft_addr,
                client_addr: spec.client_addr,
            };
            // Tell every member where the new node is, through group 0's member record. The
            // leader learns it the same way, when the record applies: that is where dialers
            // start, so recording it here first would leave the leader the one node that never
            // dials the newcomer. Other groups take only nodes that have a record already.
            if g.id == 0 {
                let proposed = member_record_command(&a)
                    .and_then(|bytes| g.node.propose(now, &bytes).map_err(|e| e.to_string()));
                if let Err(e) = proposed {
                    reply.send(unavailable(&format!(
                        "the member record of node {id} was not proposed: {e}"
                    )));
                    return;
                }
            }
            let mut s: VecDeque<Step> = [Step::AddObserver(id), Step::Commit].into();
            if !observer {
                s.extend([Step::CatchUp(id), Step::Promote(id), Step::Commit]);
            }
            s
        }
        MemberChange::Promote { id } => [Step::Promote(id), Step::Commit].into(),
        MemberChange::Remove { id } if g.id == 0 => {
            [Step::Remove(id), Step::Commit, Step::DropRecord(id)].into()
        }
        MemberChange::Remove { id } => [Step::Remove(id), Step::Commit].into(),
    };
    g.member_op = Some(MemberOp {
        reply,
        steps,
        waiting: None,
        done_index: 0,
        started: Instant::now(),
    });
    advance_member_op(g, now);
}

/// `member abort`: leave the joint configuration of a change stuck between its prepare and
/// commit steps (its leader lost, or a step that cannot finish) back to the configuration
/// before it. A change this leader is running is abandoned and its requester told so.
pub(super) fn member_abort(g: &mut Group, now: u64, reply: Reply) {
    if g.node.raft().role() != Role::Leader {
        reply.send(not_leader(g));
        return;
    }
    if !g.node.raft().membership().joint {
        reply.send(error(
            ErrorCode::Conflict,
            format!(
                "group {} is not in a joint configuration: there is no membership change to abort",
                g.id
            ),
        ));
        return;
    }
    let what = format!("group {}: abort the membership change in progress", g.id);
    if let Err(refusal) = admin_allowed(&reply.conn, &what) {
        reply.send(refusal);
        return;
    }
    match g.node.change_membership(now, ConfigChange::Abort) {
        Ok((index, term, m)) => {
            log::info!(
                "group {}: membership change aborted at index {index}: back to voters {:?} observers {:?}",
                g.id,
                m.voters.as_slice(),
                m.observers.as_slice()
            );
            if let Some(op) = g.member_op.take() {
                op.reply.send(error(
                    ErrorCode::Conflict,
                    format!("the membership change was aborted at index {index} (member abort)"),
                ));
            }
            // Answered once the abort commits, as any step is.
            g.member_op = Some(MemberOp {
                reply,
                steps: VecDeque::new(),
                waiting: Some((index, term)),
                done_index: 0,
                started: Instant::now(),
            });
        }
        Err(e) => {
            reply.send(propose_error(g, e));
        }
    }
}

pub(super) fn target_for(m: &Membership, step: Step) -> Result<Membership, String> {
    let mut voters: Vec<NodeId> = m.voters.to_vec();
    let mut observers: Vec<NodeId> = m.observers.to_vec();
    match step {
        Step::AddObserver(id) => observers.push(id),
        Step::Promote(id) => {
            if !observers.contains(&id) {
                return Err(format!("node {id} is not an observer of this group"));
            }
            observers.retain(|&x| x != id);
            voters.push(id);
        }
        Step::Remove(id) => {
            if !voters.contains(&id) && !observers.contains(&id) {
                return Err(format!("node {id} is not a member of this group"));
            }
            voters.retain(|&x| x != id);
            observers.retain(|&x| x != id);
        }
        Step::Commit | Step::CatchUp(_) | Step::DropRecord(_) => {
            unreachable!("not a prepare step")
        }
    }
    Membership::new(&voters, &observers).map_err(|e| e.to_string())
}

pub(super) fn advance_member_op(g: &mut Group, now: u64) {
    loop {
        let Some(op) = g.member_op.as_mut() else {
            return;
        };
        let r = g.node.raft();
        if r.role() != Role::Leader {
            let op = g.member_op.take().expect("checked");
            op.reply.send(unavailable(
                "leadership lost during the membership change; check members and retry",
            ));
            return;
        }
        if let Some((index, _)) = op.waiting {
            if r.commit() < index {
                return;
            }
            op.waiting = None;
            op.done_index = index;
        }
        let Some(step) = op.steps.front().copied() else {
            let op = g.member_op.take().expect("checked");
            op.reply.send(Response::Done {
                index: g.node.raft().commit(),
            });
            return;
        };
        let change = match step {
            Step::CatchUp(id) => {
                let caught_up = r.progress().iter().find(|p| p.id == id).is_some_and(|p| {
                    p.match_index >= op.done_index && p.match_index + 100 >= r.commit()
                });
                if !caught_up {
                    if op.started.elapsed() > Duration::from_secs(60) {
                        let op = g.member_op.take().expect("checked");
                        op.reply.send(unavailable(&format!(
                            "node {id} was added as an observer but has not caught up in 60 s; promote it later"
                        )));
                    }
                    return;
                }
                op.steps.pop_front();
                continue;
            }
            Step::DropRecord(id) => {
                let key = shoal_kv::system::member_key(id);
                let proposed = system_command(Op::SysRemove {
                    key: key.as_bytes(),
                })
                .and_then(|bytes| g.node.propose(now, &bytes).map_err(|e| e.to_string()));
                let op = g.member_op.as_mut().expect("checked");
                op.steps.pop_front();
                match proposed {
                    Ok(at) => {
                        op.waiting = Some(at);
                        return;
                    }
                    // The member is gone either way; a record left behind only names an
                    // address nobody dials for it.
                    Err(e) => {
                        log::warn!("group 0: the record of removed node {id} stays: {e}");
                        continue;
                    }
                }
            }
            Step::Commit => ConfigChange::Commit,
            other => match target_for(r.membership(), other) {
                Ok(t) => ConfigChange::Prepare(t),
                Err(e) => {
                    let op = g.member_op.take().expect("checked");
                    op.reply.send(error(ErrorCode::Conflict, e));
                    return;
                }
            },
        };
        match g.node.change_membership(now, change) {
            Ok((index, term, m)) => {
                log::info!(
                    "group {}: membership step {step:?} at index {index}: voters {:?} observers {:?} -> {:?} {:?}",
                    g.id,
                    m.voters.as_slice(),
                    m.observers.as_slice(),
                    m.next_voters.as_slice(),
                    m.next_observers.as_slice()
                );
                let op = g.member_op.as_mut().expect("checked");
                op.steps.pop_front();
                op.waiting = Some((index, term));
                return;
            }
            Err(e) => {
                let resp = propose_error(g, e);
                let op = g.member_op.take().expect("checked");
                op.reply.send(resp);
                return;
            }
        }
    }
}
