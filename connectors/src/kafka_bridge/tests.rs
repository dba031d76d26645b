//! The bridge against a real Kafka-protocol broker (tansu, started by `scripts/test`;
//! address in `HELIOS_TEST_KAFKA`), writing into a real embedded log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apache_avro::Schema;
use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use bytes::Bytes;
use helios_log::kafka::{KafkaConfig, KafkaLog};
use helios_log::{Log, Record, TopicSpec};
use helios_schemas::{Event, Registry, SchemaSource};
use serde_json::json;

use super::*;
use crate::push::testing::{LogFixture, log_fixture, wait_status};
use crate::runtime::{SourceHandle, Supervisor};
use crate::webhook::mapping::{FieldSpec, FieldTable, MappingSpec};

async fn kafka() -> (Log, String) {
    let addr = std::env::var("HELIOS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let config = KafkaConfig::new(&addr).request_timeout(Duration::from_secs(10));
    let log = KafkaLog::connect(config).await.unwrap_or_else(|e| {
        panic!(
            "no Kafka-protocol broker at {addr} (from HELIOS_TEST_KAFKA, default 127.0.0.1:9092): {e}\n\
             Run the tests through scripts/test, which starts tansu, or start one with \
             `eval \"$(scripts/services/tansu.sh start)\"` and rerun."
        )
    });
    (log, addr)
}

fn unique(case: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("helios-test.bridge-{case}.{}-{nanos}", std::process::id())
}

fn short(v: &str) -> FieldSpec {
    FieldSpec::Short(v.to_string())
}

fn mapping() -> MappingSpec {
    MappingSpec {
        id: Some(FieldSpec::Full(FieldTable {
            pointer: Some("/build_id".into()),
            default: None,
            required: false,
        })),
        kind: Some(short("ci.run")),
        subject: Some(short("/repo")),
        time: Some(short("/finished")),
        value: Some(FieldSpec::Full(FieldTable {
            pointer: Some("/seconds".into()),
            default: None,
            required: false,
        })),
        attrs: BTreeMap::from([("result".to_string(), short("/result"))]),
        attrs_from: None,
        ..MappingSpec::default()
    }
}

fn start(
    f: &LogFixture,
    config: KafkaBridgeConfig,
    schemas: Option<Arc<dyn SchemaSource>>,
) -> (Arc<Supervisor>, SourceHandle) {
    let supervisor = f.supervisor();
    let name = config.name.clone();
    let handle = supervisor
        .spawn(
            &name,
            "kafka_bridge",
            Box::new(move || {
                Ok(
                    Box::new(KafkaBridge::with_schemas(config.clone(), schemas.clone())?)
                        as Box<dyn PullSource>,
                )
            }),
        )
        .unwrap();
    (supervisor, handle)
}

/// Events without `received_at` (the wall clock), sorted by id.
async fn events(f: &LogFixture) -> Vec<Event> {
    let mut got: Vec<Event> = f
        .events()
        .await
        .into_iter()
        .map(|mut e| {
            e.received_at = 0;
            e
        })
        .collect();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_records_become_events_bad_ones_dead_letters_and_offsets_commit() {
    let (kafka, addr) = kafka().await;
    let topic = unique("json");
    kafka
        .admin()
        .create_topic(&TopicSpec::new(&topic, 1))
        .await
        .unwrap();
    let good = json!({"build_id": "b-1", "repo": "acme/api", "finished": "2024-03-01T12:00:00Z", "seconds": 93.5, "result": "success"});
    let no_id = json!({"repo": "acme/web", "finished": 1709294500, "result": "failure"});
    let missing =
        json!({"build_id": "b-3", "finished": "2024-03-01T12:02:00Z", "result": "success"});
    let values = [
        good.to_string(),
        "not json at all".to_string(),
        no_id.to_string(),
        missing.to_string(),
    ];
    kafka
        .producer()
        .append(
            &topic,
            values
                .iter()
                .map(|v| Record::keyed("k", Bytes::from(v.clone())))
                .collect(),
        )
        .await
        .unwrap();

    let f = log_fixture().await;
    let config = KafkaBridgeConfig {
        name: "builds".into(),
        bootstrap_servers: addr.clone(),
        topics: vec![topic.clone()],
        group: Some(unique("group")),
        mapping: Some(mapping()),
        batch_size: 2,
        ..KafkaBridgeConfig::default()
    };
    let (supervisor, handle) = start(&f, config.clone(), None);
    wait_status(&handle, "4 records bridged", |s| {
        s.events_emitted == 2 && s.dead_letters == 2
    })
    .await;
    let expected = vec![
        Event {
            id: "b-1".into(),
            source: "builds".into(),
            kind: "ci.run".into(),
            subject: "acme/api".into(),
            time: 1_709_294_400_000_000,
            received_at: 0,
            attrs: BTreeMap::from([("result".to_string(), "success".to_string())]),
            value: Some(93.5),
            payload: Some(good.to_string()),
        },
        Event {
            id: format!("{topic}/0/2"),
            source: "builds".into(),
            kind: "ci.run".into(),
            subject: "acme/web".into(),
            time: 1_709_294_500_000_000,
            received_at: 0,
            attrs: BTreeMap::from([("result".to_string(), "failure".to_string())]),
            value: None,
            payload: Some(no_id.to_string()),
        },
    ];
    assert_eq!(events(&f).await, expected);
    let mut dead = f.dead_letters().await;
    dead.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].id, format!("source/builds/{topic}/0/1"));
    assert_eq!(dead[0].original, b"not json at all");
    assert!(dead[0].reason.contains("not JSON"), "{}", dead[0].reason);
    assert_eq!(dead[0].stage, "source/builds");
    assert_eq!(dead[1].id, format!("source/builds/{topic}/0/3"));
    assert!(
        dead[1].reason.contains("subject: pointer /repo is missing"),
        "{}",
        dead[1].reason
    );
    supervisor.shutdown().await;

    // A restart in the same group resumes after the committed offsets: only the new
    // record is read, nothing is repeated.
    let late = json!({"build_id": "b-5", "repo": "acme/api", "finished": "2024-03-01T12:05:00Z", "result": "success"});
    kafka
        .producer()
        .append(
            &topic,
            vec![Record::keyed("k", Bytes::from(late.to_string()))],
        )
        .await
        .unwrap();
    let (supervisor, handle) = start(&f, config, None);
    wait_status(&handle, "the new record", |s| s.events_emitted >= 1).await;
    supervisor.shutdown().await;
    let ids: Vec<String> = events(&f).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["b-1".into(), "b-5".into(), format!("{topic}/0/2")]);
    assert_eq!(handle.status().events_emitted, 1);
    assert_eq!(handle.status().dead_letters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_are_decoded_with_the_registry_schema() {
    let (kafka, addr) = kafka().await;
    let topic = unique("avro");
    kafka
        .admin()
        .create_topic(&TopicSpec::new(&topic, 1))
        .await
        .unwrap();
    let schema_text = r#"{"type":"record","name":"Build","namespace":"acme","fields":[
        {"name":"build_id","type":"string"},
        {"name":"repo","type":"string"},
        {"name":"finished","type":"long"},
        {"name":"seconds","type":["null","double"],"default":null},
        {"name":"result","type":{"type":"enum","name":"Result","symbols":["success","failure"]}}]}"#;
    let registry = Arc::new(Registry::in_memory());
    let id = registry
        .register(&format!("{topic}-value"), schema_text)
        .unwrap()
        .id;
    let schema = Schema::parse_str(schema_text).unwrap();
    let record = Avro::Record(vec![
        ("build_id".into(), Avro::String("b-9".into())),
        ("repo".into(), Avro::String("acme/api".into())),
        ("finished".into(), Avro::Long(1_709_294_400)),
        (
            "seconds".into(),
            Avro::Union(1, Box::new(Avro::Double(12.25))),
        ),
        ("result".into(), Avro::Enum(0, "success".into())),
    ]);
    let body = GenericDatumWriter::builder(&schema)
        .build()
        .unwrap()
        .write_value_to_vec(record)
        .unwrap();
    let framed = helios_schemas::wire::frame(id, &body);
    kafka
        .producer()
        .append(
            &topic,
            vec![
                Record::keyed("k", framed),
                // Framed with a schema id the registry does not know.
                Record::keyed("k", helios_schemas::wire::frame(id + 100, &body)),
            ],
        )
        .await
        .unwrap();

    let f = log_fixture().await;
    let config = KafkaBridgeConfig {
        name: "avro-builds".into(),
        bootstrap_servers: addr,
        topics: vec![topic.clone()],
        group: Some(unique("group")),
        format: ValueFormat::Avro,
        mapping: Some(mapping()),
        ..KafkaBridgeConfig::default()
    };
    let (supervisor, handle) = start(&f, config, Some(registry));
    wait_status(&handle, "2 records bridged", |s| {
        s.events_emitted == 1 && s.dead_letters == 1
    })
    .await;
    supervisor.shutdown().await;
    let payload = json!({"build_id": "b-9", "repo": "acme/api", "finished": 1_709_294_400, "seconds": 12.25, "result": "success"});
    let got = events(&f).await;
    assert_eq!(got.len(), 1);
    let got_payload: serde_json::Value =
        serde_json::from_str(got[0].payload.as_deref().unwrap()).unwrap();
    assert_eq!(got_payload, payload);
    assert_eq!(
        got[0],
        Event {
            id: "b-9".into(),
            source: "avro-builds".into(),
            kind: "ci.run".into(),
            subject: "acme/api".into(),
            time: 1_709_294_400_000_000,
            received_at: 0,
            attrs: BTreeMap::from([("result".to_string(), "success".to_string())]),
            value: Some(12.25),
            payload: got[0].payload.clone(),
        }
    );
    let dead = f.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, format!("source/avro-builds/{topic}/0/1"));
    assert!(
        dead[0].reason.contains(&format!("schema id {}", id + 100)),
        "{}",
        dead[0].reason
    );
}

