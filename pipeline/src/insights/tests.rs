//! Insights on scripted series: a spike after the warm-up, a doubled week, a streak and
//! its end; replays and checkpoints give identical insights.

use std::collections::BTreeMap;

use helios_schemas::{Insight, InsightKind, WindowResult};

use super::{DAY, InsightOperator, InsightSettings, date, insight_id};
use crate::spec::parse;
use crate::window::result_id;

const HOUR: i64 = 3_600_000_000;
/// 2024-01-01, a Monday.
const MONDAY: i64 = 19_723 * DAY;

fn operator() -> InsightOperator {
    tuned("")
}

/// The operator of `runs` with `insights` (TOML lines of `[aggregate.insights]`, or
/// `insights = ...` itself) added to its spec.
fn tuned(insights: &str) -> InsightOperator {
    let text = format!(
        r#"[[aggregate]]
name = "runs"
window = {{ type = "tumbling", size = "1h" }}
group_by = ["subject"]
measures = {{ n = "count(*)" }}
allowed_lateness = "1h"
{insights}
"#
    );
    let text = text.as_str();
    let mut spec =
        parse::<toml::Value>(text, "t.toml", |_| Ok(())).unwrap_or_else(|d| panic!("{d}"));
    InsightOperator::new(&spec.aggregates.remove(0), InsightSettings::default())
}

/// A final result of `runs` for `subject`.
fn result(subject: &str, start: i64, size: i64, n: f64) -> WindowResult {
    let key = vec![Some(subject.to_string())];
    WindowResult {
        id: result_id("runs", start, start + size, &key),
        aggregate: "runs".into(),
        window_start: start,
        window_end: start + size,
        group: BTreeMap::from([("subject".to_string(), subject.to_string())]),
        measures: BTreeMap::from([("n".to_string(), n)]),
        count: n as i64,
        version: 1,
        is_final: true,
    }
}

fn feed(op: &mut InsightOperator, results: &[WindowResult]) -> Vec<Insight> {
    let mut out = Vec::new();
    for r in results {
        op.on_result(r, &mut out);
    }
    out
}

fn of_kind(insights: &[Insight], kind: InsightKind) -> Vec<&Insight> {
    insights.iter().filter(|i| i.kind == kind).collect()
}

/// Hourly values around 100 with a little noise, with `spikes` at the given windows.
fn hourly(subject: &str, windows: i64, spikes: &[i64]) -> Vec<WindowResult> {
    let noise = [-2.0, 1.0, 0.0, 2.0, -1.0, 3.0, -3.0];
    (0..windows)
        .map(|i| {
            let v = if spikes.contains(&i) {
                300.0
            } else {
                100.0 + noise[i as usize % noise.len()]
            };
            result(subject, MONDAY + i * HOUR, HOUR, v)
        })
        .collect()
}

#[test]
fn a_spike_is_reported_once_after_the_warm_up_and_nothing_before() {
    let mut op = operator();
    // A spike inside the warm-up (window 4) is not reported; the one at 30 is, once.
    let out = feed(&mut op, &hourly("a", 40, &[4, 30]));
    let anomalies = of_kind(&out, InsightKind::Anomaly);
    assert_eq!(anomalies.len(), 1, "{anomalies:#?}");
    let a = anomalies[0];
    assert_eq!(a.window_start, MONDAY + 30 * HOUR);
    assert_eq!(a.window_end, MONDAY + 31 * HOUR);
    assert_eq!(a.at, a.window_end);
    assert_eq!((a.value, a.measure.as_str()), (300.0, "n"));
    assert!(a.score >= 3.0, "{}", a.score);
    assert_eq!(a.group["subject"], "a");
    assert_eq!(
        a.id,
        insight_id(
            "anomaly",
            "runs",
            &a.group,
            "n",
            a.window_start,
            a.window_end
        )
    );
    assert!(
        a.summary.starts_with(
            "n of runs for subject=a was 300 in the window 2024-01-02 06:00–2024-01-02 07:00,"
        ),
        "{}",
        a.summary
    );
    assert!(a.summary.contains("above its recent mean"), "{}", a.summary);

    // A quiet series reports nothing; a dip is reported as well as a spike.
    let mut op = operator();
    assert!(feed(&mut op, &hourly("b", 40, &[])).is_empty());
    let mut dip = hourly("c", 40, &[]);
    dip[25].measures.insert("n".into(), 10.0);
    let out = feed(&mut operator(), &dip);
    let anomalies = of_kind(&out, InsightKind::Anomaly);
    assert_eq!(anomalies.len(), 1);
    assert!(anomalies[0].score <= -3.0);
}

