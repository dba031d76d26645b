use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use super::names::{self, ALL};
use super::parse::parse;
use super::text::{Family, Kind, valid_label_name, valid_metric_name};
use super::*;

const REQUESTS: Family = Family {
    name: "test_requests_total",
    kind: Kind::Counter,
    labels: &["path", "code"],
    help: "Requests.",
};
const TEMPERATURE: Family = Family {
    name: "test_temperature_celsius",
    kind: Kind::Gauge,
    labels: &[],
    help: "A \"gauge\" with a backslash \\ and\na line feed in its help.",
};
const LATENCY: Family = Family {
    name: "test_latency_seconds",
    kind: Kind::Histogram,
    labels: &["stage"],
    help: "Latency.",
};
const WAIT: Family = Family {
    name: "test_wait_seconds",
    kind: Kind::Summary,
    labels: &[],
    help: "Wait.",
};

#[test]
fn label_values_are_escaped_and_read_back_unchanged() {
    let nasty = "a\\b\"c\nd} e,f=\"g\"";
    let mut out = Exposition::new();
    out.counter(&REQUESTS, &[nasty, "200"], 3);
    let text = out.render();
    assert!(
        text.contains(r#"test_requests_total{path="a\\b\"c\nd} e,f=\"g\"",code="200"} 3"#),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "no raw line feed: {text}");
    let scrape = parse(&text).unwrap();
    assert_eq!(scrape.samples.len(), 1);
    assert_eq!(scrape.samples[0].labels["path"], nasty);
    assert_eq!(scrape.samples[0].labels["code"], "200");
    assert_eq!(scrape.samples[0].value, 3.0);
}

#[test]
fn help_is_escaped_and_read_back_unchanged() {
    let mut out = Exposition::new();
    out.gauge(&TEMPERATURE, &[], -4.5);
    let text = out.render();
    assert!(
        text.starts_with(
            "# HELP test_temperature_celsius A \"gauge\" with a backslash \\\\ and\\na line feed in its help.\n# TYPE test_temperature_celsius gauge\ntest_temperature_celsius -4.5\n"
        ),
        "{text}"
    );
    let scrape = parse(&text).unwrap();
    assert_eq!(scrape.help["test_temperature_celsius"], TEMPERATURE.help);
    assert_eq!(scrape.types["test_temperature_celsius"], "gauge");
}

#[test]
fn samples_of_one_family_from_several_collectors_stay_together_under_one_header() {
    let mut out = Exposition::new();
    out.counter(&REQUESTS, &["/a", "200"], 1);
    out.gauge(&TEMPERATURE, &[], 20.0);
    out.counter(&REQUESTS, &["/b", "503"], 2);
    let text = out.render();
    assert_eq!(text.matches("# HELP test_requests_total").count(), 1);
    assert_eq!(
        text.matches("# TYPE test_requests_total counter").count(),
        1
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "# HELP test_requests_total Requests.",
            "# TYPE test_requests_total counter",
            r#"test_requests_total{path="/a",code="200"} 1"#,
            r#"test_requests_total{path="/b",code="503"} 2"#,
            "# HELP test_temperature_celsius A \"gauge\" with a backslash \\\\ and\\na line feed in its help.",
            "# TYPE test_temperature_celsius gauge",
            "test_temperature_celsius 20",
        ]
    );
    parse(&text).unwrap();
}

#[test]
fn histogram_has_cumulative_buckets_inf_sum_and_count() {
    let mut out = Exposition::new();
    out.histogram(
        &LATENCY,
        &["sink"],
        &[(0.005, 1), (0.1, 3), (1.0, 4)],
        1.25,
        5,
    );
    let text = out.render();
    let body: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(
        body,
        [
            r#"test_latency_seconds_bucket{stage="sink",le="0.005"} 1"#,
            r#"test_latency_seconds_bucket{stage="sink",le="0.1"} 3"#,
            r#"test_latency_seconds_bucket{stage="sink",le="1"} 4"#,
            r#"test_latency_seconds_bucket{stage="sink",le="+Inf"} 5"#,
            r#"test_latency_seconds_sum{stage="sink"} 1.25"#,
            r#"test_latency_seconds_count{stage="sink"} 5"#,
        ]
    );
    let scrape = parse(&text).unwrap();
    assert!(
        scrape
            .samples
            .iter()
            .all(|s| s.family == "test_latency_seconds")
    );
    assert_eq!(
        scrape.sum("test_latency_seconds_bucket", &[("le", "+Inf")]),
        5.0
    );
}

#[test]
fn histogram_with_buckets_out_of_order_is_left_out() {
    let mut out = Exposition::new();
    out.histogram(&LATENCY, &["x"], &[(1.0, 4), (0.5, 5)], 1.0, 5);
    out.histogram(&LATENCY, &["y"], &[(1.0, 6)], 1.0, 5);
    assert_eq!(out.render(), "");
}

#[test]
fn summary_has_sum_and_count_only() {
    let mut out = Exposition::new();
    out.summary(&WAIT, &[], 0.5, 2);
    let text = out.render();
    assert_eq!(
        text,
        "# HELP test_wait_seconds Wait.\n# TYPE test_wait_seconds summary\ntest_wait_seconds_sum 0.5\ntest_wait_seconds_count 2\n"
    );
    let scrape = parse(&text).unwrap();
    assert_eq!(scrape.sum("test_wait_seconds_count", &[]), 2.0);
}

#[test]
fn special_and_large_values_are_spelled_as_prometheus_reads_them() {
    let mut out = Exposition::new();
    out.gauge(&TEMPERATURE, &[], f64::NAN);
    let text = out.render();
    assert!(text.ends_with("test_temperature_celsius NaN\n"), "{text}");
    assert!(parse(&text).unwrap().samples[0].value.is_nan());

    let mut out = Exposition::new();
    out.counter(&REQUESTS, &["/", "200"], u64::MAX);
    out.counter(&REQUESTS, &["/", "500"], 0);
    let text = out.render();
    assert!(
        text.contains(&format!("}} {}\n", u64::MAX)),
        "exact digits: {text}"
    );
    parse(&text).unwrap();

    let mut out = Exposition::new();
    out.gauge(&TEMPERATURE, &[], f64::INFINITY);
    assert!(out.render().ends_with(" +Inf\n"));
}

#[test]
fn a_sample_that_does_not_fit_its_family_is_left_out_without_panicking() {
    let mut out = Exposition::new();
    out.counter(&REQUESTS, &["only one label"], 1);
    out.gauge(&REQUESTS, &["/", "200"], 1.0);
    out.counter(&REQUESTS, &["/", "200"], 7);
    let text = out.render();
    assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert!(text.contains(r#"test_requests_total{path="/",code="200"} 7"#));
}

#[test]
fn the_parser_refuses_malformed_expositions() {
    let bad = [
        // A family split in two places.
        "# TYPE a_total counter\na_total 1\n# TYPE b gauge\nb 1\na_total{x=\"1\"} 2\n",
        // TYPE twice.
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",
        // The same series twice.
        "a{x=\"1\"} 1\na{x=\"1\"} 2\n",
        // An unknown escape in a label value.
        "a{x=\"\\t\"} 1\n",
        // An unquoted label value.
        "a{x=1} 1\n",
        // A counter not ending in _total.
        "# TYPE a counter\na 1\n",
        // Not a number.
        "a one\n",
        // A bad metric name.
        "1a 1\n",
    ];
    for text in bad {
        assert!(parse(text).is_err(), "accepted: {text:?}");
    }
}

#[test]
fn every_helios_family_has_a_valid_name_unit_and_labels() {
    let mut seen = std::collections::BTreeSet::new();
    for f in ALL {
        assert!(seen.insert(f.name), "{} listed twice", f.name);
        assert!(valid_metric_name(f.name), "{}", f.name);
        assert!(f.name.starts_with("helios_"), "{}", f.name);
        assert_eq!(
            f.kind == Kind::Counter,
            f.name.ends_with("_total"),
            "{}: counters and only counters end in _total",
            f.name
        );
        assert!(
            !f.name.contains("_ms") && !f.name.contains("_us") && !f.name.contains("_millis"),
            "{}: base units (seconds)",
            f.name
        );
        assert!(!f.help.is_empty(), "{}", f.name);
        for l in f.labels {
            assert!(valid_label_name(l), "{}: label {l}", f.name);
            assert!(*l != "le" && *l != "quantile", "{}: reserved label", f.name);
        }
    }
    assert_eq!(
        names::family("helios_sink_batch_latency_seconds_bucket"),
        Some(&names::SINK_BATCH_LATENCY)
    );
    assert_eq!(
        names::family("helios_pipeline_batch_latency_seconds_count"),
        Some(&names::PIPELINE_BATCH_LATENCY)
    );
    assert_eq!(
        names::family("helios_pipeline_batch_latency_seconds_bucket"),
        None
    );
    assert_eq!(names::family("helios_no_such_thing"), None);
}

/// docs/METRICS.md is what runbooks cite: it has a row for every family (name, type,
/// labels) and names no family that does not exist.
#[test]
fn metrics_doc_lists_exactly_the_families_in_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/METRICS.md");
    let doc = std::fs::read_to_string(path).expect("docs/METRICS.md");
    let mut rows = std::collections::BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `helios_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`');
        rows.insert(name.to_owned(), (cells[2].to_owned(), cells[3].to_owned()));
    }
    for f in ALL {
        let Some((kind, labels)) = rows.get(f.name) else {
            panic!("docs/METRICS.md has no row for {}", f.name);
        };
        assert_eq!(kind, f.kind.as_str(), "type of {}", f.name);
        let documented: Vec<&str> = labels
            .split(',')
            .map(|l| l.trim().trim_matches('`'))
            .filter(|l| !l.is_empty() && *l != "—")
            .collect();
        assert_eq!(documented, f.labels, "labels of {}", f.name);
    }
    for name in rows.keys() {
        assert!(
            names::family(name).is_some(),
            "docs/METRICS.md names {name}, which no code exposes"
        );
    }
    // Mentions in prose count too: every `helios_...` word must be a family or a sample.
    for word in doc.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("helios_") && word.len() > "helios_".len() {
            assert!(
                names::family(word).is_some(),
                "docs/METRICS.md mentions {word}, which no code exposes"
            );
        }
    }
}

