//! Settings of the host metrics source.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[[source]] type = "host"` in the spec: this machine's CPU, load, memory, swap, disk
/// and network figures, one event per metric per interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Name of the source in `/v1/sources` and the `source` of its events. Default `host`.
    pub name: String,
    /// Time between two samples, such as `10s`. Default `10s`.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// Subject of the events. Default: the machine's host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mount points whose disk usage is reported. Default (empty): every mounted
    /// filesystem that stores data (not `proc`, `sysfs`, `tmpfs`, `cgroup`, …).
    pub mounts: Vec<String>,
    /// Network interfaces whose traffic is reported. Default (empty): all but loopback.
    pub interfaces: Vec<String>,
    /// Refuse events dated more than this after Helios received them (they go to the
    /// dead-letter topic with the reason; `POST /v1/events` rejects the item instead), so
    /// one event from the far future cannot move the watermark. Default: the process's
    /// `--max-future` (`HELIOS_MAX_FUTURE`, 15m).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_future: Option<std::time::Duration>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            name: "host".to_string(),
            interval: Duration::from_secs(10),
            hostname: None,
            mounts: Vec::new(),
            interfaces: Vec::new(),
            max_future: None,
        }
    }
}

impl HostConfig {
    /// Checks the settings; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() {
            return Err("`interval` must be positive, such as `10s`".into());
        }
        if self
            .hostname
            .as_deref()
            .is_some_and(|h| h.trim().is_empty())
        {
            return Err("`hostname` must not be empty; leave it out to use the machine's".into());
        }
        Ok(())
    }
}
