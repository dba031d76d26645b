//! Insights: anomalies, week-over-week trends and activity streaks found in the final
//! results of one aggregate, as `Insight` records.
//!
//! Like the other operators this is a pure state machine: final `WindowResult`s (and,
//! optionally, the event-time watermark) go in, insights come out; no clock is read and
//! every insight id is a hash of what it is about, so a replay yields the same records.
//! A *series* is one measure of one group of the aggregate.
//!
//! - **Anomaly** (per series): an exponentially weighted mean and variance of the measure
//!   over its windows. After `min_history` windows, a value whose z-score against the mean
//!   and variance *before* it reaches `threshold` is reported; every value then updates
//!   them. With the MAD method the score is 0.6745 × (x − median) / MAD over the series'
//!   latest `history` values before it instead.
//! - **Trend** (per series): the sum of the measure over the windows that start in a
//!   calendar week (Monday 00:00 UTC) against the week before. Reported once the week is
//!   over when the relative change reaches `trend_change`, and the series had data from the
//!   first day of the earlier week on (a partial first week is not a trend).
//! - **Streak** (per group): consecutive UTC days with a window that has events. Reported
//!   once when a streak reaches `streak_days` days, and once when such a streak ends (a
//!   whole day without events).
//!
//! A day or week is over when the results of every window that started in it have been
//! seen: results arrive in window-end order, and [`InsightOperator::on_watermark`] tells
//! the operator when no more results can end before a time. (Streak days assume windows of
//! at most a day.) A series not updated for 28 days is forgotten (its warm-up starts over).
//!
//! Which detectors run and how sensitive they are is the aggregate's `insights` in the spec
//! ([`InsightConfig`]): per aggregate the streak length and the trend period, per measure
//! the anomaly threshold and minimum history and the trend's minimum change, any of them
//! off. The defaults are the behaviour described above.

use std::collections::BTreeMap;

use helios_schemas::{Insight, InsightKind, WindowResult};
use serde::{Deserialize, Serialize};

use crate::ids::IdBuilder;
use crate::rules::pairs;
use crate::spec::Aggregate;

const DAY: i64 = 86_400_000_000;
const WEEK: i64 = 7 * DAY;
/// Series not updated for this long are dropped.
const FORGET_AFTER: i64 = 28 * DAY;

/// The detectors' fixed constants, part of the checkpoint format. Only `alpha` and
/// `min_spread` are read: thresholds, history, trend and streak settings come from the
/// spec ([`InsightConfig`]); the other fields stay so checkpoints keep their layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsightSettings {
    /// EWMA smoothing factor in (0, 1]: the weight of the newest window. Default 0.2.
    pub alpha: f64,
    /// |z| at or above this is an anomaly. Default 3.
    pub z_threshold: f64,
    /// Windows of a series seen before anomalies are reported. Default 10.
    pub warmup: u64,
    /// The spread of a series is taken as at least this fraction of |mean|, so that a
    /// perfectly flat series does not turn any small move into an anomaly. Default 0.05.
    pub min_spread: f64,
    /// Relative week-over-week change reported as a trend (0.5 = ±50 %). Default 0.5.
    pub trend_change: f64,
    /// Consecutive active days reported as a streak. Default 5.
    pub streak_days: i64,
}

impl Default for InsightSettings {
    fn default() -> Self {
        InsightSettings {
            alpha: 0.2,
            z_threshold: 3.0,
            warmup: 10,
            min_spread: 0.05,
            trend_change: 0.5,
            streak_days: 5,
        }
    }
}

/// How the anomaly detector scores a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyMethod {
    /// Against the exponentially weighted mean and standard deviation of the series.
    ZScore,
    /// Against the median of the series' last `history` values and their median absolute
    /// deviation (MAD): 0.6745 × (x − median) / MAD, robust to earlier outliers.
    Mad,
}

impl AnomalyMethod {
    /// The threshold when the spec names the method but no threshold: 3 standard
    /// deviations; 3.5 for the MAD score (Iglewicz and Hoaglin).
    pub fn default_threshold(self) -> f64 {
        match self {
            AnomalyMethod::ZScore => 3.0,
            AnomalyMethod::Mad => 3.5,
        }
    }
}

