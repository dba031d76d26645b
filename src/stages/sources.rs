//! The sources stage: the events and dead-letter topics, the pull sources under their
//! supervisor, and the push sources (HTTP ingest, webhooks) as routes for a listener.
//! `helios up` and `helios run ingest` both start it with [`start_sources`].

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use helios_connectors::runtime::{Emitter, EmitterConfig, Supervisor};
use helios_connectors::spec::SourceSpec;
use helios_log::{Log, TopicSpec};
use helios_query_api::metrics::MetricsRegistry;
use helios_schemas::{AvroRecord, DeadLetter, Event, EventCodec, RecordCodec};

use crate::backend::Topics;
use crate::stages::schemas::Schemas;

pub const EVENTS_TOPIC: &str = "helios.events";
pub const DEAD_LETTER_TOPIC: &str = "helios.dlq";

/// What [`start_sources`] needs.
pub struct SourcesSetup<'a> {
    pub log: Log,
    /// Where the `Event` and `DeadLetter` schemas the sources write with are registered.
    pub schemas: &'a Schemas,
    pub sources: &'a [SourceSpec],
    /// Pull sources keep their checkpoints under `<data dir>/sources`.
    pub data_dir: &'a Path,
    pub topics: &'a Topics,
}

/// Registers the schemas the sources write with, creates the events and dead-letter
/// topics if missing, and starts the sources: pull
/// sources under a supervisor, push sources (HTTP ingest, webhooks) as the returned
/// routes. The metrics registry already reports the sources. Shared by `helios up` and
/// `helios run ingest`.
pub async fn start_sources(
    setup: SourcesSetup<'_>,
) -> anyhow::Result<(Arc<Supervisor>, Router, MetricsRegistry)> {
    let events_topic = setup.topics.name(EVENTS_TOPIC);
    let dead_letter_topic = setup.topics.name(DEAD_LETTER_TOPIC);
    let admin = setup.log.admin();
    let existing = admin.list_topics().await.context("listing topics")?;
    for (topic, partitions) in [
        (&events_topic, setup.topics.partitions),
        (&dead_letter_topic, 1),
    ] {
        // An existing topic keeps its partitions (another role may have created it).
        if !existing.contains(topic) {
            admin
                .create_topic(&TopicSpec::new(topic.clone(), partitions))
                .await
                .with_context(|| format!("creating the topic {topic}"))?;
        }
    }
    let event_schema = (setup.schemas)
        .register(setup.topics, EVENTS_TOPIC, Event::SCHEMA_JSON)
        .await?;
    let dead_letter_schema = (setup.schemas)
        .register(setup.topics, DEAD_LETTER_TOPIC, DeadLetter::SCHEMA_JSON)
        .await?;
    let schemas = setup.schemas.source();
    let emitter = Emitter::new(
        EmitterConfig {
            events_topic,
            dead_letter_topic,
        },
        setup.log.producer(),
        EventCodec::with_source(event_schema, schemas.clone()),
        RecordCodec::with_source(dead_letter_schema, schemas),
    );
    let supervisor = Supervisor::new(emitter, setup.data_dir.join("sources"));
    let sources = helios_connectors::spec::build(setup.sources, &supervisor)
        .context("starting the sources")?;
    let metrics = MetricsRegistry::new();
    crate::metrics::export_registry(&metrics);
    metrics.register(Arc::new(crate::metrics::SourcesCollector::new(
        supervisor.clone(),
    )));
    Ok((supervisor, sources, metrics))
}
