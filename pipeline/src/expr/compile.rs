//! From a `sqlparser` AST to a checked tree of closures.

use std::borrow::Cow;
use std::cmp::Ordering;

use helios_schemas::Event;
use regex::Regex;
use sqlparser::ast::{
    self as ast, AccessExpr, BinaryOperator as B, Expr as E, Spanned, Subscript, UnaryOperator,
};

use super::{Eval, ExprError, Type, Value, functions};

pub(super) type Compiled = (Type, Eval);

/// Lets closures be inferred as `for<'a> Fn(&'a Event) -> Value<'a>`.
pub(super) fn eval<F>(f: F) -> Eval
where
    F: for<'a> Fn(&'a Event) -> Value<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

pub(super) fn error(
    node: &impl Spanned,
    message: impl Into<String>,
    hint: Option<&str>,
) -> ExprError {
    let span = node.span();
    ExprError {
        message: message.into(),
        position: (span.start.line > 0).then_some((span.start.line, span.start.column)),
        hint: hint.map(str::to_string),
    }
}

const COLUMNS: &str =
    "columns are id, source, kind, subject, time, received_at, value, payload and attrs['key']";

pub(super) fn compile(e: &E) -> Result<Compiled, ExprError> {
    match e {
        E::Identifier(id) => column(e, id),
        E::CompoundIdentifier(parts) => Err(error(
            e,
            format!(
                "unknown column `{}`",
                parts
                    .iter()
                    .map(|p| p.value.as_str())
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            Some(
                "attributes are read as attrs['name']; other columns are id, source, kind, subject, time, received_at, value, payload",
            ),
        )),
        E::CompoundFieldAccess { root, access_chain } => attr(e, root, access_chain),
        E::Value(v) => literal(e, &v.value),
        E::Nested(inner) => compile(inner),
        E::UnaryOp { op, expr } => unary(e, *op, expr),
        E::BinaryOp { left, op, right } => binary(e, left, op, right),
        E::IsNull(x) => {
            let (_, x) = compile(x)?;
            Ok((
                Type::Bool,
                eval(move |ev| Value::Bool(matches!(x(ev), Value::Null))),
            ))
        }
        E::IsNotNull(x) => {
            let (_, x) = compile(x)?;
            Ok((
                Type::Bool,
                eval(move |ev| Value::Bool(!matches!(x(ev), Value::Null))),
            ))
        }
        E::InList {
            expr,
            list,
            negated,
        } => in_list(expr, list, *negated),
        E::Between {
            expr,
            negated,
            low,
            high,
        } => between(expr, low, high, *negated),
        E::Like {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(error(
                    e,
                    "LIKE ANY is not supported",
                    Some("combine LIKE conditions with OR"),
                ));
            }
            like(
                e,
                expr,
                pattern,
                escape_char.as_ref().map(|v| &v.value),
                false,
                *negated,
            )
        }
        E::ILike {
            negated,
            any,
            expr,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(error(
                    e,
                    "ILIKE ANY is not supported",
                    Some("combine ILIKE conditions with OR"),
                ));
            }
            like(
                e,
                expr,
                pattern,
                escape_char.as_ref().map(|v| &v.value),
                true,
                *negated,
            )
        }
        E::RLike {
            negated,
            expr,
            pattern,
            ..
        } => regex_match(expr, pattern, false, *negated),
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => case(e, operand.as_deref(), conditions, else_result.as_deref()),
        E::Cast {
            expr, data_type, ..
        } => cast(e, expr, data_type),
        E::Function(f) => functions::compile(e, f),
        E::Floor {
            expr,
            field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
        }
        | E::Ceil {
            expr,
            field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
        } => {
            let (ty, x) = compile(expr)?;
            expect_numeric(expr, ty, "FLOOR/CEIL")?;
            let f: fn(f64) -> f64 = if matches!(e, E::Floor { .. }) {
                f64::floor
            } else {
                f64::ceil
            };
            Ok((
                Type::Float,
                eval(move |ev| x(ev).as_f64().map_or(Value::Null, |v| Value::Float(f(v)))),
            ))
        }
        E::Trim {
            expr,
            trim_where: None,
            trim_what: None,
            trim_characters: None,
        } => {
            let (ty, x) = compile(expr)?;
            expect_text(expr, ty, "TRIM")?;
            Ok((
                Type::Text,
                functions::map_text(x, |s| Cow::Owned(s.trim().to_string())),
            ))
        }
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![expr.as_ref().clone()];
            args.extend(substring_from.iter().map(|b| b.as_ref().clone()));
            args.extend(substring_for.iter().map(|b| b.as_ref().clone()));
            functions::substr(e, &args)
        }
        other => Err(error(
            other,
            format!("`{other}` is not supported in spec expressions"),
            Some(
                "use comparisons, AND/OR/NOT, IN, LIKE, ~ (regex), arithmetic, CASE, CAST, IS NULL and scalar functions",
            ),
        )),
    }
}

