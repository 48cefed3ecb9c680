//! Header field names: a closed set of well-known names (with their compact
//! forms, RFC 3261 §7.3.3 and the IANA registry) plus `Other` for extension
//! headers, which are looked up by their text.

macro_rules! header_names {
    ($( $variant:ident => $canon:literal, $_lower:literal, $compact:expr, $list:expr; )*) => {
        /// A header field name. Names outside this set are [`HeaderName::Other`]
        /// and are matched by text (case-insensitively).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum HeaderName {
            $(
                #[doc = concat!("`", $canon, "`")]
                $variant,
            )*
            /// An extension header not in the known set.
            Other,
        }

        impl HeaderName {
            /// Every known name (not `Other`).
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$variant,)*];

            /// The canonical spelling, e.g. `Call-ID`; "" for `Other`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $canon,)*
                    HeaderName::Other => "",
                }
            }

            /// The compact form letter, if the name has one.
            pub const fn compact(self) -> Option<u8> {
                match self {
                    $(HeaderName::$variant => $compact,)*
                    HeaderName::Other => None,
                }
            }

            /// True when the grammar allows several comma-separated values in
            /// one header line (RFC 3261 §7.3.1), so iteration splits them.
            pub const fn is_list(self) -> bool {
                match self {
                    $(HeaderName::$variant => $list,)*
                    HeaderName::Other => false,
                }
            }

        }
    };
}

header_names! {
    Accept => "Accept", b"accept", None, true;
    AcceptContact => "Accept-Contact", b"accept-contact", Some(b'a'), true;
    AcceptEncoding => "Accept-Encoding", b"accept-encoding", None, true;
    AcceptLanguage => "Accept-Language", b"accept-language", None, true;
    AlertInfo => "Alert-Info", b"alert-info", None, true;
    Allow => "Allow", b"allow", None, true;
    AllowEvents => "Allow-Events", b"allow-events", Some(b'u'), true;
    AuthenticationInfo => "Authentication-Info", b"authentication-info", None, false;
    Authorization => "Authorization", b"authorization", None, false;
    CallId => "Call-ID", b"call-id", Some(b'i'), false;
    CallInfo => "Call-Info", b"call-info", None, true;
    Contact => "Contact", b"contact", Some(b'm'), true;
    ContentDisposition => "Content-Disposition", b"content-disposition", None, false;
    ContentEncoding => "Content-Encoding", b"content-encoding", Some(b'e'), true;
    ContentLanguage => "Content-Language", b"content-language", None, true;
    ContentLength => "Content-Length", b"content-length", Some(b'l'), false;
    ContentType => "Content-Type", b"content-type", Some(b'c'), false;
    CSeq => "CSeq", b"cseq", None, false;
    Date => "Date", b"date", None, false;
    ErrorInfo => "Error-Info", b"error-info", None, true;
    Event => "Event", b"event", Some(b'o'), false;
    Expires => "Expires", b"expires", None, false;
    From => "From", b"from", Some(b'f'), false;
    Identity => "Identity", b"identity", Some(b'y'), false;
    InReplyTo => "In-Reply-To", b"in-reply-to", None, true;
    MaxForwards => "Max-Forwards", b"max-forwards", None, false;
    MimeVersion => "MIME-Version", b"mime-version", None, false;
    MinExpires => "Min-Expires", b"min-expires", None, false;
    MinSe => "Min-SE", b"min-se", None, false;
    Organization => "Organization", b"organization", None, false;
    Path => "Path", b"path", None, true;
    Priority => "Priority", b"priority", None, false;
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate", None, false;
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization", None, false;
    ProxyRequire => "Proxy-Require", b"proxy-require", None, true;
    RAck => "RAck", b"rack", None, false;
    Reason => "Reason", b"reason", None, true;
    RecordRoute => "Record-Route", b"record-route", None, true;
    ReferTo => "Refer-To", b"refer-to", Some(b'r'), false;
    ReferredBy => "Referred-By", b"referred-by", Some(b'b'), false;
    RejectContact => "Reject-Contact", b"reject-contact", Some(b'j'), true;
    ReplyTo => "Reply-To", b"reply-to", None, false;
    RequestDisposition => "Request-Disposition", b"request-disposition", Some(b'd'), true;
    Require => "Require", b"require", None, true;
    RetryAfter => "Retry-After", b"retry-after", None, false;
    Route => "Route", b"route", None, true;
    RSeq => "RSeq", b"rseq", None, false;
    Server => "Server", b"server", None, false;
    ServiceRoute => "Service-Route", b"service-route", None, true;
    SessionExpires => "Session-Expires", b"session-expires", Some(b'x'), false;
    Subject => "Subject", b"subject", Some(b's'), false;
    SubscriptionState => "Subscription-State", b"subscription-state", None, false;
    Supported => "Supported", b"supported", Some(b'k'), true;
    Timestamp => "Timestamp", b"timestamp", None, false;
    To => "To", b"to", Some(b't'), false;
    Unsupported => "Unsupported", b"unsupported", None, true;
    UserAgent => "User-Agent", b"user-agent", None, false;
    Via => "Via", b"via", Some(b'v'), true;
    Warning => "Warning", b"warning", None, true;
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate", None, false;
}

