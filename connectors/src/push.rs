//! What the push routes share: admission for every one of them, HTTP ingest included (a
//! paused source or a full route answers `503` with `Retry-After`, a nearly full disk
//! `507`); and for the webhook
//! routes (GitHub, generic) JSON error answers, the event-time bound
//! (events dated more than `max_future` after receipt become dead letters, named in the
//! answer), and appending the mapped events with the `202` sent only once they are durable.
//!
//! Deliveries are small (one event each, for GitHub), so appending each on its own would
//! cost one log append (a blocking-pool hop, a write, a wait for fsync) per request.
//! Instead, requests hand their events to a few appender tasks, each of which takes every
//! delivery waiting at that moment and appends them as one batch; while one batch waits
//! for its fsync the next one gathers. Every request is still answered only once its own
//! events are durable.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use helios_schemas::Event;
use serde::Serialize;
use std::sync::{Arc, OnceLock};

use tokio::sync::{Mutex, Semaphore, SemaphorePermit, mpsc, oneshot};
use tracing::{Instrument, warn};
use utoipa::ToSchema;

use crate::ConnectorError;
use crate::runtime::{DiskGuard, Emitter, RequestOutcome, SourceHandle, SourceState};

/// Appender tasks per push source: one batch can wait for its fsync while the next one
/// is written.
const APPENDERS: usize = 4;
/// Most events appended in one batch.
const MAX_BATCH_EVENTS: usize = 2048;

/// Events of one request and where to report the outcome.
struct Job {
    events: Vec<Event>,
    /// The request's trace context, written on each of its records (empty when traces
    /// are not exported).
    trace: Vec<(String, Bytes)>,
    done: oneshot::Sender<Result<(), AppendFailed>>,
}

/// The one admission path of every push route (HTTP ingest, webhooks): a paused source
/// answers `503` with `Retry-After: 5`, a nearly full disk `507` with `Retry-After: 10`
/// before the body is read, a route with `max_in_flight` requests already appending
/// answers `503` with `Retry-After: 1` instead of queueing without limit in memory. Each
/// is counted in the source's request outcomes.
#[derive(Debug)]
pub(crate) struct Admission {
    source: SourceHandle,
    in_flight: Semaphore,
    disk: Option<DiskGuard>,
}

/// Why a request was not admitted, and the answer to send.
#[derive(Debug)]
pub(crate) struct Refused {
    /// The route is full (as opposed to the source being paused).
    pub busy: bool,
    pub response: Box<Response>,
}

impl Admission {
    /// `disk`: the free-space check of the emitter the route appends with.
    pub fn new(source: SourceHandle, max_in_flight: usize, disk: Option<DiskGuard>) -> Self {
        Admission {
            source,
            in_flight: Semaphore::new(max_in_flight),
            disk,
        }
    }

    /// A permit to process one request, or the `503` to answer.
    pub fn admit(&self) -> Result<SemaphorePermit<'_>, Refused> {
        if self.source.is_paused() {
            self.source.requests().record(RequestOutcome::Paused);
            let name = self.source.name();
            return Err(Refused {
                busy: false,
                response: Box::new(retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "source `{name}` is paused; resume it with POST /v1/sources/{name}/resume"
                        ),
                    ),
                    "5",
                )),
            });
        }
        if let Some(Err(low)) = self.disk.as_ref().map(DiskGuard::check) {
            self.source.requests().record(RequestOutcome::DiskFull);
            return Err(Refused {
                busy: false,
                response: Box::new(disk_full(&ConnectorError::DiskFull(low))),
            });
        }
        self.in_flight.try_acquire().map_err(|_| {
            self.source.requests().record(RequestOutcome::Busy);
            Refused {
                busy: true,
                response: Box::new(retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ingest is at capacity; retry after the delay in Retry-After",
                    ),
                    "1",
                )),
            }
        })
    }

    /// Requests that may be appending at once.
    pub fn capacity(&self) -> usize {
        self.in_flight.available_permits()
    }
}

/// Admission, status and emitter of one webhook source.
#[derive(Debug)]
pub(crate) struct PushGate {
    pub source: SourceHandle,
    pub emitter: Emitter,
    admission: Admission,
    /// Channel to the appender tasks, started on first use (inside the runtime).
    appenders: OnceLock<mpsc::Sender<Job>>,
}

impl PushGate {
    pub fn new(source: SourceHandle, emitter: Emitter, max_in_flight: usize) -> Self {
        source.set_state(SourceState::Running);
        PushGate {
            admission: Admission::new(source.clone(), max_in_flight, emitter.disk().cloned()),
            source,
            emitter,
            appenders: OnceLock::new(),
        }
    }

