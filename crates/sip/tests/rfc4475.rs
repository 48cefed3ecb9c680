//! RFC 4475 torture messages, byte-exact from `testdata/rfc4475/`: every
//! file is a test. Valid messages parse with the values the RFC describes;
//! invalid ones are rejected by framing or by validation with the response
//! the RFC names.

#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;

use bytes::Bytes;
use voxline_sip::{
    Contact, HeaderName, Host, Message, Method, ParseError, Role, ValidationPolicy,
    check_max_forwards, error_response, validate_request, validate_response,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475")
}

fn raw(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(format!("{name}.dat"))).unwrap()
}

fn parse(name: &str) -> Message {
    Message::parse(Bytes::from(raw(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn uas() -> ValidationPolicy<'static> {
    ValidationPolicy::default()
}

/// Parses and validates as a UAS; returns (status, reason) of the rejection.
fn rejected(name: &str, policy: &ValidationPolicy<'_>) -> (u16, &'static str) {
    let m = parse(name);
    let r = validate_request(&m, policy).expect_err(name);
    // The rejection can always be turned into a response that frames.
    let resp = Message::parse(r.response(&m, Some("totag"))).unwrap();
    assert_eq!(resp.status(), Some(r.status));
    assert_eq!(resp.call_id(), m.call_id());
    (r.status, r.reason)
}

fn accepted(name: &str) -> Message {
    let m = parse(name);
    assert_eq!(validate_request(&m, &uas()), Ok(()), "{name}");
    m
}

/// Framing fails with `err`, and a 400 naming it can still be sent.
fn unframable(name: &str, err: ParseError, reason: &str) {
    let data = raw(name);
    assert_eq!(
        Message::parse(Bytes::from(data.clone())),
        Err(err.clone()),
        "{name}"
    );
    let resp = Message::parse(error_response(&data, &err, Some("t")).unwrap()).unwrap();
    assert_eq!(resp.status(), Some(400));
    assert_eq!(resp.reason(), Some(reason));
    assert_eq!(resp.to_tag(), Some("t"));
}

const ALL: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badinv01",
    "clerr",
    "scalar02",
    "ncl",
    "scalarlg",
    "quotbal",
    "ltgtruri",
    "lwsruri",
    "lwsstart",
    "trws",
    "escruri",
    "baddate",
    "regbadct",
    "badaspec",
    "baddn",
    "badvers",
    "mismatch01",
    "mismatch02",
    "bigcode",
    "badbranch",
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "mcl01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

#[test]
fn every_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_owned))
        .collect();
    files.sort();
    let mut all: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    all.sort();
    assert_eq!(files, all);
    assert_eq!(files.len(), 49);
}

// ---- 3.1.1 valid messages ----

