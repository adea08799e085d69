//! The clock check: a leader compares each follower's clock with its own, so that the lease
//! is used only while their rates agree.
//!
//! The lease is safe while no follower's clock runs faster than the leader's by more than
//! `lease_drift_margin_ms / (election_timeout_ms - lease_drift_margin_ms)` (see
//! [`Config::clock_bound_ppm`](crate::limits::Config::clock_bound_ppm)): the leader stops
//! trusting its lease `election_timeout_ms - lease_drift_margin_ms` after a heartbeat went
//! out (its clock), and the followers that echoed the heartbeat refuse other candidates for
//! `election_timeout_ms` after they received it (their clocks). Nothing else checks that
//! promise, so a leader whose clock runs slow (or a follower whose clock runs fast) could
//! serve a stale lease read once a new leader was elected behind its back.
//!
//! Every `Append` carries the leader's clock and every `AppendResp` echoes it with the
//! follower's own. One answer is a [`ClockSample`]: the follower read its clock after the
//! leader's `sent_ms` and before the leader's `recv_ms`. Two samples bound how far the
//! follower's clock moved while the leader's moved between `later.sent - earlier.recv` and
//! `later.recv - earlier.sent`, whatever the network did in between. [`ClockCheck`] keeps a
//! reference sample one to two election timeouts old and judges every new sample against it:
//! the rates **agree** when even the worst case of those bounds stays within the bound, they
//! **drift** when even the best case is outside it, and otherwise (the round trips were too
//! slow to tell) the last verdict stands. A leader counts a peer's echo toward its lease only
//! while that peer's clock agrees ([`Raft::confirm_reads`](super::Raft)), and a lease read on a
//! leader without one is refused, so the platform serves it through ReadIndex until the clocks
//! agree again.
//!
//! This catches drift that lasts while the leader and its followers talk. A clock that changes
//! its rate in the same instant that the leader is cut off is caught by nothing: the lease then
//! relies on the bound alone.

/// One follower answer, in the leader's and the follower's milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSample {
    /// When the leader made the message the answer echoes (its clock).
    pub sent_ms: u64,
    /// When the answer arrived (the leader's clock).
    pub recv_ms: u64,
    /// The follower's clock when it answered (low 32 bits).
    pub peer_ms: u32,
}

/// What the clock check concluded about one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClockVerdict {
    /// Not measured yet over a long enough window (a new leader, or a follower that restarted).
    Unknown,
    /// The follower's clock runs at the leader's rate within the bound.
    Agree,
    /// The follower's clock runs faster or slower than the leader's by more than the bound.
    Drift,
}

/// The clock check of one follower (kept in its [`super::progress::Progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockCheck {
    /// The sample new ones are judged against: one to two windows old.
    base: Option<ClockSample>,
    /// The first sample of the current window; it becomes `base` when the window ends.
    next: Option<ClockSample>,
    verdict: ClockVerdict,
    /// The follower's clock rate relative to the leader's, minus one, in parts per million
    /// (positive: the follower's clock runs faster), at the last judged sample.
    rate_ppm: Option<i32>,
}

impl Default for ClockCheck {
    fn default() -> Self {
        Self::new()
    }
}

/// Leader and follower clocks tick in whole milliseconds: each elapsed time read from them may
/// be one short or one long.
const TICK_SLACK_MS: u64 = 1;

impl ClockCheck {
    /// Nothing measured.
    pub const fn new() -> Self {
        ClockCheck {
            base: None,
            next: None,
            verdict: ClockVerdict::Unknown,
            rate_ppm: None,
        }
    }

    /// The current verdict.
    pub fn verdict(&self) -> ClockVerdict {
        self.verdict
    }

    /// The follower's clock rate relative to the leader's, minus one, in parts per million
    /// (positive: it runs faster), as last measured; `None` before the first judgement.
    pub fn rate_ppm(&self) -> Option<i32> {
        self.rate_ppm
    }

