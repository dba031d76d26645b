//! The hostile-SQL suite (issue 12): every statement of `tests/it/hostile_sql.txt` is
//! thrown at the real `helios up` — on the embedded store and on ClickHouse — through
//! `POST /v1/sql` with a `read` key, while another client keeps ingesting and polling
//! `/healthz`. Every statement must get a 4xx or a bounded answer that discloses no system
//! table, other database, file or URL; the process must live; `/healthz` must answer within
//! 1 s throughout; the ingest client must see no 5xx and lose no event.
//!
//! The ClickHouse run reads as the read-only user of `scripts/services/clickhouse.sh`
//! (`HELIOS_TEST_CLICKHOUSE_READ_USER` / `_PASSWORD`, database `helios`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Helios, helios};

const STATEMENTS: &str = include_str!("hostile_sql.txt");
/// Text that only a read past the guard could put in an answer.
const SECRETS: &[&str] = &[
    "decoy-secret-7f3a",
    "helios_hostile_other",
    "secret_table",
    "aggregate_function_combinators",
    "schema_migrations",
    "root:x:0:0",
    "information_schema",
    "table_functions",
    "datafusion.execution",
];
const MAX_ROWS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Refused,
    RefusedOnClickHouse,
    Any,
    OneRow,
}

/// The statements of the data file, templates filled in.
fn statements(url: &str, decoy: &Path) -> Vec<(Expect, String)> {
    let mut out = Vec::new();
    for (n, line) in STATEMENTS.lines().enumerate() {
        let line = line.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (expect, sql) = line
            .split_once(" :: ")
            .unwrap_or_else(|| panic!("hostile_sql.txt:{}: no ` :: `", n + 1));
        let expect = match expect {
            "4xx" => Expect::Refused,
            "4xx@clickhouse" => Expect::RefusedOnClickHouse,
            "any" => Expect::Any,
            "one" => Expect::OneRow,
            other => panic!("hostile_sql.txt:{}: unknown expectation {other}", n + 1),
        };
        let mut sql = sql
            .replace("{url}", url)
            .replace("{decoy}", &decoy.display().to_string());
        while let Some(at) = sql.find("{repeat ") {
            let end = at + sql[at..].find('}').expect("closing }");
            let (count, text) = sql[at + 8..end].split_once('|').expect("{repeat N|TEXT}");
            let text = text.repeat(count.parse().expect("a count"));
            sql.replace_range(at..=end, &text);
        }
        out.push((expect, sql));
    }
    out
}

/// A loopback listener that counts the connections it gets (a fetched `url()` would).
async fn url_trap() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/trap.csv", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, hits)
}

fn read_key(data: &Path) -> String {
    crate::common::new_key(data, "read", "hostile")
}

/// What the concurrent clients saw.
#[derive(Default)]
struct Background {
    accepted: AtomicUsize,
    ingest_failures: std::sync::Mutex<Vec<String>>,
    health_failures: std::sync::Mutex<Vec<String>>,
    health_checks: AtomicUsize,
}