fn column(node: &E, id: &ast::Ident) -> Result<Compiled, ExprError> {
    let text = |f: fn(&Event) -> &str| -> Compiled {
        (
            Type::Text,
            eval(move |ev| Value::Text(Cow::Borrowed(f(ev)))),
        )
    };
    Ok(match id.value.to_ascii_lowercase().as_str() {
        "id" => text(|e| &e.id),
        "source" => text(|e| &e.source),
        "kind" => text(|e| &e.kind),
        "subject" => text(|e| &e.subject),
        "payload" => (
            Type::Text,
            eval(|ev| {
                ev.payload
                    .as_deref()
                    .map_or(Value::Null, |p| Value::Text(Cow::Borrowed(p)))
            }),
        ),
        "value" => (
            Type::Float,
            eval(|ev| ev.value.map_or(Value::Null, Value::Float)),
        ),
        "time" => (Type::Int, eval(|ev| Value::Int(ev.time))),
        "received_at" => (Type::Int, eval(|ev| Value::Int(ev.received_at))),
        "attrs" => {
            return Err(error(
                node,
                "`attrs` is a map; read one attribute as attrs['name']",
                None,
            ));
        }
        other => {
            return Err(error(
                node,
                format!("unknown column `{other}`"),
                Some(COLUMNS),
            ));
        }
    })
}

fn attr(e: &E, root: &E, chain: &[AccessExpr]) -> Result<Compiled, ExprError> {
    let is_attrs = matches!(root, E::Identifier(id) if id.value.eq_ignore_ascii_case("attrs"));
    let key = match chain {
        [AccessExpr::Subscript(Subscript::Index { index: E::Value(v) })] => match &v.value {
            ast::Value::SingleQuotedString(k) => Some(k.clone()),
            _ => None,
        },
        _ => None,
    };
    match (is_attrs, key) {
        (true, Some(key)) => Ok((
            Type::Text,
            eval(move |ev| {
                ev.attrs
                    .get(&key)
                    .map_or(Value::Null, |v| Value::Text(Cow::Borrowed(v.as_str())))
            }),
        )),
        (true, None) => Err(error(
            e,
            "attributes are read with a quoted name",
            Some("write attrs['name']"),
        )),
        (false, _) => Err(error(e, format!("`{e}` is not a column"), Some(COLUMNS))),
    }
}

fn literal(node: &E, v: &ast::Value) -> Result<Compiled, ExprError> {
    Ok(match v {
        ast::Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i64>() {
                (Type::Int, eval(move |_| Value::Int(i)))
            } else if let Ok(f) = n.parse::<f64>() {
                (Type::Float, eval(move |_| Value::Float(f)))
            } else {
                return Err(error(
                    node,
                    format!("`{n}` is not a number Helios can represent"),
                    None,
                ));
            }
        }
        ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
            let s: std::sync::Arc<str> = s.as_str().into();
            (
                Type::Text,
                eval(move |_| Value::Text(Cow::Owned(s.to_string()))),
            )
        }
        ast::Value::Boolean(b) => {
            let b = *b;
            (Type::Bool, eval(move |_| Value::Bool(b)))
        }
        ast::Value::Null => (Type::Null, eval(|_| Value::Null)),
        other => {
            return Err(error(
                node,
                format!("literal `{other}` is not supported"),
                Some("use 'single quoted' text, numbers, TRUE, FALSE or NULL"),
            ));
        }
    })
}

/// `k` for `attrs['k']`.
pub(super) fn text_literal_in_subscript(e: &E) -> Option<&str> {
    match e {
        E::CompoundFieldAccess { access_chain, .. } => match access_chain.as_slice() {
            [AccessExpr::Subscript(Subscript::Index { index })] => text_literal(index),
            _ => None,
        },
        _ => None,
    }
}

