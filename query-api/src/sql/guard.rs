//! The gate in front of `POST /v1/sql`: one statement, a query, over the Helios tables only,
//! and nothing that changes settings, writes, or reaches files, other databases or the
//! network. Checked on the parsed statement, not on the text, so comments, quoting and
//! case cannot slip anything past; bounded in size ([`GuardLimits`]) so a statement
//! cannot exhaust a stack or a planner.
//!
//! Names are resolved the way the stores resolve them: a `WITH` name hides a table of the
//! same name only inside its own query (a scope stack), and a WITH query may read only the
//! ones defined before it.
//!
//! On ClickHouse the text sent is rendered from the checked statement, with string
//! literals escaped the way ClickHouse reads them (backslash and quote escaped), then
//! parsed again: unless it reads back as the very statement that was checked, it is
//! refused. Every Helios table is read as `(SELECT * FROM t FINAL)`, so callers see one
//! row per id like on the embedded store, where the tables are deduplicating views.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Value, ValueWithSpan,
    Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::{ClickHouseDialect, GenericDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{ApiError, Result};
use crate::store::Dialect;

/// Functions that read files, other servers or external dictionaries, or stall a worker.
const DENIED_FUNCTIONS: &[&str] = &[
    "file",
    "url",
    "remote",
    "remotesecure",
    "cluster",
    "clusterallreplicas",
    "s3",
    "s3cluster",
    "hdfs",
    "mysql",
    "postgresql",
    "jdbc",
    "odbc",
    "mongodb",
    "redis",
    "sqlite",
    "input",
    "executable",
    "joinget",
    "sleep",
    "sleepeachrow",
    "read_parquet",
    "read_csv",
    "read_json",
    "hascolumnintable",
    "in",
    "notin",
    "globalin",
    "globalnotin",
    "nullin",
    "notnullin",
    "globalnullin",
    "globalnotnullin",
    "getsetting",
    "getmacro",
    "filesystemavailable",
    "filesystemfree",
    "filesystemcapacity",
    "modelevaluate",
    "catboostevaluate",
];

const MARKER: &str = "__helios_final_";

/// How big a statement may be; each is refused with a `400` naming its setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Bytes of SQL text.
    pub max_text_bytes: usize,
    /// Nesting of the parser (parentheses, subqueries, nested expressions).
    pub max_nesting: usize,
    /// Depth of one expression, e.g. the terms of `1+1+...+1`.
    pub max_expression_depth: usize,
    /// Expressions in the whole statement.
    pub max_expressions: usize,
    /// `UNION` / `INTERSECT` / `EXCEPT` operators in the whole statement.
    pub max_set_operations: usize,
    /// Tables, subqueries and joins in `FROM` clauses of the whole statement.
    pub max_tables: usize,
}

impl Default for GuardLimits {
    fn default() -> Self {
        GuardLimits {
            max_text_bytes: 64 * 1024,
            max_nesting: 50,
            max_expression_depth: 200,
            max_expressions: 10_000,
            max_set_operations: 16,
            max_tables: 16,
        }
    }
}

fn over(what: String, setting: &str) -> ApiError {
    ApiError::bad(
        format!("{what} ({setting})"),
        "write a smaller statement, or ask the operator to raise the limit",
    )
}

/// Checks `sql` with the default [`GuardLimits`]; see [`check_with`].
pub fn check(sql: &str, dialect: Dialect, tables: &BTreeSet<String>) -> Result<String> {
    check_with(sql, dialect, tables, &GuardLimits::default())
}

