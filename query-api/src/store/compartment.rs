//! The query compartment: every read the API runs for a caller (`POST /v1/sql`, the
//! insights routes) is parsed, planned and executed here, on a tokio runtime of its own —
//! a few worker threads with large stacks — never on the threads that serve ingest,
//! webhooks and `/healthz`. A query that eats its threads' CPU or stack costs the
//! compartment, not the process.
//!
//! - At most `max_concurrent` queries run at once; up to `max_queued` more wait (at most
//!   their time limit) and anything beyond is refused at once with [`ApiError::Busy`]
//!   (`429` with `Retry-After`).
//! - A query past its time limit is aborted ([`tokio::task::JoinHandle::abort`]): its future
//!   and the DataFusion streams in it are dropped, so their spawned tasks end and their
//!   memory is freed; the caller gets a `422` naming the limit. A caller that goes away
//!   aborts its query the same way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{Dialect, Limits, ReadStore, Sql, Table};
use crate::error::{ApiError, Result};

/// How big the compartment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompartmentConfig {
    /// Worker threads of the compartment's runtime.
    pub threads: usize,
    /// Stack size of each worker thread, in bytes.
    pub stack_bytes: usize,
    /// Queries running at once.
    pub max_concurrent: usize,
    /// Queries waiting for a slot; more than this is a `429`.
    pub max_queued: usize,
}

impl Default for CompartmentConfig {
    fn default() -> Self {
        CompartmentConfig {
            threads: 4,
            stack_bytes: 64 * 1024 * 1024,
            max_concurrent: 4,
            max_queued: 16,
        }
    }
}

/// The runtime and admission control of the query compartment.
pub struct Compartment {
    runtime: Option<Runtime>,
    handle: Handle,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    config: CompartmentConfig,
}

impl std::fmt::Debug for Compartment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compartment")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Compartment {
    fn drop(&mut self) {
        // Dropping a runtime blocks; this may run inside the API's own runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Aborts the task when the caller stops waiting for it (time limit, client gone).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Compartment {
    /// Starts the compartment's threads.
    pub fn new(config: CompartmentConfig) -> Result<Self> {
        if config.threads == 0 || config.max_concurrent == 0 {
            return Err(ApiError::bad(
                "the query compartment needs at least one thread and one concurrent query",
                "set --sql-threads and --sql-max-concurrent to 1 or more",
            ));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .max_blocking_threads(config.threads.max(2) * 2)
            .thread_stack_size(config.stack_bytes.max(2 * 1024 * 1024))
            .thread_name("helios-query")
            .enable_all()
            .build()
            .map_err(|e| ApiError::Store {
                reason: format!("starting the query compartment's threads: {e}"),
            })?;
        Ok(Compartment {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            queued: AtomicUsize::new(0),
            config,
        })
    }

    /// The compartment's size.
    pub fn config(&self) -> CompartmentConfig {
        self.config
    }

    /// Runs `work` in the compartment within `timeout` (waiting for a slot included).
    pub async fn run<T, F, Fut>(&self, timeout: Duration, work: F) -> Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let started = tokio::time::Instant::now();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::SeqCst) >= self.config.max_queued {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Err(self.busy());
                }
                let waited =
                    tokio::time::timeout(timeout, self.slots.clone().acquire_owned()).await;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(self.busy()),
                }
            }
        };
        let left = timeout.saturating_sub(started.elapsed());
        let mut task = AbortOnDrop(self.handle.spawn(async move {
            // The slot is held by the task, so a query that does not stop at once when
            // aborted still counts until it does.
            let _permit = permit;
            work().await
        }));
        match tokio::time::timeout(left, &mut task.0).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.is_panic() => {
                tracing::error!(error = %e, "a query panicked in the query compartment");
                Err(ApiError::Store {
                    reason: "the query failed inside the query engine (a bug; see the log)"
                        .to_owned(),
                })
            }
            Ok(Err(_)) => Err(ApiError::Unavailable {
                reason: "the query compartment is shutting down".to_owned(),
            }),
            Err(_) => {
                task.0.abort();
                Err(time_limit(timeout))
            }
        }
    }

    fn busy(&self) -> ApiError {
        ApiError::Busy {
            error: format!(
                "too many queries: {} run at once and {} may wait (--sql-max-concurrent, --sql-max-queued)",
                self.config.max_concurrent, self.config.max_queued
            ),
            hint: "retry after the time in Retry-After".to_owned(),
            retry_after_secs: 1,
        }
    }
}

