//! The pipeline spec (`helios.toml`): parsed and validated as a whole before anything
//! runs, so that one run of `helios validate` reports every problem with its line, column,
//! the offending text and a hint.
//!
//! The file has six kinds of section: `[watermark]`, `[[aggregate]]`, `[[rule]]`,
//! `[[source]]`, and for the sinks `[retention]` and `[[webhook]]`. Sources belong to
//! `helios-connectors`; this module parses them into the
//! caller's type `S` so that the file is still checked in one pass.

mod diagnostics;
mod raw;

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use diagnostics::Collector;
pub use diagnostics::{Diagnostic, Diagnostics};

use crate::expr::{AggregateFn, Expr, GroupKeyExpr, compile_group_key, compile_measure};
use crate::insights::{AnomalyConfig, AnomalyMethod, InsightConfig, MeasureConfig, TrendConfig};

/// A validated spec.
#[derive(Debug)]
pub struct Spec<S> {
    pub watermark: Watermark,
    pub aggregates: Vec<Aggregate>,
    pub rules: Vec<Rule>,
    pub sources: Vec<Located<S>>,
    /// How long the store keeps rows, per table.
    pub retention: Retention,
    /// Receivers of alert notifications.
    pub webhooks: Vec<Webhook>,
    /// Repeats of an event the processor drops.
    pub dedupe: Dedupe,
}

/// `[dedupe]`: the processor drops an event whose `(source, id)` it has already seen
/// within `horizon` of event time, before any aggregate, rule or insight sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dedupe {
    /// Event time over which identities are remembered; zero turns de-duplication off.
    pub horizon: Duration,
    /// Identities remembered per input partition at most; past it the oldest are
    /// forgotten first.
    pub max_ids: usize,
}

impl Dedupe {
    /// The horizon when the spec sets none: a day, or the longest window plus its
    /// allowed lateness if that is longer (a repeat is then late for every window before
    /// it could be forgotten).
    pub const DEFAULT_HORIZON: Duration = Duration::from_secs(24 * 3600);
    /// About 27 MiB of memory per partition (bench/RESULTS.md).
    pub const DEFAULT_MAX_IDS: usize = 1_000_000;

    /// The shortest horizon that covers `aggregates`: their longest window (a session's
    /// gap) plus its allowed lateness.
    pub fn covering(aggregates: &[Aggregate]) -> Duration {
        aggregates
            .iter()
            .map(|a| {
                let span = match a.window {
                    Window::Tumbling { size } | Window::Hopping { size, .. } => size,
                    Window::Session { gap } => gap,
                };
                span.saturating_add(a.allowed_lateness)
            })
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Whether repeats are dropped at all.
    pub fn enabled(&self) -> bool {
        !self.horizon.is_zero()
    }
}

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe {
            horizon: Self::DEFAULT_HORIZON,
            max_ids: Self::DEFAULT_MAX_IDS,
        }
    }
}

/// `[retention]`: how long the store keeps rows; `None` leaves it to the store: the
/// embedded store's defaults (ADR-016), forever on ClickHouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub events: Option<Duration>,
    pub aggregates: Option<Duration>,
    pub alerts: Option<Duration>,
    pub insights: Option<Duration>,
    pub dead_letters: Option<Duration>,
}

/// Body formats of a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The alert as JSON.
    Generic,
    /// `{"text": ...}`, what Slack incoming webhooks accept.
    Slack,
}

/// `[[webhook]]`: a receiver of alert notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub name: String,
    pub url: WebhookUrl,
    pub format: WebhookFormat,
    /// The environment variable holding the `Authorization` header to send
    /// (`authorization_env`), read when the sinks start.
    pub authorization_env: Option<String>,
}

/// Where a webhook's URL comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    /// Written in the spec (`url`).
    Literal(String),
    /// Read from this environment variable when the sinks start (`url_env`): the URL of
    /// a Slack-style incoming webhook is its credential.
    Env(String),
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Only scheme and host: the path of an incoming-webhook URL is its secret.
            WebhookUrl::Literal(url) => {
                write!(f, "Literal({})", helios_schemas::tls::shown_url(url))
            }
            WebhookUrl::Env(var) => write!(f, "Env({var})"),
        }
    }
}

/// Whether a webhook URL is one Helios can POST to.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A value with where it was written.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

/// Event-time progress settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Watermark = max event time seen − this. Default 10 s.
    pub max_out_of_orderness: Duration,
    /// A partition without events for this long, while a window or rule there waits, gets
    /// a watermark mark at wall clock − `max_out_of_orderness` (ADR-012). Default 30 s.
    pub idle_timeout: Duration,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            max_out_of_orderness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// A windowed aggregation.
pub struct Aggregate {
    pub name: String,
    pub condition: Option<Expr>,
    pub window: Window,
    pub group_by: Vec<GroupKeyExpr>,
    pub measures: Vec<Measure>,
    pub allowed_lateness: Duration,
    pub emit_every: Option<Duration>,
    /// Which insight detectors run over the results, how sensitive (`insights`).
    pub insights: InsightConfig,
    /// Windows open at once per input partition at most (`max_open_windows`): an event
    /// that would open one more is not applied to this aggregate and becomes a dead letter
    /// saying so, so no stream of new keys can grow the state without bound.
    pub max_open_windows: usize,
    /// Bytes of one group key at most (`max_key_bytes`, all its values together): an
    /// event whose key is longer is not applied to this aggregate and becomes a dead
    /// letter saying so, so a window's memory is bounded as well as their number.
    pub max_key_bytes: usize,
}

