//! The backtest report, built while the output topics are read once: per rule the alerts
//! and their difference from the baseline, per aggregate the windows and the largest
//! differences, per insight detector what it said, and how fast the events went through.
//!
//! Memory is bounded by what is reported: alerts and insights (a handful per group),
//! one entry per group and aggregate, the top `limit` changes, and with a baseline one
//! entry per baseline window to compare the new windows with.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use helios_log::{ConsumerConfig, Log, OffsetReset};
use helios_pipeline::runtime::RunSummary;
use helios_schemas::{Alert, AlertState, Insight, InsightKind, RecordCodec, WindowResult};
use serde_json::{Value, json};

use super::input::SourceInfo;
use super::{ALERT_ID, INSIGHT_ID, RESULT_ID, SideTopics};

/// Decoders of the scratch outputs.
pub struct Decoders {
    results: RecordCodec<WindowResult>,
    alerts: RecordCodec<Alert>,
    insights: RecordCodec<Insight>,
}

impl Decoders {
    pub fn new() -> Self {
        Decoders {
            results: RecordCodec::new(RESULT_ID),
            alerts: RecordCodec::new(ALERT_ID),
            insights: RecordCodec::new(INSIGHT_ID),
        }
    }
}

/// One alert: fired at `since`, resolved at `resolved` (if it did within the events).
#[derive(Debug, Clone, PartialEq)]
struct AlertLine {
    group: BTreeMap<String, String>,
    since: i64,
    resolved: Option<i64>,
    severity: String,
    summary: String,
}

/// Alerts of one rule by (group, since).
type Alerts = BTreeMap<(String, i64), AlertLine>;

/// A window whose measure differs between the baseline and the new spec.
#[derive(Debug, Clone)]
struct Change {
    window_start: i64,
    window_end: i64,
    group: String,
    measure: String,
    before: Option<f64>,
    after: f64,
}

impl Change {
    fn size(&self) -> f64 {
        match self.before {
            Some(b) => (self.after - b).abs(),
            None => self.after.abs(),
        }
    }
}

impl Change {
    /// What orders changes of equal size: the earlier window, then the group and measure.
    fn tie(&self) -> (i64, &str, &str) {
        (self.window_start, &self.group, &self.measure)
    }
}

/// The `limit` largest changes by a score; equal scores in [`Change::tie`] order, so the
/// list does not depend on the order the results were read in.
#[derive(Debug)]
struct TopK {
    limit: usize,
    items: Vec<(f64, Change)>,
}

impl TopK {
    fn new(limit: usize) -> Self {
        TopK {
            limit,
            items: Vec::new(),
        }
    }

    /// Offers the change `item` builds (only built when it makes the list), whose
    /// [`Change::tie`] is `tie`.
    fn offer(&mut self, score: f64, tie: (i64, &str, &str), item: impl FnOnce() -> Change) {
        if self.limit == 0 || !score.is_finite() {
            return;
        }
        // Whether a listed item goes before the offered one.
        let before = |(s, c): &(f64, Change)| match s.total_cmp(&score) {
            Ordering::Greater => true,
            Ordering::Less => false,
            Ordering::Equal => c.tie() <= tie,
        };
        if self.items.len() == self.limit && self.items.last().is_some_and(before) {
            return;
        }
        let at = self.items.partition_point(before);
        self.items.insert(at, (score, item()));
        self.items.truncate(self.limit);
    }
}

/// One aggregate's windows.
#[derive(Debug)]
struct AggregateReport {
    /// Final windows of the new spec.
    windows: u64,
    /// Early (not final) results of the new spec.
    early: u64,
    groups: HashSet<String>,
    /// Events in the new spec's final windows.
    events: i64,
    /// The new spec's busiest windows (by events).
    busiest: TopK,
    /// Final windows of the baseline; `None` when the baseline has no such aggregate.
    baseline_windows: Option<u64>,
    /// New windows the baseline has too (same aggregate, window and group).
    matched: u64,
    /// Matched windows with a measure or count that differs.
    differing: u64,
    /// New windows the baseline does not have.
    added: u64,
    changes: TopK,
}

/// One insight detector.
#[derive(Debug, Default)]
struct InsightReport {
    new: Vec<(i64, String, String)>,
    baseline: HashMap<String, (i64, String)>,
}