/// The anomaly detector of one measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyConfig {
    /// Default z-score.
    pub method: AnomalyMethod,
    /// |score| at or above this is an anomaly. Default 3 (z-score), 3.5 (MAD).
    pub threshold: f64,
    /// Windows of a series seen before anomalies are reported. Default 10.
    pub min_history: u64,
    /// Values the MAD method keeps per series (the latest). Default 30.
    pub history: u64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            method: AnomalyMethod::ZScore,
            threshold: 3.0,
            min_history: 10,
            history: 30,
        }
    }
}

/// The measure name of the companion series that keeps a series' latest values for the
/// MAD method (in `weeks`, by sequence number). A companion entry of the same map keeps
/// the checkpoint layout of the operator unchanged; `\0` cannot start a measure name.
fn recent_name(measure: &str) -> String {
    format!("\0recent\0{measure}")
}

fn is_companion(measure: &str) -> bool {
    measure.starts_with('\0')
}

/// Median of a non-empty, sorted slice.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The MAD score of `x` against `recent` (values in order), and the median; `None`
/// without values. A MAD of zero (a flat series) is floored at `min_spread` × |median|
/// like the z-score's spread, so a flat series does not turn every move into an anomaly.
fn mad_score(recent: &BTreeMap<i64, f64>, x: f64, min_spread: f64) -> Option<(f64, f64)> {
    if recent.is_empty() {
        return None;
    }
    let mut values: Vec<f64> = recent.values().copied().collect();
    values.sort_by(f64::total_cmp);
    let m = median(&values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median(&deviations)
        .max(min_spread * m.abs() * 0.6745)
        .max(1e-9);
    Some((0.6745 * (x - m) / mad, m))
}

/// The trend detector of one measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Relative change between two periods reported as a trend (0.5 = ±50 %). Default 0.5.
    pub min_change: f64,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig { min_change: 0.5 }
    }
}

/// The detectors of one measure; `None` is off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureConfig {
    pub anomaly: Option<AnomalyConfig>,
    pub trend: Option<TrendConfig>,
}

/// Which detectors run over an aggregate's results and how sensitive they are (the
/// aggregate's `insights` in the spec). The default is what every aggregate had before
/// the settings existed.
#[derive(Debug, Clone, PartialEq)]
pub struct InsightConfig {
    /// Detectors of measures without their own entry in `measures`.
    pub default: MeasureConfig,
    /// Per measure, resolved (the aggregate's settings with the measure's on top).
    pub measures: BTreeMap<String, MeasureConfig>,
    /// The trend period (µs): a calendar week from Monday 00:00 UTC by default; other
    /// periods are counted from the same Monday, 1970-01-05.
    pub trend_period_us: i64,
    /// Consecutive active days reported as a streak; `None` is off. Default 5.
    pub streak_days: Option<i64>,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            default: MeasureConfig {
                anomaly: Some(AnomalyConfig::default()),
                trend: Some(TrendConfig::default()),
            },
            measures: BTreeMap::new(),
            trend_period_us: WEEK,
            streak_days: Some(5),
        }
    }
}

impl InsightConfig {
    /// Every detector off (`insights = false`).
    pub fn off() -> Self {
        InsightConfig {
            default: MeasureConfig {
                anomaly: None,
                trend: None,
            },
            measures: BTreeMap::new(),
            trend_period_us: WEEK,
            streak_days: None,
        }
    }

    /// The detectors of `measure`.
    pub fn measure(&self, measure: &str) -> &MeasureConfig {
        self.measures.get(measure).unwrap_or(&self.default)
    }

    /// Whether nothing runs at all.
    pub fn is_off(&self) -> bool {
        self.streak_days.is_none()
            && [&self.default]
                .into_iter()
                .chain(self.measures.values())
                .all(|m| m.anomaly.is_none() && m.trend.is_none())
    }
}

type Group = BTreeMap<String, String>;

/// One measure of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Series {
    /// Windows seen.
    n: u64,
    mean: f64,
    var: f64,
    /// End of the latest window seen; older or repeated results are ignored.
    last_end: i64,
    /// Start of the first window seen.
    first_start: i64,
    /// Week number -> sum of the measure over windows starting in it (the last two weeks).
    weeks: BTreeMap<i64, f64>,
}

/// The current run of active days of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Streak {
    first_day: i64,
    last_day: i64,
    reported: bool,
}

