//! A walk over an Avro body along its writer schema, before apache-avro decodes it.
//!
//! Why: apache-avro sizes a buffer from each string or bytes length prefix (up to its
//! 512 MiB default) and reserves array space from each block count before it finds out the
//! data is shorter, and it recurses once per nesting level of the data. So a few hostile
//! bytes under a foreign writer schema could make a decode allocate hundreds of MiB, and a
//! deeply nested body of a recursive schema could overflow the stack. This walk reads
//! nothing into memory; it refuses a length or block count larger than the bytes left and
//! nesting deeper than [`MAX_DEPTH`]. The hand-written `Event` fast path needs none of
//! this: it never allocates more than the input holds and does not recurse.

use std::borrow::Cow;

use apache_avro::Schema;
use apache_avro::schema::{
    DecimalSchema, InnerDecimalSchema, Name, NamesRef, ResolvedSchema, UuidSchema,
};

use crate::{Error, Result};

/// How deeply a body's values may nest (records in records, unions, arrays, maps, named
/// references). Helios' own records nest 3 levels. The bound is what apache-avro can
/// decode and resolve on a 2 MiB thread stack (std's and tokio's default) even in a debug
/// build, whose frames are large: about 30 KiB per level (a test checks it).
pub const MAX_DEPTH: usize = 32;

/// Checks that `body` can be decoded with `writer` without a length, count or nesting
/// depth that the data cannot back. `record` names the record type in errors.
pub(crate) fn check(writer: &Schema, body: &[u8], record: &'static str) -> Result<()> {
    let mut walk = Walk {
        root: writer,
        names: None,
        buf: body,
        pos: 0,
        record,
    };
    walk.value(writer, None, 0)
}

struct Walk<'s, 'b> {
    root: &'s Schema,
    /// Named types, resolved on the first reference (most schemas have none).
    names: Option<NamesRef<'s>>,
    buf: &'b [u8],
    pos: usize,
    record: &'static str,
}

