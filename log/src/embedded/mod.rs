//! The embedded segment log: Kafka's storage model in the data dir, for `helios up`.
//!
//! ```text
//! <dir>/.lock                          held by the one process that writes
//! <dir>/retention.json                 the writer's default retention, for readers
//! <dir>/topics/<topic>/topic.json      partitions and retention
//! <dir>/topics/<topic>/<p>/<base>.log  record batches, each with a CRC32C (see `batch`)
//! <dir>/topics/<topic>/<p>/<base>.index sparse offset + time index of a sealed segment
//! <dir>/groups/<group>.json            committed offsets
//! ```
//!
//! One process owns a data dir for writing (an exclusive file lock); CLI tools such as
//! `helios tail` open it read-only alongside and follow new data by rescanning.

mod batch;
mod consumer;
mod group;
mod partition;
mod segment;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info};

use crate::{
    ConsumerConfig, ConsumerFactory, Log, LogAdmin, LogConsumer, LogError, LogProducer, Record,
    RecordPosition, Result, TopicInfo, TopicPartition, TopicSpec, partition_for_key,
};
use batch::RecordRef;
use group::Groups;
use partition::{Partition, PartitionOptions};

/// When appended data is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FsyncPolicy {
    /// Every append is fsynced before it returns (concurrent appends share one fsync).
    EveryBatch,
    /// A background flusher fsyncs on this interval; an append returns once written, so a
    /// machine crash can lose up to the interval. A process crash loses nothing.
    Interval(Duration),
}

/// Settings of the embedded log.
#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// When appended data reaches the disk. Default: fsync every batch.
    pub fsync: FsyncPolicy,
    /// Roll to a new segment file after this many bytes. Default 128 MiB; smaller for a
    /// topic with a size cap (an eighth of a partition's share), so deleting whole
    /// segments keeps it close to its cap.
    pub segment_bytes: u64,
    /// How often retention is enforced. Default 60 s.
    pub retention_check_interval: Duration,
    /// Largest single record (key + value + headers). Default 16 MiB.
    pub max_record_bytes: usize,
    /// Retention of every topic whose [`TopicSpec`] sets none (all the topics Helios
    /// creates), as a Kafka broker's `log.retention.*` defaults. Default: none, keep
    /// everything; `helios up` sets its own.
    pub default_retention: DefaultRetention,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            fsync: FsyncPolicy::EveryBatch,
            segment_bytes: 128 << 20,
            retention_check_interval: Duration::from_secs(60),
            max_record_bytes: 16 << 20,
            default_retention: DefaultRetention::default(),
        }
    }
}

/// Retention for topics that set none of their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// Delete data older than this (by record timestamp, which is the append time unless a
    /// producer sets it). `None`: no age limit.
    #[serde(with = "crate::types::opt_millis", default)]
    pub age: Option<Duration>,
    /// Most bytes a topic keeps on disk, split evenly over its partitions; the oldest
    /// segments go first. `None`: no size limit.
    #[serde(default)]
    pub topic_bytes: Option<u64>,
}

/// The smallest segment a size cap makes: smaller segments would mean a file per few
/// batches.
const MIN_CAPPED_SEGMENT_BYTES: u64 = 64 << 10;

/// Where the writer records its [`DefaultRetention`], so that read-only openers (`helios
/// topics`) report the retention that is in force.
const DEFAULTS_FILE: &str = "retention.json";

/// Unit tests' way to make the disk fail: the next write on this thread writes only part
/// of its bytes and fails as a full disk does, or the next fsync fails.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::Cell;

    thread_local! {
        static SHORT_WRITE: Cell<Option<usize>> = const { Cell::new(None) };
        static FAILED_SYNC: Cell<bool> = const { Cell::new(false) };
    }

    /// The next write on this thread writes `bytes` and fails.
    pub fn short_write(bytes: usize) {
        SHORT_WRITE.with(|c| c.set(Some(bytes)));
    }

    /// The next fsync on this thread fails.
    pub fn failed_sync() {
        FAILED_SYNC.with(|c| c.set(true));
    }

    pub fn take_short_write() -> Option<usize> {
        SHORT_WRITE.with(Cell::take)
    }

    pub fn take_failed_sync() -> bool {
        FAILED_SYNC.with(Cell::take)
    }
}

