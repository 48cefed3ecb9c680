use bytes::Bytes;
use voxline_location::{Contacts, Transport};
use voxline_sip::Message;
use voxline_transaction::{Peer, TransportKind};

use super::*;

fn register(extra: &str) -> Message {
    Message::parse(Bytes::from(format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\nTo: Alice <sip:alice@Example.COM>\r\n\
From: Alice <sip:alice@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\nCSeq: 1826 REGISTER\r\n\
{extra}Content-Length: 0\r\n\r\n"
    )))
    .unwrap()
}

fn peer() -> Peer {
    let mut p = Peer::udp("192.0.2.10:5060".parse().unwrap());
    p.local = Some("192.0.2.1:5060".parse().unwrap());
    p
}

fn local(d: &str) -> bool {
    d == "example.com"
}

fn read(extra: &str) -> Result<Registration, Refusal> {
    read_register(
        &register(extra),
        &peer(),
        &RegistrarConfig::default(),
        local,
    )
}

fn update(extra: &str) -> (String, Update) {
    match read(extra).unwrap() {
        Registration::Update { aor, update } => (aor, update),
        other => panic!("expected an update, got {other:?}"),
    }
}

fn list(u: &Update) -> &[ContactUpdate] {
    match &u.contacts {
        Contacts::List(l) => l,
        Contacts::RemoveAll => panic!("expected a list"),
    }
}

#[test]
fn aor_lowercases_the_host_only() {
    let (aor, u) = update("Contact: <sip:alice@192.0.2.10:5060>\r\n");
    assert_eq!(aor, "alice@example.com");
    assert_eq!(u.call_id, "843817637684230@998sdasdh09");
    assert_eq!(u.cseq, 1826);
    assert_eq!(u.source.transport, Transport::Udp);
    assert_eq!(u.source.remote, "192.0.2.10:5060".parse().unwrap());
    assert!(!u.nat);
}

#[test]
fn no_contact_is_a_query() {
    assert_eq!(
        read("").unwrap(),
        Registration::Query {
            aor: "alice@example.com".into()
        }
    );
}

#[test]
fn expires_from_param_header_or_default_and_clamped() {
    let (_, u) = update(
        "Expires: 120\r\nContact: <sip:a@192.0.2.10>;expires=600, <sip:b@192.0.2.10>, <sip:c@192.0.2.10>;expires=999999\r\n",
    );
    let l = list(&u);
    assert_eq!(
        l.iter().map(|c| c.expires).collect::<Vec<_>>(),
        [600, 120, 7200]
    );
    let (_, u) = update("Contact: <sip:a@192.0.2.10>\r\n");
    assert_eq!(list(&u)[0].expires, 3600);
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    assert_eq!(
        read("Contact: <sip:a@192.0.2.10>;expires=30\r\n").unwrap_err(),
        Refusal::IntervalTooBrief(60)
    );
    // Zero is a removal, never too brief.
    let (_, u) = update("Contact: <sip:a@192.0.2.10>;expires=0\r\n");
    assert_eq!(list(&u)[0].expires, 0);
}

#[test]
fn star_needs_expires_zero_and_no_other_contact() {
    let (_, u) = update("Expires: 0\r\nContact: *\r\n");
    assert_eq!(u.contacts, Contacts::RemoveAll);
    assert!(matches!(
        read("Contact: *\r\n").unwrap_err(),
        Refusal::BadRequest(_)
    ));
    assert!(matches!(
        read("Expires: 0\r\nContact: *, <sip:a@192.0.2.10>\r\n").unwrap_err(),
        Refusal::BadRequest(_)
    ));
}

