//! Scalar functions: text, math and null handling.

use std::borrow::Cow;

use sqlparser::ast::{self as ast, Expr as E, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::compile::{self, Compiled, coerce, error, eval, expect_numeric, expect_text, unify};
use super::{Eval, ExprError, Type, Value};

/// Aggregate names, refused here with a pointer to `measures`.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "count_distinct",
    "quantile",
    "first",
    "last",
];

const KNOWN: &str = "lower, upper, length, trim, ltrim, rtrim, substr, replace, split_part, concat, \
    starts_with, ends_with, strpos, regexp_like, coalesce, nullif, abs, round, floor, ceil, sqrt, ln, \
    log10, exp, power, greatest, least";

pub(super) fn compile(node: &E, f: &ast::Function) -> Result<Compiled, ExprError> {
    let name = f.name.to_string().to_ascii_lowercase();
    if AGGREGATES.contains(&name.as_str()) {
        return Err(error(
            node,
            format!("aggregate function `{name}` cannot be used here"),
            Some(
                "aggregates belong in an aggregate's `measures`, e.g. measures = { runs = \"count(*)\" }",
            ),
        ));
    }
    let args = plain_args(node, &name, f)?;
    let arity = |min: usize, max: usize| -> Result<(), ExprError> {
        if (min..=max).contains(&args.len()) {
            Ok(())
        } else {
            let want = if min == max {
                min.to_string()
            } else {
                format!("{min} to {max}")
            };
            Err(error(
                node,
                format!("{name}() takes {want} argument(s), got {}", args.len()),
                None,
            ))
        }
    };
    match name.as_str() {
        "lower" | "upper" | "trim" | "btrim" | "ltrim" | "rtrim" => {
            arity(1, 1)?;
            let x = text_arg(&args[0], &name)?;
            let f: fn(&str) -> Cow<'_, str> = match name.as_str() {
                "lower" => |s| Cow::Owned(s.to_lowercase()),
                "upper" => |s| Cow::Owned(s.to_uppercase()),
                "ltrim" => |s| Cow::Owned(s.trim_start().to_string()),
                "rtrim" => |s| Cow::Owned(s.trim_end().to_string()),
                _ => |s| Cow::Owned(s.trim().to_string()),
            };
            Ok((Type::Text, map_text(x, f)))
        }
        "length" | "char_length" | "character_length" => {
            arity(1, 1)?;
            let x = text_arg(&args[0], &name)?;
            Ok((
                Type::Int,
                eval(move |ev| match x(ev) {
                    Value::Text(s) => Value::Int(s.chars().count() as i64),
                    _ => Value::Null,
                }),
            ))
        }
        "substr" | "substring" => substr(node, &args),
        "replace" => {
            arity(3, 3)?;
            let (x, from, to) = (
                text_arg(&args[0], &name)?,
                text_arg(&args[1], &name)?,
                text_arg(&args[2], &name)?,
            );
            Ok((
                Type::Text,
                eval(move |ev| match (x(ev), from(ev), to(ev)) {
                    (Value::Text(s), Value::Text(a), Value::Text(b)) => {
                        Value::Text(Cow::Owned(s.replace(a.as_ref(), &b)))
                    }
                    _ => Value::Null,
                }),
            ))
        }
        "split_part" => {
            arity(3, 3)?;
            let (x, delim) = (text_arg(&args[0], &name)?, text_arg(&args[1], &name)?);
            let n = numeric_arg(&args[2], &name)?;
            Ok((
                Type::Text,
                eval(move |ev| match (x(ev), delim(ev), n(ev).as_f64()) {
                    (Value::Text(s), Value::Text(d), Some(n)) if n >= 1.0 && !d.is_empty() => {
                        Value::Text(Cow::Owned(
                            s.split(d.as_ref())
                                .nth(n as usize - 1)
                                .unwrap_or("")
                                .to_string(),
                        ))
                    }
                    _ => Value::Null,
                }),
            ))
        }
        "concat" => {
            let parts = args
                .iter()
                .map(|a| compile::compile(a).map(|(_, e)| e))
                .collect::<Result<Vec<_>, _>>()?;
            // PostgreSQL's concat skips NULLs.
            Ok((
                Type::Text,
                eval(move |ev| {
                    let mut out = String::new();
                    for p in &parts {
                        if let Some(s) = p(ev).to_key() {
                            out.push_str(&s);
                        }
                    }
                    Value::Text(Cow::Owned(out))
                }),
            ))
        }
        "starts_with" | "ends_with" | "strpos" => {
            arity(2, 2)?;
            let (x, y) = (text_arg(&args[0], &name)?, text_arg(&args[1], &name)?);
            let which = name.clone();
            Ok((
                if which == "strpos" {
                    Type::Int
                } else {
                    Type::Bool
                },
                eval(move |ev| match (x(ev), y(ev)) {
                    (Value::Text(s), Value::Text(p)) => match which.as_str() {
                        "starts_with" => Value::Bool(s.starts_with(p.as_ref())),
                        "ends_with" => Value::Bool(s.ends_with(p.as_ref())),
                        _ => Value::Int(
                            s.find(p.as_ref())
                                .map_or(0, |i| s[..i].chars().count() as i64 + 1),
                        ),
                    },
                    _ => Value::Null,
                }),
            ))
        }
        "regexp_like" => {
            arity(2, 3)?;
            let x = text_arg(&args[0], &name)?;
            let insensitive = match args.get(2) {
                None => false,
                Some(flags) => match compile::text_literal(flags) {
                    Some("i") => true,
                    Some("") => false,
                    _ => return Err(error(flags, "regexp_like flags must be '' or 'i'", None)),
                },
            };
            let re = compile::compile_regex(&args[1], insensitive)?;
            Ok((Type::Bool, compile::matcher(x, re, false)))
        }
        "coalesce" | "greatest" | "least" => {
            if args.is_empty() {
                return Err(error(
                    node,
                    format!("{name}() needs at least one argument"),
                    None,
                ));
            }
            let compiled = args
                .iter()
                .map(compile::compile)
                .collect::<Result<Vec<_>, _>>()?;
            let ty = unify(
                &args
                    .iter()
                    .zip(&compiled)
                    .map(|(a, (t, _))| (a, *t))
                    .collect::<Vec<_>>(),
            )?;
            if name != "coalesce" {
                expect_numeric(node, ty, &name)?;
            }
            let parts: Vec<Eval> = compiled
                .into_iter()
                .map(|(t, e)| coerce(e, t, ty))
                .collect();
            let which = name.clone();
            Ok((
                ty,
                eval(move |ev| {
                    let mut best = Value::Null;
                    for p in &parts {
                        let v = p(ev);
                        if matches!(v, Value::Null) {
                            continue;
                        }
                        if which == "coalesce" {
                            return v;
                        }
                        let better = match compile::compare(&v, &best) {
                            None => true,
                            Some(o) => (which == "greatest") == o.is_gt() && !o.is_eq(),
                        };
                        if better {
                            best = v;
                        }
                    }
                    best
                }),
            ))
        }
        "nullif" => {
            arity(2, 2)?;
            let (at, a) = compile::compile(&args[0])?;
            let (_, b) = compile::compile(&args[1])?;
            Ok((
                at,
                eval(move |ev| {
                    let v = a(ev);
                    if compile::compare(&v, &b(ev)).is_some_and(|o| o.is_eq()) {
                        Value::Null
                    } else {
                        v
                    }
                }),
            ))
        }
        "abs" => {
            arity(1, 1)?;
            let (t, x) = compile::compile(&args[0])?;
            expect_numeric(&args[0], t, "abs")?;
            Ok((
                t,
                eval(move |ev| match x(ev) {
                    Value::Int(i) => i.checked_abs().map_or(Value::Null, Value::Int),
                    Value::Float(f) => Value::Float(f.abs()),
                    _ => Value::Null,
                }),
            ))
        }
        "round" => {
            arity(1, 2)?;
            let x = numeric_arg(&args[0], &name)?;
            let digits = args.get(1).map(|d| numeric_arg(d, &name)).transpose()?;
            Ok((
                Type::Float,
                eval(move |ev| {
                    let Some(v) = x(ev).as_f64() else {
                        return Value::Null;
                    };
                    let d = match &digits {
                        Some(d) => match d(ev).as_f64() {
                            Some(d) => d as i32,
                            None => return Value::Null,
                        },
                        None => 0,
                    };
                    let scale = 10f64.powi(d);
                    Value::Float((v * scale).round() / scale)
                }),
            ))
        }
        "floor" | "ceil" | "ceiling" | "sqrt" | "ln" | "log10" | "exp" => {
            arity(1, 1)?;
            let x = numeric_arg(&args[0], &name)?;
            let f: fn(f64) -> f64 = match name.as_str() {
                "floor" => f64::floor,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log10" => f64::log10,
                "exp" => f64::exp,
                _ => f64::ceil,
            };
            Ok((
                Type::Float,
                eval(move |ev| match x(ev).as_f64().map(f) {
                    Some(v) if v.is_finite() => Value::Float(v),
                    _ => Value::Null,
                }),
            ))
        }
        "power" | "pow" => {
            arity(2, 2)?;
            let (x, y) = (numeric_arg(&args[0], &name)?, numeric_arg(&args[1], &name)?);
            Ok((
                Type::Float,
                eval(move |ev| match (x(ev).as_f64(), y(ev).as_f64()) {
                    (Some(a), Some(b)) if a.powf(b).is_finite() => Value::Float(a.powf(b)),
                    _ => Value::Null,
                }),
            ))
        }
        other => Err(error(
            node,
            format!("unknown function `{other}`"),
            Some(&format!("known functions: {KNOWN}")),
        )),
    }
}