/// The insight detectors of one aggregate. All of it is state: serialize it as is for a
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsightOperator {
    aggregate: String,
    lateness_us: i64,
    settings: InsightSettings,
    /// Every window ending at or before this has been seen (µs).
    progress: i64,
    /// Days before this one (day number) have been checked for broken streaks.
    days_checked: i64,
    /// Weeks up to this one (week number) have been compared with the week before.
    weeks_checked: i64,
    #[serde(with = "pairs")]
    series: BTreeMap<(Group, String), Series>,
    #[serde(with = "pairs")]
    streaks: BTreeMap<Group, Streak>,
    /// From the spec, not the checkpoint: a restored operator takes the running spec's
    /// settings ([`InsightOperator::resume`]), so the checkpoint format is unchanged.
    #[serde(skip)]
    config: InsightConfig,
    /// Groups followed at most: the aggregate's `max_open_windows` (from the spec; set
    /// again by [`InsightOperator::resume`]).
    #[serde(skip, default = "default_max_groups")]
    max_groups: usize,
    /// Groups followed now (with a series or a streak); counted again from the state
    /// where it is forgotten or restored.
    #[serde(skip)]
    groups: usize,
    /// Final results of groups not followed (past `max_groups`) since the last
    /// [`InsightOperator::take_unfollowed`], for a metric.
    #[serde(skip)]
    unfollowed: u64,
}

/// Period number of a time: periods of `period` µs counted from Monday 1970-01-05 00:00
/// UTC (the epoch was a Thursday), so weekly periods are calendar weeks.
fn week_of(t: i64, period: i64) -> i64 {
    t.saturating_add(3 * DAY).div_euclid(period)
}

fn week_start(week: i64, period: i64) -> i64 {
    week.saturating_mul(period).saturating_sub(3 * DAY)
}

fn default_max_groups() -> usize {
    crate::spec::DEFAULT_MAX_STATE_KEYS
}

impl InsightOperator {
    pub fn new(aggregate: &Aggregate, settings: InsightSettings) -> Self {
        InsightOperator {
            aggregate: aggregate.name.clone(),
            lateness_us: i64::try_from(aggregate.allowed_lateness.as_micros()).unwrap_or(i64::MAX),
            settings,
            progress: i64::MIN,
            days_checked: i64::MIN,
            weeks_checked: i64::MIN,
            series: BTreeMap::new(),
            streaks: BTreeMap::new(),
            config: aggregate.insights.clone(),
            max_groups: aggregate.max_open_windows,
            groups: 0,
            unfollowed: 0,
        }
    }

    /// Takes the state of `saved` (a checkpoint's) and keeps this operator's settings.
    pub fn resume(&mut self, saved: InsightOperator) {
        let config = std::mem::take(&mut self.config);
        let max_groups = self.max_groups;
        *self = saved;
        self.config = config;
        self.max_groups = max_groups;
        self.groups = self.count_groups();
    }

    /// Final results the detectors did not follow (their group past the bound) since the
    /// last call.
    pub fn take_unfollowed(&mut self) -> u64 {
        std::mem::take(&mut self.unfollowed)
    }

    /// Groups the detectors follow now, and at most (ADR-021): past the bound a new
    /// group's results are not followed, so no stream of new keys grows the detectors'
    /// state over the 28 days a series is kept.
    pub fn groups(&self) -> (usize, usize) {
        (self.groups, self.max_groups)
    }

    /// Whether `group` has a series or a streak.
    fn follows(&self, group: &Group) -> bool {
        self.streaks.contains_key(group) || self.has_series(group)
    }

    /// Whether `group` has a series (series are ordered by group, then measure).
    fn has_series(&self, group: &Group) -> bool {
        self.series
            .range((group.clone(), String::new())..)
            .next()
            .is_some_and(|((g, _), _)| g == group)
    }

    /// The groups with a series or a streak (series are ordered by group).
    fn count_groups(&self) -> usize {
        let mut n = 0;
        let mut last: Option<&Group> = None;
        for (g, _) in self.series.keys() {
            if last != Some(g) {
                n += 1;
                last = Some(g);
            }
        }
        let streak_only = self.streaks.keys().filter(|g| !self.has_series(g)).count();
        n + streak_only
    }

    /// The settings the detectors run with.
    pub fn config(&self) -> &InsightConfig {
        &self.config
    }

    pub fn aggregate(&self) -> &str {
        &self.aggregate
    }

    /// Series currently tracked (for metrics and memory bounds).
    pub fn series(&self) -> usize {
        self.series.keys().filter(|(_, m)| !is_companion(m)).count()
    }