    /// Judge `s` against the reference sample, then move the window on. `window_ms` is the
    /// shortest leader time a judgement spans; `bound_ppm` the largest rate difference that
    /// still agrees. Returns the verdict after `s`.
    pub fn observe(&mut self, s: ClockSample, window_ms: u64, bound_ppm: u64) -> ClockVerdict {
        let Some(base) = self.base else {
            self.restart(s);
            return self.verdict;
        };
        let peer_elapsed = u64::from(s.peer_ms.wrapping_sub(base.peer_ms));
        if s.recv_ms < base.recv_ms || peer_elapsed > u64::from(u32::MAX / 2) {
            // The follower's clock went back: it restarted (a board's tick counter starts at
            // zero). Measure again from here.
            self.restart(s);
            return self.verdict;
        }
        let least = s.sent_ms.saturating_sub(base.recv_ms);
        if least >= window_ms {
            let most = s.recv_ms - base.sent_ms;
            self.judge(peer_elapsed, least, most, bound_ppm);
        }
        let next = self.next.unwrap_or(s);
        if s.recv_ms >= next.recv_ms + window_ms {
            self.base = Some(next);
            self.next = Some(s);
        }
        self.verdict
    }

    /// The follower's clock moved `peer` while the leader's moved between `least` and `most`.
    fn judge(&mut self, peer: u64, least: u64, most: u64, bound_ppm: u64) {
        const PPM: u128 = 1_000_000;
        let (peer_lo, peer_hi) = (
            u128::from(peer.saturating_sub(TICK_SLACK_MS)),
            u128::from(peer + TICK_SLACK_MS),
        );
        let (lead_lo, lead_hi) = (
            u128::from(least.saturating_sub(TICK_SLACK_MS)),
            u128::from(most + TICK_SLACK_MS),
        );
        let bound = u128::from(bound_ppm);
        let fast_at_most = peer_hi * PPM <= lead_lo * (PPM + bound);
        let slow_at_most = peer_lo * PPM >= lead_hi * PPM.saturating_sub(bound);
        let surely_fast = peer_lo * PPM > lead_hi * (PPM + bound);
        let surely_slow = peer_hi * PPM < lead_lo * PPM.saturating_sub(bound);
        if fast_at_most && slow_at_most {
            self.verdict = ClockVerdict::Agree;
        } else if surely_fast || surely_slow {
            self.verdict = ClockVerdict::Drift;
        }
        let mid = (least + most) / 2;
        if mid > 0 {
            let rate = (i128::from(peer) - i128::from(mid)) * 1_000_000 / i128::from(mid);
            self.rate_ppm = Some(rate.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32);
        }
    }

