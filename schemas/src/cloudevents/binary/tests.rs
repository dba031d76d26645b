use std::collections::BTreeMap;

use base64::Engine as _;
use proptest::prelude::*;

use super::*;
use crate::cloudevents::{DATA_BASE64_ATTR, parse_body, to_cloudevent};

const RECEIVED: i64 = 1_763_900_000_000_000;

fn binary(headers: &[(&str, &str)], ct: Option<&str>, body: &[u8]) -> Result<Event, ItemError> {
    parse_binary(
        headers.iter().map(|(n, v)| (*n, v.as_bytes())),
        ct,
        body,
        RECEIVED,
    )
}

fn structured(json: &str) -> Result<Event, ItemError> {
    parse_body(
        Some("application/cloudevents+json"),
        json.as_bytes(),
        RECEIVED,
    )
    .unwrap()
    .remove(0)
}

const REQUIRED: [(&str, &str); 4] = [
    ("ce-specversion", "1.0"),
    ("ce-id", "x1"),
    ("ce-source", "/ci"),
    ("ce-type", "build.done"),
];

/// Header (name, value) pairs.
type Headers<'a> = Vec<(&'a str, &'a str)>;

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    REQUIRED.iter().chain(extra).copied().collect()
}

#[test]
fn binary_request_maps_to_the_same_event_as_its_structured_form() {
    // (headers beyond the required ones, Content-Type, body, the structured equivalent)
    let cases: Vec<(Headers, Option<&str>, &[u8], &str)> = vec![
        (
            vec![
                ("ce-subject", "helios"),
                ("ce-time", "2026-11-23T10:00:00.123456+01:00"),
                ("ce-branch", "main"),
                ("ce-attempt", "3"),
                ("ce-value", "12.5"),
                ("ce-dataschema", "https://example.com/s"),
                // Headers that are not attributes are not looked at.
                ("user-agent", "sdk/1"),
                ("traceparent", "00-ab-cd-01"),
            ],
            Some("application/json; charset=utf-8"),
            br#"{"b": [1, 2], "a": "x"}"#,
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done","subject":"helios",
                "time":"2026-11-23T10:00:00.123456+01:00","branch":"main","attempt":"3","value":"12.5",
                "dataschema":"https://example.com/s","datacontenttype":"application/json; charset=utf-8",
                "data":{"b": [1, 2], "a": "x"}}"#,
        ),
        // No Content-Type: JSON, and no datacontenttype attribute.
        (
            vec![],
            None,
            b" [1,2]\n",
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done","data":[1,2]}"#,
        ),
        // A `+json` media type is JSON too; JSON null is no data.
        (
            vec![],
            Some("application/vnd.github+json"),
            b"null",
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "datacontenttype":"application/vnd.github+json"}"#,
        ),
        // Text is a JSON string.
        (
            vec![],
            Some("text/plain"),
            "déjà \"vu\"\n".as_bytes(),
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "datacontenttype":"text/plain","data":"déjà \"vu\"\n"}"#,
        ),
        // Bytes are base64, also text that is not UTF-8.
        (
            vec![],
            Some("application/octet-stream"),
            &[0, 159, 146, 150],
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "datacontenttype":"application/octet-stream","data_base64":"AJ+Slg=="}"#,
        ),
        (
            vec![],
            Some("text/plain; charset=latin1"),
            &[b'd', 0xe9],
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "datacontenttype":"text/plain; charset=latin1","data_base64":"ZOk="}"#,
        ),
        // An empty body is no data, whatever the media type.
        (
            vec![],
            Some("application/json"),
            b"",
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "datacontenttype":"application/json"}"#,
        ),
        // Percent-encoded values, header names in any case.
        (
            vec![
                ("Ce-Subject", "Euro%20%E2%82%AC%20%f0%9f%98%80"),
                ("CE-NOTE", "%41"),
            ],
            None,
            b"",
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done",
                "subject":"Euro € 😀","note":"A"}"#,
        ),
    ];
    for (extra, ct, body, json) in cases {
        let headers: Vec<_> = REQUIRED.iter().copied().chain(extra).collect();
        let got = binary(&headers, ct, body);
        let want = structured(json);
        assert!(want.is_ok(), "{json}: {want:?}");
        assert_eq!(got, want, "{headers:?} {ct:?}");
    }
}