#[test]
fn early_results_other_aggregates_and_repeats_are_ignored() {
    let mut results = hourly("a", 40, &[30]);
    let spike = results[30].clone();
    results.push(spike.clone());
    let mut early = spike.clone();
    early.is_final = false;
    early.window_start += 40 * HOUR;
    early.window_end += 40 * HOUR;
    results.push(early);
    let mut other = spike;
    other.aggregate = "other".into();
    other.window_start += 41 * HOUR;
    other.window_end += 41 * HOUR;
    results.push(other);
    let out = feed(&mut operator(), &results);
    assert_eq!(of_kind(&out, InsightKind::Anomaly).len(), 1);
}

#[test]
fn a_doubled_week_is_a_trend() {
    let mut results = Vec::new();
    // a: 10 a day in week 0, 20 a day in weeks 1 and 2.
    // b: starts on the Thursday of week 0 (a partial week), 10 a day throughout.
    for d in 0..21 {
        let a = if d < 7 { 10.0 } else { 20.0 };
        results.push(result("a", MONDAY + d * DAY, DAY, a));
        if d >= 3 {
            results.push(result("b", MONDAY + d * DAY, DAY, 10.0));
        }
    }
    let mut op = operator();
    let mut out = feed(&mut op, &results);
    // The watermark shows week 2 over (its last window is final).
    op.on_watermark(MONDAY + 21 * DAY + 2 * HOUR, &mut out);
    let trends = of_kind(&out, InsightKind::Trend);
    assert_eq!(trends.len(), 1, "{trends:#?}");
    let t = trends[0];
    assert_eq!(t.group["subject"], "a");
    assert_eq!(
        (t.window_start, t.window_end),
        (MONDAY + 7 * DAY, MONDAY + 14 * DAY)
    );
    assert_eq!(t.at, MONDAY + 14 * DAY);
    assert_eq!((t.value, t.score), (140.0, 1.0));
    assert_eq!(
        t.summary,
        "n of runs for subject=a: 140 in the week of 2024-01-08, +100 % against 70 the week before"
    );
    // The week after: a and b stop. A week of nothing is a -100 % trend for both.
    op.on_watermark(MONDAY + 28 * DAY + 2 * HOUR, &mut out);
    let trends = of_kind(&out, InsightKind::Trend);
    assert_eq!(trends.len(), 3);
    assert!(
        trends[1..]
            .iter()
            .all(|t| t.score == -1.0 && t.window_start == MONDAY + 21 * DAY)
    );
}

