//! Outgoing messages: queued to leave at once, or held until everything written so far is
//! durable. Every message the core produces passes through here.

use super::{Envelope, OutMessage, Raft};
use crate::message::{AppendResp, Message};
use crate::plant::Plant;
use crate::types::NodeId;

impl<P: Plant> Raft<P> {
    /// Take the next message that may be sent now.
    pub fn pop_message(&mut self) -> Option<Envelope> {
        self.outbox.pop_front()
    }

    /// Queue a message that may leave at once (it promises nothing about our storage).
    pub(super) fn send(&mut self, to: NodeId, msg: impl Into<OutMessage>) {
        self.outbox_push(Envelope::new(to, msg));
    }

    /// Queue a reply that must wait for durability when anything is unsynced.
    pub(super) fn respond(&mut self, to: NodeId, msg: impl Into<OutMessage>) {
        let msg = msg.into();
        if self.plant.vote_not_persisted() && matches!(msg, Message::VoteResp(_)) {
            self.outbox_push(Envelope { to, msg });
            return;
        }
        if self.needs_sync() || self.hard_state_changed() {
            if let Some(slot) = self
                .held
                .iter_mut()
                .find(|e| e.to == to && same_kind(&e.msg, &msg))
            {
                merge_held(&mut slot.msg, msg);
            } else if self.held.push(Envelope { to, msg }).is_err() {
                self.stats.dropped_messages += 1;
            }
        } else {
            self.outbox_push(Envelope { to, msg });
        }
    }

    /// Everything held is durable now: let it go.
    pub(super) fn release_held(&mut self) {
        for env in core::mem::take(&mut self.held) {
            self.outbox_push(env);
        }
    }

    pub(super) fn outbox_push(&mut self, env: Envelope) {
        if self.outbox.push_back(env).is_err() {
            self.stats.dropped_messages += 1;
        }
    }
}

/// Fold a newer answer into a held one of the same kind to the same peer. Normally the newer
/// supersedes it. Two acknowledgements of appends in the same term merge instead: entries a
/// follower acknowledged to the leader of a term stay matched for the rest of that term, so the
/// higher `match_index` (and read round) stands. Otherwise the answer to a heartbeat stepped
/// after appends in the same batch (its `prev_index` is the leader's older view) would replace
/// their acknowledgement, and the leader would wait for its window to time out.
fn merge_held(held: &mut OutMessage, new: OutMessage) {
    if let (Message::AppendResp(h), Message::AppendResp(n)) = (&*held, &new) {
        if h.success && n.success && h.term == n.term {
            *held = Message::AppendResp(AppendResp {
                term: n.term,
                success: true,
                match_index: n.match_index.max(h.match_index),
                conflict_term: 0,
                conflict_index: 0,
                read_seq: n.read_seq.max(h.read_seq),
                // Each answer's clocks are a pair (the stamp was read after the echoed send);
                // keep the newer pair.
                echo_ms: if n.clock_ms != 0 {
                    n.echo_ms
                } else {
                    h.echo_ms
                },
                clock_ms: if n.clock_ms != 0 {
                    n.clock_ms
                } else {
                    h.clock_ms
                },
            });
            return;
        }
    }
    *held = new;
}

fn same_kind(a: &OutMessage, b: &OutMessage) -> bool {
    core::mem::discriminant(a) == core::mem::discriminant(b)
}
