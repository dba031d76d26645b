//! Windowed results equal a straightforward batch computation over the same events, for
//! random streams whose disorder stays within the allowed out-of-orderness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use helios_schemas::{Event, WindowResult};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{AggregateState, Late, WindowedAggregate};
use crate::spec::{Aggregate, parse};

const MIN: i64 = 60_000_000;

fn aggregate(window: &str, extra: &str) -> Arc<Aggregate> {
    let text = format!(
        r#"[[aggregate]]
name = "a"
where = "kind <> 'ignored'"
window = {window}
group_by = ["subject"]
measures = {{ n = "count(*)", n_value = "count(value)", total = "sum(value)", low = "min(value)", high = "max(value)", mean = "avg(value)", users = "count_distinct(attrs['user'])", p90 = "quantile(value, 0.9)", first_v = "first(value)", last_v = "last(value)" }}
{extra}
"#
    );
    let mut spec =
        parse::<toml::Value>(&text, "t.toml", |_| Ok(())).unwrap_or_else(|d| panic!("{d}"));
    Arc::new(spec.aggregates.remove(0))
}

fn event(i: usize, t: i64, rng: &mut StdRng) -> Event {
    Event {
        id: format!("e{i}"),
        source: "test".into(),
        kind: if rng.random_ratio(1, 10) {
            "ignored".into()
        } else {
            "work".into()
        },
        subject: format!("s{}", rng.random_range(0..3)),
        time: t,
        received_at: t,
        attrs: BTreeMap::from([("user".to_string(), format!("u{}", rng.random_range(0..40)))]),
        value: if rng.random_ratio(1, 8) {
            None
        } else {
            Some(f64::from(rng.random_range(-50..500)))
        },
        payload: None,
    }
}

/// Events over two hours, each displaced by at most `disorder` from time order.
fn stream(seed: u64, n: usize, disorder: i64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut times: Vec<i64> = (0..n).map(|_| rng.random_range(0..120 * MIN)).collect();
    times.sort_unstable();
    let mut keyed: Vec<(i64, i64)> = times
        .into_iter()
        .map(|t| (t + rng.random_range(0..=disorder), t))
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .enumerate()
        .map(|(i, (_, t))| event(i, t, &mut rng))
        .collect()
}

/// Runs the operator as a processor would: watermark = max time seen − `disorder`.
fn run(agg: &Arc<Aggregate>, events: &[Event], disorder: i64) -> (Vec<WindowResult>, Vec<Late>) {
    let mut op = WindowedAggregate::new(agg.clone());
    let (mut out, mut late) = (Vec::new(), Vec::new());
    let mut max_t = i64::MIN;
    for (seq, e) in events.iter().enumerate() {
        match op.on_event(e, seq as u64) {
            Ok(()) => {}
            Err(crate::window::NotApplied::Late(l)) => late.push(l),
            Err(full) => panic!("{full:?}"),
        }
        max_t = max_t.max(e.time);
        op.on_watermark(max_t - disorder, &mut out);
    }
    op.on_watermark(i64::MAX, &mut out);
    (out, late)
}

/// (start, end, subject) -> the events in that window, with their arrival positions.
type Windows<'e> = BTreeMap<(i64, i64, String), Vec<(usize, &'e Event)>>;

/// The batch computation: windows of each matching event, then exact measures.
fn batch<'e>(agg: &Aggregate, events: &'e [Event]) -> Windows<'e> {
    let mut windows: Windows<'e> = BTreeMap::new();
    let matching: Vec<(usize, &Event)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind != "ignored")
        .collect();
    match agg.window {
        crate::spec::Window::Tumbling { size } => {
            let size = size.as_micros() as i64;
            for (i, e) in matching {
                let s = e.time.div_euclid(size) * size;
                windows
                    .entry((s, s + size, e.subject.clone()))
                    .or_default()
                    .push((i, e));
            }
        }
        crate::spec::Window::Hopping { size, slide } => {
            let (size, slide) = (size.as_micros() as i64, slide.as_micros() as i64);
            for (i, e) in matching {
                let mut s = e.time.div_euclid(slide) * slide;
                while s > e.time - size {
                    windows
                        .entry((s, s + size, e.subject.clone()))
                        .or_default()
                        .push((i, e));
                    s -= slide;
                }
            }
        }
        crate::spec::Window::Session { gap } => {
            let gap = gap.as_micros() as i64;
            let mut by_key: BTreeMap<String, Vec<(usize, &Event)>> = BTreeMap::new();
            for (i, e) in matching {
                by_key.entry(e.subject.clone()).or_default().push((i, e));
            }
            for (key, mut evs) in by_key {
                evs.sort_by_key(|(i, e)| (e.time, *i));
                let mut current: Vec<(usize, &Event)> = Vec::new();
                let (mut start, mut end) = (0, 0);
                for (i, e) in evs {
                    if !current.is_empty() && e.time > end {
                        windows.insert((start, end, key.clone()), std::mem::take(&mut current));
                    }
                    if current.is_empty() {
                        start = e.time;
                        end = e.time + gap;
                    }
                    end = end.max(e.time + gap);
                    current.push((i, e));
                }
                if !current.is_empty() {
                    windows.insert((start, end, key), current);
                }
            }
        }
    }
    windows
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

