//! Which backend a command talks to: the embedded data dir, or Kafka, a registry URL,
//! ClickHouse and a shared checkpoint store; and the backend settings file
//! (`--config helios-backend.toml`) with its `HELIOS_…` environment overrides.
//!
//! Precedence, for every setting: a command-line flag, then its environment variable, then
//! the settings file, then the built-in default (ADR-008). Clap merges flags and
//! environment; the file only fills what both left unset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use helios_log::Log;
use helios_log::embedded::{DefaultRetention, EmbeddedConfig, EmbeddedLog};
use helios_log::kafka::{KafkaConfig, KafkaLog, SaslMechanism, Secret, SecurityProtocol};
use helios_schemas::tls::{IdentityFiles, Outbound};
use helios_schemas::{Registry, RemoteRegistry, SchemaSource};
use serde::Deserialize;

/// Partitions of `helios.events` (and of the topics derived from it) when Helios creates it.
pub const DEFAULT_PARTITIONS: u32 = 4;

/// Where the log and registry live, for every command that reads or writes them.
///
/// The settings file (TOML; every key optional):
///
///   data_dir = "/var/lib/helios"
///   [kafka]                      # the Kafka backend; without it, the embedded log
///   bootstrap_servers = "k1:9092,k2:9092"
///   client_id = "helios"
///   request_timeout_ms = 30000
///   security_protocol = "sasl_ssl"  # plaintext | ssl | sasl_plaintext | sasl_ssl
///   ca_file = "/etc/helios/kafka-ca.pem"   # a private CA (default: the system's CAs)
///   cert_file = "/etc/helios/client.pem"   # a client certificate (mTLS), with key_file
///   key_file = "/etc/helios/client.key"
///   sasl_mechanism = "SCRAM-SHA-512"       # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
///   sasl_username = "helios"
///   sasl_password_file = "/run/secrets/kafka-password"  # or HELIOS_KAFKA_SASL_PASSWORD
///   options = { "compression.type" = "lz4" }  # any other librdkafka option
///   [registry]
///   url = "http://registry:8081"
///   key = "…"                    # bearer token, or user:password (basic)
///   [clickhouse]
///   url = "https://clickhouse:8443"
///   database = "helios"
///   user = "helios"               # the sink's user (and `helios migrate`'s)
///   password_file = "/run/secrets/clickhouse"   # or HELIOS_CLICKHOUSE_PASSWORD
///   ca_file = "/etc/helios/clickhouse-ca.pem"   # a private CA of the server's certificate
///   cert_file = "/etc/helios/clickhouse-client.pem"   # a server that requires mutual TLS
///   key_file = "/etc/helios/clickhouse-client.key"
///   read_user = "helios_reader"   # the read API's read-only user (`helios serve api`)
///   read_password_file = "/run/secrets/clickhouse-read"
///   [checkpoints]
///   dir = "/mnt/helios-state"    # shared by every `helios run pipeline` of a group
///   [topics]
///   prefix = ""                  # e.g. "staging." gives staging.helios.events
///   partitions = 4               # of helios.events when created
#[derive(Debug, Clone, Args)]
#[command(verbatim_doc_comment)]
pub struct LogArgs {
    /// Backend settings file (TOML): `data_dir`, `[kafka]` (bootstrap_servers, client_id,
    /// request_timeout_ms, delivery_timeout_ms, linger_ms, replication_factor,
    /// security_protocol, ca_file, cert_file, key_file, sasl_mechanism, sasl_username,
    /// sasl_password_file, options),
    /// `[registry]` (url, key), `[clickhouse]` (url, database, user, password_file, ca_file,
    /// cert_file, key_file, read_user, read_password_file), `[checkpoints]` (dir), `[topics]` (prefix,
    /// partitions). Flags win over `HELIOS_…` variables, which win over the file.
    #[arg(long = "config", env = "HELIOS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data dir holding the embedded log and registry (used unless --kafka and
    /// --registry say otherwise) [default: ./helios-data]
    #[arg(long, env = "HELIOS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Use Kafka instead of the embedded log: bootstrap servers, e.g. `127.0.0.1:9092`.
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_BOOTSTRAP")]
    pub kafka: Option<String>,

