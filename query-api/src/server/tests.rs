//! The accept loop over real sockets: header-read and idle timeouts close connections,
//! the cap holds connections back until one closes, shutdown finishes requests in flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

struct Started {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    /// A message each time `/slow` starts.
    slow_started: tokio::sync::mpsc::UnboundedReceiver<()>,
}

async fn start(config: ServerConfig) -> Started {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (started, slow_started) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/slow",
            get(move || async move {
                let _ = started.send(());
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, app, config, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Started {
        addr,
        stop,
        server,
        slow_started,
    }
}

fn config(header: Duration, idle: Duration, max: usize) -> ServerConfig {
    ServerConfig {
        header_read_timeout: header,
        idle_timeout: idle,
        max_connections: max,
        ..ServerConfig::default()
    }
}

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";

/// Reads until the peer closes; `true` when it did before the deadline.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads one whole answer (head and `content-length` body); returns its status line.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return head.lines().next().unwrap().to_owned();
            }
        }
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn a_head_trickled_past_the_header_timeout_is_closed() {
    let Started {
        addr, stop: _stop, ..
    } = start(config(
        Duration::from_millis(300),
        Duration::from_secs(60),
        16,
    ))
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // One byte, then nothing more of the head: the server gives up on it.
    slow.write_all(b"G").await.unwrap();
    assert!(
        closed_by_peer(&mut slow).await,
        "the slow head was not cut off"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A complete head in time is answered, and the connection is kept for the next one.
    let mut fine = TcpStream::connect(addr).await.unwrap();
    for _ in 0..2 {
        fine.write_all(GET).await.unwrap();
        assert_eq!(status_line(&mut fine).await, "HTTP/1.1 200 OK");
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is long, so only the idle timeout can close it.
    let Started {
        addr, stop: _stop, ..
    } = start(config(
        Duration::from_secs(60),
        Duration::from_millis(300),
        16,
    ))
    .await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(GET).await.unwrap();
    assert_eq!(status_line(&mut conn).await, "HTTP/1.1 200 OK");
    let started = Instant::now();
    assert!(
        closed_by_peer(&mut conn).await,
        "the idle connection stayed open"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let Started {
        addr, stop: _stop, ..
    } = start(config(Duration::from_secs(60), Duration::from_secs(60), 2)).await;
    // Two connections that send nothing hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        // Prove it is being served (and so holds a slot): a request is answered.
        c.write_all(GET).await.unwrap();
        assert_eq!(status_line(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }
    // The third connects (the kernel queues it) but is not served while both are held.
    let mut third = TcpStream::connect(addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
            .await
            .is_err(),
        "a connection over the cap was served"
    );
    // One held connection closes: the waiting one is accepted and answered.
    drop(held.pop());
    assert_eq!(status_line(&mut third).await, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_then_returns() {
    let Started {
        addr,
        stop,
        server,
        mut slow_started,
    } = start(config(Duration::from_secs(60), Duration::from_secs(60), 16)).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /slow HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // An idle kept-alive connection does not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert_eq!(status_line(&mut idle).await, "HTTP/1.1 200 OK");
    slow_started.recv().await.unwrap();
    stop.send(()).unwrap();
    assert_eq!(status_line(&mut conn).await, "HTTP/1.1 200 OK");
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("serve returned after its connections closed")
        .unwrap();
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn public_routes_get_the_host_check() {
    let Started {
        addr, stop: _stop, ..
    } = start(ServerConfig::default()).await;
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: rebound.example\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        status_line(&mut conn).await,
        "HTTP/1.1 421 Misdirected Request"
    );
}