fn check_against_batch(agg: &Arc<Aggregate>, events: &[Event], results: &[WindowResult]) {
    let finals: BTreeMap<(i64, i64, String), &WindowResult> = results
        .iter()
        .filter(|r| r.is_final)
        .map(|r| {
            (
                (r.window_start, r.window_end, r.group["subject"].clone()),
                r,
            )
        })
        .collect();
    let expected = batch(agg, events);
    assert_eq!(
        finals.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same windows"
    );
    for (key, evs) in &expected {
        let r = finals[key];
        let values: Vec<f64> = evs.iter().filter_map(|(_, e)| e.value).collect();
        let m = &r.measures;
        assert_eq!(r.count, evs.len() as i64, "{key:?}");
        assert_eq!(m["n"], evs.len() as f64);
        assert_eq!(m["n_value"], values.len() as f64);
        if values.is_empty() {
            for absent in ["total", "low", "high", "mean", "p90", "first_v", "last_v"] {
                assert!(!m.contains_key(absent), "{absent} is NULL without values");
            }
        } else {
            let sum: f64 = values.iter().sum();
            assert!(close(m["total"], sum, 1e-9), "sum {key:?}");
            assert_eq!(
                m["low"],
                values.iter().copied().fold(f64::INFINITY, f64::min)
            );
            assert_eq!(
                m["high"],
                values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            );
            assert!(close(m["mean"], sum / values.len() as f64, 1e-9));
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let exact = sorted[(0.9_f64 * (sorted.len() - 1) as f64).floor() as usize];
            assert!(
                (m["p90"] - exact).abs() <= 0.01 * exact.abs() + 1e-9,
                "p90 {} vs {exact}",
                m["p90"]
            );
            let with_value: Vec<&(usize, &Event)> =
                evs.iter().filter(|(_, e)| e.value.is_some()).collect();
            let first = with_value.iter().min_by_key(|(i, e)| (e.time, *i)).unwrap();
            let last = with_value.iter().max_by_key(|(i, e)| (e.time, *i)).unwrap();
            assert_eq!(m["first_v"], first.1.value.unwrap());
            assert_eq!(m["last_v"], last.1.value.unwrap());
        }
        let users: BTreeSet<&String> = evs.iter().map(|(_, e)| &e.attrs["user"]).collect();
        let est = m["users"];
        assert!(
            (est - users.len() as f64).abs() <= (0.05_f64 * users.len() as f64).max(1.0),
            "distinct {est} vs {}",
            users.len()
        );
    }
}

#[test]
fn windows_equal_the_batch_computation() {
    let disorder = 2 * MIN;
    let windows = [
        r#"{ type = "tumbling", size = "10m" }"#,
        r#"{ type = "hopping", size = "15m", slide = "5m" }"#,
        r#"{ type = "session", gap = "3m" }"#,
    ];
    for window in windows {
        let agg = aggregate(window, "");
        for seed in 0..12 {
            let events = stream(seed, 600, disorder);
            let (results, late) = run(&agg, &events, disorder);
            assert!(
                late.is_empty(),
                "{window} seed {seed}: disorder within bounds is never late: {late:?}"
            );
            check_against_batch(&agg, &events, &results);
        }
    }
}

