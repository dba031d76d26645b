//! Runs pull sources as supervised tasks: a failed source is restarted with exponential
//! backoff and jitter and its error shown in its status; one source failing never stops
//! the others.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use helios_schemas::Event;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::emitter::Emitter;
use super::status::{SourceHandle, SourceState, SourceStatus};
use crate::{ConnectorError, Result};

/// A source that produces events by itself (polling, tailing, probing, consuming).
#[async_trait]
pub trait PullSource: Send {
    /// Runs until `ctx` says to stop (then returns `Ok`). An `Err` ends this run; the
    /// supervisor logs it, shows it in the status and starts a fresh instance after a
    /// backoff.
    async fn run(&mut self, ctx: &SourceContext) -> Result<()>;
}

/// Makes a fresh instance of a source for every (re)start.
pub type SourceFactory = Box<dyn Fn() -> Result<Box<dyn PullSource>> + Send + Sync>;

/// What a running pull source can do.
#[derive(Debug, Clone)]
pub struct SourceContext {
    handle: SourceHandle,
    emitter: Emitter,
    shutdown: watch::Receiver<bool>,
    state_dir: PathBuf,
}

impl SourceContext {
    /// The source's status handle.
    pub fn handle(&self) -> &SourceHandle {
        &self.handle
    }

    /// The source's name from the spec.
    pub fn name(&self) -> &str {
        self.handle.name()
    }

    /// A folder for the source's own checkpoints (read positions, last seen commits);
    /// created on first use. Write files there atomically (temp file + rename).
    pub fn state_dir(&self) -> Result<&Path> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            ConnectorError::external(
                self.name(),
                format!("cannot create state dir {}: {e}", self.state_dir.display()),
            )
        })?;
        Ok(&self.state_dir)
    }

    /// Appends events (waiting first while the source is paused); returns once durable.
    pub async fn emit(&self, events: &[Event]) -> Result<()> {
        self.wait_while_paused().await?;
        self.emitter.emit(&self.handle, events).await.map(drop)
    }

    /// Sends bad input to the dead-letter topic. `id` must be deterministic for the input.
    pub async fn dead_letter(
        &self,
        id: String,
        original: Vec<u8>,
        reason: impl Into<String>,
    ) -> Result<()> {
        let reason = reason.into();
        warn!(source = self.name(), %reason, "Input sent to the dead-letter topic.");
        self.emitter
            .dead_letter(&self.handle, id, original, reason)
            .await
    }

    /// Reports a problem that does not stop the source (an unreadable file, a failed probe).
    pub fn report_error(&self, message: impl Into<String>) {
        let message = message.into();
        warn!(source = self.name(), error = %message, "Source problem.");
        self.handle.record_error(message);
    }

    /// Whether the supervisor asked sources to stop.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Sleeps for `d`; returns `false` early if shutdown was requested meanwhile.
    pub async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(d) => !self.is_shutting_down(),
            _ = rx.wait_for(|stop| *stop) => false,
        }
    }

    /// Resolves when shutdown is requested.
    pub async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    async fn wait_while_paused(&self) -> Result<()> {
        if !self.handle.is_paused() {
            return Ok(());
        }
        let mut rx = self.shutdown.clone();
        tokio::select! {
            () = self.handle.wait_resumed() => Ok(()),
            _ = rx.wait_for(|stop| *stop) => Err(ConnectorError::ShuttingDown),
        }
    }
}

/// Owns every source's status and runs the pull sources.
#[derive(Debug)]
pub struct Supervisor {
    emitter: Emitter,
    state_root: PathBuf,
    sources: RwLock<BTreeMap<String, SourceHandle>>,
    shutdown: watch::Sender<bool>,
    tasks: std::sync::Mutex<JoinSet<()>>,
    /// The processor's repeat counts, when one runs in this process.
    duplicates: RwLock<Option<Arc<dyn DuplicateCounts>>>,
}

