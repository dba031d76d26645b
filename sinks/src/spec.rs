//! The sink's own description of what the store holds: which aggregates exist, with which
//! group-by keys and measures, and how long each table keeps its rows. The pipeline spec
//! feeds it (one [`AggregateSpec`] per spec aggregate); the sink derives table and column
//! names from it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SinkError};

/// One aggregate as the store sees it: table `agg_<name>`, one column per group key and
/// one per measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// Aggregate name from the pipeline spec; the table is `agg_<name>`.
    pub name: String,
    /// Group-by key names; each becomes a `String` column.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Measure names; each becomes a `Nullable(Float64)` column.
    #[serde(default)]
    pub measures: Vec<String>,
    /// The aggregate's window, so a late event's row can name the window it missed
    /// (`late_events`); without it those rows have no window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSpec>,
}

impl AggregateSpec {
    /// An aggregate named `name` grouped by `group_by` with `measures`.
    pub fn new(name: &str, group_by: &[&str], measures: &[&str]) -> Self {
        AggregateSpec {
            name: name.to_owned(),
            group_by: group_by.iter().map(|s| (*s).to_owned()).collect(),
            measures: measures.iter().map(|s| (*s).to_owned()).collect(),
            window: None,
        }
    }

    /// The same aggregate with its window.
    pub fn with_window(mut self, window: WindowSpec) -> Self {
        self.window = Some(window);
        self
    }

    /// The table holding this aggregate's results.
    pub fn table(&self) -> String {
        format!("agg_{}", self.name)
    }
}

/// An aggregate's window as the pipeline spec declares it, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    Tumbling {
        size_us: i64,
    },
    /// `slide_us` divides `size_us` (the pipeline spec checks it).
    Hopping {
        size_us: i64,
        slide_us: i64,
    },
    Session {
        gap_us: i64,
    },
}

impl WindowSpec {
    /// The window `[start, end)` an event at `time` (µs) belongs to, computed as the window
    /// operator does: a tumbling window's one window; of a hopping window's several, the
    /// latest (the last to close, so the one the event missed by the least); for sessions,
    /// the session the event would have opened, `[time, time + gap)`. `None` for a window
    /// of no length (not a valid spec).
    pub fn window_of(&self, time: i64) -> Option<(i64, i64)> {
        match *self {
            WindowSpec::Tumbling { size_us } if size_us > 0 => {
                let start = time.div_euclid(size_us).saturating_mul(size_us);
                Some((start, start.saturating_add(size_us)))
            }
            WindowSpec::Hopping { size_us, slide_us } if size_us > 0 && slide_us > 0 => {
                let start = time.div_euclid(slide_us).saturating_mul(slide_us);
                Some((start, start.saturating_add(size_us)))
            }
            WindowSpec::Session { gap_us } if gap_us > 0 => {
                Some((time, time.saturating_add(gap_us)))
            }
            _ => None,
        }
    }
}

/// Columns every aggregate table has; group keys and measures may not reuse these names.
pub const AGGREGATE_FIXED_COLUMNS: &[&str] = &[
    "id",
    "window_start",
    "window_end",
    "count",
    "version",
    "final",
];

/// How long each table keeps rows, by the row's event time. `None` keeps rows forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// `events`, by event time.
    #[serde(default, with = "opt_duration")]
    pub events: Option<Duration>,
    /// Every `agg_*` table, by window start.
    #[serde(default, with = "opt_duration")]
    pub aggregates: Option<Duration>,
    /// `alerts`, by the time the alert started firing.
    #[serde(default, with = "opt_duration")]
    pub alerts: Option<Duration>,
    /// `insights`, by window start.
    #[serde(default, with = "opt_duration")]
    pub insights: Option<Duration>,
    /// `dead_letters`, by the time the record was dead-lettered.
    #[serde(default, with = "opt_duration")]
    pub dead_letters: Option<Duration>,
}

const DAY: u64 = 86_400;

