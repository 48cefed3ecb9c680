//! Building responses to received requests (RFC 3261 §8.2.6): Via, From, To (with a tag
//! added when absent), Call-ID and CSeq copied from the request.

use crate::message::Message;
use crate::writer::{Writer, WriterFull};

/// What to put into a response besides the copied headers.
#[derive(Debug, Clone, Copy)]
pub struct ResponseSpec<'a> {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a [u8],
    /// To-tag to add when the request's To has none.
    pub to_tag: &'a [u8],
    /// Copy the request's Record-Route lines (dialog-creating responses).
    pub copy_record_route: bool,
    /// Contact URI to add, if any.
    pub contact: Option<&'a [u8]>,
}

/// Writes a complete response to `req` into `w`.
pub fn write_response(
    w: &mut Writer<'_>,
    req: &Message<'_>,
    spec: &ResponseSpec<'_>,
) -> Result<(), WriterFull> {
    write_response_with_tail(w, req, spec, b"Content-Length: 0\r\n\r\n")
}

/// Writes a response to `req` into `w` whose last header lines, blank line and body are
/// `tail` (see [`crate::template::sdp_tail`]).
pub fn write_response_with_tail(
    w: &mut Writer<'_>,
    req: &Message<'_>,
    spec: &ResponseSpec<'_>,
    tail: &[u8],
) -> Result<(), WriterFull> {
    w.put(b"SIP/2.0 ")?;
    w.put_u64(u64::from(spec.code))?;
    w.put(b" ")?;
    w.put(spec.reason)?;
    w.put(b"\r\n")?;
    for &line in req.via_lines.as_slice() {
        w.put(req.slice(line))?;
    }
    if spec.copy_record_route {
        for &line in req.record_route_lines.as_slice() {
            w.put(req.slice(line))?;
        }
    }
    w.put(b"From: ")?;
    w.put(req.from)?;
    w.put(b"\r\nTo: ")?;
    w.put(req.to)?;
    if req.to_tag.is_empty() && !spec.to_tag.is_empty() {
        w.put(b";tag=")?;
        w.put(spec.to_tag)?;
    }
    w.put(b"\r\nCall-ID: ")?;
    w.put(req.call_id)?;
    w.put(b"\r\nCSeq: ")?;
    w.put_u64(u64::from(req.cseq))?;
    w.put(b" ")?;
    w.put(req.cseq_method)?;
    w.put(b"\r\n")?;
    if let Some(c) = spec.contact {
        w.put(b"Contact: <")?;
        w.put(c)?;
        w.put(b">\r\n")?;
    }
    w.put(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse;

    #[test]
    fn copies_dialog_headers_and_adds_tag() {
        let req = b"INVITE sip:c1@h SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKa\r\nRecord-Route: <sip:p;lr>\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:c1@h>\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(req).unwrap();
        let mut buf = [0u8; 1024];
        let mut w = Writer::new(&mut buf);
        let spec = ResponseSpec {
            code: 200,
            reason: b"OK",
            to_tag: b"t9",
            copy_record_route: true,
            contact: Some(b"sip:c1@127.0.0.1:9"),
        };
        write_response(&mut w, &m, &spec).unwrap();
        let r = parse(w.written()).unwrap();
        assert_eq!(r.status(), Some(200));
        assert_eq!(r.via_lines.len(), 2);
        assert_eq!(r.branch, b"z9hG4bKp");
        assert_eq!(r.to_tag, b"t9");
        assert_eq!(r.cseq, 7);
        assert_eq!(r.cseq_method, b"INVITE");
        assert_eq!(r.record_routes.len(), 1);
        assert_eq!(r.contact_uri, b"sip:c1@127.0.0.1:9");
        assert_eq!(r.call_id, b"cid");
    }

    #[test]
    fn keeps_existing_tag() {
        let req = b"BYE sip:c1@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bKa\r\nFrom: <sip:a@h>;tag=f\r\nTo: <sip:c1@h>;tag=old\r\nCall-ID: cid\r\nCSeq: 2 BYE\r\n\r\n";
        let m = parse(req).unwrap();
        let mut buf = [0u8; 512];
        let mut w = Writer::new(&mut buf);
        let spec = ResponseSpec {
            code: 200,
            reason: b"OK",
            to_tag: b"new",
            copy_record_route: false,
            contact: None,
        };
        write_response(&mut w, &m, &spec).unwrap();
        assert_eq!(parse(w.written()).unwrap().to_tag, b"old");
    }
}
