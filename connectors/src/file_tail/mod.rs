//! File tail: owns following files matched by globs, turning each line into an `Event`
//! (JSON lines or regex-matched text) and each unusable line into a `DeadLetter`.
//!
//! Each file is known by its identity (device, inode) and a *generation*, bumped when the
//! file is truncated (or its first bytes change: replaced in place), so the event id
//! `dev-ino-generation-offset` names one line of one file's content forever. The read
//! position of every file is checkpointed in the source's state dir (atomically, after the
//! events and dead letters of the read lines are durable in the log), so a restart repeats
//! at most the last unacknowledged lines, with the same ids, which downstream drops.
//!
//! Rotation by rename: the open handle keeps reading the renamed file until it has been
//! unmatched for `rotate_wait` and is read to its end; the new file at the old path is a
//! new identity read from its start. After a restart, a rotated file that no glob matches
//! is found again by its inode in its folder. Truncation (size below the read position)
//! restarts the file at offset 0 with the next generation.
//!
//! Reads are plain blocking reads of at most one chunk (256 KiB, or one line more than
//! `max_line_bytes`) from local files, the cost of a page-cache copy, so they run on the
//! source's task rather than through `spawn_blocking`.

mod config;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, Metadata};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use helios_schemas::Event;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use config::{FileTailConfig, LineFormat, StartAt, TimeUnit};
use parse::LineParser;

use crate::runtime::{PullSource, SourceContext, checkpoint, now_micros};
use crate::{ConnectorError, Result};

const CHECKPOINT_FILE: &str = "positions.json";
const READ_CHUNK: usize = 256 << 10;
/// Bytes at the start of a file whose checksum tells a grown file from a replaced one.
const FINGERPRINT_BYTES: u64 = 256;
/// Identities of finished files remembered, so a reused inode starts a new generation.
const MAX_RETIRED: usize = 1024;

