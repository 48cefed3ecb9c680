//! Pre-built SIP message templates with fixed-width numeric fields patched in place.
//!
//! A [`Template`] is compiled once per run from text containing placeholders such as
//! `{slot}` or `{user}`. Each placeholder is replaced by a run of zeros of the field's fixed
//! width, and its offset is remembered. Rendering a message is then one `memcpy` of the
//! template plus a few in-place digit writes: no formatting and no allocation per message.
//! Optional extra header lines (a Route set, an Authorization header) are appended after
//! the fixed part, followed by `Content-Length: 0` and the blank line.

use thiserror::Error;

/// A numeric field of a template, always rendered with a fixed number of decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Index of the flow slot (8 digits); embedded in Call-ID, branch and tags so that a
    /// reply finds its flow without a hash lookup.
    Slot,
    /// Generation of the flow within its slot (10 digits).
    Flow,
    /// Transaction number within the flow (4 digits); part of the Via branch.
    Txn,
    /// Number of the local user (`u%08d`, 8 digits).
    User,
    /// Number of the called user (`c%08d`, 8 digits).
    Peer,
    /// CSeq number (1 digit: flows never send more than 9 requests).
    CSeq,
}

impl Field {
    /// Number of all fields.
    pub const COUNT: usize = 6;

    /// Fixed width of the field in decimal digits.
    pub const fn width(self) -> usize {
        match self {
            Field::Slot | Field::User | Field::Peer => 8,
            Field::Flow => 10,
            Field::Txn => 4,
            Field::CSeq => 1,
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    fn from_name(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"slot" => Field::Slot,
            b"flow" => Field::Flow,
            b"txn" => Field::Txn,
            b"user" => Field::User,
            b"peer" => Field::Peer,
            b"cseq" => Field::CSeq,
            _ => return None,
        })
    }
}

/// Values for the fields of a template, indexed by [`Field`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Values([u64; Field::COUNT]);

impl Values {
    /// Sets one field and returns the values (builder style).
    #[must_use]
    pub fn with(mut self, field: Field, value: u64) -> Self {
        self.set(field, value);
        self
    }

    /// Sets one field.
    pub fn set(&mut self, field: Field, value: u64) {
        if let Some(v) = self.0.get_mut(field.index()) {
            *v = value;
        }
    }

    /// Reads one field.
    pub fn get(&self, field: Field) -> u64 {
        self.0.get(field.index()).copied().unwrap_or(0)
    }
}

/// Errors building or rendering a template.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    /// A `{name}` placeholder names no [`Field`].
    #[error("unknown template placeholder {{{0}}}")]
    UnknownPlaceholder(String),
    /// The template text does not end with CRLF after its last header line.
    #[error("template must end with CRLF after its last header")]
    MissingFinalCrlf,
    /// The rendered message does not fit the output buffer.
    #[error("message of at least {needed} bytes does not fit a {capacity}-byte buffer")]
    Overflow {
        /// Bytes that were needed at least.
        needed: usize,
        /// Size of the buffer.
        capacity: usize,
    },
}

const TAIL: &[u8] = b"Content-Length: 0\r\n\r\n";

/// A compiled message template: start line and fixed headers, with patch points.
#[derive(Debug, Clone)]
pub struct Template {
    head: Vec<u8>,
    patches: Vec<(usize, Field)>,
}

impl Template {
    /// Compiles template text. The text holds the start line and header lines, each ending
    /// in CRLF, without Content-Length and without the final blank line.
    pub fn compile(text: &str) -> Result<Template, TemplateError> {
        let src = text.as_bytes();
        if !src.ends_with(b"\r\n") {
            return Err(TemplateError::MissingFinalCrlf);
        }
        let mut head = Vec::with_capacity(src.len());
        let mut patches = Vec::new();
        let mut i = 0;
        while i < src.len() {
            let Some(open) = memchr::memchr(b'{', &src[i..]) else {
                head.extend_from_slice(&src[i..]);
                break;
            };
            head.extend_from_slice(&src[i..i + open]);
            let start = i + open + 1;
            let close = memchr::memchr(b'}', &src[start..]).ok_or_else(|| {
                TemplateError::UnknownPlaceholder(String::from_utf8_lossy(&src[start..]).into())
            })?;
            let name = &src[start..start + close];
            let field = Field::from_name(name).ok_or_else(|| {
                TemplateError::UnknownPlaceholder(String::from_utf8_lossy(name).into())
            })?;
            patches.push((head.len(), field));
            head.resize(head.len() + field.width(), b'0');
            i = start + close + 1;
        }
        Ok(Template { head, patches })
    }

