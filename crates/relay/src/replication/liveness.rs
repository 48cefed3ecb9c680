//! Which followed relays are alive: a sans-IO tracker of heartbeats.
//!
//! Every relay writes its heartbeat key every `interval`; each write is a
//! keyspace notification the standby sees. A followed relay is *suspect*
//! once it has missed a heartbeat (nothing for 1.5 × interval) and *dead* when
//! nothing came for `timeout` or its heartbeat key expired or was deleted.
//! The standby only trusts its view while it sees its own heartbeats come
//! back through the same subscription: if its own link to Redis is stale,
//! nobody is declared dead (no takeover storms when Redis is the one that
//! failed).

use std::collections::HashMap;

/// A decision for the I/O layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Missed a heartbeat: try to bind its sessions' sockets in standby.
    Suspect(String),
    /// Dead: take it over.
    Dead(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Alive,
    Suspect,
    Dead,
}

#[derive(Debug, Clone)]
struct Peer {
    last_seen_ms: u64,
    gone: bool,
    state: State,
    next_verdict_ms: u64,
}

/// Heartbeat bookkeeping of one standby.
#[derive(Debug, Clone)]
pub struct Liveness {
    me: String,
    follow: Vec<String>,
    interval_ms: u64,
    timeout_ms: u64,
    own_seen_ms: Option<u64>,
    peers: HashMap<String, Peer>,
}

impl Liveness {
    /// `follow` empty = every other relay.
    pub fn new(me: &str, follow: &[String], interval_ms: u64, timeout_ms: u64) -> Liveness {
        Liveness {
            me: me.to_owned(),
            follow: follow.to_vec(),
            interval_ms: interval_ms.max(1),
            timeout_ms: timeout_ms.max(2),
            own_seen_ms: None,
            peers: HashMap::new(),
        }
    }

    /// Whether sessions of `relay` are followed.
    pub fn follows(&self, relay: &str) -> bool {
        relay != self.me && (self.follow.is_empty() || self.follow.iter().any(|f| f == relay))
    }

    /// A heartbeat of `relay` was written.
    pub fn on_heartbeat(&mut self, relay: &str, now_ms: u64) {
        if relay == self.me {
            self.own_seen_ms = Some(now_ms);
            return;
        }
        if !self.follows(relay) {
            return;
        }
        let p = self.peer(relay, now_ms);
        p.last_seen_ms = now_ms;
        p.gone = false;
        if p.state != State::Alive {
            tracing::info!(relay, "followed relay is alive");
        }
        p.state = State::Alive;
    }

    /// The heartbeat key of `relay` expired or was deleted.
    pub fn on_heartbeat_gone(&mut self, relay: &str, now_ms: u64) {
        if self.follows(relay) {
            self.peer(relay, now_ms).gone = true;
        }
    }

    /// `relay` exists (it owns followed sessions, or wrote its info) even if
    /// no heartbeat has been seen yet; its clock starts now.
    pub fn on_known(&mut self, relay: &str, now_ms: u64) {
        if self.follows(relay) {
            self.peer(relay, now_ms);
        }
    }

    /// `relay` was taken over (by anyone) or removed: stop tracking it.
    pub fn forget(&mut self, relay: &str) {
        self.peers.remove(relay);
    }

    /// True if `relay` has missed no heartbeat.
    pub fn is_alive(&self, relay: &str, now_ms: u64) -> bool {
        self.peers
            .get(relay)
            .is_some_and(|p| !p.gone && now_ms.saturating_sub(p.last_seen_ms) < self.suspect_ms())
    }

    /// Silence after which a relay has missed a heartbeat.
    fn suspect_ms(&self) -> u64 {
        self.interval_ms.saturating_add(self.interval_ms / 2)
    }

