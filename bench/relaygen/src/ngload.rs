//! ng setup rate: offer+answer pairs pipelined over one UDP socket from one
//! thread (no async runtime in the way), `window` requests in flight.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use voxline_ng::client::{check_result, decode_reply, encode_request};
use voxline_ng::command::{CommandKind, MediaRequest};

/// Result of one run.
pub struct NgLoad {
    /// Pairs whose offer and answer both succeeded.
    pub ok: usize,
    /// Pairs with an error reply or no reply.
    pub failed: usize,
    /// Wall time.
    pub seconds: f64,
    /// Call-ids created (for teardown).
    pub call_ids: Vec<String>,
}

fn request(kind: CommandKind, call_id: &str, to_tag: Option<&str>, cookie: &str) -> Vec<u8> {
    let m = MediaRequest {
        call_id: call_id.to_owned(),
        from_tag: "a".into(),
        to_tag: to_tag.map(str::to_owned),
        sdp: crate::sdp(SocketAddr::from(([127, 0, 0, 1], 9))),
        supports: vec!["load limit".into()],
        ..MediaRequest::default()
    };
    encode_request(cookie, &m.to_value(kind))
}

/// Runs `pairs` offer+answer exchanges against `ng`. Cookies carry
/// `run_id`: a target answers a cookie it has seen from its reply cache
/// (rtpengine keeps them longer than a pause between runs), without work.
pub fn run(ng: SocketAddr, pairs: usize, window: usize, run_id: &str) -> anyhow::Result<NgLoad> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut in_flight: HashMap<String, (usize, bool)> = HashMap::new();
    let mut next = 0usize;
    let (mut ok, mut failed) = (0usize, 0usize);
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let call = |i: usize| format!("{run_id}-{i}");
    while ok + failed < pairs {
        while in_flight.len() < window && next < pairs {
            let cookie = format!("{run_id}-o{next}");
            sock.send_to(&request(CommandKind::Offer, &call(next), None, &cookie), ng)?;
            in_flight.insert(cookie, (next, false));
            next += 1;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => {
                // Timed out: count everything outstanding as failed.
                failed += in_flight.len();
                in_flight.clear();
                continue;
            }
        };
        let Ok(reply) = decode_reply(&buf[..n]) else {
            continue;
        };
        let cookie = String::from_utf8_lossy(reply.cookie).into_owned();
        let Some((i, is_answer)) = in_flight.remove(&cookie) else {
            continue;
        };
        if check_result(&reply.body).is_err() || reply.body.get("sdp").is_none() {
            failed += 1;
            continue;
        }
        if is_answer {
            ok += 1;
        } else {
            let cookie = format!("{run_id}-a{i}");
            sock.send_to(
                &request(CommandKind::Answer, &call(i), Some("b"), &cookie),
                ng,
            )?;
            in_flight.insert(cookie, (i, true));
        }
    }
    Ok(NgLoad {
        ok,
        failed,
        seconds: start.elapsed().as_secs_f64(),
        call_ids: (0..pairs).map(call).collect(),
    })
}