#[test]
fn non_finite_values_are_counted_but_not_measured() {
    let agg = aggregate(r#"{ type = "tumbling", size = "10m" }"#, "");
    let mut events = stream(3, 400, 0);
    let mut clean = events.clone();
    let odd = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    for (i, at) in [10, 11, 200].into_iter().enumerate() {
        events[at].kind = "work".into();
        events[at].value = Some(odd[i]);
        clean[at].kind = "work".into();
        clean[at].value = None;
    }
    let (results, _) = run(&agg, &events, 0);
    let (want, _) = run(&agg, &clean, 0);
    assert_eq!(results.len(), want.len());
    let mut counted = 0.0;
    for (got, want) in results.iter().zip(&want) {
        for (name, v) in &got.measures {
            assert!(v.is_finite(), "{name} = {v} in {}", got.id);
            if name == "n_value" {
                counted += v - want.measures[name];
            } else {
                assert_eq!(Some(v), want.measures.get(name), "{name} in {}", got.id);
            }
        }
    }
    // `count(value)` counts a value that is there, whatever it is.
    assert_eq!(counted, 3.0);
}

#[test]
fn same_input_same_output() {
    let agg = aggregate(
        r#"{ type = "hopping", size = "15m", slide = "5m" }"#,
        "emit_every = \"5m\"",
    );
    let events = stream(7, 800, MIN);
    let (a, _) = run(&agg, &events, MIN);
    let (b, _) = run(&agg, &events, MIN);
    assert_eq!(a, b);
    // Early results carry increasing versions under one id; the final one is the last.
    let mut by_id: BTreeMap<&str, Vec<&WindowResult>> = BTreeMap::new();
    for r in &a {
        by_id.entry(&r.id).or_default().push(r);
    }
    assert!(
        by_id.values().any(|v| v.len() > 1),
        "some windows had early results"
    );
    for versions in by_id.values() {
        assert!(
            versions
                .windows(2)
                .all(|w| w[0].version < w[1].version && !w[0].is_final)
        );
        assert!(versions.last().unwrap().is_final);
    }
}

#[test]
fn late_events_are_returned_not_dropped_and_lateness_is_honoured() {
    let agg = aggregate(
        r#"{ type = "tumbling", size = "10m" }"#,
        "allowed_lateness = \"5m\"",
    );
    let mut rng = StdRng::seed_from_u64(1);
    let mut op = WindowedAggregate::new(agg);
    let mut out = Vec::new();
    let mut e = event(0, 5 * MIN, &mut rng);
    e.kind = "work".into();
    op.on_event(&e, 0).unwrap();
    // Watermark past the window end but within the lateness: still open, no final yet.
    op.on_watermark(12 * MIN, &mut out);
    assert!(out.is_empty());
    e.time = 6 * MIN;
    op.on_event(&e, 1).expect("within allowed lateness");
    op.on_watermark(15 * MIN, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].count, 2);
    // Now the window is closed: a later event for it is late, with a reason.
    e.time = 7 * MIN;
    let Err(crate::window::NotApplied::Late(late)) = op.on_event(&e, 2) else {
        panic!("not late")
    };
    assert!(late.reason.contains("closed"), "{}", late.reason);
    // The sink reads `late_by` from these words (late_events, ADR-015).
    let watermark = format!("the watermark {} ", 15 * MIN);
    assert!(late.reason.contains(&watermark), "{}", late.reason);
    assert_eq!(op.open_windows(), 0);
}

/// A checkpoint taken at any point (the state serialized in place, restored from the
/// bytes) continues exactly as the uninterrupted operator, for every window type.
#[test]
fn restoring_a_checkpoint_mid_stream_gives_the_uninterrupted_results() {
    let disorder = MIN;
    let windows = [
        r#"{ type = "tumbling", size = "10m" }"#,
        r#"{ type = "hopping", size = "15m", slide = "5m" }"#,
        r#"{ type = "session", gap = "3m" }"#,
    ];
    for window in windows {
        let agg = aggregate(window, "emit_every = \"5m\"");
        let events = stream(11, 500, disorder);
        let (expected, _) = run(&agg, &events, disorder);
        for cut in [1, 137, 250, 499] {
            let mut op = WindowedAggregate::new(agg.clone());
            let mut out = Vec::new();
            let mut max_t = i64::MIN;
            for (seq, e) in events.iter().enumerate() {
                if seq == cut {
                    let bytes = postcard::to_allocvec(&op.state()).expect("serializes");
                    // What is written in place equals the copy's encoding.
                    assert_eq!(bytes, postcard::to_allocvec(&op.snapshot()).unwrap());
                    let state: AggregateState = postcard::from_bytes(&bytes).expect("decodes");
                    let open = op.open_windows();
                    op = WindowedAggregate::restore(agg.clone(), state);
                    assert_eq!(op.open_windows(), open, "{window} cut {cut}");
                }
                op.on_event(e, seq as u64).expect("not late");
                max_t = max_t.max(e.time);
                op.on_watermark(max_t - disorder, &mut out);
            }
            op.on_watermark(i64::MAX, &mut out);
            assert_eq!(out, expected, "{window} cut {cut}");
            assert_eq!(op.open_windows(), 0);
        }
    }
}

