//! Loading `helios.toml`: the one check of a spec ([`check`]) that `helios validate`,
//! `helios up` and every `helios run` role share: the pipeline crate checks the whole file
//! (aggregates, rules, windows, dedupe, insights, names the store takes, the grouping
//! rule of ADR-006), with the connectors' own checks for each `[[source]]` table and the
//! checks the sources' start makes across them (unique names, one `http` source, GitHub
//! bodies within the unverified-body budget). So whatever `helios up` would refuse in a
//! spec, `helios validate` reports with its line and column first.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use helios_connectors::spec::{SourceSpec, SourcesSpec};
use helios_pipeline::spec::{Aggregate, Dedupe, Diagnostics, Rule, Spec, Watermark};

/// Settings given on the command line that a spec must fit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// `--unverified-body-budget` of a role that runs the sources; `None` for roles that
    /// run none (their spec's sources are not started there).
    pub unverified_body_budget: Option<usize>,
}

/// Checks a spec's text (`file` names it in the report): every problem `helios up` would
/// refuse it for, each with its line and column.
pub fn check(text: &str, file: &str, limits: Limits) -> Result<Spec<SourceSpec>, Diagnostics> {
    let names = RefCell::new(HashSet::new());
    let http_sources = Cell::new(0usize);
    helios_pipeline::spec::parse::<SourceSpec>(text, file, |source| {
        source.validate().map_err(|e| (e.to_string(), None))?;
        let name = source.name();
        if !names.borrow_mut().insert(name.to_string()) {
            return Err((
                format!("a source named `{name}` already exists; source names must be unique"),
                Some("give each [[source]] its own `name`".into()),
            ));
        }
        if let SourceSpec::Http(_) = source {
            http_sources.set(http_sources.get() + 1);
            if http_sources.get() > 1 {
                return Err((
                    format!(
                        "source `{name}`: only one `http` source can exist: it owns the route POST /v1/events"
                    ),
                    Some("remove the second [[source]] of type \"http\"".into()),
                ));
            }
        }
        if let (SourceSpec::Github(c), Some(budget)) = (source, limits.unverified_body_budget)
            && c.max_body_bytes > budget
        {
            return Err((
                format!(
                    "source `{name}`: max_body_bytes ({}) is larger than the budget of unverified webhook bodies ({budget} bytes), so a delivery that large could never be read",
                    c.max_body_bytes
                ),
                Some("lower max_body_bytes, or raise --unverified-body-budget (HELIOS_UNVERIFIED_BODY_BUDGET)".into()),
            ));
        }
        Ok(())
    })
}

/// Reads and checks a spec file ([`check`]). `Err(Ok(diagnostics))` lists every problem;
/// `Err(Err(_))` means the file could not be read.
pub fn load(
    path: &Path,
    limits: Limits,
) -> Result<Spec<SourceSpec>, Result<Diagnostics, anyhow::Error>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the spec {}", path.display()))
        .map_err(Err)?;
    check(&text, &path.display().to_string(), limits).map_err(Ok)
}

/// What the store keeps, from the spec: one table per `[[aggregate]]` (its group-key and
/// measure names, and its window for the rows of `late_events`) and the `[retention]`
/// settings. The sinks and `helios migrate` both take it from here, so the store always
/// matches the spec the pipeline runs. (The embedded store adds its defaults for tables
/// the spec leaves out: `stages::sinks`, ADR-016.)
pub fn store_spec<S>(spec: &Spec<S>) -> helios_sinks::StoreSpec {
    let r = &spec.retention;
    helios_sinks::StoreSpec {
        aggregates: spec
            .aggregates
            .iter()
            .map(|a| helios_sinks::AggregateSpec {
                name: a.name.clone(),
                group_by: a.group_by.iter().map(|k| k.name.clone()).collect(),
                measures: a.measures.iter().map(|m| m.name.clone()).collect(),
                window: Some(window_spec(&a.window)),
            })
            .collect(),
        retention: helios_sinks::Retention {
            events: r.events,
            aggregates: r.aggregates,
            alerts: r.alerts,
            insights: r.insights,
            dead_letters: r.dead_letters,
        },
    }
}

fn window_spec(w: &helios_pipeline::spec::Window) -> helios_sinks::WindowSpec {
    use helios_pipeline::spec::Window;
    use helios_sinks::WindowSpec;
    let us = |d: &std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    match w {
        Window::Tumbling { size } => WindowSpec::Tumbling { size_us: us(size) },
        Window::Hopping { size, slide } => WindowSpec::Hopping {
            size_us: us(size),
            slide_us: us(slide),
        },
        Window::Session { gap } => WindowSpec::Session { gap_us: us(gap) },
    }
}

