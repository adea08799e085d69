//! The key schedule and the primitives: nonces, HKDF-SHA256 from the cluster key to a link's
//! keys, the handshake proofs (HMAC-SHA256) and the per-frame AEAD (ChaCha20-Poly1305). Every
//! primitive is a RustCrypto crate; this file only says how they are combined.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Tag};
use hkdf::hmac::{Hmac, Mac};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::frame::TAG_BYTES;
use crate::key::ClusterKey;

/// Bytes of a handshake nonce.
pub const NONCE_BYTES: usize = 16;
/// A handshake nonce: never used twice by one node under one cluster key.
pub type Nonce = [u8; NONCE_BYTES];

/// Where a node's handshake nonces come from.
pub trait NonceSource {
    /// A nonce this node has never used under the current cluster key.
    fn next_nonce(&mut self) -> Nonce;
}

impl<F: FnMut() -> Nonce> NonceSource for F {
    fn next_nonce(&mut self) -> Nonce {
        self()
    }
}

/// Nonces for a board without a hardware RNG: the boot count (persisted in flash and advanced
/// before the first nonce of a boot is used) and a counter within the boot. Two boots never
/// share a boot count, and a boot never repeats its counter, so no nonce repeats for as long as
/// the persisted count survives (a board whose count is erased needs a new cluster key: see
/// docs/SECURITY.md).
#[derive(Clone, Copy, Debug)]
pub struct CounterNonces {
    boot: u64,
    next: u64,
}

impl CounterNonces {
    /// Nonces for the boot numbered `boot` (which must already be durable).
    pub const fn new(boot: u64) -> Self {
        CounterNonces { boot, next: 0 }
    }
}

impl NonceSource for CounterNonces {
    fn next_nonce(&mut self) -> Nonce {
        let mut n = [0u8; NONCE_BYTES];
        n[..8].copy_from_slice(&self.boot.to_le_bytes());
        n[8..].copy_from_slice(&self.next.to_le_bytes());
        // 2^64 nonces in one boot cannot happen; saturating keeps the promise checkable.
        self.next = self.next.saturating_add(1);
        n
    }
}

/// What both ends of a handshake agree on; every derived key depends on all of it.
pub(crate) struct Transcript {
    pub cluster_id: u64,
    pub initiator: u64,
    pub responder: u64,
    pub nonce_i: Nonce,
    pub nonce_r: Nonce,
}

/// A link's keys, derived from the cluster key and the transcript.
#[derive(Clone)]
pub(crate) struct LinkKeys {
    pub initiator_to_responder: [u8; 32],
    pub responder_to_initiator: [u8; 32],
    proof_key: [u8; 32],
    pub session: u32,
}

const INFO_LABEL: &[u8] = b"shoal-seal v1 link keys";
pub(crate) const PROOF_INITIATOR: &[u8] = b"shoal-seal v1 initiator proof";
pub(crate) const PROOF_RESPONDER: &[u8] = b"shoal-seal v1 responder proof";

impl Transcript {
    fn write(&self, mut put: impl FnMut(&[u8])) {
        put(&self.cluster_id.to_le_bytes());
        put(&self.initiator.to_le_bytes());
        put(&self.responder.to_le_bytes());
        put(&self.nonce_i);
        put(&self.nonce_r);
    }

    /// HKDF-SHA256: extract with both nonces as salt, expand with the cluster id and node ids.
    pub fn derive(&self, key: &ClusterKey) -> LinkKeys {
        let mut salt = [0u8; 2 * NONCE_BYTES];
        salt[..NONCE_BYTES].copy_from_slice(&self.nonce_i);
        salt[NONCE_BYTES..].copy_from_slice(&self.nonce_r);
        let hk = Hkdf::<Sha256>::new(Some(&salt), key.bytes());
        let mut info = [0u8; INFO_LABEL.len() + 24];
        info[..INFO_LABEL.len()].copy_from_slice(INFO_LABEL);
        info[INFO_LABEL.len()..][..8].copy_from_slice(&self.cluster_id.to_le_bytes());
        info[INFO_LABEL.len() + 8..][..8].copy_from_slice(&self.initiator.to_le_bytes());
        info[INFO_LABEL.len() + 16..][..8].copy_from_slice(&self.responder.to_le_bytes());
        let mut okm = [0u8; 32 * 3 + 4];
        hk.expand(&info, &mut okm)
            .expect("100 bytes is far below HKDF-SHA256's 8160-byte limit");
        let k = |i: usize| -> [u8; 32] { okm[32 * i..32 * (i + 1)].try_into().expect("32") };
        LinkKeys {
            initiator_to_responder: k(0),
            responder_to_initiator: k(1),
            proof_key: k(2),
            session: u32::from_le_bytes(okm[96..100].try_into().expect("4")),
        }
    }

    fn mac(&self, keys: &LinkKeys, label: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.proof_key)
            .expect("HMAC takes keys of any length");
        mac.update(label);
        self.write(|b| mac.update(b));
        mac
    }

    /// A proof that the sender derived `keys` (so holds the cluster key) for this transcript.
    pub fn proof(&self, keys: &LinkKeys, label: &[u8]) -> [u8; TAG_BYTES] {
        let full = self.mac(keys, label).finalize().into_bytes();
        full[..TAG_BYTES]
            .try_into()
            .expect("HMAC-SHA256 gives 32 bytes")
    }

    /// Check a peer's proof in constant time.
    pub fn verify(&self, keys: &LinkKeys, label: &[u8], proof: &[u8]) -> bool {
        self.mac(keys, label).verify_truncated_left(proof).is_ok()
    }
}

