//! HTTP digest authentication for SIP (RFC 2617 MD5, RFC 7616/8760 SHA-256), client side:
//! read a WWW-/Proxy-Authenticate challenge and write the Authorization header line.

use crate::writer::{Writer, WriterFull};
use md5::Digest;

/// Digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// MD5 (RFC 2617).
    #[default]
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    fn token(self) -> &'static [u8] {
        match self {
            Algorithm::Md5 => b"MD5",
            Algorithm::Sha256 => b"SHA-256",
        }
    }
}

/// The parameters of one `Digest` challenge, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Challenge<'a> {
    /// `realm`.
    pub realm: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `opaque`, if sent.
    pub opaque: Option<&'a [u8]>,
    /// Algorithm (MD5 when absent).
    pub algorithm: Algorithm,
    /// True when `qop` offers `auth`.
    pub qop_auth: bool,
}

/// Parses a challenge value (`Digest realm="..", nonce="..", ...`). Returns `None` for
/// another scheme, an algorithm other than MD5/SHA-256, or a missing realm or nonce.
pub fn parse_challenge(value: &[u8]) -> Option<Challenge<'_>> {
    let rest = value
        .strip_prefix(b"Digest")
        .or_else(|| value.strip_prefix(b"digest"))?;
    let mut c = Challenge::default();
    let mut have_realm = false;
    let mut i = 0;
    while i < rest.len() {
        // skip separators
        while i < rest.len() && (rest[i] == b',' || rest[i].is_ascii_whitespace()) {
            i += 1;
        }
        let key_start = i;
        while i < rest.len() && rest[i] != b'=' && rest[i] != b',' {
            i += 1;
        }
        let key = trim_ascii(rest.get(key_start..i)?);
        if i >= rest.len() || rest[i] != b'=' {
            continue;
        }
        i += 1;
        while i < rest.len() && rest[i].is_ascii_whitespace() {
            i += 1;
        }
        let val;
        if rest.get(i) == Some(&b'"') {
            let start = i + 1;
            let end = start + memchr::memchr(b'"', rest.get(start..)?)?;
            val = &rest[start..end];
            i = end + 1;
        } else {
            let start = i;
            while i < rest.len() && rest[i] != b',' {
                i += 1;
            }
            val = trim_ascii(&rest[start..i]);
        }
        if key.eq_ignore_ascii_case(b"realm") {
            c.realm = val;
            have_realm = true;
        } else if key.eq_ignore_ascii_case(b"nonce") {
            c.nonce = val;
        } else if key.eq_ignore_ascii_case(b"opaque") {
            c.opaque = Some(val);
        } else if key.eq_ignore_ascii_case(b"algorithm") {
            c.algorithm = if val.eq_ignore_ascii_case(b"MD5") {
                Algorithm::Md5
            } else if val.eq_ignore_ascii_case(b"SHA-256") {
                Algorithm::Sha256
            } else {
                return None;
            };
        } else if key.eq_ignore_ascii_case(b"qop") {
            c.qop_auth = val
                .split(|&b| b == b',')
                .any(|q| trim_ascii(q).eq_ignore_ascii_case(b"auth"));
        }
    }
    (have_realm && !c.nonce.is_empty()).then_some(c)
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Picks the challenge to answer: the first SHA-256 one when `prefer` is SHA-256 and one is
/// offered, otherwise the first MD5 one, otherwise the first parseable one.
pub fn choose<'a>(
    values: impl Iterator<Item = &'a [u8]> + Clone,
    prefer: Algorithm,
) -> Option<Challenge<'a>> {
    let parsed = values.filter_map(parse_challenge);
    parsed
        .clone()
        .find(|c| c.algorithm == prefer)
        .or_else(|| parsed.clone().find(|c| c.algorithm == Algorithm::Md5))
        .or_else(|| parsed.clone().next())
}

/// Credentials and request data for one Authorization header.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// User name.
    pub username: &'a [u8],
    /// Password.
    pub password: &'a [u8],
    /// Request method.
    pub method: &'a [u8],
    /// Digest URI (the Request-URI).
    pub uri: &'a [u8],
    /// Client nonce.
    pub cnonce: &'a [u8],
    /// Nonce count (1 for the first use of a nonce).
    pub nc: u32,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8; 64]) -> usize {
    let mut n = 0;
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
        n += 2;
    }
    n
}

fn hash_hex(alg: Algorithm, parts: &[&[u8]], out: &mut [u8; 64]) -> usize {
    match alg {
        Algorithm::Md5 => {
            let mut h = md5::Md5::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p);
            }
            hex_into(&h.finalize(), out)
        }
        Algorithm::Sha256 => {
            let mut h = sha2::Sha256::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p);
            }
            hex_into(&h.finalize(), out)
        }
    }
}

