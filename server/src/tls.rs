//! TLS for clients and peers (rustls, with the `ring` provider).
//!
//! From [`TlsSettings`]: the client listener may require TLS (and, with
//! `tls_client_auth`, a client certificate signed by the CA); peer links may
//! run over TLS, where both ends present certificates signed by the CA and
//! the dialer checks that the peer's certificate names the IP address it
//! dialed. Files are read once, at start; a missing or unreadable file, or
//! one with no certificate or key in it, stops the start with a message
//! naming the file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsSettings;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{what} {path}: {reason}")]
    File {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// rustls refused the material.
    #[error("{what}: {reason}")]
    Config { what: &'static str, reason: String },
}

/// The TLS sides a node uses, built from its settings.
#[derive(Clone, Default)]
pub struct TlsContext {
    /// Wraps accepted client connections, when clients speak TLS.
    pub clients: Option<TlsAcceptor>,
    /// Wraps accepted peer connections, when peers speak TLS.
    pub peer_acceptor: Option<TlsAcceptor>,
    /// Wraps dialed peer connections, when peers speak TLS.
    pub peer_connector: Option<TlsConnector>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("clients", &self.clients.is_some())
            .field("peers", &self.peer_acceptor.is_some())
            .finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(what: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn config_error(what: &'static str, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Config {
        what,
        reason: reason.to_string(),
    }
}

/// The certificates in a PEM file; at least one.
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error("tls_key_file", path, e))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("tls_ca_file", path)? {
        roots
            .add(cert)
            .map_err(|e| file_error("tls_ca_file", path, e))?;
    }
    Ok(Arc::new(roots))
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: Option<Arc<RootCertStore>>,
    what: &'static str,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(what, e))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| config_error(what, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| config_error(what, e))
}

impl TlsContext {
    /// Reads the files `settings` name and builds the sides it turns on.
    ///
    /// # Errors
    /// A file that cannot be read or holds no usable certificate or key.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        if !settings.enabled() {
            return Ok(Self::default());
        }
        let (Some(cert_path), Some(key_path)) = (&settings.cert_file, &settings.key_file) else {
            return Err(config_error(
                "tls",
                "tls_cert_file and tls_key_file are required",
            ));
        };
        let chain = certificates("tls_cert_file", cert_path)?;
        let key = private_key(key_path)?;
        let ca = settings.ca_file.as_deref().map(roots).transpose()?;
        let mut context = Self::default();
        if settings.clients {
            let client_roots = if settings.client_auth {
                Some(
                    ca.clone()
                        .ok_or_else(|| config_error("tls_client_auth", "needs tls_ca_file"))?,
                )
            } else {
                None
            };
            let config = server_config(chain.clone(), key.clone_key(), client_roots, "client TLS")?;
            context.clients = Some(TlsAcceptor::from(Arc::new(config)));
        }
        if settings.peers {
            let ca = ca.ok_or_else(|| config_error("tls_peers", "needs tls_ca_file"))?;
            let acceptor =
                server_config(chain.clone(), key.clone_key(), Some(ca.clone()), "peer TLS")?;
            context.peer_acceptor = Some(TlsAcceptor::from(Arc::new(acceptor)));
            let connector = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| config_error("peer TLS", e))?
                .with_root_certificates(ca)
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error("peer TLS", e))?;
            context.peer_connector = Some(TlsConnector::from(Arc::new(connector)));
        }
        Ok(context)
    }
}

/// The name a dialer expects in the certificate of the peer at `addr`: its
/// IP address (peer certificates carry their node's address as an IP
/// subject alternative name).
pub fn peer_server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}