    /// Takes one result of the aggregate. Only final results count; early ones, results
    /// of other aggregates and repeats are ignored.
    pub fn on_result(&mut self, result: &WindowResult, out: &mut Vec<Insight>) {
        if !result.is_final || result.aggregate != self.aggregate || self.config.is_off() {
            return;
        }
        // Results come in window-end order: every window ending before this one was seen.
        self.advance(result.window_end.saturating_sub(1), out);
        let followed = self.follows(&result.group);
        if !followed && self.groups >= self.max_groups {
            self.unfollowed += 1;
            return;
        }
        for (measure, value) in &result.measures {
            if value.is_finite() {
                self.observe(result, measure, *value, out);
            }
        }
        if result.count > 0 && self.config.streak_days.is_some() {
            self.activity(result, out);
        }
        if !followed && self.follows(&result.group) {
            self.groups += 1;
        }
    }

    /// The smallest watermark at which [`Self::on_watermark`] would report something: the
    /// end of the day that ends a streak, or of the week whose trend is due; `None` when
    /// there is no streak and no series.
    pub fn next_deadline(&self) -> Option<i64> {
        let day = (!self.streaks.is_empty())
            .then(|| self.days_checked.saturating_add(1).saturating_mul(DAY));
        let period = self.config.trend_period_us;
        let week = (!self.series.is_empty())
            .then(|| week_start(self.weeks_checked.saturating_add(2), period));
        day.into_iter().chain(week).min().map(|progress| {
            progress
                .max(self.progress.saturating_add(1))
                .saturating_add(self.lateness_us)
        })
    }

    /// The watermark given to the aggregate's window operator: all its windows ending at or
    /// before watermark − allowed lateness are final and have been passed in.
    pub fn on_watermark(&mut self, watermark: i64, out: &mut Vec<Insight>) {
        self.advance(watermark.saturating_sub(self.lateness_us), out);
    }

    fn observe(&mut self, r: &WindowResult, measure: &str, x: f64, out: &mut Vec<Insight>) {
        let s = &self.settings;
        let (alpha, min_spread) = (s.alpha, s.min_spread);
        let detectors = *self.config.measure(measure);
        if detectors.anomaly.is_none() && detectors.trend.is_none() {
            return;
        }
        let period = self.config.trend_period_us;
        let key = (r.group.clone(), measure.to_string());
        let series = self.series.entry(key.clone()).or_insert_with(|| Series {
            n: 0,
            mean: 0.0,
            var: 0.0,
            last_end: i64::MIN,
            first_start: r.window_start,
            weeks: BTreeMap::new(),
        });
        if r.window_end <= series.last_end {
            return;
        }
        series.last_end = r.window_end;
        let (n, mean, var) = (series.n, series.mean, series.var);
        let mad = detectors.anomaly.filter(|a| a.method == AnomalyMethod::Mad);
        let recent_key = mad.map(|_| (r.group.clone(), recent_name(measure)));
        if let Some(anomaly) = detectors.anomaly
            && n >= anomaly.min_history
        {
            let scored = match anomaly.method {
                AnomalyMethod::ZScore => {
                    let spread = var.sqrt().max(min_spread * mean.abs()).max(1e-9);
                    Some(((x - mean) / spread, mean, "standard deviations", "mean"))
                }
                // As much history of its own as the method asks for (a series that ran
                // with the z-score before has none yet).
                AnomalyMethod::Mad => recent_key
                    .as_ref()
                    .and_then(|k| self.series.get(k))
                    .filter(|c| c.weeks.len() as u64 >= anomaly.min_history.min(anomaly.history))
                    .and_then(|c| mad_score(&c.weeks, x, min_spread))
                    .map(|(z, m)| (z, m, "median absolute deviations", "median")),
            };
            if let Some((z, center, unit, center_name)) = scored
                && z.abs() >= anomaly.threshold
            {
                let summary = format!(
                    "{measure} of {} for {} was {} in the window {}–{}, {:.1} {unit} {} its recent {center_name} of {}",
                    self.aggregate,
                    describe(&r.group),
                    num(x),
                    time(r.window_start),
                    time(r.window_end),
                    z.abs(),
                    if z > 0.0 { "above" } else { "below" },
                    num(center),
                );
                out.push(Insight {
                    id: insight_id(
                        "anomaly",
                        &self.aggregate,
                        &r.group,
                        measure,
                        r.window_start,
                        r.window_end,
                    ),
                    kind: InsightKind::Anomaly,
                    aggregate: self.aggregate.clone(),
                    group: r.group.clone(),
                    measure: measure.to_string(),
                    window_start: r.window_start,
                    window_end: r.window_end,
                    value: x,
                    score: z,
                    summary,
                    at: r.window_end,
                });
            }
        }
        if let (Some(anomaly), Some(recent_key)) = (mad, recent_key) {
            let companion = self.series.entry(recent_key).or_insert_with(|| Series {
                n: 0,
                mean: 0.0,
                var: 0.0,
                last_end: i64::MIN,
                first_start: r.window_start,
                weeks: BTreeMap::new(),
            });
            companion.last_end = r.window_end;
            companion.weeks.insert(companion.n as i64, x);
            companion.n += 1;
            while companion.weeks.len() as u64 > anomaly.history {
                companion.weeks.pop_first();
            }
        }
        let Some(series) = self.series.get_mut(&key) else {
            return;
        };
        // West's incremental EWMA of mean and variance.
        if series.n == 0 {
            series.mean = x;
            series.var = 0.0;
        } else {
            let diff = x - series.mean;
            let incr = alpha * diff;
            series.mean += incr;
            series.var = (1.0 - alpha) * (series.var + diff * incr);
        }
        series.n += 1;
        *series
            .weeks
            .entry(week_of(r.window_start, period))
            .or_insert(0.0) += x;
    }

