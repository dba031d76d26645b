//! Issue 12, done-when 4: an HTTP server that holds under abuse. Against a real
//! `helios up`: 100 slowloris connections (one header byte per second) and 1000
//! concurrent unauthenticated 20 MiB webhook bodies (generic token route and GitHub's
//! HMAC route), while a client keeps ingesting and polling `/healthz`; the process's
//! memory stays under a stated bound. Also: unauthenticated answers name no path, public
//! routes check `Host`, and no secret reaches the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::Helios;

const MIB: usize = 1 << 20;
/// Each flooding request declares (and would send) this much body.
const FLOOD_BODY: usize = 20 * MIB;
/// GitHub sources' default `max_body_bytes`; the test's unverified-body budget too.
const GITHUB_LIMIT: usize = 25 * MIB;
/// The bound on the helios process's peak resident memory (VmHWM) through the run.
const MEMORY_BOUND_KIB: u64 = 512 * 1024;
/// `/healthz` must answer within this, on a new connection, throughout.
const HEALTH_WITHIN: Duration = Duration::from_secs(5);
const SLOWLORIS: usize = 100;
const FLOOD: usize = 1000;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Reads an answer's head; `Err` when the connection closed or broke before one came.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<(u16, String), String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
            return Ok((status, head.to_ascii_lowercase()));
        }
        match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await {
            Err(_) => panic!("no answer and no close within 60s"),
            Ok(Ok(0)) => return Err("closed".into()),
            Ok(Err(e)) => return Err(e.kind().to_string()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One flooding request: the head, then `FLOOD_BODY` zero bytes (generated, never held),
/// while the answer is read; stops writing once answered or cut off.
async fn flood_one(addr: SocketAddr, head: String) -> Result<(u16, String), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let mut left = FLOOD_BODY;
        while left > 0 {
            let n = left.min(ZEROS.len());
            wr.write_all(&ZEROS[..n]).await?;
            left -= n;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let answer = read_head(&mut rd).await;
    writer.abort();
    answer
}

/// A slowloris client: a request head one byte a second, never finished; reconnects when
/// cut off, counting in `cut` the first time the server closed it.
async fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>, cut: Arc<AtomicUsize>) {
    let prefix = b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut sent = 0usize;
        let mut buf = [0u8; 1024];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let byte = prefix.get(sent).copied().unwrap_or(b'a');
            if conn.write_all(&[byte]).await.is_err() {
                break;
            }
            sent += 1;
            // A second between bytes, watching for the server to close the connection.
            match tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await {
                Err(_) => {}
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => break,
            }
        }
        if !counted {
            counted = true;
            cut.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn github_head(path: &str, length: usize, delivery: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {length}\r\n\r\n",
        "0".repeat(64)
    )
}

fn token_head(length: usize) -> String {
    format!(
        "POST /v1/webhooks/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Authorization: Bearer not-the-token\r\nContent-Length: {length}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_and_unauthenticated_webhook_floods_leave_ingest_and_health_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_text = data.to_str().unwrap().to_owned();
    let server = Helios::up(
        &data,
        &[
            "--http-header-timeout",
            "2s",
            "--http-idle-timeout",
            "5s",
            // The least the default GitHub source allows: one 25 MiB delivery at a time.
            "--unverified-body-budget",
            "25MiB",
            // The budget holder below must outlast the flood.
            "--request-timeout",
            "300s",
        ],
    )
    .await;
    let addr = server.addr;
    let pid = server.child.id();
    let anon = crate::common::http_builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // Unauthenticated answers name no path or URL.
    let ready = anon.get(server.url("/readyz")).send().await.unwrap();
    let text = ready.text().await.unwrap();
    assert!(!text.contains(&data_text) && !text.contains('/'), "{text}");
    let unknown = anon
        .get(server.url("/v1/sources"))
        .bearer_auth("hel_000000000000_0000000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let text = unknown.text().await.unwrap();
    assert!(
        !text.contains(&data_text) && !text.contains("keys.json"),
        "{text}"
    );
    // Public routes answer only under allowed names (DNS rebinding); keyed ones keep
    // their key check.
    for path in ["/healthz", "/", "/readyz", "/metrics"] {
        let resp = anon
            .get(server.url(path))
            .header("host", format!("rebound.example:{}", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 421, "{path}");
        let resp = anon
            .get(server.url(path))
            .header("host", format!("localhost:{}", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }

    // Memory, sampled throughout.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak, on) = (peak_rss.clone(), sampling.clone());
        async move {
            while on.load(Ordering::Relaxed) {
                peak.fetch_max(memory_kib(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let rss_before = memory_kib(pid, "VmRSS");

    // A GitHub delivery that takes the whole unverified budget and keeps it: it sends its
    // head and part of its body, then a little more now and then (not idle), and finishes
    // only after the flood. While it holds the budget every other unverified GitHub body
    // must be turned away unread. A 1-byte probe tells when it holds it.
    let holder_path = "/v1/webhooks/github/github";
    let holder = loop {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(github_head(holder_path, GITHUB_LIMIT, "holder").as_bytes())
            .await
            .unwrap();
        conn.write_all(&ZEROS).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let probe = flood_one_sized(addr, github_head(holder_path, 1, "probe"), 1).await;
        match probe {
            Ok((503, _)) => break conn,
            // The probe got the budget first (and the holder perhaps none): start over.
            Ok((401, _)) => drop(conn),
            other => panic!("probe: {other:?}"),
        }
    };
    let holder_sent = Arc::new(AtomicUsize::new(ZEROS.len()));

    // The well-behaved client: ingest and health on new connections, all through.
    let abuse_over = Arc::new(AtomicBool::new(false));
    let key = server.key.clone();
    let checker = tokio::spawn({
        let over = abuse_over.clone();
        let (anon, health, events) = (
            anon.clone(),
            server.url("/healthz"),
            server.url("/v1/events"),
        );
        async move {
            let (mut health_ok, mut ingested, mut slowest_health) =
                (0usize, 0usize, Duration::ZERO);
            let mut n = 0;
            while !over.load(Ordering::Relaxed) || n < 3 {
                n += 1;
                let started = Instant::now();
                let resp = tokio::time::timeout(HEALTH_WITHIN, anon.get(&health).send())
                    .await
                    .unwrap_or_else(|_| panic!("/healthz did not answer within {HEALTH_WITHIN:?}"))
                    .unwrap();
                assert_eq!(resp.status(), 200);
                slowest_health = slowest_health.max(started.elapsed());
                health_ok += 1;
                let batch = json!([{"specversion": "1.0", "id": format!("abuse-{n}"),
                    "source": "abuse-test", "type": "ci.run", "subject": "helios"}]);
                let resp = anon
                    .post(&events)
                    .bearer_auth(&key)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(batch.to_string())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
                ingested += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (health_ok, ingested, slowest_health)
        }
    });

    // 100 slowloris clients.
    let stop_slow = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..SLOWLORIS)
        .map(|_| tokio::spawn(slowloris(addr, stop_slow.clone(), cut.clone())))
        .collect();

    // The holder keeps its request alive while the flood runs.
    let keep_holding = Arc::new(AtomicBool::new(true));
    let (mut holder_rd, mut holder_wr) = holder.into_split();
    let holding = tokio::spawn({
        let (on, sent) = (keep_holding.clone(), holder_sent.clone());
        async move {
            while on.load(Ordering::Relaxed) {
                holder_wr.write_all(&ZEROS[..1024]).await.unwrap();
                sent.fetch_add(1024, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            holder_wr
        }
    });

    // 1000 concurrent unauthenticated 20 MiB bodies: half to the token route, half to
    // GitHub's HMAC route.
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let head = if i % 2 == 0 {
                token_head(FLOOD_BODY)
            } else {
                github_head(holder_path, FLOOD_BODY, &format!("flood-{i}"))
            };
            (i % 2 == 0, tokio::spawn(flood_one(addr, head)))
        })
        .collect();
    let (mut token_answers, mut github_answers, mut cut_off) = (0, 0, 0);
    for (token, task) in flood {
        match task.await.unwrap() {
            Ok((status, head)) if token => {
                assert_eq!(status, 401, "token route: {head}");
                token_answers += 1;
            }
            Ok((status, head)) => {
                assert_eq!(status, 503, "GitHub route while the budget is held: {head}");
                assert!(head.contains("retry-after: 1"), "{head}");
                github_answers += 1;
            }
            // Refused so early the answer was lost to the reset of the unread body.
            Err(_) => cut_off += 1,
        }
    }
    assert!(token_answers > 0 && github_answers > 0);

    // Every slowloris connection was cut off by the header timeout.
    let deadline = Instant::now() + Duration::from_secs(60);
    while cut.load(Ordering::Relaxed) < SLOWLORIS {
        assert!(
            Instant::now() < deadline,
            "only {} of {SLOWLORIS} slowloris connections were cut off",
            cut.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_slow.store(true, Ordering::Relaxed);
    for s in slow {
        s.await.unwrap();
    }

    // The holder finishes its body: read whole, then refused (bad signature), and the
    // budget is whole again: a small unverified body is read and refused, not turned away.
    keep_holding.store(false, Ordering::Relaxed);
    let mut holder_wr = holding.await.unwrap();
    let mut left = GITHUB_LIMIT - holder_sent.load(Ordering::Relaxed);
    while left > 0 {
        let n = left.min(ZEROS.len());
        holder_wr.write_all(&ZEROS[..n]).await.unwrap();
        left -= n;
    }
    let (status, head) = read_head(&mut holder_rd).await.unwrap();
    assert_eq!(status, 401, "{head}");
    let (status, _) = flood_one_sized(addr, github_head(holder_path, 10, "after"), 10)
        .await
        .unwrap();
    assert_eq!(status, 401);

    abuse_over.store(true, Ordering::Relaxed);
    let (health_ok, ingested, slowest_health) = checker.await.unwrap();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();

    // Webhooks still take real deliveries.
    let token = std::fs::read_to_string(data.join("secrets/webhook.token")).unwrap();
    let resp = anon
        .post(server.url("/v1/webhooks/webhook"))
        .bearer_auth(token.trim())
        .json(&json!({"kind": "deploy.finished", "subject": "helios"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let hwm = memory_kib(pid, "VmHWM");
    eprintln!(
        "http abuse: VmRSS before {} MiB, peak sampled {} MiB, VmHWM {} MiB (bound {} MiB); \
         token route 401s {token_answers}, GitHub 503s {github_answers}, cut off before \
         an answer {cut_off}; /healthz answered {health_ok} times (slowest {slowest_health:?}), \
         {ingested} ingest requests accepted",
        rss_before / 1024,
        peak_rss.load(Ordering::Relaxed) / 1024,
        hwm / 1024,
        MEMORY_BOUND_KIB / 1024,
    );
    assert!(
        hwm < MEMORY_BOUND_KIB,
        "helios peaked at {} MiB resident, over the bound of {} MiB",
        hwm / 1024,
        MEMORY_BOUND_KIB / 1024
    );
    assert!(health_ok >= 3 && ingested >= 3);

    // No secret in the log: the webhook token and GitHub secret never appear.
    let secret = std::fs::read_to_string(data.join("secrets/github.secret")).unwrap();
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap();
    assert!(
        !log.contains(token.trim()),
        "the webhook token is in the log"
    );
    assert!(
        !log.contains(secret.trim()),
        "the GitHub secret is in the log"
    );
    server.stop();
}

/// [`flood_one`] with a body of `len` bytes.
async fn flood_one_sized(
    addr: SocketAddr,
    head: String,
    len: usize,
) -> Result<(u16, String), String> {
    let mut conn = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    conn.write_all(&ZEROS[..len])
        .await
        .map_err(|e| e.to_string())?;
    read_head(&mut conn).await
}