#[derive(Debug, Default)]
struct Refreshing {
    refreshed: AtomicU64,
}

impl Collect for Refreshing {
    fn collect(&self, out: &mut Exposition) {
        out.counter(
            &REQUESTS,
            &["/refreshed", "200"],
            self.refreshed.load(Ordering::Relaxed),
        );
    }

    fn refresh(&self) -> RefreshFuture<'_> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.refreshed.fetch_add(1, Ordering::Relaxed);
        })
    }
}

#[derive(Debug)]
struct Fixed(u64);

impl Collect for Fixed {
    fn collect(&self, out: &mut Exposition) {
        out.counter(&REQUESTS, &["/fixed", "200"], self.0);
        out.gauge(&TEMPERATURE, &[], 21.5);
    }
}

#[tokio::test]
async fn get_metrics_serves_every_collector_refreshed_as_prometheus_text() {
    let registry = MetricsRegistry::new();
    registry.register(Arc::new(Refreshing::default()));
    registry.register(Arc::new(Fixed(41)));
    let app = router(registry.clone());
    for expected in [1.0, 2.0] {
        let resp = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let scrape = parse(std::str::from_utf8(&body).unwrap()).unwrap();
        assert_eq!(
            scrape.sum("test_requests_total", &[("path", "/refreshed")]),
            expected,
            "refreshed before every scrape"
        );
        assert_eq!(
            scrape.sum("test_requests_total", &[("path", "/fixed")]),
            41.0
        );
        assert_eq!(scrape.sum("test_temperature_celsius", &[]), 21.5);
    }
}
