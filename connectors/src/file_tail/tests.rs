//! Line splitting and parsing on fixed input, and the source on real files in a temp dir
//! writing into a real embedded log: rotation, truncation, crash and restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use helios_schemas::Event;
use serde_json::Value;

use super::parse::{LineParser, Parsed};
use super::{FileTailConfig, FileTailSource, LineFormat, LineSpan, split_lines};
use crate::runtime::{PullSource, SourceHandle, SourceState, Supervisor};
use crate::test_support::{LogFixture, wait_status};

fn spans(buf: &str, max: usize, partial: bool) -> Vec<(&str, bool)> {
    split_lines(buf.as_bytes(), max, partial)
        .iter()
        .map(|l: &LineSpan| (&buf[l.start..l.end], l.cut))
        .collect()
}

#[test]
fn splits_lines() {
    assert_eq!(
        spans("a\nbb\r\nccc", 100, false),
        [("a", false), ("bb", false)]
    );
    assert_eq!(
        spans("a\nbb\r\nccc", 100, true),
        [("a", false), ("bb", false), ("ccc", false)]
    );
    assert_eq!(
        spans("abcdefg\nh\n", 3, false),
        [("abc", true), ("def", true), ("g", false), ("h", false)]
    );
    assert_eq!(spans("abc\n", 3, false), [("abc", false)]);
    assert_eq!(spans("", 3, true), []);
    // Where the next line starts.
    let l = split_lines(b"ab\r\ncd", 10, false);
    assert_eq!(l[0].end_with_break, 4);
}

fn parser(config: FileTailConfig) -> LineParser {
    config.validate().unwrap();
    LineParser::new(&config).unwrap()
}

