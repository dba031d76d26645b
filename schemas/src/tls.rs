//! The one TLS setup of every outbound HTTPS client in Helios: the remote schema registry
//! (here), alert notifications and ClickHouse (`helios-sinks`), the read API's ClickHouse
//! reader (`helios-query-api`), `helios send` and the OTLP exporters (the binary).
//!
//! rustls on the `ring` crypto provider, Mozilla's root certificates compiled in
//! (`webpki-roots`, so no system trust store is needed), plus the certificates of an
//! optional CA file (PEM) for private CAs, and an optional client certificate presented
//! to a server that requires mutual TLS ([`Outbound`] holds both for a process). No
//! OpenSSL, no aws-lc: one TLS stack (ADR-018).
//!
//! reqwest is built with `rustls-no-provider`: a client built by [`http_client_builder`]
//! carries its own configuration, and [`install_default_provider`] makes `ring` the
//! process's default, which a client built any other way (`reqwest::Client::new()`) needs
//! or it panics.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, DigitallySignedStruct, DistinguishedName, RootCertStore};

use crate::{Error, Result};

/// The crypto provider of every Helios TLS client: `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process's default crypto provider; does nothing if one is installed.
/// The binary calls it first thing; test code that builds `reqwest::Client::new()` must
/// call it (or build through [`http_client_builder`]) first.
pub fn install_default_provider() {
    // Err only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificates of a PEM file (one or more `CERTIFICATE` blocks).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    read_pem_blocks(path, "certificate", "`-----BEGIN CERTIFICATE-----` block")
}

/// The PEM objects of type `T` in the file at `path` (at least one), as a CA-side file
/// (`Error::CaFile`): `what` names them in the error, `missing` says what a file without
/// one lacks.
fn read_pem_blocks<T: PemObject>(path: &Path, what: &str, missing: &str) -> Result<Vec<T>> {
    let ca_error = |reason: String| Error::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let objects = T::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ca_error(format!("not a PEM {what} file: {e}")))?;
    if objects.is_empty() {
        return Err(ca_error(format!("holds no {missing}")));
    }
    Ok(objects)
}

/// Mozilla's roots, plus the certificates of `ca_file` when given.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| Error::CaFile {
                path: path.to_path_buf(),
                reason: format!("a certificate in it is not usable as a CA: {e}"),
            })?;
        }
    }
    Ok(roots)
}

/// The rustls client configuration: `ring`, TLS 1.2 and 1.3, [`root_store`], HTTP/1.1
/// announced by ALPN (no client of ours speaks HTTP/2).
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    client_config_with(ca_file, None)
}

/// A client certificate (with any intermediates, PEM) and its private key (PEM: PKCS#8,
/// PKCS#1 or SEC1), presented to a server that asks for one (mutual TLS).
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// A client certificate and key file as a configuration holds them (owned); see
/// [`ClientIdentity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl IdentityFiles {
    /// Both files, or neither: `Err` names the half that is missing (`"certificate"` or
    /// `"key"`), for the caller to name its own setting.
    pub fn pair(
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
    ) -> std::result::Result<Option<IdentityFiles>, &'static str> {
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(IdentityFiles {
                cert_file,
                key_file,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err("key"),
            (None, Some(_)) => Err("certificate"),
        }
    }

    /// The borrowed form the TLS setup takes.
    pub fn identity(&self) -> ClientIdentity<'_> {
        ClientIdentity {
            cert_file: &self.cert_file,
            key_file: &self.key_file,
        }
    }

    /// Reads both files and checks that the key is the certificate's, without connecting:
    /// for a start that stops at once on a file it could not use later.
    pub fn check(&self) -> Result<()> {
        client_config_with(None, Some(self.identity())).map(|_| ())
    }
}

/// What an outbound HTTPS client trusts and presents: a CA file besides Mozilla's roots
/// and a client certificate for servers that require mutual TLS. A process has one
/// (`--ca-file`, `--client-cert-file`, `--client-key-file`); a client with settings of its
/// own (a probe's `ca_file`, OTLP's standard variables) replaces parts of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    pub ca_file: Option<PathBuf>,
    pub identity: Option<IdentityFiles>,
}

