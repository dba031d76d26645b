//! Logging setup; the only place a tracing subscriber is installed.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Structured logs to stderr (stdout is for command output such as `helios tail`).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
