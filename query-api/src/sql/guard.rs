//! The gate in front of `POST /v1/sql`: one statement, a query, over the Helios tables only,
//! and nothing that changes settings, writes, or reaches files, other databases or the
//! network. Checked on the parsed statement, not on the text, so comments, quoting and
//! case cannot slip anything past.
//!
//! On ClickHouse every Helios table is then read as `(SELECT * FROM t FINAL)`, so callers
//! see one row per id like on the embedded store, where the tables are deduplicating views.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, ObjectNamePart, Statement, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};
use sqlparser::dialect::{ClickHouseDialect, GenericDialect};
use sqlparser::parser::Parser;

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
];

const MARKER: &str = "__helios_final_";

/// Checks `sql` and returns the text to run on a store speaking `dialect`.
/// `tables` are the tables callers may read.
pub fn check(sql: &str, dialect: Dialect, tables: &BTreeSet<String>) -> Result<String> {
    if sql.contains(MARKER) {
        return Err(ApiError::bad(
            format!("`{MARKER}` is reserved"),
            "rename the identifier",
        ));
    }
    let parsed = match dialect {
        Dialect::ClickHouse => Parser::parse_sql(&ClickHouseDialect {}, sql),
        Dialect::DataFusion => Parser::parse_sql(&GenericDialect {}, sql),
    };
    let mut statements = parsed.map_err(|e| {
        ApiError::bad(
            format!("the SQL does not parse: {e}"),
            "write one SELECT statement, e.g. SELECT kind, count(*) FROM events GROUP BY kind",
        )
    })?;
    let mut statement = match statements.len() {
        0 => {
            return Err(ApiError::bad(
                "there is no statement",
                "send one SELECT statement in `sql`",
            ));
        }
        1 => statements.remove(0),
        n => {
            return Err(ApiError::bad(
                format!("{n} statements were sent; one is allowed"),
                "send one SELECT statement (no `;` between statements)",
            ));
        }
    };
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
        ctes: BTreeSet::new(),
        problem: None,
    };
    let _ = statement.visit(&mut checker);
    if let Some(problem) = checker.problem {
        return Err(problem);
    }
    match dialect {
        Dialect::DataFusion => Ok(sql.to_owned()),
        Dialect::ClickHouse => {
            let mut rewriter = Final {
                tables,
                ctes: &checker.ctes,
            };
            let _ = VisitMut::visit(&mut statement, &mut rewriter);
            let mut text = statement.to_string();
            for table in tables {
                text = text
                    .replace(
                        &format!("{MARKER}a_{table}"),
                        &format!("(SELECT * FROM `{table}` FINAL)"),
                    )
                    .replace(
                        &format!("{MARKER}n_{table}"),
                        &format!("(SELECT * FROM `{table}` FINAL) AS `{table}`"),
                    );
            }
            Ok(text)
        }
    }
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

struct Checker<'a> {
    tables: &'a BTreeSet<String>,
    ctes: BTreeSet<String>,
    problem: Option<ApiError>,
}

impl Visitor for Checker<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        if query.settings.is_some() || query.format_clause.is_some() {
            self.problem = Some(ApiError::forbidden(
                "SETTINGS and FORMAT clauses are not allowed, in subqueries either",
                "remove them",
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &sqlparser::ast::Select) -> ControlFlow<()> {
        if select.into.is_some() {
            self.problem = Some(ApiError::forbidden(
                "SELECT INTO writes a table and is not allowed",
                "remove INTO",
            ));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let refused = match factor {
            TableFactor::Table { name, args, .. } => {
                if args.is_some() {
                    Some(format!("the table function `{name}`"))
                } else {
                    match single_name(name) {
                        Some(ident)
                            if canonical(self.tables, &ident.value).is_some()
                                || self.ctes.contains(&ident.value.to_ascii_lowercase()) =>
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
                self.problem = Some(ApiError::forbidden(
                    format!("{what} cannot be read here"),
                    format!(
                        "only these tables can be read: {}",
                        self.tables.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
                ControlFlow::Break(())
            }
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::Function(f) = expr {
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
            {
                self.problem = Some(ApiError::forbidden(
                    format!("the function `{}` is not allowed", f.name),
                    "functions that reach files, other servers, dictionaries or sleep are refused",
                ));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Points each Helios table at its deduplicated read (see the module docs).
struct Final<'a> {
    tables: &'a BTreeSet<String>,
    ctes: &'a BTreeSet<String>,
}

impl VisitorMut for Final<'_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
            && let Some(ident) = single_name(name)
            && !self.ctes.contains(&ident.value.to_ascii_lowercase())
            && let Some(table) = canonical(self.tables, &ident.value)
        {
            let marker = if alias.is_some() {
                format!("{MARKER}a_{table}")
            } else {
                format!("{MARKER}n_{table}")
            };
            *name = ObjectName::from(vec![sqlparser::ast::Ident::new(marker)]);
        }
        ControlFlow::Continue(())
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
}
