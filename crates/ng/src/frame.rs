//! `<cookie> <dictionary>` framing for UDP datagrams and TCP streams.

use crate::bencode::{self, Value};
use crate::json;

/// How a message body is encoded; replies use the request's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// bencode dictionary (rtpengine's native form).
    Bencode,
    /// JSON object (body starts with `{`).
    Json,
}

/// A framed message: the cookie and the undecoded body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The cookie, echoed in the reply.
    pub cookie: &'a [u8],
    /// The body after the single space.
    pub body: &'a [u8],
}

/// Errors while framing or decoding a message.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// No space separating cookie and body, or an empty cookie.
    #[error("no cookie in message")]
    NoCookie,
    /// The bencode body did not decode.
    #[error("Could not decode bencode dictionary: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// The JSON body did not decode.
    #[error("Failed to parse JSON document: {0}")]
    Json(#[from] json::JsonError),
    /// The body decoded but is not a dictionary.
    #[error("Could not decode bencode dictionary: top-level value is not a dictionary")]
    NotADictionary,
}

impl<'a> Frame<'a> {
    /// Splits a datagram into cookie and body.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, FrameError> {
        let space = datagram
            .iter()
            .position(|&b| b == b' ')
            .ok_or(FrameError::NoCookie)?;
        let cookie = datagram.get(..space).unwrap_or_default();
        let body = datagram.get(space + 1..).unwrap_or_default();
        if cookie.is_empty() {
            return Err(FrameError::NoCookie);
        }
        Ok(Frame { cookie, body })
    }

    /// The body's encoding, judged by its first byte as rtpengine does.
    pub fn encoding(&self) -> Encoding {
        if self.body.first() == Some(&b'{') {
            Encoding::Json
        } else {
            Encoding::Bencode
        }
    }

    /// Decodes the body into a dictionary.
    pub fn decode(&self) -> Result<Value<'a>, FrameError> {
        let v = match self.encoding() {
            Encoding::Json => json::from_json(self.body)?,
            Encoding::Bencode => bencode::decode(self.body)?,
        };
        match v {
            Value::Dict(_) => Ok(v),
            _ => Err(FrameError::NotADictionary),
        }
    }
}

/// Serialises `<cookie> <body>` with the body in `encoding`.
pub fn encode_message(cookie: &[u8], body: &Value<'_>, encoding: Encoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(cookie.len() + 64);
    out.extend_from_slice(cookie);
    out.push(b' ');
    match encoding {
        Encoding::Bencode => body.encode_into(&mut out),
        Encoding::Json => out.extend_from_slice(json::to_json(body).as_bytes()),
    }
    out
}

/// Result of looking for one complete message at the start of a TCP stream
/// buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// Not enough bytes yet.
    Incomplete,
    /// A `<cookie> <body>` message occupying `..message_len` of the buffer;
    /// `consumed` bytes (including a JSON body's terminating newline) can be
    /// dropped.
    Complete {
        /// Length of the message at the start of the buffer.
        message_len: usize,
        /// Bytes to drop from the buffer.
        consumed: usize,
    },
}

/// Largest TCP message accepted.
pub const MAX_STREAM_MESSAGE: usize = 1 << 20;

/// Finds one message in a TCP stream buffer. rtpengine's TCP ng framing is
/// the datagram format back to back: `<cookie> <dict>`, the bencode
/// dictionary being self-delimiting (a JSON body must end with a newline).
pub fn split_stream(buf: &[u8]) -> Result<StreamFrame, FrameError> {
    let Some(space) = buf.iter().position(|&b| b == b' ') else {
        if buf.len() > 256 {
            return Err(FrameError::NoCookie);
        }
        return Ok(StreamFrame::Incomplete);
    };
    if space == 0 {
        return Err(FrameError::NoCookie);
    }
    let body = buf.get(space + 1..).unwrap_or_default();
    if body.first() == Some(&b'{') {
        return match body.iter().position(|&b| b == b'\n') {
            Some(nl) => Ok(StreamFrame::Complete {
                message_len: space + 1 + nl,
                consumed: space + 2 + nl,
            }),
            None if buf.len() > MAX_STREAM_MESSAGE => Err(FrameError::NoCookie),
            None => Ok(StreamFrame::Incomplete),
        };
    }
    match bencode::decode_prefix(body) {
        Ok((_, used)) => Ok(StreamFrame::Complete {
            message_len: space + 1 + used,
            consumed: space + 1 + used,
        }),
        Err(bencode::BencodeError::UnexpectedEnd(_))
        | Err(bencode::BencodeError::LengthOutOfRange { .. })
            if buf.len() <= MAX_STREAM_MESSAGE =>
        {
            Ok(StreamFrame::Incomplete)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_datagrams() {
        let f = Frame::parse(b"5323_1 d7:command4:pinge").unwrap();
        assert_eq!(f.cookie, b"5323_1");
        assert_eq!(f.encoding(), Encoding::Bencode);
        let v = f.decode().unwrap();
        assert_eq!(v.get("command").unwrap().as_str(), Some("ping"));
        assert!(matches!(
            Frame::parse(b"nocookie"),
            Err(FrameError::NoCookie)
        ));
        assert!(matches!(Frame::parse(b" d4:xe"), Err(FrameError::NoCookie)));
        let j = Frame::parse(br#"c {"command":"ping"}"#).unwrap();
        assert_eq!(j.encoding(), Encoding::Json);
        assert!(j.decode().is_ok());
        let e = Frame::parse(b"c d7:commande")
            .unwrap()
            .decode()
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Could not decode bencode dictionary")
        );
        assert!(matches!(
            Frame::parse(b"c li1ee").unwrap().decode(),
            Err(FrameError::NotADictionary)
        ));
    }

    #[test]
    fn encodes_replies_in_request_encoding() {
        let body = Value::dict().with("result", Value::str("pong"));
        assert_eq!(
            encode_message(b"5323_1", &body, Encoding::Bencode),
            b"5323_1 d6:result4:ponge"
        );
        assert_eq!(
            encode_message(b"x", &body, Encoding::Json),
            br#"x {"result":"pong"}"#
        );
    }

    #[test]
    fn splits_tcp_streams() {
        // rtpengine treats "25:abc" as the cookie: no length prefix framing.
        let msg = b"25:abc d7:command4:pinge";
        assert_eq!(
            split_stream(msg).unwrap(),
            StreamFrame::Complete {
                message_len: 24,
                consumed: 24
            }
        );
        assert_eq!(split_stream(&msg[..10]).unwrap(), StreamFrame::Incomplete);
        let two = b"abc d7:command4:pingeabd d";
        assert_eq!(
            split_stream(two).unwrap(),
            StreamFrame::Complete {
                message_len: 21,
                consumed: 21
            }
        );
        assert_eq!(
            split_stream(b"abc d7:comm").unwrap(),
            StreamFrame::Incomplete
        );
        assert!(split_stream(b"abc x").is_err());
        let json = b"k {\"command\":\"ping\"}\nrest";
        assert_eq!(
            split_stream(json).unwrap(),
            StreamFrame::Complete {
                message_len: 20,
                consumed: 21
            }
        );
    }
}
