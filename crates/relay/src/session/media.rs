//! Leg and media bookkeeping: creating legs, syncing media sections with an
//! SDP (allocating ports), wiring streams for the data plane, releasing.

use std::net::{IpAddr, SocketAddr};

use voxline_ng::command::{Flags, MediaRequest};
use voxline_relay_dataplane::{StreamConfig, StreamKey, StreamKind};
use voxline_sdp::Sdp;

use super::model::{Call, Effect, LatchPolicy, Leg, LegMedia, SessionError, StreamState};
use crate::config::InterfaceConfig;
use crate::ports::{PortBinder, PortPool};

pub(super) fn latch_policy(flags: &Flags) -> LatchPolicy {
    if flags.trust_address || flags.no_port_latching || flags.asymmetric {
        LatchPolicy::Off
    } else if flags.media_handover {
        LatchPolicy::Always
    } else {
        LatchPolicy::Once
    }
}

pub(super) fn apply_tos(call: &mut Call, tos: Option<i64>, default: u8) {
    match tos {
        Some(t) if t < 0 => {}
        Some(t) => call.tos = u8::try_from(t).unwrap_or(default),
        None => {}
    }
}

pub(super) fn new_leg(
    call: &mut Call,
    tag: &str,
    via_branch: Option<String>,
    interface: usize,
    now_ms: u64,
) -> u32 {
    let id = call.next_leg;
    call.next_leg += 1;
    call.legs.push(Leg {
        id,
        tag: tag.to_owned(),
        fork_tags: Vec::new(),
        label: None,
        via_branch,
        created_ms: now_ms,
        peer: None,
        interface,
        media: Vec::new(),
        latching: LatchPolicy::Once,
        strict_source: false,
        ice_seed: {
            use rand::RngExt as _;
            rand::rng().random()
        },
    });
    id
}

pub(super) fn release_call(
    call: &Call,
    pools: &mut [PortPool],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for leg in &call.legs {
        release_leg(leg, call.worker, pools, now_ms, effects);
    }
}

pub(super) fn release_leg(
    leg: &Leg,
    worker: usize,
    pools: &mut [PortPool],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for m in &leg.media {
        if let Some(r) = &m.rtp
            && let Some(pool) = pools.get_mut(leg.interface)
        {
            pool.release(r.local_port, now_ms);
        }
        for s in m.rtp.iter().chain(m.rtcp.iter()) {
            effects.push(Effect::Close {
                key: StreamKey(s.key),
                worker,
            });
        }
    }
}

pub(super) fn remove_legs(
    call: &mut Call,
    ids: &[u32],
    pools: &mut [PortPool],
    now_ms: u64,
    effects: &mut Vec<Effect>,
) {
    for id in ids {
        if let Some(pos) = call.leg_pos(*id) {
            let leg = call.legs.remove(pos);
            release_leg(&leg, call.worker, pools, now_ms, effects);
        }
    }
    for l in &mut call.legs {
        if l.peer.is_some_and(|p| ids.contains(&p)) {
            l.peer = None;
        }
    }
}

/// Endpoint from one media section of an incoming SDP, with the request's
/// address overrides.
pub(super) fn endpoints(
    info: &voxline_sdp::MediaInfo,
    req: &MediaRequest,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let mut addr = info.connection.address;
    if let Some(m) = req.media_address {
        addr = m;
    } else if req.flags.sip_source_address
        && !req.flags.trust_address
        && let Some(r) = req.received_from
    {
        addr = r;
    }
    if addr.is_unspecified() || info.port == 0 {
        return (None, None);
    }
    let rtp = SocketAddr::new(addr, info.port);
    let rtcp_addr: IpAddr = match (info.rtcp_address, req.media_address) {
        (Some(a), None) if !req.flags.sip_source_address => a,
        _ => addr,
    };
    let rtcp_port = info.rtcp_port.unwrap_or(info.port.saturating_add(1));
    (Some(rtp), Some(SocketAddr::new(rtcp_addr, rtcp_port)))
}

