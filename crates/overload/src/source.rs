//! Per-source rate limiting with temporary bans, like Kamailio's `pike`.
//!
//! Requests are counted per source IP in fixed windows; the rate of the
//! window in progress is estimated with the previous window's count
//! weighted by how much of it the sliding window still covers (so a burst
//! straddling two windows is not missed). A source over the limit is banned
//! for the configured time; requests during a ban still count, so a source
//! that keeps flooding is banned again as soon as its ban ends.
//!
//! Memory is bounded: at most `max_sources` sources are tracked. When the
//! table is full, idle sources are swept out; a new source that still finds
//! no room is let through and counted as untracked.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{FloodConfig, IpNet};

const SHARDS: usize = 16;

/// What [`SourceLimiter::check`] decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceVerdict {
    /// Within its limit (or exempt, or untracked).
    Allowed,
    /// The source is banned.
    Banned {
        /// Time left until the ban ends.
        remaining: Duration,
        /// This request started the ban (log it once).
        new_ban: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Start of the current window, ms since the limiter's epoch.
    window_start: u64,
    count: u32,
    previous: u32,
    /// End of the ban, ms since the epoch (0: not banned).
    banned_until: u64,
}

type Table = HashMap<IpAddr, Entry, foldhash::fast::RandomState>;

/// Per-source limits; shared by the receive threads.
pub struct SourceLimiter {
    shards: Box<[Mutex<Table>]>,
    hasher: foldhash::fast::RandomState,
    epoch: Instant,
    window_ms: u64,
    limit: u32,
    ban_ms: u64,
    exempt: Vec<IpNet>,
    shard_capacity: usize,
    untracked: AtomicU64,
    bans: AtomicU64,
}

impl std::fmt::Debug for SourceLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceLimiter")
            .field("window_ms", &self.window_ms)
            .field("limit", &self.limit)
            .field("ban_ms", &self.ban_ms)
            .finish_non_exhaustive()
    }
}

