//! The values a registrar hands to the store (already parsed) and the
//! bindings the store hands back.

use std::net::SocketAddr;

use crate::time::Timestamp;
use crate::uri::ContactKey;

/// Longest User-Agent kept with a binding; longer values are truncated.
pub const USER_AGENT_MAX: usize = 128;
/// Longest string field accepted (contact, Call-ID, path element, params).
pub const FIELD_MAX: usize = 4096;

/// The transport a REGISTER arrived over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
    /// SIP over TLS.
    Tls,
    /// SIP over WebSocket (RFC 7118).
    Ws,
    /// SIP over secure WebSocket.
    Wss,
}

impl Transport {
    pub(crate) fn code(self) -> u8 {
        match self {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
            Transport::Ws => 3,
            Transport::Wss => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            2 => Transport::Tls,
            3 => Transport::Ws,
            4 => Transport::Wss,
            _ => return None,
        })
    }

    /// Lower-case name as used in a Via header / `transport=` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// Where a REGISTER came from: needed to reach a client behind NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source {
    /// Transport of the received request.
    pub transport: Transport,
    /// Remote (client or edge) address and port the request came from.
    pub remote: SocketAddr,
    /// Local listener address that received it.
    pub local: SocketAddr,
}

/// One registered contact of an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Contact URI exactly as sent (byte-exact, without angle brackets).
    pub contact: String,
    /// Absolute expiry time.
    pub expires: Timestamp,
    /// Preference, 0..=1000 (per-mille of the Contact `q` parameter).
    pub q: u16,
    /// Call-ID of the REGISTER that last wrote this binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// Transport and addresses the REGISTER came from.
    pub source: Source,
    /// Path header URIs (RFC 3327), raw, in order.
    pub path: Vec<String>,
    /// `+sip.instance` value (RFC 5626), raw, e.g. `"<urn:uuid:...>"`.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// Other Contact header parameters, raw (e.g. `;expires=60;foo=bar`).
    pub params: String,
    /// User-Agent header, truncated to [`USER_AGENT_MAX`] bytes.
    pub user_agent: Option<String>,
    /// When this binding was last written (registration time).
    pub registered_at: Timestamp,
    /// The registrar judged the client to be behind NAT.
    pub nat: bool,
}

impl Binding {
    /// Stable identity of the binding inside its AOR (used for matching and
    /// replication): instance + reg-id for RFC 5626 clients, otherwise the
    /// RFC 3261 §19.1.4 canonical form of the contact URI.
    pub fn key(&self) -> String {
        binding_key(&self.contact, self.instance.as_deref(), self.reg_id)
    }

    /// Seconds left until expiry at `now` (for the 200 OK `expires` param).
    pub fn expires_in(&self, now: Timestamp) -> u64 {
        self.expires.secs_after(now)
    }

    /// `true` while `now` is before the expiry.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires > now
    }

    /// Does this binding match a contact of a new REGISTER (§10.3 step 7,
    /// RFC 5626 §6)?
    ///
    /// `raw` is the new contact as sent and `contact` its comparable form: a
    /// contact written byte for byte as before (a refresh) matches without
    /// being brought to that form again.
    pub(crate) fn matches(
        &self,
        raw: &str,
        contact: &ContactKey,
        instance: Option<&str>,
        reg_id: Option<u32>,
    ) -> bool {
        match (self.instance.as_deref(), instance) {
            (Some(mine), Some(theirs)) => mine == theirs && self.reg_id == reg_id,
            _ => self.contact == raw || ContactKey::parse(&self.contact) == *contact,
        }
    }
}

pub(crate) fn binding_key(contact: &str, instance: Option<&str>, reg_id: Option<u32>) -> String {
    match instance {
        Some(inst) => instance_key(inst, reg_id),
        None => {
            let mut key = String::with_capacity(contact.len() + 10);
            key.push_str("u:");
            crate::uri::write_canonical(&mut key, contact);
            key
        }
    }
}

