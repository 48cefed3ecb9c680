//! Node-level overload control.
//!
//! The node is *overloaded* during an evaluation interval when, in the
//! interval before, a received request waited in the kernel's receive
//! queue longer than `max_queue_delay` or the node's CPU use passed its
//! threshold. Queue delay is the direct symptom: once it nears T1 (500 ms)
//! clients retransmit and the load feeds on itself; the threshold sits well
//! below that, so the node sheds *before* it saturates.
//!
//! New requests of the shed methods that themselves waited longer than
//! `max_queue_delay` (or any, in an interval overloaded by CPU, or over a
//! stream, which has no receive time) are answered 503 with a random
//! Retry-After — but only within a budget: at most `reject_share` of each
//! interval may be spent rejecting. The server reports what rejections
//! cost with [`AdmissionControl::charge_batch`]: their share of the CPU
//! time of the receive batches they were in, system calls included.
//! Beyond the budget new requests are served, and what the node cannot
//! read stays in (and overflows) the kernel queue. So under any offered
//! load the node keeps serving at least `1 - reject_share` of its capacity,
//! instead of spending itself on refusals. In-dialog requests and
//! emergency calls are never refused.
//!
//! Lock-free: the receive threads share one controller through atomics;
//! the first caller after an interval ends evaluates it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use voxline_sip::RequestRef;

use crate::classify::RequestClass;
use crate::config::OverloadConfig;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Process it.
    Admit,
    /// Answer 503 with this Retry-After (seconds) and do nothing else.
    Reject {
        /// Seconds for the Retry-After header.
        retry_after: u32,
    },
}

/// A snapshot for metrics and the admin API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionState {
    /// Overloaded in the current interval.
    pub overloaded: bool,
    /// Longest queue delay seen in the last complete interval.
    pub queue_delay: Duration,
    /// Last CPU sample, 0.0 to 1.0.
    pub cpu: f64,
    /// Requests refused with 503 so far.
    pub rejected: u64,
    /// New requests served while overloaded because the interval's
    /// rejection budget was spent.
    pub served_over_budget: u64,
    /// Intervals that were overloaded so far.
    pub overloaded_intervals: u64,
    /// Time charged to rejections so far.
    pub refusal_time: Duration,
}

/// The node's admission control; shared by the receive threads.
#[derive(Debug)]
pub struct AdmissionControl {
    enabled: bool,
    max_delay_ns: u64,
    cpu_threshold: f64,
    interval_ns: u64,
    budget_ns: u64,
    retry_after: (u32, u32),
    shed_methods: Vec<String>,
    emergency_numbers: Vec<String>,
    epoch: Instant,
    interval_start: AtomicU64,
    max_delay: AtomicU64,
    last_delay: AtomicU64,
    cpu_bits: AtomicU64,
    overloaded: AtomicBool,
    over_cpu: AtomicBool,
    spent_ns: AtomicU64,
    spent_total_ns: AtomicU64,
    rejected: AtomicU64,
    over_budget: AtomicU64,
    overloaded_intervals: AtomicU64,
}

impl AdmissionControl {
    /// A controller for `config`; `now` starts its clock.
    pub fn new(config: &OverloadConfig, now: Instant) -> AdmissionControl {
        let interval_ns = nanos(config.interval());
        let min = config.retry_after_min_secs.max(1);
        AdmissionControl {
            enabled: config.enabled,
            max_delay_ns: config.max_queue_delay().map_or(0, nanos),
            cpu_threshold: f64::from(config.cpu_threshold_percent.min(100)) / 100.0,
            interval_ns,
            budget_ns: interval_ns * u64::from(config.reject_share_percent.min(100)) / 100,
            retry_after: (min, config.retry_after_max_secs.max(min)),
            shed_methods: config.shed_methods.clone(),
            emergency_numbers: config.emergency_numbers.clone(),
            epoch: now,
            interval_start: AtomicU64::new(0),
            max_delay: AtomicU64::new(0),
            last_delay: AtomicU64::new(0),
            cpu_bits: AtomicU64::new(0f64.to_bits()),
            overloaded: AtomicBool::new(false),
            over_cpu: AtomicBool::new(false),
            spent_ns: AtomicU64::new(0),
            spent_total_ns: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
            overloaded_intervals: AtomicU64::new(0),
        }
    }

