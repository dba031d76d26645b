//! `helios send`: post an NDJSON file of CloudEvents to a running Helios.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// Post CloudEvents from an NDJSON file (one event per line) to `POST /v1/events`.
///
/// Lines are sent in batches, several requests at a time; `503` and `429` answers are
/// retried after their Retry-After. Prints a summary and lists rejected lines; exits non-zero if any
/// event was rejected or could not be delivered.
///
/// Helios asks for an API key with the `ingest` (or `admin`) scope: create one with
/// `helios keys create --scope ingest` and pass it with --api-key or HELIOS_API_KEY.
///
/// Examples:
///   export HELIOS_API_KEY=$(helios keys create --scope ingest --name laptop)
///   helios send events.ndjson
///   cat events.ndjson | helios send - --url http://127.0.0.1:8080 --batch 500 --api-key hel_…
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SendArgs {
    /// NDJSON file of CloudEvents, or `-` for standard input.
    pub file: PathBuf,

    /// Base URL of Helios.
    #[arg(long, env = "HELIOS_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Events per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,

    /// API key (`ingest` or `admin` scope), sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "HELIOS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    accepted: usize,
    #[serde(default)]
    rejected: Vec<RejectedItem>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RejectedItem {
    index: usize,
    #[serde(default)]
    field: Option<String>,
    error: String,
}

/// What one batch came to.
#[derive(Debug, Default)]
struct Outcome {
    accepted: usize,
    /// (line number, message)
    rejected: Vec<(usize, String)>,
    failed: Option<String>,
    events: usize,
}

const MAX_ATTEMPTS: u32 = 10;

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let mut raw = Vec::new();
    if args.file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut raw)
            .context("reading standard input")?;
    } else {
        raw = std::fs::read(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
    }
    // (file line numbers, body) per batch; blank lines are skipped, so the server's item
    // index maps back to a line through the list.
    let mut batches: Vec<(Vec<usize>, Bytes)> = Vec::new();
    let mut body = Vec::new();
    let mut lines = Vec::new();
    let mut total = 0usize;
    for (n, line) in raw.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        body.extend_from_slice(line);
        body.push(b'\n');
        lines.push(n + 1);
        total += 1;
        if lines.len() == args.batch as usize {
            batches.push((
                std::mem::take(&mut lines),
                Bytes::from(std::mem::take(&mut body)),
            ));
        }
    }
    if !lines.is_empty() {
        batches.push((lines, Bytes::from(body)));
    }
    if total == 0 {
        bail!(
            "{} holds no events (expected one CloudEvent JSON object per line)",
            args.file.display()
        );
    }

    let endpoint = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let client = crate::backend::http_client_builder()?
        .timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")?;
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("static template"),
    );
    let started = Instant::now();
    let ctx = Arc::new((client, endpoint, args.api_key.clone()));
    let mut outcomes = futures::stream::iter(batches.into_iter().map(|(lines, body)| {
        let ctx = ctx.clone();
        async move { post_batch(&ctx.0, &ctx.1, ctx.2.as_deref(), &lines, body).await }
    }))
    .buffer_unordered(args.concurrency as usize);

    let mut summary = Outcome::default();
    let mut failures = Vec::new();
    while let Some(o) = outcomes.next().await {
        progress.inc(o.events as u64);
        summary.accepted += o.accepted;
        summary.rejected.extend(o.rejected);
        if let Some(f) = o.failed {
            failures.push((o.events, f));
        }
    }
    progress.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let failed: usize = failures.iter().map(|(n, _)| n).sum();
    println!(
        "sent {total} events in {secs:.2}s ({:.0} events/s): {} accepted, {} rejected, {failed} not delivered",
        total as f64 / secs.max(1e-9),
        summary.accepted,
        summary.rejected.len()
    );
    summary.rejected.sort();
    for (line, msg) in summary.rejected.iter().take(20) {
        println!("  line {line}: {msg}");
    }
    if summary.rejected.len() > 20 {
        println!(
            "  … and {} more rejected lines",
            summary.rejected.len() - 20
        );
    }
    for (n, msg) in failures.iter().take(5) {
        println!("  a batch of {n} events was not delivered: {msg}");
    }
    if !summary.rejected.is_empty() || failed > 0 {
        bail!("not every event was accepted");
    }
    Ok(())
}

async fn post_batch(
    client: &reqwest::Client,
    endpoint: &str,
    api_key: Option<&str>,
    lines: &[usize],
    body: Bytes,
) -> Outcome {
    let mut outcome = Outcome {
        events: lines.len(),
        ..Outcome::default()
    };
    for attempt in 1..=MAX_ATTEMPTS {
        let mut req = client
            .post(endpoint)
            .header("content-type", "application/x-ndjson")
            .body(body.clone());
        if let Some(key) = api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            // Retrying cannot make an untrusted certificate trusted.
            Err(e) if attempt < MAX_ATTEMPTS && helios_schemas::tls::tls_failure(&e).is_none() => {
                tracing::debug!(error = %e, attempt, "Request failed; retrying.");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            Err(e) => {
                // A TLS failure says so, and which settings mend it (--ca-file for a
                // certificate we do not trust, --client-cert-file for one refused).
                let why = match helios_schemas::tls::tls_failure(&e) {
                    Some(tls) => format!("{tls} ({}): {e}", tls.process_settings()),
                    None => format!("{e} (is Helios running at {endpoint}?)"),
                };
                outcome.failed = Some(why);
                return outcome;
            }
        };
        let status = resp.status();
        // 503: ingest busy or paused; 429: this key's rate limit. Both say when to retry.
        if matches!(status.as_u16(), 429 | 503) && attempt < MAX_ATTEMPTS {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map_or_else(|| backoff(attempt), Duration::from_secs);
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = resp.text().await.unwrap_or_default();
        let answer: Option<Answer> = serde_json::from_str(&text).ok();
        match (status.as_u16(), answer) {
            (202 | 400, Some(a)) if status.as_u16() == 202 || !a.rejected.is_empty() => {
                outcome.accepted = a.accepted;
                outcome.rejected = a
                    .rejected
                    .into_iter()
                    .map(|r| {
                        let field = r
                            .field
                            .map(|f| format!(" (field `{f}`)"))
                            .unwrap_or_default();
                        let line = lines.get(r.index).copied().unwrap_or(0);
                        (line, format!("{}{field}", r.error))
                    })
                    .collect();
            }
            (_, a) => {
                let msg = match a {
                    Some(Answer {
                        error: Some(error),
                        hint,
                        ..
                    }) => match hint {
                        Some(hint) => format!("{error} ({hint})"),
                        None => error,
                    },
                    _ => text,
                };
                outcome.failed = Some(format!("HTTP {status}: {msg}"));
            }
        }
        return outcome;
    }
    outcome
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(6)))
}
