//! The spec's sections as written, with positions, before validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[watermark]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watermark {
    /// Allowed disorder of event times, e.g. "10s".
    pub max_out_of_orderness: Option<Spanned<String>>,
    /// After this long without events a partition stops holding the watermark back.
    pub idle_timeout: Option<Spanned<String>>,
}

/// `[[aggregate]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Unique name; the ClickHouse table is `agg_<name>`.
    pub name: Spanned<String>,
    /// SQL condition selecting the events.
    #[serde(rename = "where")]
    pub condition: Option<Spanned<String>>,
    /// `{ type = "tumbling", size = "1h" }`, hopping (size, slide) or session (gap).
    pub window: Spanned<Window>,
    /// Group keys: `expr [AS name]`.
    #[serde(default)]
    pub group_by: Vec<Spanned<String>>,
    /// Measure name -> aggregate call, e.g. `runs = "count(*)"`.
    pub measures: Spanned<BTreeMap<String, Spanned<String>>>,
    /// How long after a window's end late events still update it.
    pub allowed_lateness: Option<Spanned<String>>,
    /// Emit early results this often before the final one.
    pub emit_every: Option<Spanned<String>>,
    /// The insight detectors over this aggregate's results: `false`, `true` or a table.
    pub insights: Option<Spanned<Toggle<Insights>>>,
    /// Windows open at once per input partition at most.
    pub max_open_windows: Option<Spanned<i64>>,
    /// Bytes of one group key at most.
    pub max_key_bytes: Option<Spanned<i64>>,
}

/// `false` (off), `true` (the defaults) or a table of settings.
#[derive(Debug)]
pub enum Toggle<T> {
    Switch(bool),
    Settings(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Toggle<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = Toggle<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`true`, `false` or a table of settings")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
                Ok(Toggle::Switch(b))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Toggle::Settings)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `insights = { ... }` of an aggregate: the detectors for every measure, and
/// per-measure overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insights {
    pub anomaly: Option<Spanned<Toggle<Anomaly>>>,
    pub trend: Option<Spanned<Toggle<Trend>>>,
    pub streak: Option<Spanned<Toggle<Streak>>>,
    /// Measure name -> its own `anomaly` and `trend` settings (or `false`).
    #[serde(default)]
    pub measures: BTreeMap<String, Spanned<Toggle<MeasureInsights>>>,
}

/// One measure's overrides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureInsights {
    pub anomaly: Option<Spanned<Toggle<Anomaly>>>,
    pub trend: Option<Spanned<Toggle<Trend>>>,
}

/// `anomaly = { method = "zscore", threshold = 3.0, min_history = 10 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anomaly {
    /// `zscore` (default) or `mad`.
    pub method: Option<Spanned<String>>,
    /// Values the MAD method keeps per series.
    pub history: Option<Spanned<i64>>,
    /// |score| reported as an anomaly.
    pub threshold: Option<Spanned<f64>>,
    /// Windows of a series seen before anomalies are reported.
    pub min_history: Option<Spanned<i64>>,
}

/// `trend = { window = "7d", min_change = 0.5 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trend {
    /// The period compared with the one before (per aggregate).
    pub window: Option<Spanned<String>>,
    /// Relative change between two periods reported as a trend (0.5 = ±50 %).
    pub min_change: Option<Spanned<f64>>,
}

/// `streak = { days = 5 }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Streak {
    /// Consecutive UTC days with events reported as a streak.
    pub days: Option<Spanned<i64>>,
}

/// `window = { ... }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub size: Option<Spanned<String>>,
    pub slide: Option<Spanned<String>>,
    pub gap: Option<Spanned<String>>,
}

/// `[[rule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name; alerts carry it.
    pub name: Spanned<String>,
    /// threshold, absence or sequence.
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    /// SQL condition (threshold, absence).
    #[serde(rename = "where")]
    pub condition: Option<Spanned<String>>,
    /// Keys the rule is evaluated per.
    #[serde(default)]
    pub per: Vec<Spanned<String>>,
    /// Matching events needed (threshold).
    pub count: Option<Spanned<i64>>,
    /// The time span the rule looks at.
    pub within: Option<Spanned<String>>,
    /// info, warning (default) or critical.
    pub severity: Option<Spanned<String>>,
    /// First condition (sequence).
    pub first: Option<Spanned<String>>,
    /// Second condition (sequence).
    pub then: Option<Spanned<String>>,
    /// Keys with state per input partition at most.
    pub max_keys: Option<Spanned<i64>>,
    /// Bytes of one key at most.
    pub max_key_bytes: Option<Spanned<i64>>,
}

/// `[dedupe]`: how the processor recognises repeats of an event it has applied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dedupe {
    /// Event time over which identities are remembered, e.g. "24h"; "0s" turns it off.
    pub horizon: Option<Spanned<String>>,
    /// Identities remembered per input partition at most.
    pub max_ids: Option<Spanned<i64>>,
}

/// `[retention]`: how long the store keeps each table's rows (durations; unset = the
/// store's default, ADR-016).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// `events`, by event time.
    pub events: Option<Spanned<String>>,
    /// Every `agg_<name>` table, by window start.
    pub aggregates: Option<Spanned<String>>,
    /// `alerts`, by the time the alert started firing.
    pub alerts: Option<Spanned<String>>,
    /// `insights`, by window start.
    pub insights: Option<Spanned<String>>,
    /// `dead_letters`, by the time the record was dead-lettered.
    pub dead_letters: Option<Spanned<String>>,
}

/// `[[webhook]]`: a receiver of alert notifications.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Unique name, used in logs and in the delivery record.
    pub name: Spanned<String>,
    /// Where to POST, http:// or https://.
    pub url: Option<Spanned<String>>,
    /// The environment variable holding the URL instead (a Slack or Teams webhook URL is
    /// itself the credential, so it need not be written in the spec).
    pub url_env: Option<Spanned<String>>,
    /// `generic` (default: the alert as JSON) or `slack`.
    pub format: Option<Spanned<String>>,
    /// The environment variable holding the `Authorization` header to send (a receiver
    /// that wants a bearer token or Basic credentials).
    pub authorization_env: Option<Spanned<String>>,
}
