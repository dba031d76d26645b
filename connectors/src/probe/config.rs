//! Settings of the HTTP(S) uptime probe.

use std::path::PathBuf;
use std::time::Duration;

use helios_schemas::tls::IdentityFiles;
use hyper::Uri;
use serde::{Deserialize, Serialize};

/// `[[source]] type = "probe"` in the spec: `GET url` every `interval`, one `probe.http`
/// event per attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Name of the source in `/v1/sources` and the `source` of its events. Default `probe`.
    pub name: String,
    /// The `http://` or `https://` URL to probe. Required.
    pub url: String,
    /// Time between two probes, such as `30s`. Default `30s`.
    #[serde(with = "crate::duration")]
    pub interval: Duration,
    /// How long a probe may take (connect, TLS, answer and body) before it counts as
    /// failed. Default `10s`.
    #[serde(with = "crate::duration")]
    pub timeout: Duration,
    /// The status code that means up; redirects are not followed, so a URL answering
    /// `301` needs `expected_status = 301`. Default `200`.
    pub expected_status: u16,
    /// Subject of the events. Default: the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
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
    /// PEM file of the CA certificate(s) that sign the URL's certificate, trusted besides
    /// Mozilla's roots: for a service behind a private CA. Default: the process's
    /// `--ca-file` (`HELIOS_CA_FILE`), which every outbound HTTPS client trusts; this one
    /// replaces it for this probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate to present to a URL that requires mutual TLS, with
    /// `key_file` (`https://` only). Default: the process's `--client-cert-file` and
    /// `--client-key-file`; these two replace them for this probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of that certificate's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            name: "probe".to_string(),
            url: String::new(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            expected_status: 200,
            subject: None,
            max_future: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

impl ProbeConfig {
    /// The parsed URL, or what is wrong with it.
    pub fn uri(&self) -> Result<Uri, String> {
        if self.url.is_empty() {
            return Err("`url` is required, such as `https://example.com/healthz`".into());
        }
        let uri: Uri = self
            .url
            .parse()
            .map_err(|e| format!("`url` `{}` is not a URL: {e}", self.url))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(format!(
                    "`url` `{}` must start with http:// or https://",
                    self.url
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("`url` `{}` has no host", self.url));
        }
        Ok(uri)
    }

    /// The client certificate to present: both files or neither (a missing half is an
    /// error naming it).
    pub fn identity(&self) -> Result<Option<IdentityFiles>, String> {
        IdentityFiles::pair(self.cert_file.clone(), self.key_file.clone()).map_err(|missing| {
            let (set, unset) = if missing == "key" {
                ("cert_file", "key_file")
            } else {
                ("key_file", "cert_file")
            };
            format!("`{set}` needs `{unset}`: a client certificate is presented with its key")
        })
    }

    /// Checks the settings without sending anything; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        let uri = self.uri()?;
        if self.identity()?.is_some() && uri.scheme_str() != Some("https") {
            return Err(format!(
                "`cert_file` is presented over TLS only, and `url` `{}` is not https://",
                self.url
            ));
        }
        if self.interval.is_zero() {
            return Err("`interval` must be positive, such as `30s`".into());
        }
        if self.timeout.is_zero() {
            return Err("`timeout` must be positive, such as `10s`".into());
        }
        if !(100..=599).contains(&self.expected_status) {
            return Err(format!(
                "`expected_status` {} is not an HTTP status (100–599)",
                self.expected_status
            ));
        }
        Ok(())
    }
}
