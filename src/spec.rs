//! Loading `helios.toml`: the pipeline crate checks the whole file, with the connectors'
//! own checks for the `[[source]]` tables.

use std::path::Path;

use anyhow::Context;
use helios_connectors::spec::SourceSpec;
use helios_pipeline::spec::{Diagnostics, Spec};

/// Reads and validates a spec file. `Err(Ok(diagnostics))` lists every problem;
/// `Err(Err(_))` means the file could not be read.
pub fn load(path: &Path) -> Result<Spec<SourceSpec>, Result<Diagnostics, anyhow::Error>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the spec {}", path.display()))
        .map_err(Err)?;
    helios_pipeline::spec::parse::<SourceSpec>(&text, &path.display().to_string(), |source| {
        source.validate().map_err(|e| (e.to_string(), None))
    })
    .map_err(Ok)
}
