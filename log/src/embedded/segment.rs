//! One segment of a partition: a `.log` file of batches and its sparse indexes.
//!
//! The offset index maps a batch's offset to its byte position every
//! [`INDEX_INTERVAL`] bytes; the time index maps "largest timestamp so far" to a byte
//! position at the same points. Both live in memory; a sealed segment writes them to an
//! `.index` file (checksummed) so reopening does not rescan the log. The active segment is
//! always rescanned on open, which is also how a torn tail is found.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::batch::{self, BatchError, BatchHeader};
use crate::{LogError, Result};

/// Bytes of log between two index entries.
pub const INDEX_INTERVAL: u64 = 4096;
const INDEX_MAGIC: u32 = 0x484c_4958; // "HLIX"
const SCAN_CHUNK: usize = 1 << 20;

/// A segment's files and in-memory indexes.
#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// Bytes of valid batches.
    pub size: u64,
    /// Offset after the last record.
    pub next_offset: u64,
    /// Largest record timestamp, `i64::MIN` when empty.
    pub max_ts: i64,
    offset_index: Vec<(u64, u64)>,
    time_index: Vec<(i64, u64)>,
    last_indexed: Option<u64>,
    /// A failed write may have left bytes after `size` that could not be cut off yet; they
    /// are cut before the next write or the seal, so the file always ends at a batch.
    torn: bool,
}

/// What a scan of a segment's file found after its last valid batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// The file ends exactly after a valid batch.
    Clean,
    /// `bytes` more bytes follow that are not a valid batch.
    Torn { bytes: u64, reason: String },
}

pub fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_path(log: &Path) -> PathBuf {
    log.with_extension("index")
}

impl Segment {
    /// Creates an empty segment file.
    pub fn create(dir: &Path, base: u64) -> Result<Segment> {
        let path = log_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        sync_dir(dir)?;
        Ok(Segment::empty(base, path, file))
    }

    fn empty(base: u64, path: PathBuf, file: File) -> Segment {
        Segment {
            base,
            path,
            file: Arc::new(file),
            size: 0,
            next_offset: base,
            max_ts: i64::MIN,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            last_indexed: None,
            torn: false,
        }
    }