    fn restart(&mut self, s: ClockSample) {
        *self = ClockCheck::new();
        self.base = Some(s);
        self.next = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 1_000;
    /// 50 ms of margin on a 1 s election timeout: 52,631 ppm.
    const BOUND: u64 = 52_631;

    /// Heartbeats every 100 ms of leader time for `ms`, answered `rtt` later, by a follower
    /// whose clock runs at `rate` (its ms per leader ms), starting at leader time `from`.
    fn run(check: &mut ClockCheck, from: u64, ms: u64, rtt: u64, rate: f64, peer0: f64) -> f64 {
        let mut peer = peer0;
        let mut t = from;
        while t < from + ms {
            // The follower answers halfway through the round trip.
            let at = peer + rate * (rtt as f64 / 2.0);
            check.observe(
                ClockSample {
                    sent_ms: t,
                    recv_ms: t + rtt,
                    peer_ms: at as u64 as u32,
                },
                WINDOW,
                BOUND,
            );
            peer += rate * 100.0;
            t += 100;
        }
        peer
    }

    #[test]
    fn equal_clocks_agree_after_a_window_and_not_before() {
        let mut c = ClockCheck::new();
        run(&mut c, 0, 900, 2, 1.0, 5_000.0);
        assert_eq!(c.verdict(), ClockVerdict::Unknown, "less than a window");
        run(&mut c, 900, 2_000, 2, 1.0, 5_900.0);
        assert_eq!(c.verdict(), ClockVerdict::Agree);
        assert!(c.rate_ppm().unwrap().abs() < 5_000, "{:?}", c.rate_ppm());
    }

    #[test]
    fn small_drift_agrees_and_large_drift_is_caught_either_way() {
        for (rate, want) in [
            (1.01, ClockVerdict::Agree),
            (0.99, ClockVerdict::Agree),
            (4.0, ClockVerdict::Drift),
            (0.25, ClockVerdict::Drift),
            (1.2, ClockVerdict::Drift),
            (0.8, ClockVerdict::Drift),
        ] {
            let mut c = ClockCheck::new();
            run(&mut c, 0, 5_000, 2, rate, 100.0);
            assert_eq!(c.verdict(), want, "rate {rate}");
        }
    }

    #[test]
    fn a_drift_that_starts_later_is_caught_and_clears_when_the_rates_agree_again() {
        let mut c = ClockCheck::new();
        let peer = run(&mut c, 0, 3_000, 2, 1.0, 0.0);
        assert_eq!(c.verdict(), ClockVerdict::Agree);
        // The leader's clock slows to a quarter: the follower's seems to run four times as fast.
        let peer = run(&mut c, 3_000, 400, 2, 4.0, peer);
        assert_eq!(c.verdict(), ClockVerdict::Drift, "within half a window");
        assert!(c.rate_ppm().unwrap() > 100_000);
        let peer = run(&mut c, 3_400, 1_000, 2, 4.0, peer);
        assert_eq!(c.verdict(), ClockVerdict::Drift);
        run(&mut c, 4_400, 3_000, 2, 1.0, peer);
        assert_eq!(
            c.verdict(),
            ClockVerdict::Agree,
            "two windows after the rates agree"
        );
    }

    #[test]
    fn slow_round_trips_decide_nothing() {
        let mut c = ClockCheck::new();
        // 400 ms round trips over 1 s windows cannot tell 1 % from 10 %.
        run(&mut c, 0, 5_000, 400, 1.0, 0.0);
        assert_eq!(c.verdict(), ClockVerdict::Unknown);
        // Once agreed, slow round trips leave the verdict as it was.
        let mut c = ClockCheck::new();
        let peer = run(&mut c, 0, 3_000, 2, 1.0, 0.0);
        run(&mut c, 3_000, 3_000, 400, 1.0, peer);
        assert_eq!(c.verdict(), ClockVerdict::Agree);
    }

    #[test]
    fn network_delay_never_looks_like_drift() {
        // Equal clocks, round trips that swing between 1 and 300 ms: the bounds always hold
        // the truth, so no verdict is ever Drift.
        let mut c = ClockCheck::new();
        let mut t = 0;
        for k in 0..500u64 {
            let rtt = 1 + (k * 7919) % 300;
            let answer_at = t + (k * 31) % (rtt + 1);
            c.observe(
                ClockSample {
                    sent_ms: t,
                    recv_ms: t + rtt,
                    peer_ms: (answer_at + 777) as u32,
                },
                WINDOW,
                BOUND,
            );
            assert_ne!(c.verdict(), ClockVerdict::Drift, "sample {k}");
            t += 50;
        }
    }

    #[test]
    fn a_follower_clock_that_goes_back_starts_over() {
        let mut c = ClockCheck::new();
        run(&mut c, 0, 3_000, 2, 1.0, 50_000.0);
        assert_eq!(c.verdict(), ClockVerdict::Agree);
        run(&mut c, 3_000, 200, 2, 1.0, 10.0);
        assert_eq!(c.verdict(), ClockVerdict::Unknown);
        assert_eq!(c.rate_ppm(), None);
    }

    #[test]
    fn follower_clocks_that_wrap_past_32_bits_still_measure() {
        let mut c = ClockCheck::new();
        run(&mut c, 0, 3_000, 2, 1.0, u32::MAX as f64 - 1_000.0);
        assert_eq!(c.verdict(), ClockVerdict::Agree);
    }
}
