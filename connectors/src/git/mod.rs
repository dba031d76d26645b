//! Git repositories: owns polling local repositories for new commits on all local
//! branches (through libgit2, never by running `git`) and turning each into one
//! `git.commit` event.
//!
//! One event per commit: id = the commit's sha, so a commit reachable from several
//! branches is one event, with attr `branch` = the branch it was first seen on (branches
//! are walked in name order within a poll). Value = lines changed (insertions + deletions)
//! against the first parent (attr `merge = "true"` marks merge commits, whose diff repeats
//! the merged branch's changes). Time = the commit time. The branch tips seen are
//! checkpointed in the state dir after the events are durable; the next poll hides
//! everything reachable from them, so a restart repeats nothing that was checkpointed.
//! libgit2 objects are not `Send`, so each scan runs on a blocking thread and returns plain data.

mod config;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use git2::{BranchType, Oid, Repository, Sort};
use helios_schemas::Event;
use serde_json::json;
use tracing::info;

pub use config::GitConfig;

use crate::runtime::{PullSource, SourceContext, checkpoint, now_micros};
use crate::{ConnectorError, Result};

const CHECKPOINT_FILE: &str = "tips.json";

/// Repository path -> branch -> tip sha, as of the last emitted poll.
type Tips = BTreeMap<String, BTreeMap<String, String>>;

/// One new commit, as plain data.
#[derive(Debug, Clone, PartialEq)]
struct CommitInfo {
    sha: String,
    branch: String,
    time: i64,
    author: String,
    email: String,
    summary: String,
    parents: Vec<String>,
    insertions: usize,
    deletions: usize,
    files_changed: usize,
}

/// What one scan of a repository found.
#[derive(Debug)]
struct Scan {
    commits: Vec<CommitInfo>,
    tips: BTreeMap<String, String>,
}

/// The running git source.
#[derive(Debug)]
pub struct GitSource {
    config: GitConfig,
    /// Last problem reported per repository, so a lasting one is reported once.
    reported: BTreeMap<PathBuf, String>,
}

impl GitSource {
    /// Fails on settings that `validate()` refuses.
    pub fn new(config: GitConfig) -> Result<Self> {
        config
            .validate()
            .map_err(|m| ConnectorError::config(&config.name, m))?;
        Ok(GitSource {
            config,
            reported: BTreeMap::new(),
        })
    }

    async fn poll(&mut self, ctx: &SourceContext, dir: &Path, tips: &mut Tips) -> Result<()> {
        for repo in self.config.repos.clone() {
            let key = repo.display().to_string();
            let previous = tips.get(&key).cloned();
            let max_backfill = self.config.max_backfill;
            let path = repo.clone();
            let scanned =
                tokio::task::spawn_blocking(move || scan(&path, previous.as_ref(), max_backfill))
                    .await
                    .map_err(|e| {
                        ConnectorError::external(ctx.name(), format!("scanning {key} failed: {e}"))
                    })?;
            let scan = match scanned {
                Ok(s) => s,
                Err(message) => {
                    if self.reported.get(&repo) != Some(&message) {
                        ctx.report_error(message.clone());
                        self.reported.insert(repo.clone(), message);
                    }
                    continue;
                }
            };
            self.reported.remove(&repo);
            let subject = repo_name(&repo);
            let received_at = now_micros();
            let events: Vec<Event> = scan
                .commits
                .iter()
                .map(|c| commit_event(ctx.name(), &subject, c, received_at))
                .collect();
            if !events.is_empty() {
                info!(source = ctx.name(), repo = %key, commits = events.len(), "New commits.");
            }
            ctx.emit(&events).await?;
            if tips.get(&key) != Some(&scan.tips) {
                tips.insert(key, scan.tips);
                checkpoint::save(ctx.name(), dir, CHECKPOINT_FILE, &*tips)?;
            }
        }
        Ok(())
    }
}

