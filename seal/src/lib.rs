//! # shoal-seal
//!
//! Sealed links for nodes that share a cluster key (boards, and `shoald` when given
//! `--peer-psk-file`): every frame between two such nodes is authenticated and encrypted, and a
//! node without the key can neither read a link nor speak on it. TLS does not fit a Cortex-M;
//! this does, without a heap.
//!
//! ## The protocol (docs/SECURITY.md has the threat model)
//!
//! A *link* is one session between two nodes: a TCP connection, or a serial line between two
//! resets. Its frames are records (`shoal_core::record`: length, version, body, CRC-32C) whose
//! version byte is [`SEAL_VERSION`], so every existing reader (plain TCP framing, COBS, `shoald`'s
//! record reader) carries them unchanged and a plaintext wire frame (version 1) is told apart at
//! once.
//!
//! 1. The initiator sends `Hello { cluster, from, to, nonce_i }` with a fresh 16-byte nonce.
//! 2. The responder picks its own fresh `nonce_r`, derives the link's keys (below) and answers
//!    `Accept { cluster, from, to, nonce_i, nonce_r, proof_r }`.
//! 3. The initiator derives the same keys, checks `proof_r` (the responder holds the key and
//!    answered *this* Hello) and sends `Confirm { session, proof_i }`; the responder checks it.
//! 4. Every later frame is `Data { session, counter, ciphertext, tag }`: ChaCha20-Poly1305 under
//!    the sender's direction key, nonce = the counter, associated data = version, kind, cluster
//!    id, session id and counter.
//!
//! Keys: HKDF-SHA256 with the cluster key as input, `nonce_i ‖ nonce_r` as salt and the cluster
//! id and both node ids in the info, expanded to an initiator→responder key, a
//! responder→initiator key, a key for the two proofs (HMAC-SHA256, 16 bytes) and a 4-byte
//! session id. A frame's counter must be exactly the next one on a stream (TCP) and greater
//! than the last accepted one on a datagram-like line (a UART loses frames); so replayed,
//! reordered, cut or altered frames and frames of another link are refused.
//!
//! ## Nonces never repeat
//!
//! A node's direction key depends on its own nonce, which it never uses twice under one cluster
//! key, so its (key, counter) pairs never repeat even if the peer's nonce does (a replaying
//! attacker controls that one). `shoald` and Linux boards draw nonces from the operating
//! system; a board without a hardware RNG uses [`CounterNonces`]: a boot counter it persists in
//! flash *before* the first nonce of a boot is used, and a counter within the boot.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod frame;
mod key;
mod link;
mod schedule;

pub use frame::{is_sealed, SEAL_OVERHEAD, SEAL_VERSION};
pub use key::{ClusterKey, KeyError, KEY_BYTES};
pub use link::{Link, Order, Received, Refusal, RefusedReason, SealError};
pub use schedule::{CounterNonces, Nonce, NonceSource, NONCE_BYTES};

/// Room for the largest handshake frame ([`Link::dial`] and the replies of [`Link::receive`]).
pub const HANDSHAKE_FRAME_BYTES: usize = frame::HANDSHAKE_FRAME_BYTES;
