//! The client protocol: what applications, `shoalctl` and `shoal-bench` send to a `shoald`
//! client port, and what comes back.
//!
//! Every message is one record of [`shoal_core::record`] (length, version, body, CRC-32C) whose
//! body is postcard of a [`RequestFrame`] or [`ResponseFrame`]. A connection carries any number
//! of requests in flight (pipelining); each answer echoes its request's `id`. Watch events arrive
//! as extra [`ResponseFrame`]s carrying the id of the `Watch` request that opened them.
//!
//! Writes carry an exactly-once session (`client_id`, `seq`): a client that did not get an
//! answer sends the *same* request again (to any node) and receives the original answer.
//!
//! Id 0 is never a request's: a frame of id 0 is about the connection itself. The server
//! sends one before it closes a connection it will not serve (`Unavailable`: too many
//! connections, nothing read) or can no longer trust (`Error`: a damaged, oversized or
//! unfinished frame).
//!
//! Every answer falls in one of three classes, which `shoalctl` turns into exit codes:
//! definite (it happened, or it certainly did not: [`Response::Error`]),
//! [`Response::NotLeader`] / [`Response::Unavailable`] (it did not happen; try elsewhere or
//! later), and — on the client side only — *indeterminate* (sent, no answer).

/// DtKV's types that answers carry, so that a client needs no dependency on shoal-kv.
pub use shoal_kv::{Cmp, KvError, NodeKind, TxnEffect, WriteResult};

mod auth;
mod frame;
mod info;
mod request;
mod write;

pub use auth::*;
pub use frame::*;
pub use info::*;
pub use request::*;
pub use write::*;
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_stream() {
        let a = RequestFrame {
            version: PROTOCOL_VERSION,
            id: 7,
            group: 0,
            cluster: ANY_CLUSTER,
            request: Request::Write {
                client_id: 9,
                seq: 1,
                op: WriteOp::Put {
                    key: b"a".to_vec(),
                    value: b"1".to_vec(),
                },
            },
        };
        let b = RequestFrame {
            version: PROTOCOL_VERSION,
            id: 8,
            group: 2,
            cluster: 5,
            request: Request::Status,
        };
        let mut buf = Vec::new();
        encode(&a, &mut buf).unwrap();
        encode(&b, &mut buf).unwrap();
        // A partial frame asks for more bytes.
        assert!(decode::<RequestFrame>(&buf[..3]).unwrap().is_none());
        let (got_a, used) = decode::<RequestFrame>(&buf).unwrap().unwrap();
        assert_eq!(got_a, a);
        let (got_b, used_b) = decode::<RequestFrame>(&buf[used..]).unwrap().unwrap();
        assert_eq!(got_b, b);
        assert_eq!(used + used_b, buf.len());
    }

    #[test]
    fn a_response_serialized_once_frames_as_the_whole_frame_would() {
        let health = Response::Health(HealthInfo {
            node_id: 3,
            healthy: false,
            running: true,
            groups: (0..40)
                .map(|g| GroupHealth {
                    group: g,
                    healthy: g != 7,
                    role: "leader".into(),
                    leader: 3,
                    reason: if g == 7 { "no_quorum" } else { "ok" }.into(),
                    detail: String::new(),
                })
                .collect(),
            alarms: vec![AlarmInfo {
                name: "no_space".into(),
                detail: "the disk is full".into(),
            }],
        });
        let responses = [Response::Done { index: 9 }, health];
        // Ids of one to ten bytes as a varint.
        for id in [0, 1, 127, 128, 300, 1 << 40, u64::MAX] {
            for response in &responses {
                let once = EncodedResponse::new(response).unwrap();
                let mut framed = Vec::new();
                encode_encoded(id, &once, &mut framed).unwrap();
                let mut whole = Vec::new();
                let frame = ResponseFrame {
                    id,
                    response: response.clone(),
                };
                encode(&frame, &mut whole).unwrap();
                assert_eq!(framed, whole, "id {id}");
                let (got, used) = decode::<ResponseFrame>(&framed).unwrap().unwrap();
                assert_eq!((got, used), (frame, framed.len()));
            }
        }
    }

    #[test]
    fn health_serialized_once_goes_into_health_and_node_status_answers_as_itself() {
        let health = HealthInfo {
            node_id: 300,
            healthy: false,
            running: true,
            groups: (0..200)
                .map(|g| GroupHealth {
                    group: g,
                    healthy: g % 50 != 0,
                    role: "follower".into(),
                    leader: 1,
                    reason: if g % 50 == 0 { "leader_silent" } else { "ok" }.into(),
                    detail: format!("group {g}"),
                })
                .collect(),
            alarms: Vec::new(),
        };
        let once = EncodedHealth::new(&health).unwrap();
        assert_eq!(
            EncodedResponse::health(&once).unwrap(),
            EncodedResponse::new(&Response::Health(health.clone())).unwrap()
        );
        let info = NodeStatusInfo {
            status: StatusInfo {
                node_id: 300,
                group: 70_000,
                role: "follower".into(),
                term: 1 << 33,
                leader: 1,
                commit: 12,
                applied: 11,
                last_index: 13,
                snapshot_index: 0,
                members: vec![MemberInfo {
                    id: 1,
                    raft_addr: "10.0.0.1:7001".into(),
                    role: "voter".into(),
                    match_index: Some(13),
                    client_addr: "10.0.0.1:7002".into(),
                }],
            },
            raft_addr: "10.0.0.3:7001".into(),
            client_addr: "10.0.0.3:7002".into(),
            version: "0.1.0".into(),
            log_bytes: 1 << 20,
            snapshot_bytes: 0,
            joint: true,
            health: health.clone(),
        };
        // Whatever health `info` holds, the answer carries the serialized one.
        let mut stale = info.clone();
        stale.health.groups.truncate(3);
        let composed = EncodedResponse::node_status(stale, &once).unwrap();
        assert_eq!(
            composed,
            EncodedResponse::new(&Response::NodeStatus(Box::new(info.clone()))).unwrap()
        );
        let mut framed = Vec::new();
        encode_encoded(7, &composed, &mut framed).unwrap();
        let (got, _) = decode::<ResponseFrame>(&framed).unwrap().unwrap();
        assert_eq!(got.response, Response::NodeStatus(Box::new(info)));
    }

    #[test]
    fn corruption_is_reported_not_decoded() {
        let mut buf = Vec::new();
        encode(
            &ResponseFrame {
                id: 1,
                response: Response::Done { index: 3 },
            },
            &mut buf,
        )
        .unwrap();
        let mid = buf.len() / 2;
        buf[mid] ^= 0x40;
        assert!(matches!(
            decode::<ResponseFrame>(&buf),
            Err(FrameError::Record(_))
        ));
    }
}
