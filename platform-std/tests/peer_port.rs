//! The raft (peer) port as an attacker meets it: after a handshake that claims to be the
//! leader, every kind of malformed frame is refused, counted by cause on `/metrics`, and the
//! node serves on without taking the frames' term.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shoal_core::EntryKind;
use shoal_testkit::{wait_for, Cluster, WAIT};

/// Peer frames as an attacker on the raft port would write them: after a valid handshake
/// (claiming to be the leader), every kind of malformed frame the core refuses.
mod forged {
    use shoal_core::entry::{self, EntryRef};
    use shoal_core::handshake::Hello;
    use shoal_core::membership::{Membership, NodeSet};
    use shoal_core::message::{Append, Message, Snapshot, SnapshotHeader};
    use shoal_core::record::CRC32C;
    use shoal_core::wire::{self, Body, FrameHeader};
    use shoal_core::EntryKind;

    /// A term far above any the cluster reached: the frames are refused before it matters.
    pub const TERM: u64 = 1 << 40;

    pub fn frame(cluster_id: u64, from: u64, to: u64, body: Body, tail: &[u8]) -> Vec<u8> {
        let h = FrameHeader::new(cluster_id, 0, from, to);
        let mut buf = vec![0u8; tail.len() + 1024];
        let n = wire::encode(&h, &body, tail, &mut buf).expect("a frame fits");
        buf.truncate(n);
        buf
    }

    pub fn hello(me: u64, to: u64, members: &[u64]) -> Body {
        Body::Hello(Hello {
            cluster_id: 1,
            node_id: me,
            expected_peer: to,
            group: 0,
            members: NodeSet::from_slice(members).expect("a few members"),
        })
    }

    pub fn append(count: u32) -> Body {
        Body::Raft(Message::Append(Append {
            term: TERM,
            prev_index: 0,
            prev_term: 0,
            commit: 0,
            count,
            read_seq: 0,
            clock_ms: 0,
        }))
    }

    pub fn entries(list: &[(u64, u64, EntryKind, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(index, term, kind, data) in list {
            let e = EntryRef {
                index,
                term,
                kind,
                data,
            };
            let mut buf = vec![0u8; e.encoded_len()];
            entry::encode(&e, &mut buf).expect("sized to fit");
            out.extend_from_slice(&buf);
        }
        out
    }

    /// A one-chunk snapshot whose header's CRC does not match its data.
    pub fn corrupt_snapshot(members: &[u64], data: &[u8]) -> Body {
        Body::Raft(Message::Snapshot(Snapshot {
            term: TERM,
            meta: SnapshotHeader {
                index: 1 << 30,
                term: TERM,
                membership: Membership::new(members, &[]).expect("valid members"),
                size_bytes: data.len() as u64,
                crc: CRC32C.checksum(data) ^ 1,
            },
            offset: 0,
            done: true,
        }))
    }
}

fn refused(c: &Cluster, id: u64, cause: &str) -> u64 {
    let (_, body) = c.http_get(id, "/metrics").expect("metrics");
    let label = format!("shoal_refused_inputs_total{{group=\"0\",cause=\"{cause}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&label)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {label} in the metrics"))
}

#[test]
fn malformed_peer_frames_are_refused_and_the_node_keeps_serving() {
    let mut c = Cluster::builder().build();
    let leader = c.start_serving(9);
    let to = c.other_than(leader);

    // Claim to be the leader on the target's raft port: the handshake checks membership only.
    let mut s = TcpStream::connect(&c.node(to).raft).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = forged::hello(leader, to, &[1, 2, 3]);
    s.write_all(&forged::frame(1, leader, to, hello, &[]))
        .unwrap();
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    let mut rest = vec![0u8; u32::from_le_bytes(head) as usize + 4];
    s.read_exact(&mut rest).unwrap();
    let config = forged::entries(&[(1, 1, EntryKind::Config, &[0xFF])]);
    let skip = forged::entries(&[
        (1, 1, EntryKind::Normal, b"a"),
        (3, 1, EntryKind::Normal, b"b"),
    ]);
    let future = forged::entries(&[(1, forged::TERM + 1, EntryKind::Normal, b"a")]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // One entry declared, none sent: this frame used to stop shoald.
        (
            "entry_count",
            forged::frame(1, leader, to, forged::append(1), &[]),
        ),
        (
            "bad_config_entry",
            forged::frame(1, leader, to, forged::append(1), &config),
        ),
        (
            "not_contiguous",
            forged::frame(1, leader, to, forged::append(2), &skip),
        ),
        (
            "impossible_term",
            forged::frame(1, leader, to, forged::append(1), &future),
        ),
        (
            "snapshot_checksum",
            forged::frame(
                1,
                leader,
                to,
                forged::corrupt_snapshot(&[1, 2, 3], b"x"),
                b"x",
            ),
        ),
        (
            "wrong_cluster",
            forged::frame(2, leader, to, forged::append(0), &[]),
        ),
        (
            "wrong_node",
            forged::frame(1, leader, 99, forged::append(0), &[]),
        ),
    ];
    for (cause, bytes) in &cases {
        assert_eq!(refused(&c, to, cause), 0, "{cause} before");
        s.write_all(bytes).unwrap();
        wait_for(&format!("{cause} to be counted"), WAIT, || {
            refused(&c, to, cause) > 0
        });
    }
    // A frame that does not even decode (its CRC is wrong) is dropped as well.
    let mut torn = forged::frame(1, leader, to, forged::append(0), &[]);
    let last = torn.len() - 1;
    torn[last] ^= 0xFF;
    s.write_all(&torn).unwrap();

    // Every node is alive, the target never took the forged frames' term, and it serves.
    for id in c.ids() {
        let exited = c.node_mut(id).proc_mut().unwrap().try_exit();
        assert!(
            exited.is_none(),
            "node {id} stopped: {exited:?}\n{}",
            c.node(id).log()
        );
    }
    c.put(0, 9, 2, "after", "2");
    c.assert_reads(to, 0, "after", "2");
    assert!(c.status(to, 0).unwrap().term < forged::TERM);
}
