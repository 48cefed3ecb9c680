//! Dispatcher sets: destinations, selection algorithms and health, shared
//! by every request and the prober.
//!
//! Selection is a pure function ([`SetPlan::order`]) of the request's key,
//! the destinations' states and a round-robin counter / random number, so
//! every algorithm is unit-tested; [`Dispatcher`] adds the shared state.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;
use voxline_partition::PartitionMap;
use voxline_transaction::{Peer, TransportKind};

use crate::config::{Algorithm, DispatcherConfig, SetConfig, destination_uri};
use crate::health::{Health, State, Thresholds};

/// Why a dispatcher cannot be built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatcherError {
    /// A destination URI is not a SIP URI with an IP address.
    #[error("destination {0:?} is not a sip: URI with an IP address")]
    BadUri(String),
    /// A partition owner is not a destination of the hash-aor set.
    #[error("partition owner {node:?} is not a destination of set {set:?}")]
    UnknownOwner {
        /// The node named in `[partitions]`.
        node: String,
        /// The set.
        set: String,
    },
}

/// What a request offers for selection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Key<'a> {
    /// `user@domain` of the target user (To of REGISTER, Request-URI otherwise).
    pub aor: Option<&'a str>,
    /// The Call-ID.
    pub call_id: &'a str,
}

/// The static part of one destination.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Its name (the node name, or the URI).
    pub name: String,
    /// Its URI as configured.
    pub uri: String,
    /// Where requests and probes go.
    pub peer: Peer,
    /// Share for `weighted`.
    pub weight: u32,
}

/// The order in which a set tries its destinations, without I/O.
#[derive(Debug, Clone)]
pub struct SetPlan {
    /// Set name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Destinations, in configured order.
    pub destinations: Vec<Destination>,
    /// For `hash-aor` with `[partitions]`: per partition, the primary's and
    /// backup's destination index.
    partitions: Option<(PartitionMap, Vec<OwnerIndexes>)>,
}

/// A partition's primary and backup as destination indexes.
type OwnerIndexes = (usize, Option<usize>);

fn hash(s: &str, n: usize) -> usize {
    usize::from(voxline_partition::partition_of(
        s,
        u16::try_from(n.max(1)).unwrap_or(u16::MAX),
    ))
}

impl SetPlan {
    /// A set from its configuration; `partitions` applies to `hash-aor` sets.
    pub fn new(
        cfg: &SetConfig,
        partitions: Option<&PartitionMap>,
    ) -> Result<Self, DispatcherError> {
        let mut destinations = Vec::with_capacity(cfg.destinations.len());
        for d in &cfg.destinations {
            let uri =
                destination_uri(&d.uri).ok_or_else(|| DispatcherError::BadUri(d.uri.clone()))?;
            let ip = uri
                .host
                .ip()
                .ok_or_else(|| DispatcherError::BadUri(d.uri.clone()))?;
            let transport = uri
                .transport()
                .and_then(TransportKind::parse)
                .unwrap_or(TransportKind::Udp);
            destinations.push(Destination {
                name: d.display_name().to_owned(),
                uri: d.uri.clone(),
                peer: Peer::new(SocketAddr::new(ip, uri.port_or_default()), transport),
                weight: d.weight,
            });
        }
        let partitions = match (cfg.algorithm, partitions) {
            (Algorithm::HashAor, Some(map)) => {
                let index = |node: &str| {
                    destinations
                        .iter()
                        .position(|d| d.name == node)
                        .ok_or_else(|| DispatcherError::UnknownOwner {
                            node: node.to_owned(),
                            set: cfg.name.clone(),
                        })
                };
                let owners = (0..map.count())
                    .map(|p| {
                        let o = map.owners(p);
                        Ok((index(o.primary)?, o.backup.map(index).transpose()?))
                    })
                    .collect::<Result<Vec<_>, DispatcherError>>()?;
                Some((map.clone(), owners))
            }
            _ => None,
        };
        Ok(SetPlan {
            name: cfg.name.clone(),
            algorithm: cfg.algorithm,
            destinations,
            partitions,
        })
    }

