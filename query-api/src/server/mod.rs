//! Serving HTTP: the one accept loop every Helios listener runs (`helios up`, `helios
//! serve api`, `helios run ingest` and the `--metrics-listen` stage listeners).
//!
//! It owns what a server needs to hold under abuse, below the routes:
//!
//! - **Header-read timeout** ([`ServerConfig::header_read_timeout`]): a request's head
//!   (request line and headers) must arrive within this time, counted from when the
//!   connection opened or its previous answer was sent, so it is also the longest a
//!   kept-alive connection may wait for its next request. Slowloris clients that trickle a
//!   header byte at a time are closed when it runs out (hyper's HTTP/1 timer).
//! - **Idle timeout** ([`ServerConfig::idle_timeout`]): a connection on which no byte
//!   moved either way for this long is shut down gracefully (an answer being computed
//!   may still be sent); if it is still silent one more idle timeout later (a client
//!   that stopped sending its body or reading its answer), it is dropped.
//! - **Connection cap** ([`ServerConfig::max_connections`]): at the cap the server stops
//!   accepting; new connections wait in the kernel's listen queue until one closes
//!   (they are not refused, so a well-behaved client is served late rather than failed).
//!   The timeouts above make sure slots come free.
//! - **Host check** ([`host`]): public routes (health, readiness, metrics, the dashboard)
//!   answer only to the host names this server is meant to be reached under (DNS
//!   rebinding); keyed routes and webhooks are protected by their credentials instead.
//!
//! - **TLS** ([`ServerConfig::tls`]): with a certificate, every connection is HTTPS; the
//!   handshake runs in the connection's own task (so a client that never finishes it holds
//!   one connection slot, not the accept loop) and must finish within the header-read
//!   timeout. A client that does not speak TLS, or does not trust the certificate, is
//!   closed after its handshake fails. A client certificate (mutual TLS) puts the
//!   connection in a `tls_client` span naming it (`server/peer.rs`).
//! - **Access log** ([`ServerConfig::access_log`], [`access`]): one line per request
//!   answered, off by default.
//!
//! Graceful shutdown is axum's: when the shutdown future completes the server stops
//! accepting, asks every connection to finish its request in flight and close, and
//! returns once all have closed.

pub mod access;
pub mod host;
mod io;
mod peer;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{Instrument, debug, trace, warn};

pub use host::AllowedHosts;

use crate::auth::MetricsAccess;

/// How a listener serves connections; see the module docs for what each limit does.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time allowed for a request's head, from when the connection opened or its previous
    /// answer was sent.
    pub header_read_timeout: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// The host names public routes answer to.
    pub allowed_hosts: AllowedHosts,
    /// Whether `GET /metrics` is public (and so host-checked) or needs a key.
    pub metrics: MetricsAccess,
    /// HTTPS with this configuration (`--tls-cert-file`), or plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// One log line per request answered ([`access`], `--access-log`).
    pub access_log: bool,
}

impl ServerConfig {
    /// 10 s: a real client sends its headers in one packet; a slow link still manages in
    /// well under this.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    /// 60 s: longer than the default request timeout (30 s), so a slow query's answer is
    /// never cut by the idle timeout first.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// 1024: ample for a personal control plane and its scrapers, and within the common
    /// open-file limit once the log's files are counted.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: AllowedHosts::default(),
            metrics: MetricsAccess::default(),
            tls: None,
            access_log: false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns once every connection has closed.
///
/// The host check ([`host::check`]) is put around `app` here, so every listener has it.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    config: ServerConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = host::check(app, config.allowed_hosts.clone(), config.metrics);
    let app = if config.access_log {
        app.layer(axum::middleware::from_fn(access::log))
    } else {
        app
    };
    let access_log = config.access_log;
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    // `signal_rx` is dropped when shutdown is asked for; connections watch `signal_tx`.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection task holds a `close_rx`; all dropped = all connections closed.
    let (close_tx, close_rx) = watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .keep_alive(true);
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut cap_warned: Option<tokio::time::Instant> = None;
    loop {
        if slots.available_permits() == 0
            && cap_warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60))
        {
            cap_warned = Some(tokio::time::Instant::now());
            warn!(
                max_connections = config.max_connections,
                "The HTTP connection cap is reached; new connections wait until one closes \
                 (raise it with --http-max-connections)."
            );
        }
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = signal_tx.closed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            _ = signal_tx.closed() => break,
        };
        trace!(%peer, "Accepted a connection.");
        let activity = Arc::new(Activity::new());
        let stream = io::Tracked::new(stream, activity.clone());
        let conn = Connection {
            peer,
            activity,
            http: http.clone(),
            service: TowerToHyperService::new(app.clone()),
            signal: signal_tx.clone(),
            idle: config.idle_timeout,
        };
        let tls = tls.clone();
        let handshake_timeout = config.header_read_timeout;
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let span = connection_span(peer, None, access_log);
                    conn.serve(stream).instrument(span).await
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(stream)) => {
                                let cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|chain| chain.first());
                                let span = connection_span(peer, cert.map(|c| c.as_ref()), access_log);
                                conn.serve(stream).instrument(span).await
                            }
                            Ok(Err(e)) => debug!(%peer, error = %e,
                                "A TLS handshake failed (a client without TLS, or one that does not trust the certificate); closed."),
                            Err(_) => debug!(%peer,
                                "A client did not finish its TLS handshake within the header-read timeout; closed."),
                        },
                        _ = conn.signal.closed() => {}
                    }
                }
            }
            drop(close_rx);
            drop(slot);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}

