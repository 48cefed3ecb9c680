//! Bencode values, a lenient decoder and an encoder.
//!
//! The decoder borrows byte strings from the input. Unlike strict bencode it
//! accepts dictionary keys in any order (rtpengine and Kamailio send them
//! unsorted) and keeps them in the order received. Nesting depth and lengths
//! are bounded so hostile input cannot exhaust the stack or memory.

use std::borrow::Cow;
use std::fmt::Write as _;

use thiserror::Error;

/// Deepest nesting of lists/dictionaries accepted by [`decode`].
pub const MAX_DEPTH: usize = 32;

/// One dictionary entry: key and value.
pub type Entry<'a> = (Cow<'a, [u8]>, Value<'a>);

/// A bencode value. Byte strings and dictionary keys borrow from the input
/// when decoded, or own their bytes when built for a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i<digits>e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(Cow<'a, [u8]>),
    /// `l ... e`
    List(Vec<Value<'a>>),
    /// `d <key><value> ... e`, in wire order.
    Dict(Vec<Entry<'a>>),
}

/// Why a bencode document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("unexpected end of input at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that cannot start or continue a value.
    #[error("unexpected byte 0x{byte:02x} at byte {pos}")]
    UnexpectedByte {
        /// Offending byte.
        byte: u8,
        /// Offset in the input.
        pos: usize,
    },
    /// An integer or string length that is not a valid number.
    #[error("invalid number at byte {0}")]
    InvalidNumber(usize),
    /// A string length pointing past the end of the input.
    #[error("string length {len} at byte {pos} exceeds the input")]
    LengthOutOfRange {
        /// Declared length.
        len: usize,
        /// Offset of the length.
        pos: usize,
    },
    /// Lists/dictionaries nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {0} is not a string")]
    NonStringKey(usize),
    /// Bytes after the top-level value.
    #[error("trailing data at byte {0}")]
    TrailingData(usize),
}

impl<'a> Value<'a> {
    /// A byte string borrowing `s`.
    pub fn str(s: &'a str) -> Self {
        Value::Bytes(Cow::Borrowed(s.as_bytes()))
    }

    /// A byte string owning `s`.
    pub fn string(s: impl Into<String>) -> Value<'static> {
        Value::Bytes(Cow::Owned(s.into().into_bytes()))
    }

    /// An empty dictionary.
    pub fn dict() -> Self {
        Value::Dict(Vec::new())
    }

    /// Appends `key: value` to a dictionary (no effect on other variants).
    pub fn insert(&mut self, key: &'a str, value: Value<'a>) {
        if let Value::Dict(items) = self {
            items.push((Cow::Borrowed(key.as_bytes()), value));
        }
    }

    /// Builder form of [`Value::insert`].
    #[must_use]
    pub fn with(mut self, key: &'a str, value: Value<'a>) -> Self {
        self.insert(key, value);
        self
    }

    /// Looks up `key` in a dictionary (first match, byte comparison).
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_ref() == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The dictionary entries, if this is a dictionary.
    pub fn as_dict(&self) -> Option<&[Entry<'a>]> {
        match self {
            Value::Dict(items) => Some(items),
            _ => None,
        }
    }

    /// The list items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The raw bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is a UTF-8 byte string.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The integer; a byte string holding a decimal integer is accepted too
    /// (rtpengine accepts ints as strings).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    /// Converts into a value owning all of its bytes.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Int(i) => Value::Int(i),
            Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_owned).collect()),
            Value::Dict(d) => Value::Dict(
                d.into_iter()
                    .map(|(k, v)| (Cow::Owned(k.into_owned()), v.into_owned()))
                    .collect(),
            ),
        }
    }

    /// Appends the bencode form of this value to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                push_decimal(out, *i);
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(items) => {
                out.push(b'd');
                for (k, v) in items {
                    encode_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The bencode form of this value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }
}

fn push_decimal(out: &mut Vec<u8>, i: i64) {
    let mut s = String::new();
    let _ = write!(s, "{i}");
    out.extend_from_slice(s.as_bytes());
}

fn encode_bytes(out: &mut Vec<u8>, b: &[u8]) {
    push_decimal(out, i64::try_from(b.len()).unwrap_or(i64::MAX));
    out.push(b':');
    out.extend_from_slice(b);
}

