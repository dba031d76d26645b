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
