//! Whose fault an error is, and whether trying again can help: the one vocabulary every
//! crate's error speaks at a stage or connector boundary, so the same failure gets the same
//! answer wherever it surfaces (a supervisor restarting a source, a sink retrying a write,
//! the processor deciding between a retry and a dead letter).

/// Whose fault an error is, which decides what the stage and the operator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// The configuration or the input is wrong; retrying the same thing fails again.
    User,
    /// Something outside Helios (a file, a URL, a broker, ClickHouse, a registry) failed;
    /// retrying can help.
    External,
    /// A defect or an exhausted resource inside Helios.
    Internal,
}
