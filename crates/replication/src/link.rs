//! The state of the link from this node to one peer site, as a sans-IO
//! state machine: [`Link::next`] says what to send (journal records, the
//! next page of a full resync, a heartbeat) or how long to wait; the I/O
//! driver reports the outcome with [`Link::on_success`] or
//! [`Link::on_failure`]. Time is passed in.
//!
//! Delivery is at-least-once and the receiver applies idempotently, so a
//! request that failed after the peer applied it is simply sent again.
//!
//! A full resync lists the local store page by page and sends every live
//! binding. It is needed when the peer may have missed journal entries: at
//! start (what was sent before a restart is unknown), after the journal
//! dropped entries the peer had not received, or on an operator's request.
//! Journal entries recorded before the resync started are covered by it;
//! after it, streaming resumes from the acknowledged point (so removals
//! still in the journal are delivered too).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::journal::Journal;
use crate::wire::BatchReply;

/// Timing and size settings of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkSettings {
    /// Most journal records per request.
    pub batch_max: usize,
    /// First retry delay.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Idle time before a heartbeat.
    pub heartbeat: Duration,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            batch_max: 500,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
        }
    }
}

/// The state of a link as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// No request completed yet.
    Starting,
    /// The last request succeeded.
    Up,
    /// The last request failed; retrying with backoff.
    Down,
    /// Cut by an operator (admin API): nothing is sent or accepted.
    Blocked,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send these journal records.
    Journal {
        /// Encoded changes.
        records: Vec<Bytes>,
        /// Acknowledged point once delivered.
        upto: u64,
    },
    /// Read the page of the local store after `cursor` and send it as
    /// writes.
    ResyncPage {
        /// Listing cursor (`None`: from the start).
        cursor: Option<String>,
    },
    /// Nothing to send for a while: send an empty request.
    Heartbeat,
    /// Wait until then (`None`: until woken by a new change, an unblock or a
    /// resync request).
    Wait(Option<Instant>),
}

/// What was sent, to report its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Journal records up to `upto`, `count` of them.
    Journal {
        /// Acknowledged point.
        upto: u64,
        /// Records sent.
        count: usize,
    },
    /// A resync page of `count` bindings; `next` continues the listing.
    ResyncPage {
        /// Cursor of the following page (`None`: listing complete).
        next: Option<String>,
        /// Bindings sent.
        count: usize,
    },
    /// An empty request.
    Heartbeat,
}

#[derive(Debug, Clone)]
struct Resync {
    cursor: Option<String>,
    /// Journal entries up to here are covered by this resync.
    snapshot_seq: u64,
    started: Instant,
    bindings: u64,
}

/// Counters of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LinkCounters {
    /// Changes delivered (journal records and resync bindings).
    pub sent: u64,
    /// Requests that succeeded.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Full resyncs started.
    pub resyncs: u64,
    /// Full resyncs completed.
    pub resyncs_done: u64,
    /// Changes the peer found newer than what it had.
    pub applied: u64,
    /// Changes the peer already had.
    pub ignored: u64,
    /// Records the peer could not decode.
    pub rejected: u64,
}

/// The link to one peer site (see the module documentation).
#[derive(Debug, Clone)]
pub struct Link {
    peer: String,
    settings: LinkSettings,
    acked: u64,
    covered: u64,
    want_resync: bool,
    resync: Option<Resync>,
    blocked: bool,
    state: LinkState,
    failures: u32,
    retry_at: Option<Instant>,
    last_done: Option<Instant>,
    last_ok: Option<Instant>,
    last_error: Option<String>,
    last_resync: Option<Duration>,
    counters: LinkCounters,
}

/// A snapshot of a link for the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkStatus {
    /// Peer site.
    pub peer: String,
    /// Link state.
    pub state: LinkState,
    /// A full resync is running.
    pub resyncing: bool,
    /// Bindings sent so far by the running resync.
    pub resync_bindings: Option<u64>,
    /// How long the last completed resync took, ms.
    pub last_resync_ms: Option<u64>,
    /// Journal sequence number the peer has everything up to.
    pub acked: u64,
    /// Journal entries the peer has not acknowledged.
    pub queue: usize,
    /// Age of the oldest of them, ms (0 when none).
    pub lag_ms: u64,
    /// Since the last successful request, ms.
    pub last_ok_ms_ago: Option<u64>,
    /// The last failure.
    pub last_error: Option<String>,
    /// Counters.
    #[serde(flatten)]
    pub counters: LinkCounters,
}