/// Which file: device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The checkpoint file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    files: Vec<Position>,
    retired: Vec<Retired>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Position {
    id: FileId,
    generation: u32,
    offset: u64,
    path: PathBuf,
    label: String,
    fingerprint_len: u64,
    fingerprint: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Retired {
    id: FileId,
    generation: u32,
}

/// One file being followed.
#[derive(Debug)]
struct Tracked {
    pos: Position,
    file: Option<File>,
    last_size: Option<u64>,
    /// When no glob matched the file any more (renamed away or deleted).
    unmatched_since: Option<Instant>,
    /// The last problem reported, so a lasting problem is reported once.
    reported: Option<String>,
}

impl Tracked {
    fn new(pos: Position) -> Self {
        Tracked {
            pos,
            file: None,
            last_size: None,
            unmatched_since: None,
            reported: None,
        }
    }

    fn event_id(&self, offset: u64) -> String {
        let p = &self.pos;
        format!("{:x}-{:x}-{}-{offset}", p.id.dev, p.id.ino, p.generation)
    }

    fn report(&mut self, ctx: &SourceContext, message: String) {
        if self.reported.as_ref() != Some(&message) {
            ctx.report_error(message.clone());
            self.reported = Some(message);
        }
    }

    /// Whether the file still starts with the bytes it started with when read.
    fn fingerprint_matches(&self, file: &File) -> bool {
        if self.pos.fingerprint_len == 0 {
            return true;
        }
        fingerprint(file, self.pos.fingerprint_len) == Some(self.pos.fingerprint)
    }
}

fn fingerprint(file: &File, len: u64) -> Option<u32> {
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(crc32c::crc32c(&buf))
}

/// The running file tail source.
#[derive(Debug)]
pub struct FileTailSource {
    config: FileTailConfig,
    parser: LineParser,
    files: BTreeMap<FileId, Tracked>,
    retired: VecDeque<Retired>,
    reported: BTreeSet<String>,
}

impl FileTailSource {
    /// Fails on settings that `validate()` refuses.
    pub fn new(config: FileTailConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|m| ConnectorError::config(&config.name, m))?;
        let parser =
            LineParser::new(&config).map_err(|m| ConnectorError::config(&config.name, m))?;
        Ok(FileTailSource {
            config,
            parser,
            files: BTreeMap::new(),
            retired: VecDeque::new(),
            reported: BTreeSet::new(),
        })
    }

    fn restore(&mut self, cp: Checkpoint) {
        self.files = cp
            .files
            .into_iter()
            .map(|p| (p.id, Tracked::new(p)))
            .collect();
        self.retired = cp.retired.into();
    }

    fn save(&self, ctx: &SourceContext, dir: &Path) -> Result<()> {
        let cp = Checkpoint {
            files: self.files.values().map(|t| t.pos.clone()).collect(),
            retired: self.retired.iter().cloned().collect(),
        };
        checkpoint::save(ctx.name(), dir, CHECKPOINT_FILE, &cp)
    }

    fn report_once(&mut self, ctx: &SourceContext, message: String) {
        if self.reported.insert(message.clone()) {
            ctx.report_error(message);
        }
    }

    /// Regular files matched by the globs now, with their metadata.
    fn expand(&mut self, ctx: &SourceContext) -> Vec<(PathBuf, Metadata)> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for pattern in &self.config.paths {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    problems.push(format!("`{pattern}` is not a valid glob: {e}"));
                    continue;
                }
            };
            for entry in paths {
                match entry {
                    Ok(path) => match std::fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => out.push((path, meta)),
                        Ok(_) => {}
                        Err(e) => problems.push(format!(
                            "cannot read {}: {e}; the other files keep being tailed",
                            path.display()
                        )),
                    },
                    Err(e) => problems.push(format!(
                        "cannot list {}: {}; the other files keep being tailed",
                        e.path().display(),
                        e.error()
                    )),
                }
            }
        }
        for p in problems {
            self.report_once(ctx, p);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn poll(&mut self, ctx: &SourceContext, dir: &Path, first_start: bool) -> Result<()> {
        let now = Instant::now();
        let mut seen = BTreeSet::new();
        for (path, meta) in self.expand(ctx) {
            let id = FileId::of(&meta);
            if !seen.insert(id) {
                continue; // matched twice (two globs, hard links)
            }
            if let Some(t) = self.files.get_mut(&id) {
                t.pos.path = path;
                t.unmatched_since = None;
                continue;
            }
            let generation = match self.retired.iter().position(|r| r.id == id) {
                Some(i) => self.retired.remove(i).map_or(0, |r| r.generation + 1),
                None => 0,
            };
            let offset = if first_start && self.config.start_at == StartAt::End {
                meta.len()
            } else {
                0
            };
            info!(source = ctx.name(), path = %path.display(), offset, "Tailing a file.");
            let label = path.display().to_string();
            self.files.insert(
                id,
                Tracked::new(Position {
                    id,
                    generation,
                    offset,
                    path,
                    label,
                    fingerprint_len: 0,
                    fingerprint: 0,
                }),
            );
        }
        for t in self.files.values_mut() {
            if !seen.contains(&t.pos.id) && t.unmatched_since.is_none() {
                t.unmatched_since = Some(now);
            }
        }
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            if ctx.is_shutting_down() {
                return Ok(());
            }
            self.read_file(ctx, dir, id, now).await?;
        }
        Ok(())
    }

    /// Reads what `id` holds past its position, chunk by chunk, emitting and checkpointing
    /// each chunk; retires the file once it is unmatched for `rotate_wait` and read to its end.
    async fn read_file(
        &mut self,
        ctx: &SourceContext,
        dir: &Path,
        id: FileId,
        now: Instant,
    ) -> Result<()> {
        let rotate_wait = self.config.rotate_wait;
        let max_line = self.config.max_line_bytes;
        let chunk = READ_CHUNK.max(max_line + 1);
        loop {
            let Some(t) = self.files.get_mut(&id) else {
                return Ok(());
            };
            let finished = t
                .unmatched_since
                .is_some_and(|since| now.duration_since(since) >= rotate_wait);
            if t.file.is_none() {
                match open_verified(&t.pos.path, id) {
                    Ok(Some((file, path))) => {
                        t.pos.path = path;
                        t.file = Some(file);
                    }
                    Ok(None) => {
                        if t.unmatched_since.is_some() {
                            warn!(source = ctx.name(), path = %t.pos.path.display(), offset = t.pos.offset,
                                "A tailed file is gone; lines written after the last read are lost.");
                            self.retire(id);
                            self.save(ctx, dir)?;
                        }
                        return Ok(());
                    }
                    Err(message) => {
                        t.report(ctx, message);
                        return Ok(());
                    }
                }
            }
            let Some(file) = t.file.as_ref() else {
                return Ok(());
            };
            let size = match file.metadata() {
                Ok(m) => m.len(),
                Err(e) => {
                    let message = format!("cannot stat {}: {e}", t.pos.path.display());
                    t.report(ctx, message);
                    return Ok(());
                }
            };
            if size < t.pos.offset || (t.last_size != Some(size) && !t.fingerprint_matches(file)) {
                info!(source = ctx.name(), path = %t.pos.path.display(), size, offset = t.pos.offset,
                    "A tailed file was truncated or replaced; reading it again from its start.");
                t.pos.generation += 1;
                t.pos.offset = 0;
                t.pos.fingerprint_len = 0;
                t.pos.fingerprint = 0;
            }
            t.last_size = Some(size);
            if t.pos.offset >= size {
                if finished {
                    info!(source = ctx.name(), path = %t.pos.path.display(), "Finished a rotated or removed file.");
                    self.retire(id);
                    self.save(ctx, dir)?;
                }
                return Ok(());
            }
            let want = (size - t.pos.offset).min(chunk as u64) as usize;
            let mut buf = vec![0; want];
            if let Err(e) = file.read_exact_at(&mut buf, t.pos.offset) {
                let message = format!("cannot read {}: {e}", t.pos.path.display());
                t.report(ctx, message);
                return Ok(());
            }
            t.reported = None;
            let at_eof = t.pos.offset + want as u64 == size;
            let lines = split_lines(&buf, max_line, at_eof && finished);
            let Some(consumed) = lines.last().map(|l| l.end_with_break) else {
                return Ok(()); // only a partial line so far
            };
            let mut events = Vec::with_capacity(lines.len());
            let mut dead = Vec::new();
            let received_at = now_micros();
            for line in &lines {
                let offset = t.pos.offset + line.start as u64;
                let id = t.event_id(offset);
                let bytes = &buf[line.start..line.end];
                if line.cut {
                    dead.push((id, bytes.to_vec(), format!(
                        "line at offset {offset} of {} is longer than max_line_bytes ({max_line}); cut there",
                        t.pos.label
                    )));
                    continue;
                }
                match self.parser.parse(bytes) {
                    Ok(p) => events.push(Event {
                        id,
                        source: ctx.name().to_string(),
                        kind: p.kind.unwrap_or_else(|| self.config.default_kind.clone()),
                        subject: p
                            .subject
                            .or_else(|| self.config.default_subject.clone())
                            .unwrap_or_else(|| t.pos.label.clone()),
                        time: p.time.unwrap_or(received_at),
                        received_at,
                        attrs: {
                            let mut attrs = p.attrs;
                            attrs.insert("file".to_string(), t.pos.label.clone());
                            attrs
                        },
                        value: p.value,
                        payload: p.payload,
                    }),
                    Err(reason) => dead.push((
                        id,
                        bytes.to_vec(),
                        format!("line at offset {offset} of {}: {reason}", t.pos.label),
                    )),
                }
            }
            // Durable first, checkpoint second: a crash in between repeats these lines
            // with the same ids, never skips them.
            ctx.emit(&events).await?;
            for (id, original, reason) in dead {
                ctx.dead_letter(id, original, reason).await?;
            }
            let Some(t) = self.files.get_mut(&id) else {
                return Ok(());
            };
            t.pos.offset += consumed as u64;
            if t.pos.fingerprint_len < FINGERPRINT_BYTES
                && t.pos.offset > t.pos.fingerprint_len
                && let Some(file) = t.file.as_ref()
            {
                let len = t.pos.offset.min(FINGERPRINT_BYTES);
                if let Some(crc) = fingerprint(file, len) {
                    t.pos.fingerprint_len = len;
                    t.pos.fingerprint = crc;
                }
            }
            self.save(ctx, dir)?;
        }
    }

    fn retire(&mut self, id: FileId) {
        if let Some(t) = self.files.remove(&id) {
            self.retired.retain(|r| r.id != id);
            self.retired.push_back(Retired {
                id,
                generation: t.pos.generation,
            });
            while self.retired.len() > MAX_RETIRED {
                self.retired.pop_front();
            }
        }
    }
}