/// Checks `sql` and returns the text to run on a store speaking `dialect`.
/// `tables` are the tables callers may read.
pub fn check_with(
    sql: &str,
    dialect: Dialect,
    tables: &BTreeSet<String>,
    limits: &GuardLimits,
) -> Result<String> {
    if sql.len() > limits.max_text_bytes {
        return Err(over(
            format!(
                "the SQL is {} bytes, more than the limit of {} bytes",
                sql.len(),
                limits.max_text_bytes
            ),
            "--sql-max-text-bytes",
        ));
    }
    if sql.contains(MARKER) {
        return Err(ApiError::bad(
            format!("`{MARKER}` is reserved"),
            "rename the identifier",
        ));
    }
    let statement = parse_one(sql, dialect, limits)?;
    let Statement::Query(query) = &statement else {
        return Err(ApiError::forbidden(
            format!(
                "only queries are allowed, not {}",
                statement_kind(&statement)
            ),
            "the SQL console reads; writes, DDL and settings are refused",
        ));
    };
    if query.settings.is_some() {
        return Err(ApiError::forbidden(
            "SETTINGS clauses are not allowed",
            "the server's limits apply to every query; remove SETTINGS",
        ));
    }
    if query.format_clause.is_some() {
        return Err(ApiError::forbidden(
            "FORMAT clauses are not allowed",
            "choose the answer's format with \"format\": \"json\" or \"csv\" in the request",
        ));
    }
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(ApiError::forbidden(
            "locking and FOR clauses are not allowed",
            "remove FOR UPDATE / FOR XML / FOR JSON",
        ));
    }

    let mut checker = Checker {
        tables,
        dialect,
        limits,
        scopes: Vec::new(),
        depth: 0,
        expressions: 0,
        set_operations: 0,
        factors: 0,
        problem: None,
    };
    let _ = statement.visit(&mut checker);
    if let Some(problem) = checker.problem {
        return Err(problem);
    }
    match dialect {
        // DataFusion parses the text itself with the same parser and dialect, and its
        // session holds only the Helios tables and refuses anything but queries.
        Dialect::DataFusion => Ok(sql.to_owned()),
        Dialect::ClickHouse => render_clickhouse(statement, tables, limits),
    }
}

fn parse_one(sql: &str, dialect: Dialect, limits: &GuardLimits) -> Result<Statement> {
    let parsed = match dialect {
        Dialect::ClickHouse => Parser::new(&ClickHouseDialect {})
            .with_recursion_limit(limits.max_nesting)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements()),
        Dialect::DataFusion => Parser::new(&GenericDialect {})
            .with_recursion_limit(limits.max_nesting)
            .try_with_sql(sql)
            .and_then(|mut p| p.parse_statements()),
    };
    let mut statements = parsed.map_err(|e| match e {
        ParserError::RecursionLimitExceeded => over(
            format!(
                "the SQL nests deeper than the limit of {} levels",
                limits.max_nesting
            ),
            "--sql-max-nesting",
        ),
        e => ApiError::bad(
            format!("the SQL does not parse: {e}"),
            "write one SELECT statement, e.g. SELECT kind, count(*) FROM events GROUP BY kind",
        ),
    })?;
    match statements.len() {
        0 => Err(ApiError::bad(
            "there is no statement",
            "send one SELECT statement in `sql`",
        )),
        1 => Ok(statements.remove(0)),
        n => Err(ApiError::bad(
            format!("{n} statements were sent; one is allowed"),
            "send one SELECT statement (no `;` between statements)",
        )),
    }
}

