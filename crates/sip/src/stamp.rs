//! [`ReceivedStamp`]: the `received` and `rport` values a request's top Via
//! gets from where the request came from (RFC 3261 §18.2.1, RFC 3581 §4).
//!
//! A received [`Message`](crate::Message) keeps its bytes as received and
//! carries the stamp beside them ([`Message::with_received`](crate::Message::with_received)).
//! Every copy that leaves the node writes it: a response built with
//! [`ResponseBuilder`](crate::ResponseBuilder) copies the top Via stamped,
//! and an [`Editor`](crate::Editor) (a forwarded request) starts with the
//! stamp as its first edit. Written into the request on arrival instead, it
//! cost a copy of every request, and its framing, before anything was
//! decided about it.

use std::io::Write;
use std::net::IpAddr;

/// The longest address text: an IPv6 address with an embedded IPv4 one.
const ADDRESS_MAX: usize = 45;

/// The `received` address and `rport` port to write into a received
/// request's top Via.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedStamp {
    /// `received`'s text, in `address[..len]`.
    address: [u8; ADDRESS_MAX],
    len: u8,
    rport: Option<u16>,
}

impl ReceivedStamp {
    /// A stamp with `received` (when given) and a value for an empty
    /// `rport` (when given). `None` when there is nothing to write.
    pub fn new(received: Option<IpAddr>, rport: Option<u16>) -> Option<ReceivedStamp> {
        if received.is_none() && rport.is_none() {
            return None;
        }
        let mut stamp = ReceivedStamp {
            address: [0; ADDRESS_MAX],
            len: 0,
            rport,
        };
        match received {
            Some(IpAddr::V4(v4)) => {
                // Digit by digit: the formatting machinery cost more than
                // the rest of the stamp.
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        stamp.address[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        stamp.address[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        stamp.address[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    stamp.address[len] = b'0' + octet % 10;
                    len += 1;
                }
                stamp.len = len as u8;
            }
            Some(ip @ IpAddr::V6(_)) => {
                let mut rest = &mut stamp.address[..];
                // 45 bytes hold every IPv6 text form.
                if write!(rest, "{ip}").is_ok() {
                    stamp.len = (ADDRESS_MAX - rest.len()) as u8;
                }
            }
            None => {}
        }
        Some(stamp)
    }

    /// The `received` value, if any.
    pub fn received(&self) -> Option<&str> {
        let text = self.address.get(..usize::from(self.len))?;
        std::str::from_utf8(text).ok().filter(|t| !t.is_empty())
    }

    /// The value for an empty `rport`, if any.
    pub fn rport(&self) -> Option<u16> {
        self.rport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_text() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.9",
            "255.255.255.255",
            "::1",
            "2001:db8::42",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            let stamp = ReceivedStamp::new(Some(addr), None).unwrap();
            assert_eq!(stamp.received(), Some(addr.to_string().as_str()), "{ip}");
            assert_eq!(stamp.rport(), None);
        }
    }

    #[test]
    fn nothing_to_write_is_no_stamp() {
        assert_eq!(ReceivedStamp::new(None, None), None);
        let rport_only = ReceivedStamp::new(None, Some(5070)).unwrap();
        assert_eq!(rport_only.received(), None);
        assert_eq!(rport_only.rport(), Some(5070));
    }
}