/// One line found in a chunk: `start..end` without the line break; `end_with_break` is
/// where the next line starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineSpan {
    start: usize,
    end: usize,
    end_with_break: usize,
    /// Cut at `max_line_bytes` rather than ended by a line break.
    cut: bool,
}

/// Splits `buf` into complete lines (`\n`, with a `\r` before it dropped). A piece of
/// `max_line` bytes without a break is cut off as a line of its own; a final piece without
/// a break is a line only when `take_partial` (the file is finished).
fn split_lines(buf: &[u8], max_line: usize, take_partial: bool) -> Vec<LineSpan> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let window = &buf[pos..buf.len().min(pos + max_line + 1)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) if i <= max_line => {
                let mut end = pos + i;
                if end > pos && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                out.push(LineSpan {
                    start: pos,
                    end,
                    end_with_break: pos + i + 1,
                    cut: false,
                });
                pos += i + 1;
            }
            _ if buf.len() - pos >= max_line => {
                out.push(LineSpan {
                    start: pos,
                    end: pos + max_line,
                    end_with_break: pos + max_line,
                    cut: true,
                });
                pos += max_line;
            }
            _ if take_partial => {
                out.push(LineSpan {
                    start: pos,
                    end: buf.len(),
                    end_with_break: buf.len(),
                    cut: false,
                });
                pos = buf.len();
            }
            _ => break,
        }
    }
    out
}

