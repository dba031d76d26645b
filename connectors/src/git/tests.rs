//! The source on a real repository made in a temp dir with libgit2: commits on two
//! branches, a branch sharing a commit, a restart, and a missing repository.

use std::path::Path;
use std::time::Duration;

use git2::{Oid, Repository, Signature, Time};
use helios_schemas::Event;
use serde_json::Value;

use super::{GitConfig, GitSource, repo_name};
use crate::runtime::{PullSource, SourceHandle, SourceState, Supervisor};
use crate::test_support::{LogFixture, wait_status};

/// Commits `files` (name, content) as the whole tree on `branch`, with `parents`.
fn commit(
    repo: &Repository,
    branch: &str,
    files: &[(&str, &str)],
    parents: &[Oid],
    at: i64,
    who: &str,
) -> Oid {
    let mut tb = repo.treebuilder(None).unwrap();
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).unwrap();
        tb.insert(name, blob, 0o100644).unwrap();
    }
    let tree = repo.find_tree(tb.write().unwrap()).unwrap();
    let sig = Signature::new(
        who,
        &format!("{}@example.com", who.to_lowercase()),
        &Time::new(at, 0),
    )
    .unwrap();
    let parents: Vec<_> = parents
        .iter()
        .map(|p| repo.find_commit(*p).unwrap())
        .collect();
    let parent_refs: Vec<_> = parents.iter().collect();
    repo.commit(
        Some(&format!("refs/heads/{branch}")),
        &sig,
        &sig,
        &format!("change {at}"),
        &tree,
        &parent_refs,
    )
    .unwrap()
}

fn spawn(supervisor: &Supervisor, config: &GitConfig) -> SourceHandle {
    let c = config.clone();
    supervisor
        .spawn(
            &config.name,
            "git",
            Box::new(move || Ok(Box::new(GitSource::new(c.clone())?) as Box<dyn PullSource>)),
        )
        .unwrap()
}

fn summary(e: &Event) -> (String, String, String, i64, f64) {
    (
        e.id.clone(),
        e.attrs["branch"].clone(),
        e.attrs["author"].clone(),
        e.time,
        e.value.unwrap(),
    )
}

