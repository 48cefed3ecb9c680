//! `MediaControl` against in-process Voxline relays on loopback: offer,
//! answer, query and delete with real media; stickiness and weights;
//! failover when a relay does not answer or reaches its session limit, and
//! its return after answering a ping.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use voxline_media::{
    AnswerParams, DeleteParams, MediaControl, MediaError, MediaTotals, OfferParams,
};

fn offer(call: &str, sdp_text: String) -> OfferParams {
    let mut o = OfferParams::new(call, "ft", &sdp_text, sip_source());
    o.via_branch = Some(format!("z9hG4bK-{call}"));
    o
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

/// Offer + answer for `call`; returns the relay index.
async fn establish(media: &MediaControl, call: &str) -> usize {
    let (a, b) = (Endpoint::new(), Endpoint::new());
    let (_, relay) = media.offer(&offer(call, sdp(a.addr()))).await.unwrap();
    let (_, again) = media.answer(&answer(call, sdp(b.addr()))).await.unwrap();
    assert_eq!(relay, again, "answer went to another relay");
    relay.index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_answer_query_delete_with_media() {
    let relay = start_relay(43000, 43099, 0).await;
    let media = media(&[(relay.ng_udp_addr(), 1)]).await;
    let (a, b) = (Endpoint::new(), Endpoint::new());

    // An offer as a client with ICE writes it, origin from elsewhere.
    let offered = sdp(a.addr()).replace("o=- 1 1 IN IP4 127.0.0.1", "o=- 1 1 IN IP4 192.0.2.99")
        + &format!(
            "a=ice-ufrag:F7gI\r\na=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\na=candidate:1 1 UDP 2130706431 {} {} typ host\r\n",
            a.addr().ip(),
            a.addr().port()
        );
    let (to_b, r) = media.offer(&offer("rt-1", offered)).await.unwrap();
    assert_eq!(r.address, relay.ng_udp_addr());
    // direction = [external, internal]: the callee sees the internal side,
    // the origin is replaced, ICE attributes are removed.
    let relay_for_b = media_addr(&to_b);
    assert_eq!(relay_for_b.ip().to_string(), INTERNAL);
    assert!((43000..=43099).contains(&relay_for_b.port()), "{to_b}");
    let origin = to_b.lines().find(|l| l.starts_with("o=")).unwrap();
    assert!(origin.ends_with(&format!("IN IP4 {INTERNAL}")), "{to_b}");
    assert!(
        !to_b.contains("a=ice-") && !to_b.contains("a=candidate"),
        "{to_b}"
    );

    let (to_a, r2) = media.answer(&answer("rt-1", sdp(b.addr()))).await.unwrap();
    assert_eq!(r, r2);
    let relay_for_a = media_addr(&to_a);
    assert_eq!(relay_for_a.ip().to_string(), EXTERNAL, "{to_a}");

    // Media both ways through the relay.
    a.send_to_peer(3, relay_for_a, &b);
    b.send_to_peer(2, relay_for_b, &a);

    let q = media.query("rt-1").await.unwrap();
    assert_eq!(q.totals_rtp.packets, 5);

    let stats = media.delete(&delete("rt-1")).await.unwrap();
    let totals = MediaTotals::from_stats(&stats, "ft");
    assert_eq!(totals.offerer.packets, 3);
    assert_eq!(totals.answerer.packets, 2);
    assert_eq!(totals.offerer.bytes, 3 * 172);
    assert_eq!(relay.stats().sessions, 0);

    // Counters for the admin API.
    let st = &media.relays()[0];
    assert!(st.up);
    assert_eq!(st.sessions_started, 1);
    assert_eq!(st.commands, 4);
    assert_eq!(st.failures, 0);
    // The binding outlives the delete by the grace period.
    assert_eq!(media.relay_of("rt-1"), Some(r));

    // A second delete (retransmitted BYE) finds nothing and says so quietly.
    assert!(media.delete(&delete("rt-1")).await.is_none());
    // An answer for a call nobody offered is refused.
    let err = media
        .answer(&answer("never-offered", sdp(b.addr())))
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::UnknownCall(_)), "{err:?}");
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stick_to_their_relay_and_new_calls_follow_weights() {
    let r0 = start_relay(43100, 43199, 0).await;
    let r1 = start_relay(43200, 43299, 0).await;
    let media = media(&[(r0.ng_udp_addr(), 2), (r1.ng_udp_addr(), 1)]).await;
    let mut on = [0usize; 2];
    for i in 0..6 {
        let call = format!("st-{i}");
        let idx = establish(&media, &call).await;
        on[idx] += 1;
        // A re-INVITE from the callee stays on the same relay.
        let e = Endpoint::new();
        let mut reoffer = OfferParams::new(&call, "tt", &sdp(e.addr()), sip_source());
        reoffer.to_tag = Some("ft".into());
        let (_, r) = media.offer(&reoffer).await.unwrap();
        assert_eq!(r.index, idx);
    }
    assert_eq!(on, [4, 2]);
    assert_eq!((r0.stats().sessions, r1.stats().sessions), (4, 2));
    let st = media.relays();
    assert_eq!((st[0].calls, st[1].calls), (4, 2));
    assert_eq!((st[0].sessions_started, st[1].sessions_started), (4, 2));
    for i in 0..6 {
        assert!(media.delete(&delete(&format!("st-{i}"))).await.is_some());
    }
    assert_eq!((r0.stats().sessions, r1.stats().sessions), (0, 0));
    r0.shutdown().await;
    r1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_relay_fails_over_is_marked_down_and_comes_back() {
    let silent = silent_address();
    let live = start_relay(43300, 43399, 0).await;
    let media = media(&[(silent, 1), (live.ng_udp_addr(), 1)]).await;
    let mut health = media.watch_health();

    // The first call goes to the silent relay first (equal weights, set
    // order): two datagrams of 100 ms, then the live relay.
    let t0 = Instant::now();
    assert_eq!(establish(&media, "fo-1").await, 1);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(200), "{took:?}");
    let st = &media.relays()[0];
    assert!(!st.up);
    assert_eq!(st.marked_down, 1);
    assert!(
        st.last_error.as_deref().unwrap().contains("no ng reply"),
        "{st:?}"
    );
    assert!(!health.borrow_and_update()[0]);

    // While it is down, new calls go straight to the live relay: nothing
    // more is sent to the silent one.
    for i in 2..5 {
        assert_eq!(establish(&media, &format!("fo-{i}")).await, 1);
    }
    assert_eq!(media.relays()[0].failures, 1);
    assert_eq!(live.stats().sessions, 4);

    // A relay starts at the silent address; after `disable_secs` the ping
    // finds it and it is back in service.
    let revived = start_relay_at(silent, 43400, 43499, 0).await;
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|up| up[0]))
        .await
        .expect("relay not back within 5 s")
        .unwrap();
    let st = &media.relays()[0];
    assert!(st.up && st.retry_in_ms.is_none());
    // Weighted selection uses it again.
    let mut on = [0usize; 2];
    for i in 5..9 {
        on[establish(&media, &format!("fo-{i}")).await] += 1;
    }
    assert_eq!(on, [2, 2]);
    assert_eq!(revived.stats().sessions, 2);
    revived.shutdown().await;
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limit_fails_over_and_the_relay_returns_after_ping() {
    let limited = start_relay(43500, 43599, 1).await;
    let spare = start_relay(43600, 43699, 0).await;
    let media = media(&[(limited.ng_udp_addr(), 100), (spare.ng_udp_addr(), 1)]).await;
    let mut health = media.watch_health();

    assert_eq!(establish(&media, "sl-1").await, 0);
    // The limited relay answers `Parallel session limit reached`: next
    // relay, at once.
    assert_eq!(establish(&media, "sl-2").await, 1);
    let st = &media.relays()[0];
    assert!(!st.up);
    assert_eq!((st.failures, st.marked_down), (1, 1));
    assert_eq!(
        st.last_error.as_deref(),
        Some("Parallel session limit reached")
    );
    assert_eq!(limited.stats().sessions, 1);
    // Its own call still works while it is down (stickiness).
    let e = Endpoint::new();
    let mut reoffer = OfferParams::new("sl-1", "tt", &sdp(e.addr()), sip_source());
    reoffer.to_tag = Some("ft".into());
    assert_eq!(media.offer(&reoffer).await.unwrap().1.index, 0);
    // New calls avoid it.
    assert_eq!(establish(&media, "sl-3").await, 1);

    // Pinged after disable_secs, it answers and is back.
    tokio::time::timeout(Duration::from_secs(5), health.wait_for(|up| up[0]))
        .await
        .expect("relay not back within 5 s")
        .unwrap();
    assert!(media.delete(&delete("sl-1")).await.is_some());
    assert_eq!(limited.stats().sessions, 0);
    assert_eq!(establish(&media, "sl-4").await, 0);
    assert_eq!(limited.stats().sessions, 1);
    assert_eq!(spare.stats().sessions, 2);
    limited.shutdown().await;
    spare.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relay_down_is_an_error_not_a_hang() {
    let media = media(&[(silent_address(), 1), (silent_address(), 1)]).await;
    let a = Endpoint::new();
    let t0 = Instant::now();
    let err = media
        .offer(&offer("dn-1", sdp(a.addr())))
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::Exhausted { .. }), "{err:?}");
    // Two relays × two datagrams × 100 ms, and no more.
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Both are down now: refused without sending anything.
    let err = media
        .offer(&offer("dn-2", sdp(a.addr())))
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::NoRelayInService), "{err:?}");
    assert!(media.relays().iter().all(|r| r.failures == 1 && !r.up));
    // Deleting a call nobody has gives no statistics.
    assert!(media.delete(&delete("dn-1")).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_call_is_found_on_its_relay() {
    let r0 = start_relay(43700, 43799, 0).await;
    let r1 = start_relay(43800, 43899, 0).await;
    let relays = [(r0.ng_udp_addr(), 1), (r1.ng_udp_addr(), 1)];
    // One control starts calls, another (as after a restart of the proxy)
    // answers and deletes them.
    let first = media(&relays).await;
    let second = media(&relays).await;
    let (a, b) = (Endpoint::new(), Endpoint::new());
    first.offer(&offer("fg-0", sdp(a.addr()))).await.unwrap();
    let (_, on) = first.offer(&offer("fg-1", sdp(a.addr()))).await.unwrap();
    assert_eq!(on.index, 1);
    let (_, found) = second.answer(&answer("fg-1", sdp(b.addr()))).await.unwrap();
    assert_eq!(found, on);
    assert_eq!(second.relay_of("fg-1"), Some(on));
    assert!(second.query("fg-0").await.is_ok());
    // fg-0 was never answered: no to-tag.
    let unanswered = DeleteParams {
        to_tag: None,
        ..delete("fg-0")
    };
    assert!(second.delete(&unanswered).await.is_some());
    assert!(second.delete(&delete("fg-1")).await.is_some());
    assert_eq!((r0.stats().sessions, r1.stats().sessions), (0, 0));
    // Search is not counted as new sessions.
    assert_eq!(
        second
            .relays()
            .iter()
            .map(|r| r.sessions_started)
            .sum::<u64>(),
        0
    );
    r0.shutdown().await;
    r1.shutdown().await;
}
