//! Rules on scripted streams (each type fires and resolves exactly once), replays and
//! checkpoints give identical alerts, and any arrival order within the allowed
//! out-of-orderness gives the alerts of the ordered stream.

use std::collections::BTreeMap;
use std::sync::Arc;

use helios_schemas::{Alert, AlertState, Event, Severity};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Late, MAX_EVIDENCE, RuleOperator, alert_id};
use crate::spec::{Rule, parse};

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;

fn rule(body: &str) -> Arc<Rule> {
    let text = format!("[[rule]]\nname = \"r\"\nper = [\"subject\"]\n{body}\n");
    let mut spec =
        parse::<toml::Value>(&text, "t.toml", |_| Ok(())).unwrap_or_else(|d| panic!("{d}"));
    Arc::new(spec.rules.remove(0))
}

fn event(id: &str, t: i64, kind: &str, subject: &str) -> Event {
    Event {
        id: id.into(),
        source: "test".into(),
        kind: kind.into(),
        subject: subject.into(),
        time: t,
        received_at: t,
        attrs: BTreeMap::new(),
        value: None,
        payload: None,
    }
}

/// Runs the operator as a processor would: watermark = max time seen − `disorder` after
/// every event, then `end`.
fn run(rule: &Arc<Rule>, events: &[Event], disorder: i64, end: i64) -> (Vec<Alert>, Vec<Late>) {
    let mut op = RuleOperator::new(rule.clone());
    let (mut out, mut late) = (Vec::new(), Vec::new());
    let mut max_t = i64::MIN;
    for (seq, e) in events.iter().enumerate() {
        match op.on_event(e, seq as u64) {
            Ok(()) => {}
            Err(crate::rules::NotApplied::Late(l)) => late.push(l),
            Err(full) => panic!("{full:?}"),
        }
        max_t = max_t.max(e.time);
        op.on_watermark(max_t.saturating_sub(disorder), &mut out);
    }
    op.on_watermark(end, &mut out);
    (out, late)
}

/// `(time in minutes, kind, subject)`, ids `e0`, `e1`… in script order, delivered in
/// time order.
fn script(lines: &[(i64, &str, &str)]) -> Vec<Event> {
    let mut events: Vec<Event> = lines
        .iter()
        .enumerate()
        .map(|(i, (m, kind, subject))| event(&format!("e{i}"), m * MIN, kind, subject))
        .collect();
    events.sort_by_key(|e| e.time);
    events
}

/// Expected alert: state, subject, since and at in minutes, evidence ids.
type Expected<'a> = (AlertState, &'a str, i64, i64, &'a [&'a str]);

