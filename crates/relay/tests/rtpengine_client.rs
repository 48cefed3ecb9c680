//! The ng client against a real rtpengine (Debian `rtpengine-daemon`,
//! userspace, foreground, free loopback ports): typed offer/answer/query/
//! delete results and the failover reasons. Skipped with a message if the
//! `rtpengine` binary is missing.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use voxline_ng::client::{NgError, RetransmitPolicy};
use voxline_ng::command::{DeleteRequest, MediaRequest, QueryRequest};
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

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts rtpengine with media ports `[min, max]`; returns it and its ng address.
async fn start_rtpengine(min: u16, max: u16) -> (Daemon, std::net::SocketAddr) {
    let ng: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("rtpengine")
        .args([
            "--foreground",
            "--table=-1",
            "--interface=127.0.0.1",
            "--log-stderr",
            "--log-level=3",
        ])
        .arg(format!("--listen-ng={ng}"))
        .arg(format!("--port-min={min}"))
        .arg(format!("--port-max={max}"))
        .arg("--delete-delay=0")
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (daemon, ng)
}

fn offer(call: &str, sdp: String) -> MediaRequest {
    MediaRequest {
        call_id: call.into(),
        from_tag: "ft".into(),
        sdp,
        supports: vec!["load limit".into()],
        ..MediaRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_client_drives_a_real_rtpengine() {
    if !have_rtpengine() {
        eprintln!(
            "SKIPPED: ng_client_drives_a_real_rtpengine needs the `rtpengine` binary (Debian rtpengine-daemon)"
        );
        return;
    }
    // Room for exactly one audio stream pair per side, so the second call
    // runs out of ports.
    let (_daemon, ng) = start_rtpengine(33000, 33003).await;
    let client = NgClient::connect(ng, RetransmitPolicy::default())
        .await
        .unwrap();
    let (a, b) = (Endpoint::new(), Endpoint::new());
    let o = client
        .offer(&offer("rc-1", sdp(a.addr(), "")))
        .await
        .unwrap();
    let to_b = media_addr(&o.sdp);
    assert!((33000..=33003).contains(&to_b.port()), "{}", o.sdp);
    let mut ans = offer("rc-1", sdp(b.addr(), ""));
    ans.to_tag = Some("tt".into());
    let r = client.answer(&ans).await.unwrap();
    let to_a = media_addr(&r.sdp);
    // Media through rtpengine, both ways.
    a.send(&rtp(1), to_a);
    assert_eq!(b.recv().0, rtp(1));
    b.send(&rtp(2), to_b);
    assert_eq!(a.recv().0, rtp(2));
    // Typed query result with rtpengine's key names.
    let q = client
        .query(&QueryRequest {
            call_id: "rc-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.totals_rtp.packets, 2);
    let tags: Vec<&str> = q.tags.iter().map(|t| t.tag.as_str()).collect();
    assert!(tags.contains(&"ft") && tags.contains(&"tt"), "{tags:?}");
    // Failover reasons decode to their own variants.
    let err = client
        .offer(&offer("rc-2", sdp(a.addr(), "")))
        .await
        .unwrap_err();
    assert!(matches!(err, NgError::OutOfPorts), "{err:?}");
    assert!(err.is_failover());
    let err = client
        .query(&QueryRequest {
            call_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NgError::Remote(r) if r == "Unknown call-id"),
        "{err:?}"
    );
    // Delete returns the final statistics.
    let d = client
        .delete(&DeleteRequest {
            call_id: "rc-1".into(),
            from_tag: Some("ft".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d.stats.unwrap().totals_rtp.packets, 2);
    let again = client
        .delete(&DeleteRequest {
            call_id: "rc-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        again.warning.as_deref(),
        Some("Call-ID not found or tags didn't match")
    );
}
