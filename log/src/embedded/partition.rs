//! One partition: an ordered run of segments, the append path with group-committed fsync,
//! reads from a cursor, seeks, and retention.
//!
//! Readers only see records up to the *visible end*: with fsync per batch that is the last
//! fsynced batch, so a consumer never acts on a record a crash could still take away.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::FsyncPolicy;
use super::batch::{self, BatchError, RecordRef};
use super::segment::{self, Segment, Tail};
use crate::{ConsumedRecord, LogError, PartitionInfo, Result};

/// Where a reader is: the next offset, and where its batch starts if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub offset: u64,
    /// `(segment base, byte position)` of the batch holding `offset`; saves an index lookup.
    hint: Option<(u64, u64)>,
}

impl Cursor {
    pub fn at(offset: u64) -> Self {
        Cursor { offset, hint: None }
    }
}

/// End of the readable data.
#[derive(Debug, Clone, Copy)]
struct Visible {
    offset: u64,
    segment: u64,
    pos: u64,
}

#[derive(Debug)]
struct State {
    segments: BTreeMap<u64, Segment>,
    visible: Visible,
    /// Offset up to which data is known to be fsynced.
    synced: u64,
    /// Times a failed fsync made the partition forget what it had not synced yet; an
    /// appender that wrote before the latest one learns from it whether its batch went.
    rollbacks: u64,
    /// Where the latest rollback cut the partition, and the error of the fsync behind it.
    cut: Option<(u64, std::io::ErrorKind)>,
}

impl State {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a partition always has a segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a partition always has a segment")
    }

    fn end(&self) -> Visible {
        let a = self.active();
        Visible {
            offset: a.next_offset,
            segment: a.base,
            pos: a.size,
        }
    }

    fn start_offset(&self) -> u64 {
        self.segments.values().next().map_or(0, |s| s.base)
    }

    /// Bytes on disk: every segment's batches and the sealed ones' index files.
    fn disk_bytes(&self) -> u64 {
        let active = self.active().base;
        self.segments
            .values()
            .map(|s| {
                if s.base == active {
                    s.size
                } else {
                    s.disk_bytes()
                }
            })
            .sum()
    }

    /// Whether a batch ending at `end`, written when `rollbacks` was `epoch`, is still in
    /// the partition: a rollback since then cut it unless it ended at or before the cut.
    fn check_not_cut(&self, end: u64, epoch: u64, path: &Path) -> Result<()> {
        if self.rollbacks == epoch {
            return Ok(());
        }
        match self.cut {
            Some((at, _)) if self.rollbacks == epoch + 1 && end <= at => Ok(()),
            cut => Err(LogError::io(
                path,
                std::io::Error::new(
                    cut.map_or(std::io::ErrorKind::Other, |(_, kind)| kind),
                    "an fsync of this partition failed, so the batch was discarded unread; \
                     nothing of it was acknowledged",
                ),
            )),
        }
    }
}

/// Settings a partition needs from its log.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOptions {
    pub fsync: FsyncPolicy,
    pub segment_bytes: u64,
    pub writable: bool,
    /// Most bytes the partition keeps on disk (its share of the topic's size cap); the
    /// oldest segments go at every roll to stay within it.
    pub retention_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub id: u32,
    dir: PathBuf,
    opts: PartitionOptions,
    state: Mutex<State>,
    sync_lock: Mutex<()>,
    /// Bumped whenever the visible end moves; shared by all partitions of a topic.
    notify: Arc<watch::Sender<u64>>,
    /// Bytes cut from a torn tail when this partition was opened.
    pub truncated_bytes: u64,
}

