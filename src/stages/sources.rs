//! The sources stage: the events and dead-letter topics, the pull sources under their
//! supervisor, and the push sources (HTTP ingest, webhooks) as routes for a listener.
//! `helios up` and `helios run ingest` both start it with [`start_sources`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::Args;
use helios_connectors::runtime::{Emitter, EmitterConfig, Supervisor};
use helios_connectors::spec::SourceSpec;
use helios_log::{Log, TopicSpec, create_topic_if_missing};
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
    /// The event-time bound of sources without their own `max_future`.
    pub max_future: Duration,
    /// The byte budget of webhook bodies read before they are authenticated.
    pub unverified_bodies: helios_connectors::body::UnverifiedBodies,
    /// The free-space check every source passes before it writes (the data dir's disk).
    pub disk: Option<helios_connectors::runtime::DiskGuard>,
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
    for (topic, partitions) in [
        (&events_topic, setup.topics.partitions),
        (&dead_letter_topic, 1),
    ] {
        // An existing topic keeps its partitions (another role may have created it).
        create_topic_if_missing(&*admin, &TopicSpec::new(topic.clone(), partitions))
            .await
            .with_context(|| format!("creating the topic {topic}"))?;
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
            max_future: setup.max_future,
            disk: setup.disk,
        },
        setup.log.producer(),
        EventCodec::with_source(event_schema, schemas.clone()),
        RecordCodec::with_source(dead_letter_schema, schemas),
    );
    let supervisor = Supervisor::new(emitter, setup.data_dir.join("sources"));
    let specs: Vec<SourceSpec> = setup
        .sources
        .iter()
        .cloned()
        .map(trust_outbound_ca)
        .collect();
    let sources = helios_connectors::spec::build_with(&specs, &supervisor, setup.unverified_bodies)
        .context("starting the sources")?;
    let metrics = MetricsRegistry::new();
    crate::metrics::export_registry(&metrics);
    metrics.register(Arc::new(crate::metrics::SourcesCollector::new(
        supervisor.clone(),
    )));
    Ok((supervisor, sources, metrics))
}

/// A probe without its own `ca_file` trusts the process's `--ca-file`, and one without its
/// own `cert_file` and `key_file` presents the process's client certificate, as every
/// outbound HTTPS client does; a Kafka bridge's registry client uses both.
fn trust_outbound_ca(spec: SourceSpec) -> SourceSpec {
    let process = crate::backend::outbound();
    match spec {
        SourceSpec::Probe(mut c) => {
            if c.ca_file.is_none() {
                c.ca_file.clone_from(&process.ca_file);
            }
            // Over https:// only: a plain-HTTP probe with a certificate is refused.
            let https = c.uri().is_ok_and(|u| u.scheme_str() == Some("https"));
            if https
                && c.cert_file.is_none()
                && c.key_file.is_none()
                && let Some(id) = &process.identity
            {
                c.cert_file = Some(id.cert_file.clone());
                c.key_file = Some(id.key_file.clone());
            }
            SourceSpec::Probe(c)
        }
        SourceSpec::KafkaBridge(mut c) => {
            c.registry_tls = process.clone();
            SourceSpec::KafkaBridge(c)
        }
        other => other,
    }
}

/// The event-time bound (`helios up`, `run ingest`, `run pipeline`).
#[derive(Debug, Clone, Args)]
pub struct EventTimeArgs {
    /// Refuse events dated more than this after Helios received them, so one event from
    /// the far future cannot move the watermark and make every later event late. The
    /// default for every source without its own `max_future` in the spec: HTTP ingest
    /// rejects such items (400 per item), the other sources write them to helios.dlq with
    /// the reason. The pipeline applies the largest of this and the spec's source bounds
    /// to what it reads (dead letters too), so give every role the same value.
    #[arg(long, env = "HELIOS_MAX_FUTURE", default_value = "15m", value_parser = humantime::parse_duration)]
    pub max_future: Duration,
}

impl EventTimeArgs {
    /// The pipeline's bound: this default or, when larger, any source's own `max_future`,
    /// so the pipeline never refuses what a source of the same spec accepted.
    pub fn pipeline_bound<'a>(
        &self,
        sources: impl IntoIterator<Item = &'a SourceSpec>,
    ) -> Duration {
        sources
            .into_iter()
            .filter_map(SourceSpec::max_future)
            .fold(self.max_future, Duration::max)
    }
}