async fn ingest(server: Arc<Helios>, seen: Arc<Background>, stop: Arc<AtomicBool>, source: String) {
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let batch = json!([{"specversion": "1.0", "id": format!("h-{n}"), "source": source,
                            "type": "hostile.ingest", "subject": "hostile"}]);
        n += 1;
        match server
            .post("/v1/events")
            .header("content-type", "application/cloudevents-batch+json")
            .body(batch.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                seen.accepted.fetch_add(1, Ordering::SeqCst);
            }
            Ok(r) => seen
                .ingest_failures
                .lock()
                .unwrap()
                .push(format!("event {n}: {}", r.status())),
            Err(e) => seen
                .ingest_failures
                .lock()
                .unwrap()
                .push(format!("event {n}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn health(server: Arc<Helios>, seen: Arc<Background>, stop: Arc<AtomicBool>) {
    let client = crate::common::http();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let answer = client
            .get(server.url("/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        seen.health_checks.fetch_add(1, Ordering::SeqCst);
        match answer {
            Ok(r) if r.status().is_success() && started.elapsed() < Duration::from_secs(1) => {}
            Ok(r) => seen.health_failures.lock().unwrap().push(format!(
                "{} after {:?}",
                r.status(),
                started.elapsed()
            )),
            Err(e) => seen
                .health_failures
                .lock()
                .unwrap()
                .push(format!("{e} after {:?}", started.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Throws the suite at `server`; `clickhouse` says which store it reads.
async fn throw(server: Helios, clickhouse: bool, decoy: &Path) {
    let server = Arc::new(server);
    let read = read_key(&server.data_dir);
    let (url, hits) = url_trap().await;
    let statements = statements(&url, decoy);
    assert!(statements.len() >= 150, "{} statements", statements.len());

    let seen = Arc::new(Background::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Unique per run, so a long-lived ClickHouse holding earlier runs' events still counts
    // only this run's.
    let source = format!(
        "hostile-{}-{}-{}",
        if clickhouse { "ch" } else { "embedded" },
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let clients = [
        tokio::spawn(ingest(
            server.clone(),
            seen.clone(),
            stop.clone(),
            source.clone(),
        )),
        tokio::spawn(health(server.clone(), seen.clone(), stop.clone())),
    ];

    // Statements over `events` meet rows, whatever the ingest client's pace: a bomb over
    // an empty table would be a correct, empty answer.
    wait_for_stored(&server, &source, |n| n > 0).await;

    let client = crate::common::http();
    let mut problems = Vec::new();
    let mut refused = 0;
    for (expect, sql) in &statements {
        let shown: String = sql.chars().take(120).collect();
        let answer = client
            .post(server.url("/v1/sql"))
            .bearer_auth(&read)
            .json(&json!({ "sql": sql }))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{shown}: no answer: {e}"));
                continue;
            }
        };
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if status.is_client_error() {
            refused += 1;
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if !parsed["error"].is_string() {
                problems.push(format!("{shown}: {status} without an error: {body}"));
            }
            if *expect == Expect::OneRow {
                problems.push(format!("{shown}: {status}, want one row: {body}"));
            }
            continue;
        }
        if status != 200 {
            problems.push(format!("{shown}: {status}: {body}"));
            continue;
        }
        let refuse_wanted =
            *expect == Expect::Refused || (*expect == Expect::RefusedOnClickHouse && clickhouse);
        if refuse_wanted {
            problems.push(format!("{shown}: answered, want a 4xx: {body:.300}"));
        }
        for secret in SECRETS {
            if body.contains(secret) && !sql.contains(secret) {
                problems.push(format!("{shown}: the answer discloses `{secret}`"));
            }
        }
        let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let rows = parsed["rows"].as_array().map(Vec::len);
        match rows {
            Some(n) if n <= MAX_ROWS => {
                if *expect == Expect::OneRow && n != 1 {
                    problems.push(format!("{shown}: {n} rows, want one"));
                }
            }
            _ => problems.push(format!("{shown}: not a bounded answer: {body:.300}")),
        }
        if let Some(status) = server_exit(&server) {
            panic!("helios up died after `{shown}`: {status}");
        }
    }
    // Let the background clients see the server settle after the last statement too.
    let settle = Instant::now() + Duration::from_secs(30);
    while seen.health_checks.load(Ordering::SeqCst) < 20 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    eprintln!(
        "{} statements: {refused} refused, {} answered; /healthz checked {} times; {} events sent",
        statements.len(),
        statements.len() - refused - problems.len(),
        seen.health_checks.load(Ordering::SeqCst),
        seen.accepted.load(Ordering::SeqCst),
    );
    for c in clients {
        c.await.unwrap();
    }
    assert!(
        problems.is_empty(),
        "{} of {} statements went wrong:\n{}",
        problems.len(),
        statements.len(),
        problems.join("\n")
    );
    assert!(refused >= 100, "only {refused} statements were refused");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a statement fetched the URL"
    );
    let health = seen.health_failures.lock().unwrap().clone();
    assert!(
        seen.health_checks.load(Ordering::SeqCst) >= 20 && health.is_empty(),
        "/healthz: {health:?}"
    );
    let ingest = seen.ingest_failures.lock().unwrap().clone();
    assert!(ingest.is_empty(), "ingest: {ingest:?}");

    // Every accepted event lands in the store, once.
    let accepted = seen.accepted.load(Ordering::SeqCst);
    assert!(accepted > 0, "the ingest client sent no event");
    wait_for_stored(&server, &source, |n| n == accepted as u64).await;
    assert!(server_exit(&server).is_none(), "helios up died");
}

/// The test ClickHouse and its read-only user (scripts/services/clickhouse.sh).
fn clickhouse_and_read_user() -> (String, String, String) {
    match (
        std::env::var("HELIOS_TEST_CLICKHOUSE"),
        std::env::var("HELIOS_TEST_CLICKHOUSE_READ_USER"),
        std::env::var("HELIOS_TEST_CLICKHOUSE_READ_PASSWORD"),
    ) {
        (Ok(u), Ok(r), Ok(p)) => (u, r, p),
        _ => panic!(
            "HELIOS_TEST_CLICKHOUSE and HELIOS_TEST_CLICKHOUSE_READ_USER/_PASSWORD are not set: \
             this test needs the clickhouse-server of scripts/services/clickhouse.sh"
        ),
    }
}

/// Runs `statements` as the server's default user, each of which must succeed.
async fn run_as_default(client: &reqwest::Client, url: &str, statements: &[&'static str]) {
    for sql in statements {
        let r = client.post(url).body(*sql).send().await.unwrap();
        assert!(
            r.status().is_success(),
            "{sql}: {}",
            r.text().await.unwrap()
        );
    }
}

/// Polls the store (90 s at most) until its count of `source`'s events satisfies `done`.
async fn wait_for_stored(server: &Helios, source: &str, done: impl Fn(u64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = server
            .post("/v1/sql")
            .json(&json!({"sql": format!("SELECT count(*) AS n FROM events WHERE source = '{source}'")}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        let stored = body["rows"][0][0].as_u64();
        if stored.is_some_and(&done) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the store holds {stored:?} events of {source}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn server_exit(server: &Arc<Helios>) -> Option<String> {
    // `Helios` owns its child; probe it through /proc instead of needing `&mut`.
    let pid = server.child.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 3 is the state; Z (zombie) or X (dead) means it exited.
    let state = stat
        .rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .to_owned();
    matches!(state.as_str(), "Z" | "X").then(|| format!("state {state}"))
}

/// Small limits so the suite's slow statements end fast.
const LIMITS: &[&str] = &[
    "--sql-timeout",
    "2s",
    "--sql-max-rows",
    "1000",
    "--sql-max-bytes",
    "1048576",
    "--sql-max-memory",
    "268435456",
    "--sql-max-concurrent",
    "2",
    "--rate-limit",
    "0",
];

fn decoy(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("decoy.csv");
    std::fs::write(&path, "secret\ndecoy-secret-7f3a\n").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_sql_on_the_embedded_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let decoy = decoy(tmp.path());
    let server = Helios::up(&data, LIMITS).await;
    throw(server, false, &decoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_sql_on_clickhouse_as_the_read_only_user() {
    let (url, user, password) = clickhouse_and_read_user();
    let client = crate::common::http();
    // The `helios` database (the read user may read only that one; other tests on this
    // server use it too, so it is kept, not dropped) and a decoy database with a secret no
    // answer may show.
    run_as_default(
        &client,
        &url,
        &[
            "CREATE DATABASE IF NOT EXISTS helios",
            "CREATE DATABASE IF NOT EXISTS helios_hostile_other",
            "CREATE TABLE IF NOT EXISTS helios_hostile_other.secret_table (v String) ENGINE = Memory",
            "INSERT INTO helios_hostile_other.secret_table VALUES ('decoy-secret-7f3a')",
        ],
    )
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let decoy = decoy(tmp.path());
    let password_file = tmp.path().join("read-password");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    let mut args: Vec<&str> = LIMITS.to_vec();
    args.extend([
        "--clickhouse",
        &url,
        "--clickhouse-database",
        "helios",
        "--clickhouse-read-user",
        &user,
        "--clickhouse-read-password-file",
        password_file.to_str().unwrap(),
    ]);
    let server = Helios::up(&data, &args).await;
    throw(server, true, &decoy).await;
}

/// The read user itself, sent SQL directly (no guard): no table functions, no settings,
/// no other database, no writes.
#[tokio::test]
async fn the_clickhouse_read_user_cannot_reach_past_its_database() {
    let (url, user, password) = clickhouse_and_read_user();
    let client = crate::common::http();
    run_as_default(
        &client,
        &url,
        &[
            "CREATE DATABASE IF NOT EXISTS helios",
            "CREATE DATABASE IF NOT EXISTS helios_hostile_other",
            "CREATE TABLE IF NOT EXISTS helios_hostile_other.secret_table (v String) ENGINE = Memory",
        ],
    )
    .await;
    let (trap, hits) = url_trap().await;
    let as_reader = |sql: String, params: &'static str| {
        let client = client.clone();
        let url = format!("{url}/?database=helios{params}");
        let (user, password) = (user.clone(), password.clone());
        async move {
            let r = client
                .post(url)
                .basic_auth(user, Some(password))
                .body(sql)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // It can read its own database.
    let (status, body) = as_reader("SELECT 1".into(), "").await;
    assert_eq!((status, body.trim()), (200, "1"));
    for (sql, params, code) in [
        (
            format!("SELECT * FROM url('{trap}', 'CSV', 'a String')"),
            "",
            "164",
        ),
        (
            "SELECT * FROM file('/etc/passwd', 'CSV', 'a String')".into(),
            "",
            "164",
        ),
        (
            "SELECT * FROM remote('127.0.0.1', system.one)".into(),
            "",
            "164",
        ),
        ("SELECT * FROM numbers(10)".into(), "", "164"),
        (
            "SELECT 1 SETTINGS max_result_rows = 100000000".into(),
            "",
            "164",
        ),
        ("SET max_memory_usage = 0".into(), "", "164"),
        ("SELECT 1".into(), "&max_execution_time=100000", "164"),
        ("SELECT 1".into(), "&readonly=0", "164"),
        (
            "SELECT * FROM helios_hostile_other.secret_table".into(),
            "",
            "291",
        ),
        (
            "CREATE TABLE helios.x (a UInt8) ENGINE = Memory".into(),
            "",
            "164",
        ),
        ("DROP DATABASE helios".into(), "", "164"),
    ] {
        let (status, body) = as_reader(sql.clone(), params).await;
        assert!(
            status >= 400 && body.starts_with(&format!("Code: {code},")),
            "{sql} {params}: {status} {body}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "url() reached the trap");
}

/// The read API will not connect as the sink's user unless told to, and `helios migrate`
/// says exactly what a server without SQL user management needs for the read user.
#[tokio::test]
async fn the_read_api_wants_its_own_clickhouse_user() {
    let url = std::env::var("HELIOS_TEST_CLICKHOUSE").unwrap_or_else(|_| {
        panic!("HELIOS_TEST_CLICKHOUSE is not set: start scripts/services/clickhouse.sh")
    });
    let tmp = tempfile::tempdir().unwrap();
    let out = helios(&[
        "serve",
        "api",
        "--listen",
        "127.0.0.1:0",
        "--clickhouse",
        &url,
        "--data-dir",
        tmp.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve api started as the sink's user"
    );
    assert!(
        stderr.contains("--clickhouse-read-user")
            && stderr.contains("--allow-shared-clickhouse-user"),
        "{stderr}"
    );

    let database = format!("helios_migrate_reader_{}", std::process::id());
    let out = helios(&["migrate", "--clickhouse", &url, "--database", &database]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ClickHouse 18.16 (what the tests run) has no SQL user management.
    for needle in [
        "read user: not created",
        "<helios_reader>",
        "<readonly>1</readonly>",
        "<allow_ddl>0</allow_ddl>",
        "<max_memory_usage>",
        "<max_execution_time>",
        "<result_overflow_mode>throw</result_overflow_mode>",
        &format!("<allow_databases><database>{database}</database></allow_databases>"),
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let r = crate::common::http()
        .post(&url)
        .body(format!("DROP DATABASE IF EXISTS {database}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}