impl Partition {
    /// Opens (or creates) the partition in `dir`. When writable, a torn tail on the last
    /// segment is truncated to the last good batch and reported.
    pub fn open(
        topic: Arc<str>,
        id: u32,
        dir: PathBuf,
        opts: PartitionOptions,
        notify: Arc<watch::Sender<u64>>,
    ) -> Result<Partition> {
        if opts.writable {
            fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        }
        let bases = list_segments(&dir)?;
        let mut segments = BTreeMap::new();
        let mut truncated_bytes = 0;
        let last = bases.last().copied();
        for base in bases {
            let is_last = Some(base) == last;
            let path = segment::log_path(&dir, base);
            let (seg, tail) = Segment::open(path, base, opts.writable, !is_last)?;
            if let Tail::Torn { bytes, reason } = tail {
                if !is_last {
                    // A sealed segment never has a torn tail; refusing beats losing data
                    // that follows it.
                    return Err(LogError::Corrupt {
                        path: seg.path.clone(),
                        position: seg.size,
                        reason,
                    });
                }
                if opts.writable {
                    warn!(
                        topic = %topic, partition = id, segment = %seg.path.display(),
                        truncated_bytes = bytes, valid_bytes = seg.size, %reason,
                        "Truncated a torn tail to the last good batch."
                    );
                    seg.truncate_to_valid()?;
                    truncated_bytes = bytes;
                }
            }
            segments.insert(base, seg);
        }
        if segments.is_empty() {
            if !opts.writable {
                return Err(LogError::io(
                    &dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no segments"),
                ));
            }
            segments.insert(0, Segment::create(&dir, 0)?);
        }
        let mut state = State {
            segments,
            visible: Visible {
                offset: 0,
                segment: 0,
                pos: 0,
            },
            synced: 0,
            rollbacks: 0,
            cut: None,
        };
        state.visible = state.end();
        state.synced = state.visible.offset;
        Ok(Partition {
            topic,
            id,
            dir,
            opts,
            state: Mutex::new(state),
            sync_lock: Mutex::new(()),
            notify,
            truncated_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent state (every mutation is
        // completed before the next), so poisoning is not a reason to stop.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `records` as one batch and returns its base offset, after the batch is
    /// durable by the fsync policy. On an error (a full disk) nothing of the batch is
    /// visible, then or later: a partly written frame is cut off, and a batch whose fsync
    /// failed is cut with everything written after the last good fsync.
    pub fn append<'a>(
        &self,
        records: impl IntoIterator<Item = RecordRef<'a>>,
        scratch: &mut Vec<u8>,
    ) -> Result<u64> {
        if !self.opts.writable {
            return Err(LogError::ReadOnly(self.dir.clone()));
        }
        let count = batch::encode(records, scratch);
        let mut state = self.lock();
        let base = state.active().next_offset;
        if count == 0 {
            return Ok(base);
        }
        let active = state.active();
        if active.size > 0 && active.size + scratch.len() as u64 > self.opts.segment_bytes {
            self.roll(&mut state, scratch.len() as u64)?;
        }
        let header = batch::seal(scratch, base);
        state.active_mut().append(scratch, &header)?;
        let end = state.end();
        if self.opts.fsync == FsyncPolicy::EveryBatch {
            let epoch = state.rollbacks;
            drop(state);
            self.sync_to(end.offset, Some(epoch))?;
        } else {
            state.visible = end;
            drop(state);
            self.notify.send_modify(|v| *v += 1);
        }
        Ok(base)
    }

    /// Seals the active segment and starts a new one that a batch of `incoming` bytes
    /// will go to. Sealing fsyncs, so the synced mark never has to look back at older
    /// segments. With a size cap, the oldest segments go until the sealed ones and a full
    /// new segment fit in it, so the partition never holds more than its cap.
    fn roll(&self, state: &mut State, incoming: u64) -> Result<()> {
        let active = state.active_mut();
        active.seal()?;
        let base = active.next_offset;
        state.synced = state.synced.max(base);
        state
            .segments
            .insert(base, Segment::create(&self.dir, base)?);
        if let Some(cap) = self.opts.retention_bytes {
            let full = self.opts.segment_bytes.max(incoming);
            let reserve = full
                + segment::index_file_bytes(
                    (full / segment::INDEX_INTERVAL + 1) as usize,
                    (full / segment::INDEX_INTERVAL + 1) as usize,
                );
            self.trim(state, cap.saturating_sub(reserve), None)?;
        }
        Ok(())
    }

    /// Deletes the oldest segments until the ones before the active segment take at
    /// most `sealed_budget` bytes and none is older than `cutoff` (ms). Only segments
    /// wholly visible go: a reader never loses a record it has not been allowed to see.
    fn trim(&self, state: &mut State, sealed_budget: u64, cutoff: Option<i64>) -> Result<usize> {
        let active = state.active().base;
        let mut sealed: u64 = state
            .segments
            .values()
            .filter(|s| s.base != active)
            .map(Segment::disk_bytes)
            .sum();
        let mut deleted = 0usize;
        while state.segments.len() > 1 {
            let oldest = state.segments.values().next().expect("len > 1");
            let expired = cutoff.is_some_and(|c| oldest.max_ts < c);
            if !(expired || sealed > sealed_budget) || oldest.next_offset > state.visible.offset {
                break;
            }
            oldest.delete()?;
            sealed -= oldest.disk_bytes();
            let base = oldest.base;
            state.segments.remove(&base);
            deleted += 1;
        }
        if deleted > 0 {
            info!(
                topic = %self.topic, partition = self.id, segments = deleted,
                start_offset = state.start_offset(), "Retention deleted old segments."
            );
        }
        Ok(deleted)
    }

    /// Group commit: one fsync covers every batch written before it, so concurrent
    /// appenders share fsyncs instead of queueing one each. `epoch` is the partition's
    /// rollback count when the caller wrote its batch (`None`: a flush of whatever is
    /// written): a batch a failed fsync cut off is an error, never a success.
    fn sync_to(&self, offset: u64, epoch: Option<u64>) -> Result<()> {
        let _one_syncer = self.sync_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (file, path, target) = {
            let state = self.lock();
            let a = state.active();
            if let Some(epoch) = epoch {
                state.check_not_cut(offset, epoch, &a.path)?;
            }
            if state.synced >= offset {
                return Ok(());
            }
            (a.file.clone(), a.path.clone(), state.end())
        };
        if let Err(e) = segment::sync_file(&file) {
            if self.opts.fsync == FsyncPolicy::EveryBatch {
                self.forget_unsynced(e.kind());
            }
            return Err(LogError::io(path, e));
        }
        let mut state = self.lock();
        state.synced = state.synced.max(target.offset);
        if target.offset > state.visible.offset {
            state.visible = target;
        }
        drop(state);
        self.notify.send_modify(|v| *v += 1);
        Ok(())
    }

    /// After a failed fsync: what was written since the last good one may or may not be
    /// on disk (and Linux reports such an error only once), so the active segment is cut
    /// back to the synced end. Nothing past it was visible, so no reader saw it; every
    /// appender whose batch went gets an error from [`State::check_not_cut`].
    fn forget_unsynced(&self, kind: std::io::ErrorKind) {
        let mut state = self.lock();
        let cut = state.synced;
        let visible = state.visible;
        let active = state.active_mut();
        let pos = if active.base >= cut {
            0
        } else if visible.segment == active.base && visible.offset == cut {
            visible.pos
        } else {
            // Not where the synced end can be with fsync per batch: keep the data rather
            // than cut at a guess; the appenders still get the fsync's error.
            warn!(topic = %self.topic, partition = self.id, synced = cut, "After a failed fsync the synced end was not found; nothing was cut.");
            return;
        };
        if active.next_offset <= cut {
            return;
        }
        let dropped = active.size - pos;
        if let Err(e) = active.cut_to(pos) {
            warn!(topic = %self.topic, partition = self.id, error = %e, "Could not cut unsynced batches after a failed fsync; a restart checks the segment.");
            return;
        }
        state.rollbacks += 1;
        state.cut = Some((cut, kind));
        warn!(
            topic = %self.topic, partition = self.id, dropped_bytes = dropped, next_offset = cut,
            "An fsync failed; dropped the batches written since the last good one (none was acknowledged)."
        );
    }

    /// Fsyncs everything written so far (the interval flusher and shutdown call this).
    pub fn flush(&self) -> Result<()> {
        let end = self.lock().end().offset;
        self.sync_to(end, None)
    }

    /// Reads up to `max_records` records (and roughly `max_bytes`) from `cursor`, advancing
    /// it. An empty result means the cursor is at the visible end.
    pub fn read(
        &self,
        cursor: &mut Cursor,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<ConsumedRecord>,
    ) -> Result<()> {
        let (file, path, seg_base, pos, limit) = {
            let state = self.lock();
            if state.segments.is_empty() {
                return Ok(());
            }
            let vis = state.visible;
            let start = state.start_offset();
            if cursor.offset >= vis.offset {
                return if cursor.offset > vis.offset {
                    Err(self.out_of_range(cursor.offset, start, vis.offset))
                } else {
                    Ok(())
                };
            }
            if cursor.offset < start {
                return Err(self.out_of_range(cursor.offset, start, vis.offset));
            }
            let lookup = |offset: u64| {
                let seg = state
                    .segments
                    .range(..=offset)
                    .next_back()
                    .map(|(_, s)| s)
                    .expect("an offset at or after the start offset has a segment");
                (seg, seg.position_for_offset(offset))
            };
            let (mut seg, mut pos) = match cursor
                .hint
                .and_then(|(b, p)| Some((state.segments.get(&b)?, p)))
            {
                Some((seg, pos)) if seg.base <= cursor.offset => (seg, pos),
                _ => lookup(cursor.offset),
            };
            if cursor.offset >= seg.next_offset {
                // At the end of a sealed segment: continue in the next one.
                match state.segments.range(seg.next_offset..).next() {
                    Some((_, next)) => {
                        seg = next;
                        pos = next.position_for_offset(cursor.offset);
                    }
                    None => return Ok(()),
                }
            }
            let limit = if seg.base == vis.segment {
                vis.pos
            } else {
                seg.size
            };
            (seg.file.clone(), seg.path.clone(), seg.base, pos, limit)
        };
        if pos >= limit {
            return Ok(());
        }
        let want = ((limit - pos) as usize).min(max_bytes.max(batch::FRAME_HEADER));
        let mut chunk = segment::read_at(&file, pos, want, &path)?;
        let mut at = 0usize;
        let mut taken = 0usize;
        while at < chunk.len() && taken < max_records {
            let frame = chunk.slice(at..);
            let h = match batch::header(&frame) {
                Ok(h) => h,
                Err(BatchError::Incomplete) if at == 0 => {
                    // The first batch is bigger than the chunk: read it whole.
                    let len = batch::claimed_len(&frame)
                        .filter(|l| pos + *l as u64 <= limit)
                        .ok_or_else(|| self.corrupt(&path, pos, "batch runs past the end"))?;
                    chunk = segment::read_at(&file, pos, len, &path)?;
                    continue;
                }
                Err(BatchError::Incomplete) => break,
                Err(BatchError::Invalid(reason)) => {
                    return Err(self.corrupt(&path, pos + at as u64, &reason));
                }
            };
            let mut stopped_early = false;
            if h.next_offset() > cursor.offset {
                batch::for_each_record(&frame, &h, |offset, r| {
                    if offset < cursor.offset || taken >= max_records {
                        stopped_early |= taken >= max_records;
                        return;
                    }
                    out.push(ConsumedRecord {
                        topic: self.topic.clone(),
                        partition: self.id,
                        offset,
                        timestamp_ms: r.timestamp_ms,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                    });
                    taken += 1;
                    cursor.offset = offset + 1;
                })
                .map_err(|e| self.corrupt(&path, pos + at as u64, &format!("{e:?}")))?;
            }
            if stopped_early {
                // Resume inside this batch next time.
                cursor.hint = Some((seg_base, pos + at as u64));
                return Ok(());
            }
            at += h.total_len;
            cursor.offset = cursor.offset.max(h.next_offset());
        }
        cursor.hint = Some((seg_base, pos + at as u64));
        Ok(())
    }

    /// The first offset whose record has a timestamp at or after `ts`, or the visible end.
    pub fn offset_for_time(&self, ts: i64) -> Result<u64> {
        let (candidates, end) = {
            let state = self.lock();
            let vis = state.visible;
            let segs: Vec<(u64, u64)> = state
                .segments
                .values()
                .filter(|s| s.max_ts >= ts && s.base < vis.offset)
                .map(|s| (s.base, s.position_for_time(ts)))
                .collect();
            (segs, vis.offset)
        };
        for (base, pos) in candidates {
            let mut cursor = Cursor {
                offset: base,
                hint: Some((base, pos)),
            };
            loop {
                let mut batch = Vec::new();
                match self.read(&mut cursor, 4096, 1 << 20, &mut batch) {
                    Ok(()) => {}
                    // Retention removed the segment meanwhile: look further on.
                    Err(LogError::OffsetOutOfRange { .. }) => break,
                    Err(e) => return Err(e),
                }
                if batch.is_empty() {
                    break;
                }
                if let Some(r) = batch.iter().find(|r| r.timestamp_ms >= ts) {
                    return Ok(r.offset);
                }
                if cursor.hint.is_some_and(|(b, _)| b != base) {
                    break;
                }
            }
        }
        Ok(end)
    }

    /// Offsets and size.
    pub fn info(&self) -> PartitionInfo {
        let state = self.lock();
        PartitionInfo {
            partition: self.id,
            start_offset: state.start_offset(),
            end_offset: state.visible.offset,
            size_bytes: Some(state.disk_bytes()),
        }
    }

    /// Deletes segments past the retention limits: older than `age`, or beyond
    /// `max_bytes` on disk (which only a lowered cap can leave, as every roll keeps to
    /// it). The active segment is rolled first when all of it has expired by age, so an
    /// idle partition is cleaned up too.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        age: Option<Duration>,
        max_bytes: Option<u64>,
    ) -> Result<()> {
        if !self.opts.writable || (age.is_none() && max_bytes.is_none()) {
            return Ok(());
        }
        let cutoff = age.map(|a| now_ms.saturating_sub(a.as_millis() as i64));
        let mut state = self.lock();
        let active = state.active();
        if active.size > 0
            && cutoff.is_some_and(|c| active.max_ts < c)
            && state.visible.offset == active.next_offset
        {
            self.roll(&mut state, 0)?;
        }
        let budget = max_bytes.map_or(u64::MAX, |m| m.saturating_sub(state.active().size));
        self.trim(&mut state, budget, cutoff)?;
        Ok(())
    }

    /// Read-only opens: picks up batches and segments another process appended since.
    pub fn refresh(&self) -> Result<()> {
        let bases = list_segments(&self.dir)?;
        let mut state = self.lock();
        if bases.is_empty() {
            return Ok(());
        }
        // Drop segments the writer deleted by retention; add the ones it rolled to.
        state.segments.retain(|base, _| bases.contains(base));
        for base in bases {
            if let Entry::Vacant(slot) = state.segments.entry(base) {
                let path = segment::log_path(&self.dir, base);
                match Segment::open(path, base, false, false) {
                    Ok((seg, _)) => {
                        slot.insert(seg);
                    }
                    Err(LogError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if state.segments.is_empty() {
            // Everything we knew was deleted and its successor vanished too: try next time.
            return Ok(());
        }
        for seg in state.segments.values_mut() {
            let len = seg
                .file
                .metadata()
                .map_err(|e| LogError::io(&seg.path, e))?
                .len();
            if len > seg.size {
                seg.scan(len)?;
            }
        }
        state.visible = state.end();
        Ok(())
    }

    fn out_of_range(&self, offset: u64, start: u64, end: u64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.to_string(),
            partition: self.id,
            offset,
            start,
            end,
        }
    }

    fn corrupt(&self, path: &Path, position: u64, reason: &str) -> LogError {
        LogError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: reason.to_string(),
        }
    }
}

/// Base offsets of the segments in `dir`, ascending.
fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::io(dir, e)),
    };
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = name
            .strip_suffix(".log")
            .and_then(|b| b.parse::<u64>().ok())
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::faults;

    fn options(fsync: FsyncPolicy, segment_bytes: u64, cap: Option<u64>) -> PartitionOptions {
        PartitionOptions {
            fsync,
            segment_bytes,
            writable: true,
            retention_bytes: cap,
        }
    }

    fn open(dir: &Path, opts: PartitionOptions) -> Partition {
        let notify = Arc::new(watch::channel(0).0);
        Partition::open(Arc::from("t"), 0, dir.to_path_buf(), opts, notify).unwrap()
    }

    /// Appends one batch of `n` records whose values say `tag` and their index.
    fn append(p: &Partition, tag: &str, n: usize) -> Result<u64> {
        let values: Vec<String> = (0..n)
            .map(|i| format!("{tag}-{i}-{}", "x".repeat(100)))
            .collect();
        let mut scratch = Vec::new();
        p.append(
            values.iter().map(|v| RecordRef {
                timestamp_ms: 1,
                key: None,
                value: v.as_bytes(),
                headers: &[],
            }),
            &mut scratch,
        )
    }

    fn read_values(p: &Partition) -> Vec<String> {
        let mut cursor = Cursor::at(p.info().start_offset);
        let mut out = Vec::new();
        loop {
            let mut batch = Vec::new();
            p.read(&mut cursor, 10_000, 1 << 20, &mut batch).unwrap();
            if batch.is_empty() {
                return out;
            }
            out.extend(
                batch
                    .iter()
                    .map(|r| String::from_utf8(r.value.to_vec()).unwrap()),
            );
        }
    }

    fn tags(values: &[String]) -> Vec<&str> {
        let mut tags: Vec<&str> = values
            .iter()
            .map(|v| v.split('-').next().unwrap())
            .collect();
        tags.dedup();
        tags
    }

    /// A full disk mid-write: part of the frame lands, the append fails, and neither
    /// readers, the next append nor a reopen ever see those bytes.
    #[test]
    fn a_short_write_is_cut_off_and_leaves_the_segment_whole() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(FsyncPolicy::EveryBatch, 1 << 20, None);
        let p = open(dir.path(), opts);
        append(&p, "a", 10).unwrap();
        faults::short_write(300);
        let err = append(&p, "b", 10).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        let file = segment::log_path(dir.path(), 0);
        let len = fs::metadata(&file).unwrap().len();
        assert_eq!(
            len,
            p.info().size_bytes.unwrap(),
            "the partial frame is cut off"
        );
        assert_eq!(tags(&read_values(&p)), ["a"]);
        // A shorter batch after it must not leave the longer frame's tail behind.
        append(&p, "c", 1).unwrap();
        assert_eq!(p.info().end_offset, 11);
        drop(p);
        let p = open(dir.path(), opts);
        assert_eq!(p.truncated_bytes, 0, "nothing torn to repair on reopen");
        assert_eq!(tags(&read_values(&p)), ["a", "c"]);
    }

