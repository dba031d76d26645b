//! The one error type of `helios-pipeline`.

/// Result alias used throughout the crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the pipeline crate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid spec:\n{0}")]
    InvalidSpec(crate::spec::Diagnostics),

    /// An aggregate not grouped by subject whose results would depend on the order in
    /// which partitions' records meet after repartitioning; see ADR-020.
    #[error(
        "{kind} `{name}` groups by {keys}, which does not include `subject`, and uses {why}: \
         after repartitioning, its results would depend on the order in which records of \
         different partitions arrive. Add `subject` to its keys, or use a tumbling or hopping \
         window without `emit_every`; see ADR-020"
    )]
    NotCoPartitioned {
        kind: &'static str,
        name: String,
        keys: String,
        why: &'static str,
    },

    /// The log refused an operation; retrying helps when the log is only unavailable.
    #[error("log: {what}: {source}")]
    Log {
        what: String,
        #[source]
        source: helios_log::LogError,
    },

    /// Encoding an output record failed (an internal defect: built-in schemas encode).
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: helios_schemas::Error,
    },

    /// The checkpoint store refused a read or write; retrying helps when it is only
    /// unavailable (disk full, network).
    #[error("checkpoint store at {location}: {source}")]
    CheckpointStore {
        location: String,
        #[source]
        source: object_store::Error,
    },

    /// Operator state could not be serialized or read back.
    #[error("checkpoint state of {partition}: {reason}")]
    CheckpointState { partition: String, reason: String },
}

impl PipelineError {
    pub(crate) fn log(what: impl Into<String>, source: helios_log::LogError) -> Self {
        PipelineError::Log {
            what: what.into(),
            source,
        }
    }
}