/// The answer to a query stopped at its time limit.
pub fn time_limit(timeout: Duration) -> ApiError {
    ApiError::over_limit(
        format!(
            "the query went over the time limit of {} s (--sql-timeout) and was cancelled",
            timeout.as_secs_f64()
        ),
        "narrow the time range or the tables read, or aggregate more",
    )
}

/// A store whose every query runs in a [`Compartment`].
#[derive(Debug, Clone)]
pub struct CompartmentStore {
    inner: Arc<dyn ReadStore>,
    compartment: Arc<Compartment>,
}

impl CompartmentStore {
    pub fn new(inner: Arc<dyn ReadStore>, compartment: Arc<Compartment>) -> Self {
        CompartmentStore { inner, compartment }
    }
}

#[async_trait]
impl ReadStore for CompartmentStore {
    fn dialect(&self) -> Dialect {
        self.inner.dialect()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn query(&self, sql: &Sql, limits: Limits) -> Result<Table> {
        let (inner, sql) = (self.inner.clone(), sql.clone());
        self.compartment
            .run(limits.timeout, move || async move {
                inner.query(&sql, limits).await
            })
            .await
    }

    async fn query_text(&self, sql: &str, limits: Limits) -> Result<Table> {
        let (inner, sql) = (self.inner.clone(), sql.to_owned());
        self.compartment
            .run(limits.timeout, move || async move {
                inner.query_text(&sql, limits).await
            })
            .await
    }

    async fn ready(&self) -> Result<()> {
        // `SELECT 1`, on the caller's threads: readiness must not queue behind queries.
        self.inner.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Compartment {
        Compartment::new(CompartmentConfig {
            threads: 1,
            stack_bytes: 4 * 1024 * 1024,
            max_concurrent: 1,
            max_queued: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn runs_on_its_own_threads() {
        let c = small();
        let name = c
            .run(Duration::from_secs(5), || async {
                Ok(std::thread::current().name().map(str::to_owned))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("helios-query"));
    }

    #[tokio::test]
    async fn a_query_past_its_time_is_aborted_and_frees_its_slot() {
        let c = Arc::new(small());
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        struct Flag(Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let e = c
            .run(Duration::from_millis(200), move || async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::OverLimit { .. }), "{e:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the task was not dropped"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The slot is free again.
        let ok = c
            .run(Duration::from_secs(5), || async { Ok(7) })
            .await
            .unwrap();
        assert_eq!(ok, 7);
    }

    #[tokio::test]
    async fn beyond_the_queue_is_busy() {
        let c = Arc::new(small());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = {
            let c = c.clone();
            tokio::spawn(async move {
                c.run(Duration::from_secs(30), move || async move {
                    let _ = rx.await;
                    Ok(1)
                })
                .await
            })
        };
        // Wait until the first query holds the one slot.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while c.slots.available_permits() > 0 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let queued = {
            let c = c.clone();
            tokio::spawn(async move { c.run(Duration::from_secs(30), || async { Ok(2) }).await })
        };
        while c.queued.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let e = c
            .run(Duration::from_secs(30), || async { Ok(3) })
            .await
            .unwrap_err();
        assert!(matches!(e, ApiError::Busy { .. }), "{e:?}");
        assert_eq!(e.status().as_u16(), 429);
        tx.send(()).unwrap();
        assert_eq!(running.await.unwrap().unwrap(), 1);
        assert_eq!(queued.await.unwrap().unwrap(), 2);
    }
}
