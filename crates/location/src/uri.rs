//! Contact URI comparison (RFC 3261 §19.1.4), good enough for real contacts:
//! scheme and host case-insensitive, user and password case-sensitive with
//! %-escapes decoded, port significant (an absent port does not equal an
//! explicit 5060), and the `transport`, `user`, `maddr`, `ttl` and `method`
//! parameters must match (present in one URI and absent in the other is a
//! mismatch). Other parameters and headers are ignored.

/// The comparable form of a contact URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactKey {
    canonical: String,
}

const SIGNIFICANT: [&str; 5] = ["transport", "user", "maddr", "ttl", "method"];

impl ContactKey {
    /// Parse a contact URI (angle brackets and a display name are tolerated).
    /// A URI that is not `sip:`/`sips:` compares by its exact bytes.
    pub fn parse(raw: &str) -> Self {
        let mut canonical = String::with_capacity(raw.len() + 8);
        write_canonical(&mut canonical, raw);
        Self { canonical }
    }

    /// The canonical string: equal strings ⇔ equivalent URIs.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
}

/// Appends the canonical form of the contact URI `raw` (what
/// [`ContactKey::canonical`] returns) to `out`.
pub(crate) fn write_canonical(out: &mut String, raw: &str) {
    let uri = strip_brackets(raw.trim());
    let start = out.len();
    if canonicalize(out, uri).is_none() {
        out.truncate(start);
        out.push_str("raw:");
        out.push_str(uri);
    }
}

fn strip_brackets(s: &str) -> &str {
    match (s.find('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => s.get(open + 1..close).unwrap_or(s),
        _ => s,
    }
}

/// Appends `text` to `out`, ASCII letters lowered.
fn push_lower(out: &mut String, text: &str) {
    let start = out.len();
    out.push_str(text);
    if let Some(tail) = out.get_mut(start..) {
        tail.make_ascii_lowercase();
    }
}

/// Appends the canonical form of a `sip:`/`sips:` URI to `out`; `None`
/// (with `out` partly written) for anything else.
fn canonicalize(out: &mut String, uri: &str) -> Option<()> {
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        "sip"
    } else if scheme.eq_ignore_ascii_case("sips") {
        "sips"
    } else {
        return None;
    };
    // Headers are not compared.
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (rest.get(..at)?, rest.get(at + 1..)?),
        None => ("", rest),
    };
    let (hostport, params) = match hostpart.find(';') {
        Some(i) => (hostpart.get(..i)?, hostpart.get(i + 1..)?),
        None => (hostpart, ""),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return None;
    }
    out.push_str(scheme);
    out.push(':');
    push_decoded(out, userinfo);
    out.push('@');
    push_lower(out, host);
    if let Some(port) = port {
        out.push(':');
        out.push_str(port);
    }
    // The last occurrence of a parameter counts.
    let mut found: [Option<&str>; 5] = Default::default();
    for param in params.split(';') {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let name = name.trim();
        if let Some(slot) = SIGNIFICANT
            .iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .and_then(|i| found.get_mut(i))
        {
            *slot = Some(value.trim());
        }
    }
    for (name, value) in SIGNIFICANT.iter().zip(found.iter()) {
        if let Some(value) = value {
            out.push(';');
            out.push_str(name);
            out.push('=');
            let at = out.len();
            push_decoded(out, value);
            if let Some(tail) = out.get_mut(at..) {
                tail.make_ascii_lowercase();
            }
        }
    }
    Some(())
}

fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = hostport.get(..close + 2)?;
        let after = hostport.get(close + 2..)?;
        let port = after.strip_prefix(':').filter(|p| !p.is_empty());
        return Some((host, port.map(trim_port)));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() => Some((h, Some(trim_port(p)))),
        Some((h, _)) => Some((h, None)),
        None => Some((hostport, None)),
    }
}

/// `05060` and `5060` are the same port.
fn trim_port(p: &str) -> &str {
    let t = p.trim_start_matches('0');
    if t.is_empty() { "0" } else { t }
}

/// Appends `s` with its %-escapes decoded (invalid UTF-8 in the result
/// replaced) to `out`.
fn push_decoded(out: &mut String, s: &str) {
    if s.contains('%') {
        out.push_str(&percent_decode(s));
    } else {
        out.push_str(s);
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        ContactKey::parse(a) == ContactKey::parse(b)
    }

    #[test]
    fn rfc3261_equivalent_examples() {
        assert!(eq(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;newparam=5"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com"
        ));
        assert!(eq(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ));
        assert!(eq(
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com"
        ));
        assert!(eq("<sip:a@10.0.0.1:5060>", "sip:a@10.0.0.1:05060"));
        assert!(eq("\"Alice\" <sip:a@h>", "sip:a@H"));
        assert!(eq("sip:a@[2001:DB8::1]:5070", "sip:a@[2001:db8::1]:5070"));
    }

    #[test]
    fn rfc3261_not_equivalent_examples() {
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq(
            "sip:bob@biloxi.com",
            "sip:bob@biloxi.com;transport=udp"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
        assert!(!eq(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;user=phone"
        ));
        assert!(!eq("sip:a@h:5060", "sip:a@h:5061"));
        assert!(!eq("sip:a@[2001:db8::1]", "sip:a@[2001:db8::1]:5060"));
    }

    #[test]
    fn garbage_never_panics_and_compares_bytes() {
        for s in [
            "",
            ":",
            "sip:",
            "sip:@",
            "sip:a@[",
            "sip:a@[::1",
            "%",
            "sip:%zz@h",
            "tel:+49",
            "sip:a@h:;;=;",
        ] {
            let _ = ContactKey::parse(s);
        }
        assert!(eq("tel:+4930", "tel:+4930"));
        assert!(!eq("tel:+4930", "tel:+4931"));
    }
}
