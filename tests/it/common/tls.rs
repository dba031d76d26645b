//! HTTPS receivers for the tests of Helios' outbound TLS: a test CA made at start with the
//! openssl CLI (`scripts/services/test-ca.sh`, the script the ClickHouse test server uses
//! too), and any axum router served over TLS with its server certificate, optionally
//! requiring a client certificate the test CA signed (mutual TLS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost, in a temp dir.
pub struct TestCa {
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/services/test-ca.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .output()
            .expect("running scripts/services/test-ca.sh");
        assert!(
            out.status.success(),
            "test-ca.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestCa { dir }
    }

    /// The CA certificate a client must be given to trust the server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing here: trusting it does not make the server trusted.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// A client certificate the test CA signed, which a mutual-TLS server here admits.
    pub fn client_cert_file(&self) -> PathBuf {
        self.dir.path().join("client.pem")
    }

    /// The key of [`TestCa::client_cert_file`].
    pub fn client_key_file(&self) -> PathBuf {
        self.dir.path().join("client.key")
    }

    /// A client certificate the other CA signed, which a mutual-TLS server here refuses.
    pub fn other_client_cert_file(&self) -> PathBuf {
        self.dir.path().join("other-client.pem")
    }

    /// The key of [`TestCa::other_client_cert_file`].
    pub fn other_client_key_file(&self) -> PathBuf {
        self.dir.path().join("other-client.key")
    }

    /// The test CA's revocation list, naming no certificate.
    pub fn crl_none_revoked(&self) -> PathBuf {
        self.dir.path().join("ca-none-revoked.crl")
    }

    /// The test CA's revocation list naming [`TestCa::client_cert_file`].
    pub fn crl_client_revoked(&self) -> PathBuf {
        self.dir.path().join("ca-client-revoked.crl")
    }

    fn server_config(&self, mutual: bool) -> rustls::ServerConfig {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.path().join("server.pem"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.dir.path().join("server.key")).unwrap();
        let provider = helios_schemas::tls::provider();
        if !mutual {
            return rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap();
        }
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(self.ca_file()).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        // TLS 1.2 only: there the client certificate is checked inside the handshake, so
        // a refusal always reaches the client as the server's alert. Under TLS 1.3 the
        // client may already be writing its request when the alert comes, and then sees a
        // closed connection instead, depending on timing.
        rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap()
    }

    /// Serves `app` over HTTPS on a free loopback port with the server certificate;
    /// returns `https://127.0.0.1:<port>`.
    pub async fn serve(&self, app: Router) -> String {
        self.serve_with(app, false).await
    }

    /// [`TestCa::serve`], admitting only clients that present a certificate the test CA
    /// signed ([`TestCa::client_cert_file`]).
    pub async fn serve_mutual(&self, app: Router) -> String {
        self.serve_with(app, true).await
    }

    async fn serve_with(&self, app: Router, mutual: bool) -> String {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(self.server_config(mutual))),
        };
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("https://{addr}")
    }
}

/// A TCP listener that hands axum only connections whose TLS handshake succeeded (a
/// client that does not trust the certificate just drops off).
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