    /// Opens an existing segment. A sealed segment with a valid index file is not rescanned;
    /// otherwise the log is scanned and the returned [`Tail`] says what follows the last
    /// valid batch (the caller decides whether to truncate it).
    pub fn open(
        path: PathBuf,
        base: u64,
        writable: bool,
        trust_index: bool,
    ) -> Result<(Segment, Tail)> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut seg = Segment::empty(base, path, file);
        if trust_index && seg.load_index(len) {
            return Ok((seg, Tail::Clean));
        }
        let tail = seg.scan(len)?;
        Ok((seg, tail))
    }

    /// Reads batches from `self.size` up to `len`, indexing each; stops at the first
    /// incomplete or invalid batch.
    pub fn scan(&mut self, len: u64) -> Result<Tail> {
        let mut chunk = Vec::new();
        while self.size < len {
            let want = ((len - self.size) as usize).min(SCAN_CHUNK);
            chunk.resize(want, 0);
            read_exact_at(&self.file, &mut chunk, self.size, &self.path)?;
            let mut at = 0usize;
            loop {
                match batch::header(&chunk[at..]) {
                    Ok(h) => {
                        if h.base_offset != self.next_offset {
                            return Ok(Tail::Torn {
                                bytes: len - self.size,
                                reason: format!(
                                    "batch claims offset {} where {} was expected",
                                    h.base_offset, self.next_offset
                                ),
                            });
                        }
                        self.note_batch(&h);
                        at += h.total_len;
                    }
                    Err(BatchError::Incomplete) => {
                        let claimed = batch::claimed_len(&chunk[at..]).unwrap_or(0) as u64;
                        if at == 0 && self.size + claimed <= len && claimed as usize > chunk.len() {
                            // One batch larger than the chunk: read it whole.
                            chunk.resize(claimed as usize, 0);
                            read_exact_at(&self.file, &mut chunk, self.size, &self.path)?;
                            continue;
                        }
                        if at == 0 {
                            return Ok(Tail::Torn {
                                bytes: len - self.size,
                                reason: "partial batch".into(),
                            });
                        }
                        break;
                    }
                    Err(BatchError::Invalid(reason)) => {
                        return Ok(Tail::Torn {
                            bytes: len - self.size,
                            reason,
                        });
                    }
                }
            }
        }
        Ok(Tail::Clean)
    }

    /// Records a batch appended at `self.size`.
    fn note_batch(&mut self, h: &BatchHeader) {
        let pos = self.size;
        if self
            .last_indexed
            .is_none_or(|last| pos - last >= INDEX_INTERVAL)
        {
            self.offset_index.push((h.base_offset, pos));
            self.time_index.push((self.max_ts.max(h.max_ts), pos));
            self.last_indexed = Some(pos);
        }
        self.max_ts = self.max_ts.max(h.max_ts);
        self.size += h.total_len as u64;
        self.next_offset = h.next_offset();
    }

    /// Appends a batch frame sealed by [`batch::seal`], which returned `h`. When the write
    /// fails (a full disk: part of the frame may be on disk), the file is cut back to its
    /// last whole batch, so nothing half-written is ever read, sealed or reopened.
    pub fn append(&mut self, frame: &[u8], h: &BatchHeader) -> Result<()> {
        debug_assert_eq!(batch::header(frame).as_ref(), Ok(h));
        self.cut_torn_bytes()?;
        if let Err(e) = write_at(&self.file, frame, self.size) {
            // Shrinking a file needs no free space, so this cut normally works; if not,
            // the next write or seal tries again first.
            self.torn = true;
            let _ = self.cut_torn_bytes();
            return Err(LogError::io(&self.path, e));
        }
        self.note_batch(h);
        Ok(())
    }

    /// Cuts off what a failed write left after the last whole batch.
    fn cut_torn_bytes(&mut self) -> Result<()> {
        if self.torn {
            self.file
                .set_len(self.size)
                .map_err(|e| LogError::io(&self.path, e))?;
            self.torn = false;
        }
        Ok(())
    }

    /// Forgets every batch after byte `pos` (a batch boundary): the file is cut there and
    /// the indexes rebuilt by a rescan. For data whose fsync failed, which the disk may or
    /// may not hold.
    pub fn cut_to(&mut self, pos: u64) -> Result<()> {
        self.file
            .set_len(pos)
            .map_err(|e| LogError::io(&self.path, e))?;
        self.size = 0;
        self.next_offset = self.base;
        self.max_ts = i64::MIN;
        self.offset_index.clear();
        self.time_index.clear();
        self.last_indexed = None;
        self.torn = false;
        match self.scan(pos)? {
            Tail::Clean => Ok(()),
            Tail::Torn { reason, .. } => Err(LogError::Corrupt {
                path: self.path.clone(),
                position: self.size,
                reason,
            }),
        }
    }

    /// Bytes the segment takes on disk: its batches and the index file it has once sealed.
    pub fn disk_bytes(&self) -> u64 {
        self.size + index_file_bytes(self.offset_index.len(), self.time_index.len())
    }

    /// Cuts the file back to its valid size (after a torn tail).
    pub fn truncate_to_valid(&self) -> Result<()> {
        self.file
            .set_len(self.size)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| LogError::io(&self.path, e))
    }

    pub fn sync(&self) -> Result<()> {
        sync_file(&self.file).map_err(|e| LogError::io(&self.path, e))
    }

    /// Makes the segment durable and writes its index file, so reopening skips the scan.
    pub fn seal(&mut self) -> Result<()> {
        self.cut_torn_bytes()?;
        self.sync()?;
        let mut buf = BytesMut::new();
        buf.put_u32_le(INDEX_MAGIC);
        buf.put_u64_le(self.next_offset);
        buf.put_i64_le(self.max_ts);
        buf.put_u64_le(self.size);
        buf.put_u32_le(self.offset_index.len() as u32);
        for (offset, pos) in &self.offset_index {
            buf.put_u64_le(*offset);
            buf.put_u64_le(*pos);
        }
        buf.put_u32_le(self.time_index.len() as u32);
        for (ts, pos) in &self.time_index {
            buf.put_i64_le(*ts);
            buf.put_u64_le(*pos);
        }
        let crc = crc32c::crc32c(&buf);
        buf.put_u32_le(crc);
        let path = index_path(&self.path);
        write_atomically(&path, &buf)
    }

    fn load_index(&mut self, file_len: u64) -> bool {
        let path = index_path(&self.path);
        let mut raw = Vec::new();
        if File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut raw))
            .is_err()
            || raw.len() < 8
        {
            return false;
        }
        let (body, crc) = raw.split_at(raw.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return false;
        }
        match IndexFile::parse(body) {
            Some(index) if index.size == file_len => {
                self.next_offset = index.next_offset;
                self.max_ts = index.max_ts;
                self.size = index.size;
                self.last_indexed = index.offsets.last().map(|(_, pos)| *pos);
                self.offset_index = index.offsets;
                self.time_index = index.times;
                true
            }
            _ => false,
        }
    }

    /// Byte position of a batch at or before `offset`.
    pub fn position_for_offset(&self, offset: u64) -> u64 {
        let i = self.offset_index.partition_point(|(o, _)| *o <= offset);
        if i == 0 {
            0
        } else {
            self.offset_index[i - 1].1
        }
    }

    /// Byte position from which a scan finds the first record with timestamp >= `ts`:
    /// every record before it is older than `ts`.
    pub fn position_for_time(&self, ts: i64) -> u64 {
        let i = self.time_index.partition_point(|(max, _)| *max < ts);
        if i == 0 { 0 } else { self.time_index[i - 1].1 }
    }

    /// Removes the segment's files.
    pub fn delete(&self) -> Result<()> {
        for path in [self.path.clone(), index_path(&self.path)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(&path, e)),
            }
        }
        Ok(())
    }
}