#[test]
fn s3_1_1_1_wsinv() {
    let m = accepted("wsinv");
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(
        m.request_uri().unwrap().as_str(),
        "sip:vivekg@chair-dnrc.example.com;unknownparam"
    );
    assert_eq!(m.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (9, Method::Invite));
    assert_eq!(m.max_forwards(), Ok(68));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].transport, vias[0].host, vias[0].branch),
        (
            "UDP",
            Host::Ipv4(Ipv4Addr::new(192, 0, 2, 2)),
            Some("390skdjuw")
        )
    );
    assert_eq!(
        (vias[1].transport, vias[1].host, vias[1].branch),
        (
            "TCP",
            Host::Domain("spindle.example.com"),
            Some("z9hG4bK9ikj8")
        )
    );
    assert_eq!(
        (vias[2].transport, vias[2].host, vias[2].branch),
        (
            "UDP",
            Host::Ipv4(Ipv4Addr::new(192, 168, 255, 111)),
            Some("z9hG4bK30239")
        )
    );
    let to = m.to().unwrap();
    assert_eq!(to.uri.as_str(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = m.from().unwrap();
    assert_eq!(from.display_name_decoded().unwrap(), "J Rosenberg \\\"");
    assert_eq!(from.tag(), Some("98asjd8"));
    let Contact::Address(c) = m.contacts().next().unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(c.display_name_decoded().unwrap(), "Quoted string \"\"");
    assert_eq!(c.params.get("newparam"), Some("newvalue"));
    assert!(c.params.contains("secondparam"));
    assert_eq!(c.q(), Some(Ok(330)));
    assert_eq!(m.header(HeaderName::Subject), Some(""));
    assert_eq!(
        m.header_by_name("NewFangledHeader"),
        Some("newfangled value\r\n continued newfangled value")
    );
    assert_eq!(
        m.header_by_name("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let route = m.routes().next().unwrap().unwrap();
    assert!(route.uri.as_sip().unwrap().lr());
    assert_eq!(m.content_length(), Ok(150));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn s3_1_1_2_intmeth() {
    let m = accepted("intmeth");
    let method = m.method().unwrap();
    assert_eq!(
        method,
        Method::Extension("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    assert_eq!(m.cseq().unwrap().method, method);
    let ruri = m.request_uri().unwrap();
    let u = ruri.as_sip().unwrap();
    assert_eq!(
        u.user,
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, Host::Domain("example.com"));
    let to = m.to().unwrap();
    assert_eq!(
        to.display_name_decoded().unwrap(),
        "BEL:\x07 NUL:\0 DEL:\x7f"
    );
    let from = m.from().unwrap();
    assert_eq!(from.display_name, Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(
        from.params.get("fromParam''~+*_!.-%"),
        Some(
            "\"\u{0440}\u{0430}\u{0431}\u{043e}\u{0442}\u{0430}\u{044e}\u{0449}\u{0438}\u{0439}\""
        )
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK-.!%66*_+`'~"));
    assert_eq!(m.max_forwards(), Ok(255));
    assert_eq!(
        m.header_by_name("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
}

#[test]
fn s3_1_1_3_esc01() {
    let m = accepted("esc01");
    let ruri = m.request_uri().unwrap();
    assert_eq!(
        ruri.as_sip().unwrap().user_decoded().unwrap(),
        "sips:user@example.com"
    );
    assert_eq!(ruri.as_sip().unwrap().host, Host::Domain("example.net"));
    assert_eq!(
        m.to()
            .unwrap()
            .uri
            .as_sip()
            .unwrap()
            .user_decoded()
            .unwrap(),
        "user"
    );
    assert_eq!(
        m.from()
            .unwrap()
            .uri
            .as_sip()
            .unwrap()
            .user_decoded()
            .unwrap(),
        "I have spaces"
    );
    let Contact::Address(c) = m.contacts().next().unwrap().unwrap() else {
        panic!()
    };
    let u = *c.uri.as_sip().unwrap();
    assert_eq!(u.user_decoded().unwrap(), "caller");
    let params: Vec<_> = u.params_decoded().collect();
    assert_eq!(params[0], ("lr".into(), None));
    assert_eq!(params[1], ("name".into(), Some("value%41".into())));
    assert_eq!(m.header(HeaderName::ContentType), Some("application/sdp"));
}

#[test]
fn s3_1_1_4_escnull() {
    let m = accepted("escnull");
    let to = m.to().unwrap();
    assert_eq!(
        voxline_sip::percent_decode_bytes(to.uri.as_sip().unwrap().user.unwrap()).as_ref(),
        b"null-\0-null"
    );
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| {
            let c = c.unwrap();
            let u = c.address().unwrap().uri;
            voxline_sip::percent_decode_bytes(u.as_sip().unwrap().user.unwrap()).into_owned()
        })
        .collect();
    assert_eq!(users, vec![b"\0".to_vec(), b"\0\0".to_vec()]);
}

#[test]
fn s3_1_1_5_esc02() {
    let m = accepted("esc02");
    assert_eq!(m.method(), Some(Method::Extension("RE%47IST%45R".into())));
    assert_eq!(m.cseq().unwrap().method.as_str(), "RE%47IST%45R");
    assert_eq!(m.to().unwrap().display_name_decoded().unwrap(), "%Z%45");
    assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK209%fzsnel234"));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(
        m.header_by_name("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
}

#[test]
fn s3_1_1_6_lwsdisp() {
    let m = accepted("lwsdisp");
    assert_eq!(m.from().unwrap().display_name, Some("caller"));
    assert_eq!(m.from_tag(), Some("323"));
}

#[test]
fn s3_1_1_7_longreq() {
    let m = accepted("longreq");
    let to = m.to().unwrap();
    assert_eq!(to.display_name_decoded().unwrap().len(), 103);
    let u = *to.uri.as_sip().unwrap();
    assert_eq!(u.port, Some(6000));
    assert_eq!(u.params.iter().count(), 3);
    assert!(u.params.contains("verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"));
    let from = m.from().unwrap();
    assert_eq!(from.tag().unwrap().len(), 155);
    assert_eq!(from.uri.as_sip().unwrap().user.unwrap().len(), 115);
    assert_eq!(m.call_id().unwrap().len(), 141);
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Domain("sip33.example.com"));
    assert_eq!(vias[33].received, Some("192.0.2.5"));
    assert_eq!(vias[33].branch.unwrap().len(), 215);
    assert_eq!(m.body().len(), 150);
}

#[test]
fn s3_1_1_8_dblreq() {
    let m = accepted("dblreq");
    assert_eq!(m.method(), Some(Method::Register));
    assert_eq!(m.call_id(), Ok("dblreq.0ha0isndaksdj99sdfafnl3lk233412"));
    assert!(m.body().is_empty());
    assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
    // Over a stream the same bytes are two messages.
    let mut f = voxline_sip::StreamFramer::new(voxline_sip::Limits::default());
    f.push(&raw("dblreq"));
    let mut methods = Vec::new();
    // (The INVITE's body is longer than its Content-Length, so the stream
    // ends in garbage that is a framing error; both messages come first.)
    while let Ok(Some(ev)) = f.next_event() {
        if let voxline_sip::StreamEvent::Message(m) = ev {
            methods.push(m.method().unwrap());
        }
    }
    assert_eq!(methods, [Method::Register, Method::Invite]);
}

#[test]
fn s3_1_1_9_semiuri() {
    let m = accepted("semiuri");
    let ruri = m.request_uri().unwrap();
    let u = ruri.as_sip().unwrap();
    assert_eq!(u.user, Some("user;par=u%40example.net"));
    assert_eq!(u.host, Host::Domain("example.com"));
    assert!(u.params.is_empty());
    assert_eq!(m.accept().count(), 6);
}

#[test]
fn s3_1_1_10_transports() {
    let m = accepted("transports");
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        m.vias().nth(3).unwrap().unwrap().transport_kind(),
        voxline_sip::Transport::Other
    );
}

#[test]
fn s3_1_1_11_mpart01() {
    let m = accepted("mpart01");
    let ct = m.content_type().unwrap();
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params.get("boundary"), Some("7a9cbec02ceef655"));
    assert_eq!(m.body().len(), 553);
    assert_eq!(m.top_via().unwrap().rport, Some(None));
}

#[test]
fn s3_1_1_12_unreason() {
    let m = parse("unreason");
    assert_eq!(validate_response(&m), Ok(()));
    assert_eq!(m.status(), Some(200));
    assert_eq!(
        m.reason(),
        Some(
            "= 2**3 * 5**2 \u{043d}\u{043e} \u{0441}\u{0442}\u{043e} \u{0434}\u{0435}\u{0432}\u{044f}\u{043d}\u{043e}\u{0441}\u{0442}\u{043e} \u{0434}\u{0435}\u{0432}\u{044f}\u{0442}\u{044c} - \u{043f}\u{0440}\u{043e}\u{0441}\u{0442}\u{043e}\u{0435}"
        )
    );
}

#[test]
fn s3_1_1_13_noreason() {
    let m = parse("noreason");
    assert_eq!(validate_response(&m), Ok(()));
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
}

// ---- 3.1.2 invalid messages ----

#[test]
fn s3_1_2_1_badinv01() {
    assert_eq!(
        rejected("badinv01", &uas()),
        (400, "Bad Request - Malformed Via")
    );
}

#[test]
fn s3_1_2_2_clerr() {
    unframable(
        "clerr",
        ParseError::BodyTruncated {
            declared: 9999,
            available: 154,
        },
        "Bad Request - Content-Length Exceeds Message",
    );
    // On a stream it is simply incomplete.
    let mut f = voxline_sip::StreamFramer::new(voxline_sip::Limits::default());
    f.push(&raw("clerr"));
    assert_eq!(f.next_event(), Ok(None));
}

#[test]
fn s3_1_2_3_ncl() {
    unframable(
        "ncl",
        ParseError::InvalidContentLength,
        "Bad Request - Malformed Content-Length",
    );
}

#[test]
fn s3_1_2_4_scalar02() {
    assert_eq!(
        rejected("scalar02", &uas()),
        (400, "Bad Request - Malformed CSeq")
    );
}

#[test]
fn s3_1_2_5_scalarlg() {
    let m = parse("scalarlg");
    assert!(validate_response(&m).is_err());
    assert!(m.retry_after().is_err());
}

#[test]
fn s3_1_2_6_quotbal() {
    assert_eq!(
        rejected("quotbal", &uas()),
        (400, "Bad Request - Malformed To")
    );
}

#[test]
fn s3_1_2_7_ltgtruri() {
    assert_eq!(
        rejected("ltgtruri", &uas()),
        (400, "Bad Request - Malformed Request-URI")
    );
}

#[test]
fn s3_1_2_8_lwsruri() {
    assert_eq!(
        rejected("lwsruri", &uas()),
        (400, "Bad Request - Malformed Request-URI")
    );
}

#[test]
fn s3_1_2_9_lwsstart() {
    assert_eq!(
        rejected("lwsstart", &uas()),
        (400, "Bad Request - Malformed Request-URI")
    );
}

#[test]
fn s3_1_2_10_trws() {
    assert_eq!(
        rejected("trws", &uas()),
        (400, "Bad Request - Malformed Request-Line")
    );
}

#[test]
fn s3_1_2_11_escruri() {
    assert_eq!(
        rejected("escruri", &uas()),
        (400, "Bad Request - Headers in Request-URI")
    );
}

#[test]
fn s3_1_2_12_baddate() {
    assert_eq!(
        rejected("baddate", &uas()),
        (400, "Bad Request - Malformed Date")
    );
}

#[test]
fn s3_1_2_13_regbadct() {
    assert_eq!(
        rejected("regbadct", &uas()),
        (400, "Bad Request - Malformed Contact")
    );
    // A proxy leaves a REGISTER's Contact to the registrar (which answers
    // the 400 after authentication, crates/registrar) and does not read it.
    let proxy = ValidationPolicy {
        role: Role::Proxy,
        ..ValidationPolicy::default()
    };
    let m = parse("regbadct");
    assert_eq!(validate_request(&m, &proxy), Ok(()));
    assert!(m.contacts().any(|c| c.is_err()));
    // Any other method's Contact is still checked by a proxy.
    let text = String::from_utf8(raw("regbadct"))
        .unwrap()
        .replace("REGISTER", "OPTIONS");
    let m = Message::parse(Bytes::from(text)).unwrap();
    assert_eq!(
        validate_request(&m, &proxy).map_err(|r| (r.status, r.reason)),
        Err((400, "Bad Request - Malformed Contact"))
    );
}

#[test]
fn s3_1_2_14_badaspec() {
    assert_eq!(
        rejected("badaspec", &uas()),
        (400, "Bad Request - Malformed To")
    );
    // As a REGISTER, a proxy leaves the To to the registrar (which reads
    // the address-of-record from it and answers the 400, crates/registrar).
    let text = String::from_utf8(raw("badaspec"))
        .unwrap()
        .replace("OPTIONS", "REGISTER");
    let m = Message::parse(Bytes::from(text)).unwrap();
    let proxy = ValidationPolicy {
        role: Role::Proxy,
        ..ValidationPolicy::default()
    };
    assert_eq!(validate_request(&m, &proxy), Ok(()));
    assert!(m.to().is_err());
    assert_eq!(
        validate_request(&m, &uas()).map_err(|r| (r.status, r.reason)),
        Err((400, "Bad Request - Malformed To"))
    );
}

#[test]
fn s3_1_2_15_baddn() {
    assert_eq!(
        rejected("baddn", &uas()),
        (400, "Bad Request - Malformed From")
    );
}

#[test]
fn s3_1_2_16_badvers() {
    assert_eq!(rejected("badvers", &uas()), (505, "Version Not Supported"));
}

#[test]
fn s3_1_2_17_mismatch01() {
    assert_eq!(
        rejected("mismatch01", &uas()),
        (400, "Bad Request - CSeq Method Mismatch")
    );
}

#[test]
fn s3_1_2_18_mismatch02() {
    assert_eq!(
        rejected("mismatch02", &uas()),
        (400, "Bad Request - CSeq Method Mismatch")
    );
}

#[test]
fn s3_1_2_19_bigcode() {
    let data = raw("bigcode");
    let err = Message::parse(Bytes::from(data.clone())).unwrap_err();
    assert_eq!(err, ParseError::InvalidStatusCode);
    // A response is dropped, never answered.
    assert_eq!(error_response(&data, &err, None), None);
}

// ---- 3.2 transaction layer ----

#[test]
fn s3_2_1_badbranch() {
    let m = accepted("badbranch");
    let via = m.top_via().unwrap();
    assert_eq!(via.branch, Some("z9hG4bK"));
    assert!(!via.has_rfc3261_branch());
}

// ---- 3.3 application layer ----

#[test]
fn s3_3_1_insuf() {
    assert_eq!(rejected("insuf", &uas()), (400, "Bad Request - Missing To"));
    let m = parse("insuf");
    assert!(!m.has(HeaderName::CallId) && !m.has(HeaderName::From));
}

#[test]
fn s3_3_2_unkscm() {
    assert_eq!(rejected("unkscm", &uas()), (416, "Unsupported URI Scheme"));
    assert_eq!(
        parse("unkscm").request_uri().unwrap().scheme(),
        "nobodyKnowsThisScheme"
    );
}

#[test]
fn s3_3_3_novelsc() {
    assert_eq!(rejected("novelsc", &uas()), (416, "Unsupported URI Scheme"));
    assert_eq!(
        parse("novelsc").request_uri().unwrap().scheme(),
        "soap.beep"
    );
}

#[test]
fn s3_3_4_unksm2() {
    let m = accepted("unksm2");
    assert_eq!(m.to().unwrap().uri.scheme(), "isbn");
    assert_eq!(m.from().unwrap().uri.scheme(), "http");
    assert_eq!(
        m.contacts()
            .next()
            .unwrap()
            .unwrap()
            .address()
            .unwrap()
            .uri
            .scheme(),
        "name"
    );
    let registrar = ValidationPolicy {
        role: Role::Registrar,
        ..uas()
    };
    assert_eq!(
        rejected("unksm2", &registrar),
        (400, "Bad Request - To Must Be a SIP or SIPS URI")
    );
}

#[test]
fn s3_3_5_bext01() {
    let m = parse("bext01");
    let r = validate_request(&m, &uas()).unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(
        r.unsupported,
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    let resp = Message::parse(r.response(&m, Some("x"))).unwrap();
    assert_eq!(
        resp.unsupported().collect::<Vec<_>>(),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    let proxy = ValidationPolicy {
        role: Role::Proxy,
        ..uas()
    };
    let r = validate_request(&m, &proxy).unwrap_err();
    assert_eq!(r.status, 420);
    assert_eq!(
        r.unsupported,
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
}

#[test]
fn s3_3_6_invut() {
    let policy = ValidationPolicy {
        accepted_content_types: Some(&["application/sdp"]),
        ..uas()
    };
    let m = parse("invut");
    let r = validate_request(&m, &policy).unwrap_err();
    assert_eq!(
        (r.status, r.accept.as_deref()),
        (415, Some("application/sdp"))
    );
    let resp = Message::parse(r.response(&m, Some("x"))).unwrap();
    assert_eq!(resp.header(HeaderName::Accept), Some("application/sdp"));
}

#[test]
fn s3_3_7_regaut01() {
    let m = accepted("regaut01");
    let a = m.authorization().next().unwrap().unwrap();
    assert_eq!(a.scheme, "NoOneKnowsThisScheme");
    assert!(!a.is_digest());
    assert_eq!(a.param("opaque-data").unwrap(), "here");
}

#[test]
fn s3_3_8_multi01() {
    assert_eq!(
        rejected("multi01", &uas()),
        (400, "Bad Request - Multiple To")
    );
}

#[test]
fn s3_3_9_mcl01() {
    unframable(
        "mcl01",
        ParseError::ConflictingContentLength,
        "Bad Request - Multiple Content-Length",
    );
}

#[test]
fn s3_3_10_bcast() {
    let m = parse("bcast");
    assert_eq!(validate_response(&m), Ok(()));
    assert_eq!(
        m.vias().nth(1).unwrap().unwrap().host,
        Host::Ipv4(Ipv4Addr::BROADCAST)
    );
}

#[test]
fn s3_3_11_zeromf() {
    let m = accepted("zeromf");
    assert_eq!(m.max_forwards(), Ok(0));
    assert_eq!(check_max_forwards(&m).unwrap_err().status, 483);
}

#[test]
fn s3_3_12_cparam01() {
    let m = accepted("cparam01");
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.address().unwrap();
    assert!(a.params.contains("unknownparam"));
    assert!(a.uri.as_sip().unwrap().params.is_empty());
}

#[test]
fn s3_3_13_cparam02() {
    let m = accepted("cparam02");
    let c = m.contacts().next().unwrap().unwrap();
    let a = c.address().unwrap();
    assert!(a.params.is_empty());
    assert!(a.uri.as_sip().unwrap().params.contains("unknownparam"));
}

#[test]
fn s3_3_14_regescrt() {
    let m = accepted("regescrt");
    let c = m.contacts().next().unwrap().unwrap();
    let u = *c.address().unwrap().uri.as_sip().unwrap();
    let h: Vec<_> = u.headers_decoded().collect();
    assert_eq!(h, vec![("Route".into(), "<sip:sip.example.com>".into())]);
}

#[test]
fn s3_3_15_sdp01() {
    let policy = ValidationPolicy {
        answer_content_type: Some("application/sdp"),
        ..uas()
    };
    assert_eq!(rejected("sdp01", &policy), (406, "Not Acceptable"));
}

// ---- 3.4 backward compatibility ----

#[test]
fn s3_4_1_inv2543() {
    let m = accepted("inv2543");
    assert!(!m.has(HeaderName::MaxForwards));
    assert_eq!(m.top_via().unwrap().branch, None);
    assert_eq!(m.from_tag(), None);
    assert!(m.body().starts_with(b"v=0"));
    assert!(m.body().ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
}
