//! Framing SIP over a byte stream (TCP, TLS): Content-Length delimits each
//! message (RFC 3261 §18.3), CRLF keep-alives are reported (RFC 5626
//! §4.4.1), and the buffer is bounded.

use bytes::{Buf, BytesMut};
use memchr::memmem;

use crate::error::ParseError;
use crate::frame::{Transport, frame};
use crate::limits::Limits;
use crate::message::Message;

/// What the stream produced. (`Message` is large because its header index
/// is inline; boxing it would cost an allocation per message.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// A complete message.
    Message(Message),
    /// A keep-alive ping (`CRLF CRLF`): answer with one `CRLF`.
    KeepAlivePing,
    /// A keep-alive pong (a lone `CRLF`).
    KeepAlivePong,
}

/// Cuts messages out of a byte stream. Feed it bytes as they arrive and
/// drain events; a returned error is fatal for the connection (the framing
/// is lost) and is returned again on every later call.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    limits: Limits,
    /// Bytes already searched for the end of the header section.
    scanned: usize,
    /// Total length of the message being received, once its head is known.
    need: Option<usize>,
    /// The last event was a lone CRLF reported as a pong.
    lone_crlf: bool,
    failed: Option<ParseError>,
}

impl StreamFramer {
    /// A framer with the given limits (`max_message_size` bounds the
    /// buffered bytes of one message).
    pub fn new(limits: Limits) -> StreamFramer {
        // Offsets are 32-bit: cap the message size accordingly.
        let limits = Limits {
            max_message_size: limits.max_message_size.min(u32::MAX as usize / 2),
            ..limits
        };
        StreamFramer {
            buf: BytesMut::new(),
            limits,
            scanned: 0,
            need: None,
            lone_crlf: false,
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The receive buffer, for reading into directly (e.g. `read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes received but not yet returned as events (for an error
    /// response after a fatal error, see [`crate::error_response`]).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    fn fail(&mut self, e: ParseError) -> Result<Option<StreamEvent>, ParseError> {
        self.failed = Some(e.clone());
        Err(e)
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    ///
    /// A buffer holding exactly `CRLF` is reported as a pong at once (a
    /// client waiting for its pong must not stall). A ping whose two CRLFs
    /// arrive in separate reads is therefore reported as a pong followed by
    /// a ping, so a server still answers it.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let b = &self.buf[..];
        if b.starts_with(b"\r\n") {
            if b.starts_with(b"\r\n\r\n") {
                self.buf.advance(4);
                self.lone_crlf = false;
                return Ok(Some(StreamEvent::KeepAlivePing));
            }
            if b.len() == 3 && b.get(2) == Some(&b'\r') {
                return Ok(None);
            }
            self.buf.advance(2);
            if std::mem::replace(&mut self.lone_crlf, false) {
                return Ok(Some(StreamEvent::KeepAlivePing));
            }
            self.lone_crlf = self.buf.is_empty();
            return Ok(Some(StreamEvent::KeepAlivePong));
        }
        if !b.is_empty() {
            self.lone_crlf = false;
        }
        if b.is_empty() {
            return Ok(None);
        }
        if let Some(need) = self.need
            && b.len() < need
        {
            return Ok(None);
        }
        let head_len = match memmem::find(
            b.get(self.scanned.saturating_sub(3)..).unwrap_or_default(),
            b"\r\n\r\n",
        ) {
            Some(i) => self.scanned.saturating_sub(3) + i + 4,
            None => {
                if b.len() > self.limits.max_message_size {
                    let size = b.len();
                    return self.fail(ParseError::TooLarge {
                        size,
                        limit: self.limits.max_message_size,
                    });
                }
                self.scanned = b.len();
                return Ok(None);
            }
        };
        let f = match frame(
            b.get(..head_len).unwrap_or_default(),
            &self.limits,
            Transport::Stream,
        ) {
            Ok(f) => f,
            Err(e) => return self.fail(e),
        };
        let total = f.body_end as usize;
        if b.len() < total {
            self.need = Some(total);
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        self.scanned = 0;
        self.need = None;
        Ok(Some(StreamEvent::Message(Message::from_frame(bytes, f))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: a\r\nContent-Length: 5\r\n\r\nhello";
    const B: &[u8] =
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nCall-ID: b\r\nl: 0\r\n\r\n";

    fn drain(f: &mut StreamFramer) -> Vec<StreamEvent> {
        let mut v = Vec::new();
        while let Some(e) = f.next_event().unwrap() {
            v.push(e);
        }
        v
    }

    fn ids(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                StreamEvent::Message(m) => m.call_id().unwrap().to_string(),
                StreamEvent::KeepAlivePing => "ping".into(),
                StreamEvent::KeepAlivePong => "pong".into(),
            })
            .collect()
    }

    #[test]
    fn every_split_point() {
        let mut all = Vec::new();
        all.extend_from_slice(A);
        all.extend_from_slice(b"\r\n\r\n");
        all.extend_from_slice(B);
        all.extend_from_slice(A);
        for split in 0..=all.len() {
            let mut f = StreamFramer::new(Limits::default());
            let mut events = Vec::new();
            f.push(&all[..split]);
            events.extend(drain(&mut f));
            f.push(&all[split..]);
            events.extend(drain(&mut f));
            let ping_split = split == A.len() + 2;
            let expected: &[&str] = if ping_split {
                &["a", "pong", "ping", "b", "a"]
            } else {
                &["a", "ping", "b", "a"]
            };
            assert_eq!(ids(&events), expected, "split at {split}");
            if let StreamEvent::Message(m) = &events[0] {
                assert_eq!(m.body(), b"hello");
                assert_eq!(m.as_bytes(), A);
            }
            assert!(f.buffered().is_empty());
        }
    }

    #[test]
    fn byte_by_byte() {
        let mut f = StreamFramer::new(Limits::default());
        let mut events = Vec::new();
        for &b in A.iter().chain(B) {
            f.push(&[b]);
            events.extend(drain(&mut f));
        }
        assert_eq!(ids(&events), ["a", "b"]);
    }

    #[test]
    fn pong() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"\r\n");
        assert_eq!(f.next_event().unwrap(), Some(StreamEvent::KeepAlivePong));
        // A second lone CRLF completes a split ping.
        f.push(b"\r\n");
        f.push(B);
        assert_eq!(ids(&drain(&mut f)), ["ping", "b"]);
        // A pong followed by a message in the same read.
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"\r\n");
        f.push(B);
        assert_eq!(ids(&drain(&mut f)), ["pong", "b"]);
    }

    #[test]
    fn fatal_errors() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert_eq!(f.next_event(), Err(ParseError::MissingContentLength));
        assert_eq!(f.next_event(), Err(ParseError::MissingContentLength));

        let mut f = StreamFramer::new(Limits {
            max_message_size: 100,
            max_headers: 10,
        });
        f.push(&[b'a'; 101]);
        assert!(matches!(f.next_event(), Err(ParseError::TooLarge { .. })));

        let mut f = StreamFramer::new(Limits {
            max_message_size: 100,
            max_headers: 10,
        });
        f.push(b"OPTIONS sip:a SIP/2.0\r\nl: 1000\r\n\r\n");
        assert!(matches!(f.next_event(), Err(ParseError::TooLarge { .. })));

        let mut f = StreamFramer::new(Limits::default());
        f.push(b"OPTIONS sip:a SIP/2.0\r\nl: -5\r\n\r\n");
        assert_eq!(f.next_event(), Err(ParseError::InvalidContentLength));
    }

    #[test]
    fn half_message_waits() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(&A[..A.len() - 2]);
        assert_eq!(f.next_event(), Ok(None));
        assert_eq!(f.buffered().len(), A.len() - 2);
    }
}