impl InsightReport {
    /// What the baseline said and the new spec does not, oldest first.
    fn removed(&self) -> Vec<&(i64, String)> {
        let new_ids: HashSet<&str> = self.new.iter().map(|(_, id, _)| id.as_str()).collect();
        let mut removed: Vec<&(i64, String)> = self
            .baseline
            .iter()
            .filter(|(id, _)| !new_ids.contains(id.as_str()))
            .map(|(_, v)| v)
            .collect();
        removed.sort();
        removed
    }
}

/// Totals of one processor run.
#[derive(Debug, Clone, Copy)]
struct RunInfo {
    events: u64,
    seconds: f64,
    /// CPU time of this process during the run.
    cpu_seconds: Option<f64>,
    results: u64,
    alerts: u64,
    insights: u64,
    late: u64,
    dead_letters: u64,
}

/// The whole report.
#[derive(Debug)]
pub struct Report {
    limit: usize,
    source: SourceInfo,
    runs: BTreeMap<String, RunInfo>,
    new_alerts: BTreeMap<String, Alerts>,
    baseline_alerts: BTreeMap<String, Alerts>,
    /// Baseline final windows by id: (count, measures), removed as the new ones match.
    baseline_windows: HashMap<String, (String, i64, BTreeMap<String, f64>)>,
    baseline_window_counts: BTreeMap<String, u64>,
    aggregates: BTreeMap<String, AggregateReport>,
    insights: BTreeMap<&'static str, InsightReport>,
    /// Filled by [`Report::finish`].
    spec: String,
    baseline: Option<String>,
    seconds: f64,
    cpu_seconds: Option<f64>,
}

fn kind_name(k: InsightKind) -> &'static str {
    match k {
        InsightKind::Anomaly => "anomaly",
        InsightKind::Trend => "trend",
        InsightKind::Streak => "streak",
    }
}

