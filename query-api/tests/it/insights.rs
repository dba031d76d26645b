//! The insights routes over the same scripted data in ClickHouse and in the embedded
//! Parquet store: every request gets the same answer from both, and the answer is the one
//! the script implies (see `common`).

use crate::common::{Both, EVENTS, HOUR, T0, query};
use axum::http::StatusCode;
use serde_json::{Value, json};

const FROM: &str = "2026-11-20T00:00:00Z";
const TO: &str = "2026-11-20T06:00:00Z";

fn values(series: &Value) -> Vec<Value> {
    series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].clone())
        .collect()
}

fn ts(extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![("aggregate", "ci_runs"), ("from", FROM), ("to", TO)];
    pairs.extend_from_slice(extra);
    format!("/v1/insights/timeseries{}", query(&pairs))
}

#[tokio::test]
async fn timeseries_rebuckets_breaks_down_and_filters() {
    let both = Both::new("series").await;

    let (status, body) = both.same("GET", &ts(&[("measure", "runs")]), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["step_seconds"], 3600);
    assert_eq!(body["from"], FROM);
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0]["key"], Value::Null);
    // Six runs an hour over all subjects; hour 0's early result (1 run) is superseded.
    assert_eq!(values(&series[0]), vec![json!(6.0); 6]);
    assert_eq!(series[0]["points"][1]["time"], "2026-11-20T01:00:00Z");

    let (_, body) = both
        .same("GET", &ts(&[("measure", "runs"), ("step", "2h")]), None)
        .await;
    assert_eq!(values(&body["series"][0]), vec![json!(12.0); 3]);

    let (_, body) = both
        .same(
            "GET",
            &ts(&[("measure", "runs"), ("group_by", "subject"), ("top", "2")]),
            None,
        )
        .await;
    let keys: Vec<&Value> = body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["key"])
        .collect();
    assert_eq!(keys, [&json!("helios"), &json!("atlas"), &json!("other")]);
    assert_eq!(values(&body["series"][0]), vec![json!(3.0); 6]);
    assert_eq!(values(&body["series"][1]), vec![json!(2.0); 6]);
    assert_eq!(values(&body["series"][2]), vec![json!(1.0); 6]);

    let (_, body) = both
        .same(
            "GET",
            &ts(&[("measure", "runs"), ("subject", "atlas")]),
            None,
        )
        .await;
    assert_eq!(values(&body["series"][0]), vec![json!(2.0); 6]);

    // Averages weigh each window by its event count: 234 s over 18 runs.
    let (_, body) = both
        .same(
            "GET",
            &ts(&[("measure", "mean"), ("step", "6h"), ("subject", "helios")]),
            None,
        )
        .await;
    assert_eq!(values(&body["series"][0]), vec![json!(13.0)]);
    let (_, body) = both
        .same("GET", &ts(&[("measure", "slowest"), ("step", "6h")]), None)
        .await;
    assert_eq!(values(&body["series"][0]), vec![json!(35.0)]);

    // A range with no windows: points with null values, not an error.
    let (status, body) = both
        .same(
            "GET",
            &format!(
                "/v1/insights/timeseries{}",
                query(&[
                    ("aggregate", "ci_runs"),
                    ("measure", "runs"),
                    ("from", "2026-11-21T00:00:00Z"),
                    ("to", "2026-11-21T02:00:00Z"),
                ])
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(values(&body["series"][0]), vec![Value::Null; 2]);

    // Quantiles per window are fine; combining them is not.
    let (status, body) = both
        .same(
            "GET",
            &ts(&[("measure", "p95"), ("group_by", "subject")]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["series"].as_array().unwrap().len(), 3);
    for (extra, status) in [
        (
            vec![("measure", "p95"), ("step", "2h")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("measure", "runs"), ("step", "90m")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("measure", "runs"), ("group_by", "host")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("measure", "runs"), ("colour", "red")],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("measure", "runs"), ("step", "soon")],
            StatusCode::BAD_REQUEST,
        ),
        (vec![("measure", "nope")], StatusCode::NOT_FOUND),
    ] {
        let (got, body) = both.same("GET", &ts(&extra), None).await;
        assert_eq!(got, status, "{extra:?}: {body}");
        assert!(
            body["error"].is_string() && body["hint"].is_string(),
            "{body}"
        );
    }
    let (got, _) = both
        .same(
            "GET",
            "/v1/insights/timeseries?aggregate=nope&measure=runs",
            None,
        )
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn top_ranks_groups_and_combines_the_rest() {
    let both = Both::new("top").await;
    let uri = format!(
        "/v1/insights/top{}",
        query(&[
            ("aggregate", "ci_runs"),
            ("measure", "duration"),
            ("by", "subject"),
            ("n", "2"),
            ("from", FROM),
            ("to", TO),
        ])
    );
    let (status, body) = both.same("GET", &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"key": "atlas", "value": 273.0}, {"key": "helios", "value": 234.0}])
    );
    assert_eq!(body["other"], json!(195.0));
    let (_, body) = both
        .same(
            "GET",
            &format!(
                "/v1/insights/top{}",
                query(&[
                    ("aggregate", "ci_runs"),
                    ("measure", "runs"),
                    ("from", FROM),
                    ("to", TO),
                    ("branch", "main"),
                ])
            ),
            None,
        )
        .await;
    assert_eq!(body["by"], "subject");
    assert_eq!(body["rows"].as_array().unwrap().len(), 3);
    assert_eq!(body["other"], Value::Null);
    let (status, _) = both
        .same(
            "GET",
            "/v1/insights/top?aggregate=ci_runs&measure=p95&from=-10000d",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn alerts_and_insights_filter_by_state_rule_subject_kind_and_range() {
    let both = Both::new("records").await;
    let ids = |body: &Value, list: &str| -> Vec<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, body) = both.same("GET", "/v1/alerts", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body, "alerts"), ["a-atlas", "a-helios"]);
    assert_eq!(body["alerts"][0]["state"], "resolved");
    assert_eq!(body["alerts"][0]["at"], "2026-11-20T04:00:00Z");
    assert_eq!(body["alerts"][1]["group"], json!({"subject": "helios"}));
    let (_, body) = both.same("GET", "/v1/alerts?state=firing", None).await;
    assert_eq!(ids(&body, "alerts"), ["a-helios"]);
    let (_, body) = both
        .same("GET", "/v1/alerts?subject=atlas&rule=slow_ci", None)
        .await;
    assert_eq!(ids(&body, "alerts"), ["a-atlas"]);
    let (_, body) = both
        .same("GET", "/v1/alerts?from=2026-11-20T05:00:00Z", None)
        .await;
    assert_eq!(ids(&body, "alerts"), ["a-helios"]);
    let (_, body) = both.same("GET", "/v1/alerts?rule=other", None).await;
    assert_eq!(ids(&body, "alerts"), Vec::<String>::new());
    let (status, _) = both.same("GET", "/v1/alerts?state=burning", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, body) = both.same("GET", "/v1/insights", None).await;
    assert_eq!(ids(&body, "insights"), ["i-2", "i-3", "i-1"]);
    assert_eq!(body["insights"][0]["window_start"], "2026-11-20T05:00:00Z");
    let (_, body) = both.same("GET", "/v1/insights?kind=streak", None).await;
    assert_eq!(ids(&body, "insights"), ["i-2"]);
    let (_, body) = both.same("GET", "/v1/insights?subject=atlas", None).await;
    assert_eq!(ids(&body, "insights"), ["i-3"]);
    let (_, body) = both
        .same(
            "GET",
            "/v1/insights?aggregate=ci_runs&from=2026-11-20T03:00:00Z&to=2026-11-20T05:00:00Z",
            None,
        )
        .await;
    assert_eq!(ids(&body, "insights"), ["i-3"]);
    let (_, body) = both.same("GET", "/v1/insights?limit=1", None).await;
    assert_eq!(ids(&body, "insights"), ["i-2"]);
    let (status, _) = both.same("GET", "/v1/insights?aggregate=nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_page_newest_first_through_every_event_once() {
    let both = Both::new("events").await;
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut uri = "/v1/events?limit=10".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = both.same("GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for e in body["events"].as_array().unwrap() {
            seen.push((
                e["time"].as_str().unwrap().to_owned(),
                e["id"].as_str().unwrap().to_owned(),
            ));
        }
        match body["next_cursor"].as_str() {
            Some(c) => uri = format!("/v1/events?limit=10&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), EVENTS, "every event once, the replayed one too");
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let (_, body) = both.same("GET", "/v1/events?kind=git.push", None).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 6);
    let first = &body["events"][0];
    assert_eq!(first["subject"], "helios");
    assert_eq!(first["attrs"], json!({"branch": "main"}));
    assert_eq!(first["value"], json!(1.0));
    let (_, body) = both
        .same(
            "GET",
            "/v1/events?subject=zephyr&source=github&from=2026-11-20T02:00:00Z&to=2026-11-20T04:00:00Z",
            None,
        )
        .await;
    assert_eq!(body["events"].as_array().unwrap().len(), 2);
    for bad in ["cursor=xyz", "limit=0", "limit=5000", "from=yesterday"] {
        let (status, body) = both.same("GET", &format!("/v1/events?{bad}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[tokio::test]
async fn a_subject_page_sums_up_activity_alerts_measures_and_streak() {
    let both = Both::new("subject").await;
    let (status, body) = both
        .same(
            "GET",
            &format!(
                "/v1/subjects/helios{}",
                query(&[("from", FROM), ("to", TO)])
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["events"]["count"], 24);
    assert_eq!(
        body["events"]["by_kind"],
        json!([{"kind": "ci.run", "count": 18}, {"kind": "git.push", "count": 6}])
    );
    assert_eq!(body["recent_events"].as_array().unwrap().len(), 10);
    assert_eq!(body["open_alerts"][0]["id"], "a-helios");
    assert_eq!(body["streak"]["id"], "i-2");
    let measures = body["measures"].as_array().unwrap();
    assert_eq!(measures.len(), 5);
    assert!(measures.contains(&json!({
        "aggregate": "ci_runs", "measure": "runs", "value": 3.0,
        "window_start": "2026-11-20T05:00:00Z"
    })));
    let (status, body) = both
        .same(
            "GET",
            &format!(
                "/v1/subjects/nobody{}",
                query(&[("from", FROM), ("to", TO)])
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn the_catalog_lists_aggregates_measures_and_windows() {
    let both = Both::new("catalog").await;
    let (status, body) = both.same("GET", "/v1/aggregates", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["aggregates"][0]["name"], "ci_runs");
    assert_eq!(
        body["aggregates"][0]["window"],
        json!({"type": "tumbling", "size_seconds": 3600, "slide_seconds": 3600})
    );
    assert_eq!(
        body["aggregates"][0]["measures"][3],
        json!({"name": "p95", "function": "quantile"})
    );
}

#[tokio::test]
async fn late_events_are_counted_per_aggregate_and_rule_and_readable_by_sql() {
    let both = Both::new("late").await;
    let (status, body) = both.same("GET", "/v1/late", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"aggregates": [
            {"aggregate": "ci_runs", "late_events": 2, "last_time": "2026-11-20T01:01:00Z",
             "max_late_by_seconds": 7200.0},
            {"aggregate": "rule/slow_ci", "late_events": 1, "last_time": "2026-11-20T02:00:00Z",
             "max_late_by_seconds": 1.5},
        ]})
    );
    let (status, body) = both.same("GET", "/v1/late?aggregate=ci_runs", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = both
        .same(
            "POST",
            "/v1/sql",
            Some(json!({"sql": "SELECT aggregate, subject, window_start, window_end, late_by FROM late_events ORDER BY late_id"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["rows"],
        json!([
            ["ci_runs", "helios", T0, T0 + HOUR, 2 * HOUR],
            ["ci_runs", "helios", T0 + HOUR, T0 + 2 * HOUR, 90_000_000],
            ["rule/slow_ci", "helios", null, null, 1_500_000],
        ])
    );
}

/// Every parameter of every insights route, set to SQL meant to break out of its value:
/// each answer is a 4xx or an empty/normal answer, and the tables are intact afterwards.
#[tokio::test]
async fn injection_through_any_parameter_changes_nothing() {
    let both = Both::new("inject").await;
    let attacks = [
        "x' OR '1'='1",
        "1; DROP TABLE events --",
        "') UNION SELECT * FROM system.tables --",
        "`; TRUNCATE TABLE alerts",
        "\"; DROP TABLE insights; --",
        "$1",
        "?",
    ];
    let routes: [(&str, &[&str]); 8] = [
        (
            "/v1/insights/timeseries",
            &[
                "aggregate",
                "measure",
                "from",
                "to",
                "step",
                "group_by",
                "top",
                "subject",
                "branch",
            ],
        ),
        (
            "/v1/insights/top",
            &[
                "aggregate",
                "measure",
                "by",
                "n",
                "from",
                "to",
                "subject",
                "branch",
            ],
        ),
        (
            "/v1/alerts",
            &["state", "rule", "subject", "from", "to", "limit"],
        ),
        (
            "/v1/insights",
            &["kind", "aggregate", "subject", "from", "to", "limit"],
        ),
        (
            "/v1/events",
            &["source", "kind", "subject", "from", "to", "limit", "cursor"],
        ),
        ("/v1/subjects/helios", &["from", "to"]),
        ("/v1/aggregates", &[]),
        ("/v1/late", &[]),
    ];
    for attack in attacks {
        for (route, params) in routes {
            for param in params.iter() {
                // A valid request with one parameter replaced by the attack.
                let mut pairs: Vec<(&str, &str)> = vec![("from", FROM), ("to", TO)];
                if route.starts_with("/v1/insights/") {
                    pairs.extend([("aggregate", "ci_runs"), ("measure", "runs")]);
                }
                pairs.retain(|(k, _)| k != param);
                pairs.push((param, attack));
                let uri = format!("{route}{}", query(&pairs));
                let (status, body) = both.same("GET", &uri, None).await;
                assert!(
                    status.is_client_error() || status == StatusCode::OK,
                    "{uri}: {status} {body}"
                );
                if status == StatusCode::OK {
                    // A value that matched nothing found nothing.
                    for list in ["alerts", "insights", "events"] {
                        if let Some(items) = body[list].as_array() {
                            assert!(items.is_empty(), "{uri}: {body}");
                        }
                    }
                }
            }
            // The subject path segment too.
            let (status, _) = both
                .same(
                    "GET",
                    &format!(
                        "/v1/subjects/{}{}",
                        &query(&[("s", attack)])[3..],
                        query(&[("from", FROM), ("to", TO)])
                    ),
                    None,
                )
                .await;
            assert!(status == StatusCode::NOT_FOUND || status.is_client_error());
        }
    }
    let (_, body) = both
        .same(
            "POST",
            "/v1/sql",
            Some(json!({"sql": "SELECT (SELECT count(*) FROM events) AS e, (SELECT count(*) FROM alerts) AS a, (SELECT count(*) FROM insights) AS i"})),
        )
        .await;
    assert_eq!(body["rows"], json!([[EVENTS, 2, 3]]), "{body}");
}

/// Issue 14, done-when 2: the read API's ClickHouse reader over HTTPS, with a wrong
/// password or without the CA of the server's certificate, answers `502` saying which
/// (and the password is in no answer).
#[tokio::test]
async fn the_reader_says_whether_clickhouse_refused_its_password_or_tls_its_certificate() {
    use crate::common::{app, test_var};
    use helios_query_api::store::{ClickHouseReader, Limits};
    use helios_sinks::clickhouse::ClickHouseConfig;

    let config = |password: &str, ca: Option<String>| {
        ClickHouseConfig::new(test_var("HELIOS_TEST_CLICKHOUSE_HTTPS"))
            .database("helios")
            .credentials(
                Some(test_var("HELIOS_TEST_CLICKHOUSE_READ_USER")),
                Some(password.to_owned()),
            )
            .ca_file(ca.map(Into::into))
            .client_certificate(
                Some(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_CERT").into()),
                Some(test_var("HELIOS_TEST_CLICKHOUSE_CLIENT_KEY").into()),
            )
    };
    let ca = test_var("HELIOS_TEST_CLICKHOUSE_CA");
    let cases = [
        (
            config("wrong-password", Some(ca.clone())),
            "authentication failed",
        ),
        (
            config(&test_var("HELIOS_TEST_CLICKHOUSE_READ_PASSWORD"), None),
            "certificate is not trusted",
        ),
    ];
    for (config, says) in cases {
        let reader = std::sync::Arc::new(ClickHouseReader::read_only_user(&config).unwrap());
        let app = app(reader, Limits::default());
        let (status, body) = crate::common::call(
            &app,
            "POST",
            "/v1/sql",
            Some(json!({"sql": "SELECT count() FROM events"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        let text = body.to_string();
        assert!(text.contains(says), "{says}: {text}");
        assert!(!text.contains("wrong-password"), "{text}");
    }
}
