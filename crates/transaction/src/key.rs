//! Transaction keys (RFC 3261 §17.1.3, §17.2.3).
//!
//! A key is the matching fields serialised into one byte string, each field
//! length-prefixed so that no two field lists produce the same bytes. Keys
//! are built into a reusable scratch buffer, so a lookup allocates nothing;
//! only a new transaction copies its key once.

use crate::message::{MessageInfo, StartLine};

/// Which matching rule produced a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRule {
    /// §17.2.3: branch with the magic cookie + sent-by + method.
    Rfc3261,
    /// §17.2.3 last paragraph: the RFC 2543 fallback (Request-URI, From
    /// tag, Call-ID, CSeq number, top Via; To tag checked separately).
    Rfc2543,
}

const SERVER_3261: u8 = 1;
const SERVER_2543: u8 = 2;
const CLIENT: u8 = 3;

/// The method a server transaction is keyed under: an ACK matches the INVITE
/// transaction it acknowledges; every other method (CANCEL included) is its
/// own transaction.
pub(crate) fn server_method(method: &str) -> &str {
    if method == "ACK" { "INVITE" } else { method }
}

fn field(buf: &mut Vec<u8>, value: &[u8]) {
    // Header values are bounded by the datagram or frame size; saturate
    // rather than truncate silently if something absurd comes through.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(value);
}

fn field_lowercase(buf: &mut Vec<u8>, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend(value.iter().map(u8::to_ascii_lowercase));
}

/// Writes the server transaction key of a request into `buf`, matching as if
/// its method were `method` (used to look up the INVITE for an ACK or a
/// CANCEL). Returns the rule used; `None` for a response.
pub(crate) fn server_key(
    buf: &mut Vec<u8>,
    info: &MessageInfo<'_>,
    method: &str,
) -> Option<KeyRule> {
    let StartLine::Request { uri, .. } = info.start else {
        return None;
    };
    buf.clear();
    if let Some(branch) = info.rfc3261_branch() {
        buf.push(SERVER_3261);
        field(buf, method.as_bytes());
        field(buf, branch.as_bytes());
        field_lowercase(buf, info.via.sent_by.as_bytes());
        Some(KeyRule::Rfc3261)
    } else {
        buf.push(SERVER_2543);
        field(buf, method.as_bytes());
        field(buf, uri.as_bytes());
        field(buf, info.from_tag.unwrap_or("").as_bytes());
        field(buf, info.call_id.as_bytes());
        buf.extend_from_slice(&info.cseq.number.to_le_bytes());
        field_lowercase(buf, info.via.sent_by.as_bytes());
        field_lowercase(buf, info.via.transport.as_bytes());
        field(buf, info.via.branch.unwrap_or("").as_bytes());
        Some(KeyRule::Rfc2543)
    }
}

/// Writes the client transaction key (§17.1.3: top Via branch + CSeq method)
/// into `buf`.
pub(crate) fn client_key(buf: &mut Vec<u8>, branch: &str, cseq_method: &str) {
    buf.clear();
    buf.push(CLIENT);
    field(buf, branch.as_bytes());
    field(buf, cseq_method.as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{CSeq, TopVia};

    fn request<'a>(method: &'a str, branch: Option<&'a str>, sent_by: &'a str) -> MessageInfo<'a> {
        MessageInfo {
            start: StartLine::Request {
                method,
                uri: "sip:bob@example.com",
            },
            via: TopVia {
                branch,
                sent_by,
                transport: "UDP",
            },
            cseq: CSeq { number: 7, method },
            call_id: "call-1",
            from_tag: Some("ft"),
            to_tag: None,
        }
    }

    fn key(info: &MessageInfo<'_>, method: &str) -> (Vec<u8>, Option<KeyRule>) {
        let mut buf = Vec::new();
        let rule = server_key(&mut buf, info, method);
        (buf, rule)
    }

    #[test]
    fn ack_matches_invite_and_cancel_does_not() {
        let invite = request("INVITE", Some("z9hG4bKa"), "h:5060");
        let ack = request("ACK", Some("z9hG4bKa"), "h:5060");
        let cancel = request("CANCEL", Some("z9hG4bKa"), "h:5060");
        let (ki, rule) = key(&invite, server_method("INVITE"));
        assert_eq!(rule, Some(KeyRule::Rfc3261));
        assert_eq!(key(&ack, server_method("ACK")).0, ki);
        assert_ne!(key(&cancel, server_method("CANCEL")).0, ki);
        // A CANCEL looks up its INVITE by matching as if it were one (§9.2).
        assert_eq!(key(&cancel, "INVITE").0, ki);
    }

    #[test]
    fn sent_by_host_is_case_insensitive_branch_is_not() {
        let a = request("BYE", Some("z9hG4bKa"), "Host.Example:5060");
        let b = request("BYE", Some("z9hG4bKa"), "host.example:5060");
        let c = request("BYE", Some("z9hG4bKA"), "host.example:5060");
        assert_eq!(key(&a, "BYE").0, key(&b, "BYE").0);
        assert_ne!(key(&b, "BYE").0, key(&c, "BYE").0);
    }

    #[test]
    fn branch_without_cookie_uses_the_2543_rule() {
        let old = request("INVITE", Some("1234"), "h");
        let none = request("INVITE", None, "h");
        assert_eq!(key(&old, "INVITE").1, Some(KeyRule::Rfc2543));
        assert_eq!(key(&none, "INVITE").1, Some(KeyRule::Rfc2543));
        assert_ne!(key(&old, "INVITE").0, key(&none, "INVITE").0);
        let mut other_cseq = old;
        other_cseq.cseq.number = 8;
        assert_ne!(key(&old, "INVITE").0, key(&other_cseq, "INVITE").0);
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        client_key(&mut a, "z9hG4bKab", "C");
        client_key(&mut b, "z9hG4bKa", "bC");
        assert_ne!(a, b);
    }

    #[test]
    fn responses_have_no_server_key() {
        let mut info = request("INVITE", Some("z9hG4bKa"), "h");
        info.start = StartLine::Response { status: 200 };
        assert_eq!(key(&info, "INVITE").1, None);
    }
}
