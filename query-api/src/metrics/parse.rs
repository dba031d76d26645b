//! Reads the text format back, strictly: what tests (and tools) use to check that a
//! scrape is well formed and to look values up.
//!
//! Checked: line grammar, names, label escapes, values; one `# HELP` and one `# TYPE` per
//! family, before its samples; a family's samples together; no series twice; histogram
//! and summary sample suffixes only on families of that type.

use std::collections::{BTreeMap, BTreeSet};

use super::text::{valid_label_name, valid_metric_name};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (with `_bucket`, `_sum` or `_count` where it has one).
    pub name: String,
    /// The family it belongs to.
    pub family: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Family name to its `# TYPE`.
    pub types: BTreeMap<String, String>,
    /// Family name to its (unescaped) `# HELP`.
    pub help: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Samples named `name` whose labels include every `(label, value)` of `matching`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        matching: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the values of [`Scrape::find`].
    pub fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.find(name, matching).map(|s| s.value).sum()
    }
}

/// What is wrong with a scrape, and on which line (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Scrape, ParseError> {
    let mut scrape = Scrape::default();
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let err = |message: String| ParseError { line: n, message };
        if line.is_empty() {
            continue;
        }
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), ParseError> {
            if current.as_deref() != Some(family) {
                if closed.contains(family) {
                    return Err(err(format!("family `{family}` appears in two places")));
                }
                if let Some(prev) = current.take() {
                    closed.insert(prev);
                }
                *current = Some(family.to_owned());
            }
            Ok(())
        };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            if !valid_metric_name(name) {
                return Err(err(format!("invalid metric name `{name}` in HELP")));
            }
            enter(name, &mut current)?;
            let help = unescape(help).map_err(err)?;
            if scrape.help.insert(name.to_owned(), help).is_some() {
                return Err(err(format!("second HELP for `{name}`")));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let Some((name, kind)) = rest.split_once(' ') else {
                return Err(err("TYPE without a type".into()));
            };
            if !valid_metric_name(name) {
                return Err(err(format!("invalid metric name `{name}` in TYPE")));
            }
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(err(format!("unknown type `{kind}`")));
            }
            enter(name, &mut current)?;
            if scrape.samples.iter().any(|s| s.family == name) {
                return Err(err(format!("TYPE for `{name}` after its samples")));
            }
            if scrape
                .types
                .insert(name.to_owned(), kind.to_owned())
                .is_some()
            {
                return Err(err(format!("second TYPE for `{name}`")));
            }
        } else if line.starts_with('#') {
            continue;
        } else {
            let (name, labels, value) = sample_line(line).map_err(err)?;
            let family = family_of(&name, &scrape.types);
            enter(&family, &mut current)?;
            let kind = scrape.types.get(&family).map_or("untyped", String::as_str);
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err(format!("counter `{name}` does not end in _total")));
            }
            if name.ends_with("_bucket") && kind == "histogram" && !labels.contains_key("le") {
                return Err(err(format!("bucket of `{family}` without `le`")));
            }
            let key = (name.clone(), labels.clone().into_iter().collect::<Vec<_>>());
            if !series.insert(key) {
                return Err(err(format!("series `{name}` {labels:?} appears twice")));
            }
            scrape.samples.push(Sample {
                name,
                family,
                labels,
                value,
            });
        }
    }
    Ok(scrape)
}

/// The family of a sample name: itself, or its histogram or summary.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> String {
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|k| kinds.contains(&k.as_str()))
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

type Labels = BTreeMap<String, String>;

fn sample_line(line: &str) -> Result<(String, Labels, f64), String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("sample without a value: `{line}`"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("invalid metric name `{name}`"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut s) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = s.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = s
                .find('=')
                .ok_or_else(|| format!("label without `=` in `{line}`"))?;
            let label = &s[..eq];
            if !valid_label_name(label) {
                return Err(format!("invalid label name `{label}`"));
            }
            s = s[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("label `{label}` value is not quoted"))?;
            let mut raw = String::new();
            let mut end = None;
            let mut chars = s.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, '\\')) => raw.push('\\'),
                        Some((_, '"')) => raw.push('"'),
                        Some((_, 'n')) => raw.push('\n'),
                        other => return Err(format!("bad escape {other:?} in label `{label}`")),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => raw.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("label `{label}` value is not closed"))?;
            s = &s[end..];
            if labels.insert(label.to_owned(), raw).is_some() {
                return Err(format!("label `{label}` given twice"));
            }
            if let Some(after) = s.strip_prefix(',') {
                s = after;
            } else if !s.starts_with('}') {
                return Err(format!("expected `,` or `}}` after label `{label}`"));
            }
        }
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in `{line}`"))?;
    // An optional timestamp may follow; Helios writes none.
    let value = rest.split(' ').next().unwrap_or("");
    let value = match value {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse::<f64>()
            .map_err(|e| format!("value `{v}` is not a number: {e}"))?,
    };
    Ok((name.to_owned(), labels, value))
}

/// Undoes [`super::text::escape_help`].
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            other => return Err(format!("bad escape {other:?} in `{s}`")),
        }
    }
    Ok(out)
}
