//! Parsers on captured `/proc` text, and the source against this machine's real `/proc`
//! writing into a real embedded log.

use std::time::Duration;

use super::proc::{self, CpuTimes, Mount, NetCounters};
use super::{HostConfig, HostSource};
use crate::runtime::PullSource;
use crate::test_support::LogFixture;

const STAT: &str = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 3 0\nintr 1 2 3\n";
const MEMINFO: &str = "MemTotal:       16000 kB\nMemFree:         2000 kB\nMemAvailable:    6000 kB\nSwapTotal:       1000 kB\nSwapFree:         250 kB\nHugePages_Total:       0\n";
const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0\n  eth0: 123456    100    0    0    0     0          0         0    65432      90    0    0    0     0       0          0\n";
const MOUNTS: &str = "/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/sdb1 /mnt/my\\040disk xfs rw 0 0\n";

#[test]
fn parses_proc_files() {
    assert_eq!(
        proc::parse_cpu(STAT),
        Some(CpuTimes {
            total: 100 + 5 + 50 + 800 + 40 + 3 + 2,
            idle: 840
        })
    );
    assert_eq!(proc::parse_cpu("intr 1 2\n"), None);
    assert_eq!(
        proc::parse_loadavg("0.52 1.50 2.00 1/467 12345\n"),
        Some([0.52, 1.5, 2.0])
    );
    assert_eq!(proc::parse_loadavg("garbage"), None);
    let mem = proc::parse_meminfo(MEMINFO);
    assert_eq!(mem["MemTotal"], 16000 * 1024);
    assert_eq!(mem["MemAvailable"], 6000 * 1024);
    assert_eq!(mem["HugePages_Total"], 0);
    let net = proc::parse_net_dev(NET_DEV);
    assert_eq!(net.len(), 2);
    assert_eq!(
        net["eth0"],
        NetCounters {
            rx_bytes: 123456,
            tx_bytes: 65432
        }
    );
    assert_eq!(
        proc::parse_mounts(MOUNTS),
        vec![
            Mount {
                mount_point: "/".into(),
                fs_type: "ext4".into()
            },
            Mount {
                mount_point: "/proc".into(),
                fs_type: "proc".into()
            },
            Mount {
                mount_point: "/mnt/my disk".into(),
                fs_type: "xfs".into()
            },
        ]
    );
}

#[test]
fn cpu_busy_share_is_a_difference() {
    let prev = CpuTimes {
        total: 1000,
        idle: 800,
    };
    let now = CpuTimes {
        total: 1200,
        idle: 950,
    };
    assert_eq!(now.busy_pct_since(&prev), Some(25.0));
    assert_eq!(prev.busy_pct_since(&prev), None);
    assert_eq!(prev.busy_pct_since(&now), None, "counters going back");
}

/// Two samples of the real machine, through the supervisor, into a real log.
#[tokio::test]
async fn samples_this_machine_twice() {
    let fx = LogFixture::new().await;
    let supervisor = fx.supervisor();
    let config = HostConfig {
        interval: Duration::from_millis(300),
        hostname: Some("box".to_string()),
        ..HostConfig::default()
    };
    let c = config.clone();
    supervisor
        .spawn(
            "host",
            "host",
            Box::new(move || Ok(Box::new(HostSource::new(c.clone())) as Box<dyn PullSource>)),
        )
        .unwrap();
    let events = fx
        .wait_events("three host samples", |ev| {
            // The third sample is appended after the second is durable, so the second is
            // complete once a third time shows up.
            ev.iter()
                .map(|e| e.time)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 3
        })
        .await;
    supervisor.shutdown().await;

    let times: std::collections::BTreeSet<i64> = events.iter().map(|e| e.time).collect();
    assert!(times.len() >= 3, "three sample times: {times:?}");
    let first = *times.iter().next().unwrap();
    let first_kinds: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.time == first)
        .map(|e| e.kind.as_str())
        .collect();
    for kind in [
        "host.load1",
        "host.load5",
        "host.load15",
        "host.memory_used",
        "host.memory_total",
        "host.memory_used_pct",
        "host.swap_used",
        "host.swap_total",
        "host.disk_used",
        "host.disk_total",
        "host.disk_used_pct",
    ] {
        assert!(
            first_kinds.contains(kind),
            "{kind} in the first sample: {first_kinds:?}"
        );
    }
    assert!(
        !first_kinds.contains("host.cpu"),
        "no CPU share without a previous sample"
    );
    for e in &events {
        assert_eq!(e.subject, "box");
        assert_eq!(e.source, "host");
        assert!(e.kind.starts_with("host."), "{e:?}");
        let value = e.value.expect("every metric has a value");
        assert!(value.is_finite() && value >= 0.0, "{e:?}");
        let dim = e
            .attrs
            .get("mount")
            .or_else(|| e.attrs.get("interface"))
            .map_or("", String::as_str);
        assert_eq!(e.id, format!("box/{}/{dim}@{}", e.kind, e.time));
    }
    // The CPU figure needs two samples, so it appears with the second one.
    let second = *times.iter().nth(1).unwrap();
    let cpu = events
        .iter()
        .find(|e| e.kind == "host.cpu" && e.time == second)
        .expect("CPU share in the second sample");
    assert!((0.0..=100.0).contains(&cpu.value.unwrap()), "{cpu:?}");
    let total = events
        .iter()
        .find(|e| e.kind == "host.memory_total")
        .unwrap();
    let used = events
        .iter()
        .find(|e| e.kind == "host.memory_used")
        .unwrap();
    assert!(total.value.unwrap() > 0.0 && used.value.unwrap() <= total.value.unwrap());
    assert!(
        events
            .iter()
            .filter(|e| e.kind == "host.disk_total")
            .all(|e| e.attrs.contains_key("mount"))
    );
    // Ids are unique: one event per metric, dimension and sample.
    let ids: std::collections::BTreeSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), events.len());
    // The interfaces this machine has (besides loopback) get traffic figures from the
    // second sample on.
    let net = std::fs::read_to_string("/proc/net/dev").unwrap();
    let ifaces: Vec<String> = proc::parse_net_dev(&net)
        .into_keys()
        .filter(|i| i != "lo")
        .collect();
    for iface in &ifaces {
        assert!(
            events.iter().any(|e| e.time == second
                && e.kind == "host.net_rx_bytes"
                && e.attrs["interface"] == *iface),
            "rx bytes of {iface} in the second sample"
        );
    }
}