    fn appenders(&self) -> &mpsc::Sender<Job> {
        self.appenders.get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>(self.admission.capacity().max(1));
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..APPENDERS {
                tokio::spawn(append_loop(
                    rx.clone(),
                    self.emitter.clone(),
                    self.source.clone(),
                ));
            }
            tx
        })
    }

    /// A permit to process one request, or the `503` to answer ([`Admission::admit`]).
    pub fn admit(&self) -> Result<SemaphorePermit<'_>, Box<Response>> {
        self.admission.admit().map_err(|refused| refused.response)
    }

    /// Appends `events` (batched with concurrent requests); answers `202` once they are
    /// durable, `503` if the log failed. Events dated more than the source's `max_future`
    /// after receipt go to the dead-letter topic instead, listed in the answer as
    /// `dead_lettered` (id and reason): a sender retrying would only repeat them.
    pub async fn emit(&self, mut events: Vec<Event>) -> Response {
        let refused = match self
            .emitter
            .dead_letter_too_far_ahead(&self.source, &mut events)
            .await
        {
            Ok(refused) => refused,
            Err(e) if e.is_disk_full() => {
                self.source.requests().record(RequestOutcome::DiskFull);
                return disk_full(&e);
            }
            Err(e) => {
                self.source.requests().record(RequestOutcome::LogError);
                return retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the delivery could not be written to the log ({e}); nothing was acknowledged, retry the delivery"
                        ),
                    ),
                    "1",
                );
            }
        };
        if !refused.is_empty() {
            self.source.requests().record_events(0, refused.len());
        }
        let dead_lettered: Vec<DeadLettered> = refused
            .into_iter()
            .map(|r| DeadLettered {
                id: r.id,
                reason: r.reason,
            })
            .collect();
        if events.is_empty() && !dead_lettered.is_empty() {
            self.source.requests().record(RequestOutcome::Accepted);
            let body = Delivered {
                accepted: 0,
                ids: Vec::new(),
                dead_lettered,
            };
            return (StatusCode::ACCEPTED, axum::Json(body)).into_response();
        }
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        // The delivery's span roots its events' traces; only made when traces are exported.
        let span = if helios_log::trace_propagation_enabled() {
            tracing::info_span!(
                "ingest.request",
                source = self.source.name(),
                accepted = ids.len(),
            )
        } else {
            tracing::Span::none()
        };
        let trace = helios_log::trace_headers(&span);
        let (done, outcome) = oneshot::channel();
        let outcome = async {
            let sent = self
                .appenders()
                .send(Job {
                    events,
                    trace,
                    done,
                })
                .await;
            match sent {
                Ok(()) => outcome
                    .await
                    .unwrap_or_else(|_| Err(AppendFailed::stopped())),
                Err(_) => Err(AppendFailed::stopped()),
            }
        }
        .instrument(span)
        .await;
        let requests = self.source.requests();
        match outcome {
            Ok(()) => {
                requests.record(RequestOutcome::Accepted);
                requests.record_events(ids.len(), 0);
                let body = Delivered {
                    accepted: ids.len(),
                    ids,
                    dead_lettered,
                };
                (StatusCode::ACCEPTED, axum::Json(body)).into_response()
            }
            Err(AppendFailed::DiskFull(message)) => {
                requests.record(RequestOutcome::DiskFull);
                disk_full_answer(message)
            }
            Err(AppendFailed::Other(e)) => {
                requests.record(RequestOutcome::LogError);
                retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the events could not be written to the log ({e}); nothing was acknowledged, retry the delivery"
                        ),
                    ),
                    "1",
                )
            }
        }
    }
}

/// Why an appender did not write a job's events.
#[derive(Debug, Clone)]
enum AppendFailed {
    /// The disk is (nearly) full: the `507` message to answer.
    DiskFull(String),
    Other(String),
}

impl AppendFailed {
    fn stopped() -> Self {
        AppendFailed::Other("the appender stopped".to_string())
    }
}

/// Takes every job waiting, appends their events as one batch, answers each job.
async fn append_loop(rx: Arc<Mutex<mpsc::Receiver<Job>>>, emitter: Emitter, source: SourceHandle) {
    let mut jobs = Vec::new();
    let mut events = Vec::new();
    let mut headers: Vec<Vec<(String, Bytes)>> = Vec::new();
    loop {
        {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut count = first.events.len();
            jobs.push(first);
            while count < MAX_BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(job) => {
                        count += job.events.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        events.clear();
        headers.clear();
        let traced = jobs.iter().any(|j| !j.trace.is_empty());
        for job in &mut jobs {
            if traced {
                headers.extend(std::iter::repeat_n(job.trace.clone(), job.events.len()));
            }
            events.append(&mut job.events);
        }
        let appended = emitter.emit_traced(&source, &events, &headers).await;
        let outcome = appended.map(drop).map_err(|e| {
            source.record_error(e.to_string());
            warn!(source = source.name(), events = events.len(), error = %e, "Appending webhook events failed.");
            if e.is_disk_full() {
                AppendFailed::DiskFull(disk_full_message(&e))
            } else {
                AppendFailed::Other(e.to_string())
            }
        });
        for job in jobs.drain(..) {
            let _ = job.done.send(outcome.clone());
        }
    }
}

/// The `202` of a webhook delivery: the events it became, durable in the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivered {
    /// Events written.
    pub accepted: usize,
    /// Their ids, in order (a repeat of an id is dropped by the processor).
    pub ids: Vec<String>,
    /// Events written to the dead-letter topic instead (dated too far ahead); absent when
    /// none. A sender retrying would only repeat them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dead_lettered: Vec<DeadLettered>,
}

/// An event of a delivery that went to the dead-letter topic.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLettered {
    pub id: String,
    /// Why, as its dead letter says.
    pub reason: String,
}

