//! The key store: a JSON file of key records (id, name, scope, SHA-256 of the secret,
//! created, revoked), never the secrets themselves.
//!
//! Writers (`helios keys`, the first start of `helios up`) hold an exclusive lock on a
//! sidecar `<file>.lock` for the whole read-modify-write, and replace the file atomically
//! (a 0600 temp file, fsynced, renamed over it), so two writers never lose each other's
//! change and a reader never sees half a file. A serving process notices changes made by
//! another process by a `stat` on every request: when the file's inode, length or mtime
//! changed it re-reads it, so a revocation takes effect on the next request.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::{Error, Result, Scope};

/// Every key starts with this, so secret scanners and people can tell what it is.
pub const KEY_PREFIX: &str = "hel_";
/// Random bytes of an id (hex in the key): enough to make clashes rare; clashes are
/// retried anyway.
const ID_BYTES: usize = 6;
/// Random bytes of a secret: 256 bits, far beyond guessing, which is also why a plain
/// SHA-256 (no salt, no slow hash) is the right way to store it.
const SECRET_BYTES: usize = 32;
/// The file format's version; a newer file is refused rather than misread.
const FILE_VERSION: u32 = 1;
/// Longest name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;

/// One key as the file stores it and `helios keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public part of the key, `hel_<id>_…`; used to revoke it.
    pub id: String,
    /// What the key is for, as given to `helios keys create --name`.
    pub name: String,
    pub scope: Scope,
    /// Lowercase hex SHA-256 of the key's secret part.
    pub sha256: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// RFC 3339, UTC; a revoked key is refused.
    #[serde(default)]
    pub revoked: Option<String>,
}

/// The file's whole content.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<KeyRecord>,
}

/// A newly created key: its record and the full key, which exists nowhere else.
#[derive(Debug)]
pub struct NewKey {
    pub record: KeyRecord,
    pub key: SecretKey,
}

/// A full key (`hel_<id>_<secret>`). `Debug` does not show it, so it cannot end up in a
/// log by accident.
pub struct SecretKey(String);

impl SecretKey {
    /// The key itself, to hand to the user exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// The identity of the key a request was authenticated with; the auth layer puts it in
/// the request's extensions for handlers that want to know who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scope: Scope,
}

/// What a presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid(ApiKey),
    /// Not of the form `hel_<id>_<secret>`.
    Malformed,
    /// No key with this id, or the secret does not match (the same answer for both, so
    /// ids cannot be probed).
    Unknown,
    /// The right secret of a revoked key.
    Revoked {
        id: String,
        at: String,
    },
}

/// What revoking came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// Revoked now.
    Revoked(KeyRecord),
    /// Revoked earlier; nothing changed.
    AlreadyRevoked(KeyRecord),
}

/// A handle on one key file. Cheap to clone; clones share the cached keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    cache: RwLock<Cache>,
}

/// The keys as last read, and the file identity they were read from.
#[derive(Debug, Default)]
struct Cache {
    /// `None`: there was no file.
    stamp: Option<Stamp>,
    keys: HashMap<String, Known>,
}

#[derive(Debug, Clone)]
struct Known {
    record: KeyRecord,
    hash: [u8; 32],
}