/// Size of an `.index` file with `offsets` and `times` entries: magic, next offset, max
/// timestamp, size, two counted lists of 16-byte entries, CRC.
pub fn index_file_bytes(offsets: usize, times: usize) -> u64 {
    (4 + 8 + 8 + 8 + 4 + 16 * offsets + 4 + 16 * times + 4) as u64
}

/// The contents of an `.index` file (without its trailing CRC).
struct IndexFile {
    next_offset: u64,
    max_ts: i64,
    size: u64,
    offsets: Vec<(u64, u64)>,
    times: Vec<(i64, u64)>,
}

impl IndexFile {
    fn parse(mut b: &[u8]) -> Option<IndexFile> {
        if b.remaining() < 32 || b.get_u32_le() != INDEX_MAGIC {
            return None;
        }
        let (next_offset, max_ts, size) = (b.get_u64_le(), b.get_i64_le(), b.get_u64_le());
        let n = b.get_u32_le() as usize;
        if b.remaining() < n * 16 + 4 {
            return None;
        }
        let offsets = (0..n).map(|_| (b.get_u64_le(), b.get_u64_le())).collect();
        let m = b.get_u32_le() as usize;
        if b.remaining() != m * 16 {
            return None;
        }
        let times = (0..m).map(|_| (b.get_i64_le(), b.get_u64_le())).collect();
        Some(IndexFile {
            next_offset,
            max_ts,
            size,
            offsets,
            times,
        })
    }
}

/// Reads `len` bytes at `pos` into a fresh buffer.
pub fn read_at(file: &File, pos: u64, len: usize, path: &Path) -> Result<Bytes> {
    let mut buf = vec![0u8; len];
    read_exact_at(file, &mut buf, pos, path)?;
    Ok(Bytes::from(buf))
}

/// `fdatasync`; unit tests can make it fail ([`super::faults`]).
pub fn sync_file(file: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if super::faults::take_failed_sync() {
        return Err(std::io::ErrorKind::StorageFull.into());
    }
    file.sync_data()
}

/// `write_all_at`; unit tests can make it write part of `data` and fail as a full disk
/// does ([`super::faults`]).
fn write_at(file: &File, data: &[u8], pos: u64) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(n) = super::faults::take_short_write() {
        file.write_all_at(&data[..n.min(data.len())], pos)?;
        return Err(std::io::ErrorKind::StorageFull.into());
    }
    file.write_all_at(data, pos)
}

fn read_exact_at(file: &File, buf: &mut [u8], pos: u64, path: &Path) -> Result<()> {
    file.read_exact_at(buf, pos)
        .map_err(|e| LogError::io(path, e))
}

/// Writes `data` to `path` through a temp file, fsync and rename, so readers see the old
/// or the new content, never a mix.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        // A full disk fails the write: leave no temp file taking space.
        let _ = fs::remove_file(&tmp);
        return Err(LogError::io(path, e));
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}