/// The text for ClickHouse: the checked statement with each Helios table read `FINAL`,
/// string literals in ClickHouse's escaping, and proof that it reads back the same.
fn render_clickhouse(
    mut statement: Statement,
    tables: &BTreeSet<String>,
    limits: &GuardLimits,
) -> Result<String> {
    let mut finals = Final {
        tables,
        scopes: Vec::new(),
        replacements: Vec::new(),
    };
    let _ = VisitMut::visit(&mut statement, &mut finals);

    // String literals become markers, rendered afterwards with ClickHouse's escaping:
    // sqlparser's own rendering doubles quotes but leaves backslashes, which ClickHouse
    // reads as escapes.
    let mut marked = statement.clone();
    let mut literals = Literals {
        values: Vec::new(),
        problem: None,
    };
    let _ = VisitMut::visit(&mut marked, &mut literals);
    if let Some(problem) = literals.problem {
        return Err(problem);
    }
    let text = fill(&marked.to_string(), |kind, i| match kind {
        's' => literals.values.get(i).map(|v| clickhouse_escape(v)),
        _ => None,
    })?;

    // Quoted identifiers: ClickHouse reads backslash escapes in them, sqlparser does not.
    let tokens = Tokenizer::new(&ClickHouseDialect {}, &text)
        .tokenize()
        .map_err(|e| unsafe_render(&e.to_string()))?;
    for token in &tokens {
        if let Token::Word(word) = token
            && word.quote_style.is_some()
            && word
                .value
                .chars()
                .any(|c| matches!(c, '\\' | '`' | '"' | '\'') || c.is_control())
        {
            return Err(ApiError::bad(
                format!(
                    "the quoted name `{}` holds a backslash, a quote or a control character",
                    word.value.escape_debug()
                ),
                "use names of letters, digits and underscores",
            ));
        }
    }
    let again = parse_one(&text, Dialect::ClickHouse, limits)?;
    if again != statement {
        return Err(unsafe_render(
            "the statement does not read back the same after rendering",
        ));
    }
    fill(&text, |kind, i| match kind {
        't' => finals.replacements.get(i).cloned(),
        _ => None,
    })
}

fn unsafe_render(detail: &str) -> ApiError {
    ApiError::bad(
        format!("the statement cannot be sent to ClickHouse exactly as it was checked: {detail}"),
        "write it with plain names and '...' string literals",
    )
}

/// A string literal as ClickHouse reads it back: backslashes and quotes escaped.
fn clickhouse_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces each `{MARKER}{kind}{index}_` in `text` with `with(kind, index)`, in one pass.
/// A marker `with` does not know is left as it is.
fn fill(text: &str, with: impl Fn(char, usize) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARKER) {
        out.push_str(&rest[..at]);
        let after = &rest[at + MARKER.len()..];
        let mut chars = after.chars();
        let kind = chars.next().unwrap_or(' ');
        let digits: String = chars.take_while(char::is_ascii_digit).collect();
        let end = 1 + digits.len();
        let replaced = (after.as_bytes().get(end) == Some(&b'_'))
            .then(|| digits.parse().ok())
            .flatten()
            .and_then(|i| with(kind, i));
        match replaced {
            Some(r) => {
                out.push_str(&r);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(MARKER);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    format!("`{}`", words.join(" "))
}

/// The one identifier of a relation name, or `None` for `db.table` and the like.
fn single_name(name: &ObjectName) -> Option<&sqlparser::ast::Ident> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(ident),
        _ => None,
    }
}

fn canonical<'a>(tables: &'a BTreeSet<String>, name: &str) -> Option<&'a String> {
    tables.iter().find(|t| t.eq_ignore_ascii_case(name))
}

/// The `WITH` names a query defines.
fn cte_names(query: &Query) -> Vec<String> {
    query
        .with
        .iter()
        .flat_map(|w| &w.cte_tables)
        .map(|c| c.alias.name.value.to_ascii_lowercase())
        .collect()
}

fn in_scope(scopes: &[Vec<String>], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    scopes.iter().any(|s| s.contains(&name))
}