    fn since_epoch(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.epoch))
    }

    /// Ends the interval if it is over: decides whether the next one is
    /// overloaded and resets the budget. Cheap when it is not over.
    fn tick(&self, now: Instant) {
        let t = self.since_epoch(now);
        let start = self.interval_start.load(Ordering::Acquire);
        if t < start.saturating_add(self.interval_ns) {
            return;
        }
        if self
            .interval_start
            .compare_exchange(start, t, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // another thread evaluates this interval
        }
        let delay = self.max_delay.swap(0, Ordering::AcqRel);
        self.last_delay.store(delay, Ordering::Release);
        let cpu = f64::from_bits(self.cpu_bits.load(Ordering::Acquire));
        let over_cpu = self.enabled && self.cpu_threshold > 0.0 && cpu > self.cpu_threshold;
        let over = over_cpu || (self.enabled && self.max_delay_ns > 0 && delay > self.max_delay_ns);
        self.spent_ns.store(0, Ordering::Release);
        self.over_cpu.store(over_cpu, Ordering::Release);
        self.overloaded.store(over, Ordering::Release);
        if over {
            self.overloaded_intervals.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long a received request waited in the receive queue.
    pub fn observe_queue_delay(&self, delay: Duration, now: Instant) {
        self.tick(now);
        self.max_delay.fetch_max(nanos(delay), Ordering::AcqRel);
    }

    /// Records the node's CPU use over the last sampling period (0.0 to
    /// 1.0 of the cores it may use).
    pub fn observe_cpu(&self, busy: f64, now: Instant) {
        self.tick(now);
        self.cpu_bits
            .store(busy.clamp(0.0, 1.0).to_bits(), Ordering::Release);
    }

    /// Whether the node is overloaded now (one atomic load when the
    /// interval is not over): callers classify requests only then.
    pub fn overloaded(&self, now: Instant) -> bool {
        self.tick(now);
        self.overloaded.load(Ordering::Acquire)
    }

    /// How overload control treats `msg`.
    pub fn classify<'a>(&self, request: impl Into<RequestRef<'a>>) -> RequestClass {
        RequestClass::of(request, &self.shed_methods, &self.emergency_numbers)
    }

    /// Whether new requests are being refused: the CPU signal refuses
    /// every new request of an overloaded interval; the queue signal
    /// refuses the requests that themselves waited longer than
    /// `max_queue_delay` (their kernel receive time says so), or, when
    /// that is unknown (streams), every new request of an interval that
    /// follows one with such a wait.
    ///
    /// Judging each datagram by its own wait keeps the queue at the
    /// threshold without the on/off swings of a per-interval decision: an
    /// interval that serves everything lets a queue of a whole interval
    /// build up, which the next ones must refuse away.
    pub fn sheds(&self, waited: Option<Duration>, now: Instant) -> bool {
        self.tick(now);
        if !self.enabled {
            return false;
        }
        if self.over_cpu.load(Ordering::Acquire) {
            return true;
        }
        match waited {
            Some(w) if self.max_delay_ns > 0 => nanos(w) > self.max_delay_ns,
            _ => self.overloaded.load(Ordering::Acquire),
        }
    }

    /// Whether refusals may happen now: the interval is overloaded or a
    /// request in it has waited too long already. Callers time their work
    /// for [`charge_batch`](Self::charge_batch) only then.
    pub fn shedding(&self, now: Instant) -> bool {
        self.overloaded(now)
            || (self.enabled
                && self.max_delay_ns > 0
                && self.max_delay.load(Ordering::Acquire) > self.max_delay_ns)
    }

    /// Decides about a request of `class` received at `now` after waiting
    /// `waited` in the receive queue (`None`: unknown).
    pub fn admit(&self, class: RequestClass, waited: Option<Duration>, now: Instant) -> Admission {
        if !class.may_shed() || !self.sheds(waited, now) {
            return Admission::Admit;
        }
        if self.spent_ns.load(Ordering::Acquire) >= self.budget_ns {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
            return Admission::Admit;
        }
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let (min, max) = self.retry_after;
        Admission::Reject {
            retry_after: rand::random_range(min..=max),
        }
    }

    /// Accounts the time a rejection took against the interval's budget.
    pub fn charge(&self, cost: Duration) {
        self.spent_ns.fetch_add(nanos(cost), Ordering::AcqRel);
        self.spent_total_ns
            .fetch_add(nanos(cost), Ordering::Relaxed);
    }

    /// Accounts a share of one receive batch against the budget: of the
    /// batch's `datagrams`, `refusal_work` were refusal work (a refused
    /// request, the ACK of a 503), and the whole batch cost `cpu`, its
    /// system calls included. A refusal's own clock misses most of its
    /// cost (the receive and the send in the kernel, the ACK that follows);
    /// an equal share of the batch is what it really took, or a little more,
    /// since a refusal is the cheapest thing in a batch.
    pub fn charge_batch(&self, refusal_work: usize, datagrams: usize, cpu: Duration) {
        if refusal_work == 0 || datagrams == 0 {
            return;
        }
        let work = refusal_work.min(datagrams) as u64;
        self.charge(Duration::from_nanos(
            nanos(cpu).saturating_mul(work) / datagrams as u64,
        ));
    }

    /// The current state.
    pub fn state(&self) -> AdmissionState {
        AdmissionState {
            overloaded: self.overloaded.load(Ordering::Acquire),
            queue_delay: Duration::from_nanos(self.last_delay.load(Ordering::Acquire)),
            cpu: f64::from_bits(self.cpu_bits.load(Ordering::Acquire)),
            rejected: self.rejected.load(Ordering::Relaxed),
            served_over_budget: self.over_budget.load(Ordering::Relaxed),
            overloaded_intervals: self.overloaded_intervals.load(Ordering::Relaxed),
            refusal_time: Duration::from_nanos(self.spent_total_ns.load(Ordering::Relaxed)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OverloadConfig {
        OverloadConfig {
            max_queue_delay_ms: 100,
            cpu_threshold_percent: 90,
            interval_ms: 100,
            reject_share_percent: 10,
            retry_after_min_secs: 10,
            retry_after_max_secs: 20,
            ..OverloadConfig::default()
        }
    }

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn quiet_node_admits_everything() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        for i in 0..50 {
            c.observe_queue_delay(Duration::from_millis(5), ms(t0, i * 20));
            assert_eq!(
                c.admit(RequestClass::New, None, ms(t0, i * 20)),
                Admission::Admit
            );
        }
        assert!(!c.state().overloaded);
        assert_eq!(c.state().rejected, 0);
    }

    #[test]
    fn queue_delay_over_the_threshold_sheds_new_requests_only() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        c.observe_queue_delay(Duration::from_millis(150), ms(t0, 10));
        // Still the first interval: decided when it ends.
        assert_eq!(
            c.admit(RequestClass::New, None, ms(t0, 50)),
            Admission::Admit
        );
        let now = ms(t0, 120);
        assert!(c.overloaded(now));
        match c.admit(RequestClass::New, None, now) {
            Admission::Reject { retry_after } => assert!((10..=20).contains(&retry_after)),
            other => panic!("{other:?}"),
        }
        for class in [
            RequestClass::InDialog,
            RequestClass::Emergency,
            RequestClass::Other,
        ] {
            assert_eq!(c.admit(class, None, now), Admission::Admit, "{class:?}");
        }
        let s = c.state();
        assert!(s.overloaded);
        assert_eq!(s.queue_delay, Duration::from_millis(150));
        assert_eq!(s.rejected, 1);
        // The queue drained: the next interval is calm again.
        c.observe_queue_delay(Duration::from_millis(3), ms(t0, 150));
        assert!(!c.overloaded(ms(t0, 230)));
        assert_eq!(
            c.admit(RequestClass::New, None, ms(t0, 230)),
            Admission::Admit
        );
    }

    #[test]
    fn rejections_stay_within_their_share_of_time() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        c.observe_queue_delay(Duration::from_secs(1), ms(t0, 1));
        let now = ms(t0, 100);
        // Each rejection costs 2 ms: a 10 % budget of 100 ms is 5 of them.
        let mut rejected = 0;
        for _ in 0..20 {
            if let Admission::Reject { .. } = c.admit(RequestClass::New, None, now) {
                rejected += 1;
                c.charge(Duration::from_millis(2));
            }
        }
        assert_eq!(rejected, 5);
        assert_eq!(c.state().served_over_budget, 15);
        // A new overloaded interval has a new budget.
        c.observe_queue_delay(Duration::from_secs(1), ms(t0, 150));
        assert!(matches!(
            c.admit(RequestClass::New, None, ms(t0, 201)),
            Admission::Reject { .. }
        ));
        assert_eq!(c.state().overloaded_intervals, 2);
    }

    #[test]
    fn a_datagram_is_judged_by_its_own_wait() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        let (fresh, old) = (Duration::from_millis(20), Duration::from_millis(150));
        // The first request that waited too long is refused at once, in an
        // interval not (yet) overloaded, and batches are timed from then on.
        assert!(!c.shedding(ms(t0, 10)));
        c.observe_queue_delay(old, ms(t0, 10));
        assert!(c.shedding(ms(t0, 10)));
        assert!(matches!(
            c.admit(RequestClass::New, Some(old), ms(t0, 10)),
            Admission::Reject { .. }
        ));
        // In the overloaded interval that follows, a fresh datagram is
        // served: the queue is back under the threshold where it stands.
        c.observe_queue_delay(fresh, ms(t0, 120));
        assert!(c.overloaded(ms(t0, 120)));
        assert_eq!(
            c.admit(RequestClass::New, Some(fresh), ms(t0, 120)),
            Admission::Admit
        );
        // Without a receive time (streams) the interval decides.
        assert!(matches!(
            c.admit(RequestClass::New, None, ms(t0, 120)),
            Admission::Reject { .. }
        ));
        // The CPU signal refuses fresh datagrams too.
        c.observe_cpu(0.95, ms(t0, 130));
        assert!(c.overloaded(ms(t0, 230)));
        assert!(matches!(
            c.admit(RequestClass::New, Some(fresh), ms(t0, 230)),
            Admission::Reject { .. }
        ));
        assert_eq!(c.state().rejected, 3);
    }

    #[test]
    fn a_batch_charges_the_refusals_their_share_of_its_cost() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        c.observe_queue_delay(Duration::from_secs(1), ms(t0, 1));
        let now = ms(t0, 100);
        assert!(matches!(
            c.admit(RequestClass::New, None, now),
            Admission::Reject { .. }
        ));
        // 8 of a batch of 32 datagrams that cost 16 ms: 4 ms, not the
        // microseconds their own handling took.
        c.charge_batch(8, 32, Duration::from_millis(16));
        c.charge_batch(0, 32, Duration::from_millis(16));
        c.charge_batch(3, 0, Duration::from_millis(16));
        // Refusal work left over from an untimed batch counts at most the
        // whole batch: 4 + 2 ms.
        c.charge_batch(40, 32, Duration::from_millis(2));
        // The budget is 10 ms: 6 ms spent, one more 4 ms share spends it.
        assert!(matches!(
            c.admit(RequestClass::New, None, now),
            Admission::Reject { .. }
        ));
        c.charge_batch(1, 4, Duration::from_millis(16));
        assert_eq!(c.admit(RequestClass::New, None, now), Admission::Admit);
        assert_eq!(c.state().served_over_budget, 1);
    }

    #[test]
    fn cpu_over_the_threshold_counts_as_overload() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(&config(), t0);
        c.observe_cpu(0.95, ms(t0, 10));
        assert!(c.overloaded(ms(t0, 101)));
        c.observe_cpu(0.5, ms(t0, 150));
        assert!(!c.overloaded(ms(t0, 202)));
        // CPU off: only the queue counts.
        let off = AdmissionControl::new(
            &OverloadConfig {
                cpu_threshold_percent: 0,
                ..config()
            },
            t0,
        );
        off.observe_cpu(1.0, ms(t0, 10));
        assert!(!off.overloaded(ms(t0, 101)));
    }

    #[test]
    fn disabled_control_never_sheds() {
        let t0 = Instant::now();
        let c = AdmissionControl::new(
            &OverloadConfig {
                enabled: false,
                ..config()
            },
            t0,
        );
        c.observe_queue_delay(Duration::from_secs(5), ms(t0, 1));
        assert_eq!(
            c.admit(RequestClass::New, None, ms(t0, 500)),
            Admission::Admit
        );
        assert!(!c.state().overloaded);
    }

    #[test]
    fn shared_by_threads() {
        let t0 = Instant::now();
        let c = std::sync::Arc::new(AdmissionControl::new(&config(), t0));
        c.observe_queue_delay(Duration::from_secs(1), ms(t0, 1));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut rejected = 0;
                    for _ in 0..1000 {
                        if let Admission::Reject { .. } =
                            c.admit(RequestClass::New, None, ms(t0, 100))
                        {
                            rejected += 1;
                            c.charge(Duration::from_micros(100));
                        }
                    }
                    rejected
                })
            })
            .collect();
        let total: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        // 10 ms of budget at 100 µs each: 100, give or take the threads
        // that checked the budget at the same moment.
        assert!((100..=104).contains(&total), "{total}");
    }
}
