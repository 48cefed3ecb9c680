//! End-to-end: the relay in-process on loopback, driven over real ng UDP/TCP
//! with real media sockets.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxline_ng::client::{NgError, RetransmitPolicy};
use voxline_ng::command::{DeleteRequest, Flags, MediaRequest, QueryRequest};
use voxline_relay::RelayIo;
use voxline_relay::client::NgClient;
use voxline_relay_dataplane::raw_partition;

fn policy() -> RetransmitPolicy {
    RetransmitPolicy {
        timeout: Duration::from_millis(500),
        attempts: 3,
    }
}

fn offer(call: &str, from: &str, sdp: String) -> MediaRequest {
    MediaRequest {
        call_id: call.into(),
        from_tag: from.into(),
        sdp,
        supports: vec!["load limit".into()],
        ..MediaRequest::default()
    }
}

fn answer(call: &str, from: &str, to: &str, sdp: String) -> MediaRequest {
    MediaRequest {
        to_tag: Some(to.into()),
        ..offer(call, from, sdp)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_answer_media_latching_tos_query_delete() {
    media_flow((31000, 31099), RelayIo::Sockets).await;
}

/// The same with `io = "raw"` and two workers: a call's ports all come from
/// its worker's partition, so both legs are read by that worker's raw
/// socket. Needs CAP_NET_RAW (skipped without, unless `VOXLINE_REQUIRE_RAW`
/// is set, as the test script does when it runs as root).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_answer_media_latching_tos_query_delete_with_raw_io() {
    if !voxline_relay_dataplane::test_util::raw_permitted() {
        return;
    }
    media_flow((31400, 31499), RelayIo::Raw).await;
}

async fn media_flow((port_min, port_max): (u16, u16), io: RelayIo) {
    let relay = start_relay(port_min, port_max, |c| c.io = io).await;
    let ng = NgClient::connect(relay.ng_udp_addr(), policy())
        .await
        .unwrap();
    ng.ping().await.unwrap();
    let (a, b) = (Endpoint::new(), Endpoint::new());
    // The caller advertises a port it does not send from (as behind NAT);
    // latching must find it.
    let advertised: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let o = ng
        .offer(&offer("call-1", "ft", sdp(advertised, "a=sendrecv\r\n")))
        .await
        .unwrap();
    assert!(o.sdp.contains("a=sendrecv\r\n"));
    let to_b = media_addr(&o.sdp);
    assert!((port_min..=port_max).contains(&to_b.port()));
    let ans = ng
        .answer(&answer("call-1", "ft", "tt", sdp(b.addr(), "")))
        .await
        .unwrap();
    let to_a = media_addr(&ans.sdp);
    assert_ne!(to_a, to_b);
    if io == RelayIo::Raw {
        assert_eq!(
            raw_partition(to_a.port(), 2),
            raw_partition(to_b.port(), 2),
            "both legs on the call's worker"
        );
    }

    for seq in 0..5u16 {
        a.send(&rtp(seq), to_a);
        let (data, from, tos) = b.recv();
        assert_eq!(data, rtp(seq));
        assert_eq!(from, to_b, "B sees the relay, not A");
        assert_eq!(tos, 184, "default TOS EF");
    }
    for seq in 0..3u16 {
        b.send(&rtp(100 + seq), to_b);
        let (data, from, tos) = a.recv();
        assert_eq!(data, rtp(100 + seq));
        assert_eq!(from, to_a);
        assert_eq!(tos, 184);
    }
    // Garbage is dropped and counted.
    a.send(b"not rtp", to_a);
    b.expect_nothing(Duration::from_millis(200));

    let q = ng
        .query(&QueryRequest {
            call_id: "call-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(q.totals_rtp.packets, 8);
    assert_eq!(q.totals_rtp.errors, 1);
    let ft = q.tags.iter().find(|t| t.tag == "ft").unwrap();
    let stream = &ft.medias[0].streams[0];
    assert_eq!(stream.local_port, to_a.port());
    assert_eq!(stream.endpoint.as_ref().unwrap().addr, a.addr(), "latched");
    assert_eq!(
        stream.advertised_endpoint.as_ref().unwrap().addr,
        advertised
    );
    assert!(stream.flags.contains(&"confirmed".to_string()));
    assert_eq!(
        stream.stats.bytes,
        5 * 172,
        "the invalid packet is not counted as media"
    );
    assert_eq!(stream.stats.errors, 1);

    let d = ng
        .delete(&DeleteRequest {
            call_id: "call-1".into(),
            from_tag: Some("ft".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(d.stats.unwrap().totals_rtp.packets, 8);
    // Sockets are closed (the ports can be bound again): media no longer flows.
    eventually(5, || std::net::UdpSocket::bind(to_a).is_ok()).await;
    a.send(&rtp(50), to_a);
    b.expect_nothing(Duration::from_millis(200));
    let again = ng
        .delete(&DeleteRequest {
            call_id: "call-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        again.warning.as_deref(),
        Some("Call-ID not found or tags didn't match")
    );
    let fatal = DeleteRequest {
        call_id: "call-1".into(),
        flags: Flags {
            fatal: true,
            ..Flags::default()
        },
        ..Default::default()
    };
    assert!(
        matches!(ng.delete(&fatal).await, Err(NgError::Remote(r)) if r == "Call-ID not found or tags didn't match")
    );
    assert!(
        matches!(ng.query(&QueryRequest { call_id: "call-1".into(), ..Default::default() }).await, Err(NgError::Remote(r)) if r == "Unknown call-id")
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_tos_reinvite_keeps_ports_and_forking() {
    let relay = start_relay(31100, 31199, |_| {}).await;
    let ng = NgClient::connect(relay.ng_udp_addr(), policy())
        .await
        .unwrap();
    let (a, b1, b2) = (Endpoint::new(), Endpoint::new(), Endpoint::new());
    let mut req = offer("call-2", "ft", sdp(a.addr(), ""));
    req.tos = Some(104);
    let o = ng.offer(&req).await.unwrap();
    let to_b = media_addr(&o.sdp);
    // Two forks answer; media follows the latest answer.
    let ans1 = ng
        .answer(&answer("call-2", "ft", "t1", sdp(b1.addr(), "")))
        .await
        .unwrap();
    let ans2 = ng
        .answer(&answer("call-2", "ft", "t2", sdp(b2.addr(), "")))
        .await
        .unwrap();
    let to_a = media_addr(&ans1.sdp);
    assert_eq!(to_a, media_addr(&ans2.sdp));
    a.send(&rtp(1), to_a);
    let (_, from, tos) = b2.recv();
    assert_eq!((from, tos), (to_b, 104));
    b1.expect_nothing(Duration::from_millis(100));
    // The winning fork re-answers; the other is deleted by to-tag.
    ng.delete(&DeleteRequest {
        call_id: "call-2".into(),
        from_tag: Some("ft".into()),
        to_tag: Some("t1".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    // re-INVITE from the caller (hold) keeps every port.
    let mut reinvite = offer("call-2", "ft", sdp(a.addr(), "a=sendonly\r\n"));
    reinvite.to_tag = Some("t2".into());
    let o2 = ng.offer(&reinvite).await.unwrap();
    assert_eq!(media_addr(&o2.sdp), to_b);
    assert!(o2.sdp.contains("a=sendonly"));
    let a2 = ng
        .answer(&answer(
            "call-2",
            "ft",
            "t2",
            sdp(b2.addr(), "a=recvonly\r\n"),
        ))
        .await
        .unwrap();
    assert_eq!(media_addr(&a2.sdp), to_a);
    b2.send(&rtp(2), to_b);
    let (_, from, tos) = a.recv();
    assert_eq!((from, tos), (to_a, 104));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_time_out_without_media() {
    let relay = start_relay(31200, 31299, |c| c.timeout_secs = 1).await;
    let ng = NgClient::connect(relay.ng_udp_addr(), policy())
        .await
        .unwrap();
    let (a, b) = (Endpoint::new(), Endpoint::new());
    ng.offer(&offer("idle", "ft", sdp(a.addr(), "")))
        .await
        .unwrap();
    ng.answer(&answer("idle", "ft", "tt", sdp(b.addr(), "")))
        .await
        .unwrap();
    let o = ng
        .offer(&offer("busy", "ft", sdp(a.addr(), "")))
        .await
        .unwrap();
    let ans = ng
        .answer(&answer("busy", "ft", "tt", sdp(b.addr(), "")))
        .await
        .unwrap();
    let to_a = media_addr(&ans.sdp);
    let _ = o;
    // Keep "busy" alive with media for ~2.5 s while "idle" expires.
    for i in 0..25u16 {
        a.send(&rtp(i), to_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(relay.stats().timed_out, 1);
    assert!(
        ng.query(&QueryRequest {
            call_id: "idle".into(),
            ..Default::default()
        })
        .await
        .is_err()
    );
    ng.query(&QueryRequest {
        call_id: "busy".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    eventually(5, || relay.stats().sessions == 0).await;
    assert_eq!(relay.stats().timed_out, 2);
    relay.shutdown().await;
}

async fn raw(sock: &tokio::net::UdpSocket, to: SocketAddr, msg: &[u8]) -> Vec<u8> {
    sock.send_to(msg, to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retransmissions_bad_input_json_and_port_exhaustion() {
    let relay = start_relay(31300, 31303, |_| {}).await;
    let to = relay.ng_udp_addr();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = Endpoint::new();
    let body = sdp(a.addr(), "");
    let msg = format!(
        "rtx_1 d7:command5:offer7:call-id3:rtx8:from-tag2:ft3:sdp{}:{}e",
        body.len(),
        body
    );
    let r1 = raw(&sock, to, msg.as_bytes()).await;
    let r2 = raw(&sock, to, msg.as_bytes()).await;
    assert_eq!(r1, r2, "retransmission gets the cached reply");
    assert!(r1.starts_with(b"rtx_1 d"));
    let s = relay.stats();
    assert_eq!((s.commands, s.duplicates, s.sessions), (1, 1, 1));
    // The 4-port range is used up by one 1-media call: the next offer fails.
    let msg2 = format!(
        "rtx_2 d7:command5:offer7:call-id4:rtx28:from-tag2:ft3:sdp{}:{}e",
        body.len(),
        body
    );
    let r = raw(&sock, to, msg2.as_bytes()).await;
    assert_eq!(
        r,
        b"rtx_2 d6:result5:error12:error-reason16:Ran out of portse"
    );
    // Malformed input of every kind gets a named error, never a crash.
    let r = String::from_utf8(raw(&sock, to, b"c1 d7:commande").await).unwrap();
    assert!(
        r.starts_with("c1 d6:result5:error12:error-reason")
            && r.contains("Could not decode bencode dictionary"),
        "{r}"
    );
    let r = String::from_utf8(raw(&sock, to, br#"c2 {"command":"#).await).unwrap();
    assert!(
        r.starts_with(r#"c2 {"result":"error","error-reason":"Failed to parse JSON document"#),
        "{r}"
    );
    let r = String::from_utf8(
        raw(
            &sock,
            to,
            b"c3 d7:command5:offer7:call-id1:x8:from-tag1:f3:sdp7:garbagee",
        )
        .await,
    )
    .unwrap();
    assert!(
        r.contains("Failed to parse SDP: SDP does not start with a 'v=' line"),
        "{r}"
    );
    let r = String::from_utf8(raw(&sock, to, b"c4 d7:command4:frobe").await).unwrap();
    assert!(r.contains("Unrecognized command"));
    // JSON form.
    let r = String::from_utf8(raw(&sock, to, br#"c5 {"command":"ping"}"#).await).unwrap();
    assert_eq!(r, r#"c5 {"result":"pong"}"#);
    let r = String::from_utf8(raw(&sock, to, br#"c6 {"command":"list"}"#).await).unwrap();
    assert_eq!(r, r#"c6 {"result":"ok","calls":["rtx"]}"#);
    let r = String::from_utf8(raw(&sock, to, b"c7 d7:command10:statisticse").await).unwrap();
    assert!(
        r.contains("sessionsown") && r.contains("totaloffercount"),
        "{r}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ng_over_tcp() {
    let relay = start_relay(31400, 31499, |_| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(relay.ng_tcp_addr().unwrap())
        .await
        .unwrap();
    let a = Endpoint::new();
    let body = sdp(a.addr(), "");
    let offer = format!(
        "t2 d7:command5:offer7:call-id3:tcp8:from-tag2:ft3:sdp{}:{}e",
        body.len(),
        body
    );
    // Two messages in one write, the second split across writes.
    tcp.write_all(format!("t1 d7:command4:pinge{}", &offer[..10]).as_bytes())
        .await
        .unwrap();
    tcp.write_all(&offer.as_bytes()[10..]).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !(got.ends_with(b"e") && String::from_utf8_lossy(&got).contains("m=audio")) {
        let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.starts_with("t1 d6:result4:pongeT2 d".replace("T2", "t2").as_str()),
        "{text}"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_does_not_starve_others() {
    // A deep per-source queue: only round-robin service keeps the victim fast.
    let relay = start_relay(31500, 31599, |c| c.ng_queue_per_source = 10_000).await;
    let to = relay.ng_udp_addr();
    // The flood comes from its own address; the victim from 127.0.0.1.
    let flooder = std::net::UdpSocket::bind("127.0.0.3:0").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `statistics` requests (the most expensive reply) from one source at
    // up to 200,000/s: more than the relay can execute, less than it can read, so
    // without fairness every other command would queue behind thousands of
    // them. Bounded in count and time.
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && sent < 1_000_000
                && start.elapsed() < Duration::from_secs(10)
            {
                for _ in 0..1000 {
                    let _ =
                        flooder.send_to(format!("f{sent} d7:command10:statisticse").as_bytes(), to);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Another source (another address) is served throughout the flood; its
    // client retransmits like Kamailio if the kernel dropped a datagram.
    let victim = NgClient::connect(
        to,
        RetransmitPolicy {
            timeout: Duration::from_millis(100),
            attempts: 10,
        },
    )
    .await
    .unwrap();
    let start = std::time::Instant::now();
    for _ in 0..20 {
        victim.ping().await.unwrap();
    }
    let elapsed = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(sent > 1000, "the flood ran ({sent} datagrams)");
    assert!(
        elapsed < Duration::from_secs(5),
        "20 pings took {elapsed:?} under flood"
    );
    let s = relay.stats();
    assert!(s.commands >= 20, "flooder was served too, fairly: {s:?}");
    relay.shutdown().await;
}