impl Retention {
    /// What each table of the embedded store keeps when the spec's `[retention]` does not
    /// say (ADR-016): raw events and dead letters 30 days, window results 400 days (a year
    /// to compare with), alerts and insights 180 days. Those of `deploy/helios.toml`.
    pub const DEFAULT: Retention = Retention {
        events: Some(Duration::from_secs(30 * DAY)),
        aggregates: Some(Duration::from_secs(400 * DAY)),
        alerts: Some(Duration::from_secs(180 * DAY)),
        insights: Some(Duration::from_secs(180 * DAY)),
        dead_letters: Some(Duration::from_secs(30 * DAY)),
    };

    /// Each table's own setting, else the one in `defaults`.
    pub fn or(self, defaults: &Retention) -> Retention {
        Retention {
            events: self.events.or(defaults.events),
            aggregates: self.aggregates.or(defaults.aggregates),
            alerts: self.alerts.or(defaults.alerts),
            insights: self.insights.or(defaults.insights),
            dead_letters: self.dead_letters.or(defaults.dead_letters),
        }
    }
}

/// What the store holds: the aggregates and the retention per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Aggregates from the pipeline spec.
    #[serde(default)]
    pub aggregates: Vec<AggregateSpec>,
    /// Retention per table.
    #[serde(default)]
    pub retention: Retention,
}

impl StoreSpec {
    /// The aggregate called `name`, if the spec has it.
    pub fn aggregate(&self, name: &str) -> Option<&AggregateSpec> {
        self.aggregates.iter().find(|a| a.name == name)
    }

    /// Checks names: identifiers of lowercase ASCII letters, digits and `_`, not starting
    /// with a digit, unique, and not clashing with the fixed aggregate columns.
    pub fn validate(&self) -> Result<()> {
        let mut names = BTreeSet::new();
        for agg in &self.aggregates {
            check_identifier("aggregate name", &agg.name)?;
            if !names.insert(agg.name.as_str()) {
                return Err(SinkError::config(
                    "aggregate declared twice",
                    &agg.name,
                    "give each aggregate a unique name",
                ));
            }
            let mut columns = BTreeSet::new();
            for col in agg.group_by.iter().chain(&agg.measures) {
                check_identifier("group key or measure name", col)?;
                if AGGREGATE_FIXED_COLUMNS.contains(&col.as_str()) {
                    return Err(SinkError::config(
                        format!("aggregate `{}` uses a reserved column name", agg.name),
                        col,
                        "rename it; id, window_start, window_end, count, version and final are taken",
                    ));
                }
                if !columns.insert(col.as_str()) {
                    return Err(SinkError::config(
                        format!("aggregate `{}` names a column twice", agg.name),
                        col,
                        "group keys and measures must have distinct names",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_identifier(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SinkError::config(
            format!("{what} is not a plain identifier"),
            name,
            "use 1 to 64 lowercase ASCII letters, digits or `_`, not starting with a digit",
        ))
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(aggs: Vec<AggregateSpec>, ok: bool) {
        let spec = StoreSpec {
            aggregates: aggs,
            ..StoreSpec::default()
        };
        assert_eq!(spec.validate().is_ok(), ok, "{spec:?}");
    }

    #[test]
    fn unset_tables_take_the_default_and_set_ones_keep_theirs() {
        let own = Retention {
            events: Some(Duration::from_secs(3 * DAY)),
            ..Retention::default()
        };
        let merged = own.or(&Retention::DEFAULT);
        assert_eq!(merged.events, Some(Duration::from_secs(3 * DAY)));
        assert_eq!(merged.aggregates, Retention::DEFAULT.aggregates);
        assert_eq!(merged.dead_letters, Some(Duration::from_secs(30 * DAY)));
        assert_eq!(
            Retention::default().or(&Retention::DEFAULT),
            Retention::DEFAULT
        );
    }

    #[test]
    fn validate_names() {
        check(
            vec![AggregateSpec::new("ci_runs", &["repo"], &["duration"])],
            true,
        );
        check(vec![AggregateSpec::new("CI", &[], &[])], false);
        check(vec![AggregateSpec::new("x; DROP", &[], &[])], false);
        check(vec![AggregateSpec::new("a", &["final"], &[])], false);
        check(vec![AggregateSpec::new("a", &["k"], &["k"])], false);
        check(
            vec![
                AggregateSpec::new("a", &[], &[]),
                AggregateSpec::new("a", &[], &[]),
            ],
            false,
        );
        check(vec![AggregateSpec::new("1a", &[], &[])], false);
    }
}
