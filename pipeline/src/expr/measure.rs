//! The two special forms of the spec: group-by keys (`expr [AS name]`) and measures
//! (`aggregate(expr [, parameter])`).

use sqlparser::ast::{
    self as ast, Expr as E, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::compile::{self, error};
use super::{Expr, ExprError, Type};

/// An aggregate function of a measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateFn {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    /// The quantile in (0, 1).
    Quantile(f64),
    First,
    Last,
}

/// `count(*)`, `sum(value)`, `quantile(value, 0.95)`…
#[derive(Debug)]
pub struct MeasureExpr {
    pub function: AggregateFn,
    /// The argument; `None` for `count(*)`.
    pub argument: Option<Expr>,
}

/// A group-by key: its output name and expression.
#[derive(Debug)]
pub struct GroupKeyExpr {
    pub name: String,
    pub expr: Expr,
}

const AGGREGATES: &str = "count, sum, min, max, avg, count_distinct, quantile, first, last";

fn parser_error(e: sqlparser::parser::ParserError) -> ExprError {
    let text = e.to_string();
    ExprError {
        position: super::position_in_message(&text),
        message: format!("syntax error: {}", super::strip_position(&text)),
        hint: None,
    }
}

fn expect_end(parser: &mut Parser<'_>) -> Result<(), ExprError> {
    let next = parser.peek_token();
    if next.token == Token::EOF {
        Ok(())
    } else {
        Err(ExprError {
            message: format!(
                "unexpected `{}` after the end of the expression",
                next.token
            ),
            position: Some((next.span.start.line, next.span.start.column)),
            hint: None,
        })
    }
}

/// Parses `expr [AS name]`. Without `AS`, a column or `attrs['x']` names itself.
pub fn compile_group_key(sql: &str) -> Result<GroupKeyExpr, ExprError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(parser_error)?;
    let item = parser.parse_select_item().map_err(parser_error)?;
    expect_end(&mut parser)?;
    let (expr, alias) = match item {
        SelectItem::UnnamedExpr(e) => (e, None),
        SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value)),
        _ => {
            return Err(ExprError {
                message: "a group key is one expression, optionally `AS name`".into(),
                position: Some((1, 1)),
                hint: None,
            });
        }
    };
    let name = match (alias, &expr) {
        (Some(a), _) => a,
        (None, E::Identifier(id)) => id.value.to_ascii_lowercase(),
        (None, E::CompoundFieldAccess { .. }) => match compile::text_literal_in_subscript(&expr) {
            Some(k) => k.to_string(),
            None => {
                return Err(error(
                    &expr,
                    "name this key with AS",
                    Some("e.g. `attrs['team'] AS team`"),
                ));
            }
        },
        (None, other) => {
            return Err(error(
                other,
                "name this computed key with AS",
                Some("e.g. `lower(subject) AS project`"),
            ));
        }
    };
    let (ty, eval) = compile::compile(&expr)?;
    Ok(GroupKeyExpr {
        name,
        expr: Expr {
            source: sql.to_string(),
            ty,
            eval,
        },
    })
}

/// Parses a measure such as `quantile(value, 0.95)`.
pub fn compile_measure(sql: &str) -> Result<MeasureExpr, ExprError> {
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .try_with_sql(sql)
        .map_err(parser_error)?;
    let expr = parser.parse_expr().map_err(parser_error)?;
    expect_end(&mut parser)?;
    let E::Function(f) = &expr else {
        return Err(error(
            &expr,
            "a measure is one aggregate call",
            Some(&format!(
                "e.g. count(*) or avg(value); aggregates: {AGGREGATES}"
            )),
        ));
    };
    let name = f.name.to_string().to_ascii_lowercase();
    let args: Vec<&FunctionArg> = match &f.args {
        FunctionArguments::List(list) => list.args.iter().collect(),
        FunctionArguments::None => Vec::new(),
        FunctionArguments::Subquery(_) => {
            return Err(error(&expr, "subqueries are not supported", None));
        }
    };
    let arg_expr = |i: usize| -> Result<&E, ExprError> {
        match args.get(i) {
            Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Ok(e),
            _ => Err(error(
                &expr,
                format!("{name}() needs an expression as argument {}", i + 1),
                None,
            )),
        }
    };
    let compile_arg = |e: &E, numeric: bool| -> Result<Expr, ExprError> {
        let (ty, eval) = compile::compile(e)?;
        if numeric && !matches!(ty, Type::Int | Type::Float | Type::Null) {
            return Err(error(
                e,
                format!("{name}() needs a number, but this is {ty}"),
                Some("e.g. value, or CAST(attrs['x'] AS double)"),
            ));
        }
        Ok(Expr {
            source: e.to_string(),
            ty,
            eval,
        })
    };
    let arity = |n: usize| -> Result<(), ExprError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(error(
                &expr,
                format!("{name}() takes {n} argument(s), got {}", args.len()),
                None,
            ))
        }
    };
    let function = match name.as_str() {
        "count" => {
            arity(1)?;
            return Ok(MeasureExpr {
                function: AggregateFn::Count,
                argument: match args[0] {
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => None,
                    _ => Some(compile_arg(arg_expr(0)?, false)?),
                },
            });
        }
        "sum" => AggregateFn::Sum,
        "min" => AggregateFn::Min,
        "max" => AggregateFn::Max,
        "avg" => AggregateFn::Avg,
        "first" => AggregateFn::First,
        "last" => AggregateFn::Last,
        "count_distinct" => {
            arity(1)?;
            return Ok(MeasureExpr {
                function: AggregateFn::CountDistinct,
                argument: Some(compile_arg(arg_expr(0)?, false)?),
            });
        }
        "quantile" => {
            arity(2)?;
            let q_expr = arg_expr(1)?;
            let q = match q_expr {
                E::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => n.parse::<f64>().ok(),
                    _ => None,
                },
                _ => None,
            };
            let q = q.filter(|q| *q > 0.0 && *q < 1.0).ok_or_else(|| {
                error(
                    q_expr,
                    "the quantile must be a number between 0 and 1",
                    Some("e.g. quantile(value, 0.95)"),
                )
            })?;
            AggregateFn::Quantile(q)
        }
        other => {
            return Err(error(
                &expr,
                format!("unknown aggregate function `{other}`"),
                Some(&format!("aggregates: {AGGREGATES}")),
            ));
        }
    };
    if !matches!(function, AggregateFn::Quantile(_)) {
        arity(1)?;
    }
    Ok(MeasureExpr {
        function,
        argument: Some(compile_arg(arg_expr(0)?, true)?),
    })
}
