//! Overload protection on the receive path: the I/O side of
//! `voxline-overload` (clock, kernel receive times, CPU samples, metrics).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

use voxline_overload::{
    Admission, AdmissionControl, AdmissionState, BannedAnswer, OverloadConfig, SourceLimiter,
    SourceVerdict,
};
use voxline_sip::RequestRef;
use voxline_transaction::Peer;
use voxline_transport::{ReadTime, TransportKind};

thread_local! {
    /// Datagrams of the receive batch being handled on this thread that
    /// were refusal work; charged when the batch's cost is known.
    static REFUSAL_WORK: Cell<usize> = const { Cell::new(0) };
}

/// A received datagram after its time in the kernel's queue was noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Go on; how long it waited, when known.
    Kept(Option<Duration>),
    /// A new request older than `max_queue_age_ms`: dropped unread.
    Stale,
}

/// What to do with a datagram after the per-source check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceAction {
    /// Go on.
    Pass,
    /// Banned: drop it.
    Drop,
    /// Banned: answer 503 with this Retry-After (seconds).
    Reject(u32),
}

/// The node's guards.
pub(crate) struct Protection {
    admission: Option<AdmissionControl>,
    max_age: Option<Duration>,
    sources: Option<SourceLimiter>,
    banned_answer: BannedAnswer,
    cpu_signal: bool,
    interval: Duration,
}

impl Protection {
    /// The guards `config` turns on; `None` when none is.
    pub(crate) fn new(config: &OverloadConfig, now: Instant) -> Option<Protection> {
        let admission = config.enabled.then(|| AdmissionControl::new(config, now));
        let sources = config
            .flood
            .enabled
            .then(|| SourceLimiter::new(&config.flood, now));
        if admission.is_none() && sources.is_none() {
            return None;
        }
        Some(Protection {
            max_age: admission.as_ref().and(config.max_queue_age()),
            admission,
            sources,
            banned_answer: config.flood.banned_answer,
            cpu_signal: config.enabled && config.cpu_threshold_percent > 0,
            interval: config.interval(),
        })
    }

    /// Records how long a datagram waited in the kernel's queue.
    pub(crate) fn observe(
        &self,
        data: &[u8],
        received_at: Option<SystemTime>,
        read_at: ReadTime,
    ) -> Queued {
        let (Some(a), Some(at)) = (&self.admission, received_at) else {
            return Queued::Kept(None);
        };
        let now = read_at.mono;
        let waited = read_at.waited_since(at);
        a.observe_queue_delay(waited, now);
        match self.max_age {
            Some(max) if waited > max && !voxline_transport::steer::is_priority(data) => {
                voxline_transport::counter_once!("voxline_overload_dropped_total", "reason" => "stale")
                    .increment(1);
                Queued::Stale
            }
            _ => Queued::Kept(Some(waited)),
        }
    }

    /// Per-source limits, before the datagram is parsed. Responses
    /// (`SIP/2.0 ...`) are not counted.
    pub(crate) fn check_source(&self, data: &[u8], peer: &Peer, now: Instant) -> SourceAction {
        let Some(limiter) = &self.sources else {
            return SourceAction::Pass;
        };
        if data.starts_with(b"SIP/") {
            return SourceAction::Pass;
        }
        match limiter.check(peer.addr.ip(), now) {
            SourceVerdict::Allowed => SourceAction::Pass,
            SourceVerdict::Banned { remaining, new_ban } => {
                if new_ban {
                    tracing::warn!(source = %peer.addr.ip(), ban_secs = remaining.as_secs(),
                        "source over its request limit; banned");
                    metrics::counter!("voxline_overload_bans_total").increment(1);
                }
                match self.banned_answer {
                    BannedAnswer::Drop => {
                        metrics::counter!("voxline_overload_dropped_total", "reason" => "banned")
                            .increment(1);
                        SourceAction::Drop
                    }
                    BannedAnswer::Reject => {
                        let secs = u32::try_from(remaining.as_secs().max(1)).unwrap_or(u32::MAX);
                        SourceAction::Reject(secs)
                    }
                }
            }
        }
    }

