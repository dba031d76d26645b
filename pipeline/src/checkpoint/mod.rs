//! Checkpoints: the state of one input partition's operators and the offset they resume
//! from, stored together in one object through the `object_store` crate (a local directory
//! embedded, S3-compatible storage scaled out).
//!
//! Layout under the store's root, per consumer group and input partition:
//!
//! ```text
//! checkpoints/<group>/<topic>-<partition>/<offset, 20 digits>.ckpt
//! checkpoints/<group>/<topic>-<partition>/latest      (the offset, written last)
//! checkpoints/<group>/<topic>-<partition>/parts/<name> (parts, see below)
//! ```
//!
//! A checkpoint object is `magic, version, offset, body length, crc32c(body), body`. In
//! version 1 the body is the payload; in version 2 it is the list of the checkpoint's
//! parts (`count: u32`, then per part `name length: u32, name, length: u64, crc32c: u32`)
//! followed by the payload. A part is an immutable object that consecutive checkpoints of
//! a partition share, so state that does not change between them (remembered identities,
//! ADR-014) is written once, not every few seconds. Object stores write whole objects
//! atomically, but a machine crash on a local disk can still leave a torn file, so every
//! read is verified, parts included (length and checksum recorded in the checkpoint): a
//! damaged checkpoint, part or pointer is skipped with a warning and the newest intact
//! older checkpoint is used instead. The last [`KEEP`] checkpoints are kept for that
//! reason, and a part is deleted once none of them refers to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use helios_log::TopicPartition;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::warn;

use crate::{PipelineError, Result};

const MAGIC: &[u8; 8] = b"HELIOSCK";
/// Version written: the body starts with the list of parts.
const VERSION: u32 = 2;
/// The version before parts: the body is the payload.
const VERSION_1: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 4;
/// Checkpoints kept per partition: the newest and enough older ones to fall back on.
pub const KEEP: usize = 3;

/// Reads and writes checkpoints of one consumer group.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    group: String,
    /// Per partition directory: the parts each checkpoint written or read here refers
    /// to, by offset (so pruning need not read them back).
    refs: Arc<Mutex<HashMap<String, PartsByOffset>>>,
}

/// The part names each checkpoint of a partition refers to, by its offset.
type PartsByOffset = BTreeMap<u64, BTreeSet<String>>;

/// A part as a checkpoint refers to it: its name under the partition's `parts/`, and its
/// length and checksum, verified when it is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    pub name: String,
    pub len: u64,
    pub crc: u32,
}

/// A checkpoint read back: the offset to resume from and the operators' state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub offset: u64,
    pub payload: Bytes,
    /// The checkpoint object's version (the payload's format follows it: see
    /// `runtime::partition`).
    pub version: u32,
    /// The parts the checkpoint refers to, in its order, verified.
    pub parts: Vec<(PartRef, Bytes)>,
}

