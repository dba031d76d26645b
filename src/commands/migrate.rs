//! `helios migrate`: brings a ClickHouse database to this build's schema and to the spec.

use std::path::PathBuf;

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

    /// The spec file (`helios.toml`), the same one `helios up` and the sinks run. Without
    /// it: the fixed tables only.
    #[arg(long, env = "HELIOS_SPEC")]
    pub spec: Option<PathBuf>,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let spec: StoreSpec = match &args.spec {
        Some(path) => crate::spec::store_spec(&crate::spec::load_or_report(path)?),
        None => StoreSpec::default(),
    };
    let ch = ClickHouse::new(&ClickHouseConfig::new(&args.clickhouse).database(&args.database))?;
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
    Ok(())
}