#[test]
fn q_instance_reg_id_and_other_params_are_kept() {
    let (_, u) = update(
        "Contact: <sip:a@192.0.2.10;transport=udp>;q=0.7;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;video;audio=\"yes\"\r\n",
    );
    let c = &list(&u)[0];
    assert_eq!(c.uri, "sip:a@192.0.2.10;transport=udp");
    assert_eq!(c.q, 700);
    assert_eq!(
        c.instance.as_deref(),
        Some("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"")
    );
    assert_eq!(c.reg_id, Some(1));
    assert_eq!(c.params, ";video;audio=\"yes\"");
}

#[test]
fn path_and_user_agent_are_stored() {
    let (_, u) = update(
        "Path: <sip:edge1.example.com;lr>, <sip:edge2.example.com;lr>\r\nPath: <sip:p3.example.com;lr>\r\nUser-Agent: Phone/1.0\r\nContact: <sip:a@192.0.2.10>\r\n",
    );
    assert_eq!(
        u.path,
        [
            "<sip:edge1.example.com;lr>",
            "<sip:edge2.example.com;lr>",
            "<sip:p3.example.com;lr>"
        ]
    );
    assert_eq!(u.user_agent.as_deref(), Some("Phone/1.0"));
}

#[test]
fn nat_is_detected_from_contact_and_via() {
    // Private contact address, public source.
    let msg = register("Contact: <sip:alice@10.0.0.5:5060>\r\n");
    let mut p = peer();
    p.addr = "198.51.100.7:40000".parse().unwrap();
    assert!(behind_nat(&msg, &p));
    // Same address and port: no NAT.
    let msg = register("Contact: <sip:alice@192.0.2.10:5060>\r\n");
    assert!(!behind_nat(&msg, &peer()));
    // TCP ephemeral source ports are not NAT by themselves.
    let msg = register("Contact: <sip:alice@192.0.2.10:5060;transport=tcp>\r\n");
    let tcp = Peer::new("192.0.2.10:51234".parse().unwrap(), TransportKind::Tcp);
    assert!(
        !behind_nat(&msg, &tcp),
        "TCP from the contact host is not NAT"
    );
}

#[test]
fn foreign_domains_and_bad_to_are_refused() {
    let r = read_register(
        &register("Contact: <sip:a@192.0.2.10>\r\n"),
        &peer(),
        &RegistrarConfig::default(),
        |_| false,
    );
    assert_eq!(r.unwrap_err(), Refusal::ForeignDomain);
    let msg = Message::parse(Bytes::from_static(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    assert!(matches!(
        read_register(&msg, &peer(), &RegistrarConfig::default(), local).unwrap_err(),
        Refusal::BadRequest(_)
    ));
}

#[test]
fn local_aor_is_read_before_and_without_the_contacts() {
    // Authentication comes between the two steps (RFC 3261 §10.3), so a
    // malformed Contact does not stop the AOR from being read.
    let msg = register("Contact: <sip:a@192.0.2.10>;expires=x\r\n");
    let (aor, user_len) = local_address_of_record(&msg, local).unwrap();
    assert_eq!(aor, "alice@example.com");
    assert_eq!(&aor[..user_len], "alice");
    assert!(matches!(
        read_registration(&msg, &peer(), &RegistrarConfig::default(), aor),
        Err(Refusal::BadRequest(_))
    ));
    let msg = Message::parse(Bytes::from_static(
        b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a%40b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    let (aor, user_len) = local_address_of_record(&msg, local).unwrap();
    assert_eq!(
        (&aor[..user_len], &aor[user_len..]),
        ("a@b", "@example.com")
    );
    assert_eq!(
        local_address_of_record(&msg, |_| false).unwrap_err(),
        Refusal::ForeignDomain
    );
}

#[test]
fn a_contact_the_core_left_unread_is_refused_here() {
    // RFC 4475 §3.1.2.13 (regbadct): a URI with headers must be in angle
    // brackets. The core's validation leaves a REGISTER's Contact to the
    // registrar, so this is where the 400 comes from.
    assert!(matches!(
        read("Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n"),
        Err(Refusal::BadRequest("Bad Request - Malformed Contact"))
    ));
}

#[test]
fn jitter_stays_within_bounds() {
    let cfg = RegistrarConfig {
        expires_jitter_percent: 20,
        ..RegistrarConfig::default()
    };
    let mut seen = std::collections::HashSet::new();
    for _ in 0..500 {
        let g = cfg.grant(3600).unwrap();
        assert!((2880..=3600).contains(&g), "{g}");
        seen.insert(g);
    }
    assert!(seen.len() > 10, "grants are spread");
    assert_eq!(cfg.grant(60).unwrap(), 60);
}