/// The bound on an operator's state when the spec sets none: about 80 MiB of window
/// state for a count and a sum (bench/RESULTS.md, `memory`), per input partition.
pub const DEFAULT_MAX_STATE_KEYS: usize = 250_000;

/// The bound on one key's bytes when the spec sets none: repository names, hosts, URLs
/// and paths fit; a value pasted into a key by mistake (a body, a stack trace) does not.
/// With [`DEFAULT_MAX_STATE_KEYS`] it caps an operator's keys at about 256 MiB per input
/// partition, whatever a producer sends.
pub const DEFAULT_MAX_KEY_BYTES: usize = 1024;

// By hand, without `insights` and the bounds: the Debug text is the aggregate's
// state fingerprint (runtime/partition.rs), and tuning a detector or a bound must not
// throw away window state.
impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("name", &self.name)
            .field("condition", &self.condition)
            .field("window", &self.window)
            .field("group_by", &self.group_by)
            .field("measures", &self.measures)
            .field("allowed_lateness", &self.allowed_lateness)
            .field("emit_every", &self.emit_every)
            .finish()
    }
}

/// Window shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Tumbling { size: Duration },
    Hopping { size: Duration, slide: Duration },
    Session { gap: Duration },
}

/// One named measure of an aggregate.
#[derive(Debug)]
pub struct Measure {
    pub name: String,
    pub function: AggregateFn,
    pub argument: Option<Expr>,
}

/// Alert severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// A rule producing alerts.
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub per: Vec<GroupKeyExpr>,
    pub within: Duration,
    pub severity: Severity,
    /// Keys with state per input partition at most (`max_keys`): a matching event of one
    /// more key is not applied to this rule and becomes a dead letter saying so.
    pub max_keys: usize,
    /// Bytes of one key at most (`max_key_bytes`): a matching event with a longer key is
    /// not applied to this rule and becomes a dead letter saying so.
    pub max_key_bytes: usize,
}

// By hand, without the bounds (and as `derive` printed it before): the Debug text is
// the rule's state fingerprint (runtime/partition.rs), and raising a bound must not throw
// away rule state.
impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("per", &self.per)
            .field("within", &self.within)
            .field("severity", &self.severity)
            .finish()
    }
}

/// What a rule watches for.
#[derive(Debug)]
pub enum RuleKind {
    /// At least `count` matching events within `within`, per key.
    Threshold { condition: Expr, count: u64 },
    /// No matching event for `within`, per key, once the key has been seen.
    Absence { condition: Expr },
    /// `first` then `then` within `within`, per key.
    Sequence { first: Expr, then: Expr },
}

/// Names that are columns of every aggregate table, so measures and keys cannot use them.
const RESERVED: &[&str] = &[
    "window_start",
    "window_end",
    "version",
    "final",
    "id",
    "aggregate",
    "count",
];

/// Longest aggregate, group-key and measure name: the store's identifier limit
/// (`helios_sinks::StoreSpec::validate`).
const MAX_IDENTIFIER: usize = 64;

const DURATION_HINT: &str = "write a duration like 30s, 5m, 1h or 7d";

/// Parses and validates `text` (the contents of `file`). `check_source` adds the sources'
/// own checks; its `Err((message, hint))` is reported at the source's table.
pub fn parse<S: DeserializeOwned>(
    text: &str,
    file: &str,
    check_source: impl Fn(&S) -> Result<(), (String, Option<String>)>,
) -> Result<Spec<S>, Diagnostics> {
    let mut c = Collector::new(text, file);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            c.at(
                e.span().unwrap_or(0..0),
                format!("TOML syntax: {}", e.message()),
                None,
            );
        }
        return Err(c.finish());
    }
    let mut spec = Spec {
        watermark: Watermark::default(),
        aggregates: Vec::new(),
        rules: Vec::new(),
        sources: Vec::new(),
        retention: Retention::default(),
        webhooks: Vec::new(),
        dedupe: Dedupe::default(),
    };
    let mut names = HashSet::new();
    let mut dedupe_raw = None;
    for (key, value) in root.get_ref() {
        match key.get_ref().as_ref() {
            "watermark" => {
                if let Some(raw) = de::<raw::Watermark>(&mut c, value) {
                    spec.watermark = watermark(&mut c, raw);
                }
            }
            "aggregate" => {
                for item in tables(&mut c, value, "aggregate") {
                    if let Some(raw) = de::<raw::Aggregate>(&mut c, &item)
                        && let Some(a) = aggregate(&mut c, raw, &mut names)
                    {
                        spec.aggregates.push(a);
                    }
                }
            }
            "rule" => {
                for item in tables(&mut c, value, "rule") {
                    if let Some(raw) = de::<raw::Rule>(&mut c, &item)
                        && let Some(r) = rule(&mut c, raw, &mut names)
                    {
                        spec.rules.push(r);
                    }
                }
            }
            "source" => {
                for item in tables(&mut c, value, "source") {
                    if let Some(source) = de::<S>(&mut c, &item) {
                        let span = item.span();
                        if let Err((message, hint)) = check_source(&source) {
                            c.at(span.clone(), message, hint);
                        }
                        let (line, column) = c.line_col(span.start);
                        spec.sources.push(Located {
                            value: source,
                            line,
                            column,
                        });
                    }
                }
            }
            "dedupe" => dedupe_raw = de::<raw::Dedupe>(&mut c, value),
            "retention" => {
                if let Some(raw) = de::<raw::Retention>(&mut c, value) {
                    spec.retention = retention(&mut c, raw);
                }
            }
            "webhook" => {
                let mut hook_names = HashSet::new();
                for item in tables(&mut c, value, "webhook") {
                    if let Some(raw) = de::<raw::Webhook>(&mut c, &item)
                        && let Some(w) = webhook(&mut c, raw, &mut hook_names)
                    {
                        spec.webhooks.push(w);
                    }
                }
            }
            other => c.at(
                key.span(),
                format!("unknown section `{other}`"),
                Some(
                    "sections are [watermark], [dedupe], [[aggregate]], [[rule]], [[source]], \
                     [retention] and [[webhook]]"
                        .into(),
                ),
            ),
        }
    }
    // After the aggregates: the default horizon and the check depend on their windows.
    spec.dedupe = dedupe(&mut c, dedupe_raw, &spec.aggregates);
    let out = c.finish();
    if out.is_empty() { Ok(spec) } else { Err(out) }
}

