//! Supervision of the stages running inside one process (sources, pipeline, sink,
//! notifier, listeners): what stops the process, and what happens when a stage stops on
//! its own.
//!
//! A stage ends by itself only on an error it cannot retry (ClickHouse rejecting rows, a
//! checkpoint that cannot be written). A process that went on serving without it would
//! look healthy while storing or computing nothing, so the first such error stops the whole
//! process, the other stages cleanly, and it exits non-zero: Docker, Kubernetes or systemd
//! restart it, and it resumes from the committed offsets and checkpoints.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;
use tracing::error;

/// The first stage error of a process, shared by the stages and the command that waits.
#[derive(Debug, Clone, Default)]
pub struct Failures(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    first: watch::Sender<Option<String>>,
    /// Set once Ctrl-C or SIGTERM asked the process to stop: a stage that fails while
    /// shutting down (a store still down) is logged by the shutdown, not a reason to exit
    /// non-zero.
    stopping: AtomicBool,
}

impl Failures {
    /// Records that `stage` stopped on `error`; only the first report is kept.
    pub fn report(&self, stage: &str, error: &dyn Display) {
        if self.0.stopping.load(Ordering::SeqCst) {
            return;
        }
        let reason = format!("the {stage} stopped on an error: {error}");
        self.0.first.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            error!(stage, error = %error,
                "A stage stopped on an error; stopping the process so that its supervisor restarts it.");
            *first = Some(reason);
            true
        });
    }

    /// Waits for the first report and returns it.
    pub async fn first(&self) -> String {
        let mut rx = self.0.first.subscribe();
        let reason = rx.wait_for(Option::is_some).await.map(|r| r.clone());
        // The sender lives in `self`, so the channel cannot close while this waits.
        reason.ok().flatten().unwrap_or_default()
    }

    /// The first report, if a stage has failed.
    pub fn get(&self) -> Option<String> {
        self.0.first.borrow().clone()
    }

    /// Waits for Ctrl-C or SIGTERM, or for a stage to fail, whichever comes first.
    pub async fn stop_requested(&self) {
        tokio::select! {
            _ = shutdown_signal() => self.stopping(),
            _ = self.first() => {}
        }
    }

    /// The process was asked to stop: later stage errors are part of shutting down.
    fn stopping(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }

    /// After the process has shut down: an error naming the failed stage, if one failed.
    pub fn outcome(&self) -> anyhow::Result<()> {
        match self.get() {
            Some(reason) => Err(anyhow::anyhow!(
                "{reason}. Everything else was stopped cleanly; start Helios again to resume \
                 from the committed offsets and checkpoints (see docs/runbooks/)"
            )),
            None => Ok(()),
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_failure_wakes_the_waiter_and_later_ones_are_ignored() {
        let failures = Failures::default();
        assert!(failures.get().is_none());
        assert!(failures.outcome().is_ok());
        let waiter = {
            let f = failures.clone();
            tokio::spawn(async move { f.first().await })
        };
        failures.report("sink", &"ClickHouse rejected the rows");
        failures.report("notifier", &"a later error");
        let first = waiter.await.unwrap();
        assert_eq!(
            first,
            "the sink stopped on an error: ClickHouse rejected the rows"
        );
        let err = failures.outcome().unwrap_err().to_string();
        assert!(err.starts_with("the sink stopped on an error"), "{err}");
        assert!(err.contains("start Helios again"), "{err}");
    }

    #[test]
    fn errors_while_shutting_down_on_request_do_not_fail_the_process() {
        let failures = Failures::default();
        failures.stopping();
        failures.report("sink", &"ClickHouse unreachable while flushing");
        assert!(failures.get().is_none());
        assert!(failures.outcome().is_ok());
    }
}
