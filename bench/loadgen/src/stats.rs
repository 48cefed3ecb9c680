//! Counters and the latency histogram of a run, and the report printed at its end.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Plain counters (copyable, so a snapshot at the end of warm-up is one copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Flows begun.
    pub flows_started: u64,
    /// Flows that ended with their final expected response.
    pub flows_completed: u64,
    /// Flows that ended with an unexpected final response.
    pub flows_failed: u64,
    /// Flows whose transaction timed out (Timer B/F).
    pub flows_timed_out: u64,
    /// Flows not begun because every slot was busy.
    pub flows_blocked: u64,
    /// Requests sent for the first time (including ACK).
    pub requests_sent: u64,
    /// Requests sent again by Timer A/E.
    pub retransmissions: u64,
    /// Responses received, by status code (index = code - 100).
    pub replies: [u64; 600],
    /// Responses for a transaction that already had its final response, or for a flow that
    /// is gone (retransmitted by the server).
    pub duplicate_replies: u64,
    /// Responses whose branch is not one of ours.
    pub unmatched: u64,
    /// Datagrams that could not be read.
    pub parse_errors: u64,
    /// Challenges answered with credentials.
    pub challenges_answered: u64,
    /// Requests received by the called side, by kind: INVITE, ACK, BYE, other.
    pub uas_requests: [u64; 4],
    /// INVITE retransmissions received by the called side.
    pub uas_duplicate_invites: u64,
    /// 2xx retransmissions sent by the called side (no ACK in time).
    pub uas_retransmissions: u64,
    /// Dialogs where the called side never saw the ACK.
    pub uas_ack_timeouts: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            flows_started: 0,
            flows_completed: 0,
            flows_failed: 0,
            flows_timed_out: 0,
            flows_blocked: 0,
            requests_sent: 0,
            retransmissions: 0,
            replies: [0; 600],
            duplicate_replies: 0,
            unmatched: 0,
            parse_errors: 0,
            challenges_answered: 0,
            uas_requests: [0; 4],
            uas_duplicate_invites: 0,
            uas_retransmissions: 0,
            uas_ack_timeouts: 0,
            send_errors: 0,
        }
    }
}

impl Counters {
    /// Counts a response with status `code`.
    pub fn reply(&mut self, code: u16) {
        if let Some(c) = self.replies.get_mut(usize::from(code).wrapping_sub(100)) {
            *c += 1;
        }
    }

    /// Number of responses received with status `code`.
    pub fn replies_with(&self, code: u16) -> u64 {
        self.replies
            .get(usize::from(code).wrapping_sub(100))
            .copied()
            .unwrap_or(0)
    }

    /// Adds another set of counters.
    pub fn add(&mut self, o: &Counters) {
        self.combine(o, |a, b| a.wrapping_add(b));
    }

    /// `self - o`, counter by counter (the counts of a window).
    #[must_use]
    pub fn since(&self, o: &Counters) -> Counters {
        let mut r = *self;
        r.combine(o, |a, b| a.saturating_sub(b));
        r
    }

    fn combine(&mut self, o: &Counters, f: impl Fn(u64, u64) -> u64) {
        self.flows_started = f(self.flows_started, o.flows_started);
        self.flows_completed = f(self.flows_completed, o.flows_completed);
        self.flows_failed = f(self.flows_failed, o.flows_failed);
        self.flows_timed_out = f(self.flows_timed_out, o.flows_timed_out);
        self.flows_blocked = f(self.flows_blocked, o.flows_blocked);
        self.requests_sent = f(self.requests_sent, o.requests_sent);
        self.retransmissions = f(self.retransmissions, o.retransmissions);
        for (a, b) in self.replies.iter_mut().zip(o.replies.iter()) {
            *a = f(*a, *b);
        }
        self.duplicate_replies = f(self.duplicate_replies, o.duplicate_replies);
        self.unmatched = f(self.unmatched, o.unmatched);
        self.parse_errors = f(self.parse_errors, o.parse_errors);
        self.challenges_answered = f(self.challenges_answered, o.challenges_answered);
        for (a, b) in self.uas_requests.iter_mut().zip(o.uas_requests.iter()) {
            *a = f(*a, *b);
        }
        self.uas_duplicate_invites = f(self.uas_duplicate_invites, o.uas_duplicate_invites);
        self.uas_retransmissions = f(self.uas_retransmissions, o.uas_retransmissions);
        self.uas_ack_timeouts = f(self.uas_ack_timeouts, o.uas_ack_timeouts);
        self.send_errors = f(self.send_errors, o.send_errors);
    }
}