/// Runs `events` in order and shuffled within the disorder bound, and checks both give
/// exactly `expected`, with one id per alert shared by its firing and resolved record.
fn check(rule: &Arc<Rule>, events: &[Event], end_min: i64, expected: &[Expected<'_>]) {
    let disorder = 3 * MIN;
    let (alerts, late) = run(rule, events, disorder, end_min * MIN);
    assert!(late.is_empty(), "{late:?}");
    let got: Vec<(AlertState, String, i64, i64, Vec<String>)> = alerts
        .iter()
        .map(|a| {
            (
                a.state,
                a.group["subject"].clone(),
                a.since / MIN,
                a.at / MIN,
                a.evidence.clone(),
            )
        })
        .collect();
    let want: Vec<(AlertState, String, i64, i64, Vec<String>)> = expected
        .iter()
        .map(|(s, subj, since, at, ev)| {
            (
                *s,
                subj.to_string(),
                *since,
                *at,
                ev.iter().map(|e| e.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(got, want);
    for a in &alerts {
        assert_eq!(a.rule, "r");
        assert_eq!(a.severity, Severity::Critical);
        let key = vec![Some(a.group["subject"].clone())];
        assert_eq!(a.id, alert_id("r", &key, a.since));
        assert!(a.summary.starts_with("r: "), "{}", a.summary);
    }
    let mut states: BTreeMap<&str, Vec<AlertState>> = BTreeMap::new();
    for a in &alerts {
        states.entry(&a.id).or_default().push(a.state);
    }
    for s in states.values() {
        assert!(
            s == &[AlertState::Firing, AlertState::Resolved] || s == &[AlertState::Firing],
            "fires once, then resolves once: {s:?}"
        );
    }
    // Any arrival order within the bound gives the same alerts, byte for byte.
    for seed in 0..20 {
        let shuffled = displace(events, disorder, seed);
        let (again, late) = run(rule, &shuffled, disorder, end_min * MIN);
        assert!(late.is_empty(), "seed {seed}: {late:?}");
        assert_eq!(again, alerts, "seed {seed}");
    }
}

/// The events in an arrival order where each is displaced by at most `disorder` from
/// event-time order.
fn displace(events: &[Event], disorder: i64, seed: u64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keyed: Vec<(i64, usize, Event)> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (e.time + rng.random_range(0..=disorder), i, e))
        .collect();
    keyed.sort_by_key(|(arrival, i, _)| (*arrival, *i));
    keyed.into_iter().map(|(_, _, e)| e).collect()
}

#[test]
fn threshold_fires_once_when_n_matches_are_within_w_and_resolves_once_when_they_age_out() {
    let r = rule(
        r#"type = "threshold"
where = "kind = 'fail'"
count = 3
within = "10m"
severity = "critical""#,
    );
    let events = script(&[
        (0, "fail", "a"),  // e0
        (1, "ok", "a"),    // e1: does not match
        (2, "fail", "a"),  // e2
        (3, "fail", "b"),  // e3: b never reaches 3
        (4, "fail", "a"),  // e4: third within 10m -> fires at 4
        (5, "fail", "a"),  // e5: still firing, no second alert
        (9, "fail", "b"),  // e6
        (20, "fail", "b"), // e7: b's first match aged out at 13
        (30, "ok", "a"),   // e8
    ]);
    // a: matches 0, 2, 4, 5; fewer than 3 in (t − 10m, t] from t = 2 + 10 = 12.
    check(
        &r,
        &events,
        40,
        &[
            (AlertState::Firing, "a", 4, 4, &["e0", "e2", "e4"]),
            (AlertState::Resolved, "a", 4, 12, &["e0", "e2", "e4"]),
        ],
    );
    let (alerts, _) = run(&r, &events, 0, 40 * MIN);
    assert_eq!(
        alerts[0].summary,
        "r: 3 matching events within 10m for subject=a (threshold 3)"
    );
    assert_eq!(
        alerts[1].summary,
        "r: resolved: 2 matching events within 10m for subject=a, below the threshold of 3"
    );
}

#[test]
fn threshold_fires_again_after_resolving_with_a_new_id_and_caps_evidence() {
    let r = rule(
        r#"type = "threshold"
where = "kind = 'fail'"
count = 12
within = "1h"
severity = "critical""#,
    );
    let mut lines: Vec<(i64, &str, &str)> = (0..12).map(|m| (m, "fail", "a")).collect();
    lines.extend((200..212).map(|m| (m, "fail", "a")));
    let events = script(&lines);
    let (alerts, late) = run(&r, &events, 0, 400 * MIN);
    assert!(late.is_empty());
    let states: Vec<(AlertState, i64, i64)> = alerts
        .iter()
        .map(|a| (a.state, a.since / MIN, a.at / MIN))
        .collect();
    assert_eq!(
        states,
        [
            (AlertState::Firing, 11, 11),
            (AlertState::Resolved, 11, 60),
            (AlertState::Firing, 211, 211),
            (AlertState::Resolved, 211, 260),
        ]
    );
    assert_eq!(alerts[0].id, alerts[1].id);
    assert_ne!(alerts[0].id, alerts[2].id);
    // The latest ten of the twelve, oldest first.
    let expected: Vec<String> = (2..12).map(|i| format!("e{i}")).collect();
    assert_eq!(alerts[0].evidence.len(), MAX_EVIDENCE);
    assert_eq!(alerts[0].evidence, expected);
}

#[test]
fn absence_fires_once_w_after_the_last_match_and_resolves_at_the_next() {
    let r = rule(
        r#"type = "absence"
where = "kind = 'heartbeat'"
within = "10m"
severity = "critical""#,
    );
    let mut lines = vec![
        (0, "heartbeat", "h1"),  // e0
        (5, "heartbeat", "h1"),  // e1
        (9, "heartbeat", "h1"),  // e2: last before the silence; fires at 19
        (12, "other", "h2"),     // e3: h2 never matched, never fires
        (30, "heartbeat", "h1"), // e4: resolves at 30
    ];
    // h3 beats every 5 minutes: never silent for 10.
    lines.extend((0..=8).map(|i| (i * 5, "heartbeat", "h3")));
    let events = script(&lines);
    check(
        &r,
        &events,
        39,
        &[
            (AlertState::Firing, "h1", 19, 19, &["e2"]),
            (AlertState::Resolved, "h1", 19, 30, &["e2"]),
        ],
    );
    let (alerts, _) = run(&r, &events, 0, 39 * MIN);
    assert_eq!(
        alerts[0].summary,
        "r: no matching event for 10m for subject=h1 since event e2"
    );
    assert_eq!(
        alerts[1].summary,
        "r: resolved: event e4 matched for subject=h1 after 21m without one"
    );
}

#[test]
fn sequence_fires_once_when_then_follows_first_within_w_and_resolves_w_after_the_last() {
    let r = rule(
        r#"type = "sequence"
first = "kind = 'deploy'"
then = "kind = 'error'"
within = "10m"
severity = "critical""#,
    );
    let events = script(&[
        (0, "deploy", "a"),  // e0
        (0, "deploy", "c"),  // e1
        (1, "error", "b"),   // e2: no deploy before it
        (2, "deploy", "b"),  // e3: nothing follows
        (3, "error", "a"),   // e4: fires at 3
        (8, "error", "a"),   // e5: another completion (deploy at 0 still within 10m)
        (15, "error", "c"),  // e6: c's deploy is 15m old: too late
        (40, "deploy", "z"), // e7
    ]);
    // a: last completion at 8, none within the next 10m: resolves at 18.
    check(
        &r,
        &events,
        45,
        &[
            (AlertState::Firing, "a", 3, 3, &["e0", "e4"]),
            (AlertState::Resolved, "a", 3, 18, &["e0", "e4"]),
        ],
    );
    let (alerts, _) = run(&r, &events, 0, 45 * MIN);
    assert_eq!(
        alerts[0].summary,
        "r: event e4 followed event e0 after 3m (within 10m) for subject=a"
    );
    assert_eq!(
        alerts[1].summary,
        "r: resolved: no further sequence within 10m for subject=a (2 while firing)"
    );
}

#[test]
fn an_event_matching_both_steps_does_not_complete_with_itself() {
    let r = rule(
        r#"type = "sequence"
first = "kind = 'restart'"
then = "kind = 'restart'"
within = "10m""#,
    );
    let (alerts, _) = run(&r, &script(&[(0, "restart", "a")]), 0, 60 * MIN);
    assert!(alerts.is_empty());
    let (alerts, _) = run(
        &r,
        &script(&[(0, "restart", "a"), (4, "restart", "a")]),
        0,
        60 * MIN,
    );
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].evidence, ["e0", "e1"]);
    assert_eq!(
        alerts[0].severity,
        Severity::Warning,
        "the default severity"
    );
}

#[test]
fn late_events_are_returned_not_applied() {
    let r = rule(
        r#"type = "threshold"
where = "kind = 'fail'"
count = 1
within = "10m""#,
    );
    let mut op = RuleOperator::new(r);
    let mut out = Vec::new();
    op.on_watermark(10 * MIN, &mut out);
    let Err(crate::rules::NotApplied::Late(late)) =
        op.on_event(&event("x", 9 * MIN, "fail", "a"), 0)
    else {
        panic!("not late")
    };
    assert_eq!(late.rule, "r");
    // The sink reads `late_by` from these words (late_events, ADR-015).
    let watermark = format!("after the watermark {}:", 10 * MIN);
    assert!(late.reason.contains(&watermark), "{}", late.reason);
    // Non-matching events are not late: the rule has nothing to say about them.
    op.on_event(&event("y", 9 * MIN, "ok", "a"), 1).unwrap();
    // An event at the watermark itself is still on time.
    op.on_event(&event("z", 10 * MIN, "fail", "a"), 2).unwrap();
    op.on_watermark(11 * MIN, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].evidence, ["z"]);
}

#[test]
fn state_is_dropped_once_it_cannot_matter() {
    let threshold = rule(
        r#"type = "threshold"
where = "kind = 'fail'"
count = 3
within = "10m""#,
    );
    let sequence = rule(
        r#"type = "sequence"
first = "kind = 'fail'"
then = "kind = 'never'"
within = "10m""#,
    );
    for r in [threshold, sequence] {
        let mut op = RuleOperator::new(r);
        let mut out = Vec::new();
        for i in 0..1000 {
            op.on_event(
                &event(&format!("e{i}"), i * SEC, "fail", &format!("s{i}")),
                i as u64,
            )
            .unwrap();
        }
        op.on_watermark(500 * SEC, &mut out);
        assert_eq!(op.pending(), 500);
        assert_eq!(op.keys(), 500);
        // Everything is more than W behind the watermark.
        op.on_watermark(1000 * SEC + 10 * MIN + 1, &mut out);
        assert_eq!((op.keys(), op.pending()), (0, 0));
        assert!(op.state().timers.is_empty());
    }
}

/// Random streams over three subjects for one rule of each type.
fn random_stream(seed: u64, n: usize) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Whole seconds, so that equal times (ties broken by id) are common.
    let mut times: Vec<i64> = (0..n).map(|_| rng.random_range(0..7200) * SEC).collect();
    times.sort_unstable();
    let kinds = ["fail", "ok", "deploy", "error", "heartbeat"];
    times
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let kind = kinds[rng.random_range(0..kinds.len())];
            event(
                &format!("e{i:04}"),
                t,
                kind,
                &format!("s{}", rng.random_range(0..3)),
            )
        })
        .collect()
}

