//! What the client and raft ports do when accepting a connection fails, most often because the
//! process is out of file descriptors (`EMFILE`): the connection stays in the kernel's backlog
//! and the next accept fails at once, so a loop that retried at a fixed short pause spun and
//! logged without end. Instead it pauses, doubling from [`FIRST_PAUSE`] up to
//! `--accept-backoff-max`, logs once when a burst of failures starts and once when accepting
//! works again, and counts every failure (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// The first pause after a failed accept.
pub const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// An accept loop's pause and counters (the client port's on the raft thread, the raft port's
/// on its accept thread; the admin view reads them from elsewhere).
#[derive(Debug)]
pub struct AcceptBackoff {
    /// The port, in log lines.
    port: &'static str,
    /// The metric that counts the failures, named in the log line.
    counter: &'static str,
    max: Duration,
    /// The next pause, in nanoseconds.
    pause: AtomicU64,
    /// Failures since the last accept that worked.
    in_burst: AtomicU64,
    failures: AtomicU64,
    bursts: AtomicU64,
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
    /// No failure yet on `port` (its name in log lines), whose failures `/metrics` counts as
    /// `counter`; pauses grow up to `max`.
    pub fn new(max: Duration, port: &'static str, counter: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            port,
            counter,
            max,
            pause: AtomicU64::new(nanos(FIRST_PAUSE.min(max))),
            in_burst: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            bursts: AtomicU64::new(0),
        }
    }

    /// An accept failed with `e`: how long to pause before the next one.
    pub fn failed(&self, e: &std::io::Error) -> Duration {
        self.failures.fetch_add(1, Relaxed);
        let n = self.in_burst.fetch_add(1, Relaxed);
        if n == 0 {
            self.bursts.fetch_add(1, Relaxed);
            log::warn!(
                "{}: accepting a connection failed: {e}; pausing accepts (up to {:?}) until it \
                 works again; further failures are only counted ({})",
                self.port,
                self.max,
                self.counter
            );
            return Duration::from_nanos(self.pause.load(Relaxed));
        }
        let next = (Duration::from_nanos(self.pause.load(Relaxed)) * 2).min(self.max);
        self.pause.store(nanos(next), Relaxed);
        next
    }

    /// An accept worked: a burst of failures, if one was on, is over.
    pub fn succeeded(&self) {
        let n = self.in_burst.swap(0, Relaxed);
        if n > 0 {
            self.pause.store(nanos(FIRST_PAUSE.min(self.max)), Relaxed);
            log::info!("{}: accepting again after {n} failed accepts", self.port);
        }
    }

    /// The counters.
    pub fn view(&self) -> AcceptView {
        AcceptView {
            failures: self.failures.load(Relaxed),
            bursts: self.bursts.load(Relaxed),
            backoff_max_ms: self.max.as_millis() as u64,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_maximum_and_a_success_ends_the_burst() {
        let b = AcceptBackoff::new(Duration::from_millis(50), "client port", "failures");
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u64> = (0..5).map(|_| b.failed(&e).as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 50, 50]);
        b.succeeded();
        assert_eq!(b.failed(&e), FIRST_PAUSE, "a new burst starts short");
        let v = b.view();
        assert_eq!((v.failures, v.bursts, v.backoff_max_ms), (6, 2, 50));
    }
}
