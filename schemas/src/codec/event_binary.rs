//! Hand-written Avro binary encoder and decoder for the built-in `Event` writer schema.
//!
//! Why it exists (ADR in `docs/DECISIONS.md`): every stage decodes every event, and
//! apache-avro's generic `Value` path allocates a tree per record, which is several times
//! too slow. This module knows the exact field order of `avro/Event.avsc` and reads
//! straight into [`Event`]. It is only valid for that schema: records written with any
//! other schema go through apache-avro's schema resolution (see `codec`). Tests compare
//! it byte-for-byte with apache-avro, so a change to `Event.avsc` that is not mirrored
//! here fails the build's tests.

use std::collections::BTreeMap;

use crate::records::Event;
use crate::{Error, Result};

/// Appends the Avro body of `event` (no wire header) to `out`.
pub fn encode_event_body(event: &Event, out: &mut Vec<u8>) {
    out.reserve(estimate_len(event));
    put_str(out, &event.id);
    put_str(out, &event.source);
    put_str(out, &event.kind);
    put_str(out, &event.subject);
    put_long(out, event.time);
    put_long(out, event.received_at);
    // One block with a positive count, then the terminating zero: what apache-avro writes
    // when no block size is configured, so both encoders agree byte-for-byte.
    if !event.attrs.is_empty() {
        put_long(out, len_i64(event.attrs.len()));
        for (k, v) in &event.attrs {
            put_str(out, k);
            put_str(out, v);
        }
    }
    out.push(0);
    // Union ["null", "double"]: branch index 0 or 1, zig-zag encoded as 0 or 2.
    match event.value {
        None => out.push(0),
        Some(v) => {
            out.push(2);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    match &event.payload {
        None => out.push(0),
        Some(p) => {
            out.push(2);
            put_str(out, p);
        }
    }
}

/// Decodes an Avro body written with the built-in `Event` schema.
pub fn decode_event_body(body: &[u8]) -> Result<Event> {
    let mut r = Reader { buf: body, pos: 0 };
    let id = r.string("id")?;
    let source = r.string("source")?;
    let kind = r.string("kind")?;
    let subject = r.string("subject")?;
    let time = r.long("time")?;
    let received_at = r.long("received_at")?;
    let attrs = r.string_map("attrs")?;
    let value = match r.union_branch("value")? {
        false => None,
        true => Some(r.double("value")?),
    };
    let payload = match r.union_branch("payload")? {
        false => None,
        true => Some(r.string("payload")?),
    };
    if r.pos != body.len() {
        return Err(r.err(
            "end of record",
            "trailing bytes after the last field; the record was written with a different schema than its id says",
        ));
    }
    Ok(Event {
        id,
        source,
        kind,
        subject,
        time,
        received_at,
        attrs,
        value,
        payload,
    })
}

/// Decodes like [`decode_event_body`] into `event`, reusing the allocations of its
/// strings and of its attribute map: a processor decodes millions of events of one shape,
/// and only a new attribute key or a longer string then allocates. On error `event` is
/// left with unspecified (but valid) contents.
pub fn decode_event_body_into(body: &[u8], event: &mut Event) -> Result<()> {
    let mut r = Reader { buf: body, pos: 0 };
    r.string_into("id", &mut event.id)?;
    r.string_into("source", &mut event.source)?;
    r.string_into("kind", &mut event.kind)?;
    r.string_into("subject", &mut event.subject)?;
    event.time = r.long("time")?;
    event.received_at = r.long("received_at")?;
    r.string_map_into("attrs", &mut event.attrs)?;
    event.value = match r.union_branch("value")? {
        false => None,
        true => Some(r.double("value")?),
    };
    match r.union_branch("payload")? {
        false => event.payload = None,
        true => r.string_into("payload", event.payload.get_or_insert_with(String::new))?,
    }
    if r.pos != body.len() {
        return Err(r.err(
            "end of record",
            "trailing bytes after the last field; the record was written with a different schema than its id says",
        ));
    }
    Ok(())
}

/// The `source` and `id` bytes of an event body written with the built-in schema (its
/// first two fields), without decoding the rest: the processor hashes them ahead of
/// decoding to fetch its de-duplication filter's lines early. `None` if the body does not
/// start with two strings; a body of another writer schema may give other bytes, which
/// is harmless for a hint (the decision always uses the decoded event).
pub fn peek_source_and_id(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader { buf: body, pos: 0 };
    let id = r.bytes_slice("id").ok()?;
    let source = r.bytes_slice("source").ok()?;
    Some((source, id))
}

fn estimate_len(e: &Event) -> usize {
    let attrs: usize = e.attrs.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    e.id.len()
        + e.source.len()
        + e.kind.len()
        + e.subject.len()
        + e.payload.as_ref().map_or(0, String::len)
        + attrs
        + 48
}

fn len_i64(len: usize) -> i64 {
    // Lengths of in-memory buffers always fit in i64.
    i64::try_from(len).unwrap_or(i64::MAX)
}

#[inline]
fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[inline]
fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, len_i64(s.len()));
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, field: &'static str, reason: &'static str) -> Error {
        Error::Malformed {
            record: "Event",
            field,
            offset: self.pos,
            reason,
        }
    }

    #[inline]
    fn long(&mut self, field: &'static str) -> Result<i64> {
        // One-byte values (lengths < 64, union branches, block ends) dominate.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
        }
        let mut acc: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(field, "data ends inside a varint"));
            };
            if shift == 63 && b > 1 {
                return Err(self.err(field, "varint overflows 64 bits"));
            }
            self.pos += 1;
            acc |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(((acc >> 1) as i64) ^ -((acc & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err(field, "varint longer than 10 bytes"));
            }
        }
    }

    #[inline]
    fn str_slice(&mut self, field: &'static str) -> Result<&'a str> {
        let bytes = self.bytes_slice(field)?;
        std::str::from_utf8(bytes).map_err(|_| {
            // The offset names where the string's bytes begin.
            self.pos -= bytes.len();
            self.err(field, "string is not UTF-8")
        })
    }

    /// A length-prefixed run of bytes (a string's, before the UTF-8 check).
    fn bytes_slice(&mut self, field: &'static str) -> Result<&'a [u8]> {
        let len = self.long(field)?;
        let Ok(len) = usize::try_from(len) else {
            return Err(self.err(field, "negative string length"));
        };
        let end = match self.pos.checked_add(len) {
            Some(end) if end <= self.buf.len() => end,
            _ => return Err(self.err(field, "string length runs past the end of the data")),
        };
        let bytes: &'a [u8] = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    #[inline]
    fn string(&mut self, field: &'static str) -> Result<String> {
        self.str_slice(field).map(str::to_owned)
    }

    #[inline]
    fn string_into(&mut self, field: &'static str, out: &mut String) -> Result<()> {
        let s = self.str_slice(field)?;
        out.clear();
        out.push_str(s);
        Ok(())
    }

    /// Reads a map into `map`, overwriting values in place when the record has exactly
    /// the keys `map` has (in the strictly increasing order the encoders write); anything
    /// else is read again into a fresh map.
    fn string_map_into(
        &mut self,
        field: &'static str,
        map: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        let start = self.pos;
        let mut matched = 0usize;
        let mut prev: Option<&'a str> = None;
        let same_keys = 'read: loop {
            let count = self.long(field)?;
            if count == 0 {
                break 'read matched == map.len();
            }
            let count = if count < 0 {
                let _block_bytes = self.long(field)?;
                count
                    .checked_neg()
                    .ok_or_else(|| self.err(field, "block count overflows"))?
            } else {
                count
            };
            for _ in 0..count {
                let k = self.str_slice(field)?;
                let v = self.str_slice(field)?;
                if prev.is_some_and(|p| p >= k) {
                    break 'read false;
                }
                prev = Some(k);
                let Some(slot) = map.get_mut(k) else {
                    break 'read false;
                };
                slot.clear();
                slot.push_str(v);
                matched += 1;
            }
        };
        if !same_keys {
            self.pos = start;
            *map = self.string_map(field)?;
        }
        Ok(())
    }

    fn string_map(&mut self, field: &'static str) -> Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        loop {
            let count = self.long(field)?;
            if count == 0 {
                return Ok(map);
            }
            let count = if count < 0 {
                // A negative count is followed by the block's byte size, which a reader that
                // decodes every entry does not need.
                let _block_bytes = self.long(field)?;
                count
                    .checked_neg()
                    .ok_or_else(|| self.err(field, "block count overflows"))?
            } else {
                count
            };
            // No pre-allocation from `count`: it is untrusted, and each entry consumes at
            // least two bytes, so a lying count ends at "data ends" quickly.
            for _ in 0..count {
                let k = self.string(field)?;
                let v = self.string(field)?;
                map.insert(k, v);
            }
        }
    }

    #[inline]
    fn union_branch(&mut self, field: &'static str) -> Result<bool> {
        match self.long(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.err(field, "union branch index is not 0 (null) or 1")),
        }
    }

    #[inline]
    fn double(&mut self, field: &'static str) -> Result<f64> {
        let Some(chunk) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(self.err(field, "data ends inside a double"));
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        self.pos += 8;
        Ok(f64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::records::AvroRecord;

    fn random_string(rng: &mut StdRng, max: usize) -> String {
        let len = rng.random_range(0..=max);
        (0..len)
            .map(|_| match rng.random_range(0..10) {
                0 => 'é',
                1 => '🦀',
                2 => '"',
                _ => char::from(rng.random_range(b'a'..=b'z')),
            })
            .collect()
    }

    fn random_long(rng: &mut StdRng) -> i64 {
        match rng.random_range(0..4) {
            0 => rng.random(),
            1 => rng.random_range(-200..200),
            2 => *[i64::MIN, i64::MAX, 0, -1, 63, 64, -64, -65]
                .get(rng.random_range(0..8))
                .unwrap_or(&0),
            _ => rng.random_range(1_600_000_000_000_000..1_900_000_000_000_000),
        }
    }

    fn random_event(rng: &mut StdRng) -> Event {
        let attrs = (0..rng.random_range(0..6))
            .map(|_| (random_string(rng, 12), random_string(rng, 150)))
            .collect();
        Event {
            id: random_string(rng, 40),
            source: random_string(rng, 30),
            kind: random_string(rng, 20),
            subject: random_string(rng, 20),
            time: random_long(rng),
            received_at: random_long(rng),
            attrs,
            value: rng
                .random_bool(0.5)
                .then(|| rng.random::<f64>() * 1e6 - 5e5),
            payload: rng.random_bool(0.5).then(|| random_string(rng, 200)),
        }
    }

    fn apache_encode(e: &Event, block: Option<usize>) -> Vec<u8> {
        let writer = GenericDatumWriter::builder(Event::schema())
            .maybe_target_block_size(block)
            .build()
            .unwrap();
        writer.write_ser_to_vec(e).unwrap()
    }

    #[test]
    fn hand_encoder_matches_apache_avro_byte_for_byte() {
        let mut rng = StdRng::seed_from_u64(0x004e_1105);
        for i in 0..2000 {
            let e = random_event(&mut rng);
            let mut mine = Vec::new();
            encode_event_body(&e, &mut mine);
            assert_eq!(mine, apache_encode(&e, None), "event #{i}: {e:?}");
        }
    }

    #[test]
    fn hand_decoder_reads_apache_avro_output_including_sized_blocks() {
        let mut rng = StdRng::seed_from_u64(7);
        for i in 0..2000 {
            let e = random_event(&mut rng);
            // Small target block sizes make apache-avro write negative counts with sizes.
            let block = [None, Some(1), Some(40)][i % 3];
            let bytes = apache_encode(&e, block);
            let back = decode_event_body(&bytes).unwrap_or_else(|err| panic!("#{i}: {err}"));
            assert_eq!(back, e, "event #{i}");
            let value = GenericDatumReader::builder(Event::schema())
                .build()
                .unwrap()
                .read_value(&mut &bytes[..])
                .unwrap();
            assert_eq!(apache_avro::from_value::<Event>(&value).unwrap(), e);
        }
    }

    #[test]
    fn decoding_into_a_reused_event_equals_a_fresh_decode() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let mut reused = Event::default();
        let mut same_shape = random_event(&mut rng);
        for i in 0..3000 {
            // Alternate random shapes with runs of one shape (the processor's case), where
            // the attribute map is overwritten in place.
            let e = if i % 3 == 0 {
                random_event(&mut rng)
            } else {
                for v in same_shape.attrs.values_mut() {
                    *v = random_string(&mut rng, 30);
                }
                same_shape.id = random_string(&mut rng, 40);
                same_shape.clone()
            };
            let block = [None, Some(1), Some(40)][i % 3];
            let bytes = apache_encode(&e, block);
            decode_event_body_into(&bytes, &mut reused).unwrap_or_else(|err| panic!("#{i}: {err}"));
            assert_eq!(reused, e, "event #{i}");
        }
        // Errors are the same as a fresh decode's.
        let mut good = Vec::new();
        encode_event_body(&same_shape, &mut good);
        for cut in 0..good.len() {
            let fresh = decode_event_body(&good[..cut]).unwrap_err().to_string();
            let into = decode_event_body_into(&good[..cut], &mut reused)
                .unwrap_err()
                .to_string();
            assert_eq!(into, fresh, "cut at {cut}");
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let mut rng = StdRng::seed_from_u64(99);
        let e = random_event(&mut rng);
        let mut good = Vec::new();
        encode_event_body(&e, &mut good);
        // Every truncation fails cleanly.
        for cut in 0..good.len() {
            assert!(decode_event_body(&good[..cut]).is_err(), "cut at {cut}");
        }
        let cases: &[(&[u8], &str)] = &[
            (&[0x03], "negative string length"),
            (&[0x10, b'a'], "runs past the end"),
            (&[0x02, 0xff], "not UTF-8"),
            (
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "varint",
            ),
            (&[0, 0, 0, 0, 0, 0, 0, 4], "not 0 (null) or 1"),
            (&[0, 0, 0, 0, 0, 0, 0, 0, 0, 7], "trailing bytes"),
        ];
        for (input, fragment) in cases {
            let msg = decode_event_body(input).unwrap_err().to_string();
            assert!(msg.contains(fragment), "{input:?}: {msg}");
        }
    }

    #[test]
    fn peeking_source_and_id_reads_two_strings_and_refuses_anything_short_of_them() {
        let mut rng = StdRng::seed_from_u64(7);
        let e = random_event(&mut rng);
        let mut good = Vec::new();
        encode_event_body(&e, &mut good);
        let want = (e.source.as_bytes(), e.id.as_bytes());
        assert_eq!(peek_source_and_id(&good), Some(want));
        // Both strings with their lengths: the varints and the bytes (short strings here).
        let needed = {
            let mut prefix = Vec::new();
            encode_event_body(&e, &mut prefix);
            let mut r = Reader {
                buf: &prefix,
                pos: 0,
            };
            r.bytes_slice("id").unwrap();
            r.bytes_slice("source").unwrap();
            r.pos
        };
        for cut in 0..good.len() {
            let got = peek_source_and_id(&good[..cut]);
            if cut < needed {
                assert_eq!(got, None, "cut at {cut}");
            } else {
                assert_eq!(got, Some(want), "cut at {cut}");
            }
        }
        // Hostile lengths: negative, past the end, a varint that never ends.
        for input in [&[0x03][..], &[0x10, b'a'], &[0xff; 11], &[0x02, 0xff]] {
            assert_eq!(peek_source_and_id(input), None, "{input:?}");
        }
        // Bytes that are not UTF-8 are still bytes to hash: a hint, not a decision.
        assert_eq!(
            peek_source_and_id(&[0x02, 0xff, 0x02, 0xfe]),
            Some((&[0xfe][..], &[0xff][..]))
        );
    }
}
