//! The state one input partition owns: its operators, its event-time progress and the
//! offset it resumes from, and how that state becomes a checkpoint payload and back.

use std::sync::Arc;
use std::time::Instant;

use helios_log::TopicPartition;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::spec::Aggregate;
use crate::window::{AggregateState, WindowedAggregate, sketch};
use crate::{PipelineError, Result};

/// One input partition's operators and progress.
#[derive(Debug)]
pub(crate) struct PartitionState {
    pub tp: TopicPartition,
    pub aggregates: Vec<WindowedAggregate>,
    /// Offset of the next record to process (the checkpoint's resume point).
    pub next_offset: u64,
    /// Largest event time processed here, µs.
    pub max_event_time: i64,
    /// Wall-clock time of the last record (idle detection only).
    pub last_record: Instant,
    /// Just sought: the next record may legitimately be past `next_offset` (retention
    /// deleted what the checkpoint pointed at).
    pub sought: bool,
    /// Something changed since the last checkpoint.
    pub dirty: bool,
}

/// The checkpoint payload of one partition.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    max_event_time: i64,
    aggregates: Vec<OperatorState>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OperatorState {
    name: String,
    fingerprint: u64,
    state: AggregateState,
}

/// Identifies an aggregate's definition, so state is never restored into a changed one.
pub(crate) fn fingerprint(a: &Aggregate) -> u64 {
    // Debug output covers the name, window, keys and measures (with their SQL text),
    // lateness and emit interval: everything the state's shape and meaning depend on.
    sketch::hash64(format!("{a:?}").as_bytes())
}

impl PartitionState {
    /// Fresh state: nothing processed, resume from `start`.
    pub fn new(tp: TopicPartition, specs: &[Arc<Aggregate>], start: u64, now: Instant) -> Self {
        PartitionState {
            tp,
            aggregates: specs
                .iter()
                .map(|s| WindowedAggregate::new(s.clone()))
                .collect(),
            next_offset: start,
            max_event_time: i64::MIN,
            last_record: now,
            sought: true,
            dirty: false,
        }
    }

    /// State from a checkpoint payload. An aggregate whose definition changed since the
    /// checkpoint (or is new) starts empty, with a warning.
    pub fn restore(
        tp: TopicPartition,
        specs: &[Arc<Aggregate>],
        offset: u64,
        payload: &[u8],
        now: Instant,
    ) -> Result<Self> {
        let p: Payload =
            postcard::from_bytes(payload).map_err(|e| PipelineError::CheckpointState {
                partition: tp.to_string(),
                reason: format!("cannot decode the state: {e}"),
            })?;
        let mut saved = p.aggregates;
        let aggregates = specs
            .iter()
            .map(|s| {
                let fp = fingerprint(s);
                match saved
                    .iter()
                    .position(|o| o.name == s.name && o.fingerprint == fp)
                {
                    Some(i) => WindowedAggregate::restore(s.clone(), saved.swap_remove(i).state),
                    None => {
                        warn!(
                            partition = %tp, aggregate = %s.name,
                            "Aggregate is new or changed since the checkpoint; it starts empty from here."
                        );
                        WindowedAggregate::new(s.clone())
                    }
                }
            })
            .collect();
        Ok(PartitionState {
            tp,
            aggregates,
            next_offset: offset,
            max_event_time: p.max_event_time,
            last_record: now,
            sought: true,
            dirty: false,
        })
    }

    /// The checkpoint payload of the current state.
    pub fn payload(&self) -> Result<Vec<u8>> {
        let p = Payload {
            max_event_time: self.max_event_time,
            aggregates: self
                .aggregates
                .iter()
                .map(|a| OperatorState {
                    name: a.name().to_string(),
                    fingerprint: fingerprint(a.spec()),
                    state: a.snapshot(),
                })
                .collect(),
        };
        postcard::to_allocvec(&p).map_err(|e| PipelineError::CheckpointState {
            partition: self.tp.to_string(),
            reason: format!("cannot encode the state: {e}"),
        })
    }
}
