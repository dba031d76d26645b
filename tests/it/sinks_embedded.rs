//! End to end on the embedded store: events posted to `helios up` land in the Parquet
//! store under the data dir, and a DataFusion query finds each exactly once, also after
//! the same events were posted again, after a clean stop (SIGTERM: flush and commit) and
//! after a restart that re-reads the log.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Helios, rfc3339};
use helios_sinks::StoreSpec;
use helios_sinks::parquet::query::{scalar_u64, session};
use serde_json::json;

const N: usize = 200;

/// The events' time: an hour before the test started, the same for every post. Recent, so
/// the store's default retention (ADR-016) keeps it whatever day the test runs.
fn event_time() -> String {
    static TIME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TIME.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        rfc3339(now - 3_600_000_000)
    })
    .clone()
}

async fn post(server: &Helios, from: usize, to: usize) {
    let batch: Vec<_> = (from..to)
        .map(|i| {
            json!({"specversion": "1.0", "id": format!("e2e-{i}"), "source": "e2e",
                   "type": "ci.run", "subject": format!("repo-{}", i % 5),
                   "time": event_time(), "value": i})
        })
        .collect();
    let resp = server.post_events(&serde_json::Value::Array(batch)).await;
    assert_eq!(resp.status(), 202);
}

/// (distinct ids, rows in the deduplicated view, copies on disk) of our events.
async fn counts(data: &Path) -> (u64, u64, u64) {
    let ctx = session(&data.join("store"), &StoreSpec::default())
        .await
        .unwrap();
    let q = |sql: &'static str| {
        let ctx = ctx.clone();
        async move { scalar_u64(&ctx, sql).await.unwrap() }
    };
    (
        q("SELECT count(DISTINCT id) FROM events WHERE source = 'e2e'").await,
        q("SELECT count(*) FROM events WHERE source = 'e2e'").await,
        q("SELECT count(*) FROM raw.events WHERE source = 'e2e'").await,
    )
}

async fn wait_for_all(data: &Path) -> (u64, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = counts(data).await;
        if c.0 as usize == N {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "only {c:?} of {N} events in the store; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_land_in_the_embedded_store_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Helios::up(&data, &[]).await;
    post(&server, 0, N / 2).await;
    post(&server, N / 2, N).await;
    // The same events again, as a retrying client would send them.
    post(&server, 0, N).await;

    let (distinct, rows, _) = wait_for_all(&data).await;
    assert_eq!((distinct, rows), (N as u64, N as u64));
    // Day folders of the events' time.
    let day = format!("store/events/day={}", &event_time()[..10]);
    assert!(data.join(&day).is_dir(), "{day}");

    // A clean stop flushes and commits; nothing changes in the answers.
    server.stop();
    let (distinct, rows, copies) = counts(&data).await;
    assert_eq!((distinct, rows), (N as u64, N as u64));
    assert!(copies >= N as u64);

    // A restart re-reads only what was not committed; the answer is still N, once each.
    let server = Helios::up(&data, &[]).await;
    post(&server, 0, 10).await;
    let marker = json!([{"specversion": "1.0", "id": "marker", "source": "e2e-marker",
                         "type": "ci.run", "subject": "repo-0"}]);
    let resp = server.post_events(&marker).await;
    assert_eq!(resp.status(), 202);
    // The marker shows the restarted sink is storing again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ctx = session(&data.join("store"), &StoreSpec::default())
            .await
            .unwrap();
        let n = scalar_u64(
            &ctx,
            "SELECT count(*) FROM events WHERE source = 'e2e-marker'",
        )
        .await
        .unwrap();
        if n == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the marker event never landed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (distinct, rows, _) = counts(&data).await;
    assert_eq!((distinct, rows), (N as u64, N as u64));
    server.stop();
}
