//! Functions that build values from a size argument (`repeat`, `lpad`, `replace`,
//! `array_repeat`, `range`, ...) replaced on each query's DataFusion session by wrappers
//! that first work out how big the value would be and refuse one over
//! [`Limits::max_value_bytes`](super::Limits). The check runs wherever the function runs:
//! constant folding while planning (`SELECT repeat('x', 1e9)`) and execution.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `repeat(s, n)`: `len(s) * n`.
    Repeat,
    /// `lpad(s, n [, fill])`: `n` characters.
    Pad,
    /// `replace(s, from, to)`: at most `len(s) / len(from)` replacements of `to`.
    Replace,
    /// `regexp_replace(s, pattern, to [, flags])`: at most `len(s) + 1` replacements.
    RegexpReplace,
    /// `array_repeat(v, n)`: `n` copies of `v`.
    ArrayRepeat,
    /// `array_resize(a, n [, v])`: `n` elements.
    ArrayResize,
    /// `range(stop)`, `range(start, stop [, step])` and `generate_series`: one element per
    /// step.
    Series,
}

const FUNCTIONS: &[(&str, Kind)] = &[
    ("repeat", Kind::Repeat),
    ("lpad", Kind::Pad),
    ("rpad", Kind::Pad),
    ("replace", Kind::Replace),
    ("regexp_replace", Kind::RegexpReplace),
    ("array_repeat", Kind::ArrayRepeat),
    ("array_resize", Kind::ArrayResize),
    ("range", Kind::Series),
    ("generate_series", Kind::Series),
];

/// Replaces the value-building functions of `ctx` with bounded ones.
pub fn install(ctx: &SessionContext, max_value_bytes: usize) {
    for (name, kind) in FUNCTIONS {
        // A function this build of DataFusion lacks cannot be called either.
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Bounded {
                inner,
                kind: *kind,
                max: max_value_bytes,
            }));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    kind: Kind,
    max: usize,
}

impl Bounded {
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        // Scalars only: one evaluation covers every row.
        let rows = if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            1
        } else {
            rows
        };
        for row in 0..rows {
            let values = args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row),
                })
                .collect::<Result<Vec<_>>>()?;
            let size = self.size(&values)?;
            if size > self.max as u128 {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{}() would build a value of {size} bytes, more than the limit of {} bytes \
                     (--sql-max-value-bytes)",
                    self.inner.name(),
                    self.max
                )));
            }
        }
        Ok(())
    }

    /// The size in bytes of the value built from one row's arguments.
    fn size(&self, v: &[ScalarValue]) -> Result<u128> {
        let arg = |i: usize| v.get(i);
        let len = |i: usize| arg(i).map_or(0, bytes);
        let count = |i: usize| -> Result<u128> {
            match arg(i) {
                None => Ok(0),
                Some(s) if s.is_null() => Ok(0),
                Some(s) => number(s)
                    .map(|n| n.max(0) as u128)
                    .ok_or_else(|| self.unbounded(s)),
            }
        };
        Ok(match self.kind {
            Kind::Repeat => len(0) * count(1)?,
            Kind::Pad => count(1)?.saturating_mul(len(2).max(1)),
            Kind::Replace => {
                let s = len(0);
                s + (s / len(1).max(1) + 1) * len(2)
            }
            Kind::RegexpReplace => {
                let s = len(0);
                s + (s + 1) * len(2)
            }
            Kind::ArrayRepeat => count(1)?.saturating_mul(len(0).max(1)),
            Kind::ArrayResize => count(1)?.saturating_mul(len(2).max(8)),
            Kind::Series => {
                if v.iter().any(ScalarValue::is_null) {
                    return Ok(0);
                }
                let n = |s: &ScalarValue| number(s).ok_or_else(|| self.unbounded(s));
                let (start, stop, step) = match v {
                    [stop] => (0, n(stop)?, 1),
                    [start, stop] => (n(start)?, n(stop)?, 1),
                    [start, stop, step] => (n(start)?, n(stop)?, n(step)?),
                    _ => return Ok(0),
                };
                if step == 0 || (stop - start).signum() * step.signum() < 0 {
                    0
                } else {
                    ((stop - start) / step).unsigned_abs().saturating_add(1) * 8
                }
            }
        })
    }

    fn unbounded(&self, value: &ScalarValue) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "{}(): cannot tell how big a value built from `{value}` would be, so it is refused",
            self.inner.name()
        ))
    }
}

