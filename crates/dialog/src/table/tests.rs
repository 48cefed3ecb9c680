use super::*;

fn leg(to: &str) -> Leg {
    Leg {
        request_uri: format!("sip:{to}@192.0.2.1"),
        routes: Vec::new(),
        next_hop: "192.0.2.1:5060".parse().unwrap(),
        transport: "udp".into(),
        from: "<sip:x@y>;tag=a".into(),
        to: format!("<sip:{to}@y>;tag=b"),
        cseq: 0,
    }
}

fn call(id: &str, subscriber: &str) -> NewCall {
    NewCall {
        call_id: id.into(),
        from_tag: "ft".into(),
        caller: subscriber.into(),
        callee: "bob@example.com".into(),
        source: "192.0.2.9:5060".parse().unwrap(),
        transport: "udp".into(),
        subscriber: Some(subscriber.into()),
        domain: Some("example.com".into()),
        cseq: 10,
        caller_leg: leg("alice"),
    }
}

fn table(cfg: DialogConfig) -> DialogTable {
    DialogTable::new(cfg)
}

#[test]
fn life_of_an_answered_call() {
    let t = table(DialogConfig::default());
    let id = t.begin(call("c1", "alice@example.com"), 1_000).unwrap();
    assert_eq!(t.counts(), (1, 0));
    assert!(t.confirm("c1", "ft", "tt", leg("bob"), 3_000));
    assert_eq!(t.counts(), (0, 1));
    let list = t.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].state, DialogState::Confirmed);
    // The callee hangs up: its BYE has From tag = our To tag.
    let (_, from_caller) = t.touch("c1", Some("tt"), Some("ft"), 1, 60_000).unwrap();
    assert!(!from_caller);
    let ended = t.end("c1", Some("tt"), Some("ft"), false, 61_000).unwrap();
    assert_eq!(ended.hangup, Hangup::Callee);
    assert_eq!(ended.status, 200);
    assert_eq!(ended.duration_ms(), 58_000);
    assert_eq!(t.counts(), (0, 0));
    assert!(t.list().is_empty());
}

#[test]
fn failed_attempts_are_records_too() {
    let t = table(DialogConfig::default());
    t.begin(call("c2", "alice@example.com"), 0).unwrap();
    let ended = t
        .fail("c2", "ft", 486, "Busy Here", Hangup::Callee, 500)
        .unwrap();
    assert_eq!((ended.status, ended.duration_ms()), (486, 0));
    assert!(ended.info.answered_ms.is_none());
    assert!(
        t.fail("c2", "ft", 486, "Busy Here", Hangup::Callee, 500)
            .is_none()
    );
}

#[test]
fn concurrent_call_limits() {
    let t = table(DialogConfig {
        max_calls_per_subscriber: 2,
        max_calls_per_domain: 3,
        limit_status: 486,
        ..DialogConfig::default()
    });
    t.begin(call("a", "alice@example.com"), 0).unwrap();
    t.begin(call("b", "alice@example.com"), 0).unwrap();
    let e = t.begin(call("c", "alice@example.com"), 0).unwrap_err();
    assert_eq!(e.status, 486);
    t.begin(call("d", "carol@example.com"), 0).unwrap();
    let e = t.begin(call("e", "dave@example.com"), 0).unwrap_err();
    assert!(e.reason.contains("limit"));
    // Ending a call frees its slot.
    t.fail("a", "ft", 487, "Request Terminated", Hangup::Caller, 1)
        .unwrap();
    t.begin(call("f", "alice@example.com"), 2).unwrap();
}

#[test]
fn max_duration_tears_down_both_legs_with_cseq_above_what_was_seen() {
    let t = table(DialogConfig {
        max_duration_secs: 60,
        ..DialogConfig::default()
    });
    t.begin(call("c3", "alice@example.com"), 0).unwrap();
    t.confirm("c3", "ft", "tt", leg("bob"), 1_000);
    t.touch("c3", Some("ft"), Some("tt"), 11, 2_000).unwrap(); // re-INVITE from the caller
    assert!(t.expired(60_999).is_empty());
    let down = t.expired(61_000);
    assert_eq!(down.len(), 1);
    let d = &down[0];
    assert_eq!(d.ended.hangup, Hangup::Proxy("max-duration".into()));
    assert_eq!(d.ended.duration_ms(), 60_000);
    assert_eq!(
        d.callee.as_ref().unwrap().cseq,
        12,
        "above the caller's last CSeq"
    );
    assert_eq!(d.caller.cseq, 1);
    assert_eq!(t.counts(), (0, 0));
}

#[test]
fn ringing_too_long_expires_without_callee_leg() {
    let t = table(DialogConfig {
        max_ringing_secs: 5,
        ..DialogConfig::default()
    });
    t.begin(call("c4", "alice@example.com"), 0).unwrap();
    let down = t.expired(5_000);
    assert_eq!(down.len(), 1);
    assert!(down[0].callee.is_none());
    assert_eq!(down[0].ended.status, 408);
}

#[test]
fn quiet_dialogs_are_reported_once_per_window() {
    let t = table(DialogConfig {
        inactivity_check_secs: 30,
        ..DialogConfig::default()
    });
    t.begin(call("c5", "alice@example.com"), 0).unwrap();
    t.confirm("c5", "ft", "tt", leg("bob"), 0);
    assert!(t.quiet(29_000).is_empty());
    assert_eq!(t.quiet(30_000).len(), 1);
    assert!(t.quiet(40_000).is_empty(), "not again within the window");
    assert_eq!(t.quiet(60_000).len(), 1);
}

#[test]
fn memory_per_confirmed_dialog_is_small() {
    // A rough upper bound from the sizes of the parts (the record; its
    // strings are one buffer of their total length); the benchmark
    // measures resident memory for real.
    let size = std::mem::size_of::<Record>();
    assert!(size <= 288, "{size}");
}