/// Names of single-name tables read anywhere inside `query`.
fn tables_read(query: &Query) -> Vec<String> {
    struct Names(Vec<String>);
    impl Visitor for Names {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            if let TableFactor::Table { name, .. } = factor
                && let Some(ident) = single_name(name)
            {
                self.0.push(ident.value.to_ascii_lowercase());
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(Vec::new());
    let _ = query.visit(&mut names);
    names.0
}

struct Checker<'a> {
    tables: &'a BTreeSet<String>,
    dialect: Dialect,
    limits: &'a GuardLimits,
    /// The `WITH` names visible in each enclosing query.
    scopes: Vec<Vec<String>>,
    depth: usize,
    expressions: usize,
    set_operations: usize,
    factors: usize,
    problem: Option<ApiError>,
}

impl Checker<'_> {
    fn refuse(&mut self, problem: ApiError) -> ControlFlow<()> {
        self.problem = Some(problem);
        ControlFlow::Break(())
    }

    /// Walks a query body for what may not be in one and counts its set operations.
    fn body(&mut self, body: &SetExpr) -> std::result::Result<(), ApiError> {
        match body {
            SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => Ok(()),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_operations += 1;
                if self.set_operations > self.limits.max_set_operations {
                    return Err(over(
                        format!(
                            "the statement has more than {} UNION / INTERSECT / EXCEPT operators",
                            self.limits.max_set_operations
                        ),
                        "--sql-max-set-operations",
                    ));
                }
                self.body(left)?;
                self.body(right)
            }
            SetExpr::Table(_) => Err(ApiError::bad(
                "`TABLE name` is not supported",
                "write SELECT * FROM name",
            )),
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(ApiError::forbidden(
                    "writes are not allowed, in WITH or subqueries either",
                    "the SQL console reads; remove INSERT / UPDATE / DELETE / MERGE",
                ))
            }
        }
    }
}