impl Outbound {
    /// [`http_client_builder_with`] of these files.
    pub fn http_client_builder(&self) -> Result<reqwest::ClientBuilder> {
        http_client_builder_with(
            self.ca_file.as_deref(),
            self.identity.as_ref().map(IdentityFiles::identity),
        )
    }
}

/// [`client_config`], presenting `identity` when the server asks for a certificate.
/// Errors name the file that cannot be read or used.
pub fn client_config_with(
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<rustls::ClientConfig> {
    let roots = root_store(ca_file)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::CaFile {
            path: ca_file.map(Path::to_path_buf).unwrap_or_default(),
            reason: format!("the TLS provider refused the protocol versions: {e}"),
        })?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let (certs, key) = read_identity(id)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::ClientIdentity {
                    path: id.key_file.to_path_buf(),
                    reason: format!(
                        "the key cannot be used with the certificate in {} ({e}); give the private key of that certificate",
                        id.cert_file.display()
                    ),
                })?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificates and the private key of `id`, read from their PEM files.
fn read_identity(
    id: ClientIdentity<'_>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    read_pair(id, "client", |path, reason| Error::ClientIdentity {
        path,
        reason,
    })
}

/// The certificates and the private key of a pair of PEM files; errors name the file and
/// what `role` ("client", "server") certificate was expected.
fn read_pair(
    id: ClientIdentity<'_>,
    role: &str,
    error: fn(PathBuf, String) -> Error,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let err = |path: &Path, reason: String| error(path.to_path_buf(), reason);
    let bytes = std::fs::read(id.cert_file).map_err(|e| err(id.cert_file, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| err(id.cert_file, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            id.cert_file,
            format!(
                "holds no `-----BEGIN CERTIFICATE-----` block; give the {role} certificate in PEM"
            ),
        ));
    }
    let bytes = std::fs::read(id.key_file).map_err(|e| err(id.key_file, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        err(
            id.key_file,
            format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    Ok((certs, key))
}

/// What a Helios listener serves HTTPS with (`--tls-cert-file`, `--tls-key-file`): the
/// rustls configuration and the DNS names its certificate was valid for at start (Helios
/// names itself by the first, e.g. in the URL of its own health probe). The certificate
/// can be replaced while the listener serves ([`ServerTls::reload`]): a renewed one is
/// served to every connection after. With client CAs (`--tls-client-ca-file`) every
/// caller must present a certificate one of them issued (mutual TLS); they are reloaded
/// with the certificate.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub dns_names: Vec<String>,
    files: IdentityFiles,
    current: Arc<CurrentCert>,
    client_cas: Option<Arc<ClientCas>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("dns_names", &self.dns_names)
            .field("files", &self.files)
            .field("client_cas", &self.client_cas.as_ref().map(|c| &c.files))
            .finish_non_exhaustive()
    }
}

/// The certificate and key a listener hands each new connection: the last loaded.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The files a listener checks its callers' client certificates against
/// (`--tls-client-ca-file`, `--tls-client-crl-file`): the CAs (PEM) whose certificates
/// it admits, only those (Mozilla's roots do not count: a public CA vouches for a name,
/// not for a caller of this Helios), and optionally revocation lists (PEM) of certificates
/// it no longer admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCaFiles {
    pub ca_file: PathBuf,
    pub crl_file: Option<PathBuf>,
}

/// The verifier in use is the last one that loaded from [`ClientCaFiles`], so a file
/// changed while the listener serves (a CA added for a rotation, a certificate revoked)
/// applies to the next handshake.
#[derive(Debug)]
struct ClientCas {
    files: ClientCaFiles,
    verifier: RwLock<Arc<dyn ClientCertVerifier>>,
}

