//! The leader's bookkeeping for one peer: how far its log matches, what is in flight, and
//! whether it is being probed, replicated to, or sent a snapshot.

use super::clock::ClockCheck;
use crate::limits::MAX_INFLIGHT;
use crate::types::{LogIndex, NodeId, Term};

/// How the leader is currently feeding a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Unknown match point: one append at a time until one succeeds.
    Probe,
    /// Known match point: appends are pipelined up to the inflight window.
    Replicate,
    /// The peer needs a snapshot; chunks go one at a time.
    Snapshot,
}

/// A ring of the last index of each AppendEntries in flight, oldest first.
#[derive(Clone, Debug)]
pub struct Inflights {
    ring: [LogIndex; MAX_INFLIGHT],
    start: usize,
    count: usize,
}

impl Inflights {
    const fn new() -> Self {
        Inflights {
            ring: [0; MAX_INFLIGHT],
            start: 0,
            count: 0,
        }
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, last: LogIndex) {
        invariant!(
            self.count < MAX_INFLIGHT,
            "an append sent to a full window ({} in flight)",
            self.count
        );
        let at = (self.start + self.count) % MAX_INFLIGHT;
        self.ring[at] = last;
        self.count += 1;
    }

    /// Forget every message whose entries are all at or below `index`.
    fn free_upto(&mut self, index: LogIndex) {
        while self.count > 0 && self.ring[self.start] <= index {
            self.start = (self.start + 1) % MAX_INFLIGHT;
            self.count -= 1;
        }
    }

    fn newest(&self) -> Option<LogIndex> {
        (self.count > 0).then(|| self.ring[(self.start + self.count - 1) % MAX_INFLIGHT])
    }

    fn set_newest(&mut self, last: LogIndex) {
        if self.count > 0 {
            let at = (self.start + self.count - 1) % MAX_INFLIGHT;
            self.ring[at] = last;
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.count = 0;
    }
}

/// A snapshot being streamed to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotSend {
    /// The snapshot's last index.
    pub index: LogIndex,
    /// The snapshot's last term.
    pub term: Term,
    /// Bytes the peer has confirmed.
    pub acked_offset: u64,
    /// When the outstanding chunk was sent (ms), if one is outstanding.
    pub sent_at_ms: Option<u64>,
}

/// The leader's view of one peer.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The peer.
    pub id: NodeId,
    /// Highest index known to match the leader's log.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    /// Probe, replicate or snapshot.
    pub state: ProgressState,
    /// Appends in flight (replicate state).
    pub inflight: Inflights,
    /// In probe state: when the outstanding probe was sent, if one is.
    pub probe_sent_at_ms: Option<u64>,
    /// Heard from since the last CheckQuorum round.
    pub recent_active: bool,
    /// Highest read round the peer has echoed in this term.
    pub read_seq_acked: u64,
    /// The snapshot transfer, in snapshot state.
    pub snapshot: Option<SnapshotSend>,
    /// Last time the window made progress (or was empty); a window stuck longer than the
    /// stall timeout lost its messages and falls back to probing.
    pub progress_at_ms: u64,
    /// Whether the peer's clock runs at this leader's rate (its echoes count toward the lease
    /// only while it does).
    pub clock: ClockCheck,
}

impl Progress {
    /// Fresh progress for a peer when a leader takes office with `last_index`.
    pub fn new(id: NodeId, last_index: LogIndex) -> Self {
        Progress {
            id,
            match_index: 0,
            next_index: last_index + 1,
            state: ProgressState::Probe,
            inflight: Inflights::new(),
            probe_sent_at_ms: None,
            recent_active: false,
            read_seq_acked: 0,
            snapshot: None,
            progress_at_ms: 0,
            clock: ClockCheck::new(),
        }
    }

    /// Whether appends are in flight and none was acknowledged for `stall_ms`.
    pub fn stalled(&self, now_ms: u64, stall_ms: u64) -> bool {
        self.state == ProgressState::Replicate
            && !self.inflight.is_empty()
            && now_ms >= self.progress_at_ms + stall_ms
    }

    /// Whether another append may be sent now.
    pub fn can_send(&self, max_inflight: usize, now_ms: u64, retry_ms: u64) -> bool {
        match self.state {
            ProgressState::Probe => match self.probe_sent_at_ms {
                None => true,
                Some(t) => now_ms >= t + retry_ms,
            },
            ProgressState::Replicate => self.inflight.len() < max_inflight,
            ProgressState::Snapshot => false,
        }
    }

