//! Throughput of ten threshold rules with SQL conditions over pre-decoded events, on one
//! thread, as a processor drives them: every event offered to every rule, the watermark
//! advanced every 1000 events. Run: `cargo bench -p helios-pipeline --bench rules`;
//! results go to `bench/RESULTS.md`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use helios_pipeline::rules::RuleOperator;
use helios_pipeline::spec::{Rule, parse};
use helios_schemas::Event;

const RULES: &str = r#"
[[rule]]
name = "ci_failing"
type = "threshold"
where = "kind = 'ci.run' AND attrs['conclusion'] = 'failure'"
per = ["subject"]
count = 3
within = "1h"

[[rule]]
name = "main_not_green"
type = "threshold"
where = "kind = 'ci.run' AND attrs['branch'] = 'main' AND attrs['conclusion'] <> 'success'"
per = ["subject"]
count = 2
within = "30m"

[[rule]]
name = "deploys_failing"
type = "threshold"
where = "kind = 'deploy' AND attrs['status'] = 'failed'"
per = ["subject"]
count = 2
within = "1h"

[[rule]]
name = "slow_probes"
type = "threshold"
where = "kind = 'probe.http' AND value > 2000"
per = ["subject"]
count = 5
within = "10m"

[[rule]]
name = "cpu_hot"
type = "threshold"
where = "kind = 'host.cpu' AND value >= 90"
per = ["subject"]
count = 10
within = "5m"

[[rule]]
name = "issues_closed"
type = "threshold"
where = "kind LIKE 'github.%' AND attrs['action'] = 'closed'"
per = ["subject"]
count = 20
within = "1d"

[[rule]]
name = "escalations"
type = "threshold"
where = "kind IN ('alert.fired', 'alert.escalated')"
per = ["subject", "attrs['team'] AS team"]
count = 3
within = "15m"

[[rule]]
name = "critical_webhooks"
type = "threshold"
where = "source = 'webhook' AND attrs['severity'] = 'critical'"
per = ["subject"]
count = 1
within = "5m"

[[rule]]
name = "error_logs"
type = "threshold"
where = "kind = 'log.line' AND attrs['level'] = 'error'"
per = ["subject"]
count = 50
within = "1m"

[[rule]]
name = "negative_values"
type = "threshold"
where = "value IS NOT NULL AND value < 0"
per = ["subject"]
count = 3
within = "1h"
"#;

const KINDS: [&str; 8] = [
    "ci.run",
    "deploy",
    "probe.http",
    "host.cpu",
    "github.issues",
    "alert.fired",
    "log.line",
    "git.commit",
];

/// Events 1 ms apart over 1000 subjects; about a third match one of the rules.
fn event(i: u64) -> Event {
    let kind = KINDS[(i % 8) as usize];
    let mut attrs = BTreeMap::new();
    let pick = |n: u64| (i / 8).wrapping_mul(2_654_435_761) % n;
    match kind {
        "ci.run" => {
            attrs.insert(
                "branch".into(),
                if pick(3) == 0 { "main" } else { "dev" }.into(),
            );
            attrs.insert(
                "conclusion".into(),
                if pick(4) == 0 { "failure" } else { "success" }.into(),
            );
        }
        "deploy" => {
            attrs.insert(
                "status".into(),
                if pick(5) == 0 { "failed" } else { "ok" }.into(),
            );
        }
        "github.issues" => {
            attrs.insert(
                "action".into(),
                if pick(2) == 0 { "closed" } else { "opened" }.into(),
            );
        }
        "alert.fired" => {
            attrs.insert("team".into(), format!("t{}", pick(4)));
        }
        "log.line" => {
            attrs.insert(
                "level".into(),
                if pick(10) == 0 { "error" } else { "info" }.into(),
            );
        }
        _ => {}
    }
    attrs.insert(
        "severity".into(),
        if pick(50) == 0 { "critical" } else { "low" }.into(),
    );
    Event {
        id: format!("9f1c2a7e-5b3d-4e8a-a1f0-{i:012}"),
        source: if i.is_multiple_of(3) {
            "webhook"
        } else {
            "probe"
        }
        .into(),
        kind: kind.into(),
        subject: format!("project-{}", (i * 7919) % 1000),
        time: 1_763_900_000_000_000 + i as i64 * 1000,
        received_at: 1_763_900_000_000_000 + i as i64 * 1000,
        attrs,
        value: match kind {
            "probe.http" => Some((pick(3000)) as f64),
            "host.cpu" => Some((pick(100)) as f64),
            "git.commit" => Some(pick(100) as f64 - 2.0),
            _ => None,
        },
        payload: None,
    }
}

fn rules(c: &mut Criterion) {
    const N: u64 = 100_000;
    let spec =
        parse::<toml::Value>(RULES, "bench.toml", |_| Ok(())).unwrap_or_else(|d| panic!("{d}"));
    let rules: Vec<Arc<Rule>> = spec.rules.into_iter().map(Arc::new).collect();
    let events: Vec<Event> = (0..N).map(event).collect();
    let disorder = 10_000_000;

    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(N));
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("ten_threshold_rules", |b| {
        b.iter(|| {
            let mut ops: Vec<RuleOperator> =
                rules.iter().map(|r| RuleOperator::new(r.clone())).collect();
            let mut alerts = Vec::new();
            let mut late = 0u64;
            for (seq, e) in events.iter().enumerate() {
                for op in &mut ops {
                    late += u64::from(op.on_event(e, seq as u64).is_err());
                }
                if seq % 1000 == 999 {
                    for op in &mut ops {
                        op.on_watermark(e.time - disorder, &mut alerts);
                    }
                }
            }
            for op in &mut ops {
                op.on_watermark(i64::MAX, &mut alerts);
            }
            black_box((alerts.len(), late))
        })
    });
    g.finish();
}

criterion_group!(benches, rules);
criterion_main!(benches);
