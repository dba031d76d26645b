//! What the API knows about the store's aggregates: their group keys, their measures with
//! the function that made each (which decides how windows combine into a coarser step or a
//! range), and their window. The binary builds it from the pipeline spec, so the insights
//! routes accept exactly the names the spec declares and nothing else reaches SQL.

use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Result};

/// The aggregates the store holds.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Catalog {
    pub aggregates: Vec<AggregateInfo>,
}

impl Catalog {
    /// The aggregate `name`, or a 404 naming the ones that exist.
    pub fn aggregate(&self, name: &str) -> Result<&AggregateInfo> {
        self.aggregates
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| {
                ApiError::not_found(
                    format!("there is no aggregate `{name}`"),
                    format!(
                        "aggregates: {} (GET /v1/aggregates lists them with their measures)",
                        list(self.aggregates.iter().map(|a| a.name.as_str()))
                    ),
                )
            })
    }

    /// The store spec the sinks and readers use for these aggregates.
    pub fn store_tables(&self) -> Vec<helios_sinks::AggregateSpec> {
        self.aggregates
            .iter()
            .map(|a| helios_sinks::AggregateSpec {
                name: a.name.clone(),
                group_by: a.group_by.clone(),
                measures: a.measures.iter().map(|m| m.name.clone()).collect(),
                // Reads need the tables only; the sink derives late events' windows.
                window: None,
            })
            .collect()
    }
}

/// One aggregate: table `agg_<name>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AggregateInfo {
    pub name: String,
    pub group_by: Vec<String>,
    pub measures: Vec<MeasureInfo>,
    pub window: WindowInfo,
}

impl AggregateInfo {
    /// The measure `name`, or a 404 naming the ones that exist.
    pub fn measure(&self, name: &str) -> Result<&MeasureInfo> {
        self.measures
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                ApiError::not_found(
                    format!("aggregate `{}` has no measure `{name}`", self.name),
                    format!(
                        "measures of `{}`: {}",
                        self.name,
                        list(self.measures.iter().map(|m| m.name.as_str()))
                    ),
                )
            })
    }

    /// Checks that `key` is one of the group keys.
    pub fn group_key<'a>(&self, key: &'a str) -> Result<&'a str> {
        if self.group_by.iter().any(|k| k == key) {
            Ok(key)
        } else {
            Err(ApiError::bad(
                format!("aggregate `{}` is not grouped by `{key}`", self.name),
                format!(
                    "group keys of `{}`: {}",
                    self.name,
                    list(self.group_by.iter().map(String::as_str))
                ),
            ))
        }
    }

    /// The table holding the results.
    pub fn table(&self) -> String {
        format!("agg_{}", self.name)
    }
}

/// One measure and the function that computes it per window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MeasureInfo {
    pub name: String,
    pub function: MeasureFunction,
}

/// The aggregate function of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MeasureFunction {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    CountDistinct,
    Quantile,
    First,
    Last,
}

impl MeasureFunction {
    /// Whether values of several windows can be combined into one exactly (or, for `avg`,
    /// weighted by each window's event count). Distinct counts and quantiles cannot.
    pub fn combines(self) -> bool {
        !matches!(
            self,
            MeasureFunction::CountDistinct | MeasureFunction::Quantile
        )
    }
}

/// The window of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct WindowInfo {
    #[serde(rename = "type")]
    pub kind: WindowKind,
    /// Window length (tumbling, hopping) or inactivity gap (session), in seconds.
    pub size_seconds: u64,
    /// How far consecutive hopping windows start apart; the size otherwise.
    pub slide_seconds: u64,
}

/// Window shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Tumbling,
    Hopping,
    Session,
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}
