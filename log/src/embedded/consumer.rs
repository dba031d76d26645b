//! A consumer-group member of the embedded log.
//!
//! Waiting is event-driven: a poll with nothing to read sleeps on the topics' change
//! signals and the group's rebalance signal, never in a busy loop. Read-only opens (CLI
//! tools next to a running `helios up`) have no signal from the writer process and rescan
//! the files every 100 ms instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use super::group::Membership;
use super::partition::{Cursor, Partition};
use super::{Inner, Topic};
use crate::{
    ConsumedRecord, ConsumerConfig, LogConsumer, LogError, OffsetReset, Result, SeekTo,
    TopicPartition,
};

const READ_ONLY_RESCAN: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct EmbeddedConsumer {
    log: Arc<Inner>,
    topics: Vec<Arc<Topic>>,
    config: ConsumerConfig,
    member: u64,
    generation: u64,
    rebalanced: watch::Receiver<u64>,
    appended: Vec<watch::Receiver<u64>>,
    positions: BTreeMap<TopicPartition, Cursor>,
    /// Which assigned partition reads first next time, so none starves.
    next_first: usize,
}

impl EmbeddedConsumer {
    pub(super) fn new(
        log: Arc<Inner>,
        topics: Vec<Arc<Topic>>,
        config: ConsumerConfig,
        membership: Membership,
    ) -> Self {
        let appended = topics.iter().map(|t| t.notify.subscribe()).collect();
        EmbeddedConsumer {
            log,
            topics,
            config,
            member: membership.member,
            generation: 0,
            rebalanced: membership.changed,
            appended,
            positions: BTreeMap::new(),
            next_first: 0,
        }
    }

    fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        let topic = self
            .topics
            .iter()
            .find(|t| *t.spec.name == *tp.topic)
            .ok_or_else(|| LogError::UnknownTopic(tp.topic.to_string()))?;
        topic
            .partitions
            .get(tp.partition as usize)
            .cloned()
            .ok_or_else(|| LogError::UnknownPartition {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                partitions: topic.spec.partitions,
            })
    }

    /// Picks up a rebalance: keeps positions of partitions still owned, starts new ones
    /// from the committed offset or the reset policy.
    fn sync_assignment(&mut self) -> Result<()> {
        let (generation, assigned) = self.log.groups.assignment(&self.config.group, self.member);
        if generation == self.generation {
            return Ok(());
        }
        let mut positions = BTreeMap::new();
        for tp in assigned {
            let cursor = match self.positions.remove(&tp) {
                Some(c) => c,
                None => match self.log.groups.committed(&self.config.group, &tp)? {
                    Some(offset) => Cursor::at(offset),
                    None => self.reset_position(&tp)?,
                },
            };
            positions.insert(tp, cursor);
        }
        self.positions = positions;
        self.generation = generation;
        Ok(())
    }

    fn reset_position(&self, tp: &TopicPartition) -> Result<Cursor> {
        let p = self.partition(tp)?;
        if !self.log.writable {
            p.refresh()?;
        }
        let info = p.info();
        Ok(Cursor::at(match self.config.offset_reset {
            OffsetReset::Earliest => info.start_offset,
            OffsetReset::Latest => info.end_offset,
        }))
    }

    /// Reads from the assigned partitions, round-robin, off the async runtime.
    async fn read_some(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let mut work = Vec::with_capacity(self.positions.len());
        let n = self.positions.len();
        for (i, (tp, cursor)) in self.positions.iter().enumerate() {
            // Rotate the starting partition each poll.
            let order = (i + n - self.next_first % n.max(1)) % n.max(1);
            work.push((order, tp.clone(), self.partition(tp)?, *cursor));
        }
        work.sort_by_key(|w| w.0);
        self.next_first = self.next_first.wrapping_add(1);
        let refresh = !self.log.writable;
        let fetch_bytes = self.config.max_partition_fetch_bytes;
        let (records, cursors) = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let mut cursors = Vec::with_capacity(work.len());
            for (_, tp, p, mut cursor) in work {
                let left = max.saturating_sub(out.len());
                if left > 0 {
                    if refresh {
                        p.refresh()?;
                    }
                    match p.read(&mut cursor, left, fetch_bytes, &mut out) {
                        Ok(()) => {}
                        Err(LogError::OffsetOutOfRange { .. }) => {
                            cursors.push((tp, cursor, true));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                cursors.push((tp, cursor, false));
            }
            Ok::<_, LogError>((out, cursors))
        })
        .await
        .map_err(|_| LogError::Closed)??;
        for (tp, cursor, out_of_range) in cursors {
            let cursor = if out_of_range {
                let reset = self.reset_position(&tp)?;
                warn!(
                    topic = %tp.topic, partition = tp.partition, group = %self.config.group,
                    from = cursor.offset, to = reset.offset,
                    "Position is outside the retained log (deleted by retention?); reset by policy."
                );
                reset
            } else {
                cursor
            };
            self.positions.insert(tp, cursor);
        }
        Ok(records)
    }
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.rebalanced.borrow_and_update();
            for rx in &mut self.appended {
                rx.borrow_and_update();
            }
            self.sync_assignment()?;
            let records = self.read_some(max.max(1)).await?;
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
            if !self.log.writable {
                tokio::time::sleep_until(deadline.min(Instant::now() + READ_ONLY_RESCAN)).await;
                continue;
            }
            let appended = select_all(self.appended.iter_mut().map(|rx| Box::pin(rx.changed())));
            tokio::select! {
                _ = appended => {}
                _ = self.rebalanced.changed() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.log
            .groups
            .commit(&self.config.group, self.member, offsets)
    }

    async fn committed(&mut self, tp: &TopicPartition) -> Result<Option<u64>> {
        self.log.groups.committed(&self.config.group, tp)
    }

    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        self.sync_assignment()?;
        if !self.positions.contains_key(tp) {
            return Err(LogError::NotAssigned {
                topic: tp.topic.to_string(),
                partition: tp.partition,
            });
        }
        let p = self.partition(tp)?;
        if !self.log.writable {
            p.refresh()?;
        }
        let offset = match to {
            SeekTo::Offset(o) => o,
            SeekTo::Beginning => p.info().start_offset,
            SeekTo::End => p.info().end_offset,
            SeekTo::Timestamp(ts) => tokio::task::spawn_blocking(move || p.offset_for_time(ts))
                .await
                .map_err(|_| LogError::Closed)??,
        };
        self.positions.insert(tp.clone(), Cursor::at(offset));
        Ok(())
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.log.groups.leave(&self.config.group, self.member);
    }
}
