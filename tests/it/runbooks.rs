//! The runbooks in `docs/runbooks/` against the code (done-when 3 of issue 7): every
//! runbook names at least one metric and one log line; every `helios_…` metric name they
//! mention is a family Helios exposes (`query-api/src/metrics/names.rs`); every quoted log
//! line (`Log (level): `message``) is verbatim a message in the Rust sources; and every
//! `helios` command line in their code blocks uses real subcommands and flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use helios_query_api::metrics::names;

use crate::common::docs::{Complete, assert_real_command, helios_commands, inline_helios_commands};

/// The runbooks the issue asks for, by file name.
const REQUIRED: &[&str] = &[
    "broker-down.md",
    "clickhouse-down.md",
    "poison-event.md",
    "consumer-lag.md",
    "rebalance-storm.md",
    "disk-full-embedded-log.md",
    "restore-checkpoint.md",
    "rule-change-replay.md",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dir() -> PathBuf {
    repo().join("docs/runbooks")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every markdown file of docs/runbooks, README included, by file name.
fn docs() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir()).expect("docs/runbooks") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.insert(name, read(&path));
        }
    }
    out
}

/// The runbooks proper (everything but the index).
fn runbooks() -> BTreeMap<String, String> {
    docs()
        .into_iter()
        .filter(|(n, _)| n != "README.md")
        .collect()
}

/// `helios_…` names in a text (identifier characters after the prefix).
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("helios_") {
        let start = from + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b'/' || c == b'.' || c == b'-')
        };
        let mut end = start + "helios_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + "helios_".len() {
            out.insert(text[start..end].to_string());
        }
        from = end;
    }
    out
}

/// The messages quoted as `Log (level): `message``, with their line numbers.
fn log_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("Log (") {
            rest = &rest[at + "Log (".len()..];
            let Some(colon) = rest.find("): `") else {
                panic!(
                    "line {}: `Log (` without `(level): `message``: {line}",
                    i + 1
                );
            };
            let level = &rest[..colon];
            assert!(
                ["error", "warn", "info", "debug"].contains(&level),
                "line {}: unknown log level `{level}`",
                i + 1
            );
            let msg = &rest[colon + "): `".len()..];
            let end = msg
                .find('`')
                .unwrap_or_else(|| panic!("line {}: unterminated log message: {line}", i + 1));
            out.push((i + 1, msg[..end].to_string()));
            rest = &msg[end..];
        }
    }
    out
}

/// Every `.rs` file under the sources of the binary and the crates, without tests.
fn sources() -> Vec<(PathBuf, String)> {
    let mut dirs = vec![repo().join("src")];
    for member in [
        "schemas",
        "log",
        "connectors",
        "query-api",
        "pipeline",
        "sinks",
    ] {
        dirs.push(repo().join(member).join("src"));
    }
    let mut out = Vec::new();
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "tests" {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" && !name.ends_with("_tests.rs") {
                out.push((path.clone(), join_continuations(&read(&path))));
            }
        }
    }
    assert!(out.len() > 50, "found only {} source files", out.len());
    out
}

/// Source text with Rust's string continuations (`\` at the end of a line, then the
/// next line's leading whitespace) removed, as the compiler does, so a message written
/// over several lines reads as it is logged.
fn join_continuations(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut lines = code.split('\n').peekable();
    let mut joining = false;
    while let Some(line) = lines.next() {
        let line = if joining { line.trim_start() } else { line };
        match line.strip_suffix('\\') {
            Some(head) => {
                out.push_str(head);
                joining = true;
            }
            None => {
                out.push_str(line);
                if lines.peek().is_some() {
                    out.push('\n');
                }
                joining = false;
            }
        }
    }
    out
}

