//! The on-disk record batch: the unit of append, CRC and fsync.
//!
//! ```text
//! batch  := length:u32 crc:u32 body            (little-endian; length counts crc + body)
//! body   := base_offset:u64 count:u32 first_ts:i64 max_ts:i64 record{count}
//! record := ts_delta:zigzag key_len:zigzag(-1 = none) key value_len:uvarint value
//!           header_count:uvarint (name_len:uvarint name value_len:uvarint value){header_count}
//! ```
//! The CRC32C covers the body, so a torn or overwritten tail is detected on recovery.

use bytes::{Buf, Bytes};

/// Bytes before the body: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// Fixed part of the body before the records.
pub const BODY_HEADER: usize = 8 + 4 + 8 + 8;

/// A record as stored: the parts of [`crate::Record`] that the batch keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(String, Bytes)>,
}

/// A record to encode, borrowed from wherever it lives.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: &'a [(String, Bytes)],
}

impl StoredRecord {
    #[cfg(test)]
    fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            timestamp_ms: self.timestamp_ms,
            key: self.key.as_deref(),
            value: &self.value,
            headers: &self.headers,
        }
    }
}

/// Fixed fields of a batch, readable without decoding the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Frame length: total bytes of the batch on disk.
    pub total_len: usize,
    pub base_offset: u64,
    pub count: u32,
    pub first_ts: i64,
    pub max_ts: i64,
}

impl BatchHeader {
    /// Offset after the last record of the batch.
    pub fn next_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
}

/// Why bytes at some position are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the frame says: a torn write, or simply not all read yet.
    Incomplete,
    /// The frame is complete but wrong.
    Invalid(String),
}

/// Encodes records into a batch frame. The base offset is patched in by
/// [`seal`] under the partition lock, so encoding can happen outside it.
pub fn encode<'a>(records: impl IntoIterator<Item = RecordRef<'a>>, out: &mut Vec<u8>) -> u32 {
    out.clear();
    out.resize(FRAME_HEADER + BODY_HEADER, 0);
    let mut count = 0u32;
    let mut first_ts = None;
    let mut max_ts = i64::MIN;
    for r in records {
        let first = *first_ts.get_or_insert(r.timestamp_ms);
        max_ts = max_ts.max(r.timestamp_ms);
        put_varint(out, zigzag(r.timestamp_ms.wrapping_sub(first)));
        match r.key {
            Some(k) => {
                put_varint(out, zigzag(k.len() as i64));
                out.extend_from_slice(k);
            }
            None => put_varint(out, zigzag(-1)),
        }
        put_varint(out, r.value.len() as u64);
        out.extend_from_slice(r.value);
        put_varint(out, r.headers.len() as u64);
        for (name, value) in r.headers {
            put_varint(out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            put_varint(out, value.len() as u64);
            out.extend_from_slice(value);
        }
        count += 1;
    }
    let first_ts = first_ts.unwrap_or(0);
    let body = &mut out[FRAME_HEADER..];
    body[8..12].copy_from_slice(&count.to_le_bytes());
    body[12..20].copy_from_slice(&first_ts.to_le_bytes());
    body[20..28].copy_from_slice(&max_ts.max(first_ts).to_le_bytes());
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_le_bytes());
    count
}

/// Writes the base offset and the CRC into an encoded batch and returns its header.
pub fn seal(batch: &mut [u8], base_offset: u64) -> BatchHeader {
    batch[FRAME_HEADER..FRAME_HEADER + 8].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&batch[FRAME_HEADER..]);
    batch[4..8].copy_from_slice(&crc.to_le_bytes());
    let field = |at: usize| -> [u8; 8] { batch[at..at + 8].try_into().expect("8 bytes") };
    BatchHeader {
        total_len: batch.len(),
        base_offset,
        count: u32::from_le_bytes(
            batch[FRAME_HEADER + 8..FRAME_HEADER + 12]
                .try_into()
                .expect("4 bytes"),
        ),
        first_ts: i64::from_le_bytes(field(FRAME_HEADER + 12)),
        max_ts: i64::from_le_bytes(field(FRAME_HEADER + 20)),
    }
}

