//! Host metrics: owns sampling this machine's CPU, load, memory, swap, disk usage per
//! mount and network traffic per interface, and turning each figure into one `Event`.
//!
//! The figures come straight from `/proc` (and `statvfs` for disks) rather than from the
//! `sysinfo` crate: the handful of files needed are stable kernel interfaces, reading them
//! costs no extra compile time or dependency tree, and the parsers are small pure functions
//! tested on captured text. The price is that this source works on Linux only; elsewhere
//! each sample reports the missing `/proc` in the source's status.
//!
//! Kinds (value in brackets): `host.cpu` (busy % over the interval), `host.load1`,
//! `host.load5`, `host.load15`, `host.memory_used` / `host.memory_total` (bytes),
//! `host.memory_used_pct`, `host.swap_used` / `host.swap_total` (bytes),
//! `host.disk_used` / `host.disk_total` (bytes) / `host.disk_used_pct` (attr `mount`),
//! `host.net_rx_bytes` / `host.net_tx_bytes` (bytes during the interval, attr
//! `interface`). CPU and network figures are differences, so they start with the second
//! sample. Ids are `host/kind/dimension@time`, identical for identical samples.

mod config;
mod proc;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use helios_schemas::Event;
use tracing::debug;

pub use config::HostConfig;
use proc::{CpuTimes, NetCounters};

use crate::runtime::{PullSource, SourceContext, now_micros};
use crate::{ConnectorError, Result};

/// Filesystem types that hold no user data; their mounts are skipped by default.
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// The running host metrics source.
#[derive(Debug)]
pub struct HostSource {
    config: HostConfig,
    sampler: Sampler,
}

impl HostSource {
    pub fn new(config: HostConfig) -> Self {
        HostSource {
            config,
            sampler: Sampler::new(PathBuf::from("/proc")),
        }
    }
}

#[async_trait]
impl PullSource for HostSource {
    async fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let host = match &self.config.hostname {
            Some(h) => h.clone(),
            None => self.sampler.hostname(),
        };
        loop {
            let time = now_micros();
            // statvfs on a hung network mount blocks, so sampling runs off the runtime.
            let mut sampler = std::mem::replace(&mut self.sampler, Sampler::new(PathBuf::new()));
            let config = self.config.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let sample = sampler.sample(&config);
                (sampler, sample)
            })
            .await;
            let (sampler, sample) = joined.map_err(|e| {
                ConnectorError::external(ctx.name(), format!("sampling the host failed: {e}"))
            })?;
            self.sampler = sampler;
            for problem in &sample.problems {
                ctx.report_error(problem.clone());
            }
            let events: Vec<Event> = sample
                .metrics
                .into_iter()
                .map(|m| m.into_event(ctx.name(), &host, time))
                .collect();
            debug!(source = ctx.name(), events = events.len(), "Host sampled.");
            ctx.emit(&events).await?;
            if !ctx.sleep(self.config.interval).await {
                return Ok(());
            }
        }
    }
}

/// One figure of one sample.
#[derive(Debug, Clone, PartialEq)]
struct Metric {
    kind: &'static str,
    value: f64,
    /// `("mount", "/")` or `("interface", "eth0")` for per-mount and per-interface figures.
    dimension: Option<(&'static str, String)>,
}

impl Metric {
    fn new(kind: &'static str, value: f64) -> Self {
        Metric {
            kind,
            value,
            dimension: None,
        }
    }

    fn with(kind: &'static str, value: f64, key: &'static str, dim: &str) -> Self {
        Metric {
            kind,
            value,
            dimension: Some((key, dim.to_string())),
        }
    }

    fn into_event(self, source: &str, host: &str, time: i64) -> Event {
        let mut attrs = BTreeMap::new();
        let dim = match self.dimension {
            Some((key, value)) => {
                let dim = value.clone();
                attrs.insert(key.to_string(), value);
                dim
            }
            None => String::new(),
        };
        Event {
            id: format!("{host}/{}/{dim}@{time}", self.kind),
            source: source.to_string(),
            kind: self.kind.to_string(),
            subject: host.to_string(),
            time,
            received_at: time,
            attrs,
            value: Some(self.value),
            payload: None,
        }
    }
}

/// What one sample found, and what could not be read.
#[derive(Debug, Default)]
struct Sample {
    metrics: Vec<Metric>,
    problems: Vec<String>,
}

/// Reads `/proc` and keeps the previous counters that CPU and network figures need.
#[derive(Debug)]
struct Sampler {
    proc_root: PathBuf,
    prev_cpu: Option<CpuTimes>,
    prev_net: BTreeMap<String, NetCounters>,
}

impl Sampler {
    fn new(proc_root: PathBuf) -> Self {
        Sampler {
            proc_root,
            prev_cpu: None,
            prev_net: BTreeMap::new(),
        }
    }

