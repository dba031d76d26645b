//! Spec parsing: a good spec, and every kind of mistake reported with its position.

use serde::Deserialize;

use super::{RuleKind, Severity, Window, parse};
use crate::expr::AggregateFn;

/// A stand-in for the connectors' source type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

fn check_source(s: &Source) -> Result<(), (String, Option<String>)> {
    if s.kind == "http" || s.kind == "host" {
        Ok(())
    } else {
        Err((format!("unknown source type `{}`", s.kind), None))
    }
}

const GOOD: &str = r#"
[watermark]
max_out_of_orderness = "10s"
idle_timeout = "30s"

[[aggregate]]
name = "ci_runs_per_hour"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1h" }
group_by = ["subject", "attrs['conclusion'] AS conclusion"]
measures = { runs = "count(*)", p95_secs = "quantile(value, 0.95)", authors = "count_distinct(attrs['author'])" }
allowed_lateness = "5m"

[[aggregate]]
name = "pushes"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["subject"]
measures = { commits = "sum(value)" }
emit_every = "1m"

[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "1h"
severity = "critical"

[[rule]]
name = "deploy_after_push"
type = "sequence"
first = "kind = 'git.push'"
then = "kind LIKE 'deploy.%'"
per = ["subject"]
within = "30m"

[[source]]
name = "web"
type = "http"
"#;

#[test]
fn good_spec_parses() {
    let spec = parse::<Source>(GOOD, "helios.toml", check_source).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(spec.watermark.max_out_of_orderness.as_secs(), 10);
    assert_eq!(spec.aggregates.len(), 2);
    let a = &spec.aggregates[0];
    assert_eq!(a.name, "ci_runs_per_hour");
    assert_eq!(
        a.window,
        Window::Tumbling {
            size: std::time::Duration::from_secs(3600)
        }
    );
    assert_eq!(
        a.group_by
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        ["subject", "conclusion"]
    );
    let fns: Vec<_> = a
        .measures
        .iter()
        .map(|m| (m.name.as_str(), m.function))
        .collect();
    assert_eq!(
        fns,
        [
            ("authors", AggregateFn::CountDistinct),
            ("p95_secs", AggregateFn::Quantile(0.95)),
            ("runs", AggregateFn::Count)
        ]
    );
    assert_eq!(a.allowed_lateness.as_secs(), 300);
    assert_eq!(spec.aggregates[1].emit_every.map(|d| d.as_secs()), Some(60));
    assert!(matches!(
        spec.rules[0].kind,
        RuleKind::Threshold { count: 3, .. }
    ));
    assert_eq!(spec.rules[0].severity, Severity::Critical);
    assert!(matches!(spec.rules[1].kind, RuleKind::Sequence { .. }));
    assert_eq!(spec.sources.len(), 1);
    assert_eq!(
        (spec.sources[0].line, spec.sources[0].value.name.as_str()),
        (38, "web")
    );
}

/// A spec with one mistake of each kind; every one is reported, in file order, with line,
/// column and the offending text.
const BROKEN: &str = r#"[watermark]
max_out_of_orderness = "ten seconds"

[[aggregate]]
name = "runs"
where = "kind = 'ci.run' AND valu > 3"
window = { type = "tumbling", size = "1h" }
measures = { runs = "median(value)" }

[[aggregate]]
name = "runs"
window = { type = "sliding", size = "1h" }
measures = { n = "count(*)" }

[[aggregate]]
name = "hops"
window = { type = "hopping", size = "10m", slide = "3m" }
measures = { n = "count(*)" }

[[aggregate]]
name = "extra"
window = { type = "session", gap = "5m" }
measures = { n = "count(*)" }
colour = "blue"

[[rule]]
name = "failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 1"
count = 0
within = "1h"

[[rule]]
name = "quiet"
type = "absense"
where = "kind = 'host.cpu'"
within = "10m"

[[rule]]
name = "Bad-Name"
type = "absence"
where = "kind = 'x'"
within = "10m"
severity = "urgent"

[[source]]
name = "mystery"
type = "ftp"

[pipelines]
x = 1
"#;

#[test]
fn every_mistake_is_reported_with_its_position() {
    let d = parse::<Source>(BROKEN, "broken.toml", check_source).expect_err("broken spec");
    let got: Vec<(usize, usize, &str, &str)> = d
        .items
        .iter()
        .map(|i| (i.line, i.column, i.message.as_str(), i.snippet.as_str()))
        .collect();
    let want: &[(usize, usize, &str, &str)] = &[
        (
            2,
            24,
            "bad duration for max_out_of_orderness",
            "\"ten seconds\"",
        ),
        (6, 30, "unknown column `valu`", "valu > 3"),
        (
            8,
            22,
            "unknown aggregate function `median`",
            "median(value)",
        ),
        (11, 8, "duplicate name `runs`", "\"runs\""),
        (12, 19, "unknown window type `sliding`", "\"sliding\""),
        (17, 52, "slide must divide its size", "\"3m\""),
        (24, 1, "unknown field `colour`", "colour"),
        (
            29,
            30,
            "cannot compare text with bigint",
            "attrs['conclusion'] = 1",
        ),
        (30, 9, "count must be at least 1", "0"),
        (35, 8, "unknown rule type `absense`", "\"absense\""),
        (40, 8, "bad rule name `Bad-Name`", "\"Bad-Name\""),
        (44, 12, "unknown severity `urgent`", "\"urgent\""),
        (46, 1, "unknown source type `ftp`", "[[source]]"),
        (50, 2, "unknown section `pipelines`", "pipelines"),
    ];
    for (i, w) in want.iter().enumerate() {
        let g = got
            .get(i)
            .unwrap_or_else(|| panic!("missing diagnostic {w:?}; got:\n{d}"));
        assert_eq!((g.0, g.1), (w.0, w.1), "position of {:?}\n{d}", w.2);
        assert!(g.2.contains(w.2), "{:?} should contain {:?}\n{d}", g.2, w.2);
        assert!(
            g.3.starts_with(w.3),
            "snippet {:?} should start with {:?}",
            g.3,
            w.3
        );
    }
    assert_eq!(got.len(), want.len(), "\n{d}");
    // The report names the file and carries hints.
    let text = d.to_string();
    assert!(text.starts_with("broken.toml:2:24: bad duration"), "{text}");
    assert!(text.contains("hint: write a duration like 30s"), "{text}");
}

#[test]
fn toml_syntax_errors_stop_early_with_a_position() {
    let d = parse::<Source>("[[aggregate]\nname = \"x\"\n", "s.toml", check_source).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert_eq!(d.items[0].line, 1);
    assert!(d.items[0].message.starts_with("TOML syntax"), "{d}");
}

#[test]
fn missing_pieces_are_named() {
    let spec = r#"
[[aggregate]]
name = "a"
window = { type = "hopping", size = "10m" }
measures = {}

[[rule]]
name = "r"
type = "sequence"
first = "kind = 'a'"
"#;
    let d = parse::<Source>(spec, "s.toml", check_source).unwrap_err();
    let text = d.to_string();
    for needle in [
        "needs `slide`",
        "at least one measure",
        "needs `within`",
        "needs `then`",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn retention_and_webhooks_parse_and_their_mistakes_are_placed() {
    let good = r#"
[retention]
events = "30d"
aggregates = "365d"

[[webhook]]
name = "team"
url = "https://hooks.slack.com/services/x"
format = "slack"

[[webhook]]
name = "pager"
url = "http://127.0.0.1:9000/hook"
"#;
    let spec = parse::<Source>(good, "s.toml", check_source).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        spec.retention.events,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        spec.retention.aggregates,
        Some(std::time::Duration::from_secs(365 * 86_400))
    );
    assert_eq!(spec.retention.alerts, None);
    let hooks: Vec<_> = spec
        .webhooks
        .iter()
        .map(|w| (w.name.as_str(), w.format))
        .collect();
    assert_eq!(
        hooks,
        [
            ("team", super::WebhookFormat::Slack),
            ("pager", super::WebhookFormat::Generic)
        ]
    );

    let bad = r#"[retention]
events = "forever"
alerts = "0s"

[[webhook]]
name = "a"
url = "ftp://x"
format = "teams"

[[webhook]]
name = "a"
url = "http://x"
"#;
    let d = parse::<Source>(bad, "s.toml", check_source).unwrap_err();
    let got: Vec<(usize, usize)> = d.items.iter().map(|i| (i.line, i.column)).collect();
    assert_eq!(got, [(2, 10), (3, 10), (7, 7), (8, 10), (11, 8)], "{d}");
    let text = d.to_string();
    for needle in [
        "bad duration for retention of events",
        "retention of alerts must be longer than zero",
        "not an http(s) URL",
        "unknown webhook format `teams`",
        "used twice",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn dedupe_defaults_cover_the_longest_window_and_its_mistakes_are_placed() {
    let none = parse::<Source>("", "s.toml", check_source).unwrap();
    assert_eq!(none.dedupe, super::Dedupe::default());
    assert_eq!(none.dedupe.horizon, std::time::Duration::from_secs(86_400));

    // A two-day window: the default horizon grows to cover it and its lateness.
    let long = r#"
[[aggregate]]
name = "per_2d"
window = { type = "tumbling", size = "2d" }
group_by = ["subject"]
measures = { n = "count(*)" }
allowed_lateness = "1h"
"#;
    let spec = parse::<Source>(long, "s.toml", check_source).unwrap();
    assert_eq!(
        spec.dedupe.horizon,
        std::time::Duration::from_secs(49 * 3600)
    );

    let off = format!("[dedupe]\nhorizon = \"0s\"\nmax_ids = 5\n{long}");
    let spec = parse::<Source>(&off, "s.toml", check_source).unwrap();
    assert!(!spec.dedupe.enabled());
    assert_eq!(spec.dedupe.max_ids, 5);

    let bad = format!("[dedupe]\nhorizon = \"1h\"\nmax_ids = 0\n{long}");
    let d = parse::<Source>(&bad, "s.toml", check_source).unwrap_err();
    let got: Vec<(usize, usize)> = d.items.iter().map(|i| (i.line, i.column)).collect();
    assert_eq!(got, [(2, 11), (3, 11)], "{d}");
    let text = d.to_string();
    for needle in [
        "dedupe horizon 1h is shorter than the longest window plus its allowed lateness (2days 1h)",
        "raise horizon to at least",
        "dedupe max_ids must be a positive number, not 0",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let unknown = parse::<Source>("[dedupe]\nwindow = \"1h\"\n", "s.toml", check_source)
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("unknown field `window`"), "{unknown}");
}

/// Problems of `text` as (line, column, message).
fn problems(text: &str) -> Vec<(usize, usize, String)> {
    match parse::<Source>(text, "s.toml", check_source) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .items
            .into_iter()
            .map(|i| (i.line, i.column, i.message))
            .collect(),
    }
}

#[test]
fn any_grouping_is_accepted_but_order_dependent_ones_only_with_the_subject() {
    let aggregate = |keys: &str, window: &str, extra: &str| {
        format!(
            "[[aggregate]]\nname = \"a\"\nwindow = {window}\n\
             group_by = {keys}\nmeasures = {{ n = \"count(*)\" }}\n{extra}"
        )
    };
    let tumbling = r#"{ type = "tumbling", size = "1m" }"#;
    let hopping = r#"{ type = "hopping", size = "10m", slide = "1m" }"#;
    let session = r#"{ type = "session", gap = "5m" }"#;
    // Any keys, or none (one global group), with tumbling and hopping windows: those not
    // keyed by subject run through a repartition topic (ADR-020).
    for keys in [
        r#"["subject"]"#,
        r#"["SUBJECT"]"#,
        r#"["subject AS project", "kind"]"#,
        r#"["kind"]"#,
        r#"["attrs['branch'] AS branch"]"#,
        r#"["lower(subject) AS project"]"#,
        "[]",
    ] {
        for window in [tumbling, hopping] {
            assert_eq!(
                problems(&aggregate(keys, window, "")),
                [],
                "{keys} {window}"
            );
        }
    }
    // Session windows and early results stay with the subject among the keys.
    assert_eq!(
        problems(&aggregate(r#"["subject", "kind"]"#, session, "")),
        []
    );
    let every = "emit_every = \"10s\"\n";
    assert_eq!(problems(&aggregate(r#"["subject"]"#, tumbling, every)), []);
    let got = problems(&aggregate(r#"["kind"]"#, session, ""));
    assert_eq!((got.len(), got[0].0, got[0].1), (1, 3, 10), "{got:?}");
    assert!(
        got[0].2.contains(
            "groups by `kind`, which does not include `subject`, and has a session window"
        ),
        "{got:?}"
    );
    let got = problems(&aggregate("[]", tumbling, every));
    assert_eq!((got.len(), got[0].0, got[0].1), (1, 6, 14), "{got:?}");
    assert!(
        got[0].2.contains("nothing (one global group)") && got[0].2.contains("emit_every"),
        "{got:?}"
    );
    // A rule may group by anything.
    let rule = "[[rule]]\nname = \"r\"\ntype = \"threshold\"\nwhere = \"kind = 'x'\"\nper = [\"kind\"]\ncount = 2\nwithin = \"1h\"\n";
    assert_eq!(problems(rule), []);
}

#[test]
fn names_the_store_cannot_take_are_reported() {
    let long = "a".repeat(65);
    let text = format!(
        "[[aggregate]]\nname = \"{long}\"\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
         group_by = [\"subject\"]\nmeasures = {{ n = \"count(*)\" }}\n\n\
         [[aggregate]]\nname = \"b\"\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
         group_by = [\"subject\", \"attrs['build-id']\", \"kind AS Kind\"]\n\
         measures = {{ count = \"count(*)\" }}\n"
    );
    let got = problems(&text);
    let at: Vec<(usize, usize)> = got.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(at, [(2, 8), (10, 24), (10, 45), (11, 22)], "{got:?}");
    assert!(got[0].2.contains("bad aggregate name"), "{got:?}");
    assert!(
        got[1].2.contains("key name `build-id` cannot be a column"),
        "{got:?}"
    );
    assert!(got[2].2.contains("key name `Kind`"), "{got:?}");
    assert!(got[3].2.contains("bad measure name `count`"), "{got:?}");
}

const TUNED: &str = r#"[[aggregate]]
name = "runs"
window = { type = "tumbling", size = "1h" }
group_by = ["subject"]
measures = { n = "count(*)", p95 = "quantile(value, 0.95)", total = "sum(value)" }

[aggregate.insights]
anomaly = { threshold = 4.5, min_history = 20 }
trend = { window = "1d", min_change = 0.25 }
streak = false
measures.p95 = false
measures.total = { anomaly = { threshold = 6 }, trend = false }

[[aggregate]]
name = "quiet"
window = { type = "tumbling", size = "1h" }
group_by = ["subject"]
measures = { n = "count(*)" }
insights = false
"#;

#[test]
fn insight_settings_are_read_per_aggregate_and_measure() {
    use crate::insights::{AnomalyConfig, InsightConfig, TrendConfig};
    let spec = parse::<Source>(TUNED, "s.toml", check_source).unwrap_or_else(|d| panic!("{d}"));
    let tuned = &spec.aggregates[0].insights;
    assert_eq!(
        tuned.measure("n").anomaly,
        Some(AnomalyConfig {
            threshold: 4.5,
            min_history: 20,
            ..AnomalyConfig::default()
        })
    );
    assert_eq!(
        tuned.measure("n").trend,
        Some(TrendConfig { min_change: 0.25 })
    );
    assert_eq!(tuned.trend_period_us, 86_400_000_000);
    assert_eq!(tuned.streak_days, None);
    assert_eq!(tuned.measure("p95").anomaly, None);
    assert_eq!(tuned.measure("p95").trend, None);
    // A measure's own settings sit on the aggregate's.
    assert_eq!(
        tuned.measure("total").anomaly,
        Some(AnomalyConfig {
            threshold: 6.0,
            min_history: 20,
            ..AnomalyConfig::default()
        })
    );
    assert_eq!(tuned.measure("total").trend, None);
    assert!(spec.aggregates[1].insights.is_off());
    // Nothing written: today's detectors, and the aggregate's fingerprint text does not
    // depend on the settings.
    let plain = TUNED.replace("\n[aggregate.insights]", "\n[aggregate.unused]");
    assert!(parse::<Source>(&plain, "s.toml", check_source).is_err());
    let untuned = parse::<Source>(
        &TUNED[..TUNED.find("\n[aggregate.insights]").unwrap()],
        "s.toml",
        check_source,
    )
    .unwrap();
    assert_eq!(untuned.aggregates[0].insights, InsightConfig::default());
    assert_eq!(
        format!("{:?}", untuned.aggregates[0]),
        format!("{:?}", spec.aggregates[0])
    );
}

#[test]
fn bad_insight_settings_are_reported_with_their_position() {
    let bad = r#"[[aggregate]]
name = "runs"
window = { type = "tumbling", size = "1h" }
group_by = ["subject"]
measures = { n = "count(*)" }

[aggregate.insights]
anomaly = { threshold = -1, min_history = 0 }
trend = { window = "10m", min_change = 0 }
streak = { days = 0 }
measures.nope = false
measures.n = { trend = { window = "7d" } }
"#;
    let got = problems(bad);
    let at: Vec<(usize, usize)> = got.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(
        at,
        [
            (8, 25),
            (8, 43),
            (9, 9),
            (9, 40),
            (10, 19),
            (11, 17),
            (12, 24)
        ],
        "{got:?}"
    );
    for (p, needle) in got.iter().zip([
        "anomaly threshold must be a positive number, not -1",
        "anomaly min_history must be at least 1, not 0",
        "the trend window 10m is shorter than the aggregate's window 1h",
        "trend min_change must be a positive number, not 0",
        "streak days must be from 1 to 3650, not 0",
        "insights for `nope`, which is not a measure of this aggregate",
        "the trend window is set per aggregate, not per measure",
    ]) {
        assert!(p.2.contains(needle), "{needle:?} not in {p:?}");
    }
    let typo = problems(
        "[[aggregate]]\nname = \"runs\"\nwindow = { type = \"tumbling\", size = \"1h\" }\n\
         group_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\ninsights = { anomaly = { zscore = 3 } }\n",
    );
    assert_eq!(typo.len(), 1, "{typo:?}");
    assert_eq!(typo[0].0, 6, "{typo:?}");
    assert!(typo[0].2.contains("unknown field `zscore`"), "{typo:?}");
    let mad = parse::<Source>(
        "[[aggregate]]\nname = \"runs\"\nwindow = { type = \"tumbling\", size = \"1h\" }\n\
         group_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\ninsights = { anomaly = { method = \"mad\", history = 50 } }\n",
        "s.toml",
        check_source,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let a = mad.aggregates[0].insights.measure("n").anomaly.unwrap();
    assert_eq!(
        (a.method, a.threshold, a.history),
        (crate::insights::AnomalyMethod::Mad, 3.5, 50)
    );
    let bad_mad = problems(
        "[[aggregate]]\nname = \"runs\"\nwindow = { type = \"tumbling\", size = \"1h\" }\n\
         group_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\ninsights = { anomaly = { method = \"median\", history = 2 } }\n",
    );
    let at: Vec<(usize, usize)> = bad_mad.iter().map(|p| (p.0, p.1)).collect();
    assert_eq!(at, [(6, 35), (6, 55)], "{bad_mad:?}");
    assert!(
        bad_mad[0].2.contains("unknown anomaly method `median`"),
        "{bad_mad:?}"
    );
    assert!(
        bad_mad[1]
            .2
            .contains("anomaly history must be from 3 to 1000, not 2"),
        "{bad_mad:?}"
    );
    let wrong = problems(
        "[[aggregate]]\nname = \"runs\"\nwindow = { type = \"tumbling\", size = \"1h\" }\n\
         group_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\ninsights = \"off\"\n",
    );
    assert_eq!((wrong[0].0, wrong[0].1), (6, 12), "{wrong:?}");
    assert!(
        wrong[0].2.contains("`true`, `false` or a table"),
        "{wrong:?}"
    );
}

#[test]
fn a_webhook_url_comes_from_the_spec_or_an_environment_variable_not_both() {
    use crate::spec::WebhookUrl;
    let ok = r#"
[[webhook]]
name = "slack"
url_env = "SLACK_WEBHOOK_URL"
format = "slack"
"#;
    let spec = parse::<Source>(ok, "helios.toml", check_source).unwrap();
    assert_eq!(
        spec.webhooks[0].url,
        WebhookUrl::Env("SLACK_WEBHOOK_URL".into())
    );
    // The path of an incoming-webhook URL is its secret: Debug shows scheme and host only.
    let literal = WebhookUrl::Literal("https://hooks.slack.com/services/T0/B0/secret".into());
    assert_eq!(format!("{literal:?}"), "Literal(https://hooks.slack.com/…)");

    let both = "[[webhook]]\nname = \"a\"\nurl = \"https://x/y\"\nurl_env = \"A\"\n";
    let d = parse::<Source>(both, "h.toml", check_source).unwrap_err();
    assert_eq!((d.items[0].line, d.items[0].column), (4, 11), "{d}");
    assert!(d.items[0].message.contains("not both"), "{d}");

    let neither = "[[webhook]]\nname = \"a\"\n";
    let d = parse::<Source>(neither, "h.toml", check_source).unwrap_err();
    assert_eq!((d.items[0].line, d.items[0].column), (2, 8), "{d}");
    assert!(d.items[0].message.contains("no `url` or `url_env`"), "{d}");
}

#[test]
fn operator_state_bounds_default_and_are_checked_where_written() {
    let text = |windows: &str, keys: &str| {
        format!(
            "[[aggregate]]\nname = \"a\"\nwindow = {{ type = \"tumbling\", size = \"1m\" }}\n\
             group_by = [\"subject\"]\nmeasures = {{ n = \"count(*)\" }}\n{windows}\n\n\
             [[rule]]\nname = \"r\"\ntype = \"threshold\"\nwhere = \"true\"\ncount = 2\n\
             within = \"1h\"\n{keys}\n"
        )
    };
    let spec = parse::<Source>(&text("", ""), "s.toml", check_source).unwrap();
    assert_eq!(
        spec.aggregates[0].max_open_windows,
        super::DEFAULT_MAX_STATE_KEYS
    );
    assert_eq!(spec.rules[0].max_keys, super::DEFAULT_MAX_STATE_KEYS);
    let spec = parse::<Source>(
        &text("max_open_windows = 10", "max_keys = 7"),
        "s.toml",
        check_source,
    )
    .unwrap();
    assert_eq!(spec.aggregates[0].max_open_windows, 10);
    assert_eq!(spec.rules[0].max_keys, 7);
    assert_eq!(
        (
            spec.aggregates[0].max_key_bytes,
            spec.rules[0].max_key_bytes
        ),
        (super::DEFAULT_MAX_KEY_BYTES, super::DEFAULT_MAX_KEY_BYTES)
    );
    let bytes = parse::<Source>(
        &text("max_key_bytes = 4096", "max_key_bytes = 64"),
        "s.toml",
        check_source,
    )
    .unwrap();
    assert_eq!(
        (
            bytes.aggregates[0].max_key_bytes,
            bytes.rules[0].max_key_bytes
        ),
        (4096, 64)
    );
    assert_eq!(
        format!("{:?}", bytes.aggregates[0]),
        format!("{:?}", spec.aggregates[0])
    );
    // A bound is not part of the state's fingerprint: raising one keeps the state.
    let before = parse::<Source>(&text("", ""), "s.toml", check_source).unwrap();
    assert_eq!(
        format!("{:?}", before.aggregates[0]),
        format!("{:?}", spec.aggregates[0])
    );
    assert_eq!(
        format!("{:?}", before.rules[0]),
        format!("{:?}", spec.rules[0])
    );

    let got = problems(&text("max_open_windows = 0", "max_keys = -3"));
    let got: Vec<(usize, usize, &str)> = got.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, 20, "max_open_windows must be a positive number, not 0"),
            (14, 12, "max_keys must be a positive number, not -3"),
        ]
    );
    let got = problems(&text("max_key_bytes = 0", "max_key_bytes = -1"));
    let got: Vec<(usize, usize, &str)> = got.iter().map(|(l, c, m)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        got,
        [
            (6, 17, "max_key_bytes must be a positive number, not 0"),
            (14, 17, "max_key_bytes must be a positive number, not -1"),
        ]
    );
}
