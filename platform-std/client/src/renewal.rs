//! A renewal repeated from a background task until the server refuses it: what keeps a
//! lease ([`crate::LeaseKeeper`]) or a lock's lease ([`crate::LockGuard`]) alive.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;

/// Runs a renewal every period until it is stopped or dropped, or the server refuses one
/// (then [`Renewal::is_lost`] turns true and renewing stops).
#[derive(Debug)]
pub(crate) struct Renewal {
    lost: Arc<AtomicBool>,
    task: Option<async_executor::Task<()>>,
}

impl Renewal {
    /// Call `renew` every `period`. A refusal (`ClientError::Kv`) logs `lost_warning` and
    /// stops; any other error is tried again a period later, while the lease may still hold.
    pub(crate) fn start<F, Fut>(period: Duration, lost_warning: String, mut renew: F) -> Renewal
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = crate::runtime::spawn(async move {
            loop {
                async_io::Timer::after(period).await;
                match renew().await {
                    Ok(()) => {}
                    Err(ClientError::Kv(_)) => {
                        flag.store(true, Ordering::SeqCst);
                        log::warn!("{lost_warning}");
                        return;
                    }
                    // Unavailable or indeterminate: keep trying while the lease may still hold.
                    Err(_) => {}
                }
            }
        });
        Renewal {
            lost,
            task: Some(task),
        }
    }

    /// Whether a renewal was refused.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stop renewing; false if it was stopped already.
    pub(crate) fn stop(&mut self) -> bool {
        self.task.take().is_some()
    }
}
