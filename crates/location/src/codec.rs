//! Compact binary encoding of bindings, shared by the memory backend's
//! packed entries, its log and snapshot records, and the Redis values.
//! Integers are LEB128 varints; strings are length-prefixed. Decoding never
//! panics on bad input: it returns [`LocationError::Corrupt`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::binding::{Binding, Source, Transport};
use crate::change::{ChangeKind, ChangeOrigin, LocationChange, RemoveReason, Version};
use crate::error::LocationError;
use crate::set::{BindingSet, Tombstone};
use crate::time::Timestamp;

/// Format byte in front of an encoded binding set.
pub const SET_FORMAT: u8 = 1;

const F_NAT: u8 = 1;
const F_INSTANCE: u8 = 2;
const F_REG_ID: u8 = 4;
const F_UA: u8 = 8;
const F_PATH: u8 = 16;
const F_PARAMS: u8 = 32;

/// Append a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a length-prefixed string.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// Append one binding.
pub fn put_binding(out: &mut Vec<u8>, b: &Binding) {
    let mut flags = 0;
    if b.nat {
        flags |= F_NAT;
    }
    if b.instance.is_some() {
        flags |= F_INSTANCE;
    }
    if b.reg_id.is_some() {
        flags |= F_REG_ID;
    }
    if b.user_agent.is_some() {
        flags |= F_UA;
    }
    if !b.path.is_empty() {
        flags |= F_PATH;
    }
    if !b.params.is_empty() {
        flags |= F_PARAMS;
    }
    out.push(flags);
    put_varint(out, b.expires.as_millis());
    // Registration time as a delta before expiry: usually 2 bytes.
    put_varint(
        out,
        b.expires
            .as_millis()
            .saturating_sub(b.registered_at.as_millis()),
    );
    put_varint(out, u64::from(b.q));
    put_varint(out, u64::from(b.cseq));
    put_str(out, &b.contact);
    put_str(out, &b.call_id);
    out.push(b.source.transport.code());
    put_addr(out, &b.source.remote);
    put_addr(out, &b.source.local);
    if let Some(i) = &b.instance {
        put_str(out, i);
    }
    if let Some(r) = b.reg_id {
        put_varint(out, u64::from(r));
    }
    if let Some(ua) = &b.user_agent {
        put_str(out, ua);
    }
    if !b.path.is_empty() {
        put_varint(out, b.path.len() as u64);
        for p in &b.path {
            put_str(out, p);
        }
    }
    if !b.params.is_empty() {
        put_str(out, &b.params);
    }
}

/// Encode a whole binding set: format byte, binding count, bindings, then
/// (only if there are any) tombstone count and tombstones.
pub fn encode_set(set: &BindingSet) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + set.bindings.len() * 160);
    encode_set_into(&mut out, set);
    out
}

/// Appends the encoding of [`encode_set`] to `out`.
pub fn encode_set_into(out: &mut Vec<u8>, set: &BindingSet) {
    out.push(SET_FORMAT);
    put_varint(out, set.bindings.len() as u64);
    for b in &set.bindings {
        put_binding(out, b);
    }
    if !set.tombstones.is_empty() {
        put_varint(out, set.tombstones.len() as u64);
        for t in &set.tombstones {
            put_str(out, &t.key);
            put_str(out, &t.version.call_id);
            put_varint(out, u64::from(t.version.cseq));
            put_varint(out, t.version.at.as_millis());
            put_varint(out, t.until.as_millis());
        }
    }
}

/// Decode a binding set written by [`encode_set`].
pub fn decode_set(bytes: &[u8]) -> Result<BindingSet, LocationError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SET_FORMAT {
        return Err(LocationError::Corrupt("unknown binding set format"));
    }
    let n = r.varint()?;
    let mut set = BindingSet::default();
    for _ in 0..n {
        set.bindings.push(r.binding()?);
    }
    if !r.is_empty() {
        let n = r.varint()?;
        for _ in 0..n {
            let key = r.str()?.to_owned();
            let call_id = r.str()?.to_owned();
            let cseq = r.small()?;
            let at = Timestamp::from_millis(r.varint()?);
            let until = Timestamp::from_millis(r.varint()?);
            set.tombstones.push(Tombstone {
                key,
                version: Version { call_id, cseq, at },
                until,
            });
        }
    }
    if !r.is_empty() {
        return Err(LocationError::Corrupt("trailing bytes after binding set"));
    }
    Ok(set)
}