    /// A failed fsync: the batch is refused, and it is gone for good, not made visible
    /// by the next fsync that succeeds.
    #[test]
    fn a_batch_whose_fsync_failed_is_dropped_not_shown_later() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(FsyncPolicy::EveryBatch, 1 << 20, None);
        let p = open(dir.path(), opts);
        append(&p, "a", 5).unwrap();
        faults::failed_sync();
        let err = append(&p, "b", 5).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(p.info().end_offset, 5);
        assert_eq!(
            append(&p, "c", 5).unwrap(),
            5,
            "the dropped batch's offsets are reused"
        );
        assert_eq!(tags(&read_values(&p)), ["a", "c"]);
        drop(p);
        let p = open(dir.path(), opts);
        assert_eq!(p.truncated_bytes, 0);
        assert_eq!(tags(&read_values(&p)), ["a", "c"]);
    }

    /// An appender whose batch a rollback cut learns it, even when later batches reuse
    /// its offsets and are synced past them.
    #[test]
    fn a_waiting_appender_whose_batch_was_cut_gets_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), options(FsyncPolicy::EveryBatch, 1 << 20, None));
        append(&p, "a", 5).unwrap();
        // Written but not yet synced, as an appender waiting for the group fsync.
        let (end, epoch) = {
            let mut state = p.lock();
            let mut scratch = Vec::new();
            let v = b"waiting".as_slice();
            batch::encode(
                [RecordRef {
                    timestamp_ms: 1,
                    key: None,
                    value: v,
                    headers: &[],
                }],
                &mut scratch,
            );
            let base = state.active().next_offset;
            let header = batch::seal(&mut scratch, base);
            state.active_mut().append(&scratch, &header).unwrap();
            (state.end().offset, state.rollbacks)
        };
        faults::failed_sync();
        assert!(p.flush().is_err());
        append(&p, "c", 3).unwrap();
        assert!(p.lock().synced >= end);
        let err = p.sync_to(end, Some(epoch)).unwrap_err();
        assert!(err.is_disk_full(), "{err}");
        assert_eq!(tags(&read_values(&p)), ["a", "c"]);
    }

    /// With a size cap, every roll deletes the oldest segments so that the partition,
    /// index files included, never holds more than its cap.
    #[test]
    fn a_capped_partition_stays_within_its_cap_at_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let cap = 40 * 1024;
        let p = open(
            dir.path(),
            options(FsyncPolicy::EveryBatch, 8 * 1024, Some(cap)),
        );
        for i in 0..400 {
            append(&p, "x", 5).unwrap();
            let on_disk: u64 = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert!(
                on_disk <= cap,
                "after append {i}: {on_disk} bytes on disk, cap {cap}"
            );
            assert_eq!(
                on_disk,
                p.info().size_bytes.unwrap(),
                "size reported = size on disk"
            );
        }
        let info = p.info();
        assert!(info.start_offset > 0, "old segments went: {info:?}");
        assert_eq!(info.end_offset, 2000);
        assert_eq!(
            read_values(&p).len() as u64,
            info.end_offset - info.start_offset
        );
    }
}
