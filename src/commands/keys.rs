//! `helios keys`: create, list and revoke API keys; and the API-key flags `helios up`
//! shares, with the protection they wrap around its HTTP app.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::{Args, Subcommand};
use helios_query_api::auth::{
    AuthConfig, KeyStore, MetricsAccess, RateLimit, Revocation, Scope, protect,
};
use tracing::info;

/// Create, list and revoke the API keys of a Helios data dir.
///
/// Every route but /healthz, /readyz, /metrics and the dashboard needs a key, sent as
/// `Authorization: Bearer <key>`. A key has one scope: `ingest` (POST /v1/events), `read`
/// (queries, SQL, sources, registry reads) or `admin` (everything, including pausing
/// sources and registry writes). Webhooks keep their own secret or token.
///
/// Keys are stored hashed in `<data dir>/keys.json`; a key is shown once, when created.
/// A running `helios up` picks up new and revoked keys on its next request.
///
/// Examples:
///   helios keys create --scope ingest --name ci-uploader
///   KEY=$(helios keys create --scope read --name dashboard)
///   curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/v1/sources
///   helios keys list
///   helios keys revoke 3f9a1c0b7d2e
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    Create(CreateArgs),
    List(ListArgs),
    Revoke(RevokeArgs),
}

/// Which key file: `<data dir>/keys.json`, or `--keys-file`.
#[derive(Debug, Args)]
struct FileArgs {
    /// The data dir of the Helios the keys are for.
    #[arg(long, env = "HELIOS_DATA_DIR", default_value = "./helios-data")]
    data_dir: PathBuf,

    /// The key file itself (instead of `<data dir>/keys.json`).
    #[arg(long, env = "HELIOS_KEYS_FILE")]
    keys_file: Option<PathBuf>,
}

impl FileArgs {
    fn store(&self) -> anyhow::Result<KeyStore> {
        let path = keys_path(&self.data_dir, self.keys_file.as_deref());
        Ok(KeyStore::open(&path)?)
    }
}

/// Create a key and print it, once, on standard output (nothing else goes there).
///
/// Examples:
///   helios keys create --scope admin
///   helios keys create --scope ingest --name ci-uploader --data-dir /var/lib/helios
///   export HELIOS_API_KEY=$(helios keys create --scope ingest --name laptop)
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct CreateArgs {
    /// What the key may do: `ingest`, `read` or `admin`.
    #[arg(long, value_parser = parse_scope)]
    scope: Scope,

    /// A name to tell the key apart in `helios keys list` and in the logs.
    #[arg(long, default_value = "")]
    name: String,

    #[command(flatten)]
    file: FileArgs,
}

/// List the keys: id, name, scope, when created and revoked (never the keys themselves).
///
/// Example:
///   helios keys list --data-dir ./helios-data
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct ListArgs {
    #[command(flatten)]
    file: FileArgs,
}

/// Revoke a key: it is refused from the next request on, also by a running Helios.
///
/// Example:
///   helios keys revoke 3f9a1c0b7d2e
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
struct RevokeArgs {
    /// The key's id, as `helios keys list` shows it (the whole key works too).
    id: String,

    #[command(flatten)]
    file: FileArgs,
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Create(args) => {
            let store = args.file.store()?;
            let new = store.create(args.scope, &args.name)?;
            // The contract scripts rely on: stdout is exactly the key and a newline.
            println!("{}", new.key.expose());
            eprintln!(
                "Created {} key `{}`{} in {}.\n\
                 This is the only time the key is shown; store it now. Send it as\n  \
                 Authorization: Bearer <key>\n\
                 Revoke it with `helios keys revoke {}`.",
                new.record.scope,
                new.record.id,
                if new.record.name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", new.record.name)
                },
                store.path().display(),
                new.record.id,
            );
        }
        KeysCommand::List(args) => {
            let store = args.file.store()?;
            let keys = store.list()?;
            if keys.is_empty() {
                eprintln!(
                    "No keys in {}; create one with `helios keys create --scope admin`.",
                    store.path().display()
                );
                return Ok(());
            }
            let name_width = keys
                .iter()
                .map(|k| k.name.chars().count())
                .max()
                .unwrap_or(0)
                .max(4);
            println!(
                "{:<12}  {:<name_width$}  {:<6}  {:<20}  REVOKED",
                "ID", "NAME", "SCOPE", "CREATED"
            );
            for k in keys {
                println!(
                    "{:<12}  {:<name_width$}  {:<6}  {:<20}  {}",
                    k.id,
                    if k.name.is_empty() { "-" } else { &k.name },
                    k.scope.as_str(),
                    k.created,
                    k.revoked.as_deref().unwrap_or("-"),
                );
            }
        }
        KeysCommand::Revoke(args) => {
            let store = args.file.store()?;
            match store.revoke(&args.id)? {
                Revocation::Revoked(k) => eprintln!(
                    "Revoked key `{}` ({} scope); a running Helios refuses it from its next request.",
                    k.id, k.scope
                ),
                Revocation::AlreadyRevoked(k) => eprintln!(
                    "Key `{}` was already revoked at {}; nothing changed.",
                    k.id,
                    k.revoked.as_deref().unwrap_or("?")
                ),
            }
        }
    }
    Ok(())
}