    /// A librdkafka client option `key=value` (repeatable; the variable takes a
    /// comma-separated list), e.g. `compression.type=lz4`. Added to `[kafka] options`. TLS
    /// and SASL have the flags below; `sasl.password` is refused here.
    #[arg(help_heading = KAFKA_HELP, long = "kafka-option", env = "HELIOS_KAFKA_OPTIONS", value_delimiter = ',',
          value_name = "KEY=VALUE", value_parser = parse_option)]
    pub kafka_options: Vec<(String, String)>,

    /// How Helios talks to the brokers: plaintext, ssl (TLS), sasl_plaintext, or sasl_ssl
    /// (SASL over TLS: Confluent Cloud, MSK, Aiven, Redpanda Cloud) [default: sasl_ssl when
    /// a SASL user is set, ssl when a CA or client certificate is, else plaintext]
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_SECURITY_PROTOCOL", value_name = "PROTOCOL", ignore_case = true,
          value_parser = PossibleValuesParser::new(SecurityProtocol::NAMES)
              .map(|s| s.parse::<SecurityProtocol>().expect("one of NAMES")))]
    pub kafka_security_protocol: Option<SecurityProtocol>,

    /// PEM file of the CA that signed the brokers' certificates, for a private CA (MSK with
    /// a private CA, Aiven's project CA, a self-managed cluster) [default: the system's CAs]
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_CA_FILE", value_name = "FILE")]
    pub kafka_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for brokers that authenticate clients by TLS, with
    /// --kafka-key-file (Aiven's access certificate, MSK mutual TLS).
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_CERT_FILE", value_name = "FILE")]
    pub kafka_cert_file: Option<PathBuf>,

    /// The client certificate's private key (PEM, unencrypted; keep it mode 0600).
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_KEY_FILE", value_name = "FILE")]
    pub kafka_key_file: Option<PathBuf>,

    /// SASL mechanism: PLAIN (Confluent Cloud), SCRAM-SHA-256 (Aiven, Redpanda) or
    /// SCRAM-SHA-512 (MSK, Redpanda).
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_SASL_MECHANISM", value_name = "MECHANISM", ignore_case = true,
          value_parser = PossibleValuesParser::new(SaslMechanism::NAMES)
              .map(|s| s.parse::<SaslMechanism>().expect("one of NAMES")))]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name (Confluent Cloud: the API key). The password is never a flag: put it
    /// in HELIOS_KAFKA_SASL_PASSWORD, or in a file named by --kafka-sasl-password-file.
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_SASL_USERNAME", value_name = "USER")]
    pub kafka_sasl_username: Option<String>,

    /// File holding the SASL password (a mounted secret; a trailing newline is ignored).
    /// Alternatively the password itself in the variable HELIOS_KAFKA_SASL_PASSWORD.
    #[arg(help_heading = KAFKA_HELP, long, env = "HELIOS_KAFKA_SASL_PASSWORD_FILE", value_name = "FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// The SASL password from HELIOS_KAFKA_SASL_PASSWORD: environment only, so it never
    /// shows in a process listing; `Secret` keeps it out of `Debug`.
    #[arg(skip = env_secret("HELIOS_KAFKA_SASL_PASSWORD"))]
    pub kafka_sasl_password: Option<Secret>,

    /// Schema registry URL (default: the data dir's embedded registry).
    #[arg(long, env = "HELIOS_REGISTRY_URL")]
    pub registry: Option<String>,

    /// Credential for the registry: a bearer token (e.g. a Helios API key with the `admin`
    /// scope, for a registry served by `helios run ingest`), or `user:password` for basic
    /// auth.
    #[arg(long, env = "HELIOS_REGISTRY_KEY", hide_env_values = true)]
    pub registry_key: Option<String>,

    /// Prefix of every Helios topic name, e.g. `staging.` (so several deployments share
    /// one cluster) [default: none]
    #[arg(long, env = "HELIOS_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
}

/// The `--help` section of the flags that say how to reach Kafka.
const KAFKA_HELP: &str = "Kafka (TLS and SASL recipes: deploy/README.md)";

fn env_secret(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!(
            "`{s}` is not a Kafka client option; write key=value, e.g. compression.type=lz4"
        )),
    }
}

/// The settings file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendFile {
    pub data_dir: Option<PathBuf>,
    pub kafka: Option<KafkaConfig>,
    #[serde(default)]
    pub registry: RegistryFile,
    #[serde(default)]
    pub clickhouse: ClickHouseFile,
    #[serde(default)]
    pub checkpoints: CheckpointsFile,
    #[serde(default)]
    pub topics: TopicsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub url: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseFile {
    pub url: Option<String>,
    pub database: Option<String>,
    /// The sink's (and `helios migrate`'s) user.
    pub user: Option<String>,
    /// File holding `user`'s password (one line); a password itself is never in this file.
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the server's certificate (private CAs).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate for a server that requires mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM file of its private key.
    pub key_file: Option<PathBuf>,
    /// The read API's read-only user.
    pub read_user: Option<String>,
    /// File holding `read_user`'s password (one line).
    pub read_password_file: Option<PathBuf>,
}

/// A password from a flag or the environment; `Debug` never shows it.
#[derive(Clone)]
pub struct Password(pub String);

impl std::str::FromStr for Password {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Password(s.to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Reads a password file: its first line, without the line end.
pub fn read_password_file(path: &Path, what: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} from {}", path.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned())
}

/// As whom and how a role connects to ClickHouse: the sink's user, its password, and the CA
/// of the server's certificate, for every command that writes or migrates the store.
#[derive(Debug, Clone, Default, Args)]
pub struct ClickHouseAccessArgs {
    /// ClickHouse user to connect as (else `[clickhouse] user` of the settings file)
    /// [default: the server's `default` user]
    #[arg(long, env = "HELIOS_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,

