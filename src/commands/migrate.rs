//! `helios migrate`: brings a ClickHouse database to this build's schema.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use helios_sinks::StoreSpec;
use helios_sinks::clickhouse::{ClickHouse, ClickHouseConfig, migrations, retention};

/// Apply the ClickHouse migrations: create the database and tables, the `agg_<name>`
/// table of each aggregate in the store spec and any new group-key or measure columns,
/// and set retention. Safe to run again; refuses a database migrated by a newer helios.
///
/// Example:
///   helios migrate --clickhouse http://127.0.0.1:8123 --database helios --store-spec store.toml
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct MigrateArgs {
    /// ClickHouse HTTP endpoint.
    #[arg(long, env = "HELIOS_CLICKHOUSE")]
    pub clickhouse: String,

    /// Database holding the Helios tables.
    #[arg(long, env = "HELIOS_CLICKHOUSE_DATABASE", default_value = "helios")]
    pub database: String,

    /// TOML file with `[[aggregates]]` (name, group_by, measures) and `[retention]`
    /// (seconds per table). Without it: the fixed tables only.
    #[arg(long)]
    pub store_spec: Option<PathBuf>,
}

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let spec: StoreSpec = match &args.store_spec {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the store spec {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("parsing the store spec {}", path.display()))?
        }
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
