use std::collections::BTreeMap;

use helios_schemas::Event;

use super::{Expr, Type, Value};

fn event() -> Event {
    Event {
        id: "e-1".into(),
        source: "github".into(),
        kind: "ci.run".into(),
        subject: "acme/helios".into(),
        time: 1_700_000_000_000_000,
        received_at: 1_700_000_000_500_000,
        attrs: BTreeMap::from([
            ("conclusion".to_string(), "failure".to_string()),
            ("branch".to_string(), "main".to_string()),
            ("attempts".to_string(), "3".to_string()),
        ]),
        value: Some(42.5),
        payload: Some("{\"x\":1}".into()),
    }
}

/// Evaluates `sql` on the sample event and compares the text form of the result
/// (`NULL` for NULL).
fn check(cases: &[(&str, &str)]) {
    let e = event();
    for (sql, want) in cases {
        let expr = Expr::compile(sql).unwrap_or_else(|err| panic!("{sql}: {err}"));
        let got = match expr.eval(&e) {
            Value::Null => "NULL".to_string(),
            v => v.to_key().unwrap(),
        };
        assert_eq!(&got, want, "{sql}");
    }
}

#[test]
fn columns_and_attributes() {
    check(&[
        ("kind", "ci.run"),
        ("subject", "acme/helios"),
        ("value", "42.5"),
        ("time", "1700000000000000"),
        ("attrs['conclusion']", "failure"),
        ("attrs['missing']", "NULL"),
        ("payload", "{\"x\":1}"),
    ]);
}

#[test]
fn comparisons_and_logic() {
    check(&[
        ("kind = 'ci.run'", "true"),
        ("kind <> 'ci.run'", "false"),
        (
            "kind = 'ci.run' AND attrs['conclusion'] = 'failure'",
            "true",
        ),
        ("kind = 'x' OR value > 40", "true"),
        ("NOT (value >= 42.5)", "false"),
        ("value BETWEEN 40 AND 50", "true"),
        ("value NOT BETWEEN 40 AND 50", "false"),
        ("kind IN ('git.push', 'ci.run')", "true"),
        ("kind NOT IN ('git.push', 'ci.run')", "false"),
        ("value IN (1, 42.5)", "true"),
        ("attrs['missing'] = 'x'", "NULL"),
        ("attrs['missing'] = 'x' AND kind = 'nope'", "false"),
        ("attrs['missing'] = 'x' OR kind = 'ci.run'", "true"),
        ("attrs['missing'] IS NULL", "true"),
        ("attrs['branch'] IS NOT NULL", "true"),
        ("'b' > 'a'", "true"),
        ("NULL = 1", "NULL"),
    ]);
}

#[test]
fn patterns_and_regexes() {
    check(&[
        ("kind LIKE 'ci.%'", "true"),
        ("kind LIKE 'ci._un'", "true"),
        ("kind LIKE 'CI.%'", "false"),
        ("kind ILIKE 'CI.%'", "true"),
        ("kind NOT LIKE 'git.%'", "true"),
        ("subject LIKE 'acme/%'", "true"),
        ("subject ~ '^acme/'", "true"),
        ("subject ~* '^ACME/'", "true"),
        ("subject !~ 'helios$'", "false"),
        ("regexp_like(subject, 'HEL', 'i')", "true"),
        ("'50%' LIKE '50!%' ESCAPE '!'", "true"),
    ]);
}

#[test]
fn arithmetic_case_cast_and_functions() {
    check(&[
        ("value * 2", "85"),
        ("value + 1", "43.5"),
        ("7 / 2", "3"),
        ("7 % 4", "3"),
        ("7.0 / 2", "3.5"),
        ("1 / 0", "NULL"),
        ("-value", "-42.5"),
        ("(time - received_at) / 1000", "-500"),
        ("CASE WHEN value > 40 THEN 'high' ELSE 'low' END", "high"),
        (
            "CASE attrs['conclusion'] WHEN 'success' THEN 1 WHEN 'failure' THEN 0 END",
            "0",
        ),
        ("CASE WHEN value > 100 THEN 1 END", "NULL"),
        ("CASE WHEN value > 1 THEN 1 ELSE 2.5 END", "1"),
        ("CAST(attrs['attempts'] AS bigint) + 1", "4"),
        ("CAST(attrs['conclusion'] AS double)", "NULL"),
        ("CAST(' 2.5 ' AS double)", "2.5"),
        ("CAST('NaN' AS double)", "NULL"),
        ("CAST('-inf' AS double)", "NULL"),
        ("CAST('1e400' AS double)", "NULL"),
        ("1e308 * 10", "NULL"),
        ("-1e308 - 1e308", "NULL"),
        ("CAST(value AS varchar)", "42.5"),
        ("CAST(value AS int)", "42"),
        ("lower('ABC') || upper('d')", "abcD"),
        ("length(subject)", "11"),
        ("substr(subject, 6)", "helios"),
        ("substr(subject, 1, 4)", "acme"),
        ("SUBSTRING(subject FROM 6 FOR 3)", "hel"),
        ("trim('  x ')", "x"),
        ("TRIM('  y ')", "y"),
        ("replace(kind, '.', '_')", "ci_run"),
        ("split_part(subject, '/', 2)", "helios"),
        ("concat(kind, '-', attrs['missing'], 'x')", "ci.run-x"),
        ("coalesce(attrs['missing'], attrs['branch'])", "main"),
        ("nullif(attrs['branch'], 'main')", "NULL"),
        ("abs(-3)", "3"),
        ("round(value)", "43"),
        ("round(2.345, 2)", "2.35"),
        ("floor(value)", "42"),
        ("ceil(value)", "43"),
        ("power(2, 10)", "1024"),
        ("greatest(1, value, 7)", "42.5"),
        ("least(1, value, 7)", "1"),
        ("starts_with(kind, 'ci.')", "true"),
        ("strpos(subject, 'helios')", "6"),
    ]);
}

