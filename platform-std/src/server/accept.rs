//! What the client port does when accepting a connection fails, most often because the
//! process is out of file descriptors (`EMFILE`): the connection stays in the kernel's backlog
//! and the next accept fails at once, so a loop that retried at a fixed short pause spun and
//! logged without end. Instead it pauses, doubling from [`FIRST_PAUSE`] up to
//! `--accept-backoff-max`, logs once when a burst of failures starts and once when accepting
//! works again, and counts every failure (`/metrics`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use serde::Serialize;

/// The first pause after a failed accept.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// The accept loop's pause and counters (on the raft thread).
#[derive(Debug)]
pub struct AcceptBackoff {
    max: Duration,
    pause: Cell<Duration>,
    /// Failures since the last accept that worked.
    in_burst: Cell<u64>,
    failures: Cell<u64>,
    bursts: Cell<u64>,
}

/// The accept loop's counters, as the admin port shows them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AcceptView {
    /// Accepts that failed.
    pub failures: u64,
    /// Bursts of failures (each logged once).
    pub bursts: u64,
    /// The longest pause (`--accept-backoff-max`), in milliseconds.
    pub backoff_max_ms: u64,
}

impl AcceptBackoff {
    /// No failure yet; pauses grow up to `max`.
    pub fn new(max: Duration) -> Rc<AcceptBackoff> {
        Rc::new(AcceptBackoff {
            max,
            pause: Cell::new(FIRST_PAUSE.min(max)),
            in_burst: Cell::new(0),
            failures: Cell::new(0),
            bursts: Cell::new(0),
        })
    }

    /// An accept failed with `e`: how long to pause before the next one.
    pub fn failed(&self, e: &std::io::Error) -> Duration {
        self.failures.set(self.failures.get() + 1);
        let n = self.in_burst.get();
        self.in_burst.set(n + 1);
        if n == 0 {
            self.bursts.set(self.bursts.get() + 1);
            log::warn!(
                "client port: accepting a connection failed: {e}; pausing accepts (up to {:?}) \
                 until it works again; further failures are only counted \
                 (shoal_client_accept_failures_total)",
                self.max
            );
            return self.pause.get();
        }
        let next = (self.pause.get() * 2).min(self.max);
        self.pause.set(next);
        next
    }

    /// An accept worked: a burst of failures, if one was on, is over.
    pub fn succeeded(&self) {
        let n = self.in_burst.replace(0);
        if n > 0 {
            self.pause.set(FIRST_PAUSE.min(self.max));
            log::info!("client port: accepting again after {n} failed accepts");
        }
    }

    /// The counters.
    pub fn view(&self) -> AcceptView {
        AcceptView {
            failures: self.failures.get(),
            bursts: self.bursts.get(),
            backoff_max_ms: self.max.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_a_success_ends_the_burst() {
        let b = AcceptBackoff::new(Duration::from_millis(50));
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u64> = (0..5).map(|_| b.failed(&e).as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 50, 50]);
        b.succeeded();
        assert_eq!(b.failed(&e), FIRST_PAUSE, "a new burst starts short");
        let v = b.view();
        assert_eq!((v.failures, v.bursts, v.backoff_max_ms), (6, 2, 50));
    }
}
