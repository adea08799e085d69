//! The sealed link, end to end between two in-memory sides, and each refusal.

use super::*;
use crate::schedule::CounterNonces;
use crate::HANDSHAKE_FRAME_BYTES;
use shoal_core::record::CRC32C;

const CLUSTER: u64 = 77;
const KEY: ClusterKey = ClusterKey::new([0x42; 32]);

struct Side {
    link: Link,
    nonces: CounterNonces,
}

fn side(me: u64, peer: u64, key: ClusterKey, order: Order, boot: u64) -> Side {
    Side {
        link: Link::new(key, CLUSTER, me, peer, order),
        nonces: CounterNonces::new(boot * 1000 + me),
    }
}

/// Deliver `frame` to `to`; returns its reply (if any) and what happened.
fn deliver(to: &mut Side, frame: &[u8]) -> (Vec<u8>, Result<Option<Vec<u8>>, Refusal>) {
    let mut f = frame.to_vec();
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    match to.link.receive(&mut f, &mut to.nonces, &mut out) {
        Ok(Received::Reply(n)) | Ok(Received::Opened { reply: n }) => (out[..n].to_vec(), Ok(None)),
        Ok(Received::Data { plain, .. }) => (Vec::new(), Ok(Some(plain.to_vec()))),
        Ok(Received::Ignored) => (Vec::new(), Ok(None)),
        Err(e) => (Vec::new(), Err(e)),
    }
}

/// Run the handshake from `a` (initiator) to `b`; returns the three frames.
fn handshake(a: &mut Side, b: &mut Side) -> [Vec<u8>; 3] {
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let hello = out[..n].to_vec();
    let (accept, r) = deliver(b, &hello);
    r.unwrap();
    let (confirm, r) = deliver(a, &accept);
    r.unwrap();
    assert!(a.link.is_open());
    let (none, r) = deliver(b, &confirm);
    r.unwrap();
    assert!(none.is_empty());
    assert!(b.link.is_open());
    [hello, accept, confirm]
}

fn seal(s: &mut Side, plain: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; plain.len() + crate::SEAL_OVERHEAD];
    let n = s.link.seal(plain, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}

fn open(s: &mut Side, frame: &[u8]) -> Result<Vec<u8>, Refusal> {
    deliver(s, frame).1.map(|p| p.expect("a data frame"))
}

