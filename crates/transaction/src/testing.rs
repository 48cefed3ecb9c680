//! A minimal [`SipMessage`] for tests, examples and benchmarks: the matching
//! fields only, no wire format. It also shows what an implementation of the
//! trait must do.

use std::sync::Arc;

use crate::message::{CSeq, MessageError, MessageInfo, SipMessage, StartLine, TopVia};

/// The fields of a [`TestMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFields {
    /// Request method, or `None` for a response.
    pub method: Option<String>,
    /// Response status (ignored for requests).
    pub status: u16,
    /// Request-URI.
    pub uri: String,
    /// Top Via branch.
    pub branch: Option<String>,
    /// Top Via sent-by.
    pub sent_by: String,
    /// Top Via transport.
    pub transport: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: String,
    /// Call-ID.
    pub call_id: String,
    /// From tag.
    pub from_tag: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
    /// When set, [`SipMessage::info`] fails as for a message without Via.
    pub broken: bool,
}

/// A reference-counted message made of [`TestFields`]; clones are cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMessage(Arc<TestFields>);

impl TestMessage {
    /// A request with `method` and top Via `branch`, from
    /// `client.example:5060`, Call-ID `call-1`, CSeq 1, From tag `from-1`.
    #[must_use]
    pub fn request(method: &str, branch: &str) -> Self {
        Self(Arc::new(TestFields {
            method: Some(method.to_owned()),
            status: 0,
            uri: "sip:bob@example.com".to_owned(),
            branch: Some(branch.to_owned()),
            sent_by: "client.example:5060".to_owned(),
            transport: "UDP".to_owned(),
            cseq: 1,
            cseq_method: method.to_owned(),
            call_id: "call-1".to_owned(),
            from_tag: Some("from-1".to_owned()),
            to_tag: None,
            broken: false,
        }))
    }

    /// A message whose `info` fails.
    #[must_use]
    pub fn malformed() -> Self {
        let mut fields = Self::request("OPTIONS", "z9hG4bKbroken").fields().clone();
        fields.broken = true;
        Self(Arc::new(fields))
    }

    /// This message's fields.
    #[must_use]
    pub fn fields(&self) -> &TestFields {
        &self.0
    }

    /// A copy with `edit` applied to its fields.
    #[must_use]
    pub fn with(&self, edit: impl FnOnce(&mut TestFields)) -> Self {
        let mut fields = self.fields().clone();
        edit(&mut fields);
        Self(Arc::new(fields))
    }

    /// A copy with another top Via branch (`None`: no branch parameter).
    #[must_use]
    pub fn with_branch(&self, branch: Option<&str>) -> Self {
        self.with(|f| f.branch = branch.map(str::to_owned))
    }

    /// A copy with another To tag.
    #[must_use]
    pub fn with_to_tag(&self, tag: &str) -> Self {
        self.with(|f| f.to_tag = Some(tag.to_owned()))
    }

    /// A copy with another Call-ID.
    #[must_use]
    pub fn with_call_id(&self, call_id: &str) -> Self {
        self.with(|f| f.call_id = call_id.to_owned())
    }

    /// The request method, if a request.
    #[must_use]
    pub fn method(&self) -> Option<&str> {
        self.0.method.as_deref()
    }

    /// The status code, if a response.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.0.method.is_none().then_some(self.0.status)
    }

    fn derived_request(&self, method: &str, to_tag: Option<String>) -> Self {
        self.with(|f| {
            f.method = Some(method.to_owned());
            f.cseq_method = method.to_owned();
            f.to_tag = to_tag;
        })
    }
}

impl SipMessage for TestMessage {
    type Wire = TestMessage;

    fn to_wire(&self) -> TestMessage {
        self.clone()
    }

    fn from_wire(wire: &TestMessage) -> Option<Self> {
        Some(wire.clone())
    }

    fn info(&self) -> Result<MessageInfo<'_>, MessageError> {
        let f = &*self.0;
        if f.broken {
            return Err(MessageError::MissingHeader("Via"));
        }
        let start = match &f.method {
            Some(method) => StartLine::Request {
                method,
                uri: &f.uri,
            },
            None => StartLine::Response { status: f.status },
        };
        Ok(MessageInfo {
            start,
            via: TopVia {
                branch: f.branch.as_deref(),
                sent_by: &f.sent_by,
                transport: &f.transport,
            },
            cseq: CSeq {
                number: f.cseq,
                method: &f.cseq_method,
            },
            call_id: &f.call_id,
            from_tag: f.from_tag.as_deref(),
            to_tag: f.to_tag.as_deref(),
        })
    }

    fn build_ack_for(&self, response: &Self) -> Self {
        self.derived_request("ACK", response.0.to_tag.clone())
    }

    fn build_response(&self, status: u16) -> Self {
        self.with(|f| {
            f.method = None;
            f.status = status;
        })
    }

    fn build_cancel(&self) -> Self {
        self.derived_request("CANCEL", self.0.to_tag.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn derived_messages_follow_rfc_3261() {
        let invite = TestMessage::request("INVITE", "z9hG4bK1");
        let busy = invite.build_response(486).with_to_tag("t");
        let ack = invite.build_ack_for(&busy);
        let ack_info = ack.info().unwrap();
        assert_eq!(ack_info.method(), Some("ACK"));
        assert_eq!(
            ack_info.cseq,
            CSeq {
                number: 1,
                method: "ACK"
            }
        );
        assert_eq!(ack_info.via.branch, Some("z9hG4bK1"));
        assert_eq!(ack_info.to_tag, Some("t"));
        let cancel = invite.build_cancel();
        assert_eq!(cancel.info().unwrap().cseq.method, "CANCEL");
        assert_eq!(cancel.info().unwrap().to_tag, None);
        assert_eq!(busy.status(), Some(486));
        assert!(TestMessage::malformed().info().is_err());
    }
}