/// Reads and checks the batch at the start of `buf` (CRC included).
pub fn header(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    if buf.len() < FRAME_HEADER {
        return Err(BatchError::Incomplete);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len < 4 + BODY_HEADER {
        return Err(BatchError::Invalid(format!(
            "frame length {len} is too small"
        )));
    }
    let total_len = 4 + len;
    if buf.len() < total_len {
        return Err(BatchError::Incomplete);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[FRAME_HEADER..total_len];
    if crc32c::crc32c(body) != crc {
        return Err(BatchError::Invalid("CRC32C mismatch".into()));
    }
    let mut b = body;
    Ok(BatchHeader {
        total_len,
        base_offset: b.get_u64_le(),
        count: b.get_u32_le(),
        first_ts: b.get_i64_le(),
        max_ts: b.get_i64_le(),
    })
}

/// Length of the frame at the start of `buf` as its first four bytes claim, if present.
pub fn claimed_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    Some(4 + len)
}

/// Decodes the records of a checked batch. `frame` is the whole batch (as returned by a
/// read), so keys and values are zero-copy slices of it. Calls `f(offset, record)`.
pub fn for_each_record(
    frame: &Bytes,
    h: &BatchHeader,
    mut f: impl FnMut(u64, StoredRecord),
) -> Result<(), BatchError> {
    let mut pos = FRAME_HEADER + BODY_HEADER;
    let end = h.total_len;
    let buf = &frame[..end];
    for i in 0..h.count {
        let ts_delta = unzigzag(get_varint(buf, &mut pos)?);
        let key_len = unzigzag(get_varint(buf, &mut pos)?);
        let key = if key_len < 0 {
            None
        } else {
            Some(take(frame, end, &mut pos, key_len as u64)?)
        };
        let value_len = get_varint(buf, &mut pos)?;
        let value = take(frame, end, &mut pos, value_len)?;
        let header_count = get_varint(buf, &mut pos)?;
        let mut headers = Vec::with_capacity(header_count.min(64) as usize);
        for _ in 0..header_count {
            let name_len = get_varint(buf, &mut pos)?;
            let name = take(frame, end, &mut pos, name_len)?;
            let name = String::from_utf8(name.to_vec())
                .map_err(|_| BatchError::Invalid("header name is not UTF-8".into()))?;
            let value_len = get_varint(buf, &mut pos)?;
            headers.push((name, take(frame, end, &mut pos, value_len)?));
        }
        f(
            h.base_offset + u64::from(i),
            StoredRecord {
                timestamp_ms: h.first_ts.wrapping_add(ts_delta),
                key,
                value,
                headers,
            },
        );
    }
    Ok(())
}

fn take(frame: &Bytes, end: usize, pos: &mut usize, len: u64) -> Result<Bytes, BatchError> {
    let start = *pos;
    let stop = start
        .checked_add(usize::try_from(len).map_err(|_| overrun())?)
        .filter(|&s| s <= end)
        .ok_or_else(overrun)?;
    *pos = stop;
    Ok(frame.slice(start..stop))
}

fn overrun() -> BatchError {
    BatchError::Invalid("record runs past the end of its batch".into())
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, BatchError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(overrun)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(BatchError::Invalid("varint longer than 10 bytes".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: i64, key: Option<&str>, value: &str, headers: &[(&str, &str)]) -> StoredRecord {
        StoredRecord {
            timestamp_ms: ts,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
        }
    }

    fn roundtrip(records: &[StoredRecord], base: u64) -> (BatchHeader, Vec<(u64, StoredRecord)>) {
        let mut buf = Vec::new();
        let n = encode(records.iter().map(StoredRecord::as_ref), &mut buf);
        assert_eq!(n as usize, records.len());
        let sealed = seal(&mut buf, base);
        let frame = Bytes::from(buf);
        let h = header(&frame).expect("valid batch");
        assert_eq!(sealed, h, "seal reports what a reader sees");
        let mut out = Vec::new();
        for_each_record(&frame, &h, |o, r| out.push((o, r))).expect("decodes");
        (h, out)
    }

    #[test]
    fn records_roundtrip() {
        let records = vec![
            rec(
                1_700_000_000_000,
                Some("repo-a"),
                "v1",
                &[("traceparent", "00-ab")],
            ),
            rec(1_699_999_999_000, None, "", &[]),
            rec(
                1_700_000_005_000,
                Some(""),
                &"x".repeat(300),
                &[("a", ""), ("b", "2")],
            ),
        ];
        let (h, out) = roundtrip(&records, 42);
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.count, 3);
        assert_eq!(h.first_ts, 1_700_000_000_000);
        assert_eq!(h.max_ts, 1_700_000_005_000);
        assert_eq!(h.next_offset(), 45);
        let offsets: Vec<u64> = out.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, vec![42, 43, 44]);
        let got: Vec<StoredRecord> = out.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, records);
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = Vec::new();
        encode([rec(5, Some("k"), "value", &[]).as_ref()], &mut buf);
        seal(&mut buf, 0);
        // Every strict prefix is incomplete, never mistaken for a batch.
        for cut in 0..buf.len() {
            assert_eq!(
                header(&buf[..cut]),
                Err(BatchError::Incomplete),
                "prefix {cut}"
            );
        }
        // Any flipped body byte fails the CRC.
        for i in FRAME_HEADER..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                matches!(header(&bad), Err(BatchError::Invalid(_))),
                "byte {i}"
            );
        }
        // Zeroed garbage (a preallocated or torn tail) is not a batch either.
        assert!(matches!(header(&[0u8; 64]), Err(BatchError::Invalid(_))));
    }

    #[test]
    fn varints_roundtrip() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(v));
            let mut pos = 0;
            assert_eq!(unzigzag(get_varint(&out, &mut pos).unwrap()), v);
            assert_eq!(pos, out.len());
        }
    }
}