    /// The partition of `aor` when the set is partitioned.
    pub fn partition_of(&self, aor: &str) -> Option<u16> {
        self.partitions.as_ref().map(|(m, _)| m.partition_of(aor))
    }

    /// The destinations to try for `key`, best first: active ones in the
    /// algorithm's order, then probing ones in the same order; inactive
    /// ones never. `rr` is the set's round-robin counter, `random` a
    /// random number (for `weighted`).
    pub fn order(&self, key: &Key<'_>, states: &[State], rr: u64, random: u32) -> Vec<usize> {
        let n = self.destinations.len();
        if n == 0 {
            return Vec::new();
        }
        let ring = |start: usize| (0..n).map(move |i| (start + i) % n);
        let preference: Vec<usize> = match self.algorithm {
            Algorithm::HashAor => match (key.aor, &self.partitions) {
                (Some(aor), Some((map, owners))) => {
                    let p = usize::from(map.partition_of(aor));
                    let (primary, backup) = owners.get(p).copied().unwrap_or((0, None));
                    let mut v = vec![primary];
                    v.extend(backup.filter(|b| *b != primary));
                    v.extend(ring(primary).filter(|i| *i != primary && Some(*i) != backup));
                    v
                }
                (Some(aor), None) => ring(hash(aor, n)).collect(),
                (None, _) => ring(hash(key.call_id, n)).collect(),
            },
            Algorithm::HashCallId => ring(hash(key.call_id, n)).collect(),
            Algorithm::RoundRobin => ring((rr % n as u64) as usize).collect(),
            Algorithm::Weighted => self.weighted(states, random),
        };
        let state = |i: usize| states.get(i).copied().unwrap_or(State::Active);
        let mut out: Vec<usize> = preference
            .iter()
            .copied()
            .filter(|i| state(*i) == State::Active)
            .collect();
        out.extend(
            preference
                .iter()
                .copied()
                .filter(|i| state(*i) == State::Probing),
        );
        out
    }

    /// Weighted random choice among the active destinations with a weight,
    /// then the others by descending weight.
    fn weighted(&self, states: &[State], random: u32) -> Vec<usize> {
        let n = self.destinations.len();
        let weight = |i: usize| self.destinations.get(i).map_or(0, |d| d.weight);
        let usable = |i: usize| states.get(i).copied().unwrap_or(State::Active) == State::Active;
        let total: u64 = (0..n)
            .filter(|i| usable(*i))
            .map(|i| u64::from(weight(i)))
            .sum();
        let mut rest: Vec<usize> = (0..n).collect();
        rest.sort_by_key(|i| std::cmp::Reverse(weight(*i)));
        if total == 0 {
            return rest;
        }
        let mut target = u64::from(random) % total;
        let mut first = None;
        for i in (0..n).filter(|i| usable(*i)) {
            let w = u64::from(weight(i));
            if target < w {
                first = Some(i);
                break;
            }
            target -= w;
        }
        match first {
            Some(f) => {
                let mut v = vec![f];
                v.extend(rest.into_iter().filter(|i| *i != f));
                v
            }
            None => rest,
        }
    }
}

/// One destination's live state.
struct Live {
    health: Mutex<Health>,
    state: AtomicU8,
}

fn state_code(s: State) -> u8 {
    match s {
        State::Active => 0,
        State::Probing => 1,
        State::Inactive => 2,
    }
}

fn state_of(code: u8) -> State {
    match code {
        0 => State::Active,
        1 => State::Probing,
        _ => State::Inactive,
    }
}

/// A set with its live destination states.
pub struct Set {
    /// Selection.
    pub plan: SetPlan,
    live: Vec<Live>,
    rr: AtomicU64,
}

/// Every set of the edge, with health shared between requests and probes.
pub struct Dispatcher {
    sets: Vec<Set>,
    thresholds: Thresholds,
}