    /// That user's password. Set it in the environment rather than on the command line,
    /// where other users of the machine can read it, or use --clickhouse-password-file.
    #[arg(
        long,
        env = "HELIOS_CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub clickhouse_password: Option<Password>,

    /// File holding that user's password (one line) (else `[clickhouse] password_file`).
    #[arg(long, env = "HELIOS_CLICKHOUSE_PASSWORD_FILE", value_name = "FILE")]
    pub clickhouse_password_file: Option<PathBuf>,

    #[command(flatten)]
    pub tls: ClickHouseTlsArgs,
}

/// The TLS files of a ClickHouse connection, for every command that connects to it.
#[derive(Debug, Clone, Default, Args)]
pub struct ClickHouseTlsArgs {
    /// PEM file of the CA certificate(s) that signed the ClickHouse server's certificate,
    /// trusted besides Mozilla's roots for an `https://` URL (else `[clickhouse] ca_file`).
    #[arg(long, env = "HELIOS_CLICKHOUSE_CA_FILE", value_name = "FILE")]
    pub clickhouse_ca_file: Option<PathBuf>,

    /// PEM file of the client certificate (and any intermediates) to present to a
    /// ClickHouse server that requires mutual TLS, with --clickhouse-key-file (else
    /// `[clickhouse] cert_file`).
    #[arg(long, env = "HELIOS_CLICKHOUSE_CERT_FILE", value_name = "FILE")]
    pub clickhouse_cert_file: Option<PathBuf>,

    /// PEM file of that certificate's private key (else `[clickhouse] key_file`).
    #[arg(long, env = "HELIOS_CLICKHOUSE_KEY_FILE", value_name = "FILE")]
    pub clickhouse_key_file: Option<PathBuf>,
}

impl ClickHouseTlsArgs {
    /// `config` with the CA and client certificate files of the flags and environment,
    /// else of the settings file's `[clickhouse]`.
    pub fn apply(
        &self,
        config: helios_sinks::clickhouse::ClickHouseConfig,
        file: &ClickHouseFile,
    ) -> helios_sinks::clickhouse::ClickHouseConfig {
        let or = |flag: &Option<PathBuf>, set: &Option<PathBuf>| flag.clone().or(set.clone());
        config
            .ca_file(or(&self.clickhouse_ca_file, &file.ca_file))
            .client_certificate(
                or(&self.clickhouse_cert_file, &file.cert_file),
                or(&self.clickhouse_key_file, &file.key_file),
            )
    }
}

impl ClickHouseAccessArgs {
    /// `config` with the user, password and CA file of the flags and environment, else of
    /// the settings file's `[clickhouse]`.
    pub fn apply(
        &self,
        config: helios_sinks::clickhouse::ClickHouseConfig,
        file: &ClickHouseFile,
    ) -> anyhow::Result<helios_sinks::clickhouse::ClickHouseConfig> {
        let user = self.clickhouse_user.clone().or(file.user.clone());
        let password = match (&self.clickhouse_password, &self.clickhouse_password_file) {
            (Some(p), _) => Some(p.0.clone()),
            (None, Some(path)) => Some(read_password_file(path, "ClickHouse password")?),
            (None, None) => match &file.password_file {
                Some(path) => Some(read_password_file(path, "ClickHouse password")?),
                None => None,
            },
        };
        anyhow::ensure!(
            user.is_some() || password.is_none(),
            "a ClickHouse password is given without a user; add --clickhouse-user \
             (HELIOS_CLICKHOUSE_USER, [clickhouse] user)"
        );
        Ok(self.tls.apply(config.credentials(user, password), file))
    }
}

/// What every outbound HTTPS client of this process trusts and presents: the CA file
/// (`--ca-file`) besides Mozilla's roots, and the client certificate (`--client-cert-file`
/// with `--client-key-file`) for servers that require mutual TLS. Used by notifications,
/// the remote registry (`--registry`, a Kafka bridge's `registry_url`), `helios send`,
/// OTLP export (unless OTel's own variables name other files), and probes without files
/// of their own. ClickHouse has its own (`--clickhouse-ca-file`, ...). Set once by `main`
/// before any client is built.
static OUTBOUND: std::sync::OnceLock<Outbound> = std::sync::OnceLock::new();

/// Sets the process's outbound TLS files (first call wins).
pub fn set_outbound(tls: Outbound) {
    let _ = OUTBOUND.set(tls);
}

/// The process's outbound TLS files.
pub fn outbound() -> &'static Outbound {
    static NONE: Outbound = Outbound {
        ca_file: None,
        identity: None,
    };
    OUTBOUND.get().unwrap_or(&NONE)
}