impl Link {
    /// A link to `peer`; with `resync_first` it starts with a full resync.
    pub fn new(peer: impl Into<String>, settings: LinkSettings, resync_first: bool) -> Self {
        Link {
            peer: peer.into(),
            settings,
            acked: 0,
            covered: 0,
            want_resync: resync_first,
            resync: None,
            blocked: false,
            state: LinkState::Starting,
            failures: 0,
            retry_at: None,
            last_done: None,
            last_ok: None,
            last_error: None,
            last_resync: None,
            counters: LinkCounters::default(),
        }
    }

    /// The peer site's name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Journal sequence number the peer has everything up to.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Link state.
    pub fn state(&self) -> LinkState {
        if self.blocked {
            LinkState::Blocked
        } else {
            self.state
        }
    }

    /// Whether a full resync is running.
    pub fn resyncing(&self) -> bool {
        self.resync.is_some()
    }

    /// Counters.
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// Cut (`true`) or restore the link.
    pub fn set_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
        if !blocked {
            // Try at once after a heal.
            self.retry_at = None;
            self.failures = 0;
        }
    }

    /// Whether an operator cut the link.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Ask for a full resync (starts at the next [`Link::next`]; a running
    /// one restarts from the beginning).
    pub fn request_resync(&mut self) {
        self.want_resync = true;
        self.resync = None;
    }

    fn needs_resync(&self, journal: &Journal) -> bool {
        self.want_resync || journal.lost_below() > self.acked.max(self.covered)
    }

    /// What to do now.
    pub fn next(&mut self, journal: &Journal, now: Instant) -> Next {
        if self.blocked {
            return Next::Wait(None);
        }
        if let Some(at) = self.retry_at
            && now < at
        {
            return Next::Wait(Some(at));
        }
        if self.resync.is_none() && self.needs_resync(journal) {
            self.want_resync = false;
            self.counters.resyncs += 1;
            self.resync = Some(Resync {
                cursor: None,
                snapshot_seq: journal.last_seq(),
                started: now,
                bindings: 0,
            });
        }
        if let Some(r) = &self.resync {
            return Next::ResyncPage {
                cursor: r.cursor.clone(),
            };
        }
        if journal.has_after(self.acked) {
            let slice = journal.slice_after(self.acked, self.settings.batch_max);
            return Next::Journal {
                records: slice.records,
                upto: slice.upto,
            };
        }
        // Nothing pending: everything handed out so far is delivered or
        // superseded by an entry that is still pending (there is none).
        self.acked = self.acked.max(journal.last_seq());
        match self.last_done {
            Some(t) if now < t + self.settings.heartbeat => {
                Next::Wait(Some(t + self.settings.heartbeat))
            }
            _ => Next::Heartbeat,
        }
    }

    /// The request described by `sent` succeeded with `reply`.
    pub fn on_success(&mut self, sent: &Sent, reply: &BatchReply, now: Instant) {
        self.state = LinkState::Up;
        self.failures = 0;
        self.retry_at = None;
        self.last_done = Some(now);
        self.last_ok = Some(now);
        self.last_error = None;
        self.counters.requests += 1;
        self.counters.applied += reply.applied;
        self.counters.ignored += reply.ignored;
        self.counters.rejected += reply.rejected;
        match sent {
            Sent::Journal { upto, count } => {
                self.acked = self.acked.max(*upto);
                self.counters.sent += *count as u64;
            }
            Sent::ResyncPage { next, count } => {
                self.counters.sent += *count as u64;
                if let Some(r) = &mut self.resync {
                    r.bindings += *count as u64;
                    r.cursor.clone_from(next);
                    if next.is_none() {
                        self.covered = self.covered.max(r.snapshot_seq);
                        self.last_resync = Some(now.saturating_duration_since(r.started));
                        self.counters.resyncs_done += 1;
                        self.resync = None;
                    }
                }
            }
            Sent::Heartbeat => {}
        }
    }

    /// The request failed (transport error, timeout, error status).
    pub fn on_failure(&mut self, error: String, now: Instant) {
        self.state = LinkState::Down;
        self.counters.errors += 1;
        self.failures = self.failures.saturating_add(1);
        self.last_done = Some(now);
        self.last_error = Some(error);
        let shift = self.failures.saturating_sub(1).min(16);
        let delay = self
            .settings
            .retry_min
            .saturating_mul(1 << shift)
            .min(self.settings.retry_max);
        self.retry_at = Some(now + delay);
    }

    /// A snapshot for the admin API (`now_ms`: wall clock, for the lag).
    pub fn status(&self, journal: &Journal, now: Instant, now_ms: u64) -> LinkStatus {
        LinkStatus {
            peer: self.peer.clone(),
            state: self.state(),
            resyncing: self.resync.is_some(),
            resync_bindings: self.resync.as_ref().map(|r| r.bindings),
            last_resync_ms: self.last_resync.map(|d| d.as_millis() as u64),
            acked: self.acked,
            queue: journal.count_after(self.acked),
            lag_ms: journal
                .oldest_after(self.acked)
                .map_or(0, |at| now_ms.saturating_sub(at)),
            last_ok_ms_ago: self
                .last_ok
                .map(|t| now.saturating_duration_since(t).as_millis() as u64),
            last_error: self.last_error.clone(),
            counters: self.counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_location::{
        Binding, ChangeKind, ChangeOrigin, LocationChange, Source, Timestamp, Transport,
    };

    fn change(aor: &str) -> LocationChange {
        let b = Binding {
            contact: format!("sip:{aor}"),
            expires: Timestamp::from_secs(2_000_000_000),
            q: 1000,
            call_id: "c".into(),
            cseq: 1,
            source: Source {
                transport: Transport::Udp,
                remote: "192.0.2.1:5060".parse().unwrap(),
                local: "192.0.2.9:5060".parse().unwrap(),
            },
            path: vec![],
            instance: None,
            reg_id: None,
            params: String::new(),
            user_agent: None,
            registered_at: Timestamp::from_secs(1_900_000_000),
            nat: false,
        };
        LocationChange {
            aor: aor.into(),
            key: b.key(),
            kind: ChangeKind::Upsert(Box::new(b)),
            origin: ChangeOrigin::Local,
        }
    }

    fn ok() -> BatchReply {
        BatchReply::default()
    }

    fn settings() -> LinkSettings {
        LinkSettings {
            batch_max: 2,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_millis(350),
            heartbeat: Duration::from_secs(1),
        }
    }

    fn send_journal(link: &mut Link, j: &Journal, now: Instant) -> (usize, u64) {
        match link.next(j, now) {
            Next::Journal { records, upto } => {
                let count = records.len();
                link.on_success(&Sent::Journal { upto, count }, &ok(), now);
                (count, upto)
            }
            other => panic!("expected journal records, got {other:?}"),
        }
    }

    #[test]
    fn streams_the_journal_in_batches_then_heartbeats() {
        let t0 = Instant::now();
        let mut j = Journal::new(100);
        for aor in ["a", "b", "c"] {
            j.push(&change(aor), 1);
        }
        let mut link = Link::new("b", settings(), false);
        assert_eq!(link.state(), LinkState::Starting);
        assert_eq!(send_journal(&mut link, &j, t0), (2, 2));
        assert_eq!(send_journal(&mut link, &j, t0), (1, 3));
        assert_eq!(link.state(), LinkState::Up);
        assert_eq!(
            link.next(&j, t0),
            Next::Wait(Some(t0 + Duration::from_secs(1)))
        );
        assert_eq!(link.next(&j, t0 + Duration::from_secs(1)), Next::Heartbeat);
        assert_eq!(link.counters().sent, 3);
        // A new change wakes it up.
        j.push(&change("d"), 2);
        assert_eq!(send_journal(&mut link, &j, t0), (1, 4));
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap_and_resend() {
        let t0 = Instant::now();
        let mut j = Journal::new(100);
        j.push(&change("a"), 1);
        let mut link = Link::new("b", settings(), false);
        let first = link.next(&j, t0);
        assert!(matches!(first, Next::Journal { .. }));
        link.on_failure("connection refused".into(), t0);
        assert_eq!(link.state(), LinkState::Down);
        assert_eq!(
            link.next(&j, t0),
            Next::Wait(Some(t0 + Duration::from_millis(100)))
        );
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(link.next(&j, t1), first, "the same records again");
        link.on_failure("x".into(), t1);
        assert_eq!(
            link.next(&j, t1),
            Next::Wait(Some(t1 + Duration::from_millis(200)))
        );
        let t2 = t1 + Duration::from_millis(200);
        link.on_failure("x".into(), t2);
        assert_eq!(
            link.next(&j, t2),
            Next::Wait(Some(t2 + Duration::from_millis(350)))
        );
        let status = link.status(&j, t2, 1001);
        assert_eq!(status.queue, 1);
        assert_eq!(status.lag_ms, 1000);
        assert_eq!(status.last_error.as_deref(), Some("x"));
        assert_eq!(status.counters.errors, 3);
        let t3 = t2 + Duration::from_millis(350);
        assert_eq!(send_journal(&mut link, &j, t3), (1, 1));
        assert_eq!(link.status(&j, t3, 1001).lag_ms, 0);
    }

    #[test]
    fn blocking_stops_everything_until_healed() {
        let t0 = Instant::now();
        let mut j = Journal::new(100);
        let mut link = Link::new("b", settings(), false);
        link.on_failure("x".into(), t0);
        link.set_blocked(true);
        j.push(&change("a"), 1);
        assert_eq!(
            link.next(&j, t0 + Duration::from_secs(60)),
            Next::Wait(None)
        );
        assert_eq!(link.state(), LinkState::Blocked);
        link.set_blocked(false);
        assert!(
            matches!(link.next(&j, t0), Next::Journal { .. }),
            "no backoff after heal"
        );
    }

    #[test]
    fn a_resync_pages_through_the_store_then_resumes_the_journal() {
        let t0 = Instant::now();
        let mut j = Journal::new(100);
        j.push(&change("old"), 1);
        let mut link = Link::new("b", settings(), true);
        assert_eq!(link.next(&j, t0), Next::ResyncPage { cursor: None });
        j.push(&change("during"), 2);
        link.on_success(
            &Sent::ResyncPage {
                next: Some("m".into()),
                count: 2,
            },
            &ok(),
            t0,
        );
        assert_eq!(
            link.next(&j, t0),
            Next::ResyncPage {
                cursor: Some("m".into())
            }
        );
        link.on_failure("timeout".into(), t0);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            link.next(&j, t1),
            Next::ResyncPage {
                cursor: Some("m".into())
            },
            "a failed page is retried"
        );
        link.on_success(
            &Sent::ResyncPage {
                next: None,
                count: 1,
            },
            &ok(),
            t1,
        );
        assert!(!link.resyncing());
        let c = link.counters();
        assert_eq!((c.resyncs, c.resyncs_done, c.sent), (1, 1, 3));
        // The journal is streamed from the acknowledged point: both entries.
        assert_eq!(send_journal(&mut link, &j, t1), (2, 2));
        assert_eq!(link.status(&j, t1, 0).last_resync_ms, Some(100));
    }

    #[test]
    fn entries_dropped_before_delivery_force_a_resync_once() {
        let t0 = Instant::now();
        let mut j = Journal::new(2);
        let mut link = Link::new("b", settings(), false);
        for aor in ["a", "b", "c"] {
            j.push(&change(aor), 1); // "a" is evicted
        }
        assert_eq!(link.next(&j, t0), Next::ResyncPage { cursor: None });
        link.on_success(
            &Sent::ResyncPage {
                next: None,
                count: 3,
            },
            &ok(),
            t0,
        );
        // Covered: the remaining entries stream without another resync.
        assert_eq!(send_journal(&mut link, &j, t0), (2, 3));
        assert!(matches!(link.next(&j, t0), Next::Wait(_)));
        // A peer that received an entry before it was dropped needs nothing.
        let mut fast = Link::new("c", settings(), false);
        let mut k = Journal::new(2);
        k.push(&change("a"), 1);
        assert_eq!(send_journal(&mut fast, &k, t0), (1, 1));
        k.push(&change("b"), 1);
        k.push(&change("c"), 1); // evicts "a", which "c" already has
        assert_eq!(send_journal(&mut fast, &k, t0), (2, 3));
    }

    #[test]
    fn an_operator_resync_restarts_a_running_one() {
        let t0 = Instant::now();
        let j = Journal::new(10);
        let mut link = Link::new("b", settings(), true);
        assert_eq!(link.next(&j, t0), Next::ResyncPage { cursor: None });
        link.on_success(
            &Sent::ResyncPage {
                next: Some("k".into()),
                count: 1,
            },
            &ok(),
            t0,
        );
        link.request_resync();
        assert_eq!(link.next(&j, t0), Next::ResyncPage { cursor: None });
        assert_eq!(link.counters().resyncs, 2);
    }
}