/// Records are appended in batches of at most this many bytes, so one huge request does
/// not become one huge frame.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// An open embedded log. Cheap to clone; the files stay open until the last clone drops.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: EmbeddedConfig,
    writable: bool,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    groups: Groups,
    closed: AtomicBool,
    _lock: Option<File>,
}

#[derive(Debug)]
struct Topic {
    spec: TopicSpec,
    /// The retention in force: the spec's, else the log's default.
    retention: Option<Duration>,
    /// Per partition, as the spec's `retention_bytes`.
    retention_bytes: Option<u64>,
    partitions: Vec<Arc<Partition>>,
    /// Bumped when any partition's visible end moves; consumers wait on it.
    notify: Arc<watch::Sender<u64>>,
    next_keyless: AtomicU32,
}

impl EmbeddedLog {
    /// Opens the log in `dir` for reading and writing, creating it if needed, and recovers
    /// every partition (a torn tail is truncated and reported at warn level).
    pub fn open(dir: impl AsRef<Path>, config: EmbeddedConfig) -> Result<EmbeddedLog> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(dir.join("topics")).map_err(|e| LogError::io(&dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LogError::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(LogError::io(&lock_path, e)),
        }
        let defaults = dir.join(DEFAULTS_FILE);
        let json =
            serde_json::to_vec_pretty(&config.default_retention).expect("retention serializes");
        if fs::read(&defaults).ok().as_deref() != Some(json.as_slice()) {
            segment::write_atomically(&defaults, &json)?;
        }
        let log = Self::load(dir, config, true, Some(lock))?;
        log.start_background();
        Ok(log)
    }