/// The process's outbound TLS files from its flags: the client certificate and key both
/// or neither, and both usable (read now, so a bad file stops the start, named).
pub fn outbound_from_flags(
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> anyhow::Result<Outbound> {
    let identity = IdentityFiles::pair(cert_file, key_file).map_err(|missing| {
        anyhow::anyhow!(
            "a client certificate needs both its certificate and its key: the {missing} is \
             missing; set both --client-cert-file and --client-key-file \
             (HELIOS_CLIENT_CERT_FILE, HELIOS_CLIENT_KEY_FILE), or neither"
        )
    })?;
    if let Some(id) = &identity {
        id.check().context(
            "the outbound client certificate (--client-cert-file / HELIOS_CLIENT_CERT_FILE, \
             --client-key-file / HELIOS_CLIENT_KEY_FILE)",
        )?;
    }
    Ok(Outbound { ca_file, identity })
}

/// A reqwest client builder with the one TLS setup (`helios_schemas::tls`) and the
/// process's outbound TLS files.
pub fn http_client_builder() -> anyhow::Result<reqwest::ClientBuilder> {
    outbound().http_client_builder().context(
        "setting up TLS for outbound HTTPS (check --ca-file, --client-cert-file and \
         --client-key-file)",
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsFile {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsFile {
    pub prefix: Option<String>,
    pub partitions: Option<u32>,
}

impl BackendFile {
    /// Reads and checks a settings file; errors name the file and the offending key.
    pub fn load(path: &Path) -> anyhow::Result<BackendFile> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the backend settings {} (from --config / HELIOS_CONFIG)",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<BackendFile> {
        let file: BackendFile = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "the backend settings are not valid: {e}; see `helios run pipeline --help` \
                 for the keys"
            )
        })?;
        if file.topics.partitions == Some(0) {
            anyhow::bail!("[topics] partitions = 0; use at least 1");
        }
        Ok(file)
    }
}

/// The resolved backend: what a command connects to.
#[derive(Debug, Clone)]
pub struct Backend {
    pub data_dir: PathBuf,
    /// `None`: the embedded log in the data dir.
    pub kafka: Option<KafkaConfig>,
    pub registry: Option<String>,
    pub registry_key: Option<String>,
    /// From the file only; roles with their own `--clickhouse` flag take theirs first.
    pub clickhouse: ClickHouseFile,
    pub checkpoints: Option<PathBuf>,
    pub topics: Topics,
}

/// Topic names and the partition count of the topics Helios creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
    pub partitions: u32,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: String::new(),
            partitions: DEFAULT_PARTITIONS,
        }
    }
}

impl Topics {
    /// The full name of a Helios topic, e.g. `helios.events` with the prefix.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }
}

/// The embedded log's folder inside a data dir.
pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

/// The embedded registry's folder inside a data dir.
pub fn registry_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("registry")
}

impl LogArgs {
    /// Merges flags and environment (already merged by clap) over the settings file.
    pub fn resolve(&self) -> anyhow::Result<Backend> {
        let file = match &self.config {
            Some(path) => BackendFile::load(path)?,
            None => BackendFile::default(),
        };
        self.merge(file)
    }

    fn merge(&self, file: BackendFile) -> anyhow::Result<Backend> {
        let kafka = match (&self.kafka, file.kafka) {
            (Some(servers), Some(mut k)) => {
                k.bootstrap_servers = servers.clone();
                Some(k)
            }
            (Some(servers), None) => Some(KafkaConfig::new(servers.clone())),
            (None, k) => k,
        };
        let kafka = match kafka {
            Some(mut k) => {
                k.options.extend(self.kafka_options.iter().cloned());
                if k.options.contains_key("sasl.password") {
                    anyhow::bail!(
                        "the Kafka option sasl.password (--kafka-option, HELIOS_KAFKA_OPTIONS or \
                         [kafka] options) is refused: it would put the password on the command \
                         line or in the settings file; give it in HELIOS_KAFKA_SASL_PASSWORD or in \
                         a file named by --kafka-sasl-password-file ([kafka] sasl_password_file)"
                    );
                }
                self.merge_kafka_security(&mut k);
                k.validate().context("the Kafka settings")?;
                Some(k)
            }
            None if !self.kafka_options.is_empty() => anyhow::bail!(
                "--kafka-option / HELIOS_KAFKA_OPTIONS given without a Kafka cluster; add \
                 --kafka <bootstrap servers> or a [kafka] section to the settings file"
            ),
            None if self.kafka_security_given() => anyhow::bail!(
                "Kafka TLS or SASL settings (--kafka-security-protocol, --kafka-ca-file, \
                 --kafka-sasl-…, HELIOS_KAFKA_…) given without a Kafka cluster; add --kafka \
                 <bootstrap servers> or a [kafka] section to the settings file"
            ),
            None => None,
        };
        Ok(Backend {
            data_dir: self
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./helios-data")),
            kafka,
            registry: self.registry.clone().or(file.registry.url),
            registry_key: self.registry_key.clone().or(file.registry.key),
            clickhouse: file.clickhouse,
            checkpoints: file.checkpoints.dir,
            topics: Topics {
                prefix: self
                    .topic_prefix
                    .clone()
                    .or(file.topics.prefix)
                    .unwrap_or_default(),
                partitions: file.topics.partitions.unwrap_or(DEFAULT_PARTITIONS),
            },
        })
    }