fn all_rules() -> Vec<Arc<Rule>> {
    vec![
        rule("type = \"threshold\"\nwhere = \"kind = 'fail'\"\ncount = 3\nwithin = \"5m\""),
        rule("type = \"absence\"\nwhere = \"kind = 'heartbeat'\"\nwithin = \"4m\""),
        rule(
            "type = \"sequence\"\nfirst = \"kind = 'deploy'\"\nthen = \"kind = 'error'\"\nwithin = \"2m\"",
        ),
    ]
}

#[test]
fn any_order_within_the_disorder_bound_gives_the_alerts_of_the_ordered_stream() {
    let disorder = 90 * SEC;
    for r in all_rules() {
        let mut total = 0;
        for seed in 0..16 {
            let events = random_stream(seed, 400);
            let (ordered, late) = run(&r, &events, disorder, i64::MAX);
            assert!(late.is_empty());
            total += ordered.len();
            // The watermark's cadence does not matter either: all at once at the end.
            let (at_once, _) = run(&r, &events, i64::MAX, i64::MAX);
            assert_eq!(at_once, ordered, "seed {seed}");
            for shuffle in 0..4 {
                let shuffled = displace(&events, disorder, seed * 100 + shuffle);
                let (again, late) = run(&r, &shuffled, disorder, i64::MAX);
                assert!(late.is_empty(), "within the bound nothing is late");
                assert_eq!(again, ordered, "seed {seed}, shuffle {shuffle}");
            }
        }
        assert!(
            total > 10,
            "{}: the streams make the rule fire ({total})",
            r.name
        );
    }
}

