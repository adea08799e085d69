//! Framing and sending the messages Raft queued. An append's entries and a snapshot chunk's
//! data are read from storage straight into the send buffer, behind the frame's reserved
//! prefix, and the frame is built around them: the core never copies a payload.

use super::Node;
use crate::io::Transport;
use crate::message::{Append, Message, Snapshot, SnapshotHeader};
use crate::raft::Envelope;
use crate::storage::Storage;
use crate::wire::{self, Body, FrameHeader, FRAME_PREFIX_RESERVE, WIRE_VERSION};

impl<S: Storage, T: Transport, M, B: AsMut<[u8]>> Node<S, T, M, B> {
    pub(super) fn send_outbox(&mut self) {
        while let Some(env) = self.raft.pop_message() {
            self.send_one(env);
        }
    }

    fn send_one(&mut self, env: Envelope) {
        let header = FrameHeader {
            version: WIRE_VERSION,
            cluster_id: self.cfg.cluster_id,
            group: self.cfg.group,
            from: self.cfg.node_id,
            to: env.to,
        };
        let tail_at = FRAME_PREFIX_RESERVE + 5;
        let buf = self.buf.as_mut();
        let room = buf.len().saturating_sub(tail_at + 4);
        let mut msg = env.msg;
        let mut tail_len = 0;
        if let Message::Append(Append {
            prev_index, count, ..
        }) = &mut msg
        {
            if *count > 0 {
                let planned_last = *prev_index + u64::from(*count);
                let limit = room.min(self.cfg.raft.max_bytes_per_message);
                match self.store.read_entries(
                    *prev_index + 1,
                    planned_last,
                    &mut buf[tail_at..tail_at + limit],
                ) {
                    Ok(got) => {
                        tail_len = got.bytes;
                        if got.count < *count {
                            self.raft.sent_fewer(
                                env.to,
                                planned_last,
                                *prev_index + u64::from(got.count),
                            );
                            *count = got.count;
                        }
                    }
                    Err(e) => {
                        warn!("cannot read entries for a peer; message dropped");
                        let _ = e;
                        return;
                    }
                }
            }
        }
        // A queued snapshot chunk names its snapshot; the header on the wire comes from storage.
        let mut stored = None;
        if let Message::Snapshot(Snapshot {
            meta, offset, done, ..
        }) = &mut msg
        {
            let Some(m) = self.store.snapshot_meta().filter(|m| m.index == meta.index) else {
                return;
            };
            let chunk = room.min(self.cfg.raft.snapshot_chunk_bytes);
            match self
                .store
                .snapshot_read(*offset, &mut buf[tail_at..tail_at + chunk])
            {
                Ok(n) => {
                    tail_len = n;
                    *done = *offset + n as u64 >= m.size_bytes;
                }
                Err(_) => return,
            }
            stored = Some(m);
        }
        let msg: Message = msg.map_snapshot(|r| {
            let m = stored.unwrap_or_default();
            SnapshotHeader {
                index: r.index,
                term: r.term,
                membership: m.membership,
                size_bytes: m.size_bytes,
                crc: m.crc,
            }
        });
        match wire::encode_with_tail(&header, &Body::Raft(msg), buf, tail_at, tail_len) {
            Ok(range) => {
                let frame = &buf[range];
                self.stats.frames_out += 1;
                self.stats.bytes_out += frame.len() as u64;
                if self.transport.send(env.to, frame).is_err() {
                    self.stats.send_failures += 1;
                }
            }
            Err(_) => self.stats.send_failures += 1,
        }
    }
}