/// The AEAD nonce of frame `counter` in the layout of RFC 8439 section 2.8: a 32-bit constant
/// (here the direction, so the two directions never share a nonce even if they shared a key)
/// then the 64-bit counter, both little-endian. Each direction of a link also has its own key,
/// so a counter is used once per key.
fn aead_nonce(direction: u32, counter: u64) -> chacha20poly1305::Nonce {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&direction.to_le_bytes());
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

/// Encrypt `buf` in place under `key` and return the tag.
pub(crate) fn seal(
    key: &[u8; 32],
    direction: u32,
    counter: u64,
    ad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_BYTES] {
    let cipher = ChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(&aead_nonce(direction, counter), ad, buf)
        .expect("frames are far below ChaCha20-Poly1305's 256 GiB limit");
    tag.into()
}

/// Check `tag` and decrypt `buf` in place; on a bad tag `buf` is left as it was.
pub(crate) fn open(
    key: &[u8; 32],
    direction: u32,
    counter: u64,
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> bool {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce = aead_nonce(direction, counter);
    cipher
        .decrypt_in_place_detached(&nonce, ad, buf, Tag::from_slice(tag))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(nonce_r: u8) -> Transcript {
        Transcript {
            cluster_id: 7,
            initiator: 1,
            responder: 2,
            nonce_i: [1; 16],
            nonce_r: [nonce_r; 16],
        }
    }

    #[test]
    fn every_input_changes_every_key() {
        let key = ClusterKey::new([9; 32]);
        let base = transcript(2).derive(&key);
        assert_ne!(base.initiator_to_responder, base.responder_to_initiator);
        let variants = [
            transcript(3).derive(&key),
            Transcript {
                cluster_id: 8,
                ..transcript(2)
            }
            .derive(&key),
            Transcript {
                initiator: 3,
                ..transcript(2)
            }
            .derive(&key),
            Transcript {
                nonce_i: [0; 16],
                ..transcript(2)
            }
            .derive(&key),
            transcript(2).derive(&ClusterKey::new([8; 32])),
        ];
        for v in &variants {
            assert_ne!(v.initiator_to_responder, base.initiator_to_responder);
            assert_ne!(v.responder_to_initiator, base.responder_to_initiator);
            assert_ne!(v.proof_key, base.proof_key);
        }
    }

    #[test]
    fn proofs_check_label_transcript_and_key() {
        let key = ClusterKey::new([9; 32]);
        let t = transcript(2);
        let keys = t.derive(&key);
        let p = t.proof(&keys, PROOF_RESPONDER);
        assert!(t.verify(&keys, PROOF_RESPONDER, &p));
        assert!(!t.verify(&keys, PROOF_INITIATOR, &p));
        assert!(!transcript(3).verify(&keys, PROOF_RESPONDER, &p));
        let other = t.derive(&ClusterKey::new([8; 32]));
        assert!(!t.verify(&other, PROOF_RESPONDER, &p));
    }

    #[test]
    fn counter_nonces_differ_within_and_across_boots() {
        let mut a = CounterNonces::new(1);
        let mut b = CounterNonces::new(2);
        let (a0, a1, b0) = (a.next_nonce(), a.next_nonce(), b.next_nonce());
        assert_ne!(a0, a1);
        assert_ne!(a0, b0);
        assert_ne!(a1, b0);
    }

    /// RFC 8439 section 2.8.2, through this file's wrapper: the vector's nonce
    /// 07 00 00 00 40 41 .. 47 is direction 7 and counter 0x4746454443424140 in our layout.
    #[test]
    fn rfc8439_aead_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let ad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
        let expected: [u8; 114] = [
            0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb, 0x7b, 0x86, 0xaf, 0xbc, 0x53, 0xef,
            0x7e, 0xc2, 0xa4, 0xad, 0xed, 0x51, 0x29, 0x6e, 0x08, 0xfe, 0xa9, 0xe2, 0xb5, 0xa7,
            0x36, 0xee, 0x62, 0xd6, 0x3d, 0xbe, 0xa4, 0x5e, 0x8c, 0xa9, 0x67, 0x12, 0x82, 0xfa,
            0xfb, 0x69, 0xda, 0x92, 0x72, 0x8b, 0x1a, 0x71, 0xde, 0x0a, 0x9e, 0x06, 0x0b, 0x29,
            0x05, 0xd6, 0xa5, 0xb6, 0x7e, 0xcd, 0x3b, 0x36, 0x92, 0xdd, 0xbd, 0x7f, 0x2d, 0x77,
            0x8b, 0x8c, 0x98, 0x03, 0xae, 0xe3, 0x28, 0x09, 0x1b, 0x58, 0xfa, 0xb3, 0x24, 0xe4,
            0xfa, 0xd6, 0x75, 0x94, 0x55, 0x85, 0x80, 0x8b, 0x48, 0x31, 0xd7, 0xbc, 0x3f, 0xf4,
            0xde, 0xf0, 0x8e, 0x4b, 0x7a, 0x9d, 0xe5, 0x76, 0xd2, 0x65, 0x86, 0xce, 0xc6, 0x4b,
            0x61, 0x16,
        ];
        let expected_tag = [
            0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60,
            0x06, 0x91,
        ];
        let (direction, counter) = (7, 0x4746_4544_4342_4140);
        let mut buf = [0u8; 114];
        buf.copy_from_slice(plaintext);
        let tag = seal(&key, direction, counter, &ad, &mut buf);
        assert_eq!(buf, expected);
        assert_eq!(tag, expected_tag);
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert!(!open(&key, direction, counter, &ad, &mut buf, &bad_tag));
        assert_eq!(buf, expected, "a refused frame is left as it came");
        assert!(open(&key, direction, counter, &ad, &mut buf, &tag));
        assert_eq!(&buf[..], &plaintext[..]);
    }
}
