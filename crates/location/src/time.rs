//! Wall-clock instants as plain numbers, so the core stays sans-IO: every
//! operation takes an explicit `now`.

use std::time::{SystemTime, UNIX_EPOCH};

/// An absolute instant: milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The instant `ms` milliseconds after the Unix epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// The instant `secs` seconds after the Unix epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded down).
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// This instant plus `secs` seconds (saturating).
    pub const fn add_secs(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    /// Whole seconds from `now` until this instant, rounded up; 0 if past.
    pub const fn secs_after(self, now: Timestamp) -> u64 {
        self.0.saturating_sub(now.0).div_ceil(1000)
    }

    /// The current system time (the only clock read in this crate; I/O code
    /// calls it and passes the value into the core).
    pub fn now() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        let t = Timestamp::from_secs(100);
        assert_eq!(t.as_millis(), 100_000);
        assert_eq!(t.add_secs(5).as_secs(), 105);
        assert_eq!(t.add_secs(5).secs_after(t), 5);
        assert_eq!(Timestamp::from_millis(100_001).secs_after(t), 1);
        assert_eq!(t.secs_after(t.add_secs(1)), 0);
        assert!(Timestamp::now() > Timestamp::from_secs(1_600_000_000));
    }
}
