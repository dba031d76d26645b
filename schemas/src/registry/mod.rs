//! The embedded schema registry, with Confluent semantics: subjects with versions
//! 1..n, global schema ids 1..n shared across subjects, compatibility levels global and
//! per subject. AVRO only.
//!
//! Two schemas are "identical" when their parsed forms serialize to the same JSON
//! (whitespace, key order and attribute spelling do not matter; defaults, docs and
//! logical types do). This is stricter than Avro's Parsing Canonical Form, which drops
//! defaults and would make "add a default" a no-op registration.
//!
//! Durability lives in [`log`]; the remote counterpart in [`remote`].

mod compat;
mod log;
pub mod remote;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};

use apache_avro::Schema;
use async_trait::async_trait;

pub use compat::CompatibilityLevel;
pub use log::{LOCK_FILE, LOG_FILE};
pub use remote::RemoteRegistry;

use self::log::{Entry, LogWriter};
use crate::codec::SchemaSource;
use crate::{Error, Result};

/// The conventional subject of the events topic's values (TopicNameStrategy).
pub const EVENTS_VALUE_SUBJECT: &str = "helios.events-value";

/// A schema stored under a global id.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// Global id.
    pub id: u32,
    /// The schema text as first registered.
    pub text: String,
    /// The parsed schema.
    pub parsed: Arc<Schema>,
    /// Identity key: the parsed schema serialized as JSON.
    key: String,
}

/// One version of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    /// Subject name.
    pub subject: String,
    /// Version, from 1.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// Schema text.
    pub schema: String,
}

/// Which version of a subject: a number or the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSelector {
    /// The newest version.
    Latest,
    /// A version number (from 1).
    Number(u32),
}

impl FromStr for VersionSelector {
    type Err = Error;

    /// Accepts `latest`, `-1` (Confluent's alias for latest) and positive integers.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "latest" | "-1" => Ok(Self::Latest),
            _ => match s.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::Number(n)),
                _ => Err(Error::InvalidVersion {
                    input: s.to_string(),
                }),
            },
        }
    }
}

/// Outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// Global id of the schema.
    pub id: u32,
    /// Version of the subject the schema is (or already was) at.
    pub version: u32,
}

#[derive(Debug, Default)]
struct State {
    /// Index = id - 1.
    schemas: Vec<Arc<StoredSchema>>,
    by_key: HashMap<String, u32>,
    /// Subject -> ids, index = version - 1.
    subjects: BTreeMap<String, Vec<u32>>,
    global_level: CompatibilityLevel,
    subject_levels: HashMap<String, CompatibilityLevel>,
}

impl State {
    fn schema(&self, id: u32) -> Option<&Arc<StoredSchema>> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.schemas.get(index)
    }

    fn level_of(&self, subject: &str) -> CompatibilityLevel {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or(self.global_level)
    }

    fn versions(&self, subject: &str) -> Result<&Vec<u32>> {
        self.subjects
            .get(subject)
            .ok_or_else(|| Error::SubjectNotFound {
                subject: subject.to_string(),
            })
    }

    fn select(&self, subject: &str, selector: VersionSelector) -> Result<SubjectVersion> {
        let ids = self.versions(subject)?;
        let (version, id) = match selector {
            VersionSelector::Latest => (ids.len(), ids.last()),
            VersionSelector::Number(n) => (n as usize, ids.get((n as usize).wrapping_sub(1))),
        };
        let stored = id
            .and_then(|id| self.schema(*id))
            .ok_or_else(|| Error::VersionNotFound {
                subject: subject.to_string(),
                version: u32::try_from(version).unwrap_or(u32::MAX),
            })?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version: u32::try_from(version).unwrap_or(u32::MAX),
            id: stored.id,
            schema: stored.text.clone(),
        })
    }

    fn history(&self, subject: &str) -> Vec<&Schema> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| self.schema(*id))
            .map(|s| s.parsed.as_ref())
            .collect()
    }

    /// Applies a log entry. Ids and versions must continue the sequences exactly.
    fn apply(&mut self, entry: Entry) -> Result<(), String> {
        match entry {
            Entry::Register {
                subject,
                version,
                id,
                schema,
            } => {
                let (parsed, key) = parse(&schema).map_err(|e| e.to_string())?;
                let next_id = self.schemas.len() + 1;
                match self.schema(id) {
                    Some(existing) if existing.key == key => {}
                    Some(_) => {
                        return Err(format!(
                            "id {id} is registered twice with different schemas"
                        ));
                    }
                    None if id as usize == next_id => {
                        self.by_key.insert(key.clone(), id);
                        self.schemas.push(Arc::new(StoredSchema {
                            id,
                            text: schema,
                            parsed,
                            key,
                        }));
                    }
                    None => return Err(format!("id {id} skips ahead of the next id {next_id}")),
                }
                let ids = self.subjects.entry(subject.clone()).or_default();
                if version as usize != ids.len() + 1 {
                    return Err(format!(
                        "version {version} of {subject:?} does not follow version {}",
                        ids.len()
                    ));
                }
                ids.push(id);
            }
            Entry::Config {
                subject: Some(subject),
                level,
            } => {
                self.subject_levels.insert(subject, level);
            }
            Entry::Config {
                subject: None,
                level,
            } => self.global_level = level,
        }
        Ok(())
    }
}

