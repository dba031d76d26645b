//! `helios serve api`: the read API on its own — insights, SQL, the dashboard, health —
//! over the store a sink writes (ClickHouse, or the Parquet store in a data dir).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use tracing::info;

use crate::commands::keys::AuthArgs;
use crate::stages::supervision::shutdown_signal;
use crate::stages::{http, read_api};

/// Serve one of Helios' HTTP surfaces on its own.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(subcommand)]
    pub what: Serve,
}

#[derive(Debug, Subcommand)]
pub enum Serve {
    Api(ApiArgs),
}

/// Answer questions over the store: the insights API, read-only SQL, the dashboard at /,
/// /healthz, /readyz and /openapi.json. Nothing is ingested or processed here; run it
/// beside `helios run sink`, pointed at the same store and the same spec.
///
/// Example (scaled out; the read user's password in HELIOS_CLICKHOUSE_READ_PASSWORD):
///   helios serve api --spec helios.toml --clickhouse https://clickhouse.example:8443 \
///     --clickhouse-read-user helios_reader --clickhouse-ca-file /etc/helios/ch-ca.pem \
///     --keys-file /etc/helios/keys.json --listen 0.0.0.0:8080
/// Example (over the embedded store of a data dir):
///   helios serve api --spec helios.toml --data-dir ./helios-data --listen 127.0.0.1:8090
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ApiArgs {
    /// Address of the HTTP listener.
    #[arg(long, env = "HELIOS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The spec file (`helios.toml`): which aggregates the API can be asked about.
    /// Without it only the fixed tables (events, alerts, insights, dead letters) are known.
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: Option<PathBuf>,

    /// Read ClickHouse at this HTTP endpoint instead of the Parquet store under
    /// `<data dir>/store`.
    #[arg(long, env = "HELIOS_CLICKHOUSE")]
    pub clickhouse: Option<String>,

    /// ClickHouse database, with `--clickhouse` (else `[clickhouse] database` of the
    /// settings file) [default: helios]
    #[arg(long, env = "HELIOS_CLICKHOUSE_DATABASE")]
    pub clickhouse_database: Option<String>,

    /// Backend settings file (TOML; keys in `helios run pipeline --help`): its
    /// `[clickhouse]` url, database, ca_file, cert_file, key_file, read_user and
    /// read_password_file apply where
    /// the flags and variables say nothing.
    #[arg(long = "config", env = "HELIOS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data dir: the embedded store (without `--clickhouse`) and the default key file.
    #[arg(long, env = "HELIOS_DATA_DIR", default_value = "./helios-data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub clickhouse_tls: crate::backend::ClickHouseTlsArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub http: http::HttpArgs,

    #[command(flatten)]
    pub query: read_api::QueryArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    match args.what {
        Serve::Api(args) => api(args).await,
    }
}

async fn api(args: ApiArgs) -> anyhow::Result<()> {
    let (catalog, store) = match &args.spec {
        Some(path) => {
            let spec = crate::spec::load_or_report(path, crate::spec::Limits::default())?;
            (
                read_api::catalog(&spec.aggregates),
                crate::spec::store_spec(&spec),
            )
        }
        None => Default::default(),
    };
    let listener = http::bind(args.listen, "--listen").await?;
    let file = match &args.config {
        Some(path) => crate::backend::BackendFile::load(path)?,
        None => crate::backend::BackendFile::default(),
    };
    let url = args.clickhouse.clone().or(file.clickhouse.url.clone());
    let database = (args.clickhouse_database.clone())
        .or(file.clickhouse.database.clone())
        .unwrap_or_else(|| "helios".to_owned());
    let clickhouse = url.map(|url| {
        let config = helios_sinks::clickhouse::ClickHouseConfig::new(url).database(&database);
        args.clickhouse_tls.apply(config, &file.clickhouse)
    });
    let query = args.query.clone().with_settings_file(&file.clickhouse);
    let state = read_api::read_state(catalog, &store, clickhouse, &args.data_dir, &query).await?;
    let store_name = state.store.describe();
    let addr = listener.local_addr()?;
    let app = helios_query_api::api_router(state);
    let tls = args.http.tls()?;
    let own = http::own_url(addr, tls.as_ref());
    let app = crate::commands::keys::protect_app(app, &args.auth, &args.data_dir, &own)?;
    let server = args.http.config(args.auth.metrics_auth, tls.as_ref())?;
    info!(url = %own, store = %store_name, "Serving the read API; Ctrl-C stops.");
    http::serve(listener, app, server, shutdown_signal()).await?;
    info!("Stopped cleanly.");
    Ok(())
}