/// Brings the media of `src` (the SDP sender) and `dst` (its recipient) in
/// line with `sdp`: records the sender's endpoints, allocates ports for new
/// media sections on both legs.
#[allow(clippy::too_many_arguments)]
pub(super) fn sync_media(
    call: &mut Call,
    src: u32,
    dst: u32,
    sdp: &Sdp<'_>,
    req: &MediaRequest,
    interfaces: &[InterfaceConfig],
    pools: &mut [PortPool],
    port_partitions: usize,
    next_key: &mut u64,
    now_ms: u64,
    binder: &mut dyn PortBinder,
    effects: &mut Vec<Effect>,
) -> Result<(), SessionError> {
    let worker = call.worker;
    // With raw I/O each worker reads a partition of the range.
    let partition = (port_partitions > 1).then_some((worker, port_partitions));
    for i in 0..sdp.media_count() {
        let Some(info) = sdp.media(i) else {
            return Err(SessionError::Mismatch(format!(
                "media section {} unreadable",
                i + 1
            )));
        };
        let disabled = info.port == 0;
        for (leg_id, is_src) in [(src, true), (dst, false)] {
            let Some(pos) = call.leg_pos(leg_id) else {
                continue;
            };
            let Some(leg) = call.legs.get_mut(pos) else {
                continue;
            };
            // Exact capacity: a Vec's first growth would reserve 4 sections.
            if leg.media.len() <= i {
                leg.media
                    .reserve_exact(sdp.media_count().saturating_sub(leg.media.len()));
            }
            while leg.media.len() <= i {
                let index = u32::try_from(leg.media.len() + 1).unwrap_or(u32::MAX);
                leg.media.push(LegMedia {
                    index,
                    kind: info.kind.clone(),
                    protocol: info.protocol.clone(),
                    direction: "sendrecv".to_owned(),
                    zero_address: false,
                    disabled: true,
                    rtp: None,
                    rtcp: None,
                    offered_mux: false,
                    sent_mux: false,
                });
            }
            let iface = leg.interface;
            let Some(m) = leg.media.get_mut(i) else {
                continue;
            };
            if is_src {
                m.kind = info.kind.clone();
                m.protocol = info.protocol.clone();
                m.direction = info.direction.as_str().to_owned();
                m.zero_address = info.connection.is_unspecified();
                m.offered_mux = info.rtcp_mux;
            }
            m.disabled = disabled;
            if !disabled && m.rtp.is_none() {
                let addr = interfaces
                    .get(iface)
                    .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.address);
                let pool = pools.get_mut(iface).ok_or(SessionError::OutOfPorts)?;
                let port = pool
                    .allocate_in(addr, now_ms, partition, binder)
                    .ok_or(SessionError::OutOfPorts)?;
                for (slot, kind, p) in [(0, StreamKind::Rtp, port), (1, StreamKind::Rtcp, port + 1)]
                {
                    let key = *next_key;
                    *next_key += 1;
                    let state = StreamState {
                        key,
                        local_port: p,
                        advertised: None,
                    };
                    if slot == 0 {
                        m.rtp = Some(state);
                    } else {
                        m.rtcp = Some(state);
                    }
                    effects.push(Effect::Open {
                        key: StreamKey(key),
                        worker,
                        local: SocketAddr::new(addr, p),
                        kind,
                        standby: false,
                    });
                }
            }
            if is_src {
                let (rtp_ep, rtcp_ep) = endpoints(&info, req);
                if let Some(s) = m.rtp.as_mut() {
                    s.advertised = rtp_ep;
                }
                if let Some(s) = m.rtcp.as_mut() {
                    s.advertised = rtcp_ep;
                }
            }
        }
    }
    Ok(())
}

/// Emits a `Configure` for every stream of the call (`standby`: held for
/// another relay, nothing forwarded).
pub(super) fn configure_call(call: &Call, effects: &mut Vec<Effect>, standby: bool) {
    for leg in &call.legs {
        let peer = leg.peer.and_then(|p| call.leg(p));
        for (i, m) in leg.media.iter().enumerate() {
            let pm = peer.and_then(|p| p.media.get(i)).filter(|pm| !pm.disabled);
            let sink_rtp = pm.and_then(|pm| pm.rtp.as_ref()).map(|s| StreamKey(s.key));
            let sink_rtcp = pm.and_then(|pm| {
                if pm.mux_active() {
                    pm.rtp.as_ref()
                } else {
                    pm.rtcp.as_ref()
                }
                .map(|s| StreamKey(s.key))
            });
            for s in m.rtp.iter().chain(m.rtcp.iter()) {
                effects.push(Effect::Configure {
                    key: StreamKey(s.key),
                    worker: call.worker,
                    config: StreamConfig {
                        endpoint: s.advertised,
                        latching: leg.latching.into(),
                        strict_source: leg.strict_source,
                        sink_rtp,
                        sink_rtcp,
                        tos: call.tos,
                        standby,
                    },
                });
            }
        }
    }
}