    /// Opens the log for reading while another process may be writing it. Nothing is
    /// created, locked or repaired; consumers pick up new data by rescanning.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<EmbeddedLog> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.join("topics").is_dir() {
            return Err(LogError::Config(format!(
                "{} holds no Helios log (no topics/ folder); pass the --data-dir that `helios up` uses",
                dir.display()
            )));
        }
        // The writer's defaults, so retention is reported as it is enforced; a log
        // written before they were recorded had none.
        let defaults = dir.join(DEFAULTS_FILE);
        let default_retention = match fs::read(&defaults) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| LogError::Corrupt {
                path: defaults.clone(),
                position: 0,
                reason: format!("the default retention is not valid JSON: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DefaultRetention::default(),
            Err(e) => return Err(LogError::io(&defaults, e)),
        };
        let config = EmbeddedConfig {
            default_retention,
            ..EmbeddedConfig::default()
        };
        Self::load(dir, config, false, None)
    }

    fn load(
        dir: PathBuf,
        config: EmbeddedConfig,
        writable: bool,
        lock: Option<File>,
    ) -> Result<Self> {
        let groups = Groups::new(dir.join("groups"), writable)?;
        let inner = Arc::new(Inner {
            dir,
            config,
            writable,
            topics: RwLock::new(HashMap::new()),
            groups,
            closed: AtomicBool::new(false),
            _lock: lock,
        });
        let topics_dir = inner.dir.join("topics");
        let entries = fs::read_dir(&topics_dir).map_err(|e| LogError::io(&topics_dir, e))?;
        let mut topics = HashMap::new();
        for entry in entries {
            let entry = entry.map_err(|e| LogError::io(&topics_dir, e))?;
            let meta = entry.path().join("topic.json");
            let raw = match fs::read(&meta) {
                Ok(raw) => raw,
                // A topic folder without metadata was never fully created: ignore it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(LogError::io(&meta, e)),
            };
            let spec: TopicSpec = serde_json::from_slice(&raw).map_err(|e| LogError::Corrupt {
                path: meta.clone(),
                position: 0,
                reason: format!("topic metadata is not valid JSON: {e}"),
            })?;
            let topic = inner.open_topic(spec)?;
            topics.insert(topic.spec.name.clone(), Arc::new(topic));
        }
        *inner.topics.write().unwrap_or_else(|p| p.into_inner()) = topics;
        Ok(EmbeddedLog { inner })
    }

    /// The backend-neutral handle every stage uses.
    pub fn log(&self) -> Log {
        let me = Arc::new(self.clone());
        Log::from_parts(me.clone(), me.clone(), me)
    }

    /// Torn tails cut off when the log was opened: `(topic, partition, bytes)`.
    pub fn truncations(&self) -> Vec<(String, u32, u64)> {
        let mut out: Vec<_> = self
            .inner
            .topics()
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.truncated_bytes > 0)
            .map(|p| (p.topic.to_string(), p.id, p.truncated_bytes))
            .collect();
        out.sort();
        out
    }

    /// Where the log lives.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Fsyncs all written data (used at shutdown under the interval policy).
    pub fn flush(&self) -> Result<()> {
        if !self.inner.writable {
            return Ok(());
        }
        for topic in self.inner.topics().values() {
            for p in &topic.partitions {
                p.flush()?;
            }
        }
        Ok(())
    }

    /// Enforces retention now instead of waiting for the next periodic check.
    pub fn enforce_retention(&self) -> Result<()> {
        self.inner.enforce_retention()
    }

    /// Flushes and stops the background work; appends fail afterwards.
    pub fn close(&self) -> Result<()> {
        self.flush()?;
        self.inner.closed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// A thread, not a task: the log is usable without a tokio runtime (benches, tools).
    /// It holds only a weak reference, so dropping the log ends it.
    fn start_background(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let cfg = &self.inner.config;
        let flush_every = match cfg.fsync {
            FsyncPolicy::Interval(d) => Some(d),
            FsyncPolicy::EveryBatch => None,
        };
        let tick = flush_every
            .unwrap_or(cfg.retention_check_interval)
            .min(cfg.retention_check_interval)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        let retention_every = cfg.retention_check_interval;
        let spawn = std::thread::Builder::new()
            .name("helios-log-bg".into())
            .spawn(move || {
                let mut since_flush = Duration::ZERO;
                let mut since_retention = Duration::ZERO;
                loop {
                    std::thread::sleep(tick);
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    since_flush += tick;
                    since_retention += tick;
                    if flush_every.is_some_and(|f| since_flush >= f) {
                        since_flush = Duration::ZERO;
                        for topic in inner.topics().values() {
                            for p in &topic.partitions {
                                if let Err(e) = p.flush() {
                                    error!(topic = %p.topic, partition = p.id, error = %e, "Periodic fsync failed.");
                                }
                            }
                        }
                    }
                    if since_retention >= retention_every {
                        since_retention = Duration::ZERO;
                        if let Err(e) = inner.enforce_retention() {
                            error!(error = %e, "Retention check failed.");
                        }
                    }
                }
            });
        if let Err(e) = spawn {
            error!(error = %e, "Could not start the log's background thread; retention and interval fsync are off.");
        }
    }
}