/// Parses a schema text and computes its identity key.
fn parse(text: &str) -> Result<(Arc<Schema>, String)> {
    let schema = Schema::parse_str(text).map_err(|e| Error::InvalidSchema {
        reason: e.to_string(),
    })?;
    let key = serde_json::to_string(&schema).map_err(|e| Error::InvalidSchema {
        reason: e.to_string(),
    })?;
    Ok((Arc::new(schema), key))
}

/// Rejects schema types other than AVRO (absent means AVRO, as in Confluent).
pub fn check_schema_type(schema_type: Option<&str>) -> Result<()> {
    match schema_type {
        None => Ok(()),
        Some(t) if t.eq_ignore_ascii_case("AVRO") => Ok(()),
        Some(t) => Err(Error::UnsupportedSchemaType {
            schema_type: t.to_string(),
        }),
    }
}

#[derive(Debug)]
enum Persistence {
    /// Kept in memory only (tests, throwaway setups).
    Memory,
    /// Loaded from a data dir that another process may own; writes are refused.
    ReadOnly,
    /// Owned: every change is appended to the log before it becomes visible.
    Log(LogWriter),
}

/// The embedded schema registry. Share it as `Arc<Registry>`; every method takes `&self`.
#[derive(Debug)]
pub struct Registry {
    dir: Option<PathBuf>,
    state: RwLock<State>,
    // Serializes writers: validation, log append and apply happen under this lock, so
    // readers (who only take `state`) never wait for an fsync.
    writer: Mutex<Persistence>,
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir` and takes its write lock.
    pub fn open(dir: &Path) -> Result<Self> {
        let (entries, valid_len) = log::read(dir)?;
        let state = replay(dir, entries)?;
        let writer = LogWriter::open(dir, valid_len)?;
        Ok(Self::with(Some(dir), state, Persistence::Log(writer)))
    }

    /// Loads the registry in `dir` without creating or locking anything, for tools that
    /// read while `helios up` owns it. A missing log reads as an empty registry. The view
    /// is a snapshot taken now.
    pub fn open_read_only(dir: &Path) -> Result<Self> {
        let (entries, _) = log::read(dir)?;
        let state = replay(dir, entries)?;
        Ok(Self::with(Some(dir), state, Persistence::ReadOnly))
    }

    /// A registry kept in memory only.
    pub fn in_memory() -> Self {
        Self::with(None, State::default(), Persistence::Memory)
    }

    fn with(dir: Option<&Path>, state: State, p: Persistence) -> Self {
        Self {
            dir: dir.map(Path::to_path_buf),
            state: RwLock::new(state),
            writer: Mutex::new(p),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated (apply validates before it
        // mutates, except for pushes that are complete on their own), so keep serving.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` under the writer lock; persists and applies the entry it returns.
    fn write<T>(&self, f: impl FnOnce(&State) -> Result<(Option<Entry>, T)>) -> Result<T> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*writer, Persistence::ReadOnly) {
            return Err(Error::ReadOnly {
                dir: self.dir.clone().unwrap_or_default(),
            });
        }
        let (entry, out) = f(&self.read())?;
        if let Some(entry) = entry {
            if let Persistence::Log(log) = &mut *writer {
                log.append(&entry)?;
            }
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.apply(entry).map_err(|reason| Error::CorruptLog {
                path: self.dir.clone().unwrap_or_default().join(LOG_FILE),
                line: 0,
                reason,
            })?;
        }
        Ok(out)
    }

    /// Registers `schema` under `subject`. An identical schema already at a version of
    /// the subject returns that version without a check; otherwise the schema must pass
    /// the subject's compatibility level, and reuses the global id of an identical schema
    /// under another subject.
    pub fn register(&self, subject: &str, schema: &str) -> Result<Registered> {
        let (parsed, key) = parse(schema)?;
        self.write(|state| {
            let ids = state
                .subjects
                .get(subject)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Some(pos) = ids
                .iter()
                .position(|id| state.schema(*id).is_some_and(|s| s.key == key))
            {
                let id = ids[pos];
                return Ok((
                    None,
                    Registered {
                        id,
                        version: pos as u32 + 1,
                    },
                ));
            }
            let level = state.level_of(subject);
            level
                .check(&parsed, &state.history(subject))
                .map_err(|reason| Error::Incompatible {
                    subject: subject.to_string(),
                    level,
                    reason,
                })?;
            let id = state
                .by_key
                .get(&key)
                .copied()
                .unwrap_or(state.schemas.len() as u32 + 1);
            let version = ids.len() as u32 + 1;
            let entry = Entry::Register {
                subject: subject.to_string(),
                version,
                id,
                schema: schema.to_string(),
            };
            Ok((Some(entry), Registered { id, version }))
        })
    }

    /// The version of `subject` holding a schema identical to `schema`.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion> {
        let (_, key) = parse(schema)?;
        let state = self.read();
        let ids = state.versions(subject)?;
        let pos = ids
            .iter()
            .rposition(|id| state.schema(*id).is_some_and(|s| s.key == key))
            .ok_or_else(|| Error::SchemaNotRegistered {
                subject: subject.to_string(),
            })?;
        state.select(subject, VersionSelector::Number(pos as u32 + 1))
    }

    /// The schema with global id `id`.
    pub fn schema(&self, id: u32) -> Result<Arc<StoredSchema>> {
        self.read()
            .schema(id)
            .cloned()
            .ok_or(Error::SchemaIdNotFound { id })
    }

    /// All subjects, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.read().subjects.keys().cloned().collect()
    }

    /// The version numbers of `subject`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        let state = self.read();
        Ok((1..=state.versions(subject)?.len() as u32).collect())
    }

    /// One version of `subject`.
    pub fn version(&self, subject: &str, selector: VersionSelector) -> Result<SubjectVersion> {
        self.read().select(subject, selector)
    }

    /// Whether `schema` could be registered under `subject`: against the latest version
    /// this applies the subject's level in full (transitive levels check every version);
    /// against a given version it checks that version only, in the level's directions.
    pub fn test_compatibility(
        &self,
        subject: &str,
        selector: VersionSelector,
        schema: &str,
    ) -> Result<bool> {
        let (parsed, _) = parse(schema)?;
        let state = self.read();
        let level = state.level_of(subject);
        let target = state.select(subject, selector)?;
        let verdict = match selector {
            VersionSelector::Latest => level.check(&parsed, &state.history(subject)),
            VersionSelector::Number(_) => match state.schema(target.id) {
                Some(old) => level.check_pair(&parsed, &old.parsed),
                None => Ok(()),
            },
        };
        Ok(verdict.is_ok())
    }

    /// The global compatibility level.
    pub fn global_level(&self) -> CompatibilityLevel {
        self.read().global_level
    }

    /// The level set on `subject` itself, if any.
    pub fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.read().subject_levels.get(subject).copied()
    }

    /// The level in force for `subject` (its own, else the global one).
    pub fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.read().level_of(subject)
    }

    /// Sets the global level.
    pub fn set_global_level(&self, level: CompatibilityLevel) -> Result<()> {
        self.write(|_| {
            Ok((
                Some(Entry::Config {
                    subject: None,
                    level,
                }),
                (),
            ))
        })
    }

    /// Sets the level of `subject` (the subject need not exist yet).
    pub fn set_subject_level(&self, subject: &str, level: CompatibilityLevel) -> Result<()> {
        self.write(|_| {
            let entry = Entry::Config {
                subject: Some(subject.to_string()),
                level,
            };
            Ok((Some(entry), ()))
        })
    }
}