#[test]
fn mistakes_are_explained_with_positions() {
    type Case<'a> = (&'a str, &'a str, Option<(u64, u64)>);
    let cases: &[Case] = &[
        ("kind = ", "syntax error", None),
        ("knd = 'x'", "unknown column `knd`", Some((1, 1))),
        ("kind = 'x' extra", "unexpected", Some((1, 12))),
        (
            "value = 'x'",
            "cannot compare double with text",
            Some((1, 1)),
        ),
        ("kind + 1", "needs a number", Some((1, 1))),
        ("kind AND value > 1", "needs a boolean", Some((1, 1))),
        (
            "kind LIKE subject",
            "must be a quoted literal",
            Some((1, 11)),
        ),
        ("subject ~ '('", "invalid regex", Some((1, 11))),
        ("count(*) > 3", "aggregate function `count`", Some((1, 1))),
        (
            "frobnicate(kind)",
            "unknown function `frobnicate`",
            Some((1, 1)),
        ),
        (
            "attrs.conclusion = 'x'",
            "unknown column `attrs.conclusion`",
            Some((1, 1)),
        ),
        ("attrs[1] = 'x'", "quoted name", Some((1, 1))),
        ("CAST(kind AS date)", "CAST to `DATE`", Some((1, 6))),
        (
            "CASE WHEN value > 1 THEN 'a' ELSE 2 END",
            "mixes text and bigint",
            Some((1, 35)),
        ),
        ("lower(kind, 2)", "takes 1 argument", Some((1, 1))),
    ];
    for (sql, needle, position) in cases {
        let err = Expr::compile(sql).expect_err(sql);
        assert!(err.message.contains(needle), "{sql}: {err}");
        if position.is_some() {
            assert_eq!(err.position, *position, "{sql}: {err}");
        }
    }
    let err = Expr::compile_condition("value + 1").unwrap_err();
    assert!(err.message.contains("must be boolean"), "{err}");
    assert_eq!(
        Expr::compile_condition("kind = 'x'").unwrap().ty(),
        Type::Bool
    );
}

#[test]
fn group_keys_and_measures() {
    use super::{AggregateFn, compile_group_key, compile_measure};
    let e = event();
    for (sql, name, value) in [
        ("subject", "subject", "acme/helios"),
        ("attrs['conclusion']", "conclusion", "failure"),
        ("attrs['conclusion'] AS outcome", "outcome", "failure"),
        ("lower(kind) AS k", "k", "ci.run"),
    ] {
        let key = compile_group_key(sql).unwrap_or_else(|err| panic!("{sql}: {err}"));
        assert_eq!(key.name, name);
        assert_eq!(key.expr.eval(&e).to_key().as_deref(), Some(value));
    }
    assert!(
        compile_group_key("lower(kind)")
            .unwrap_err()
            .message
            .contains("AS")
    );

    let m = compile_measure("count(*)").unwrap();
    assert_eq!(m.function, AggregateFn::Count);
    assert!(m.argument.is_none());
    let m = compile_measure("quantile(value, 0.95)").unwrap();
    assert_eq!(m.function, AggregateFn::Quantile(0.95));
    assert_eq!(m.argument.unwrap().eval(&e), Value::Float(42.5));
    let m = compile_measure("count_distinct(attrs['branch'])").unwrap();
    assert_eq!(m.function, AggregateFn::CountDistinct);
    for (sql, needle) in [
        ("median(value)", "unknown aggregate function `median`"),
        ("quantile(value, 1.5)", "between 0 and 1"),
        ("sum(kind)", "needs a number"),
        ("value + 1", "one aggregate call"),
        ("avg(value, 2)", "takes 1 argument"),
    ] {
        let err = compile_measure(sql).unwrap_err();
        assert!(err.message.contains(needle), "{sql}: {err}");
    }
}