/// Counters plus the flow latency histogram (microseconds).
#[derive(Debug, Clone)]
pub struct Stats {
    /// The counters.
    pub counters: Counters,
    /// Flow latency, first request sent to final response, in microseconds.
    pub latency_us: Histogram<u64>,
    /// The same for failed flows (an unexpected final response, e.g. 503).
    pub failed_latency_us: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// Empty statistics (latencies from 1 µs to 1 h, 3 significant digits).
    pub fn new() -> Stats {
        // Constant, valid bounds: this cannot fail.
        let latency_us = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant histogram bounds are valid");
        Stats {
            counters: Counters::default(),
            failed_latency_us: latency_us.clone(),
            latency_us,
        }
    }

    /// Records the latency of a failed flow.
    pub fn record_failed_latency(&mut self, us: u64) {
        self.failed_latency_us.saturating_record(us.max(1));
    }

    /// Forgets the latencies recorded so far (end of warm-up).
    pub fn reset_latencies(&mut self) {
        self.latency_us.reset();
        self.failed_latency_us.reset();
    }

    /// Records one flow latency.
    pub fn record_latency(&mut self, us: u64) {
        self.latency_us.saturating_record(us.max(1));
    }

    /// Merges another thread's statistics.
    pub fn merge(&mut self, o: &Stats) {
        self.counters.add(&o.counters);
        let _ = self.latency_us.add(&o.latency_us);
        let _ = self.failed_latency_us.add(&o.failed_latency_us);
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Maximum.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of a histogram.
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// The result of a run: what the summary and the JSON line print.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Target address.
    pub target: String,
    /// Engine threads.
    pub threads: usize,
    /// Offered rate (flows/s) for open-loop runs.
    pub rate: Option<f64>,
    /// Outstanding flows kept for closed-loop runs.
    pub concurrency: Option<u64>,
    /// Length of the measurement window in seconds (after warm-up, before drain).
    pub window_s: f64,
    /// Flows begun in the window.
    pub flows_started: u64,
    /// Flows completed in the window.
    pub flows_completed: u64,
    /// Completed flows per second in the window.
    pub completed_per_s: f64,
    /// Flows completed after the window while draining.
    pub completed_in_drain: u64,
    /// Failed flows (window and drain).
    pub flows_failed: u64,
    /// Timed-out flows (window and drain).
    pub flows_timed_out: u64,
    /// Flows not begun for lack of a free slot.
    pub flows_blocked: u64,
    /// Flows still open when the run stopped.
    pub flows_unfinished: u64,
    /// Requests sent in the window (first transmissions).
    pub requests_sent: u64,
    /// Requests per second in the window.
    pub requests_per_s: f64,
    /// Retransmissions (window and drain), UAC side.
    pub retransmissions: u64,
    /// Duplicate responses received (window and drain).
    pub duplicate_replies: u64,
    /// Responses not belonging to this run.
    pub unmatched: u64,
    /// Unreadable datagrams.
    pub parse_errors: u64,
    /// Challenges answered.
    pub challenges_answered: u64,
    /// Datagrams the kernel refused to send.
    pub send_errors: u64,
    /// Responses by status code (window and drain).
    pub replies: BTreeMap<u16, u64>,
    /// Called side: INVITE retransmissions received, 2xx retransmissions sent, ACK timeouts.
    pub uas_duplicate_invites: u64,
    /// Called side 2xx retransmissions.
    pub uas_retransmissions: u64,
    /// Called side dialogs without ACK.
    pub uas_ack_timeouts: u64,
    /// Flow latency percentiles (flows completed in window and drain).
    pub latency_us: Latency,
    /// Latency percentiles of failed flows (time to the unexpected final
    /// response, e.g. how quickly a 503 came).
    pub failed_latency_us: Latency,
    /// CPU time (user + system) the generator's threads used in the window, in seconds.
    pub generator_cpu_s: f64,
    /// Generator CPU use in the window, in percent of its threads' cores: well below 100
    /// means the generator was not the bottleneck.
    pub generator_cpu_pct: f64,
    /// Held calls with recorded media: (relay address the caller's media goes to, relay
    /// address the callee's media goes to), one per call. Not printed.
    #[serde(skip)]
    pub media_pairs: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
}

impl Report {
    /// Builds the report from the counters at window start, window end and run end.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &str,
        target: &str,
        threads: usize,
        rate: Option<f64>,
        concurrency: Option<u64>,
        window_s: f64,
        at_start: &Counters,
        at_end: &Counters,
        final_stats: &Stats,
        unfinished: u64,
    ) -> Report {
        let w = at_end.since(at_start);
        let all = final_stats.counters.since(at_start);
        let per_s = |n: u64| {
            if window_s > 0.0 {
                n as f64 / window_s
            } else {
                0.0
            }
        };
        let h = &final_stats.latency_us;
        let replies = all
            .replies
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (i as u16 + 100, *n))
            .collect();
        Report {
            scenario: scenario.to_string(),
            target: target.to_string(),
            threads,
            rate,
            concurrency,
            window_s,
            flows_started: w.flows_started,
            flows_completed: w.flows_completed,
            completed_per_s: per_s(w.flows_completed),
            completed_in_drain: all.flows_completed.saturating_sub(w.flows_completed),
            flows_failed: all.flows_failed,
            flows_timed_out: all.flows_timed_out,
            flows_blocked: all.flows_blocked,
            flows_unfinished: unfinished,
            requests_sent: w.requests_sent,
            requests_per_s: per_s(w.requests_sent),
            retransmissions: all.retransmissions,
            duplicate_replies: all.duplicate_replies,
            unmatched: all.unmatched,
            parse_errors: all.parse_errors,
            challenges_answered: all.challenges_answered,
            send_errors: all.send_errors,
            replies,
            uas_duplicate_invites: all.uas_duplicate_invites,
            uas_retransmissions: all.uas_retransmissions,
            uas_ack_timeouts: all.uas_ack_timeouts,
            latency_us: Latency::of(h),
            failed_latency_us: Latency::of(&final_stats.failed_latency_us),
            generator_cpu_s: 0.0,
            generator_cpu_pct: 0.0,
            media_pairs: Vec::new(),
        }
    }

    /// The one-line JSON form.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable summary.
    pub fn summary(&self) -> String {
        let shape = match (self.rate, self.concurrency) {
            (Some(r), _) => format!("open loop {r:.0} flows/s"),
            (None, Some(c)) => format!("closed loop {c} outstanding"),
            _ => "unpaced".to_string(),
        };
        let replies: Vec<String> = self
            .replies
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        let l = &self.latency_us;
        format!(
            "scenario {} -> {} ({} thread(s), {shape}), window {:.2} s\n\
             flows     started {}  completed {} ({:.1}/s)  +{} in drain  failed {}  timed out {}  blocked {}  unfinished {}\n\
             requests  sent {} ({:.1}/s)  retransmissions {}  duplicate replies {}  unmatched {}  parse errors {}  challenges answered {}  send errors {}\n\
             replies   {}\n\
             callee    duplicate INVITEs {}  2xx retransmissions {}  ACK timeouts {}\n\
             latency   p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  mean {:.3} ms\n\
             generator cpu {:.2} s ({:.0} % of its core(s))",
            self.scenario,
            self.target,
            self.threads,
            self.window_s,
            self.flows_started,
            self.flows_completed,
            self.completed_per_s,
            self.completed_in_drain,
            self.flows_failed,
            self.flows_timed_out,
            self.flows_blocked,
            self.flows_unfinished,
            self.requests_sent,
            self.requests_per_s,
            self.retransmissions,
            self.duplicate_replies,
            self.unmatched,
            self.parse_errors,
            self.challenges_answered,
            self.send_errors,
            if replies.is_empty() {
                "none".to_string()
            } else {
                replies.join(" ")
            },
            self.uas_duplicate_invites,
            self.uas_retransmissions,
            self.uas_ack_timeouts,
            l.p50 as f64 / 1000.0,
            l.p90 as f64 / 1000.0,
            l.p99 as f64 / 1000.0,
            l.max as f64 / 1000.0,
            l.mean / 1000.0,
            self.generator_cpu_s,
            self.generator_cpu_pct,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_and_percentiles() {
        let mut s = Stats::new();
        s.counters.flows_completed = 10;
        let start = s.counters;
        for us in 1..=100u64 {
            s.record_latency(us * 1000);
        }
        s.counters.flows_completed = 110;
        s.counters.reply(200);
        s.counters.reply(200);
        s.counters.reply(42); // ignored, out of range
        let end = s.counters;
        s.counters.flows_completed = 115;
        let r = Report::build(
            "options",
            "t",
            1,
            Some(10.0),
            None,
            2.0,
            &start,
            &end,
            &s,
            0,
        );
        assert_eq!(r.flows_completed, 100);
        assert_eq!(r.completed_per_s, 50.0);
        assert_eq!(r.completed_in_drain, 5);
        assert_eq!(r.replies.get(&200), Some(&2));
        assert_eq!(r.replies.len(), 1);
        assert!((49_000..=51_000).contains(&r.latency_us.p50));
        assert!(r.latency_us.max >= 100_000);
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["flows_completed"], 100);
        assert!(r.summary().contains("completed 100 (50.0/s)"));
    }
}