/// A text literal's value, if `e` is one (patterns must be literals so they compile once).
pub(super) fn text_literal(e: &E) -> Option<&str> {
    match e {
        E::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => Some(s),
            _ => None,
        },
        E::Nested(inner) => text_literal(inner),
        _ => None,
    }
}

fn unary(node: &E, op: UnaryOperator, x: &E) -> Result<Compiled, ExprError> {
    let (ty, x_eval) = compile(x)?;
    match op {
        UnaryOperator::Not => {
            expect_bool(x, ty, "NOT")?;
            Ok((
                Type::Bool,
                eval(move |ev| match x_eval(ev) {
                    Value::Bool(b) => Value::Bool(!b),
                    _ => Value::Null,
                }),
            ))
        }
        UnaryOperator::Minus => {
            expect_numeric(x, ty, "-")?;
            Ok((
                ty,
                eval(move |ev| match x_eval(ev) {
                    Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
                    Value::Float(f) => Value::Float(-f),
                    _ => Value::Null,
                }),
            ))
        }
        UnaryOperator::Plus => {
            expect_numeric(x, ty, "+")?;
            Ok((ty, x_eval))
        }
        other => Err(error(
            node,
            format!("operator `{other}` is not supported"),
            None,
        )),
    }
}

fn binary(node: &E, left: &E, op: &B, right: &E) -> Result<Compiled, ExprError> {
    match op {
        B::PGRegexMatch => return regex_match(left, right, false, false),
        B::PGRegexIMatch => return regex_match(left, right, true, false),
        B::PGRegexNotMatch => return regex_match(left, right, false, true),
        B::PGRegexNotIMatch => return regex_match(left, right, true, true),
        _ => {}
    }
    let (lt, l) = compile(left)?;
    let (rt, r) = compile(right)?;
    match op {
        B::And | B::Or => {
            expect_bool(left, lt, &op.to_string())?;
            expect_bool(right, rt, &op.to_string())?;
            let and = matches!(op, B::And);
            Ok((
                Type::Bool,
                eval(move |ev| {
                    let a = l(ev);
                    // Short-circuit where SQL's three-valued logic allows it.
                    match (and, &a) {
                        (true, Value::Bool(false)) => return Value::Bool(false),
                        (false, Value::Bool(true)) => return Value::Bool(true),
                        _ => {}
                    }
                    match (and, a, r(ev)) {
                        (true, _, Value::Bool(false)) => Value::Bool(false),
                        (false, _, Value::Bool(true)) => Value::Bool(true),
                        (_, Value::Bool(x), Value::Bool(_)) => Value::Bool(x),
                        _ => Value::Null,
                    }
                }),
            ))
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
            comparable(node, lt, rt)?;
            let test: fn(Ordering) -> bool = match op {
                B::Eq => Ordering::is_eq,
                B::NotEq => Ordering::is_ne,
                B::Lt => Ordering::is_lt,
                B::LtEq => Ordering::is_le,
                B::Gt => Ordering::is_gt,
                _ => Ordering::is_ge,
            };
            // Hot path: text compared with a literal, without materialising the literal.
            if let Some(lit) = text_literal(right).map(str::to_string) {
                return Ok((
                    Type::Bool,
                    eval(move |ev| match l(ev) {
                        Value::Text(s) => Value::Bool(test(s.as_ref().cmp(lit.as_str()))),
                        _ => Value::Null,
                    }),
                ));
            }
            Ok((
                Type::Bool,
                eval(move |ev| match compare(&l(ev), &r(ev)) {
                    Some(o) => Value::Bool(test(o)),
                    None => Value::Null,
                }),
            ))
        }
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            expect_numeric(left, lt, &op.to_string())?;
            expect_numeric(right, rt, &op.to_string())?;
            let ty = if lt == Type::Int && rt == Type::Int {
                Type::Int
            } else {
                Type::Float
            };
            let op = op.clone();
            Ok((ty, eval(move |ev| arithmetic(&op, l(ev), r(ev)))))
        }
        B::StringConcat => Ok((
            Type::Text,
            eval(move |ev| match (l(ev), r(ev)) {
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (a, b) => Value::Text(Cow::Owned(format!(
                    "{}{}",
                    a.to_key().unwrap_or_default(),
                    b.to_key().unwrap_or_default()
                ))),
            }),
        )),
        other => Err(error(
            node,
            format!("operator `{other}` is not supported"),
            None,
        )),
    }
}

