//! One value of a datagram read without framing it, for receive-path
//! shortcuts whose decision costs less than a full parse would. Anything
//! unusual gives `None`, and the caller takes the full path.

use memchr::memchr;

/// The To tag of a datagram that starts as an ACK request (`ACK `), read
/// from the first `To`/`t` header of its header section. `None` when the
/// datagram is no ACK, has no To header (or it has no non-empty tag), or
/// its header section is unusual: a folded line, a line without a colon,
/// no end, or a To value that is not UTF-8.
pub fn peek_ack_to_tag(data: &[u8]) -> Option<&str> {
    if !data.starts_with(b"ACK ") {
        return None;
    }
    let mut pos = memchr(b'\n', data)? + 1;
    loop {
        let rest = data.get(pos..)?;
        let end = memchr(b'\n', rest)?;
        let line = rest.get(..end)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // the end of the header section
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return None; // a folded line
        }
        let colon = memchr(b':', line)?;
        let name = line.get(..colon)?.trim_ascii_end();
        if name.eq_ignore_ascii_case(b"to") || name.eq_ignore_ascii_case(b"t") {
            if matches!(rest.get(end + 1), Some(b' ' | b'\t')) {
                return None; // the value goes on on a folded line
            }
            let value = std::str::from_utf8(line.get(colon + 1..)?).ok()?;
            return crate::name_addr::header_params(value)?
                .get("tag")
                .filter(|t| !t.is_empty());
        }
        pos += end + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    const ACK: &str = "ACK sip:b@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: <sip:a@example.com>;tag=f1\r\n\
        TO_LINE\r\n\
        Call-ID: c1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";

    fn with_to(line: &str) -> String {
        ACK.replace("TO_LINE", line)
    }

    #[test]
    fn reads_what_the_full_parse_reads() {
        for (line, tag) in [
            ("To: <sip:b@example.com>;tag=vx0011", Some("vx0011")),
            ("t: sip:b@example.com;tag=x", Some("x")),
            (
                "TO :  \"B; <x>\" <sip:b@example.com;tag=no> ; TAG = y ",
                Some("y"),
            ),
            ("To: <sip:b@example.com;tag=inside>", None),
            ("To: <sip:b@example.com>", None),
            ("To: <sip:b@example.com>;tag=", None),
        ] {
            let text = with_to(line);
            assert_eq!(peek_ack_to_tag(text.as_bytes()), tag, "{line}");
            let full = Message::parse(Bytes::from(text)).unwrap();
            assert_eq!(full.to_tag(), tag, "{line}");
        }
    }

    #[test]
    fn anything_unusual_takes_the_full_path() {
        for text in [
            with_to("To: <sip:b@example.com>;tag=x").replace("ACK ", "INVITE "),
            with_to("To: <sip:b@example.com>\r\n ;tag=x"),
            with_to("To: <sip:b@example.com>;\r\n tag=x"),
            with_to("X-Folded: a\r\n To: <sip:b@example.com>;tag=x"),
            with_to("Broken line\r\nTo: <sip:b@example.com>;tag=x"),
            with_to("Subject: x").replace("\r\n\r\n", "\r\n\r\nTo: <sip:b@e>;tag=body\r\n"),
            "ACK sip:b@example.com SIP/2.0\r\nTo: <sip:b@e>;tag=x".to_string(),
            "ACK sip:b@example.com SIP/2.0".to_string(),
            String::new(),
        ] {
            assert_eq!(peek_ack_to_tag(text.as_bytes()), None, "{text:?}");
        }
        let mut bytes = with_to("To: <sip:b@example.com>;tag=x").into_bytes();
        let at = bytes.windows(6).position(|w| w == b"To: <s").unwrap();
        bytes[at + 5] = 0xff;
        assert_eq!(peek_ack_to_tag(&bytes), None);
    }
}