#[test]
fn a_five_day_streak_is_reported_and_so_is_its_end() {
    let mut results = Vec::new();
    // a is active on days 0..6 (six days) and again from day 8; b only on days 0..3.
    for d in (0..6).chain(8..10) {
        for h in [9, 15] {
            results.push(result("a", MONDAY + d * DAY + h * HOUR, HOUR, 1.0));
        }
    }
    for d in 0..3 {
        results.push(result("b", MONDAY + d * DAY + 12 * HOUR, HOUR, 1.0));
    }
    results.sort_by_key(|r| (r.window_end, r.group["subject"].clone()));
    let mut op = operator();
    let mut out = feed(&mut op, &results);
    op.on_watermark(MONDAY + 12 * DAY, &mut out);
    let streaks = of_kind(&out, InsightKind::Streak);
    let summaries: Vec<&str> = streaks.iter().map(|s| s.summary.as_str()).collect();
    assert_eq!(
        summaries,
        [
            "subject=a of runs has had events on 5 consecutive days, since 2024-01-01",
            "subject=a of runs: the streak of 6 consecutive days with events ended, none on 2024-01-07",
        ]
    );
    let (reached, ended) = (streaks[0], streaks[1]);
    assert_eq!(
        reached.at,
        MONDAY + 4 * DAY + 10 * HOUR,
        "the first window of day 5"
    );
    assert_eq!((reached.value, reached.score), (5.0, 5.0));
    assert_eq!(ended.at, MONDAY + 7 * DAY, "when the empty day was over");
    assert_eq!(ended.value, 6.0);
    assert_eq!(
        (ended.window_start, ended.window_end),
        (MONDAY, MONDAY + 6 * DAY)
    );
    assert_ne!(reached.id, ended.id);
    assert_eq!(date(19_723), "2024-01-01");
}

#[test]
fn replays_and_checkpoints_give_identical_insights() {
    let mut results = Vec::new();
    for d in 0..21 {
        let v = if d < 7 { 10.0 } else { 20.0 };
        results.push(result(
            "a",
            MONDAY + d * DAY,
            DAY,
            if d == 15 { 90.0 } else { v },
        ));
    }
    let first = feed(&mut operator(), &results);
    assert_eq!(first, feed(&mut operator(), &results));
    for kind in [
        InsightKind::Anomaly,
        InsightKind::Trend,
        InsightKind::Streak,
    ] {
        assert!(!of_kind(&first, kind).is_empty(), "{kind:?} found");
    }
    let mut op = operator();
    let mut out = feed(&mut op, &results[..9]);
    let bytes = postcard::to_allocvec(&op).expect("state serializes");
    // As a partition restores it: the checkpoint's state into the spec's operator.
    let mut restored = operator();
    restored.resume(postcard::from_bytes(&bytes).expect("deserializes"));
    assert_eq!(restored, op);
    for r in &results[9..] {
        restored.on_result(r, &mut out);
    }
    assert_eq!(out, first);
}

#[test]
fn a_detector_turned_off_or_a_higher_threshold_changes_what_is_reported() {
    // A spike of 300 against ~100: about 4.5 standard deviations with the floor on spread.
    let results = hourly("a", 40, &[30]);
    let default = feed(&mut operator(), &results);
    assert_eq!(of_kind(&default, InsightKind::Anomaly).len(), 1);
    let score = of_kind(&default, InsightKind::Anomaly)[0].score;

    let off = feed(
        &mut tuned("[aggregate.insights]\nanomaly = false"),
        &results,
    );
    assert!(of_kind(&off, InsightKind::Anomaly).is_empty(), "{off:#?}");
    let measure_off = feed(
        &mut tuned("[aggregate.insights]\nmeasures.n = false"),
        &results,
    );
    assert!(of_kind(&measure_off, InsightKind::Anomaly).is_empty());
    let all_off = feed(&mut tuned("insights = false"), &results);
    assert!(all_off.is_empty(), "{all_off:#?}");

    let above = format!(
        "[aggregate.insights]\nanomaly = {{ threshold = {} }}",
        score.abs() + 0.1
    );
    let higher = feed(&mut tuned(&above), &results);
    assert!(
        of_kind(&higher, InsightKind::Anomaly).is_empty(),
        "{higher:#?}"
    );
    let below = format!(
        "[aggregate.insights]\nanomaly = {{ threshold = {} }}",
        score.abs() - 0.1
    );
    assert_eq!(
        of_kind(&feed(&mut tuned(&below), &results), InsightKind::Anomaly).len(),
        1
    );

    // Longer history wanted than the spike had: nothing; shorter: the inside-warm-up spike too.
    let late = feed(
        &mut tuned("[aggregate.insights]\nanomaly = { min_history = 31 }"),
        &results,
    );
    assert!(of_kind(&late, InsightKind::Anomaly).is_empty());
    let early = hourly("a", 40, &[4, 30]);
    let eager = feed(
        &mut tuned("[aggregate.insights]\nanomaly = { min_history = 3 }"),
        &early,
    );
    assert_eq!(of_kind(&eager, InsightKind::Anomaly).len(), 2, "{eager:#?}");
}

