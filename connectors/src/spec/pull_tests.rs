//! The pull sources' part of the spec: parsing `[[source]]` tables, validation messages,
//! and the default sources.

use std::time::Duration;

use super::{SourceSpec, SourcesSpec, default_sources};
use crate::file_tail::{FileTailConfig, LineFormat};

fn parse(text: &str) -> Result<Vec<SourceSpec>, String> {
    toml::from_str::<SourcesSpec>(text)
        .map(|s| s.sources)
        .map_err(|e| e.to_string())
}

/// The validation error of the only source in `text`.
fn invalid(text: &str) -> String {
    let sources = parse(text).unwrap();
    sources[0].validate().unwrap_err().to_string()
}

#[test]
fn parses_the_pull_sources() {
    let sources = parse(
        r#"
        [[source]]
        type = "host"
        interval = "30s"

        [[source]]
        type = "file"
        name = "nginx"
        paths = ["/var/log/nginx/*.log"]
        format = "text"
        pattern = '^(?P<ip>\S+) .* (?P<value>\d+)$'
        rotate_wait = "2s"

        [[source]]
        type = "probe"
        name = "site"
        url = "https://example.com/"
        expected_status = 301

        [[source]]
        type = "git"
        repos = ["/src/helios"]
        "#,
    )
    .unwrap();
    let kinds: Vec<(&str, &str)> = sources.iter().map(|s| (s.name(), s.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("host", "host"),
            ("nginx", "file"),
            ("site", "probe"),
            ("git", "git")
        ]
    );
    for s in &sources {
        s.validate().unwrap();
    }
    let SourceSpec::FileTail(FileTailConfig {
        format,
        rotate_wait,
        ..
    }) = &sources[1]
    else {
        panic!("a file source: {:?}", sources[1]);
    };
    assert_eq!(*format, LineFormat::Text);
    assert_eq!(*rotate_wait, Duration::from_secs(2));
}

#[test]
fn refuses_bad_settings_with_clear_messages() {
    for (text, message) in [
        (
            "type = \"host\"\ninterval = \"0s\"",
            "`interval` must be positive",
        ),
        (
            "type = \"host\"\ninterval = \"soon\"",
            "not a duration like `10s`",
        ),
        (
            "type = \"host\"\ncolour = \"red\"",
            "unknown field `colour`",
        ),
        ("type = \"file\"\npaths = [\"/x/[\"]", "not a valid glob"),
        (
            "type = \"file\"\npaths = [\"/x\"]\nformat = \"text\"\npattern = \"(?P<a\"",
            "not a valid regex",
        ),
        ("type = \"file\"", "at least one glob"),
        (
            "type = \"probe\"\nurl = \"localhost:80\"",
            "must start with http",
        ),
        ("type = \"git\"\nrepos = []", "at least one repository"),
    ] {
        let text = format!("[[source]]\n{text}");
        let err = match parse(&text) {
            Err(e) => e,
            Ok(_) => invalid(&text),
        };
        assert!(err.contains(message), "{text}: {err}");
    }
}

#[test]
fn default_sources_watch_the_host_and_helios_itself() {
    let dir = tempfile::tempdir().unwrap();
    let sources = default_sources("http://127.0.0.1:8080", dir.path());
    let host = sources
        .iter()
        .find(|s| s.kind() == "host")
        .expect("host metrics");
    assert_eq!(host.name(), "host");
    let SourceSpec::Probe(probe) = sources.iter().find(|s| s.kind() == "probe").expect("probe")
    else {
        unreachable!()
    };
    assert_eq!(probe.name, "self");
    assert_eq!(probe.url, "http://127.0.0.1:8080/healthz");
    assert_eq!(probe.interval, Duration::from_secs(10));
    for s in &sources {
        s.validate().unwrap();
    }
}

#[test]
fn max_future_is_a_setting_of_every_source() {
    let kinds = [
        "type = \"http\"",
        "type = \"host\"",
        "type = \"file\"\npaths = [\"/x\"]",
        "type = \"probe\"\nurl = \"http://x/\"",
        "type = \"git\"\nrepos = [\"/r\"]",
        "type = \"github\"\nsecret = \"s\"",
        "type = \"webhook\"\ntoken = \"t\"",
        "type = \"kafka_bridge\"\nbootstrap_servers = \"k:9092\"\ntopics = [\"t\"]",
    ];
    for kind in kinds {
        let sources = parse(&format!("[[source]]\n{kind}\nmax_future = \"1h\"")).unwrap();
        assert_eq!(
            sources[0].max_future(),
            Some(Duration::from_secs(3600)),
            "{kind}"
        );
        let sources = parse(&format!("[[source]]\n{kind}")).unwrap();
        assert_eq!(sources[0].max_future(), None, "{kind}: the default applies");
        let err = parse(&format!("[[source]]\n{kind}\nmax_future = \"soon\"")).unwrap_err();
        assert!(err.contains("not a duration like `10s`"), "{kind}: {err}");
    }
}