    /// Renders the template into `buf`: fixed part with `values` patched in, then each of
    /// `extra` (complete header lines ending in CRLF), then `Content-Length: 0` and the
    /// blank line. Returns the message length.
    pub fn render(
        &self,
        values: &Values,
        extra: &[&[u8]],
        buf: &mut [u8],
    ) -> Result<usize, TemplateError> {
        self.render_with_tail(values, extra, TAIL, buf)
    }

    /// Like [`Template::render`], with `tail` (the last header lines, the blank line and
    /// any body, e.g. Content-Type, Content-Length and an SDP body) instead of
    /// `Content-Length: 0` and the blank line.
    pub fn render_with_tail(
        &self,
        values: &Values,
        extra: &[&[u8]],
        tail: &[u8],
        buf: &mut [u8],
    ) -> Result<usize, TemplateError> {
        let needed = self.head.len() + extra.iter().map(|e| e.len()).sum::<usize>() + tail.len();
        if needed > buf.len() {
            return Err(TemplateError::Overflow {
                needed,
                capacity: buf.len(),
            });
        }
        let mut at = self.head.len();
        buf[..at].copy_from_slice(&self.head);
        for &(offset, field) in &self.patches {
            write_padded(&mut buf[offset..offset + field.width()], values.get(field));
        }
        for e in extra {
            buf[at..at + e.len()].copy_from_slice(e);
            at += e.len();
        }
        buf[at..at + tail.len()].copy_from_slice(tail);
        Ok(at + tail.len())
    }

    /// Length of the fixed part (everything before the extra headers).
    pub fn head_len(&self) -> usize {
        self.head.len()
    }
}

/// The tail of a message carrying an SDP body: Content-Type, Content-Length, the blank
/// line and the body.
pub fn sdp_tail(sdp: &str) -> Vec<u8> {
    format!(
        "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// A minimal audio SDP (PCMU/8000, sendrecv) with media at `addr`.
pub fn audio_sdp(addr: std::net::SocketAddr, session: u32) -> String {
    let (family, ip) = match addr.ip() {
        std::net::IpAddr::V4(v4) => ("IP4", v4.to_string()),
        std::net::IpAddr::V6(v6) => ("IP6", v6.to_string()),
    };
    format!(
        "v=0\r\no=- {session} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        port = addr.port()
    )
}

/// Writes `value` as zero-padded decimal filling all of `dst` (higher digits are dropped
/// when the value is too wide).
pub fn write_padded(dst: &mut [u8], mut value: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Parses an ASCII decimal number; `None` for an empty or non-digit input or overflow.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_every_occurrence_with_fixed_width() {
        let t = Template::compile(
            "REGISTER sip:example.com SIP/2.0\r\nFrom: <sip:u{user}@example.com>;tag={slot}.{flow}\r\nTo: <sip:u{user}@example.com>\r\nCSeq: {cseq} REGISTER\r\n",
        )
        .unwrap();
        let v = Values::default()
            .with(Field::User, 42)
            .with(Field::Slot, 7)
            .with(Field::Flow, 1234567890)
            .with(Field::CSeq, 2);
        let mut buf = [0u8; 512];
        let n = t.render(&v, &[], &mut buf).unwrap();
        let s = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            s,
            "REGISTER sip:example.com SIP/2.0\r\nFrom: <sip:u00000042@example.com>;tag=00000007.1234567890\r\nTo: <sip:u00000042@example.com>\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n"
        );
        // Re-rendering with other values into the same buffer leaves no residue.
        let n2 = t
            .render(&v.with(Field::User, 99_999_999), &[b"X: y\r\n"], &mut buf)
            .unwrap();
        let s2 = std::str::from_utf8(&buf[..n2]).unwrap();
        assert!(s2.contains("u99999999@"));
        assert!(s2.ends_with("X: y\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(n2, n + 6);
    }

    #[test]
    fn too_wide_values_wrap_instead_of_overflowing() {
        let mut d = [0u8; 4];
        write_padded(&mut d, 123_456);
        assert_eq!(&d, b"3456");
    }

    #[test]
    fn rejects_unknown_placeholder_and_missing_crlf() {
        assert_eq!(
            Template::compile("A {nope}\r\n").unwrap_err(),
            TemplateError::UnknownPlaceholder("nope".into())
        );
        assert_eq!(
            Template::compile("A").unwrap_err(),
            TemplateError::MissingFinalCrlf
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let t = Template::compile("OPTIONS sip:a SIP/2.0\r\n").unwrap();
        let mut buf = [0u8; 10];
        assert!(matches!(
            t.render(&Values::default(), &[], &mut buf),
            Err(TemplateError::Overflow { .. })
        ));
    }

    #[test]
    fn parses_decimal() {
        assert_eq!(parse_decimal(b"0042"), Some(42));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"4x"), None);
    }
}