#[test]
fn replays_and_checkpoint_restores_give_identical_alerts() {
    let disorder = 90 * SEC;
    for r in all_rules() {
        let events = random_stream(42, 600);
        let (first, _) = run(&r, &events, disorder, i64::MAX);
        let (second, _) = run(&r, &events, disorder, i64::MAX);
        assert_eq!(first, second, "a replay gives identical alerts and ids");
        assert!(!first.is_empty());

        // Stop halfway, persist the state, restore it into a fresh operator and go on.
        let mut op = RuleOperator::new(r.clone());
        let mut out = Vec::new();
        let mut max_t = i64::MIN;
        for (seq, e) in events.iter().enumerate() {
            if seq == 300 {
                let bytes = postcard::to_allocvec(op.state()).expect("state serializes");
                let state = postcard::from_bytes(&bytes).expect("state deserializes");
                assert_eq!(&state, op.state());
                op = RuleOperator::restore(r.clone(), state).expect("same rule");
                assert_eq!(
                    postcard::to_allocvec(&op.snapshot()).expect("serializes"),
                    bytes,
                    "equal states serialize to equal bytes"
                );
            }
            op.on_event(e, seq as u64).expect("on time");
            max_t = max_t.max(e.time);
            op.on_watermark(max_t - disorder, &mut out);
        }
        op.on_watermark(i64::MAX, &mut out);
        assert_eq!(out, first);
    }
}

#[test]
fn restore_refuses_state_of_another_rule() {
    let rules = all_rules();
    let state = RuleOperator::new(rules[0].clone()).snapshot();
    let err = RuleOperator::restore(rules[1].clone(), state).unwrap_err();
    assert!(err.to_string().contains("threshold rule `r`"), "{err}");
}

#[test]
fn a_rule_applies_no_event_whose_key_is_over_its_bytes() {
    let r = rule(
        r#"type = "threshold"
where = "kind = 'fail'"
count = 1
within = "10m"
max_key_bytes = 8"#,
    );
    let mut op = RuleOperator::new(r);
    op.on_event(&event("a", 0, "fail", "12345678"), 0).unwrap();
    let Err(crate::rules::NotApplied::Full(full)) =
        op.on_event(&event("b", 0, "fail", "123456789"), 1)
    else {
        panic!("a key of 9 bytes was applied")
    };
    assert!(
        full.reason.contains("9 bytes") && full.reason.contains("max_key_bytes"),
        "{}",
        full.reason
    );
    // Events that do not match are none of the rule's business, whatever their key.
    op.on_event(&event("c", 0, "ok", &"x".repeat(100)), 2)
        .unwrap();
    let mut out = Vec::new();
    op.on_watermark(MIN, &mut out);
    assert_eq!(out.len(), 1, "one alert, for the key that fitted: {out:?}");
}
