//! Property tests: the codec never panics on arbitrary input, encoding
//! round-trips, and command parsing never panics on arbitrary dictionaries.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use proptest::prelude::*;
use voxline_ng::Value;
use voxline_ng::bencode::{decode, decode_prefix};
use voxline_ng::command::Request;
use voxline_ng::frame::{Frame, split_stream};
use voxline_ng::json::{from_json, to_json};

fn value() -> impl Strategy<Value = Value<'static>> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| Value::Bytes(Cow::Owned(b))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..10), inner), 0..6)
                .prop_map(|kv| Value::Dict(
                    kv.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect()
                )),
        ]
    })
}

const KEYS: &[&str] = &[
    "command",
    "call-id",
    "from-tag",
    "to-tag",
    "via-branch",
    "sdp",
    "flags",
    "replace",
    "direction",
    "received-from",
    "ICE",
    "rtcp-mux",
    "TOS",
    "label",
    "limit",
    "address-family",
    "media-address",
];

fn request_dict() -> impl Strategy<Value = Value<'static>> {
    let cmd = prop_oneof![
        Just("ping"),
        Just("offer"),
        Just("answer"),
        Just("delete"),
        Just("query"),
        Just("list"),
        Just("statistics"),
    ];
    (
        cmd,
        proptest::collection::vec((0..KEYS.len(), value()), 0..8),
    )
        .prop_map(|(c, kv)| {
            let mut items = vec![(Cow::Borrowed(&b"command"[..]), Value::str(c))];
            for (k, v) in kv {
                items.push((Cow::Borrowed(KEYS[k].as_bytes()), v));
            }
            Value::Dict(items)
        })
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_prefix(&bytes);
        let _ = split_stream(&bytes);
        if let Ok(f) = Frame::parse(&bytes) {
            let _ = f.decode();
        }
        let _ = from_json(&bytes);
    }

    #[test]
    fn bencode_round_trips(v in value()) {
        let enc = v.encode();
        prop_assert_eq!(decode(&enc).unwrap(), v);
    }

    #[test]
    fn json_output_is_valid_json(v in value()) {
        let s = to_json(&v);
        prop_assert!(serde_json::from_str::<serde_json::Value>(&s).is_ok(), "{}", s);
    }

    #[test]
    fn request_parsing_never_panics(d in request_dict()) {
        let _ = Request::parse(&d);
    }
}