impl ClientCas {
    fn load(files: &ClientCaFiles) -> Result<ClientCas> {
        Ok(ClientCas {
            files: files.clone(),
            verifier: RwLock::new(client_verifier(files)?),
        })
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A verifier of client certificates issued by the CAs of `files`, none of them on its
/// revocation lists. A CA without a list is not checked for revocation, and a list past
/// its next update still revokes what it lists (an expired list must not lock every
/// caller out). Errors name the file and say what it must hold.
fn client_verifier(files: &ClientCaFiles) -> Result<Arc<dyn ClientCertVerifier>> {
    let file = &files.ca_file;
    let mut roots = RootCertStore::empty();
    for cert in read_ca_file(file)? {
        roots.add(cert).map_err(|e| Error::CaFile {
            path: file.clone(),
            reason: format!(
                "a certificate in it is not usable as a CA of client certificates: {e}"
            ),
        })?;
    }
    let crls = match &files.crl_file {
        Some(path) => read_crl_file(path)?,
        None => Vec::new(),
    };
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| Error::CaFile {
            path: files.crl_file.clone().unwrap_or_else(|| file.clone()),
            reason: format!("cannot check client certificates against it: {e}"),
        })
}

/// The revocation lists of a PEM file (one or more `X509 CRL` blocks).
fn read_crl_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    read_pem_blocks(
        path,
        "revocation list",
        "`-----BEGIN X509 CRL-----` block; give the CA's revocation list in PEM (`openssl crl -inform DER -out list.pem` converts one)",
    )
}

impl ClientCertVerifier for ClientCas {
    /// None: a client offers its certificate whatever CA issued it, and a list sent at
    /// start would be stale after a reload of the file.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

impl IdentityFiles {
    /// A listener's HTTPS from these files: the certificate chain (the server's own
    /// certificate first, then any intermediates) and its private key. TLS 1.2 and 1.3
    /// on `ring`, HTTP/1.1 by ALPN. With `client_cas`, every caller must present a
    /// certificate issued by one of its CAs and not revoked, or the handshake fails;
    /// without, none is asked for. Errors name the file and what to give instead.
    pub fn server_tls(&self, client_cas: Option<&ClientCaFiles>) -> Result<ServerTls> {
        let (key, dns_names) = self.certified_key()?;
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(key))));
        let client_cas = client_cas.map(ClientCas::load).transpose()?.map(Arc::new);
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::ServerIdentity {
                path: self.cert_file.clone(),
                reason: format!("the TLS provider refused the protocol versions: {e}"),
            })?;
        let builder = match &client_cas {
            Some(cas) => builder.with_client_cert_verifier(cas.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
            dns_names,
            files: self.clone(),
            current,
            client_cas,
        })
    }

    /// The files' certificate chain with its key (checked to be the certificate's), and
    /// the DNS names of the certificate.
    fn certified_key(&self) -> Result<(CertifiedKey, Vec<String>)> {
        let (certs, key) = read_pair(self.identity(), "server", |path, reason| {
            Error::ServerIdentity { path, reason }
        })?;
        let dns_names = webpki::EndEntityCert::try_from(&certs[0])
            .map_err(|e| Error::ServerIdentity {
                path: self.cert_file.clone(),
                reason: format!(
                    "the first certificate cannot be parsed ({e}); it must be the server's own"
                ),
            })?
            .valid_dns_names()
            .map(str::to_owned)
            .collect();
        let key = CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
            Error::ServerIdentity {
                path: self.key_file.clone(),
                reason: format!(
                    "the key cannot be used with the certificate in {} ({e}); give the private key of that certificate",
                    self.cert_file.display()
                ),
            }
        })?;
        Ok((key, dns_names))
    }
}

impl ServerTls {
    /// The certificate and key files, as given at start.
    pub fn files(&self) -> &IdentityFiles {
        &self.files
    }

    /// The files a change of which calls for a [`ServerTls::reload`]: the certificate, its
    /// key and the client CA and revocation list files, if any.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.files.cert_file.clone(), self.files.key_file.clone()];
        if let Some(cas) = &self.client_cas {
            files.push(cas.files.ca_file.clone());
            files.extend(cas.files.crl_file.clone());
        }
        files
    }

    /// Reads the files again and serves what they hold now to every new connection
    /// (connections already open keep theirs). On an error nothing changes: the
    /// certificate served and the client CAs are still the last that loaded.
    pub fn reload(&self) -> Result<()> {
        let (key, _) = self.files.certified_key()?;
        let verifier = match &self.client_cas {
            Some(cas) => Some((cas, client_verifier(&cas.files)?)),
            None => None,
        };
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        if let Some((cas, verifier)) = verifier {
            *cas.verifier.write().unwrap_or_else(PoisonError::into_inner) = verifier;
        }
        Ok(())
    }
}