/// Every error answer of the push routes: what was wrong and what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushError {
    pub error: String,
}

/// `{"error": message}` with `status`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = PushError {
        error: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

/// The answer of every push route while the data dir's disk is (nearly) full: `507
/// Insufficient Storage`, the reason and what to do, and when to try again.
pub(crate) fn disk_full(e: &ConnectorError) -> Response {
    disk_full_answer(disk_full_message(e))
}

fn disk_full_answer(message: String) -> Response {
    retry_after(error(StatusCode::INSUFFICIENT_STORAGE, message), "10")
}

/// What [`disk_full`] says: the guard's reason, or for a write that ran out of space
/// anyway (the check raced another writer) the same advice.
fn disk_full_message(e: &ConnectorError) -> String {
    match e {
        ConnectorError::DiskFull(low) => low.to_string(),
        other => format!(
            "the disk of the data dir is full ({other}); nothing was written. Free space on \
             that disk or lower the retention (docs/runbooks/disk-full-embedded-log.md); \
             ingest resumes by itself once the space is back"
        ),
    }
}

fn retry_after(mut resp: Response, seconds: &'static str) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    resp
}

/// What the webhook tests share: a real embedded log, an emitter over it, and reading
/// back exactly what was written.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use helios_log::embedded::{EmbeddedConfig, EmbeddedLog};
    use helios_log::{ConsumerConfig, Log, TopicSpec};
    use helios_schemas::{DeadLetter, Event, EventCodec, RecordCodec};
    use tower::ServiceExt;

    use crate::runtime::{Emitter, EmitterConfig, Supervisor};
    pub(crate) use crate::test_support::wait_status;

    const SCHEMA_ID: u32 = 7;

    pub struct LogFixture {
        _dir: tempfile::TempDir,
        pub log: Log,
        pub emitter: Emitter,
    }

    pub async fn log_fixture() -> LogFixture {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), EmbeddedConfig::default())
            .unwrap()
            .log();
        for (topic, partitions) in [("helios.events", 3), ("helios.dlq", 1)] {
            log.admin()
                .create_topic(&TopicSpec::new(topic, partitions))
                .await
                .unwrap();
        }
        let emitter = Emitter::new(
            EmitterConfig::default(),
            log.producer(),
            EventCodec::new(SCHEMA_ID),
            RecordCodec::new(SCHEMA_ID + 1),
        );
        LogFixture {
            _dir: dir,
            log,
            emitter,
        }
    }

    impl LogFixture {
        /// A supervisor writing to this log.
        pub fn supervisor(&self) -> Arc<Supervisor> {
            Supervisor::new(self.emitter.clone(), self._dir.path().join("sources"))
        }

        /// Every dead letter written so far.
        pub async fn dead_letters(&self) -> Vec<DeadLetter> {
            let mut c = self
                .log
                .consumer(
                    &["helios.dlq"],
                    ConsumerConfig::new(format!("check-{}", rand::random::<u64>())),
                )
                .await
                .unwrap();
            let codec = RecordCodec::<DeadLetter>::new(SCHEMA_ID + 1);
            let mut out = Vec::new();
            loop {
                let batch = c.poll(1000, Duration::from_millis(100)).await.unwrap();
                if batch.is_empty() {
                    return out;
                }
                out.extend(batch.iter().map(|r| codec.decode(&r.value).unwrap()));
            }
        }

        /// Every event on `helios.events`, decoded, ordered by id (partitions interleave).
        pub async fn events(&self) -> Vec<Event> {
            let mut c = self
                .log
                .consumer(
                    &["helios.events"],
                    ConsumerConfig::new(format!("check-{}", rand::random::<u64>())),
                )
                .await
                .unwrap();
            let codec = EventCodec::new(SCHEMA_ID);
            let mut out = Vec::new();
            loop {
                let batch = c.poll(1000, Duration::from_millis(100)).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                for r in batch {
                    let e = codec.decode(&r.value).unwrap();
                    assert_eq!(
                        r.key.as_deref(),
                        Some(e.subject.as_bytes()),
                        "keyed by subject"
                    );
                    out.push(e);
                }
            }
            out.sort_by(|a, b| a.id.cmp(&b.id));
            out
        }
    }

    /// Sends one request through `router`; returns status, JSON body and Retry-After.
    pub async fn send(
        router: &Router,
        req: Request<Body>,
    ) -> (StatusCode, serde_json::Value, Option<String>) {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("JSON body, got {bytes:?}"));
        (status, value, retry)
    }
}
