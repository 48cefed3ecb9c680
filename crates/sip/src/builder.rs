//! Builders for locally generated messages: responses to a received
//! request (RFC 3261 §8.2.6) and new requests (OPTIONS probes, BYE, CANCEL
//! §9.1, ACK for non-2xx §17.1.1.3, load generators). Header values are
//! given as text and written as is.

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use crate::error::ValueError;
use crate::framed::RequestRef;
use crate::header_name::HeaderName;
use crate::lex::{next_top_comma, trim_lws};
use crate::message::Message;
use crate::method::Method;

fn put_header(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_slice(b"\r\n");
}

fn put_u64(out: &mut BytesMut, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put_slice(buf.get(i..).unwrap_or_default());
}

fn put_body(out: &mut BytesMut, body: Option<(&str, &[u8])>) {
    match body {
        Some((ct, b)) => {
            put_header(out, "Content-Type", ct);
            out.put_slice(b"Content-Length: ");
            put_u64(out, b.len() as u64);
            out.put_slice(b"\r\n\r\n");
            out.put_slice(b);
        }
        None => out.put_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// Builds a response to a received request per RFC 3261 §8.2.6: copies
/// every Via (in order), From, To, Call-ID and CSeq (and Timestamp for 100),
/// adds the To tag when asked and none is present.
#[derive(Clone, Debug)]
pub struct ResponseBuilder<'a> {
    req: RequestRef<'a>,
    status: u16,
    reason: &'a str,
    to_tag: Option<&'a str>,
    headers: SmallVec<[(&'a str, &'a str); 4]>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> ResponseBuilder<'a> {
    /// A response with `status` and `reason` to `req`.
    pub fn new(req: impl Into<RequestRef<'a>>, status: u16, reason: &'a str) -> Self {
        ResponseBuilder {
            req: req.into(),
            status,
            reason,
            to_tag: None,
            headers: SmallVec::new(),
            body: None,
        }
    }

    /// Adds `;tag=tag` to To unless the request's To already has a tag.
    pub fn to_tag(mut self, tag: &'a str) -> Self {
        self.to_tag = Some(tag);
        self
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// Appends the response to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        let req = self.req;
        // Room for all of it at once: the copied headers are part of the
        // request, the added ones are known (a 401's two challenges, a
        // registrar's contacts used to outgrow a fixed guess and be copied).
        let added: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        let body = self.body.map_or(0, |(t, b)| t.len() + b.len() + 40);
        let stamp = match req {
            RequestRef::Message(m) if m.received_stamp().is_some() => 64,
            _ => 0,
        };
        out.reserve(64 + self.reason.len() + req.len() + added + body + stamp);
        out.put_slice(b"SIP/2.0 ");
        put_u64(out, u64::from(self.status));
        out.put_slice(b" ");
        out.put_slice(self.reason.as_bytes());
        out.put_slice(b"\r\n");
        let tag = self.to_tag.filter(|_| !req.has_to_tag());
        match req {
            RequestRef::Message(m) => {
                // With a received stamp, the first Via line takes it
                // (RFC 3261 §18.2.1).
                let mut stamp_via = m.received_stamp().is_some();
                for h in &m.frame().headers {
                    if stamp_via && h.name == HeaderName::Via {
                        stamp_via = false;
                        out.put_slice(b"Via: ");
                        m.edit().write_stamped_via_line(h, out);
                        out.put_slice(b"\r\n");
                    } else {
                        self.copy_header(out, h.name, m.entry_value(h).as_bytes(), tag);
                    }
                }
            }
            RequestRef::Framed(f) => {
                for (name, value) in f.header_values() {
                    self.copy_header(out, name, value, tag);
                }
            }
        }
        for (n, v) in &self.headers {
            put_header(out, n, v);
        }
        put_body(out, self.body);
    }

    /// Copies one header of the request, if a response carries it back
    /// (RFC 3261 §8.2.6.2); `tag` is added to the To value.
    fn copy_header(&self, out: &mut BytesMut, name: HeaderName, value: &[u8], tag: Option<&str>) {
        match name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {}
            HeaderName::Timestamp if self.status == 100 => {}
            HeaderName::To => {
                out.put_slice(b"To: ");
                out.put_slice(value);
                if let Some(tag) = tag {
                    out.put_slice(b";tag=");
                    out.put_slice(tag.as_bytes());
                }
                out.put_slice(b"\r\n");
                return;
            }
            _ => return,
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }

    /// The response as new `Bytes`.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out.freeze()
    }
}