impl Inner {
    fn topics(&self) -> HashMap<String, Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.dir.join("topics").join(name)
    }

    fn open_topic(&self, spec: TopicSpec) -> Result<Topic> {
        let notify = Arc::new(watch::channel(0).0);
        let topic_name: Arc<str> = Arc::from(spec.name.as_str());
        let defaults = self.config.default_retention;
        let retention = spec.retention.or(defaults.age);
        let retention_bytes = spec.retention_bytes.or(defaults
            .topic_bytes
            .map(|b| (b / u64::from(spec.partitions.max(1))).max(1)));
        let segment_bytes = match retention_bytes {
            Some(cap) => self
                .config
                .segment_bytes
                .min((cap / 8).max(MIN_CAPPED_SEGMENT_BYTES)),
            None => self.config.segment_bytes,
        };
        let opts = PartitionOptions {
            fsync: self.config.fsync,
            segment_bytes,
            writable: self.writable,
            retention_bytes,
        };
        let partitions = (0..spec.partitions)
            .map(|p| {
                let dir = self.topic_dir(&spec.name).join(p.to_string());
                Partition::open(topic_name.clone(), p, dir, opts, notify.clone()).map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Topic {
            spec,
            retention,
            retention_bytes,
            partitions,
            notify,
            next_keyless: AtomicU32::new(0),
        })
    }

    fn enforce_retention(&self) -> Result<()> {
        let now = now_ms();
        for topic in self.topics().values() {
            for p in &topic.partitions {
                p.enforce_retention(now, topic.retention, topic.retention_bytes)?;
            }
        }
        Ok(())
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        if !self.writable {
            return Err(LogError::ReadOnly(self.dir.clone()));
        }
        Ok(())
    }

    /// Splits `records` into per-partition batches and appends them, returning positions
    /// in input order.
    fn append_blocking(
        topic: &Topic,
        records: Vec<Record>,
        max_record: usize,
    ) -> Result<Vec<RecordPosition>> {
        let n = topic.spec.partitions;
        let now = now_ms();
        // Input indices per partition, in input order.
        let mut per_partition: Vec<Vec<usize>> = vec![Vec::new(); n as usize];
        for (i, r) in records.iter().enumerate() {
            let size = r.key.as_ref().map_or(0, |k| k.len())
                + r.value.len()
                + r.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            if size > max_record {
                return Err(LogError::RecordTooLarge {
                    size,
                    limit: max_record,
                });
            }
            let p = match (r.partition, &r.key) {
                (Some(p), _) if p < n => p,
                (Some(p), _) => {
                    return Err(LogError::UnknownPartition {
                        topic: topic.spec.name.clone(),
                        partition: p,
                        partitions: n,
                    });
                }
                (None, _) if n == 1 => 0,
                (None, Some(key)) => partition_for_key(key, n),
                (None, None) => topic.next_keyless.fetch_add(1, Ordering::Relaxed) % n,
            };
            per_partition[p as usize].push(i);
        }
        let mut positions = vec![
            RecordPosition {
                partition: 0,
                offset: 0
            };
            records.len()
        ];
        let busy: Vec<(u32, Vec<usize>)> = per_partition
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(p, v)| (p as u32, v))
            .collect();
        let records = &records;
        let append = |p: u32, indices: &[usize]| {
            append_partition(&topic.partitions[p as usize], records, indices, now)
        };
        // Partitions fsync independently, so append to them in parallel.
        let results: Vec<Result<Vec<(usize, RecordPosition)>>> = std::thread::scope(|s| {
            let handles: Vec<_> = busy
                .iter()
                .skip(1)
                .map(|(p, indices)| s.spawn(|| append(*p, indices)))
                .collect();
            let mut out = Vec::with_capacity(busy.len());
            if let Some((p, indices)) = busy.first() {
                out.push(append(*p, indices));
            }
            out.extend(handles.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }));
            out
        });
        for r in results {
            for (i, pos) in r? {
                positions[i] = pos;
            }
        }
        Ok(positions)
    }
}