/// Recompute a record's CRC after a test changed its bytes (anyone on the line can: the CRC is
/// not a MAC).
fn recrc(frame: &mut [u8]) {
    let n = frame.len();
    let crc = CRC32C.checksum(&frame[..n - 4]);
    frame[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// Cut `keep` body bytes off a record and make it a well-formed record again.
fn truncated(frame: &[u8], cut: usize) -> Vec<u8> {
    let mut f = frame[..frame.len() - 4 - cut].to_vec();
    let len = u32::from_le_bytes(f[..4].try_into().unwrap()) - cut as u32;
    f[..4].copy_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    recrc(&mut f);
    f
}

/// The refusal of a frame with counter `counter` when `next` was expected.
fn replayed(counter: u64, next: u64) -> Refusal {
    Refusal::Replayed { counter, next }
}

fn pair(order: Order) -> (Side, Side) {
    let mut a = side(1, 2, KEY, order, 1);
    let mut b = side(2, 0, KEY, order, 1);
    handshake(&mut a, &mut b);
    (a, b)
}

/// Two datagram sides that expect each other, before any handshake.
fn strangers() -> (Side, Side) {
    (
        side(1, 2, KEY, Order::Datagram, 1),
        side(2, 1, KEY, Order::Datagram, 1),
    )
}

/// A frame `from` seals for `plain` opens at `to` to the same bytes.
fn carries(from: &mut Side, to: &mut Side, plain: &[u8]) {
    let f = seal(from, plain);
    assert_eq!(open(to, &f).unwrap(), plain);
}

#[test]
fn frames_round_trip_both_ways_and_are_encrypted() {
    let (mut a, mut b) = pair(Order::Stream);
    assert_eq!(b.link.peer(), 1, "the responder learned its peer");
    for i in 1..6u8 {
        let msg = [i; 40];
        let f = seal(&mut a, &msg);
        // Kind, session id and counter are in clear; the rest must not be.
        assert!(
            !f[18..].windows(8).any(|w| w == [i; 8]),
            "plaintext on the line"
        );
        assert_eq!(open(&mut b, &f).unwrap(), msg);
        let back = seal(&mut b, b"ack");
        assert_eq!(open(&mut a, &back).unwrap(), b"ack");
    }
    assert_eq!(open(&mut b, &seal(&mut a, &[])).unwrap(), b"");
}

#[test]
fn a_peer_with_another_key_is_refused_on_either_side() {
    // The responder has the wrong key: the initiator refuses its proof.
    let mut a = side(1, 2, KEY, Order::Stream, 1);
    let mut b = side(2, 0, ClusterKey::new([7; 32]), Order::Stream, 1);
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let (accept, _) = deliver(&mut b, &out[..n]);
    let (_, r) = deliver(&mut a, &accept);
    assert_eq!(r, Err(Refusal::BadProof));
    assert!(r.unwrap_err().is_key_mismatch());
    assert!(!a.link.is_open());

    // The initiator has the wrong key: it cannot know, but its Confirm is refused.
    let mut a = side(1, 2, ClusterKey::new([7; 32]), Order::Stream, 1);
    let mut b = side(2, 0, KEY, Order::Stream, 1);
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let (accept, _) = deliver(&mut b, &out[..n]);
    let (confirm, r) = deliver(&mut a, &accept);
    assert_eq!(r, Err(Refusal::BadProof), "the initiator checks first");
    assert!(confirm.is_empty());
    // Had it sent a Confirm anyway (a forger guessing), the responder refuses it.
    let mut forged = vec![0u8; HANDSHAKE_FRAME_BYTES];
    let m = crate::frame::encode(&mut forged, crate::frame::CONFIRM_BODY, |o| {
        o[0] = crate::frame::KIND_CONFIRM;
        o[1..5].copy_from_slice(&b.link.pending.as_ref().unwrap().session.id.to_le_bytes());
    })
    .unwrap();
    assert_eq!(deliver(&mut b, &forged[..m]).1, Err(Refusal::BadProof));
    assert!(!b.link.is_open());
    // And data forged before any handshake is refused too.
    assert_eq!(
        open(&mut b, &seal_with_fake_session()),
        Err(Refusal::NotOpen)
    );
}

fn seal_with_fake_session() -> Vec<u8> {
    let (mut x, _) = pair(Order::Stream);
    seal(&mut x, b"forged")
}

#[test]
fn a_refusal_frame_tells_the_peer_why() {
    let mut a = side(1, 2, KEY, Order::Stream, 1);
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let reason = Refusal::BadProof.answer().unwrap();
    let n = Link::refusal(reason, &mut out).unwrap();
    let r = deliver(&mut a, &out[..n]).1.unwrap_err();
    assert_eq!(r, Refusal::PeerRefused(RefusedReason::BadProof));
    assert!(r.is_key_mismatch());
    assert_eq!(replayed(1, 2).answer(), None);
}

#[test]
fn replayed_frames_are_refused() {
    for order in [Order::Stream, Order::Datagram] {
        let (mut a, mut b) = pair(order);
        let f0 = seal(&mut a, b"put x=1");
        assert_eq!(open(&mut b, &f0).unwrap(), b"put x=1");
        assert_eq!(open(&mut b, &f0), Err(replayed(0, 1)), "{order:?}");
        // The link goes on.
        let f1 = seal(&mut a, b"put x=2");
        assert_eq!(open(&mut b, &f1).unwrap(), b"put x=2");
    }
}

#[test]
fn reordered_frames_are_refused_and_a_stream_refuses_gaps() {
    let (mut a, mut b) = pair(Order::Stream);
    let f0 = seal(&mut a, b"first");
    let f1 = seal(&mut a, b"second");
    assert_eq!(open(&mut b, &f1), Err(replayed(1, 0)));
    assert_eq!(open(&mut b, &f0).unwrap(), b"first");
    assert_eq!(open(&mut b, &f1).unwrap(), b"second");

    // A lossy line accepts a gap (a lost frame) but never goes back.
    let (mut a, mut b) = pair(Order::Datagram);
    let f0 = seal(&mut a, b"first");
    let f1 = seal(&mut a, b"second");
    assert_eq!(open(&mut b, &f1).unwrap(), b"second");
    assert_eq!(open(&mut b, &f0), Err(replayed(0, 2)));
}

#[test]
fn truncated_or_altered_frames_are_refused() {
    let (mut a, mut b) = pair(Order::Stream);
    let f = seal(&mut a, b"a frame worth protecting");
    // Cut short on the line: the record no longer checks.
    assert_eq!(open(&mut b, &f[..f.len() - 3]), Err(Refusal::Malformed));
    // Cut short and re-framed by someone who knows the framing: the tag fails.
    assert_eq!(open(&mut b, &truncated(&f, 5)), Err(Refusal::BadTag));
    assert_eq!(open(&mut b, &truncated(&f, 20)), Err(Refusal::BadTag));
    // Too short to hold a tag at all.
    assert_eq!(
        open(&mut b, &truncated(&f, f.len() - 9 - 5)),
        Err(Refusal::Malformed)
    );
    // A flipped ciphertext bit, or a changed counter, with the CRC fixed up.
    for at in [5 + 13 + 3, 5 + 5, f.len() - 6] {
        let mut g = f.clone();
        g[at] ^= 0x20;
        recrc(&mut g);
        let r = open(&mut b, &g);
        assert!(
            matches!(r, Err(Refusal::BadTag) | Err(Refusal::Replayed { .. })),
            "byte {at}: {r:?}"
        );
    }
    // The untouched frame still opens: refusals changed nothing.
    assert_eq!(open(&mut b, &f).unwrap(), b"a frame worth protecting");
}

#[test]
fn frames_of_another_connection_are_refused() {
    let (mut a1, mut b1) = pair(Order::Stream);
    let (mut a2, _b2) = {
        let mut a = side(1, 2, KEY, Order::Stream, 2);
        let mut b = side(2, 0, KEY, Order::Stream, 2);
        handshake(&mut a, &mut b);
        (a, b)
    };
    let other = seal(&mut a2, b"for the other connection");
    assert_eq!(open(&mut b1, &other), Err(Refusal::UnknownSession));
    // Relabelled with this connection's session id: the keys still differ.
    let mut g = other.clone();
    let id = b1.link.open.as_ref().unwrap().id;
    g[6..10].copy_from_slice(&id.to_le_bytes());
    recrc(&mut g);
    assert_eq!(open(&mut b1, &g), Err(Refusal::BadTag));
    // A frame sealed in the wrong direction of the same connection.
    let echo = seal(&mut b1, b"echo");
    assert_eq!(open(&mut b1, &echo), Err(Refusal::BadTag));
    carries(&mut a1, &mut b1, b"still fine");
}

#[test]
fn a_replayed_handshake_opens_nothing_and_keeps_the_open_session() {
    let (mut a, mut b) = strangers();
    let [hello, accept, confirm] = handshake(&mut a, &mut b);
    carries(&mut a, &mut b, b"before");
    // An attacker replays the Hello: b answers with a fresh nonce (a new pending handshake) ...
    let (accept2, r) = deliver(&mut b, &hello);
    r.unwrap();
    assert_ne!(accept2, accept, "the responder's nonce is fresh");
    // ... and the recorded Confirm does not complete it (it belongs to the old session).
    assert_eq!(deliver(&mut b, &confirm).1, Err(Refusal::Unexpected));
    // A replayed Accept is out of turn for a, whose dial is done.
    assert_eq!(deliver(&mut a, &accept).1, Err(Refusal::Unexpected));
    // The open session is untouched.
    carries(&mut a, &mut b, b"after");
}

#[test]
fn handshake_names_are_checked() {
    let mut a = side(1, 2, KEY, Order::Stream, 1);
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let other_cluster = Side {
        link: Link::new(KEY, CLUSTER + 1, 2, 0, Order::Stream),
        nonces: CounterNonces::new(9),
    };
    let wrong_cluster = Refusal::WrongCluster {
        ours: CLUSTER + 1,
        theirs: CLUSTER,
    };
    // Node 3 gets a Hello meant for node 2; node 2, expecting node 4, gets node 1's.
    let wrong_node = |expected, found| Refusal::WrongNode { expected, found };
    for (mut to, refusal) in [
        (other_cluster, wrong_cluster),
        (side(3, 0, KEY, Order::Stream, 1), wrong_node(3, 2)),
        (side(2, 4, KEY, Order::Stream, 1), wrong_node(4, 1)),
    ] {
        assert_eq!(deliver(&mut to, &out[..n]).1, Err(refusal));
    }
}

#[test]
fn plaintext_and_damaged_frames_are_refused() {
    let (_, mut b) = pair(Order::Stream);
    let mut plain = [0u8; 64];
    let n = shoal_core::record::encode(b"a plaintext wire frame", &mut plain).unwrap();
    assert_eq!(open(&mut b, &plain[..n]), Err(Refusal::Plaintext));
    assert_eq!(open(&mut b, &[9, 0, 0, 0, 0x53]), Err(Refusal::Malformed));
}

#[test]
fn simultaneous_dials_settle_on_the_lower_id() {
    let (mut a, mut b) = strangers();
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let hello_a = out[..n].to_vec();
    let n = b.link.dial(&mut b.nonces, &mut out).unwrap();
    let hello_b = out[..n].to_vec();
    // a (the lower id) ignores b's dial; b answers a's.
    let (nothing, r) = deliver(&mut a, &hello_b);
    assert_eq!((nothing.len(), r), (0, Ok(None)));
    let (accept, r) = deliver(&mut b, &hello_a);
    r.unwrap();
    let (confirm, r) = deliver(&mut a, &accept);
    r.unwrap();
    deliver(&mut b, &confirm).1.unwrap();
    assert!(a.link.is_open() && b.link.is_open());
    carries(&mut b, &mut a, b"hi");
}

#[test]
fn a_lost_confirm_is_replaced_by_the_first_data_frame() {
    let (mut a, mut b) = strangers();
    let mut out = [0u8; HANDSHAKE_FRAME_BYTES];
    let n = a.link.dial(&mut a.nonces, &mut out).unwrap();
    let (accept, _) = deliver(&mut b, &out[..n]);
    let _lost_confirm = deliver(&mut a, &accept);
    assert!(!b.link.is_open());
    let f = seal(&mut a, b"first");
    let mut g = f.clone();
    let mut hs = [0u8; HANDSHAKE_FRAME_BYTES];
    match b.link.receive(&mut g, &mut b.nonces, &mut hs) {
        Ok(Received::Data { plain, opened }) => {
            assert_eq!(plain, b"first");
            assert!(opened);
        }
        other => panic!("{other:?}"),
    }
    assert!(b.link.is_open());
}

#[test]
fn a_rebooted_board_gets_fresh_keys_even_if_the_peer_repeats_its_nonce() {
    // The peer (an attacker replaying) answers with the same nonce each time; the board's boot
    // counter differs, so its keys and session differ.
    let first = {
        let mut a = side(1, 2, KEY, Order::Stream, 1);
        let mut b = side(2, 0, KEY, Order::Stream, 1);
        handshake(&mut a, &mut b);
        seal(&mut a, b"same words")
    };
    let second = {
        let mut a = side(1, 2, KEY, Order::Stream, 2);
        let mut b = side(2, 0, KEY, Order::Stream, 1);
        handshake(&mut a, &mut b);
        seal(&mut a, b"same words")
    };
    assert_ne!(
        first[18..],
        second[18..],
        "same ciphertext under a repeated key"
    );
}

#[test]
fn sealing_needs_an_open_session_and_room() {
    let mut a = side(1, 2, KEY, Order::Stream, 1);
    let mut out = [0u8; 64];
    assert_eq!(a.link.seal(b"x", &mut out), Err(SealError::NotOpen));
    let (mut a, _) = pair(Order::Stream);
    assert_eq!(
        a.link.seal(&[0; 40], &mut out),
        Err(SealError::BufferTooSmall)
    );
    assert_eq!(a.link.seal(&[0; 26], &mut out), Ok(64));
}
