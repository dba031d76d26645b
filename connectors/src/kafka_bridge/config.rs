//! Settings of a Kafka topic bridge source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use helios_log::OffsetReset;
use helios_log::kafka::{
    KafkaConfig, Naming, Pem, SaslMechanism, Secret, SecurityProtocol, check_pem_file,
};
use helios_schemas::tls::Outbound;
use serde::{Deserialize, Serialize};

use crate::secret::{SecretOrigin, SecretString};
use crate::webhook::mapping::{Mapper, MappingSpec, Preset};
use crate::{ConnectorError, Result};

/// How record values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// A JSON document per record.
    #[default]
    Json,
    /// Avro in the Confluent wire format (magic byte, schema id, body); the writer
    /// schema comes from `registry_url`.
    Avro,
}

/// `[[source]] type = "kafka_bridge"` in the spec: consume external topics into events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaBridgeConfig {
    /// Name of the source in `/v1/sources`. Default `kafka`.
    pub name: String,
    /// Comma-separated `host:port` brokers of the external cluster. Default
    /// `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Topics to consume (at least one).
    pub topics: Vec<String>,
    /// Consumer group; offsets are committed there. Default `helios-bridge-<name>`.
    pub group: Option<String>,
    /// Where to start when the group has no committed offset: `earliest` (default) or
    /// `latest`.
    pub offset_reset: OffsetReset,
    /// Encoding of record values: `json` (default) or `avro`.
    pub format: ValueFormat,
    /// Confluent-compatible schema registry URL; required for `format = "avro"`. Over
    /// `https://` the registry client trusts the process's `--ca-file` besides Mozilla's
    /// roots and presents its `--client-cert-file` to a registry that asks for one.
    pub registry_url: Option<String>,
    /// The registry's credential: `user:secret` for HTTP Basic auth (Confluent Cloud: the
    /// schema registry API key and secret), anything else as a bearer token. At most one of
    /// `registry_key` (in the spec itself), `registry_key_env` (the name of an environment
    /// variable holding it) and `registry_key_file` (a file holding it). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_key: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_key_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_key_file: Option<PathBuf>,
    /// The process's outbound TLS files, for the registry client (set by the binary).
    #[serde(skip)]
    pub registry_tls: Outbound,
    /// Records read per poll and committed together. Default 500.
    pub batch_size: usize,
    /// A built-in mapping (`alertmanager`); excludes `mapping`.
    pub preset: Option<Preset>,
    /// How the JSON value becomes events (the generic webhook rules). Unmapped ids are
    /// `topic/partition/offset`; an unmapped time is the record timestamp.
    pub mapping: Option<MappingSpec>,
    /// How the bridge talks to the brokers: `plaintext`, `ssl`, `sasl_plaintext` or
    /// `sasl_ssl`, as in the `[kafka]` settings. Default: `sasl_ssl` when a SASL setting is
    /// given, `ssl` when a TLS file is, else plaintext (or `options."security.protocol"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_protocol: Option<SecurityProtocol>,
    /// PEM file (or directory) of the CA certificates that signed the brokers'
    /// certificates. Default: the system's CA store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate, for brokers that authenticate clients by TLS
    /// (with `key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's (unencrypted) private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// SASL mechanism: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (for Confluent Cloud, the API key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// The SASL password: exactly one of `sasl_password` (in the spec itself),
    /// `sasl_password_env` (the name of an environment variable holding it) and
    /// `sasl_password_file` (a file holding it) when SASL is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password: Option<SecretString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password_env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_password_file: Option<PathBuf>,
    /// Extra librdkafka options for the consumer (`ssl.*`, `sasl.oauthbearer.*`, ...); an
    /// option that has a setting above cannot be given both ways.
    pub options: BTreeMap<String, String>,
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

impl Default for KafkaBridgeConfig {
    fn default() -> Self {
        KafkaBridgeConfig {
            name: "kafka".to_string(),
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            topics: Vec::new(),
            group: None,
            offset_reset: OffsetReset::Earliest,
            format: ValueFormat::Json,
            registry_url: None,
            registry_key: None,
            registry_key_env: None,
            registry_key_file: None,
            registry_tls: Outbound::default(),
            batch_size: 500,
            preset: None,
            mapping: None,
            security_protocol: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_env: None,
            sasl_password_file: None,
            options: BTreeMap::new(),
            max_future: None,
        }
    }
}

