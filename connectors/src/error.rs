//! The one error type of `helios-connectors`.

use helios_log::LogError;

/// Result alias used throughout the crate.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Whose fault an error is, which decides what the supervisor and the operator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The configuration or the input is wrong; retrying the same thing fails again.
    User,
    /// Something outside Helios (a file, a URL, a broker) is unavailable; retrying helps.
    External,
    /// A defect or an exhausted resource inside Helios.
    Internal,
}

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
}

impl ConnectorError {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            ConnectorError::Config { .. }
            | ConnectorError::DuplicateSource(_)
            | ConnectorError::UnknownSource(_) => Fault::User,
            ConnectorError::External { .. } => Fault::External,
            ConnectorError::Log(e) if e.is_retriable() => Fault::External,
            ConnectorError::Log(_)
            | ConnectorError::Schema(_)
            | ConnectorError::Checkpoint { .. }
            | ConnectorError::ShuttingDown => Fault::Internal,
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