/// The API-key, rate, body and timeout settings of a serving command.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The API key file (default `<data dir>/keys.json`; manage it with `helios keys`).
    #[arg(long, env = "HELIOS_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,

    /// Requests per second each API key may make, sustained; `0` turns the limit off.
    /// Over it: `429` with Retry-After.
    #[arg(long, env = "HELIOS_RATE_LIMIT", default_value_t = RateLimit::default().per_second)]
    pub rate_limit: u32,

    /// Requests each API key may make in a burst (after being idle).
    #[arg(long, env = "HELIOS_RATE_BURST", default_value_t = RateLimit::default().burst,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,

    /// Largest request body, e.g. `2MiB`, `512KiB` or bytes (POST /v1/events and webhooks
    /// keep their source's own limit). Over it: `413`.
    #[arg(long, env = "HELIOS_BODY_LIMIT", default_value = "2MiB", value_parser = crate::stages::http::parse_size)]
    pub body_limit: usize,

    /// How long a request may take before it is abandoned with `504`.
    #[arg(long, env = "HELIOS_REQUEST_TIMEOUT", default_value = "30s", value_parser = crate::stages::http::parse_positive_duration)]
    pub request_timeout: Duration,

    /// Make GET /metrics need a `read` key (by default scrapers need none).
    #[arg(long, env = "HELIOS_METRICS_AUTH")]
    pub metrics_auth: bool,
}

/// Wraps `app` in the API-key check, rate and body limits and the timeout. If the key file
/// holds no active key, creates an admin key and prints it once, with the dashboard URL
/// that carries it (in the URL fragment, which browsers never send to a server).
pub fn protect_app(
    app: Router,
    args: &AuthArgs,
    data_dir: &Path,
    url: &str,
) -> anyhow::Result<Router> {
    let path = keys_path(data_dir, args.keys_file.as_deref());
    let keys = KeyStore::open(&path)?;
    if !keys.has_active_key()? {
        let new = keys
            .create(Scope::Admin, "first start")
            .context("creating the first admin API key")?;
        let key = new.key.expose();
        let dashboard = format!("{url}/#key={key}");
        // The key goes to the terminal once, never into a log line: the log names its id.
        info!(key_id = %new.record.id, file = %path.display(),
              "No active API key: created an admin key; it is printed once on the terminal, not logged.");
        eprintln!(
            "\n  Admin API key (shown once; stored hashed in {}):\n\n    {key}\n\n  \
             Dashboard: {dashboard}\n  \
             API: curl -H 'Authorization: Bearer {key}' {url}/v1/sources\n  \
             More keys: helios keys create --scope ingest|read|admin --data-dir {}\n",
            path.display(),
            data_dir.display(),
        );
    }
    info!(file = %path.display(), rate_limit = args.rate_limit, rate_burst = args.rate_burst,
          body_limit = args.body_limit, request_timeout = ?args.request_timeout,
          metrics_auth = args.metrics_auth, "API keys required (Authorization: Bearer).");
    let config = AuthConfig {
        keys,
        rate: RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst,
        },
        max_body_bytes: args.body_limit,
        request_timeout: args.request_timeout,
        metrics: if args.metrics_auth {
            MetricsAccess::NeedsKey
        } else {
            MetricsAccess::Public
        },
    };
    Ok(protect(app, config))
}

fn keys_path(data_dir: &Path, keys_file: Option<&Path>) -> PathBuf {
    keys_file.map_or_else(|| data_dir.join("keys.json"), Path::to_path_buf)
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
        .map_err(|e: helios_query_api::auth::Error| e.to_string())
}
