//! # shoal-client
//!
//! The Rust client of a Shoal cluster: every DtKV operation, watches, locks and administration,
//! spoken over the client protocol of [`protocol`] to the client ports of `shoald` nodes.
//!
//! - [`Client`] is async; its futures run on any executor (sockets and timers use async-io, the
//!   smol family's reactor). [`BlockingClient`] runs it on the calling thread for code without
//!   an async runtime. Both are configured with a list of endpoints ([`ClientConfig`]) and find
//!   the leader themselves.
//! - [`connection::Connection`] is the pipelined connection underneath: frames out, frames in, no
//!   retries. Use it to drive one node at full speed (as `shoal-bench` does) or to speak the
//!   protocol by hand.
//! - [`protocol`] holds the request and answer types and their framing.
//!
//! The crate has no server inside: it depends on Shoal's core and DtKV types, serde/postcard,
//! the smol family's executor, reactor, channels and locks, and nothing else of note.
//!
//! ## How a client behaves
//!
//! - It follows `NotLeader` redirects, and otherwise tries the next endpoint of its list.
//! - It pipelines every request on one connection.
//! - It gives each write an exactly-once session (`client_id` = a non-zero u64 from the
//!   operating system's random source, chosen when the client is built, `seq` increasing) and
//!   retries a write whose answer was lost with the *same* `client_id` and `seq`, so the
//!   cluster applies it at most once. Should two clients ever share an id, a write that reuses
//!   the other's last sequence number with another operation is refused
//!   (`ClientError::Kv(KvError::SessionReused)`), not answered as the other's.
//! - It keeps retrying through connection loss, `Unavailable` and per-attempt timeouts until the
//!   call's overall deadline, then fails with an error whose [`ErrorClass`] says whether the
//!   operation certainly did not happen or its outcome is unknown.
//!
//! Session caveat: DtKV remembers only the last sequence of each session. When several writes
//! of one client are in flight and the answer of an earlier one is lost, its retry may be
//! answered `StaleSequence`; the client reports that as [`ClientError::Indeterminate`].
//! Sequence numbers are assigned in wire order, so without losses this never happens.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_client::{BlockingClient, ClientConfig, ClientError, ReadMode, WatchItem};
//!
//! # fn main() -> Result<(), ClientError> {
//! let config = ClientConfig::new(["10.0.0.1:7002", "10.0.0.2:7002", "10.0.0.3:7002"])
//!     .with_timeout(Duration::from_secs(5));
//! let client = BlockingClient::new(config)?;
//!
//! client.put(b"app.db.url", b"postgres://db1")?;
//! let node = client.get(b"app.db.url", ReadMode::Linearizable)?;
//! assert_eq!(node.map(|n| n.value), Some(b"postgres://db1".to_vec()));
//!
//! // Only one holder at a time; the lease is renewed until the guard is released.
//! let guard = client.lock(b"jobs.nightly", Duration::from_secs(10), Duration::from_secs(60))?;
//! println!("fencing token {}", guard.fence());
//! guard.release()?;
//!
//! // Every change under `app`, from now on.
//! let mut changes = client.watch(&[&b"app"[..]], 0);
//! while let Some(Ok(WatchItem::Event(e))) = changes.next_blocking() {
//!     println!("{} {}", e.kind, String::from_utf8_lossy(&e.key));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The async [`Client`] has the same operations (`client.put(..).await`); its clones share one
//! connection and one write session.
#![warn(missing_docs)]

mod blocking;
mod client;
mod config;
pub mod connection;
mod error;
mod lease;
mod lock;
mod mux;
pub mod protocol;
mod renewal;
mod runtime;
pub mod tls;
mod txn;
mod watch;

pub use blocking::BlockingClient;
pub use client::{BatchOutcome, Client, LockState, Unlocked};
pub use config::{parse_endpoint, ClientConfig};
pub use error::{ClientError, ErrorClass};
pub use lease::{Lease, LeaseKeeper, Revoked};
pub use lock::{BlockingLockGuard, LockGuard};
pub use protocol::{
    Access, AlarmInfo, GroupHealth, HealthInfo, KvError, LeaseInfo, MemberInfo, NodeInfo, NodeKind,
    NodeStatusInfo, Permission, ReadMode, RoleInfo, SnapshotChunk, StatusInfo, UserInfo,
    WatchEvent,
};
pub use tls::{TlsConfig, TlsOptions};
pub use txn::{Transaction, TxnOutcome};
pub use watch::{WatchItem, WatchStream};
