//! The one error type of `helios-log`.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// Everything that can go wrong in a log backend. Messages name the input and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "topic `{0}` does not exist; create it first (`helios topics create`) or check the name"
    )]
    UnknownTopic(String),

    #[error("topic `{topic}` has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },

    #[error("topic `{0}` already exists with a different partition count or settings")]
    TopicConflict(String),

    #[error("invalid topic name `{0}`: use 1-249 characters from [a-zA-Z0-9._-], not `.` or `..`")]
    InvalidTopicName(String),

    #[error("invalid log configuration: {0}")]
    Config(String),

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the data dir {0} is in use by another Helios process; stop it or use another --data-dir"
    )]
    Locked(PathBuf),

    #[error("the log at {0} was opened read-only; writes and commits need the owning process")]
    ReadOnly(PathBuf),

    #[error("corrupt log data in {path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },

    #[error("offset {offset} is out of range for {topic}/{partition} (valid: {start}..{end})")]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },

    #[error("partition {topic}/{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: u32 },

    #[error("record too large: {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { size: usize, limit: usize },

    #[error("Kafka error: {0}")]
    Kafka(String),

    /// The brokers refused the SASL login; the message names the user, the mechanism and
    /// where the password came from.
    #[error("{0}")]
    KafkaAuthentication(String),

    /// The TLS handshake with the brokers failed; the message says what to change.
    #[error("{0}")]
    KafkaTls(String),

    #[error("the log is shut down")]
    Closed,
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LogError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether retrying the same call later can succeed (a broker or disk hiccup) as
    /// opposed to a mistake in the request that will fail again.
    pub fn is_retriable(&self) -> bool {
        matches!(self, LogError::Io { .. } | LogError::Kafka(_))
    }

    /// Whether the disk (or the user's quota on it) was full: nothing was written, and
    /// retrying helps only once space is freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, LogError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }
}