    /// Node-level admission of a received request that waited `waited`
    /// in the receive queue.
    pub(crate) fn admit<'a>(
        &self,
        request: impl Into<RequestRef<'a>>,
        waited: Option<Duration>,
        now: Instant,
    ) -> Admission {
        match &self.admission {
            // Sorting the request costs something: only when shedding.
            Some(a) if a.sheds(waited, now) => a.admit(a.classify(request), waited, now),
            _ => Admission::Admit,
        }
    }

    /// Accounts refusal work (a refused request, the ACK that answers a
    /// 503) received from `peer`, whose handling started at `started`
    /// (when known). A datagram's real cost is mostly in the kernel and
    /// known only when its batch ends ([`Protection::batch_end`]); a
    /// stream message is charged its handling time now.
    pub(crate) fn charge_refusal(&self, peer: &Peer, started: Option<Instant>) {
        let Some(a) = &self.admission else {
            return;
        };
        if peer.transport == TransportKind::Udp {
            REFUSAL_WORK.with(|w| w.set(w.get() + 1));
        } else if let Some(started) = started {
            a.charge(started.elapsed());
        }
    }

    /// Whether the UDP receive batch that starts now should be timed: only
    /// while the node is shedding, since only then are there refusals to
    /// charge. Called at the start of every batch, it also forgets refusal
    /// work of earlier untimed batches (the ACKs to 4xx answered
    /// statelessly, say), which must not be charged to this one.
    pub(crate) fn wants_batch_cost(&self) -> bool {
        REFUSAL_WORK.with(|w| w.set(0));
        self.admission
            .as_ref()
            .is_some_and(|a| a.shedding(Instant::now()))
    }

    /// Charges the refusal work of the batch that just ended on this
    /// thread its share of the batch's CPU time.
    pub(crate) fn batch_end(&self, datagrams: usize, cpu: Duration) {
        let work = REFUSAL_WORK.with(|w| w.replace(0));
        if let Some(a) = &self.admission {
            a.charge_batch(work, datagrams, cpu);
        }
    }

    /// The admission control state.
    pub(crate) fn state(&self) -> Option<AdmissionState> {
        self.admission.as_ref().map(AdmissionControl::state)
    }
}

/// Samples the node's CPU use (when that signal is on), publishes the
/// guards' gauges and sweeps idle sources, until `stopped` says so.
pub(crate) async fn run_monitor(protection: &Protection, stopped: impl Fn() -> bool) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut ticker = tokio::time::interval(protection.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (Instant::now(), process_cpu());
    let mut last_sweep = Instant::now();
    while !stopped() {
        ticker.tick().await;
        let now = Instant::now();
        if let Some(a) = &protection.admission {
            if protection.cpu_signal {
                let cpu = process_cpu();
                let wall = now.saturating_duration_since(last.0).as_secs_f64();
                if wall > 0.0 {
                    a.observe_cpu((cpu - last.1).as_secs_f64() / wall / cores, now);
                }
                last = (now, cpu);
            }
            let s = a.state();
            metrics::gauge!("voxline_overload_active").set(if s.overloaded { 1.0 } else { 0.0 });
            metrics::gauge!("voxline_overload_queue_delay_seconds")
                .set(s.queue_delay.as_secs_f64());
            metrics::gauge!("voxline_overload_cpu_ratio").set(s.cpu);
            metrics::counter!("voxline_overload_refusal_cpu_microseconds_total")
                .absolute(u64::try_from(s.refusal_time.as_micros()).unwrap_or(u64::MAX));
            metrics::counter!("voxline_overload_served_over_budget_total")
                .absolute(s.served_over_budget);
            metrics::counter!("voxline_overload_intervals_total").absolute(s.overloaded_intervals);
        }
        if let Some(l) = &protection.sources
            && now.saturating_duration_since(last_sweep) >= Duration::from_secs(1)
        {
            last_sweep = now;
            let banned = l.sweep(now);
            metrics::gauge!("voxline_overload_banned_sources").set(banned as f64);
            metrics::gauge!("voxline_overload_tracked_sources").set(l.tracked() as f64);
        }
    }
}

/// User plus system CPU time of the whole process.
fn process_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(Duration::ZERO, |u| {
        let d = |tv: nix::sys::time::TimeVal| {
            Duration::new(
                u64::try_from(tv.tv_sec()).unwrap_or(0),
                u32::try_from(tv.tv_usec()).unwrap_or(0) * 1000,
            )
        };
        d(u.user_time()) + d(u.system_time())
    })
}