impl CheckpointStore {
    /// Checkpoints of `group` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, group: &str) -> Self {
        CheckpointStore {
            store,
            group: group.to_string(),
            refs: Arc::default(),
        }
    }

    /// Checkpoints of `group` in a local directory (created if missing).
    pub fn local(dir: &std::path::Path, group: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::CheckpointStore {
            location: dir.display().to_string(),
            source: object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            },
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| {
            PipelineError::CheckpointStore {
                location: dir.display().to_string(),
                source: e,
            }
        })?;
        Ok(CheckpointStore::new(Arc::new(fs), group))
    }

    fn dir(&self, tp: &TopicPartition) -> String {
        format!("checkpoints/{}/{}-{}", self.group, tp.topic, tp.partition)
    }

    fn err(location: &Path, source: object_store::Error) -> PipelineError {
        PipelineError::CheckpointStore {
            location: location.to_string(),
            source,
        }
    }

    /// Writes a checkpoint of `tp` resuming at `offset` that refers to no part (see
    /// [`CheckpointStore::save_with_parts`]). Returns the bytes written.
    pub async fn save(&self, tp: &TopicPartition, offset: u64, payload: &[u8]) -> Result<usize> {
        self.save_with_parts(tp, offset, payload, &[]).await
    }

    /// Writes `bytes` as the part `name` of `tp` (a name of letters, digits, `-` and `_`;
    /// parts are immutable: the same name must always hold the same bytes) and returns
    /// how a checkpoint refers to it.
    pub async fn put_part(&self, tp: &TopicPartition, name: &str, bytes: Bytes) -> Result<PartRef> {
        let path = Path::from(format!("{}/parts/{name}", self.dir(tp)));
        let part = PartRef {
            name: name.to_string(),
            len: bytes.len() as u64,
            crc: crc32c::crc32c(&bytes),
        };
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| Self::err(&path, e))?;
        Ok(part)
    }

    /// Writes a checkpoint of `tp` resuming at `offset` that refers to `parts` (written
    /// before with [`CheckpointStore::put_part`]), then the pointer to it, then deletes
    /// checkpoints older than the last [`KEEP`] and the parts none of those refers to.
    /// Returns the bytes of the checkpoint object.
    pub async fn save_with_parts(
        &self,
        tp: &TopicPartition,
        offset: u64,
        payload: &[u8],
        parts: &[PartRef],
    ) -> Result<usize> {
        let dir = self.dir(tp);
        let mut body = Vec::with_capacity(4 + parts.len() * 48 + payload.len());
        body.extend_from_slice(&(parts.len() as u32).to_le_bytes());
        for part in parts {
            body.extend_from_slice(&(part.name.len() as u32).to_le_bytes());
            body.extend_from_slice(part.name.as_bytes());
            body.extend_from_slice(&part.len.to_le_bytes());
            body.extend_from_slice(&part.crc.to_le_bytes());
        }
        body.extend_from_slice(payload);
        let mut object = Vec::with_capacity(HEADER + body.len());
        object.extend_from_slice(MAGIC);
        object.extend_from_slice(&VERSION.to_le_bytes());
        object.extend_from_slice(&offset.to_le_bytes());
        object.extend_from_slice(&(body.len() as u64).to_le_bytes());
        object.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        object.extend_from_slice(&body);
        drop(body);
        let size = object.len();
        let path = Path::from(format!("{dir}/{offset:020}.ckpt"));
        self.store
            .put(&path, PutPayload::from(object))
            .await
            .map_err(|e| Self::err(&path, e))?;
        let pointer = Path::from(format!("{dir}/latest"));
        self.store
            .put(
                &pointer,
                PutPayload::from(format!("{offset}\n").into_bytes()),
            )
            .await
            .map_err(|e| Self::err(&pointer, e))?;
        let mut offsets = self.offsets(tp).await?;
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        for &old in offsets.iter().skip(KEEP) {
            let p = Path::from(format!("{dir}/{old:020}.ckpt"));
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::err(&p, e)),
            }
        }
        offsets.truncate(KEEP);
        let names: BTreeSet<String> = parts.iter().map(|p| p.name.clone()).collect();
        let changed = {
            let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
            let known = refs.entry(dir.clone()).or_default();
            let previous = known.values().next_back().cloned();
            known.insert(offset, names.clone());
            known.retain(|o, _| offsets.contains(o));
            previous.is_none_or(|p| p != names)
        };
        // Parts become garbage only when a checkpoint stops referring to one; checking
        // then (and after a start) keeps a listing off every save.
        if changed {
            self.delete_unreferenced_parts(tp, &offsets).await?;
        }
        Ok(size)
    }

    /// Deletes the parts of `tp` that none of the checkpoints at `kept` refers to.
    async fn delete_unreferenced_parts(&self, tp: &TopicPartition, kept: &[u64]) -> Result<()> {
        let dir = self.dir(tp);
        let mut live = BTreeSet::new();
        for &offset in kept {
            let known = self
                .refs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&dir)
                .and_then(|k| k.get(&offset).cloned());
            let names = match known {
                Some(names) => names,
                None => {
                    let path = Path::from(format!("{dir}/{offset:020}.ckpt"));
                    let Some(raw) = self.read(&path).await? else {
                        continue;
                    };
                    match verify(&raw, offset)
                        .and_then(|(version, len)| body_parts(version, &raw[HEADER..HEADER + len]))
                    {
                        Ok((parts, _)) => parts.into_iter().map(|p| p.name).collect(),
                        // A damaged checkpoint is never restored: its parts need not stay.
                        Err(_) => continue,
                    }
                }
            };
            live.extend(names);
        }
        let prefix = Path::from(format!("{dir}/parts"));
        let mut list = self.store.list(Some(&prefix));
        let mut dead = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| Self::err(&prefix, e))?;
            if meta.location.filename().is_none_or(|f| !live.contains(f)) {
                dead.push(meta.location);
            }
        }
        drop(list);
        for p in dead {
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::err(&p, e)),
            }
        }
        Ok(())
    }

    /// Offsets of the checkpoint objects present for `tp`, unordered.
    async fn offsets(&self, tp: &TopicPartition) -> Result<Vec<u64>> {
        let dir = Path::from(self.dir(tp));
        // The directory's own objects only, not the parts below it.
        let listed = self
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| Self::err(&dir, e))?;
        let mut out = Vec::new();
        for meta in listed.objects {
            if let Some(o) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".ckpt"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The newest intact checkpoint of `tp`, or `None` when there is none. Damaged
    /// objects are skipped with a warning.
    pub async fn load(&self, tp: &TopicPartition) -> Result<Option<Restored>> {
        let dir = self.dir(tp);
        // The pointer is the fast path (no listing); anything wrong with it falls back to
        // listing, which also finds a checkpoint written just before a crash cut off its
        // pointer.
        let pointer = Path::from(format!("{dir}/latest"));
        if let Some(raw) = self.read(&pointer).await? {
            match std::str::from_utf8(&raw)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                Some(offset) => {
                    if let Some(r) = self.read_checkpoint(&dir, offset, tp).await? {
                        let newer = self.offsets(tp).await?.into_iter().any(|o| o > offset);
                        if !newer {
                            return Ok(Some(r));
                        }
                    }
                }
                None => warn!(
                    partition = %tp, path = %pointer,
                    "Checkpoint pointer is damaged; looking for the newest intact checkpoint."
                ),
            }
        }
        let mut offsets = self.offsets(tp).await?;
        offsets.sort_unstable_by(|a, b| b.cmp(a));
        for offset in offsets {
            if let Some(r) = self.read_checkpoint(&dir, offset, tp).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn read(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|e| Self::err(path, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::err(path, e)),
        }
    }

    /// Reads and verifies one checkpoint and its parts; `None` (with a warning) when it
    /// or one of its parts is damaged or missing.
    async fn read_checkpoint(
        &self,
        dir: &str,
        offset: u64,
        tp: &TopicPartition,
    ) -> Result<Option<Restored>> {
        let path = Path::from(format!("{dir}/{offset:020}.ckpt"));
        let Some(raw) = self.read(&path).await? else {
            warn!(partition = %tp, path = %path, "Checkpoint named by the pointer is missing; looking for an older one.");
            return Ok(None);
        };
        let checked = verify(&raw, offset).and_then(|(version, len)| {
            let (parts, at) = body_parts(version, &raw[HEADER..HEADER + len])?;
            Ok((version, parts, HEADER + at, HEADER + len))
        });
        let (version, refs, from, to) = match checked {
            Ok(c) => c,
            Err(reason) => {
                warn!(
                    partition = %tp, path = %path, reason,
                    "Ignoring a damaged checkpoint (torn write?); falling back to an older one."
                );
                return Ok(None);
            }
        };
        let mut parts = Vec::with_capacity(refs.len());
        for part in refs {
            let p = Path::from(format!("{dir}/parts/{}", part.name));
            let bytes = self.read(&p).await?;
            let intact = bytes
                .as_ref()
                .is_some_and(|b| b.len() as u64 == part.len && crc32c::crc32c(b) == part.crc);
            let Some(bytes) = bytes.filter(|_| intact) else {
                warn!(
                    partition = %tp, path = %path, part = %p,
                    "A part of the checkpoint is missing or damaged; falling back to an older checkpoint."
                );
                return Ok(None);
            };
            parts.push((part, bytes));
        }
        self.refs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(dir.to_string())
            .or_default()
            .insert(offset, parts.iter().map(|(p, _)| p.name.clone()).collect());
        Ok(Some(Restored {
            offset,
            payload: raw.slice(from..to),
            version,
            parts,
        }))
    }
}

