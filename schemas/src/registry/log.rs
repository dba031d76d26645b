//! The registry's durable form: `registry.jsonl`, an append-only log of register and
//! config-change entries, one JSON object per line, fsync'd after every append.
//!
//! A crash can leave a torn last line; it is skipped with a warning (and cut off when
//! the log is opened for writing, so the next append starts on a clean line). A bad
//! line anywhere else is corruption and stops `open`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CompatibilityLevel;
use crate::{Error, Result};

/// File name of the log inside the data dir.
pub const LOG_FILE: &str = "registry.jsonl";
/// File name of the write lock inside the data dir.
pub const LOCK_FILE: &str = "registry.lock";

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// `schema` became `version` of `subject`, with global id `id`.
    Register {
        subject: String,
        version: u32,
        id: u32,
        schema: String,
    },
    /// The compatibility level of `subject` (or the global one when `None`) changed.
    Config {
        subject: Option<String>,
        level: CompatibilityLevel,
    },
}

/// Reads every complete entry of the log in `dir`. Returns the entries and the byte length
/// of the valid prefix (shorter than the file when the last line is torn). A missing log
/// is an empty one.
pub(crate) fn read(dir: &Path) -> Result<(Vec<Entry>, u64)> {
    let path = dir.join(LOG_FILE);
    let mut raw = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut raw).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => return Err(Error::Io { path, source }),
    }
    parse(&path, &raw)
}

fn parse(path: &Path, raw: &[u8]) -> Result<(Vec<Entry>, u64)> {
    let mut entries = Vec::new();
    let mut valid = 0usize;
    let lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let is_last = i + 1 == lines.len();
        let complete = line.ends_with(b"\n");
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            if complete {
                valid += line.len();
            }
            continue;
        }
        match serde_json::from_slice::<Entry>(text) {
            Ok(entry) if complete => {
                entries.push(entry);
                valid += line.len();
            }
            Err(e) if !is_last => {
                return Err(Error::CorruptLog {
                    path: path.to_path_buf(),
                    line: i + 1,
                    reason: e.to_string(),
                });
            }
            // Only the last line can get here (`split_inclusive` leaves only it without a
            // newline). A final line that is incomplete or unreadable is what a crash
            // mid-append leaves behind: the entry was never acknowledged, so dropping it
            // loses nothing.
            _ => {
                tracing::warn!(
                    path = %path.display(),
                    line = i + 1,
                    bytes = line.len(),
                    "Skipping torn last line of the registry log."
                );
            }
        }
    }
    Ok((entries, valid as u64))
}

/// The open, locked log of a writable registry.
#[derive(Debug)]
pub(crate) struct LogWriter {
    path: PathBuf,
    file: File,
    // Held for the registry's lifetime: the OS releases the lock when the file closes.
    _lock: File,
}

impl LogWriter {
    /// Locks `dir` and opens its log for appending, cutting a torn tail at `valid_len`.
    pub(crate) fn open(dir: &Path, valid_len: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        let len = file
            .metadata()
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if len > valid_len {
            file.set_len(valid_len).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            file.sync_all().map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self {
            path,
            file,
            _lock: lock,
        })
    }

    /// Appends `entry` and waits until it is on disk.
    pub(crate) fn append(&mut self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.file.sync_data().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(version: u32) -> String {
        let e = Entry::Register {
            subject: "s".into(),
            version,
            id: version,
            schema: "\"string\"".into(),
        };
        serde_json::to_string(&e).unwrap()
    }

    #[test]
    fn parse_cases() {
        let one = reg(1);
        let two = reg(2);
        // (log text, entries expected, valid prefix length, error fragment)
        let cases: Vec<(String, usize, usize, Option<&str>)> = vec![
            (String::new(), 0, 0, None),
            (
                format!("{one}\n{two}\n"),
                2,
                one.len() + two.len() + 2,
                None,
            ),
            (format!("{one}\n{two}"), 1, one.len() + 1, None),
            (format!("{one}\n{{\"op\":\"regi"), 1, one.len() + 1, None),
            (format!("{one}\ngarbage\n"), 1, one.len() + 1, None),
            (
                format!("{one}\n\n{two}\n"),
                2,
                one.len() + two.len() + 3,
                None,
            ),
            (format!("garbage\n{two}\n"), 0, 0, Some("line 1 is corrupt")),
        ];
        for (text, n, valid, err) in cases {
            match (parse(Path::new("r.jsonl"), text.as_bytes()), err) {
                (Ok((entries, len)), None) => {
                    assert_eq!(entries.len(), n, "{text:?}");
                    assert_eq!(len, valid as u64, "{text:?}");
                }
                (Err(e), Some(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
                (got, _) => panic!("{text:?}: {got:?}"),
            }
        }
    }
}