/// The spec's `[[webhook]]` receivers, as the notifier takes them, with each `url_env`
/// and `authorization_env` read from the environment now: a variable that is unset,
/// empty or (for a URL) not an http(s) URL stops the start with the webhook and the
/// variable named (never the value).
pub fn webhooks<S>(spec: &Spec<S>) -> anyhow::Result<Vec<helios_sinks::notify::WebhookConfig>> {
    use helios_pipeline::spec::{WebhookFormat, WebhookUrl, is_http_url};
    use helios_sinks::notify::{BodyFormat, WebhookConfig};
    spec.webhooks
        .iter()
        .map(|w| {
            let url = match &w.url {
                WebhookUrl::Literal(url) => url.clone(),
                WebhookUrl::Env(var) => match std::env::var(var) {
                    Ok(url) if is_http_url(url.trim()) => url.trim().to_string(),
                    Ok(url) if url.trim().is_empty() => anyhow::bail!(
                        "webhook `{}`: the variable {var} (its url_env) is empty; set it to the receiver's https:// URL",
                        w.name
                    ),
                    Ok(_) => anyhow::bail!(
                        "webhook `{}`: the variable {var} (its url_env) does not hold an http(s) URL; set it to the receiver's https:// URL",
                        w.name
                    ),
                    Err(_) => anyhow::bail!(
                        "webhook `{}`: the variable {var} (its url_env) is not set; export it with the receiver's https:// URL before starting",
                        w.name
                    ),
                },
            };
            let authorization = match &w.authorization_env {
                None => None,
                Some(var) => match std::env::var(var) {
                    Ok(value) if !value.trim().is_empty() => Some(value.trim().to_owned()),
                    Ok(_) => anyhow::bail!(
                        "webhook `{}`: the variable {var} (its authorization_env) is empty; set it to the Authorization header the receiver wants, such as `Bearer <token>`",
                        w.name
                    ),
                    Err(_) => anyhow::bail!(
                        "webhook `{}`: the variable {var} (its authorization_env) is not set; export it with the Authorization header the receiver wants before starting",
                        w.name
                    ),
                },
            };
            Ok(WebhookConfig {
                name: w.name.clone(),
                url,
                format: match w.format {
                    WebhookFormat::Generic => BodyFormat::Generic,
                    WebhookFormat::Slack => BodyFormat::Slack,
                },
                authorization,
            })
        })
        .collect()
}

/// Loads the spec, turning a list of problems into one error with the full report.
pub fn load_or_report(path: &Path, limits: Limits) -> anyhow::Result<Spec<SourceSpec>> {
    match load(path, limits) {
        Ok(spec) => Ok(spec),
        Err(Ok(diagnostics)) => anyhow::bail!(
            "the spec has {} problem(s):\n{diagnostics}",
            diagnostics.len()
        ),
        Err(Err(e)) => Err(e),
    }
}

/// The spec's sources, the store's tables, the alert webhooks, and what the processor
/// runs.
pub type LoadedSpec = (
    SourcesSpec,
    helios_sinks::StoreSpec,
    Vec<helios_sinks::notify::WebhookConfig>,
    ProcessorSpec,
);

/// The spec's part the processor runs.
#[derive(Debug, Default)]
pub struct ProcessorSpec {
    pub watermark: Watermark,
    pub dedupe: Dedupe,
    pub aggregates: Vec<Aggregate>,
    pub rules: Vec<Rule>,
}