#[tokio::test]
async fn new_commits_on_all_branches_once_each_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("proj");
    let repo = Repository::init(&path).unwrap();
    let c1 = commit(
        &repo,
        "main",
        &[("a.txt", "1\n2\n3\n")],
        &[],
        1_700_000_000,
        "Ada",
    );

    let fx = LogFixture::new().await;
    let missing = tmp.path().join("gone");
    let config = GitConfig {
        name: "repos".into(),
        repos: vec![path.clone(), missing.clone()],
        interval: Duration::from_millis(50),
        ..GitConfig::default()
    };
    let supervisor = fx.supervisor();
    let handle = spawn(&supervisor, &config);
    fx.wait_events("the first commit", |e| !e.is_empty()).await;

    let c2 = commit(
        &repo,
        "main",
        &[("a.txt", "1\n2\n3\n4\n")],
        &[c1],
        1_700_000_100,
        "Ada",
    );
    let c3 = commit(
        &repo,
        "feature",
        &[("a.txt", "1\n2\n3\n"), ("b.txt", "x\ny\n")],
        &[c1],
        1_700_000_200,
        "Bob",
    );
    let c4 = commit(
        &repo,
        "feature",
        &[("a.txt", "1\nTWO\n3\n"), ("b.txt", "x\ny\n")],
        &[c3],
        1_700_000_300,
        "Bob",
    );
    // The same commit on a second branch is not a new event.
    repo.branch("feature-copy", &repo.find_commit(c4).unwrap(), false)
        .unwrap();
    fx.wait_events("four commits", |e| e.len() >= 4).await;
    let status = wait_status(&handle, "the missing repository reported", |s| {
        s.errors >= 1
    })
    .await;
    assert!(
        status.last_error.as_deref().unwrap().contains("gone"),
        "{status:?}"
    );
    assert_eq!(status.state, SourceState::Running);
    assert_eq!(status.errors, 1, "a lasting problem is reported once");
    supervisor.shutdown().await;

    // Restart: nothing repeats; a new merge commit shows up once.
    let supervisor = fx.supervisor();
    spawn(&supervisor, &config);
    let c5 = commit(
        &repo,
        "main",
        &[("a.txt", "1\nTWO\n3\n4\n"), ("b.txt", "x\ny\n")],
        &[c2, c4],
        1_700_000_400,
        "Ada",
    );
    let events = fx.wait_events("the merge commit", |e| e.len() >= 5).await;
    // A few more polls of the restarted source, to see that nothing else comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events_later = fx.events().await;
    supervisor.shutdown().await;
    assert_eq!(events, events_later);

    let got: Vec<_> = events.iter().map(summary).collect();
    let s = 1_000_000;
    assert_eq!(
        got,
        [
            (
                c1.to_string(),
                "main".into(),
                "Ada".into(),
                1_700_000_000 * s,
                3.0
            ),
            (
                c2.to_string(),
                "main".into(),
                "Ada".into(),
                1_700_000_100 * s,
                1.0
            ),
            (
                c3.to_string(),
                "feature".into(),
                "Bob".into(),
                1_700_000_200 * s,
                2.0
            ),
            (
                c4.to_string(),
                "feature".into(),
                "Bob".into(),
                1_700_000_300 * s,
                2.0
            ),
            // Against its first parent c2: a.txt line 2 changed (+1 -1), b.txt added (+2).
            (
                c5.to_string(),
                "main".into(),
                "Ada".into(),
                1_700_000_400 * s,
                4.0
            ),
        ]
    );
    for e in &events {
        assert_eq!(e.kind, "git.commit");
        assert_eq!(e.subject, "proj");
        assert_eq!(e.source, "repos");
    }
    assert_eq!(events[0].attrs["author_email"], "ada@example.com");
    assert!(!events[3].attrs.contains_key("merge"));
    assert_eq!(events[4].attrs["merge"], "true");
    let payload: Value = serde_json::from_str(events[4].payload.as_deref().unwrap()).unwrap();
    assert_eq!(
        payload["parents"],
        serde_json::json!([c2.to_string(), c4.to_string()])
    );
    assert_eq!(payload["summary"], "change 1700000400");
    assert_eq!(payload["insertions"], 3);
    assert_eq!(payload["deletions"], 1);
}

#[tokio::test]
async fn first_poll_backfills_only_the_newest_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repository::init(tmp.path().join("big")).unwrap();
    let mut parent = vec![];
    let mut shas = vec![];
    for i in 0..5 {
        let c = commit(
            &repo,
            "main",
            &[("f", &"l\n".repeat(i + 1))],
            &parent,
            1_700_000_000 + i as i64,
            "Ada",
        );
        parent = vec![c];
        shas.push(c.to_string());
    }
    let fx = LogFixture::new().await;
    let supervisor = fx.supervisor();
    let config = GitConfig {
        repos: vec![tmp.path().join("big")],
        interval: Duration::from_millis(50),
        max_backfill: 2,
        ..GitConfig::default()
    };
    let handle = spawn(&supervisor, &config);
    fx.wait_events("the backfill", |e| e.len() >= 2).await;
    // Let a second poll run: it must add nothing.
    let polls_done = handle.status().events_emitted;
    tokio::time::sleep(Duration::from_millis(150)).await;
    supervisor.shutdown().await;
    let events = fx.events().await;
    assert_eq!(polls_done, 2);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, [shas[3].as_str(), shas[4].as_str()]);
}

#[test]
fn subject_is_the_folder_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (make, name) in [
        ("helios", "helios"),
        ("site.git", "site"),
        ("work/.git", "work"),
    ] {
        let p = tmp.path().join(make);
        std::fs::create_dir_all(&p).unwrap();
        assert_eq!(repo_name(&p), name);
    }
    assert_eq!(repo_name(Path::new("/no/such/repo.git")), "repo");
}

#[test]
fn validation_names_the_problem() {
    assert!(
        GitConfig::default()
            .validate()
            .unwrap_err()
            .contains("`repos`")
    );
    let c = GitConfig {
        repos: vec!["/x".into()],
        interval: Duration::ZERO,
        ..GitConfig::default()
    };
    assert!(c.validate().unwrap_err().contains("`interval`"));
}