fn replay(dir: &Path, entries: Vec<Entry>) -> Result<State> {
    let mut state = State::default();
    for (i, entry) in entries.into_iter().enumerate() {
        state.apply(entry).map_err(|reason| Error::CorruptLog {
            path: dir.join(LOG_FILE),
            line: i + 1,
            reason,
        })?;
    }
    Ok(state)
}

#[async_trait]
impl SchemaSource for Registry {
    async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>> {
        self.schema(id).map(|s| s.parsed.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::records::{AvroRecord, Event};

    const V1: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#;
    const V2_OPTIONAL: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int","default":0}]}"#;
    const V2_REQUIRED: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"},{"name":"b","type":"int"}]}"#;
    /// V1 with different whitespace and key order.
    const V1_RESPELLED: &str =
        r#"{ "name": "R", "fields": [ {"type": "string", "name": "a"} ], "type": "record" }"#;

    #[test]
    fn ids_and_versions_follow_confluent_rules() {
        let r = Registry::in_memory();
        assert_eq!(
            r.register("s1", V1).unwrap(),
            Registered { id: 1, version: 1 }
        );
        // Identical schema (respelled) under the same subject: same version, same id.
        assert_eq!(
            r.register("s1", V1_RESPELLED).unwrap(),
            Registered { id: 1, version: 1 }
        );
        // Same schema under another subject: same id, version 1 there.
        assert_eq!(
            r.register("s2", V1).unwrap(),
            Registered { id: 1, version: 1 }
        );
        assert_eq!(
            r.register("s1", V2_OPTIONAL).unwrap(),
            Registered { id: 2, version: 2 }
        );
        // Re-registering an older version returns it, without a new version.
        assert_eq!(
            r.register("s1", V1).unwrap(),
            Registered { id: 1, version: 1 }
        );
        assert_eq!(r.subjects(), vec!["s1".to_string(), "s2".to_string()]);
        assert_eq!(r.versions("s1").unwrap(), vec![1, 2]);
        let latest = r.version("s1", VersionSelector::Latest).unwrap();
        assert_eq!((latest.version, latest.id), (2, 2));
        assert_eq!(r.lookup("s1", V1_RESPELLED).unwrap().version, 1);
        assert!(matches!(
            r.lookup("s2", V2_OPTIONAL),
            Err(Error::SchemaNotRegistered { .. })
        ));
        assert!(matches!(
            r.lookup("nope", V1),
            Err(Error::SubjectNotFound { .. })
        ));
        assert!(matches!(
            r.version("s1", VersionSelector::Number(3)),
            Err(Error::VersionNotFound { version: 3, .. })
        ));
        assert!(matches!(
            r.schema(3),
            Err(Error::SchemaIdNotFound { id: 3 })
        ));
        assert!(matches!(
            r.schema(0),
            Err(Error::SchemaIdNotFound { id: 0 })
        ));
    }

    #[test]
    fn compatibility_is_enforced_per_level() {
        let r = Registry::in_memory();
        r.register("s", V1).unwrap();
        let err = r.register("s", V2_REQUIRED).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Incompatible {
                    level: CompatibilityLevel::Backward,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            !r.test_compatibility("s", VersionSelector::Latest, V2_REQUIRED)
                .unwrap()
        );
        assert!(
            r.test_compatibility("s", VersionSelector::Number(1), V2_OPTIONAL)
                .unwrap()
        );
        r.set_subject_level("s", CompatibilityLevel::None).unwrap();
        assert_eq!(r.subject_level("s"), Some(CompatibilityLevel::None));
        assert_eq!(r.subject_level("other"), None);
        assert_eq!(r.register("s", V2_REQUIRED).unwrap().version, 2);
        r.set_global_level(CompatibilityLevel::Full).unwrap();
        assert_eq!(r.effective_level("other"), CompatibilityLevel::Full);
        assert_eq!(r.effective_level("s"), CompatibilityLevel::None);
        assert!(matches!(
            r.register("s", "{not json"),
            Err(Error::InvalidSchema { .. })
        ));
    }

    #[test]
    fn version_selectors_parse() {
        let cases = [
            ("latest", Some(VersionSelector::Latest)),
            ("-1", Some(VersionSelector::Latest)),
            ("1", Some(VersionSelector::Number(1))),
            ("42", Some(VersionSelector::Number(42))),
            ("0", None),
            ("-2", None),
            ("one", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<VersionSelector>().ok(), want, "{input:?}");
        }
        assert!(
            check_schema_type(Some("PROTOBUF"))
                .unwrap_err()
                .to_string()
                .contains("PROTOBUF")
        );
        assert!(check_schema_type(Some("avro")).is_ok() && check_schema_type(None).is_ok());
    }

    #[test]
    fn state_survives_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let r = Registry::open(dir.path()).unwrap();
            r.register(EVENTS_VALUE_SUBJECT, Event::SCHEMA_JSON)
                .unwrap();
            r.register("s", V1).unwrap();
            r.set_subject_level("s", CompatibilityLevel::Forward)
                .unwrap();
            // The write lock is held while open.
            assert!(matches!(
                Registry::open(dir.path()),
                Err(Error::Locked { .. })
            ));
            // Read-only opens work meanwhile and see a snapshot.
            let ro = Registry::open_read_only(dir.path()).unwrap();
            assert_eq!(ro.subjects().len(), 2);
            assert!(matches!(ro.register("t", V1), Err(Error::ReadOnly { .. })));
        }
        // Simulate a crash mid-append.
        let log = dir.path().join(LOG_FILE);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(b"{\"op\":\"regis")
            .unwrap();
        let ro = Registry::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.subjects().len(), 2);
        let r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.subject_level("s"), Some(CompatibilityLevel::Forward));
        assert_eq!(
            r.version(EVENTS_VALUE_SUBJECT, VersionSelector::Latest)
                .unwrap()
                .id,
            1
        );
        assert_eq!(
            r.register("s", V2_OPTIONAL).unwrap(),
            Registered { id: 3, version: 2 }
        );
        drop(r);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.ends_with("\n") && !text.contains("regis\""), "{text}");
        let r = Registry::open(dir.path()).unwrap();
        assert_eq!(r.versions("s").unwrap(), vec![1, 2]);
    }

    #[test]
    fn read_only_open_of_a_missing_dir_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("data");
        let r = Registry::open_read_only(&missing).unwrap();
        assert!(r.subjects().is_empty());
        assert!(!missing.exists());
    }

    #[test]
    fn schema_source_serves_parsed_schemas() {
        let r = Registry::in_memory();
        let id = r
            .register(EVENTS_VALUE_SUBJECT, Event::SCHEMA_JSON)
            .unwrap()
            .id;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let schema = rt.block_on(r.schema_by_id(id)).unwrap();
        assert_eq!(schema.as_ref(), Event::schema());
    }
}