/// Loads and validates the spec; refuses to start on any problem, with the same report
/// as `helios validate`. Returns the sources, the store's tables and the webhooks.
pub fn load_spec(path: &Path, limits: Limits) -> anyhow::Result<LoadedSpec> {
    let mut spec = load_or_report(path, limits)?;
    let store = store_spec(&spec);
    let webhooks = webhooks(&spec)?;
    let aggregates = std::mem::take(&mut spec.aggregates);
    let rules = std::mem::take(&mut spec.rules);
    Ok((
        SourcesSpec {
            sources: spec.sources.into_iter().map(|s| s.value).collect(),
        },
        store,
        webhooks,
        ProcessorSpec {
            watermark: spec.watermark,
            dedupe: spec.dedupe,
            aggregates,
            rules,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad `max_future` is a spec problem like any other: file, line, column, message.
    #[test]
    fn a_bad_max_future_is_reported_with_its_position() {
        let text = "[watermark]\nidle_timeout = \"1h\"\n\n[[source]]\ntype = \"http\"\nmax_future = \"soon\"\n";
        let report = helios_pipeline::spec::parse::<SourceSpec>(text, "t.toml", |s| {
            s.validate().map_err(|e| (e.to_string(), None))
        })
        .unwrap_err()
        .to_string();
        let (position, message) = report.split_once(": ").unwrap();
        let parts: Vec<&str> = position.split(':').collect();
        assert_eq!(parts[0], "t.toml", "{report}");
        let line: usize = parts[1].parse().unwrap();
        assert!((4..=6).contains(&line), "{report}");
        assert!(parts[2].parse::<usize>().is_ok(), "{report}");
        assert!(
            message.contains("`soon` is not a duration like `10s`"),
            "{report}"
        );
        let ok = "[[source]]\ntype = \"http\"\nmax_future = \"1h\"\n";
        let spec = helios_pipeline::spec::parse::<SourceSpec>(ok, "t.toml", |_| Ok(()))
            .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(
            spec.sources[0].value.max_future(),
            Some(std::time::Duration::from_secs(3600))
        );
    }

    #[test]
    fn the_store_spec_follows_the_pipeline_spec() {
        let text = r#"
[retention]
events = "7d"

[[aggregate]]
name = "ci_runs"
window = { type = "tumbling", size = "1h" }
group_by = ["subject", "attrs['conclusion'] AS conclusion"]
measures = { runs = "count(*)", p95 = "quantile(value, 0.95)" }

[[webhook]]
name = "team"
url = "http://127.0.0.1:9/hook"
format = "slack"
"#;
        let spec = helios_pipeline::spec::parse::<SourceSpec>(text, "t.toml", |_| Ok(()))
            .unwrap_or_else(|d| panic!("{d}"));
        let store = store_spec(&spec);
        assert_eq!(
            store.aggregates,
            vec![
                helios_sinks::AggregateSpec::new(
                    "ci_runs",
                    &["subject", "conclusion"],
                    &["p95", "runs"]
                )
                .with_window(helios_sinks::WindowSpec::Tumbling {
                    size_us: 3_600_000_000
                })
            ]
        );
        assert_eq!(
            store.retention.events,
            Some(std::time::Duration::from_secs(7 * 86_400))
        );
        // What the spec leaves out is left to the store: ClickHouse keeps it, the
        // embedded store applies its default (stages::sinks::embedded_store_spec).
        assert_eq!(store.retention.aggregates, None);
        store.validate().unwrap();
        let hooks = webhooks(&spec).unwrap();
        assert_eq!(hooks.len(), 1);
        assert_eq!(hooks[0].format, helios_sinks::notify::BodyFormat::Slack);
    }

    #[test]
    fn a_url_env_that_is_unset_or_not_a_url_stops_the_start_naming_the_variable() {
        let spec_with = |var: &str| {
            let text = format!("[[webhook]]\nname = \"slack\"\nurl_env = \"{var}\"\n");
            helios_pipeline::spec::parse::<toml::Value>(&text, "h.toml", |_| Ok(())).unwrap()
        };
        let unset = webhooks(&spec_with("HELIOS_TEST_VARIABLE_NOBODY_SETS")).unwrap_err();
        assert!(
            unset.to_string().contains(
                "webhook `slack`: the variable HELIOS_TEST_VARIABLE_NOBODY_SETS (its url_env) is not set"
            ),
            "{unset}"
        );
        // PATH is set everywhere and is no URL; its value is not repeated.
        let not_url = webhooks(&spec_with("PATH")).unwrap_err().to_string();
        assert!(
            not_url.contains("does not hold an http(s) URL"),
            "{not_url}"
        );
        assert!(!not_url.contains("/usr"), "{not_url}");
    }

    #[test]
    fn an_authorization_env_is_read_at_start_and_an_unset_one_is_named() {
        let spec_with = |var: &str| {
            let text = format!(
                "[[webhook]]\nname = \"ops\"\nurl = \"https://ops.example/hook\"\n\
                 authorization_env = \"{var}\"\n"
            );
            helios_pipeline::spec::parse::<toml::Value>(&text, "h.toml", |_| Ok(())).unwrap()
        };
        let unset = webhooks(&spec_with("HELIOS_TEST_VARIABLE_NOBODY_SETS"))
            .unwrap_err()
            .to_string();
        assert!(
            unset.contains(
                "webhook `ops`: the variable HELIOS_TEST_VARIABLE_NOBODY_SETS (its authorization_env) is not set"
            ),
            "{unset}"
        );
        // HOME is set everywhere: its value becomes the header, and Debug hides it.
        let hooks = webhooks(&spec_with("HOME")).unwrap();
        let home = std::env::var("HOME").unwrap();
        assert_eq!(hooks[0].authorization.as_deref(), Some(home.trim()));
        assert!(!format!("{:?}", hooks[0]).contains(home.trim()));
        let bad = "[[webhook]]\nname = \"ops\"\nurl = \"https://ops.example/hook\"\nauthorization_env = \"A=B\"\n";
        let d = helios_pipeline::spec::parse::<toml::Value>(bad, "h.toml", |_| Ok(())).unwrap_err();
        assert_eq!((d.items[0].line, d.items[0].column), (4, 21), "{d}");
        assert!(
            d.items[0]
                .message
                .contains("not an environment variable name"),
            "{d}"
        );
    }
}