    /// Flags and variables over the file's `[kafka]` security settings, one by one.
    fn merge_kafka_security(&self, k: &mut KafkaConfig) {
        fn over<T: Clone>(flag: &Option<T>, file: &mut Option<T>) {
            if flag.is_some() {
                file.clone_from(flag);
            }
        }
        over(&self.kafka_security_protocol, &mut k.security_protocol);
        over(&self.kafka_ca_file, &mut k.ca_file);
        over(&self.kafka_cert_file, &mut k.cert_file);
        over(&self.kafka_key_file, &mut k.key_file);
        over(&self.kafka_sasl_mechanism, &mut k.sasl_mechanism);
        over(&self.kafka_sasl_username, &mut k.sasl_username);
        over(&self.kafka_sasl_password_file, &mut k.sasl_password_file);
        if let Some(password) = &self.kafka_sasl_password {
            // The variable wins over the file's password file; over the flag (same
            // precedence level) it is an error, reported by `validate`.
            if self.kafka_sasl_password_file.is_none() {
                k.sasl_password_file = None;
            }
            k.sasl_password = Some(password.clone());
        }
    }

    fn kafka_security_given(&self) -> bool {
        self.kafka_security_protocol.is_some()
            || self.kafka_ca_file.is_some()
            || self.kafka_cert_file.is_some()
            || self.kafka_key_file.is_some()
            || self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || self.kafka_sasl_password_file.is_some()
            || self.kafka_sasl_password.is_some()
    }

    pub async fn open_log(&self) -> anyhow::Result<Log> {
        self.resolve()?.open_log().await
    }

    pub fn open_registry(&self) -> anyhow::Result<Arc<dyn SchemaSource>> {
        self.resolve()?.open_registry()
    }
}

impl Backend {
    async fn connect(&self, kafka: &KafkaConfig) -> anyhow::Result<Log> {
        KafkaLog::connect(kafka.clone())
            .await
            .with_context(|| format!("connecting to Kafka at {}", kafka.bootstrap_servers))
    }

    /// Opens the log read-only: Kafka, or the data dir of a running `helios up`.
    pub async fn open_log(&self) -> anyhow::Result<Log> {
        match &self.kafka {
            Some(kafka) => self.connect(kafka).await,
            None => {
                let dir = log_dir(&self.data_dir);
                let log = EmbeddedLog::open_read_only(&dir).with_context(|| {
                    format!(
                        "opening the log in {} (is this the data dir of `helios up`?)",
                        dir.display()
                    )
                })?;
                Ok(log.log())
            }
        }
    }

    /// Opens the log for a stage that writes or commits: Kafka, or the data dir's embedded
    /// log (which only one process may hold; `role` names the stage in the error) with
    /// `retention` for its topics.
    pub async fn open_writable_log(
        &self,
        role: &str,
        retention: DefaultRetention,
    ) -> anyhow::Result<(Log, Option<EmbeddedLog>)> {
        match &self.kafka {
            Some(kafka) => Ok((self.connect(kafka).await?, None)),
            None => {
                let dir = log_dir(&self.data_dir);
                let config = EmbeddedConfig {
                    default_retention: retention,
                    ..EmbeddedConfig::default()
                };
                let embedded = EmbeddedLog::open(&dir, config).with_context(|| {
                    format!(
                        "opening the log in {} ({role} needs it writable: stop `helios up` on this \
                         data dir, or point --kafka at a broker)",
                        dir.display()
                    )
                })?;
                Ok((embedded.log(), Some(embedded)))
            }
        }
    }

    /// The remote registry, when a URL is configured.
    pub fn remote_registry(&self) -> anyhow::Result<Option<Arc<RemoteRegistry>>> {
        self.registry
            .as_ref()
            .map(|url| {
                RemoteRegistry::connect(url, self.registry_key.as_deref(), outbound())
                    .map(Arc::new)
                    .with_context(|| format!("registry URL {url}"))
            })
            .transpose()
    }

    /// The registry to decode with: the remote one, or the data dir's (read-only).
    pub fn open_registry(&self) -> anyhow::Result<Arc<dyn SchemaSource>> {
        match self.remote_registry()? {
            Some(remote) => Ok(remote),
            None => {
                let dir = registry_dir(&self.data_dir);
                Ok(Arc::new(Registry::open_read_only(&dir).with_context(
                    || format!("opening the registry in {}", dir.display()),
                )?))
            }
        }
    }