#[test]
fn binary_errors_are_the_structured_errors_with_the_field_named() {
    // Each case drops or changes headers; the structured form has the same fault.
    let cases: [(Headers, &str); 6] = [
        (
            vec![
                ("ce-specversion", "0.3"),
                ("ce-id", "a"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            r#"{"specversion":"0.3","id":"a","source":"s","type":"t"}"#,
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            r#"{"specversion":"1.0","source":"s","type":"t"}"#,
        ),
        (
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", ""),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
            r#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#,
        ),
        (
            vec![("ce-specversion", "1.0"), ("ce-id", "a"), ("ce-type", "t")],
            r#"{"specversion":"1.0","id":"a","type":"t"}"#,
        ),
        (
            with(&[("ce-time", "yesterday")]),
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done","time":"yesterday"}"#,
        ),
        (
            with(&[("ce-build_id", "7")]),
            r#"{"specversion":"1.0","id":"x1","source":"/ci","type":"build.done","build_id":"7"}"#,
        ),
    ];
    for (headers, json) in cases {
        let got = binary(&headers, None, b"").unwrap_err();
        let want = structured(json).unwrap_err();
        assert_eq!(got, want, "{headers:?}");
        assert!(got.field.is_some(), "{got}");
    }
}

#[test]
fn binary_only_faults_name_the_header() {
    // (extra headers, Content-Type, body, field, message fragment)
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        Option<&'a str>,
        &'a [u8],
        &'a str,
        &'a str,
    );
    let cases: [Case; 8] = [
        (
            &[("ce-datacontenttype", "text/plain")],
            None,
            b"",
            "datacontenttype",
            "Content-Type header",
        ),
        (&[("ce-data", "{}")], None, b"", "data", "request body"),
        (
            &[("ce-data_base64", "AA==")],
            None,
            b"",
            "data_base64",
            "request body",
        ),
        (
            &[("ce-subject", "a"), ("CE-SUBJECT", "b")],
            None,
            b"",
            "subject",
            "more than once",
        ),
        (
            &[("ce-subject", "%C0%A0")],
            None,
            b"",
            "subject",
            "not UTF-8",
        ),
        (
            &[("ce-subject", "\"unterminated")],
            None,
            b"",
            "subject",
            "does not end",
        ),
        (
            &[],
            Some("application/json"),
            b"{\"a\":",
            "data",
            "Content-Type \"application/json\" but its body is not JSON",
        ),
        (&[], None, b"hello", "data", "no Content-Type"),
    ];
    for (extra, ct, body, field, fragment) in cases {
        let err = binary(&with(extra), ct, body).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.field.as_deref(), Some(field), "{extra:?}: {err}");
        assert!(err.message.contains(fragment), "{extra:?}: {err}");
    }
}