/// Bytes of a value: the text or binary length, else the in-memory size.
fn bytes(v: &ScalarValue) -> u128 {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            s.as_ref().map_or(0, |s| s.len() as u128)
        }
        ScalarValue::Binary(b) | ScalarValue::LargeBinary(b) | ScalarValue::BinaryView(b) => {
            b.as_ref().map_or(0, |b| b.len() as u128)
        }
        other => other.size() as u128,
    }
}

/// A number, a point in time or a duration as one integer (times and intervals in
/// nanoseconds, months as 30 days), so counts and series lengths can be worked out.
fn number(v: &ScalarValue) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    Some(match v {
        ScalarValue::Int8(Some(x)) => *x as i128,
        ScalarValue::Int16(Some(x)) => *x as i128,
        ScalarValue::Int32(Some(x)) => *x as i128,
        ScalarValue::Int64(Some(x)) => *x as i128,
        ScalarValue::UInt8(Some(x)) => *x as i128,
        ScalarValue::UInt16(Some(x)) => *x as i128,
        ScalarValue::UInt32(Some(x)) => *x as i128,
        ScalarValue::UInt64(Some(x)) => *x as i128,
        ScalarValue::Float32(Some(x)) => *x as i128,
        ScalarValue::Float64(Some(x)) => *x as i128,
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.trim().parse().ok()?,
        ScalarValue::TimestampSecond(Some(x), _) | ScalarValue::DurationSecond(Some(x)) => {
            *x as i128 * 1_000_000_000
        }
        ScalarValue::TimestampMillisecond(Some(x), _)
        | ScalarValue::DurationMillisecond(Some(x))
        | ScalarValue::Date64(Some(x)) => *x as i128 * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(x), _)
        | ScalarValue::DurationMicrosecond(Some(x)) => *x as i128 * 1_000,
        ScalarValue::TimestampNanosecond(Some(x), _) | ScalarValue::DurationNanosecond(Some(x)) => {
            *x as i128
        }
        ScalarValue::Date32(Some(x)) => *x as i128 * DAY,
        ScalarValue::IntervalYearMonth(Some(m)) => *m as i128 * 30 * DAY,
        ScalarValue::IntervalDayTime(Some(x)) => {
            x.days as i128 * DAY + x.milliseconds as i128 * 1_000_000
        }
        ScalarValue::IntervalMonthDayNano(Some(x)) => {
            x.months as i128 * 30 * DAY + x.days as i128 * DAY + x.nanoseconds as i128
        }
        _ => return None,
    })
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(kind: Kind) -> Bounded {
        Bounded {
            inner: datafusion::functions::string::repeat(),
            kind,
            max: 1000,
        }
    }

    fn s(x: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(x.to_owned()))
    }

    fn i(x: i64) -> ScalarValue {
        ScalarValue::Int64(Some(x))
    }

    #[test]
    fn sizes_follow_the_arguments() {
        assert_eq!(bounded(Kind::Repeat).size(&[s("ab"), i(10)]).unwrap(), 20);
        assert_eq!(bounded(Kind::Pad).size(&[s("ab"), i(500)]).unwrap(), 500);
        assert_eq!(
            bounded(Kind::Replace)
                .size(&[s("xxxx"), s("x"), s("yy")])
                .unwrap(),
            4 + 5 * 2
        );
        assert_eq!(
            bounded(Kind::Series).size(&[i(1), i(100), i(1)]).unwrap(),
            100 * 8
        );
        assert_eq!(bounded(Kind::Series).size(&[i(10), i(1)]).unwrap(), 0);
        assert!(
            bounded(Kind::Repeat)
                .check(
                    &[
                        ColumnarValue::Scalar(s("x")),
                        ColumnarValue::Scalar(i(1001))
                    ],
                    1
                )
                .is_err()
        );
        assert!(
            bounded(Kind::Repeat)
                .check(
                    &[
                        ColumnarValue::Scalar(s("x")),
                        ColumnarValue::Scalar(i(1000))
                    ],
                    1
                )
                .is_ok()
        );
    }
}