/// What [`scan_set`] learns without decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetScan {
    /// Number of bindings.
    pub bindings: u64,
    /// Earliest binding expiry or tombstone end, in ms.
    pub first_due: Option<u64>,
}

/// Validate an encoded set and summarize it without allocating.
pub fn scan_set(bytes: &[u8]) -> Result<SetScan, LocationError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SET_FORMAT {
        return Err(LocationError::Corrupt("unknown binding set format"));
    }
    let bindings = r.varint()?;
    let mut first: Option<u64> = None;
    let mut due = |t: u64| first = Some(first.map_or(t, |f| f.min(t)));
    for _ in 0..bindings {
        due(r.skip_binding()?);
    }
    if !r.is_empty() {
        let n = r.varint()?;
        for _ in 0..n {
            r.str()?;
            r.str()?;
            r.varint()?;
            r.varint()?;
            due(r.varint()?);
        }
    }
    if !r.is_empty() {
        return Err(LocationError::Corrupt("trailing bytes after binding set"));
    }
    Ok(SetScan {
        bindings,
        first_due: first,
    })
}

/// Number of bindings of an encoded set (reads only its header).
pub fn set_len(bytes: &[u8]) -> Result<u64, LocationError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != SET_FORMAT {
        return Err(LocationError::Corrupt("unknown binding set format"));
    }
    r.varint()
}

/// Format byte in front of an encoded change.
pub const CHANGE_FORMAT: u8 = 1;

fn reason_code(r: RemoveReason) -> u8 {
    match r {
        RemoveReason::Unregistered => 0,
        RemoveReason::Replaced => 1,
        RemoveReason::Expired => 2,
        RemoveReason::Dropped => 3,
        RemoveReason::Admin => 4,
    }
}

fn reason_from(code: u8) -> Result<RemoveReason, LocationError> {
    Ok(match code {
        0 => RemoveReason::Unregistered,
        1 => RemoveReason::Replaced,
        2 => RemoveReason::Expired,
        3 => RemoveReason::Dropped,
        4 => RemoveReason::Admin,
        _ => return Err(LocationError::Corrupt("bad removal reason")),
    })
}

/// Encode a change for shipping to a peer site (the replicator's wire
/// format; [`decode_change`] reverses it).
pub fn encode_change(c: &LocationChange) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    out.push(CHANGE_FORMAT);
    put_str(&mut out, &c.aor);
    put_str(&mut out, &c.key);
    out.push(match c.origin {
        ChangeOrigin::Local => 0,
        ChangeOrigin::Replicated => 1,
    });
    match &c.kind {
        ChangeKind::Upsert(b) => {
            out.push(0);
            put_binding(&mut out, b);
        }
        ChangeKind::Remove { version, reason } => {
            out.push(1);
            put_str(&mut out, &version.call_id);
            put_varint(&mut out, u64::from(version.cseq));
            put_varint(&mut out, version.at.as_millis());
            out.push(reason_code(*reason));
        }
    }
    out
}

/// Decode a change written by [`encode_change`]; never panics.
pub fn decode_change(bytes: &[u8]) -> Result<LocationChange, LocationError> {
    let mut r = Reader::new(bytes);
    if r.u8()? != CHANGE_FORMAT {
        return Err(LocationError::Corrupt("unknown change format"));
    }
    let aor = r.str()?.to_owned();
    let key = r.str()?.to_owned();
    let origin = match r.u8()? {
        0 => ChangeOrigin::Local,
        1 => ChangeOrigin::Replicated,
        _ => return Err(LocationError::Corrupt("bad change origin")),
    };
    let kind = match r.u8()? {
        0 => ChangeKind::Upsert(Box::new(r.binding()?)),
        1 => {
            let call_id = r.str()?.to_owned();
            let cseq = r.small()?;
            let at = Timestamp::from_millis(r.varint()?);
            let reason = reason_from(r.u8()?)?;
            ChangeKind::Remove {
                version: Version { call_id, cseq, at },
                reason,
            }
        }
        _ => return Err(LocationError::Corrupt("bad change kind")),
    };
    if !r.is_empty() {
        return Err(LocationError::Corrupt("trailing bytes after change"));
    }
    Ok(LocationChange {
        aor,
        key,
        kind,
        origin,
    })
}

