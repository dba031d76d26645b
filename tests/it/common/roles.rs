//! `helios run <role>` processes for the scaled-out tests, on the services `scripts/test`
//! starts (tansu, clickhouse-server).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use super::free_addr;

/// How long a role may take to answer or to do what a test waits for.
pub const WAIT: Duration = Duration::from_secs(180);

/// The value of `var`, set by `scripts/test` for a service; fails the test, never skips.
pub fn service(var: &str, what: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: this test needs {what}. Run it through scripts/test, which \
             starts tansu and clickhouse-server, or start them with scripts/services/*.sh."
        )
    })
}

/// How the `helios` roles of a test reach the test brokers of `scripts/services/tansu.sh`:
/// the parameter of tests that run the same body over plaintext and over TLS + SASL.
#[derive(Debug, Clone, Copy)]
pub enum KafkaBroker {
    /// `HELIOS_TEST_KAFKA`.
    Plaintext,
    /// `HELIOS_TEST_KAFKA_SASL`: TLS with the test CA (`ca_file`) and SCRAM-SHA-512 as
    /// `helios-512`, the password in the roles' `HELIOS_KAFKA_SASL_PASSWORD`.
    SaslSsl,
}

impl KafkaBroker {
    /// The `[kafka]` section of a backend settings file, up to its other keys; holds no secret.
    pub fn settings(self) -> String {
        match self {
            KafkaBroker::Plaintext => format!(
                "[kafka]\nbootstrap_servers = \"{}\"\n",
                service("HELIOS_TEST_KAFKA", "a Kafka-protocol broker (tansu)")
            ),
            KafkaBroker::SaslSsl => format!(
                "[kafka]\nbootstrap_servers = \"{}\"\nsecurity_protocol = \"sasl_ssl\"\n\
                 ca_file = {:?}\nsasl_mechanism = \"SCRAM-SHA-512\"\n\
                 sasl_username = \"helios-512\"\n",
                service(
                    "HELIOS_TEST_KAFKA_SASL",
                    "tansu behind stunnel4 with SASL (scripts/services/tansu.sh; apt-get install stunnel4)"
                ),
                Self::cert("ca.pem")
            ),
        }
    }

    /// Variables every role of the test gets: the SASL password, from the environment as
    /// a deployment would give it (never a flag).
    pub fn role_env(self) -> Vec<(&'static str, String)> {
        match self {
            KafkaBroker::Plaintext => Vec::new(),
            KafkaBroker::SaslSsl => {
                let file = Self::cert("sasl-password");
                let password = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
                vec![("HELIOS_KAFKA_SASL_PASSWORD", password.trim().to_owned())]
            }
        }
    }

    /// The SASL_SSL broker's address, its CA file and `helios-512`'s password, for a
    /// test's own clients and for specs that name them.
    pub fn sasl_ssl() -> (String, PathBuf, String) {
        let file = Self::cert("sasl-password");
        let password = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        (
            service(
                "HELIOS_TEST_KAFKA_SASL",
                "tansu behind stunnel4 with SASL (scripts/services/tansu.sh; apt-get install stunnel4)",
            ),
            Self::cert("ca.pem"),
            password.trim().to_owned(),
        )
    }

    fn cert(name: &str) -> PathBuf {
        PathBuf::from(service(
            "HELIOS_TEST_KAFKA_CERTS",
            "the test CA of scripts/services/tansu.sh (apt-get install stunnel4 openssl)",
        ))
        .join(name)
    }
}

/// One `helios` role process; killed when dropped.
pub struct Role {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Role {
    pub fn start(name: &'static str, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Role {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).unwrap();
        let child = Command::new(super::BIN)
            .args(args)
            .envs(envs.iter().copied())
            .env("HELIOS_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning helios for {name}: {e}"));
        Role { name, child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the role's log if it exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited with {status}:\n{}", self.name, self.log_text());
        }
    }

    /// SIGKILL: no shutdown code runs, nothing is checkpointed or committed.
    pub fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers 2xx, failing with the role's log if it exits or never does.
pub async fn wait_http(client: &reqwest::Client, url: &str, role: &mut Role) {
    let deadline = Instant::now() + WAIT;
    loop {
        role.assert_running();
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not answer {url}:\n{}",
            role.name,
            role.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
