//! Load client for the GitHub webhook benchmark (`bench/webhooks.sh`).
//!
//! Posts signed GitHub `push` deliveries to `POST /v1/webhooks/github/{source}` as fast as
//! the server answers, over `--connections` keep-alive HTTP/1.1 connections, for
//! `--seconds`. The payload and its signature are computed once (the signature covers the
//! body only); each request differs by its `X-GitHub-Delivery` id, so every delivery is a
//! distinct event. The requests are written as raw HTTP/1.1 to keep the client's own CPU
//! cost low; the client reports its CPU time so the benchmark can state its share.
//!
//! Usage: webhook_load --addr 127.0.0.1:8080 --source github --secret S --payload push.json
//!        [--connections 64] [--seconds 10]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    source: String,
    secret: String,
    payload: String,
    connections: usize,
    seconds: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".into(),
        source: "github".into(),
        secret: String::new(),
        payload: String::new(),
        connections: 64,
        seconds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench`; ignore it.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => args.addr = value,
            "--source" => args.source = value,
            "--secret" => args.secret = value,
            "--payload" => args.payload = value,
            "--connections" => {
                args.connections = value.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.secret.is_empty() || args.payload.is_empty() {
        return Err("--secret and --payload are required".into());
    }
    Ok(args)
}

/// CPU time (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the stat line, i.e. 11 and 12 after `)`.
    // The clock tick is 100 Hz on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    busy: AtomicU64,
}

/// Sends deliveries on one connection until `stop`.
async fn connection(
    id: usize,
    args: Arc<Args>,
    body: Arc<Vec<u8>>,
    signature: Arc<String>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(&args.addr).await?;
    stream.set_nodelay(true)?;
    let head_prefix = format!(
        "POST /v1/webhooks/github/{} HTTP/1.1\r\nhost: {}\r\nuser-agent: GitHub-Hookshot/bench\r\n\
         content-type: application/json\r\nx-github-event: push\r\nx-hub-signature-256: {}\r\n\
         content-length: {}\r\nx-github-delivery: ",
        args.source,
        args.addr,
        signature,
        body.len()
    );
    let mut request = Vec::with_capacity(head_prefix.len() + 64 + body.len());
    let mut response = vec![0u8; 64 * 1024];
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        request.clear();
        request.extend_from_slice(head_prefix.as_bytes());
        request.extend_from_slice(format!("bench-{id}-{n}\r\n\r\n").as_bytes());
        request.extend_from_slice(&body);
        stream.write_all(&request).await?;
        // Read one response: headers, then content-length bytes of body.
        let mut filled = 0;
        let (status, total) = loop {
            let read = stream.read(&mut response[filled..]).await?;
            if read == 0 {
                return Err(std::io::Error::other("server closed the connection"));
            }
            filled += read;
            let Some(end) = find(&response[..filled], b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&response[..end]).unwrap_or("");
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            break (status, end + 4 + len);
        };
        while filled < total {
            let read = stream.read(&mut response[filled..]).await?;
            if read == 0 {
                return Err(std::io::Error::other("server closed the connection"));
            }
            filled += read;
        }
        match status {
            202 => counters.accepted.fetch_add(1, Ordering::Relaxed),
            503 => counters.busy.fetch_add(1, Ordering::Relaxed),
            _ => counters.refused.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("webhook_load: {e}");
            std::process::exit(2);
        }
    };
    let body = std::fs::read(&args.payload).unwrap_or_else(|e| {
        eprintln!("webhook_load: cannot read {}: {e}", args.payload);
        std::process::exit(2);
    });
    let mut mac = Hmac::<Sha256>::new_from_slice(args.secret.as_bytes()).expect("any key size");
    mac.update(&body);
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature = Arc::new(format!("sha256={signature}"));
    let body = Arc::new(body);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let cpu_start = cpu_seconds();
        let started = Instant::now();
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| {
                tokio::spawn(connection(
                    i,
                    args.clone(),
                    body.clone(),
                    signature.clone(),
                    stop.clone(),
                    counters.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut failures = 0;
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failures += 1;
                    eprintln!("webhook_load: connection failed: {e}");
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("webhook_load: connection task failed: {e}");
                }
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_start;
        let accepted = counters.accepted.load(Ordering::Relaxed);
        println!(
            "deliveries_accepted={accepted} busy_503={} refused={} failed_connections={failures} \
             payload_bytes={} seconds={elapsed:.2} deliveries_per_s={:.0} client_cpu_s={cpu:.2} \
             client_cpu_share_of_machine={:.1}%",
            counters.busy.load(Ordering::Relaxed),
            counters.refused.load(Ordering::Relaxed),
            body.len(),
            accepted as f64 / elapsed,
            100.0 * cpu
                / (elapsed * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
        );
    });
}