/// Repeats of events the processor dropped, by the events' `source` (the processor runs
/// downstream of the sources; the binary connects the two when they share a process).
pub trait DuplicateCounts: Send + Sync + std::fmt::Debug {
    fn duplicates_by_source(&self) -> BTreeMap<String, u64>;
}

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Supervisor {
    /// `state_root` holds each source's state dir (`<state_root>/<name>`).
    pub fn new(emitter: Emitter, state_root: PathBuf) -> Arc<Self> {
        Arc::new(Supervisor {
            emitter,
            state_root,
            sources: RwLock::new(BTreeMap::new()),
            shutdown: watch::channel(false).0,
            tasks: std::sync::Mutex::new(JoinSet::new()),
            duplicates: RwLock::new(None),
        })
    }

    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    /// Registers a push source (an HTTP route) so it shows up and can be paused.
    pub fn register(&self, name: &str, kind: &str) -> Result<SourceHandle> {
        let mut sources = self.sources.write().unwrap_or_else(|p| p.into_inner());
        if sources.contains_key(name) {
            return Err(ConnectorError::DuplicateSource(name.to_string()));
        }
        let handle = SourceHandle::new(name, kind);
        sources.insert(name.to_string(), handle.clone());
        Ok(handle)
    }

    /// Starts a pull source under supervision.
    pub fn spawn(&self, name: &str, kind: &str, factory: SourceFactory) -> Result<SourceHandle> {
        let handle = self.register(name, kind)?;
        self.start(handle.clone(), factory);
        Ok(handle)
    }

    /// Starts a pull source registered with [`Supervisor::register`] (and configured
    /// through its handle) under supervision.
    pub fn start(&self, handle: SourceHandle, factory: SourceFactory) {
        let name = handle.name().to_string();
        let ctx = SourceContext {
            handle,
            emitter: self.emitter.clone(),
            shutdown: self.shutdown.subscribe(),
            state_dir: self.state_root.join(name),
        };
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(supervise(ctx, factory));
    }

    pub fn get(&self, name: &str) -> Result<SourceHandle> {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
        sources.get(name).cloned().ok_or_else(|| {
            // The name comes from a request path: an answer quotes a short one whole.
            let mut shown: String = name.chars().take(128).collect();
            if shown.len() < name.len() {
                shown.push('…');
            }
            ConnectorError::UnknownSource(shown)
        })
    }

    pub fn statuses(&self) -> Vec<SourceStatus> {
        let sources = self.sources.read().unwrap_or_else(|p| p.into_inner());
        sources.values().map(SourceHandle::status).collect()
    }

    /// Reports `counts` on `GET /v1/sources` from now on.
    pub fn set_duplicate_counts(&self, counts: Arc<dyn DuplicateCounts>) {
        *self.duplicates.write().unwrap_or_else(|p| p.into_inner()) = Some(counts);
    }

    /// The processor's repeats by event source; `None` when no processor runs here.
    pub fn duplicates(&self) -> Option<BTreeMap<String, u64>> {
        self.duplicates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|c| c.duplicates_by_source())
    }

    /// Asks every pull source to stop and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
    }
}

