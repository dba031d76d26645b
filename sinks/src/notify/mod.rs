//! Alert notifications: a consumer group on the alerts topic that POSTs each alert state
//! change (firing, resolved) to the configured webhooks, as a generic JSON body or a
//! Slack-compatible one.
//!
//! Each (webhook, alert id, state) is delivered once: deliveries are retried with
//! exponential backoff and jitter, the outcome is recorded durably ([`state`]) before the
//! alert's offset is committed, and a recorded delivery is never sent again, also after a
//! restart or a replay of the topic. A crash between the receiver's 2xx and the record can
//! repeat one delivery; every request carries an `Idempotency-Key` (`<alert id>:<state>`)
//! so receivers can drop it.

pub mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use helios_log::{ConsumerConfig, Log, TopicPartition};
use helios_schemas::{Alert, AlertState, RecordCodec, SchemaSource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backoff::RetryPolicy;
use crate::error::{Result, SinkError};
use crate::rows::{alert_state_name, severity_name};
use state::{Delivery, DeliveryLog, DeliveryStatus};

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// The alert as JSON (see [`generic_body`]).
    #[default]
    Generic,
    /// `{"text": ...}`, what Slack incoming webhooks accept.
    Slack,
}

/// One webhook receiver.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name used in logs and in the delivery record; unique.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// Body format.
    #[serde(default)]
    pub format: BodyFormat,
    /// The `Authorization` header to send (`Bearer …`, `Basic …`), for a receiver that
    /// wants one. Never printed or logged.
    #[serde(default, skip_serializing)]
    pub authorization: Option<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &helios_schemas::tls::shown_url(&self.url))
            .field("format", &self.format)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The notifier's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers; every alert state change goes to each.
    pub webhooks: Vec<WebhookConfig>,
    /// Topic of the `Alert` records.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Consumer group.
    #[serde(default = "default_group")]
    pub group: String,
    /// Spacing of retries.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts per delivery before it is recorded as given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Timeout of one request, ms.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Where the delivery record lives (a directory in the data dir).
    pub state_dir: PathBuf,
    /// The CA file to trust for `https://` receivers besides Mozilla's roots (a receiver
    /// behind a private CA) and the client certificate to present to one that requires
    /// mutual TLS: the process's (`--ca-file`, `--client-cert-file`, `--client-key-file`).
    #[serde(skip)]
    pub tls: helios_schemas::tls::Outbound,
    /// How long a finished delivery is remembered, so a replay of the alerts topic does
    /// not send it again; longer than the alerts topic keeps alerts. Older ones are
    /// forgotten, which keeps the record bounded.
    #[serde(skip, default = "default_record_horizon")]
    pub record_horizon: Duration,
}

/// The `Authorization` header value, marked sensitive so no debug output shows it.
/// `WebhookConfig::validate` checked that it is a valid header value.
fn authorization(value: &str) -> reqwest::header::HeaderValue {
    let mut v = reqwest::header::HeaderValue::from_str(value)
        .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn default_topic() -> String {
    "helios.alerts".to_owned()
}
fn default_group() -> String {
    "helios-notify".to_owned()
}
fn default_max_attempts() -> u32 {
    10
}
fn default_timeout_ms() -> u64 {
    10_000
}
/// 30 days: four times the embedded log's default retention of the alerts topic (7 d).
pub const DEFAULT_RECORD_HORIZON: Duration = Duration::from_secs(30 * 86_400);
fn default_record_horizon() -> Duration {
    DEFAULT_RECORD_HORIZON
}

impl NotifyConfig {
    /// Settings with defaults for `webhooks`, keeping the record in `state_dir`.
    pub fn new(webhooks: Vec<WebhookConfig>, state_dir: impl Into<PathBuf>) -> Self {
        NotifyConfig {
            webhooks,
            topic: default_topic(),
            group: default_group(),
            retry: RetryPolicy::default(),
            max_attempts: default_max_attempts(),
            timeout_ms: default_timeout_ms(),
            state_dir: state_dir.into(),
            tls: helios_schemas::tls::Outbound::default(),
            record_horizon: DEFAULT_RECORD_HORIZON,
        }
    }

    /// Checks names and URLs without touching the network.
    pub fn validate(&self) -> Result<()> {
        for (i, w) in self.webhooks.iter().enumerate() {
            if w.name.is_empty() || self.webhooks[..i].iter().any(|o| o.name == w.name) {
                return Err(SinkError::config(
                    "webhook names must be non-empty and unique",
                    &w.name,
                    "give each webhook its own name",
                ));
            }
            if !w.url.starts_with("http://") && !w.url.starts_with("https://") {
                return Err(SinkError::config(
                    format!("webhook `{}` has no http(s) URL", w.name),
                    &w.url,
                    "use a full URL such as http://127.0.0.1:9000/hook",
                ));
            }
            if let Some(auth) = &w.authorization
                && (auth.trim().is_empty() || reqwest::header::HeaderValue::from_str(auth).is_err())
            {
                return Err(SinkError::config(
                    format!(
                        "webhook `{}`: its Authorization header is empty or not a valid header \
                         value",
                        w.name
                    ),
                    "***",
                    "set it to one line such as `Bearer <token>` or `Basic <base64>`",
                ));
            }
        }
        if self.max_attempts == 0 {
            return Err(SinkError::config(
                "max_attempts must be at least 1",
                "0",
                "use the default (10)",
            ));
        }
        Ok(())
    }
}

/// The generic JSON body: the alert with its state and severity as lowercase words.
pub fn generic_body(a: &Alert) -> serde_json::Value {
    json!({
        "id": a.id,
        "rule": a.rule,
        "state": alert_state_name(a.state),
        "severity": severity_name(a.severity),
        "group": a.group,
        "since": a.since,
        "at": a.at,
        "summary": a.summary,
        "evidence": a.evidence,
    })
}

/// The Slack-compatible body: one line of text.
pub fn slack_body(a: &Alert) -> serde_json::Value {
    let icon = match a.state {
        AlertState::Firing => ":red_circle:",
        AlertState::Resolved => ":large_green_circle:",
    };
    let group: Vec<String> = a.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "text": format!(
            "{icon} [{}] {} {}: {} ({})",
            severity_name(a.severity).to_uppercase(),
            a.rule,
            alert_state_name(a.state),
            a.summary,
            group.join(", ")
        )
    })
}