/// The span every line logged while serving a connection carries: `tls_client` when its
/// client presented a certificate (mutual TLS; [`peer`]), naming it and the caller's
/// address; `http_connection` with the address when the access log is on; else none.
fn connection_span(
    addr: std::net::SocketAddr,
    cert: Option<&[u8]>,
    access_log: bool,
) -> tracing::Span {
    if let Some(der) = cert {
        let cert = peer::ClientCert::from_der(der);
        let span = tracing::info_span!(
            "tls_client",
            peer = %addr,
            client_cert_cn = cert.cn.as_deref().unwrap_or(""),
            client_cert_sha256 = %cert.sha256,
        );
        debug!(parent: &span, "A client certificate was verified.");
        return span;
    }
    if access_log {
        return tracing::info_span!("http_connection", peer = %addr);
    }
    tracing::Span::none()
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    http: hyper::server::conn::http1::Builder,
    service: TowerToHyperService<Router>,
    /// Closed when the server is asked to shut down.
    signal: watch::Sender<()>,
    idle: Duration,
}

impl Connection {
    /// Serves HTTP/1 on `stream` (plain or TLS) until the client or the server ends it,
    /// with the idle timeout and graceful shutdown of the module docs.
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            peer,
            activity,
            http,
            service,
            signal,
            idle,
        } = self;
        let mut conn = pin!(http.serve_connection(TokioIo::new(stream), service));
        let mut shutting_down = pin!(signal.closed());
        let mut graceful = false;
        // Shut down for being idle once already: silent one more idle period, the
        // connection is dropped (a client that stopped reading or sending).
        let mut idle_closed = false;
        loop {
            let wake = tokio::time::Instant::from_std(activity.deadline(idle));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "An HTTP connection ended with an error.");
                    }
                    break;
                }
                _ = &mut shutting_down, if !graceful => {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(wake) => {
                    if activity.idle_for() < idle {
                        continue;
                    }
                    if idle_closed {
                        debug!(%peer, "Dropped a connection silent past the idle timeout twice.");
                        break;
                    }
                    idle_closed = true;
                    // The second period counts from now.
                    activity.touch();
                    if !graceful {
                        graceful = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Errors of `accept`: one connection's own failure is skipped; a resource shortage (out
/// of file descriptors or memory) is logged and waited out rather than spun on.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    warn!(error = %e, "Accepting an HTTP connection failed (out of file descriptors? \
           raise `ulimit -n` or lower --http-max-connections); retrying in 1s.");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// When a connection last moved a byte, in milliseconds since it opened.
#[derive(Debug)]
pub(crate) struct Activity {
    start: std::time::Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Records that a byte moved now.
    pub(crate) fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn last_millis(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn idle_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_millis()))
    }

    /// When the connection will have been idle for `idle`, if nothing moves before.
    fn deadline(&self, idle: Duration) -> std::time::Instant {
        self.start + Duration::from_millis(self.last_millis()) + idle
    }
}

#[cfg(test)]
mod tests;