/// [`binding_key`] of a contact already brought to its comparable form:
/// the same key without parsing the URI again.
pub(crate) fn binding_key_of(
    contact: &ContactKey,
    instance: Option<&str>,
    reg_id: Option<u32>,
) -> String {
    match instance {
        Some(inst) => instance_key(inst, reg_id),
        None => {
            let canonical = contact.canonical();
            let mut key = String::with_capacity(canonical.len() + 2);
            key.push_str("u:");
            key.push_str(canonical);
            key
        }
    }
}

fn instance_key(instance: &str, reg_id: Option<u32>) -> String {
    let mut key = String::with_capacity(instance.len() + 13);
    key.push_str("i:");
    key.push_str(instance);
    if let Some(id) = reg_id {
        key.push(';');
        push_u32(&mut key, id);
    }
    key
}

/// Appends the decimal digits of `n`.
fn push_u32(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    for &d in digits.get(i..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// One Contact of a REGISTER, as the registrar parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactUpdate {
    /// Contact URI exactly as sent (without angle brackets).
    pub uri: String,
    /// Effective expires in seconds, already clamped by the registrar;
    /// 0 removes the binding.
    pub expires: u32,
    /// Preference 0..=1000 (per-mille); values above 1000 are refused.
    pub q: u16,
    /// `+sip.instance` parameter value, raw.
    pub instance: Option<String>,
    /// `reg-id` parameter.
    pub reg_id: Option<u32>,
    /// Other Contact parameters, raw.
    pub params: String,
}

impl ContactUpdate {
    /// A contact with default q (1000 would be `q=1.0`; the registrar picks
    /// the default, this uses 1000) and no extra parameters.
    pub fn new(uri: impl Into<String>, expires: u32) -> Self {
        Self {
            uri: uri.into(),
            expires,
            q: 1000,
            instance: None,
            reg_id: None,
            params: String::new(),
        }
    }
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// Add, refresh or (expires 0) remove these contacts.
    List(Vec<ContactUpdate>),
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
}

/// One REGISTER, reduced to what the location store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Call-ID of the REGISTER.
    pub call_id: String,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// Where it came from.
    pub source: Source,
    /// Path header URIs (RFC 3327), raw, in order.
    pub path: Vec<String>,
    /// User-Agent header (truncated by the store).
    pub user_agent: Option<String>,
    /// The registrar judged the client to be behind NAT.
    pub nat: bool,
    /// The contacts, or `*`.
    pub contacts: Contacts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_by_instance_or_canonical_contact() {
        assert_eq!(
            binding_key("sip:a@h", Some("\"<urn:uuid:1>\""), Some(42)),
            "i:\"<urn:uuid:1>\";42"
        );
        assert_eq!(binding_key("sip:a@h", Some("x"), Some(0)), "i:x;0");
        assert_eq!(
            binding_key("sip:a@h", Some("x"), Some(u32::MAX)),
            format!("i:x;{}", u32::MAX)
        );
        assert_eq!(binding_key("sip:a@h", Some("x"), None), "i:x");
        assert_eq!(
            binding_key("<sip:%61@H:05060;Transport=TCP;x=y>", None, None),
            "u:sip:a@h:5060;transport=tcp"
        );
        assert_eq!(binding_key("tel:+4930", None, None), "u:raw:tel:+4930");
    }

    #[test]
    fn a_key_from_the_comparable_form_is_the_key_from_the_contact() {
        for contact in [
            "sip:a@h",
            "<sip:%61@H:05060;Transport=TCP;x=y>",
            "sips:u@[2001:db8::1]:5061;maddr=x;lr",
            "tel:+4930",
            "\"Alice\" <sip:alice@192.0.2.1;user=phone?Subject=x>",
        ] {
            let parsed = ContactKey::parse(contact);
            for (instance, reg_id) in [(None, None), (Some("\"<urn:uuid:1>\""), Some(7))] {
                assert_eq!(
                    binding_key_of(&parsed, instance, reg_id),
                    binding_key(contact, instance, reg_id),
                    "{contact} {instance:?}"
                );
            }
        }
    }
}