#[test]
fn config_is_checked() {
    let check = |c: KafkaBridgeConfig, needle: &str| {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
    };
    check(KafkaBridgeConfig::default(), "`topics` must list");
    let base = KafkaBridgeConfig {
        topics: vec!["t".into()],
        ..KafkaBridgeConfig::default()
    };
    check(
        KafkaBridgeConfig {
            format: ValueFormat::Avro,
            ..base.clone()
        },
        "needs `registry_url`",
    );
    check(
        KafkaBridgeConfig {
            batch_size: 0,
            ..base.clone()
        },
        "batch_size",
    );
    base.validate().unwrap();
    assert_eq!(base.group_name(), "helios-bridge-kafka");
    // The registry's credential: only with a registry, and from one place.
    check(
        KafkaBridgeConfig {
            registry_key_env: Some("REGISTRY_KEY".into()),
            ..base.clone()
        },
        "`registry_key` is the credential of `registry_url`",
    );
    let avro = KafkaBridgeConfig {
        format: ValueFormat::Avro,
        registry_url: Some("https://registry.example".into()),
        registry_key_env: Some("HELIOS_TEST_UNSET_REGISTRY_KEY".into()),
        ..base.clone()
    };
    avro.validate().unwrap();
    check(
        KafkaBridgeConfig {
            registry_key: Some(crate::secret::SecretString::new("user:secret")),
            ..avro.clone()
        },
        "set exactly one of `registry_key`, `registry_key_env` and `registry_key_file`",
    );
    let e = KafkaBridgeConfig {
        registry_url: Some("https://bridge:s3cret@registry.example".into()),
        registry_key_env: None,
        ..avro.clone()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`registry_key_env`") && !e.contains("s3cret"),
        "{e}"
    );
    // Read at start: an unset variable is named.
    let e = super::KafkaBridge::new(avro).unwrap_err().to_string();
    assert!(
        e.contains("HELIOS_TEST_UNSET_REGISTRY_KEY") && e.contains("`registry_key_env`"),
        "{e}"
    );
}

