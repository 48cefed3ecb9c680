//! Which requests overload control may shed.

use voxline_sip::{Method, RequestRef, Uri};

/// How overload control treats a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// Part of a dialog or transaction in progress: ACK, CANCEL, BYE,
    /// PRACK, or any request with a To tag (re-INVITE, UPDATE, INFO...).
    /// Never shed: finishing calls frees the node.
    InDialog,
    /// A call to an emergency number (or an `urn:service:sos` URI). Never
    /// shed.
    Emergency,
    /// A new request of a shed method (REGISTER, INVITE by default).
    New,
    /// Anything else (OPTIONS, methods not listed to be shed).
    Other,
}

impl RequestClass {
    /// Sorts a request, whole or only framed. `shed_methods` are
    /// upper-case method names; `emergency_numbers` are Request-URI users.
    pub fn of<'a>(
        request: impl Into<RequestRef<'a>>,
        shed_methods: &[String],
        emergency_numbers: &[String],
    ) -> RequestClass {
        let request = request.into();
        let Some(method_str) = request.method_str() else {
            return RequestClass::Other;
        };
        let method = Method::parse(method_str);
        if matches!(
            method,
            Some(Method::Ack | Method::Cancel | Method::Bye | Method::Prack)
        ) || request.to_tag().is_some()
        {
            return RequestClass::InDialog;
        }
        if method == Some(Method::Invite)
            && is_emergency(request.request_uri_str(), emergency_numbers)
        {
            return RequestClass::Emergency;
        }
        if shed_methods.iter().any(|m| m == method_str) {
            RequestClass::New
        } else {
            RequestClass::Other
        }
    }

    /// Whether overload control may refuse it.
    pub fn may_shed(self) -> bool {
        self == RequestClass::New
    }
}

/// Whether the Request-URI names an emergency service: its user part (SIP)
/// or number (tel), without parameters, is one of `numbers`; or it is an
/// `urn:service:sos` URN (RFC 5031).
fn is_emergency(request_uri: Option<&str>, numbers: &[String]) -> bool {
    let Some(text) = request_uri else {
        return false;
    };
    // Parsing the URI is most of the cost of sorting a request that is
    // then refused: skip it when the text cannot name an emergency
    // service. A SIP user part or a tel number equal to one of `numbers`
    // starts right after the scheme and ends at `@`, `;`, `:` or `?`
    // (escapes are not decoded here or below).
    let (scheme, rest) = text.split_once(':').unwrap_or((text, ""));
    let urn = scheme.eq_ignore_ascii_case("urn");
    let number_first = numbers.iter().any(|n| {
        rest.strip_prefix(n.as_str())
            .is_some_and(|after| after.is_empty() || after.starts_with(['@', ';', ':', '?']))
    });
    if !urn && !number_first {
        return false;
    }
    let Ok(uri) = Uri::parse(text) else {
        return false;
    };
    let user = match &uri {
        Uri::Sip(u) => u.user,
        Uri::Tel(t) => Some(t.number),
        Uri::Other(a) => {
            return a.scheme.eq_ignore_ascii_case("urn")
                && a.rest
                    .get(..11)
                    .is_some_and(|p| p.eq_ignore_ascii_case("service:sos"));
        }
    };
    let Some(user) = user else {
        return false;
    };
    let number = user.split(';').next().unwrap_or(user);
    numbers.iter().any(|n| n == number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use voxline_sip::Message;

    fn request(first: &str, to_tag: bool) -> Message {
        let method = first.split(' ').next().unwrap();
        let tag = if to_tag { ";tag=t1" } else { "" };
        Message::parse(Bytes::from(format!(
            "{first} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=f\r\nTo: <sip:b@example.com>{tag}\r\nCall-ID: c\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    fn class(first: &str, to_tag: bool) -> RequestClass {
        let shed = ["REGISTER".to_owned(), "INVITE".to_owned()];
        let sos = ["110".to_owned(), "112".to_owned(), "911".to_owned()];
        RequestClass::of(&request(first, to_tag), &shed, &sos)
    }

    #[test]
    fn new_requests_of_shed_methods_only() {
        assert_eq!(class("REGISTER sip:example.com", false), RequestClass::New);
        assert_eq!(
            class("INVITE sip:bob@example.com", false),
            RequestClass::New
        );
        assert_eq!(class("OPTIONS sip:example.com", false), RequestClass::Other);
        assert_eq!(
            class("MESSAGE sip:bob@example.com", false),
            RequestClass::Other
        );
        assert!(class("INVITE sip:bob@example.com", false).may_shed());
        assert!(!class("OPTIONS sip:example.com", false).may_shed());
    }

    #[test]
    fn in_dialog_requests_are_never_shed() {
        assert_eq!(
            class("INVITE sip:bob@example.com", true),
            RequestClass::InDialog
        );
        assert_eq!(class("BYE sip:bob@192.0.2.9", true), RequestClass::InDialog);
        assert_eq!(
            class("ACK sip:bob@192.0.2.9", false),
            RequestClass::InDialog
        );
        assert_eq!(
            class("CANCEL sip:bob@example.com", false),
            RequestClass::InDialog
        );
        assert_eq!(
            class("REGISTER sip:example.com", true),
            RequestClass::InDialog
        );
    }

    #[test]
    fn emergency_calls_are_never_shed() {
        assert_eq!(
            class("INVITE sip:112@example.com", false),
            RequestClass::Emergency
        );
        assert_eq!(
            class(
                "INVITE sip:911;phone-context=+1@example.com;user=phone",
                false
            ),
            RequestClass::Emergency
        );
        assert_eq!(class("INVITE tel:110", false), RequestClass::Emergency);
        assert_eq!(
            class("INVITE urn:service:sos.police", false),
            RequestClass::Emergency
        );
        assert_eq!(
            class("INVITE URN:Service:SOS", false),
            RequestClass::Emergency
        );
        assert_eq!(
            class("INVITE sip:1120@example.com", false),
            RequestClass::New
        );
        assert_eq!(
            class("INVITE sip:bob@example.com;x=112", false),
            RequestClass::New
        );
        assert_eq!(
            class("INVITE sips:112@example.com", false),
            RequestClass::Emergency
        );
        assert_eq!(
            class("INVITE sip:u00000112@example.com", false),
            RequestClass::New
        );
        assert_eq!(
            class("INVITE urn:service:counseling", false),
            RequestClass::New
        );
        // Only calls: a REGISTER of user 112 is an ordinary REGISTER.
        assert_eq!(class("REGISTER sip:example.com", false), RequestClass::New);
    }
}
