//! A stage that stops on an error it cannot retry stops the whole process, non-zero, so a
//! supervisor restarts it: `helios up --clickhouse` whose `events` table is dropped under
//! it (ClickHouse then rejects every insert) exits instead of serving on without a sink.
//! Needs the shared clickhouse-server of `scripts/test` (`HELIOS_TEST_CLICKHOUSE`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::Helios;
use crate::common::clickhouse::query;
use serde_json::json;

async fn clickhouse(url: &str, database: &str, sql: &str) -> String {
    query(url, database, sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn post_event(server: &Helios, id: &str) {
    let batch = json!([{"specversion": "1.0", "id": id, "source": "stage-failure",
                        "type": "ci.run", "subject": "repo-0"}]);
    assert_eq!(server.post_events(&batch).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_cannot_store_stops_helios_up_with_the_reason() {
    let url = std::env::var("HELIOS_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!(
            "HELIOS_TEST_CLICKHOUSE is not set: this test needs clickhouse-server. Run it \
             through scripts/test, or start it with scripts/services/clickhouse.sh."
        )
    });
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let database = format!("helios_test_stage_failure_{}_{millis}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Helios::up(
        &data,
        &["--clickhouse", &url, "--clickhouse-database", &database],
    )
    .await;

    // The sink stores while the table is there (next to the default sources' events).
    post_event(&server, "before").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mine = "SELECT count() FROM events WHERE source = 'stage-failure'";
    while clickhouse(&url, &database, mine).await.trim() != "1" {
        assert!(
            Instant::now() < deadline,
            "the first event never reached ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.child.try_wait().unwrap().is_none());

    // Now every insert is rejected: an error no retry fixes.
    clickhouse(&url, &database, "DROP TABLE events").await;
    post_event(&server, "after").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "helios up kept running after its sink stopped; see {}",
            data.with_extension("log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "helios up exited with {status}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(
        log.contains("A stage stopped on an error; stopping the process"),
        "{log}"
    );
    assert!(log.contains("the sink stopped on an error"), "{log}");
    assert!(log.contains("events"), "the reason names the table: {log}");
    // The rest shut down cleanly before the exit.
    assert!(log.contains("Shutting down"), "{log}");
    clickhouse(&url, "default", &format!("DROP DATABASE {database}")).await;
}
