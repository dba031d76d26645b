//! Checkpoint files in a source's state dir. A checkpoint is written to a temp file,
//! fsynced, renamed over the old one and the folder fsynced, so after a crash the file
//! holds either the old or the new checkpoint, never a torn mix.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ConnectorError, Result};

/// Reads `dir/file` as JSON; `None` when it does not exist yet.
pub fn load<T: DeserializeOwned>(source: &str, dir: &Path, file: &str) -> Result<Option<T>> {
    let path = dir.join(file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConnectorError::external(
                source,
                format!("cannot read the checkpoint {}: {e}", path.display()),
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        ConnectorError::Checkpoint {
            source_name: source.to_string(),
            message: format!(
                "the checkpoint {} is not valid: {e}; move it away to start this source from scratch",
                path.display()
            ),
        }
    })
}

/// Writes `value` as JSON to `dir/file` atomically and durably.
pub fn save<T: Serialize>(source: &str, dir: &Path, file: &str, value: &T) -> Result<()> {
    let path = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let write = || -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        ConnectorError::external(
            source,
            format!("cannot write the checkpoint {}: {e}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn saves_replaces_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let missing: Option<BTreeMap<String, u64>> = load("s", dir.path(), "c.json").unwrap();
        assert_eq!(missing, None);
        let mut v = BTreeMap::from([("a".to_string(), 1u64)]);
        save("s", dir.path(), "c.json", &v).unwrap();
        v.insert("b".to_string(), 2);
        save("s", dir.path(), "c.json", &v).unwrap();
        let back: Option<BTreeMap<String, u64>> = load("s", dir.path(), "c.json").unwrap();
        assert_eq!(back, Some(v));
        assert!(!dir.path().join("c.json.tmp").exists());
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.json"), b"{not json").unwrap();
        let err = load::<BTreeMap<String, u64>>("s", dir.path(), "c.json").unwrap_err();
        assert!(err.to_string().contains("c.json"), "{err}");
    }
}
