//! A private clickhouse-server for end-to-end tests that stop and restart it, started
//! through `scripts/services/clickhouse.sh` (so the shared server of `scripts/test` is
//! never disturbed), and a small HTTP query helper for any server.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A clickhouse-server of this test's own: data and logs under a temp dir, free loopback
/// ports. Stopped when dropped.
pub struct OwnClickHouse {
    /// `http://127.0.0.1:<port>`, the same across restarts.
    pub url: String,
    pid: String,
    dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services/clickhouse.sh")
}

/// The `export NAME=value` lines `clickhouse.sh start|restart` prints.
fn exports(out: &str) -> (String, String, PathBuf) {
    let get = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("clickhouse.sh printed no {name}: {out}"))
            .to_owned()
    };
    (
        get("HELIOS_TEST_CLICKHOUSE"),
        get("HELIOS_CLICKHOUSE_PID"),
        PathBuf::from(get("HELIOS_CLICKHOUSE_DIR")),
    )
}

fn run_script(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("bash");
    cmd.arg(script()).args(args);
    // A fixed port would collide with the shared server; let the script pick a free one.
    cmd.env_remove("HELIOS_TEST_CLICKHOUSE_PORT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scripts/services/clickhouse.sh");
    assert!(
        out.status.success(),
        "clickhouse.sh {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl OwnClickHouse {
    /// Starts a new server with its data and logs under `parent`.
    pub fn start(parent: &Path) -> OwnClickHouse {
        let out = run_script(&["start"], &[("HELIOS_TEST_TMP", parent.to_str().unwrap())]);
        let (url, pid, dir) = exports(&out);
        OwnClickHouse { url, pid, dir }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s) and waits until it is gone.
    pub fn stop(&self) {
        run_script(&["stop"], &[("HELIOS_CLICKHOUSE_PID", &self.pid)]);
    }

    /// Starts the stopped server again: same data dir, same ports.
    pub fn restart(&mut self) {
        let out = run_script(&["restart", self.dir.to_str().unwrap()], &[]);
        let (url, pid, _) = exports(&out);
        assert_eq!(url, self.url, "restarted on another port");
        self.pid = pid;
    }

    /// Runs `sql` in `database` and returns the answer's text; `None` when the server
    /// cannot be reached or refuses the query (the caller decides whether to wait).
    pub async fn query(&self, database: &str, sql: &str) -> Option<String> {
        query(&self.url, database, sql).await.ok()
    }
}

/// Runs `sql` in `database` on the ClickHouse at `url` (HTTP) and returns the answer's
/// text, or why the server could not be reached or refused the query.
pub async fn query(url: &str, database: &str, sql: &str) -> Result<String, String> {
    let r = crate::common::http()
        .post(format!("{url}/?database={database}"))
        .body(sql.to_owned())
        .send()
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let status = r.status();
    let text = r.text().await.map_err(|e| format!("{sql}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{sql}: {status} {text}"));
    }
    Ok(text)
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("HELIOS_CLICKHOUSE_PID", &self.pid)
            .output();
    }
}
