//! TLS and SASL towards the brokers: the protocol and mechanism names, the password (never
//! printed), the checks of the CA, certificate, key and password files before librdkafka
//! sees them, and the messages for the failures a user can fix (an untrusted certificate,
//! a refused password).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::naming::Naming;
use crate::{LogError, Result};

/// How a client talks to the brokers (librdkafka `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (a private network or loopback).
    #[serde(rename = "plaintext", alias = "PLAINTEXT")]
    Plaintext,
    /// TLS; the client authenticates with a certificate if one is given.
    #[serde(rename = "ssl", alias = "SSL")]
    Ssl,
    /// SASL without TLS: the password crosses the network readable for PLAIN.
    #[serde(rename = "sasl_plaintext", alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS: what managed clusters use.
    #[serde(rename = "sasl_ssl", alias = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// Every value, as written in settings and flags.
    pub const NAMES: [&'static str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

    /// The librdkafka value.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!(
                "`{s}` is not a Kafka security protocol; use one of {}",
                SecurityProtocol::NAMES.join(", ")
            )),
        }
    }
}

/// The SASL mechanisms this build of librdkafka speaks (GSSAPI/Kerberos would need Cyrus
/// SASL and is not built; OAUTHBEARER is reachable through `options` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// User and password in clear inside the TLS session (Confluent Cloud API keys).
    #[serde(rename = "PLAIN", alias = "plain")]
    Plain,
    /// Salted challenge-response; the password never crosses the wire.
    #[serde(rename = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// Every value, as written in settings and flags.
    pub const NAMES: [&'static str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

    /// The librdkafka value (`sasl.mechanism`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_uppercase().replace('_', "-").as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            _ => Err(format!(
                "`{s}` is not a SASL mechanism Helios supports; use one of {}",
                SaslMechanism::NAMES.join(", ")
            )),
        }
    }
}

/// A password: compared and cloned like a string, never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that hands it to librdkafka.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// librdkafka options whose values are secrets: `Debug` of the settings hides them.
pub(crate) fn is_sensitive_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem")
        || key == "sasl.oauthbearer.config"
}

/// Reads a secret from a file: the whole content without the trailing line break (files
/// written by `echo` or by Kubernetes secrets both work).
pub(crate) fn read_password_file(path: &Path, setting: &str) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        LogError::Config(format!(
            "{setting} {}: cannot read the SASL password from it ({e}); check the path and \
             that this user may read it",
            path.display()
        ))
    })?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(LogError::Config(format!(
            "{setting} {} is empty; it must hold the SASL password",
            path.display()
        )));
    }
    Ok(Secret::new(password))
}

/// What a PEM file given to TLS must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pem {
    /// CA certificates (a directory of them is accepted too, as librdkafka does).
    CaCertificates,
    /// The client's certificate (chain).
    Certificate,
    /// The client's private key.
    PrivateKey,
}

