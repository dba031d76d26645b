//! What each source reports: its state, counters, last event time and last error.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

/// Lifecycle of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceState {
    Starting,
    Running,
    Paused,
    /// Failed and waiting to be restarted.
    Backoff,
    Stopped,
}

/// How a request to a push route (HTTP ingest, webhooks) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// `202`: events durable on the log.
    Accepted,
    /// `400`: an unreadable body or no valid event in it.
    Invalid,
    /// `413`: the body is over the limit.
    TooLarge,
    /// `415`: a content type the route does not read.
    UnsupportedMediaType,
    /// `503`: the source is paused.
    Paused,
    /// `503`: too many requests in flight.
    Busy,
    /// `503`: appending to the log failed.
    LogError,
    /// `507`: the data dir's disk is nearly full; nothing was written.
    DiskFull,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 8] = [
        RequestOutcome::Accepted,
        RequestOutcome::Invalid,
        RequestOutcome::TooLarge,
        RequestOutcome::UnsupportedMediaType,
        RequestOutcome::Paused,
        RequestOutcome::Busy,
        RequestOutcome::LogError,
        RequestOutcome::DiskFull,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Accepted => "accepted",
            RequestOutcome::Invalid => "invalid",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::UnsupportedMediaType => "unsupported_media_type",
            RequestOutcome::Paused => "paused",
            RequestOutcome::Busy => "busy",
            RequestOutcome::LogError => "log_error",
            RequestOutcome::DiskFull => "disk_full",
        }
    }
}

/// Request counters of a push source, for `/metrics`. Pull sources leave them at zero.
#[derive(Debug, Default)]
pub struct RequestStats {
    outcomes: [AtomicU64; RequestOutcome::ALL.len()],
    events_accepted: AtomicU64,
    events_rejected: AtomicU64,
}

impl RequestStats {
    pub fn record(&self, outcome: RequestOutcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the events of one request: durable ones and invalid items.
    pub fn record_events(&self, accepted: usize, rejected: usize) {
        self.events_accepted
            .fetch_add(accepted as u64, Ordering::Relaxed);
        self.events_rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    /// Requests that ended with `outcome`.
    pub fn requests(&self, outcome: RequestOutcome) -> u64 {
        self.outcomes[outcome as usize].load(Ordering::Relaxed)
    }

    /// Events accepted (durable) and rejected (invalid items).
    pub fn events(&self) -> (u64, u64) {
        (
            self.events_accepted.load(Ordering::Relaxed),
            self.events_rejected.load(Ordering::Relaxed),
        )
    }
}

/// A snapshot for `GET /v1/sources`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SourceStatus {
    /// The source's `name` in the spec.
    pub name: String,
    /// The connector: `http`, `host`, `file`, `probe`, `git`, `github`, `webhook` or
    /// `kafka_bridge`.
    #[serde(rename = "type")]
    pub kind: String,
    pub state: SourceState,
    /// Events written to the log since the process started.
    pub events_emitted: u64,
    /// Records or requests that became dead letters (with their reason).
    pub dead_letters: u64,
    /// Failures of the source itself (a pull source then restarts after a backoff).
    pub errors: u64,
    /// Restarts after a failure.
    pub restarts: u64,
    /// Event time of the newest emitted event, µs since the epoch.
    pub last_event_time: Option<i64>,
    pub last_error: Option<String>,
}

/// A source's shared status; cheap to clone.
#[derive(Debug, Clone)]
pub struct SourceHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    kind: String,
    state: Mutex<SourceState>,
    paused: watch::Sender<bool>,
    events: AtomicU64,
    dead_letters: AtomicU64,
    errors: AtomicU64,
    restarts: AtomicU64,
    last_event_time: AtomicI64,
    last_error: Mutex<Option<String>>,
    requests: RequestStats,
    /// The source's own event-time bound in µs; `u64::MAX`: the emitter's default.
    max_future_us: AtomicU64,
}

impl SourceHandle {
    pub fn new(name: &str, kind: &str) -> Self {
        SourceHandle {
            inner: Arc::new(Inner {
                name: name.to_string(),
                kind: kind.to_string(),
                state: Mutex::new(SourceState::Starting),
                paused: watch::channel(false).0,
                events: AtomicU64::new(0),
                dead_letters: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
                last_event_time: AtomicI64::new(i64::MIN),
                last_error: Mutex::new(None),
                requests: RequestStats::default(),
                max_future_us: AtomicU64::new(u64::MAX),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn kind(&self) -> &str {
        &self.inner.kind
    }

    /// Sets the source's own `max_future` (`None`: the emitter's default applies).
    pub fn set_max_future(&self, max_future: Option<std::time::Duration>) {
        let us = max_future.map_or(u64::MAX, |d| {
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX - 1)
        });
        self.inner.max_future_us.store(us, Ordering::Relaxed);
    }

    /// The source's own `max_future`, if it has one.
    pub fn max_future(&self) -> Option<std::time::Duration> {
        match self.inner.max_future_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(std::time::Duration::from_micros(us)),
        }
    }

    pub fn set_state(&self, state: SourceState) {
        *self.inner.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn state(&self) -> SourceState {
        let state = *self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_paused() && state == SourceState::Running {
            SourceState::Paused
        } else {
            state
        }
    }

    /// Counts emitted events and remembers the newest event time.
    pub fn record_events(&self, count: usize, newest_event_time: Option<i64>) {
        self.inner.events.fetch_add(count as u64, Ordering::Relaxed);
        if let Some(t) = newest_event_time {
            self.inner.last_event_time.fetch_max(t, Ordering::Relaxed);
        }
    }

    pub fn record_dead_letter(&self) {
        self.inner.dead_letters.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers a problem (shown in the status) without changing the state.
    pub fn record_error(&self, message: impl Into<String>) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
        *self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(message.into());
    }

    /// Request counters (push sources).
    pub fn requests(&self) -> &RequestStats {
        &self.inner.requests
    }

    pub fn record_restart(&self) {
        self.inner.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    pub fn is_paused(&self) -> bool {
        *self.inner.paused.borrow()
    }

    /// Waits until the source is not paused.
    pub async fn wait_resumed(&self) {
        let mut rx = self.inner.paused.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|paused| !paused).await;
    }

    pub fn status(&self) -> SourceStatus {
        let t = self.inner.last_event_time.load(Ordering::Relaxed);
        SourceStatus {
            name: self.inner.name.clone(),
            kind: self.inner.kind.clone(),
            state: self.state(),
            events_emitted: self.inner.events.load(Ordering::Relaxed),
            dead_letters: self.inner.dead_letters.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
            restarts: self.inner.restarts.load(Ordering::Relaxed),
            last_event_time: (t != i64::MIN).then_some(t),
            last_error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}
