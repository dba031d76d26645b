//! Client for any Confluent-compatible registry (including Helios' own routes), built on
//! `schema_registry_converter`, so tools like `helios tail` can decode against a URL.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use async_trait::async_trait;
use schema_registry_converter::async_impl::avro::get_avro_schema;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

use crate::codec::SchemaSource;
use crate::tls::Outbound;
use crate::{Error, Result};

/// A remote schema registry. Schemas fetched by id are cached (ids are immutable).
pub struct RemoteRegistry {
    url: String,
    settings: SrSettings,
    cache: RwLock<HashMap<u32, Arc<Schema>>>,
}

impl fmt::Debug for RemoteRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRegistry")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteRegistry {
    /// A client for the registry at `url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(url: &str) -> Result<Self> {
        Self::with_credential(url, None)
    }

    /// A client for the registry at `url` that authenticates every request with
    /// `credential`: `user:password` for HTTP basic auth (Confluent Cloud style: API key and
    /// secret), anything else as a bearer token (a Helios API key, for a registry served by
    /// Helios behind its API keys).
    pub fn with_credential(url: &str, credential: Option<&str>) -> Result<Self> {
        Self::connect(url, credential, &Outbound::default())
    }

    /// [`RemoteRegistry::with_credential`] over HTTP or HTTPS, trusting Mozilla's roots and
    /// the certificates of `tls`'s CA file, presenting its client certificate to a
    /// registry that requires mutual TLS: the one TLS setup of [`crate::tls`].
    pub fn connect(url: &str, credential: Option<&str>, tls: &Outbound) -> Result<Self> {
        if crate::tls::url_has_credentials(url) {
            return Err(Error::Remote {
                url: crate::tls::shown_url(url),
                reason: "the URL carries a user or password, which would show in logs and \
                         errors; give the URL without them and the credential as \
                         --registry-key (HELIOS_REGISTRY_KEY, `[registry] key`; a Kafka \
                         bridge's `registry_key_env` or `registry_key_file`)"
                    .to_owned(),
            });
        }
        let url = url.trim_end_matches('/').to_string();
        let mut builder = SrSettings::new_builder(url.clone());
        match credential.map(str::trim).filter(|c| !c.is_empty()) {
            // Helios keys (`hel_<id>_<secret>`) and other bearer tokens have no colon.
            Some(c) if c.contains(':') => {
                let (user, password) = c.split_once(':').unwrap_or((c, ""));
                builder.set_basic_authorization(user, Some(password));
            }
            Some(token) => {
                builder.set_token_authorization(token);
            }
            None => {}
        }
        let settings = builder
            .build_with(tls.http_client_builder()?)
            .map_err(|e| Error::Remote {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            url,
            settings,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The registry URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Registers an Avro `schema` under `subject` and returns its global id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_string());
        post_schema(&self.settings, subject.to_string(), supplied)
            .await
            .map(|registered| registered.id)
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::error::Error + 'static) -> Error {
        // A TLS failure (e.g. a certificate signed by a CA we were not given) says so first.
        let reason = match crate::tls::tls_failure(&e) {
            Some(tls) => format!("{tls} ({}): {e}", tls.process_settings()),
            None => e.to_string(),
        };
        Error::Remote {
            url: self.url.clone(),
            reason,
        }
    }
}

#[async_trait]
impl SchemaSource for RemoteRegistry {
    async fn schema_by_id(&self, id: u32) -> Result<Arc<Schema>> {
        if let Some(s) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(s.clone());
        }
        let registered = get_schema_by_id(id, &self.settings)
            .await
            .map_err(|e| self.error(e))?;
        // Resolves schema references, should the registry use them.
        let avro = get_avro_schema(&self.settings, registered)
            .await
            .map_err(|e| self.error(e))?;
        let schema = Arc::new(avro.parsed.clone());
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, schema.clone());
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_that_carries_a_password_is_refused_without_showing_it() {
        let tls = crate::tls::Outbound::default();
        let e =
            super::RemoteRegistry::connect("https://reader:s3cret@registry.example", None, &tls)
                .unwrap_err()
                .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(
            e.contains("--registry-key") && e.contains("registry.example"),
            "{e}"
        );
        super::RemoteRegistry::connect("https://registry.example", Some("reader:s3cret"), &tls)
            .unwrap();
    }
}
