//! Timer values and table limits.

use std::time::Duration;

/// When an INVITE server transaction sends 100 (Trying) on its own
/// (RFC 3261 §17.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryingPolicy {
    /// Immediately on receipt of the INVITE: what a proxy does (§16.2), since
    /// it rarely knows it will answer within 200 ms.
    Immediate,
    /// After this delay unless the transaction user has responded by then.
    /// RFC 3261 suggests 200 ms for a UAS.
    After(Duration),
    /// Never: the transaction user always sends its own provisional response.
    Never,
}

/// The RFC 3261 §17 timer values (Table 4) plus RFC 6026's L and M.
///
/// [`TimerConfig::default`] gives the RFC values for T1 = 500 ms,
/// T2 = 4 s, T4 = 5 s; [`TimerConfig::with_base`] derives every timer from
/// other base values the way the RFC does. Individual fields can then be
/// overridden. Timers D, I, J and K apply to unreliable transports only: on
/// reliable transports they are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1, the RTT estimate: initial Timer A, E and G interval.
    pub t1: Duration,
    /// T2, the maximum retransmit interval for non-INVITE requests and
    /// INVITE responses.
    pub t2: Duration,
    /// T4, the maximum time a message stays in the network.
    pub t4: Duration,
    /// Timer B: INVITE client transaction timeout (64·T1).
    pub timer_b: Duration,
    /// Timer D: wait for response retransmits in the INVITE client
    /// Completed state (≥ 32 s, UDP only).
    pub timer_d: Duration,
    /// Timer F: non-INVITE client transaction timeout (64·T1).
    pub timer_f: Duration,
    /// Timer H: wait for the ACK in the INVITE server Completed state (64·T1).
    pub timer_h: Duration,
    /// Timer I: wait for ACK retransmits in the Confirmed state (T4, UDP only).
    pub timer_i: Duration,
    /// Timer J: wait for request retransmits in the non-INVITE server
    /// Completed state (64·T1, UDP only).
    pub timer_j: Duration,
    /// Timer K: wait for response retransmits in the non-INVITE client
    /// Completed state (T4, UDP only).
    pub timer_k: Duration,
    /// Timer L (RFC 6026): wait for INVITE retransmits in the server
    /// Accepted state (64·T1).
    pub timer_l: Duration,
    /// Timer M (RFC 6026): wait for 2xx retransmits in the client Accepted
    /// state (64·T1).
    pub timer_m: Duration,
    /// When an INVITE server transaction sends 100 (Trying) by itself.
    pub trying: TryingPolicy,
    /// Safety net, not in RFC 3261: the longest an INVITE transaction may
    /// wait for a final response (a server transaction waiting for the
    /// transaction user, a client transaction in Proceeding, which has no
    /// RFC timer). On expiry the transaction reports
    /// [`TxEvent::Timeout`](crate::TxEvent::Timeout) with
    /// [`Timer::Lifetime`](crate::Timer::Lifetime) and terminates. Keep it
    /// above a proxy's Timer C (> 3 min).
    pub max_invite_lifetime: Duration,
    /// Safety net, not in RFC 3261: the longest a non-INVITE server
    /// transaction waits for the transaction user's final response. The
    /// client gives up after Timer F (64·T1) anyway.
    pub max_non_invite_lifetime: Duration,
}

impl TimerConfig {
    /// The RFC 3261 derivation from base values: A, E, G start at `t1`;
    /// B, F, H, J, L, M are 64·`t1`; D is the larger of 32 s and 64·`t1`;
    /// I and K are `t4`.
    #[must_use]
    pub fn with_base(t1: Duration, t2: Duration, t4: Duration) -> Self {
        let long = t1.saturating_mul(64);
        Self {
            t1,
            t2,
            t4,
            timer_b: long,
            timer_d: long.max(Duration::from_secs(32)),
            timer_f: long,
            timer_h: long,
            timer_i: t4,
            timer_j: long,
            timer_k: t4,
            timer_l: long,
            timer_m: long,
            trying: TryingPolicy::After(Duration::from_millis(200)),
            max_invite_lifetime: Duration::from_secs(300),
            max_non_invite_lifetime: long,
        }
    }

    /// The same configuration with a different [`TryingPolicy`].
    #[must_use]
    pub fn trying(mut self, trying: TryingPolicy) -> Self {
        self.trying = trying;
        self
    }

    /// The first retransmit interval, never below 1 ms so that a zero T1
    /// cannot make a retransmit timer fire in a loop.
    pub(crate) fn first_interval(&self) -> Duration {
        self.t1.max(MIN_INTERVAL)
    }

    /// The capped retransmit interval (T2), never below 1 ms.
    pub(crate) fn cap_interval(&self) -> Duration {
        self.t2.max(MIN_INTERVAL)
    }
}

const MIN_INTERVAL: Duration = Duration::from_millis(1);

impl Default for TimerConfig {
    fn default() -> Self {
        Self::with_base(
            Duration::from_millis(500),
            Duration::from_secs(4),
            Duration::from_secs(5),
        )
    }
}

/// Configuration of one transaction table (one shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// Timer values.
    pub timers: TimerConfig,
    /// The most transactions (client and server) the table holds. When it
    /// is full, a request that would create a server transaction is refused
    /// ([`Incoming::Refused`](crate::Incoming::Refused): answer 503) and
    /// [`send_request`](crate::TransactionTable::send_request) fails.
    pub max_transactions: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            timers: TimerConfig::default(),
            max_transactions: 1 << 20,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_3261_table_4() {
        let c = TimerConfig::default();
        let ms = Duration::from_millis;
        let table = [
            ("T1", c.t1, ms(500)),
            ("T2", c.t2, ms(4000)),
            ("T4", c.t4, ms(5000)),
            ("B", c.timer_b, ms(32_000)),
            ("D", c.timer_d, ms(32_000)),
            ("F", c.timer_f, ms(32_000)),
            ("H", c.timer_h, ms(32_000)),
            ("I", c.timer_i, ms(5000)),
            ("J", c.timer_j, ms(32_000)),
            ("K", c.timer_k, ms(5000)),
            ("L", c.timer_l, ms(32_000)),
            ("M", c.timer_m, ms(32_000)),
        ];
        for (name, got, want) in table {
            assert_eq!(got, want, "timer {name}");
        }
        assert_eq!(c.trying, TryingPolicy::After(ms(200)));
    }

    #[test]
    fn derivation_follows_t1_and_keeps_d_at_least_32s() {
        let ms = Duration::from_millis;
        let c = TimerConfig::with_base(ms(100), ms(1000), ms(2000));
        assert_eq!(c.timer_b, ms(6400));
        assert_eq!(c.timer_d, ms(32_000));
        assert_eq!(c.timer_k, ms(2000));
        let slow = TimerConfig::with_base(ms(1000), ms(4000), ms(5000));
        assert_eq!(slow.timer_d, ms(64_000));
    }

    #[test]
    fn zero_intervals_are_clamped() {
        let c = TimerConfig::with_base(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert_eq!(c.first_interval(), MIN_INTERVAL);
        assert_eq!(c.cap_interval(), MIN_INTERVAL);
    }
}