/// Appends the records at `indices` to one partition, in batches of at most
/// [`MAX_BATCH_BYTES`]; returns each input index with its position.
fn append_partition(
    p: &Partition,
    records: &[Record],
    indices: &[usize],
    now: i64,
) -> Result<Vec<(usize, RecordPosition)>> {
    let mut scratch = Vec::with_capacity(MAX_BATCH_BYTES.min(indices.len() * 256));
    let mut out = Vec::with_capacity(indices.len());
    let mut start = 0;
    while start < indices.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < indices.len() && (end == start || bytes < MAX_BATCH_BYTES) {
            let r = &records[indices[end]];
            bytes += r.value.len() + r.key.as_ref().map_or(0, |k| k.len()) + 16;
            end += 1;
        }
        let chunk = &indices[start..end];
        let base = p.append(
            chunk.iter().map(|&i| {
                let r = &records[i];
                RecordRef {
                    timestamp_ms: r.timestamp_ms.unwrap_or(now),
                    key: r.key.as_deref(),
                    value: &r.value,
                    headers: &r.headers,
                }
            }),
            &mut scratch,
        )?;
        out.extend(chunk.iter().enumerate().map(|(j, &i)| {
            (
                i,
                RecordPosition {
                    partition: p.id,
                    offset: base + j as u64,
                },
            )
        }));
        start = end;
    }
    Ok(out)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn validate_topic_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(LogError::InvalidTopicName(name.to_string()))
    }
}

#[async_trait]
impl LogProducer for EmbeddedLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<RecordPosition>> {
        self.inner.check_open()?;
        let t = self.inner.topic(topic)?;
        let max_record = self.inner.config.max_record_bytes;
        tokio::task::spawn_blocking(move || Inner::append_blocking(&t, records, max_record))
            .await
            .map_err(|_| LogError::Closed)?
    }
}

#[async_trait]
impl LogAdmin for EmbeddedLog {
    async fn create_topic(&self, spec: &TopicSpec) -> Result<()> {
        let inner = &self.inner;
        validate_topic_name(&spec.name)?;
        if spec.partitions == 0 {
            return Err(LogError::Config(format!(
                "topic `{}` needs at least one partition",
                spec.name
            )));
        }
        let mut topics = inner.topics.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = topics.get(&spec.name) {
            return if existing.spec.partitions == spec.partitions {
                Ok(())
            } else {
                Err(LogError::TopicConflict(spec.name.clone()))
            };
        }
        inner.check_open()?;
        let dir = inner.topic_dir(&spec.name);
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        let topic = inner.open_topic(spec.clone())?;
        // Metadata last: a folder without it is an unfinished create, ignored on open.
        let json = serde_json::to_vec_pretty(spec).expect("topic spec serializes");
        segment::write_atomically(&dir.join("topic.json"), &json)?;
        info!(topic = %spec.name, partitions = spec.partitions, "Created topic.");
        topics.insert(spec.name.clone(), Arc::new(topic));
        Ok(())
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.inner.topics().into_keys().collect();
        names.sort();
        Ok(names)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicInfo> {
        let t = self.inner.topic(topic)?;
        if !self.inner.writable {
            for p in &t.partitions {
                p.refresh()?;
            }
        }
        Ok(TopicInfo {
            name: t.spec.name.clone(),
            retention: t.retention,
            retention_bytes: t.retention_bytes,
            partitions: t.partitions.iter().map(|p| p.info()).collect(),
        })
    }
}

#[async_trait]
impl ConsumerFactory for EmbeddedLog {
    async fn consumer(
        &self,
        topics: &[&str],
        config: ConsumerConfig,
    ) -> Result<Box<dyn LogConsumer>> {
        let resolved = topics
            .iter()
            .map(|t| self.inner.topic(t))
            .collect::<Result<Vec<_>>>()?;
        let partitions: Vec<TopicPartition> = resolved
            .iter()
            .flat_map(|t| (0..t.spec.partitions).map(|p| TopicPartition::new(&t.spec.name, p)))
            .collect();
        let membership = self.inner.groups.join(&config.group, partitions)?;
        Ok(Box::new(consumer::EmbeddedConsumer::new(
            self.inner.clone(),
            resolved,
            config,
            membership,
        )))
    }
}
