//! Media port allocation: an even RTP port and the next odd RTCP port per
//! stream, from a configured range, per logical interface. Released pairs rest
//! in quarantine before reuse so late packets of an old call never reach a
//! new one. Sans-IO: time is passed in; binding is delegated to a
//! [`PortBinder`] so a port taken by another process is skipped.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use voxline_relay_dataplane::raw_partition;

/// Binds the sockets of a pair; implemented by the I/O layer (and by fakes
/// in tests).
pub trait PortBinder {
    /// Tries to bind `rtp_port` and `rtp_port + 1` on `addr`.
    fn bind_pair(&mut self, addr: IpAddr, rtp_port: u16) -> bool;
}

/// Port pairs of one interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortPool {
    free: VecDeque<u16>,
    quarantine: VecDeque<(u16, u64)>,
    quarantine_ms: u64,
    total: usize,
    /// First and last RTP port of the range.
    range: (u16, u16),
}

impl PortPool {
    /// All even ports `p` with `p + 1` inside `[min, max]`.
    pub fn new(min: u16, max: u16, quarantine_ms: u64) -> PortPool {
        let first = min.saturating_add(min % 2);
        let mut free = VecDeque::new();
        let mut p = u32::from(first);
        while p < u32::from(max) && p > 0 {
            if let Ok(port) = u16::try_from(p) {
                free.push_back(port);
            }
            p += 2;
        }
        let total = free.len();
        let last = free.back().copied().unwrap_or(0);
        PortPool {
            free,
            quarantine: VecDeque::new(),
            quarantine_ms,
            total,
            range: (first, last),
        }
    }

    fn in_range(&self, rtp_port: u16) -> bool {
        rtp_port.is_multiple_of(2) && (self.range.0..=self.range.1).contains(&rtp_port)
    }

    /// Marks a pair as in use without binding it (a session taken over from
    /// another relay brings its sockets). False if the pair is outside the
    /// range or not free.
    pub fn reserve(&mut self, rtp_port: u16) -> bool {
        if !self.in_range(rtp_port) {
            return false;
        }
        if let Some(i) = self.free.iter().position(|p| *p == rtp_port) {
            self.free.remove(i);
            return true;
        }
        if let Some(i) = self.quarantine.iter().position(|(p, _)| *p == rtp_port) {
            self.quarantine.remove(i);
            return true;
        }
        false
    }

    fn thaw(&mut self, now_ms: u64) {
        while let Some(&(port, at)) = self.quarantine.front() {
            if now_ms.saturating_sub(at) < self.quarantine_ms {
                break;
            }
            self.quarantine.pop_front();
            self.free.push_back(port);
        }
    }

    /// Takes the next free pair that `binder` can bind. Pairs that fail to
    /// bind go to quarantine. `None` means out of ports.
    pub fn allocate(
        &mut self,
        addr: IpAddr,
        now_ms: u64,
        binder: &mut dyn PortBinder,
    ) -> Option<u16> {
        self.allocate_in(addr, now_ms, None, binder)
    }

    /// [`PortPool::allocate`] restricted to partition `(index, count)` of the
    /// range ([`raw_partition`]): the pairs a raw-I/O worker reads. Pairs of
    /// other partitions stay free (moved to the back of the free list), so
    /// one allocation looks at about `count` pairs.
    pub fn allocate_in(
        &mut self,
        addr: IpAddr,
        now_ms: u64,
        partition: Option<(usize, usize)>,
        binder: &mut dyn PortBinder,
    ) -> Option<u16> {
        self.thaw(now_ms);
        let attempts = self.free.len();
        for _ in 0..attempts {
            let port = self.free.pop_front()?;
            if partition.is_some_and(|(index, count)| raw_partition(port, count) != index) {
                self.free.push_back(port);
                continue;
            }
            if binder.bind_pair(addr, port) {
                return Some(port);
            }
            self.quarantine.push_back((port, now_ms));
        }
        None
    }

    /// Returns a pair; it becomes free after the quarantine.
    /// Pairs outside the range (taken over from a relay with another range)
    /// are forgotten.
    pub fn release(&mut self, rtp_port: u16, now_ms: u64) {
        if self.in_range(rtp_port) {
            self.quarantine.push_back((rtp_port, now_ms));
        }
    }