#[test]
fn streak_length_and_trend_period_follow_the_settings() {
    // Active on days 0..3: no 5-day streak by default, a 3-day one when asked, none when off.
    let mut results = Vec::new();
    for d in 0..3 {
        results.push(result("a", MONDAY + d * DAY + 12 * HOUR, HOUR, 1.0));
    }
    assert!(of_kind(&feed(&mut operator(), &results), InsightKind::Streak).is_empty());
    let three = feed(
        &mut tuned("[aggregate.insights]\nstreak = { days = 3 }"),
        &results,
    );
    assert_eq!(of_kind(&three, InsightKind::Streak).len(), 1, "{three:#?}");

    // Daily periods: 10 an hour on day 0, 20 an hour on day 1; a week-over-week detector
    // sees nothing yet, a day-over-day one reports +100 %.
    let mut results = Vec::new();
    for h in 0..48 {
        let v = if h < 24 { 10.0 } else { 20.0 };
        results.push(result("a", MONDAY + h * HOUR, HOUR, v));
    }
    let mut weekly = operator();
    let mut out = feed(&mut weekly, &results);
    weekly.on_watermark(MONDAY + 2 * DAY + 2 * HOUR, &mut out);
    assert!(of_kind(&out, InsightKind::Trend).is_empty());
    let mut daily = tuned("[aggregate.insights]\ntrend = { window = \"1d\" }");
    let mut out = feed(&mut daily, &results);
    daily.on_watermark(MONDAY + 2 * DAY + 2 * HOUR, &mut out);
    let trends = of_kind(&out, InsightKind::Trend);
    assert_eq!(trends.len(), 1, "{trends:#?}");
    assert_eq!(
        (
            trends[0].window_start,
            trends[0].window_end,
            trends[0].score
        ),
        (MONDAY + DAY, MONDAY + 2 * DAY, 1.0)
    );
    assert_eq!(
        trends[0].summary,
        "n of runs for subject=a: 480 in the 1day from 2024-01-02 00:00, +100 % against 240 the 1day before"
    );
    // A higher minimum change hides it.
    let mut strict = tuned("[aggregate.insights]\ntrend = { window = \"1d\", min_change = 1.5 }");
    let mut out = feed(&mut strict, &results);
    strict.on_watermark(MONDAY + 2 * DAY + 2 * HOUR, &mut out);
    assert!(of_kind(&out, InsightKind::Trend).is_empty());
}

#[test]
fn a_restored_operator_keeps_the_running_settings() {
    let mut op = tuned("[aggregate.insights]\nanomaly = false");
    let results = hourly("a", 40, &[30]);
    let mut out = feed(&mut op, &results[..20]);
    let bytes = postcard::to_allocvec(&op).expect("state serializes");
    let saved: InsightOperator = postcard::from_bytes(&bytes).expect("deserializes");
    let mut fresh = tuned("[aggregate.insights]\nanomaly = false");
    fresh.resume(saved);
    assert_eq!(fresh.config(), op.config());
    for r in &results[20..] {
        fresh.on_result(r, &mut out);
    }
    assert!(of_kind(&out, InsightKind::Anomaly).is_empty());
}

