//! GitHub webhook payloads to `Event`s: one event per delivery, kind and attrs per event
//! type, subject = the repository's `full_name`, the raw payload kept.
//!
//! Only the fields used are deserialized (typed structs, the rest skipped), which keeps
//! large `push` payloads cheap to map.

use std::collections::BTreeMap;

use chrono::DateTime;
use helios_schemas::Event;
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

/// Why a payload could not be mapped (answered as `400`).
#[derive(Debug, PartialEq)]
pub struct MapError(pub String);

/// What every delivery has besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The source name (`Event::source`).
    pub source: &'a str,
    /// `X-GitHub-Event`.
    pub event: &'a str,
    /// `X-GitHub-Delivery` (the event id).
    pub id: &'a str,
    /// Receive time, µs.
    pub received_at: i64,
}

#[derive(Debug, Deserialize)]
struct Repo {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct Login {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    #[serde(default)]
    forced: bool,
    pusher: Option<Named>,
    #[serde(default)]
    commits: Vec<IgnoredAny>,
    head_commit: Option<HeadCommit>,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct HeadCommit {
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PullRequestEvent {
    action: String,
    number: Option<u64>,
    pull_request: PullRequest,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct PullRequest {
    number: Option<u64>,
    user: Option<Login>,
    #[serde(default)]
    merged: bool,
    created_at: Option<String>,
    updated_at: Option<String>,
    merged_at: Option<String>,
    base: Option<Branch>,
    head: Option<Branch>,
}

#[derive(Debug, Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRunEvent {
    action: String,
    workflow_run: WorkflowRun,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct WorkflowRun {
    name: Option<String>,
    head_branch: Option<String>,
    event: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    run_number: Option<u64>,
    run_started_at: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CheckRunEvent {
    action: String,
    check_run: CheckRun,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct CheckRun {
    name: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    check_suite: Option<CheckSuite>,
}

#[derive(Debug, Deserialize)]
struct CheckSuite {
    head_branch: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IssuesEvent {
    action: String,
    issue: Issue,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct Issue {
    number: Option<u64>,
    state: Option<String>,
    user: Option<Login>,
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReleaseEvent {
    action: String,
    release: Release,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct Release {
    tag_name: Option<String>,
    name: Option<String>,
    #[serde(default)]
    prerelease: bool,
    #[serde(default)]
    draft: bool,
    author: Option<Login>,
    created_at: Option<String>,
    published_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentEvent {
    action: Option<String>,
    deployment: Deployment,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct Deployment {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    sha: Option<String>,
    environment: Option<String>,
    creator: Option<Login>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatusEvent {
    deployment_status: DeploymentStatus,
    deployment: Deployment,
    repository: Option<Repo>,
    sender: Option<Login>,
}

#[derive(Debug, Deserialize)]
struct DeploymentStatus {
    state: String,
    environment: Option<String>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

/// Any other event type: only what locates it.
#[derive(Debug, Deserialize)]
struct Other {
    action: Option<String>,
    repository: Option<Repo>,
    organization: Option<Login>,
    sender: Option<Login>,
}

/// Maps one verified delivery. `body` is the raw JSON payload.
pub fn map(d: &Delivery<'_>, body: &str) -> Result<Event, MapError> {
    let mut attrs = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            attrs.insert(k.to_string(), v);
        }
    };
    let (kind, repo, sender, time, value) = match d.event {
        "push" => {
            let p: Push = parse(body, "push")?;
            let branch = p.git_ref.strip_prefix("refs/heads/").map(str::to_string);
            let tag = p.git_ref.strip_prefix("refs/tags/").map(str::to_string);
            put("branch", branch);
            put("tag", tag);
            put("ref", Some(p.git_ref));
            put("pusher", p.pusher.and_then(|n| n.name));
            put("head", p.after);
            put("forced", Some(p.forced.to_string()));
            let time = p.head_commit.and_then(|c| c.timestamp);
            (
                "git.push".to_string(),
                p.repository,
                p.sender,
                time_of(time.as_deref(), "head_commit.timestamp")?,
                Some(p.commits.len() as f64),
            )
        }
        "pull_request" => {
            let e: PullRequestEvent = parse(body, "pull_request")?;
            let pr = e.pull_request;
            let kind = if e.action == "closed" && pr.merged {
                "pr.merged".to_string()
            } else {
                format!("pr.{}", e.action)
            };
            put("action", Some(e.action));
            put("number", e.number.or(pr.number).map(|n| n.to_string()));
            put("author", pr.user.map(|u| u.login));
            put("base", pr.base.and_then(|b| b.git_ref));
            put("head", pr.head.and_then(|b| b.git_ref));
            put("merged", Some(pr.merged.to_string()));
            // A merged pull request's value is how long it was open, in seconds.
            let value = if pr.merged {
                seconds_between(pr.created_at.as_deref(), pr.merged_at.as_deref())?
            } else {
                None
            };
            (
                kind,
                e.repository,
                e.sender,
                time_of(pr.updated_at.as_deref(), "pull_request.updated_at")?,
                value,
            )
        }
        "workflow_run" => {
            let e: WorkflowRunEvent = parse(body, "workflow_run")?;
            let run = e.workflow_run;
            let completed = run.status.as_deref() == Some("completed");
            let value = if completed {
                seconds_between(
                    run.run_started_at.as_deref().or(run.created_at.as_deref()),
                    run.updated_at.as_deref(),
                )?
            } else {
                None
            };
            put("action", Some(e.action));
            put("github_event", Some("workflow_run".to_string()));
            put("workflow", run.name);
            put("branch", run.head_branch);
            put("trigger", run.event);
            put("status", run.status);
            put("conclusion", run.conclusion);
            put("run_number", run.run_number.map(|n| n.to_string()));
            (
                "ci.run".to_string(),
                e.repository,
                e.sender,
                time_of(run.updated_at.as_deref(), "workflow_run.updated_at")?,
                value,
            )
        }
        "check_run" => {
            let e: CheckRunEvent = parse(body, "check_run")?;
            let run = e.check_run;
            let completed = run.status.as_deref() == Some("completed");
            let value = if completed {
                seconds_between(run.started_at.as_deref(), run.completed_at.as_deref())?
            } else {
                None
            };
            let time = run.completed_at.as_deref().or(run.started_at.as_deref());
            let time = time_of(time, "check_run.completed_at")?;
            put("action", Some(e.action));
            put("github_event", Some("check_run".to_string()));
            put("workflow", run.name);
            put("branch", run.check_suite.and_then(|s| s.head_branch));
            put("status", run.status);
            put("conclusion", run.conclusion);
            ("ci.run".to_string(), e.repository, e.sender, time, value)
        }
        "issues" => {
            let e: IssuesEvent = parse(body, "issues")?;
            let kind = format!("issue.{}", e.action);
            put("action", Some(e.action));
            put("number", e.issue.number.map(|n| n.to_string()));
            put("author", e.issue.user.map(|u| u.login));
            put("state", e.issue.state);
            (
                kind,
                e.repository,
                e.sender,
                time_of(e.issue.updated_at.as_deref(), "issue.updated_at")?,
                None,
            )
        }
        "release" => {
            let e: ReleaseEvent = parse(body, "release")?;
            let r = e.release;
            let kind = format!("release.{}", e.action);
            let time = r.published_at.as_deref().or(r.created_at.as_deref());
            let time = time_of(time, "release.published_at")?;
            put("action", Some(e.action));
            put("tag", r.tag_name);
            put("name", r.name);
            put("author", r.author.map(|u| u.login));
            put("prerelease", Some(r.prerelease.to_string()));
            put("draft", Some(r.draft.to_string()));
            (kind, e.repository, e.sender, time, None)
        }
        "deployment" => {
            let e: DeploymentEvent = parse(body, "deployment")?;
            let dep = e.deployment;
            let action = e.action.unwrap_or_else(|| "created".to_string());
            let kind = format!("deploy.{action}");
            let time = dep.updated_at.as_deref().or(dep.created_at.as_deref());
            let time = time_of(time, "deployment.updated_at")?;
            put("environment", dep.environment);
            put("state", Some(action));
            put("ref", dep.git_ref);
            put("sha", dep.sha);
            put("creator", dep.creator.map(|u| u.login));
            (kind, e.repository, e.sender, time, None)
        }
        "deployment_status" => {
            let e: DeploymentStatusEvent = parse(body, "deployment_status")?;
            let (status, dep) = (e.deployment_status, e.deployment);
            let kind = format!("deploy.{}", status.state);
            // A finished deployment's value is how long it took from creation, in seconds.
            let value = if matches!(status.state.as_str(), "success" | "failure" | "error") {
                seconds_between(dep.created_at.as_deref(), status.created_at.as_deref())?
            } else {
                None
            };
            let time = status
                .updated_at
                .as_deref()
                .or(status.created_at.as_deref());
            let time = time_of(time, "deployment_status.updated_at")?;
            put("environment", status.environment.or(dep.environment));
            put("state", Some(status.state));
            put("ref", dep.git_ref);
            put("sha", dep.sha);
            put("creator", dep.creator.map(|u| u.login));
            (kind, e.repository, e.sender, time, value)
        }
        other => {
            let e: Other = parse(body, other)?;
            put("action", e.action);
            let repo = e
                .repository
                .or_else(|| e.organization.map(|o| Repo { full_name: o.login }));
            (format!("github.{other}"), repo, e.sender, None, None)
        }
    };
    put("sender", sender.map(|s| s.login));
    Ok(Event {
        id: d.id.to_string(),
        source: d.source.to_string(),
        kind,
        subject: repo.map(|r| r.full_name).unwrap_or_default(),
        time: time.unwrap_or(d.received_at),
        received_at: d.received_at,
        attrs,
        value,
        payload: Some(body.to_string()),
    })
}

fn parse<T: DeserializeOwned>(body: &str, event: &str) -> Result<T, MapError> {
    serde_json::from_str(body).map_err(|e| {
        MapError(format!(
            "the `{event}` payload does not have the shape GitHub documents: {e}"
        ))
    })
}

/// µs since the epoch of an RFC 3339 time, `None` when absent.
fn time_of(t: Option<&str>, field: &str) -> Result<Option<i64>, MapError> {
    t.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_micros())
            .map_err(|e| MapError(format!("`{field}` = {t:?} is not an RFC 3339 time: {e}")))
    })
    .transpose()
}

/// Seconds from `start` to `end` when both are present.
fn seconds_between(start: Option<&str>, end: Option<&str>) -> Result<Option<f64>, MapError> {
    match (time_of(start, "start time")?, time_of(end, "end time")?) {
        (Some(s), Some(e)) => Ok(Some((e - s) as f64 / 1e6)),
        _ => Ok(None),
    }
}
