//! Membership changes of a group, one step at a time, and creating or removing a group on
//! this node.

use super::*;

impl RaftLoop {
    pub(super) fn group_create(
        &mut self,
        gid: GroupId,
        members: Vec<(NodeId, String)>,
        reply: Reply,
    ) {
        if self.groups.contains_key(&gid) {
            reply.send(error(
                ErrorCode::Conflict,
                format!("group {gid} already exists on this node"),
            ));
            return;
        }
        let mut addrs = Vec::new();
        for (id, addr) in members {
            match parse_addr_pair(id, &addr) {
                Ok(m) => addrs.push(MemberAddr {
                    id: m.id,
                    raft_addr: m.raft_addr,
                    client_addr: m.client_addr,
                }),
                Err(e) => {
                    reply.send(error(ErrorCode::BadRequest, e));
                    return;
                }
            }
        }
        if addrs.is_empty() {
            reply.send(error(
                ErrorCode::BadRequest,
                "a group needs at least one member".into(),
            ));
            return;
        }
        let bootstrap = addrs.iter().any(|a| a.id == self.cfg.node_id);
        match self.open_group(gid, &addrs, bootstrap) {
            Ok(()) => {
                log::info!("group {gid} created");
                self.refresh_hello();
                reply.send(Response::Done { index: 0 });
            }
            Err(e) => {
                reply.send(error(ErrorCode::Internal, format!("group {gid}: {e}")));
            }
        }
    }

    pub(super) fn group_remove(&mut self, gid: GroupId, reply: Reply) {
        let Some(mut g) = self.groups.remove(&gid) else {
            reply.send(error(
                ErrorCode::UnknownGroup,
                format!("group {gid} is not hosted on this node"),
            ));
            return;
        };
        fail_all(&mut g, "the group was removed from this node");
        let dir = g.dir.clone();
        drop(g);
        let to = self
            .data
            .path()
            .join(format!("removed-group-{gid}-{}", wall_ms()));
        match std::fs::rename(&dir, &to) {
            Ok(()) => {
                log::info!("group {gid} removed; its data moved to {}", to.display());
                self.refresh_hello();
                reply.send(Response::Done { index: 0 });
            }
            Err(e) => {
                reply.send(error(
                    ErrorCode::Internal,
                    format!(
                        "group {gid} stopped but {} could not be moved: {e}",
                        dir.display()
                    ),
                ));
            }
        }
    }
}

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
            // Tell every member where the new node is, through the log. The leader learns it
            // the same way, when the entry applies: that is where dialers start, so recording
            // it here first would leave the leader the one node that never dials the newcomer.
            if let Err(e) = g.node.propose(now, &encode_addr_entry(&a)) {
                reply.send(propose_error(g, e));
                return;
            }
            let mut s: VecDeque<Step> = [Step::AddObserver(id), Step::Commit].into();
            if !observer {
                s.extend([Step::CatchUp(id), Step::Promote(id), Step::Commit]);
            }
            s
        }
        MemberChange::Promote { id } => [Step::Promote(id), Step::Commit].into(),
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
        Step::Commit | Step::CatchUp(_) => unreachable!("not a prepare step"),
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