fn dedupe(c: &mut Collector<'_>, raw: Option<raw::Dedupe>, aggregates: &[Aggregate]) -> Dedupe {
    let covering = Dedupe::covering(aggregates);
    let mut out = Dedupe {
        horizon: Dedupe::DEFAULT_HORIZON.max(covering),
        max_ids: Dedupe::DEFAULT_MAX_IDS,
    };
    let Some(raw) = raw else {
        return out;
    };
    if let Some(h) = raw.horizon
        && let Some(horizon) = duration(c, &h, "dedupe horizon", true)
    {
        if !horizon.is_zero() && horizon < covering {
            c.at(
                h.span(),
                format!(
                    "dedupe horizon {} is shorter than the longest window plus its allowed lateness ({}): \
                     a repeat arriving later than the horizon would be counted twice",
                    humantime::format_duration(horizon),
                    humantime::format_duration(covering)
                ),
                Some(format!(
                    "raise horizon to at least \"{}\", or set \"0s\" to turn de-duplication off",
                    humantime::format_duration(covering)
                )),
            );
        }
        out.horizon = horizon;
    }
    if let Some(m) = raw.max_ids {
        match usize::try_from(*m.get_ref()) {
            Ok(n) if n > 0 => out.max_ids = n,
            _ => c.at(
                m.span(),
                format!(
                    "dedupe max_ids must be a positive number, not {}",
                    m.get_ref()
                ),
                Some(
                    "identities remembered per input partition, e.g. 1000000 (about 25 MB)".into(),
                ),
            ),
        }
    }
    out
}

/// Deserializes one value, reporting serde's complaint at its position.
fn de<T: DeserializeOwned>(c: &mut Collector<'_>, value: &Spanned<DeValue<'_>>) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(v) => Some(v),
        Err(e) => {
            let hint = e.message().contains("unknown field").then(|| {
                "check the spelling; the fields this section accepts are listed above".to_string()
            });
            c.at(
                e.span().unwrap_or(span),
                e.message().trim().to_string(),
                hint,
            );
            None
        }
    }
}

/// The tables of an array-of-tables section such as `[[rule]]`.
fn tables<'i>(
    c: &mut Collector<'_>,
    value: &Spanned<DeValue<'i>>,
    section: &str,
) -> Vec<Spanned<DeValue<'i>>> {
    match value.get_ref() {
        DeValue::Array(items) => items.to_vec(),
        _ => {
            c.at(
                value.span(),
                format!("`{section}` must be a list of tables"),
                Some(format!("write each one as a [[{section}]] table")),
            );
            Vec::new()
        }
    }
}

