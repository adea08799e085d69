//! A held lock: acquired (waiting in the queue if asked), its lease renewed in the background,
//! released when the guard is released or dropped.

use std::time::{Duration, Instant};

use shoal_kv::KvError;

use crate::renewal::Renewal;
use crate::{Client, ClientError, LockState};

/// A lock this client holds. The lease is renewed every third of its length until
/// [`LockGuard::release`] or drop. If a renewal is refused (the lease ran out and another
/// client took the lock), [`LockGuard::is_lost`] turns true and renewal stops.
pub struct LockGuard {
    client: Client,
    key: Vec<u8>,
    fence: u64,
    renewal: Renewal,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("fence", &self.fence)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LockGuard {
    /// The fencing token of this grant: pass it to the resources the lock protects and let them
    /// refuse smaller tokens.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// The lock's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Whether a renewal was refused: the lock may belong to someone else now.
    pub fn is_lost(&self) -> bool {
        self.renewal.is_lost()
    }

    /// Stop renewing and release the lock.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.renewal.stop();
        let key = std::mem::take(&mut self.key);
        match self.client.unlock(&key).await {
            Ok(_) => Ok(()),
            // The lease ran out and the lock moved on or vanished: nothing left to release.
            Err(ClientError::Kv(KvError::NotLockOwner | KvError::NotFound)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.renewal.stop() {
            return; // released
        }
        // Best effort: release in the background; the lease ends the lock otherwise.
        let client = self.client.clone();
        let key = std::mem::take(&mut self.key);
        crate::runtime::spawn(async move {
            let _ = client.unlock(&key).await;
        })
        .detach();
    }
}

/// A [`LockGuard`] for [`crate::BlockingClient`].
#[derive(Debug)]
pub struct BlockingLockGuard {
    guard: Option<LockGuard>,
}

impl BlockingLockGuard {
    pub(crate) fn new(guard: LockGuard) -> BlockingLockGuard {
        BlockingLockGuard { guard: Some(guard) }
    }

    /// See [`LockGuard::fence`].
    pub fn fence(&self) -> u64 {
        self.guard.as_ref().map_or(0, LockGuard::fence)
    }

    /// See [`LockGuard::is_lost`].
    pub fn is_lost(&self) -> bool {
        self.guard.as_ref().is_some_and(LockGuard::is_lost)
    }

    /// See [`LockGuard::release`].
    pub fn release(mut self) -> Result<(), ClientError> {
        match self.guard.take() {
            Some(g) => async_io::block_on(g.release()),
            None => Ok(()),
        }
    }
}

pub(crate) async fn acquire(
    client: Client,
    key: Vec<u8>,
    lease: Duration,
    wait: Duration,
) -> Result<LockGuard, ClientError> {
    let wait_until = Instant::now() + wait;
    let mut poll = Duration::from_millis(20);
    let fence = loop {
        let left = wait_until.saturating_duration_since(Instant::now());
        match client.try_lock(&key, lease, left).await? {
            LockState::Held { fence, .. } => break fence,
            LockState::Queued { .. } if left.is_zero() => {
                // Leave the queue so the lock is not granted to a client that gave up.
                let _ = client.unlock(&key).await;
                return Err(ClientError::Kv(KvError::LockHeld));
            }
            LockState::Queued { .. } => {
                // Asking again while queued answers the position; once granted, it answers
                // Locked with the grant's token.
                async_io::Timer::after(poll.min(left)).await;
                poll = (poll * 2).min(Duration::from_millis(250));
            }
        }
    };
    let warning = format!(
        "lock {} was lost: its lease renewal was refused",
        String::from_utf8_lossy(&key)
    );
    let (c, k) = (client.clone(), key.clone());
    let renewal = Renewal::start(
        (lease / 3).max(Duration::from_millis(1)),
        warning,
        move || {
            let (client, key) = (c.clone(), k.clone());
            async move { client.update_lock_lease(&key, lease).await.map(|_| ()) }
        },
    );
    Ok(LockGuard {
        client,
        key,
        fence,
        renewal,
    })
}
