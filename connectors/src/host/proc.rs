//! Parsers of the `/proc` files the host source reads; pure functions over the text.

use std::collections::BTreeMap;

/// Jiffies from the aggregate `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CpuTimes {
    pub total: u64,
    pub idle: u64,
}

impl CpuTimes {
    /// Busy share in % between `prev` and `self`; `None` when no time passed.
    pub fn busy_pct_since(&self, prev: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(prev.total)?;
        let idle = self.idle.checked_sub(prev.idle)?;
        if total == 0 {
            return None;
        }
        Some(total.saturating_sub(idle) as f64 * 100.0 / total as f64)
    }
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`; guest time is
/// already part of user time, so only the first eight fields add up to the total.
pub(super) fn parse_cpu(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        total: fields.iter().sum(),
        idle,
    })
}

/// `0.52 0.58 0.59 1/467 12345`.
pub(super) fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    Some([it.next()?.ok()?, it.next()?.ok()?, it.next()?.ok()?])
}

/// `MemTotal:       16314600 kB` lines, as bytes.
pub(super) fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (key, rest) = l.split_once(':')?;
            let mut parts = rest.split_whitespace();
            let n: u64 = parts.next()?.parse().ok()?;
            let factor = match parts.next() {
                Some("kB") => 1024,
                None => 1,
                Some(_) => return None,
            };
            Some((key.trim().to_string(), n.saturating_mul(factor)))
        })
        .collect()
}

/// Byte counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NetCounters {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// `/proc/net/dev`: two header lines, then `iface: rx_bytes packets … tx_bytes …`
/// (receive bytes is field 0, transmit bytes field 8 after the colon).
pub(super) fn parse_net_dev(text: &str) -> BTreeMap<String, NetCounters> {
    text.lines()
        .filter_map(|l| {
            let (iface, rest) = l.split_once(':')?;
            let fields: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((
                iface.trim().to_string(),
                NetCounters {
                    rx_bytes: *fields.first()?,
                    tx_bytes: *fields.get(8)?,
                },
            ))
        })
        .collect()
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mount {
    pub mount_point: String,
    pub fs_type: String,
}

/// `device mount_point fs_type options 0 0`; spaces and other bytes in paths are written
/// as octal escapes (`\040`).
pub(super) fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _device = parts.next()?;
            let mount_point = unescape_octal(parts.next()?);
            let fs_type = parts.next()?.to_string();
            Some(Mount {
                mount_point,
                fs_type,
            })
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = (bytes[i] == b'\\' && i + 3 < bytes.len())
            .then(|| &bytes[i + 1..i + 4])
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .and_then(|d| {
                let n = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
                u8::try_from(n).ok()
            });
        if let Some(code) = code {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
