//! How the windows of an aggregate combine into a coarser step, a whole range or several
//! groups ("other"): counts and sums add, min and max keep the extreme, first and last keep
//! the earliest and latest window's value, and averages are weighted by each window's
//! event count. Distinct counts and quantiles cannot be combined; asking for that is a 400
//! that says how to ask instead.
//!
//! Sums, extremes and count-weighted averages arrive pre-combined per cell from the store
//! (`GROUP BY`), so a sum of fractional values may differ between the stores in its last
//! bits (their addition order differs); counts and exactly representable values are
//! identical. Window-by-window combining here runs in a fixed order (start, then id).

use crate::catalog::MeasureFunction;
use crate::error::{ApiError, Result};

/// One measure's windows, combined.
#[derive(Debug, Clone)]
pub struct Combined {
    function: MeasureFunction,
    windows: usize,
    sum: f64,
    weighted: f64,
    weight: f64,
    min: f64,
    max: f64,
    first: Option<(i64, f64)>,
    last: Option<(i64, f64)>,
}

impl Combined {
    pub fn new(function: MeasureFunction) -> Self {
        Combined {
            function,
            windows: 0,
            sum: 0.0,
            weighted: 0.0,
            weight: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: None,
            last: None,
        }
    }

    /// What the store combined already: `windows` windows with a value, their sum, least
    /// and greatest value, the sum of value × event count and the sum of event counts.
    /// For the functions that combine by sums and extremes (not first/last, distinct
    /// counts or quantiles).
    pub fn from_parts(
        function: MeasureFunction,
        windows: usize,
        sum: f64,
        min: f64,
        max: f64,
        weighted: f64,
        weight: f64,
    ) -> Self {
        Combined {
            function,
            windows,
            sum,
            weighted,
            weight,
            min,
            max,
            first: None,
            last: None,
        }
    }

    /// Adds one window's value; `count` is the window's event count, `start` its start.
    pub fn add(&mut self, start: i64, value: f64, count: i64) -> Result<(), NotCombinable> {
        if self.windows > 0 && !self.function.combines() {
            return Err(NotCombinable);
        }
        self.windows += 1;
        self.sum += value;
        self.weighted += value * count as f64;
        self.weight += count as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if self.first.is_none_or(|(s, _)| start < s) {
            self.first = Some((start, value));
        }
        if self.last.is_none_or(|(s, _)| start >= s) {
            self.last = Some((start, value));
        }
        Ok(())
    }

    /// Folds another combination in (for "other").
    pub fn merge(&mut self, other: &Combined) -> Result<(), NotCombinable> {
        if other.windows == 0 {
            return Ok(());
        }
        if self.windows > 0 && !self.function.combines() {
            return Err(NotCombinable);
        }
        self.windows += other.windows;
        self.sum += other.sum;
        self.weighted += other.weighted;
        self.weight += other.weight;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if let Some((s, v)) = other.first
            && self.first.is_none_or(|(f, _)| s < f)
        {
            self.first = Some((s, v));
        }
        if let Some((s, v)) = other.last
            && self.last.is_none_or(|(l, _)| s >= l)
        {
            self.last = Some((s, v));
        }
        Ok(())
    }

    /// The combined value; `None` when no window had one.
    pub fn value(&self) -> Option<f64> {
        if self.windows == 0 {
            return None;
        }
        Some(match self.function {
            MeasureFunction::Count | MeasureFunction::Sum => self.sum,
            MeasureFunction::Min => self.min,
            MeasureFunction::Max => self.max,
            MeasureFunction::Avg if self.weight > 0.0 => self.weighted / self.weight,
            MeasureFunction::Avg => self.sum / self.windows as f64,
            MeasureFunction::First => self.first.map_or(f64::NAN, |(_, v)| v),
            MeasureFunction::Last => self.last.map_or(f64::NAN, |(_, v)| v),
            // One window only (enforced by `add`).
            MeasureFunction::CountDistinct | MeasureFunction::Quantile => self.sum,
        })
    }
}

/// Several windows met where the measure cannot combine them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCombinable;

impl NotCombinable {
    /// The 400 for `measure` of `aggregate`, with what to ask instead.
    pub fn error(self, aggregate: &str, measure: &str, function: MeasureFunction) -> ApiError {
        let f = serde_json::to_value(function)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        ApiError::bad(
            format!(
                "`{measure}` of `{aggregate}` is a {f}, which cannot be combined across windows or groups"
            ),
            "ask for one window per point (step = the window size) and one group per series (group_by, or a filter such as subject=...)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined(f: MeasureFunction, values: &[(i64, f64, i64)]) -> Option<f64> {
        let mut c = Combined::new(f);
        for &(s, v, n) in values {
            c.add(s, v, n).unwrap();
        }
        c.value()
    }

    #[test]
    fn each_function_combines_its_own_way() {
        let w = [(0, 2.0, 1), (10, 4.0, 3)];
        assert_eq!(combined(MeasureFunction::Count, &w), Some(6.0));
        assert_eq!(combined(MeasureFunction::Sum, &w), Some(6.0));
        assert_eq!(combined(MeasureFunction::Min, &w), Some(2.0));
        assert_eq!(combined(MeasureFunction::Max, &w), Some(4.0));
        assert_eq!(combined(MeasureFunction::Avg, &w), Some(3.5));
        assert_eq!(combined(MeasureFunction::First, &w), Some(2.0));
        assert_eq!(combined(MeasureFunction::Last, &w), Some(4.0));
        assert_eq!(combined(MeasureFunction::Sum, &[]), None);
    }

    #[test]
    fn quantiles_do_not_combine() {
        let mut c = Combined::new(MeasureFunction::Quantile);
        c.add(0, 1.0, 1).unwrap();
        assert_eq!(c.add(10, 2.0, 1), Err(NotCombinable));
        let mut other = Combined::new(MeasureFunction::Quantile);
        other.add(0, 3.0, 1).unwrap();
        assert_eq!(c.merge(&other), Err(NotCombinable));
    }

    #[test]
    fn merging_equals_adding() {
        let mut a = Combined::new(MeasureFunction::Avg);
        a.add(0, 1.0, 1).unwrap();
        let mut b = Combined::new(MeasureFunction::Avg);
        b.add(5, 4.0, 2).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.value(), Some(3.0));
    }
}