fn arithmetic<'a>(op: &B, a: Value<'a>, b: Value<'a>) -> Value<'a> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => match op {
            B::Plus => x.checked_add(y),
            B::Minus => x.checked_sub(y),
            B::Multiply => x.checked_mul(y),
            B::Divide => x.checked_div(y),
            _ => x.checked_rem(y),
        }
        .map_or(Value::Null, Value::Int),
        (a, b) => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => {
                let v = match op {
                    B::Plus => x + y,
                    B::Minus => x - y,
                    B::Multiply => x * y,
                    B::Divide if y == 0.0 => return Value::Null,
                    B::Divide => x / y,
                    _ if y == 0.0 => return Value::Null,
                    _ => x % y,
                };
                // Past f64's range is NULL, as an integer overflow is.
                if v.is_finite() {
                    Value::Float(v)
                } else {
                    Value::Null
                }
            }
            _ => Value::Null,
        },
    }
}

/// SQL ordering of two values; `None` when either is NULL (or NaN).
pub(super) fn compare(a: &Value<'_>, b: &Value<'_>) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (x, y) => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

fn comparable(node: &E, a: Type, b: Type) -> Result<(), ExprError> {
    let ok = a == Type::Null || b == Type::Null || a == b || (a.is_numeric() && b.is_numeric());
    if ok {
        Ok(())
    } else {
        Err(error(
            node,
            format!("cannot compare {a} with {b}"),
            Some("compare like with like: quote text ('x'), or convert with CAST(... AS double)"),
        ))
    }
}

/// What an operand must be: (accepts, "needs …" wording, hint).
type Expectation = (fn(Type) -> bool, &'static str, &'static str);

const BOOLEAN: Expectation = (
    |t| matches!(t, Type::Bool | Type::Null),
    "a boolean",
    "compare it first, e.g. `value > 0`",
);
const NUMBER: Expectation = (
    Type::is_numeric,
    "a number",
    "convert text with CAST(... AS double)",
);
const TEXT: Expectation = (
    |t| matches!(t, Type::Text | Type::Null),
    "text",
    "convert with CAST(... AS varchar)",
);

fn expect(
    node: &E,
    ty: Type,
    what: &str,
    (accepts, needs, hint): Expectation,
) -> Result<(), ExprError> {
    if accepts(ty) {
        Ok(())
    } else {
        Err(error(
            node,
            format!("{what} needs {needs}, but this is {ty}"),
            Some(hint),
        ))
    }
}

pub(super) fn expect_bool(node: &E, ty: Type, what: &str) -> Result<(), ExprError> {
    expect(node, ty, what, BOOLEAN)
}

pub(super) fn expect_numeric(node: &E, ty: Type, what: &str) -> Result<(), ExprError> {
    expect(node, ty, what, NUMBER)
}

pub(super) fn expect_text(node: &E, ty: Type, what: &str) -> Result<(), ExprError> {
    expect(node, ty, what, TEXT)
}

