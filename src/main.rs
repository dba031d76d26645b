//! The `helios` command: wires the crates together behind one CLI.

mod api;
mod backend;
mod commands;
mod metrics;
mod spec;
mod telemetry;

use clap::{Parser, Subcommand};

/// Helios: a personal control plane for projects, systems and activity signals.
///
/// Start with `helios up`, post CloudEvents to http://127.0.0.1:8080/v1/events, and watch
/// them arrive with `helios tail helios.events --from-beginning`.
#[derive(Debug, Parser)]
#[command(name = "helios", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log filter, e.g. `info`, `helios_log=debug` (also `RUST_LOG`).
    #[arg(long, global = true, env = "HELIOS_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    Up(commands::up::UpArgs),
    Topics(commands::topics::TopicsArgs),
    Tail(commands::tail::TailArgs),
    Send(commands::send::SendArgs),
    Migrate(commands::migrate::MigrateArgs),
    Run(commands::run::RunArgs),
    Validate(commands::validate::ValidateArgs),
    Keys(commands::keys::KeysArgs),
    Serve(commands::serve::ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(&cli.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => commands::up::run(args).await,
            Command::Topics(args) => commands::topics::run(args).await,
            Command::Tail(args) => commands::tail::run(args).await,
            Command::Send(args) => commands::send::run(args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Run(args) => commands::run::run(args).await,
            Command::Validate(args) => commands::validate::run(args).await,
            Command::Keys(args) => commands::keys::run(args),
            Command::Serve(args) => commands::serve::run(args).await,
        }
    })
}
