//! Settings of the Kafka backend.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::naming::Naming;
use super::security::{
    Pem, SaslMechanism, Secret, SecurityContext, SecurityProtocol, check_pem_file,
    is_sensitive_option, read_password_file,
};
use crate::{LogError, Result};

/// Client options the backend sets itself because its guarantees depend on them; they cannot
/// be overridden through [`KafkaConfig::options`].
const RESERVED_OPTIONS: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "partitioner",
];

/// librdkafka options that have a setting of their own: giving both is refused (two sources
/// of truth).
const FIRST_CLASS_OPTIONS: &[(&str, &str)] = &[
    ("security.protocol", "security_protocol"),
    ("ssl.ca.location", "ca_file"),
    ("ssl.certificate.location", "cert_file"),
    ("ssl.key.location", "key_file"),
    ("sasl.mechanism", "sasl_mechanism"),
    ("sasl.mechanisms", "sasl_mechanism"),
    ("sasl.username", "sasl_username"),
];

/// How Helios reaches a Kafka-protocol cluster (Apache Kafka, Redpanda, tansu, ...).
///
/// Security: `security_protocol` (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`; when
/// unset, `sasl_ssl` if a SASL user is set, `ssl` if a CA or client certificate is set,
/// else plaintext), `ca_file` for a private CA (else the system's CA store),
/// `cert_file` + `key_file` for a client certificate, `sasl_mechanism` + `sasl_username`
/// and the password from [`KafkaConfig::sasl_password`] (set by the caller, e.g. from
/// `HELIOS_KAFKA_SASL_PASSWORD`) or `sasl_password_file`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers to bootstrap from.
    pub bootstrap_servers: String,

    /// Client id the brokers see in their logs and metrics.
    pub client_id: String,

    /// Upper bound, in milliseconds, on one admin or metadata request (create topic, list,
    /// describe, seek lookups, commits) and on the connectivity check in
    /// [`super::KafkaLog::connect`].
    pub request_timeout_ms: u64,

    /// How long, in milliseconds, an append may take in total, retries included, before it
    /// fails (librdkafka `message.timeout.ms`).
    pub delivery_timeout_ms: u64,

    /// How long, in milliseconds, the producer waits to fill a batch (librdkafka `linger.ms`).
    pub linger_ms: u64,

    /// Replication factor of topics created through the admin side; `None` leaves it to the
    /// broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,

    /// How the clients talk to the brokers; `None` infers it from the other security
    /// settings (see the type's docs).
    pub security_protocol: Option<SecurityProtocol>,

    /// PEM file (or directory) of the CA certificates that signed the brokers' certificates;
    /// `None` trusts the system's CA store.
    pub ca_file: Option<PathBuf>,

    /// PEM file of the client certificate, for brokers that authenticate clients by TLS.
    pub cert_file: Option<PathBuf>,

    /// PEM file of the client certificate's (unencrypted) private key.
    pub key_file: Option<PathBuf>,

    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name (for Confluent Cloud, the API key).
    pub sasl_username: Option<String>,

    /// File holding the SASL password (read at connect; a trailing line break is dropped).
    pub sasl_password_file: Option<PathBuf>,

    /// The SASL password itself. Never read from or written to the settings file: the
    /// caller sets it, e.g. from `HELIOS_KAFKA_SASL_PASSWORD`.
    #[serde(skip)]
    pub sasl_password: Option<Secret>,

    /// Extra librdkafka client options (`compression.type`, `ssl.*`, `sasl.*`, ...) applied
    /// to the producer, consumers and admin client after the backend's defaults. Options the
    /// backend depends on (`group.id`, `enable.auto.commit`, `enable.idempotence`, `acks`,
    /// `partitioner`, `bootstrap.servers`) are rejected, as are options that have a setting
    /// of their own when that setting is also given. (Helios' own flags and settings file
    /// refuse `sasl.password` here; the Kafka bridge's spec may still give it.)
    pub options: BTreeMap<String, String>,

    /// How messages about these settings name them, at validation and at connect time:
    /// as the `[kafka]` section does (the default), or as a Kafka bridge source does.
    #[serde(skip)]
    pub naming: Naming,

    /// Where the password came from, as failure messages should say it ("the password
    /// in the environment variable X (`sasl_password_env`)"); `None` to say it from the
    /// settings above. A Kafka bridge source sets it.
    #[serde(skip)]
    pub password_origin: Option<String>,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Option values that are secrets (`ssl.key.password`, ...) are not printed.
        let options: BTreeMap<&str, &str> = self
            .options
            .iter()
            .map(|(k, v)| {
                let v = if is_sensitive_option(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("linger_ms", &self.linger_ms)
            .field("replication_factor", &self.replication_factor)
            .field("security_protocol", &self.security_protocol)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password_file", &self.sasl_password_file)
            .field("sasl_password", &self.sasl_password)
            .field("options", &options)
            .field("naming", &self.naming)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            client_id: "helios".to_owned(),
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 60_000,
            linger_ms: 5,
            replication_factor: None,
            security_protocol: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password_file: None,
            sasl_password: None,
            options: BTreeMap::new(),
            naming: Naming::Backend,
            password_origin: None,
        }
    }
}