/// `k=v, k=v` of a group, `all` for none.
fn group_text(group: &BTreeMap<String, String>) -> String {
    if group.is_empty() {
        return "(all)".to_string();
    }
    let mut out = String::new();
    for (i, (k, v)) in group.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// RFC 3339 (UTC, to the millisecond) of µs since the epoch.
fn time(us: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// This process's CPU time so far (user + system), where the OS tells it.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s (USER_HZ) here.
    Some((user + system) / 100.0)
}

impl Report {
    pub fn new(limit: usize, source: SourceInfo) -> Self {
        Report {
            limit,
            source,
            runs: BTreeMap::new(),
            new_alerts: BTreeMap::new(),
            baseline_alerts: BTreeMap::new(),
            baseline_windows: HashMap::new(),
            baseline_window_counts: BTreeMap::new(),
            aggregates: BTreeMap::new(),
            insights: BTreeMap::new(),
            spec: String::new(),
            baseline: None,
            seconds: 0.0,
            cpu_seconds: None,
        }
    }

    pub fn add_run(&mut self, role: &str, s: &RunSummary, cpu_seconds: Option<f64>) {
        self.runs.insert(
            role.to_string(),
            RunInfo {
                events: s.metrics.events_in,
                seconds: s.elapsed.as_secs_f64(),
                cpu_seconds,
                results: s.metrics.results_out,
                alerts: s.metrics.alerts_out,
                insights: s.metrics.insights_out,
                late: s.metrics.late_events,
                dead_letters: s.metrics.dead_letters,
            },
        );
    }

    /// Reads one side's outputs: the baseline's are kept to compare with, the new
    /// spec's are compared as they are read.
    pub async fn read(
        &mut self,
        log: &Log,
        topics: &SideTopics,
        baseline: bool,
        codecs: &Decoders,
    ) -> anyhow::Result<()> {
        for_each(log, &topics.alerts, |bytes| {
            let a = codecs
                .alerts
                .decode(bytes)
                .context("decoding a scratch alert")?;
            let alerts = if baseline {
                &mut self.baseline_alerts
            } else {
                &mut self.new_alerts
            };
            let rule = alerts.entry(a.rule.clone()).or_default();
            let line = rule
                .entry((group_text(&a.group), a.since))
                .or_insert_with(|| AlertLine {
                    group: a.group.clone(),
                    since: a.since,
                    resolved: None,
                    severity: format!("{:?}", a.severity).to_lowercase(),
                    summary: String::new(),
                });
            match a.state {
                AlertState::Firing => line.summary = a.summary,
                AlertState::Resolved => line.resolved = Some(a.at),
            }
            Ok(())
        })
        .await?;
        for_each(log, &topics.aggregates, |bytes| {
            let r = super::results::decode(&codecs.results, bytes)
                .context("decoding a scratch window result")?;
            if baseline {
                if r.is_final {
                    *self
                        .baseline_window_counts
                        .entry(r.aggregate.clone())
                        .or_default() += 1;
                    self.baseline_windows
                        .insert(r.id, (r.aggregate, r.count, r.measures));
                }
            } else {
                self.window(r);
            }
            Ok(())
        })
        .await?;
        for_each(log, &topics.insights, |bytes| {
            let i = codecs
                .insights
                .decode(bytes)
                .context("decoding a scratch insight")?;
            let report = self.insights.entry(kind_name(i.kind)).or_default();
            if baseline {
                report.baseline.insert(i.id, (i.at, i.summary));
            } else {
                report.new.push((i.at, i.id, i.summary));
            }
            Ok(())
        })
        .await
    }

    /// One window result of the new spec.
    fn window(&mut self, r: WindowResult) {
        let limit = self.limit;
        let baseline_windows = self.baseline_window_counts.get(&r.aggregate).copied();
        let agg = self
            .aggregates
            .entry(r.aggregate.clone())
            .or_insert_with(|| AggregateReport {
                windows: 0,
                early: 0,
                groups: HashSet::new(),
                events: 0,
                busiest: TopK::new(limit),
                baseline_windows,
                matched: 0,
                differing: 0,
                added: 0,
                changes: TopK::new(limit),
            });
        if !r.is_final {
            agg.early += 1;
            return;
        }
        agg.windows += 1;
        agg.events += r.count;
        let group = group_text(&r.group);
        agg.busiest
            .offer(r.count as f64, (r.window_start, &group, "count"), || {
                Change {
                    window_start: r.window_start,
                    window_end: r.window_end,
                    group: group.clone(),
                    measure: "count".into(),
                    before: None,
                    after: r.count as f64,
                }
            });
        if agg.baseline_windows.is_some() {
            match self.baseline_windows.remove(&r.id) {
                Some((_, count, before)) => {
                    agg.matched += 1;
                    let mut differs = count != r.count;
                    for (m, after) in &r.measures {
                        let b = before.get(m).copied();
                        if b != Some(*after) {
                            differs = true;
                            let change = Change {
                                window_start: r.window_start,
                                window_end: r.window_end,
                                group: group.clone(),
                                measure: m.clone(),
                                before: b,
                                after: *after,
                            };
                            agg.changes
                                .offer(change.size(), change.tie(), || change.clone());
                        }
                    }
                    agg.differing += u64::from(differs);
                }
                None => {
                    agg.added += 1;
                    for (m, after) in &r.measures {
                        let change = Change {
                            window_start: r.window_start,
                            window_end: r.window_end,
                            group: group.clone(),
                            measure: m.clone(),
                            before: None,
                            after: *after,
                        };
                        agg.changes
                            .offer(change.size(), change.tie(), || change.clone());
                    }
                }
            }
        }
        if !agg.groups.contains(&group) {
            agg.groups.insert(group);
        }
    }

    pub fn finish(
        &mut self,
        elapsed: Duration,
        cpu_seconds: Option<f64>,
        spec: &Path,
        baseline: Option<&Path>,
    ) {
        self.seconds = elapsed.as_secs_f64();
        self.cpu_seconds = cpu_seconds;
        self.spec = spec.display().to_string();
        self.baseline = baseline.map(|b| b.display().to_string());
        for report in self.insights.values_mut() {
            report.new.sort();
        }
    }

    /// Baseline windows of `aggregate` the new spec did not produce.
    fn removed_windows(&self, aggregate: &str) -> u64 {
        self.baseline_windows
            .values()
            .filter(|(a, _, _)| a == aggregate)
            .count() as u64
    }

    /// Rules of either side, with (new, baseline) alerts.
    fn rules(&self) -> BTreeMap<&str, (Option<&Alerts>, Option<&Alerts>)> {
        let mut out: BTreeMap<&str, (Option<&Alerts>, Option<&Alerts>)> = BTreeMap::new();
        for (r, a) in &self.new_alerts {
            out.entry(r).or_default().0 = Some(a);
        }
        for (r, a) in &self.baseline_alerts {
            out.entry(r).or_default().1 = Some(a);
        }
        out
    }

    pub fn json(&self) -> Value {
        let alert = |a: &AlertLine| {
            json!({
                "group": a.group,
                "since": time(a.since),
                "since_us": a.since,
                "resolved": a.resolved.map(time),
                "resolved_us": a.resolved,
                "severity": a.severity,
                "summary": a.summary,
            })
        };
        let listed = |alerts: &mut dyn Iterator<Item = &AlertLine>| -> Vec<Value> {
            let mut v: Vec<&AlertLine> = alerts.collect();
            v.sort_by_key(|a| (a.since, group_text(&a.group)));
            v.into_iter().take(self.limit).map(alert).collect()
        };
        let with_baseline = self.baseline.is_some();
        let rules: Vec<Value> = self
            .rules()
            .into_iter()
            .map(|(rule, (new, base))| {
                let empty = Alerts::new();
                let new = new.unwrap_or(&empty);
                let base = base.unwrap_or(&empty);
                let mut out = json!({
                    "rule": rule,
                    "fired": new.len(),
                    "resolved": new.values().filter(|a| a.resolved.is_some()).count(),
                    "alerts": listed(&mut new.values()),
                });
                if with_baseline {
                    let added = &mut new
                        .iter()
                        .filter(|(k, _)| !base.contains_key(k))
                        .map(|(_, a)| a);
                    let removed = &mut base
                        .iter()
                        .filter(|(k, _)| !new.contains_key(k))
                        .map(|(_, a)| a);
                    let changed: Vec<Value> = new
                        .iter()
                        .filter_map(|(k, a)| base.get(k).filter(|b| *b != a).map(|b| (b, a)))
                        .take(self.limit)
                        .map(|(b, a)| json!({"before": alert(b), "after": alert(a)}))
                        .collect();
                    out["baseline"] = json!({
                        "fired": base.len(),
                        "resolved": base.values().filter(|a| a.resolved.is_some()).count(),
                    });
                    out["added"] = Value::Array(listed(added));
                    out["removed"] = Value::Array(listed(removed));
                    out["changed"] = Value::Array(changed);
                }
                out
            })
            .collect();
        let change = |c: &Change| {
            json!({
                "window_start": time(c.window_start),
                "window_end": time(c.window_end),
                "group": c.group,
                "measure": c.measure,
                "before": c.before,
                "after": c.after,
            })
        };
        let aggregates: Vec<Value> = self
            .aggregates
            .iter()
            .map(|(name, a)| {
                let mut out = json!({
                    "aggregate": name,
                    "windows": a.windows,
                    "early_results": a.early,
                    "groups": a.groups.len(),
                    "events": a.events,
                    "busiest": a.busiest.items.iter().map(|(_, c)| change(c)).collect::<Vec<_>>(),
                });
                if let Some(b) = a.baseline_windows {
                    out["baseline"] = json!({
                        "windows": b,
                        "matched": a.matched,
                        "differing": a.differing,
                        "added": a.added,
                        "removed": self.removed_windows(name),
                        "largest_changes": a.changes.items.iter().map(|(_, c)| change(c)).collect::<Vec<_>>(),
                    });
                }
                out
            })
            .collect();
        let insights: Vec<Value> = ["anomaly", "trend", "streak"]
            .iter()
            .map(|kind| {
                let empty = InsightReport::default();
                let r = self.insights.get(kind).unwrap_or(&empty);
                let mut out = json!({
                    "detector": kind,
                    "count": r.new.len(),
                    "insights": r.new.iter().take(self.limit).map(|(at, _, s)| json!({"at": time(*at), "summary": s})).collect::<Vec<_>>(),
                });
                if with_baseline {
                    let removed = r.removed();
                    out["baseline_count"] = json!(r.baseline.len());
                    out["added"] = json!(r
                        .new
                        .iter()
                        .filter(|(_, id, _)| !r.baseline.contains_key(id))
                        .take(self.limit)
                        .map(|(at, _, s)| json!({"at": time(*at), "summary": s}))
                        .collect::<Vec<_>>());
                    out["removed"] = json!(removed
                        .iter()
                        .take(self.limit)
                        .map(|(at, s)| json!({"at": time(*at), "summary": s}))
                        .collect::<Vec<_>>());
                }
                out
            })
            .collect();
        let runs: BTreeMap<&str, Value> = self
            .runs
            .iter()
            .map(|(role, r)| {
                (
                    role.as_str(),
                    json!({
                        "events": r.events,
                        "seconds": r.seconds,
                        "events_per_second": rate(r.events, r.seconds),
                        "cpu_seconds": r.cpu_seconds,
                        "events_per_cpu_second": r.cpu_seconds.map(|c| rate(r.events, c)),
                        "results": r.results,
                        "alerts": r.alerts,
                        "insights": r.insights,
                        "late_events": r.late,
                        "dead_letters": r.dead_letters,
                    }),
                )
            })
            .collect();
        json!({
            "spec": self.spec,
            "baseline": self.baseline,
            "source": {
                "read": self.source.what,
                "copied": self.source.copied,
                "direct": self.source.direct,
                "events": self.source.events,
                "watermark_marks": self.source.marks,
                "skipped": self.source.skipped,
                "rejected": self.source.rejected,
                "seconds": self.source.seconds,
                "events_per_second": rate(self.source.events, self.source.seconds),
                "cpu_seconds": self.source.cpu_seconds,
            },
            "runs": runs,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "rules": rules,
            "aggregates": aggregates,
            "insights": insights,
        })
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let with_baseline = self.baseline.is_some();
        let _ = writeln!(
            o,
            "Backtest of {}{}",
            self.spec,
            self.baseline
                .as_ref()
                .map(|b| format!(" against {b}"))
                .unwrap_or_default()
        );
        let s = &self.source;
        let _ = writeln!(
            o,
            "{} {} {} from {}{}{}{}{}",
            if s.direct {
                "Read"
            } else if s.copied {
                "Copied"
            } else {
                "Reading"
            },
            s.events,
            if s.direct { "events" } else { "records" },
            s.what,
            if s.copied || s.direct {
                format!(
                    " in {:.2} s ({}/s{})",
                    s.seconds,
                    human(rate(s.events, s.seconds)),
                    s.cpu_seconds
                        .map(|c| format!(", {c:.2} CPU-seconds"))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            },
            if s.marks > 0 {
                format!(", {} watermark marks", s.marks)
            } else {
                String::new()
            },
            if s.skipped > 0 {
                format!(", {} outside --from/--to", s.skipped)
            } else {
                String::new()
            },
            if s.rejected > 0 {
                format!(", {} lines skipped (not events)", s.rejected)
            } else {
                String::new()
            },
        );
        for (role, r) in &self.runs {
            let _ = writeln!(
                o,
                "The {role} spec processed {} records in {:.2} s ({}/s{}): {} window results, {} alert records, {} insights, {} late, {} dead letters",
                r.events,
                r.seconds,
                human(rate(r.events, r.seconds)),
                r.cpu_seconds
                    .map(|c| format!(
                        ", {c:.2} CPU-seconds, {}/CPU-second",
                        human(rate(r.events, c))
                    ))
                    .unwrap_or_default(),
                r.results,
                r.alerts,
                r.insights,
                r.late,
                r.dead_letters
            );
        }
        if let Some(cpu) = self.cpu_seconds {
            let _ = writeln!(o, "In all {:.2} s, {:.2} CPU-seconds", self.seconds, cpu);
        }
        let line = |a: &AlertLine| {
            format!(
                "{}  {:<28} fired {}{}  {}",
                a.severity,
                group_text(&a.group),
                time(a.since),
                match a.resolved {
                    Some(r) => format!(", resolved {}", time(r)),
                    None => ", still firing".to_string(),
                },
                a.summary
            )
        };
        let sorted = |alerts: &mut dyn Iterator<Item = &AlertLine>| -> Vec<String> {
            let mut v: Vec<&AlertLine> = alerts.collect();
            v.sort_by_key(|a| (a.since, group_text(&a.group)));
            v.into_iter().map(line).collect()
        };
        let _ = writeln!(o, "\nRules");
        let rules = self.rules();
        if rules.is_empty() {
            let _ = writeln!(o, "  no alerts");
        }
        for (rule, (new, base)) in rules {
            let empty = Alerts::new();
            let new = new.unwrap_or(&empty);
            let base = base.unwrap_or(&empty);
            let resolved = new.values().filter(|a| a.resolved.is_some()).count();
            let _ = write!(o, "  {rule}: {} fired, {resolved} resolved", new.len());
            if with_baseline {
                let _ = write!(
                    o,
                    " (baseline: {} fired, {} resolved)",
                    base.len(),
                    base.values().filter(|a| a.resolved.is_some()).count()
                );
            }
            let _ = writeln!(o);
            if with_baseline {
                let added = sorted(
                    &mut new
                        .iter()
                        .filter(|(k, _)| !base.contains_key(k))
                        .map(|(_, a)| a),
                );
                let removed = sorted(
                    &mut base
                        .iter()
                        .filter(|(k, _)| !new.contains_key(k))
                        .map(|(_, a)| a),
                );
                let changed: Vec<(String, String)> = new
                    .iter()
                    .filter_map(|(k, a)| {
                        base.get(k).filter(|b| *b != a).map(|b| (line(b), line(a)))
                    })
                    .collect();
                for (mark, lines) in [("+", &added), ("-", &removed)] {
                    for l in lines.iter().take(self.limit) {
                        let _ = writeln!(o, "    {mark} {l}");
                    }
                    if lines.len() > self.limit {
                        let _ = writeln!(o, "    {mark} ... {} more", lines.len() - self.limit);
                    }
                }
                for (b, a) in changed.iter().take(self.limit) {
                    let _ = writeln!(o, "    ~ {b}\n      now {a}");
                }
            } else {
                let lines = sorted(&mut new.values());
                for l in lines.iter().take(self.limit) {
                    let _ = writeln!(o, "    {l}");
                }
                if lines.len() > self.limit {
                    let _ = writeln!(o, "    ... {} more", lines.len() - self.limit);
                }
            }
        }
        let _ = writeln!(o, "\nAggregates");
        if self.aggregates.is_empty() {
            let _ = writeln!(o, "  no windows");
        }
        let value = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v}"));
        for (name, a) in &self.aggregates {
            let _ = writeln!(
                o,
                "  {name}: {} final windows over {} groups, {} events{}",
                a.windows,
                a.groups.len(),
                a.events,
                if a.early > 0 {
                    format!(", {} early results", a.early)
                } else {
                    String::new()
                }
            );
            if let Some(b) = a.baseline_windows {
                let _ = writeln!(
                    o,
                    "    against the baseline's {b} windows: {} differ, {} added, {} removed",
                    a.differing,
                    a.added,
                    self.removed_windows(name)
                );
                for (_, c) in &a.changes.items {
                    let _ = writeln!(
                        o,
                        "    {} .. {}  {:<24} {}: {} -> {}",
                        time(c.window_start),
                        time(c.window_end),
                        c.group,
                        c.measure,
                        value(c.before),
                        c.after
                    );
                }
            } else {
                let _ = writeln!(o, "    busiest windows:");
                for (_, c) in &a.busiest.items {
                    let _ = writeln!(
                        o,
                        "    {} .. {}  {:<24} {} events",
                        time(c.window_start),
                        time(c.window_end),
                        c.group,
                        c.after
                    );
                }
            }
        }
        let _ = writeln!(o, "\nInsights");
        for kind in ["anomaly", "trend", "streak"] {
            let empty = InsightReport::default();
            let r = self.insights.get(kind).unwrap_or(&empty);
            let _ = write!(o, "  {kind}: {}", r.new.len());
            if with_baseline {
                let _ = write!(o, " (baseline: {})", r.baseline.len());
            }
            let _ = writeln!(o);
            for (at, id, summary) in r.new.iter().take(self.limit) {
                let mark = if with_baseline && !r.baseline.contains_key(id) {
                    "+ "
                } else {
                    ""
                };
                let _ = writeln!(o, "    {mark}{}  {summary}", time(*at));
            }
            if with_baseline {
                let removed = r.removed();
                for (at, summary) in removed.iter().take(self.limit) {
                    let _ = writeln!(o, "    - {}  {summary}", time(*at));
                }
            }
        }
        o
    }
}

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// 2.4M, 310k, 950.
fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Calls `f` with the value of every record of `topic` up to its end as of now.
async fn for_each(
    log: &Log,
    topic: &str,
    mut f: impl FnMut(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let info = log.admin().describe_topic(topic).await?;
    let mut remaining: BTreeMap<u32, u64> = info
        .partitions
        .iter()
        .filter(|p| p.end_offset > p.start_offset)
        .map(|p| (p.partition, p.end_offset))
        .collect();
    if remaining.is_empty() {
        return Ok(());
    }
    let mut consumer = log
        .consumer(
            &[topic],
            ConsumerConfig::new(format!("backtest-report-{topic}"))
                .offset_reset(OffsetReset::Earliest),
        )
        .await?;
    while !remaining.is_empty() {
        let records = consumer.poll(8192, Duration::from_millis(200)).await?;
        for r in &records {
            let Some(&end) = remaining.get(&r.partition) else {
                continue;
            };
            if r.offset < end {
                f(&r.value)?;
            }
            if r.offset + 1 >= end {
                remaining.remove(&r.partition);
            }
        }
    }
    Ok(())
}
