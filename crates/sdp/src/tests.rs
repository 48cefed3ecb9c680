use super::*;

const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\n\
s=call\r\n\
c=IN IP4 10.0.0.1\r\n\
t=0 0\r\n\
a=X-custom:keep me\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtcp:49171\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=candidate:1 1 UDP 2130706431 10.0.0.1 49170 typ host\r\n\
a=rtcp-mux\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVPF 96\r\n\
c=IN IP4 10.0.0.2\r\n\
a=rtpmap:96 H264/90000\r\n\
a=inactive\r\n";

#[test]
fn reads_media_sections() {
    let sdp = Sdp::parse(OFFER).unwrap();
    assert_eq!(sdp.media_count(), 2);
    let a = sdp.media(0).unwrap();
    assert_eq!(a.kind, "audio");
    assert_eq!(a.port, 49170);
    assert_eq!(a.rtcp_port, Some(49171));
    assert!(a.rtcp_mux && a.ice);
    assert_eq!(a.connection.address, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(a.formats, "0 8 101");
    let v = sdp.media(1).unwrap();
    assert_eq!(v.connection.address, "10.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(v.direction, Direction::Inactive);
    assert_eq!(v.protocol, "RTP/AVPF");
    assert!(!v.ice);
    assert_eq!(sdp.origin().unwrap().version, 2890844526);
}

#[test]
fn untouched_document_is_byte_identical() {
    for body in [
        OFFER,
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 1 RTP/AVP 0",
        "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 0 RTP/AVP 0\r\n\r\n",
    ] {
        let sdp = Sdp::parse(body).unwrap();
        assert_eq!(sdp.render(), body);
    }
}

#[test]
fn rewrites_only_what_is_asked() {
    let mut sdp = Sdp::parse(OFFER).unwrap();
    let relay: IpAddr = "192.0.2.1".parse().unwrap();
    sdp.set_session_connection(relay);
    sdp.set_media_connection(1, relay, false);
    sdp.set_media_port(0, 30000);
    sdp.set_rtcp(0, 30001, relay);
    sdp.set_media_port(1, 30002);
    sdp.set_rtcp(1, 30003, relay);
    for name in ["ice-ufrag", "ice-pwd", "candidate"] {
        sdp.remove_media_attr(0, name);
    }
    sdp.set_origin(Some(relay), true);
    let out = sdp.render();
    let expected = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 192.0.2.1\r\n\
s=call\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
a=X-custom:keep me\r\n\
m=audio 30000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtcp:30001\r\n\
a=rtcp-mux\r\n\
a=sendrecv\r\n\
m=video 30002 RTP/AVPF 96\r\n\
c=IN IP4 192.0.2.1\r\n\
a=rtpmap:96 H264/90000\r\n\
a=inactive\r\n\
a=rtcp:30003\r\n";
    assert_eq!(out, expected);
}

#[test]
fn adds_lines_at_section_end_with_document_eol() {
    let body = "v=0\no=- 1 5 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 4000 RTP/AVP 0\na=sendonly\nm=video 0 RTP/AVP 96\n";
    let mut sdp = Sdp::parse(body).unwrap();
    sdp.add_media_attr(0, "rtcp-mux");
    sdp.set_rtcp(0, 4001, "1.2.3.4".parse().unwrap());
    sdp.set_media_connection(1, "::1".parse().unwrap(), true);
    sdp.remove_media_attr(0, "sendonly");
    let out = sdp.render();
    assert_eq!(
        out,
        "v=0\no=- 1 5 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 4000 RTP/AVP 0\na=rtcp-mux\na=rtcp:4001\nm=video 0 RTP/AVP 96\nc=IN IP6 ::1\n"
    );
}

#[test]
fn last_line_without_eol_gets_one_before_additions() {
    let mut sdp = Sdp::parse("v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP 0").unwrap();
    sdp.add_media_attr(0, "rtcp:6");
    assert_eq!(
        sdp.render(),
        "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP 0\r\na=rtcp:6\r\n"
    );
}

#[test]
fn hold_and_session_level_direction() {
    let sdp =
        Sdp::parse("v=0\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\nm=audio 5 RTP/AVP 0\r\n").unwrap();
    let m = sdp.media(0).unwrap();
    assert!(m.connection.is_unspecified());
    assert_eq!(m.direction, Direction::SendOnly);
}

#[test]
fn malformed_sdp_names_the_problem() {
    let e = |s: &str| Sdp::parse(s).unwrap_err();
    assert_eq!(e(""), SdpError::Empty);
    assert_eq!(e("garbage"), SdpError::NoVersion);
    assert_eq!(e("v=0\r\nxyz\r\n"), SdpError::MalformedLine { line: 2 });
    assert!(matches!(
        e("v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio x RTP/AVP 0\r\n"),
        SdpError::BadMedia { line: 3, .. }
    ));
    assert!(matches!(
        e("v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 70000 RTP/AVP 0\r\n"),
        SdpError::BadMedia { .. }
    ));
    assert!(matches!(
        e("v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5\r\n"),
        SdpError::BadMedia { .. }
    ));
    assert!(matches!(
        e("v=0\r\nc=IN IP4 nothost\r\n"),
        SdpError::BadConnection { line: 2, .. }
    ));
    assert!(matches!(
        e("v=0\r\nc=IN IP6 1.1.1.1\r\n"),
        SdpError::BadConnection { .. }
    ));
    assert_eq!(
        e("v=0\r\no=- 1 x IN IP4 1.1.1.1\r\n"),
        SdpError::BadOrigin { line: 2 }
    );
    assert_eq!(
        e("v=0\r\nm=audio 5 RTP/AVP 0\r\n"),
        SdpError::NoConnection { index: 0 }
    );
    assert!(e("v=0\r\nxyz").to_string().contains("line 2"));
}

proptest::proptest! {
    #[test]
    fn never_panics(s in "\\PC{0,200}") {
        let _ = Sdp::parse(&s).map(|sdp| sdp.render());
    }

    #[test]
    fn unknown_lines_survive_edits(attrs in proptest::collection::vec("[a-zA-Z0-9:;/ =+-]{0,30}", 0..8)) {
        let mut body = String::from("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n");
        for a in &attrs {
            body.push_str("a=x-");
            body.push_str(a);
            body.push_str("\r\n");
        }
        let mut sdp = Sdp::parse(&body).unwrap();
        sdp.set_media_port(0, 30000);
        sdp.set_session_connection("127.0.0.1".parse().unwrap());
        let out = sdp.render();
        let expected = body.replace("m=audio 5000", "m=audio 30000").replace("c=IN IP4 1.1.1.1", "c=IN IP4 127.0.0.1");
        proptest::prop_assert_eq!(out, expected);
    }
}
