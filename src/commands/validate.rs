//! `helios validate`: check a spec file without running anything.

use std::path::PathBuf;

use clap::Args;

/// Check a spec file and print every problem with its line, column, text and a hint.
///
/// Exits 0 when the spec is valid, 1 when it has problems. `helios up --spec FILE` runs
/// the same check (one function) and refuses to start on any spec this rejects. Give
/// the same `--unverified-body-budget` as the role that runs the sources.
///
/// Example:
///   helios validate helios.toml
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ValidateArgs {
    /// The spec file, e.g. `helios.toml`.
    pub file: PathBuf,

    #[command(flatten)]
    pub webhooks: crate::stages::http::WebhookArgs,
}

pub async fn run(args: ValidateArgs) -> anyhow::Result<()> {
    match crate::spec::load(&args.file, args.webhooks.limits()) {
        Ok(spec) => {
            println!(
                "{}: valid ({} sources, {} aggregates, {} rules)",
                args.file.display(),
                spec.sources.len(),
                spec.aggregates.len(),
                spec.rules.len()
            );
            Ok(())
        }
        Err(Ok(diagnostics)) => {
            eprintln!("{diagnostics}");
            eprintln!("{}: {} problem(s)", args.file.display(), diagnostics.len());
            std::process::exit(1);
        }
        Err(Err(e)) => Err(e),
    }
}