/// Checks that a TLS file exists, can be read and holds what it should, so the error names
/// the setting and the path instead of librdkafka's OpenSSL error stack.
pub fn check_pem_file(path: &Path, setting: &str, kind: Pem) -> Result<()> {
    let what = match kind {
        Pem::CaCertificates => "the PEM file of the CA that signed the brokers' certificates",
        Pem::Certificate => "the client certificate in PEM",
        Pem::PrivateKey => "the client's private key in PEM (unencrypted)",
    };
    if kind == Pem::CaCertificates && path.is_dir() {
        return Ok(());
    }
    let text = std::fs::read(path).map_err(|e| {
        LogError::Config(format!(
            "{setting} {}: cannot read it ({e}); give {what}",
            path.display()
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    let ok = match kind {
        Pem::CaCertificates | Pem::Certificate => text.contains("-----BEGIN CERTIFICATE-----"),
        Pem::PrivateKey => text.contains("-----BEGIN") && text.contains("PRIVATE KEY-----"),
    };
    if !ok {
        return Err(LogError::Config(format!(
            "{setting} {}: holds no {} block; give {what}",
            path.display(),
            match kind {
                Pem::PrivateKey => "`-----BEGIN … PRIVATE KEY-----`",
                _ => "`-----BEGIN CERTIFICATE-----`",
            }
        )));
    }
    Ok(())
}

/// The settings a failure message refers to.
#[derive(Debug, Clone)]
pub(crate) struct SecurityContext {
    /// How the settings are named: the `[kafka]` section's or a bridge source's.
    pub naming: Naming,
    pub brokers: String,
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    pub mechanism: Option<String>,
    /// Where the password came from, as the message should name it.
    pub password_source: String,
}

/// The error for a failed SASL authentication (librdkafka `_AUTHENTICATION`).
pub(crate) fn authentication_error(ctx: &SecurityContext, reason: &str) -> LogError {
    let user = ctx.user.as_deref().unwrap_or("(none)");
    let mechanism = ctx.mechanism.as_deref().unwrap_or("(none)");
    LogError::KafkaAuthentication(format!(
        "SASL authentication failed for user `{user}` (mechanism {mechanism}) at `{}`: \
         {reason}; check the user name, {} and that the cluster has this user for \
         {mechanism}",
        ctx.brokers, ctx.password_source
    ))
}

/// The error for a failed TLS handshake (librdkafka `_SSL`), with what to change.
pub(crate) fn tls_error(ctx: &SecurityContext, reason: &str) -> LogError {
    let n = ctx.naming;
    let lower = reason.to_ascii_lowercase();
    let hint = if lower.contains("certificate verify failed")
        || lower.contains("unable to get local issuer")
        || lower.contains("self-signed certificate")
        || lower.contains("self signed certificate")
    {
        match &ctx.ca_file {
            Some(ca) => format!(
                "the brokers' certificate is not signed by a CA in {} {}; give the PEM file \
                 of the CA that signed it",
                n.key("ca_file"),
                ca.display()
            ),
            None => format!(
                "the brokers' certificate is not signed by a CA this machine trusts; for a \
                 private CA set {} to its PEM file",
                n.to_set("ca_file")
            ),
        }
    } else if lower.contains("hostname") || lower.contains("ip address mismatch") {
        "the brokers' certificate does not name the host Helios connects to; use the host \
         name the certificate was issued for in bootstrap_servers"
            .to_owned()
    } else if lower.contains("wrong version number") || lower.contains("packet length too long") {
        "the port does not speak TLS; check the port, or use security_protocol plaintext / \
         sasl_plaintext if the listener has no TLS"
            .to_owned()
    } else if lower.contains("certificate required") || lower.contains("handshake failure") {
        format!(
            "the brokers may require a client certificate: set {} and {}",
            n.key("cert_file"),
            n.key("key_file")
        )
    } else {
        "check security_protocol, ca_file, cert_file and key_file against the cluster's listener"
            .to_owned()
    };
    LogError::KafkaTls(format!(
        "TLS with the Kafka brokers at `{}` failed: {reason}; {hint}",
        ctx.brokers
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_either_case() {
        assert_eq!(
            "SASL_SSL".parse::<SecurityProtocol>().unwrap(),
            SecurityProtocol::SaslSsl
        );
        assert_eq!(
            "ssl".parse::<SecurityProtocol>().unwrap(),
            SecurityProtocol::Ssl
        );
        assert_eq!(
            "scram-sha-512".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::ScramSha512
        );
        assert_eq!(
            "SCRAM_SHA_256".parse::<SaslMechanism>().unwrap(),
            SaslMechanism::ScramSha256
        );
        let err = "GSSAPI".parse::<SaslMechanism>().unwrap_err();
        assert!(err.contains("SCRAM-SHA-512"), "{err}");
        let err = "tls".parse::<SecurityProtocol>().unwrap_err();
        assert!(err.contains("sasl_ssl"), "{err}");
    }

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn password_files_lose_the_trailing_newline_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(read_password_file(&f, "x").unwrap().expose(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let err = read_password_file(&f, "kafka.sasl_password_file").unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let missing = dir.path().join("nope");
        let err = read_password_file(&missing, "kafka.sasl_password_file").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kafka.sasl_password_file"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
    }

    #[test]
    fn pem_checks_name_the_setting_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let err = check_pem_file(&missing, "kafka.ca_file", Pem::CaCertificates).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("kafka.ca_file"), "{msg}");
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("cannot read"), "{msg}");

        let not_pem = dir.path().join("junk.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = check_pem_file(&not_pem, "kafka.cert_file", Pem::Certificate).unwrap_err();
        assert!(err.to_string().contains("BEGIN CERTIFICATE"), "{err}");
        let err = check_pem_file(&not_pem, "kafka.key_file", Pem::PrivateKey).unwrap_err();
        assert!(err.to_string().contains("PRIVATE KEY"), "{err}");

        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        check_pem_file(&key, "kafka.key_file", Pem::PrivateKey).unwrap();
        check_pem_file(dir.path(), "kafka.ca_file", Pem::CaCertificates).unwrap();
    }

    #[test]
    fn tls_errors_say_what_to_change() {
        let ctx = SecurityContext {
            naming: Naming::Backend,
            brokers: "k:9093".to_owned(),
            ca_file: Some(PathBuf::from("/etc/helios/ca.pem")),
            user: None,
            mechanism: None,
            password_source: "the password".to_owned(),
        };
        let e = tls_error(
            &ctx,
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
        )
        .to_string();
        assert!(e.contains("/etc/helios/ca.pem"), "{e}");
        assert!(e.contains("k:9093"), "{e}");
        let ctx = SecurityContext {
            ca_file: None,
            ..ctx
        };
        let e = tls_error(&ctx, "certificate verify failed").to_string();
        assert!(e.contains("--kafka-ca-file"), "{e}");
        assert!(e.contains("HELIOS_KAFKA_CA_FILE"), "{e}");
    }

    /// A Kafka bridge source's failures name its own settings, not the backend's flags.
    #[test]
    fn a_bridge_sources_failures_name_its_settings_and_where_its_password_came_from() {
        let mut config = super::super::KafkaConfig::new("k:9093");
        config.naming = Naming::Source;
        config.sasl_username = Some("bridge".to_owned());
        config.sasl_password = Some(Secret::new("pw"));
        config.password_origin = Some(
            "the password in the environment variable BRIDGE_PW (`sasl_password_env`)".to_owned(),
        );
        let ctx = config.security_context();
        for reason in ["certificate verify failed", "sslv3 alert handshake failure"] {
            let e = tls_error(&ctx, reason).to_string();
            assert!(!e.contains("kafka.") && !e.contains("--kafka"), "{e}");
        }
        let e = tls_error(&ctx, "certificate verify failed").to_string();
        assert!(e.contains("set `ca_file` to its PEM file"), "{e}");
        let e = tls_error(&ctx, "sslv3 alert handshake failure").to_string();
        assert!(e.contains("set `cert_file` and `key_file`"), "{e}");
        let e = authentication_error(&ctx, "Invalid username or password").to_string();
        assert!(e.contains("environment variable BRIDGE_PW"), "{e}");
        assert!(!e.contains("HELIOS_KAFKA_SASL_PASSWORD"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        config.ca_file = Some(dir.path().join("missing.pem"));
        let e = config.load_security_files().unwrap_err().to_string();
        assert!(e.contains("`ca_file`") && !e.contains("kafka."), "{e}");
    }
}
