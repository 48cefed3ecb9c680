//! To tags of the final responses the node sends without a transaction
//! (a 503 under overload, a 420, the 200 to an OPTIONS ping...).
//!
//! A tag is derived from the request (its Call-ID, From and first Via
//! header values as received, which a retransmission repeats byte for
//! byte; nothing is parsed), so a retransmitted request gets the same
//! answer, and it carries a MAC of itself under a per-process key, so the
//! ACK that answers it is recognised from the tag alone: under overload
//! there is one such ACK per refused INVITE, and
//! [`StatelessTags::is_ours`] on the To tag (read with
//! [`voxline_sip::peek_ack_to_tag`]) lets the node drop it without framing
//! it. An ACK with such a tag acknowledges a final response that
//! created no dialog (RFC 3261 §17.1.1.3: the ACK of a non-2xx is hop by
//! hop), so it ends here whatever else it carries; another node's tags
//! (another key) fail the check and take the full path.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use voxline_sip::{HeaderName, RequestRef};

const PREFIX: &str = "vx";
/// Hex digits after the prefix: 8 of request hash, 8 of MAC.
const DIGITS: usize = 16;

/// Makes and recognises stateless To tags.
#[derive(Debug, Default)]
pub(crate) struct StatelessTags {
    key: RandomState,
}

impl StatelessTags {
    /// Tags under a fresh random key.
    pub(crate) fn new() -> StatelessTags {
        StatelessTags::default()
    }

    /// The To tag for a stateless final response to `request`.
    pub(crate) fn tag_for<'a>(&self, request: impl Into<RequestRef<'a>>) -> String {
        let request = request.into();
        let mut h = self.key.build_hasher();
        for name in [HeaderName::CallId, HeaderName::From, HeaderName::Via] {
            h.write(request.header(name).unwrap_or("").as_bytes());
            h.write_u8(0);
        }
        let id = h.finish() as u32;
        let value = (u64::from(id) << 32) | u64::from(self.mac(id));
        let mut tag = String::with_capacity(PREFIX.len() + DIGITS);
        tag.push_str(PREFIX);
        for i in (0..DIGITS).rev() {
            let d = ((value >> (4 * i)) & 0xf) as u32;
            tag.push(char::from_digit(d, 16).unwrap_or('0'));
        }
        tag
    }

    /// Whether `tag` is one [`tag_for`](Self::tag_for) gave in this
    /// process.
    pub(crate) fn is_ours(&self, tag: &str) -> bool {
        let Some(hex) = tag.strip_prefix(PREFIX) else {
            return false;
        };
        if hex.len() != DIGITS || !hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return false;
        }
        let Ok(value) = u64::from_str_radix(hex, 16) else {
            return false;
        };
        self.mac((value >> 32) as u32) == value as u32
    }

    fn mac(&self, id: u32) -> u32 {
        let mut h = self.key.build_hasher();
        h.write(b"stateless-tag-mac");
        h.write_u32(id);
        h.finish() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use voxline_sip::Message;

    fn request(call_id: &str, from_tag: &str, branch: &str) -> Message {
        Message::parse(Bytes::from(format!(
            "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch={branch}\r\n\
             From: <sip:a@example.com>;tag={from_tag}\r\nTo: <sip:b@example.com>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )))
        .unwrap()
    }

    #[test]
    fn a_request_always_gets_the_same_tag_and_others_another() {
        let tags = StatelessTags::new();
        let t = tags.tag_for(&request("c1", "f1", "z9hG4bK1"));
        assert_eq!(t, tags.tag_for(&request("c1", "f1", "z9hG4bK1")));
        assert_eq!(t.len(), 18);
        assert!(t.starts_with("vx"));
        for other in [
            request("c2", "f1", "z9hG4bK1"),
            request("c1", "f2", "z9hG4bK1"),
            request("c1", "f1", "z9hG4bK2"),
            // The fields are delimited: moving bytes between them counts.
            request("c1f", "1", "z9hG4bK1"),
        ] {
            assert_ne!(t, tags.tag_for(&other));
        }
    }

    #[test]
    fn a_request_only_framed_gets_its_message_tag() {
        let tags = StatelessTags::new();
        let msg = request("c1", "f1", "z9hG4bK1");
        let framed =
            voxline_sip::FramedMessage::frame(msg.to_bytes(), &voxline_sip::Limits::DEFAULT)
                .unwrap();
        assert_eq!(tags.tag_for(&framed), tags.tag_for(&msg));
    }

    #[test]
    fn only_this_key_recognises_its_tags() {
        let tags = StatelessTags::new();
        let t = tags.tag_for(&request("c1", "f1", "z9hG4bK1"));
        assert!(tags.is_ours(&t));
        assert!(!StatelessTags::new().is_ours(&t));
        // A changed digit, the MAC or the id, is not ours.
        for i in 2..t.len() {
            let mut forged = t.clone().into_bytes();
            forged[i] = if forged[i] == b'0' { b'1' } else { b'0' };
            assert!(!tags.is_ours(&String::from_utf8(forged).unwrap()));
        }
        for bad in [
            "",
            "vx",
            "vx0",
            "xx0123456789abcdef",
            &t.to_uppercase(),
            &format!("{t}0"),
        ] {
            assert!(!tags.is_ours(bad), "{bad}");
        }
        // from_str_radix would take a sign; the check does not.
        assert!(!tags.is_ours(&format!("vx+{}", &t[3..])));
    }
}