#[test]
fn parses_json_lines_with_configured_keys() {
    let p = parser(FileTailConfig {
        paths: vec!["/x/*.log".into()],
        kind_key: "type".into(),
        ..FileTailConfig::default()
    });
    let line = r#"{"time":"2026-11-23T10:00:00Z","type":"deploy.done","subject":"api","value":"2.5","env":"prod","ok":true,"n":3,"nested":{"a":1}}"#;
    let mut attrs = BTreeMap::new();
    attrs.insert("env".to_string(), "prod".to_string());
    attrs.insert("ok".to_string(), "true".to_string());
    attrs.insert("n".to_string(), "3".to_string());
    assert_eq!(
        p.parse(line.as_bytes()).unwrap(),
        Parsed {
            time: Some(1_795_428_000_000_000),
            kind: Some("deploy.done".into()),
            subject: Some("api".into()),
            value: Some(2.5),
            attrs,
            payload: Some(line.to_string()),
        }
    );
    assert_eq!(
        p.parse(br#"{"time": 1795428000.5}"#).unwrap().time,
        Some(1_795_428_000_500_000)
    );
    for (bad, reason) in [
        ("not json", "not JSON"),
        ("[1,2]", "not an object"),
        (r#"{"value":"many"}"#, "field `value` must be a number"),
        (r#"{"time":"yesterday"}"#, "not an RFC 3339 time"),
        (r#"{"type":{"x":1}}"#, "field `type` must be text"),
    ] {
        let err = p.parse(bad.as_bytes()).unwrap_err();
        assert!(err.contains(reason), "{bad}: {err}");
    }
    assert!(p.parse(b"\xff\xfe").unwrap_err().contains("UTF-8"));
}

#[test]
fn parses_text_with_named_captures() {
    let p = parser(FileTailConfig {
        paths: vec!["/x/*.log".into()],
        format: LineFormat::Text,
        pattern: Some(
            r"^(?P<time>\S+) (?P<level>[A-Z]+) (?P<subject>\w+) took (?P<value>\d+)ms".into(),
        ),
        ..FileTailConfig::default()
    });
    let parsed = p
        .parse(b"2026-11-23T10:00:00+01:00 WARN billing took 1200ms to answer")
        .unwrap();
    assert_eq!(parsed.time, Some(1_795_428_000_000_000 - 3_600_000_000));
    assert_eq!(parsed.subject.as_deref(), Some("billing"));
    assert_eq!(parsed.value, Some(1200.0));
    assert_eq!(parsed.kind, None);
    assert_eq!(
        parsed.attrs,
        BTreeMap::from([("level".to_string(), "WARN".to_string())])
    );
    assert_eq!(
        parsed.payload.as_deref(),
        Some(r#"{"line":"2026-11-23T10:00:00+01:00 WARN billing took 1200ms to answer"}"#)
    );
    assert!(
        p.parse(b"free text")
            .unwrap_err()
            .contains("does not match")
    );
}

#[test]
fn validation_names_the_problem() {
    let base = FileTailConfig {
        paths: vec!["/var/log/*.log".into()],
        ..FileTailConfig::default()
    };
    for (config, message) in [
        (
            FileTailConfig {
                paths: vec![],
                ..base.clone()
            },
            "at least one glob",
        ),
        (
            FileTailConfig {
                paths: vec!["/x/[".into()],
                ..base.clone()
            },
            "not a valid glob",
        ),
        (
            FileTailConfig {
                format: LineFormat::Text,
                ..base.clone()
            },
            "needs a `pattern`",
        ),
        (
            FileTailConfig {
                format: LineFormat::Text,
                pattern: Some("(?P<x>".into()),
                ..base.clone()
            },
            "not a valid regex",
        ),
        (
            FileTailConfig {
                pattern: Some("x".into()),
                ..base.clone()
            },
            "only used with",
        ),
        (
            FileTailConfig {
                poll_interval: Duration::ZERO,
                ..base.clone()
            },
            "poll_interval",
        ),
    ] {
        let err = config.validate().unwrap_err();
        assert!(err.contains(message), "{err}");
    }
    assert!(base.validate().is_ok());
}

fn spawn(supervisor: &Supervisor, config: &FileTailConfig) -> SourceHandle {
    let c = config.clone();
    supervisor
        .spawn(
            &config.name,
            "file",
            Box::new(move || Ok(Box::new(FileTailSource::new(c.clone())?) as Box<dyn PullSource>)),
        )
        .unwrap()
}

fn append(file: &mut File, from: u32, to: u32) {
    for n in from..to {
        writeln!(
            file,
            r#"{{"kind":"test.line","n":{n},"pad":"{}"}}"#,
            "x".repeat((n % 7) as usize)
        )
        .unwrap();
    }
    file.flush().unwrap();
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Line number -> ids of the events carrying it, and id -> the events with that id.
fn by_line(events: &[Event]) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for e in events {
        let n: u32 = e.attrs["n"].parse().unwrap();
        out.entry(n).or_default().insert(e.id.clone());
    }
    out
}

fn has_lines(events: &[Event], to: u32) -> bool {
    let lines = by_line(events);
    (0..to).all(|n| lines.contains_key(&n))
}

/// Issue 3, done-when 3: lines written while the file is rotated by rename, the source
/// crashes (its task is aborted mid-way) and restarts, the file is truncated while tailed
/// and truncated-and-regrown while the source is down: every line becomes exactly one
/// event id, none is missing, and the unparseable line is one dead letter.
#[tokio::test]
async fn every_line_becomes_one_event_id_through_rotation_truncation_and_crashes() {
    let fx = LogFixture::new().await;
    let logs = tempfile::tempdir().unwrap();
    let path = logs.path().join("app.log");
    let config = FileTailConfig {
        name: "applog".into(),
        paths: vec![format!("{}/*.log", logs.path().display())],
        poll_interval: Duration::from_millis(20),
        rotate_wait: Duration::from_millis(300),
        ..FileTailConfig::default()
    };

    // Run 1: lines, one bad line, then a rotation while the writer keeps writing.
    let supervisor = fx.supervisor();
    spawn(&supervisor, &config);
    let mut writer = open_append(&path);
    append(&mut writer, 0, 20);
    writeln!(writer, "this is not json").unwrap();
    for step in 0..4 {
        append(&mut writer, 20 + step * 10, 30 + step * 10);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    fx.wait_events("lines 0..60", |e| has_lines(e, 60)).await;
    std::fs::rename(&path, logs.path().join("app.log.1")).unwrap();
    append(&mut writer, 60, 70); // the writer has not reopened yet
    let mut writer2 = open_append(&path);
    append(&mut writer2, 70, 90);
    fx.wait_events("lines 0..75", |e| has_lines(e, 75)).await;
    // Crash: dropping the only supervisor aborts the source's task wherever it is.
    drop(supervisor);

    // While down: the old writer adds to the rotated file, the new one to app.log.
    append(&mut writer, 90, 95);
    drop(writer);
    append(&mut writer2, 95, 130);

    // Run 2: finds the rotated file by its inode, finishes it, follows the new one,
    // and notices a truncation while tailing.
    let supervisor = fx.supervisor();
    let handle = spawn(&supervisor, &config);
    fx.wait_events("lines 0..130", |e| has_lines(e, 130)).await;
    writer2.set_len(0).unwrap();
    append(&mut writer2, 130, 140);
    fx.wait_events("lines 0..140", |e| has_lines(e, 140)).await;
    // The rotated file is finished after rotate_wait and leaves the checkpoint.
    wait_status(&handle, "the rotated file retired", |_| {
        let cp =
            std::fs::read_to_string(fx.dir.path().join("sources/applog/positions.json")).unwrap();
        let cp: Value = serde_json::from_str(&cp).unwrap();
        cp["files"].as_array().unwrap().len() == 1 && cp["retired"].as_array().unwrap().len() == 1
    })
    .await;
    append(&mut writer2, 140, 150);
    fx.wait_events("lines 0..150", |e| has_lines(e, 150)).await;
    supervisor.shutdown().await;

    // While down: truncated and regrown past the old position (same size check passes,
    // the first bytes differ).
    writer2.set_len(0).unwrap();
    writeln!(
        writer2,
        r#"{{"kind":"test.line","n":150,"pad":"replaced in place, longer first line"}}"#
    )
    .unwrap();
    append(&mut writer2, 151, 200);

    let supervisor = fx.supervisor();
    spawn(&supervisor, &config);
    let events = fx.wait_events("lines 0..200", |e| has_lines(e, 200)).await;
    supervisor.shutdown().await;

    // Every line number maps to exactly one id; repeats after the crash carry the same
    // id and the same content, so downstream dedup leaves one event per line.
    let lines = by_line(&events);
    assert_eq!(lines.len(), 200);
    for (n, ids) in &lines {
        assert_eq!(ids.len(), 1, "line {n} has ids {ids:?}");
    }
    let mut by_id: BTreeMap<&str, &Event> = BTreeMap::new();
    for e in &events {
        if let Some(prev) = by_id.insert(&e.id, e) {
            assert_eq!(prev.payload, e.payload, "same id, same line");
        }
        assert_eq!(e.kind, "test.line");
        assert_eq!(e.source, "applog");
        assert_eq!(e.subject, e.attrs["file"]);
    }
    assert_eq!(by_id.len(), 200, "distinct ids");
    let dead = fx.dead_letters().await;
    let dead_ids: BTreeSet<&str> = dead.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(dead_ids.len(), 1, "{dead:?}");
    assert_eq!(dead[0].original, b"this is not json");
    assert_eq!(dead[0].stage, "source/applog");
    assert!(dead[0].reason.contains("not JSON"), "{}", dead[0].reason);
    assert!(!by_id.contains_key(dead[0].id.as_str()));
}

/// A file that cannot be read is reported in the status; the other files keep flowing.
#[tokio::test]
async fn an_unreadable_file_is_reported_and_the_others_keep_going() {
    let fx = LogFixture::new().await;
    let logs = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(logs.path().join("missing"), logs.path().join("broken.log"))
        .unwrap();
    let config = FileTailConfig {
        name: "logs".into(),
        paths: vec![format!("{}/*.log", logs.path().display())],
        format: LineFormat::Text,
        pattern: Some(r"^(?P<level>\w+): (?P<message>.*)$".into()),
        default_subject: Some("svc".into()),
        poll_interval: Duration::from_millis(20),
        ..FileTailConfig::default()
    };
    let supervisor: Arc<Supervisor> = fx.supervisor();
    let handle = spawn(&supervisor, &config);
    let mut good = open_append(&logs.path().join("good.log"));
    writeln!(good, "INFO: started").unwrap();
    writeln!(good, "no colon here").unwrap();
    good.flush().unwrap();
    let events = fx.wait_events("the good line", |e| !e.is_empty()).await;
    let status = wait_status(&handle, "the broken file reported", |s| {
        s.errors > 0 && s.dead_letters == 1
    })
    .await;
    supervisor.shutdown().await;

    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.kind, "log.line");
    assert_eq!(e.subject, "svc");
    assert_eq!(e.attrs["level"], "INFO");
    assert_eq!(e.attrs["message"], "started");
    assert_eq!(
        e.attrs["file"],
        logs.path().join("good.log").display().to_string()
    );
    assert!(e.id.ends_with("-0-0"), "first line, generation 0: {}", e.id);
    assert!(
        status.last_error.as_deref().unwrap().contains("broken.log"),
        "{status:?}"
    );
    assert_eq!(status.state, SourceState::Running);
    let dead = fx.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].original, b"no colon here");
    assert!(
        dead[0].id.ends_with("-0-14"),
        "offset of the second line: {}",
        dead[0].id
    );
}

/// A pull source's line dated in the year 9999 becomes a dead letter with the reason (its
/// id derived from the line's, so a re-read writes the same one); the lines around it are
/// events, and a source with its own `max_future` uses that instead of the default.
#[tokio::test]
async fn a_line_dated_too_far_ahead_becomes_a_dead_letter() {
    let fx = LogFixture::new().await;
    let logs = tempfile::tempdir().unwrap();
    let config = FileTailConfig {
        name: "applog".into(),
        paths: vec![format!("{}/*.log", logs.path().display())],
        poll_interval: Duration::from_millis(20),
        ..FileTailConfig::default()
    };
    let supervisor: Arc<Supervisor> = fx.supervisor();
    let handle = spawn(&supervisor, &config);
    let mut file = open_append(&logs.path().join("app.log"));
    let in_20m = (chrono::Utc::now() + chrono::Duration::minutes(20)).to_rfc3339();
    writeln!(file, r#"{{"n":0,"time":"2024-03-01T12:00:00Z"}}"#).unwrap();
    writeln!(file, r#"{{"n":1,"time":"9999-01-01T00:00:00Z"}}"#).unwrap();
    writeln!(file, r#"{{"n":2,"time":"{in_20m}"}}"#).unwrap();
    writeln!(file, r#"{{"n":3}}"#).unwrap();
    file.flush().unwrap();
    let events = fx.wait_events("lines 0 and 3", |e| e.len() >= 2).await;
    wait_status(&handle, "two dead letters", |s| s.dead_letters == 2).await;
    supervisor.shutdown().await;
    let lines: Vec<&str> = events.iter().map(|e| e.attrs["n"].as_str()).collect();
    assert_eq!(lines, ["0", "3"]);
    let mut dead = fx.dead_letters().await;
    dead.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(dead.len(), 2, "{dead:?}");
    let refused: Event = serde_json::from_slice(&dead[0].original).unwrap();
    let year_9999 = dead
        .iter()
        .find(|d| d.reason.starts_with("event time 9999-01-01T00:00:00Z"))
        .expect("the year-9999 line");
    assert!(
        year_9999.reason.contains("the limit is 15m (max_future)"),
        "{}",
        year_9999.reason
    );
    assert!(
        year_9999.id.starts_with("source/applog/future/"),
        "{}",
        year_9999.id
    );
    assert!(refused.received_at > 0);

    // The same lines under a source allowing an hour: only the year 9999 is refused.
    let fx = LogFixture::new().await;
    let supervisor: Arc<Supervisor> = fx.supervisor();
    let handle = supervisor.register("wide", "file").unwrap();
    handle.set_max_future(Some(Duration::from_secs(3600)));
    let c = FileTailConfig {
        name: "wide".into(),
        ..config
    };
    supervisor.start(
        handle.clone(),
        Box::new(move || Ok(Box::new(FileTailSource::new(c.clone())?) as Box<dyn PullSource>)),
    );
    let events = fx.wait_events("lines 0, 2 and 3", |e| e.len() >= 3).await;
    wait_status(&handle, "one dead letter", |s| s.dead_letters == 1).await;
    supervisor.shutdown().await;
    let mut lines: Vec<&str> = events.iter().map(|e| e.attrs["n"].as_str()).collect();
    lines.sort_unstable();
    assert_eq!(lines, ["0", "2", "3"]);
    let dead = fx.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].reason.contains("the limit is 1h (max_future)"),
        "{}",
        dead[0].reason
    );
}