/// Opens `path` if it is still the file `id`; otherwise looks for `id` in the same folder
/// (a rotated file renamed beside the original). `Ok(None)` when the file is gone.
fn open_verified(path: &Path, id: FileId) -> std::result::Result<Option<(File, PathBuf)>, String> {
    match File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(meta) if FileId::of(&meta) == id => return Ok(Some((file, path.to_path_buf()))),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot stat {}: {e}", path.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot open {}: {e}; the other files keep being tailed",
                path.display()
            ));
        }
    }
    let Some(folder) = path.parent() else {
        return Ok(None);
    };
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok(None);
    };
    for entry in entries.flatten() {
        let candidate = entry.path();
        if std::fs::metadata(&candidate).is_ok_and(|m| FileId::of(&m) == id)
            && let Ok(file) = File::open(&candidate)
        {
            return Ok(Some((file, candidate)));
        }
    }
    Ok(None)
}

#[async_trait]
impl PullSource for FileTailSource {
    async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let dir = ctx.state_dir()?.to_path_buf();
        let saved: Option<Checkpoint> = checkpoint::load(ctx.name(), &dir, CHECKPOINT_FILE)?;
        let first_start = saved.is_none();
        self.restore(saved.unwrap_or_default());
        self.poll(ctx, &dir, first_start).await?;
        while ctx.sleep(self.config.poll_interval).await {
            self.poll(ctx, &dir, false).await?;
        }
        Ok(())
    }
}