impl<'s> Walk<'s, '_> {
    fn err(&self, reason: &'static str) -> Error {
        Error::Malformed {
            record: self.record,
            field: "a value of the writer schema",
            offset: self.pos,
            reason,
        }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        if n > self.left() {
            return Err(self.err("data ends inside a value"));
        }
        self.pos += n;
        Ok(())
    }

    fn long(&mut self) -> Result<i64> {
        let mut acc: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("data ends inside a varint"));
            };
            self.pos += 1;
            acc |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(((acc >> 1) as i64) ^ -((acc & 1) as i64));
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// A length-prefixed string or bytes value.
    fn bytes(&mut self) -> Result<()> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| self.err("negative length"))?;
        if len > self.left() {
            return Err(self.err(
                "a length runs past the end of the data; the record is truncated or was written with another schema",
            ));
        }
        self.pos += len;
        Ok(())
    }

    /// The blocks of an array or map; `item` walks one element.
    fn blocks(&mut self, mut item: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            let count = if count < 0 {
                // A negative count is followed by the block's size in bytes.
                self.long()?;
                count
                    .checked_neg()
                    .ok_or_else(|| self.err("block count overflows"))?
            } else {
                count
            };
            // Every element but a null takes at least one byte; a count beyond the bytes
            // left is a lie that apache-avro would reserve memory for.
            if u64::try_from(count).unwrap_or(u64::MAX) > self.left() as u64 {
                return Err(self.err("a block claims more items than there are bytes left"));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    fn named(&mut self, name: &Name, ns: Option<&str>) -> Result<(&'s Schema, Name)> {
        if self.names.is_none() {
            let resolved = ResolvedSchema::try_from(self.root)
                .map_err(|_| self.err("the writer schema has an unresolvable reference"))?;
            self.names = Some(resolved.get_names().clone());
        }
        let full: Cow<'_, Name> = name.fully_qualified_name(ns);
        let schema = self
            .names
            .as_ref()
            .and_then(|n| n.get(full.as_ref()).copied())
            .ok_or_else(|| self.err("the writer schema refers to an unknown named type"))?;
        Ok((schema, full.into_owned()))
    }

    fn value(&mut self, schema: &'s Schema, ns: Option<&str>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("values nest deeper than 32 levels"));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int
            | Schema::Long
            | Schema::Enum(_)
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::String | UuidSchema::Bytes)
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Bytes,
                ..
            }) => self.bytes(),
            Schema::Fixed(f)
            | Schema::Duration(f)
            | Schema::Uuid(UuidSchema::Fixed(f))
            | Schema::Decimal(DecimalSchema {
                inner: InnerDecimalSchema::Fixed(f),
                ..
            }) => self.skip(f.size),
            Schema::Array(a) => self.blocks(|w| w.value(&a.items, ns, depth + 1)),
            Schema::Map(m) => self.blocks(|w| {
                w.bytes()?;
                w.value(&m.types, ns, depth + 1)
            }),
            Schema::Union(u) => {
                let branch = self.long()?;
                let variant = usize::try_from(branch)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| self.err("union branch index out of range"))?;
                self.value(variant, ns, depth + 1)
            }
            Schema::Record(r) => {
                let full = r.name.fully_qualified_name(ns);
                for field in &r.fields {
                    self.value(&field.schema, full.namespace(), depth + 1)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let (target, full) = self.named(name, ns)?;
                self.value(target, full.namespace(), depth + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    fn refused(s: &Schema, body: &[u8]) -> String {
        check(s, body, "Test").unwrap_err().to_string()
    }

    #[test]
    fn lengths_and_counts_must_fit_the_data() {
        let s = schema(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":{"type":"array","items":"int"}}]}"#,
        );
        // "ab", then an array of 2 ints.
        check(&s, &[4, b'a', b'b', 4, 2, 4, 0], "Test").unwrap();
        // A 4107-byte string claimed by a 2-byte prefix (found by the property test).
        assert!(refused(&s, &[150, 64]).contains("runs past the end"));
        // A billion ints claimed by 5 bytes.
        assert!(refused(&s, &[0, 0x80, 0xa8, 0xd6, 0xb9, 0x07]).contains("more items"));
    }

    #[test]
    fn recursion_is_bounded_by_nesting_depth() {
        let s = schema(
            r#"{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}"#,
        );
        let mut body = vec![2u8; 5];
        body.push(0);
        check(&s, &body, "Test").unwrap();
        let mut deep = vec![2u8; 100_000];
        deep.push(0);
        assert!(refused(&s, &deep).contains("deeper than 32"));
    }

    /// The deepest body the bound admits decodes and resolves on a 2 MiB stack: found by
    /// the property test, where apache-avro overflowed the stack of a test thread at 128.
    #[test]
    fn the_deepest_admitted_body_decodes_on_a_default_stack() {
        use crate::records::{AvroRecord, Event};
        let writer = schema(
            r#"{"type":"record","name":"Event","namespace":"io.helios","fields":[
            {"name":"id","type":"string"},{"name":"source","type":"string"},
            {"name":"kind","type":"string"},{"name":"subject","type":"string"},
            {"name":"time","type":"long"},{"name":"received_at","type":"long"},
            {"name":"attrs","type":{"type":"map","values":"string"}},
            {"name":"chain","type":["null",{"type":"record","name":"Link","fields":[
                {"name":"next","type":["null","Link"]}]}],"default":null}]}"#,
        );
        let body = |links: usize| {
            let mut b = vec![2u8, b'a', 2, b'a', 2, b'a', 0, 0, 0, 0];
            b.extend(std::iter::repeat_n(2u8, links));
            b.push(0);
            b
        };
        let deepest = (0..MAX_DEPTH)
            .take_while(|&links| check(&writer, &body(links), "Event").is_ok())
            .last()
            .unwrap();
        assert!(deepest > 5, "{deepest}");
        let deepest = body(deepest);
        let decoded = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                apache_avro::reader::datum::GenericDatumReader::builder(&writer)
                    .reader_schema(Event::schema())
                    .build()
                    .and_then(|r| r.read_value(&mut &deepest[..]))
                    .is_ok()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(decoded);
    }
}
