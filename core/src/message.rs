//! Peer messages of one Raft group.
//!
//! Messages carry indices and terms only. Entry payloads of `Append` and the data of
//! `Snapshot` chunks travel as the frame's tail (see [`crate::wire`]), so the core never copies
//! them: the platform reads them from storage straight into the send buffer.
//!
//! Each variant of [`Message`] wraps a payload struct of its own, so a handler takes exactly
//! the message it handles (`&Append`). postcard encodes a newtype variant around a struct
//! exactly like a struct variant with the same fields, so this shape is the wire format of
//! the version it was written for (pinned byte for byte by `wire`'s golden tests). Version 2
//! added the clock fields of `Append` and `AppendResp` (the leader's clock check).

use crate::membership::Membership;
use crate::types::{LogIndex, Term};
use serde::{Deserialize, Serialize};

/// A trial election: would you vote for me in `term` (the sender's term + 1)?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PreVote {
    /// The term the sender would campaign in.
    pub term: Term,
    /// Index of the sender's last log entry.
    pub last_index: LogIndex,
    /// Term of the sender's last log entry.
    pub last_term: Term,
}

/// A vote request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Vote {
    /// The candidate's term.
    pub term: Term,
    /// Index of the candidate's last log entry.
    pub last_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_term: Term,
    /// Set when a leader transfer asked for this election: voters ignore their leader lease.
    pub transfer: bool,
}

/// The answer to a [`Vote`] or a [`PreVote`]. A granted pre-vote echoes the asked term; every
/// other answer carries the responder's term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VoteResp {
    /// The responder's term (or the asked term, for a granted pre-vote).
    pub term: Term,
    /// Whether the (pre-)vote is granted.
    pub granted: bool,
}

/// Entries to append after `prev_index`; `count` entries follow in the frame's tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Append {
    /// The leader's term.
    pub term: Term,
    /// Index of the entry before the new ones.
    pub prev_index: LogIndex,
    /// Term of that entry.
    pub prev_term: Term,
    /// The leader's commit index.
    pub commit: LogIndex,
    /// Number of entries in the tail; 0 for a heartbeat.
    pub count: u32,
    /// The leader's read round, echoed back to confirm leadership for reads and the lease.
    pub read_seq: u64,
    /// The leader's clock when it made the message (milliseconds, low 32 bits; 0: none), echoed
    /// back so that the leader can compare the follower's clock with its own.
    pub clock_ms: u32,
}

/// The answer to an [`Append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AppendResp {
    /// The responder's term.
    pub term: Term,
    /// Whether the log matched at `prev_index`.
    pub success: bool,
    /// On success: the last index now known to match the leader's log.
    pub match_index: LogIndex,
    /// On rejection: the term of the follower's entry at the conflict point (0 if none).
    pub conflict_term: Term,
    /// On rejection: the first index the leader should try next.
    pub conflict_index: LogIndex,
    /// The read round echoed from the request.
    pub read_seq: u64,
    /// The request's `clock_ms`, echoed (0: none).
    pub echo_ms: u32,
    /// The responder's clock when it answered (milliseconds, low 32 bits; 0: none). With
    /// `echo_ms` it tells the leader how far the responder's clock moved while its own did.
    pub clock_ms: u32,
}

/// One chunk of a snapshot; the chunk's bytes follow in the frame's tail. `H` describes the
/// snapshot (see [`Message`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Snapshot<H = SnapshotHeader> {
    /// The leader's term.
    pub term: Term,
    /// What the snapshot covers.
    pub meta: H,
    /// Byte offset of this chunk in the snapshot data.
    pub offset: u64,
    /// Whether this is the last chunk.
    pub done: bool,
}

/// The answer to a [`Snapshot`] chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SnapshotResp {
    /// The responder's term.
    pub term: Term,
    /// Index of the snapshot being received.
    pub index: LogIndex,
    /// The offset the follower expects next (resumes a transfer after a lost chunk).
    pub next_offset: u64,
    /// Whether the whole snapshot is installed.
    pub done: bool,
}

/// A leader transfer: start an election now, ignoring the election timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TimeoutNow {
    /// The leader's term.
    pub term: Term,
}

/// A follower asks the leader for a read index on behalf of its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadIndex {
    /// The follower's term.
    pub term: Term,
    /// The follower's id for this request.
    pub id: u64,
}

/// The leader's answer to a [`ReadIndex`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ReadIndexResp {
    /// The leader's term.
    pub term: Term,
    /// The follower's request id.
    pub id: u64,
    /// The index to wait for before reading, or `None` if the leader could not serve it.
    pub index: Option<LogIndex>,
}

/// A leader whose group is settled tells its followers it stops heartbeating (quiescence, see
/// `raft/quiesce.rs`): a follower whose log ends at `commit` stops its election timer too.
#[cfg(feature = "quiesce")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Quiet {
    /// The leader's term.
    pub term: Term,
    /// The leader's commit index, which is also its last index.
    pub commit: LogIndex,
}