    /// The ClickHouse endpoint: the role's flag or variable, else the file's.
    pub fn clickhouse_config(
        &self,
        url: Option<&str>,
        database: Option<&str>,
    ) -> Option<helios_sinks::clickhouse::ClickHouseConfig> {
        let url = url.map(str::to_owned).or(self.clickhouse.url.clone())?;
        let database = database
            .map(str::to_owned)
            .or(self.clickhouse.database.clone())
            .unwrap_or_else(|| "helios".to_owned());
        Some(helios_sinks::clickhouse::ClickHouseConfig::new(url).database(&database))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn args(argv: &[&str]) -> LogArgs {
        let mut all = vec!["helios"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).unwrap().log
    }

    const FILE: &str = r#"
data_dir = "/srv/helios"
[kafka]
bootstrap_servers = "file-broker:9092"
client_id = "from-file"
options = { "compression.type" = "lz4" }
[registry]
url = "http://file-registry:8081"
key = "file-key"
[clickhouse]
url = "http://file-ch:8123"
database = "analytics"
[checkpoints]
dir = "/mnt/state"
[topics]
prefix = "staging."
partitions = 12
"#;

    #[test]
    fn the_file_fills_what_flags_and_environment_leave_unset() {
        let file = BackendFile::parse(FILE).unwrap();
        let b = args(&[]).merge(file).unwrap();
        assert_eq!(b.data_dir, PathBuf::from("/srv/helios"));
        let k = b.kafka.as_ref().unwrap();
        assert_eq!(k.bootstrap_servers, "file-broker:9092");
        assert_eq!(k.client_id, "from-file");
        assert_eq!(k.options["compression.type"], "lz4");
        assert_eq!(b.registry.as_deref(), Some("http://file-registry:8081"));
        assert_eq!(b.registry_key.as_deref(), Some("file-key"));
        assert_eq!(b.checkpoints, Some(PathBuf::from("/mnt/state")));
        assert_eq!(b.topics.name("helios.events"), "staging.helios.events");
        assert_eq!(b.topics.partitions, 12);
        let ch = b.clickhouse_config(None, None).unwrap();
        assert_eq!(ch.url, "http://file-ch:8123");
    }

    #[test]
    fn flags_win_over_the_file_and_keep_its_other_kafka_settings() {
        let file = BackendFile::parse(FILE).unwrap();
        let b = args(&[
            "--kafka",
            "flag-broker:9092",
            "--kafka-option",
            "linger.ms=20",
            "--registry",
            "http://flag-registry",
            "--topic-prefix",
            "t1.",
            "--data-dir",
            "/tmp/d",
        ])
        .merge(file)
        .unwrap();
        let k = b.kafka.as_ref().unwrap();
        assert_eq!(k.bootstrap_servers, "flag-broker:9092");
        assert_eq!(k.client_id, "from-file");
        assert_eq!(k.options["linger.ms"], "20");
        assert_eq!(k.options["compression.type"], "lz4");
        assert_eq!(b.registry.as_deref(), Some("http://flag-registry"));
        assert_eq!(b.topics.prefix, "t1.");
        assert_eq!(b.data_dir, PathBuf::from("/tmp/d"));
        let ch = b
            .clickhouse_config(Some("http://flag-ch:8123"), None)
            .unwrap();
        assert_eq!(ch.url, "http://flag-ch:8123");
    }

    #[derive(Debug, Parser)]
    struct ChCli {
        #[command(flatten)]
        access: ClickHouseAccessArgs,
    }

    fn access(argv: &[&str]) -> ClickHouseAccessArgs {
        let mut all = vec!["helios"];
        all.extend_from_slice(argv);
        ChCli::try_parse_from(all).unwrap().access
    }

    #[test]
    fn clickhouse_credentials_and_ca_come_from_flags_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file_password = dir.path().join("file.pw");
        std::fs::write(&file_password, "from-file\n").unwrap();
        let flag_password = dir.path().join("flag.pw");
        std::fs::write(&flag_password, "from-flag-file\r\nignored second line\n").unwrap();
        let text = format!(
            "[clickhouse]\nurl = \"https://ch:8443\"\nuser = \"writer\"\npassword_file = {:?}\n\
             ca_file = \"/etc/ca.pem\"\ncert_file = \"/etc/c.pem\"\nkey_file = \"/etc/c.key\"\n\
             read_user = \"reader\"\nread_password_file = \"/r.pw\"\n",
            file_password.to_str().unwrap()
        );
        let file = BackendFile::parse(&text).unwrap();
        let b = args(&[]).merge(file).unwrap();
        let base = b.clickhouse_config(None, None).unwrap();
        assert_eq!(base.url, "https://ch:8443");

        // The file alone.
        let c = access(&[]).apply(base.clone(), &b.clickhouse).unwrap();
        assert_eq!(c.user.as_deref(), Some("writer"));
        assert_eq!(c.password.as_deref(), Some("from-file"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(c.cert_file, Some(PathBuf::from("/etc/c.pem")));
        assert_eq!(c.key_file, Some(PathBuf::from("/etc/c.key")));
        assert!(
            !format!("{c:?}").contains("from-file"),
            "Debug shows the password"
        );

        // Flags win; a password file's first line, without its line end.
        let c = access(&[
            "--clickhouse-user",
            "other",
            "--clickhouse-password-file",
            flag_password.to_str().unwrap(),
            "--clickhouse-ca-file",
            "/flag/ca.pem",
            "--clickhouse-cert-file",
            "/flag/c.pem",
            "--clickhouse-key-file",
            "/flag/c.key",
        ])
        .apply(base.clone(), &b.clickhouse)
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("other"));
        assert_eq!(c.password.as_deref(), Some("from-flag-file"));
        assert_eq!(c.ca_file, Some(PathBuf::from("/flag/ca.pem")));
        assert_eq!(c.cert_file, Some(PathBuf::from("/flag/c.pem")));
        assert_eq!(c.key_file, Some(PathBuf::from("/flag/c.key")));

        // A password given as such wins over both files.
        let c = access(&["--clickhouse-password", "given"])
            .apply(base.clone(), &b.clickhouse)
            .unwrap();
        assert_eq!(c.password.as_deref(), Some("given"));

        // A password without any user is refused; a missing file is named.
        let err = access(&["--clickhouse-password", "x"])
            .apply(base.clone(), &ClickHouseFile::default())
            .unwrap_err();
        assert!(err.to_string().contains("--clickhouse-user"), "{err}");
        let err = access(&["--clickhouse-password-file", "/no/such/file"])
            .apply(base, &ClickHouseFile::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/file"), "{err:#}");
    }

    #[test]
    fn defaults_without_file_flags_or_environment() {
        let b = args(&[]).merge(BackendFile::default()).unwrap();
        assert_eq!(b.data_dir, PathBuf::from("./helios-data"));
        assert!(b.kafka.is_none());
        assert_eq!(b.topics, Topics::default());
        assert!(b.clickhouse_config(None, None).is_none());
    }

    const SECURE_FILE: &str = r#"
[kafka]
bootstrap_servers = "cluster.example:9092"
security_protocol = "SASL_SSL"
ca_file = "/etc/helios/ca.pem"
sasl_mechanism = "SCRAM-SHA-256"
sasl_username = "from-file"
sasl_password_file = "/run/secrets/from-file"
"#;

    #[test]
    fn kafka_security_from_the_file_with_flags_over_it() {
        let b = args(&[])
            .merge(BackendFile::parse(SECURE_FILE).unwrap())
            .unwrap();
        let k = b.kafka.unwrap();
        assert_eq!(k.security_protocol, Some(SecurityProtocol::SaslSsl));
        assert_eq!(k.sasl_mechanism, Some(SaslMechanism::ScramSha256));
        assert_eq!(k.sasl_username.as_deref(), Some("from-file"));
        assert_eq!(
            k.sasl_password_file,
            Some(PathBuf::from("/run/secrets/from-file"))
        );

        let b = args(&[
            "--kafka-sasl-mechanism",
            "scram-sha-512",
            "--kafka-sasl-username",
            "from-flag",
            "--kafka-ca-file",
            "/flag/ca.pem",
            "--kafka-sasl-password-file",
            "/flag/pw",
        ])
        .merge(BackendFile::parse(SECURE_FILE).unwrap())
        .unwrap();
        let k = b.kafka.unwrap();
        assert_eq!(k.sasl_mechanism, Some(SaslMechanism::ScramSha512));
        assert_eq!(k.sasl_username.as_deref(), Some("from-flag"));
        assert_eq!(k.ca_file, Some(PathBuf::from("/flag/ca.pem")));
        assert_eq!(k.sasl_password_file, Some(PathBuf::from("/flag/pw")));
        assert_eq!(k.bootstrap_servers, "cluster.example:9092");
    }

    #[test]
    fn the_password_variable_wins_over_the_files_password_file_and_never_shows() {
        let mut a = args(&[]);
        a.kafka_sasl_password = Some(Secret::new("from-env-hunter2"));
        let b = a.merge(BackendFile::parse(SECURE_FILE).unwrap()).unwrap();
        let k = b.kafka.as_ref().unwrap();
        assert_eq!(
            k.sasl_password.as_ref().map(Secret::expose),
            Some("from-env-hunter2")
        );
        assert_eq!(k.sasl_password_file, None);
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{b:?}").contains("hunter2"));

        // The variable and the flag are the same level: keep one.
        let mut a = args(&["--kafka-sasl-password-file", "/flag/pw"]);
        a.kafka_sasl_password = Some(Secret::new("x"));
        let err = a
            .merge(BackendFile::parse(SECURE_FILE).unwrap())
            .unwrap_err();
        assert!(format!("{err:#}").contains("twice"), "{err:#}");
    }

    #[test]
    fn kafka_security_flags_alone_configure_a_cluster() {
        let mut a = args(&[
            "--kafka",
            "pkc.example:9092",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "APIKEY",
        ]);
        a.kafka_sasl_password = Some(Secret::new("secret"));
        let k = a.merge(BackendFile::default()).unwrap().kafka.unwrap();
        assert_eq!(k.effective_protocol(), Some(SecurityProtocol::SaslSsl));

        // A SASL user without a password says where the password goes.
        let err = args(&[
            "--kafka",
            "k:9092",
            "--kafka-sasl-mechanism",
            "PLAIN",
            "--kafka-sasl-username",
            "APIKEY",
        ])
        .merge(BackendFile::default())
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("HELIOS_KAFKA_SASL_PASSWORD"), "{msg}");
        assert!(msg.contains("--kafka-sasl-password-file"), "{msg}");

        let err = args(&[
            "--kafka",
            "k:9092",
            "--kafka-option",
            "sasl.password=hunter2",
        ])
        .merge(BackendFile::default())
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("HELIOS_KAFKA_SASL_PASSWORD"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");

        let err = args(&["--kafka-ca-file", "/ca.pem"])
            .merge(BackendFile::default())
            .unwrap_err();
        assert!(err.to_string().contains("without a Kafka cluster"), "{err}");
        assert!(
            Cli::try_parse_from(["helios", "--kafka-sasl-mechanism", "GSSAPI"]).is_err(),
            "an unsupported mechanism is refused"
        );
        assert!(
            Cli::try_parse_from(["helios", "--kafka-sasl-password", "x"]).is_err(),
            "the password is never a flag"
        );
    }

    /// Every `toml` block of deploy/README.md (the managed-Kafka recipes) is a settings file
    /// that parses and, with the password a deployment would give, validates.
    #[test]
    fn the_kafka_recipes_in_the_deploy_readme_are_valid_settings() {
        let readme = include_str!("../deploy/README.md");
        let mut blocks = Vec::new();
        let mut open: Option<String> = None;
        for line in readme.lines() {
            match (open.as_mut(), line.trim_start().strip_prefix("```")) {
                (None, Some(info)) if info.trim() == "toml" => open = Some(String::new()),
                (None, Some(_)) => open = Some("not toml".to_owned()),
                (Some(_), Some(_)) => blocks.extend(open.take().filter(|b| b != "not toml")),
                (Some(b), None) if b != "not toml" => {
                    b.push_str(line);
                    b.push('\n');
                }
                _ => {}
            }
        }
        assert!(blocks.len() >= 6, "only {} recipes found", blocks.len());
        for block in blocks {
            let file = BackendFile::parse(&block).unwrap_or_else(|e| panic!("{e:#}\n{block}"));
            let mut a = args(&[]);
            if block.contains("sasl_password_file") {
                // As with HELIOS_KAFKA_SASL_PASSWORD set, which wins over the file's file.
                a.kafka_sasl_password = Some(Secret::new("x"));
            }
            let b = a.merge(file).unwrap_or_else(|e| panic!("{e:#}\n{block}"));
            let k = b.kafka.unwrap();
            assert!(
                k.effective_protocol().is_some_and(|p| p.tls()),
                "every recipe uses TLS:\n{block}"
            );
        }
    }

    #[test]
    fn help_teaches_where_the_kafka_password_goes() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "--kafka-security-protocol",
            "--kafka-ca-file",
            "--kafka-cert-file",
            "--kafka-key-file",
            "--kafka-sasl-mechanism",
            "--kafka-sasl-username",
            "--kafka-sasl-password-file",
            "HELIOS_KAFKA_SASL_PASSWORD",
            "SCRAM-SHA-512",
        ] {
            assert!(help.contains(needle), "--help lacks {needle}");
        }
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let err = BackendFile::parse("[kafka]\nbootstrap = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("bootstrap"), "{err:#}");
        let err = BackendFile::parse("[topics]\npartitions = 0\n").unwrap_err();
        assert!(err.to_string().contains("partitions"), "{err}");
        let err = args(&["--kafka-option", "linger.ms=5"])
            .merge(BackendFile::default())
            .unwrap_err();
        assert!(err.to_string().contains("without a Kafka cluster"), "{err}");
        let err = args(&["--kafka", "k:1", "--kafka-option", "group.id=x"])
            .merge(BackendFile::default())
            .unwrap_err();
        assert!(format!("{err:#}").contains("group.id"), "{err:#}");
        assert!(
            Cli::try_parse_from(["helios", "--kafka-option", "nonsense"]).is_err(),
            "an option without = is refused"
        );
    }
}
