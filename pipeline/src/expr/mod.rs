//! SQL expressions over events: conditions (`where`), group-by keys and measure arguments.
//!
//! An expression is parsed with `sqlparser` (the parser DataFusion uses, so the dialect is
//! the SQL API's), type-checked against the event's columns, and compiled into a tree of
//! Rust closures evaluated per event (see ADR-004 in `docs/DECISIONS.md` for why closures
//! rather than DataFusion over Arrow batches). Strings read from the event are borrowed,
//! never copied, so a condition like `kind = 'ci.run' AND attrs['conclusion'] = 'failure'`
//! allocates nothing.
//!
//! Columns: `id`, `source`, `kind`, `subject`, `payload` (text), `value` (double),
//! `time`, `received_at` (bigint, µs since the epoch) and `attrs['key']` (text). NULL
//! follows SQL's three-valued logic; a condition that is NULL does not match.

mod compile;
mod functions;
mod measure;

pub use measure::{AggregateFn, GroupKeyExpr, MeasureExpr, compile_group_key, compile_measure};

use std::borrow::Cow;
use std::fmt;

use helios_schemas::Event;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Bool,
    Int,
    Float,
    Text,
    /// The `NULL` literal: fits anywhere.
    Null,
}

impl Type {
    fn is_numeric(self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Null)
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "boolean",
            Type::Int => "bigint",
            Type::Float => "double",
            Type::Text => "text",
            Type::Null => "null",
        })
    }
}

/// A value computed for one event. Text read from the event is borrowed.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
}

impl Value<'_> {
    /// Numbers as `f64` (for aggregates); `None` for NULL and non-numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Whether this is SQL TRUE (NULL and FALSE are not).
    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// Text form, as used for group keys (`None` for NULL).
    pub fn to_key(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Text(s) => Some(s.to_string()),
        }
    }

    /// [`Value::to_key`] into `slot`, reusing the capacity of the string already there
    /// (per-event group keys without an allocation per event).
    pub fn write_key(&self, slot: &mut Option<String>) {
        use std::fmt::Write;
        let buf = match (self, slot.as_mut()) {
            (Value::Null, _) => {
                *slot = None;
                return;
            }
            (_, Some(buf)) => {
                buf.clear();
                buf
            }
            (_, None) => slot.insert(String::new()),
        };
        // Writing to a String cannot fail.
        let _ = match self {
            Value::Null => Ok(()),
            Value::Bool(b) => write!(buf, "{b}"),
            Value::Int(i) => write!(buf, "{i}"),
            Value::Float(f) => write!(buf, "{f}"),
            Value::Text(s) => {
                buf.push_str(s);
                Ok(())
            }
        };
    }

    /// Calls `f` with the key bytes of [`Value::to_key`] (nothing for NULL), borrowing
    /// text instead of copying it.
    pub fn with_key_bytes(&self, f: impl FnOnce(&[u8])) {
        match self {
            Value::Null => {}
            Value::Text(s) => f(s.as_bytes()),
            other => {
                if let Some(k) = other.to_key() {
                    f(k.as_bytes())
                }
            }
        }
    }
}

/// A compiled expression evaluator.
pub(crate) type Eval = Box<dyn for<'a> Fn(&'a Event) -> Value<'a> + Send + Sync>;

/// A parsed, checked and compiled expression.
pub struct Expr {
    source: String,
    ty: Type,
    eval: Eval,
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expr")
            .field("source", &self.source)
            .field("type", &self.ty)
            .finish_non_exhaustive()
    }
}

impl Expr {
    /// Parses and compiles `sql`.
    pub fn compile(sql: &str) -> Result<Expr, ExprError> {
        let ast = parse(sql)?;
        let (ty, eval) = compile::compile(&ast)?;
        Ok(Expr {
            source: sql.to_string(),
            ty,
            eval,
        })
    }

    /// Compiles `sql` and requires a boolean (a condition).
    pub fn compile_condition(sql: &str) -> Result<Expr, ExprError> {
        let e = Expr::compile(sql)?;
        if !matches!(e.ty, Type::Bool | Type::Null) {
            return Err(ExprError {
                message: format!("a condition must be boolean, but this is {}", e.ty),
                position: Some((1, 1)),
                hint: Some("compare it, e.g. `kind = 'ci.run'` or `value > 10`".into()),
            });
        }
        Ok(e)
    }

    pub fn ty(&self) -> Type {
        self.ty
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression for one event.
    pub fn eval<'a>(&self, event: &'a Event) -> Value<'a> {
        (self.eval)(event)
    }

    /// Whether a condition matches (NULL does not).
    pub fn matches(&self, event: &Event) -> bool {
        (self.eval)(event).is_true()
    }
}

/// Why an expression was refused, with the position inside the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub message: String,
    /// 1-based (line, column) inside the expression text.
    pub position: Option<(u64, u64)>,
    pub hint: Option<String>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some((line, col)) = self.position {
            write!(f, " (at line {line}, column {col} of the expression)")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ExprError {}

fn parse(sql: &str) -> Result<sqlparser::ast::Expr, ExprError> {
    let dialect = GenericDialect {};
    let syntax = |e: sqlparser::parser::ParserError| {
        let text = e.to_string();
        ExprError {
            position: position_in_message(&text),
            message: format!("syntax error: {}", strip_position(&text)),
            hint: None,
        }
    };
    let mut parser = Parser::new(&dialect).try_with_sql(sql).map_err(syntax)?;
    let expr = parser.parse_expr().map_err(syntax)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(ExprError {
            message: format!(
                "unexpected `{}` after the end of the expression",
                next.token
            ),
            position: Some((next.span.start.line, next.span.start.column)),
            hint: Some(
                "a spec expression is one SQL expression; combine conditions with AND / OR".into(),
            ),
        });
    }
    Ok(expr)
}

/// sqlparser reports positions as text: "... at Line: 1, Column: 7".
fn position_in_message(text: &str) -> Option<(u64, u64)> {
    let at = text.rfind("Line: ")?;
    let rest = &text[at + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

fn strip_position(text: &str) -> &str {
    let text = text.strip_prefix("sql parser error: ").unwrap_or(text);
    match text.rfind(" at Line: ") {
        Some(i) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests;
