//! `helios topics`: list and describe topics.

use clap::{Args, Subcommand};

use crate::backend::LogArgs;

/// List topics, or describe one with its partitions, offsets and sizes.
///
/// Reads the data dir of `helios up` (read-only, it may keep running) or a Kafka cluster.
/// On a data dir the list also shows each topic's size cap and retention in force, the
/// embedded store's tables with their sizes, and the free space of the data dir's disk.
///
/// Examples:
///   helios topics
///   helios topics describe helios.events
///   helios topics --kafka 127.0.0.1:9092 list
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: Option<TopicsCommand>,

    #[command(flatten)]
    log: LogArgs,

    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum TopicsCommand {
    /// Every topic with its partition count, record count, size, size cap and retention,
    /// then the store's tables and the free space on a data dir (the default).
    List,
    /// One topic's partitions: start and end offsets, size on disk.
    Describe {
        /// The topic, e.g. `helios.events`.
        topic: String,
    },
}

pub async fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let log = args.log.open_log().await?;
    let admin = log.admin();
    let names = match &args.command {
        None | Some(TopicsCommand::List) => admin.list_topics().await?,
        Some(TopicsCommand::Describe { topic }) => vec![topic.clone()],
    };
    let mut infos = Vec::with_capacity(names.len());
    for name in &names {
        infos.push(admin.describe_topic(name).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    let detailed = matches!(args.command, Some(TopicsCommand::Describe { .. }));
    if detailed {
        println!(
            "{:<32} {:>9} {:>14} {:>14} {:>12}",
            "TOPIC", "PARTITION", "START", "END", "SIZE"
        );
        for t in &infos {
            for p in &t.partitions {
                println!(
                    "{:<32} {:>9} {:>14} {:>14} {:>12}",
                    t.name,
                    p.partition,
                    p.start_offset,
                    p.end_offset,
                    p.size_bytes.map_or("-".to_string(), human_bytes)
                );
            }
        }
    } else {
        println!(
            "{:<32} {:>10} {:>14} {:>12} {:>12} {:>10}",
            "TOPIC", "PARTITIONS", "RECORDS", "SIZE", "SIZE CAP", "RETENTION"
        );
        for t in &infos {
            let records: u64 = t
                .partitions
                .iter()
                .map(|p| p.end_offset - p.start_offset)
                .sum();
            let size: Option<u64> = t.partitions.iter().map(|p| p.size_bytes).sum();
            // The cap in force per partition, for the whole topic as it is set.
            let cap = t
                .retention_bytes
                .map(|b| b.saturating_mul(t.partitions.len() as u64));
            println!(
                "{:<32} {:>10} {:>14} {:>12} {:>12} {:>10}",
                t.name,
                t.partitions.len(),
                records,
                size.map_or("-".to_string(), human_bytes),
                cap.map_or("none".to_string(), human_bytes),
                t.retention
                    .map_or("forever".to_string(), |d| humantime::format_duration(d)
                        .to_string()),
            );
        }
        if matches!(args.command, None | Some(TopicsCommand::List)) {
            print_data_dir(&args.log)?;
        }
    }
    Ok(())
}

/// The embedded store's tables and the data dir's free space, after the topics, when the
/// log is a data dir's.
fn print_data_dir(log: &LogArgs) -> anyhow::Result<()> {
    let backend = log.resolve()?;
    if backend.kafka.is_some() {
        return Ok(());
    }
    let store = crate::stages::sinks::store_dir(&backend.data_dir);
    let tables = helios_sinks::parquet::usage(&store)?;
    if !tables.is_empty() {
        println!();
        println!("{:<32} {:>12}", "STORE TABLE", "SIZE");
        for (name, bytes) in &tables {
            println!("{name:<32} {:>12}", human_bytes(*bytes));
        }
    }
    let space = helios_connectors::runtime::DiskGuard::new(&backend.data_dir, 0).space()?;
    println!();
    println!(
        "{}: {} free of {}",
        backend.data_dir.display(),
        human_bytes(space.free),
        human_bytes(space.total)
    );
    Ok(())
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
