//! HTTPS and WSS served by the bot itself: the certificate and key of `tls_cert` /
//! `tls_key` (PEM) loaded into a rustls [`ServerConfig`], reloaded in place ([`Tls::reload`],
//! on SIGHUP from `main`) so a renewed certificate takes effect without dropping a link, and
//! [`Listener`], what [`crate::serve`] accepts on: plain TCP or TLS over it.
//!
//! The handshake runs in its own task per connection (bounded in time and in number), so a
//! slow or broken client never holds up the accept loop. [`PeerAddr`] is the connection's
//! remote address, which the audit log uses (see [`crate::http::access`] for
//! `X-Forwarded-For` behind a reverse proxy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::ServerConfig;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tracing::{debug, error, info};

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; connections beyond wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;

/// The bot's TLS identity, swappable while serving.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let config = server_config(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(config),
        }))
    }

    /// Rereads the files; on failure the old certificate stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    // Read as the clients read a CA file; both callers print the chain (`{:#}`), so the
    // error still reads "tls_cert: cannot read ...".
    let certs = common::tls::read_certs(cert).context("tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "tls_key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS setup")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("tls_cert and tls_key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reloads `tls` on every SIGHUP until the process ends; a bad new file is logged and the
/// old certificate kept.
pub async fn reload_on_sighup(tls: Arc<Tls>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot listen for SIGHUP; TLS reload is off");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => info!(cert = %tls.cert.display(), "TLS certificate reloaded"),
            Err(e) => error!(
                error = format!("{e:#}"),
                "TLS reload failed; still serving the previous certificate"
            ),
        }
    }
}

/// What [`crate::serve`] accepts connections on.
pub enum Listener {
    /// Plain HTTP/WS (loopback, or behind a TLS reverse proxy).
    Plain(TcpListener),
    /// HTTPS/WSS.
    Tls {
        /// The bound socket.
        tcp: TcpListener,
        /// The certificate in use.
        tls: Arc<Tls>,
        /// Handshakes in progress.
        handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    },
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Self {
        Self::Plain(tcp)
    }
}

impl Listener {
    /// TLS with `tls` over `tcp`.
    pub fn tls(tcp: TcpListener, tls: Arc<Tls>) -> Self {
        Self::Tls {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        }
    }

    /// `ws://addr` or `wss://addr` of the bound address, unless it is unspecified (`0.0.0.0`,
    /// `::`), which names no host to dial.
    pub fn own_url(&self) -> Option<String> {
        let (tcp, scheme) = match self {
            Self::Plain(tcp) => (tcp, "ws"),
            Self::Tls { tcp, .. } => (tcp, "wss"),
        };
        let addr = tcp.local_addr().ok()?;
        (!addr.ip().is_unspecified()).then(|| format!("{scheme}://{addr}"))
    }
}

/// Accepts one TCP connection, retrying (after a pause for errors like EMFILE) until one
/// comes. Sets TCP_NODELAY: without it a burst of small writes (SSE events, link frames)
/// waits on the peer's delayed ACK, ~40 ms on the second event of every burst.
async fn accept_tcp(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok((stream, addr)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
                }
                return (stream, addr);
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                error!(error = %e, "accept failed; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

impl axum::serve::Listener for Listener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            Self::Plain(tcp) => {
                let (stream, addr) = accept_tcp(tcp).await;
                (Either::Left(stream), addr)
            }
            Self::Tls {
                tcp,
                tls,
                handshakes,
            } => loop {
                tokio::select! {
                    (stream, addr) = accept_tcp(tcp), if handshakes.len() < MAX_HANDSHAKES => {
                        let acceptor = tls.acceptor();
                        handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => Some((s, addr)),
                                Ok(Err(e)) => {
                                    debug!(%addr, error = %e, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    debug!(%addr, "TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                        if let Ok(Some((s, addr))) = done {
                            return (Either::Right(s), addr);
                        }
                    }
                }
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            Self::Plain(tcp) | Self::Tls { tcp, .. } => tcp.local_addr(),
        }
    }
}

/// The remote address of a connection (the `ConnectInfo` of [`crate::serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, Listener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        Self(*stream.remote_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A start-up error names the setting and the file, whatever is wrong with it.
    #[test]
    fn a_bad_certificate_file_is_named_with_its_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key").expect("write");

        let missing = dir.path().join("missing.pem");
        let e = format!("{:#}", Tls::load(&missing, &key).err().expect("refused"));
        assert!(e.starts_with("tls_cert: cannot read "), "{e}");
        assert!(e.contains("missing.pem"), "{e}");

        let garbage = dir.path().join("cert.pem");
        std::fs::write(&garbage, "hello, not a certificate\n").expect("write");
        let e = format!("{:#}", Tls::load(&garbage, &key).err().expect("refused"));
        assert!(e.starts_with("tls_cert: "), "{e}");
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }
}
