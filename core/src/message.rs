//! Peer messages of one Raft group.
//!
//! Messages carry indices and terms only. Entry payloads of `Append` and the data of
//! `Snapshot` chunks travel as the frame's tail (see [`crate::wire`]), so the core never copies
//! them: the platform reads them from storage straight into the send buffer.

use crate::membership::Membership;
use crate::types::{LogIndex, Term};
use serde::{Deserialize, Serialize};

/// A Raft peer message. `term` is the sender's current term unless noted.
///
/// `H` is what a `Snapshot` chunk says about its snapshot. On the wire it is the full
/// [`SnapshotHeader`] (the default). Inside the core's outbox it is a [`SnapshotRef`] (index and
/// term only): the driver fills in the rest from storage when it frames the chunk, so a queued
/// message stays small (the header embeds a whole [`Membership`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<H = SnapshotHeader> {
    /// A trial election: would you vote for me in `term` (the sender's term + 1)?
    PreVote {
        /// The term the sender would campaign in.
        term: Term,
        /// Index of the sender's last log entry.
        last_index: LogIndex,
        /// Term of the sender's last log entry.
        last_term: Term,
    },
    /// Answer to [`Message::PreVote`]; `term` echoes the asked term when granted.
    PreVoteResp {
        /// The asked term if granted, else the responder's term.
        term: Term,
        /// Whether the pre-vote is granted.
        granted: bool,
    },
    /// A vote request.
    Vote {
        /// The candidate's term.
        term: Term,
        /// Index of the candidate's last log entry.
        last_index: LogIndex,
        /// Term of the candidate's last log entry.
        last_term: Term,
        /// Set when a leader transfer asked for this election: voters ignore their leader lease.
        transfer: bool,
    },
    /// Answer to [`Message::Vote`].
    VoteResp {
        /// The responder's term.
        term: Term,
        /// Whether the vote is granted.
        granted: bool,
    },
    /// Entries to append after `prev_index`; `count` entries follow in the frame's tail.
    Append {
        /// The leader's term.
        term: Term,
        /// Index of the entry before the new ones.
        prev_index: LogIndex,
        /// Term of that entry.
        prev_term: Term,
        /// The leader's commit index.
        commit: LogIndex,
        /// Number of entries in the tail; 0 for a heartbeat.
        count: u32,
        /// The leader's read round, echoed back to confirm leadership for reads and the lease.
        read_seq: u64,
    },
    /// Answer to [`Message::Append`].
    AppendResp {
        /// The responder's term.
        term: Term,
        /// Whether the log matched at `prev_index`.
        success: bool,
        /// On success: the last index now known to match the leader's log.
        match_index: LogIndex,
        /// On rejection: the term of the follower's entry at the conflict point (0 if none).
        conflict_term: Term,
        /// On rejection: the first index the leader should try next.
        conflict_index: LogIndex,
        /// The read round echoed from the request.
        read_seq: u64,
    },
    /// One chunk of a snapshot; the chunk's bytes follow in the frame's tail.
    Snapshot {
        /// The leader's term.
        term: Term,
        /// What the snapshot covers.
        meta: H,
        /// Byte offset of this chunk in the snapshot data.
        offset: u64,
        /// Whether this is the last chunk.
        done: bool,
    },
    /// Answer to [`Message::Snapshot`].
    SnapshotResp {
        /// The responder's term.
        term: Term,
        /// Index of the snapshot being received.
        index: LogIndex,
        /// The offset the follower expects next (resumes a transfer after a lost chunk).
        next_offset: u64,
        /// Whether the whole snapshot is installed.
        done: bool,
    },
    /// A leader transfer: start an election now, ignoring the election timer.
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
    /// A follower asks the leader for a read index on behalf of its clients.
    ReadIndex {
        /// The follower's term.
        term: Term,
        /// The follower's id for this request.
        id: u64,
    },
    /// The leader's answer to [`Message::ReadIndex`].
    ReadIndexResp {
        /// The leader's term.
        term: Term,
        /// The follower's request id.
        id: u64,
        /// The index to wait for before reading, or `None` if the leader could not serve it.
        index: Option<LogIndex>,
    },
}

/// The snapshot fields a `Snapshot` message carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotHeader {
    /// Index of the last entry the snapshot covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
    /// Membership at `index`.
    pub membership: Membership,
    /// Total data size in bytes.
    pub size_bytes: u64,
    /// CRC-32C of the whole data.
    pub crc: u32,
}

/// The snapshot a queued `Snapshot` chunk belongs to; see [`Message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotRef {
    /// Index of the last entry the snapshot covers.
    pub index: LogIndex,
    /// Term of that entry.
    pub term: Term,
}

impl<H> Message<H> {
    /// The same message with the snapshot description of a `Snapshot` chunk replaced by
    /// `f(meta)`; every other message is unchanged.
    pub fn map_snapshot<H2>(self, f: impl FnOnce(H) -> H2) -> Message<H2> {
        match self {
            Message::PreVote {
                term,
                last_index,
                last_term,
            } => Message::PreVote {
                term,
                last_index,
                last_term,
            },
            Message::PreVoteResp { term, granted } => Message::PreVoteResp { term, granted },
            Message::Vote {
                term,
                last_index,
                last_term,
                transfer,
            } => Message::Vote {
                term,
                last_index,
                last_term,
                transfer,
            },
            Message::VoteResp { term, granted } => Message::VoteResp { term, granted },
            Message::Append {
                term,
                prev_index,
                prev_term,
                commit,
                count,
                read_seq,
            } => Message::Append {
                term,
                prev_index,
                prev_term,
                commit,
                count,
                read_seq,
            },
            Message::AppendResp {
                term,
                success,
                match_index,
                conflict_term,
                conflict_index,
                read_seq,
            } => Message::AppendResp {
                term,
                success,
                match_index,
                conflict_term,
                conflict_index,
                read_seq,
            },
            Message::Snapshot {
                term,
                meta,
                offset,
                done,
            } => Message::Snapshot {
                term,
                meta: f(meta),
                offset,
                done,
            },
            Message::SnapshotResp {
                term,
                index,
                next_offset,
                done,
            } => Message::SnapshotResp {
                term,
                index,
                next_offset,
                done,
            },
            Message::TimeoutNow { term } => Message::TimeoutNow { term },
            Message::ReadIndex { term, id } => Message::ReadIndex { term, id },
            Message::ReadIndexResp { term, id, index } => {
                Message::ReadIndexResp { term, id, index }
            }
        }
    }

    /// The term the message carries.
    pub fn term(&self) -> Term {
        match *self {
            Message::PreVote { term, .. }
            | Message::PreVoteResp { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResp { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResp { term, .. }
            | Message::Snapshot { term, .. }
            | Message::SnapshotResp { term, .. }
            | Message::TimeoutNow { term }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexResp { term, .. } => term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteResp { .. } => "PreVoteResp",
            Message::Vote { .. } => "Vote",
            Message::VoteResp { .. } => "VoteResp",
            Message::Append { .. } => "Append",
            Message::AppendResp { .. } => "AppendResp",
            Message::Snapshot { .. } => "Snapshot",
            Message::SnapshotResp { .. } => "SnapshotResp",
            Message::TimeoutNow { .. } => "TimeoutNow",
            Message::ReadIndex { .. } => "ReadIndex",
            Message::ReadIndexResp { .. } => "ReadIndexResp",
        }
    }
}