fn in_list(x: &E, list: &[E], negated: bool) -> Result<Compiled, ExprError> {
    let (xt, x_eval) = compile(x)?;
    // Hot path: text IN ('a', 'b', ...).
    let literals: Option<Vec<String>> = list
        .iter()
        .map(|i| text_literal(i).map(str::to_string))
        .collect();
    if let (Type::Text | Type::Null, Some(set)) = (xt, literals) {
        return Ok((
            Type::Bool,
            eval(move |ev| match x_eval(ev) {
                Value::Text(s) => Value::Bool(set.iter().any(|l| l == s.as_ref()) != negated),
                _ => Value::Null,
            }),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for item in list {
        let (t, e) = compile(item)?;
        comparable(item, xt, t)?;
        items.push(e);
    }
    Ok((
        Type::Bool,
        eval(move |ev| {
            let v = x_eval(ev);
            if matches!(v, Value::Null) {
                return Value::Null;
            }
            let mut saw_null = false;
            for item in &items {
                match compare(&v, &item(ev)) {
                    Some(Ordering::Equal) => return Value::Bool(!negated),
                    Some(_) => {}
                    None => saw_null = true,
                }
            }
            if saw_null {
                Value::Null
            } else {
                Value::Bool(negated)
            }
        }),
    ))
}

fn between(x: &E, low: &E, high: &E, negated: bool) -> Result<Compiled, ExprError> {
    let (xt, x_eval) = compile(x)?;
    let (lt, lo) = compile(low)?;
    let (ht, hi) = compile(high)?;
    comparable(low, xt, lt)?;
    comparable(high, xt, ht)?;
    Ok((
        Type::Bool,
        eval(move |ev| {
            let v = x_eval(ev);
            match (compare(&v, &lo(ev)), compare(&v, &hi(ev))) {
                (Some(a), Some(b)) => Value::Bool((a.is_ge() && b.is_le()) != negated),
                _ => Value::Null,
            }
        }),
    ))
}

fn like(
    node: &E,
    x: &E,
    pattern: &E,
    escape: Option<&ast::Value>,
    case_insensitive: bool,
    negated: bool,
) -> Result<Compiled, ExprError> {
    let (xt, x_eval) = compile(x)?;
    expect_text(x, xt, "LIKE")?;
    let Some(pat) = text_literal(pattern) else {
        return Err(error(
            pattern,
            "the LIKE pattern must be a quoted literal",
            Some("e.g. kind LIKE 'ci.%'"),
        ));
    };
    let escape = match escape {
        None => Some('\\'),
        Some(ast::Value::SingleQuotedString(s)) if s.chars().count() == 1 => s.chars().next(),
        Some(other) => {
            return Err(error(
                node,
                format!("ESCAPE must be one character, got {other}"),
                None,
            ));
        }
    };
    let mut re = String::from(if case_insensitive { "(?is)^" } else { "(?s)^" });
    let mut chars = pat.chars();
    while let Some(c) = chars.next() {
        match c {
            c if Some(c) == escape => match chars.next() {
                Some(next) => re.push_str(&regex::escape(&next.to_string())),
                None => {
                    return Err(error(
                        pattern,
                        "the LIKE pattern ends with its escape character",
                        None,
                    ));
                }
            },
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    let re = Regex::new(&re).map_err(|e| error(pattern, format!("bad LIKE pattern: {e}"), None))?;
    Ok((Type::Bool, matcher(x_eval, re, negated)))
}

fn regex_match(
    x: &E,
    pattern: &E,
    case_insensitive: bool,
    negated: bool,
) -> Result<Compiled, ExprError> {
    let (xt, x_eval) = compile(x)?;
    expect_text(x, xt, "a regex match")?;
    let re = compile_regex(pattern, case_insensitive)?;
    Ok((Type::Bool, matcher(x_eval, re, negated)))
}

pub(super) fn compile_regex(pattern: &E, case_insensitive: bool) -> Result<Regex, ExprError> {
    let Some(pat) = text_literal(pattern) else {
        return Err(error(
            pattern,
            "the regex must be a quoted literal",
            Some("e.g. subject ~ '^helios-'"),
        ));
    };
    let pat = if case_insensitive {
        format!("(?i){pat}")
    } else {
        pat.to_string()
    };
    Regex::new(&pat).map_err(|e| error(pattern, format!("invalid regex: {e}"), None))
}

pub(super) fn matcher(x: Eval, re: Regex, negated: bool) -> Eval {
    eval(move |ev| match x(ev) {
        Value::Text(s) => Value::Bool(re.is_match(&s) != negated),
        _ => Value::Null,
    })
}

/// The common type of several branches or arguments.
pub(super) fn unify(nodes: &[(&E, Type)]) -> Result<Type, ExprError> {
    let mut out = Type::Null;
    for (node, t) in nodes {
        out = match (out, *t) {
            (a, Type::Null) => a,
            (Type::Null, b) => b,
            (a, b) if a == b => a,
            (a, b) if a.is_numeric() && b.is_numeric() => Type::Float,
            (a, b) => {
                return Err(error(
                    *node,
                    format!("mixes {a} and {b}"),
                    Some("every branch must have the same type; use CAST"),
                ));
            }
        };
    }
    Ok(out)
}

/// Converts ints to doubles where the unified type is double.
pub(super) fn coerce(x: Eval, from: Type, to: Type) -> Eval {
    if from == Type::Int && to == Type::Float {
        eval(move |ev| match x(ev) {
            Value::Int(i) => Value::Float(i as f64),
            other => other,
        })
    } else {
        x
    }
}

fn case(
    node: &E,
    operand: Option<&E>,
    conditions: &[ast::CaseWhen],
    else_result: Option<&E>,
) -> Result<Compiled, ExprError> {
    let operand = operand.map(|o| compile(o).map(|c| (o, c))).transpose()?;
    let mut whens = Vec::with_capacity(conditions.len());
    let mut types = Vec::with_capacity(conditions.len() + 1);
    for cw in conditions {
        let (ct, c) = compile(&cw.condition)?;
        match &operand {
            Some((o, (ot, _))) => comparable(o, *ot, ct)?,
            None => expect_bool(&cw.condition, ct, "WHEN")?,
        }
        let (rt, r) = compile(&cw.result)?;
        types.push((&cw.result, rt));
        whens.push((c, r, rt));
    }
    let else_compiled = else_result.map(compile).transpose()?;
    if let (Some(e), Some((t, _))) = (else_result, &else_compiled) {
        types.push((e, *t));
    }
    let ty = unify(&types).map_err(|e| ExprError {
        message: format!("CASE {}", e.message),
        ..e
    })?;
    let whens: Vec<(Eval, Eval)> = whens
        .into_iter()
        .map(|(c, r, rt)| (c, coerce(r, rt, ty)))
        .collect();
    let otherwise = else_compiled.map(|(t, e)| coerce(e, t, ty));
    let operand = operand.map(|(_, (_, e))| e);
    let _ = node;
    Ok((
        ty,
        eval(move |ev| {
            let subject = operand.as_ref().map(|o| o(ev));
            for (cond, result) in &whens {
                let hit = match &subject {
                    Some(s) => compare(s, &cond(ev)) == Some(Ordering::Equal),
                    None => cond(ev).is_true(),
                };
                if hit {
                    return result(ev);
                }
            }
            otherwise.as_ref().map_or(Value::Null, |o| o(ev))
        }),
    ))
}

fn cast(node: &E, x: &E, data_type: &ast::DataType) -> Result<Compiled, ExprError> {
    let (from, x_eval) = compile(x)?;
    let name = data_type.to_string().to_ascii_lowercase();
    let to = if ["varchar", "text", "string", "char", "character"]
        .iter()
        .any(|t| name.starts_with(t))
    {
        Type::Text
    } else if ["bigint", "int", "integer", "smallint", "tinyint"]
        .iter()
        .any(|t| name.starts_with(t))
    {
        Type::Int
    } else if ["double", "float", "real", "decimal", "numeric"]
        .iter()
        .any(|t| name.starts_with(t))
    {
        Type::Float
    } else if name.starts_with("bool") {
        Type::Bool
    } else {
        return Err(error(
            node,
            format!("CAST to `{data_type}` is not supported"),
            Some("cast to varchar, bigint, double or boolean"),
        ));
    };
    let _ = from;
    // A value that does not convert becomes NULL: one odd event must not stop a pipeline.
    Ok((to, eval(move |ev| cast_value(x_eval(ev), to))))
}

pub(super) fn cast_value(v: Value<'_>, to: Type) -> Value<'_> {
    match (v, to) {
        (Value::Null, _) => Value::Null,
        (v @ Value::Text(_), Type::Text) => v,
        (v, Type::Text) => Value::Text(Cow::Owned(v.to_key().unwrap_or_default())),
        (Value::Text(s), Type::Int) => s.trim().parse().map_or(Value::Null, Value::Int),
        // "NaN" and "inf" parse, but are no measurement: NULL, as text that is no number.
        (Value::Text(s), Type::Float) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Value::Float(f),
            _ => Value::Null,
        },
        (Value::Text(s), Type::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => Value::Null,
        },
        (Value::Int(i), Type::Float) => Value::Float(i as f64),
        (Value::Float(f), Type::Int) if f.is_finite() && f.abs() < 9.2e18 => {
            Value::Int(f.trunc() as i64)
        }
        (Value::Bool(b), Type::Int) => Value::Int(i64::from(b)),
        (Value::Int(i), Type::Bool) => Value::Bool(i != 0),
        (v @ (Value::Int(_) | Value::Float(_) | Value::Bool(_)), t) if same(&v, t) => v,
        _ => Value::Null,
    }
}

fn same(v: &Value<'_>, t: Type) -> bool {
    matches!(
        (v, t),
        (Value::Int(_), Type::Int) | (Value::Float(_), Type::Float) | (Value::Bool(_), Type::Bool)
    )
}