impl Visitor for Checker<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if query.settings.is_some() || query.format_clause.is_some() {
            return self.refuse(ApiError::forbidden(
                "SETTINGS and FORMAT clauses are not allowed, in subqueries either",
                "remove them",
            ));
        }
        if !query.pipe_operators.is_empty() || !query.locks.is_empty() || query.for_clause.is_some()
        {
            return self.refuse(ApiError::bad(
                "pipe operators, locking and FOR clauses are not supported",
                "write a plain SELECT",
            ));
        }
        if let Err(e) = self.body(&query.body) {
            return self.refuse(e);
        }
        if let Some(with) = &query.with {
            if with.recursive {
                return self.refuse(ApiError::bad(
                    "WITH RECURSIVE is not allowed",
                    "write the query without recursion",
                ));
            }
            if self.dialect == Dialect::ClickHouse
                && matches!(query.body.as_ref(), SetExpr::SetOperation { .. })
            {
                // ClickHouse binds such a WITH to the first SELECT only, so a name would
                // mean the CTE in one arm and a table in the others.
                return self.refuse(ApiError::bad(
                    "WITH before a UNION / INTERSECT / EXCEPT is not supported on ClickHouse",
                    "put the WITH inside each arm, or the UNION in a subquery",
                ));
            }
            // A CTE sees only the ones defined before it.
            let names = cte_names(query);
            for (i, cte) in with.cte_tables.iter().enumerate() {
                let later = &names[i..];
                if let Some(name) = tables_read(&cte.query)
                    .into_iter()
                    .find(|t| later.contains(t) && canonical(self.tables, t).is_none())
                {
                    return self.refuse(ApiError::bad(
                        format!("the WITH query `{}` reads `{name}`, which is defined after it (or is itself)", cte.alias.name.value),
                        "define each WITH query before the ones that read it",
                    ));
                }
            }
        }
        self.scopes.push(cte_names(query));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<()> {
        if select.into.is_some() {
            return self.refuse(ApiError::forbidden(
                "SELECT INTO writes a table and is not allowed",
                "remove INTO",
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        self.factors += 1;
        if self.factors > self.limits.max_tables {
            return self.refuse(over(
                format!(
                    "the statement reads more than {} tables and subqueries",
                    self.limits.max_tables
                ),
                "--sql-max-tables",
            ));
        }
        let refused = match factor {
            TableFactor::Table { name, args, .. } => {
                if args.is_some() {
                    Some(format!("the table function `{name}`"))
                } else {
                    match single_name(name) {
                        Some(ident)
                            if canonical(self.tables, &ident.value).is_some()
                                || in_scope(&self.scopes, &ident.value) =>
                        {
                            None
                        }
                        _ => Some(format!("the table `{name}`")),
                    }
                }
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } => None,
            TableFactor::UNNEST { .. } => None,
            other => Some(format!("`{other}`")),
        };
        match refused {
            None => ControlFlow::Continue(()),
            Some(what) => {
                let hint = format!(
                    "only these tables can be read: {}",
                    self.tables.iter().cloned().collect::<Vec<_>>().join(", ")
                );
                self.refuse(ApiError::forbidden(
                    format!("{what} cannot be read here"),
                    hint,
                ))
            }
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.depth += 1;
        self.expressions += 1;
        if self.depth > self.limits.max_expression_depth {
            return self.refuse(over(
                format!(
                    "an expression nests deeper than {} terms (e.g. a long chain of + or AND)",
                    self.limits.max_expression_depth
                ),
                "--sql-max-expression-depth",
            ));
        }
        if self.expressions > self.limits.max_expressions {
            return self.refuse(over(
                format!(
                    "the statement has more than {} expressions",
                    self.limits.max_expressions
                ),
                "--sql-max-expressions",
            ));
        }
        match expr {
            Expr::Function(f) => {
                let name = f
                    .name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.to_ascii_lowercase())
                    .unwrap_or_default();
                if f.name.0.len() > 1
                    || DENIED_FUNCTIONS.contains(&name.as_str())
                    || name.starts_with("dict")
                    || name.contains("ignoreset")
                {
                    return self.refuse(ApiError::forbidden(
                        format!("the function `{}` is not allowed", f.name),
                        "functions that reach files, other servers, dictionaries, other tables or sleep are refused",
                    ));
                }
            }
            // ClickHouse reads `x IN (name)` and `x IN (db.name)` as a table.
            Expr::InList { list, .. } if self.dialect == Dialect::ClickHouse => {
                if let [only] = list.as_slice() {
                    let mut e = only;
                    while let Expr::Nested(inner) = e {
                        e = inner;
                    }
                    if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                        return self.refuse(ApiError::forbidden(
                            format!("`IN ({only})` would read a table on ClickHouse"),
                            "compare with = , or use IN (SELECT ... FROM a Helios table)",
                        ));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

/// Points each Helios table at its deduplicated read (see the module docs): the name
/// becomes a marker, filled in after rendering.
struct Final<'a> {
    tables: &'a BTreeSet<String>,
    scopes: Vec<Vec<String>>,
    replacements: Vec<String>,
}

impl VisitorMut for Final<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.scopes.push(cte_names(query));
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
            && let Some(ident) = single_name(name)
            && !in_scope(&self.scopes, &ident.value)
            && let Some(table) = canonical(self.tables, &ident.value)
        {
            let read = if alias.is_some() {
                format!("(SELECT * FROM `{table}` FINAL)")
            } else {
                format!("(SELECT * FROM `{table}` FINAL) AS `{table}`")
            };
            let marker = format!("{MARKER}t{}_", self.replacements.len());
            self.replacements.push(read);
            *name = ObjectName::from(vec![sqlparser::ast::Ident::new(marker)]);
        }
        ControlFlow::Continue(())
    }
}

/// Takes the string literals out of a statement (see [`render_clickhouse`]); refuses
/// literal forms that ClickHouse would read differently.
struct Literals {
    values: Vec<String>,
    problem: Option<ApiError>,
}

impl VisitorMut for Literals {
    type Break = ();

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<()> {
        match &mut value.value {
            Value::SingleQuotedString(s) => {
                if s.contains(MARKER) || s.contains('\0') {
                    self.problem = Some(ApiError::bad(
                        "a string literal holds a NUL byte or a reserved word",
                        format!("remove NUL and `{MARKER}` from the literal"),
                    ));
                    return ControlFlow::Break(());
                }
                let marker = format!("{MARKER}s{}_", self.values.len());
                self.values.push(std::mem::replace(s, marker));
                ControlFlow::Continue(())
            }
            Value::Number(..) | Value::Boolean(_) | Value::Null => ControlFlow::Continue(()),
            other => {
                self.problem = Some(ApiError::bad(
                    format!("the literal {other} cannot be sent to ClickHouse safely"),
                    "write strings as '...' (quotes doubled or backslash-escaped)",
                ));
                ControlFlow::Break(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> BTreeSet<String> {
        ["events", "alerts", "agg_ci_runs"]
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    fn refused(sql: &str) -> ApiError {
        for dialect in [Dialect::ClickHouse, Dialect::DataFusion] {
            if check(sql, dialect, &tables()).is_ok() {
                panic!("{sql} passed on {dialect:?}");
            }
        }
        check(sql, Dialect::ClickHouse, &tables()).unwrap_err()
    }

    #[test]
    fn plain_queries_pass_and_read_final_on_clickhouse() {
        let sql = "SELECT e.kind, count(*) FROM events e JOIN alerts ON alerts.rule = e.kind WHERE subject = '?' GROUP BY e.kind";
        let ch = check(sql, Dialect::ClickHouse, &tables()).unwrap();
        assert_eq!(
            ch,
            "SELECT e.kind, count(*) FROM (SELECT * FROM `events` FINAL) e JOIN (SELECT * FROM `alerts` FINAL) AS `alerts` ON alerts.rule = e.kind WHERE subject = '?' GROUP BY e.kind"
        );
        assert_eq!(check(sql, Dialect::DataFusion, &tables()).unwrap(), sql);
        let cte = "WITH recent AS (SELECT * FROM events) SELECT count(*) FROM recent";
        assert!(check(cte, Dialect::ClickHouse, &tables()).is_ok());
    }

    #[test]
    fn writes_ddl_settings_and_outside_reads_are_refused() {
        for sql in [
            "INSERT INTO events (id) VALUES ('x')",
            "DROP TABLE events",
            "ALTER TABLE events DELETE WHERE 1 = 1",
            "CREATE TABLE x (a Int32) ENGINE = Memory",
            "SET max_result_rows = 0",
            "SELECT * FROM events SETTINGS max_result_rows = 0",
            "SELECT * FROM system.tables",
            "SELECT * FROM information_schema.tables",
            "SELECT * FROM raw.events",
            "SELECT * FROM file('/etc/passwd', 'CSV', 'a String')",
            "SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')",
            "SELECT * FROM numbers(10)",
            "SELECT dictGet('d', 'a', 1)",
            "SELECT sleep(3)",
            "SELECT * FROM (SELECT * FROM system.processes) p",
            "SELECT 1; SELECT 2",
            "",
            "SELEC 1",
        ] {
            let e = refused(sql);
            assert!(
                matches!(e, ApiError::Forbidden { .. } | ApiError::BadRequest { .. }),
                "{sql}: {e:?}"
            );
        }
        assert!(matches!(
            refused("SELECT 1; SELECT 2"),
            ApiError::BadRequest { .. }
        ));
        assert!(matches!(
            refused("DROP TABLE events"),
            ApiError::Forbidden { .. }
        ));
    }

    #[test]
    fn escape_smuggling_is_rendered_as_checked_or_refused() {
        // sqlparser reads `'\\'` as one backslash; ClickHouse must get it escaped, so the
        // second literal stays a literal and system.tables is never named outside one.
        let sql = r"SELECT '\\' AS a, ' , name FROM system.tables -- ' AS b";
        let ch = check(sql, Dialect::ClickHouse, &tables()).unwrap();
        assert_eq!(
            ch,
            r"SELECT '\\' AS a, ' , name FROM system.tables -- ' AS b"
        );
        let quote = check("SELECT 'it''s' AS a", Dialect::ClickHouse, &tables()).unwrap();
        assert_eq!(quote, r"SELECT 'it\'s' AS a");
        // A backslash before a quote in the caller's text: one literal for sqlparser.
        let ch = check(r"SELECT 'a\'b' AS x", Dialect::ClickHouse, &tables()).unwrap();
        assert_eq!(ch, r"SELECT 'a\'b' AS x");
        for sql in [
            // Quoted names that ClickHouse would read differently.
            r"SELECT `a\` AS b, `, name FROM system.tables -- ` FROM events",
            r#"SELECT "a\" AS b FROM events"#,
            // Literal forms ClickHouse reads its own way.
            "SELECT X'41' AS a",
            "SELECT $$x$$ AS a",
            // Type modifiers are rendered raw by sqlparser.
            "SELECT CAST(1 AS Foo('x, name FROM system.tables --')) AS a",
        ] {
            assert!(
                check(sql, Dialect::ClickHouse, &tables()).is_err(),
                "{sql} passed"
            );
        }
    }

    #[test]
    fn ctes_are_scoped_and_tables_in_in_lists_refused() {
        for sql in [
            // A CTE in a subquery does not make the real table readable outside it.
            "SELECT * FROM (WITH schema_migrations AS (SELECT 1 AS v) SELECT * FROM schema_migrations) a, schema_migrations",
            // Nor in a sibling read before it is defined.
            "WITH a AS (SELECT * FROM schema_migrations), schema_migrations AS (SELECT 1 AS v) SELECT * FROM a",
            "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
            "TABLE schema_migrations",
            "SELECT * FROM events WHERE id IN (system.one)",
            "SELECT * FROM events WHERE id IN ((schema_migrations))",
            "SELECT * FROM events WHERE id IN (schema_migrations)",
            "SELECT in(1, system.one) AS x",
            "SELECT hasColumnInTable('system', 'tables', 'name') AS x",
        ] {
            assert!(
                check(sql, Dialect::ClickHouse, &tables()).is_err(),
                "{sql} passed"
            );
        }
        let ch = check(
            "SELECT * FROM (WITH events AS (SELECT 1 AS v) SELECT * FROM events) a, events",
            Dialect::ClickHouse,
            &tables(),
        )
        .unwrap();
        // The inner `events` is the CTE; the outer one the table, read FINAL.
        assert!(
            ch.ends_with("a, (SELECT * FROM `events` FINAL) AS `events`"),
            "{ch}"
        );
        assert!(ch.contains("SELECT * FROM events)"), "{ch}");
        // Union arms with prefixes of each other's names get the right table.
        let t: BTreeSet<String> = ["agg_a", "agg_a_b"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        let ch = check(
            "SELECT 1 FROM agg_a_b UNION ALL SELECT 1 FROM agg_a",
            Dialect::ClickHouse,
            &t,
        )
        .unwrap();
        assert_eq!(
            ch,
            "SELECT 1 FROM (SELECT * FROM `agg_a_b` FINAL) AS `agg_a_b` UNION ALL SELECT 1 FROM (SELECT * FROM `agg_a` FINAL) AS `agg_a`"
        );
    }

    #[test]
    fn size_limits_are_400s_naming_the_setting() {
        let limits = GuardLimits::default();
        let chain = format!("SELECT 1{}", "+1".repeat(999));
        let unions = vec!["SELECT 1"; 300].join(" UNION ALL ");
        let joins = format!(
            "SELECT 1 FROM events{}",
            (0..40)
                .map(|i| format!(" CROSS JOIN events e{i}"))
                .collect::<String>()
        );
        let nested = format!("SELECT {}1{}", "(".repeat(500), ")".repeat(500));
        let long = format!("SELECT '{}'", "x".repeat(70_000));
        for (sql, setting) in [
            (chain.as_str(), "--sql-max-expression-depth"),
            (unions.as_str(), "--sql-max-set-operations"),
            (joins.as_str(), "--sql-max-tables"),
            (nested.as_str(), "--sql-max-nesting"),
            (long.as_str(), "--sql-max-text-bytes"),
        ] {
            for dialect in [Dialect::ClickHouse, Dialect::DataFusion] {
                let e = check_with(sql, dialect, &tables(), &limits).unwrap_err();
                assert!(
                    matches!(&e, ApiError::BadRequest { error, .. } if error.contains(setting)),
                    "{setting}: {e:?}"
                );
            }
        }
        // A 64 KiB flat chain, on a thread with the compartment's stack: refused, no crash.
        let big = format!("SELECT 1{}", "+1".repeat(32_000));
        let limits = GuardLimits {
            max_text_bytes: 1 << 20,
            ..GuardLimits::default()
        };
        let e = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || check_with(&big, Dialect::ClickHouse, &tables(), &limits).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(e);
    }
}
