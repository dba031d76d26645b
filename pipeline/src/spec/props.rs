//! Property tests of the spec parser: arbitrary TOML-ish text, generated sections and
//! mutations of a valid spec never panic, and every problem is reported at a line and
//! column that exist in the text.

use proptest::prelude::*;

use super::{Diagnostics, parse};

// The shared property runner times each input to catch hangs: a test harness, not an
// operator, so it may read the clock (pipeline/clippy.toml).
#[allow(clippy::disallowed_methods)]
#[path = "../../../schemas/tests/it/props.rs"]
mod support;

use support::{check, mutate_text, mutations};

/// A spec using every section, as `helios init` users write them.
const VALID: &str = r#"
[watermark]
max_out_of_orderness = "10s"
idle_timeout = "30s"

[retention]
events = "30d"
aggregates = "365d"

[[aggregate]]
name = "ci_runs_per_hour"
where = "kind = 'ci.run'"
window = { type = "tumbling", size = "1h" }
group_by = ["subject", "attrs['conclusion'] AS conclusion"]
measures = { runs = "count(*)", p95_secs = "quantile(value, 0.95)", authors = "count_distinct(attrs['author'])" }
allowed_lateness = "5m"

[aggregate.insights]
anomaly = { method = "mad", threshold = 4, history = 20 }
trend = { window = "1d", min_change = 0.3 }
streak = { days = 3 }
measures.p95_secs = { anomaly = { min_history = 20 }, trend = false }

[[aggregate]]
name = "pushes"
window = { type = "hopping", size = "10m", slide = "1m" }
group_by = ["subject"]
measures = { commits = "sum(value)" }
emit_every = "1m"

[[aggregate]]
name = "sessions"
window = { type = "session", gap = "15m" }
group_by = ["subject"]
measures = { n = "count(*)" }

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

[[rule]]
name = "quiet"
type = "absence"
where = "kind = 'heartbeat'"
per = ["subject"]
within = "5m"

[[webhook]]
name = "ops"
url = "https://hooks.example.com/x"
format = "slack"

[[source]]
name = "web"
type = "http"
"#;

fn check_source(s: &toml::Table) -> Result<(), (String, Option<String>)> {
    match s.get("type").and_then(toml::Value::as_str) {
        Some("http" | "host") => Ok(()),
        other => Err((format!("unknown source type {other:?}"), None)),
    }
}

/// Every diagnostic points into the text: 1-based, at most one past the end of a line.
fn located(text: &str, d: &Diagnostics) -> Result<(), TestCaseError> {
    prop_assert!(!d.is_empty());
    let lines: Vec<&str> = text.split('\n').collect();
    for item in &d.items {
        prop_assert!(item.line >= 1 && item.column >= 1, "{:?}", item);
        prop_assert!(item.line <= lines.len(), "line past the end: {:?}", item);
        let width = lines[item.line - 1].chars().count();
        prop_assert!(item.column <= width + 1, "column past the line: {:?}", item);
        prop_assert!(!item.message.is_empty());
    }
    // The rendering a user sees names the position.
    let shown = d.to_string();
    let first = &d.items[0];
    let position = format!(":{}:{}:", first.line, first.column);
    prop_assert!(shown.contains(&position));
    Ok(())
}

fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    if let Err(d) = parse::<toml::Table>(text, "helios.toml", check_source) {
        located(text, &d)?;
    }
    Ok(())
}

/// Pieces of spec syntax, good and bad, to assemble into TOML-ish text.
fn token() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(
        &[
            "name",
            "where",
            "window",
            "type",
            "size",
            "slide",
            "gap",
            "group_by",
            "measures",
            "allowed_lateness",
            "emit_every",
            "count",
            "within",
            "severity",
            "per",
            "first",
            "then",
            "url",
            "format",
            "events",
            "max_out_of_orderness",
            "idle_timeout",
            "insights",
            "anomaly",
            "threshold",
            "min_history",
            "method",
            "history",
            "streak",
            "days",
            "min_change",
            "x",
        ][..],
    );
    let value = prop_oneof![
        "\"[0-9]{1,4}(s|m|h|d|ms|w|y|)\"",
        "\"(kind|value|attrs\\['a'\\]|subject) ?(=|<|LIKE|IN|>=) ?('x'|1|\\(1,2\\)|NULL)\"",
        "\"(count\\(\\*\\)|sum\\(value\\)|quantile\\(value, ?0\\.[0-9]\\)|avg\\(x\\)|max\\()\"",
        "\"\\PC{0,10}\"",
        "'\\PC{0,10}'",
        "-?[0-9]{1,20}",
        "(true|false|nan|inf|1e400|0x1F|1979-05-27T07:32:00Z)",
        "\\[(\"[a-z]{0,4}\", ?){0,3}\\]",
        "\\{ ?(type|size|gap|slide) ?= ?\"[a-z0-9]{0,6}\" ?\\}",
        "\"\"\"\\PC{0,12}\"\"\"",
    ];
    prop_oneof![
        3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}\n")),
        1 => proptest::sample::select(
            &[
                "[watermark]\n", "[retention]\n", "[[aggregate]]\n", "[[rule]]\n",
                "[[source]]\n", "[[webhook]]\n", "[[watermark]]\n", "[unknown]\n",
                "[aggregate.insights]\n", "[aggregate.insights.measures.runs]\n",
                "[aggregate]\n", "\n", "# comment\n", "[a.b]\n",
            ][..],
        )
        .prop_map(String::from),
        1 => "\\PC{0,12}\n?",
    ]
}

#[test]
fn arbitrary_and_generated_text_is_reported_with_positions() {
    check(
        "spec_parser.generated_text",
        prop_oneof![
            1 => "\\PC{0,200}",
            1 => proptest::collection::vec(any::<u8>(), 0..200)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            4 => proptest::collection::vec(token(), 0..24).prop_map(|t| t.concat()),
        ],
        |text| parse_checked(&text),
    );
}

#[test]
fn mutated_valid_specs_never_panic_and_errors_have_positions() {
    assert!(
        parse::<toml::Table>(VALID, "helios.toml", check_source).is_ok(),
        "the base spec is valid"
    );
    check(
        "spec_parser.mutated_valid",
        (
            mutations(6),
            proptest::collection::vec(token(), 0..3),
            any::<usize>(),
        ),
        |(edits, extra, at)| {
            let mut text = mutate_text(VALID, &edits);
            // Sometimes splice generated lines in at a line start.
            if !extra.is_empty() {
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect();
                let pos = starts[at % starts.len()];
                text.insert_str(pos, &extra.concat());
            }
            parse_checked(&text)
        },
    );
}