/// Builds a new request. Required: Via, From, To, Call-ID and CSeq number;
/// Max-Forwards defaults to 70; CSeq's method is the request's.
#[derive(Clone, Debug)]
pub struct RequestBuilder<'a> {
    method: Method,
    uri: &'a str,
    vias: SmallVec<[&'a str; 2]>,
    max_forwards: u8,
    from: Option<&'a str>,
    to: Option<&'a str>,
    call_id: Option<&'a str>,
    cseq: u32,
    routes: SmallVec<[&'a str; 2]>,
    contact: Option<&'a str>,
    headers: SmallVec<[(&'a str, &'a str); 4]>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> RequestBuilder<'a> {
    /// A request for `method` to `uri`.
    pub fn new(method: Method, uri: &'a str) -> Self {
        RequestBuilder {
            method,
            uri,
            vias: SmallVec::new(),
            max_forwards: 70,
            from: None,
            to: None,
            call_id: None,
            cseq: 1,
            routes: SmallVec::new(),
            contact: None,
            headers: SmallVec::new(),
            body: None,
        }
    }

    /// Adds a Via value (the first added is the top one).
    pub fn via(mut self, value: &'a str) -> Self {
        self.vias.push(value);
        self
    }
    /// Sets Max-Forwards (default 70).
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }
    /// Sets From (e.g. `<sip:alice@example.com>;tag=1234`).
    pub fn from(mut self, value: &'a str) -> Self {
        self.from = Some(value);
        self
    }
    /// Sets To.
    pub fn to(mut self, value: &'a str) -> Self {
        self.to = Some(value);
        self
    }
    /// Sets Call-ID.
    pub fn call_id(mut self, value: &'a str) -> Self {
        self.call_id = Some(value);
        self
    }
    /// Sets the CSeq number (default 1).
    pub fn cseq(mut self, seq: u32) -> Self {
        self.cseq = seq;
        self
    }
    /// Adds a Route value.
    pub fn route(mut self, value: &'a str) -> Self {
        self.routes.push(value);
        self
    }
    /// Sets Contact.
    pub fn contact(mut self, value: &'a str) -> Self {
        self.contact = Some(value);
        self
    }
    /// Adds any header field.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// A CANCEL for `invite` (RFC 3261 §9.1): same Request-URI, Call-ID,
    /// To, From, CSeq number and top Via; Route copied.
    pub fn cancel(invite: &'a Message) -> Result<Self, ValueError> {
        Self::same_transaction(Method::Cancel, invite, invite.header(HeaderName::To))
    }

    /// The ACK for a non-2xx final `response` to `invite` (RFC 3261
    /// §17.1.1.3): To from the response (with its tag), the rest from the
    /// INVITE, CSeq method ACK.
    pub fn ack_for_non_2xx(invite: &'a Message, response: &'a Message) -> Result<Self, ValueError> {
        Self::same_transaction(Method::Ack, invite, response.header(HeaderName::To))
    }

    fn same_transaction(
        method: Method,
        invite: &'a Message,
        to: Option<&'a str>,
    ) -> Result<Self, ValueError> {
        let uri = invite.request_uri_str().ok_or(ValueError::WrongKind)?;
        let via_line = invite
            .header(HeaderName::Via)
            .ok_or(ValueError::Missing(HeaderName::Via))?;
        let top_via = trim_lws(
            via_line
                .get(..next_top_comma(via_line.as_bytes(), 0))
                .unwrap_or_default(),
        );
        let cseq = invite.cseq()?;
        let mut b = RequestBuilder::new(method, uri)
            .via(top_via)
            .from(
                invite
                    .header(HeaderName::From)
                    .ok_or(ValueError::Missing(HeaderName::From))?,
            )
            .to(to.ok_or(ValueError::Missing(HeaderName::To))?)
            .call_id(invite.call_id()?)
            .cseq(cseq.seq);
        if let Ok(mf) = invite.max_forwards() {
            b = b.max_forwards(mf.max(70));
        }
        for r in invite.header_lines(HeaderName::Route) {
            b = b.route(r);
        }
        Ok(b)
    }

    /// Appends the request to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(320 + self.body.map_or(0, |(_, b)| b.len()));
        out.put_slice(self.method.as_str().as_bytes());
        out.put_slice(b" ");
        out.put_slice(self.uri.as_bytes());
        out.put_slice(b" SIP/2.0\r\n");
        for v in &self.vias {
            put_header(out, "Via", v);
        }
        out.put_slice(b"Max-Forwards: ");
        put_u64(out, u64::from(self.max_forwards));
        out.put_slice(b"\r\n");
        for r in &self.routes {
            put_header(out, "Route", r);
        }
        if let Some(f) = self.from {
            put_header(out, "From", f);
        }
        if let Some(t) = self.to {
            put_header(out, "To", t);
        }
        if let Some(c) = self.call_id {
            put_header(out, "Call-ID", c);
        }
        out.put_slice(b"CSeq: ");
        put_u64(out, u64::from(self.cseq));
        out.put_slice(b" ");
        out.put_slice(self.method.as_str().as_bytes());
        out.put_slice(b"\r\n");
        if let Some(c) = self.contact {
            put_header(out, "Contact", c);
        }
        for (n, v) in &self.headers {
            put_header(out, n, v);
        }
        put_body(out, self.body);
    }

    /// The request as new `Bytes`.
    pub fn build(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKa;received=192.0.2.99, SIP/2.0/TCP p1;branch=z9hG4bKb\r\n\
v: SIP/2.0/UDP p0;branch=z9hG4bKc\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1;lr>\r\n\
f: Alice <sip:a@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: b-1\r\n\
CSeq: 7 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(b: Bytes) -> Message {
        Message::parse(b).unwrap()
    }

    #[test]
    fn response_copies_per_8_2_6() {
        let req = parse(Bytes::from_static(INVITE));
        let r = parse(
            ResponseBuilder::new(&req, 486, "Busy Here")
                .to_tag("xyz")
                .header("Retry-After", "60")
                .build(),
        );
        assert_eq!((r.status(), r.reason()), (Some(486), Some("Busy Here")));
        let vias: Vec<_> = r.vias().map(|v| v.unwrap().branch.unwrap()).collect();
        assert_eq!(vias, ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);
        assert_eq!(r.top_via().unwrap().received, Some("192.0.2.99"));
        assert_eq!(r.from_tag(), Some("1"));
        assert_eq!(r.to_tag(), Some("xyz"));
        assert_eq!(r.call_id(), Ok("b-1"));
        assert_eq!(r.cseq().unwrap().seq, 7);
        assert_eq!(r.header(HeaderName::Timestamp), None);
        assert_eq!(r.retry_after().unwrap().seconds, 60);
        assert!(!r.has(HeaderName::Route));
        let trying = parse(ResponseBuilder::new(&req, 100, "Trying").build());
        assert_eq!(trying.header(HeaderName::Timestamp), Some("54"));
        assert_eq!(trying.to_tag(), None);
        let ok = parse(
            ResponseBuilder::new(&req, 200, "OK")
                .to_tag("t")
                .body("application/sdp", b"v=0\r\n")
                .build(),
        );
        assert_eq!(ok.body(), b"v=0\r\n");
        assert_eq!(ok.content_type().unwrap().subtype, "sdp");
        // An existing To tag is kept, not doubled.
        let tagged = parse(ResponseBuilder::new(&ok, 200, "OK").to_tag("other").build());
        assert_eq!(tagged.to_tag(), Some("t"));
    }

    #[test]
    fn request_builder() {
        let r = parse(
            RequestBuilder::new(Method::Options, "sip:probe@192.0.2.1")
                .via("SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKprobe")
                .from("<sip:edge@192.0.2.2>;tag=p1")
                .to("<sip:probe@192.0.2.1>")
                .call_id("probe-1")
                .cseq(42)
                .max_forwards(1)
                .contact("<sip:edge@192.0.2.2>")
                .header("User-Agent", "voxline")
                .build(),
        );
        assert_eq!(r.method(), Some(Method::Options));
        assert_eq!(
            r.cseq().unwrap(),
            crate::values::CSeq {
                seq: 42,
                method: Method::Options
            }
        );
        assert_eq!(r.max_forwards(), Ok(1));
        assert_eq!(r.top_via().unwrap().branch, Some("z9hG4bKprobe"));
        assert_eq!(r.header(HeaderName::UserAgent), Some("voxline"));
        assert_eq!(r.content_length(), Ok(0));
        assert_eq!(
            crate::validate::validate_request(&r, &crate::validate::ValidationPolicy::default()),
            Ok(())
        );
    }

    #[test]
    fn cancel_and_ack() {
        let invite = parse(Bytes::from_static(INVITE));
        let c = parse(RequestBuilder::cancel(&invite).unwrap().build());
        assert_eq!(c.method(), Some(Method::Cancel));
        assert_eq!(c.request_uri_str(), invite.request_uri_str());
        assert_eq!(
            c.cseq().unwrap(),
            crate::values::CSeq {
                seq: 7,
                method: Method::Cancel
            }
        );
        assert_eq!(c.vias().count(), 1);
        assert_eq!(c.top_via().unwrap().branch, Some("z9hG4bKa"));
        assert_eq!(c.routes().count(), 1);
        assert_eq!(c.call_id(), Ok("b-1"));
        let resp = parse(
            ResponseBuilder::new(&invite, 404, "Not Found")
                .to_tag("nf")
                .build(),
        );
        let a = parse(
            RequestBuilder::ack_for_non_2xx(&invite, &resp)
                .unwrap()
                .build(),
        );
        assert_eq!(a.method(), Some(Method::Ack));
        assert_eq!(
            a.cseq().unwrap(),
            crate::values::CSeq {
                seq: 7,
                method: Method::Ack
            }
        );
        assert_eq!(a.to_tag(), Some("nf"));
        assert_eq!(a.from_tag(), Some("1"));
        assert_eq!(a.top_via().unwrap().branch, Some("z9hG4bKa"));
        let response = parse(Bytes::from_static(b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n"));
        assert!(RequestBuilder::cancel(&response).is_err());
    }
}