impl SourceLimiter {
    /// A limiter for `config` (exempt entries that do not parse are
    /// ignored: validation reports them). `now` is the start of its clock.
    pub fn new(config: &FloodConfig, now: Instant) -> SourceLimiter {
        SourceLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(Table::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            epoch: now,
            window_ms: config.window_ms.max(1),
            limit: config.limit.max(1),
            ban_ms: config.ban_secs.saturating_mul(1000).max(1),
            exempt: config
                .exempt
                .iter()
                .filter_map(|e| IpNet::parse(e).ok())
                .collect(),
            shard_capacity: config.max_sources.div_ceil(SHARDS).max(1),
            untracked: AtomicU64::new(0),
            bans: AtomicU64::new(0),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn shard(&self, ip: IpAddr) -> MutexGuard<'_, Table> {
        // The modulo keeps the index inside the slice.
        let i = (self.hasher.hash_one(ip) % self.shards.len() as u64) as usize;
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request from `ip` received at `now` and says whether it
    /// may be processed.
    pub fn check(&self, ip: IpAddr, now: Instant) -> SourceVerdict {
        if self.exempt.iter().any(|n| n.contains(ip)) {
            return SourceVerdict::Allowed;
        }
        let t = self.millis(now);
        let w = self.window_ms;
        let mut table = self.shard(ip);
        if !table.contains_key(&ip) && table.len() >= self.shard_capacity {
            sweep_table(&mut table, t, w);
            if table.len() >= self.shard_capacity {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return SourceVerdict::Allowed;
            }
        }
        let e = table.entry(ip).or_insert(Entry {
            window_start: t - t % w,
            count: 0,
            previous: 0,
            banned_until: 0,
        });
        let passed = t.saturating_sub(e.window_start) / w;
        if passed == 1 {
            e.previous = e.count;
            e.count = 0;
        } else if passed > 1 {
            e.previous = 0;
            e.count = 0;
        }
        e.window_start += passed * w;
        e.count = e.count.saturating_add(1);
        if e.banned_until > t {
            return SourceVerdict::Banned {
                remaining: Duration::from_millis(e.banned_until - t),
                new_ban: false,
            };
        }
        let into = t.saturating_sub(e.window_start);
        let carried = u64::from(e.previous) * (w - into.min(w)) / w;
        if carried + u64::from(e.count) > u64::from(self.limit) {
            e.banned_until = t + self.ban_ms;
            self.bans.fetch_add(1, Ordering::Relaxed);
            return SourceVerdict::Banned {
                remaining: Duration::from_millis(self.ban_ms),
                new_ban: true,
            };
        }
        SourceVerdict::Allowed
    }

    /// Forgets sources that are neither banned nor seen in the last two
    /// windows; returns how many sources are banned at `now`.
    pub fn sweep(&self, now: Instant) -> usize {
        let t = self.millis(now);
        let mut banned = 0;
        for shard in self.shards.iter() {
            let mut table = shard.lock().unwrap_or_else(PoisonError::into_inner);
            sweep_table(&mut table, t, self.window_ms);
            banned += table.values().filter(|e| e.banned_until > t).count();
        }
        banned
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Requests let through untracked because the table was full.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(Ordering::Relaxed)
    }

    /// Bans started so far.
    pub fn bans(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }
}

fn sweep_table(table: &mut Table, t: u64, w: u64) {
    table.retain(|_, e| e.banned_until > t || t < e.window_start.saturating_add(2 * w));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BannedAnswer;

    fn config(limit: u32) -> FloodConfig {
        FloodConfig {
            enabled: true,
            window_ms: 1000,
            limit,
            ban_secs: 10,
            banned_answer: BannedAnswer::Drop,
            exempt: vec!["10.0.0.0/8".into()],
            max_sources: 64,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_over_its_limit_is_banned_for_the_ban_time() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(&config(5), t0);
        let a = ip("192.0.2.1");
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for i in 0..5 {
            assert_eq!(
                l.check(a, at(i * 10)),
                SourceVerdict::Allowed,
                "request {i}"
            );
        }
        // Another source is not affected.
        assert_eq!(l.check(ip("192.0.2.2"), at(60)), SourceVerdict::Allowed);
        assert_eq!(
            l.check(a, at(100)),
            SourceVerdict::Banned {
                remaining: Duration::from_secs(10),
                new_ban: true
            }
        );
        assert_eq!(
            l.check(a, at(5100)),
            SourceVerdict::Banned {
                remaining: Duration::from_millis(5000),
                new_ban: false
            }
        );
        assert_eq!(l.bans(), 1);
        assert_eq!(l.sweep(at(5200)), 1);
        // Quiet after the ban: allowed again.
        assert_eq!(l.check(a, at(20_000)), SourceVerdict::Allowed);
        assert_eq!(l.sweep(at(20_000)), 0);
    }

    #[test]
    fn a_burst_across_a_window_boundary_counts() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(&config(10), t0);
        let a = ip("198.51.100.9");
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // 8 at the end of one window, 8 at the start of the next: 16 within
        // 200 ms, over a limit of 10 per second.
        let mut verdicts = Vec::new();
        for i in 0..8 {
            verdicts.push(l.check(a, at(900 + i * 10)));
        }
        for i in 0..8 {
            verdicts.push(l.check(a, at(1000 + i * 10)));
        }
        assert!(verdicts[..8].iter().all(|v| *v == SourceVerdict::Allowed));
        assert!(
            verdicts[8..]
                .iter()
                .any(|v| matches!(v, SourceVerdict::Banned { new_ban: true, .. }))
        );
        // A steady rate under the limit is never banned.
        let b = ip("198.51.100.10");
        for i in 0..200 {
            assert_eq!(l.check(b, at(i * 125)), SourceVerdict::Allowed, "at {i}");
        }
    }

    #[test]
    fn a_source_that_keeps_flooding_is_banned_again() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(&config(5), t0);
        let a = ip("2001:db8::7");
        let mut new_bans = 0;
        for ms in (0..25_000).step_by(20) {
            if let SourceVerdict::Banned { new_ban: true, .. } =
                l.check(a, t0 + Duration::from_millis(ms))
            {
                new_bans += 1;
            }
        }
        // Banned at once, then again at 10 s and 20 s.
        assert_eq!(new_bans, 3);
    }

    #[test]
    fn exempt_sources_and_memory_bound() {
        let t0 = Instant::now();
        let l = SourceLimiter::new(&config(1), t0);
        for _ in 0..100 {
            assert_eq!(l.check(ip("10.1.2.3"), t0), SourceVerdict::Allowed);
        }
        // 64 sources fit; beyond that new ones pass untracked.
        for i in 0..1000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0xC000_0200 + i));
            let _ = l.check(a, t0);
        }
        assert!(l.tracked() <= 64, "{}", l.tracked());
        assert!(l.untracked() > 0);
        // Two windows later the idle ones are swept and room is made.
        let later = t0 + Duration::from_millis(2500);
        assert_eq!(l.check(ip("203.0.113.1"), later), SourceVerdict::Allowed);
        l.sweep(later);
        assert!(l.tracked() <= 2, "{}", l.tracked());
    }
}
