//! Checkpoints: the state of one input partition's operators and the offset they resume
//! from, stored together in one object through the `object_store` crate (a local directory
//! embedded, S3-compatible storage scaled out).
//!
//! Layout under the store's root, per consumer group and input partition:
//!
//! ```text
//! checkpoints/<group>/<topic>-<partition>/<offset, 20 digits>.ckpt
//! checkpoints/<group>/<topic>-<partition>/latest      (the offset, written last)
//! ```
//!
//! A checkpoint object is `magic, version, offset, payload length, crc32c(payload),
//! payload`. Object stores write whole objects atomically, but a machine crash on a local
//! disk can still leave a torn file, so every read is verified: a damaged checkpoint or
//! pointer is skipped with a warning and the newest intact older checkpoint is used
//! instead. The last [`KEEP`] checkpoints are kept for that reason.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use helios_log::TopicPartition;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tracing::warn;

use crate::{PipelineError, Result};

const MAGIC: &[u8; 8] = b"HELIOSCK";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 4;
/// Checkpoints kept per partition: the newest and enough older ones to fall back on.
pub const KEEP: usize = 3;

/// Reads and writes checkpoints of one consumer group.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    group: String,
}

/// A checkpoint read back: the offset to resume from and the operators' state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub offset: u64,
    pub payload: Bytes,
}

impl CheckpointStore {
    /// Checkpoints of `group` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, group: &str) -> Self {
        CheckpointStore {
            store,
            group: group.to_string(),
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

    /// Writes a checkpoint of `tp` resuming at `offset`, then the pointer to it, then
    /// deletes checkpoints older than the last [`KEEP`]. Returns the bytes written.
    pub async fn save(&self, tp: &TopicPartition, offset: u64, payload: &[u8]) -> Result<usize> {
        let dir = self.dir(tp);
        let mut object = Vec::with_capacity(HEADER + payload.len());
        object.extend_from_slice(MAGIC);
        object.extend_from_slice(&VERSION.to_le_bytes());
        object.extend_from_slice(&offset.to_le_bytes());
        object.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        object.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        object.extend_from_slice(payload);
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
        for old in offsets.into_iter().skip(KEEP) {
            let p = Path::from(format!("{dir}/{old:020}.ckpt"));
            match self.store.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(Self::err(&p, e)),
            }
        }
        Ok(size)
    }

    /// Offsets of the checkpoint objects present for `tp`, unordered.
    async fn offsets(&self, tp: &TopicPartition) -> Result<Vec<u64>> {
        let dir = Path::from(self.dir(tp));
        let mut list = self.store.list(Some(&dir));
        let mut out = Vec::new();
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(|e| Self::err(&dir, e))?;
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

    /// Reads and verifies one checkpoint; `None` (with a warning) when it is damaged.
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
        match verify(&raw, offset) {
            Ok(payload) => Ok(Some(Restored {
                offset,
                payload: raw.slice(HEADER..HEADER + payload),
            })),
            Err(reason) => {
                warn!(
                    partition = %tp, path = %path, reason,
                    "Ignoring a damaged checkpoint (torn write?); falling back to an older one."
                );
                Ok(None)
            }
        }
    }
}

/// Checks a checkpoint object; returns its payload length.
fn verify(raw: &[u8], offset: u64) -> std::result::Result<usize, &'static str> {
    if raw.len() < HEADER {
        return Err("shorter than its header");
    }
    if &raw[..8] != MAGIC {
        return Err("not a checkpoint (bad magic)");
    }
    let word = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap_or([0; 4]));
    let long = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap_or([0; 8]));
    if word(8) != VERSION {
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
    Ok(len)
}

#[cfg(test)]
mod tests;