/// At `max_open_windows` an aggregate opens no more windows: the event is refused
/// (`Full`, naming the setting) where it would open one, and still counted in the windows
/// of it that are open; a closed window makes room again. Tumbling, hopping and session.
#[test]
fn at_its_bound_an_aggregate_opens_no_window_and_counts_in_those_it_has() {
    use super::NotApplied;
    let work = |id: &str, subject: &str, t: i64| Event {
        id: id.into(),
        source: "test".into(),
        kind: "work".into(),
        subject: subject.into(),
        time: t,
        ..Event::default()
    };
    let full = |r: Result<(), NotApplied>| match r {
        Err(NotApplied::Full(f)) => {
            assert!(f.reason.contains("max_open_windows"), "{}", f.reason);
            true
        }
        Ok(()) => false,
        Err(late) => panic!("{late:?}"),
    };

    // Tumbling, two windows at most.
    let mut op = WindowedAggregate::new(aggregate(
        r#"{ type = "tumbling", size = "1m" }"#,
        "max_open_windows = 2",
    ));
    assert!(!full(op.on_event(&work("1", "a", 0), 1)));
    assert!(!full(op.on_event(&work("2", "b", 0), 2)));
    assert!(full(op.on_event(&work("3", "c", 0), 3)), "a third key");
    assert!(
        full(op.on_event(&work("4", "a", MIN), 4)),
        "a's next window"
    );
    assert!(!full(op.on_event(&work("5", "a", 1), 5)), "a's open window");
    assert_eq!(op.open_windows(), 2);
    let mut out = Vec::new();
    op.on_watermark(2 * MIN, &mut out);
    let counts: BTreeMap<String, i64> = out
        .iter()
        .map(|r| (r.group["subject"].clone(), r.count))
        .collect();
    assert_eq!(counts, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
    assert_eq!(op.open_windows(), 0);
    assert!(
        !full(op.on_event(&work("6", "c", 2 * MIN), 6)),
        "room again"
    );

    // Hopping 3m / 1m: an event falls in three windows; with room for four, a second key
    // gets one of its three and the event is refused for the other two.
    let mut op = WindowedAggregate::new(aggregate(
        r#"{ type = "hopping", size = "3m", slide = "1m" }"#,
        "max_open_windows = 4",
    ));
    assert!(!full(op.on_event(&work("1", "a", 2 * MIN), 1)));
    assert!(full(op.on_event(&work("2", "b", 2 * MIN), 2)));
    assert_eq!(op.open_windows(), 4);
    let mut out = Vec::new();
    op.on_watermark(10 * MIN, &mut out);
    let b: Vec<i64> = out
        .iter()
        .filter(|r| r.group["subject"] == "b")
        .map(|r| r.window_end)
        .collect();
    assert_eq!(b, [3 * MIN], "b's earliest window, the one that fitted");

    // Sessions: a new session is refused at the bound; one that extends a session is not.
    let mut op = WindowedAggregate::new(aggregate(
        r#"{ type = "session", gap = "5m" }"#,
        "max_open_windows = 1",
    ));
    assert!(!full(op.on_event(&work("1", "a", 0), 1)));
    assert!(full(op.on_event(&work("2", "b", 0), 2)));
    assert!(
        !full(op.on_event(&work("3", "a", 3 * MIN), 3)),
        "extends a's session"
    );
    assert_eq!(op.open_windows(), 1);
}

#[test]
fn an_aggregate_counts_no_event_whose_group_key_is_over_its_bytes() {
    use super::NotApplied;
    let mut op = WindowedAggregate::new(aggregate(
        r#"{ type = "tumbling", size = "1m" }"#,
        "max_key_bytes = 16",
    ));
    let work = |id: &str, subject: &str| Event {
        id: id.into(),
        source: "test".into(),
        kind: "work".into(),
        subject: subject.into(),
        time: 0,
        ..Event::default()
    };
    assert_eq!(op.on_event(&work("1", &"a".repeat(16)), 1), Ok(()));
    match op.on_event(&work("2", &"b".repeat(1_000_000)), 2) {
        Err(NotApplied::Full(f)) => {
            assert!(
                f.reason.contains("1000000 bytes") && f.reason.contains("max_key_bytes"),
                "{}",
                f.reason
            );
            assert!(f.reason.len() < 300, "the reason does not quote the key");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(op.open_windows(), 1);
    // The next event is keyed as usual (the refused key left nothing behind).
    assert_eq!(op.on_event(&work("3", &"a".repeat(16)), 3), Ok(()));
    let mut out = Vec::new();
    op.on_watermark(2 * MIN, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].count, 2);
}
