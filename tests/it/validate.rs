//! `helios validate` and `helios up --spec` share one report of every spec problem.

use std::process::Command;

use crate::common::{BIN, helios};

const BROKEN: &str = r#"[[aggregate]]
name = "runs"
where = "kind = 'ci.run' AND valu > 1"
window = { type = "tumbling", size = "sixty minutes" }
measures = { n = "count(*)" }

[[source]]
name = "bad name"
type = "http"
"#;

#[test]
fn validate_reports_every_problem_and_up_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("helios.toml");
    std::fs::write(&spec, BROKEN).unwrap();
    let spec_arg = spec.to_str().unwrap();

    let out = helios(&["validate", spec_arg]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8(out.stderr).unwrap();
    for needle in [
        "helios.toml:3:30: unknown column `valu`",
        "helios.toml:4:38: bad duration for size",
        "helios.toml:7:1: source `bad name` is misconfigured",
        "3 problem(s)",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} missing from:\n{report}"
        );
    }

    let up = Command::new(BIN)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--spec",
            spec_arg,
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!up.status.success());
    let err = String::from_utf8(up.stderr).unwrap();
    assert!(
        err.contains("unknown column `valu`") && err.contains("3 problem(s)"),
        "{err}"
    );

    std::fs::write(&spec, "[[source]]\nname = \"web\"\ntype = \"http\"\n").unwrap();
    let out = helios(&["validate", spec_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("valid (1 sources, 0 aggregates, 0 rules)")
    );
}

/// The checks `helios up` makes on a spec after parsing it, before and while its stages
/// start, each as a spec that fails only that check: (what refuses it at start, the spec,
/// line:column of the problem, the message).
const STARTUP_CHECKS: &[(&str, &str, &str, &str)] = &[
    (
        "pipeline::runtime::check_repartitionable (a session window not keyed by subject), ADR-020",
        "[[aggregate]]\nname = \"per_kind\"\nwindow = { type = \"session\", gap = \"5m\" }\ngroup_by = [\"kind\"]\nmeasures = { n = \"count(*)\" }\n",
        "3:10",
        "aggregate `per_kind` groups by `kind`, which does not include `subject`, and has a session window",
    ),
    (
        "pipeline::runtime::check_repartitionable (early results of a global aggregate)",
        "[[aggregate]]\nname = \"everything\"\nwindow = { type = \"tumbling\", size = \"1m\" }\nmeasures = { n = \"count(*)\" }\nemit_every = \"10s\"\n",
        "5:14",
        "groups by nothing (one global group), which does not include `subject`, and has early results",
    ),
    (
        "sinks::StoreSpec::validate: identifiers of at most 64 bytes",
        "[[aggregate]]\nname = \"a_name_much_longer_than_the_sixty_four_bytes_a_store_table_name_may_have\"\nwindow = { type = \"tumbling\", size = \"1m\" }\ngroup_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\n",
        "2:8",
        "bad aggregate name",
    ),
    (
        "sinks::StoreSpec::validate: key names are plain identifiers",
        "[[aggregate]]\nname = \"builds\"\nwindow = { type = \"tumbling\", size = \"1m\" }\ngroup_by = [\"subject\", \"attrs['build-id']\"]\nmeasures = { n = \"count(*)\" }\n",
        "4:24",
        "key name `build-id` cannot be a column of the store",
    ),
    (
        "sinks::StoreSpec::validate: `count` is a fixed column",
        "[[aggregate]]\nname = \"builds\"\nwindow = { type = \"tumbling\", size = \"1m\" }\ngroup_by = [\"subject\"]\nmeasures = { count = \"count(*)\" }\n",
        "5:22",
        "bad measure name `count`",
    ),
    (
        "connectors::runtime::Supervisor::register: unique source names",
        "[[source]]\nname = \"web\"\ntype = \"http\"\n\n[[source]]\nname = \"web\"\ntype = \"host\"\n",
        "5:1",
        "a source named `web` already exists",
    ),
    (
        "connectors::spec::build_with: one http source",
        "[[source]]\nname = \"web\"\ntype = \"http\"\n\n[[source]]\nname = \"web2\"\ntype = \"http\"\n",
        "5:1",
        "only one `http` source can exist",
    ),
    (
        "connectors::spec::build_with: GitHub bodies within --unverified-body-budget",
        "[[source]]\nname = \"gh\"\ntype = \"github\"\nsecret = \"s3cret-s3cret-s3cret\"\nmax_body_bytes = 2000000\n",
        "1:1",
        "max_body_bytes (2000000) is larger than the budget of unverified webhook bodies (1048576 bytes)",
    ),
    (
        "sinks::notify::NotifyConfig::validate: unique webhook names",
        "[[webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/a\"\n\n[[webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/b\"\n",
        "6:8",
        "webhook name `ops` is empty or used twice",
    ),
    (
        "pipeline::dedupe: a horizon that covers the longest window",
        "[dedupe]\nhorizon = \"1h\"\n\n[[aggregate]]\nname = \"daily\"\nwindow = { type = \"tumbling\", size = \"2d\" }\ngroup_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\n",
        "2:11",
        "dedupe horizon 1h is shorter than the longest window",
    ),
    (
        "pipeline::insights: detector settings",
        "[[aggregate]]\nname = \"runs\"\nwindow = { type = \"tumbling\", size = \"1h\" }\ngroup_by = [\"subject\"]\nmeasures = { n = \"count(*)\" }\ninsights = { anomaly = { threshold = 0 } }\n",
        "6:38",
        "anomaly threshold must be a positive number, not 0",
    ),
];

/// Every check `helios up` makes on a spec is one `helios validate` makes first, at the
/// problem's line and column: each spec of [`STARTUP_CHECKS`] is refused by both, with
/// the same report.
#[test]
fn validate_refuses_every_spec_that_up_refuses_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let budget = ["--unverified-body-budget", "1MiB"];
    for (i, (check, text, at, message)) in STARTUP_CHECKS.iter().enumerate() {
        let spec = tmp.path().join(format!("check{i}.toml"));
        std::fs::write(&spec, text).unwrap();
        let spec_arg = spec.to_str().unwrap();
        let expected = format!("{spec_arg}:{at}: ");

        let mut args = vec!["validate", spec_arg];
        args.extend(budget);
        let out = helios(&args);
        let report = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{check}: validate accepted it");
        let line = report
            .lines()
            .find(|l| l.starts_with(&expected))
            .unwrap_or_else(|| panic!("{check}: no problem at {expected} in:\n{report}"));
        assert!(
            line.contains(message),
            "{check}: {message:?} not in {line:?}"
        );
        assert!(report.contains("1 problem(s)"), "{check}: {report}");

        let up = Command::new(BIN)
            .args(["up", "--listen", "127.0.0.1:0", "--spec", spec_arg])
            .args(budget)
            .arg("--data-dir")
            .arg(tmp.path().join(format!("data{i}")))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&up.stderr);
        assert!(!up.status.success(), "{check}: up started");
        assert!(
            err.contains(line.trim()),
            "{check}: up did not report {line:?}:\n{err}"
        );
        // Refused before anything was created.
        assert!(!tmp.path().join(format!("data{i}")).exists(), "{check}");
    }
}
