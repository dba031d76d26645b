//! The one error type of `helios-connectors`.

use helios_log::LogError;
pub use helios_schemas::Fault;

/// Result alias used throughout the crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Everything that can go wrong in a source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("source `{source_name}` is misconfigured: {message}")]
    Config {
        source_name: String,
        message: String,
    },

    #[error("source `{source_name}`: {message}")]
    External {
        source_name: String,
        message: String,
    },

    #[error("writing to the log failed: {0}")]
    Log(#[from] LogError),

    #[error("encoding a record failed: {0}")]
    Schema(#[from] helios_schemas::Error),

    #[error("source `{source_name}`: {message}")]
    Checkpoint {
        source_name: String,
        message: String,
    },

    #[error("a source named `{0}` already exists; source names must be unique")]
    DuplicateSource(String),

    #[error("no source named `{0}`; `GET /v1/sources` lists them")]
    UnknownSource(String),

    #[error("the source is shutting down")]
    ShuttingDown,

    #[error("{0}")]
    DiskFull(crate::runtime::DiskLow),
}

impl ConnectorError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            ConnectorError::Config { .. }
            | ConnectorError::DuplicateSource(_)
            | ConnectorError::UnknownSource(_) => Fault::User,
            ConnectorError::External { .. } | ConnectorError::DiskFull(_) => Fault::External,
            ConnectorError::Log(e) if e.is_retriable() => Fault::External,
            ConnectorError::Schema(e) => e.fault(),
            ConnectorError::Log(_)
            | ConnectorError::Checkpoint { .. }
            | ConnectorError::ShuttingDown => Fault::Internal,
        }
    }

    /// Whether nothing was written because the data dir's disk is (nearly) full: the
    /// guard refused, or a write failed for want of space.
    pub fn is_disk_full(&self) -> bool {
        match self {
            ConnectorError::DiskFull(_) => true,
            ConnectorError::Log(e) => e.is_disk_full(),
            _ => false,
        }
    }

    /// Shorthand for an outside failure of a named source.
    pub fn external(source_name: &str, message: impl Into<String>) -> Self {
        ConnectorError::External {
            source_name: source_name.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for a configuration mistake of a named source.
    pub fn config(source_name: &str, message: impl Into<String>) -> Self {
        ConnectorError::Config {
            source_name: source_name.to_string(),
            message: message.into(),
        }
    }
}
