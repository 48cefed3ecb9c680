//! The JSON form of ng messages (rtpengine accepts a body starting with `{`).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::bencode::Value;

/// Why a JSON body could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// Parses a JSON document into a [`Value`]. Numbers become integers (floats
/// become their decimal string), `true`/`false` become `1`/`0`, `null`
/// becomes an empty string.
pub fn from_json(input: &[u8]) -> Result<Value<'static>, JsonError> {
    let doc: serde_json::Value =
        serde_json::from_slice(input).map_err(|e| JsonError(e.to_string()))?;
    Ok(convert(doc))
}

fn convert(v: serde_json::Value) -> Value<'static> {
    match v {
        serde_json::Value::Null => Value::Bytes(Cow::Owned(Vec::new())),
        serde_json::Value::Bool(b) => Value::Int(i64::from(b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::string(n.to_string()),
        },
        serde_json::Value::String(s) => Value::string(s),
        serde_json::Value::Array(a) => Value::List(a.into_iter().map(convert).collect()),
        serde_json::Value::Object(o) => Value::Dict(
            o.into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_bytes()), convert(v)))
                .collect(),
        ),
    }
}

/// Renders a [`Value`] as compact JSON (byte strings as UTF-8, invalid
/// sequences replaced).
pub fn to_json(v: &Value<'_>) -> String {
    let mut out = String::with_capacity(64);
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Value<'_>) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bytes(b) => write_str(out, &String::from_utf8_lossy(b)),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Dict(items) => {
            out.push('{');
            for (i, (k, item)) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, &String::from_utf8_lossy(k));
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let v = from_json(br#"{"command":"offer","TOS":184,"flags":["trust address"],"x":true}"#)
            .unwrap();
        assert_eq!(v.get("command").unwrap().as_str(), Some("offer"));
        assert_eq!(v.get("TOS").unwrap().as_int(), Some(184));
        assert_eq!(v.get("x").unwrap().as_int(), Some(1));
        let s = to_json(&Value::dict().with("sdp", Value::str("v=0\r\n\"q\"")));
        assert_eq!(s, r#"{"sdp":"v=0\r\n\"q\""}"#);
    }

    #[test]
    fn json_errors_name_the_problem() {
        let e = from_json(br#"{"command":"#).unwrap_err();
        assert!(e.to_string().contains("EOF"), "{e}");
    }
}
