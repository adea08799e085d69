//! Leases from the client side: grant, keep alive, revoke and read them, tie temporary nodes
//! and locks to them, and [`LeaseKeeper`], which keeps a lease alive from a background task
//! until it is stopped or dropped.

use std::time::Duration;

use shoal_core::LogIndex;
use shoal_kv::{KvError, WriteResult};

use crate::client::{lock_state, millis, unexpected, unexpected_write};
use crate::protocol::{LeaseInfo, ReadMode, Request, Response, WriteOp};
use crate::renewal::Renewal;
use crate::{Client, ClientError, LockState};

/// A lease as a grant or keep-alive answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id (the raft index of its grant).
    pub id: u64,
    /// Its time to live, renewed whole by each keep-alive.
    pub ttl_ms: u64,
    /// When it ends unless kept alive (leader clock, ms).
    pub deadline_ms: u64,
}

/// What revoking a lease took with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// Raft index of the revocation.
    pub index: LogIndex,
    /// Nodes removed with the lease (temporary nodes with their subtrees, freed locks).
    pub removed: u32,
    /// Locks it held that passed to a waiting client.
    pub granted: u32,
}

impl Client {
    /// Grant a lease of `ttl`. Nothing lives by it until nodes are tied to it
    /// ([`Client::put_temp_lease`], [`Client::make_temp_dir_lease`],
    /// [`Client::try_lock_lease`]); it ends `ttl` after its last keep-alive.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<Lease, ClientError> {
        let op = WriteOp::LeaseGrant {
            ttl_ms: millis(ttl)?,
        };
        self.lease_write("LeaseGrant", op).await
    }

    /// Renew lease `id` once: it now ends its TTL from now. `KvError::LeaseNotFound` once it
    /// has ended.
    pub async fn lease_keep_alive(&self, id: u64) -> Result<Lease, ClientError> {
        self.lease_write("LeaseKeepAlive", WriteOp::LeaseKeepAlive { id })
            .await
    }

    async fn lease_write(&self, name: &str, op: WriteOp) -> Result<Lease, ClientError> {
        match self.write(op).await? {
            (
                _,
                WriteResult::Lease {
                    id,
                    ttl_ms,
                    deadline_ms,
                },
            ) => Ok(Lease {
                id,
                ttl_ms,
                deadline_ms,
            }),
            (_, other) => Err(unexpected_write(name, &other)),
        }
    }

    /// End lease `id` now, with every node and lock tied to it.
    pub async fn lease_revoke(&self, id: u64) -> Result<Revoked, ClientError> {
        match self.write(WriteOp::LeaseRevoke { id }).await? {
            (index, WriteResult::Expired { removed, granted }) => Ok(Revoked {
                index,
                removed,
                granted,
            }),
            (_, other) => Err(unexpected_write("LeaseRevoke", &other)),
        }
    }

    /// Keep lease `id` alive from a background task, renewing it every third of its TTL, until
    /// the keeper is stopped or dropped. Renews once before it returns, so an ended lease is
    /// `KvError::LeaseNotFound` here.
    pub async fn keep_alive(&self, id: u64) -> Result<LeaseKeeper, ClientError> {
        let lease = self.lease_keep_alive(id).await?;
        let period = Duration::from_millis((lease.ttl_ms / 3).max(1));
        let warning = format!("lease {id} ended: its keep-alive was refused");
        let c = self.clone();
        let renewal = Renewal::start(period, warning, move || {
            let client = c.clone();
            async move { client.lease_keep_alive(id).await.map(|_| ()) }
        });
        Ok(LeaseKeeper { lease, renewal })
    }

    /// The live leases, in grant order (without their keys).
    pub async fn leases(&self, mode: ReadMode) -> Result<Vec<LeaseInfo>, ClientError> {
        match self.read(Request::Leases { id: 0, mode }).await? {
            Response::Leases { leases, .. } => Ok(leases),
            other => Err(unexpected("Leases", &other)),
        }
    }

    /// Lease `id` with what is left of it and the keys tied to it; `KvError::LeaseNotFound`
    /// if it is not live.
    pub async fn lease_info(&self, id: u64, mode: ReadMode) -> Result<LeaseInfo, ClientError> {
        if id == 0 {
            return Err(ClientError::Kv(KvError::LeaseNotFound));
        }
        match self.read(Request::Leases { id, mode }).await? {
            Response::Leases { mut leases, .. } if leases.len() == 1 => {
                Ok(leases.pop().expect("one lease"))
            }
            other => Err(unexpected("Leases", &other)),
        }
    }

    /// Create or replace a temporary value that lives as long as lease `lease` (any client
    /// naming the lease may change it later).
    pub async fn put_temp_lease(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: u64,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::PutTempLease {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease,
        })
        .await
    }

    /// Create a temporary directory that lives as long as lease `lease`.
    pub async fn make_temp_dir_lease(
        &self,
        key: impl AsRef<[u8]>,
        lease: u64,
    ) -> Result<LogIndex, ClientError> {
        self.write_done(WriteOp::MakeTempDirLease {
            key: key.as_ref().to_vec(),
            lease,
        })
        .await
    }

    /// Take a lock held as long as lease `lease` lives, or renew it if the lease holds it
    /// already. Never waits: `KvError::LockHeld` if another holds it. Release it with
    /// [`Client::unlock`] from any client.
    pub async fn try_lock_lease(
        &self,
        key: impl AsRef<[u8]>,
        lease: u64,
    ) -> Result<LockState, ClientError> {
        let op = WriteOp::TryLockLease {
            key: key.as_ref().to_vec(),
            lease,
        };
        lock_state("TryLockLease", self.write(op).await?.1)
    }
}

/// Keeps a lease alive from a background task (see [`Client::keep_alive`]). Dropping it or
/// [`LeaseKeeper::stop`] stops the renewals (the lease then ends one TTL after the last);
/// [`LeaseKeeper::revoke`] ends it at once.
#[derive(Debug)]
pub struct LeaseKeeper {
    lease: Lease,
    renewal: Renewal,
}

impl LeaseKeeper {
    /// The lease as its first renewal left it.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Whether a renewal found the lease ended (revoked, or expired while renewals could not
    /// get through): renewing has stopped.
    pub fn is_lost(&self) -> bool {
        self.renewal.is_lost()
    }

    /// Stop renewing; the lease ends one TTL after its last renewal.
    pub fn stop(mut self) {
        self.renewal.stop();
    }

    /// Stop renewing and end the lease now.
    pub async fn revoke(mut self, client: &Client) -> Result<Revoked, ClientError> {
        self.renewal.stop();
        client.lease_revoke(self.lease.id).await
    }
}
