//! Framing and sending the messages Raft queued. An append's entries and a snapshot chunk's
//! data are read from storage straight into the send buffer, behind the frame's reserved
//! prefix, and the frame is built around them: the core never copies a payload.

use super::{Node, NodeError};
use crate::io::Transport;
use crate::message::{Append, Message, Snapshot, SnapshotHeader, SnapshotRef};
use crate::plant::Plant;
use crate::raft::Envelope;
use crate::storage::{Storage, StorageError};
use crate::types::{NodeId, Role};
use crate::wire::{self, Body, FrameHeader, FRAME_PREFIX_RESERVE};

/// Where a tail starts in the send buffer: after the reserved prefix and the record header.
const TAIL_AT: usize = FRAME_PREFIX_RESERVE + 5;

impl<S: Storage, T: Transport, M, B: AsMut<[u8]>, P: Plant> Node<S, T, M, B, P> {
    /// Send every message Raft queued. A message whose payload cannot be read is dropped
    /// (Raft sends again, as after a loss) and the failure policy judges why: only a fatal
    /// storage error is returned.
    pub(super) fn send_outbox(&mut self, now_ms: u64) -> Result<(), NodeError> {
        while let Some(env) = self.raft.pop_message() {
            let sent = self.send_one(env);
            self.apply_policy(now_ms, sent)?;
        }
        Ok(())
    }

    fn send_one(&mut self, env: Envelope) -> Result<(), NodeError> {
        let (msg, tail_len) = match env.msg {
            Message::Append(mut a) => {
                let Some(n) = self.read_entries_for(env.to, &mut a)? else {
                    return Ok(());
                };
                (Message::Append(a), n)
            }
            Message::Snapshot(chunk) => {
                let Some((chunk, n)) = self.read_chunk(chunk)? else {
                    return Ok(());
                };
                (Message::Snapshot(chunk), n)
            }
            other => (other.map_snapshot(|_| unreachable!("no snapshot chunk")), 0),
        };
        self.frame_and_send(env.to, msg, tail_len);
        Ok(())
    }

    /// Read the entries an `Append` plans into the send buffer. Fewer may fit: the message
    /// then says so and Raft is told. Returns the tail's length, or `None` if the entries are
    /// gone (compacted since the append was queued: the peer gets the snapshot next time; or
    /// cut, this node no longer leading the term it queued the append in).
    fn read_entries_for(&mut self, to: NodeId, a: &mut Append) -> Result<Option<usize>, NodeError> {
        if a.count == 0 {
            return Ok(Some(0));
        }
        // Queued while this node led `a.term`: if it leads that term no longer, a new leader's
        // append may have cut those entries in the same batch. The stale append is dropped,
        // as the network may drop any message.
        if self.raft.role() != Role::Leader || self.raft.term() != a.term {
            return Ok(None);
        }
        let planned_last = a.prev_index + u64::from(a.count);
        let limit = self.cfg.raft.max_bytes_per_message;
        let lo = a.prev_index + 1;
        let room = tail_room(self.buf.as_mut(), limit);
        let got = match self.store.read_entries(lo, planned_last, room) {
            Ok(got) => got,
            Err(StorageError::Compacted(_)) => return Ok(None),
            Err(e) => return Err(NodeError::Storage(e)),
        };
        if got.count < a.count {
            self.raft
                .sent_fewer(to, planned_last, a.prev_index + u64::from(got.count));
            a.count = got.count;
        }
        Ok(Some(got.bytes))
    }

    /// Read a snapshot chunk into the send buffer and give it the full header from storage.
    /// `None` if the snapshot was replaced since the chunk was queued.
    fn read_chunk(
        &mut self,
        chunk: Snapshot<SnapshotRef>,
    ) -> Result<Option<(Snapshot, usize)>, NodeError> {
        let Some(m) = self
            .store
            .snapshot_meta()
            .filter(|m| m.index == chunk.meta.index)
        else {
            return Ok(None);
        };
        let size = self.cfg.raft.snapshot_chunk_bytes;
        let room = tail_room(self.buf.as_mut(), size);
        let n = match self.store.snapshot_read(chunk.offset, room) {
            Ok(n) => n,
            Err(StorageError::Compacted(_) | StorageError::NoSnapshot) => return Ok(None),
            Err(e) => return Err(NodeError::Storage(e)),
        };
        let full = Snapshot {
            term: chunk.term,
            done: chunk.offset + n as u64 >= m.size_bytes,
            offset: chunk.offset,
            meta: SnapshotHeader {
                index: chunk.meta.index,
                term: chunk.meta.term,
                membership: m.membership,
                size_bytes: m.size_bytes,
                crc: m.crc,
            },
        };
        Ok(Some((full, n)))
    }

    /// Build the frame around the tail already in the buffer, and hand it to the transport.
    fn frame_and_send(&mut self, to: NodeId, msg: Message, tail_len: usize) {
        let header = FrameHeader::new(self.cfg.cluster_id, self.cfg.group, self.cfg.node_id, to);
        let buf = self.buf.as_mut();
        let body = Body::Raft(msg);
        match wire::encode_with_tail(&header, &body, buf, TAIL_AT, tail_len) {
            Ok(range) => {
                let frame = &buf[range];
                self.stats.frames_out += 1;
                self.stats.bytes_out += frame.len() as u64;
                if self.transport.send(to, frame).is_err() {
                    self.stats.send_failures += 1;
                }
            }
            Err(_) => self.stats.send_failures += 1,
        }
    }
}

/// The part of the send buffer a tail of at most `limit` bytes is read into: behind the
/// frame's prefix, leaving room for its CRC.
fn tail_room(buf: &mut [u8], limit: usize) -> &mut [u8] {
    let end = buf.len().saturating_sub(4).max(TAIL_AT);
    let start = TAIL_AT.min(end);
    &mut buf[start..end.min(start + limit)]
}
