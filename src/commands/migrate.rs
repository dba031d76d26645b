//! `helios migrate`: brings a ClickHouse database to this build's schema and to the spec.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use helios_sinks::StoreSpec;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, migrations, retention};

/// Apply the ClickHouse migrations: create the database and tables, the `agg_<name>`
/// table of each `[[aggregate]]` in the spec and any new group-key or measure columns,
/// and set the spec's `[retention]`. Safe to run again; refuses a database migrated by a
/// newer helios.
///
/// Example:
///   helios migrate --clickhouse http://127.0.0.1:8123 --database helios --spec helios.toml
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct MigrateArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "HELIOS_CLICKHOUSE")]
    pub clickhouse: String,

    /// Database holding the Helios tables.
    #[arg(long, env = "HELIOS_CLICKHOUSE_DATABASE", default_value = "helios")]
    pub database: String,

    #[command(flatten)]
    pub clickhouse_access: crate::backend::ClickHouseAccessArgs,

    /// The spec file (`helios.toml`), the same one `helios up` and the sinks run. Without
    /// it: the fixed tables only.
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: Option<PathBuf>,

    /// The read API's least-privilege user (readonly, this database only, limits in its
    /// profile): created over SQL where the server allows it (ClickHouse 20.5+), else the
    /// users.xml snippet to add is printed. Its password comes from
    /// HELIOS_CLICKHOUSE_READ_PASSWORD or --read-password-file.
    #[arg(
        long,
        env = "HELIOS_CLICKHOUSE_READ_USER",
        default_value = "helios_reader"
    )]
    pub read_user: String,

    /// File holding the read user's password (one line).
    #[arg(
        long,
        env = "HELIOS_CLICKHOUSE_READ_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub read_password_file: Option<PathBuf>,

    /// How long to wait for ClickHouse to answer when it is not up yet (a deployment
    /// that starts both at once), asking again every second or two; `0s` asks once. A
    /// refused login or certificate is never waited out.
    #[arg(long, env = "HELIOS_MIGRATE_WAIT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let spec: StoreSpec = match &args.spec {
        Some(path) => crate::spec::store_spec(&crate::spec::load_or_report(
            path,
            crate::spec::Limits::default(),
        )?),
        None => StoreSpec::default(),
    };
    let config = args.clickhouse_access.apply(
        ClickHouseConfig::new(&args.clickhouse).database(&args.database),
        &crate::backend::ClickHouseFile::default(),
    )?;
    let ch = ClickHouse::new(&config)?;
    wait_for(&ch, args.wait).await?;
    let report = migrations::migrate(&ch, &spec).await?;
    let kept = retention::apply(&ch, &spec).await?;
    if report.is_noop() {
        println!(
            "{}: already at schema version {}",
            args.database, report.version
        );
    }
    for (version, name) in &report.applied {
        println!("applied migration {version}: {name}");
    }
    for change in &report.spec_changes {
        println!("spec: {change}");
    }
    for table in &kept.ttl_set {
        println!("retention: TTL set on {table}");
    }
    for part in &kept.dropped {
        println!("retention: dropped expired partition {part}");
    }
    let password = match &args.read_password_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
        ),
        None => std::env::var("HELIOS_CLICKHOUSE_READ_PASSWORD").ok(),
    };
    let reader = migrations::ReadUser::new(&args.read_user, password);
    match migrations::ensure_read_user(&ch, &reader).await? {
        migrations::ReadUserOutcome::Created => println!(
            "read user: {} (readonly, SELECT on {} only)",
            args.read_user, args.database
        ),
        migrations::ReadUserOutcome::Manual { why, users_xml } => println!(
            "read user: not created: {why}.\nAdd this to the server's users.xml, then give \
             the read API --clickhouse-read-user {} and its password:\n\n{users_xml}",
            args.read_user
        ),
    }
    Ok(())
}

/// Asks ClickHouse for its version until it answers, for at most `wait`: only failures
/// that retrying can mend (not reachable, not ready, a 5xx) are waited out, each said
/// once per attempt. Under TLS 1.3 a server refuses a client certificate after the
/// handshake, and the first attempt may see only a closed connection: the next one reads
/// the refusal, which is not retried.
async fn wait_for(ch: &ClickHouse, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(500);
    loop {
        match ch.server_version().await {
            Ok(_) => return Ok(()),
            Err(e) if e.retryable() && Instant::now() + pause < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                tracing::warn!(
                    error = %e,
                    waiting_s = left.as_secs(),
                    "ClickHouse does not answer yet; asking again (--wait)."
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
