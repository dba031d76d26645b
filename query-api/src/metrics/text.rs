//! The Prometheus text exposition format, version 0.0.4: one `# HELP` and one `# TYPE`
//! line per family, then every sample of that family, label values escaped.
//!
//! Collectors add samples in any order (several collectors may add to one family, e.g.
//! `helios_errors_total` from every stage); the writer keeps each family's samples
//! together, which the format requires, and lists families in the order first used.

use std::collections::HashMap;
use std::fmt::Write as _;

use tracing::warn;

/// What kind of family a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart); the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_sum` and `_count` of observations (no quantiles: none are computed).
    Summary,
    /// Cumulative `_bucket{le}` counts plus `_sum` and `_count`.
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: its name, kind, label names (in the order values are given) and
/// help text. Every family Helios exposes is a constant in [`super::names`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

/// A sample value. Integers are written exactly (a counter past 2^53 keeps its digits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(u64),
    Signed(i64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Signed(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Signed(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Float(v) => write_float(out, v),
    }
}

/// Go's `ParseFloat` (what Prometheus uses) reads Rust's shortest round-trip form; only
/// the special values need their Prometheus spelling.
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes help text: backslash and line feed (quotes stay as they are).
pub fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved for Prometheus).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The samples of one family gathered so far.
#[derive(Debug)]
struct Gathered {
    family: Family,
    body: String,
}

/// A scrape being written: families with their samples.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Gathered>,
    index: HashMap<&'static str, usize>,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Adds one counter sample; `labels` are the values of `family.labels`, in order.
    pub fn counter(&mut self, family: &Family, labels: &[&str], value: u64) {
        if let Some(body) = self.body(family, Kind::Counter, labels) {
            write_sample(
                body,
                family.name,
                "",
                family.labels,
                labels,
                None,
                value.into(),
            );
        }
    }

    /// Adds one gauge sample.
    pub fn gauge(&mut self, family: &Family, labels: &[&str], value: impl Into<Value>) {
        if let Some(body) = self.body(family, Kind::Gauge, labels) {
            write_sample(
                body,
                family.name,
                "",
                family.labels,
                labels,
                None,
                value.into(),
            );
        }
    }

    /// Adds one summary series without quantiles: the sum and count of observations.
    pub fn summary(&mut self, family: &Family, labels: &[&str], sum: f64, count: u64) {
        if let Some(body) = self.body(family, Kind::Summary, labels) {
            let (names, values) = (family.labels, labels);
            write_sample(body, family.name, "_sum", names, values, None, sum.into());
            write_sample(
                body,
                family.name,
                "_count",
                names,
                values,
                None,
                count.into(),
            );
        }
    }

    /// Adds one histogram series. `buckets` are `(upper bound, observations <= bound)`,
    /// cumulative and ascending, without `+Inf` (that bucket is `count`).
    pub fn histogram(
        &mut self,
        family: &Family,
        labels: &[&str],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        let ascending = buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        if !ascending || buckets.last().is_some_and(|b| b.1 > count) {
            warn!(
                metric = family.name,
                "Histogram buckets are not cumulative and ascending; the series is left out."
            );
            return;
        }
        let Some(body) = self.body(family, Kind::Histogram, labels) else {
            return;
        };
        let (names, values) = (family.labels, labels);
        let mut le = String::new();
        for &(bound, n) in buckets {
            le.clear();
            write_float(&mut le, bound);
            write_sample(
                body,
                family.name,
                "_bucket",
                names,
                values,
                Some(&le),
                n.into(),
            );
        }
        write_sample(
            body,
            family.name,
            "_bucket",
            names,
            values,
            Some("+Inf"),
            count.into(),
        );
        write_sample(body, family.name, "_sum", names, values, None, sum.into());
        write_sample(
            body,
            family.name,
            "_count",
            names,
            values,
            None,
            count.into(),
        );
    }

    /// The family's sample buffer, or `None` (with a warning) when the call does not fit
    /// the family: a wrong kind or a wrong number of label values is a collector bug, and
    /// the scrape goes on without that sample rather than fail.
    fn body(&mut self, family: &Family, kind: Kind, labels: &[&str]) -> Option<&mut String> {
        if family.kind != kind || family.labels.len() != labels.len() {
            warn!(
                metric = family.name,
                declared = family.kind.as_str(),
                used_as = kind.as_str(),
                labels_declared = family.labels.len(),
                labels_given = labels.len(),
                "A collector wrote a sample that does not fit its family; the sample is left out."
            );
            return None;
        }
        let i = match self.index.get(family.name) {
            Some(&i) => i,
            None => {
                self.families.push(Gathered {
                    family: *family,
                    body: String::new(),
                });
                self.index.insert(family.name, self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let gathered = &mut self.families[i];
        if gathered.family != *family {
            warn!(
                metric = family.name,
                "Two different families share one name; the second one's sample is left out."
            );
            return None;
        }
        Some(&mut gathered.body)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.families.iter().map(|f| f.body.len() + 128).sum());
        for g in &self.families {
            out.push_str("# HELP ");
            out.push_str(g.family.name);
            out.push(' ');
            escape_help(&mut out, g.family.help);
            out.push_str("\n# TYPE ");
            out.push_str(g.family.name);
            out.push(' ');
            out.push_str(g.family.kind.as_str());
            out.push('\n');
            out.push_str(&g.body);
        }
        out
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    label_names: &[&str],
    label_values: &[&str],
    le: Option<&str>,
    value: Value,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !label_names.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let pairs = label_names.iter().zip(label_values);
        for (n, v) in pairs.chain(le.as_ref().map(|le| (&"le", le))) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(n);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}
