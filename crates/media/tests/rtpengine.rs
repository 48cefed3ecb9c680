//! Interop: the same `MediaControl` driving a real rtpengine (Debian
//! `rtpengine-daemon`, userspace `--table=-1`, foreground, loopback ports,
//! started here): offer/answer/query/delete with direction rules and media
//! both ways, and a mixed set where rtpengine runs out of ports and the
//! call fails over to a Voxline relay. Skipped with a message if the
//! `rtpengine` binary is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voxline_media::{AnswerParams, DeleteParams, MediaControl, MediaTotals, OfferParams};
use voxline_ng::client::RetransmitPolicy;
use voxline_relay::client::NgClient;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_rtpengine() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("rtpengine").is_file()))
}

/// Starts rtpengine with interfaces `internal` (127.0.0.1) and `external`
/// (127.0.0.2), media ports `[min, max]`; returns it once it answers ping.
async fn start_rtpengine(min: u16, max: u16) -> (Daemon, SocketAddr) {
    let ng = silent_address();
    let child = Command::new("rtpengine")
        .args([
            // Not /etc/rtpengine/rtpengine.conf: its fixed CLI and HTTP
            // ports would allow one daemon per machine.
            "--config-file=none",
            "--foreground",
            "--table=-1",
            "--log-stderr",
            "--log-level=3",
            "--delete-delay=0",
        ])
        .arg(format!("--interface=internal/{INTERNAL}"))
        .arg(format!("--interface=external/{EXTERNAL}"))
        .arg(format!("--listen-ng={ng}"))
        .arg(format!("--port-min={min}"))
        .arg(format!("--port-max={max}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let client = NgClient::connect(
        ng,
        RetransmitPolicy {
            timeout: Duration::from_millis(100),
            attempts: 1,
        },
    )
    .await
    .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    while client.ping().await.is_err() {
        assert!(Instant::now() < end, "rtpengine did not answer ping");
    }
    (daemon, ng)
}

fn offer(call: &str, sdp_text: String) -> OfferParams {
    OfferParams::new(call, "ft", &sdp_text, sip_source())
}

fn answer(call: &str, sdp_text: String) -> AnswerParams {
    AnswerParams::new(
        call,
        "ft",
        "tt",
        &sdp_text,
        "127.0.0.1:5062".parse().unwrap(),
    )
}

fn delete(call: &str) -> DeleteParams<'_> {
    DeleteParams {
        call_id: call,
        from_tag: "ft",
        to_tag: Some("tt"),
        via_branch: None,
    }
}

macro_rules! require_rtpengine {
    ($name:literal) => {
        if !have_rtpengine() {
            eprintln!(
                "SKIPPED: {} needs the `rtpengine` binary (Debian rtpengine-daemon)",
                $name
            );
            return;
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_control_drives_rtpengine() {
    require_rtpengine!("media_control_drives_rtpengine");
    let (_daemon, ng) = start_rtpengine(44000, 44099).await;
    let media = media(&[(ng, 1)]).await;
    let (a, b) = (Endpoint::new(), Endpoint::new());

    let offered = sdp(a.addr()).replace("o=- 1 1 IN IP4 127.0.0.1", "o=- 1 1 IN IP4 192.0.2.99");
    let (to_b, relay) = media.offer(&offer("rx-1", offered)).await.unwrap();
    assert_eq!(relay.address, ng);
    // direction = [external, internal]: the callee sees the internal side.
    let relay_for_b = media_addr(&to_b);
    assert_eq!(relay_for_b.ip().to_string(), INTERNAL, "{to_b}");
    assert!((44000..=44099).contains(&relay_for_b.port()), "{to_b}");
    // replace = [origin]
    assert!(!to_b.contains("192.0.2.99"), "{to_b}");

    let (to_a, again) = media.answer(&answer("rx-1", sdp(b.addr()))).await.unwrap();
    assert_eq!(again, relay);
    let relay_for_a = media_addr(&to_a);
    assert_eq!(relay_for_a.ip().to_string(), EXTERNAL, "{to_a}");

    a.send_to_peer(3, relay_for_a, &b);
    b.send_to_peer(2, relay_for_b, &a);

    let q = media.query("rx-1").await.unwrap();
    assert_eq!(q.totals_rtp.packets, 5);
    let stats = media.delete(&delete("rx-1")).await.unwrap();
    let totals = MediaTotals::from_stats(&stats, "ft");
    assert_eq!((totals.offerer.packets, totals.answerer.packets), (3, 2));
    assert_eq!(totals.offerer.bytes, 3 * 172);
    // Gone on rtpengine: a new delete finds nothing.
    assert!(media.delete(&delete("rx-1")).await.is_none());
    let st = &media.relays()[0];
    assert!(st.up);
    assert_eq!((st.sessions_started, st.failures), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtpengine_out_of_ports_fails_over_to_a_voxline_relay() {
    require_rtpengine!("rtpengine_out_of_ports_fails_over_to_a_voxline_relay");
    // Room for one call on rtpengine: one port pair per interface.
    let (_daemon, ng) = start_rtpengine(44100, 44101).await;
    let voxline = start_relay(44200, 44299, 0).await;
    let media: MediaControl = media(&[(ng, 100), (voxline.ng_udp_addr(), 1)]).await;
    let (a, b) = (Endpoint::new(), Endpoint::new());
    let (_, first) = media.offer(&offer("mx-1", sdp(a.addr()))).await.unwrap();
    assert_eq!(first.address, ng);
    media.answer(&answer("mx-1", sdp(b.addr()))).await.unwrap();
    let (to_b, second) = media.offer(&offer("mx-2", sdp(a.addr()))).await.unwrap();
    assert_eq!(second.address, voxline.ng_udp_addr());
    assert_eq!(media_addr(&to_b).ip().to_string(), INTERNAL);
    let st = media.relays();
    assert!(!st[0].up);
    assert_eq!(st[0].last_error.as_deref(), Some("Ran out of ports"));
    assert_eq!(voxline.stats().sessions, 1);
    // Each call is deleted where it lives.
    assert!(media.delete(&delete("mx-1")).await.is_some());
    let mx2 = DeleteParams {
        to_tag: None,
        ..delete("mx-2")
    };
    assert!(media.delete(&mx2).await.is_some());
    assert_eq!(voxline.stats().sessions, 0);
    voxline.shutdown().await;
}