/// The notifier. Build with [`Notifier::new`], run with [`Notifier::run`].
#[derive(Debug)]
pub struct Notifier {
    config: NotifyConfig,
    http: reqwest::Client,
    codec: RecordCodec<Alert>,
    deliveries: DeliveryLog,
}

impl Notifier {
    /// A notifier for `config`, decoding alerts with schemas from `source`.
    pub fn new(config: NotifyConfig, source: Arc<dyn SchemaSource>) -> Result<Self> {
        config.validate()?;
        // The one outbound TLS setup (rustls, ring, Mozilla's roots and the CA file).
        let http = config
            .tls
            .http_client_builder()
            .map_err(|e| {
                SinkError::config(
                    "cannot set up TLS for the webhooks",
                    e.to_string(),
                    "check --ca-file, --client-cert-file and --client-key-file \
                     (HELIOS_CA_FILE, HELIOS_CLIENT_CERT_FILE, HELIOS_CLIENT_KEY_FILE)",
                )
            })?
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| {
                SinkError::config(
                    "cannot build the HTTP client",
                    e.to_string(),
                    "report this as a bug",
                )
            })?;
        let deliveries = DeliveryLog::open(&config.state_dir, config.record_horizon)?;
        Ok(Notifier {
            config,
            http,
            codec: RecordCodec::with_source(0, source),
            deliveries,
        })
    }

    /// The delivery record.
    pub fn deliveries(&self) -> &DeliveryLog {
        &self.deliveries
    }

    /// Reads alerts and delivers them until `shutdown` turns true; returns the delivery
    /// record. Offsets are committed only after each alert's deliveries are recorded.
    pub async fn run(
        mut self,
        log: &Log,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<DeliveryLog> {
        let group = self.config.group.clone();
        let mut consumer = log
            .consumer(&[&self.config.topic], ConsumerConfig::new(&group))
            .await
            .map_err(|source| SinkError::Log {
                action: "join",
                group: group.clone(),
                source,
            })?;
        info!(
            group,
            topic = self.config.topic,
            webhooks = self.config.webhooks.len(),
            "Notifier started."
        );
        while !*shutdown.borrow() {
            let polled = tokio::select! {
                r = consumer.poll(100, Duration::from_millis(200)) => r,
                _ = shutdown.changed() => break,
            };
            let records = match polled {
                Ok(r) => r,
                Err(e) => {
                    warn!(group, error = %e, "Poll failed; retrying.");
                    tokio::time::sleep(self.config.retry.backoff().next_delay()).await;
                    continue;
                }
            };
            for record in records {
                match self.codec.decode_async(&record.value).await {
                    Ok(alert) => {
                        if !self.deliver_all(&alert, &mut shutdown).await? {
                            // Shut down mid-delivery: do not commit, the alert is read again.
                            return Ok(self.deliveries);
                        }
                    }
                    Err(e) => {
                        warn!(topic = %record.topic, partition = record.partition, offset = record.offset,
                        error = %e, "Skipping an alert record that cannot be decoded (the ClickHouse sink keeps it as a dead letter).")
                    }
                }
                let tp = TopicPartition::new(&record.topic, record.partition);
                let mut backoff = self.config.retry.backoff();
                while let Err(e) = consumer.commit(&[(tp.clone(), record.offset + 1)]).await {
                    warn!(group, error = %e, "Commit failed; retrying.");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        info!(group, "Notifier stopped.");
        Ok(self.deliveries)
    }

    /// Delivers `alert` to every webhook that has not had it; false when interrupted by
    /// shutdown.
    async fn deliver_all(
        &mut self,
        alert: &Alert,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let state = alert_state_name(alert.state);
        for hook in self.config.webhooks.clone() {
            if self.deliveries.get(&hook.name, &alert.id, state).is_some() {
                continue;
            }
            let body = match hook.format {
                BodyFormat::Generic => generic_body(alert),
                BodyFormat::Slack => slack_body(alert),
            };
            let key = format!("{}:{state}", alert.id);
            let mut backoff = self.config.retry.backoff();
            let mut attempts = 0;
            let (status, last) = loop {
                attempts += 1;
                let mut request = self
                    .http
                    .post(&hook.url)
                    .header("idempotency-key", &key)
                    .json(&body);
                if let Some(auth) = &hook.authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, authorization(auth));
                }
                let sent = request.send().await;
                let (retry, last) = match sent {
                    Ok(r) if r.status().is_success() => {
                        break (DeliveryStatus::Delivered, r.status().to_string());
                    }
                    Ok(r) => {
                        let s = r.status();
                        (
                            s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429,
                            s.to_string(),
                        )
                    }
                    // A certificate we do not trust says so (and how to trust it).
                    // Without the URL: its path may be the receiver's credential.
                    Err(e) => (true, helios_schemas::tls::describe(&e.without_url())),
                };
                let err = SinkError::Webhook {
                    name: hook.name.clone(),
                    url: helios_schemas::tls::shown_url(&hook.url),
                    reason: last.clone(),
                };
                if !retry || attempts >= self.config.max_attempts {
                    warn!(error = %err, alert = alert.id, state, attempts, "Giving up on this notification.");
                    break (DeliveryStatus::GaveUp, last);
                }
                let delay = backoff.next_delay();
                warn!(error = %err, alert = alert.id, state, attempts, retry_in_ms = delay.as_millis() as u64,
                    "Notification failed; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return Ok(false),
                }
            };
            if status == DeliveryStatus::Delivered {
                info!(
                    webhook = hook.name,
                    alert = alert.id,
                    state,
                    attempts,
                    "Notification delivered."
                );
            }
            let at_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as i64;
            self.deliveries.record(Delivery {
                webhook: hook.name.clone(),
                alert: alert.id.clone(),
                state: state.to_owned(),
                status,
                attempts,
                last,
                at_ms,
            })?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helios_schemas::Severity;

    #[test]
    fn an_authorization_header_that_could_inject_or_is_empty_is_refused_unshown() {
        let hook = |auth: &str| {
            NotifyConfig::new(
                vec![WebhookConfig {
                    name: "ops".into(),
                    url: "https://ops.example/hook".into(),
                    format: BodyFormat::Generic,
                    authorization: Some(auth.into()),
                }],
                "/nonexistent",
            )
        };
        hook("Bearer t0ken").validate().unwrap();
        for bad in ["Bearer s3cret\r\nX-Injected: 1", "Bearer s3cret\n", "  "] {
            let e = hook(bad).validate().unwrap_err().to_string();
            assert!(
                e.contains("webhook `ops`") && e.contains("Authorization"),
                "{e}"
            );
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn bodies() {
        let a = Alert {
            id: "r|x".into(),
            rule: "ci_failing".into(),
            group: [("repo".to_owned(), "helios".to_owned())].into(),
            state: AlertState::Firing,
            since: 1,
            at: 2,
            severity: Severity::Critical,
            summary: "CI failing".into(),
            evidence: vec!["e1".into()],
        };
        assert_eq!(
            slack_body(&a),
            json!({"text": ":red_circle: [CRITICAL] ci_failing firing: CI failing (repo=helios)"})
        );
        let g = generic_body(&a);
        assert_eq!(g["state"], "firing");
        assert_eq!(g["group"]["repo"], "helios");
        assert_eq!(g["evidence"][0], "e1");
    }
}