/// `substr(text, start [, length])`, 1-based like SQL.
pub(super) fn substr(node: &E, args: &[E]) -> Result<Compiled, ExprError> {
    if !(2..=3).contains(&args.len()) {
        return Err(error(node, "substr() takes 2 or 3 arguments", None));
    }
    let x = text_arg(&args[0], "substr")?;
    let start = numeric_arg(&args[1], "substr")?;
    let len = args.get(2).map(|a| numeric_arg(a, "substr")).transpose()?;
    Ok((
        Type::Text,
        eval(move |ev| {
            let (Value::Text(s), Some(from)) = (x(ev), start(ev).as_f64()) else {
                return Value::Null;
            };
            let count = match &len {
                Some(l) => match l(ev).as_f64() {
                    Some(l) if l >= 0.0 => Some(l as i64),
                    _ => return Value::Null,
                },
                None => None,
            };
            // SQL counts from 1; positions before 1 shorten the length.
            let from = from as i64;
            let skip = (from - 1).max(0) as usize;
            let take = count.map(|c| (c + from.min(1) - 1).max(0) as usize);
            let chars = s.chars().skip(skip);
            let out: String = match take {
                Some(t) => chars.take(t).collect(),
                None => chars.collect(),
            };
            Value::Text(Cow::Owned(out))
        }),
    ))
}