#[test]
fn tls_and_sasl_settings_are_checked_in_the_specs_own_names() {
    use helios_log::kafka::{SaslMechanism, SecurityProtocol};
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let sasl = KafkaBridgeConfig {
        topics: vec!["t".into()],
        ca_file: Some(ca.clone()),
        sasl_mechanism: Some(SaslMechanism::ScramSha512),
        sasl_username: Some("bridge".into()),
        sasl_password_file: Some(password.clone()),
        ..KafkaBridgeConfig::default()
    };
    sasl.validate().unwrap();
    // Inferred from the SASL settings, with the password read from its file.
    let kafka = sasl.kafka_config("c".into(), sasl.resolve_sasl_password().unwrap());
    assert_eq!(kafka.effective_protocol(), Some(SecurityProtocol::SaslSsl));
    assert_eq!(
        kafka.sasl_password.as_ref().map(|p| p.expose()),
        Some("s3cret")
    );
    assert!(
        !format!("{sasl:?} {kafka:?}").contains("s3cret"),
        "never printed"
    );
    // Failures at connect time (TLS, login) name the source's settings too.
    assert_eq!(kafka.naming, helios_log::kafka::Naming::Source);
    assert_eq!(
        kafka.password_origin,
        Some(format!(
            "the password in {} (`sasl_password_file`)",
            password.display()
        ))
    );

    let check = |c: KafkaBridgeConfig, needles: &[&str]| {
        let e = c.validate().unwrap_err().to_string();
        for needle in needles {
            assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        }
        assert!(
            !e.contains("--kafka") && !e.contains("kafka."),
            "{e:?}: backend names"
        );
    };
    check(
        KafkaBridgeConfig {
            sasl_password_file: None,
            ..sasl.clone()
        },
        &["no SASL password for user `bridge`", "`sasl_password_env`"],
    );
    check(
        KafkaBridgeConfig {
            sasl_password_env: Some("BRIDGE_PASSWORD".into()),
            ..sasl.clone()
        },
        &["set exactly one of `sasl_password`, `sasl_password_env` and `sasl_password_file`"],
    );
    check(
        KafkaBridgeConfig {
            options: [("sasl.password".to_owned(), "again".to_owned())].into(),
            ..sasl.clone()
        },
        &["the SASL password is given twice"],
    );
    check(
        KafkaBridgeConfig {
            sasl_mechanism: None,
            ..sasl.clone()
        },
        &["needs `sasl_mechanism`", "SCRAM-SHA-512"],
    );
    // Files are checked at start (a spec may be validated on another machine).
    let missing = KafkaBridgeConfig {
        ca_file: Some(dir.path().join("missing.pem")),
        ..sasl.clone()
    };
    missing.validate().unwrap();
    let e = missing.check_files().unwrap_err().to_string();
    assert!(
        e.contains("ca_file") && e.contains("missing.pem") && e.contains("cannot read it"),
        "{e}"
    );
    sasl.check_files().unwrap();
    check(
        KafkaBridgeConfig {
            security_protocol: Some(SecurityProtocol::Plaintext),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password_file: None,
            ..sasl.clone()
        },
        &["`ca_file` is set but security_protocol = plaintext has no TLS"],
    );
    check(
        KafkaBridgeConfig {
            options: [("ssl.ca.location".to_owned(), "/etc/ca.pem".to_owned())].into(),
            ..sasl.clone()
        },
        &["`options.\"ssl.ca.location\"` and `ca_file` are both set; keep `ca_file`"],
    );
    // A password variable that is not set stops the start, naming it.
    let unset = KafkaBridgeConfig {
        sasl_password_file: None,
        sasl_password_env: Some("HELIOS_TEST_SURELY_UNSET_BRIDGE_PASSWORD".into()),
        ..sasl
    };
    unset.validate().unwrap();
    let e = unset.resolve_sasl_password().unwrap_err().to_string();
    assert!(
        e.contains("HELIOS_TEST_SURELY_UNSET_BRIDGE_PASSWORD"),
        "{e}"
    );
}
