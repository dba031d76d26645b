//! The Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary body.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Error, Result};

/// The first byte of every framed record.
pub const MAGIC: u8 = 0;
/// Length of the header before the Avro body.
pub const HEADER_LEN: usize = 5;

/// Frames an Avro body with its schema id.
pub fn frame(schema_id: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_u8(MAGIC);
    out.put_u32(schema_id);
    out.put_slice(body);
    out.freeze()
}

/// Writes the header into `out`; the caller appends the body.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// Splits a framed record into its schema id and Avro body.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8])> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(Error::WireTooShort { len: bytes.len() });
    };
    if header[0] != MAGIC {
        return Err(Error::WireMagic { found: header[0] });
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cases() {
        let check = |input: &[u8], expected: std::result::Result<(u32, &[u8]), &str>| match (
            split(input),
            expected,
        ) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "input {input:?}"),
            (Err(e), Err(fragment)) => {
                let msg = e.to_string();
                assert!(msg.contains(fragment), "input {input:?}: {msg}");
            }
            (got, want) => panic!("input {input:?}: got {got:?}, want {want:?}"),
        };
        check(&[0, 0, 0, 0, 7, 1, 2], Ok((7, &[1, 2])));
        check(&[0, 0, 0, 1, 0], Ok((256, &[])));
        check(&[0, 0xff, 0xff, 0xff, 0xff, 9], Ok((u32::MAX, &[9])));
        check(&[], Err("0 bytes, shorter"));
        check(&[0, 0, 0, 1], Err("4 bytes, shorter"));
        check(&[1, 0, 0, 0, 1], Err("0x01"));
        check(b"{\"json\":1}", Err("0x7b"));
    }

    #[test]
    fn frame_then_split_roundtrips() {
        let framed = frame(42, b"body");
        assert_eq!(&framed[..5], &[0, 0, 0, 0, 42]);
        assert_eq!(split(&framed).unwrap(), (42, &b"body"[..]));
        let mut v = Vec::new();
        write_header(42, &mut v);
        assert_eq!(&v[..], &framed[..5]);
    }
}
