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