#[test]
fn header_values_are_unquoted_then_percent_decoded_once() {
    let ok: [(&[u8], &str); 11] = [
        (b"plain", "plain"),
        (b"  padded\t", "padded"),
        (b"Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"),
        (b"%e2%82%ac", "€"),
        // Unnecessarily encoded characters are accepted.
        (b"%61%62c", "abc"),
        // One round only: %2541 is `%41`.
        (b"%2541", "%41"),
        // A `%` that starts no escape stays (older senders did not encode it).
        (b"50%", "50%"),
        (b"%zz%4", "%zz%4"),
        // Older senders quoted values with spaces; escapes inside are undone first.
        (br#""a b \"c\" \\ d""#, r#"a b "c" \ d"#),
        (br#""%20""#, " "),
        // Raw UTF-8 bytes (not ASCII, but sent by some clients) are UTF-8 all the same.
        ("žluť".as_bytes(), "žluť"),
    ];
    for (raw, want) in ok {
        assert_eq!(
            decode_header_value(raw).as_deref(),
            Ok(want),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    let bad: [(&[u8], &str); 6] = [
        (b"%C0%A0", "not UTF-8"),
        (b"%FF", "not UTF-8"),
        (b"%E2%82", "not UTF-8"),
        (&[b'a', 0xff], "not UTF-8"),
        (b"\"open", "does not end"),
        (br#""a"b""#, "unescaped double quote"),
    ];
    for (raw, fragment) in bad {
        let err = decode_header_value(raw).unwrap_err();
        assert!(err.contains(fragment), "{raw:?}: {err}");
    }
    assert!(
        decode_header_value(br#""ends\""#)
            .unwrap_err()
            .contains("does not end")
    );
}

#[test]
fn content_types_route_between_modes() {
    for (ct, spec, binary) in [
        (Some("application/json"), true, true),
        (None, true, true),
        (Some("text/plain"), true, true),
        (Some("application/octet-stream"), true, true),
        (Some("application/cloudevents+json"), true, false),
        (
            Some("Application/CloudEvents+JSON; charset=utf-8"),
            true,
            false,
        ),
        (Some("application/cloudevents-batch+json"), true, false),
        // Another event format is still structured mode (and refused as unsupported).
        (Some("application/cloudevents+avro"), true, false),
        (Some("application/x-ndjson"), true, false),
        (Some("application/ndjson"), true, false),
        (Some("application/json"), false, false),
        (Some("text/plain"), false, false),
        (None, false, false),
    ] {
        assert_eq!(is_binary_mode(ct, spec), binary, "{ct:?} {spec}");
    }
}

/// The binding's encoding: everything outside printable ASCII, space, `"` and `%`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'!'..=b'~' if b != b'"' && b != b'%' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #[test]
    fn any_text_survives_percent_encoding(text in any::<String>()) {
        prop_assert_eq!(decode_header_value(percent_encode(&text).as_bytes()), Ok(text));
    }

    #[test]
    fn decoding_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_header_value(&raw);
    }

    /// An event sent in binary mode as an SDK would (attributes percent-encoded, data as
    /// the body in its media type) is mapped back to itself.
    #[test]
    fn events_round_trip_through_binary_mode(
        id in "\\PC{1,20}",
        source in "\\PC{1,20}",
        kind in "[a-z.]{1,12}",
        subject in "\\PC{0,12}",
        time in 0i64..4_000_000_000_000_000,
        attrs in proptest::collection::btree_map("[a-z][a-z0-9]{0,7}", "\\PC{0,12}", 0..4),
        value in proptest::option::of(-1e9f64..1e9),
        data in 0u8..3,
        bytes in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let mut attrs: BTreeMap<String, String> = attrs
            .into_iter()
            .filter(|(k, _)| !matches!(
                k.as_str(),
                "id" | "source" | "type" | "subject" | "time" | "data" | "value" | "specversion"
                    | "datacontenttype" | "dataschema"
            ))
            .collect();
        let (content_type, body, payload) = match data {
            0 => (None, Vec::new(), None),
            1 => {
                let json = format!("{{\"n\":{},\"s\":\"a\\\"b\"}}", bytes[0]);
                attrs.insert("datacontenttype".into(), "application/json".into());
                (Some("application/json"), json.clone().into_bytes(), Some(json))
            }
            _ => {
                attrs.insert("datacontenttype".into(), "application/octet-stream".into());
                attrs.insert(DATA_BASE64_ATTR.into(), "true".into());
                let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
                (Some("application/octet-stream"), bytes.clone(), Some(format!("\"{b64}\"")))
            }
        };
        let event = Event {
            id, source, kind, subject, time,
            received_at: RECEIVED,
            attrs,
            value,
            payload,
        };
        // The SDKs' binary writer: every attribute of the JSON form but data and
        // datacontenttype as a ce- header.
        let json = to_cloudevent(&event);
        let headers: Vec<(String, String)> = json
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "data" | "data_base64" | "datacontenttype"))
            .map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (format!("ce-{k}"), percent_encode(&text))
            })
            .collect();
        let got = parse_binary(
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            content_type,
            &body,
            RECEIVED,
        );
        prop_assert_eq!(got, Ok(event));
    }
}
