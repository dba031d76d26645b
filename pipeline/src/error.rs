//! The one error type of `helios-pipeline`.

/// Result alias used throughout the crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the pipeline crate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid spec:\n{0}")]
    InvalidSpec(crate::spec::Diagnostics),
}