/// Applies a text function; NULL stays NULL.
pub(super) fn map_text(x: Eval, f: for<'s> fn(&'s str) -> Cow<'s, str>) -> Eval {
    eval(move |ev| match x(ev) {
        Value::Text(Cow::Borrowed(s)) => Value::Text(f(s)),
        Value::Text(Cow::Owned(s)) => Value::Text(Cow::Owned(f(&s).into_owned())),
        _ => Value::Null,
    })
}

fn text_arg(a: &E, what: &str) -> Result<Eval, ExprError> {
    let (t, e) = compile::compile(a)?;
    expect_text(a, t, what)?;
    Ok(e)
}

fn numeric_arg(a: &E, what: &str) -> Result<Eval, ExprError> {
    let (t, e) = compile::compile(a)?;
    expect_numeric(a, t, what)?;
    Ok(e)
}

fn plain_args(node: &E, name: &str, f: &ast::Function) -> Result<Vec<E>, ExprError> {
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return Err(error(
            node,
            format!("{name}(): FILTER, OVER and WITHIN GROUP are not supported here"),
            None,
        ));
    }
    match &f.args {
        FunctionArguments::None => Ok(Vec::new()),
        FunctionArguments::Subquery(_) => Err(error(node, "subqueries are not supported", None)),
        FunctionArguments::List(list) => {
            if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                return Err(error(
                    node,
                    format!("{name}(): DISTINCT and clauses are not supported here"),
                    None,
                ));
            }
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e.clone()),
                    _ => Err(error(
                        node,
                        format!("{name}(): only plain arguments are supported"),
                        None,
                    )),
                })
                .collect()
        }
    }
}
