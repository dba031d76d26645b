//! A log handle for a backtest that reads the stored events in place: the events topic
//! comes from the live log (its consumers never commit), every other topic lives in, and
//! every write goes to, the scratch log. Appending to or creating the live topic is
//! refused, so the processor cannot write there whatever it is asked.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use helios_log::{
    ConsumedRecord, ConsumerConfig, ConsumerFactory, Log, LogAdmin, LogConsumer, LogError,
    LogProducer, Record, RecordPosition, Result, SeekTo, TopicInfo, TopicPartition, TopicSpec,
};

/// `topic` read from `source`; everything else in `scratch`.
pub fn split(source: Log, topic: &str, scratch: Log) -> Log {
    let split = Arc::new(Split {
        source,
        topic: topic.to_string(),
        scratch,
    });
    Log::from_parts(split.clone(), split.clone(), split)
}

struct Split {
    source: Log,
    topic: String,
    scratch: Log,
}

impl Split {
    fn refuse(&self, what: &str) -> LogError {
        LogError::Config(format!(
            "a backtest never {what} the live topic `{}`",
            self.topic
        ))
    }
}

#[async_trait]
impl LogProducer for Split {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<RecordPosition>> {
        if topic == self.topic {
            return Err(self.refuse("writes to"));
        }
        self.scratch.producer().append(topic, records).await
    }
}

#[async_trait]
impl LogAdmin for Split {
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        if spec.name == self.topic {
            return Err(self.refuse("creates"));
        }
        self.scratch.admin().create_topic(spec).await
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        let mut topics = self.scratch.admin().list_topics().await?;
        topics.push(self.topic.clone());
        Ok(topics)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
        if topic == self.topic {
            self.source.admin().describe_topic(topic).await
        } else {
            self.scratch.admin().describe_topic(topic).await
        }
    }
}

#[async_trait]
impl ConsumerFactory for Split {
    async fn consumer(
        &self,
        topics: &[&str],
        config: ConsumerConfig,
    ) -> Result<Box<dyn LogConsumer>> {
        if topics.contains(&self.topic.as_str()) {
            if topics.len() > 1 {
                return Err(LogError::Config(format!(
                    "a backtest reads the live topic `{}` on its own",
                    self.topic
                )));
            }
            let inner = self.source.consumer(topics, config).await?;
            return Ok(Box::new(NoCommit(inner)));
        }
        self.scratch.consumer(topics, config).await
    }
}

/// A consumer of the live log whose commits go nowhere: the backtest's position is its
/// own checkpoint in the scratch directory, never the live group offsets.
struct NoCommit(Box<dyn LogConsumer>);

#[async_trait]
impl LogConsumer for NoCommit {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        self.0.poll(max, timeout).await
    }

    async fn commit(&mut self, _offsets: &[(TopicPartition, u64)]) -> Result<()> {
        Ok(())
    }

    async fn committed(&mut self, tp: &TopicPartition) -> Result<Option<u64>> {
        self.0.committed(tp).await
    }

    async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        self.0.seek(tp, to).await
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.0.assignment()
    }
}
