//! Starting and stopping the real `helios` binary in end-to-end tests.

#![allow(dead_code)] // each test module uses a different part

pub mod clickhouse;
pub mod docs;
pub mod roles;
pub mod tls;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_helios");

/// The tests' HTTP client. reqwest is built with rustls and no crypto provider of its own
/// (ADR-018), so a client built without Helios' TLS setup needs `ring` installed as the
/// process default first, or it panics: every test builds its clients here.
pub fn http() -> reqwest::Client {
    http_builder()
        .build()
        .expect("building the test HTTP client")
}

/// [`http`]'s builder, for clients with their own settings.
pub fn http_builder() -> reqwest::ClientBuilder {
    helios_schemas::tls::install_default_provider();
    reqwest::Client::builder()
}

/// A `helios up` child process.
pub struct Helios {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    /// An admin API key of this data dir, for `Authorization: Bearer`.
    pub key: String,
}

impl Helios {
    /// Starts `helios up` on a free loopback port and waits until it accepts requests.
    /// The data dir gets an admin API key first (the same one across restarts).
    pub async fn up(data_dir: &Path, extra: &[&str]) -> Helios {
        let key = api_key(data_dir);
        Helios::start(data_dir, extra, key).await
    }

    /// [`Helios::up`] with more environment variables for the child (the secrets a spec
    /// names by `token_env` and the like).
    pub async fn up_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Helios {
        let key = api_key(data_dir);
        Helios::start_with_env(data_dir, extra, key, env).await
    }

    /// Starts `helios up` as it is, without creating a key first; `key` is what requests
    /// of [`Helios::get`] and [`Helios::post`] send.
    pub async fn start(data_dir: &Path, extra: &[&str], key: String) -> Helios {
        Helios::start_with_env(data_dir, extra, key, &[]).await
    }

    async fn start_with_env(
        data_dir: &Path,
        extra: &[&str],
        key: String,
        env: &[(&str, &str)],
    ) -> Helios {
        let addr = free_addr();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .unwrap();
        let child = Command::new(BIN)
            .arg("up")
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn helios up");
        let h = Helios {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            key,
        };
        h.wait_ready().await;
        h
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `GET path` with the API key.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        crate::common::http()
            .get(self.url(path))
            .bearer_auth(&self.key)
    }

    /// `POST path` with the API key.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        crate::common::http()
            .post(self.url(path))
            .bearer_auth(&self.key)
    }

    /// `POST /v1/events` with `batch` as a CloudEvents JSON batch.
    pub async fn post_events(&self, batch: &serde_json::Value) -> reqwest::Response {
        self.post("/v1/events")
            .header("content-type", "application/cloudevents-batch+json")
            .body(batch.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn wait_ready(&self) {
        let client = crate::common::http();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(self.url("/healthz")).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "helios up did not become ready; see {}",
                self.data_dir.with_extension("log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait: the clean shutdown path.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .arg("-TERM")
            .arg(&pid)
            .status()
            .unwrap();
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "helios up exited with {status} on SIGTERM"
        );
    }
}

impl Drop for Helios {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process (a `helios` the test started itself) killed when the test ends, passed
/// or failed: a failed assertion must not leave it running.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The admin API key of `data_dir`: created with `helios keys create` on first use, kept
/// next to the data dir (`<data dir>.key`) for restarts.
pub fn api_key(data_dir: &Path) -> String {
    let saved = data_dir.with_extension("key");
    if let Ok(key) = std::fs::read_to_string(&saved) {
        return key;
    }
    let key = new_key(data_dir, "admin", "tests");
    std::fs::write(&saved, &key).unwrap();
    key
}

/// A new API key of `scope` named `name` for `data_dir` (`helios keys create`), which may
/// be in use by a running server.
pub fn new_key(data_dir: &Path, scope: &str, name: &str) -> String {
    let stdout = String::from_utf8(helios_ok(&[
        "keys",
        "create",
        "--scope",
        scope,
        "--name",
        name,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]))
    .unwrap();
    // The contract: stdout is exactly the key and a newline.
    stdout
        .strip_suffix('\n')
        .filter(|k| k.starts_with("hel_") && !k.contains(char::is_whitespace))
        .unwrap_or_else(|| panic!("helios keys create printed {stdout:?}, not a key and a newline"))
        .to_owned()
}

/// Runs `helios ARGS` to completion.
pub fn helios(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run helios")
}

/// Runs `helios ARGS` to completion and returns its stdout; fails the test with the
/// command and its stderr when it does not succeed.
pub fn helios_ok(args: &[&str]) -> Vec<u8> {
    let out = helios(args);
    assert!(
        out.status.success(),
        "helios {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `helios tail <topic> --from-beginning <where>` (`--data-dir <dir>`, or a broker's
/// flags): every record as the JSON line it prints (partition, offset, key, value).
pub fn tail_records(topic: &str, r#where: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["tail", topic, "--from-beginning"];
    args.extend_from_slice(r#where);
    String::from_utf8(helios_ok(&args))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The values of [`tail_records`] of a topic in the data dir `data`.
pub fn tail_values(data: &Path, topic: &str) -> Vec<serde_json::Value> {
    tail_records(topic, &["--data-dir", data.to_str().unwrap()])
        .into_iter()
        .map(|r| r["value"].clone())
        .collect()
}

pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `us` (µs since the epoch) as an RFC 3339 UTC time, to the second.
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// GitHub's `X-Hub-Signature-256` of `body` with `secret`: `sha256=` and the hex HMAC.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}