/// Decodes one value that must span all of `input`.
pub fn decode(input: &[u8]) -> Result<Value<'_>, BencodeError> {
    let (value, end) = decode_prefix(input)?;
    if end != input.len() {
        return Err(BencodeError::TrailingData(end));
    }
    Ok(value)
}

/// Decodes one value at the start of `input`; returns it and the offset just
/// past it (used by stream framing, where more data may follow).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut decoder = Decoder { input, pos: 0 };
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let start = self.pos;
                let end = self.find(b'e')?;
                let digits = self.input.get(start..end).unwrap_or_default();
                let n = parse_int(digits).ok_or(BencodeError::InvalidNumber(start))?;
                self.pos = end + 1;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => Ok(Value::Bytes(Cow::Borrowed(self.bytes()?))),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    let b = self.peek()?;
                    if b == b'e' {
                        break;
                    }
                    if !b.is_ascii_digit() {
                        return Err(BencodeError::NonStringKey(self.pos));
                    }
                    let key = self.bytes()?;
                    let value = self.value(depth + 1)?;
                    items.push((Cow::Borrowed(key), value));
                }
                self.pos += 1;
                Ok(Value::Dict(items))
            }
            byte => Err(BencodeError::UnexpectedByte {
                byte,
                pos: self.pos,
            }),
        }
    }

    fn find(&self, needle: u8) -> Result<usize, BencodeError> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        rest.iter()
            .position(|&b| b == needle)
            .map(|i| self.pos + i)
            .ok_or(BencodeError::UnexpectedEnd(self.input.len()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let colon = self.find(b':')?;
        let digits = self.input.get(start..colon).unwrap_or_default();
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(BencodeError::InvalidNumber(start));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::InvalidNumber(start))?;
        let body_start = colon + 1;
        let body_end = body_start
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::LengthOutOfRange { len, pos: start })?;
        self.pos = body_end;
        Ok(self.input.get(body_start..body_end).unwrap_or_default())
    }
}

fn parse_int(digits: &[u8]) -> Option<i64> {
    let (neg, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in body {
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if neg { -n } else { n })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_unsorted_dict_and_keeps_order() {
        let v = decode(b"d7:command4:ping4:abcdi-12ee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d[0].0.as_ref(), b"command");
        assert_eq!(d[1].0.as_ref(), b"abcd");
        assert_eq!(v.get("abcd").unwrap().as_int(), Some(-12));
        assert_eq!(v.get("command").unwrap().as_str(), Some("ping"));
    }

    #[test]
    fn round_trips() {
        let v = Value::dict()
            .with("result", Value::str("ok"))
            .with("list", Value::List(vec![Value::Int(7), Value::str("x")]));
        let enc = v.encode();
        assert_eq!(enc, b"d6:result2:ok4:listli7e1:xee");
        assert_eq!(decode(&enc).unwrap(), v);
    }

    #[test]
    fn ints_as_strings() {
        assert_eq!(Value::str("184").as_int(), Some(184));
        assert_eq!(Value::str("x").as_int(), None);
    }

    #[test]
    fn rejects_malformed() {
        assert!(matches!(
            decode(b"d7:commande"),
            Err(BencodeError::UnexpectedByte {
                byte: b'e',
                pos: 10
            })
        ));
        assert!(matches!(
            decode(b"d3:abc"),
            Err(BencodeError::UnexpectedEnd(_))
        ));
        assert!(matches!(
            decode(b"d99:abce"),
            Err(BencodeError::LengthOutOfRange { .. })
        ));
        assert!(matches!(
            decode(b"i12"),
            Err(BencodeError::UnexpectedEnd(_))
        ));
        assert!(matches!(
            decode(b"i1x2e"),
            Err(BencodeError::InvalidNumber(_))
        ));
        assert!(matches!(
            decode(b"i99999999999999999999e"),
            Err(BencodeError::InvalidNumber(_))
        ));
        assert!(matches!(
            decode(b"di1ei2ee"),
            Err(BencodeError::NonStringKey(_))
        ));
        assert!(matches!(decode(b"le1"), Err(BencodeError::TrailingData(2))));
        assert!(matches!(
            decode(b"x"),
            Err(BencodeError::UnexpectedByte { .. })
        ));
        let deep = "l".repeat(100) + &"e".repeat(100);
        assert_eq!(decode(deep.as_bytes()), Err(BencodeError::TooDeep));
    }
}