#[test]
fn the_mad_method_finds_a_spike_an_earlier_outlier_hides_from_the_z_score() {
    // A huge outlier at window 12 inflates the EWMA spread for many windows after it, so
    // the moderate spike at 20 is no z-score anomaly; the median and MAD of the latest
    // values are hardly moved by one outlier.
    let mut results = hourly("a", 30, &[]);
    results[12].measures.insert("n".into(), 1000.0);
    results[20].measures.insert("n".into(), 130.0);
    let starts = |out: &[Insight]| -> Vec<i64> {
        of_kind(out, InsightKind::Anomaly)
            .iter()
            .map(|i| (i.window_start - MONDAY) / HOUR)
            .collect()
    };
    assert_eq!(starts(&feed(&mut operator(), &results)), [12]);
    let mut mad = tuned("[aggregate.insights]\nanomaly = { method = \"mad\" }");
    let found = feed(&mut mad, &results);
    assert_eq!(starts(&found), [12, 20], "{found:#?}");
    let spike = of_kind(&found, InsightKind::Anomaly)[1];
    assert!(spike.score >= 3.5, "{}", spike.score);
    assert!(
        spike
            .summary
            .contains("median absolute deviations above its recent median of"),
        "{}",
        spike.summary
    );
    // A higher MAD threshold keeps only the outlier.
    let strict = feed(
        &mut tuned("[aggregate.insights]\nanomaly = { method = \"mad\", threshold = 100 }"),
        &results,
    );
    assert_eq!(starts(&strict), [12]);
    // The latest values go into the checkpoint with the rest of the state, and trends,
    // streaks and the series count ignore them.
    let mut op = tuned("[aggregate.insights]\nanomaly = { method = \"mad\" }");
    let mut out = feed(&mut op, &results[..15]);
    assert_eq!(op.series(), 1);
    let bytes = postcard::to_allocvec(&op).expect("state serializes");
    let mut restored = tuned("[aggregate.insights]\nanomaly = { method = \"mad\" }");
    restored.resume(postcard::from_bytes(&bytes).expect("deserializes"));
    for r in &results[15..] {
        restored.on_result(r, &mut out);
    }
    assert_eq!(out, found);
}

#[test]
fn switching_to_mad_waits_for_its_own_history() {
    // 20 windows under the z-score, then the MAD method from a checkpoint: it reports
    // nothing until it has seen min_history values itself, then the spike.
    let mut results = hourly("a", 45, &[]);
    results[22].measures.insert("n".into(), 150.0);
    results[40].measures.insert("n".into(), 300.0);
    let mut op = operator();
    let mut out = feed(&mut op, &results[..20]);
    let mut mad = tuned("[aggregate.insights]\nanomaly = { method = \"mad\" }");
    mad.resume(postcard::from_bytes(&postcard::to_allocvec(&op).unwrap()).unwrap());
    for r in &results[20..] {
        mad.on_result(r, &mut out);
    }
    let starts: Vec<i64> = of_kind(&out, InsightKind::Anomaly)
        .iter()
        .map(|i| (i.window_start - MONDAY) / HOUR)
        .collect();
    assert_eq!(starts, [40], "{out:#?}");
}

/// The detectors follow at most the aggregate's `max_open_windows` groups: a new group
/// past it gets no series (and no insight), the groups followed keep theirs, and the
/// count comes back after a restore.
#[test]
fn the_detectors_follow_at_most_the_aggregates_bound_of_groups() {
    let new_op = || tuned("max_open_windows = 2");
    let mut op = new_op();
    let mut out = Vec::new();
    for subject in ["a", "b", "c"] {
        for r in hourly(subject, 3, &[]) {
            op.on_result(&r, &mut out);
        }
    }
    assert_eq!(op.groups(), (2, 2));
    assert_eq!(op.series(), 2, "c is not followed");
    // c's three final results were not followed, counted once for a metric.
    assert_eq!(op.take_unfollowed(), 3);
    assert_eq!(op.take_unfollowed(), 0);
    let bytes = postcard::to_allocvec(&op).unwrap();
    let mut restored = new_op();
    restored.resume(postcard::from_bytes(&bytes).unwrap());
    assert_eq!(restored.groups(), (2, 2));
    assert_eq!(
        operator().groups(),
        (0, crate::spec::DEFAULT_MAX_STATE_KEYS)
    );
}
