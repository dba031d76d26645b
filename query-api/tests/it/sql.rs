//! `POST /v1/sql` on both stores: the same rows for the same query, CSV as an option, and a
//! clear 4xx for everything that is not one bounded read of the Helios tables.

use std::time::Duration;

use crate::common::{Both, EVENTS};
use axum::http::StatusCode;
use helios_query_api::store::Limits;
use serde_json::{Value, json};

fn sql(text: &str) -> Option<Value> {
    Some(json!({ "sql": text }))
}

#[tokio::test]
async fn selects_answer_the_same_rows_on_both_stores() {
    let both = Both::new("sql").await;
    let (status, body) = both
        .same(
            "POST",
            "/v1/sql",
            sql("SELECT kind, count(*) AS n, sum(value) AS total FROM events GROUP BY kind ORDER BY kind"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["columns"],
        json!([
            {"name": "kind", "type": "string"},
            {"name": "n", "type": "integer"},
            {"name": "total", "type": "float"},
        ])
    );
    assert_eq!(body["rows"][0][0], "ci.run");
    assert_eq!(body["rows"][0][1], 36);
    assert_eq!(body["rows"][1], json!(["git.push", 6, 6.0]));
    assert_eq!(body["row_count"], 2);

    // Replays and versions are invisible: one row per id, the newest version.
    let (_, body) = both
        .same(
            "POST",
            "/v1/sql",
            sql("SELECT subject, runs, version FROM agg_ci_runs WHERE window_start = 1795132800000000 ORDER BY subject"),
        )
        .await;
    assert_eq!(
        body["rows"],
        json!([["atlas", 2.0, 1], ["helios", 3.0, 1], ["zephyr", 1.0, 1]]),
        "{body}"
    );
    let (_, body) = both
        .same(
            "POST",
            "/v1/sql",
            sql("SELECT count(*) AS n FROM (SELECT id FROM events WHERE time >= 1795132800000000) recent"),
        )
        .await;
    assert_eq!(body["rows"], json!([[EVENTS]]));

    let (status, body) = both
        .same(
            "POST",
            "/v1/sql?format=csv",
            sql("SELECT id, state, evidence FROM alerts ORDER BY id"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        Value::String(
            "id,state,evidence\r\na-atlas,resolved,\"[\"\"atlas: slowest run above 30 s\"\"]\"\r\n\
             a-helios,firing,\"[\"\"helios: slowest run above 30 s\"\"]\"\r\n"
                .to_owned()
        )
    );
}

#[tokio::test]
async fn anything_but_one_bounded_read_is_a_clear_4xx() {
    let both = Both::with_limits(
        "sqlsafety",
        Limits {
            max_rows: 20,
            timeout: Duration::from_secs(1),
        },
    )
    .await;
    // A left-deep chain of cross joins, one join per SELECT (all ClickHouse 18.16 takes).
    let mut chain = "SELECT 1 FROM events t0 CROSS JOIN events t1".to_owned();
    for i in 2..6 {
        chain = format!("SELECT 1 FROM ({chain}) l{i} CROSS JOIN events t{i}");
    }
    let huge_count = format!("SELECT count(*) FROM ({chain}) l6 CROSS JOIN events t6");
    let cases: &[(&str, StatusCode)] = &[
        (
            "INSERT INTO events (id) VALUES ('x')",
            StatusCode::FORBIDDEN,
        ),
        ("DELETE FROM events WHERE 1 = 1", StatusCode::FORBIDDEN),
        (
            "UPDATE alerts SET state = 'resolved'",
            StatusCode::FORBIDDEN,
        ),
        ("DROP TABLE events", StatusCode::FORBIDDEN),
        (
            "CREATE TABLE x AS SELECT * FROM events",
            StatusCode::FORBIDDEN,
        ),
        ("TRUNCATE TABLE events", StatusCode::FORBIDDEN),
        ("SELECT 1; DROP TABLE events", StatusCode::BAD_REQUEST),
        ("SELECT 1; SELECT 2", StatusCode::BAD_REQUEST),
        ("SET readonly = 0", StatusCode::FORBIDDEN),
        (
            "SELECT * FROM events SETTINGS max_result_rows = 1000000",
            StatusCode::FORBIDDEN,
        ),
        ("SELECT * FROM system.tables", StatusCode::FORBIDDEN),
        ("SELECT name FROM system.settings", StatusCode::FORBIDDEN),
        (
            "SELECT * FROM information_schema.tables",
            StatusCode::FORBIDDEN,
        ),
        ("SELECT * FROM raw.events", StatusCode::FORBIDDEN),
        ("SELECT * FROM schema_migrations", StatusCode::FORBIDDEN),
        (
            "SELECT * FROM file('/etc/passwd', 'CSV', 'line String')",
            StatusCode::FORBIDDEN,
        ),
        (
            "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
            StatusCode::FORBIDDEN,
        ),
        (
            "SELECT * FROM remote('127.0.0.1', system.one)",
            StatusCode::FORBIDDEN,
        ),
        ("SELECT * FROM numbers(100000000)", StatusCode::FORBIDDEN),
        (
            "SELECT dictGetString('d', 'a', toUInt64(1))",
            StatusCode::FORBIDDEN,
        ),
        ("SELEC * FROM events", StatusCode::BAD_REQUEST),
        ("", StatusCode::BAD_REQUEST),
        ("SELECT no_such_column FROM events", StatusCode::BAD_REQUEST),
        // 42 events: more than the 20-row limit.
        ("SELECT id FROM events", StatusCode::UNPROCESSABLE_ENTITY),
        // 42^7 rows to count: beyond the time limit (embedded) or the memory limit
        // (ClickHouse 18.16 builds cross joins in memory) on any machine.
        (huge_count.as_str(), StatusCode::UNPROCESSABLE_ENTITY),
    ];
    for (text, want) in cases {
        let (status, body) = both.same_status("POST", "/v1/sql", sql(text)).await;
        assert_eq!(status, *want, "{text}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()) && body["hint"].is_string(),
            "{text}: {body}"
        );
    }
    for (body, want) in [
        (json!({"query": "SELECT 1"}), StatusCode::BAD_REQUEST),
        (
            json!({"sql": "SELECT 1", "format": "xml"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = both
            .same_status("POST", "/v1/sql", Some(body.clone()))
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    // Nothing changed.
    let (_, body) = both
        .same("POST", "/v1/sql", sql("SELECT count(*) AS n FROM events"))
        .await;
    assert_eq!(body["rows"], json!([[EVENTS]]));
}