/// A Raft peer message. `term` is the sender's current term unless noted.
///
/// `H` is what a `Snapshot` chunk says about its snapshot. On the wire it is the full
/// [`SnapshotHeader`] (the default). Inside the core's outbox it is a [`SnapshotRef`] (index and
/// term only): the driver fills in the rest from storage when it frames the chunk, so a queued
/// message stays small (the header embeds a whole [`Membership`]).
///
/// The order of the variants is the wire format: never reorder them, only append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Message<H = SnapshotHeader> {
    /// See [`PreVote`].
    PreVote(PreVote),
    /// The answer to a [`PreVote`].
    PreVoteResp(VoteResp),
    /// See [`Vote`].
    Vote(Vote),
    /// The answer to a [`Vote`].
    VoteResp(VoteResp),
    /// See [`Append`].
    Append(Append),
    /// See [`AppendResp`].
    AppendResp(AppendResp),
    /// See [`Snapshot`].
    Snapshot(Snapshot<H>),
    /// See [`SnapshotResp`].
    SnapshotResp(SnapshotResp),
    /// See [`TimeoutNow`].
    TimeoutNow(TimeoutNow),
    /// See [`ReadIndex`].
    ReadIndex(ReadIndex),
    /// See [`ReadIndexResp`].
    ReadIndexResp(ReadIndexResp),
    /// See [`Quiet`] (only with the `quiesce` feature; a build without it refuses the frame).
    #[cfg(feature = "quiesce")]
    Quiet(Quiet),
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

macro_rules! into_message {
    ($($payload:ident => $variant:ident),* $(,)?) => {$(
        impl<H> From<$payload> for Message<H> {
            fn from(m: $payload) -> Self {
                Message::$variant(m)
            }
        }
    )*};
}

into_message!(
    PreVote => PreVote,
    Vote => Vote,
    Append => Append,
    AppendResp => AppendResp,
    SnapshotResp => SnapshotResp,
    TimeoutNow => TimeoutNow,
    ReadIndex => ReadIndex,
    ReadIndexResp => ReadIndexResp,
);

#[cfg(feature = "quiesce")]
into_message!(Quiet => Quiet);

impl<H> From<Snapshot<H>> for Message<H> {
    fn from(m: Snapshot<H>) -> Self {
        Message::Snapshot(m)
    }
}

impl<H> Message<H> {
    /// The same message with the snapshot description of a `Snapshot` chunk replaced by
    /// `f(meta)`; every other message is unchanged.
    pub fn map_snapshot<H2>(self, f: impl FnOnce(H) -> H2) -> Message<H2> {
        match self {
            Message::PreVote(m) => Message::PreVote(m),
            Message::PreVoteResp(m) => Message::PreVoteResp(m),
            Message::Vote(m) => Message::Vote(m),
            Message::VoteResp(m) => Message::VoteResp(m),
            Message::Append(m) => Message::Append(m),
            Message::AppendResp(m) => Message::AppendResp(m),
            Message::Snapshot(Snapshot {
                term,
                meta,
                offset,
                done,
            }) => Message::Snapshot(Snapshot {
                term,
                meta: f(meta),
                offset,
                done,
            }),
            Message::SnapshotResp(m) => Message::SnapshotResp(m),
            Message::TimeoutNow(m) => Message::TimeoutNow(m),
            Message::ReadIndex(m) => Message::ReadIndex(m),
            Message::ReadIndexResp(m) => Message::ReadIndexResp(m),
            #[cfg(feature = "quiesce")]
            Message::Quiet(m) => Message::Quiet(m),
        }
    }

    /// The term the message carries.
    pub fn term(&self) -> Term {
        match self {
            Message::PreVote(m) => m.term,
            Message::PreVoteResp(m) | Message::VoteResp(m) => m.term,
            Message::Vote(m) => m.term,
            Message::Append(m) => m.term,
            Message::AppendResp(m) => m.term,
            Message::Snapshot(m) => m.term,
            Message::SnapshotResp(m) => m.term,
            Message::TimeoutNow(m) => m.term,
            Message::ReadIndex(m) => m.term,
            Message::ReadIndexResp(m) => m.term,
            #[cfg(feature = "quiesce")]
            Message::Quiet(m) => m.term,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::PreVote(_) => "PreVote",
            Message::PreVoteResp(_) => "PreVoteResp",
            Message::Vote(_) => "Vote",
            Message::VoteResp(_) => "VoteResp",
            Message::Append(_) => "Append",
            Message::AppendResp(_) => "AppendResp",
            Message::Snapshot(_) => "Snapshot",
            Message::SnapshotResp(_) => "SnapshotResp",
            Message::TimeoutNow(_) => "TimeoutNow",
            Message::ReadIndex(_) => "ReadIndex",
            Message::ReadIndexResp(_) => "ReadIndexResp",
            #[cfg(feature = "quiesce")]
            Message::Quiet(_) => "Quiet",
        }
    }
}
