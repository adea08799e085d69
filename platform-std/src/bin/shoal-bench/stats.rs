//! What a connection measured for one kind of operation: a latency histogram, counts and
//! errors by kind; merged over connections for the report.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Results of one kind of operation (writes, reads or watch events) on one connection, or
/// merged over several.
pub struct OpStats {
    /// Latencies in microseconds, 1 µs to 60 s.
    pub hist: Histogram<u64>,
    /// Operations answered successfully.
    pub ok: u64,
    /// Reads answered "no such key" (counted in `ok` too).
    pub misses: u64,
    /// Failed operations by what went wrong.
    pub errors: BTreeMap<String, u64>,
}

impl OpStats {
    /// Nothing measured yet.
    pub fn new() -> OpStats {
        OpStats {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ok: 0,
            misses: 0,
            errors: BTreeMap::new(),
        }
    }

    /// One success after `us` microseconds.
    pub fn record(&mut self, us: u64) {
        // Bounded below at 1: the histogram's lowest value.
        self.hist.saturating_record(us.max(1));
        self.ok += 1;
    }

    /// One failure.
    pub fn fail(&mut self, why: String) {
        *self.errors.entry(why).or_default() += 1;
    }

    /// Failures of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Add another connection's results.
    pub fn merge(&mut self, o: &OpStats) {
        self.hist.add(&o.hist).expect("same bounds");
        self.ok += o.ok;
        self.misses += o.misses;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// The latency at quantile `q` (0 when nothing was recorded).
    pub fn pct(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist.value_at_quantile(q)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_add_up() {
        let mut a = OpStats::new();
        let mut b = OpStats::new();
        assert_eq!(a.pct(0.99), 0, "an empty histogram has no percentiles");
        for us in 1..=90 {
            a.record(us);
        }
        b.record(0); // recorded as 1 µs
        b.record(10_000);
        b.misses += 1;
        b.fail("unavailable".into());
        b.fail("unavailable".into());
        a.fail("not_leader".into());
        a.merge(&b);
        assert_eq!(a.ok, 92);
        assert_eq!(a.misses, 1);
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.errors["unavailable"], 2);
        assert_eq!(a.hist.min(), 1);
        assert_eq!(a.pct(0.5), 45);
        assert!(a.pct(1.0) >= 10_000);
    }
}