/// Computes the `response` value (hex) for a challenge; returns its length in `out`.
pub fn response(ch: &Challenge<'_>, cr: &Credentials<'_>, out: &mut [u8; 64]) -> usize {
    let mut ha1 = [0u8; 64];
    let n1 = hash_hex(
        ch.algorithm,
        &[cr.username, ch.realm, cr.password],
        &mut ha1,
    );
    let mut ha2 = [0u8; 64];
    let n2 = hash_hex(ch.algorithm, &[cr.method, cr.uri], &mut ha2);
    let mut nc = [0u8; 8];
    write_hex8(cr.nc, &mut nc);
    if ch.qop_auth {
        hash_hex(
            ch.algorithm,
            &[&ha1[..n1], ch.nonce, &nc, cr.cnonce, b"auth", &ha2[..n2]],
            out,
        )
    } else {
        hash_hex(ch.algorithm, &[&ha1[..n1], ch.nonce, &ha2[..n2]], out)
    }
}

fn write_hex8(v: u32, out: &mut [u8; 8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
}

/// Writes a complete `Authorization:` (or `Proxy-Authorization:` when `proxy`) header line
/// answering `ch`.
pub fn write_authorization(
    w: &mut Writer<'_>,
    proxy: bool,
    ch: &Challenge<'_>,
    cr: &Credentials<'_>,
) -> Result<(), WriterFull> {
    let mut resp = [0u8; 64];
    let n = response(ch, cr, &mut resp);
    w.put(if proxy {
        b"Proxy-Authorization: Digest username=\""
    } else {
        b"Authorization: Digest username=\""
    })?;
    w.put(cr.username)?;
    w.put(b"\", realm=\"")?;
    w.put(ch.realm)?;
    w.put(b"\", nonce=\"")?;
    w.put(ch.nonce)?;
    w.put(b"\", uri=\"")?;
    w.put(cr.uri)?;
    w.put(b"\", response=\"")?;
    w.put(&resp[..n])?;
    w.put(b"\", algorithm=")?;
    w.put(ch.algorithm.token())?;
    if ch.qop_auth {
        let mut nc = [0u8; 8];
        write_hex8(cr.nc, &mut nc);
        w.put(b", cnonce=\"")?;
        w.put(cr.cnonce)?;
        w.put(b"\", qop=auth, nc=")?;
        w.put(&nc)?;
    }
    if let Some(op) = ch.opaque {
        w.put(b", opaque=\"")?;
        w.put(op)?;
        w.put(b"\"")?;
    }
    w.put(b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 section 3.5 (HTTP example, same algorithm).
        let ch = parse_challenge(
            b"Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert!(ch.qop_auth);
        assert_eq!(ch.opaque, Some(&b"5ccc069c403ebaf9f0171e9517f40e41"[..]));
        let cr = Credentials {
            username: b"Mufasa",
            password: b"Circle Of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            cnonce: b"0a4f113b",
            nc: 1,
        };
        let mut out = [0u8; 64];
        let n = response(&ch, &cr, &mut out);
        assert_eq!(&out[..n], b"6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 section 3.9.1, SHA-256 variant.
        let ch = parse_challenge(
            b"Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let cr = Credentials {
            username: b"Mufasa",
            password: b"Circle of Life",
            method: b"GET",
            uri: b"/dir/index.html",
            cnonce: b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            nc: 1,
        };
        let mut out = [0u8; 64];
        let n = response(&ch, &cr, &mut out);
        assert_eq!(
            &out[..n],
            b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn chooses_sha256_only_when_asked_and_offered() {
        let md5 = &b"Digest realm=\"r\", nonce=\"a\""[..];
        let sha = &b"Digest realm=\"r\", nonce=\"b\", algorithm=SHA-256"[..];
        let both = [md5, sha];
        assert_eq!(
            choose(both.iter().copied(), Algorithm::Sha256)
                .unwrap()
                .nonce,
            b"b"
        );
        assert_eq!(
            choose(both.iter().copied(), Algorithm::Md5).unwrap().nonce,
            b"a"
        );
        assert_eq!(
            choose([md5].iter().copied(), Algorithm::Sha256)
                .unwrap()
                .nonce,
            b"a"
        );
        assert!(choose([&b"Basic realm=x"[..]].iter().copied(), Algorithm::Md5).is_none());
        assert!(parse_challenge(b"Digest realm=\"r\", nonce=\"a\", algorithm=SHA-512").is_none());
        assert!(parse_challenge(b"Digest realm=\"r").is_none());
    }

    #[test]
    fn writes_authorization_line() {
        let ch =
            parse_challenge(b"Digest realm=\"example.com\", nonce=\"xyz\", qop=\"auth\"").unwrap();
        let cr = Credentials {
            username: b"u00000001",
            password: b"pw",
            method: b"REGISTER",
            uri: b"sip:example.com",
            cnonce: b"0011",
            nc: 1,
        };
        let mut buf = [0u8; 400];
        let mut w = Writer::new(&mut buf);
        write_authorization(&mut w, false, &ch, &cr).unwrap();
        let s = String::from_utf8(w.written().to_vec()).unwrap();
        assert!(s.starts_with("Authorization: Digest username=\"u00000001\", realm=\"example.com\", nonce=\"xyz\", uri=\"sip:example.com\", response=\""));
        assert!(s.ends_with("algorithm=MD5, cnonce=\"0011\", qop=auth, nc=00000001\r\n"));
        let mut small = [0u8; 20];
        let mut w = Writer::new(&mut small);
        assert!(write_authorization(&mut w, true, &ch, &cr).is_err());
    }
}
