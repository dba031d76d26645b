//! Reads the window results the backtest's processors wrote to the scratch log.
//!
//! Why by hand: a backtest of millions of events has hundreds of thousands of window
//! results, and apache-avro's generic path builds a value tree for each. The scratch
//! results are always written by the backtest with the built-in `WindowResult` schema
//! (`schemas/avro/WindowResult.avsc`, id `RESULT_ID`), so this knows the field order; a
//! record with another schema id goes through the generic codec. The test compares both
//! decoders on records apache-avro encoded.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use helios_schemas::{RecordCodec, WindowResult, wire};

use super::RESULT_ID;

/// Decodes one framed scratch window result.
pub fn decode(codec: &RecordCodec<WindowResult>, bytes: &[u8]) -> anyhow::Result<WindowResult> {
    let (id, body) = wire::split(bytes).context("a scratch window result without a header")?;
    if id != RESULT_ID {
        return Ok(codec.decode(bytes)?);
    }
    let mut r = Reader { buf: body, pos: 0 };
    let result = WindowResult {
        id: r.string()?,
        aggregate: r.string()?,
        window_start: r.long()?,
        window_end: r.long()?,
        group: r.map(Reader::string)?,
        measures: r.map(Reader::double)?,
        count: r.long()?,
        version: i32::try_from(r.long()?).context("a window result's version beyond 32 bits")?,
        is_final: match r.byte()? {
            0 => false,
            1 => true,
            b => bail!("a window result's `final` is {b}, not a boolean"),
        },
    };
    if r.pos != r.buf.len() {
        bail!(
            "{} bytes after a window result's last field",
            r.buf.len() - r.pos
        );
    }
    Ok(result)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> anyhow::Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .context("a window result ends early")?;
        self.pos += 1;
        Ok(b)
    }

    /// A zig-zag varint.
    fn long(&mut self) -> anyhow::Result<i64> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        bail!("a varint of a window result is longer than 10 bytes")
    }

    fn bytes(&mut self) -> anyhow::Result<&[u8]> {
        let len = usize::try_from(self.long()?).context("a negative length")?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .context("a string runs past the window result's end")?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn string(&mut self) -> anyhow::Result<String> {
        Ok(std::str::from_utf8(self.bytes()?)
            .context("a window result's string is not UTF-8")?
            .to_string())
    }

    fn double(&mut self) -> anyhow::Result<f64> {
        let end = self.pos + 8;
        let raw = self
            .buf
            .get(self.pos..end)
            .context("a window result ends inside a double")?;
        self.pos = end;
        Ok(f64::from_le_bytes(raw.try_into().expect("8 bytes")))
    }

    /// An Avro map: blocks of (count, entries), a negative count followed by the block's
    /// size in bytes, up to a zero count.
    fn map<V>(
        &mut self,
        value: impl Fn(&mut Self) -> anyhow::Result<V>,
    ) -> anyhow::Result<BTreeMap<String, V>> {
        let mut out = BTreeMap::new();
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(out);
            }
            if count < 0 {
                self.long()?;
            }
            for _ in 0..count.unsigned_abs() {
                let k = self.string()?;
                out.insert(k, value(self)?);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_apache_avro_writes() {
        let codec = RecordCodec::<WindowResult>::new(RESULT_ID);
        let full = WindowResult {
            id: "agg|k=v|123".into(),
            aggregate: "per_minute".into(),
            window_start: -60_000_000,
            window_end: 1_767_225_660_000_000,
            group: [("subject".into(), "k1".into()), ("é".into(), String::new())].into(),
            measures: [
                ("n".into(), 3.0),
                ("total".into(), -1.5e300),
                ("nan".into(), f64::INFINITY),
            ]
            .into(),
            count: i64::MAX,
            version: 7,
            is_final: true,
        };
        for r in [full, WindowResult::default()] {
            let bytes = codec.encode(&r).unwrap();
            assert_eq!(decode(&codec, &bytes).unwrap(), r);
            assert_eq!(codec.decode(&bytes).unwrap(), r);
            // Cut short anywhere: an error, never a panic.
            for cut in 5..bytes.len() {
                assert!(decode(&codec, &bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }
}