    fn activity(&mut self, r: &WindowResult, out: &mut Vec<Insight>) {
        let day = r.window_start.div_euclid(DAY);
        let streak = self.streaks.entry(r.group.clone()).or_insert(Streak {
            first_day: day,
            last_day: day,
            reported: false,
        });
        if day > streak.last_day.saturating_add(1) {
            // A gap the watermark did not show yet: the old streak ended.
            let ended = streak.clone();
            *streak = Streak {
                first_day: day,
                last_day: day,
                reported: false,
            };
            if ended.reported {
                out.push(self.streak_ended(&r.group, &ended));
            }
        } else if day > streak.last_day {
            streak.last_day = day;
        }
        let Some(streak) = self.streaks.get_mut(&r.group) else {
            return;
        };
        let days = streak.last_day - streak.first_day + 1;
        let wanted = self.config.streak_days.unwrap_or(i64::MAX);
        if !streak.reported && days >= wanted {
            streak.reported = true;
            let streak = streak.clone();
            out.push(self.streak_insight(
                &r.group,
                &streak,
                "reached",
                format!(
                    "{} of {} has had events on {days} consecutive days, since {}",
                    describe(&r.group),
                    self.aggregate,
                    date(streak.first_day)
                ),
                r.window_end,
            ));
        }
    }

    /// Moves `progress` forward and reports what became final: broken streaks at each new
    /// day, trends at each new week.
    fn advance(&mut self, progress: i64, out: &mut Vec<Insight>) {
        if progress <= self.progress {
            return;
        }
        self.progress = progress;
        // Day d is over once every window ending by the start of day d + 1 was seen.
        let days_over = progress.div_euclid(DAY);
        if days_over > self.days_checked {
            self.days_checked = days_over;
            let ended: Vec<(Group, Streak)> = self
                .streaks
                .iter()
                .filter(|(_, s)| s.last_day.saturating_add(1) < days_over)
                .map(|(g, s)| (g.clone(), s.clone()))
                .collect();
            for (group, streak) in ended {
                self.streaks.remove(&group);
                if streak.reported {
                    out.push(self.streak_ended(&group, &streak));
                }
            }
            // Long trend periods keep their series for three periods.
            let keep = FORGET_AFTER.max(self.config.trend_period_us.saturating_mul(3));
            let horizon = progress.saturating_sub(keep);
            self.series.retain(|_, s| s.last_end >= horizon);
            self.groups = self.count_groups();
        }
        let last_week_over = week_of(progress, self.config.trend_period_us) - 1;
        if last_week_over > self.weeks_checked {
            let from = self.weeks_checked.saturating_add(1);
            self.weeks_checked = last_week_over;
            self.trends(from, last_week_over, out);
        }
    }

