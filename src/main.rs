//! The `helios` command: wires the crates together behind one CLI.

mod backend;
mod commands;
mod metrics;
mod spec;
mod stages;
mod telemetry;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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

    /// Log line format on stderr: `text`, or `json` (one object per line: `span` is the
    /// innermost span, `spans` all of them, outermost first).
    #[arg(
        long,
        global = true,
        env = "HELIOS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: telemetry::LogFormat,

    /// Export traces and metrics over OTLP/HTTP (protobuf) to this base URL, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` and `/v1/metrics` are appended). Off when
    /// unset. The standard OTEL_* variables tune it (OTEL_SERVICE_NAME,
    /// OTEL_BSP_SCHEDULE_DELAY, OTEL_METRIC_EXPORT_INTERVAL).
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    /// PEM file of CA certificate(s) that every outbound HTTPS client trusts besides
    /// Mozilla's roots (compiled in): alert webhooks, a remote schema registry, OTLP
    /// export, `helios send`, uptime probes (a probe's own `ca_file` replaces it). For
    /// receivers behind a private CA. ClickHouse has its own, --clickhouse-ca-file.
    #[arg(long, global = true, env = "HELIOS_CA_FILE", value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,

    /// PEM file of a client certificate (and any intermediates) that every outbound HTTPS
    /// client presents to a server that requires mutual TLS, with --client-key-file: alert
    /// webhooks, a remote schema registry (--registry, a Kafka bridge's registry_url), OTLP
    /// export (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE replaces it there), `helios send`,
    /// uptime probes (a probe's own cert_file replaces it). Sent only when a server asks
    /// for one. ClickHouse has its own, --clickhouse-cert-file.
    #[arg(
        long,
        global = true,
        env = "HELIOS_CLIENT_CERT_FILE",
        value_name = "FILE"
    )]
    client_cert_file: Option<std::path::PathBuf>,

    /// PEM file of that certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(
        long,
        global = true,
        env = "HELIOS_CLIENT_KEY_FILE",
        value_name = "FILE"
    )]
    client_key_file: Option<std::path::PathBuf>,

    /// How often spans and metrics are exported, e.g. `1s`; the OTel SDK's defaults (5 s
    /// for spans, 60 s for metrics) when unset.
    #[arg(long, global = true, env = "HELIOS_OTLP_INTERVAL", value_parser = humantime::parse_duration)]
    otlp_interval: Option<std::time::Duration>,
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
    Backtest(commands::backtest::BacktestArgs),
    Keys(commands::keys::KeysArgs),
    Serve(commands::serve::ServeArgs),
}

/// The `service.name` of a process's telemetry: `helios-` and its role (`up`, `pipeline`,
/// `sink`, `ingest`, `api`, ...), the stage's name for `run` and `serve`.
fn service_name(matches: &clap::ArgMatches) -> String {
    match matches.subcommand() {
        Some(("run" | "serve", sub)) => match sub.subcommand_name() {
            Some(stage) => format!("helios-{stage}"),
            None => "helios".to_owned(),
        },
        Some((command, _)) => format!("helios-{command}"),
        None => "helios".to_owned(),
    }
}

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // One TLS stack, rustls on ring (ADR-018): the default of any client built without its
    // own configuration, and the CA file and client certificate of every outbound HTTPS
    // client.
    helios_schemas::tls::install_default_provider();
    backend::set_outbound(backend::outbound_from_flags(
        cli.ca_file.clone(),
        cli.client_cert_file.clone(),
        cli.client_key_file.clone(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // A backtest is read by a person at a terminal: its report and progress bar, and only
    // warnings in between unless --log or HELIOS_LOG asks for more.
    let quiet_default = matches!(cli.command, Command::Backtest(_))
        && matches.value_source("log") == Some(clap::parser::ValueSource::DefaultValue);
    let telemetry = telemetry::init(
        telemetry::Settings {
            filter: if quiet_default { "warn" } else { &cli.log },
            format: cli.log_format,
            otlp_endpoint: cli.otlp_endpoint.as_deref(),
            service: service_name(&matches),
            interval: cli.otlp_interval,
        },
        runtime.handle(),
    )?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => commands::up::run(args).await,
            Command::Topics(args) => commands::topics::run(args).await,
            Command::Tail(args) => commands::tail::run(args).await,
            Command::Send(args) => commands::send::run(args).await,
            Command::Migrate(args) => commands::migrate::run(args).await,
            Command::Run(args) => commands::run::run(args).await,
            Command::Validate(args) => commands::validate::run(args).await,
            Command::Backtest(args) => commands::backtest::run(args).await,
            Command::Keys(args) => commands::keys::run(args),
            Command::Serve(args) => commands::serve::run(args).await,
        }
    });
    // The runtime still runs here: the exporters send their last batch through it.
    telemetry.shutdown();
    outcome
}