/// Checks a checkpoint object; returns its version and body length.
fn verify(raw: &[u8], offset: u64) -> std::result::Result<(u32, usize), &'static str> {
    if raw.len() < HEADER {
        return Err("shorter than its header");
    }
    if &raw[..8] != MAGIC {
        return Err("not a checkpoint (bad magic)");
    }
    let word = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap_or([0; 4]));
    let long = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = word(8);
    if version != VERSION && version != VERSION_1 {
        return Err("unknown checkpoint version");
    }
    if long(12) != offset {
        return Err("offset inside does not match its name");
    }
    let len = usize::try_from(long(20)).map_err(|_| "length out of range")?;
    if raw.len() - HEADER != len {
        return Err("length does not match (truncated)");
    }
    if crc32c::crc32c(&raw[HEADER..]) != word(28) {
        return Err("checksum mismatch");
    }
    Ok((version, len))
}

/// The parts listed at the start of a (verified) body, and where its payload starts.
fn body_parts(
    version: u32,
    body: &[u8],
) -> std::result::Result<(Vec<PartRef>, usize), &'static str> {
    if version == VERSION_1 {
        return Ok((Vec::new(), 0));
    }
    const BAD: &str = "the list of parts is malformed";
    let mut at = 0usize;
    let mut take = |n: usize| -> std::result::Result<&[u8], &'static str> {
        let slice = body.get(at..at.checked_add(n).ok_or(BAD)?).ok_or(BAD)?;
        at += n;
        Ok(slice)
    };
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or([0; 4]));
    let count = word(take(4)?);
    let mut parts = Vec::new();
    for _ in 0..count {
        let len = word(take(4)?) as usize;
        let name = std::str::from_utf8(take(len)?).map_err(|_| BAD)?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(BAD);
        }
        let name = name.to_string();
        let len = u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8]));
        let crc = word(take(4)?);
        parts.push(PartRef { name, len, crc });
    }
    Ok((parts, at))
}

#[cfg(test)]
mod tests;