impl HeaderName {
    /// Looks up a name as it appears on the wire: case-insensitive, compact
    /// forms mapped to their long names. Unknown names give `Other`.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return match name.first().map(u8::to_ascii_lowercase) {
                Some(b'a') => HeaderName::AcceptContact,
                Some(b'b') => HeaderName::ReferredBy,
                Some(b'c') => HeaderName::ContentType,
                Some(b'd') => HeaderName::RequestDisposition,
                Some(b'e') => HeaderName::ContentEncoding,
                Some(b'f') => HeaderName::From,
                Some(b'i') => HeaderName::CallId,
                Some(b'j') => HeaderName::RejectContact,
                Some(b'k') => HeaderName::Supported,
                Some(b'l') => HeaderName::ContentLength,
                Some(b'm') => HeaderName::Contact,
                Some(b'o') => HeaderName::Event,
                Some(b'r') => HeaderName::ReferTo,
                Some(b's') => HeaderName::Subject,
                Some(b't') => HeaderName::To,
                Some(b'u') => HeaderName::AllowEvents,
                Some(b'v') => HeaderName::Via,
                Some(b'x') => HeaderName::SessionExpires,
                Some(b'y') => HeaderName::Identity,
                _ => HeaderName::Other,
            };
        }
        HeaderName::lookup_long(name)
    }

    /// Case-insensitive lookup of a long name, bucketed by length.
    fn lookup_long(name: &[u8]) -> HeaderName {
        match name.len() {
            2 => {
                if name.eq_ignore_ascii_case(b"to") {
                    return HeaderName::To;
                }
                HeaderName::Other
            }
            3 => {
                if name.eq_ignore_ascii_case(b"via") {
                    return HeaderName::Via;
                }
                HeaderName::Other
            }
            4 => {
                if name.eq_ignore_ascii_case(b"from") {
                    return HeaderName::From;
                }
                if name.eq_ignore_ascii_case(b"cseq") {
                    return HeaderName::CSeq;
                }
                if name.eq_ignore_ascii_case(b"path") {
                    return HeaderName::Path;
                }
                if name.eq_ignore_ascii_case(b"date") {
                    return HeaderName::Date;
                }
                if name.eq_ignore_ascii_case(b"rack") {
                    return HeaderName::RAck;
                }
                if name.eq_ignore_ascii_case(b"rseq") {
                    return HeaderName::RSeq;
                }
                HeaderName::Other
            }
            5 => {
                if name.eq_ignore_ascii_case(b"route") {
                    return HeaderName::Route;
                }
                if name.eq_ignore_ascii_case(b"allow") {
                    return HeaderName::Allow;
                }
                if name.eq_ignore_ascii_case(b"event") {
                    return HeaderName::Event;
                }
                HeaderName::Other
            }
            6 => {
                if name.eq_ignore_ascii_case(b"accept") {
                    return HeaderName::Accept;
                }
                if name.eq_ignore_ascii_case(b"min-se") {
                    return HeaderName::MinSe;
                }
                if name.eq_ignore_ascii_case(b"reason") {
                    return HeaderName::Reason;
                }
                if name.eq_ignore_ascii_case(b"server") {
                    return HeaderName::Server;
                }
                HeaderName::Other
            }
            7 => {
                if name.eq_ignore_ascii_case(b"call-id") {
                    return HeaderName::CallId;
                }
                if name.eq_ignore_ascii_case(b"contact") {
                    return HeaderName::Contact;
                }
                if name.eq_ignore_ascii_case(b"expires") {
                    return HeaderName::Expires;
                }
                if name.eq_ignore_ascii_case(b"require") {
                    return HeaderName::Require;
                }
                if name.eq_ignore_ascii_case(b"subject") {
                    return HeaderName::Subject;
                }
                if name.eq_ignore_ascii_case(b"warning") {
                    return HeaderName::Warning;
                }
                HeaderName::Other
            }
            8 => {
                if name.eq_ignore_ascii_case(b"identity") {
                    return HeaderName::Identity;
                }
                if name.eq_ignore_ascii_case(b"priority") {
                    return HeaderName::Priority;
                }
                if name.eq_ignore_ascii_case(b"refer-to") {
                    return HeaderName::ReferTo;
                }
                if name.eq_ignore_ascii_case(b"reply-to") {
                    return HeaderName::ReplyTo;
                }
                HeaderName::Other
            }
            9 => {
                if name.eq_ignore_ascii_case(b"supported") {
                    return HeaderName::Supported;
                }
                if name.eq_ignore_ascii_case(b"call-info") {
                    return HeaderName::CallInfo;
                }
                if name.eq_ignore_ascii_case(b"timestamp") {
                    return HeaderName::Timestamp;
                }
                HeaderName::Other
            }
            10 => {
                if name.eq_ignore_ascii_case(b"user-agent") {
                    return HeaderName::UserAgent;
                }
                if name.eq_ignore_ascii_case(b"alert-info") {
                    return HeaderName::AlertInfo;
                }
                if name.eq_ignore_ascii_case(b"error-info") {
                    return HeaderName::ErrorInfo;
                }
                HeaderName::Other
            }
            11 => {
                if name.eq_ignore_ascii_case(b"in-reply-to") {
                    return HeaderName::InReplyTo;
                }
                if name.eq_ignore_ascii_case(b"min-expires") {
                    return HeaderName::MinExpires;
                }
                if name.eq_ignore_ascii_case(b"referred-by") {
                    return HeaderName::ReferredBy;
                }
                if name.eq_ignore_ascii_case(b"retry-after") {
                    return HeaderName::RetryAfter;
                }
                if name.eq_ignore_ascii_case(b"unsupported") {
                    return HeaderName::Unsupported;
                }
                HeaderName::Other
            }
            12 => {
                if name.eq_ignore_ascii_case(b"max-forwards") {
                    return HeaderName::MaxForwards;
                }
                if name.eq_ignore_ascii_case(b"content-type") {
                    return HeaderName::ContentType;
                }
                if name.eq_ignore_ascii_case(b"record-route") {
                    return HeaderName::RecordRoute;
                }
                if name.eq_ignore_ascii_case(b"allow-events") {
                    return HeaderName::AllowEvents;
                }
                if name.eq_ignore_ascii_case(b"mime-version") {
                    return HeaderName::MimeVersion;
                }
                if name.eq_ignore_ascii_case(b"organization") {
                    return HeaderName::Organization;
                }
                HeaderName::Other
            }
            13 => {
                if name.eq_ignore_ascii_case(b"authorization") {
                    return HeaderName::Authorization;
                }
                if name.eq_ignore_ascii_case(b"proxy-require") {
                    return HeaderName::ProxyRequire;
                }
                if name.eq_ignore_ascii_case(b"service-route") {
                    return HeaderName::ServiceRoute;
                }
                HeaderName::Other
            }
            14 => {
                if name.eq_ignore_ascii_case(b"content-length") {
                    return HeaderName::ContentLength;
                }
                if name.eq_ignore_ascii_case(b"accept-contact") {
                    return HeaderName::AcceptContact;
                }
                if name.eq_ignore_ascii_case(b"reject-contact") {
                    return HeaderName::RejectContact;
                }
                HeaderName::Other
            }
            15 => {
                if name.eq_ignore_ascii_case(b"accept-encoding") {
                    return HeaderName::AcceptEncoding;
                }
                if name.eq_ignore_ascii_case(b"accept-language") {
                    return HeaderName::AcceptLanguage;
                }
                if name.eq_ignore_ascii_case(b"session-expires") {
                    return HeaderName::SessionExpires;
                }
                HeaderName::Other
            }
            16 => {
                if name.eq_ignore_ascii_case(b"content-encoding") {
                    return HeaderName::ContentEncoding;
                }
                if name.eq_ignore_ascii_case(b"content-language") {
                    return HeaderName::ContentLanguage;
                }
                if name.eq_ignore_ascii_case(b"www-authenticate") {
                    return HeaderName::WwwAuthenticate;
                }
                HeaderName::Other
            }
            18 => {
                if name.eq_ignore_ascii_case(b"proxy-authenticate") {
                    return HeaderName::ProxyAuthenticate;
                }
                if name.eq_ignore_ascii_case(b"subscription-state") {
                    return HeaderName::SubscriptionState;
                }
                HeaderName::Other
            }
            19 => {
                if name.eq_ignore_ascii_case(b"authentication-info") {
                    return HeaderName::AuthenticationInfo;
                }
                if name.eq_ignore_ascii_case(b"content-disposition") {
                    return HeaderName::ContentDisposition;
                }
                if name.eq_ignore_ascii_case(b"proxy-authorization") {
                    return HeaderName::ProxyAuthorization;
                }
                if name.eq_ignore_ascii_case(b"request-disposition") {
                    return HeaderName::RequestDisposition;
                }
                HeaderName::Other
            }
            _ => HeaderName::Other,
        }
    }

    /// Looks up a name given as text (see [`HeaderName::from_bytes`]).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(name: &str) -> HeaderName {
        HeaderName::from_bytes(name.as_bytes())
    }

    /// True when `wire` (a name as received) denotes this known name.
    pub fn matches(self, wire: &[u8]) -> bool {
        self != HeaderName::Other && HeaderName::from_bytes(wire) == self
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"Via"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"vIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"v"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"CALL-ID"), HeaderName::CallId);
        assert_eq!(
            HeaderName::from_bytes(b"MaX-fOrWaRdS"),
            HeaderName::MaxForwards
        );
        assert_eq!(HeaderName::from_bytes(b"C%6Fntact"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"X-Whatever"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(&[b'a'; 200]), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"z"), HeaderName::Other);
    }

    #[test]
    fn every_name_round_trips() {
        for &n in HeaderName::ALL {
            assert_eq!(HeaderName::from_str(n.as_str()), n, "{n}");
            assert_eq!(HeaderName::from_str(&n.as_str().to_uppercase()), n);
            if let Some(c) = n.compact() {
                assert_eq!(HeaderName::from_bytes(&[c]), n, "{n}");
                assert_eq!(HeaderName::from_bytes(&[c.to_ascii_uppercase()]), n);
            }
        }
    }

    #[test]
    fn list_headers() {
        assert!(HeaderName::Via.is_list());
        assert!(HeaderName::Contact.is_list());
        assert!(!HeaderName::Authorization.is_list());
        assert!(!HeaderName::CallId.is_list());
        assert!(!HeaderName::Other.is_list());
    }
}
