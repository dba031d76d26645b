//! Settings of the git repository source.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[[source]] type = "git"` in the spec: new commits on every local branch of local
/// repositories become `git.commit` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitConfig {
    /// Name of the source in `/v1/sources` and the `source` of its events. Default `git`.
    pub name: String,
    /// Paths of local repositories (a work tree or a bare repository). At least one. The
    /// folder name (without `.git`) is the events' subject.
    pub repos: Vec<PathBuf>,
    /// Time between two polls, such as `30s`. Default `30s`.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// At the first poll of a repository, at most this many of its newest commits are
    /// emitted; older history is skipped. Default 1000.
    pub max_backfill: usize,
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            name: "git".to_string(),
            repos: Vec::new(),
            interval: Duration::from_secs(30),
            max_backfill: 1000,
            max_future: None,
        }
    }
}

impl GitConfig {
    /// Checks the settings without opening any repository; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.repos.is_empty() {
            return Err("`repos` needs at least one repository path".into());
        }
        if self.interval.is_zero() {
            return Err("`interval` must be positive, such as `30s`".into());
        }
        Ok(())
    }
}