/// A bounds-checked cursor over encoded bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

const SHORT: LocationError = LocationError::Corrupt("truncated record");

impl<'a> Reader<'a> {
    /// Read from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Nothing left.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], LocationError> {
        if n > self.buf.len() {
            return Err(SHORT);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Next byte.
    pub fn u8(&mut self) -> Result<u8, LocationError> {
        let (&b, tail) = self.buf.split_first().ok_or(SHORT)?;
        self.buf = tail;
        Ok(b)
    }

    /// Next varint.
    pub fn varint(&mut self) -> Result<u64, LocationError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(LocationError::Corrupt("varint too long"))
    }

    fn small<T: TryFrom<u64>>(&mut self) -> Result<T, LocationError> {
        T::try_from(self.varint()?).map_err(|_| LocationError::Corrupt("integer out of range"))
    }

    /// Next length-prefixed string slice.
    pub fn str(&mut self) -> Result<&'a str, LocationError> {
        std::str::from_utf8(self.str_bytes()?).map_err(|_| LocationError::Corrupt("invalid utf-8"))
    }

    /// Next length-prefixed string as bytes, its UTF-8 unchecked (for
    /// bytes that were a `&str` when written, compared as bytes).
    pub fn str_bytes(&mut self) -> Result<&'a [u8], LocationError> {
        let n: usize = self.small()?;
        self.bytes(n)
    }

    fn addr(&mut self) -> Result<SocketAddr, LocationError> {
        let ip = match self.u8()? {
            4 => {
                let o: [u8; 4] = self.bytes(4)?.try_into().map_err(|_| SHORT)?;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = self.bytes(16)?.try_into().map_err(|_| SHORT)?;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return Err(LocationError::Corrupt("bad address family")),
        };
        let p: [u8; 2] = self.bytes(2)?.try_into().map_err(|_| SHORT)?;
        Ok(SocketAddr::new(ip, u16::from_be_bytes(p)))
    }

    fn skip_addr(&mut self) -> Result<(), LocationError> {
        let n = match self.u8()? {
            4 => 4,
            6 => 16,
            _ => return Err(LocationError::Corrupt("bad address family")),
        };
        self.bytes(n + 2).map(|_| ())
    }

    /// Skip one binding without allocating; returns its expiry (ms).
    pub fn skip_binding(&mut self) -> Result<u64, LocationError> {
        let flags = self.u8()?;
        let expires = self.varint()?;
        for _ in 0..3 {
            self.varint()?;
        }
        self.str()?;
        self.str()?;
        Transport::from_code(self.u8()?).ok_or(LocationError::Corrupt("bad transport"))?;
        self.skip_addr()?;
        self.skip_addr()?;
        if flags & F_INSTANCE != 0 {
            self.str()?;
        }
        if flags & F_REG_ID != 0 {
            self.varint()?;
        }
        if flags & F_UA != 0 {
            self.str()?;
        }
        if flags & F_PATH != 0 {
            let n = self.varint()?;
            for _ in 0..n.min(1024) {
                self.str()?;
            }
        }
        if flags & F_PARAMS != 0 {
            self.str()?;
        }
        Ok(expires)
    }

    /// Next binding.
    pub fn binding(&mut self) -> Result<Binding, LocationError> {
        let flags = self.u8()?;
        let expires = self.varint()?;
        let age = self.varint()?;
        let q = self.small()?;
        let cseq = self.small()?;
        let contact = self.str()?.to_owned();
        let call_id = self.str()?.to_owned();
        let transport =
            Transport::from_code(self.u8()?).ok_or(LocationError::Corrupt("bad transport"))?;
        let remote = self.addr()?;
        let local = self.addr()?;
        let instance = if flags & F_INSTANCE != 0 {
            Some(self.str()?.to_owned())
        } else {
            None
        };
        let reg_id = if flags & F_REG_ID != 0 {
            Some(self.small()?)
        } else {
            None
        };
        let user_agent = if flags & F_UA != 0 {
            Some(self.str()?.to_owned())
        } else {
            None
        };
        let mut path = Vec::new();
        if flags & F_PATH != 0 {
            let n: usize = self.small()?;
            for _ in 0..n.min(1024) {
                path.push(self.str()?.to_owned());
            }
        }
        let params = if flags & F_PARAMS != 0 {
            self.str()?.to_owned()
        } else {
            String::new()
        };
        Ok(Binding {
            contact,
            expires: Timestamp::from_millis(expires),
            q,
            call_id,
            cseq,
            source: Source {
                transport,
                remote,
                local,
            },
            path,
            instance,
            reg_id,
            params,
            user_agent,
            registered_at: Timestamp::from_millis(expires.saturating_sub(age)),
            nat: flags & F_NAT != 0,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A binding with every optional field set.
    pub(crate) fn sample(i: u32) -> Binding {
        Binding {
            contact: format!("sip:u{i:08}@192.0.2.10:5060;transport=udp"),
            expires: Timestamp::from_secs(1_800_000_000 + u64::from(i)),
            q: 500,
            call_id: format!("{i:08}-1111-2222-3333-444455556666"),
            cseq: 7 + i,
            source: Source {
                transport: Transport::Tls,
                remote: "[2001:db8::7]:40000".parse().unwrap(),
                local: "192.0.2.1:5061".parse().unwrap(),
            },
            path: vec!["<sip:edge1.example.com;lr>".into()],
            instance: Some("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"".into()),
            reg_id: Some(1),
            params: ";+sip.instance=\"x\";ob".into(),
            user_agent: Some("Phone/1.0 ü".into()),
            registered_at: Timestamp::from_secs(1_799_999_000),
            nat: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;

    #[test]
    fn round_trip_full_and_minimal() {
        let full = sample(3);
        let mut minimal = sample(4);
        minimal.path.clear();
        minimal.instance = None;
        minimal.reg_id = None;
        minimal.user_agent = None;
        minimal.params.clear();
        minimal.nat = false;
        let mut set = BindingSet::from_bindings(vec![full, minimal]);
        let bytes = encode_set(&set);
        assert_eq!(decode_set(&bytes).unwrap(), set);
        assert_eq!(
            decode_set(&encode_set(&BindingSet::default())).unwrap(),
            BindingSet::default()
        );
        set.tombstones.push(Tombstone {
            key: "u:sip:x@y".into(),
            version: Version {
                call_id: "c".into(),
                cseq: 3,
                at: Timestamp::from_secs(5),
            },
            until: Timestamp::from_secs(9),
        });
        assert_eq!(decode_set(&encode_set(&set)).unwrap(), set);
    }

    #[test]
    fn changes_round_trip_and_reject_garbage() {
        let up = LocationChange {
            aor: "a@b".into(),
            key: sample(1).key(),
            kind: ChangeKind::Upsert(Box::new(sample(1))),
            origin: ChangeOrigin::Local,
        };
        let rm = LocationChange {
            aor: "a@b".into(),
            key: "u:sip:x@y".into(),
            kind: ChangeKind::Remove {
                version: Version {
                    call_id: "c".into(),
                    cseq: 9,
                    at: Timestamp::from_millis(77),
                },
                reason: RemoveReason::Admin,
            },
            origin: ChangeOrigin::Replicated,
        };
        for c in [up, rm] {
            let bytes = encode_change(&c);
            assert_eq!(decode_change(&bytes).unwrap(), c);
            for n in 0..bytes.len() {
                assert!(decode_change(&bytes[..n]).is_err());
            }
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error_not_a_panic() {
        let bytes = encode_set(&BindingSet::from_bindings(vec![sample(1), sample(2)]));
        let scan = scan_set(&bytes).unwrap();
        assert_eq!(scan.bindings, 2);
        assert_eq!(scan.first_due, Some(sample(1).expires.as_millis()));
        assert_eq!(set_len(&bytes).unwrap(), 2);
        for n in 0..bytes.len() {
            assert!(decode_set(&bytes[..n]).is_err(), "prefix {n} accepted");
            assert!(scan_set(&bytes[..n]).is_err(), "prefix {n} scanned");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                // The scanner accepts exactly what the decoder accepts.
                assert_eq!(
                    decode_set(&b).is_ok(),
                    scan_set(&b).is_ok(),
                    "byte {i} bit {bit}"
                );
            }
        }
        let mut long = bytes.clone();
        long.push(1);
        assert!(decode_set(&long).is_err());
    }
}
