//! The free-space check of ingest: every source stops taking new events while the file
//! system of the data dir has less than a reserve free, so a write never runs out of
//! space half-way, and the stages behind ingest (the pipeline, the sink, retention) keep
//! room to drain and free space. Ingest resumes by itself: every request and every append
//! checks again.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

/// What the guard saw on the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged process may still write (`statvfs` `f_bavail`, as `df`).
    pub free: u64,
    /// Size of the file system.
    pub total: u64,
}

/// Refusal of new events: the file system holding `path` has `free` bytes, less than the
/// `reserve` the guard keeps free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLow {
    pub path: PathBuf,
    pub free: u64,
    pub reserve: u64,
}

impl fmt::Display for DiskLow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the disk of the data dir {} is nearly full: {} free, less than the {} kept free \
             for the pipeline and the store (--min-free-disk); nothing was written. Free space \
             on that disk or lower the retention (docs/runbooks/disk-full-embedded-log.md); \
             ingest resumes by itself once the space is back",
            self.path.display(),
            human_bytes(self.free),
            human_bytes(self.reserve),
        )
    }
}

/// Checks the free space of one file system before new events are written to it. Cheap
/// to clone; a check is one `statvfs`.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    reserve: u64,
    /// Whether the last check refused, so the log says it once per change.
    refusing: AtomicBool,
}

impl DiskGuard {
    /// Keeps `reserve` bytes free on the file system holding `path` (the data dir).
    pub fn new(path: impl Into<PathBuf>, reserve: u64) -> Self {
        DiskGuard {
            inner: Arc::new(Inner {
                path: path.into(),
                reserve,
                refusing: AtomicBool::new(false),
            }),
        }
    }

    /// The folder whose file system is watched.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Bytes kept free.
    pub fn reserve(&self) -> u64 {
        self.inner.reserve
    }

    /// Free and total bytes now.
    pub fn space(&self) -> std::io::Result<DiskSpace> {
        let st = rustix::fs::statvfs(self.inner.path.as_path()).map_err(std::io::Error::from)?;
        Ok(DiskSpace {
            free: st.f_bavail.saturating_mul(st.f_frsize),
            total: st.f_blocks.saturating_mul(st.f_frsize),
        })
    }

    /// `Err` while less than the reserve is free. A file system that cannot be asked
    /// does not stop ingest: the write itself then says what is wrong.
    pub fn check(&self) -> Result<(), DiskLow> {
        let free = match self.space() {
            Ok(space) => space.free,
            Err(e) => {
                warn!(path = %self.inner.path.display(), error = %e, "Cannot read the free space of the data dir; not checking it.");
                return Ok(());
            }
        };
        let low = free < self.inner.reserve;
        let was = self.inner.refusing.swap(low, Ordering::Relaxed);
        if low && !was {
            warn!(
                path = %self.inner.path.display(), free_bytes = free, reserve_bytes = self.inner.reserve,
                "The data dir's disk is nearly full; refusing new events until space is freed."
            );
        } else if was && !low {
            info!(path = %self.inner.path.display(), free_bytes = free, "Disk space is back; taking new events again.");
        }
        if low {
            Err(DiskLow {
                path: self.inner.path.clone(),
                free,
                reserve: self.inner.reserve,
            })
        } else {
            Ok(())
        }
    }

    /// Whether the last check refused.
    pub fn refusing(&self) -> bool {
        self.inner.refusing.load(Ordering::Relaxed)
    }
}

/// `1.5 GiB`, `300.0 MiB`, `512 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_says_why_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let free = DiskGuard::new(dir.path(), 0).space().unwrap().free;
        assert!(free > 0);
        assert_eq!(DiskGuard::new(dir.path(), 0).check(), Ok(()));
        let guard = DiskGuard::new(dir.path(), u64::MAX);
        let low = guard.check().unwrap_err();
        assert!(guard.refusing());
        assert_eq!(low.reserve, u64::MAX);
        let text = low.to_string();
        for needle in [
            "nearly full",
            &dir.path().display().to_string(),
            "--min-free-disk",
            "disk-full-embedded-log.md",
            "resumes by itself",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1536 << 20), "1.5 GiB");
    }
}
