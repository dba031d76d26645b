//! The crate's one error type. Messages name the input that was wrong and what to do.

use std::path::PathBuf;

/// Everything that can go wrong in `helios-schemas`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A framed record is shorter than the 5-byte Confluent header.
    #[error(
        "record is {len} bytes, shorter than the 5-byte Confluent wire header (magic byte + schema id); the producer did not use the Confluent wire format"
    )]
    WireTooShort {
        /// Length of the record.
        len: usize,
    },

    /// A framed record does not start with magic byte 0.
    #[error(
        "record starts with byte {found:#04x}, expected magic byte 0x00 of the Confluent wire format; the producer did not use a schema registry serializer"
    )]
    WireMagic {
        /// The first byte found.
        found: u8,
    },

    /// The hand-written Avro decoder found malformed data.
    #[error("malformed Avro {record} at byte {offset} while reading {field}: {reason}")]
    Malformed {
        /// Record type being decoded.
        record: &'static str,
        /// Field being decoded.
        field: &'static str,
        /// Byte offset in the Avro body.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// apache-avro failed to encode, decode or resolve a record.
    #[error("Avro {action} of {record} failed: {source}")]
    Avro {
        /// What was being done ("decode", "encode", "resolve").
        action: &'static str,
        /// Record type.
        record: &'static str,
        /// The underlying error.
        #[source]
        source: Box<apache_avro::Error>,
    },

    /// A record carries a schema id that no configured source knows.
    #[error(
        "schema id {id} is not known to this codec; decode with `decode_async` (fetches it from the schema registry) or check that the topic was written against this registry"
    )]
    UnknownSchemaId {
        /// The schema id from the record header.
        id: u32,
    },

    /// A schema text is not a valid Avro schema.
    #[error("invalid Avro schema: {reason}; fix the schema text and register it again")]
    InvalidSchema {
        /// Why parsing failed.
        reason: String,
    },

    /// A schema type other than AVRO was requested.
    #[error("schema type {schema_type:?} is not supported; this registry only stores AVRO schemas")]
    UnsupportedSchemaType {
        /// The requested type.
        schema_type: String,
    },

    /// The new schema breaks the subject's compatibility level.
    #[error(
        "schema is incompatible with subject {subject:?} under compatibility {level}: {reason}; give new fields a default, or change the subject's compatibility level"
    )]
    Incompatible {
        /// Subject the schema was registered under.
        subject: String,
        /// Level in force.
        level: crate::registry::CompatibilityLevel,
        /// What the checker reported.
        reason: String,
    },

    /// No such subject.
    #[error("subject {subject:?} not found; list subjects with GET /subjects")]
    SubjectNotFound {
        /// The subject asked for.
        subject: String,
    },

    /// No such version under a subject.
    #[error("version {version} of subject {subject:?} not found")]
    VersionNotFound {
        /// The subject.
        subject: String,
        /// The version asked for.
        version: u32,
    },

    /// A version string is neither a positive integer, -1 nor "latest".
    #[error("version {input:?} is invalid; use a positive integer, -1 or \"latest\"")]
    InvalidVersion {
        /// What was given.
        input: String,
    },

    /// No schema with this id.
    #[error("schema id {id} not found")]
    SchemaIdNotFound {
        /// The id asked for.
        id: u32,
    },

    /// The schema is not registered under the subject (lookup).
    #[error("schema not registered under subject {subject:?}")]
    SchemaNotRegistered {
        /// The subject searched.
        subject: String,
    },

    /// No compatibility level set for a subject.
    #[error(
        "subject {subject:?} has no compatibility level of its own; it uses the global one (ask with defaultToGlobal=true)"
    )]
    SubjectLevelNotSet {
        /// The subject.
        subject: String,
    },

    /// An unknown compatibility level name.
    #[error(
        "compatibility level {input:?} is invalid; use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
    )]
    InvalidCompatibilityLevel {
        /// What was given.
        input: String,
    },

    /// A write was attempted on a registry opened read-only.
    #[error(
        "registry in {dir} was opened read-only; register schemas through the running helios (its HTTP registry routes)"
    )]
    ReadOnly {
        /// Data dir.
        dir: PathBuf,
    },

    /// Another process holds the registry's write lock.
    #[error(
        "registry in {dir} is locked by another process (probably a running `helios up`); stop it, or open the registry read-only"
    )]
    Locked {
        /// Data dir.
        dir: PathBuf,
    },

    /// File system error on the registry's files.
    #[error("registry file {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A complete line of the registry log cannot be read.
    #[error(
        "registry log {path} line {line} is corrupt: {reason}; restore the file from a backup or remove the line by hand"
    )]
    CorruptLog {
        /// Log file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },

    /// A CA file for outbound TLS could not be read or holds no usable certificate.
    #[error(
        "CA file {path}: {reason}; give a PEM file of the CA certificate(s) that signed the server's certificate"
    )]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The certificate or key a Helios listener serves HTTPS with (`--tls-cert-file`,
    /// `--tls-key-file`) cannot be read or used.
    #[error("server certificate file {path}: {reason}")]
    ServerIdentity {
        /// The certificate or key file.
        path: PathBuf,
        /// What was wrong, and what to give instead.
        reason: String,
    },

    /// A client certificate or its key (for a server that requires mutual TLS) cannot be
    /// read or used.
    #[error("client certificate file {path}: {reason}")]
    ClientIdentity {
        /// The certificate or key file.
        path: PathBuf,
        /// What was wrong, and what to give instead.
        reason: String,
    },

    /// The remote schema registry failed or answered something unusable.
    #[error("schema registry at {url}: {reason}")]
    Remote {
        /// Registry URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whose fault the error is: the registry or its files being unavailable is outside
    /// Helios; everything else is about the record, the schema or the request.
    pub fn fault(&self) -> crate::Fault {
        match self {
            Error::Io { .. } | Error::Remote { .. } | Error::Locked { .. } => {
                crate::Fault::External
            }
            // Encoding our own records cannot fail on good code; a half-written registry log
            // is ours to repair.
            Error::CorruptLog { .. } => crate::Fault::Internal,
            Error::Avro { action, .. } if *action == "encode" => crate::Fault::Internal,
            _ => crate::Fault::User,
        }
    }

    /// Whether trying again can succeed: the registry (remote, or its files) was
    /// unavailable, locked, or read half-written. A record that failed this way is good and
    /// must not become a dead letter; a stage retries it instead.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Remote { .. }
                | Error::Locked { .. }
                | Error::CorruptLog { .. }
        )
    }

    pub(crate) fn avro(
        action: &'static str,
        record: &'static str,
        source: apache_avro::Error,
    ) -> Self {
        Self::Avro {
            action,
            record,
            source: Box::new(source),
        }
    }
}
