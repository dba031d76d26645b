//! The log conformance suite on a Kafka-protocol broker, run three times with the same test
//! bodies: over plaintext, over TLS with a client certificate, and over SASL_SSL with SCRAM
//! (a [`Broker`] handle says which); plus the failures a user must be told about precisely.
//!
//! The brokers come from `scripts/services/tansu.sh` (which `scripts/test` runs):
//! `HELIOS_TEST_KAFKA` (plaintext; default `127.0.0.1:9092`), `HELIOS_TEST_KAFKA_TLS` and
//! `HELIOS_TEST_KAFKA_SASL` (tansu behind stunnel4), `HELIOS_TEST_KAFKA_CERTS` (the test CA,
//! the client certificate and the SASL password made at start). By hand:
//! `eval "$(scripts/services/tansu.sh start)"`. A missing broker fails the test, never skips it.
//! Every test uses fresh, uniquely named topics and groups.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::conformance::Retention;
use helios_log::kafka::{KafkaConfig, KafkaLog, SaslMechanism, Secret, SecurityProtocol};
use helios_log::{Log, LogError};

/// How a test reaches the brokers: the suite's parameter.
#[derive(Debug, Clone, Copy)]
enum Broker {
    Plaintext,
    /// TLS; the endpoint requires a client certificate signed by the test CA.
    Tls,
    /// TLS + SASL SCRAM-SHA-512 (user `helios-512`), the password read from a file.
    SaslSsl,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs the TLS and SASL brokers of \
             scripts/services/tansu.sh (they need stunnel4 and openssl: apt-get install \
             stunnel4 openssl). Run the tests through scripts/test, or \
             `eval \"$(scripts/services/tansu.sh start)\"` and rerun."
        )
    })
}

/// A file made by tansu.sh at start: `ca.pem`, `client.pem`, `client.key`, `other-ca.pem`,
/// `sasl-password`.
fn cert(name: &str) -> PathBuf {
    PathBuf::from(var("HELIOS_TEST_KAFKA_CERTS")).join(name)
}