/// The folder name, without a `.git` suffix (`/src/helios/.git` and `/srv/helios.git`
/// are both `helios`).
fn repo_name(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = if path.file_name().is_some_and(|n| n == ".git") {
        path.parent().map(Path::to_path_buf).unwrap_or(path)
    } else {
        path
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    name.strip_suffix(".git")
        .map(str::to_string)
        .unwrap_or(name)
}

fn commit_event(source: &str, subject: &str, c: &CommitInfo, received_at: i64) -> Event {
    let mut attrs = BTreeMap::from([
        ("author".to_string(), c.author.clone()),
        ("author_email".to_string(), c.email.clone()),
        ("branch".to_string(), c.branch.clone()),
    ]);
    if c.parents.len() > 1 {
        attrs.insert("merge".to_string(), "true".to_string());
    }
    Event {
        id: c.sha.clone(),
        source: source.to_string(),
        kind: "git.commit".to_string(),
        subject: subject.to_string(),
        time: c.time,
        received_at,
        attrs,
        value: Some((c.insertions + c.deletions) as f64),
        payload: Some(
            json!({
                "sha": c.sha,
                "summary": c.summary,
                "parents": c.parents,
                "insertions": c.insertions,
                "deletions": c.deletions,
                "files_changed": c.files_changed,
            })
            .to_string(),
        ),
    }
}

/// New commits of `path` since `previous` tips (all of history, up to `max_backfill`
/// newest, when `previous` is `None`), oldest first, and the current tips.
fn scan(
    path: &Path,
    previous: Option<&BTreeMap<String, String>>,
    max_backfill: usize,
) -> std::result::Result<Scan, String> {
    let repo = Repository::open(path).map_err(|e| {
        format!(
            "cannot open the git repository {}: {}; polling goes on",
            path.display(),
            e.message()
        )
    })?;
    let fail = |what: &str, e: git2::Error| {
        format!("{what} in {} failed: {}", path.display(), e.message())
    };
    let mut branches: Vec<(String, Oid)> = Vec::new();
    for b in repo
        .branches(Some(BranchType::Local))
        .map_err(|e| fail("listing branches", e))?
    {
        let (branch, _) = b.map_err(|e| fail("listing branches", e))?;
        let name = branch.name().ok().flatten().map(str::to_string);
        if let (Some(name), Some(tip)) = (name, branch.get().target()) {
            branches.push((name, tip));
        }
    }
    branches.sort();
    let hidden: Vec<Oid> = previous
        .into_iter()
        .flat_map(|p| p.values())
        .filter_map(|sha| Oid::from_str(sha).ok())
        .collect();
    let mut seen = HashSet::new();
    let mut found: Vec<(Oid, String)> = Vec::new();
    let mut done: Vec<Oid> = Vec::new();
    for (name, tip) in &branches {
        let mut walk = repo.revwalk().map_err(|e| fail("walking history", e))?;
        walk.set_sorting(Sort::TIME)
            .map_err(|e| fail("walking history", e))?;
        walk.push(*tip).map_err(|e| fail("walking history", e))?;
        for h in hidden.iter().chain(&done) {
            // A tip that no longer exists (history rewritten, then collected) hides nothing.
            let _ = walk.hide(*h);
        }
        for oid in walk {
            let oid = oid.map_err(|e| fail("walking history", e))?;
            if seen.insert(oid) {
                found.push((oid, name.clone()));
            }
        }
        done.push(*tip);
    }
    let mut commits = Vec::with_capacity(found.len());
    for (oid, branch) in found {
        commits.push(commit_info(&repo, oid, branch).map_err(|e| fail("reading a commit", e))?);
    }
    commits.sort_by(|a, b| (a.time, &a.sha).cmp(&(b.time, &b.sha)));
    if previous.is_none() && commits.len() > max_backfill {
        commits.drain(..commits.len() - max_backfill);
    }
    let tips = branches
        .into_iter()
        .map(|(name, tip)| (name, tip.to_string()))
        .collect();
    Ok(Scan { commits, tips })
}

fn commit_info(
    repo: &Repository,
    oid: Oid,
    branch: String,
) -> std::result::Result<CommitInfo, git2::Error> {
    let commit = repo.find_commit(oid)?;
    let tree = commit.tree()?;
    let parent_tree = match commit.parent(0) {
        Ok(p) => Some(p.tree()?),
        Err(_) => None, // a root commit: everything is an insertion
    };
    let diff = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)?;
    let stats = diff.stats()?;
    let author = commit.author();
    Ok(CommitInfo {
        sha: oid.to_string(),
        branch,
        time: commit.time().seconds().saturating_mul(1_000_000),
        author: author.name().unwrap_or_default().to_string(),
        email: author.email().unwrap_or_default().to_string(),
        summary: commit.summary().unwrap_or_default().to_string(),
        parents: commit.parent_ids().map(|p| p.to_string()).collect(),
        insertions: stats.insertions(),
        deletions: stats.deletions(),
        files_changed: stats.files_changed(),
    })
}

#[async_trait]
impl PullSource for GitSource {
    async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let dir = ctx.state_dir()?.to_path_buf();
        let mut tips: Tips =
            checkpoint::load(ctx.name(), &dir, CHECKPOINT_FILE)?.unwrap_or_default();
        // Repositories dropped from the spec leave the checkpoint.
        let wanted: BTreeSet<String> = self
            .config
            .repos
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        tips.retain(|k, _| wanted.contains(k));
        loop {
            self.poll(ctx, &dir, &mut tips).await?;
            if !ctx.sleep(self.config.interval).await {
                return Ok(());
            }
        }
    }
}
