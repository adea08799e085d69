//! A millisecond clock from a tick counter. Boards count milliseconds in a 32-bit register or
//! variable that wraps every 49.7 days; [`TickClock`] extends it to the 64-bit, never-decreasing
//! time `shoal_core` expects, as long as it is updated at least once per wrap.

use shoal_core::io::Clock;

/// A 64-bit millisecond clock extended from a wrapping 32-bit tick count.
#[derive(Clone, Copy, Debug, Default)]
pub struct TickClock {
    last_raw: u32,
    now_ms: u64,
}

impl TickClock {
    /// A clock at 0 ms whose tick counter currently reads `raw_ms`.
    pub const fn new(raw_ms: u32) -> Self {
        TickClock {
            last_raw: raw_ms,
            now_ms: 0,
        }
    }

    /// Take the counter's current value; returns the new time in milliseconds.
    pub fn update(&mut self, raw_ms: u32) -> u64 {
        self.now_ms += u64::from(raw_ms.wrapping_sub(self.last_raw));
        self.last_raw = raw_ms;
        self.now_ms
    }
}

impl Clock for TickClock {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_across_a_wrap() {
        let mut c = TickClock::new(u32::MAX - 5);
        assert_eq!(c.update(u32::MAX), 5);
        assert_eq!(c.update(4), 10);
        assert_eq!(c.now_ms(), 10);
        assert_eq!(c.update(4), 10);
    }
}
