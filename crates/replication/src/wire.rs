//! The body of a replication request: a batch of location changes, each in
//! the location crate's change encoding (`codec::encode_change`), framed
//! with a format byte, a count and per-record lengths; and the receiver's
//! JSON reply.
//!
//! A record that does not decode is reported as rejected without spoiling
//! the rest of the batch (a peer running a newer format, say); only a
//! broken frame refuses the whole request.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use voxline_location::codec::{Reader, decode_change, put_varint};
use voxline_location::{LocationChange, LocationError};

/// Format byte of a batch.
pub const BATCH_FORMAT: u8 = 1;
/// Path the receiver serves.
pub const CHANGES_PATH: &str = "/replication/v1/changes";
/// Most records accepted in one batch.
pub const RECORDS_MAX: u64 = 100_000;

/// Why a batch cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a batch of a known format.
    #[error("unknown batch format {0}")]
    Format(u8),
    /// The frame is truncated or has trailing bytes.
    #[error("malformed batch: {0}")]
    Malformed(&'static str),
    /// More records than [`RECORDS_MAX`].
    #[error("batch of {0} records is too large")]
    TooLarge(u64),
}

/// Frame already encoded records (from `codec::encode_change`).
pub fn encode_batch<'a>(records: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + records.len() * 200);
    out.push(BATCH_FORMAT);
    put_varint(&mut out, records.len() as u64);
    for r in records {
        put_varint(&mut out, r.len() as u64);
        out.extend_from_slice(r);
    }
    out
}

/// Frame records held as [`Bytes`].
pub fn encode_records(records: &[Bytes]) -> Vec<u8> {
    encode_batch(records.iter().map(|b| b.as_ref()))
}

/// Read a batch: each record decoded on its own.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Result<LocationChange, LocationError>>, WireError> {
    let malformed = |_| WireError::Malformed("truncated");
    let mut r = Reader::new(body);
    let format = r.u8().map_err(malformed)?;
    if format != BATCH_FORMAT {
        return Err(WireError::Format(format));
    }
    let count = r.varint().map_err(malformed)?;
    if count > RECORDS_MAX {
        return Err(WireError::TooLarge(count));
    }
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(4096));
    for _ in 0..count {
        let len = r.varint().map_err(malformed)?;
        let len = usize::try_from(len).map_err(|_| WireError::Malformed("record length"))?;
        let record = r.bytes(len).map_err(malformed)?;
        out.push(decode_change(record));
    }
    if !r.is_empty() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok(out)
}

/// The receiver's answer to a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchReply {
    /// The receiver's site.
    pub site: String,
    /// The receiver's node.
    pub node: String,
    /// Changes that were newer than what the receiver had.
    pub applied: u64,
    /// Changes the receiver already had (or newer).
    pub ignored: u64,
    /// Records that did not decode.
    pub rejected: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxline_location::codec::encode_change;
    use voxline_location::{ChangeKind, ChangeOrigin, RemoveReason, Timestamp, Version};

    fn removal(aor: &str) -> LocationChange {
        LocationChange {
            aor: aor.into(),
            key: "u:sip:x@192.0.2.1".into(),
            kind: ChangeKind::Remove {
                version: Version {
                    call_id: "c".into(),
                    cseq: 7,
                    at: Timestamp::from_millis(99),
                },
                reason: RemoveReason::Unregistered,
            },
            origin: ChangeOrigin::Local,
        }
    }

    #[test]
    fn round_trip_and_a_bad_record_spoils_only_itself() {
        let a = Bytes::from(encode_change(&removal("a@x")));
        let junk = Bytes::from_static(b"\x09junk");
        let b = Bytes::from(encode_change(&removal("b@x")));
        let body = encode_records(&[a, junk, b]);
        let out = decode_batch(&body).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap(), &removal("a@x"));
        assert!(out[1].is_err());
        assert_eq!(out[2].as_ref().unwrap(), &removal("b@x"));
        assert_eq!(decode_batch(&encode_records(&[])).unwrap().len(), 0);
    }

    #[test]
    fn broken_frames_are_refused() {
        let err = |b: &[u8]| decode_batch(b).err();
        let body = encode_records(&[Bytes::from(encode_change(&removal("a@x")))]);
        assert_eq!(err(&[]), Some(WireError::Malformed("truncated")));
        assert_eq!(err(&[7, 0]), Some(WireError::Format(7)));
        assert_eq!(
            err(&body[..body.len() - 1]),
            Some(WireError::Malformed("truncated"))
        );
        let mut long = body.clone();
        long.push(0);
        assert_eq!(err(&long), Some(WireError::Malformed("trailing bytes")));
        let mut huge = vec![BATCH_FORMAT];
        put_varint(&mut huge, RECORDS_MAX + 1);
        assert_eq!(err(&huge), Some(WireError::TooLarge(RECORDS_MAX + 1)));
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_batch(&bytes);
            let mut framed = vec![BATCH_FORMAT, 1];
            put_varint(&mut framed, bytes.len() as u64);
            framed.extend_from_slice(&bytes);
            let _ = decode_batch(&framed);
        }
    }
}
