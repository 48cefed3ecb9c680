//! Typed errors: framing errors ([`ParseError`]) say why bytes are not a SIP
//! message at all; value errors ([`ValueError`]) say why one header value
//! does not follow its grammar.

use crate::header_name::HeaderName;

/// Why bytes could not be framed as a SIP message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty message")]
    Empty,
    /// The message exceeds [`crate::Limits::max_message_size`].
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Bytes seen (at least).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// More header lines than [`crate::Limits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The start line or a header field is not valid UTF-8.
    #[error("start line or header is not valid UTF-8")]
    InvalidUtf8,
    /// The first line is neither a Request-Line nor a Status-Line.
    #[error("malformed start line")]
    MalformedStartLine,
    /// A Status-Line whose code is not three digits in 100..=699.
    #[error("invalid status code")]
    InvalidStatusCode,
    /// A header line without a colon or with an invalid name.
    #[error("malformed header line {line}")]
    MalformedHeaderLine {
        /// 1-based line number in the message.
        line: usize,
    },
    /// A Content-Length that is not `1*DIGIT` (negative, garbage, overflow).
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several Content-Length values that disagree, on a stream.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// The datagram holds fewer body bytes than Content-Length says.
    #[error("Content-Length {declared} exceeds the {available} body bytes present")]
    BodyTruncated {
        /// Content-Length as declared.
        declared: usize,
        /// Bytes after the header section.
        available: usize,
    },
    /// A message on a stream without Content-Length (RFC 3261 §18.3).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// The header section has no terminating empty line yet (streams only).
    #[error("incomplete message")]
    Incomplete,
}

impl ParseError {
    /// A short reason phrase for a 400 response naming the problem.
    pub fn reason_phrase(&self) -> &'static str {
        match self {
            ParseError::Empty => "Bad Request - Empty Message",
            ParseError::TooLarge { .. } => "Message Too Large",
            ParseError::TooManyHeaders { .. } => "Bad Request - Too Many Headers",
            ParseError::InvalidUtf8 => "Bad Request - Invalid UTF-8",
            ParseError::MalformedStartLine => "Bad Request - Malformed Request-Line",
            ParseError::InvalidStatusCode => "Bad Request - Invalid Status Code",
            ParseError::MalformedHeaderLine { .. } => "Bad Request - Malformed Header Line",
            ParseError::InvalidContentLength => "Bad Request - Malformed Content-Length",
            ParseError::ConflictingContentLength => "Bad Request - Multiple Content-Length",
            ParseError::BodyTruncated { .. } => "Bad Request - Content-Length Exceeds Message",
            ParseError::MissingContentLength => "Bad Request - Missing Content-Length",
            ParseError::Incomplete => "Bad Request - Incomplete Message",
        }
    }
}

/// Why a header value (or URI) could not be read as its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The header is absent.
    #[error("missing {0} header")]
    Missing(HeaderName),
    /// The header is present but does not follow its grammar.
    #[error("malformed {0} header")]
    Malformed(HeaderName),
    /// A number exceeds what its grammar or RFC 3261 allows.
    #[error("{0} value out of range")]
    OutOfRange(HeaderName),
    /// The Request-URI or a URI in a header is malformed.
    #[error("malformed URI")]
    Uri,
    /// The message is a response and has no Request-URI/method, or the reverse.
    #[error("not available on this kind of message")]
    WrongKind,
}