impl KafkaBridgeConfig {
    /// The consumer group.
    pub fn group_name(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("helios-bridge-{}", self.name))
    }

    /// Checks the settings without contacting anything.
    pub fn validate(&self) -> Result<()> {
        self.check(true)
    }

    /// `validate`, except that a schema source given in code may replace `registry_url`.
    pub(crate) fn check(&self, needs_registry_url: bool) -> Result<()> {
        let err = |m: &str| Err(ConnectorError::config(&self.name, m));
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return err("`topics` must list at least one non-empty topic name");
        }
        if self.bootstrap_servers.trim().is_empty() {
            return err("`bootstrap_servers` is empty; give at least one host:port");
        }
        if self.batch_size == 0 {
            return err("`batch_size` must be positive");
        }
        if needs_registry_url && self.format == ValueFormat::Avro && self.registry_url.is_none() {
            return err(
                "format = \"avro\" needs `registry_url`: the writer schemas come from a registry",
            );
        }
        if self
            .registry_url
            .as_deref()
            .is_some_and(helios_schemas::tls::url_has_credentials)
        {
            return err(
                "`registry_url` carries a user or password, which would show in logs and \
                 errors; give the URL without them and the credential as `registry_key_env` \
                 or `registry_key_file`",
            );
        }
        if let Some(origin) = self.registry_key_origin() {
            if self.registry_url.is_none() {
                return err("`registry_key` is the credential of `registry_url`, which is not set");
            }
            origin.validate(&self.name)?;
        }
        self.check_security()?;
        Mapper::new(&self.name, self.preset, self.mapping.as_ref()).map(drop)
    }

    fn registry_key_origin(&self) -> Option<SecretOrigin<'_>> {
        SecretOrigin::optional(
            "registry_key",
            self.registry_key.as_ref(),
            self.registry_key_env.as_deref(),
            self.registry_key_file.as_deref(),
        )
    }

    /// The registry's credential, read from where the spec says (`None` without one).
    /// Errors name the variable or file.
    pub fn resolve_registry_key(&self) -> Result<Option<SecretString>> {
        self.registry_key_origin()
            .map(|origin| origin.resolve(&self.name))
            .transpose()
    }

    fn password_origin(&self) -> Option<SecretOrigin<'_>> {
        SecretOrigin::optional(
            "sasl_password",
            self.sasl_password.as_ref(),
            self.sasl_password_env.as_deref(),
            self.sasl_password_file.as_deref(),
        )
    }

    /// The SASL password, read from where the spec says (`None` without SASL). Errors name
    /// the variable or file.
    pub fn resolve_sasl_password(&self) -> Result<Option<Secret>> {
        self.password_origin()
            .map(|origin| origin.resolve(&self.name).map(|s| Secret::new(s.expose())))
            .transpose()
    }

    /// The client settings of the bridge's consumer, with the password `resolve_sasl_password`
    /// gave.
    pub fn kafka_config(&self, client_id: String, password: Option<Secret>) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(&self.bootstrap_servers);
        kafka.client_id = client_id;
        kafka.security_protocol = self.security_protocol;
        kafka.ca_file = self.ca_file.clone();
        kafka.cert_file = self.cert_file.clone();
        kafka.key_file = self.key_file.clone();
        kafka.sasl_mechanism = self.sasl_mechanism;
        kafka.sasl_username = self.sasl_username.clone();
        kafka.sasl_password = password;
        kafka.options = self.options.clone();
        kafka.naming = Naming::Source;
        kafka.password_origin = self.password_described();
        kafka
    }

    /// Where the password comes from, as a failed login's message says it.
    fn password_described(&self) -> Option<String> {
        if let Some(var) = &self.sasl_password_env {
            Some(format!(
                "the password in the environment variable {var} (`sasl_password_env`)"
            ))
        } else if let Some(file) = &self.sasl_password_file {
            Some(format!(
                "the password in {} (`sasl_password_file`)",
                file.display()
            ))
        } else if self.sasl_password.is_some() {
            Some("the password (`sasl_password`)".to_owned())
        } else if self.options.contains_key("sasl.password") {
            Some("the password (`options.\"sasl.password\"`)".to_owned())
        } else {
            None
        }
    }

    /// The TLS files exist and hold what they should (checked at start, not with the spec,
    /// which may be validated on another machine); errors name the setting and the path.
    pub fn check_files(&self) -> Result<()> {
        for (path, setting, kind) in [
            (&self.ca_file, "ca_file", Pem::CaCertificates),
            (&self.cert_file, "cert_file", Pem::Certificate),
            (&self.key_file, "key_file", Pem::PrivateKey),
        ] {
            if let Some(path) = path {
                check_pem_file(path, setting, kind)
                    .map_err(|e| ConnectorError::config(&self.name, e.to_string()))?;
            }
        }
        Ok(())
    }

    /// TLS and SASL settings: consistent, the password's origin given once; in the spec's
    /// own names. Reads no file and no password.
    fn check_security(&self) -> Result<()> {
        let err = |m: String| Err(ConnectorError::config(&self.name, m));
        if let Some(origin) = self.password_origin() {
            origin.validate(&self.name)?;
            if self.options.contains_key("sasl.password") {
                return err(
                    "the SASL password is given twice, by `options.\"sasl.password\"` and by `sasl_password`, `sasl_password_env` or `sasl_password_file`; keep the latter"
                        .to_owned(),
                );
            }
        }
        // The settings as the client will see them; a password stands in for the one
        // resolved at start, so what is checked is only whether one will be there.
        let stand_in = self.password_origin().map(|_| Secret::new(""));
        self.kafka_config(String::new(), stand_in)
            .validate_as(Naming::Source)
            .map_err(|e| ConnectorError::config(&self.name, e.to_string()))
    }
}