/// What tells one version of the file from another without reading it. Writers rename a
/// new file into place, so the inode alone changes on every write; length and mtime also
/// catch an edit in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(meta);
        #[cfg(not(unix))]
        let inode = 0;
        Stamp {
            inode,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

impl KeyStore {
    /// Opens the key file at `path` (which need not exist yet: then there are no keys).
    /// Fails if the file exists but cannot be read or is not a key file.
    pub fn open(path: impl Into<PathBuf>) -> Result<KeyStore> {
        let path = path.into();
        let (stamp, file) = read_file(&path)?;
        let store = KeyStore {
            inner: Arc::new(Inner {
                path,
                cache: RwLock::new(Cache::default()),
            }),
        };
        store.replace_cache(stamp, &file)?;
        Ok(store)
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Checks a presented key (the text after `Bearer `) against the current file.
    pub fn verify(&self, presented: &str) -> Verdict {
        let Some((id, secret)) = parse_key(presented) else {
            return Verdict::Malformed;
        };
        self.refresh();
        let cache = self.inner.cache.read().unwrap_or_else(|p| p.into_inner());
        let Some(known) = cache.keys.get(id) else {
            return Verdict::Unknown;
        };
        if !constant_time_eq(&Sha256::digest(secret.as_bytes()).into(), &known.hash) {
            return Verdict::Unknown;
        }
        match &known.record.revoked {
            Some(at) => Verdict::Revoked {
                id: known.record.id.clone(),
                at: at.clone(),
            },
            None => Verdict::Valid(ApiKey {
                id: known.record.id.clone(),
                name: known.record.name.clone(),
                scope: known.record.scope,
            }),
        }
    }

    /// Creates a key, stores its hash, and returns the full key (shown once, stored
    /// nowhere). Creates the file and its folder if needed.
    pub fn create(&self, scope: Scope, name: &str) -> Result<NewKey> {
        check_name(name)?;
        self.modify(|file| {
            let mut rng = rand::rng();
            let id = loop {
                let id = random_hex(&mut rng, ID_BYTES);
                if !file.keys.iter().any(|k| k.id == id) {
                    break id;
                }
            };
            let secret = random_hex(&mut rng, SECRET_BYTES);
            let record = KeyRecord {
                id: id.clone(),
                name: name.to_owned(),
                scope,
                sha256: hex(&Sha256::digest(secret.as_bytes())),
                created: now_rfc3339(),
                revoked: None,
            };
            file.keys.push(record.clone());
            Ok(NewKey {
                record,
                key: SecretKey(format!("{KEY_PREFIX}{id}_{secret}")),
            })
        })
        .inspect(|new| {
            info!(key_id = %new.record.id, key_name = %new.record.name, scope = %new.record.scope,
                  file = %self.inner.path.display(), "Created an API key.");
        })
    }

    /// Revokes the key with this id (a full key is accepted too and reduced to its id).
    /// Revoking a revoked key changes nothing and says so.
    pub fn revoke(&self, id_or_key: &str) -> Result<Revocation> {
        let id = parse_key(id_or_key).map_or(id_or_key.trim(), |(id, _)| id);
        let path = self.inner.path.clone();
        self.modify(|file| {
            let Some(record) = file.keys.iter_mut().find(|k| k.id == id) else {
                return Err(Error::NoSuchKey {
                    id: id.to_owned(),
                    path,
                });
            };
            if record.revoked.is_some() {
                return Ok(Revocation::AlreadyRevoked(record.clone()));
            }
            record.revoked = Some(now_rfc3339());
            info!(key_id = %record.id, key_name = %record.name, "Revoked an API key.");
            Ok(Revocation::Revoked(record.clone()))
        })
    }

    /// Every key in the file, oldest first, read afresh.
    pub fn list(&self) -> Result<Vec<KeyRecord>> {
        let (_, file) = read_file(&self.inner.path)?;
        Ok(file.keys)
    }

    /// Whether the file holds a key that is not revoked.
    pub fn has_active_key(&self) -> Result<bool> {
        Ok(self.list()?.iter().any(|k| k.revoked.is_none()))
    }

    /// Re-reads the file if it changed since it was last read. A file that became
    /// unreadable or invalid keeps the keys last read (logged once per version of the
    /// file); a deleted file means no keys.
    fn refresh(&self) {
        let stamp = match std::fs::metadata(&self.inner.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(file = %self.inner.path.display(), error = %e,
                      "Cannot stat the API key file; using the keys last read.");
                return;
            }
        };
        let current = self
            .inner
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .stamp;
        if current == stamp {
            return;
        }
        let outcome = read_file(&self.inner.path).and_then(|(stamp, file)| {
            self.replace_cache(stamp, &file)?;
            Ok(file.keys.len())
        });
        match outcome {
            Ok(n) => info!(file = %self.inner.path.display(), keys = n,
                           "The API key file changed; reloaded it."),
            Err(e) => {
                warn!(file = %self.inner.path.display(), error = %e,
                      "The API key file changed but cannot be used; keeping the keys last read.");
                // Remember this version so a broken file is not re-read on every request.
                self.inner
                    .cache
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .stamp = stamp;
            }
        }
    }

    fn replace_cache(&self, stamp: Option<Stamp>, file: &KeyFile) -> Result<()> {
        let mut keys = HashMap::with_capacity(file.keys.len());
        for record in &file.keys {
            let hash = unhex32(&record.sha256).ok_or_else(|| Error::Corrupt {
                path: self.inner.path.clone(),
                reason: format!("key `{}` has a sha256 that is not 64 hex digits", record.id),
            })?;
            keys.insert(
                record.id.clone(),
                Known {
                    record: record.clone(),
                    hash,
                },
            );
        }
        *self.inner.cache.write().unwrap_or_else(|p| p.into_inner()) = Cache { stamp, keys };
        Ok(())
    }

    /// Read-modify-write under the writers' lock; the cache then holds what was written.
    fn modify<T>(&self, change: impl FnOnce(&mut KeyFile) -> Result<T>) -> Result<T> {
        let path = &self.inner.path;
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create the folder of", path, e))?;
        let lock_path = sidecar(path, ".lock");
        let lock = open_private(&lock_path, false)
            .map_err(|e| Error::io("open the lock file of", path, e))?;
        lock.lock()
            .map_err(|e| Error::io("lock the lock file of", path, e))?;
        let (_, mut file) = read_file(path)?;
        let before = serde_json::to_vec(&file).unwrap_or_default();
        let out = change(&mut file)?;
        if serde_json::to_vec(&file).unwrap_or_default() != before {
            file.version = FILE_VERSION;
            let mut text =
                serde_json::to_vec_pretty(&file).expect("key records always serialize to JSON");
            text.push(b'\n');
            write_atomically(path, &text).map_err(|e| Error::io("write", path, e))?;
        }
        let (stamp, written) = read_file(path)?;
        self.replace_cache(stamp, &written)?;
        // The lock is released when `lock` drops, after the file is in place.
        drop(lock);
        Ok(out)
    }
}

impl Error {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Splits `hel_<id>_<secret>` into id and secret, checking their shape (lowercase hex of
/// the right lengths), so junk never reaches the lookup.
fn parse_key(key: &str) -> Option<(&str, &str)> {
    let (id, secret) = key.trim().strip_prefix(KEY_PREFIX)?.split_once('_')?;
    let is_hex = |s: &str, bytes: usize| {
        s.len() == bytes * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (is_hex(id, ID_BYTES) && is_hex(secret, SECRET_BYTES)).then_some((id, secret))
}

/// Reads and parses the file; a missing file is an empty one.
fn read_file(path: &Path) -> Result<(Option<Stamp>, KeyFile)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((
                None,
                KeyFile {
                    version: FILE_VERSION,
                    keys: Vec::new(),
                },
            ));
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    // The stamp of the open file, so it describes exactly the bytes read below even if
    // the file is replaced meanwhile.
    let stamp = f
        .metadata()
        .map(|m| Stamp::of(&m))
        .map_err(|e| Error::io("stat", path, e))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| Error::io("read", path, e))?;
    let file: KeyFile = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if file.version != FILE_VERSION {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "it has format version {}, this Helios reads version {FILE_VERSION} (was it written by a newer Helios?)",
                file.version
            ),
        });
    }
    Ok((Some(stamp), file))
}

/// Writes `bytes` to a new 0600 file next to `path`, fsyncs it, renames it over `path` and
/// fsyncs the folder, so `path` is always either the old or the new whole file.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = sidecar(path, &format!(".{}.tmp", random_hex(&mut rand::rng(), 8)));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    #[cfg(unix)]
    File::open(parent_dir(path))?.sync_all()?;
    Ok(())
}

/// Opens a file readable and writable by its owner only (0600 on Unix).
fn open_private(path: &Path, create_new: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<path><suffix>` in the same folder (so a rename stays on one filesystem).
fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn check_name(name: &str) -> Result<()> {
    let reason = if name.chars().count() > MAX_NAME_CHARS {
        Some("longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters (newlines, tabs, escapes)")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn random_hex(rng: &mut impl RngCore, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill_bytes(&mut buf);
    hex(&buf)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Compares two hashes in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