    /// Record an append of entries up to `last` being sent.
    pub fn on_sent(&mut self, last: LogIndex, now_ms: u64) {
        match self.state {
            ProgressState::Probe => self.probe_sent_at_ms = Some(now_ms),
            ProgressState::Replicate => {
                if self.inflight.is_empty() {
                    self.progress_at_ms = now_ms;
                }
                self.inflight.add(last);
                self.next_index = last + 1;
            }
            ProgressState::Snapshot => {}
        }
    }

    /// The platform sent fewer entries than planned (its buffer filled): rewind to what went.
    /// Never behind what the peer has acknowledged since the append was planned (an answer to
    /// an earlier append, still on its way when a probe planned this one from further back):
    /// the rest is sent from past the match.
    pub fn on_sent_fewer(&mut self, planned_last: LogIndex, sent_last: LogIndex) {
        if self.state == ProgressState::Replicate && self.inflight.newest() == Some(planned_last) {
            self.inflight.set_newest(sent_last);
            self.inflight.free_upto(self.match_index);
            self.next_index = sent_last.max(self.match_index) + 1;
        }
    }

    /// A successful acknowledgement up to `index` at `now_ms`. Returns whether it was news.
    pub fn on_ack(&mut self, index: LogIndex, now_ms: u64) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.progress_at_ms = now_ms;
        }
        if self.next_index <= index {
            self.next_index = index + 1;
        }
        self.inflight.free_upto(index);
        if self.state == ProgressState::Probe {
            self.state = ProgressState::Replicate;
            self.probe_sent_at_ms = None;
        }
        news
    }

    /// Fall back to probing from `next`.
    pub fn become_probe(&mut self, next: LogIndex) {
        self.state = ProgressState::Probe;
        self.next_index = next.max(self.match_index + 1);
        self.inflight.clear();
        self.probe_sent_at_ms = None;
        self.snapshot = None;
    }

    /// Start streaming a snapshot.
    pub fn become_snapshot(&mut self, index: LogIndex, term: Term) {
        self.state = ProgressState::Snapshot;
        self.inflight.clear();
        self.probe_sent_at_ms = None;
        self.snapshot = Some(SnapshotSend {
            index,
            term,
            acked_offset: 0,
            sent_at_ms: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_and_drains_in_order() {
        let mut p = Progress::new(2, 10);
        assert!(p.on_ack(10, 0) || p.match_index == 10);
        assert_eq!(p.state, ProgressState::Replicate);
        for last in [12, 14, 16] {
            assert!(p.can_send(3, 0, 100));
            p.on_sent(last, 0);
        }
        assert!(!p.can_send(3, 0, 100), "window of 3 is full");
        p.on_ack(14, 0);
        assert_eq!(p.inflight.len(), 1);
        assert!(p.can_send(3, 0, 100));
        assert_eq!(p.next_index, 17);
    }

    #[test]
    fn probe_waits_for_answer_or_retry_timer() {
        let mut p = Progress::new(2, 5);
        assert!(p.can_send(4, 0, 100));
        p.on_sent(5, 0);
        assert!(!p.can_send(4, 50, 100));
        assert!(p.can_send(4, 100, 100));
    }

    #[test]
    fn sending_fewer_never_rewinds_next_behind_the_match() {
        // A probe planned an append from 41 (the peer's answers to earlier appends still on
        // their way); one of them acknowledges up to 70 before the append is read, and the
        // send buffer takes only 41..=50 of it.
        let mut p = Progress::new(2, 0);
        p.on_ack(0, 0);
        p.become_probe(41);
        p.on_ack(40, 0);
        p.on_sent(100, 0);
        p.on_ack(70, 0);
        p.on_sent_fewer(100, 50);
        assert_eq!((p.match_index, p.next_index), (70, 71));
        assert!(p.inflight.is_empty(), "nothing in flight past the match");
    }

    #[test]
    fn sending_fewer_rewinds_next() {
        let mut p = Progress::new(2, 0);
        p.on_ack(0, 0);
        p.on_sent(100, 0);
        p.on_sent_fewer(100, 40);
        assert_eq!(p.next_index, 41);
        p.on_ack(40, 0);
        assert!(p.inflight.is_empty());
    }
}
