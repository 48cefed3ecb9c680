//! SDP rewriting towards one leg: its ports, its interface address, ICE and
//! rtcp-mux handling, origin/session-name replacement.

use voxline_ng::command::{IceMode, MediaRequest, TransportProtocol};
use voxline_sdp::Sdp;

use super::{Call, SessionError};
use crate::config::InterfaceConfig;

const ICE_ATTRS: [&str; 6] = [
    "ice-ufrag",
    "ice-pwd",
    "candidate",
    "ice-options",
    "end-of-candidates",
    "remote-candidates",
];

/// Rewrites `sdp` (from the other side) for the recipient leg `out_leg` and
/// records on that leg whether it was offered rtcp-mux.
pub(super) fn rewrite(
    sdp: &Sdp<'_>,
    call: &mut Call,
    out_leg: u32,
    req: &MediaRequest,
    interfaces: &[InterfaceConfig],
) -> Result<String, SessionError> {
    let mut sdp = sdp.clone();
    let pos = call
        .leg_pos(out_leg)
        .ok_or_else(|| SessionError::Mismatch("recipient leg vanished".into()))?;
    let Some(leg) = call.legs.get_mut(pos) else {
        return Err(SessionError::Mismatch("recipient leg vanished".into()));
    };
    let iface = interfaces
        .get(leg.interface)
        .or_else(|| interfaces.first())
        .ok_or_else(|| SessionError::Mismatch("no interface".into()))?;
    let addr = iface.sdp_address();
    let keep_zero = !req.replace.zero_address;
    if let Some(c) = sdp.session_connection()
        && !(c.is_unspecified() && keep_zero)
    {
        sdp.set_session_connection(addr);
    }
    // The relay is not an ICE agent (it answers no STUN connectivity
    // checks), so by default it strips ICE: an ICE endpoint then talks to a
    // plain (non-ICE) peer at c=/m=, which RFC 8445 §6 allows. The endpoint's
    // own candidates would bypass the relay anyway. `ICE=force` advertises the
    // relay's ports as host candidates, for peers that do not run checks.
    let ice_mode = req.ice.unwrap_or(IceMode::Default);
    let sdp_has_ice = (0..sdp.media_count()).any(|i| sdp.media(i).is_some_and(|m| m.ice))
        || sdp.has_session_attr("ice-ufrag");
    let strip_ice = match ice_mode {
        IceMode::Remove | IceMode::Force => true,
        IceMode::Default => sdp_has_ice,
    };
    let add_ice = ice_mode == IceMode::Force;
    if strip_ice {
        for a in ICE_ATTRS.iter().chain(["ice-lite"].iter()) {
            sdp.remove_session_attr(a);
        }
    }
    for i in 0..sdp.media_count() {
        let Some(info) = sdp.media(i) else {
            continue;
        };
        let Some(m) = leg.media.get_mut(i) else {
            continue;
        };
        let (Some(rtp), Some(rtcp)) = (m.rtp.clone(), m.rtcp.clone()) else {
            continue;
        };
        if info.port == 0 {
            continue;
        }
        if sdp.media_has_connection(i) && !(info.connection.is_unspecified() && keep_zero) {
            sdp.set_media_connection(i, addr, false);
        }
        sdp.set_media_port(i, rtp.local_port);
        if let Some(tp) = req.transport_protocol
            && tp != TransportProtocol::Accept
            && info.protocol.starts_with("RTP/")
        {
            sdp.set_media_protocol(i, tp.as_str());
        }
        let mux = &req.rtcp_mux;
        let want_mux = if mux.demux || mux.reject {
            false
        } else if mux.offer || mux.require {
            true
        } else {
            info.rtcp_mux
        };
        if info.rtcp_mux && !want_mux {
            sdp.remove_media_attr(i, "rtcp-mux");
        }
        sdp.set_rtcp(i, rtcp.local_port, addr);
        if want_mux && !info.rtcp_mux {
            sdp.add_media_attr(i, "rtcp-mux");
        }
        m.sent_mux = want_mux;
        if strip_ice {
            for a in ICE_ATTRS {
                sdp.remove_media_attr(i, a);
            }
        }
        if add_ice {
            let foundation = format!("vxl{}", leg.interface);
            sdp.add_media_attr(i, &format!("ice-ufrag:{}", leg.ice_ufrag()));
            sdp.add_media_attr(i, &format!("ice-pwd:{}", leg.ice_pwd()));
            sdp.add_media_attr(
                i,
                &format!(
                    "candidate:{foundation} 1 UDP 2130706431 {addr} {} typ host",
                    rtp.local_port
                ),
            );
            if !want_mux {
                sdp.add_media_attr(
                    i,
                    &format!(
                        "candidate:{foundation} 2 UDP 2130706430 {addr} {} typ host",
                        rtcp.local_port
                    ),
                );
            }
        }
    }
    let bump = req.replace.force_increment_sdp_ver;
    if req.replace.origin {
        sdp.set_origin(Some(addr), bump);
    } else if bump {
        sdp.set_origin(None, true);
    }
    if req.replace.session_name {
        sdp.set_session_name("voxline");
    }
    Ok(sdp.render())
}