fn duration(
    c: &mut Collector<'_>,
    s: &Spanned<String>,
    what: &str,
    allow_zero: bool,
) -> Option<Duration> {
    match humantime::parse_duration(s.get_ref().trim()) {
        Ok(d) if d.is_zero() && !allow_zero => {
            c.at(
                s.span(),
                format!("{what} must be longer than zero"),
                Some(DURATION_HINT.into()),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            c.at(
                s.span(),
                format!("bad duration for {what}: {e}"),
                Some(DURATION_HINT.into()),
            );
            None
        }
    }
}

fn watermark(c: &mut Collector<'_>, raw: raw::Watermark) -> Watermark {
    let default = Watermark::default();
    Watermark {
        max_out_of_orderness: raw
            .max_out_of_orderness
            .and_then(|d| duration(c, &d, "max_out_of_orderness", true))
            .unwrap_or(default.max_out_of_orderness),
        idle_timeout: raw
            .idle_timeout
            .and_then(|d| duration(c, &d, "idle_timeout", false))
            .unwrap_or(default.idle_timeout),
    }
}

fn retention(c: &mut Collector<'_>, raw: raw::Retention) -> Retention {
    let mut keep = |d: Option<Spanned<String>>, what: &str| {
        d.and_then(|d| duration(c, &d, &format!("retention of {what}"), false))
    };
    Retention {
        events: keep(raw.events, "events"),
        aggregates: keep(raw.aggregates, "aggregates"),
        alerts: keep(raw.alerts, "alerts"),
        insights: keep(raw.insights, "insights"),
        dead_letters: keep(raw.dead_letters, "dead_letters"),
    }
}

fn webhook(
    c: &mut Collector<'_>,
    raw: raw::Webhook,
    names: &mut HashSet<String>,
) -> Option<Webhook> {
    let before = c.count();
    let name = raw.name.get_ref();
    if name.is_empty() || !names.insert(name.clone()) {
        c.at(
            raw.name.span(),
            format!("webhook name `{name}` is empty or used twice"),
            Some("give each webhook its own name".into()),
        );
    }
    let url = match (raw.url, raw.url_env) {
        (Some(url), None) => {
            if !is_http_url(url.get_ref()) {
                c.at(
                    url.span(),
                    format!("webhook URL `{}` is not an http(s) URL", url.get_ref()),
                    Some("write a full URL such as https://hooks.slack.com/services/...".into()),
                );
            }
            WebhookUrl::Literal(url.into_inner())
        }
        (None, Some(var)) => {
            let name = var.get_ref();
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                c.at(
                    var.span(),
                    format!("`{name}` is not an environment variable name"),
                    Some("name the variable that holds the URL, e.g. SLACK_WEBHOOK_URL".into()),
                );
            }
            WebhookUrl::Env(var.into_inner())
        }
        (Some(_), Some(var)) => {
            c.at(
                var.span(),
                "a webhook takes `url` or `url_env`, not both".to_string(),
                Some("keep `url_env` to keep the URL out of the spec".into()),
            );
            WebhookUrl::Env(var.into_inner())
        }
        (None, None) => {
            c.at(
                raw.name.span(),
                format!("webhook `{name}` has no `url` or `url_env`"),
                Some("add url = \"https://...\", or url_env = \"VARIABLE\" holding it".into()),
            );
            WebhookUrl::Env(String::new())
        }
    };
    let authorization_env = raw.authorization_env.map(|var| {
        let name = var.get_ref();
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            c.at(
                var.span(),
                format!("`{name}` is not an environment variable name"),
                Some(
                    "name the variable that holds the header, e.g. OPS_WEBHOOK_AUTHORIZATION \
                     = \"Bearer …\""
                        .into(),
                ),
            );
        }
        var.into_inner()
    });
    let format = match raw
        .format
        .as_ref()
        .map(|f| (f.get_ref().as_str(), f.span()))
    {
        None | Some(("generic", _)) => WebhookFormat::Generic,
        Some(("slack", _)) => WebhookFormat::Slack,
        Some((other, span)) => {
            c.at(
                span,
                format!("unknown webhook format `{other}`"),
                Some("use generic or slack".into()),
            );
            WebhookFormat::Generic
        }
    };
    (c.count() == before).then(|| Webhook {
        name: raw.name.into_inner(),
        url,
        format,
        authorization_env,
    })
}

