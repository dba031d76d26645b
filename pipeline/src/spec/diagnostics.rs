//! Problems found in a spec, each with file, line, column, the offending text and a hint.

use std::fmt;
use std::ops::Range;

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// The offending text (one line of it at most).
    pub snippet: String,
    pub hint: Option<String>,
}

/// Every problem of one spec file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.file, d.line, d.column, d.message)?;
            if !d.snippet.is_empty() {
                write!(f, "\n    | {}", d.snippet)?;
            }
            if let Some(hint) = &d.hint {
                write!(f, "\n    = hint: {hint}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics against one source text.
#[derive(Debug)]
pub(crate) struct Collector<'t> {
    text: &'t str,
    pub(crate) out: Diagnostics,
}

impl<'t> Collector<'t> {
    pub(crate) fn new(text: &'t str, file: &str) -> Self {
        Collector {
            text,
            out: Diagnostics {
                file: file.to_string(),
                items: Vec::new(),
            },
        }
    }

    /// Reports a problem at the byte range `span` of the file.
    pub(crate) fn at(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let start = span.start.min(self.text.len());
        let end = span.end.clamp(start, self.text.len());
        let (line, column) = line_col(self.text, start);
        let snippet = self.text[start..end]
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end()
            .to_string();
        self.out.items.push(Diagnostic {
            line,
            column,
            message: message.into(),
            snippet,
            hint,
        });
    }

    /// Reports a problem at a 1-based (line, column) inside a string value that starts at
    /// byte `value_start` (its opening quote).
    pub(crate) fn in_string(
        &mut self,
        value: Range<usize>,
        inner: Option<(u64, u64)>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let raw = &self.text[value.start.min(self.text.len())..value.end.min(self.text.len())];
        // Skip the opening quote(s); positions inside are exact for strings without escapes.
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            usize::from(raw.starts_with(['"', '\'']))
        };
        let mut offset = value.start + quote;
        if let Some((line, col)) = inner {
            let body = &self.text[offset.min(self.text.len())..value.end.min(self.text.len())];
            let mut pos = 0usize;
            for (i, l) in body.split_inclusive('\n').enumerate() {
                if i + 1 == line as usize {
                    pos += l
                        .char_indices()
                        .nth(col.saturating_sub(1) as usize)
                        .map_or(l.len(), |(b, _)| b);
                    break;
                }
                pos += l.len();
            }
            offset += pos;
        }
        let end = if inner.is_some() {
            value.end.saturating_sub(quote).max(offset)
        } else {
            value.end
        };
        self.at(offset..end, message, hint);
    }

    /// How many problems so far.
    pub(crate) fn count(&self) -> usize {
        self.out.items.len()
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(self.text, offset.min(self.text.len()))
    }

    pub(crate) fn finish(mut self) -> Diagnostics {
        self.out.items.sort_by_key(|d| (d.line, d.column));
        self.out
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