/// Admin view of one destination.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    /// Name.
    pub name: String,
    /// URI.
    pub uri: String,
    /// Weight.
    pub weight: u32,
    /// `active`, `probing` or `inactive`.
    pub state: State,
    /// Consecutive failures.
    pub failures: u32,
}

/// Admin view of one set.
#[derive(Debug, Clone, Serialize)]
pub struct SetView {
    /// Name.
    pub name: String,
    /// Algorithm.
    pub algorithm: &'static str,
    /// Partition count when the set follows `[partitions]`.
    pub partitions: Option<u16>,
    /// Destinations.
    pub destinations: Vec<DestinationView>,
}

impl Dispatcher {
    /// Builds every set of `cfg`; `hash-aor` sets follow `partitions`.
    pub fn new(
        cfg: &DispatcherConfig,
        partitions: Option<&PartitionMap>,
    ) -> Result<Self, DispatcherError> {
        let sets = cfg
            .sets
            .iter()
            .map(|s| {
                let plan = SetPlan::new(s, partitions)?;
                let live = plan
                    .destinations
                    .iter()
                    .map(|_| Live {
                        health: Mutex::new(Health::default()),
                        state: AtomicU8::new(state_code(State::Active)),
                    })
                    .collect();
                Ok(Set {
                    plan,
                    live,
                    rr: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, DispatcherError>>()?;
        let d = Dispatcher {
            sets,
            thresholds: Thresholds {
                down: cfg.down_threshold.max(1),
                up: cfg.up_threshold.max(1),
            },
        };
        for (s, set) in d.sets.iter().enumerate() {
            for i in 0..set.plan.destinations.len() {
                d.publish(s, i, State::Active, false);
            }
        }
        Ok(d)
    }

    /// The index of the set named `name`.
    pub fn set_index(&self, name: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.plan.name == name)
    }

    /// The set at `index`.
    pub fn set(&self, index: usize) -> Option<&Set> {
        self.sets.get(index)
    }

    /// Every set.
    pub fn sets(&self) -> &[Set] {
        &self.sets
    }

    /// The destinations of set `s` to try for `key`, best first.
    pub fn order(&self, s: usize, key: &Key<'_>) -> Vec<usize> {
        let Some(set) = self.sets.get(s) else {
            return Vec::new();
        };
        let states: Vec<State> = set
            .live
            .iter()
            .map(|l| state_of(l.state.load(Ordering::Relaxed)))
            .collect();
        let rr = match set.plan.algorithm {
            Algorithm::RoundRobin => set.rr.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        set.plan.order(key, &states, rr, rand::random())
    }

    /// The destination `i` of set `s`.
    pub fn destination(&self, s: usize, i: usize) -> Option<&Destination> {
        self.sets.get(s)?.plan.destinations.get(i)
    }

    /// Records that destination `i` of set `s` answered.
    pub fn success(&self, s: usize, i: usize) {
        self.update(s, i, |h, t| h.on_success(t));
    }

    /// Records that destination `i` of set `s` did not answer.
    pub fn failure(&self, s: usize, i: usize) {
        self.update(s, i, |h, t| h.on_failure(t));
    }

    fn update(&self, s: usize, i: usize, f: impl FnOnce(&mut Health, Thresholds) -> Option<State>) {
        let Some(live) = self.sets.get(s).and_then(|set| set.live.get(i)) else {
            return;
        };
        let changed = {
            let mut h = live.health.lock().unwrap_or_else(|e| e.into_inner());
            let changed = f(&mut h, self.thresholds);
            live.state.store(state_code(h.state()), Ordering::Relaxed);
            changed
        };
        if let Some(state) = changed {
            self.publish(s, i, state, true);
        }
    }

    fn publish(&self, s: usize, i: usize, state: State, changed: bool) {
        let (Some(set), Some(d)) = (self.sets.get(s), self.destination(s, i)) else {
            return;
        };
        if changed {
            tracing::info!(set = %set.plan.name, destination = %d.name, state = state.as_str(), "dispatcher destination state changed");
        }
        for st in State::ALL {
            metrics::gauge!(
                "voxline_dispatcher_destination_state",
                "set" => set.plan.name.clone(),
                "destination" => d.name.clone(),
                "state" => st.as_str(),
            )
            .set(if st == state { 1.0 } else { 0.0 });
        }
    }

    /// The state of destination `i` of set `s`.
    pub fn state(&self, s: usize, i: usize) -> Option<State> {
        let live = self.sets.get(s)?.live.get(i)?;
        Some(state_of(live.state.load(Ordering::Relaxed)))
    }

    /// The admin view.
    pub fn view(&self) -> Vec<SetView> {
        self.sets
            .iter()
            .map(|set| SetView {
                name: set.plan.name.clone(),
                algorithm: set.plan.algorithm.as_str(),
                partitions: set.plan.partitions.as_ref().map(|(m, _)| m.count()),
                destinations: set
                    .plan
                    .destinations
                    .iter()
                    .zip(&set.live)
                    .map(|(d, l)| {
                        let h = l.health.lock().unwrap_or_else(|e| e.into_inner());
                        DestinationView {
                            name: d.name.clone(),
                            uri: d.uri.clone(),
                            weight: d.weight,
                            state: h.state(),
                            failures: h.failures(),
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DestinationConfig;
    use voxline_partition::PartitionsConfig;

    fn set(algorithm: Algorithm, weights: &[u32]) -> SetConfig {
        SetConfig {
            name: "s".into(),
            algorithm,
            destinations: weights
                .iter()
                .enumerate()
                .map(|(i, w)| DestinationConfig {
                    uri: format!("sip:127.0.0.{}:5060", i + 2),
                    name: Some(format!("reg{}", i + 1)),
                    weight: *w,
                })
                .collect(),
        }
    }

    const UP: [State; 3] = [State::Active; 3];

    fn key(aor: &str) -> Key<'_> {
        Key {
            aor: Some(aor),
            call_id: "c",
        }
    }

    #[test]
    fn hash_aor_is_stable_and_spreads() {
        let p = SetPlan::new(&set(Algorithm::HashAor, &[1, 1, 1]), None).unwrap();
        let first = |aor: &str| p.order(&key(aor), &UP, 0, 0)[0];
        assert_eq!(first("alice@x"), first("alice@x"));
        let mut seen = [0; 3];
        for i in 0..300 {
            seen[first(&format!("u{i}@x"))] += 1;
        }
        assert!(seen.iter().all(|c| *c > 60), "{seen:?}");
        // Failover order is the ring after the hashed destination.
        let o = p.order(&key("alice@x"), &UP, 0, 0);
        assert_eq!(o.len(), 3);
        assert_eq!(o[1], (o[0] + 1) % 3);
    }

    #[test]
    fn hash_aor_follows_partitions_primary_then_backup() {
        let map: PartitionsConfig = toml::from_str(
            r#"
            count = 3
            [[assign]]
            partitions = "0"
            primary = "reg1"
            backup = "reg2"
            [[assign]]
            partitions = "1"
            primary = "reg2"
            backup = "reg3"
            [[assign]]
            partitions = "2"
            primary = "reg3"
            backup = "reg1"
            "#,
        )
        .unwrap();
        let map = PartitionMap::from_config(&map).unwrap();
        let p = SetPlan::new(&set(Algorithm::HashAor, &[1, 1, 1]), Some(&map)).unwrap();
        for i in 0..50 {
            let aor = format!("u{i:08}@localhost");
            let part = map.partition_of(&aor);
            let o = p.order(&key(&aor), &UP, 0, 0);
            let owners = map.owners(part);
            assert_eq!(p.destinations[o[0]].name, owners.primary);
            assert_eq!(Some(p.destinations[o[1]].name.as_str()), owners.backup);
            // Primary down: the backup first.
            let mut states = UP;
            states[o[0]] = State::Inactive;
            let o2 = p.order(&key(&aor), &states, 0, 0);
            assert_eq!(o2[0], o[1]);
            assert!(!o2.contains(&o[0]));
            // Primary suspect: backup first, primary as a last resort.
            states[o[0]] = State::Probing;
            let o3 = p.order(&key(&aor), &states, 0, 0);
            assert_eq!(o3[0], o[1]);
            assert_eq!(*o3.last().unwrap(), o[0]);
        }
        let bad = SetConfig {
            destinations: set(Algorithm::HashAor, &[1, 1]).destinations,
            ..set(Algorithm::HashAor, &[1])
        };
        assert!(matches!(
            SetPlan::new(&bad, Some(&map)),
            Err(DispatcherError::UnknownOwner { .. })
        ));
    }

    #[test]
    fn hash_call_id_and_missing_aor() {
        let p = SetPlan::new(&set(Algorithm::HashCallId, &[1, 1, 1]), None).unwrap();
        let k = |c| Key {
            aor: None,
            call_id: c,
        };
        assert_eq!(p.order(&k("abc"), &UP, 0, 0), p.order(&k("abc"), &UP, 7, 9));
        let h = SetPlan::new(&set(Algorithm::HashAor, &[1, 1, 1]), None).unwrap();
        assert_eq!(h.order(&k("abc"), &UP, 0, 0), p.order(&k("abc"), &UP, 0, 0));
    }

    #[test]
    fn round_robin_rotates_and_skips_inactive() {
        let p = SetPlan::new(&set(Algorithm::RoundRobin, &[1, 1, 1]), None).unwrap();
        let firsts: Vec<usize> = (0..6)
            .map(|rr| p.order(&key("a@x"), &UP, rr, 0)[0])
            .collect();
        assert_eq!(firsts, [0, 1, 2, 0, 1, 2]);
        let states = [State::Active, State::Inactive, State::Active];
        assert_eq!(p.order(&key("a@x"), &states, 1, 0), [2, 0]);
        let none = [State::Inactive; 3];
        assert!(p.order(&key("a@x"), &none, 0, 0).is_empty());
    }

    #[test]
    fn weighted_follows_weights() {
        let p = SetPlan::new(&set(Algorithm::Weighted, &[1, 3, 0]), None).unwrap();
        let mut seen = [0; 3];
        for r in 0..4000u32 {
            seen[p.order(&key("a@x"), &UP, 0, r.wrapping_mul(2_654_435_761))[0]] += 1;
        }
        assert_eq!(seen[2], 0, "weight 0 is never first");
        assert!((2700..3300).contains(&seen[1]), "{seen:?}");
        // Every destination stays in the failover order.
        assert_eq!(p.order(&key("a@x"), &UP, 0, 0).len(), 3);
        // Weight-0 destination as the only one left.
        let states = [State::Inactive, State::Inactive, State::Active];
        assert_eq!(p.order(&key("a@x"), &states, 0, 5), [2]);
    }

    #[test]
    fn shared_state_and_view() {
        let cfg = DispatcherConfig {
            down_threshold: 2,
            up_threshold: 1,
            sets: vec![set(Algorithm::RoundRobin, &[1, 1])],
            ..DispatcherConfig::default()
        };
        let d = Dispatcher::new(&cfg, None).unwrap();
        let s = d.set_index("s").unwrap();
        d.failure(s, 0);
        assert_eq!(d.state(s, 0), Some(State::Probing));
        d.failure(s, 0);
        assert_eq!(d.state(s, 0), Some(State::Inactive));
        assert_eq!(d.order(s, &key("a@x")), [1]);
        d.success(s, 0);
        assert_eq!(d.state(s, 0), Some(State::Active));
        let v = d.view();
        assert_eq!(v[0].destinations[0].state, State::Active);
        assert_eq!(v[0].algorithm, "round-robin");
        assert_eq!(
            d.destination(s, 1).unwrap().peer.addr.to_string(),
            "127.0.0.3:5060"
        );
    }
}