/// Whether `message` is a whole string literal passed as the message (last argument) of a
/// tracing macro in `code`.
fn logged(code: &str, message: &str) -> bool {
    let literal = format!("\"{message}\"");
    code.match_indices(&literal).any(|(at, _)| {
        let after = code[at + literal.len()..].trim_start();
        let closes = after.starts_with(')')
            || after
                .strip_prefix(',')
                .is_some_and(|a| a.trim_start().starts_with(')'));
        // The nearest macro call opened before the literal is a tracing one.
        let before = &code[at.saturating_sub(800)..at];
        let macro_at = |m: &str| before.rfind(&format!("{m}!(")).map(|i| i + m.len());
        let tracing = ["info", "warn", "error", "debug", "trace"]
            .iter()
            .filter_map(|m| macro_at(m))
            .max();
        let other = before.rfind("!(").filter(|&i| {
            !["info", "warn", "error", "debug", "trace"]
                .iter()
                .any(|m| before[..i].ends_with(m))
        });
        closes
            && tracing.is_some_and(|t| {
                // A `format!(…)` inside the fields is closed before the message.
                other.is_none_or(|o| o < t || before[o..].contains(')'))
            })
    })
}

#[test]
fn every_required_runbook_exists_and_the_index_links_it() {
    let docs = docs();
    let index = docs.get("README.md").expect("docs/runbooks/README.md");
    for name in REQUIRED {
        assert!(docs.contains_key(*name), "docs/runbooks/{name} is missing");
        assert!(
            index.contains(&format!("]({name})")),
            "README.md does not link {name}"
        );
    }
    for (name, text) in runbooks() {
        for section in [
            "## Symptoms",
            "## What Helios does by itself",
            "## What the operator does",
        ] {
            assert!(text.contains(section), "{name} has no `{section}` section");
        }
    }
}

#[test]
fn every_runbook_names_a_metric_and_a_log_line() {
    for (name, text) in runbooks() {
        assert!(
            !metric_names(&text).is_empty(),
            "{name} names no helios_ metric"
        );
        assert!(
            !log_lines(&text).is_empty(),
            "{name} quotes no log line (`Log (level): `message``)"
        );
    }
}

#[test]
fn every_metric_a_runbook_names_is_a_family_helios_exposes() {
    let mut checked = 0;
    for (name, text) in docs() {
        for metric in metric_names(&text) {
            assert!(
                names::family(&metric).is_some(),
                "docs/runbooks/{name} names `{metric}`, which is no family in query-api/src/metrics/names.rs"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} metric names checked");
}

#[test]
fn every_quoted_log_line_is_logged_verbatim_by_the_code() {
    let sources = sources();
    let mut checked = 0;
    for (name, text) in runbooks() {
        for (line, message) in log_lines(&text) {
            assert!(
                sources.iter().any(|(_, code)| logged(code, &message)),
                "docs/runbooks/{name}:{line}: no tracing macro in the sources logs the message `{message}`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} log lines checked");
}

#[test]
fn every_helios_command_in_a_runbook_is_real() {
    let mut checked = 0;
    for (name, text) in docs() {
        for cmd in helios_commands(&text)
            .into_iter()
            .chain(inline_helios_commands(&text))
        {
            let shown = format!("docs/runbooks/{name}: `helios {}`", cmd.join(" "));
            assert_real_command(&shown, &cmd, Complete::Required);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} helios command lines checked");
}

#[test]
fn the_checks_catch_what_they_are_for() {
    // The extractors themselves: a wrong name or message must be seen, not skipped.
    let text =
        "- `helios_sink_rows_totl` up\n  - Log (warn): `Poll failed; retrying!` with `group`\n";
    assert_eq!(
        metric_names(text),
        BTreeSet::from(["helios_sink_rows_totl".to_string()])
    );
    assert!(names::family("helios_sink_rows_totl").is_none());
    assert!(names::family("helios_sink_batch_latency_seconds_bucket").is_some());
    let logs = log_lines(text);
    assert_eq!(logs, vec![(2, "Poll failed; retrying!".to_string())]);
    let sources = sources();
    assert!(!sources.iter().any(|(_, c)| logged(c, &logs[0].1)));
    assert!(
        sources
            .iter()
            .any(|(_, c)| logged(c, "Poll failed; retrying."))
    );
    assert_eq!(
        join_continuations("warn!(\"a b \\\n      c.\");\nx"),
        "warn!(\"a b c.\");\nx"
    );
    // A name inside a path is not a metric name.
    assert!(metric_names("deploy/helios_x and helios-sink").is_empty());
    let cmds = helios_commands(
        "```sh\nkubectl -n helios exec deploy/helios-sink -- helios topics \\\n  describe helios.events | head\n```\n",
    );
    assert_eq!(cmds, vec![vec!["topics", "describe", "helios.events"]]);
}