/// Lowercase letters, digits and `_`, starting with a letter, at most 64 bytes: a table
/// or column name of every store.
fn is_identifier(n: &str) -> bool {
    n.len() <= MAX_IDENTIFIER
        && n.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A name that becomes part of table and topic names.
fn name(
    c: &mut Collector<'_>,
    s: &Spanned<String>,
    names: &mut HashSet<String>,
    what: &str,
) -> bool {
    let n = s.get_ref();
    if !is_identifier(n) {
        c.at(
            s.span(),
            format!("bad {what} name `{n}`"),
            Some(format!(
                "use 1 to {MAX_IDENTIFIER} lowercase letters, digits and _, starting with a letter (it names tables)"
            )),
        );
        return false;
    }
    if !names.insert(n.clone()) {
        c.at(
            s.span(),
            format!("duplicate name `{n}`"),
            Some("aggregate and rule names must be unique in a spec".into()),
        );
        return false;
    }
    true
}

fn condition(c: &mut Collector<'_>, s: &Spanned<String>) -> Option<Expr> {
    match Expr::compile_condition(s.get_ref()) {
        Ok(e) => Some(e),
        Err(e) => {
            c.in_string(s.span(), e.position, e.message, e.hint);
            None
        }
    }
}

/// Compiles group keys; `columns`: they become store columns (an aggregate's), so their
/// names must be plain identifiers.
fn group_keys(
    c: &mut Collector<'_>,
    keys: &[Spanned<String>],
    columns: bool,
) -> Option<Vec<GroupKeyExpr>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut seen = HashSet::new();
    let mut ok = true;
    for k in keys {
        match compile_group_key(k.get_ref()) {
            Ok(key) if columns && !is_identifier(&key.name) => {
                c.at(
                    k.span(),
                    format!("key name `{}` cannot be a column of the store", key.name),
                    Some(format!(
                        "name it with AS: 1 to {MAX_IDENTIFIER} lowercase letters, digits or _, starting with a letter, e.g. `{} AS branch`",
                        k.get_ref().split(" AS ").next().unwrap_or_default().trim()
                    )),
                );
                ok = false;
            }
            Ok(key) if RESERVED.contains(&key.name.as_str()) => {
                c.at(
                    k.span(),
                    format!("`{}` is a reserved column name", key.name),
                    Some("rename it with AS".into()),
                );
                ok = false;
            }
            Ok(key) if !seen.insert(key.name.clone()) => {
                c.at(
                    k.span(),
                    format!("duplicate key name `{}`", key.name),
                    Some("rename one with AS".into()),
                );
                ok = false;
            }
            Ok(key) => out.push(key),
            Err(e) => {
                c.in_string(k.span(), e.position, e.message, e.hint);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn aggregate(
    c: &mut Collector<'_>,
    raw: raw::Aggregate,
    names: &mut HashSet<String>,
) -> Option<Aggregate> {
    let before = c.count();
    name(c, &raw.name, names, "aggregate");
    let cond = raw.condition.as_ref().and_then(|w| condition(c, w));
    let window = window(c, &raw.window);
    let group_by = group_keys(c, &raw.group_by, true);
    let key_names: HashSet<String> = group_by.iter().flatten().map(|k| k.name.clone()).collect();
    if raw.measures.get_ref().is_empty() {
        c.at(
            raw.measures.span(),
            "an aggregate needs at least one measure",
            Some("e.g. measures = { runs = \"count(*)\" }".into()),
        );
    }
    let mut measures = Vec::new();
    for (m_name, m) in raw.measures.get_ref() {
        if !is_identifier(m_name)
            || RESERVED.contains(&m_name.as_str())
            || key_names.contains(m_name)
        {
            c.at(m.span(), format!("bad measure name `{m_name}`"), Some(format!("use 1 to {MAX_IDENTIFIER} lowercase letters, digits and _, not a group key or a reserved column (id, version, final, count, window_start, window_end)")));
            continue;
        }
        match compile_measure(m.get_ref()) {
            Ok(me) => measures.push(Measure {
                name: m_name.clone(),
                function: me.function,
                argument: me.argument,
            }),
            Err(e) => c.in_string(m.span(), e.position, e.message, e.hint),
        }
    }
    let allowed_lateness = raw
        .allowed_lateness
        .as_ref()
        .map_or(Some(Duration::ZERO), |d| {
            duration(c, d, "allowed_lateness", true)
        });
    let emit_every = match &raw.emit_every {
        Some(d) => duration(c, d, "emit_every", false).map(Some),
        None => Some(None),
    };
    let insights = match (&raw.insights, window) {
        (Some(settings), Some(w)) => insights(c, settings, w, &measures),
        (None, _) => Some(InsightConfig::default()),
        (Some(_), None) => None,
    };
    // Only for an otherwise valid aggregate: the grouping is judged on the keys it has.
    if c.count() == before
        && let (Some(keys), Some(w), Some(every)) = (&group_by, &window, &emit_every)
    {
        repartitionable(c, &raw, keys, w, every.is_some());
    }
    let max_open_windows = bound(
        c,
        raw.max_open_windows.as_ref(),
        "max_open_windows",
        Bounded::Held("windows"),
    );
    let max_key_bytes = bound(
        c,
        raw.max_key_bytes.as_ref(),
        "max_key_bytes",
        Bounded::KeyBytes,
    );
    if c.count() > before {
        return None;
    }
    Some(Aggregate {
        name: raw.name.into_inner(),
        condition: cond,
        window: window?,
        group_by: group_by?,
        measures,
        allowed_lateness: allowed_lateness?,
        emit_every: emit_every?,
        insights: insights?,
        max_open_windows: max_open_windows?,
        max_key_bytes: max_key_bytes?,
    })
}

/// What a bound setting limits, for its message.
#[derive(Clone, Copy)]
enum Bounded {
    /// Keys (windows) held per input partition: [`DEFAULT_MAX_STATE_KEYS`] by default.
    Held(&'static str),
    /// Bytes of one key: [`DEFAULT_MAX_KEY_BYTES`] by default.
    KeyBytes,
}

/// A positive bound on an operator's state, its default when not given.
fn bound(
    c: &mut Collector<'_>,
    raw: Option<&Spanned<i64>>,
    setting: &str,
    what: Bounded,
) -> Option<usize> {
    let default = match what {
        Bounded::Held(_) => DEFAULT_MAX_STATE_KEYS,
        Bounded::KeyBytes => DEFAULT_MAX_KEY_BYTES,
    };
    let Some(raw) = raw else {
        return Some(default);
    };
    match usize::try_from(*raw.get_ref()) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            let hint = match what {
                Bounded::Held(what) => {
                    format!("{what} held per input partition at most, e.g. {default} (the default)")
                }
                Bounded::KeyBytes => format!(
                    "bytes of one key (its values together) at most, e.g. {default} (the default)"
                ),
            };
            c.at(
                raw.span(),
                format!("{setting} must be a positive number, not {}", raw.get_ref()),
                Some(hint),
            );
            None
        }
    }
}

/// ADR-020: an aggregate whose keys do not include the bare `subject` column runs through
/// a repartition topic, where records of different events partitions meet in an order
/// the log does not fix. Session windows (which merge by arrival) and early results
/// (`emit_every`, a snapshot at arrival) would then depend on that order, so such an
/// aggregate must keep `subject` among its keys. The processor refuses the same at start
/// (`runtime::check_repartitionable`); this reports it with its position first.
fn repartitionable(
    c: &mut Collector<'_>,
    raw: &raw::Aggregate,
    keys: &[GroupKeyExpr],
    window: &Window,
    early: bool,
) {
    if keys.iter().any(|k| is_subject(k.expr.source())) {
        return;
    }
    let grouped = if keys.is_empty() {
        "nothing (one global group)".to_string()
    } else {
        keys.iter()
            .map(|k| format!("`{}`", k.expr.source()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (span, what) = if matches!(window, Window::Session { .. }) {
        (raw.window.span(), "a session window")
    } else if let (true, Some(e)) = (early, &raw.emit_every) {
        (e.span(), "early results (`emit_every`)")
    } else {
        return;
    };
    c.at(
        span,
        format!(
            "aggregate `{}` groups by {grouped}, which does not include `subject`, and has {what}: \
             repartitioned by its keys, its results would depend on the order in which events of \
             different partitions arrive",
            raw.name.get_ref()
        ),
        Some(
            "add `subject` to its group_by, or use a tumbling or hopping window without emit_every (ADR-020)"
                .into(),
        ),
    );
}

/// Whether a group key is the column `subject` itself (any alias).
pub(crate) fn is_subject(source: &str) -> bool {
    use sqlparser::ast::{Expr as Ast, SelectItem};
    let dialect = sqlparser::dialect::GenericDialect {};
    let Ok(mut parser) = sqlparser::parser::Parser::new(&dialect).try_with_sql(source) else {
        return false;
    };
    match parser.parse_select_item() {
        Ok(SelectItem::UnnamedExpr(Ast::Identifier(id)))
        | Ok(SelectItem::ExprWithAlias {
            expr: Ast::Identifier(id),
            ..
        }) => id.value.eq_ignore_ascii_case("subject"),
        _ => false,
    }
}

/// The longest trend period: a series is kept for three of them.
const MAX_TREND_PERIOD: Duration = Duration::from_secs(366 * 86_400);
/// The most values the MAD method keeps per series.
const MAX_MAD_HISTORY: u64 = 1000;
/// The longest streak asked for, in days.
const MAX_STREAK_DAYS: i64 = 3650;

/// An aggregate's `insights`: `false`, `true` or the detectors' settings, checked against
/// its window and measures.
fn insights(
    c: &mut Collector<'_>,
    raw: &Spanned<raw::Toggle<raw::Insights>>,
    window: Window,
    measures: &[Measure],
) -> Option<InsightConfig> {
    let settings = match raw.get_ref() {
        raw::Toggle::Switch(false) => return Some(InsightConfig::off()),
        raw::Toggle::Switch(true) => return Some(InsightConfig::default()),
        raw::Toggle::Settings(s) => s,
    };
    let before = c.count();
    let defaults = InsightConfig::default();
    let mut out = InsightConfig::default();
    out.default.anomaly = anomaly(c, settings.anomaly.as_ref(), defaults.default.anomaly);
    let (aggregate_trend, period) = trend(c, settings.trend.as_ref(), defaults.default.trend, true);
    out.default.trend = aggregate_trend;
    if let Some(period) = period {
        let smallest = match window {
            Window::Tumbling { size } | Window::Hopping { size, .. } => size,
            Window::Session { .. } => Duration::ZERO,
        };
        let span = settings.trend.as_ref().map_or(raw.span(), |t| t.span());
        if period < smallest {
            c.at(
                span,
                format!(
                    "the trend window {} is shorter than the aggregate's window {}",
                    humantime::format_duration(period),
                    humantime::format_duration(smallest)
                ),
                Some("compare periods of at least one window, e.g. window = \"7d\"".into()),
            );
        } else if period > MAX_TREND_PERIOD {
            c.at(
                span,
                format!(
                    "the trend window {} is longer than a year",
                    humantime::format_duration(period)
                ),
                Some("e.g. window = \"7d\" compares calendar weeks".into()),
            );
        } else {
            out.trend_period_us = i64::try_from(period.as_micros()).unwrap_or(i64::MAX);
        }
    }
    out.streak_days = match settings.streak.as_ref().map(|s| (s, s.get_ref())) {
        None => defaults.streak_days,
        Some((_, raw::Toggle::Switch(on))) => on.then_some(defaults.streak_days).flatten(),
        Some((_, raw::Toggle::Settings(st))) => match &st.days {
            None => defaults.streak_days,
            Some(d) if (1..=MAX_STREAK_DAYS).contains(d.get_ref()) => Some(*d.get_ref()),
            Some(d) => {
                c.at(
                    d.span(),
                    format!(
                        "streak days must be from 1 to {MAX_STREAK_DAYS}, not {}",
                        d.get_ref()
                    ),
                    Some("consecutive UTC days with events, e.g. days = 5".into()),
                );
                None
            }
        },
    };
    for (m_name, m) in &settings.measures {
        if !measures.iter().any(|x| &x.name == m_name) {
            c.at(
                m.span(),
                format!("insights for `{m_name}`, which is not a measure of this aggregate"),
                Some(format!(
                    "the measures are {}",
                    measures
                        .iter()
                        .map(|x| format!("`{}`", x.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        }
        let own = match m.get_ref() {
            raw::Toggle::Switch(false) => MeasureConfig {
                anomaly: None,
                trend: None,
            },
            raw::Toggle::Switch(true) => out.default,
            raw::Toggle::Settings(ms) => {
                let (measure_trend, period) = trend(c, ms.trend.as_ref(), out.default.trend, false);
                if let (Some(_), Some(t)) = (period, &ms.trend) {
                    c.at(
                        t.span(),
                        "the trend window is set per aggregate, not per measure",
                        Some("move `window` to the aggregate's insights.trend".into()),
                    );
                }
                MeasureConfig {
                    anomaly: anomaly(c, ms.anomaly.as_ref(), out.default.anomaly),
                    trend: measure_trend,
                }
            }
        };
        out.measures.insert(m_name.clone(), own);
    }
    (c.count() == before).then_some(out)
}

/// An `anomaly` setting over `base` (the aggregate's, or the default).
fn anomaly(
    c: &mut Collector<'_>,
    raw: Option<&Spanned<raw::Toggle<raw::Anomaly>>>,
    base: Option<AnomalyConfig>,
) -> Option<AnomalyConfig> {
    let Some(raw) = raw else { return base };
    let a = match raw.get_ref() {
        raw::Toggle::Switch(false) => return None,
        raw::Toggle::Switch(true) => return Some(base.unwrap_or_default()),
        raw::Toggle::Settings(a) => a,
    };
    let mut out = base.unwrap_or_default();
    if let Some(m) = &a.method {
        match m.get_ref().as_str() {
            "zscore" => out.method = AnomalyMethod::ZScore,
            "mad" => out.method = AnomalyMethod::Mad,
            other => c.at(
                m.span(),
                format!("unknown anomaly method `{other}`"),
                Some("use zscore (mean and standard deviation) or mad (median and median absolute deviation)".into()),
            ),
        }
        // A method named without a threshold takes its own default.
        out.threshold = out.method.default_threshold();
    }
    if let Some(t) = &a.threshold {
        let v = *t.get_ref();
        if v.is_finite() && v > 0.0 {
            out.threshold = v;
        } else {
            c.at(
                t.span(),
                format!("anomaly threshold must be a positive number, not {v}"),
                Some("the |score| reported as an anomaly, e.g. threshold = 3.0".into()),
            );
        }
    }
    if let Some(h) = &a.history {
        match u64::try_from(*h.get_ref()) {
            Ok(n) if (3..=MAX_MAD_HISTORY).contains(&n) => out.history = n,
            _ => c.at(
                h.span(),
                format!(
                    "anomaly history must be from 3 to {MAX_MAD_HISTORY}, not {}",
                    h.get_ref()
                ),
                Some("the latest values the mad method keeps per series, e.g. history = 30".into()),
            ),
        }
    }
    if let Some(h) = &a.min_history {
        match u64::try_from(*h.get_ref()) {
            Ok(n) if n >= 1 => out.min_history = n,
            _ => c.at(
                h.span(),
                format!(
                    "anomaly min_history must be at least 1, not {}",
                    h.get_ref()
                ),
                Some(
                    "windows of a series seen before anomalies are reported, e.g. min_history = 10"
                        .into(),
                ),
            ),
        }
    }
    Some(out)
}

/// A `trend` setting over `base`, and its `window` when written (`with_window`: where
/// it is allowed; it is checked by the caller).
fn trend(
    c: &mut Collector<'_>,
    raw: Option<&Spanned<raw::Toggle<raw::Trend>>>,
    base: Option<TrendConfig>,
    with_window: bool,
) -> (Option<TrendConfig>, Option<Duration>) {
    let Some(raw) = raw else { return (base, None) };
    let t = match raw.get_ref() {
        raw::Toggle::Switch(false) => return (None, None),
        raw::Toggle::Switch(true) => return (Some(base.unwrap_or_default()), None),
        raw::Toggle::Settings(t) => t,
    };
    let mut out = base.unwrap_or_default();
    if let Some(m) = &t.min_change {
        let v = *m.get_ref();
        if v.is_finite() && v > 0.0 {
            out.min_change = v;
        } else {
            c.at(
                m.span(),
                format!("trend min_change must be a positive number, not {v}"),
                Some("the relative change reported, e.g. min_change = 0.5 for ±50 %".into()),
            );
        }
    }
    let period = match &t.window {
        Some(w) if with_window => duration(c, w, "trend window", false),
        Some(_) => Some(Duration::ZERO),
        None => None,
    };
    (Some(out), period)
}

fn window(c: &mut Collector<'_>, w: &Spanned<raw::Window>) -> Option<Window> {
    let raw = w.get_ref();
    let need =
        |c: &mut Collector<'_>, field: &Option<Spanned<String>>, what: &str| -> Option<Duration> {
            match field {
                Some(d) => duration(c, d, what, false),
                None => {
                    c.at(
                        w.span(),
                        format!("a {} window needs `{what}`", raw.kind.get_ref()),
                        Some("tumbling: size; hopping: size and slide; session: gap".into()),
                    );
                    None
                }
            }
        };
    let forbid = |c: &mut Collector<'_>, field: &Option<Spanned<String>>, what: &str| {
        if let Some(f) = field {
            c.at(
                f.span(),
                format!("a {} window has no `{what}`", raw.kind.get_ref()),
                Some("tumbling: size; hopping: size and slide; session: gap".into()),
            );
        }
    };
    match raw.kind.get_ref().as_str() {
        "tumbling" => {
            forbid(c, &raw.slide, "slide");
            forbid(c, &raw.gap, "gap");
            Some(Window::Tumbling {
                size: need(c, &raw.size, "size")?,
            })
        }
        "hopping" => {
            forbid(c, &raw.gap, "gap");
            let size = need(c, &raw.size, "size");
            let slide = need(c, &raw.slide, "slide");
            let (size, slide) = (size?, slide?);
            if slide > size || size.as_micros() % slide.as_micros() != 0 {
                let span = raw.slide.as_ref().map_or(w.span(), Spanned::span);
                c.at(
                    span,
                    "a hopping window's slide must divide its size",
                    Some("e.g. size = \"10m\", slide = \"1m\"".into()),
                );
                return None;
            }
            Some(Window::Hopping { size, slide })
        }
        "session" => {
            forbid(c, &raw.size, "size");
            forbid(c, &raw.slide, "slide");
            Some(Window::Session {
                gap: need(c, &raw.gap, "gap")?,
            })
        }
        other => {
            c.at(
                raw.kind.span(),
                format!("unknown window type `{other}`"),
                Some("use tumbling, hopping or session".into()),
            );
            None
        }
    }
}

fn rule(c: &mut Collector<'_>, raw: raw::Rule, names: &mut HashSet<String>) -> Option<Rule> {
    let before = c.count();
    name(c, &raw.name, names, "rule");
    let per = group_keys(c, &raw.per, false);
    let within = match &raw.within {
        Some(d) => duration(c, d, "within", false),
        None => {
            c.at(
                raw.kind.span(),
                "a rule needs `within`",
                Some("e.g. within = \"1h\"".into()),
            );
            None
        }
    };
    let severity = match raw
        .severity
        .as_ref()
        .map(|s| (s.get_ref().as_str(), s.span()))
    {
        None | Some(("warning", _)) => Some(Severity::Warning),
        Some(("info", _)) => Some(Severity::Info),
        Some(("critical", _)) => Some(Severity::Critical),
        Some((other, span)) => {
            c.at(
                span,
                format!("unknown severity `{other}`"),
                Some("use info, warning or critical".into()),
            );
            None
        }
    };
    let required =
        |c: &mut Collector<'_>, field: &Option<Spanned<String>>, what: &str| -> Option<Expr> {
            match field {
                Some(s) => condition(c, s),
                None => {
                    c.at(
                        raw.kind.span(),
                        format!("a {} rule needs `{what}`", raw.kind.get_ref()),
                        None,
                    );
                    None
                }
            }
        };
    let forbidden = |c: &mut Collector<'_>, present: Option<Range<usize>>, what: &str| {
        if let Some(span) = present {
            c.at(span, format!("a {} rule has no `{what}`", raw.kind.get_ref()), Some("threshold: where, count, within; absence: where, within; sequence: first, then, within".into()));
        }
    };
    let kind = match raw.kind.get_ref().as_str() {
        "threshold" => {
            forbidden(c, raw.first.as_ref().map(Spanned::span), "first");
            forbidden(c, raw.then.as_ref().map(Spanned::span), "then");
            let condition = required(c, &raw.condition, "where");
            let count = match &raw.count {
                Some(n) if *n.get_ref() >= 1 => Some(*n.get_ref() as u64),
                Some(n) => {
                    c.at(n.span(), "count must be at least 1", None);
                    None
                }
                None => {
                    c.at(
                        raw.kind.span(),
                        "a threshold rule needs `count`",
                        Some("e.g. count = 3".into()),
                    );
                    None
                }
            };
            condition
                .zip(count)
                .map(|(condition, count)| RuleKind::Threshold { condition, count })
        }
        "absence" => {
            forbidden(c, raw.first.as_ref().map(Spanned::span), "first");
            forbidden(c, raw.then.as_ref().map(Spanned::span), "then");
            forbidden(c, raw.count.as_ref().map(Spanned::span), "count");
            required(c, &raw.condition, "where").map(|condition| RuleKind::Absence { condition })
        }
        "sequence" => {
            forbidden(c, raw.condition.as_ref().map(Spanned::span), "where");
            forbidden(c, raw.count.as_ref().map(Spanned::span), "count");
            let first = required(c, &raw.first, "first");
            let then = required(c, &raw.then, "then");
            first
                .zip(then)
                .map(|(first, then)| RuleKind::Sequence { first, then })
        }
        other => {
            c.at(
                raw.kind.span(),
                format!("unknown rule type `{other}`"),
                Some("use threshold, absence or sequence".into()),
            );
            None
        }
    };
    let max_keys = bound(c, raw.max_keys.as_ref(), "max_keys", Bounded::Held("keys"));
    let max_key_bytes = bound(
        c,
        raw.max_key_bytes.as_ref(),
        "max_key_bytes",
        Bounded::KeyBytes,
    );
    if c.count() > before {
        return None;
    }
    Some(Rule {
        name: raw.name.into_inner(),
        kind: kind?,
        per: per?,
        within: within?,
        severity: severity?,
        max_keys: max_keys?,
        max_key_bytes: max_key_bytes?,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