async fn supervise(ctx: SourceContext, factory: SourceFactory) {
    let mut backoff = BACKOFF_START;
    loop {
        let outcome = match factory() {
            Ok(mut source) => {
                ctx.handle.set_state(SourceState::Running);
                info!(
                    source = ctx.name(),
                    kind = ctx.handle.kind(),
                    "Source started."
                );
                source.run(&ctx).await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) | Err(ConnectorError::ShuttingDown) if ctx.is_shutting_down() => break,
            Ok(()) => {
                // A source that ends by itself has nothing more to do.
                break;
            }
            Err(e) => {
                ctx.handle.set_state(SourceState::Backoff);
                ctx.handle.record_error(e.to_string());
                ctx.handle.record_restart();
                let wait = jitter(backoff);
                warn!(source = ctx.name(), error = %e, fault = ?e.fault(), retry_in_ms = wait.as_millis() as u64, "Source failed; restarting after a backoff.");
                if !ctx.sleep(wait).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    ctx.handle.set_state(SourceState::Stopped);
    info!(source = ctx.name(), "Source stopped.");
}

/// ±25 % so sources failing together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Instant;

    use tokio::sync::Notify;

    use super::*;
    use crate::test_support::{LogFixture, wait_status};

    fn event(id: &str) -> Event {
        Event {
            id: id.to_string(),
            source: "test".to_string(),
            kind: "test.tick".to_string(),
            subject: "s".to_string(),
            time: 1,
            ..Event::default()
        }
    }

    /// Fails on its first two runs, then emits one event and waits for shutdown.
    struct Flaky {
        attempt: u32,
        starts: Arc<Mutex<Vec<Instant>>>,
    }

    #[async_trait]
    impl PullSource for Flaky {
        async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
            self.starts.lock().unwrap().push(Instant::now());
            if self.attempt < 2 {
                return Err(ConnectorError::external(
                    ctx.name(),
                    format!("failure {}", self.attempt),
                ));
            }
            ctx.emit(&[event("ok")]).await?;
            ctx.stopped().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_source_is_restarted_with_backoff() {
        let fx = LogFixture::new().await;
        let supervisor = fx.supervisor();
        let attempts = Arc::new(AtomicU32::new(0));
        let starts = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (attempts.clone(), starts.clone());
        let handle = supervisor
            .spawn(
                "flaky",
                "test",
                Box::new(move || {
                    Ok(Box::new(Flaky {
                        attempt: a.fetch_add(1, Ordering::SeqCst),
                        starts: s.clone(),
                    }) as Box<dyn PullSource>)
                }),
            )
            .unwrap();
        let status =
            wait_status(&handle, "the third run emitting", |s| s.events_emitted == 1).await;
        assert_eq!(status.state, SourceState::Running);
        assert_eq!(status.restarts, 2);
        assert_eq!(status.errors, 2);
        assert_eq!(
            status.last_error.as_deref(),
            Some("source `flaky`: failure 1")
        );
        // Backoff doubles from 500 ms, with at most 25 % jitter either way.
        let starts = starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 3);
        assert!(starts[1] - starts[0] >= BACKOFF_START.mul_f64(0.75));
        assert!(starts[2] - starts[1] >= (BACKOFF_START * 2).mul_f64(0.75));
        supervisor.shutdown().await;
        assert_eq!(handle.state(), SourceState::Stopped);
        assert_eq!(fx.events().await.len(), 1);
    }

    /// Emits one event, waits for `go`, emits a second.
    struct TwoStep {
        go: Arc<Notify>,
        second_done: Arc<AtomicBool>,
    }

    #[async_trait]
    impl PullSource for TwoStep {
        async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
            ctx.emit(&[event("first")]).await?;
            self.go.notified().await;
            ctx.emit(&[event("second")]).await?;
            self.second_done.store(true, Ordering::SeqCst);
            ctx.stopped().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_paused_source_waits_in_emit_until_resumed() {
        let fx = LogFixture::new().await;
        let supervisor = fx.supervisor();
        let go = Arc::new(Notify::new());
        let second_done = Arc::new(AtomicBool::new(false));
        let (g, d) = (go.clone(), second_done.clone());
        let handle = supervisor
            .spawn(
                "steps",
                "test",
                Box::new(move || {
                    Ok(Box::new(TwoStep {
                        go: g.clone(),
                        second_done: d.clone(),
                    }) as Box<dyn PullSource>)
                }),
            )
            .unwrap();
        wait_status(&handle, "the first event", |s| s.events_emitted == 1).await;
        handle.pause();
        assert_eq!(handle.state(), SourceState::Paused);
        go.notify_one();
        // A bounded look: while paused, the second emit does not get through.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!second_done.load(Ordering::SeqCst));
        assert_eq!(handle.status().events_emitted, 1);
        assert_eq!(fx.events().await.len(), 1);
        handle.resume();
        wait_status(&handle, "the second event", |s| s.events_emitted == 2).await;
        assert!(second_done.load(Ordering::SeqCst));
        assert_eq!(handle.state(), SourceState::Running);

        // Shutdown while paused ends a waiting emit instead of hanging.
        handle.pause();
        supervisor.shutdown().await;
        assert_eq!(handle.status().state, SourceState::Stopped);
    }

    /// Emits one event per run.
    struct Ticker;

    #[async_trait]
    impl PullSource for Ticker {
        async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
            ctx.emit(&[event("tick")]).await?;
            ctx.stopped().await;
            Ok(())
        }
    }

    /// A pull source on a nearly full disk writes nothing: its append fails with the
    /// reason, which its status shows, and the supervisor retries it with backoff.
    #[tokio::test]
    async fn a_pull_source_on_a_nearly_full_disk_writes_nothing_and_says_why() {
        let fx = LogFixture::new().await;
        let emitter = fx.emitter_with(super::super::EmitterConfig {
            disk: Some(super::super::DiskGuard::new(fx.dir.path(), u64::MAX)),
            ..super::super::EmitterConfig::default()
        });
        let supervisor = Supervisor::new(emitter, fx.dir.path().join("sources"));
        let handle = supervisor
            .spawn(
                "ticker",
                "test",
                Box::new(|| Ok(Box::new(Ticker) as Box<dyn PullSource>)),
            )
            .unwrap();
        let status = wait_status(&handle, "a refused run", |s| s.errors >= 1).await;
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("nearly full"), "{error}");
        assert_eq!(status.events_emitted, 0);
        supervisor.shutdown().await;
        assert!(fx.events().await.is_empty());
    }
}