/// A reqwest client builder with [`client_config`]: what every outbound HTTP client of
/// Helios starts from (timeouts and the rest are the caller's).
pub fn http_client_builder(ca_file: Option<&Path>) -> Result<reqwest::ClientBuilder> {
    http_client_builder_with(ca_file, None)
}

/// [`http_client_builder`], presenting `identity` to a server that asks for a client
/// certificate.
pub fn http_client_builder_with(
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<reqwest::ClientBuilder> {
    install_default_provider();
    Ok(
        reqwest::Client::builder()
            .tls_backend_preconfigured(client_config_with(ca_file, identity)?),
    )
}

/// What a failed HTTPS exchange says about TLS, if the failure was TLS: the server's
/// certificate not trusted (with the verifier's reason) or another handshake failure.
/// Walks `error`'s source chain; `None` for failures that are not TLS's.
pub fn tls_failure(error: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            return Some(TlsFailure::from(rustls_error));
        }
        current = next_cause(e);
    }
    None
}

/// The error under `e`. An `io::Error` wrapping another error (as tokio-rustls wraps
/// rustls's) shows it through `get_ref`, not `source`, which skips it.
fn next_cause<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    if let Some(inner) = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        return Some(inner);
    }
    e.source()
}

/// A TLS failure of an outbound connection, sorted for the message it deserves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate did not verify (unknown issuer, wrong name, expired...).
    UntrustedCertificate(String),
    /// The server refused our client certificate, or wanted one and got none (it
    /// requires mutual TLS).
    ClientCertificateRefused(String),
    /// Any other handshake failure (no common protocol or cipher, a plain-HTTP server...).
    Handshake(String),
}

impl From<&rustls::Error> for TlsFailure {
    fn from(e: &rustls::Error) -> Self {
        match e {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                TlsFailure::UntrustedCertificate(e.to_string())
            }
            // The alerts a server sends about the client's certificate (or its absence;
            // under TLS 1.2, which has no `certificate_required`, a server that wants one
            // and gets none ends the handshake with `handshake_failure`).
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate,
            ) => TlsFailure::ClientCertificateRefused(e.to_string()),
            other => TlsFailure::Handshake(other.to_string()),
        }
    }
}

impl TlsFailure {
    /// The process-wide settings that mend this failure, for the clients that use them
    /// (notifications, a remote registry, `helios send`, OTLP export, probes).
    pub fn process_settings(&self) -> &'static str {
        match self {
            TlsFailure::UntrustedCertificate(_) => "--ca-file / HELIOS_CA_FILE",
            TlsFailure::ClientCertificateRefused(_) => {
                "--client-cert-file and --client-key-file / HELIOS_CLIENT_CERT_FILE and \
                 HELIOS_CLIENT_KEY_FILE"
            }
            TlsFailure::Handshake(_) => "the URL",
        }
    }
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::UntrustedCertificate(reason) => write!(
                f,
                "the server's TLS certificate is not trusted ({reason}); if it is signed by a \
                 private CA, give that CA's certificate (PEM) as the CA file"
            ),
            TlsFailure::ClientCertificateRefused(reason) => write!(
                f,
                "the server refused the client certificate, or requires one ({reason}); give a \
                 client certificate and key signed by a CA the server trusts (a \
                 `HandshakeFailure` can also mean no protocol version or cipher in common)"
            ),
            TlsFailure::Handshake(reason) => write!(
                f,
                "the TLS handshake failed ({reason}); check that the URL's port serves HTTPS"
            ),
        }
    }
}

