//! [`SipMessage`] for the project's codec, [`voxline_sip::Message`].

use voxline_sip::{HeaderName, Message, RequestBuilder, ResponseBuilder, reason_phrase};

use crate::message::{CSeq, MessageError, MessageInfo, SipMessage, StartLine, TopVia};

impl SipMessage for Message {
    type Wire = bytes::Bytes;

    fn to_wire(&self) -> bytes::Bytes {
        self.to_bytes()
    }

    fn from_wire(wire: &bytes::Bytes) -> Option<Self> {
        Message::parse(wire.clone()).ok()
    }

    fn info(&self) -> Result<MessageInfo<'_>, MessageError> {
        let start = if let Some(method) = self.method_str() {
            StartLine::Request {
                method,
                uri: self
                    .request_uri_str()
                    .ok_or(MessageError::MalformedStartLine)?,
            }
        } else {
            StartLine::Response {
                status: self.status().ok_or(MessageError::MalformedStartLine)?,
            }
        };
        if !self.has(HeaderName::Via) {
            return Err(MessageError::MissingHeader("Via"));
        }
        let via = self
            .top_via()
            .map_err(|_| MessageError::MalformedHeader("Via"))?;
        let sent_by = sent_by(via.host_str, via.port, self)?;
        let cseq = self.cseq().map_err(|_| {
            if self.has(HeaderName::CSeq) {
                MessageError::MalformedHeader("CSeq")
            } else {
                MessageError::MissingHeader("CSeq")
            }
        })?;
        let call_id = self
            .call_id()
            .map_err(|_| MessageError::MissingHeader("Call-ID"))?;
        let cseq_method = cseq_method_str(self).ok_or(MessageError::MalformedHeader("CSeq"))?;
        if let StartLine::Request { method, .. } = start
            && method != cseq_method
        {
            return Err(MessageError::CSeqMethodMismatch);
        }
        Ok(MessageInfo {
            start,
            via: TopVia {
                branch: via.branch,
                sent_by,
                transport: via.transport,
            },
            cseq: CSeq {
                number: cseq.seq,
                method: cseq_method,
            },
            call_id,
            from_tag: self.from_tag(),
            to_tag: self.to_tag(),
        })
    }

    fn build_ack_for(&self, response: &Self) -> Self {
        RequestBuilder::ack_for_non_2xx(self, response)
            .ok()
            .and_then(|b| Message::parse(b.build()).ok())
            // Only reachable for an INVITE whose own headers are broken,
            // which the table never sends; resending it is the least harm.
            .unwrap_or_else(|| self.clone())
    }

    fn build_response(&self, status: u16) -> Self {
        let bytes = ResponseBuilder::new(self, status, reason_phrase(status)).build();
        Message::parse(bytes).unwrap_or_else(|_| self.clone())
    }

    fn build_cancel(&self) -> Self {
        RequestBuilder::cancel(self)
            .ok()
            .and_then(|b| Message::parse(b.build()).ok())
            .unwrap_or_else(|| self.clone())
    }
}

/// The sent-by of the top Via as written (`host` or `host:port`), a slice
/// of the message.
fn sent_by<'a>(
    host: &'a str,
    port: Option<u16>,
    msg: &'a Message,
) -> Result<&'a str, MessageError> {
    let Some(port) = port else {
        return Ok(host);
    };
    // The Via text holds `host:port` contiguously after the host (with
    // optional LWS around the colon, which we keep verbatim).
    let line = msg
        .header(HeaderName::Via)
        .ok_or(MessageError::MissingHeader("Via"))?;
    let start = offset_in(line, host).ok_or(MessageError::MalformedHeader("Via"))?;
    let rest = &line[start + host.len()..];
    let digits = port.to_string();
    let end = rest
        .find(digits.as_str())
        .map(|i| start + host.len() + i + digits.len())
        .ok_or(MessageError::MalformedHeader("Via"))?;
    line.get(start..end)
        .ok_or(MessageError::MalformedHeader("Via"))
}

/// Byte offset of `part` inside `whole` when `part` is a subslice of it.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let w = whole.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    (p >= w && p + part.len() <= w + whole.len()).then(|| p - w)
}

/// The CSeq method token as written.
fn cseq_method_str(msg: &Message) -> Option<&str> {
    let v = msg.header(HeaderName::CSeq)?;
    v.split_ascii_whitespace().nth(1)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK776asdhds\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKold\r\n\
Max-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33\r\nCSeq: 314159 INVITE\r\n\
Route: <sip:p1.example.com;lr>\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn info_of_a_request() {
        let m = msg(INVITE);
        let info = m.info().unwrap();
        assert_eq!(
            info.start,
            StartLine::Request {
                method: "INVITE",
                uri: "sip:bob@example.com"
            }
        );
        assert_eq!(info.via.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(info.via.sent_by, "pc33.example.com:5070");
        assert_eq!(info.via.transport, "UDP");
        assert_eq!(
            info.cseq,
            CSeq {
                number: 314159,
                method: "INVITE"
            }
        );
        assert_eq!(info.call_id, "a84b4c76e66710@pc33");
        assert_eq!(info.from_tag, Some("1928301774"));
        assert_eq!(info.to_tag, None);
    }

    #[test]
    fn info_rejects_cseq_method_mismatch_and_missing_via() {
        let bad = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        assert_eq!(msg(&bad).info(), Err(MessageError::CSeqMethodMismatch));
        let novia = INVITE
            .replace(
                "Via: SIP/2.0/UDP pc33.example.com:5070;branch=z9hG4bK776asdhds\r\n",
                "",
            )
            .replace(
                "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKold\r\n",
                "",
            );
        assert_eq!(msg(&novia).info(), Err(MessageError::MissingHeader("Via")));
    }

    #[test]
    fn builders_follow_the_rfc() {
        let invite = msg(INVITE);
        let trying = invite.build_response(100);
        assert_eq!(trying.status(), Some(100));
        assert_eq!(trying.reason(), Some("Trying"));
        assert_eq!(trying.vias().count(), 2);
        assert_eq!(trying.to_tag(), None);

        let busy = msg(&INVITE
            .replace(
                "INVITE sip:bob@example.com SIP/2.0",
                "SIP/2.0 486 Busy Here",
            )
            .replace(
                "To: Bob <sip:bob@example.com>",
                "To: Bob <sip:bob@example.com>;tag=xyz",
            ));
        let ack = invite.build_ack_for(&busy);
        let info = ack.info().unwrap();
        assert_eq!(info.method(), Some("ACK"));
        assert_eq!(info.cseq.number, 314159);
        assert_eq!(info.via.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.to_tag(), Some("xyz"));
        assert_eq!(ack.routes().count(), 1);

        let cancel = invite.build_cancel();
        let info = cancel.info().unwrap();
        assert_eq!(info.method(), Some("CANCEL"));
        assert_eq!(info.via.branch, Some("z9hG4bK776asdhds"));
        assert_eq!(cancel.to_tag(), None);
    }
}