impl KafkaConfig {
    /// Defaults with the given bootstrap servers.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            ..KafkaConfig::default()
        }
    }

    /// Adds an extra librdkafka option (see [`KafkaConfig::options`]).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Sets [`KafkaConfig::request_timeout_ms`].
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Checks the settings without contacting any broker; messages name them as the
    /// `[kafka]` section and its flags do.
    pub fn validate(&self) -> Result<()> {
        self.validate_as(self.naming)
    }

    /// [`KafkaConfig::validate`], the messages naming the settings as `naming` says.
    pub fn validate_as(&self, naming: Naming) -> Result<()> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(LogError::Config(
                "kafka.bootstrap_servers is empty; give at least one host:port".to_owned(),
            ));
        }
        for (name, value) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("delivery_timeout_ms", self.delivery_timeout_ms),
        ] {
            if value == 0 || value > i32::MAX as u64 {
                return Err(LogError::Config(format!(
                    "kafka.{name} = {value} is out of range; use 1..={}",
                    i32::MAX
                )));
            }
        }
        if let Some(rf) = self.replication_factor
            && rf < 1
        {
            return Err(LogError::Config(format!(
                "kafka.replication_factor = {rf}; use at least 1, or leave it unset for the broker default"
            )));
        }
        for key in self.options.keys() {
            if RESERVED_OPTIONS.contains(&key.as_str()) {
                return Err(LogError::Config(format!(
                    "{} is set by Helios itself and cannot be overridden",
                    naming.option(key)
                )));
            }
        }
        self.validate_security(naming)
    }

    /// The security settings are consistent; says which to change when not.
    fn validate_security(&self, n: Naming) -> Result<()> {
        let err = |m: String| Err(LogError::Config(m));
        for (option, setting) in FIRST_CLASS_OPTIONS {
            if self.options.contains_key(*option) && self.first_class_is_set(setting) {
                return err(format!(
                    "{} and {} are both set; keep {}{}",
                    n.option(option),
                    n.key(setting),
                    n.bare(setting),
                    n.flag(setting)
                ));
            }
        }
        if self.sasl_password.is_some() && self.sasl_password_file.is_some() {
            return err(
                "the SASL password is given twice, in HELIOS_KAFKA_SASL_PASSWORD and by \
                 kafka.sasl_password_file (--kafka-sasl-password-file); keep one"
                    .to_owned(),
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            let (set, missing) = if self.cert_file.is_some() {
                ("cert_file", "key_file")
            } else {
                ("key_file", "cert_file")
            };
            return err(format!(
                "{} is set without {}: a client certificate needs both its PEM file{} and its \
                 private key{}",
                n.key(set),
                n.key(missing),
                n.flag("cert_file"),
                n.flag("key_file"),
            ));
        }
        let Some(protocol) = self.effective_protocol() else {
            // Left to `options."security.protocol"`, passed through as written.
            return Ok(());
        };
        let tls_setting = [
            ("ca_file", self.ca_file.is_some()),
            ("cert_file", self.cert_file.is_some()),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((name, _)) = tls_setting
            && !protocol.tls()
        {
            return err(format!(
                "{} is set but security_protocol = {protocol} has no TLS; use ssl or sasl_ssl",
                n.key(name)
            ));
        }
        let sasl_setting = [
            ("sasl_mechanism", self.sasl_mechanism.is_some()),
            ("sasl_username", self.sasl_username.is_some()),
            (
                "sasl_password_file",
                self.sasl_password_file.is_some() || self.sasl_password.is_some(),
            ),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((name, _)) = sasl_setting
            && !protocol.sasl()
        {
            return err(format!(
                "{} is set but security_protocol = {protocol} has no SASL; use sasl_ssl (or \
                 sasl_plaintext on a private network)",
                n.key(name)
            ));
        }
        if protocol.sasl() {
            if self.sasl_mechanism.is_none() && !self.options.contains_key("sasl.mechanism") {
                return err(format!(
                    "security_protocol = {protocol} needs {}{}: one of {}; the cluster's \
                     documentation says which (Confluent Cloud: PLAIN, MSK: SCRAM-SHA-512)",
                    n.key("sasl_mechanism"),
                    n.flag("sasl_mechanism"),
                    SaslMechanism::NAMES.join(", ")
                ));
            }
            if self.sasl_username.is_none() && !self.options.contains_key("sasl.username") {
                return err(format!(
                    "security_protocol = {protocol} needs {}{}",
                    n.key("sasl_username"),
                    match n {
                        Naming::Backend => " (--kafka-sasl-username, HELIOS_KAFKA_SASL_USERNAME)",
                        Naming::Source => "",
                    }
                ));
            }
            if self.sasl_password.is_none()
                && self.sasl_password_file.is_none()
                && !self.options.contains_key("sasl.password")
            {
                return err(format!(
                    "no SASL password for user `{}`: {}",
                    self.sasl_user().unwrap_or("?"),
                    match n {
                        Naming::Backend => {
                            "set HELIOS_KAFKA_SASL_PASSWORD, or name a file holding it with \
                             kafka.sasl_password_file (--kafka-sasl-password-file, \
                             HELIOS_KAFKA_SASL_PASSWORD_FILE)"
                        }
                        Naming::Source => {
                            "name the environment variable holding it with \
                             `sasl_password_env`, or a file with `sasl_password_file`"
                        }
                    }
                ));
            }
        }
        Ok(())
    }

    fn first_class_is_set(&self, setting: &str) -> bool {
        match setting {
            "security_protocol" => self.security_protocol.is_some(),
            "ca_file" => self.ca_file.is_some(),
            "cert_file" => self.cert_file.is_some(),
            "key_file" => self.key_file.is_some(),
            "sasl_mechanism" => self.sasl_mechanism.is_some(),
            "sasl_username" => self.sasl_username.is_some(),
            _ => false,
        }
    }

    /// The protocol the first-class settings ask for: the explicit one, else `sasl_ssl` when
    /// SASL settings are given, `ssl` when TLS files are, and `None` when neither is (then
    /// `options."security.protocol"` or librdkafka's default, plaintext, applies).
    pub fn effective_protocol(&self) -> Option<SecurityProtocol> {
        if let Some(p) = self.security_protocol {
            return Some(p);
        }
        if self.options.contains_key("security.protocol") {
            return None;
        }
        if self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password_file.is_some()
            || self.sasl_password.is_some()
        {
            Some(SecurityProtocol::SaslSsl)
        } else if self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some() {
            Some(SecurityProtocol::Ssl)
        } else {
            None
        }
    }

    fn sasl_user(&self) -> Option<&str> {
        self.sasl_username
            .as_deref()
            .or(self.options.get("sasl.username").map(String::as_str))
    }

    /// Checks the TLS files and reads the password file, so a missing or unreadable file is
    /// named before librdkafka is involved. Called by [`super::KafkaLog::connect`].
    pub(crate) fn load_security_files(&mut self) -> Result<()> {
        let n = self.naming;
        for (path, setting, kind) in [
            (&self.ca_file, "ca_file", Pem::CaCertificates),
            (&self.cert_file, "cert_file", Pem::Certificate),
            (&self.key_file, "key_file", Pem::PrivateKey),
        ] {
            if let Some(path) = path {
                check_pem_file(path, &n.key(setting), kind)?;
            }
        }
        if self.sasl_password.is_none()
            && let Some(path) = &self.sasl_password_file
        {
            let setting = n.key("sasl_password_file");
            self.sasl_password = Some(read_password_file(path, &setting)?);
        }
        Ok(())
    }

    /// What failure messages name: the brokers, the CA file, the SASL user and mechanism.
    pub(crate) fn security_context(&self) -> SecurityContext {
        SecurityContext {
            naming: self.naming,
            brokers: self.bootstrap_servers.clone(),
            ca_file: self
                .ca_file
                .clone()
                .or(self.options.get("ssl.ca.location").map(PathBuf::from)),
            user: self.sasl_user().map(str::to_owned),
            mechanism: self
                .sasl_mechanism
                .map(|m| m.as_str().to_owned())
                .or(self.options.get("sasl.mechanism").cloned())
                .or(self.options.get("sasl.mechanisms").cloned()),
            password_source: match (&self.sasl_password_file, &self.sasl_password) {
                _ if self.password_origin.is_some() => {
                    self.password_origin.clone().unwrap_or_default()
                }
                (Some(file), _) => format!(
                    "the password in {} ({})",
                    file.display(),
                    self.naming.key("sasl_password_file")
                ),
                (None, Some(_)) => "the password (HELIOS_KAFKA_SASL_PASSWORD)".to_owned(),
                (None, None) if self.options.contains_key("sasl.password") => {
                    "the password (option sasl.password)".to_owned()
                }
                (None, None) => "the password".to_owned(),
            },
        }
    }

    pub(crate) fn request_timeout_duration(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The librdkafka settings shared by every client.
    pub(crate) fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("socket.timeout.ms", self.request_timeout_ms.to_string())
            // Surface configuration problems through `tracing` rather than stderr.
            .set("log.connection.close", "false");
        if let Some(protocol) = self.effective_protocol() {
            c.set("security.protocol", protocol.as_str());
        }
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        if let Some(ca) = &self.ca_file {
            c.set("ssl.ca.location", path(ca));
        }
        if let Some(cert) = &self.cert_file {
            c.set("ssl.certificate.location", path(cert));
        }
        if let Some(key) = &self.key_file {
            c.set("ssl.key.location", path(key));
        }
        if let Some(mechanism) = self.sasl_mechanism {
            c.set("sasl.mechanism", mechanism.as_str());
        }
        if let Some(user) = &self.sasl_username {
            c.set("sasl.username", user);
        }
        if let Some(password) = &self.sasl_password {
            // rdkafka's `ClientConfig` leaves `sasl.password` out of its `Debug`.
            c.set("sasl.password", password.expose());
        }
        c
    }

    /// Applies [`KafkaConfig::options`] last.
    pub(crate) fn apply_options(&self, c: &mut rdkafka::ClientConfig) {
        for (k, v) in &self.options {
            c.set(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        KafkaConfig::default().validate().unwrap();
        KafkaConfig::new("a:1,b:2").validate().unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        let check = |c: KafkaConfig, needle: &str| {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        };
        check(KafkaConfig::new(" "), "bootstrap_servers");
        check(KafkaConfig::new("a:1").option("group.id", "x"), "group.id");
        check(
            KafkaConfig::new("a:1").option("enable.auto.commit", "true"),
            "enable.auto.commit",
        );
        let mut c = KafkaConfig::new("a:1");
        c.replication_factor = Some(0);
        check(c, "replication_factor");
        let mut c = KafkaConfig::new("a:1");
        c.request_timeout_ms = 0;
        check(c, "request_timeout_ms");
    }

    #[test]
    fn the_build_speaks_tls_plain_and_scram_but_not_gssapi() {
        // librdkafka's own list of what it was compiled with: the `ssl` feature brings TLS
        // and SCRAM (which needs OpenSSL's HMAC); PLAIN is always there; GSSAPI would need
        // Cyrus SASL, which is not built.
        let features = rdkafka::ClientConfig::new()
            .create_native_config()
            .unwrap()
            .get("builtin.features")
            .unwrap();
        let has = |f: &str| features.split(',').any(|x| x == f);
        for f in ["ssl", "sasl_plain", "sasl_scram", "gzip"] {
            assert!(has(f), "librdkafka lacks {f}: {features}");
        }
        assert!(!has("sasl_gssapi"), "{features}");
    }

    fn secure() -> KafkaConfig {
        KafkaConfig {
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("alice".to_owned()),
            sasl_password: Some(Secret::new("hunter2")),
            ca_file: Some(PathBuf::from("/etc/ca.pem")),
            ..KafkaConfig::new("k:9093")
        }
    }

    #[test]
    fn security_settings_become_librdkafka_options() {
        let c = secure();
        c.validate().unwrap();
        assert_eq!(c.effective_protocol(), Some(SecurityProtocol::SaslSsl));
        let rd = c.client_config();
        assert_eq!(rd.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(rd.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(rd.get("sasl.username"), Some("alice"));
        assert_eq!(rd.get("sasl.password"), Some("hunter2"));
        assert_eq!(rd.get("ssl.ca.location"), Some("/etc/ca.pem"));
        // TLS files alone mean ssl; nothing means librdkafka's default (plaintext).
        let tls = KafkaConfig {
            ca_file: Some(PathBuf::from("/etc/ca.pem")),
            ..KafkaConfig::new("k:9093")
        };
        assert_eq!(tls.effective_protocol(), Some(SecurityProtocol::Ssl));
        assert_eq!(
            KafkaConfig::new("k")
                .client_config()
                .get("security.protocol"),
            None
        );
        // The older way, an option, still works when no setting competes with it.
        let old = KafkaConfig::new("k").option("security.protocol", "SSL");
        old.validate().unwrap();
        assert_eq!(old.effective_protocol(), None);
        let mut rd = old.client_config();
        old.apply_options(&mut rd);
        assert_eq!(rd.get("security.protocol"), Some("SSL"));
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let c = secure().option("ssl.key.password", "keypass");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("keypass"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        let rd = format!("{:?}", c.client_config());
        assert!(!rd.contains("hunter2"), "{rd}");
    }

    #[test]
    fn inconsistent_security_settings_say_what_to_change() {
        let check = |c: KafkaConfig, needles: &[&str]| {
            let err = c.validate().unwrap_err().to_string();
            for needle in needles {
                assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            }
        };
        check(
            secure().option("ssl.ca.location", "/x"),
            &["ssl.ca.location", "ca_file"],
        );
        check(
            KafkaConfig {
                sasl_password_file: Some(PathBuf::from("/run/pw")),
                ..secure()
            },
            &["twice"],
        );
        check(
            KafkaConfig {
                cert_file: Some(PathBuf::from("/c.pem")),
                ..secure()
            },
            &["cert_file", "key_file"],
        );
        check(
            KafkaConfig {
                security_protocol: Some(SecurityProtocol::Plaintext),
                ..secure()
            },
            &["ca_file", "plaintext"],
        );
        check(
            KafkaConfig {
                security_protocol: Some(SecurityProtocol::Ssl),
                ca_file: None,
                ..secure()
            },
            &["sasl_mechanism", "no SASL"],
        );
        check(
            KafkaConfig {
                sasl_mechanism: None,
                ..secure()
            },
            &["sasl_mechanism", "SCRAM-SHA-512", "PLAIN"],
        );
        check(
            KafkaConfig {
                sasl_username: None,
                ..secure()
            },
            &["sasl_username", "--kafka-sasl-username"],
        );
        check(
            KafkaConfig {
                sasl_password: None,
                ..secure()
            },
            &[
                "`alice`",
                "HELIOS_KAFKA_SASL_PASSWORD",
                "--kafka-sasl-password-file",
            ],
        );
    }

    #[test]
    fn security_settings_deserialize_by_their_documented_names() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"bootstrap_servers":"k:9093","security_protocol":"SASL_SSL",
                "sasl_mechanism":"SCRAM-SHA-256","sasl_username":"u",
                "sasl_password_file":"/run/pw","ca_file":"/ca.pem"}"#,
        )
        .unwrap();
        assert_eq!(c.security_protocol, Some(SecurityProtocol::SaslSsl));
        assert_eq!(c.sasl_mechanism, Some(SaslMechanism::ScramSha256));
        assert_eq!(c.sasl_password, None);
        c.validate().unwrap();
        // The password itself is never a settings key.
        assert!(
            serde_json::from_str::<KafkaConfig>(r#"{"sasl_password":"x"}"#).is_err(),
            "sasl_password must not be accepted from the file"
        );
    }

    #[test]
    fn deserializes_with_defaults_and_denies_unknown_fields() {
        let c: KafkaConfig = serde_json::from_str(
            r#"{"bootstrap_servers":"k:9092","options":{"compression.type":"lz4"}}"#,
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers, "k:9092");
        assert_eq!(c.linger_ms, 5);
        assert_eq!(c.options["compression.type"], "lz4");
        assert!(serde_json::from_str::<KafkaConfig>(r#"{"bootstrap":"k"}"#).is_err());
    }
}