/// A URL as logs and errors may show it: scheme, host and port only. The path of a Slack
/// or Teams incoming-webhook URL is its credential, and user info may be a password.
pub fn shown_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let hidden = if authority.len() < rest.len() || host.len() < authority.len() {
        "/…"
    } else {
        ""
    };
    if scheme.is_empty() {
        format!("{host}{hidden}")
    } else {
        format!("{scheme}://{host}{hidden}")
    }
}

/// Whether `url` carries a credential a log must not show and a flag should not take:
/// user info (`https://user:secret@host`) or a `user=`/`password=` query parameter.
pub fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let query = rest
        .split_once('?')
        .map_or("", |(_, q)| q.split('#').next().unwrap_or(""));
    authority.contains('@')
        || query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("user")
        })
}

/// `error` and its sources as one line, with a TLS failure explained first.
pub fn describe(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = next_cause(error);
    while let Some(e) = current {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        current = next_cause(e);
    }
    match tls_failure(error) {
        Some(tls) => format!("{tls}: {text}"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_servers_alert_about_the_client_certificate_says_so() {
        use super::TlsFailure;
        use rustls::AlertDescription as A;
        for alert in [
            A::CertificateRequired,
            A::HandshakeFailure,
            A::UnknownCA,
            A::BadCertificate,
        ] {
            let failure = TlsFailure::from(&rustls::Error::AlertReceived(alert));
            assert!(
                matches!(failure, TlsFailure::ClientCertificateRefused(_)),
                "{alert:?}: {failure:?}"
            );
            assert!(
                failure
                    .to_string()
                    .contains("refused the client certificate")
            );
        }
        let other = TlsFailure::from(&rustls::Error::AlertReceived(A::ProtocolVersion));
        assert!(matches!(other, TlsFailure::Handshake(_)), "{other:?}");
    }

    #[test]
    fn credentials_in_a_url_are_found() {
        use super::url_has_credentials as has;
        assert!(has("https://default:s3cret@abc.clickhouse.cloud:8443"));
        assert!(has("https://default@abc.clickhouse.cloud:8443/"));
        assert!(has("http://127.0.0.1:8123/?user=default&password=s3cret"));
        assert!(has("http://127.0.0.1:8123?PASSWORD=x"));
        assert!(!has("https://abc.clickhouse.cloud:8443"));
        assert!(!has("http://127.0.0.1:8123/?database=helios"));
        // An @ in the path or fragment is not user info.
        assert!(!has("https://registry.example/subjects/a@b"));
        assert!(!has("https://example.com/#user=x"));
    }

    #[test]
    fn a_shown_url_keeps_scheme_and_host_and_hides_path_and_credentials() {
        use super::shown_url;
        assert_eq!(
            shown_url("https://hooks.slack.com/services/T0/B0/secret"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            shown_url("http://user:pw@127.0.0.1:8099"),
            "http://127.0.0.1:8099/…"
        );
        assert_eq!(
            shown_url("https://example.com:8443"),
            "https://example.com:8443"
        );
        assert_eq!(shown_url("https://h?token=x"), "https://h/…");
    }

    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_says_which_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = root_store(Some(&missing)).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let err = root_store(Some(&empty)).unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );
    }

    #[test]
    fn the_roots_are_mozillas_without_a_ca_file() {
        let roots = root_store(None).unwrap();
        assert_eq!(roots.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(roots.len() > 100, "{}", roots.len());
    }

    #[test]
    fn certificate_errors_are_told_apart_from_other_handshake_failures() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(bad);
        let failure = tls_failure(&io).unwrap();
        assert!(matches!(failure, TlsFailure::UntrustedCertificate(_)));
        assert!(failure.to_string().contains("not trusted"), "{failure}");
        let text = describe(&io);
        assert!(
            text.starts_with("the server's TLS certificate is not trusted"),
            "{text}"
        );

        let other = std::io::Error::other(rustls::Error::HandshakeNotComplete);
        assert!(matches!(
            tls_failure(&other),
            Some(TlsFailure::Handshake(_))
        ));
        let plain = std::io::Error::other("connection refused");
        assert_eq!(tls_failure(&plain), None);
    }
}
