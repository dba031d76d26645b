//! Per-window accumulators of the measure functions; all mergeable (session windows merge).

use serde::{Deserialize, Serialize};

use super::sketch::{DdBucket, DdSketch, Hll};
use crate::expr::{AggregateFn, Value};

/// One event's argument for one measure, reduced to what an accumulator of that measure
/// reads, so a hopping event computes it once (a hash for `count_distinct`, a logarithm
/// for `quantile`) rather than once per window it falls in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input {
    /// Counted by `count`: no argument (`count(*)`) or a non-NULL one.
    counts: bool,
    /// The argument as a number, if finite: a NaN or an infinity (an event's `value` from a
    /// producer that writes to the log directly) would stay in a window's sum, mean, min or
    /// max for good, so numeric measures skip it; `count` still counts it.
    num: Option<f64>,
    /// `count_distinct`: the HLL register the argument sets.
    register: Option<(u16, u8)>,
    /// `quantile`: the DDSketch bucket of the number.
    bucket: Option<DdBucket>,
}

impl Input {
    /// The input of measure function `f` for argument value `arg` (`None` = `count(*)`).
    pub fn new(f: AggregateFn, arg: Option<&Value<'_>>) -> Self {
        let num = arg.and_then(Value::as_f64).filter(|x| x.is_finite());
        let mut register = None;
        if let (AggregateFn::CountDistinct, Some(v)) = (f, arg) {
            v.with_key_bytes(|k| register = Some(Hll::register(k)));
        }
        Input {
            counts: arg.is_none_or(|v| !matches!(v, Value::Null)),
            num,
            register,
            bucket: match f {
                AggregateFn::Quantile(_) => num.and_then(DdSketch::bucket),
                _ => None,
            },
        }
    }
}

/// The running state of one measure in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    Count(u64),
    Sum(Option<f64>),
    Min(Option<f64>),
    Max(Option<f64>),
    Avg {
        sum: f64,
        n: u64,
    },
    // The large variants are boxed so every accumulator is 24 bytes: a window's measures
    // sit in one small allocation however many windows are open (1M keys of count + sum
    // take 48 bytes each, not 160). Boxes serialize as their contents.
    CountDistinct(Box<Hll>),
    Quantile(f64, Box<DdSketch>),
    /// (event time, arrival sequence, value): the earliest by event time, ties by arrival.
    First(Option<Box<(i64, u64, f64)>>),
    /// The latest by event time, ties by arrival.
    Last(Option<Box<(i64, u64, f64)>>),
}

impl Accumulator {
    pub fn new(f: AggregateFn) -> Self {
        match f {
            AggregateFn::Count => Accumulator::Count(0),
            AggregateFn::Sum => Accumulator::Sum(None),
            AggregateFn::Min => Accumulator::Min(None),
            AggregateFn::Max => Accumulator::Max(None),
            AggregateFn::Avg => Accumulator::Avg { sum: 0.0, n: 0 },
            AggregateFn::CountDistinct => Accumulator::CountDistinct(Box::default()),
            AggregateFn::Quantile(q) => Accumulator::Quantile(q, Box::default()),
            AggregateFn::First => Accumulator::First(None),
            AggregateFn::Last => Accumulator::Last(None),
        }
    }

    /// Adds one event's input (made by [`Input::new`] with this measure's function).
    pub fn update(&mut self, input: &Input, time: i64, seq: u64) {
        let num = input.num;
        match self {
            Accumulator::Count(n) => {
                if input.counts {
                    *n += 1;
                }
            }
            Accumulator::Sum(s) => {
                if let Some(x) = num {
                    *s = Some(s.unwrap_or(0.0) + x);
                }
            }
            Accumulator::Min(m) => {
                if let Some(x) = num {
                    *m = Some(m.map_or(x, |m| m.min(x)));
                }
            }
            Accumulator::Max(m) => {
                if let Some(x) = num {
                    *m = Some(m.map_or(x, |m| m.max(x)));
                }
            }
            Accumulator::Avg { sum, n } => {
                if let Some(x) = num {
                    *sum += x;
                    *n += 1;
                }
            }
            Accumulator::CountDistinct(h) => {
                if let Some(r) = input.register {
                    h.insert_register(r);
                }
            }
            Accumulator::Quantile(_, s) => {
                if let Some(b) = input.bucket {
                    s.insert_bucket(b);
                }
            }
            Accumulator::First(f) => {
                if let Some(x) = num
                    && f.as_deref().is_none_or(|&(t, s, _)| (time, seq) < (t, s))
                {
                    *f = Some(Box::new((time, seq, x)));
                }
            }
            Accumulator::Last(l) => {
                if let Some(x) = num
                    && l.as_deref().is_none_or(|&(t, s, _)| (time, seq) > (t, s))
                {
                    *l = Some(Box::new((time, seq, x)));
                }
            }
        }
    }

    /// Folds another window's state of the same measure into this one.
    pub fn merge(&mut self, other: &Accumulator) {
        fn pick(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
            match (a, b) {
                (Some(x), Some(y)) => Some(f(x, y)),
                (x, y) => x.or(y),
            }
        }
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::Sum(a), Accumulator::Sum(b)) => *a = pick(*a, *b, |x, y| x + y),
            (Accumulator::Min(a), Accumulator::Min(b)) => *a = pick(*a, *b, f64::min),
            (Accumulator::Max(a), Accumulator::Max(b)) => *a = pick(*a, *b, f64::max),
            (Accumulator::Avg { sum, n }, Accumulator::Avg { sum: s2, n: n2 }) => {
                *sum += s2;
                *n += n2;
            }
            (Accumulator::CountDistinct(a), Accumulator::CountDistinct(b)) => a.merge(b),
            (Accumulator::Quantile(_, a), Accumulator::Quantile(_, b)) => a.merge(b),
            (Accumulator::First(a), Accumulator::First(b)) => {
                if let Some(o) = b
                    && a.as_deref().is_none_or(|m| (o.0, o.1) < (m.0, m.1))
                {
                    *a = Some(o.clone());
                }
            }
            (Accumulator::Last(a), Accumulator::Last(b)) => {
                if let Some(o) = b
                    && a.as_deref().is_none_or(|m| (o.0, o.1) > (m.0, m.1))
                {
                    *a = Some(o.clone());
                }
            }
            // Accumulators of one measure always have the same function.
            _ => {}
        }
    }

    /// The measure's value; `None` is SQL NULL (no input values).
    pub fn result(&self) -> Option<f64> {
        match self {
            Accumulator::Count(n) => Some(*n as f64),
            Accumulator::Sum(s) | Accumulator::Min(s) | Accumulator::Max(s) => *s,
            Accumulator::Avg { sum, n } => (*n > 0).then(|| sum / *n as f64),
            Accumulator::CountDistinct(h) => Some(h.estimate().round()),
            Accumulator::Quantile(q, s) => s.quantile(*q),
            Accumulator::First(f) | Accumulator::Last(f) => f.as_deref().map(|&(_, _, v)| v),
        }
    }
}