    /// Compares each series' weeks in `from..=to` with the week before.
    fn trends(&mut self, from: i64, to: i64, out: &mut Vec<Insight>) {
        let period = self.config.trend_period_us;
        // A series must have data from the first seventh of the earlier period on (the
        // first day of a week).
        let grace = (period / 7).max(1);
        for ((group, measure), series) in &mut self.series {
            if is_companion(measure) {
                continue;
            }
            let threshold = self.config.measure(measure).trend.map(|t| t.min_change);
            let mut weeks: Vec<i64> = series
                .weeks
                .keys()
                .flat_map(|w| [*w, w.saturating_add(1)])
                .filter(|w| (from..=to).contains(w))
                .collect();
            weeks.dedup();
            for week in weeks {
                let earlier = series.weeks.get(&(week - 1)).copied().unwrap_or(0.0);
                let this = series.weeks.get(&week).copied().unwrap_or(0.0);
                let complete =
                    series.first_start < week_start(week - 1, period).saturating_add(grace);
                let Some(threshold) = threshold else {
                    continue;
                };
                if earlier <= 0.0 || !complete {
                    continue;
                }
                let change = this / earlier - 1.0;
                if change.abs() < threshold {
                    continue;
                }
                let (start, end) = (week_start(week, period), week_start(week + 1, period));
                let when = if period == WEEK {
                    format!("the week of {}", date(start.div_euclid(DAY)))
                } else {
                    format!("the {} from {}", span(period), time(start))
                };
                out.push(Insight {
                    id: insight_id("trend", &self.aggregate, group, measure, start, end),
                    kind: InsightKind::Trend,
                    aggregate: self.aggregate.clone(),
                    group: group.clone(),
                    measure: measure.clone(),
                    window_start: start,
                    window_end: end,
                    value: this,
                    score: change,
                    summary: format!(
                        "{measure} of {} for {}: {} in {when}, {}{:.0} % against {} the {} before",
                        self.aggregate,
                        describe(group),
                        num(this),
                        if change > 0.0 { "+" } else { "" },
                        change * 100.0,
                        num(earlier),
                        if period == WEEK {
                            "week".to_string()
                        } else {
                            span(period)
                        },
                    ),
                    at: end,
                });
            }
            // Only the last week over is still needed, as the earlier week of the next.
            series.weeks.retain(|w, _| *w >= to);
        }
    }

    fn streak_ended(&self, group: &Group, streak: &Streak) -> Insight {
        let days = streak.last_day - streak.first_day + 1;
        self.streak_insight(
            group,
            streak,
            "ended",
            format!(
                "{} of {}: the streak of {days} consecutive days with events ended, none on {}",
                describe(group),
                self.aggregate,
                date(streak.last_day.saturating_add(1))
            ),
            streak.last_day.saturating_add(2).saturating_mul(DAY),
        )
    }

    fn streak_insight(
        &self,
        group: &Group,
        streak: &Streak,
        what: &str,
        summary: String,
        at: i64,
    ) -> Insight {
        let days = streak.last_day - streak.first_day + 1;
        let start = streak.first_day.saturating_mul(DAY);
        Insight {
            id: insight_id("streak", &self.aggregate, group, what, start, start),
            kind: InsightKind::Streak,
            aggregate: self.aggregate.clone(),
            group: group.clone(),
            measure: "count".to_string(),
            window_start: start,
            window_end: streak.last_day.saturating_add(1).saturating_mul(DAY),
            value: days as f64,
            score: days as f64,
            summary,
            at,
        }
    }
}

/// Deterministic id of an insight: what it is, where, and when.
pub fn insight_id(
    kind: &str,
    aggregate: &str,
    group: &Group,
    measure: &str,
    start: i64,
    end: i64,
) -> String {
    let mut id = IdBuilder::new()
        .prefixed(kind)
        .prefixed(aggregate)
        .prefixed(measure);
    for (k, v) in group {
        id = id.prefixed(k).prefixed(v);
    }
    id.int(start).int(end).finish()
}

fn describe(group: &Group) -> String {
    if group.is_empty() {
        return "all events".to_string();
    }
    group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A period in words, e.g. `1day` or `6h`.
fn span(us: i64) -> String {
    humantime::format_duration(std::time::Duration::from_micros(us.max(0) as u64)).to_string()
}

/// Integers without decimals, other numbers with two.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), proleptic Gregorian.
fn date(day: i64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM` (UTC) of a time in µs.
fn time(t: i64) -> String {
    let minutes = t.div_euclid(60_000_000);
    let day = minutes.div_euclid(1440);
    let m = minutes.rem_euclid(1440);
    format!("{} {:02}:{:02}", date(day), m / 60, m % 60)
}

#[cfg(test)]
mod tests;