    fn read(&self, file: &str, sample: &mut Sample) -> Option<String> {
        let path = self.proc_root.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) => {
                sample.problems.push(format!(
                    "cannot read {} ({e}); host metrics need Linux's /proc",
                    path.display()
                ));
                None
            }
        }
    }

    fn hostname(&self) -> String {
        std::fs::read_to_string(self.proc_root.join("sys/kernel/hostname"))
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }

    fn sample(&mut self, config: &HostConfig) -> Sample {
        let mut s = Sample::default();
        if let Some(text) = self.read("stat", &mut s) {
            match proc::parse_cpu(&text) {
                Some(now) => {
                    if let Some(busy) = self.prev_cpu.and_then(|prev| now.busy_pct_since(&prev)) {
                        s.metrics.push(Metric::new("host.cpu", busy));
                    }
                    self.prev_cpu = Some(now);
                }
                None => s.problems.push("/proc/stat has no `cpu` line".to_string()),
            }
        }
        if let Some(text) = self.read("loadavg", &mut s) {
            match proc::parse_loadavg(&text) {
                Some([l1, l5, l15]) => s.metrics.extend([
                    Metric::new("host.load1", l1),
                    Metric::new("host.load5", l5),
                    Metric::new("host.load15", l15),
                ]),
                None => s
                    .problems
                    .push(format!("cannot parse /proc/loadavg: {text:?}")),
            }
        }
        if let Some(text) = self.read("meminfo", &mut s) {
            let mem = proc::parse_meminfo(&text);
            match (mem.get("MemTotal"), mem.get("MemAvailable")) {
                (Some(&total), Some(&available)) => {
                    let used = total.saturating_sub(available);
                    s.metrics.extend([
                        Metric::new("host.memory_used", used as f64),
                        Metric::new("host.memory_total", total as f64),
                        Metric::new("host.memory_used_pct", pct(used, total)),
                    ]);
                }
                _ => s
                    .problems
                    .push("/proc/meminfo lacks MemTotal or MemAvailable".to_string()),
            }
            if let (Some(&total), Some(&free)) = (mem.get("SwapTotal"), mem.get("SwapFree")) {
                s.metrics.extend([
                    Metric::new("host.swap_used", total.saturating_sub(free) as f64),
                    Metric::new("host.swap_total", total as f64),
                ]);
            }
        }
        if let Some(text) = self.read("self/mounts", &mut s) {
            self.disks(config, &text, &mut s);
        }
        if let Some(text) = self.read("net/dev", &mut s) {
            let now = proc::parse_net_dev(&text);
            for (iface, counters) in &now {
                let wanted = if config.interfaces.is_empty() {
                    iface != "lo"
                } else {
                    config.interfaces.iter().any(|i| i == iface)
                };
                if !wanted {
                    continue;
                }
                if let Some(prev) = self.prev_net.get(iface) {
                    // A counter going down means the interface was reset; skip one sample.
                    if let (Some(rx), Some(tx)) = (
                        counters.rx_bytes.checked_sub(prev.rx_bytes),
                        counters.tx_bytes.checked_sub(prev.tx_bytes),
                    ) {
                        s.metrics.extend([
                            Metric::with("host.net_rx_bytes", rx as f64, "interface", iface),
                            Metric::with("host.net_tx_bytes", tx as f64, "interface", iface),
                        ]);
                    }
                }
            }
            self.prev_net = now;
        }
        s
    }

    fn disks(&self, config: &HostConfig, mounts: &str, s: &mut Sample) {
        let mut seen = std::collections::BTreeSet::new();
        for m in proc::parse_mounts(mounts) {
            let wanted = if config.mounts.is_empty() {
                !PSEUDO_FS.contains(&m.fs_type.as_str())
            } else {
                config.mounts.contains(&m.mount_point)
            };
            if !wanted || !seen.insert(m.mount_point.clone()) {
                continue;
            }
            match rustix::fs::statvfs(m.mount_point.as_str()) {
                Ok(st) => {
                    let frsize = st.f_frsize;
                    let total = st.f_blocks.saturating_mul(frsize);
                    if total == 0 {
                        continue;
                    }
                    let used = st
                        .f_blocks
                        .saturating_sub(st.f_bfree)
                        .saturating_mul(frsize);
                    let avail = st.f_bavail.saturating_mul(frsize);
                    // As `df` does: the share of what non-root users can use.
                    let used_pct = pct(used, used.saturating_add(avail));
                    s.metrics.extend([
                        Metric::with("host.disk_used", used as f64, "mount", &m.mount_point),
                        Metric::with("host.disk_total", total as f64, "mount", &m.mount_point),
                        Metric::with("host.disk_used_pct", used_pct, "mount", &m.mount_point),
                    ]);
                }
                Err(e) => {
                    // Mounts the process may not see into (other users' FUSE mounts) are
                    // only worth a problem report when they were asked for explicitly.
                    if !config.mounts.is_empty() {
                        s.problems
                            .push(format!("cannot statvfs mount {}: {e}", m.mount_point));
                    }
                }
            }
        }
        for wanted in &config.mounts {
            if !seen.contains(wanted) {
                s.problems.push(format!(
                    "mount point {wanted} from `mounts` is not mounted; check the spelling"
                ));
            }
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