    /// Ports (RTP + RTCP) currently allocated.
    pub fn used_ports(&self) -> usize {
        self.total
            .saturating_sub(self.free.len() + self.quarantine.len())
            .saturating_mul(2)
    }

    /// Pairs available right now (excluding quarantine).
    pub fn free_pairs(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// Binder that succeeds except for listed ports.
    #[derive(Default)]
    pub(crate) struct FakeBinder {
        pub busy: Vec<u16>,
        pub bound: Vec<u16>,
    }

    impl PortBinder for FakeBinder {
        fn bind_pair(&mut self, _addr: IpAddr, rtp_port: u16) -> bool {
            if self.busy.contains(&rtp_port) {
                return false;
            }
            self.bound.push(rtp_port);
            true
        }
    }

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn even_rtp_ports_and_exhaustion() {
        let mut pool = PortPool::new(30001, 30007, 1000);
        let mut b = FakeBinder::default();
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30002));
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30004));
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30006));
        assert_eq!(pool.allocate(LO, 0, &mut b), None);
        assert_eq!(pool.used_ports(), 6);
    }

    #[test]
    fn quarantine_delays_reuse() {
        let mut pool = PortPool::new(30000, 30003, 1000);
        let mut b = FakeBinder::default();
        let a = pool.allocate(LO, 0, &mut b).unwrap();
        let _c = pool.allocate(LO, 0, &mut b).unwrap();
        pool.release(a, 100);
        assert_eq!(pool.allocate(LO, 500, &mut b), None, "still in quarantine");
        assert_eq!(pool.allocate(LO, 1100, &mut b), Some(a));
    }

    #[test]
    fn reserve_takes_pairs_out_of_the_pool() {
        let mut pool = PortPool::new(30000, 30005, 1000);
        assert!(pool.reserve(30002));
        assert!(!pool.reserve(30002), "already reserved");
        assert!(
            !pool.reserve(30001) && !pool.reserve(40000),
            "not a pair here"
        );
        assert_eq!(pool.used_ports(), 2);
        let mut b = FakeBinder::default();
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30000));
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30004));
        assert_eq!(pool.allocate(LO, 0, &mut b), None);
        pool.release(40000, 0);
        assert_eq!(pool.used_ports(), 6, "foreign pairs are not adopted");
        pool.release(30002, 0);
        assert_eq!(pool.allocate(LO, 2000, &mut b), Some(30002));
    }

    #[test]
    fn partitions_give_each_worker_its_own_pairs() {
        let mut pool = PortPool::new(30000, 30015, 1000);
        let mut b = FakeBinder::default();
        let mut got = [Vec::new(), Vec::new()];
        for _ in 0..2 {
            for (w, ports) in got.iter_mut().enumerate() {
                ports.push(pool.allocate_in(LO, 0, Some((w, 2)), &mut b).unwrap());
            }
        }
        for (w, ports) in got.iter().enumerate() {
            assert!(ports.iter().all(|&p| raw_partition(p, 2) == w), "{ports:?}");
        }
        assert_eq!(got, [vec![30000, 30004], vec![30002, 30006]]);
        // Partition 0 is used up; partition 1 still has pairs.
        assert_eq!(pool.allocate_in(LO, 0, Some((0, 2)), &mut b), Some(30008));
        assert_eq!(pool.allocate_in(LO, 0, Some((0, 2)), &mut b), Some(30012));
        assert_eq!(pool.allocate_in(LO, 0, Some((0, 2)), &mut b), None);
        let last = pool.allocate_in(LO, 0, Some((1, 2)), &mut b).unwrap();
        assert!([30010, 30014].contains(&last));
        assert_eq!(pool.free_pairs(), 1);
    }

    #[test]
    fn busy_ports_are_skipped() {
        let mut pool = PortPool::new(30000, 30005, 1000);
        let mut b = FakeBinder {
            busy: vec![30000],
            ..Default::default()
        };
        assert_eq!(pool.allocate(LO, 0, &mut b), Some(30002));
        assert_eq!(pool.free_pairs(), 1);
    }
}