impl Broker {
    fn config(self) -> KafkaConfig {
        let config = match self {
            Broker::Plaintext => KafkaConfig::new(
                std::env::var("HELIOS_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            ),
            Broker::Tls => KafkaConfig {
                security_protocol: Some(SecurityProtocol::Ssl),
                ca_file: Some(cert("ca.pem")),
                cert_file: Some(cert("client.pem")),
                key_file: Some(cert("client.key")),
                ..KafkaConfig::new(var("HELIOS_TEST_KAFKA_TLS"))
            },
            Broker::SaslSsl => KafkaConfig {
                security_protocol: Some(SecurityProtocol::SaslSsl),
                ca_file: Some(cert("ca.pem")),
                sasl_mechanism: Some(SaslMechanism::ScramSha512),
                sasl_username: Some("helios-512".to_owned()),
                sasl_password_file: Some(cert("sasl-password")),
                ..KafkaConfig::new(var("HELIOS_TEST_KAFKA_SASL"))
            },
        };
        config.request_timeout(Duration::from_secs(10))
    }

    async fn connect(self) -> Log {
        let config = self.config();
        let addr = config.bootstrap_servers.clone();
        KafkaLog::connect(config).await.unwrap_or_else(|e| {
            panic!(
                "no Kafka-protocol broker ({self:?}) at {addr}: {e}\n\
                 Run the tests through scripts/test, which starts tansu, or start it with \
                 `eval \"$(scripts/services/tansu.sh start)\"` and rerun."
            )
        })
    }
}

async fn open() -> ((), Log) {
    ((), Broker::Plaintext.connect().await)
}

// tansu 0.6 stores retention settings but deletes nothing (its in-memory engine has no
// retention; its SQLite engine only applies `retention.ms` in periodic maintenance and
// never `retention.bytes`).
conformance_suite!(open, Retention::NotEnforced);

/// The same suite over TLS with a client certificate.
mod tls {
    use super::*;

    async fn open() -> ((), Log) {
        ((), Broker::Tls.connect().await)
    }

    conformance_suite!(open, Retention::NotEnforced);
}

/// The same suite over SASL_SSL with SCRAM-SHA-512.
mod sasl_ssl {
    use super::*;

    async fn open() -> ((), Log) {
        ((), Broker::SaslSsl.connect().await)
    }

    conformance_suite!(open, Retention::NotEnforced);
}

/// Connecting must fail; returns the error and how long it took.
async fn refused(config: KafkaConfig) -> (LogError, Duration) {
    let started = Instant::now();
    match KafkaLog::connect(config).await {
        Ok(_) => panic!("the connection was expected to be refused"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            (e, started.elapsed())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_with_the_password_from_the_settings_and_an_inferred_protocol() {
    // No security_protocol: a SASL user and a CA file make it sasl_ssl.
    let config = KafkaConfig {
        security_protocol: None,
        sasl_mechanism: Some(SaslMechanism::ScramSha256),
        sasl_username: Some("helios-256".to_owned()),
        sasl_password_file: None,
        sasl_password: Some(Secret::new(
            std::fs::read_to_string(cert("sasl-password"))
                .unwrap()
                .trim(),
        )),
        ..Broker::SaslSsl.config()
    };
    let log = KafkaLog::connect(config)
        .await
        .unwrap_or_else(|e| panic!("SCRAM-SHA-256 login as helios-256: {e}"));
    // Authenticated for real: a topic round trip.
    crate::conformance::admin(&log, &crate::conformance::unique_prefix("scram256")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once_saying_sasl_refused_which_user() {
    let config = KafkaConfig {
        sasl_password_file: None,
        sasl_password: Some(Secret::new("not-the-password")),
        ..Broker::SaslSsl.config()
    };
    let (err, took) = refused(config).await;
    let msg = err.to_string();
    assert!(
        matches!(err, LogError::KafkaAuthentication { .. }),
        "expected an authentication error, got: {msg}"
    );
    assert!(msg.contains("SASL authentication failed"), "{msg}");
    assert!(msg.contains("`helios-512`"), "names the user: {msg}");
    assert!(msg.contains("SCRAM-SHA-512"), "names the mechanism: {msg}");
    assert!(
        msg.contains("HELIOS_KAFKA_SASL_PASSWORD"),
        "says where the password comes from: {msg}"
    );
    assert!(
        !msg.contains("not-the-password"),
        "never shows the password: {msg}"
    );
    // Reported as soon as the broker refuses, not after the request timeout (10 s).
    assert!(took < Duration::from_secs(9), "took {took:?}");

    // From a file, the message names the file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kafka-password");
    std::fs::write(&file, "not-the-password\n").unwrap();
    let config = KafkaConfig {
        sasl_password_file: Some(file.clone()),
        ..Broker::SaslSsl.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(matches!(err, LogError::KafkaAuthentication { .. }), "{msg}");
    assert!(
        msg.contains(&file.display().to_string()),
        "names the password file: {msg}"
    );
    assert!(
        !msg.contains("not-the-password"),
        "never shows the password: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_broker_certificate_fails_naming_the_ca_file() {
    let other_ca = cert("other-ca.pem");
    let config = KafkaConfig {
        ca_file: Some(other_ca.clone()),
        ..Broker::SaslSsl.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(
        matches!(err, LogError::KafkaTls { .. }),
        "expected a TLS error, got: {msg}"
    );
    assert!(msg.contains("certificate verify failed"), "{msg}");
    assert!(
        msg.contains(&other_ca.display().to_string()),
        "names the CA file: {msg}"
    );

    // Without a CA file the system's store is used, which knows nothing of the test CA.
    let config = KafkaConfig {
        ca_file: None,
        ..Broker::SaslSsl.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(
        matches!(err, LogError::KafkaTls { .. }),
        "expected a TLS error, got: {msg}"
    );
    assert!(
        msg.contains("--kafka-ca-file"),
        "says how to trust a private CA: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_tls_files_are_named_before_any_connection() {
    let missing = cert("no-such-ca.pem");
    let config = KafkaConfig {
        ca_file: Some(missing.clone()),
        ..Broker::Tls.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(msg.contains("kafka.ca_file"), "{msg}");
    assert!(msg.contains(&missing.display().to_string()), "{msg}");

    // A key where the certificate belongs.
    let config = KafkaConfig {
        cert_file: Some(cert("client.key")),
        ..Broker::Tls.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(msg.contains("kafka.cert_file"), "{msg}");
    assert!(msg.contains("BEGIN CERTIFICATE"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_requires_a_client_certificate_refuses_one_without() {
    let config = KafkaConfig {
        cert_file: None,
        key_file: None,
        ..Broker::Tls.config()
    };
    let (err, _) = refused(config).await;
    let msg = err.to_string();
    assert!(
        matches!(err, LogError::KafkaTls { .. }),
        "expected a TLS error, got: {msg}"
    );
    assert!(msg.contains("certificate required"), "{msg}");
    assert!(msg.contains("cert_file"), "says what to set: {msg}");
}