    /// True while this relay's own heartbeats come back within the timeout.
    pub fn own_link_fresh(&self, now_ms: u64) -> bool {
        self.own_seen_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < self.timeout_ms)
    }

    /// Timer: verdicts about relays that missed heartbeats. Each is repeated
    /// every interval while it holds (a takeover that could not complete is
    /// retried).
    pub fn poll(&mut self, now_ms: u64) -> Vec<Verdict> {
        if !self.own_link_fresh(now_ms) {
            return Vec::new();
        }
        let (interval, timeout, suspect) = (self.interval_ms, self.timeout_ms, self.suspect_ms());
        let mut out = Vec::new();
        for (id, p) in &mut self.peers {
            let silent = now_ms.saturating_sub(p.last_seen_ms);
            let state = if p.gone || silent >= timeout {
                State::Dead
            } else if silent >= suspect {
                State::Suspect
            } else {
                State::Alive
            };
            if state != p.state {
                p.next_verdict_ms = 0;
                match state {
                    State::Dead => {
                        tracing::warn!(relay = %id, silent_ms = silent, "followed relay is dead")
                    }
                    State::Suspect => {
                        tracing::info!(relay = %id, silent_ms = silent, "followed relay missed a heartbeat")
                    }
                    State::Alive => {}
                }
            }
            p.state = state;
            if state == State::Alive || now_ms < p.next_verdict_ms {
                continue;
            }
            p.next_verdict_ms = now_ms.saturating_add(interval);
            out.push(match state {
                State::Dead => Verdict::Dead(id.clone()),
                _ => Verdict::Suspect(id.clone()),
            });
        }
        out.sort();
        out
    }

    fn peer(&mut self, relay: &str, now_ms: u64) -> &mut Peer {
        self.peers.entry(relay.to_owned()).or_insert(Peer {
            last_seen_ms: now_ms,
            gone: false,
            state: State::Alive,
            next_verdict_ms: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Liveness {
        Liveness::new("b", &[], 100, 500)
    }

    #[test]
    fn silence_makes_suspect_then_dead_only_while_own_link_is_fresh() {
        let mut l = live();
        l.on_heartbeat("a", 0);
        l.on_heartbeat("b", 0);
        assert!(l.poll(100).is_empty());
        assert!(l.is_alive("a", 140));
        l.on_heartbeat("b", 150);
        assert_eq!(l.poll(150), vec![Verdict::Suspect("a".into())]);
        assert!(!l.is_alive("a", 150));
        assert!(l.poll(200).is_empty(), "repeated once per interval");
        l.on_heartbeat("b", 250);
        assert_eq!(l.poll(250), vec![Verdict::Suspect("a".into())]);
        l.on_heartbeat("b", 450);
        assert_eq!(l.poll(500), vec![Verdict::Dead("a".into())]);
        assert!(l.poll(550).is_empty());
        assert_eq!(l.poll(600), vec![Verdict::Dead("a".into())], "retried");
        // Own heartbeats stop coming back: no verdicts at all.
        assert!(l.poll(1000).is_empty());
        l.on_heartbeat("b", 1000);
        l.on_heartbeat("a", 1000);
        assert!(l.poll(1000).is_empty(), "alive again");
        l.forget("a");
        assert!(l.poll(5000).is_empty());
    }

    #[test]
    fn expired_heartbeat_is_dead_at_once_and_follow_list_filters() {
        let mut l = Liveness::new("b", &["a".to_owned()], 100, 500);
        assert!(!l.follows("b") && l.follows("a") && !l.follows("c"));
        l.on_heartbeat("b", 0);
        l.on_heartbeat("a", 0);
        l.on_heartbeat("c", 0);
        l.on_heartbeat_gone("a", 10);
        assert_eq!(l.poll(10), vec![Verdict::Dead("a".into())]);
        // A relay known only from its sessions is dead after the timeout.
        let mut l = live();
        l.on_heartbeat("b", 0);
        l.on_known("x", 0);
        l.on_heartbeat("b", 400);
        assert_eq!(l.poll(400), vec![Verdict::Suspect("x".into())]);
        assert_eq!(l.poll(500), vec![Verdict::Dead("x".into())]);
    }
}
