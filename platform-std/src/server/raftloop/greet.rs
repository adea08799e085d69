//! The group handshake. A peer connection's own handshake (`net`) compares the members of
//! every group at once, which cannot tell two versions of one group apart. So before this
//! node takes a frame of a group other than 0 from a peer, the two exchange a `Hello` for that
//! group (the core's handshake message, whose `group` and `members` then name that group and
//! its configuration) and [`handshake::check`] must pass on both sides: each must be in the
//! other's configuration of the group. A mismatch is refused with `HelloRefused`, naming both
//! member lists, and logged on both nodes; the frames stay dropped, so two versions of a group
//! never exchange a vote or an entry.
//!
//! The exchange rides on the ordinary peer frames: a node that receives a frame of group `g`
//! from a peer it has not greeted for `g` drops the frame and sends the peer a dialing
//! `Hello` (at most every [`GREET_EVERY`]); the peer checks it, answers with an accepting
//! `Hello` (or a refusal) and from then on takes this node's frames of `g`; the answer lets
//! this node take the peer's. Raft resends whatever was dropped meanwhile. Group 0 needs none
//! of this: it is what the connection's own handshake checks.

use std::collections::HashSet;

use super::*;
use shoal_core::handshake::{self, Hello};
use shoal_core::io::Transport;
use shoal_core::wire::{Body, Frame, FrameHeader, WIRE_VERSION};

/// Shortest time between two `Hello`s for one group to one peer.
const GREET_EVERY: Duration = Duration::from_millis(200);
/// Shortest time between two log lines about one group and peer.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Which peers passed the handshake for which group.
#[derive(Default)]
pub(super) struct Greetings {
    passed: HashSet<(GroupId, NodeId)>,
    last_sent: HashMap<(GroupId, NodeId), Instant>,
    last_logged: HashMap<(GroupId, NodeId), Instant>,
    /// Group handshakes refused, here or by a peer.
    pub(super) refusals: u64,
}

impl Greetings {
    /// Whether frames of `group` from `peer` may be taken.
    pub(super) fn passed(&self, group: GroupId, peer: NodeId) -> bool {
        group == 0 || self.passed.contains(&(group, peer))
    }

    /// Group `group` is gone from this node: a group of that id later starts over.
    pub(super) fn forget_group(&mut self, group: GroupId) {
        self.passed.retain(|(g, _)| *g != group);
        self.last_sent.retain(|(g, _), _| *g != group);
    }

    fn should_log(&mut self, group: GroupId, peer: NodeId) -> bool {
        let due =
            !matches!(self.last_logged.get(&(group, peer)), Some(t) if t.elapsed() < LOG_EVERY);
        if due {
            self.last_logged.insert((group, peer), Instant::now());
        }
        due
    }
}

impl RaftLoop {
    fn group_hello(&self, group: GroupId, expected_peer: NodeId) -> Hello {
        Hello {
            cluster_id: self.cfg.cluster_id,
            node_id: self.cfg.node_id,
            expected_peer,
            group,
            members: self
                .groups
                .get(&group)
                .map(|g| g.node.raft().membership().all())
                .unwrap_or_default(),
        }
    }

    fn send_greeting(&self, group: GroupId, to: NodeId, body: &Body) {
        let header = FrameHeader {
            version: WIRE_VERSION,
            cluster_id: self.cfg.cluster_id,
            group,
            from: self.cfg.node_id,
            to,
        };
        let mut buf = [0u8; 1024];
        if let Ok(n) = wire::encode(&header, body, &[], &mut buf) {
            // A full queue drops it; the next frame from the peer asks again.
            let _ = self.net.transport().send(to, &buf[..n]);
        }
    }

    /// A raft frame of `group` from `from`, which has not passed the group handshake: greet
    /// the peer (at most every [`GREET_EVERY`]); the frame is dropped.
    pub(super) fn greet(&mut self, group: GroupId, from: NodeId) {
        let last = self.greetings.last_sent.get(&(group, from));
        let due = !matches!(last, Some(t) if t.elapsed() < GREET_EVERY);
        if due {
            self.greetings
                .last_sent
                .insert((group, from), Instant::now());
            let hello = self.group_hello(group, from);
            self.send_greeting(group, from, &Body::Hello(hello));
        }
    }

    /// A `Hello` or `HelloRefused` of a group, which arrives among a connection's ordinary
    /// frames.
    pub(super) fn handle_greeting(&mut self, frame: &Frame<'_>) {
        let (group, from) = (frame.header.group, frame.header.from);
        let me = self.cfg.node_id;
        if group == 0 || frame.header.to != me || frame.header.cluster_id != self.cfg.cluster_id {
            return;
        }
        match &frame.body {
            Body::Hello(remote) if remote.node_id == from && remote.group == group => {
                if !self.groups.contains_key(&group) && !self.join_group_for_peer(group) {
                    let why = format!("group {group} is not hosted on node {me}");
                    self.refuse_greeting(group, from, &why, remote);
                    return;
                }
                let dialing = remote.expected_peer != NO_NODE;
                // An answer must come from the peer this node greeted.
                let local = self.group_hello(group, if dialing { NO_NODE } else { from });
                match handshake::check(&local, remote) {
                    Ok(()) => {
                        if self.greetings.passed.insert((group, from)) {
                            log::info!("group {group}: node {from} passed the group handshake");
                        }
                        if dialing {
                            let accept = self.group_hello(group, NO_NODE);
                            self.send_greeting(group, from, &Body::Hello(accept));
                        }
                    }
                    Err(e) => self.refuse_greeting(group, from, &e.to_string(), remote),
                }
            }
            Body::HelloRefused(reason) => {
                self.greetings.passed.remove(&(group, from));
                self.greetings.refusals += 1;
                if self.greetings.should_log(group, from) {
                    log::warn!(
                        "group {group}: node {from} refused the group handshake: {reason} (our members: {:?})",
                        self.group_hello(group, NO_NODE).members.as_slice()
                    );
                }
            }
            _ => {}
        }
    }

    fn refuse_greeting(&mut self, group: GroupId, from: NodeId, why: &str, remote: &Hello) {
        self.greetings.passed.remove(&(group, from));
        self.greetings.refusals += 1;
        if self.greetings.should_log(group, from) {
            log::warn!(
                "group {group}: refused the group handshake of node {from}: {why} (our members {:?}, theirs {:?})",
                self.group_hello(group, NO_NODE).members.as_slice(),
                remote.members.as_slice()
            );
        }
        let mut reason = heapless::String::<160>::new();
        for c in why.chars() {
            if reason.push(c).is_err() {
                break;
            }
        }
        self.send_greeting(group, from, &Body::HelloRefused(reason));
    }
}
