//! Property tests of the SQL guard (`sql::guard::check`): arbitrary text, grammar-generated
//! SQL (reads, joins, CTEs, unions, table functions, system tables, DML/DDL, SETTINGS and
//! FORMAT, comments and quoting tricks) and mutations of it never panic; the answer is the
//! same when asked twice; what it accepts for the embedded store is the text itself and is
//! accepted again, and what it renders for ClickHouse is one query that it accepts again.
//! Only the public `check` is called and errors are not matched by variant, so the guard
//! can grow new refusals.

use std::collections::BTreeSet;

use helios_query_api::sql::guard::{GuardLimits, check as guard, check_with};
use helios_query_api::store::Dialect;
use proptest::prelude::*;
use sqlparser::ast::Statement;
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

#[path = "../../../schemas/tests/it/props.rs"]
mod support;

use support::{check, mutate_text, mutations};

fn tables() -> BTreeSet<String> {
    [
        "events",
        "alerts",
        "insights",
        "dead_letters",
        "late_events",
        "agg_ci_runs",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(items)
        .prop_map(String::from)
        .boxed()
}

fn relation() -> BoxedStrategy<String> {
    pick(&[
        "events",
        "alerts",
        "insights",
        "dead_letters",
        "late_events",
        "agg_ci_runs",
        "EVENTS",
        "\"events\"",
        "`events`",
        "helios.events",
        "system.tables",
        "system.one",
        "information_schema.tables",
        "other.t",
        "schema_migrations",
        "numbers(10)",
        "url('http://127.0.0.1/')",
        "file('/etc/passwd')",
        "remote('h', system.one)",
        "read_parquet('x')",
        "generate_series(1, 3)",
        "t",
        "cte",
        "events FINAL",
        "events AS e",
        "events e",
    ])
}

fn literal() -> BoxedStrategy<String> {
    prop_oneof![
        pick(&[
            "1",
            "0",
            "-1",
            "1.5e300",
            "NULL",
            "TRUE",
            "'x'",
            "''''",
            "'a''b'",
            "X'41'",
            "INTERVAL '1' HOUR",
            "DATE '2024-01-01'",
        ]),
        "'[^'\\\\]{0,8}'".boxed(),
        // Backslashes: sqlparser un-escapes them, so the ClickHouse rendering must escape
        // them again (issue 12's escape smuggling).
        pick(&["'\\\\'", "'a\\\\b'", "'\\n'", "'\\\\'' '"]),
        "[0-9]{1,20}".boxed(),
    ]
    .boxed()
}

fn column() -> BoxedStrategy<String> {
    pick(&[
        "kind",
        "source",
        "subject",
        "value",
        "time",
        "id",
        "attrs['a']",
        "attrs",
        "payload",
        "e.kind",
        "name",
        "*",
        "`kind`",
        "\"value\"",
    ])
}

fn expr() -> BoxedStrategy<String> {
    let leaf = prop_oneof![literal(), column()];
    // Depth and chain length keep expressions under ~100 terms, within the guard's depth
    // limit, so generated statements reach the later checks; longer chains are the
    // regression test's (`long_flat_chains_are_refused_not_a_stack_overflow`).
    leaf.prop_recursive(3, 24, 3, |e| {
        prop_oneof![
            (
                e.clone(),
                pick(&[
                    "+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "||", "LIKE"
                ]),
                e.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            (
                pick(&[
                    "count",
                    "sum",
                    "avg",
                    "min",
                    "max",
                    "length",
                    "lower",
                    "upper",
                    "coalesce",
                    "repeat",
                    "lpad",
                    "array_repeat",
                    "range",
                    "sleep",
                    "file",
                    "url",
                    "remote",
                    "currentDatabase",
                    "version",
                    "getSetting",
                    "toString",
                    "concat",
                ]),
                proptest::collection::vec(e.clone(), 0..3)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            e.clone().prop_map(|a| format!("({a})")),
            e.clone().prop_map(|a| format!("(NOT {a})")),
            (e.clone(), e.clone(), e.clone())
                .prop_map(|(a, b, c)| format!("CASE WHEN {a} THEN {b} ELSE {c} END")),
            (e.clone(), pick(&["VARCHAR", "BIGINT", "DOUBLE", "String"]))
                .prop_map(|(a, t)| format!("CAST({a} AS {t})")),
            (e.clone(), relation()).prop_map(|(a, r)| format!("{a} IN (SELECT 1 FROM {r})")),
            (e.clone(), relation()).prop_map(|(a, r)| format!("{a} IN ({r})")),
            relation().prop_map(|r| format!("EXISTS (SELECT * FROM {r})")),
            (e.clone(), 1usize..5).prop_map(|(a, n)| vec![a; n].join(" + ")),
        ]
    })
    .boxed()
}

fn select() -> BoxedStrategy<String> {
    let from = prop_oneof![
        3 => relation(),
        1 => (relation(), pick(&["JOIN", "LEFT JOIN", "CROSS JOIN", ","]), relation())
            .prop_map(|(a, j, b)| if j == "," || j == "CROSS JOIN" {
                format!("{a} {j} {b}")
            } else {
                format!("{a} {j} {b} ON true")
            }),
        1 => relation().prop_map(|r| format!("(SELECT * FROM {r}) AS s")),
    ];
    (
        proptest::collection::vec(expr(), 1..4),
        proptest::option::of(from),
        proptest::option::of(expr()),
        proptest::option::of(column()),
        proptest::option::of(0u64..1_000_000),
    )
        .prop_map(|(cols, from, filter, group, limit)| {
            let mut s = format!("SELECT {}", cols.join(", "));
            if let Some(f) = from {
                s += &format!(" FROM {f}");
            }
            if let Some(w) = filter {
                s += &format!(" WHERE {w}");
            }
            if let Some(g) = group {
                s += &format!(" GROUP BY {g}");
            }
            if let Some(l) = limit {
                s += &format!(" LIMIT {l}");
            }
            s
        })
        .boxed()
}

fn statement() -> BoxedStrategy<String> {
    let query = prop_oneof![
        4 => select(),
        1 => (select(), select()).prop_map(|(a, b)| format!("{a} UNION ALL {b}")),
        1 => (select(), select()).prop_map(|(a, b)| format!("WITH cte AS ({a}) {b}")),
        1 => (relation(), select()).prop_map(|(r, b)| format!("WITH t AS (SELECT * FROM {r}) {b}")),
        1 => select().prop_map(|a| format!("WITH RECURSIVE r AS ({a}) SELECT * FROM r")),
    ];
    let suffix = pick(&[
        "",
        "",
        "",
        ";",
        "; DROP TABLE events",
        " SETTINGS max_threads = 1",
        " FORMAT JSON",
        " INTO OUTFILE '/tmp/x'",
        " FOR UPDATE",
        " -- comment",
        " /* c */",
        " ORDER BY 1",
    ]);
    prop_oneof![
        6 => (query, suffix).prop_map(|(q, s)| format!("{q}{s}")),
        1 => pick(&[
            "INSERT INTO events VALUES (1)", "DELETE FROM events", "UPDATE events SET kind = 'x'",
            "DROP TABLE events", "CREATE TABLE x (a INT)", "SET max_memory_usage = 1",
            "ATTACH TABLE x", "TRUNCATE events", "SHOW TABLES", "DESCRIBE events",
            "EXPLAIN SELECT 1", "COPY events TO '/tmp/x'", "TABLE events", "VALUES (1)",
            "WITH d AS (DELETE FROM events RETURNING *) SELECT * FROM d",
        ]),
    ]
    .boxed()
}

fn same(
    a: &Result<String, helios_query_api::ApiError>,
    b: &Result<String, helios_query_api::ApiError>,
) -> bool {
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x.to_string() == y.to_string(),
        _ => false,
    }
}

fn guard_checked(sql: &str) -> Result<(), TestCaseError> {
    let tables = tables();
    for dialect in [Dialect::DataFusion, Dialect::ClickHouse] {
        let first = guard(sql, dialect, &tables);
        let second = guard(sql, dialect, &tables);
        prop_assert!(same(&first, &second), "not deterministic: {:?}", sql);
        let Ok(out) = first else { continue };
        match dialect {
            Dialect::DataFusion => {
                prop_assert_eq!(&out, sql);
                let again = guard(&out, dialect, &tables);
                prop_assert!(
                    again.is_ok(),
                    "accepted once, refused again: {:?}",
                    again.err().map(|e| e.to_string())
                );
            }
            Dialect::ClickHouse => {
                let parsed = Parser::parse_sql(&ClickHouseDialect {}, &out);
                prop_assert!(
                    matches!(parsed.as_deref(), Ok([Statement::Query(_)])),
                    "rendered text is not one query: {:?} -> {:?}",
                    sql,
                    out
                );
                // Each table is rendered as a `(SELECT * FROM t FINAL)` subquery: one more
                // table, level and expression per reference, counted again on a re-check.
                let grown = GuardLimits {
                    max_text_bytes: 4 * GuardLimits::default().max_text_bytes,
                    max_nesting: GuardLimits::default().max_nesting + 2,
                    max_expressions: 2 * GuardLimits::default().max_expressions,
                    max_tables: 2 * GuardLimits::default().max_tables,
                    ..GuardLimits::default()
                };
                let again = check_with(&out, dialect, &tables, &grown);
                prop_assert!(
                    again.is_ok(),
                    "rendered text {:?} is refused on a re-check: {:?}",
                    out,
                    again.err().map(|e| e.to_string())
                );
            }
        }
    }
    Ok(())
}

#[test]
fn arbitrary_text_never_panics() {
    check(
        "sql_guard.arbitrary_text",
        prop_oneof![
            "\\PC{0,120}",
            "[a-zA-Z0-9_ ,.*()'\"`;=<>+\\-/\\\\\\[\\]]{0,120}",
        ],
        |sql| guard_checked(&sql),
    );
}

#[test]
fn generated_and_mutated_sql_is_decided_consistently() {
    check(
        "sql_guard.generated_sql",
        (statement(), mutations(3)),
        |(sql, edits)| {
            guard_checked(&sql)?;
            guard_checked(&mutate_text(&sql, &edits))
        },
    );
}

/// Found by the generated-SQL property: a long flat chain of terms (or 16 chained `NOT`s)
/// overflowed the stack of a 2 MiB thread inside `check` in a debug build (sqlparser's
/// parse, visit and render recurse per term). The guard now runs where production runs
/// it, on a query-compartment thread (`CompartmentConfig::default().stack_bytes`), and
/// refuses chains deeper than its expression limit with a 400 before anything else
/// recurses over them.
#[test]
fn long_flat_chains_are_refused_not_a_stack_overflow() {
    let nots = format!(
        "SELECT payload + payload, 62917457457 IN (SELECT 1 FROM insights), {} FROM cte JOIN file('/etc/passwd') ON true",
        vec!["NOT 32805"; 16].join(" + ")
    );
    let chains = [100usize, 300, 1000, 3000, 10_000]
        .map(|terms| (terms, format!("SELECT {}", vec!["1"; terms].join(" + "))));
    let stack = helios_query_api::store::CompartmentConfig::default().stack_bytes;
    let run = move |sql: String| {
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                [Dialect::DataFusion, Dialect::ClickHouse]
                    .map(|dialect| guard(&sql, dialect, &tables()).map_err(|e| e.to_string()))
            })
            .unwrap()
            .join()
            .expect("the guard returns, it does not overflow its stack")
    };
    for answer in run(nots) {
        assert!(answer.is_err(), "file() is refused: {answer:?}");
    }
    for (terms, sql) in chains {
        for answer in run(sql) {
            if terms > 200 {
                let e = answer.expect_err("a chain over the depth limit is refused");
                assert!(e.contains("expression"), "{terms} terms: {e}");
            } else {
                assert!(answer.is_ok(), "{terms} terms: {answer:?}");
            }
        }
    }
}

/// Found by the generated-SQL property (issue 12's escape smuggling): sqlparser un-escapes
/// `\\` in a string literal, and a rendering that wrote it back as `\` made the text read
/// `system.tables`. The guard renders ClickHouse strings with ClickHouse's escaping, so
/// what it sends is one query it accepts again.
#[test]
fn rendered_clickhouse_text_is_accepted_again() {
    let sql = r"SELECT '\\' AS a, ' , name FROM system.tables -- '";
    let out = guard(sql, Dialect::ClickHouse, &tables()).expect("accepted");
    let again = guard(&out, Dialect::ClickHouse, &tables());
    assert!(
        again.is_ok(),
        "{out:?}: {:?}",
        again.err().map(|e| e.to_string())
    );
}
